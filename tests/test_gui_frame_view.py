"""Frame view at scale: markers set once per data change, culled to the view when there
are many, and set without pyqtgraph's per-point work; the display made ahead of time."""

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QPointF, QRectF, Qt

from rbvet.gui import frame_view as frame_view_module
from rbvet.gui.frame_view import (
    MARKER_CULL_MARGIN,
    SHOW_REAL,
    FrameView,
    display_pyramid,
    prepare_display,
)
from rbvet.gui.state import REAL, VettingState
from rbvet.gui.stretch import LABELED_REAL_COLOR, display_limits, to_uint8

CULL_ABOVE = 10
"""The tests' 60 objects count as "many" above this (the app's threshold is thousands)."""


@pytest.fixture
def data(make_vetting_data):
    return make_vetting_data(n=60, seed=1, unscored=2)


@pytest.fixture
def state(qtbot):
    return VettingState()


@pytest.fixture
def view(qtbot, state):
    widget = FrameView(state)
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def culling(monkeypatch):
    """Cull markers to the view from `CULL_ABOVE` objects on."""
    monkeypatch.setattr(frame_view_module, "MARKER_CULL_OBJECTS", CULL_ABOVE)


def _near_view(view, data, candidates=None):
    """Objects within the culling margin of the current view, as `_draw_markers` picks."""
    rect = view.view_box.viewRect()
    dx, dy = MARKER_CULL_MARGIN * rect.width(), MARKER_CULL_MARGIN * rect.height()
    indices = np.arange(len(data)) if candidates is None else candidates
    x, y = data.x[indices], data.y[indices]
    near = (
        (x >= rect.left() - dx)
        & (x <= rect.right() + dx)
        & (y >= rect.top() - dy)
        & (y <= rect.bottom() + dy)
    )
    return indices[near]


def _zoom_to(qtbot, view, x, y, side=40.0):
    """Show a ``side``-wide square around (x, y) and wait for the markers to follow."""
    view.view_box.setRange(QRectF(x - side / 2, y - side / 2, side, side), padding=0)
    wait_for_the_view_to_settle(qtbot, view)


def wait_for_the_view_to_settle(qtbot, view):
    """Wait until no redraw of the markers is pending: the settle timer has fired."""
    qtbot.waitUntil(lambda: not view._view_settle_timer.isActive(), timeout=5_000)


# ------------------------------------------------------------------ once per data change


def test_markers_are_drawn_once_per_data_change(qtbot, state, data, monkeypatch):
    calls = {"update": 0, "set": 0}
    update_markers = FrameView._update_markers
    set_markers = frame_view_module.MarkerScatter.set_markers

    def counted_update(self, *args):
        calls["update"] += 1
        return update_markers(self, *args)

    def counted_set(self, *args, **kwargs):
        calls["set"] += 1
        return set_markers(self, *args, **kwargs)

    monkeypatch.setattr(FrameView, "_update_markers", counted_update)
    monkeypatch.setattr(frame_view_module.MarkerScatter, "set_markers", counted_set)
    view = FrameView(state)
    qtbot.addWidget(view)
    view.resize(700, 600)
    view.show()
    qtbot.waitExposed(view)

    state.set_data(data, threshold=0.5)
    wait_for_the_view_to_settle(qtbot, view)  # the fit's view change must not redraw again
    assert calls == {"update": 1, "set": 1}
    assert len(view.visible_marker_indices()) == len(data)

    state.set_threshold(0.7)  # a real threshold change recolours them, once
    assert calls["update"] == 2
    state.set_threshold(0.7)
    assert calls["update"] == 2


def test_a_new_frame_with_no_objects_clears_the_old_markers(view, state, data, make_vetting_data):
    state.set_data(data, threshold=0.5)
    empty = make_vetting_data(n=4, seed=2, unscored=0)
    empty.x[:] = np.nan  # nothing drawable
    state.set_data(empty, threshold=0.5)
    assert len(view.scatter.data) == 0
    assert len(view.visible_marker_indices()) == 0


