"""Frame view, threshold panel and detail panel, driven through `VettingState`."""

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QPointF, Qt

from rbvet.core.cutouts.stamps import cut_stamps
from rbvet.core.learn.metrics import error_rates
from rbvet.gui.detail import EMPTY_TEXT, DetailPanel
from rbvet.gui.frame_view import (
    SHOW_ALL,
    SHOW_BOGUS,
    SHOW_REAL,
    FrameView,
    display_pyramid,
)
from rbvet.gui.state import BOGUS, REAL, VettingState
from rbvet.gui.stretch import (
    LABELED_REAL_COLOR,
    display_limits,
    score_colors,
    to_uint8,
)
from rbvet.gui.threshold import ThresholdPanel

# Qt's offscreen platform warns on every top-level show(); that says nothing about us.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def state(qtbot):
    return VettingState()


def _show(qtbot, widget, width=700, height=600):
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def frame_view(qtbot, state, data):
    view = _show(qtbot, FrameView(state))
    state.set_data(data, threshold=0.5)
    return view


@pytest.fixture
def threshold_panel(qtbot, state, data):
    panel = _show(qtbot, ThresholdPanel(state), 520, 520)
    state.set_data(data, threshold=0.5)
    return panel


@pytest.fixture
def detail(qtbot, state, data):
    panel = _show(qtbot, DetailPanel(state), 380, 700)
    state.set_data(data, threshold=0.5)
    return panel


# ---------------------------------------------------------------------- stretch helpers


def test_to_uint8_maps_limits_to_black_and_white_and_nan_to_black():
    image = np.array([[0.0, 5.0, 10.0], [np.nan, -3.0, 20.0]], np.float32)
    out = to_uint8(image, stretch="linear", limits=(0.0, 10.0))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 128, 255], [0, 0, 255]])
    # asinh lifts the mid-tones above linear; log even more
    assert to_uint8(image, stretch="asinh", limits=(0.0, 10.0))[0, 1] > 128
    assert (
        to_uint8(image, stretch="log", limits=(0.0, 10.0))[0, 1]
        > to_uint8(image, stretch="sqrt", limits=(0.0, 10.0))[0, 1]
        > 128
    )


def test_display_limits_ignore_masked_and_non_finite_pixels():
    rng = np.random.default_rng(1)
    image = rng.normal(100.0, 5.0, (300, 300)).astype(np.float32)
    image[:10] = 1e6
    image[20, 20] = np.nan
    mask = np.zeros(image.shape, bool)
    mask[:10] = True
    vmin, vmax = display_limits(image, "min-max", mask)
    assert 60 < vmin < 100 < vmax < 140
    vmin, vmax = display_limits(image, "99%", mask, max_samples=1000)
    assert 80 < vmin < 100 < vmax < 120


def test_score_colors_split_at_threshold():
    colors = score_colors(np.array([0.0, 0.49, 0.5, 1.0, np.nan]), 0.5, steps=8)
    assert tuple(colors[0]) == (255, 112, 67)  # bogus end
    assert tuple(colors[2]) == (255, 214, 10)  # at the threshold
    assert tuple(colors[3]) == (41, 182, 246)  # real end
    assert tuple(colors[4]) == (158, 158, 158)  # unscored


def test_display_pyramid_halves_until_small():
    image = np.arange(64 * 40, dtype=np.uint8).reshape(64, 40)
    levels = display_pyramid(image, max_side=16)
    assert [level.shape for level in levels] == [(64, 40), (32, 20), (16, 10)]
    assert levels[1][0, 0] == int(image[:2, :2].mean() + 0.5)  # rounded block mean


# ---------------------------------------------------------------------- frame view


def test_frame_view_draws_one_marker_per_object(frame_view, data):
    assert len(frame_view.scatter.data) == len(data)
    np.testing.assert_array_equal(frame_view.visible_marker_indices(), np.arange(len(data)))
    points = frame_view.scatter.data
    np.testing.assert_allclose(points["x"], data.x)
    np.testing.assert_allclose(points["y"], data.y)
    assert [int(d) for d in points["data"]] == list(range(len(data)))


