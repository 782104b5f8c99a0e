"""Labeling in the window: the user's labels written to the label store as they are given.

`LabelController` sits between the grid's keys and `rbvet.core.learn.labels.LabelStore`. It
knows which store object each row of the current frame's catalog is (an array of store
ids, -1 for objects not stored yet), and it turns each user action into one labeling
action of the store (one undo step), then shows the result through `VettingState`, so
every panel follows.

- A frame is known by the hash of its pixels: reopening it (under any name, from any
  catalog) matches the catalog rows to the stored objects by position, within
  `MATCH_TOLERANCE` pixels, and shows their labels again (`restore`).
- An object is stored the first time it is labeled, with its raw stamp cut at that
  moment (`rbvet.core.cutouts.stamps.cut_stamps`, vectorised; about 0.1 ms per object).
- The store is opened lazily: a default store that does not exist yet is only created
  when the first label is given, so looking at frames leaves no file behind.
- Store errors (locked, damaged, not a label store) never escape: they are emitted as
  ``errorOccurred`` one-liners and the action does nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QGuiApplication

from rbvet.core.errors import RbvetError
from rbvet.core.learn.labels import SOURCES
from rbvet.gui.state import BOGUS, REAL, UNLABELED, label_name

MATCH_TOLERANCE = 0.5
"""Pixels between a catalog position and a stored one that still make them one object."""
STORE_TIMEOUT = 2.0
"""Seconds to wait for another program's write to the store before giving up."""
HUMAN, MODEL = SOURCES
"""Label sources in the store: given one by one, or by the score threshold in bulk."""
BUSY_CURSOR_OBJECTS = 500
"""Storing this many new objects at once shows a wait cursor (about 0.4 ms each)."""


@contextlib.contextmanager
def busy_cursor(busy=True):
    """Show the wait cursor while the block runs (when ``busy``)."""
    if not busy:
        yield
        return
    QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QGuiApplication.restoreOverrideCursor()