# ------------------------------------------------------------------ culling to the view


def test_only_markers_near_the_view_are_drawn_when_zoomed_in(qtbot, view, state, data, culling):
    state.set_data(data, threshold=0.5)
    np.testing.assert_array_equal(view.visible_marker_indices(), np.arange(len(data)))
    _zoom_to(qtbot, view, data.x[7], data.y[7])
    drawn = view.visible_marker_indices()
    assert 7 in drawn
    assert 0 < len(drawn) < len(data)
    np.testing.assert_array_equal(drawn, _near_view(view, data))
    np.testing.assert_array_equal(np.asarray(view.scatter.data["data"], int), drawn)
    np.testing.assert_allclose(view.scatter.data["x"], data.x[drawn])


def test_panning_brings_the_other_markers_in(qtbot, view, state, data, culling):
    state.set_data(data, threshold=0.5)
    _zoom_to(qtbot, view, data.x[7], data.y[7])
    before = view.visible_marker_indices()
    far = int(np.argmax(np.hypot(data.x - data.x[7], data.y - data.y[7])))
    assert far not in before
    rect = view.view_box.viewRect()
    view.view_box.setRange(
        QRectF(
            data.x[far] - rect.width() / 2,
            data.y[far] - rect.height() / 2,
            rect.width(),
            rect.height(),
        ),
        padding=0,
    )
    qtbot.waitUntil(lambda: far in view.visible_marker_indices(), timeout=2000)
    np.testing.assert_array_equal(view.visible_marker_indices(), _near_view(view, data))
    view.fit_frame()
    qtbot.waitUntil(lambda: len(view.visible_marker_indices()) == len(data), timeout=2000)


def test_selecting_an_object_off_view_highlights_and_draws_it(qtbot, view, state, data, culling):
    state.set_data(data, threshold=0.5)
    _zoom_to(qtbot, view, data.x[7], data.y[7])
    far = int(np.argmax(np.hypot(data.x - data.x[7], data.y - data.y[7])))
    assert far not in view.visible_marker_indices()
    state.select(far)
    assert view.view_box.viewRect().contains(QPointF(data.x[far], data.y[far]))
    assert (view.highlight.data["x"][0], view.highlight.data["y"][0]) == (data.x[far], data.y[far])
    qtbot.waitUntil(lambda: far in view.visible_marker_indices(), timeout=2000)


def test_clicking_a_culled_marker_selects_its_object(qtbot, view, state, data, culling):
    state.set_data(data, threshold=0.5)
    index = 7
    _zoom_to(qtbot, view, data.x[index], data.y[index], side=30.0)
    scene = view.view_box.mapViewToScene(QPointF(data.x[index], data.y[index]))
    where = view.plot.mapFromScene(scene)
    with qtbot.waitSignal(state.selectionChanged, timeout=1000) as blocker:
        qtbot.mouseClick(
            view.plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(where.x(), where.y())
        )
    assert blocker.args == [index]


def test_show_filter_and_threshold_apply_to_culled_markers(qtbot, view, state, data, culling):
    state.set_data(data, threshold=0.5)
    _zoom_to(qtbot, view, data.x[7], data.y[7], side=120.0)
    view.show_combo.setCurrentText(SHOW_REAL)
    real = np.flatnonzero(data.scores >= 0.5)
    np.testing.assert_array_equal(view.visible_marker_indices(), _near_view(view, data, real))
    state.set_threshold(0.3)
    real = np.flatnonzero(data.scores >= 0.3)
    np.testing.assert_array_equal(view.visible_marker_indices(), _near_view(view, data, real))