def test_frame_view_shows_the_frame_as_ds9_does(frame_view, data):
    image = frame_view.image_item.image
    assert image.dtype == np.uint8
    assert image.shape == data.frame.image.shape
    assert not frame_view.view_box.yInverted()
    # pixel (row, col) is centred on (x=col, y=row)
    bounds = frame_view.image_item.mapRectToParent(frame_view.image_item.boundingRect())
    height, width = image.shape
    assert (bounds.left(), bounds.bottom(), bounds.width(), bounds.height()) == (
        -0.5,
        height - 0.5,
        width,
        height,
    )
    # stars are bright in the display image at their catalog positions
    rows, cols = np.rint(data.y).astype(int), np.rint(data.x).astype(int)
    assert np.median(image[rows, cols]) > np.median(image) + 50


def test_selecting_an_object_centres_and_highlights_it(frame_view, state, data):
    rows, cols = data.frame.image.shape
    for index in (3, 41, 17):
        state.select(index)
        x, y = frame_view.view_center()
        rect = frame_view.view_box.viewRect()
        assert rect.contains(QPointF(data.x[index], data.y[index]))
        # centred on the object, unless that would pan the view past the frame's edge
        for centre, target, low, high, extent in (
            (x, data.x[index], rect.left(), rect.right(), cols),
            (y, data.y[index], rect.top(), rect.bottom(), rows),
        ):
            at_edge = low <= -0.5 + 1e-6 or high >= extent - 0.5 - 1e-6
            assert abs(centre - target) < 1.0 or at_edge
        assert (frame_view.highlight.data["x"][0], frame_view.highlight.data["y"][0]) == (
            data.x[index],
            data.y[index],
        )
    state.select(-1)
    assert len(frame_view.highlight.data) == 0


def test_clicking_a_marker_selects_its_object(frame_view, state, data, qtbot):
    index = 22
    frame_view.fit_frame()
    marker = QPointF(data.x[index], data.y[index])
    qtbot.waitUntil(lambda: frame_view.view_box.viewRect().contains(marker), timeout=1000)
    scene = frame_view.view_box.mapViewToScene(QPointF(data.x[index], data.y[index]))
    where = frame_view.plot.mapFromScene(scene)
    with qtbot.waitSignal(state.selectionChanged, timeout=1000) as blocker:
        qtbot.mouseClick(
            frame_view.plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(where.x(), where.y())
        )
    assert blocker.args == [index]
    assert state.selected == index


def test_marker_click_signal_selects_the_nearest_of_overlapping_points(frame_view, state):
    points = frame_view.scatter.points()
    frame_view.scatter.sigClicked.emit(frame_view.scatter, [points[9]], None)
    assert state.selected == 9

    class Click:
        def pos(self):
            return points[5].pos()

    frame_view.scatter.sigClicked.emit(frame_view.scatter, [points[8], points[5]], Click())
    assert state.selected == 5


def test_show_filter_follows_the_threshold(frame_view, state, data):
    frame_view.show_combo.setCurrentText(SHOW_REAL)
    real = np.flatnonzero(data.scores >= 0.5)
    assert 0 < len(real) < len(data)
    np.testing.assert_array_equal(frame_view.visible_marker_indices(), real)
    assert len(frame_view.scatter.data) == len(real)

    state.set_threshold(0.8)
    np.testing.assert_array_equal(
        frame_view.visible_marker_indices(), np.flatnonzero(data.scores >= 0.8)
    )
    frame_view.show_combo.setCurrentText(SHOW_BOGUS)
    bogus = np.flatnonzero(data.scores < 0.8)  # NaN (unscored) is neither
    np.testing.assert_array_equal(frame_view.visible_marker_indices(), bogus)
    assert len(bogus) + np.count_nonzero(data.scores >= 0.8) == len(data) - 2
    frame_view.show_combo.setCurrentText(SHOW_ALL)
    assert len(frame_view.visible_marker_indices()) == len(data)


