"""Many frames vetted as one project, without Qt: frames, their state, epochs of a field.

A `VettingProject` is an ordered list of frames (`ProjectFrame`: path, optional catalog,
counts, done mark), a current frame with next/previous, and the `VettingData` of the frames
that were scored. One `rbvet.core.session.VettingSession` (one label store) shows whichever
frame is current; the project only decides which data that is.

Memory stays bounded: the data (pixels, maps, tiles) of the current frame and of
``keep_neighbours`` frames on each side are kept; the others are dropped (`VettingData` of a
2k x 2k frame holds ~50 MB of maps) and rebuilt by scoring again when the user returns. A
small `FrameSummary` (positions, scores, sky positions, label counts) is kept for every
scored frame, so counts and the combined view over all frames never need the pixels.

Frames that overlap on the sky (their WCS footprints), are of one size and from one
instrument are epochs of one field (`group_fields`): for an object, `epoch_stamps` cuts its
surroundings in every epoch and resamples them onto the current frame's pixel grid through
the WCS, ready to blink. Reading the headers (`read_frame_header`) and cutting the epochs are
jobs too (`VettingProject.header_job`, `VettingProject.epoch_stamps_job`), so a window can
run them off its GUI thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.jobs import Progress, run_job
from rbvet.core.session import UNLABELED, Event

__all__ = [
    "FRAME_SUFFIXES",
    "EpochStamp",
    "FrameHeader",
    "FrameSummary",
    "ProjectFrame",
    "VettingProject",
    "combined_order",
    "epoch_stamps",
    "frame_instrument",
    "frame_kind",
    "frames_from_arguments",
    "group_fields",
    "instrument_name",
    "read_footprint",
    "read_frame_header",
]

FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fz", ".fits.gz", ".fit.gz")
"""File names taken as frames when a folder is opened."""
PENDING, SCORING, READY, FAILED = "pending", "scoring", "ready", "failed"
"""Scoring states of a frame: never scored (or dropped), being scored, shown-ready, failed."""
DEFAULT_KEEP_NEIGHBOURS = 2
"""Frames on each side of the current one whose data are kept in memory."""
EPOCH_MARGIN = 3
"""Pixels read around an epoch's window beyond those the aligned stamp needs."""


# ------------------------------------------------------------------------------ the frames


@dataclass
class FrameSummary:
    """What is kept of a scored frame when its data are dropped (a few arrays of N).

    Attributes
    ----------
    x, y, scores : ndarray (N,)
    ra, dec : ndarray (N,) float64 or None
        Sky positions in degrees from the frame's WCS; None without one.
    labels : ndarray (N,) int8
    fwhm : float
    """

    x: np.ndarray
    y: np.ndarray
    scores: np.ndarray
    ra: np.ndarray | None
    dec: np.ndarray | None
    labels: np.ndarray
    fwhm: float

    @classmethod
    def of(cls, data):
        """The summary of a `VettingData` (its arrays are copied where they may change)."""
        ra = dec = None
        wcs = getattr(data.frame, "wcs", None)
        if wcs is not None and len(data):
            ra, dec = wcs.all_pix2world(data.x, data.y, 0)
        return cls(
            x=data.x,
            y=data.y,
            scores=data.scores,
            ra=ra,
            dec=dec,
            labels=data.labels.copy(),
            fwhm=float(data.fwhm),
        )


@dataclass
class ProjectFrame:
    """One frame of a project and what is known of it.

    Attributes
    ----------
    frame_path : str
    catalog_path : str or None
        None: objects are detected.
    status : str
        `PENDING`, `SCORING`, `READY` or `FAILED`.
    error : str
        Why scoring failed.
    objects, scored, labeled : int or None
        Counts; None until the frame was scored once.
    assessed : bool
        The frame's score was assessed by injection-recovery (`set_assessed`; shown in
        the frames dock, set by whoever runs the assessment).
    done : bool
        The user marked the frame vetted.
    footprint : ndarray (4, 2) or None
        Sky corners (RA, Dec degrees) from the header's WCS; None without a WCS.
    shape : tuple of int or None
        (rows, columns) of the image, from its header.
    instrument : str
        ``TELESCOP`` and ``INSTRUME`` of its header ("" when neither is there).
    header_read : bool
        The header was read (footprint, shape, instrument are known).
    field_id : int
        Index of the field (group of overlapping frames of one size and instrument);
        -1 without a WCS (or before the header was read).
    summary : FrameSummary or None
    """

    frame_path: str
    catalog_path: str | None = None
    status: str = PENDING
    error: str = ""
    objects: int | None = None
    scored: int | None = None
    labeled: int | None = None
    assessed: bool = False
    done: bool = False
    footprint: np.ndarray | None = field(default=None, repr=False)
    shape: tuple | None = None
    instrument: str = ""
    header_read: bool = False
    field_id: int = -1
    summary: FrameSummary | None = field(default=None, repr=False)

    @property
    def name(self):
        return os.path.basename(self.frame_path)  # asked for by every table row painted