def test_relabeled_markers_take_the_label_colour_in_and_out_of_view(
    qtbot, view, state, data, culling
):
    state.set_data(data, threshold=0.5)
    _zoom_to(qtbot, view, data.x[7], data.y[7])
    far = int(np.argmax(np.hypot(data.x - data.x[7], data.y - data.y[7])))
    state.set_labels([7, far], REAL)

    def colour_of(index):
        drawn = list(view.visible_marker_indices())
        return view.scatter.data["pen"][drawn.index(index)].color().getRgb()[:3]

    qtbot.waitUntil(lambda: colour_of(7) == LABELED_REAL_COLOR, timeout=2000)
    state.select(far)  # pans to it; its marker is drawn with its label's colour
    qtbot.waitUntil(lambda: far in view.visible_marker_indices(), timeout=2000)
    assert colour_of(far) == LABELED_REAL_COLOR


@pytest.mark.parametrize("n_relabeled", [18, 250])
def test_relabeled_markers_are_repainted_at_once(
    qtbot, view, state, make_vetting_data, n_relabeled
):
    """R on 18 tiles (markers re-penned) or a bulk label (all redrawn): the scene repaints
    the relabeled markers without waiting for a click (pyqtgraph's ``updateSpots`` alone
    does not ask for a repaint when no atlas rectangle is missing)."""
    data = make_vetting_data(n=300, seed=3, unscored=0)
    state.set_data(data, threshold=0.5)
    qtbot.waitUntil(lambda: len(view.visible_marker_indices()) == len(data), timeout=2000)
    relabeled = np.arange(n_relabeled)
    where = [view.view_box.mapViewToScene(QPointF(data.x[i], data.y[i])) for i in relabeled]

    drawn = list(view.visible_marker_indices())

    def repaints_a_relabeled_marker(rects):
        """A repaint of the scene after the new pens were set, over a relabeled marker."""
        pen = view.scatter.data["pen"][drawn.index(0)]
        recoloured = pen.color().getRgb()[:3] == LABELED_REAL_COLOR
        return recoloured and any(rect.contains(point) for rect in rects for point in where)

    scene = view.plot.scene()
    with qtbot.waitSignal(
        scene.changed, timeout=3000, check_params_cb=repaints_a_relabeled_marker
    ):
        state.set_labels(relabeled, REAL)


# ------------------------------------------------------------------ pyqtgraph's internals


def _rects_as_pyqtgraph_sets_them(scatter):
    """The atlas rectangles pyqtgraph's own per-point lookup gives the current points."""
    ours = scatter.data["sourceRect"].copy()
    scatter.data["sourceRect"] = 0
    scatter.updateSpots()
    theirs = scatter.data["sourceRect"].copy()
    scatter.data["sourceRect"] = ours
    return ours, theirs


def test_marker_symbols_match_pyqtgraphs_own_lookup(qtbot, view, state, data):
    """`MarkerScatter` fills pyqtgraph's record array itself; it must agree with it."""
    state.set_data(data, threshold=0.5)
    ours, theirs = _rects_as_pyqtgraph_sets_them(view.scatter)
    assert (ours["w"] > 0).all()
    np.testing.assert_array_equal(ours, theirs)

    view.scatter.set_marker_size(view.scatter.opts["size"] + 7)
    np.testing.assert_array_equal(*_rects_as_pyqtgraph_sets_them(view.scatter))

    state.set_labels([3, 4], REAL)
    view._apply_relabels()
    ours, theirs = _rects_as_pyqtgraph_sets_them(view.scatter)
    np.testing.assert_array_equal(ours, theirs)
    assert view.scatter.data["pen"][3].color().getRgb()[:3] == LABELED_REAL_COLOR
    assert view.scatter.data["pen"][5].color().getRgb()[:3] != LABELED_REAL_COLOR


def test_clicking_makes_spot_items_for_the_hit_points_only(view, state, data):
    state.set_data(data, threshold=0.5)
    scatter = view.scatter
    hits = scatter.pointsAt(QPointF(data.x[9], data.y[9]))
    assert 9 in [int(point.data()) for point in hits]
    assert np.count_nonzero(~np.equal(scatter.data["item"], None)) == len(hits)