class LabelController(QObject):
    """Labels of the current frame, kept in a `LabelStore`.

    Parameters
    ----------
    state : VettingState
    store_path : str or Path, optional
        The label store; the user's default (``labels.sqlite`` in the user data folder,
        see `rbvet.core.learn.labels.default_store_path`) when None. Nothing is opened until
        `open_store` or the first use.
    parent : QObject, optional

    Attributes
    ----------
    store_path : Path
    frame_id : int or None
        The current frame's id in the store; None while it is not stored.
    object_ids : ndarray (N,) int64
        Store id of each object of the current frame, -1 where not stored yet.

    Signals
    -------
    errorOccurred(str)
        A one-line message: the store could not be opened or written.
    message(str)
        A short status message about the last action ("Undid 5 labels", ...).
    countsChanged()
        Labels changed (in the store or on this frame): counts may differ.
    storeChanged()
        Another store was opened (or the current one failed to open).
    """

    errorOccurred = pyqtSignal(str)
    message = pyqtSignal(str)
    countsChanged = pyqtSignal()
    storeChanged = pyqtSignal()

    def __init__(self, state, store_path=None, parent=None):
        super().__init__(parent)
        self.state = state
        self._default_path = store_path is None
        self.store_path = self._resolve(store_path)
        self._store = None
        self.store_error = ""
        self.frame_id = None
        self.object_ids = np.empty(0, np.int64)
        self._data = None
        self._store_x = np.empty(0, np.float64)
        self._store_y = np.empty(0, np.float64)

    @staticmethod
    def _resolve(path):
        from rbvet.core.learn.labels import default_store_path

        return Path(path).expanduser() if path is not None else default_store_path()

    # ---------------------------------------------------------------------- the store

    @property
    def store(self):
        """The open `LabelStore`, or None (not opened yet, missing or unusable)."""
        return self._store

    def open_store(self, path=None, create=False):
        """Use the label store at ``path`` (the current path when None).

        The labels of the current frame are then shown from that store. An existing file
        is opened at once (errors go to ``errorOccurred``); a missing one is created now
        with ``create``, otherwise when the first label is given.

        Returns
        -------
        bool
            False when the store could not be opened.
        """
        if path is not None:
            self._default_path = False
            self.store_path = self._resolve(path)
        self.close()
        self.store_error = ""
        ok = True
        if create or self.store_path.exists():
            ok = self._connect(create=create) is not None
        if self._data is not None and self._data is self.state.data:
            self.restore(self._data)
        self.storeChanged.emit()
        self.countsChanged.emit()
        return ok

    def close(self):
        """Close the store connection (every label is already on disk)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _connect(self, create):
        """Open the store (creating it if ``create``); None, with an error emitted, if not."""
        from rbvet.core.learn.labels import LabelStore

        if self._store is not None:
            return self._store
        try:
            self._store = LabelStore(
                None if self._default_path else self.store_path,
                create=create,
                timeout=STORE_TIMEOUT,
            )
        except RbvetError as error:
            self._fail(error)
            return None
        self.store_error = ""
        return self._store

    def _existing_store(self):
        """The store if its file exists and opens; never creates it."""
        if self._store is None and self.store_path.exists() and not self.store_error:
            self._connect(create=False)
        return self._store

    def _writable_store(self):
        """The store, created if needed; None (error emitted) when it cannot be used."""
        if self._store is None:
            self._connect(create=True)
        return self._store

    def _fail(self, error):
        self.store_error = str(error)
        self.errorOccurred.emit(str(error))

    def store_summary(self):
        """Counts of the whole store (`LabelStore.summary`), or None when it is not open."""
        store = self._existing_store()
        if store is None:
            return None
        try:
            return store.summary()
        except RbvetError as error:
            self._fail(error)
            return None

    # ---------------------------------------------------------------- the frame shown

    def restore(self, data):
        """Take ``data`` (a newly classified `VettingData`) as the current frame and fill
        its labels from the store.

        Catalog rows are matched to the frame's stored objects by position (within
        `MATCH_TOLERANCE` px; one vectorised nearest-neighbour query) and get their
        stored labels. Their store ids are looked up when they are next labeled (by the
        stored positions, so no object is stored twice). When ``data`` is already shown,
        the change is announced through `VettingState.update_labels`. Nothing is written.

        Returns
        -------
        int
            Number of labeled objects found.
        """
        n = 0 if data is None else len(data)
        self._data = data
        self.frame_id = None
        self.object_ids = np.full(n, -1, np.int64)
        if data is None:
            return 0
        self._store_x = np.array(data.x, np.float64)
        self._store_y = np.array(data.y, np.float64)
        labels = np.full(n, UNLABELED, np.int8)
        store = self._existing_store()
        try:
            self.frame_id = None if store is None else store.find_frame(data.frame)
            if self.frame_id is not None:
                labels = self._stored_labels(store, data)
        except RbvetError as error:
            self._fail(error)
        if data is self.state.data:
            self.state.update_labels(np.arange(n), labels)
        else:
            data.labels[:] = labels
        self.countsChanged.emit()
        return int(np.count_nonzero(labels != UNLABELED))

    def _stored_labels(self, store, data):
        """Labels (N,) of the frame's catalog rows as stored (unlabeled where no stored
        object is within `MATCH_TOLERANCE`); matched rows take the stored positions."""
        from rbvet.core.learn.labels import match_positions

        stored_x, stored_y, stored_labels = store.frame_labels(self.frame_id)
        match = match_positions(data.x, data.y, stored_x, stored_y, tolerance=MATCH_TOLERANCE)
        rows = np.flatnonzero(match >= 0)
        self._store_x[rows] = stored_x[match[rows]]
        self._store_y[rows] = stored_y[match[rows]]
        labels = np.full(len(data), UNLABELED, np.int8)
        labels[rows] = stored_labels[match[rows]]
        return labels

    def frame_counts(self):
        """(real, bogus) labeled objects of the current frame."""
        data = self.state.data
        if data is None:
            return 0, 0
        return (
            int(np.count_nonzero(data.labels == REAL)),
            int(np.count_nonzero(data.labels == BOGUS)),
        )

    # -------------------------------------------------------------------- user actions

    def label(self, indices, label, source=HUMAN):
        """Give ``label`` to objects of the current frame, as one undoable action.

        Objects that already have the label are left alone, and unscored objects (no
        usable stamp) cannot be labeled. Objects labeled for the first time are stored
        with their stamps first.

        Parameters
        ----------
        indices : array_like of int
            Object indices (catalog rows).
        label : int
            `REAL`, `BOGUS` or `UNLABELED` (clears the label).
        source : {'human', 'model'}
            Recorded with the labels in the store.

        Returns
        -------
        bool
            False when the store could not be written (nothing changed then).
        """
        from rbvet.core.cutouts.stamps import cut_stamps

        data = self.state.data
        if data is None:
            return False
        if data is not self._data:
            self.restore(data)
        label = int(label)
        indices = np.unique(np.atleast_1d(np.asarray(indices, np.intp)))
        scored = np.isfinite(data.scores[indices])
        skipped = int(np.count_nonzero(~scored))
        changing = indices[scored & (data.labels[indices] != label)]
        if not len(changing):
            if skipped:
                self.message.emit(f"{skipped} unscored objects cannot be labeled")
            return True
        store = self._writable_store()
        if store is None:
            return False
        try:
            if self.frame_id is None:
                self.frame_id = store.add_frame(data.frame, data.fwhm, data.rescale)
            new = changing[self.object_ids[changing] < 0]
            if len(new):
                x, y = self._store_x[new], self._store_y[new]
                with busy_cursor(len(new) >= BUSY_CURSOR_OBJECTS):
                    stamps = cut_stamps(data.frame, x, y, data.rescale)
                    self.object_ids[new] = store.add_objects(self.frame_id, x, y, stamps)
            changing = changing[self.object_ids[changing] >= 0]
            if not len(changing):
                return True
            store.set_labels(self.object_ids[changing], label, source=source)
        except RbvetError as error:
            self._fail(error)
            return False
        self.store_error = ""
        self.state.set_labels(changing, label)
        text = f"Labeled {len(changing)} {label_name(label)}" if label != UNLABELED else ""
        text = text or f"Cleared {len(changing)} labels"
        if skipped:
            text += f" ({skipped} unscored left out)"
        self.message.emit(text)
        self.countsChanged.emit()
        return True

    def below_threshold_candidates(self):
        """Unlabeled scored objects scoring below the threshold (what `label_below_threshold`
        would label bogus)."""
        data = self.state.data
        if data is None:
            return np.empty(0, np.intp)
        with np.errstate(invalid="ignore"):
            below = np.isfinite(data.scores) & (data.scores < self.state.threshold)
        return np.flatnonzero(below & (data.labels == UNLABELED))

    def label_below_threshold(self):
        """Label every unlabeled object scoring below the threshold bogus, as one action.

        Labels already given (in particular real labels below the threshold) are kept.
        The labels are recorded with source 'model': the threshold chose them, not an eye
        on each tile.

        Returns
        -------
        int
            Number of objects labeled (0 when none, or when the store failed).
        """
        candidates = self.below_threshold_candidates()
        if not len(candidates) or not self.label(candidates, BOGUS, source=MODEL):
            return 0
        return len(candidates)

    def undo(self):
        """Undo the store's last labeling action (any depth; bulk actions are one step).

        Returns
        -------
        ndarray of intp
            Object indices of the current frame whose labels changed back.
        """
        return self._replay("undo")

    def redo(self):
        """Redo the last undone action.

        Returns
        -------
        ndarray of intp
            Object indices of the current frame whose labels changed.
        """
        return self._replay("redo")

    def _replay(self, which):
        store = self._existing_store()
        done = "Undid" if which == "undo" else "Redid"
        if store is None:
            self.message.emit(f"Nothing to {which}")
            return np.empty(0, np.intp)
        try:
            ids = store.undo() if which == "undo" else store.redo()
            if not len(ids):
                self.message.emit(f"Nothing to {which}")
                return np.empty(0, np.intp)
            rows = np.flatnonzero(np.isin(self.object_ids, ids))
            data = self._data
            if len(np.unique(self.object_ids[rows])) < len(ids) and self.frame_id is not None:
                # Objects not looked up since the frame was opened (labeled in an earlier
                # session), or on another frame: read the whole frame's labels again.
                labels = self._stored_labels(store, data)
                rows = np.union1d(rows, np.flatnonzero(labels != data.labels))
                labels = labels[rows]
            else:
                labels = store.labels(self.object_ids[rows])
        except RbvetError as error:
            self._fail(error)
            return np.empty(0, np.intp)
        if len(rows):
            self.state.update_labels(rows, labels)
        text = f"{done} the labels of {len(ids)} objects"
        if len(rows) < len(ids):
            text += f" ({len(rows)} on this frame)"
        self.message.emit(text)
        self.countsChanged.emit()
        return rows

    @property
    def can_undo(self):
        """True when there is a labeling action to undo."""
        store = self._existing_store()
        try:
            return store is not None and store.can_undo
        except RbvetError:
            return False

    @property
    def can_redo(self):
        """True when there is an undone action to redo."""
        store = self._existing_store()
        try:
            return store is not None and store.can_redo
        except RbvetError:
            return False

    # ------------------------------------------------------------------------- export

    def frame_training_data(self, params=None):
        """The current frame's labeled objects as a `TrainingSet` (with stamps).

        Raises
        ------
        RbvetError
            No store, or nothing labeled on this frame.
        """
        store = self._existing_store()
        if store is None or self.frame_id is None:
            raise RbvetError("no labeled objects on this frame")
        training_set = store.training_data(params, frame_ids=[self.frame_id])
        if not len(training_set):
            raise RbvetError("no labeled objects on this frame")
        return training_set