def test_labeled_markers_take_the_label_colour(frame_view, state, qtbot):
    state.set_labels([4], REAL)
    # markers follow labels once labeling pauses, not inside the keypress
    qtbot.waitUntil(
        lambda: frame_view.scatter.data["pen"][4].color().getRgb()[:3] == LABELED_REAL_COLOR,
        timeout=2000,
    )
    pen = frame_view.scatter.data["pen"][4]
    assert pen.color().getRgb()[:3] == LABELED_REAL_COLOR
    other = frame_view.scatter.data["pen"][5]
    assert other.color().getRgb()[:3] != LABELED_REAL_COLOR


def test_changing_the_stretch_changes_the_image(frame_view):
    before = frame_view.image_item.image.copy()
    frame_view.stretch_combo.setCurrentText("asinh")
    after_stretch = frame_view.image_item.image.copy()
    assert after_stretch.mean() > before.mean() + 5
    frame_view.interval_combo.setCurrentText("min-max")
    after_interval = frame_view.image_item.image
    assert np.count_nonzero(after_interval != after_stretch) > after_interval.size // 2


def test_frame_view_empties_without_data(frame_view, state):
    state.set_data(None)
    assert frame_view.image_item.image is None
    assert len(frame_view.scatter.data) == 0
    assert len(frame_view.visible_marker_indices()) == 0


# ---------------------------------------------------------------------- threshold panel


def test_spin_moves_state_and_line(threshold_panel, state, qtbot):
    emitted = []
    state.thresholdChanged.connect(emitted.append)
    threshold_panel.spin.setValue(0.3)
    assert state.threshold == pytest.approx(0.3)
    assert threshold_panel.line.value() == pytest.approx(0.3)
    assert emitted == [pytest.approx(0.3)]  # no echo from the line back to the state


def test_dragging_the_line_moves_state_and_spin(threshold_panel, state):
    threshold_panel.line.setValue(0.71234)
    assert state.threshold == pytest.approx(0.712)
    assert threshold_panel.spin.value() == pytest.approx(0.712)
    assert threshold_panel.line.value() == pytest.approx(0.712)


def test_state_moves_spin_and_line(threshold_panel, state):
    state.set_threshold(0.25)
    assert threshold_panel.spin.value() == pytest.approx(0.25)
    assert threshold_panel.line.value() == pytest.approx(0.25)


def test_a_finer_threshold_from_elsewhere_is_not_rounded_back(threshold_panel, state):
    emitted = []
    state.thresholdChanged.connect(emitted.append)
    state.set_threshold(0.12345)  # e.g. from a target-rate calculation
    assert state.threshold == 0.12345
    assert emitted == [0.12345]
    assert threshold_panel.spin.value() == pytest.approx(0.123)
    assert threshold_panel.line.value() == pytest.approx(0.12345)


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.93, 1.0])
def test_counts_match_the_data(threshold_panel, state, data, threshold):
    state.set_threshold(threshold)
    real, bogus, unscored = data.counts(threshold)
    assert threshold_panel.counts() == (real, bogus, unscored)
    assert real + bogus + unscored == len(data)
    text = threshold_panel.counts_label.text()
    assert f"<b>{real}</b>" in text and f"<b>{bogus}</b>" in text
    assert f"unscored: <b>{unscored}</b>" in text


def test_histogram_holds_every_scored_object_split_at_threshold(threshold_panel, state, data):
    state.set_threshold(0.6)
    real_heights = threshold_panel.real_bars.opts["height"]
    bogus_heights = threshold_panel.bogus_bars.opts["height"]
    assert real_heights.sum() + bogus_heights.sum() == np.isfinite(data.scores).sum()
    assert np.all(threshold_panel.real_bars.opts["x"] >= 0.6)
    assert np.all(threshold_panel.bogus_bars.opts["x"] < 0.6)


