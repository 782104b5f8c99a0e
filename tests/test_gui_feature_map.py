"""The map dock: points per object once features exist, click to select, lasso to select
tiles for one bulk label; the object panel's labeled neighbours."""

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QPoint, QPointF, Qt

from rbvet.core.learn.feature_space import nearest_labeled, project_2d
from rbvet.core.learn.uncertainty import Uncertainty
from rbvet.gui.detail import DetailPanel
from rbvet.gui.feature_map import COLOUR_BY_LABEL, WAITING_TEXT, FeatureMap
from rbvet.gui.grid import GridPanel
from rbvet.gui.state import BOGUS, REAL, VettingState


def blob_uncertainty(data, seed=0):
    """Features in three well separated blobs (object i in blob i % 3)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=20.0, size=(3, 16))
    features = (centres[np.arange(len(data)) % 3] + rng.normal(size=(len(data), 16))).astype(
        np.float32
    )
    scored = np.isfinite(data.scores)
    features[~scored] = np.nan
    bald = np.where(scored, rng.uniform(0, 0.5, len(data)), np.nan).astype(np.float32)
    return Uncertainty(data.scores.copy(), bald, features)


@pytest.fixture
def window(qtbot, data):
    """A grid, a map and an object panel over one state, as in the main window."""
    state = VettingState()
    grid = GridPanel(state)
    feature_map = FeatureMap(state, grid.view)
    detail = DetailPanel(state)
    for widget, size in ((grid, (700, 500)), (feature_map, (500, 450)), (detail, (380, 700))):
        qtbot.addWidget(widget)
        widget.resize(*size)
        widget.show()
        qtbot.waitExposed(widget)
    state.set_data(data, threshold=0.5)
    return state, grid, feature_map, detail


def test_the_map_waits_for_features_then_draws_one_point_per_scored_object(window, data):
    state, _, feature_map, _ = window
    assert feature_map.stack.currentWidget().text() == WAITING_TEXT
    assert len(feature_map.scatter.data) == 0
    state.session.set_uncertainty(data, blob_uncertainty(data))
    assert feature_map.stack.currentWidget() is feature_map.plot
    scored = np.flatnonzero(np.isfinite(data.scores))
    assert sorted(int(p.data()) for p in feature_map.scatter.points()) == scored.tolist()
    expected = project_2d(data.features)
    point = feature_map.scatter.points()[5]
    index = int(point.data())
    assert (point.pos().x(), point.pos().y()) == pytest.approx(tuple(expected[index]), abs=1e-4)


def test_clicking_a_point_selects_its_tile(window, data, qtbot):
    state, grid, feature_map, _ = window
    state.session.set_uncertainty(data, blob_uncertainty(data))
    index = 13
    x, y = feature_map.coordinates[index]
    view_box = feature_map.view_box
    qtbot.waitUntil(lambda: view_box.viewRect().contains(QPointF(x, y)), timeout=1000)
    where = feature_map.plot.mapFromScene(view_box.mapViewToScene(QPointF(x, y)))
    with qtbot.waitSignal(state.selectionChanged, timeout=1000):
        qtbot.mouseClick(
            feature_map.plot.viewport(),
            Qt.MouseButton.LeftButton,
            pos=QPoint(where.x(), where.y()),
        )
    assert state.selected == index  # the nearest of the points under the cursor
    assert grid.proxy.object_at(grid.view.currentIndex().row()) == index
    assert len(feature_map.highlight.data) == 1


def test_a_lasso_selects_its_objects_in_the_grid_for_one_bulk_label(window, data, qtbot):
    state, grid, feature_map, _ = window
    state.session.set_uncertainty(data, blob_uncertainty(data))
    blob = np.flatnonzero((np.arange(len(data)) % 3 == 1) & np.isfinite(data.scores))
    centre = feature_map.coordinates[blob].astype(float).mean(axis=0)
    spread = float(np.abs(feature_map.coordinates[blob] - centre).max() * 1.5)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    # the whole lasso on screen: a drag off the plot would not reach it
    feature_map.view_box.setRange(
        xRange=(centre[0] - 2 * spread, centre[0] + 2 * spread),
        yRange=(centre[1] - 2 * spread, centre[1] + 2 * spread),
        padding=0,
    )
    with qtbot.waitSignal(feature_map.lassoed, timeout=1000) as lasso:
        feature_map.lasso_button.setChecked(True)
        drag(
            qtbot,
            feature_map,
            centre[0] + spread * np.cos(angles),
            centre[1] + spread * np.sin(angles),
        )
    np.testing.assert_array_equal(np.sort(lasso.args[0]), blob)
    np.testing.assert_array_equal(grid.view.selected_objects(), blob)
    grid.view.label_selection(REAL)  # the R key on the grid
    assert (data.labels[blob] == REAL).all()
    assert (data.labels[np.setdiff1d(np.arange(len(data)), blob)] != REAL).all()


def drag(qtbot, feature_map, xs, ys):
    """A left-button drag through the data points (xs, ys) on the map."""
    from PyQt6.QtCore import QEvent
    from PyQt6.QtGui import QMouseEvent
    from PyQt6.QtWidgets import QApplication

    viewport = feature_map.plot.viewport()
    view_box = feature_map.view_box

    def position(x, y):
        scene = view_box.mapViewToScene(QPointF(float(x), float(y)))
        return QPointF(feature_map.plot.mapFromScene(scene))

    def send(kind, where, buttons):
        button = (
            Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
        )
        event = QMouseEvent(
            kind,
            where,
            viewport.mapToGlobal(where),
            button,
            buttons,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(viewport, event)

    held = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, position(xs[0], ys[0]), held)
    for x, y in zip([*xs, xs[0]], [*ys, ys[0]], strict=True):
        send(QEvent.Type.MouseMove, position(x, y), held)
        # pyqtgraph drops moves closer than 1 / mouseRateLimit (100 Hz): a hand's pace
        qtbot.wait(int(1000 / pg.getConfigOption("mouseRateLimit")) + 2)
    send(QEvent.Type.MouseButtonRelease, position(xs[0], ys[0]), Qt.MouseButton.NoButton)


def test_colouring_by_label_recolours_as_labels_arrive(window, data):
    state, _, feature_map, _ = window
    state.session.set_uncertainty(data, blob_uncertainty(data))
    feature_map.colour_combo.setCurrentText(COLOUR_BY_LABEL)
    pens_before = {id(pen) for pen in feature_map.scatter.data["pen"]}
    assert len({pen.color().name() for pen in feature_map.scatter.data["pen"]}) == 1
    state.set_labels([0, 1], REAL)
    state.set_labels([2], BOGUS)
    colours = {pen.color().name() for pen in feature_map.scatter.data["pen"]}
    assert len(colours) == 3 and pens_before


def test_the_object_panel_lists_the_nearest_labeled_objects(window, data):
    state, _, _, detail = window
    uncertainty = blob_uncertainty(data)
    state.session.set_uncertainty(data, uncertainty)
    state.set_labels([3, 6, 9], REAL)  # blob 0
    state.set_labels([4, 7], BOGUS)  # blob 1
    state.select(12)  # blob 0
    text = detail.neighbours_label.text()
    expected, _ = nearest_labeled(data.features, data.labels, 12)
    assert text.index(f"#{expected[0]} real") < text.index(f"#{expected[-1]} ")
    assert expected[:3].tolist() == sorted(
        expected[:3].tolist(), key=lambda i: text.index(f"#{i} ")
    )
    assert set(expected[:3].tolist()) == {3, 6, 9}
    detail.neighbours_label.linkActivated.emit(str(expected[0]))
    assert state.selected == expected[0]


def test_the_neighbour_line_is_rendered_as_rich_text_before_any_label(window, data):
    """With no labeled object the line holds no link, so Qt's guess would show '&nbsp;'."""
    from PyQt6.QtCore import Qt

    state, _, _, detail = window
    state.session.set_uncertainty(data, blob_uncertainty(data))
    state.select(12)
    assert "no labeled objects yet" in detail.neighbours_label.text()
    assert detail.neighbours_label.textFormat() == Qt.TextFormat.RichText
