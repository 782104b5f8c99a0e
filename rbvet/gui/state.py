"""The one place the vetting window's panels share: the current frame's data and the
view state (threshold, selected object), with signals so every panel follows.

Panels never talk to each other; each reads `VettingState` and listens to its signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

UNLABELED, BOGUS, REAL = -1, 0, 1


def label_name(label):
    """'real', 'bogus' or 'unlabeled'."""
    return {REAL: "real", BOGUS: "bogus"}.get(int(label), "unlabeled")


@dataclass
class VettingData:
    """Everything shown about one frame, indexed by object (catalog row order).

    Attributes
    ----------
    frame : rbvet.core.io.frame.Frame
    table : astropy.table.Table
        The catalog with 0-based ``x``, ``y`` and the ``rb_score``/``rb_reason`` columns.
    x, y : ndarray (N,) float64
    scores : ndarray (N,) float32
        NaN for objects that could not be scored.
    reasons : ndarray (N,) str
        Why an object was not scored; empty when it was.
    atlas : ndarray (N, h, w) uint8
        One tile per object (`rbvet.core.cutouts.atlas.render_tiles`); black when unscored.
    fwhm : float
    rescale : rbvet.core.cutouts.preprocess.Rescale
    params : rbvet.core.cutouts.preprocess.PreprocessParams
    model_name : str
    frame_path, catalog_path : str or None
        ``catalog_path`` is None when the objects were detected.
    labels : ndarray (N,) int8
        `UNLABELED`, `BOGUS` or `REAL`.
    """

    frame: object
    table: object
    x: np.ndarray
    y: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    atlas: np.ndarray
    fwhm: float
    rescale: object
    params: object
    model_name: str = ""
    frame_path: str | None = None
    catalog_path: str | None = None
    labels: np.ndarray = field(default=None)

    def __post_init__(self):
        if self.labels is None:
            self.labels = np.full(len(self.scores), UNLABELED, np.int8)

    @classmethod
    def from_scores(cls, frame, table, scores, reasons, atlas, *, fwhm, params, **fields):
        """The data of a classified frame: its catalog, the scores and the rendered tiles.

        Writes the scores into ``table`` (``rb_score``/``rb_reason``, in place), takes the
        positions from its ``x`` and ``y`` columns and plans the rescaling from ``fwhm``.

        Parameters
        ----------
        frame : rbvet.core.io.frame.Frame or None
        table : astropy.table.Table
            The catalog, with 0-based ``x`` and ``y`` columns.
        scores : array_like (N,) float
            NaN for objects that could not be scored.
        reasons : array_like (N,) str
            Why an object was not scored; empty when it was.
        atlas : ndarray (N, h, w) uint8
        fwhm : float
        params : rbvet.core.cutouts.preprocess.PreprocessParams
        **fields
            The other fields (``model_name``, ``frame_path``, ``catalog_path``, ...).

        Returns
        -------
        VettingData
        """
        from rbvet.core.classify import add_scores
        from rbvet.core.cutouts.preprocess import plan_rescale

        scores = np.asarray(scores, np.float32)
        reasons = np.asarray(reasons, str)
        add_scores(table, scores, reasons)
        return cls(
            frame=frame,
            table=table,
            x=np.asarray(table["x"], np.float64),
            y=np.asarray(table["y"], np.float64),
            scores=scores,
            reasons=reasons,
            atlas=atlas,
            fwhm=fwhm,
            rescale=plan_rescale(fwhm, params),
            params=params,
            **fields,
        )

    def __len__(self):
        return len(self.scores)

    def counts(self, threshold):
        """(real, bogus, unscored): objects at or above ``threshold``, below it, and NaN."""
        scored = np.isfinite(self.scores)
        real = int(np.count_nonzero(self.scores[scored] >= threshold))
        n_scored = int(np.count_nonzero(scored))
        return real, n_scored - real, len(self.scores) - n_scored


class VettingState(QObject):
    """Shared state of the window.

    Signals
    -------
    dataChanged()
        A new frame (or new scores) replaced `data`; it may be None (nothing open).
    thresholdChanged(float)
    selectionChanged(int)
        The selected object's index in `data`, or -1 for none.
    labelsChanged(object)
        Indices (ndarray) of objects whose label changed.
    """

    dataChanged = pyqtSignal()
    thresholdChanged = pyqtSignal(float)
    selectionChanged = pyqtSignal(int)
    labelsChanged = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._data = None
        self._threshold = 0.5
        self._selected = -1

    @property
    def data(self):
        return self._data

    @property
    def threshold(self):
        return self._threshold

    @property
    def selected(self):
        return self._selected

    def set_data(self, data, threshold=None):
        """Show ``data`` (a `VettingData` or None); clears the selection.

        ``thresholdChanged`` follows only when ``threshold`` changes it: every listener
        redraws on ``dataChanged`` with the current threshold.
        """
        previous = self._threshold
        self._data = data
        self._selected = -1
        if threshold is not None:
            self._threshold = float(threshold)
        self.dataChanged.emit()
        if self._threshold != previous:
            self.thresholdChanged.emit(self._threshold)
        self.selectionChanged.emit(-1)

    def set_threshold(self, value):
        value = float(np.clip(value, 0.0, 1.0))
        if value != self._threshold:
            self._threshold = value
            self.thresholdChanged.emit(value)

    def select(self, index):
        index = int(index)
        if self._data is None or not 0 <= index < len(self._data):
            index = -1
        if index != self._selected:
            self._selected = index
            self.selectionChanged.emit(index)

    def set_labels(self, indices, label):
        """Give ``label`` to the objects at ``indices``, in memory only.

        `rbvet.gui.labeling.LabelController` writes labels to the store and then calls this.
        """
        indices = np.atleast_1d(np.asarray(indices, np.intp))
        self._data.labels[indices] = label
        self.labelsChanged.emit(indices)

    def update_labels(self, indices, labels):
        """Give each object at ``indices`` its own label (e.g. after an undo).

        Parameters
        ----------
        indices : array_like of int
        labels : array_like of int
            `UNLABELED`, `BOGUS` or `REAL`, one per index.
        """
        indices = np.atleast_1d(np.asarray(indices, np.intp))
        self._data.labels[indices] = np.asarray(labels, np.int8)
        self.labelsChanged.emit(indices)
