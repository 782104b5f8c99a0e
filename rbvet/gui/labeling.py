"""Labeling in the window: the user's labels written to the label store as they are given.

`LabelController` is a thin Qt adapter over the labeling half of
`rbvet.core.session.VettingSession` (the store connection, matching a frame's catalog to
its stored objects, one store action per user action, undo and redo, bulk labels below the
threshold): it re-emits the session's error, message and count events as signals and shows
a wait cursor while many new objects are stored. The grid's keys call it; the labels then
reach every panel through `VettingState`.
"""

from __future__ import annotations

import contextlib

import numpy as np
from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QGuiApplication

from rbvet.core.session import HUMAN

BUSY_CURSOR_OBJECTS = 500
"""Storing this many new objects at once shows a wait cursor (about 0.4 ms each)."""
MANY_LABELED_OBJECTS = 50
"""One key that changes this many labels (e.g. after Ctrl+A) is announced with an Undo
button (`manyLabeled`): the user sees what one keypress did, without a question before
each bulk label that slows down the deliberate ones."""


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
    """Labels of the current frame, kept in a `LabelStore` by the state's session.

    Its methods and attributes are the session's (`VettingSession`), forwarded unchanged:
    ``label``, ``undo``, ``redo``, ``restore``, ``open_store``, ``store_path``, ...

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
    state : VettingState
    session : VettingSession
        ``state.session``.

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
    manyLabeled(int, int)
        One `label` call changed the labels of at least `MANY_LABELED_OBJECTS` objects:
        the number changed and the label given.
    """

    errorOccurred = pyqtSignal(str)
    message = pyqtSignal(str)
    countsChanged = pyqtSignal()
    storeChanged = pyqtSignal()
    manyLabeled = pyqtSignal(int, int)

    def __init__(self, state, store_path=None, parent=None):
        super().__init__(parent)
        self.state = state
        self.session = session = state.session
        if store_path is not None:
            session.set_store_path(store_path)
        session.busy = lambda n: busy_cursor(n >= BUSY_CURSOR_OBJECTS)
        session.error.connect(self.errorOccurred.emit)
        session.message.connect(self.message.emit)
        session.counts_changed.connect(self.countsChanged.emit)
        session.store_changed.connect(self.storeChanged.emit)

    # The session's labeling API, unchanged.

    @property
    def store(self):
        return self.session.store

    @property
    def store_path(self):
        return self.session.store_path

    @property
    def store_error(self):
        return self.session.store_error

    @property
    def object_ids(self):
        return self.session.object_ids

    @property
    def can_undo(self):
        return self.session.can_undo

    @property
    def can_redo(self):
        return self.session.can_redo

    def open_store(self, path=None, create=False):
        return self.session.open_store(path, create)

    def close(self):
        """Close the store connection (every label is already on disk)."""
        self.session.close_store()

    def store_summary(self):
        return self.session.store_summary()

    def restore(self, data):
        return self.session.restore(data)

    def frame_counts(self):
        return self.session.frame_counts()

    def label(self, indices, label, source=HUMAN):
        """`VettingSession.label`, announcing a change of many labels (`manyLabeled`)."""
        data = self.state.data
        indices = np.unique(np.atleast_1d(np.asarray(indices, np.intp)))
        before = None if data is None else data.labels[indices].copy()
        done = self.session.label(indices, label, source)
        if done and before is not None and data is self.state.data:
            changed = int(np.count_nonzero(data.labels[indices] != before))
            if changed >= MANY_LABELED_OBJECTS:
                self.manyLabeled.emit(changed, int(label))
        return done

    def below_threshold_candidates(self):
        return self.session.below_threshold_candidates()

    def label_below_threshold(self):
        return self.session.label_below_threshold()

    def undo(self):
        return self.session.undo()

    def redo(self):
        return self.session.redo()

    def frame_training_data(self, params=None):
        return self.session.frame_training_data(params)