@dataclass
class FrameHeader:
    """What a frame's header says, read once (`read_frame_header`).

    Attributes
    ----------
    footprint : ndarray (4, 2) or None
        RA, Dec (degrees) of the image corners; None without a celestial WCS.
    shape : tuple of int or None
        (rows, columns); None when no 2-D image was found (or the file is unreadable).
    instrument : str
        ``TELESCOP`` and ``INSTRUME`` joined ("" when neither is there).
    hdu_index : int or None
        The image's HDU.
    wcs : astropy.wcs.WCS or None
        Its celestial WCS.
    """

    footprint: np.ndarray | None = None
    shape: tuple | None = None
    instrument: str = ""
    hdu_index: int | None = None
    wcs: object = None


def read_footprint(path):
    """Sky footprint of a FITS image from its header alone (no pixels are read).

    Returns
    -------
    footprint : ndarray (4, 2) float64 or None
        RA, Dec (degrees) of the image corners; None when the header has no celestial WCS.
    shape : tuple of int or None
        (rows, columns) of the image; None when no 2-D image was found.
    """
    header = read_frame_header(path)
    return header.footprint, header.shape


def read_frame_header(path, wcs=True):
    """A FITS image's `FrameHeader` from its headers alone (no pixels are read).

    Parameters
    ----------
    path : str or Path
    wcs : bool
        Also parse the WCS and compute the footprint (the slow part, ~20 ms a frame).

    Returns
    -------
    FrameHeader
        Empty (shape None) when the file cannot be read or holds no 2-D image.
    """
    from astropy.io import fits

    from rbvet.core.io.frame import _celestial_wcs

    try:
        with fits.open(path, memmap=True) as hdus:
            index = _image_hdu(hdus)
            if index is None:
                return FrameHeader()
            header = hdus[index].header
            shape = tuple(int(n) for n in hdus[index].shape[-2:])
            instrument = instrument_name(header, hdus[0].header)
            celestial = _celestial_wcs(header) if wcs else None
    except (OSError, ValueError, TypeError, IndexError):
        return FrameHeader()
    footprint = None if celestial is None else sky_footprint(celestial, shape)
    return FrameHeader(footprint, shape, instrument, index, celestial)


def instrument_name(header, primary=None):
    """``TELESCOP`` and ``INSTRUME`` of an image's header joined ("" when neither is there);
    a keyword missing from it is taken from the file's ``primary`` header (multi-extension
    files keep them there)."""
    primary = {} if primary is None else primary
    names = [
        str(header.get(key, primary.get(key, ""))).strip() for key in ("TELESCOP", "INSTRUME")
    ]
    return " ".join(n for n in names if n)


def frame_instrument(frame):
    """`instrument_name` of a read `rbvet.core.io.frame.Frame`: its image header's, with the
    primary header of its file for what that lacks (not read for a frame of HDU 0 or
    without a file)."""
    from astropy.io import fits

    header = frame.header if frame.header is not None else {}
    primary = None
    if frame.path and frame.hdu not in (None, 0):
        try:
            primary = fits.getheader(frame.path, 0)
        except (OSError, ValueError, TypeError, IndexError):
            primary = None  # gone since it was read: the image header alone
    return instrument_name(header, primary)


def frame_kind(instrument, shape):
    """What frames must share to be epochs of one field, or to vouch for each other's
    objects (`group_fields`' ``kinds``): one instrument (`instrument_name`) and one image
    size (rows, columns), so that no camera or binning is compared with another's pixels."""
    return (str(instrument or ""), None if shape is None else tuple(int(n) for n in shape))


def sky_footprint(wcs, shape):
    """RA, Dec (degrees, ndarray (4, 2)) of the outer corners of an image of ``shape``
    (rows, columns) with the celestial WCS ``wcs``, for `footprints_overlap`."""
    rows, cols = shape
    left, bottom, right, top = -0.5, -0.5, cols - 0.5, rows - 0.5
    corners = np.array([[left, bottom], [right, bottom], [right, top], [left, top]])
    ra, dec = wcs.all_pix2world(corners[:, 0], corners[:, 1], 0)
    return np.column_stack([ra, dec])


