"""The label store: frames, objects with their raw stamps, and an append-only label log.

One SQLite file (standard library, WAL mode) holds any number of frames. A frame is
known by the content hash of its pixels, so reopening the same image (under any name)
finds its objects and labels again. Each object keeps its position, its raw stamp, the
background under it and the noise level, plus the FWHM and rescaling of its frame, so a
training set can be rebuilt from the store alone, with any later preprocessing.

Labels are never updated or deleted. Every user action (label a selection, undo, redo)
is one row in ``actions`` and one row per object in ``events``, written in one
transaction; the current label of an object is the label of its latest event. An undo
appends events that restore the labels the undone action replaced; a redo appends its
labels again. Triggers refuse any UPDATE or DELETE of the log. The undo and redo stacks
are a replay of the ``actions`` rows (kept incrementally in memory).

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL already survives a
killed process (a commit is in the WAL file, in the operating system's cache, before
``COMMIT`` returns); FULL also fsyncs the WAL at each commit, so a label given before a
power cut or kernel crash is not lost either. That costs one fsync per action (about
4 ms on this machine's disk), which a person labeling at keyboard pace never notices.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path

import numpy as np

from rbvet.core.cutouts.preprocess import PreprocessParams, Rescale
from rbvet.core.cutouts.stamps import Stamps
from rbvet.core.errors import RbvetError
from rbvet.core.io.frame import image_hash
from rbvet.core.learn.dataset import TrainingSet

SCHEMA_VERSION = 3
STORE_FILE_NAME = "labels.sqlite"
REAL, BOGUS, UNLABELED = 1, 0, -1
SOURCES = ("human", "model")

#: Sources of weak labels (`rbvet.core.learn.weak`): repeated exposures, a reference
#: catalog. They live in their own table: never an object's label, never undone with it.
WEAK_SOURCES = ("repeat", "reference")

#: Where a label came from: a key press, a bulk action, an imported catalog column, a weak
#: rule (repeated exposures, a reference catalog), or a program using the API.
ORIGINS = ("key", "bulk", "import", "weak", "api")

_SCHEMA_2_COLUMNS = (
    "ALTER TABLE actions ADD COLUMN session TEXT",
    "ALTER TABLE actions ADD COLUMN annotator TEXT",
    "ALTER TABLE actions ADD COLUMN origin TEXT",
    "ALTER TABLE actions ADD COLUMN model TEXT",
    "ALTER TABLE events ADD COLUMN score REAL",
)
DEFAULT_TIMEOUT = 5.0
HEADER_KEYS = (
    "OBJECT",
    "DATE-OBS",
    "MJD-OBS",
    "EXPTIME",
    "FILTER",
    "TELESCOP",
    "INSTRUME",
    "GAIN",
    "EXTNAME",
)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_COMPRESSION_LEVEL = 1

_SCHEMA = """
CREATE TABLE frames (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    path TEXT,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    header TEXT NOT NULL DEFAULT '{}',
    fwhm REAL,
    rescale_down INTEGER NOT NULL,
    rescale_up INTEGER NOT NULL,
    target_size INTEGER NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER NOT NULL REFERENCES frames (id),
    x REAL NOT NULL,
    y REAL NOT NULL,
    stamp_size INTEGER NOT NULL,
    rescale_down INTEGER NOT NULL,
    rescale_up INTEGER NOT NULL,
    target_size INTEGER NOT NULL,
    fwhm REAL,
    noise REAL,
    has_background INTEGER NOT NULL,
    data BLOB NOT NULL,
    background BLOB NOT NULL,
    UNIQUE (frame_id, x, y)
);
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('set', 'undo', 'redo')),
    target INTEGER REFERENCES actions (id),
    label INTEGER CHECK (label IN (-1, 0, 1)),
    source TEXT NOT NULL,
    time REAL NOT NULL,
    objects INTEGER NOT NULL,
    session TEXT,
    annotator TEXT,
    origin TEXT,
    model TEXT
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    action_id INTEGER NOT NULL REFERENCES actions (id),
    object_id INTEGER NOT NULL REFERENCES objects (id),
    label INTEGER NOT NULL CHECK (label IN (-1, 0, 1)),
    previous INTEGER NOT NULL CHECK (previous IN (-1, 0, 1)),
    score REAL
);
CREATE INDEX events_by_object ON events (object_id, id);
CREATE INDEX events_by_action ON events (action_id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END;
CREATE TRIGGER actions_no_update BEFORE UPDATE ON actions
    BEGIN SELECT RAISE(ABORT, 'label actions are append-only'); END;
CREATE TRIGGER actions_no_delete BEFORE DELETE ON actions
    BEGIN SELECT RAISE(ABORT, 'label actions are append-only'); END;
CREATE TABLE weak_labels (
    id INTEGER PRIMARY KEY,
    object_id INTEGER NOT NULL REFERENCES objects (id),
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    source TEXT NOT NULL,
    time REAL NOT NULL,
    session TEXT
);
CREATE INDEX weak_labels_by_object ON weak_labels (object_id, source, id);
CREATE VIEW label_log AS
    SELECT events.id AS event, events.object_id AS object, events.label AS label,
           events.previous AS previous, events.score AS score_on_screen,
           datetime(actions.time, 'unixepoch') AS time, actions.source AS source,
           actions.annotator AS annotator, actions.origin AS origin, actions.model AS model,
           actions.kind AS action, actions.id AS action_id,
           actions.target AS undoes_or_redoes
    FROM events JOIN actions ON actions.id = events.action_id;
"""

_SCHEMA_3_TABLES = _SCHEMA[
    _SCHEMA.index("CREATE TABLE weak_labels") : _SCHEMA.index("CREATE VIEW")
]

# The label of an object's latest event, -1 when it has none (bound as :object).
_CURRENT_LABEL = (
    "coalesce((SELECT label FROM events WHERE object_id = {object} ORDER BY id DESC LIMIT 1), -1)"
)


def default_store_path():
    """The label store used when none is named: ``labels.sqlite`` in the user data folder."""
    from rbvet.core.paths import user_data_dir

    return user_data_dir() / STORE_FILE_NAME


frame_hash = image_hash


def default_annotator():
    """Who is labeling: ``RBVET_ANNOTATOR``, else the login name."""
    import getpass

    name = os.environ.get("RBVET_ANNOTATOR", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment (some containers)
        return "unknown"


def _content_hash(frame):
    """The frame's `Frame.content_hash` (computed once), or the hash of its image."""
    return getattr(frame, "content_hash", None) or frame_hash(frame.image)


def header_summary(header, keys=HEADER_KEYS):
    """A few identifying header keywords as a JSON-ready dict (missing ones left out)."""
    summary = {}
    if header is None:
        return summary
    for key in keys:
        value = header.get(key)
        if isinstance(value, (bool, int, float, str)):
            summary[key] = value
    return summary


def encode_stamps(stamps):
    """Compress (N, S, S) float32 stamps losslessly, one zlib stream per stamp.

    The bytes of each stamp are shuffled by significance (all first bytes, then all
    second bytes, ...; as HDF5's shuffle filter does) before zlib: the exponent bytes of
    neighbouring pixels are alike, so this roughly doubles what zlib saves on noisy data.

    The low mantissa bytes of noisy pixels are random: zlib cannot shrink them but spends
    most of its time trying. The leading byte planes that look random over the batch
    (`_random_plane_count`) are therefore written as deflate *stored* blocks and only the
    rest is compressed (`_zlib_stream`); this is 2-3 times faster. Each blob is still one
    standard zlib stream of the shuffled bytes, as stores have always held, so
    `decode_stamps` (and any earlier version) reads both.
    """
    stamps = np.ascontiguousarray(stamps, dtype="<f4")
    n, pixels = len(stamps), stamps[0].size if len(stamps) else 0
    planes = np.ascontiguousarray(stamps.view(np.uint8).reshape(n, pixels, 4).transpose(0, 2, 1))
    stored = _random_plane_count(planes) * pixels
    return [_zlib_stream(row[:stored], row[stored:]) for row in planes.reshape(n, 4 * pixels)]


_RANDOM_PLANE_BITS = 7.5
"""Bits of entropy per byte above which a byte plane is stored, not compressed."""

_PLANE_SAMPLE = 256
"""Stamps of a batch whose bytes `_random_plane_count` looks at."""

_STORED_BLOCK_MAX = 0xFFFF
"""Most bytes one deflate stored block holds."""

_ZLIB_HEADER = bytes([0x78, 0x01])
"""A zlib header: deflate, 32 KiB window, fastest level (what ``zlib.compress(_, 1)`` writes)."""


def _random_plane_count(planes):
    """How many of the leading byte planes of (N, 4, P) shuffled stamps look random.

    A plane looks random when its bytes, over a sample of the stamps, carry more than
    `_RANDOM_PLANE_BITS` bits of entropy each: zlib would save almost nothing on it.
    Counting stops at the first plane that does not.
    """
    sample = planes[:: max(1, len(planes) // _PLANE_SAMPLE)]
    count = 0
    for plane in sample.transpose(1, 0, 2):
        frequency = np.bincount(plane.ravel(), minlength=256) / max(plane.size, 1)
        frequency = frequency[frequency > 0]
        if -np.sum(frequency * np.log2(frequency)) <= _RANDOM_PLANE_BITS:
            break
        count += 1
    return count


def _zlib_stream(stored, compressed):
    """One zlib stream of ``stored`` then ``compressed`` bytes, only the latter compressed.

    ``stored`` goes into deflate stored blocks (RFC 1951, 3.2.4), ``compressed`` into
    deflate blocks at `_COMPRESSION_LEVEL`, the last of the stream; the Adler-32 covers
    both (RFC 1950). With nothing stored, this is what ``zlib.compress(compressed, 1)`` writes.
    """
    compressor = zlib.compressobj(_COMPRESSION_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    blocks = [_ZLIB_HEADER]
    for start in range(0, len(stored), _STORED_BLOCK_MAX):
        block = stored[start : start + _STORED_BLOCK_MAX]
        # Header byte 0: not the final block, type "stored"; then LEN and its complement.
        blocks += [bytes([0]), len(block).to_bytes(2, "little")]
        blocks += [(len(block) ^ 0xFFFF).to_bytes(2, "little"), block]
    blocks += [compressor.compress(compressed), compressor.flush()]
    blocks.append(zlib.adler32(compressed, zlib.adler32(stored)).to_bytes(4, "big"))
    return b"".join(blocks)


def decode_stamps(blobs, size):
    """Inverse of `encode_stamps`: blobs of ``size`` x ``size`` stamps -> (N, S, S) float32."""
    if len(blobs) == 0:
        return np.zeros((0, size, size), np.float32)
    raw = np.frombuffer(b"".join(zlib.decompress(blob) for blob in blobs), dtype=np.uint8)
    planes = raw.reshape(len(blobs), 4, size * size).transpose(0, 2, 1)
    stamps = np.ascontiguousarray(planes).view("<f4").reshape(len(blobs), size, size)
    return stamps.astype(np.float32, copy=False)


def match_positions(x, y, x_ref, y_ref, tolerance=1e-3):
    """Index of the reference position matching each position, -1 where there is none.

    Parameters
    ----------
    x, y : array_like
        Positions to look up (e.g. catalog rows), 0-based pixels.
    x_ref, y_ref : array_like
        Reference positions (e.g. a frame's stored objects from `LabelStore.frame_labels`).
    tolerance : float
        Largest distance in pixels that still counts as the same object.

    Returns
    -------
    ndarray of int64
    """
    from scipy.spatial import cKDTree

    query = np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    reference = np.column_stack([np.asarray(x_ref, np.float64), np.asarray(y_ref, np.float64)])
    found = np.full(len(query), -1, np.int64)
    finite = np.isfinite(query).all(axis=1)
    if len(reference) == 0 or not finite.any():
        return found
    distance, index = cKDTree(reference).query(
        query[finite], distance_upper_bound=float(tolerance)
    )
    found[np.flatnonzero(finite)] = np.where(np.isfinite(distance), index, -1)
    return found


def _exact_match(x, y, x_ref, y_ref):
    """Index of the reference with exactly the same (x, y) as each position, -1 if none."""
    keys = np.asarray(x, np.float64) + 1j * np.asarray(y, np.float64)
    reference = np.asarray(x_ref, np.float64) + 1j * np.asarray(y_ref, np.float64)
    order = np.argsort(reference)  # complex numbers sort by real, then imaginary part
    sorted_reference = reference[order]
    place = np.clip(np.searchsorted(sorted_reference, keys), 0, max(len(reference) - 1, 0))
    found = np.full(len(keys), -1, np.int64)
    if len(reference):
        hit = sorted_reference[place] == keys
        found[hit] = order[place[hit]]
    return found


def _ids_json(ids):
    return json.dumps(np.asarray(ids, np.int64).ravel().tolist())


class LabelStore:
    """A label store in one SQLite file.

    Parameters
    ----------
    path : str or Path, optional
        The store; ``labels.sqlite`` in the user data folder (see `default_store_path`)
        when None.
    create : bool
        Make a new store when the file does not exist (or is an empty, 0-byte file);
        otherwise that is an error.
    readonly : bool
        Open for reading only (exports, reviews): nothing is created, migrated or
        locked, and a store on a read-only disk can be read.
    timeout : float
        Seconds to wait for another program's transaction to finish before giving up
        with an error (SQLite busy timeout).
    synchronous : {'FULL', 'NORMAL'}
        SQLite ``synchronous`` setting (see the module notes).

    Raises
    ------
    RbvetError
        The file is not an rbvet label store (not SQLite, damaged pages, another
        database, a newer schema), is locked by another program, or does not exist (or
        is empty) and ``create`` is False. The file is never overwritten or recreated.

    Notes
    -----
    The store can be used from several threads (calls are serialised by a lock) and by
    several programs at once (SQLite locking; each action is one short transaction).
    Undo and redo act on this object's own actions (its `session` id), never on those
    of another program labeling the same store.
    """

    def __init__(
        self,
        path=None,
        create=True,
        timeout=DEFAULT_TIMEOUT,
        synchronous="FULL",
        readonly=False,
    ):
        self.path = Path(path) if path is not None else default_store_path()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.readonly = bool(readonly)
        create = create and not self.readonly
        self.session = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._connection = None
        self._identity = None
        self._stack_state = (0, [], [])  # last action id replayed, done, redo stacks
        exists = self.path.exists()
        if exists and self.path.is_dir():
            raise RbvetError("is a directory, not a label store", self.path)
        if not exists:
            if not create:
                raise RbvetError("no such label store", self.path)
            if path is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.parent.is_dir():
                raise RbvetError("the directory of the label store does not exist", self.path)
        elif self.path.stat().st_size > 0:
            self._check_header()
        elif not create:
            raise RbvetError("empty file (0 bytes), not a label store; left untouched", self.path)
        self._connection = self._connect(timeout)
        try:
            self._open(synchronous)
        except BaseException:
            self._connection.close()
            self._connection = None
            raise
        self._identity = _file_identity(self.path)

    def _connect(self, timeout):
        """An SQLite connection: read-write, or read-only (immutable on a read-only disk)."""
        options = dict(timeout=timeout, isolation_level=None, check_same_thread=False)
        uri = self.path.resolve().as_uri()
        try:
            if not self.readonly:
                return sqlite3.connect(str(self.path), **options)
            connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                # A WAL store on a read-only disk cannot make its shared-memory file:
                # read it as immutable (nobody can be writing to it there anyway).
                connection.close()
                connection = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, **options)
            return connection
        except sqlite3.Error as error:
            raise RbvetError(_open_problem(self.path, error), self.path) from None

    # ----------------------------------------------------------------- opening, closing

    def _check_header(self):
        try:
            with open(self.path, "rb") as file:
                magic = file.read(len(_SQLITE_MAGIC))
        except OSError as error:
            raise RbvetError(
                f"cannot read the label store ({error.strerror})", self.path
            ) from None
        if magic != _SQLITE_MAGIC:
            raise RbvetError(
                "not an rbvet label store (not an SQLite database); left untouched", self.path
            )

    def _open(self, synchronous):
        with self._errors():
            connection = self._connection
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                )
            }
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RbvetError(
                    f"label store schema {version} is newer than this rbvet's "
                    f"({SCHEMA_VERSION}); update rbvet",
                    self.path,
                )
            if tables and (
                version == 0 or not {"frames", "objects", "actions", "events"} <= tables
            ):
                raise RbvetError(
                    "an SQLite database but not an rbvet label store; left untouched", self.path
                )
            if tables:
                self._check_integrity(connection)
            if self.readonly:
                self.journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                return
            self.journal_mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            connection.execute(f"PRAGMA synchronous={synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
            # Take the write lock once: a store held by another program fails here, now.
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Looked at again under the lock: another program may have just made it.
                if not connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    for statement in _split_script(_SCHEMA):
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version == 1:
                    # Schema 2 records each action's session (undo stays its own) and its
                    # provenance: who, from where, with which model, at which score.
                    for statement in _SCHEMA_2_COLUMNS:
                        connection.execute(statement)
                    connection.execute("DROP VIEW label_log")
                    connection.execute(_SCHEMA[_SCHEMA.index("CREATE VIEW label_log") :])
                    connection.execute("PRAGMA user_version=2")
                    version = 2
                if version == 2:
                    # Schema 3 keeps weak labels (repeats, reference catalogs) in a table
                    # of their own, apart from the label log.
                    for statement in _split_script(_SCHEMA_3_TABLES):
                        connection.execute(statement)
                    connection.execute("PRAGMA user_version=3")
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def _check_integrity(self, connection):
        """Refuse a store whose pages are damaged, before it is read as "no labels"."""
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise RbvetError(
                f"label store is damaged ({' '.join('; '.join(problems).split())[:160]}); "
                "left untouched — "
                "restore a backup, or recover it with sqlite3's .recover",
                self.path,
            )

    def close(self):
        """Close the store (committed labels are already on disk)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self):
        return f"LabelStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _errors(self):
        """Turn SQLite errors into one-line `RbvetError`s that name the store."""
        try:
            yield
        except sqlite3.OperationalError as error:
            text = str(error)
            if "unable to open" in text or "readonly" in text:
                raise RbvetError(_open_problem(self.path, error), self.path) from None
            if "locked" in text or "busy" in text:
                raise RbvetError(
                    f"label store is locked by another program ({text}); close it and retry",
                    self.path,
                ) from None
            raise RbvetError(f"label store error: {text}", self.path) from None
        except sqlite3.IntegrityError as error:
            raise RbvetError(f"label store refused the change: {error}", self.path) from None
        except sqlite3.DatabaseError as error:
            raise RbvetError(
                f"label store is damaged or not a label store ({error}); left untouched",
                self.path,
            ) from None

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error."""
        with self._lock, self._errors():
            connection = self._require_open()
            if self.readonly:
                raise RbvetError("label store is open read-only", self.path)
            self._check_still_there()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                self._stack_state = (0, [], [])  # replay the stacks from scratch next time
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            try:
                connection.execute("COMMIT")
            except BaseException:
                self._stack_state = (0, [], [])
                raise

    @contextlib.contextmanager
    def _reading(self):
        with self._lock, self._errors():
            yield self._require_open()

    def _check_still_there(self):
        """Refuse to write into a store whose file was deleted or replaced while open.

        SQLite would go on writing into the unlinked file, and every label would be lost
        when the store is closed.
        """
        if self._identity is not None and _file_identity(self.path) != self._identity:
            raise RbvetError(
                "the label store file was deleted or replaced while open; the label was not "
                "saved — open a label store again (File › Label store…)",
                self.path,
            )

    def _require_open(self):
        if self._connection is None:
            raise RbvetError("label store is closed", self.path)
        return self._connection

    # ------------------------------------------------------------------ frames, objects

    def add_frame(self, frame, fwhm, rescale):
        """Register a frame (or find it again by the hash of its pixels).

        Parameters
        ----------
        frame : Frame
            The image; its pixels are hashed, its path, shape and a few header keys kept.
        fwhm : float
            FWHM in pixels the frame's stamps are cut for.
        rescale : Rescale
            The rescaling its stamps are cut with.

        Returns
        -------
        int
            The frame id; the existing one when the same pixels were stored before.
        """
        content_hash = _content_hash(frame)
        height, width = frame.image.shape
        header = json.dumps(header_summary(getattr(frame, "header", None)))
        fwhm = None if fwhm is None or not np.isfinite(fwhm) else float(fwhm)
        path = getattr(frame, "path", None)
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO frames (content_hash, path, height, width, header, fwhm,"
                " rescale_down, rescale_up, target_size, added)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    content_hash,
                    None if path is None else str(path),
                    int(height),
                    int(width),
                    header,
                    fwhm,
                    int(rescale.down),
                    int(rescale.up),
                    int(rescale.target_size),
                    time.time(),
                ),
            )
            row = connection.execute(
                "SELECT id FROM frames WHERE content_hash = ?", (content_hash,)
            ).fetchone()
        return int(row[0])

    def find_frame(self, frame):
        """Id of the stored frame with the same pixels as ``frame``, or None."""
        content_hash = _content_hash(frame)
        with self._reading() as connection:
            row = connection.execute(
                "SELECT id FROM frames WHERE content_hash = ?", (content_hash,)
            ).fetchone()
        return None if row is None else int(row[0])

    def frames(self):
        """The stored frames as a list of dicts (id, path, hash, shape, FWHM, header)."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT id, path, content_hash, height, width, fwhm, header, rescale_down,"
                " rescale_up, target_size FROM frames ORDER BY id"
            ).fetchall()
        return [
            {
                "id": row[0],
                "path": row[1],
                "content_hash": row[2],
                "shape": [row[3], row[4]],
                "fwhm": row[5],
                "header": json.loads(row[6]),
                "rescale": {"down": row[7], "up": row[8], "target_size": row[9]},
            }
            for row in rows
        ]

    def add_objects(self, frame_id, x, y, stamps):
        """Store objects of a frame with their raw stamps (once; later calls find them).

        Parameters
        ----------
        frame_id : int
            From `add_frame`.
        x, y : array_like
            0-based positions (catalog rows); an object is the same when its frame and
            exact position are.
        stamps : Stamps
            Their stamps (``data``, ``background``, ``noise``; one row per position),
            stored losslessly.

        Returns
        -------
        ndarray of int64
            Object id of each position; -1 for non-finite positions, which are not stored.
        """
        x = np.atleast_1d(np.asarray(x, np.float64))
        y = np.atleast_1d(np.asarray(y, np.float64))
        if not (len(x) == len(y) == len(stamps)):
            raise RbvetError(
                f"add_objects needs one stamp per position: {len(x)} x, {len(y)} y, "
                f"{len(stamps)} stamps"
            )
        frame_id = int(frame_id)
        finite = np.isfinite(x) & np.isfinite(y)
        ids = np.full(len(x), -1, np.int64)
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT fwhm FROM frames WHERE id = ?", (frame_id,)
            ).fetchone()
            if row is None:
                raise RbvetError(f"no frame with id {frame_id} in the label store", self.path)
            fwhm = row[0]
            stored_ids, stored_x, stored_y = self._frame_objects(connection, frame_id)
            found = _exact_match(x, y, stored_x, stored_y)
            ids[found >= 0] = stored_ids[found[found >= 0]]
            # Each new position once, even if the caller repeats it.
            new = np.flatnonzero(finite & (found < 0))
            _, first = np.unique(x[new] + 1j * y[new], return_index=True)
            new = new[np.sort(first)]
            if len(new):
                self._insert_objects(connection, frame_id, fwhm, x, y, stamps, new)
                stored_ids, stored_x, stored_y = self._frame_objects(connection, frame_id)
                found = _exact_match(x, y, stored_x, stored_y)
                ids[finite] = stored_ids[found[finite]]
        return ids

    @staticmethod
    def _frame_objects(connection, frame_id):
        rows = connection.execute(
            "SELECT id, x, y FROM objects WHERE frame_id = ? ORDER BY id", (frame_id,)
        ).fetchall()
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return table[:, 0].astype(np.int64), table[:, 1], table[:, 2]

    @staticmethod
    def _insert_objects(connection, frame_id, fwhm, x, y, stamps, rows):
        rescale = stamps.rescale
        data = encode_stamps(stamps.data[rows])
        background = encode_stamps(stamps.background[rows])
        noise = np.asarray(stamps.noise, np.float64)[rows]
        noise_values = np.where(np.isfinite(noise), noise.astype(object), None)  # NULL: unknown
        constant = (
            frame_id,
            int(stamps.data.shape[1]),
            int(rescale.down),
            int(rescale.up),
            int(rescale.target_size),
            fwhm,
            int(bool(stamps.has_background)),
        )
        connection.executemany(
            "INSERT INTO objects (frame_id, stamp_size, rescale_down, rescale_up, target_size,"
            " fwhm, has_background, x, y, noise, data, background)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                constant + row
                for row in zip(
                    x[rows].tolist(),
                    y[rows].tolist(),
                    noise_values.tolist(),
                    data,
                    background,
                    strict=True,
                )
            ),
        )

    # --------------------------------------------------------------------------- labels

    def set_labels(
        self,
        object_ids,
        label,
        source="human",
        *,
        origin="api",
        annotator=None,
        model=None,
        scores=None,
    ):
        """Give ``label`` to objects, as one action (one transaction, one undo step).

        Parameters
        ----------
        object_ids : array_like of int
            Stored objects (from `add_objects`); repeated ids count once.
        label : {1, 0, -1}
            1 real, 0 bogus, -1 cleared (unlabeled).
        source : {'human', 'model'}
            Who gave the label.
        origin : str
            Where it came from, one of `ORIGINS`.
        annotator : str, optional
            Who labeled; `default_annotator()` when None.
        model : str, optional
            The model (name and version) whose scores were on screen.
        scores : array_like of float, optional
            The score each object had on screen, in the order of ``object_ids``.

        Returns
        -------
        int
            The action id. A new action empties the redo stack.
        """
        label = int(label)
        if label not in (REAL, BOGUS, UNLABELED):
            raise RbvetError(f"label must be 1 (real), 0 (bogus) or -1 (cleared), got {label}")
        if source not in SOURCES:
            raise RbvetError(f"label source must be one of {SOURCES}, got {source!r}")
        if origin not in ORIGINS:
            raise RbvetError(f"label origin must be one of {ORIGINS}, got {origin!r}")
        given = np.asarray(object_ids, np.int64).ravel()
        ids, first = np.unique(given, return_index=True)
        if len(ids) == 0:
            raise RbvetError("no objects to label")
        if ids[0] < 0:
            raise RbvetError("cannot label objects that are not in the store (id -1)")
        on_screen = [None] * len(ids)
        if scores is not None:
            scores = np.broadcast_to(np.asarray(scores, np.float64).ravel(), given.shape)
            on_screen = [float(s) if np.isfinite(s) else None for s in scores[first]]
        provenance = {
            "annotator": annotator or default_annotator(),
            "origin": origin,
            "model": model,
        }
        with self._transaction() as connection:
            action_id = self._append_action(
                connection, "set", None, label, source, len(ids), self.session, **provenance
            )
            try:
                connection.execute(
                    "INSERT INTO events (action_id, object_id, label, previous, score)"
                    f" SELECT ?, j.value, ?, {_CURRENT_LABEL.format(object='j.value')}, s.value"
                    " FROM json_each(?) AS j JOIN json_each(?) AS s ON s.key = j.key"
                    " ORDER BY j.key",
                    (action_id, label, _ids_json(ids), json.dumps(on_screen)),
                )
            except sqlite3.IntegrityError:
                raise RbvetError("some object ids are not in the label store", self.path) from None
        return action_id

    @staticmethod
    def _append_action(connection, kind, target, label, source, n_objects, session, **provenance):
        cursor = connection.execute(
            "INSERT INTO actions (kind, target, label, source, time, objects, session,"
            " annotator, origin, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                target,
                label,
                source,
                time.time(),
                int(n_objects),
                session,
                provenance.get("annotator"),
                provenance.get("origin"),
                provenance.get("model"),
            ),
        )
        return int(cursor.lastrowid)

    def _stacks(self, connection):
        """This session's undo stack [(action, applied by), ...] and redo stack, replayed."""
        last, done, redo = self._stack_state
        if self.readonly:  # nothing of a read-only session's own to undo (nor a column)
            return done, redo
        rows = connection.execute(
            "SELECT id, kind, target FROM actions WHERE id > ? AND session = ? ORDER BY id",
            (last, self.session),
        ).fetchall()
        for action_id, kind, target in rows:
            if kind == "set":
                done.append((action_id, action_id))
                redo.clear()
            elif kind == "undo":
                done[:] = [entry for entry in done if entry[0] != target]
                redo.append(target)
            else:
                redo[:] = [entry for entry in redo if entry != target]
                done.append((target, action_id))
            last = action_id
        self._stack_state = (last, done, redo)
        return done, redo

    def undo(self):
        """Undo this session's latest action not yet undone (any depth, bulk included).

        Appends events that give the objects back the labels they had before it.

        Returns
        -------
        ndarray of int64
            The objects whose labels changed back; empty when there is nothing to undo.
        """
        with self._transaction() as connection:
            done, _ = self._stacks(connection)
            if not done:
                return np.zeros(0, np.int64)
            target, applied_by = done[-1]
            count = connection.execute(
                "SELECT objects FROM actions WHERE id = ?", (applied_by,)
            ).fetchone()[0]
            action_id = self._append_action(
                connection,
                "undo",
                target,
                None,
                "human",
                count,
                self.session,
                annotator=default_annotator(),
            )
            connection.execute(
                "INSERT INTO events (action_id, object_id, label, previous)"
                f" SELECT ?, object_id, previous, {_CURRENT_LABEL.format(object='e.object_id')}"
                " FROM events AS e WHERE action_id = ? ORDER BY id",
                (action_id, applied_by),
            )
            ids = self._action_objects(connection, action_id)
            self._stacks(connection)
        return ids

    def redo(self):
        """Apply again the latest undone action (cleared by any new `set_labels`).

        Returns
        -------
        ndarray of int64
            The objects relabeled; empty when there is nothing to redo.
        """
        with self._transaction() as connection:
            _, redo = self._stacks(connection)
            if not redo:
                return np.zeros(0, np.int64)
            target = redo[-1]
            label, source, count = connection.execute(
                "SELECT label, source, objects FROM actions WHERE id = ?", (target,)
            ).fetchone()
            action_id = self._append_action(
                connection,
                "redo",
                target,
                label,
                source,
                count,
                self.session,
                annotator=default_annotator(),
            )
            connection.execute(
                "INSERT INTO events (action_id, object_id, label, previous)"
                f" SELECT ?, object_id, label, {_CURRENT_LABEL.format(object='e.object_id')}"
                " FROM events AS e WHERE action_id = ? ORDER BY id",
                (action_id, target),
            )
            ids = self._action_objects(connection, action_id)
            self._stacks(connection)
        return ids

    @staticmethod
    def _action_objects(connection, action_id):
        rows = connection.execute(
            "SELECT object_id FROM events WHERE action_id = ? ORDER BY id", (action_id,)
        ).fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    @property
    def can_undo(self):
        """True when `undo` would change something."""
        with self._reading() as connection:
            return bool(self._stacks(connection)[0])

    @property
    def can_redo(self):
        """True when `redo` would change something."""
        with self._reading() as connection:
            return bool(self._stacks(connection)[1])

    def labels(self, object_ids):
        """Current labels of objects (1 real, 0 bogus, -1 unlabeled or unknown id).

        Returns
        -------
        ndarray of int8, aligned with ``object_ids``
        """
        ids = np.asarray(object_ids, np.int64).ravel()
        if len(ids) == 0:
            return np.zeros(0, np.int8)
        unique, inverse = np.unique(ids, return_inverse=True)
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_CURRENT_LABEL.format(object='value')} FROM json_each(?) ORDER BY key",
                (_ids_json(unique),),
            ).fetchall()
        return np.array([row[0] for row in rows], dtype=np.int8)[inverse]

    def frame_labels(self, frame_id):
        """Positions and current labels of a frame's stored objects (in storage order).

        To restore labels when a frame is reopened, match the catalog rows to these
        positions (`match_positions`), or call `add_objects` again (it returns the
        existing ids) and then `labels`.

        Returns
        -------
        x, y : ndarray of float64
        labels : ndarray of int8
        """
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT x, y, {_CURRENT_LABEL.format(object='objects.id')} FROM objects"
                " WHERE frame_id = ? ORDER BY id",
                (int(frame_id),),
            ).fetchall()
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return table[:, 0], table[:, 1], table[:, 2].astype(np.int8)

    def set_weak_labels(self, object_ids, labels, source):
        """Record weak labels of objects (one transaction), apart from their labels.

        A weak label never changes an object's label (`labels`), the undo stack or the
        training set of `training_data`; the latest weak label of an object from a source
        is its current one (`weak_labels`).

        Parameters
        ----------
        object_ids : array_like of int
            Stored objects (from `add_objects`).
        labels : array_like of int
            1 real or 0 bogus, one per object (or one for all).
        source : str
            One of `WEAK_SOURCES`.

        Returns
        -------
        int
            Number of weak labels recorded.
        """
        if source not in WEAK_SOURCES:
            raise RbvetError(f"weak label source must be one of {WEAK_SOURCES}, got {source!r}")
        ids = np.asarray(object_ids, np.int64).ravel()
        labels = np.broadcast_to(np.asarray(labels, np.int64).ravel(), ids.shape)
        if np.any((labels != REAL) & (labels != BOGUS)):
            raise RbvetError("weak labels must be 1 (real) or 0 (bogus)")
        if np.any(ids < 0):
            raise RbvetError("cannot label objects that are not in the store (id -1)")
        now = time.time()
        with self._transaction() as connection:
            try:
                connection.executemany(
                    "INSERT INTO weak_labels (object_id, label, source, time, session)"
                    " VALUES (?, ?, ?, ?, ?)",
                    zip(
                        ids.tolist(),
                        labels.tolist(),
                        [source] * len(ids),
                        [now] * len(ids),
                        [self.session] * len(ids),
                        strict=True,
                    ),
                )
            except sqlite3.IntegrityError:
                raise RbvetError("some object ids are not in the label store", self.path) from None
        return len(ids)

    def weak_labels(self, object_ids, source):
        """Current weak labels of objects from one source (-1 where it has none).

        Returns
        -------
        ndarray of int8, aligned with ``object_ids``
        """
        if source not in WEAK_SOURCES:
            raise RbvetError(f"weak label source must be one of {WEAK_SOURCES}, got {source!r}")
        ids = np.asarray(object_ids, np.int64).ravel()
        if len(ids) == 0:
            return np.zeros(0, np.int8)
        unique, inverse = np.unique(ids, return_inverse=True)
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT coalesce((SELECT label FROM weak_labels WHERE object_id = j.value"
                " AND source = ? ORDER BY id DESC LIMIT 1), -1)"
                " FROM json_each(?) AS j ORDER BY j.key",
                (source, _ids_json(unique)),
            ).fetchall()
        return np.array([row[0] for row in rows], dtype=np.int8)[inverse]

    def event_count(self):
        """Number of rows in the label log (it only ever grows)."""
        with self._reading() as connection:
            return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])

    def summary(self):
        """Counts: frames, objects, labeled real and bogus objects, actions, events, and
        under ``weak`` the objects with a weak label from each source (its latest one),
        real and bogus: ``{"repeat": {"real": n, "bogus": m}, "reference": {...}}``."""
        with self._reading() as connection:
            frames, objects, actions, events = connection.execute(
                "SELECT (SELECT count(*) FROM frames), (SELECT count(*) FROM objects),"
                " (SELECT count(*) FROM actions), (SELECT count(*) FROM events)"
            ).fetchone()
            counts = dict(
                connection.execute(
                    "SELECT e.label, count(*) FROM events AS e"
                    " JOIN (SELECT max(id) AS id FROM events GROUP BY object_id) AS latest"
                    " ON latest.id = e.id GROUP BY e.label"
                ).fetchall()
            )
            weak = {source: {"real": 0, "bogus": 0} for source in WEAK_SOURCES}
            if self._has_weak_table(connection):
                for source, label, count in connection.execute(
                    "SELECT w.source, w.label, count(*) FROM weak_labels AS w"
                    " JOIN (SELECT max(id) AS id FROM weak_labels GROUP BY object_id, source)"
                    " AS latest ON latest.id = w.id GROUP BY w.source, w.label"
                ):
                    weak.setdefault(source, {"real": 0, "bogus": 0})[
                        "real" if label == REAL else "bogus"
                    ] = int(count)
        return {
            "path": str(self.path),
            "frames": int(frames),
            "objects": int(objects),
            "real": int(counts.get(REAL, 0)),
            "bogus": int(counts.get(BOGUS, 0)),
            "actions": int(actions),
            "events": int(events),
            "weak": weak,
        }

    def annotator_labels(self, frame_id=None):
        """Each annotator's label in force on each object (for agreement between them).

        An annotator's label of an object is the label of their latest 'set' or 'redo'
        event on it whose action is not undone now; undo events (which restore someone
        else's label) count for no one. Labels without an annotator (stores made before
        schema 2) are left out.

        Parameters
        ----------
        frame_id : int, optional
            Only this frame's objects; all when None.

        Returns
        -------
        object_ids : ndarray (K,) int64
        annotators : ndarray (K,) str
        labels : ndarray (K,) int8
            -1 where the annotator's latest label cleared the object's label.
        x, y : ndarray (K,) float64
            The objects' stored positions.
        """
        query = (
            "SELECT e.id, e.object_id, a.annotator, e.label,"
            " CASE a.kind WHEN 'set' THEN a.id ELSE a.target END, o.x, o.y"
            " FROM events AS e JOIN actions AS a ON a.id = e.action_id"
            " JOIN objects AS o ON o.id = e.object_id"
            " WHERE a.kind IN ('set', 'redo') AND a.annotator IS NOT NULL"
        )
        arguments = ()
        if frame_id is not None:
            query += " AND o.frame_id = ?"
            arguments = (int(frame_id),)
        with self._reading() as connection:
            rows = connection.execute(query + " ORDER BY e.id", arguments).fetchall()
            undone = connection.execute(
                "SELECT target FROM actions AS u WHERE kind = 'undo' AND id = (SELECT max(id)"
                " FROM actions WHERE target = u.target AND kind IN ('undo', 'redo'))"
            ).fetchall()
        if not rows:
            nothing = np.zeros(0, np.float64)
            return np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, np.int8), nothing, nothing
        columns = list(zip(*rows, strict=True))
        in_force = ~np.isin(np.array(columns[4], np.int64), [row[0] for row in undone])
        object_ids = np.array(columns[1], np.int64)[in_force]
        annotators = np.array(columns[2], dtype=str)[in_force]
        labels = np.array(columns[3], np.int8)[in_force]
        x = np.array(columns[5], np.float64)[in_force]
        y = np.array(columns[6], np.float64)[in_force]
        # Rows are in event order: keep each (object, annotator)'s last one.
        names, codes = np.unique(annotators, return_inverse=True)
        keys = object_ids * len(names) + codes
        last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]
        return object_ids[last], annotators[last], labels[last], x[last], y[last]

    def label_models(self):
        """Names of the models whose scores were on screen when labels were given, sorted
        (labels from another model version are still labels, but a card says so)."""
        with self._reading() as connection:
            try:
                rows = connection.execute(
                    "SELECT DISTINCT model FROM actions"
                    " WHERE model IS NOT NULL AND label IN (0, 1)"
                ).fetchall()
            except sqlite3.OperationalError:  # a store from before labels named their model
                return []
        return sorted(str(row[0]) for row in rows)

    # --------------------------------------------------------------------- training set

    def training_data(self, params=None, frame_ids=None, with_stamps=True):
        """The labeled objects as a training set, preprocessed from their stored stamps.

        Parameters
        ----------
        params : PreprocessParams, optional
            The representation of the model to train (``model.params``); default the
            seed's. Each frame's stored rescaling is used.
        frame_ids : sequence of int, optional
            Only these frames; all frames when None.
        with_stamps : bool
            Also return the raw stamps and backgrounds (for `save_training_set`). They
            are NaN-padded to the largest stamp, which for frames with a large FWHM can
            be several times the size of the inputs: pass False when only training.

        Returns
        -------
        TrainingSet
            Rows of objects labeled real or bogus (cleared and unlabeled ones left out),
            in storage order: ``groups`` is the frame id, ``kinds`` the label's source
            ('human' or 'model'), ``fwhm`` the frame's FWHM, with the store's object ids,
            positions, noise and stamp sizes.
        """
        params = params or PreprocessParams()
        query = (
            "SELECT o.id, o.frame_id, o.x, o.y, o.stamp_size, o.rescale_down, o.rescale_up,"
            " o.target_size, o.fwhm, o.noise, o.has_background, o.data, o.background,"
            " e.label, a.source"
            " FROM (SELECT max(id) AS id FROM events GROUP BY object_id) AS latest"
            " JOIN events AS e ON e.id = latest.id"
            " JOIN actions AS a ON a.id = e.action_id"
            " JOIN objects AS o ON o.id = e.object_id"
            " WHERE e.label IN (0, 1)"
        )
        arguments = ()
        if frame_ids is not None:
            query += " AND o.frame_id IN (SELECT value FROM json_each(?))"
            arguments = (_ids_json(frame_ids),)
        with self._reading() as connection:
            rows = connection.execute(query + " ORDER BY o.id", arguments).fetchall()
            frames = {frame["id"]: frame for frame in self.frames()}
        return _training_set_from_rows(rows, params, frames, self.path, with_stamps)

    def weak_training_data(self, params=None, sources=WEAK_SOURCES, frame_ids=None):
        """The weakly labelled objects without a label of their own, as a training set.

        Each object's latest weak label from each of ``sources`` is taken; an object whose
        sources disagree is left out, and so is any object labeled real or bogus
        (`training_data` has it, with the label the user gave: a weak label never
        overrides it). Weak labels are given to stored objects, so each has its stamp.

        Parameters
        ----------
        params : PreprocessParams, optional
            As in `training_data`.
        sources : sequence of str
            Some of `WEAK_SOURCES`.
        frame_ids : sequence of int, optional
            Only these frames; all frames when None.

        Returns
        -------
        TrainingSet
            As `training_data` without raw stamps; ``kinds`` names the sources that agree
            ('repeat', 'reference' or 'repeat+reference'). Empty for a store from before
            weak labels (schema 2 opened read-only).
        """
        params = params or PreprocessParams()
        sources = tuple(sources)
        unknown = sorted(set(sources) - set(WEAK_SOURCES))
        if unknown:
            raise RbvetError(f"weak label sources must be among {WEAK_SOURCES}, got {unknown}")
        # Which sources agree, as 'repeat+reference' (in WEAK_SOURCES order).
        agreeing = " || ".join(
            f"(CASE WHEN sum(source = '{name}') > 0 THEN '+{name}' ELSE '' END)"
            for name in WEAK_SOURCES
        )
        query = (
            "WITH latest AS (SELECT w.object_id, w.label, w.source FROM weak_labels AS w"
            " JOIN (SELECT max(id) AS id FROM weak_labels"
            " WHERE source IN (SELECT value FROM json_each(?)) GROUP BY object_id, source)"
            " AS l ON l.id = w.id),"
            f" agreed AS (SELECT object_id, min(label) AS label, substr({agreeing}, 2) AS kind"
            " FROM latest GROUP BY object_id HAVING min(label) = max(label))"
            " SELECT o.id, o.frame_id, o.x, o.y, o.stamp_size, o.rescale_down, o.rescale_up,"
            " o.target_size, o.fwhm, o.noise, o.has_background, o.data, o.background,"
            " agreed.label, agreed.kind"
            " FROM agreed JOIN objects AS o ON o.id = agreed.object_id"
            f" WHERE {_CURRENT_LABEL.format(object='o.id')} NOT IN (0, 1)"
        )
        arguments = (json.dumps(list(sources)),)
        if frame_ids is not None:
            query += " AND o.frame_id IN (SELECT value FROM json_each(?))"
            arguments += (_ids_json(frame_ids),)
        with self._reading() as connection:
            if self._has_weak_table(connection):
                rows = connection.execute(query + " ORDER BY o.id", arguments).fetchall()
            else:
                rows = []
            frames = {frame["id"]: frame for frame in self.frames()}
        data = _training_set_from_rows(rows, params, frames, self.path, with_stamps=False)
        data.metadata["source"] = "rbvet label store, weak labels"
        data.metadata["weak_sources"] = list(sources)
        return data

    @staticmethod
    def _has_weak_table(connection):
        """Whether the store keeps weak labels (a schema-2 store opened read-only does not)."""
        return bool(
            connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'weak_labels'"
            ).fetchone()[0]
        )