# ------------------------------------------------------------------ display made ahead


def test_a_prepared_display_is_used_instead_of_computing_it(view, state, data, monkeypatch):
    frame = data.frame
    prepare_display(frame)
    expected = to_uint8(frame.image, limits=display_limits(frame.image, "zscale", frame.mask))

    def refuse(*args, **kwargs):
        raise AssertionError("the display was computed on the GUI thread")

    monkeypatch.setattr(frame_view_module, "to_uint8", refuse)
    state.set_data(data, threshold=0.5)
    np.testing.assert_array_equal(view.display_image, expected)
    assert [level.shape for level in view._pyramid] == [
        level.shape for level in display_pyramid(expected)
    ]
    assert frame not in frame_view_module._prepared_displays  # taken, not kept


def test_a_prepared_display_for_another_stretch_is_not_used(view, state, data):
    view.stretch_combo.setCurrentText("asinh")
    prepare_display(data.frame)  # linear
    state.set_data(data, threshold=0.5)
    limits = display_limits(data.frame.image, "zscale", data.frame.mask)
    expected = to_uint8(data.frame.image, stretch="asinh", limits=limits)
    np.testing.assert_array_equal(view.display_image, expected)


def test_with_more_objects_in_view_than_drawn_a_stable_sample_is_drawn_labeled_first(
    qtbot, state, view, data, monkeypatch
):
    cap = 12
    monkeypatch.setattr(frame_view_module, "MAX_DRAWN_MARKERS", cap)
    labeled = np.array([3, 17, 40])
    data.labels[labeled] = REAL
    state.set_data(data, threshold=0.5)
    drawn = view.visible_marker_indices()
    drawable = np.flatnonzero(np.isfinite(data.x) & np.isfinite(data.y))
    assert len(drawn) == cap and np.isin(drawn, drawable).all()
    assert np.isin(labeled, drawn).all()
    assert np.all(np.diff(drawn) > 0)  # sorted, as relabeling looks markers up
    assert view.marker_note.isVisibleTo(view) and f"{cap:,} of {len(drawable):,}" in (
        view.marker_note.text()
    )
    # the same sample after a redraw: markers do not flicker
    state.set_threshold(0.3)
    assert np.array_equal(view.visible_marker_indices(), drawn)
    # with the cap above the count, everything is drawn and the note goes
    monkeypatch.setattr(frame_view_module, "MAX_DRAWN_MARKERS", 1000)
    state.set_threshold(0.4)
    assert np.array_equal(view.visible_marker_indices(), drawable)
    assert not view.marker_note.isVisibleTo(view)


def test_a_frame_with_many_objects_is_drawn_in_the_next_turn_with_what_changed_meanwhile(
    qtbot, state, view, data, monkeypatch
):
    monkeypatch.setattr(frame_view_module, "DEFER_DRAW_OBJECTS", 10)
    state.set_data(data, threshold=0.5)
    assert len(view.visible_marker_indices()) == 0  # not yet: the grid goes first
    state.set_threshold(0.7)  # meanwhile: nothing breaks, the new threshold is used
    chosen = int(np.flatnonzero(np.isfinite(data.x))[5])
    state.select(chosen)
    qtbot.waitUntil(lambda: len(view.visible_marker_indices()) > 0)
    drawable = np.flatnonzero(np.isfinite(data.x) & np.isfinite(data.y))
    assert np.array_equal(view.visible_marker_indices(), drawable)
    spots = view.highlight.data
    assert len(spots) == 1 and (spots["x"][0], spots["y"][0]) == (data.x[chosen], data.y[chosen])
    # data replaced before its turn came: only the newer one is drawn
    other = data.__class__(**{**data.__dict__, "score_order": None})
    state.set_data(data.__class__(**{**data.__dict__}), threshold=0.5)
    state.set_data(other, threshold=0.5)
    qtbot.waitUntil(lambda: view._drawn_data is other)
