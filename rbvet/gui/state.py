"""The one place the vetting window's panels share: a `VettingSession` as Qt signals.

Panels never talk to each other; each reads `VettingState` and listens to its signals.
The state holds no logic of its own: it is a thin adapter over
`rbvet.core.session.VettingSession` (data, threshold, selection, order, labels), whose
events it re-emits as signals.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from rbvet.core.session import (  # noqa: F401  (the label values panels draw by)
    BOGUS,
    REAL,
    UNLABELED,
    VettingData,
    VettingSession,
    label_name,
)


class VettingState(QObject):
    """Shared state of the window: a `VettingSession` whose events are signals.

    Parameters
    ----------
    parent : QObject, optional
    session : VettingSession, optional
        The session shown; a new one (default label store, nothing opened) when None.

    Attributes
    ----------
    session : VettingSession

    Signals
    -------
    dataChanged()
        A new frame (or new scores) replaced `data`; it may be None (nothing open).
    thresholdChanged(float)
    selectionChanged(int)
        The selected object's index in `data`, or -1 for none.
    labelsChanged(object)
        Indices (ndarray) of objects whose label changed.
    orderChanged()
        The display order may have changed (`VettingSession.order_changed`).
    orderSettingsChanged()
        The sort key, direction or filter was set.
    uncertaintyChanged()
        The shown data received their uncertainty and features.
    injectedChanged()
        Injected objects of an assessment became available or went, or were shown or
        hidden (`VettingSession.injected_changed`).
    """

    dataChanged = pyqtSignal()
    thresholdChanged = pyqtSignal(float)
    selectionChanged = pyqtSignal(int)
    labelsChanged = pyqtSignal(object)
    orderChanged = pyqtSignal()
    orderSettingsChanged = pyqtSignal()
    uncertaintyChanged = pyqtSignal()
    injectedChanged = pyqtSignal()

    def __init__(self, parent=None, session=None):
        super().__init__(parent)
        self.session = session if session is not None else VettingSession()
        events = self.session
        events.data_changed.connect(self.dataChanged.emit)
        events.threshold_changed.connect(self.thresholdChanged.emit)
        events.selection_changed.connect(self.selectionChanged.emit)
        events.labels_changed.connect(self.labelsChanged.emit)
        events.order_changed.connect(self.orderChanged.emit)
        events.order_settings_changed.connect(self.orderSettingsChanged.emit)
        events.uncertainty_changed.connect(self.uncertaintyChanged.emit)
        events.injected_changed.connect(self.injectedChanged.emit)

    @property
    def data(self):
        return self.session.data

    @property
    def threshold(self):
        return self.session.threshold

    @property
    def selected(self):
        return self.session.selected

    def set_data(self, data, threshold=None):
        """Show ``data`` (a `VettingData` or None); see `VettingSession.set_data`."""
        self.session.set_data(data, threshold)

    def set_threshold(self, value):
        self.session.set_threshold(value)

    def select(self, index):
        self.session.select(index)

    def set_labels(self, indices, label):
        """Give ``label`` to the objects at ``indices``, in memory only.

        `rbvet.gui.labeling.LabelController` writes labels to the store.
        """
        self.session.set_labels(indices, label)
