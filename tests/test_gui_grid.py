"""The cutout grid: order, filters, selection in both directions, and painting."""

import numpy as np
import pytest
from PyQt6.QtCore import QEvent, QModelIndex, QObject, QPoint, QSize, Qt
from PyQt6.QtGui import QColor

from rbvet.core.session import (
    FILTER_DISAGREE,
    SORT_POSITION,
    SORT_SCORE,
    SORT_UNCERTAINTY,
    column_sort_key,
)
from rbvet.gui.grid import (
    LABEL_ROLE,
    OBJECT_INDEX_ROLE,
    SCORE_ROLE,
    GridPanel,
    TileDelegate,
)
from rbvet.gui.state import BOGUS, REAL, UNLABELED, VettingState

# The offscreen platform says so whenever a top-level widget with a layout is shown.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def score_order(scores, descending=True):
    """Reference order: by score, unscored last, ties in catalog order."""
    finite = np.isfinite(scores)
    keyed = np.where(finite, -scores if descending else scores, np.inf)
    return np.argsort(keyed, kind="stable")


@pytest.fixture
def state():
    return VettingState()


@pytest.fixture
def panel(qtbot, state, make_vetting_data):
    widget = GridPanel(state)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    state.set_data(make_vetting_data(n=60, seed=0, unscored=2), threshold=0.5)
    return widget


def choose_sort(panel, key):
    position = panel.sort_combo.findData(key)
    assert position >= 0, key
    panel.sort_combo.setCurrentIndex(position)
    panel.sort_combo.activated.emit(position)


def choose_filter(panel, name):
    assert panel.filter_combo.findText(name) >= 0, name
    panel.filter_combo.setCurrentText(name)


def tile_centre(panel, row):
    rect = panel.view.visualRect(panel.proxy.index(row))
    assert rect.isValid() and panel.view.viewport().rect().contains(rect.center())
    return rect.center()


def pixel(image, point):
    return QColor(image.pixel(point))


def test_default_order_is_score_descending_with_unscored_last(panel, state):
    scores = state.data.scores
    order = panel.proxy.order()
    assert np.array_equal(order, score_order(scores))
    assert not np.isfinite(scores[order[-2:]]).any()
    assert panel.proxy.rowCount() == len(scores)
    assert panel.count_label.text() == "60 of 60 shown"
    first = panel.proxy.index(0)
    assert first.data(OBJECT_INDEX_ROLE) == order[0]
    assert first.data(SCORE_ROLE) == pytest.approx(float(np.nanmax(scores)))
    assert first.data() == f"{np.nanmax(scores):.3f}"


def test_ascending_score_keeps_unscored_last(panel, state):
    panel.descending_button.setChecked(False)
    assert not panel.proxy.descending
    order = panel.proxy.order()
    assert np.array_equal(order, score_order(state.data.scores, descending=False))
    assert not np.isfinite(state.data.scores[order[-2:]]).any()
    assert panel.descending_button.text().endswith("asc")


def test_uncertainty_order_follows_the_threshold(panel, state):
    choose_sort(panel, SORT_UNCERTAINTY)
    assert not panel.descending_button.isEnabled()
    scores = state.data.scores
    for threshold in (0.5, 0.2, 0.85):
        state.set_threshold(threshold)
        order = panel.proxy.order()
        distance = np.abs(scores[order[:-2]] - np.float32(threshold))
        assert np.all(np.diff(distance) >= 0)
        assert order[0] == np.nanargmin(np.abs(scores - np.float32(threshold)))
        assert not np.isfinite(scores[order[-2:]]).any()


def test_real_and_bogus_filters_match_counts_and_follow_the_threshold(panel, state):
    data = state.data
    for threshold in (0.5, 0.3, 0.77):
        state.set_threshold(threshold)
        real, bogus, unscored = data.counts(threshold)
        choose_filter(panel, "real")
        shown = panel.proxy.order()
        assert len(shown) == real == panel.proxy.rowCount()
        assert (data.scores[shown] >= np.float32(threshold)).all()
        assert np.array_equal(shown, score_order(data.scores)[:real])
        assert panel.count_label.text() == f"{real} of 60 shown"
        choose_filter(panel, "bogus")
        shown = panel.proxy.order()
        assert len(shown) == bogus
        assert (data.scores[shown] < np.float32(threshold)).all()
        choose_filter(panel, "unscored")
        assert len(panel.proxy.order()) == unscored == 2
    # the filter alone follows a threshold move
    choose_filter(panel, "real")
    state.set_threshold(0.9)
    assert len(panel.proxy.order()) == data.counts(0.9)[0]
    # a score exactly at the threshold is real
    on_threshold = int(np.nanargmax(np.where(data.scores < 0.9, data.scores, np.nan)))
    state.set_threshold(float(data.scores[on_threshold]))
    assert on_threshold in panel.proxy.order()
    assert len(panel.proxy.order()) == data.counts(state.threshold)[0]