def test_error_rates_appear_once_both_classes_are_labeled(threshold_panel, state, data):
    assert len(threshold_panel.fnr_curve.getData()[0] or []) == 0
    assert "label both classes" in threshold_panel.rates_label.text()
    state.set_labels(np.arange(0, 20), REAL)
    assert len(threshold_panel.fnr_curve.getData()[0] or []) == 0
    state.set_labels(np.arange(20, 40), BOGUS)
    thresholds, fnr = threshold_panel.fnr_curve.getData()
    expected_fnr, expected_fpr = error_rates(data.scores, data.labels, thresholds)
    np.testing.assert_allclose(fnr, expected_fnr)
    np.testing.assert_allclose(threshold_panel.fpr_curve.getData()[1], expected_fpr)
    assert "FNR" in threshold_panel.rates_label.text()


# ---------------------------------------------------------------------- detail panel


def test_detail_shows_the_selected_objects_row_and_stamp(detail, state, data):
    index = 12
    state.select(index)
    table = detail.row_table
    assert table.rowCount() == len(data.table.colnames)
    cells = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert float(cells["x"]) == pytest.approx(data.x[index], abs=1e-6)
    assert float(cells["y"]) == pytest.approx(data.y[index], abs=1e-6)
    assert float(cells["flux"]) == pytest.approx(data.table["flux"][index], rel=1e-6)
    assert float(cells["rb_score"]) == pytest.approx(data.scores[index], rel=1e-6)
    assert str(index) in detail.title_label.text()

    size = data.rescale.stamp_size
    assert detail.raw_image.shape == (size, size)
    assert detail.raw_image.dtype == np.uint8
    stamp = cut_stamps(data.frame, [data.x[index]], [data.y[index]], data.rescale).data[0]
    expected = to_uint8(
        stamp,
        interval=detail.raw_interval_combo.currentText(),
        stretch=detail.raw_stretch_combo.currentText(),
    )
    np.testing.assert_array_equal(detail.raw_image, expected)  # same pixels, same way up
    peak_row, peak_col = np.unravel_index(np.argmax(stamp), stamp.shape)
    assert detail.raw_image[peak_row, peak_col] == detail.raw_image.max()
    assert abs(peak_row - size // 2) <= 2 and abs(peak_col - size // 2) <= 2
    assert detail.linear_item.image.shape == (data.params.target_size,) * 2


def test_detail_empties_on_deselect(detail, state):
    state.select(5)
    assert detail.row_table.rowCount() > 0
    state.select(-1)
    assert detail.row_table.rowCount() == 0
    assert detail.raw_image is None
    assert detail.title_label.text() == EMPTY_TEXT


def test_detail_raw_stretch_changes_the_stamp(detail, state):
    state.select(7)
    before = detail.raw_image.copy()
    detail.raw_stretch_combo.setCurrentText("linear")
    assert np.count_nonzero(detail.raw_image != before) > before.size // 4


def test_detail_follows_label_threshold_and_reason(detail, state, data):
    state.select(58)  # unscored in the fixture
    assert "off frame" in detail.reason_label.text()
    state.select(3)
    state.set_labels([3], BOGUS)
    assert "bogus" in detail.label_label.text()
    state.set_threshold(float(data.scores[3]) + 0.01)
    assert "bogus" in detail.score_label.text()
    state.set_threshold(float(data.scores[3]))
    assert "real" in detail.score_label.text()


def test_detail_shows_sky_position_with_a_wcs(detail, state, data):
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [1, 1]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    data.frame.wcs = wcs
    state.select(10)
    ra, dec = wcs.all_pix2world([[data.x[10], data.y[10]]], 0)[0]
    assert f"{ra:.6f}" in detail.sky_label.text()
    assert f"{dec:+.6f}" in detail.sky_label.text()