def _training_set_from_rows(rows, params, frames, path, with_stamps):
    size = int(params.target_size)
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 15
    object_ids = np.array(columns[0], np.int64)
    groups = np.array(columns[1], np.int32)
    stamp_size = np.array(columns[4], np.int32)
    down = np.array(columns[5], np.int32)
    up = np.array(columns[6], np.int32)
    target = np.array(columns[7], np.int32)
    fwhm = np.array(columns[8], np.float64).astype(np.float32)  # NULL (None) -> NaN
    noise = np.array(columns[9], np.float64).astype(np.float32)
    has_background = np.array(columns[10], bool)
    if n and np.any(target != size):
        raise RbvetError(
            f"stamps in the label store were cut for {int(target[target != size][0])}-pixel "
            f"inputs; the model takes {size}",
            path,
        )
    largest = int(stamp_size.max()) if n and with_stamps else 0
    stamps = np.full((n, largest, largest), np.nan, np.float32)
    backgrounds = np.full((n, largest, largest), np.nan, np.float32)
    inputs = np.zeros((n, size, size, 2), np.float32)
    # One batch per frame and stamp geometry: the rows the frame's stamps were cut in.
    keys = np.stack([groups, stamp_size, down, up, has_background], axis=1)
    _, batch = np.unique(keys, axis=0, return_inverse=True) if n else (None, np.zeros(0, int))
    for index in np.unique(batch.ravel()):
        rows_in = np.flatnonzero(batch.ravel() == index)
        side = int(stamp_size[rows_in[0]])
        data = decode_stamps([columns[11][i] for i in rows_in], side)
        background = decode_stamps([columns[12][i] for i in rows_in], side)
        batch_stamps = Stamps(
            data=data,
            background=background,
            noise=noise[rows_in],
            missing=np.zeros(len(rows_in), np.float32),
            reason=np.full(len(rows_in), ""),
            rescale=Rescale(down=int(down[rows_in[0]]), up=int(up[rows_in[0]]), target_size=size),
            has_background=bool(has_background[rows_in[0]]),
        )
        inputs[rows_in] = batch_stamps.inputs(params)
        if with_stamps:
            stamps[rows_in, :side, :side] = data
            backgrounds[rows_in, :side, :side] = background
    labels = np.array(columns[13], np.int8)
    used_frames = np.unique(groups).tolist()
    return TrainingSet(
        inputs=inputs,
        labels=labels,
        groups=groups,
        kinds=np.array(columns[14], dtype="U16").reshape(n),
        fwhm=fwhm,
        metadata={
            "source": "rbvet label store",
            "store": str(Path(path).resolve()),
            "preprocessing": params.to_dict(),
            "objects": n,
            "real": int(np.sum(labels == REAL)),
            "bogus": int(np.sum(labels == BOGUS)),
            "frames": [frames[i] for i in used_frames if i in frames],
        },
        object_ids=object_ids,
        x=np.array(columns[2], np.float64),
        y=np.array(columns[3], np.float64),
        stamps=stamps if with_stamps else None,
        backgrounds=backgrounds if with_stamps else None,
        noise=noise,
        stamp_size=stamp_size,
    )


def _file_identity(path):
    """(device, inode) of a file, or None when it is gone."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _open_problem(path, error):
    """Why SQLite could not open a store, in words: it only says "unable to open"."""
    folder = Path(path).resolve().parent
    if not os.access(folder, os.W_OK):
        return (
            f"cannot open the label store for writing: its folder {folder} is read-only "
            "(SQLite writes a journal beside the store); reading commands open it read-only"
        )
    if not os.access(path, os.R_OK):
        return "cannot open the label store: permission denied"
    return f"cannot open the label store ({error})"


def _split_script(script):
    """The statements of a schema script, split with `sqlite3.complete_statement`.

    (``executescript`` would commit; the schema is created inside the opening transaction.)
    """
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