def test_unlabeled_and_disagree_filters_follow_labels(panel, state):
    data = state.data
    choose_filter(panel, "unlabeled")
    assert len(panel.proxy.order()) == 60
    order = score_order(data.scores)
    top, bottom = order[:3], order[55:57]
    state.set_labels(top, REAL)
    state.set_labels(bottom, REAL)  # bottom of the scored list: real below threshold
    shown = panel.proxy.order()
    assert len(shown) == 55
    assert not np.isin(np.r_[top, bottom], shown).any()
    choose_filter(panel, FILTER_DISAGREE)
    assert np.array_equal(np.sort(panel.proxy.order()), np.sort(bottom))
    state.set_labels(bottom, BOGUS)
    assert len(panel.proxy.order()) == 0


def test_labels_update_rows_without_a_reset(qtbot, panel, state):
    resets = []
    panel.proxy.modelReset.connect(lambda: resets.append(1))
    panel.model.modelReset.connect(lambda: resets.append(1))
    changed = []
    panel.model.dataChanged.connect(lambda a, b, roles: changed.append((a.row(), b.row())))
    proxied = []
    panel.proxy.dataChanged.connect(lambda a, b, roles: proxied.append((a.row(), b.row())))
    state.set_labels([7, 8, 9, 20], BOGUS)
    assert resets == []
    assert changed == [(7, 9), (20, 20)]
    rows = sorted(panel.proxy.row_of(i) for i in (7, 8, 9, 20))
    assert min(first for first, _ in proxied) == rows[0]
    assert max(last for _, last in proxied) == rows[-1]
    assert panel.proxy.index(panel.proxy.row_of(8)).data(LABEL_ROLE) == BOGUS
    assert panel.proxy.index(panel.proxy.row_of(10)).data(LABEL_ROLE) == UNLABELED


def test_clicking_a_tile_selects_its_object(qtbot, panel, state):
    order = panel.proxy.order()
    for row in (3, 11, 0):
        point = tile_centre(panel, row)
        qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=point)
        assert state.selected == order[row]
        assert panel.view.currentIndex().row() == row
    assert np.array_equal(panel.view.selected_objects(), [order[0]])


def test_ctrl_click_extends_the_selection(qtbot, panel, state):
    order = panel.proxy.order()
    view = panel.view.viewport()
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=tile_centre(panel, 1))
    qtbot.mouseClick(
        view,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        pos=tile_centre(panel, 4),
    )
    assert state.selected == order[4]
    assert np.array_equal(panel.view.selected_objects(), np.sort(order[[1, 4]]))


def test_state_selection_makes_the_tile_current_and_visible(qtbot, panel, state):
    order = panel.proxy.order()
    view = panel.view
    for row in (len(order) - 1, 2, 40):
        target = int(order[row])
        state.select(target)
        current = view.currentIndex()
        assert current.row() == row and current.data(OBJECT_INDEX_ROLE) == target
        assert view.viewport().rect().contains(view.visualRect(current))
        assert np.array_equal(view.selected_objects(), [target])
    state.select(-1)
    assert not view.currentIndex().isValid()
    assert len(view.selected_objects()) == 0


def test_selection_stays_on_its_object_when_the_order_changes(panel, state):
    target = int(panel.proxy.order()[30])
    state.select(target)
    # An order that moves under the selection (from code, a label or the threshold) keeps
    # it; a sort the user chooses starts at the top (the test after this one).
    panel.proxy.set_sort(SORT_POSITION)
    assert panel.view.currentIndex().data(OBJECT_INDEX_ROLE) == target
    assert np.array_equal(panel.view.selected_objects(), [target])
    assert panel.view.viewport().rect().contains(panel.view.visualRect(panel.view.currentIndex()))
    choose_filter(panel, "real" if state.data.scores[target] < 0.5 else "bogus")
    assert not panel.view.currentIndex().isValid()
    assert state.selected == target  # hiding a tile does not deselect the object


def test_position_sort_is_by_y_then_x(panel, state):
    choose_sort(panel, SORT_POSITION)
    data = state.data
    scored = np.flatnonzero(np.isfinite(data.scores))
    expected = scored[np.lexsort((data.x[scored], data.y[scored]))]
    assert np.array_equal(panel.proxy.order()[: len(scored)], expected)