def _image_hdu(hdus):
    """Index of the first HDU holding a 2-D image (tile-compressed ones included), or
    None; only headers are read."""
    from astropy.io import fits

    for index, hdu in enumerate(hdus):
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and not isinstance(
            hdu, fits.CompImageHDU
        ):
            continue
        shape = getattr(hdu, "shape", ()) or ()
        if len([n for n in shape if n > 1]) == 2:
            return index
    return None


def _tangent(ra, dec, ra0, dec0):
    """Gnomonic projection (degrees) of sky positions about (ra0, dec0)."""
    ra, dec, ra0, dec0 = (np.deg2rad(np.asarray(v, np.float64)) for v in (ra, dec, ra0, dec0))
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cos_c
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    return np.rad2deg(xi), np.rad2deg(eta)


def _convex_overlap(a, b):
    """Whether two convex quadrilaterals (4, 2) intersect (separating-axis test)."""
    for polygon in (a, b):
        edges = np.roll(polygon, -1, axis=0) - polygon
        normals = np.column_stack([-edges[:, 1], edges[:, 0]])
        pa, pb = a @ normals.T, b @ normals.T
        if np.any((pa.max(0) < pb.min(0)) | (pb.max(0) < pa.min(0))):
            return False
    return True


def footprints_overlap(a, b):
    """Whether two sky footprints (4, 2 degrees) overlap, on a tangent plane at ``a``'s
    centre (exact for the small fields of one instrument, robust across RA = 0)."""
    ra = np.deg2rad(a[:, 0])
    centre = (float(np.rad2deg(np.arctan2(np.sin(ra).sum(), np.cos(ra).sum()))), a[:, 1].mean())
    planes = [np.column_stack(_tangent(p[:, 0], p[:, 1], *centre)) for p in (a, b)]
    if not all(np.all(np.isfinite(p)) for p in planes):
        return False  # more than 90 degrees apart
    return _convex_overlap(*planes)


def group_fields(footprints, kinds=None):
    """Group frames into fields: frames whose footprints overlap (directly or through a
    chain of overlaps) share a field.

    Parameters
    ----------
    footprints : list of ndarray (4, 2) or None
    kinds : list of hashable, optional
        Only frames of one kind are grouped (`frame_kind`: instrument and image size, so
        an epoch is never blinked against another camera's or binning's pixels).

    Returns
    -------
    ndarray (M,) int
        Field index of each frame, numbered in order of first appearance; -1 for a frame
        without a footprint (no WCS: grouped with nothing).
    """
    n = len(footprints)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    kinds = [None] * n if kinds is None else list(kinds)
    known = [i for i in range(n) if footprints[i] is not None]
    for k, i in enumerate(known):
        for j in known[k + 1 :]:
            if kinds[i] != kinds[j] or root(i) == root(j):
                continue
            if footprints_overlap(footprints[i], footprints[j]):
                parent[root(j)] = root(i)
    fields = np.full(n, -1, int)
    numbers = {}
    for i in known:
        fields[i] = numbers.setdefault(root(i), len(numbers))
    return fields


def frames_from_arguments(paths=(), list_file=None):
    """The (frame, catalog) pairs a command line names: frames, folders and a list file.

    A folder stands for the FITS images in it (sorted by name; files that hold only
    tables are left out). A list file has one frame a line, optionally followed by its
    catalog; blank lines and ``#`` comments are skipped; relative paths are relative to
    the list file.

    Returns
    -------
    list of (str, str or None)

    Raises
    ------
    RbvetError
        A path that does not exist, a folder without FITS images, an unreadable list file.
    """
    pairs = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.name.lower().endswith(FRAME_SUFFIXES)
            )
            found = [p for p in found if not _holds_only_tables(p)]
            if not found:
                raise RbvetError(f"{path}: no FITS images in this folder")
            pairs += [(str(p), None) for p in found]
        elif path.exists():
            pairs.append((str(path), None))
        else:
            raise RbvetError(f"{path}: no such file or folder")
    if list_file is not None:
        pairs += _read_list_file(list_file)
    return pairs


def _is_fits_name(path):
    return path.is_file() and path.name.lower().endswith(FRAME_SUFFIXES)


