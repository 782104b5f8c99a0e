"""A map of the objects: the network's features projected to 2-D, for looking and labeling.

`FeatureMap` draws one point per scored object at its PCA coordinates
(`rbvet.core.learn.feature_space.project_2d`; why PCA is said there), coloured by score
(the frame view's colours) or by label. Objects the network sees alike lie together, so a
clump of bogus points among real ones is a kind of object the model confuses.

- Click a point: its tile is selected in the grid (and shown in the other panels).
- Lasso (the "Lasso" button, then drag): the objects inside are selected in the grid, so
  one key (R or B) labels them all, with the grid's confirmation and undo.

The map appears when the uncertainty job has computed the features
(`VettingState.uncertaintyChanged`); until then it says so.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QItemSelection, QItemSelectionModel, QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QPainterPath
from PyQt6.QtWidgets import (
    QComboBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.learn.feature_space import points_in_polygon, project_2d
from rbvet.core.session import BOGUS, REAL
from rbvet.gui.frame_view import MarkerScatter
from rbvet.gui.stretch import (
    LABELED_BOGUS_COLOR,
    LABELED_REAL_COLOR,
    SELECTION_COLOR,
    UNSCORED_COLOR,
    score_colors,
)

COLOUR_BY_SCORE = "score"
COLOUR_BY_LABEL = "label"
WAITING_TEXT = "The map appears once the uncertainty is computed (after scoring)."
POINT_SIZE = 6
SCORE_STEPS = 6
"""Colours per side of the threshold: a few pens draw all points."""


class _LassoViewBox(pg.ViewBox):
    """A view box whose left drag draws a lasso while `lasso_on` (else it pans).

    Signals
    -------
    lassoed(ndarray, ndarray)
        The lasso's vertices (x, y) in data coordinates, when the drag ends.
    """

    lassoed = pyqtSignal(object, object)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lasso_on = False
        self._vertices = []
        self._path_item = QGraphicsPathItem()
        self._path_item.setPen(pg.mkPen(SELECTION_COLOR, width=1.5, style=Qt.PenStyle.DashLine))
        self._path_item.setZValue(30)
        self.addItem(self._path_item, ignoreBounds=True)

    def mouseDragEvent(self, event, axis=None):  # noqa: N802 (pyqtgraph's name)
        if not self.lasso_on or event.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(event, axis)
            return
        event.accept()
        where = self.mapSceneToView(event.scenePos())
        if event.isStart():  # the drag starts a few pixels on: the press is the first vertex
            pressed = self.mapSceneToView(event.buttonDownScenePos())
            self._vertices = [(pressed.x(), pressed.y())]
        self._vertices.append((where.x(), where.y()))
        self._draw_path()
        if event.isFinish():
            vertices = np.array(self._vertices, np.float64).reshape(-1, 2)
            self._vertices = []
            self._draw_path()
            self.lassoed.emit(vertices[:, 0], vertices[:, 1])

    def _draw_path(self):
        path = QPainterPath()
        if self._vertices:
            path.moveTo(QPointF(*self._vertices[0]))
            for vertex in self._vertices[1:]:
                path.lineTo(QPointF(*vertex))
            path.closeSubpath()
        self._path_item.setPath(path)


class FeatureMap(QWidget):
    """The objects on a 2-D map of the network's features; see the module docstring.

    Parameters
    ----------
    state : VettingState
    grid_view : rbvet.gui.grid.TileView
        The grid whose selection a lasso sets.
    parent : QWidget, optional

    Attributes
    ----------
    coordinates : ndarray (N, 2) float32 or None
        Map position of each object (NaN rows for objects without features).
    scatter : pyqtgraph.ScatterPlotItem
        One point per object with features; each point's ``data()`` is its object index.

    Signals
    -------
    lassoed(ndarray)
        Object indices inside the last lasso (the ones now selected in the grid).
    """

    lassoed = pyqtSignal(object)

    def __init__(self, state, grid_view, parent=None):
        super().__init__(parent)
        self.state = state
        self.grid_view = grid_view
        self.coordinates = None
        self._shown = np.empty(0, np.intp)  # object index of each point

        self.colour_combo = QComboBox()
        self.colour_combo.addItems([COLOUR_BY_SCORE, COLOUR_BY_LABEL])
        self.colour_combo.setToolTip("Colour the points by model score or by your labels")
        self.lasso_button = QToolButton(text="Lasso")
        self.lasso_button.setCheckable(True)
        self.lasso_button.setToolTip(
            "Drag round points to select their tiles in the grid; then R or B labels them all"
        )
        self.note = QLabel("")
        # a long note is clipped rather than widening the dock (and the window)
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Colour"))
        controls.addWidget(self.colour_combo)
        controls.addWidget(self.lasso_button)
        controls.addWidget(self.note, 1)

        self.view_box = _LassoViewBox()
        self.view_box.setMenuEnabled(False)
        self.plot = pg.PlotWidget(viewBox=self.view_box)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "feature PC 1")
        self.plot.setLabel("left", "feature PC 2")
        self.scatter = MarkerScatter(symbol="o", size=POINT_SIZE)
        self.highlight = pg.ScatterPlotItem(
            pxMode=True, symbol="o", size=14, brush=None, pen=pg.mkPen(SELECTION_COLOR, width=2)
        )
        self.highlight.setZValue(20)
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.highlight)

        self.waiting = QLabel(WAITING_TEXT)
        self.waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.waiting.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.waiting)
        self.stack.addWidget(self.plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.stack, 1)

        self.colour_combo.currentTextChanged.connect(self._recolour)
        self.lasso_button.toggled.connect(self._set_lasso)
        self.view_box.lassoed.connect(self._on_lasso)
        self.scatter.sigClicked.connect(self._on_point_clicked)
        state.dataChanged.connect(self._on_data_changed)
        state.uncertaintyChanged.connect(self._on_uncertainty)
        state.labelsChanged.connect(self._on_labels_changed)
        state.thresholdChanged.connect(self._on_threshold_changed)
        state.selectionChanged.connect(self._show_selection)
        self._on_data_changed()

    # -- drawing ----------------------------------------------------------------------

    def _on_data_changed(self):
        self.coordinates = None
        self._shown = np.empty(0, np.intp)
        self.scatter.clear()
        self.highlight.clear()
        self.note.setText("")
        self.stack.setCurrentWidget(self.waiting)
        data = self.state.data
        if data is not None and data.features is not None:
            self._on_uncertainty()

    def _on_uncertainty(self):
        data = self.state.data
        if data is None or data.features is None:
            return
        self.coordinates = project_2d(data.features)
        self._shown = np.flatnonzero(np.isfinite(self.coordinates).all(axis=1))
        x, y = self.coordinates[self._shown].T
        colours, styles = self._colours()
        pens = [pg.mkPen(tuple(int(c) for c in colour), width=1.2) for colour in colours]
        self.scatter.set_markers(x, y, self._shown, pens, styles, POINT_SIZE)
        self.stack.setCurrentWidget(self.plot)
        self.view_box.autoRange(padding=0.05)
        self.note.setText(f"{len(self._shown):,} objects; PCA of the network's features")
        self._show_selection(self.state.selected)

    def _colours(self):
        """Distinct colours and each shown point's index into them."""
        data = self.state.data
        if self.colour_combo.currentText() == COLOUR_BY_LABEL:
            labels = data.labels[self._shown]
            rgb = np.tile(np.array(UNSCORED_COLOR, np.uint8), (len(labels), 1))
            rgb[labels == REAL] = LABELED_REAL_COLOR
            rgb[labels == BOGUS] = LABELED_BOGUS_COLOR
        else:
            rgb = score_colors(data.scores[self._shown], self.state.threshold, SCORE_STEPS)
        if not len(rgb):
            return np.zeros((0, 3), np.uint8), np.zeros(0, np.intp)
        colours, styles = np.unique(rgb, axis=0, return_inverse=True)
        return colours, styles.ravel()

    def _recolour(self, *_):
        if self.coordinates is None or not len(self._shown):
            return
        colours, styles = self._colours()
        pens = [pg.mkPen(tuple(int(c) for c in colour), width=1.2) for colour in colours]
        self.scatter.set_pens(slice(None), pens, styles)

    def _on_labels_changed(self, _indices):
        if self.colour_combo.currentText() == COLOUR_BY_LABEL:
            self._recolour()

    def _on_threshold_changed(self, _value):
        if self.colour_combo.currentText() == COLOUR_BY_SCORE:
            self._recolour()

    def _show_selection(self, index):
        if self.coordinates is None or index < 0 or not np.isfinite(self.coordinates[index]).all():
            self.highlight.clear()
            return
        x, y = self.coordinates[index]
        self.highlight.setData([float(x)], [float(y)])

    # -- interaction ------------------------------------------------------------------

    def _set_lasso(self, on):
        self.view_box.lasso_on = bool(on)
        self.view_box.setMouseEnabled(True, True)

    def _on_point_clicked(self, _item, points, event=None):
        """Select the clicked object: of overlapping points, the nearest to the click."""
        tag = MarkerScatter.clicked_tag(points, event)
        if tag is not None:
            self.state.select(tag)

    def _on_lasso(self, polygon_x, polygon_y):
        if self.coordinates is None:
            return
        x, y = self.coordinates[self._shown].T
        inside = self._shown[points_in_polygon(x, y, polygon_x, polygon_y)]
        self.select_in_grid(inside)
        self.lassoed.emit(inside)

    def select_in_grid(self, objects):
        """Select the tiles of ``objects`` in the grid (those its filter shows).

        The first of them in display order becomes the current tile; a key then labels
        the whole selection (`rbvet.gui.grid.TileView.label_selection`).

        Returns
        -------
        int
            Number of tiles selected.
        """
        view = self.grid_view
        proxy = view.model()
        rows = np.sort(proxy.rows_of(np.asarray(objects, np.intp)))
        rows = rows[rows >= 0]
        selection = QItemSelection()
        if len(rows):
            breaks = np.flatnonzero(np.diff(rows) != 1)
            starts = rows[np.r_[0, breaks + 1]]
            ends = rows[np.r_[breaks, len(rows) - 1]]
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                selection.select(proxy.index(start), proxy.index(end))
        model = view.selectionModel()
        model.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        if len(rows):
            model.setCurrentIndex(
                proxy.index(int(rows[0])), QItemSelectionModel.SelectionFlag.NoUpdate
            )
            view.setFocus()
        self.note.setText(f"{len(rows):,} selected in the grid: R or B labels them")
        return len(rows)