def test_catalog_column_sort(panel, state):
    data = state.data
    assert panel.sort_combo.findText("flux") >= 0
    choose_sort(panel, column_sort_key("flux"))
    flux = np.asarray(data.table["flux"])
    scored = np.isfinite(data.scores)
    order = panel.proxy.order()
    assert np.all(np.diff(flux[order[:58]]) >= 0)
    assert not scored[order[-2:]].any()
    panel.descending_button.setChecked(True)
    order = panel.proxy.order()
    assert np.all(np.diff(flux[order[:58]]) <= 0)
    assert order[0] == np.argmax(np.where(scored, flux, -np.inf))


def test_new_data_reset_the_grid(panel, state, make_vetting_data):
    choose_sort(panel, column_sort_key("flux"))
    data = make_vetting_data(n=30, seed=3, unscored=0)
    data.table.remove_column("flux")
    state.set_data(data)
    assert panel.proxy.sort_key == SORT_SCORE  # the column is gone
    assert panel.sort_combo.currentData() == SORT_SCORE
    assert panel.sort_combo.findText("flux") < 0
    assert np.array_equal(panel.proxy.order(), score_order(data.scores))
    assert panel.count_label.text() == "30 of 30 shown"
    state.set_data(None)
    assert panel.proxy.rowCount() == 0 and len(panel.proxy.order()) == 0
    panel.grab()


def test_tile_size(panel):
    view = panel.view
    size = view.visualRect(panel.proxy.index(0)).size()
    assert view.delegate.tile_size == QSize(126, 62)  # 2 x (31, 63): whole atlas pixels
    panel.size_slider.setValue(93)
    assert view.delegate.tile_size.height() == 93
    bigger = view.visualRect(panel.proxy.index(0)).size()
    assert bigger.height() > size.height() and bigger.width() > size.width()
    panel.size_slider.setValue(100)  # snaps to a whole number of atlas pixels
    assert panel.size_slider.value() == 93


@pytest.mark.parametrize("tile_scale", [31, 62, 124])
def test_columns_fill_the_width(qtbot, panel, tile_scale):
    panel.size_slider.setValue(tile_scale)
    view = panel.view
    for width in (640, 803, 1111):
        panel.resize(width, 600)
        qtbot.waitUntil(lambda width=width: view.viewport().width() < width)
        view.executeDelayedItemsLayout()
        tops = [view.visualRect(panel.proxy.index(row)).top() for row in range(60)]
        columns = tops.count(tops[0])
        cell = view.delegate.cell_size.width()
        assert columns >= 1 and tops[columns] > tops[0]
        assert view.viewport().width() - columns * view.gridSize().width() < cell
        assert view.visualRect(panel.proxy.index(columns - 1)).right() < view.viewport().width()


def test_paint_draws_the_right_tile_and_frames(qtbot, panel, state):
    data = state.data
    order = panel.proxy.order()
    state.set_labels([order[0]], REAL)
    state.set_labels([order[1]], BOGUS)  # above the threshold: a disagreement
    image = panel.view.viewport().grab().toImage()
    values = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, 200, 7)}
    assert len(values) > 50

    delegate = panel.view.delegate
    margin = delegate.MARGIN
    first = panel.view.visualRect(panel.proxy.index(0))
    tile = first.topLeft() + QPoint(margin, margin)
    # 2x nearest-neighbour copy of the object's atlas tile, both channels
    atlas = data.atlas[order[0]]
    drawn = np.array(
        [[pixel(image, tile + QPoint(2 * c, 2 * r)).red() for c in range(63)] for r in range(31)]
    )
    assert np.array_equal(drawn, atlas)
    assert pixel(image, tile + QPoint(20, -2)) == delegate.REAL_COLOUR

    second = panel.view.visualRect(panel.proxy.index(1)).topLeft() + QPoint(margin, margin)
    frame_colours = {pixel(image, second + QPoint(x, -2)).name() for x in range(10, 60)}
    assert {delegate.BOGUS_COLOUR.name(), delegate.DISAGREE_COLOUR.name()} <= frame_colours
    assert pixel(image, second + QPoint(123, 2)) == delegate.DISAGREE_COLOUR

    third = panel.view.visualRect(panel.proxy.index(2)).topLeft() + QPoint(margin, margin)
    assert pixel(image, third + QPoint(20, -1)) == delegate.MUTED_REAL