def _read_list_file(list_file):
    base = Path(list_file).parent
    try:
        lines = Path(list_file).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise RbvetError(f"{list_file}: cannot read the list of frames ({error})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise RbvetError(f"{list_file}:{number}: expected 'FRAME [CATALOG]', got {line!r}")
        frame, catalog = (base / os.path.expanduser(w) for w in words + [""] * (2 - len(words)))
        if not frame.exists():
            raise RbvetError(f"{list_file}:{number}: {frame}: no such file")
        pairs.append((str(frame), str(catalog) if len(words) == 2 else None))
    if not pairs:
        raise RbvetError(f"{list_file}: names no frames")
    return pairs


def _holds_only_tables(path):
    from rbvet.core.io.frame import check_fits_headers

    if read_frame_header(path, wcs=False).shape is not None:
        return False
    try:
        check_fits_headers(path)
    except RbvetError:
        return False  # not ours to judge: the frame reader will say what is wrong
    return True


def _read_headers(paths):
    """Job: the `FrameHeader` of each path, a `Progress` after each."""
    headers = []
    for done, path in enumerate(paths):
        yield Progress(done, len(paths), "Reading the headers")
        headers.append(read_frame_header(path))
    return headers


# ----------------------------------------------------------------------------- the project


class VettingProject:
    """An ordered list of frames, the current one, and the data of those in memory.

    Parameters
    ----------
    frames : iterable of (str, str or None)
        Frame paths and their catalogs (None: detect the objects).
    keep_neighbours : int
        Data kept for this many frames on each side of the current one.

    Attributes
    ----------
    frames : list of ProjectFrame
    current : int
        Index of the current frame (-1 for an empty project).
    notes : list of str
        What the user should know about the set (frames without a WCS, mixed sizes or
        instruments).

    Events
    ------
    frame_changed(int)
        The state or counts of a frame changed.
    current_changed(int)
        Another frame became current.
    frames_added()
    fields_changed()
        Headers were read: fields and notes are (re)made.
    """

    def __init__(self, frames=(), keep_neighbours=DEFAULT_KEEP_NEIGHBOURS):
        self.frame_changed = Event()
        self.current_changed = Event()
        self.frames_added = Event()
        self.fields_changed = Event()
        self.frames = []
        self.current = -1
        self.keep_neighbours = int(keep_neighbours)
        self.notes = []
        self._data = {}
        self._images = {}  # index -> (hdu index, WCS, shape): where to read epoch windows
        self.add_frames(frames)

    def __len__(self):
        return len(self.frames)

    # ------------------------------------------------------------------ frames

    def add_frames(self, pairs, read_headers=True):
        """Append frames (frame, catalog) pairs; a frame already in the project is skipped.

        Reads each header for its footprint and regroups the fields; with
        ``read_headers=False`` the frames are added at once, without fields, and the
        caller reads their headers later (`header_job`, then `set_headers`: a window does
        this off its GUI thread).

        Returns
        -------
        list of int
            Indices of the frames added.
        """
        known = {os.path.realpath(f.frame_path) for f in self.frames}
        added = []
        for frame_path, catalog_path in pairs:
            real = os.path.realpath(frame_path)
            if real in known:
                continue
            known.add(real)
            self.frames.append(
                ProjectFrame(str(frame_path), None if catalog_path is None else str(catalog_path))
            )
            added.append(len(self.frames) - 1)
        if added:
            if self.current < 0:
                self.current = 0
            self.frames_added.emit()
            if read_headers:
                self.set_headers(added, run_job(self.header_job(added)))
        return added

    def header_job(self, indices):
        """Read the headers of frames ``indices`` (`read_frame_header`). A job: yields
        `Progress` a frame, returns the list of `FrameHeader` for `set_headers`."""
        paths = [self.frames[i].frame_path for i in indices]  # taken now, not in a thread
        return _read_headers(paths)

    def set_headers(self, indices, headers):
        """Record the headers read for frames ``indices`` and regroup the fields.

        Emits ``frame_changed`` for each frame whose field changed, and ``fields_changed``.
        """
        for index, header in zip(indices, headers, strict=True):
            if not 0 <= index < len(self.frames):
                continue
            frame = self.frames[index]
            frame.footprint, frame.shape = header.footprint, header.shape
            frame.instrument, frame.header_read = header.instrument, True
            if header.hdu_index is not None:
                self._images[index] = (header.hdu_index, header.wcs, header.shape)
        before = [f.field_id for f in self.frames]
        self._regroup()
        for index, (old, frame) in enumerate(zip(before, self.frames, strict=True)):
            if frame.field_id != old:
                self.frame_changed.emit(index)
        self.fields_changed.emit()

    def _regroup(self):
        read = [f for f in self.frames if f.header_read]
        fields = group_fields(
            [f.footprint if f.header_read else None for f in self.frames],
            kinds=[frame_kind(f.instrument, f.shape) for f in self.frames],
        )
        for frame, number in zip(self.frames, fields, strict=True):
            frame.field_id = int(number)
        self.notes = []
        no_wcs = [f.name for f in read if f.footprint is None and f.shape is not None]
        if no_wcs:
            self.notes.append(
                f"{len(no_wcs)} of {len(self.frames)} frames have no WCS and are grouped with "
                f"no other: {', '.join(no_wcs[:5])}{' …' if len(no_wcs) > 5 else ''}"
            )
        shapes = {f.shape for f in read if f.shape is not None}
        if len(shapes) > 1:
            sizes = ", ".join(f"{c}x{r}" for r, c in sorted(shapes))
            self.notes.append(
                f"frames of different sizes in one project: {sizes}; epochs are grouped "
                "among frames of one size only"
            )
        instruments = {f.instrument for f in read if f.shape is not None}
        if len(instruments) > 1:
            names = ", ".join(name or "unnamed" for name in sorted(instruments))
            self.notes.append(
                f"frames of {len(instruments)} instruments in one project: {names}; epochs "
                "are grouped among frames of one instrument only"
            )

    def epochs(self, index):
        """Indices of the frames in the field of frame ``index`` (itself first); only
        itself when it has no WCS."""
        number = self.frames[index].field_id
        if number < 0:
            return [index]
        others = [i for i, f in enumerate(self.frames) if f.field_id == number and i != index]
        return [index] + others

    def fields(self):
        """Number of fields (groups of frames overlapping on the sky)."""
        return len({f.field_id for f in self.frames if f.field_id >= 0})

    # ------------------------------------------------------------------ current frame

    def go_to(self, index):
        """Make frame ``index`` current (clipped to the list); drops far frames' data.

        Returns
        -------
        int
            The current index.
        """
        if not self.frames:
            return -1
        index = int(np.clip(index, 0, len(self.frames) - 1))
        if index != self.current:
            self.current = index
            self._drop_far()
            self.current_changed.emit(index)
        return index

    def next(self):
        """Go to the next frame (stays on the last); returns the current index."""
        return self.go_to(self.current + 1)

    def previous(self):
        """Go to the previous frame (stays on the first); returns the current index."""
        return self.go_to(self.current - 1)

    def data(self, index=None):
        """The `VettingData` of frame ``index`` (the current one by default), or None when
        it is not in memory (never scored, failed, or dropped)."""
        return self._data.get(self.current if index is None else index)

    def next_to_score(self):
        """The frame to score next: the current one if it has no data, then the first
        never-scored frame after it, then before it; None when nothing is waiting.

        Dropped frames are rebuilt only when they become current again.
        """
        if not self.frames:
            return None
        current = self.frames[self.current]
        if self.current not in self._data and current.status in (PENDING, SCORING):
            return self.current
        order = list(range(self.current + 1, len(self.frames))) + list(range(self.current))
        for i in order:
            if self.frames[i].status == PENDING and self.frames[i].summary is None:
                return i
        return None

    def set_scoring(self, index):
        """Mark frame ``index`` as being scored."""
        self.frames[index].status = SCORING
        self.frame_changed.emit(index)

    def attach(self, index, data):
        """Keep the data of a scored frame, update its counts and drop far frames' data."""
        frame = self.frames[index]
        self._data[index] = data
        frame.status, frame.error = READY, ""
        frame.summary = FrameSummary.of(data)
        frame.objects = len(data)
        frame.scored = int(np.isfinite(data.scores).sum())
        frame.labeled = int((data.labels != UNLABELED).sum())
        self._drop_far()
        self.frame_changed.emit(index)

    def fail(self, index, message):
        """Scoring frame ``index`` failed: kept in the list with the reason."""
        frame = self.frames[index]
        frame.status, frame.error = FAILED, str(message)
        self.frame_changed.emit(index)

    def failed(self):
        """Indices of the frames whose scoring failed."""
        return [i for i, frame in enumerate(self.frames) if frame.status == FAILED]

    def retry(self, indices=None):
        """Failed frames wait to be scored again (`next_to_score`), as if they never failed.

        A frame that failed because its file was missing or unreadable when it was reached
        may be there now: its header is to be read again (``header_read`` is cleared, and
        its field with it until `set_headers`), so that once scored it joins its field's
        epochs like any other frame.

        Parameters
        ----------
        indices : iterable of int, optional
            The frames to retry (those that did not fail are left alone); all the failed
            ones by default.

        Returns
        -------
        list of int
            The frames that wait again (read their headers: `header_job`, `set_headers`).
        """
        indices = self.failed() if indices is None else sorted(set(indices))
        retried = [
            i for i in indices if 0 <= i < len(self.frames) and self.frames[i].status == FAILED
        ]
        for index in retried:
            frame = self.frames[index]
            frame.status, frame.error = PENDING, ""
            frame.footprint, frame.shape, frame.instrument = None, None, ""
            frame.header_read, frame.field_id, frame.summary = False, -1, None
            self._images.pop(index, None)
            self.frame_changed.emit(index)
        return retried

    def cancel_scoring(self, index):
        """Scoring frame ``index`` was cancelled: it waits again."""
        frame = self.frames[index]
        if frame.status == SCORING:
            frame.status = PENDING
            self.frame_changed.emit(index)

    def labels_changed(self, index, labels):
        """The labels of frame ``index`` are now ``labels`` (its data's own array)."""
        frame = self.frames[index]
        frame.labeled = int((labels != UNLABELED).sum())
        if frame.summary is not None and len(frame.summary.labels) == len(labels):
            frame.summary.labels = labels.copy()
        self.frame_changed.emit(index)

    def set_done(self, index, done=True):
        """Mark frame ``index`` vetted (or not)."""
        self.frames[index].done = bool(done)
        self.frame_changed.emit(index)

    def set_assessed(self, index, assessed=True):
        """Record that frame ``index``'s scores were assessed by injection-recovery."""
        self.frames[index].assessed = bool(assessed)
        self.frame_changed.emit(index)

    def drop(self, index):
        """Drop the data of frame ``index`` (it is scored again when needed)."""
        if self._data.pop(index, None) is not None:
            frame = self.frames[index]
            if frame.status == READY:
                frame.status = PENDING
            self.frame_changed.emit(index)

    def _drop_far(self):
        """Drop the data of frames further than ``keep_neighbours`` from the current one."""
        for index in list(self._data):
            if abs(index - self.current) > self.keep_neighbours:
                self.drop(index)  # rebuilt when it is current again

    def in_memory(self):
        """Indices of the frames whose data are kept."""
        return sorted(self._data)

    # ------------------------------------------------------------------ epochs

    def epoch_stamps(self, object_index, size, index=None):
        """The surroundings of an object of frame ``index`` in every epoch of its field,
        on that frame's pixel grid (`epoch_stamps`).

        Epochs whose data are in memory are cut from them; from the others only the small
        window the stamp needs is read from the file, so this stays fast with many epochs.

        Returns
        -------
        list of EpochStamp
            The frame's own first, then the other epochs in project order.
        """
        return run_job(self.epoch_stamps_job(object_index, size, index))

    def epoch_stamps_job(self, object_index, size, index=None):
        """`epoch_stamps` as a job to run in another thread: what it needs of the
        project (data in memory, files, WCS) is taken now, in the caller's thread; the
        job reads the windows and resamples, yielding `Progress` an epoch.

        Returns
        -------
        generator
            Returns the list of `EpochStamp`.
        """
        index = self.current if index is None else index
        data = self._data[index]
        x, y = float(data.x[object_index]), float(data.y[object_index])
        sources = []
        for i in self.epochs(index)[1:]:
            kept = self._data.get(i)
            if kept is not None and kept.frame is not None:
                sources.append((i, kept.frame))
            else:
                sources.append((i, (self.frames[i].frame_path, self._images.get(i))))
        return self._cut_epochs(index, data.frame, x, y, int(size), sources)

    def _cut_epochs(self, index, reference, x, y, size, sources):
        frames, offsets, unread = [reference], [(0, 0)], {}
        for done, (i, source) in enumerate(sources):
            yield Progress(done, len(sources), "Cutting the epochs")
            if not isinstance(source, tuple):
                frames.append(source)
                offsets.append((0, 0))
                continue
            window, offset, problem = _epoch_window(*source, reference, x, y, size)
            frames.append(window)
            offsets.append(offset)
            if problem:
                unread[i] = problem
        stamps = epoch_stamps(frames, x, y, size)
        indices = [index] + [i for i, _ in sources]
        for stamp, i, (dx, dy) in zip(stamps, indices, offsets, strict=True):
            stamp.name, stamp.frame_index = self.frames[i].name, i
            stamp.problem = unread.get(i, "")
            if stamp.position is not None:
                stamp.position = (stamp.position[0] + dx, stamp.position[1] + dy)
        return stamps

    # ------------------------------------------------------------------ all frames

    def combined(self, ascending=True):
        """Objects of every scored frame in one order (`combined_order`)."""
        summaries = [f.summary for f in self.frames]
        return combined_order(summaries, ascending=ascending)

    def totals(self):
        """(frames scored, objects, labeled, frames done)."""
        scored = [f for f in self.frames if f.objects is not None]
        return (
            len(scored),
            sum(f.objects for f in scored),
            sum(f.labeled or 0 for f in scored),
            sum(f.done for f in self.frames),
        )


def combined_order(summaries, ascending=True):
    """Objects of many frames sorted together by score (unscored last).

    Parameters
    ----------
    summaries : list of FrameSummary or None
        None for a frame not scored yet (it contributes nothing).
    ascending : bool
        Lowest scores first (the most doubtful detections of the night) when True.

    Returns
    -------
    frames, objects : ndarray (M,) intp
        Frame index and object index of each object, in order.
    scores : ndarray (M,) float32
    """
    parts = [(i, s) for i, s in enumerate(summaries) if s is not None and len(s.scores)]
    if not parts:
        empty = np.zeros(0, np.intp)
        return empty, empty.copy(), np.zeros(0, np.float32)
    frames = np.concatenate([np.full(len(s.scores), i, np.intp) for i, s in parts])
    objects = np.concatenate([np.arange(len(s.scores), dtype=np.intp) for _, s in parts])
    scores = np.concatenate([np.asarray(s.scores, np.float32) for _, s in parts])
    key = np.where(np.isfinite(scores), scores if ascending else -scores, np.inf)
    order = np.argsort(key, kind="stable")
    return frames[order], objects[order], scores[order]


# ------------------------------------------------------------------------------ epochs


@dataclass
class EpochStamp:
    """An object's surroundings in one epoch, resampled onto the reference frame's grid.

    Attributes
    ----------
    image : ndarray (S, S) float32
        NaN where the epoch does not cover the reference pixel.
    origin : (float, float)
        Reference-frame (x, y) of ``image[0, 0]``'s centre.
    position : (float, float) or None
        The object's pixel position in this epoch's own frame; None off its image.
    name : str
    frame_index : int
    problem : str
        Why the epoch could not be read: "file missing" or "file unreadable" (it vanished
        or changed after the project was opened); "" when it was read.
    """

    image: np.ndarray
    origin: tuple
    position: tuple | None
    name: str = ""
    frame_index: int = -1
    problem: str = ""

    @property
    def covered(self):
        """The epoch covers the object's position."""
        return self.position is not None


def _epoch_window(path, image, reference, x, y, size):
    """The part of the frame at ``path`` that an aligned stamp of ``size`` around the
    reference's (x, y) needs, as a small `Frame` with its WCS.

    Parameters
    ----------
    image : (hdu index, WCS, shape) or None
        From the frame's header, when it was read; else read here.

    Returns
    -------
    frame : Frame or None
        None when it does not cover the stamp or cannot be read.
    offset : (int, int)
        (column, row) of the window in the file's image.
    problem : str
        Why it could not be read ("" when it could, or merely does not cover the stamp).
    """
    from astropy.io import fits

    from rbvet.core.io.frame import frame_from_array

    if reference.wcs is None:
        return None, (0, 0), ""
    if image is None:
        header = read_frame_header(path)
        if header.shape is None:
            problem = "file missing" if not os.path.exists(path) else "file unreadable"
            return None, (0, 0), problem
        image = (header.hdu_index, header.wcs, header.shape)
    hdu_index, wcs, shape = image
    if wcs is None:
        return None, (0, 0), ""
    half = size / 2 + EPOCH_MARGIN
    corner_x = x + np.array([-half, half, half, -half])
    corner_y = y + np.array([-half, -half, half, half])
    ex, ey = wcs.all_world2pix(*reference.wcs.all_pix2world(corner_x, corner_y, 0), 0)
    col0, col1 = max(0, int(np.floor(ex.min()))), min(shape[1], int(np.ceil(ex.max())) + 1)
    row0, row1 = max(0, int(np.floor(ey.min()))), min(shape[0], int(np.ceil(ey.max())) + 1)
    if col1 - col0 < 2 or row1 - row0 < 2:
        return None, (0, 0), ""
    try:
        with fits.open(path, memmap=True) as hdus:
            window = np.array(hdus[hdu_index].section[row0:row1, col0:col1], np.float32)
    except FileNotFoundError:
        return None, (0, 0), "file missing"
    except (OSError, ValueError, TypeError, IndexError):
        return None, (0, 0), "file unreadable"
    frame = frame_from_array(
        window, wcs=wcs[row0:row1, col0:col1], saturation=False, use_datasec=False
    )
    return frame, (col0, row0), ""


def epoch_stamps(frames, x, y, size):
    """Cut the surroundings of a sky position in several frames, aligned through the WCS.

    The first frame is the reference: its stamp is centred on pixel (``x``, ``y``). For
    each other frame the reference stamp's pixel centres are mapped to the sky (reference
    WCS) and into that frame (its WCS); a stamp is cut there with
    `rbvet.core.cutouts.stamps.cut_stamps` and resampled (bilinear) onto the reference
    grid, so that stars stay in place when the stamps are blinked, whatever the pointing
    offsets, rotation or scale between the epochs.

    Parameters
    ----------
    frames : list of rbvet.core.io.frame.Frame or None
        The reference first; None or a frame without a WCS gives an all-NaN stamp.
    x, y : float
        0-based position in the reference frame.
    size : int
        Side of the square stamps (pixels of the reference frame).

    Returns
    -------
    list of EpochStamp
    """
    from scipy.ndimage import map_coordinates

    from rbvet.core.cutouts.preprocess import Rescale
    from rbvet.core.cutouts.stamps import cut_stamps, stamp_origins

    size = int(size)
    reference = frames[0]
    whole = Rescale(target_size=size)
    col0, row0 = (float(v[0]) for v in stamp_origins([x], [y], whole))
    own = cut_stamps(reference, [x], [y], whole)
    image = np.where(own.missing[0] < 1.0, own.data[0], np.nan).astype(np.float32)
    stamps = [EpochStamp(image, (col0, row0), (x, y))]
    grid_rows, grid_cols = np.mgrid[0:size, 0:size].astype(np.float64)
    grid_x, grid_y = grid_cols + col0, grid_rows + row0
    sky = None
    if reference.wcs is not None:
        sky = reference.wcs.all_pix2world(grid_x.ravel(), grid_y.ravel(), 0)
        centre_sky = reference.wcs.all_pix2world([x], [y], 0)
    for frame in frames[1:]:
        blank = np.full((size, size), np.nan, np.float32)
        if sky is None or frame is None or frame.wcs is None:
            stamps.append(EpochStamp(blank, (col0, row0), None))
            continue
        ex, ey = frame.wcs.all_world2pix(*sky, 0)
        (cx,), (cy,) = frame.wcs.all_world2pix(*centre_sky, 0)
        height, width = frame.shape
        on_image = -0.5 <= cx < width - 0.5 and -0.5 <= cy < height - 0.5
        # A stamp of the epoch around the mapped centre, wide enough for the whole grid.
        reach = int(np.ceil(np.nanmax(np.hypot(ex - cx, ey - cy)))) + 2
        cut = Rescale(target_size=2 * reach + 1)
        ecol0, erow0 = (float(v[0]) for v in stamp_origins([cx], [cy], cut))
        piece = cut_stamps(frame, [cx], [cy], cut)
        values = np.where(_valid(frame, ecol0, erow0, cut.stamp_size), piece.data[0], np.nan)
        resampled = map_coordinates(
            values, [ey - erow0, ex - ecol0], order=1, mode="constant", cval=np.nan
        ).reshape(size, size)
        stamps.append(
            EpochStamp(
                resampled.astype(np.float32),
                (col0, row0),
                (float(cx), float(cy)) if on_image else None,
            )
        )
    return stamps


def _valid(frame, col0, row0, size):
    """Usable pixels of a stamp's window (inside the image and not masked)."""
    rows = np.arange(size) + int(row0)
    cols = np.arange(size) + int(col0)
    height, width = frame.shape
    inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    clipped = frame.mask[np.clip(rows, 0, height - 1)[:, None], np.clip(cols, 0, width - 1)]
    return inside & ~clipped
