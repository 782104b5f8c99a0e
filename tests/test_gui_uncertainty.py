"""The window estimates uncertainty in the background after scoring; its sorts use it."""

import numpy as np
import pytest
from gui_window import shown_window

from rbvet.core.paths import demo_frame_path
from rbvet.core.session import SORT_BALD, SORT_LABEL_NEXT, SORT_UNCERTAINTY

CLASSIFY_TIMEOUT_MS = 180_000


@pytest.fixture
def window(qtbot, tmp_path):
    main_window = shown_window(qtbot, tmp_path)
    yield main_window
    main_window.cancel_job(wait=True)
    main_window.uncertainty.stop(timeout_ms=10_000)


def open_demo_with_uncertainty(qtbot, window):
    frame = demo_frame_path()
    with qtbot.waitSignal(window.state.uncertaintyChanged, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(frame, frame.with_suffix(".ecsv"))
    return window.state.data


def choose_sort(panel, key):
    position = panel.sort_combo.findData(key)
    assert position >= 0, key
    panel.sort_combo.setCurrentIndex(position)
    panel.sort_combo.activated.emit(position)


def test_uncertainty_arrives_after_scoring_and_label_next_shows_the_most_uncertain(qtbot, window):
    data = open_demo_with_uncertainty(qtbot, window)
    scored = np.isfinite(data.scores)
    assert np.isfinite(data.bald[scored]).all() and (data.bald[scored] >= 0).all()
    assert data.features.shape == (len(data), 64)
    assert data.clusters.min() >= 0 or not scored.all()
    assert "rb_bald" in data.table.colnames
    grid = window.grid
    choose_sort(grid, SORT_BALD)
    order = grid.proxy.order()
    assert data.bald[order[0]] == np.nanmax(data.bald)
    assert window.state.selected == order[0]  # the grid went to the top of the new order
    choose_sort(grid, SORT_LABEL_NEXT)
    first = grid.proxy.order()[0]
    assert data.bald[first] == np.nanmax(data.bald)  # the first pick of the first round
    window.labels.label([first], 1)
    qtbot.waitUntil(lambda: grid.proxy.order()[0] != first)
    assert grid.sort_combo.currentText() == "label next"
    choose_sort(grid, SORT_UNCERTAINTY)
    assert grid.sort_combo.currentText() == "closest to the threshold"
    first = grid.proxy.order()[0]
    gaps = np.abs(data.scores - window.state.threshold)
    assert gaps[first] == np.nanmin(gaps)