def test_unscored_tiles_are_dark(qtbot, panel, state):
    last = panel.proxy.rowCount() - 1
    index = panel.proxy.index(last)
    assert not np.isfinite(index.data(SCORE_ROLE))
    assert index.data() == "off frame"
    panel.view.scrollTo(index)
    image = panel.view.viewport().grab().toImage()
    corner = panel.view.visualRect(index).topLeft() + QPoint(TileDelegate.MARGIN + 2, 8)
    assert pixel(image, corner) == TileDelegate.UNSCORED_FILL


class PaintCounter(QObject):
    def __init__(self):
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def test_threshold_move_schedules_a_repaint(qtbot, panel, state):
    counter = PaintCounter()
    panel.view.viewport().installEventFilter(counter)
    panel.view.viewport().update()
    qtbot.waitUntil(lambda: counter.paints > 0, timeout=1000)  # the paints pending before
    counter.paints = 0
    state.set_threshold(0.2)
    qtbot.waitUntil(lambda: counter.paints > 0, timeout=1000)


def test_frames_follow_the_threshold(qtbot, panel, state):
    order = panel.proxy.order()
    row = int(np.flatnonzero(state.data.scores[order] < 0.5)[0])
    panel.view.scrollTo(panel.proxy.index(row))
    corner = panel.view.visualRect(panel.proxy.index(row)).topLeft()
    corner += QPoint(TileDelegate.MARGIN + 20, TileDelegate.MARGIN - 1)
    before = pixel(panel.view.viewport().grab().toImage(), corner)
    state.set_threshold(0.01)
    after = pixel(panel.view.viewport().grab().toImage(), corner)
    assert before == TileDelegate.MUTED_BOGUS and after == TileDelegate.MUTED_REAL


def test_empty_state_shows_nothing(qtbot, state):
    widget = GridPanel(state)
    qtbot.addWidget(widget)
    assert widget.proxy.rowCount() == 0
    assert widget.view.currentIndex() == QModelIndex()
    assert widget.count_label.text() == "0 of 0 shown"
    widget.grab()


def test_current_tile_stays_in_view_when_the_filter_widens(panel, state):
    choose_filter(panel, "bogus")
    target = int(panel.proxy.order()[-1])  # the lowest score
    state.select(target)
    panel.view.scrollToTop()
    choose_filter(panel, "all")
    current = panel.view.currentIndex()
    assert current.data(OBJECT_INDEX_ROLE) == target and current.row() == 57
    assert panel.view.viewport().rect().contains(panel.view.visualRect(current))


def test_arrow_keys_walk_the_grid_and_select(qtbot, panel, state):
    order = panel.proxy.order()
    view = panel.view
    first_row_top = view.visualRect(panel.proxy.index(0)).top()
    columns = sum(
        view.visualRect(panel.proxy.index(row)).top() == first_row_top for row in range(len(order))
    )
    assert 2 < columns < len(order)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=tile_centre(panel, 0))
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert state.selected == order[1]
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert state.selected == order[1 + columns]


def test_programmatic_settings_show_in_the_toolbar(panel):
    panel.proxy.set_filter("labeled")
    assert panel.filter_combo.currentText() == "labeled"
    assert panel.count_label.text() == "0 of 60 shown"
    panel.proxy.set_sort(SORT_POSITION)
    assert panel.sort_combo.currentData() == SORT_POSITION
    with pytest.raises(ValueError):
        panel.proxy.set_filter("maybe")


def test_selection_survives_filtering_on_its_objects(panel, state):
    panel.view.selectAll()
    choose_filter(panel, "real")
    real = panel.proxy.order()
    assert np.array_equal(panel.view.selected_objects(), np.sort(real))
    choose_filter(panel, "all")
    assert np.array_equal(panel.view.selected_objects(), np.sort(real))
    rows = sorted(panel.proxy.row_of(i) for i in real)
    assert rows == list(range(len(real)))  # the real tiles lead the score order


def test_a_new_sort_starts_at_the_top_with_the_keys_on_the_grid(qtbot, panel, state):
    middle = int(panel.proxy.order()[30])
    state.select(middle)
    panel.descending_button.setChecked(not panel.descending_button.isChecked())  # ascending
    order = panel.proxy.order()
    assert state.selected == int(order[0]) != middle
    assert panel.view.verticalScrollBar().value() == 0
    qtbot.waitUntil(panel.view.hasFocus)
    uncertain = panel.sort_combo.findData(SORT_UNCERTAINTY)
    panel.sort_combo.activated.emit(uncertain)
    order = panel.proxy.order()
    assert state.selected == int(order[0])
    gaps = np.abs(state.data.scores[order[:10]] - state.threshold)
    assert np.all(np.diff(gaps) >= 0)  # the most uncertain first
