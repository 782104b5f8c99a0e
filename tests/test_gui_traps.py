"""The labeling traps a new user fell into (issue 19): each test drives the window as that
user did and checks what they should have seen.

Every window here uses settings and a label store in a temporary folder.
"""

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from test_gui_labeling import new_window, press

from rbvet.gui.labeling import MANY_LABELED_OBJECTS
from rbvet.gui.state import BOGUS, REAL, UNLABELED


@pytest.fixture
def window(qtbot, tmp_path, make_vetting_data):
    main_window = new_window(qtbot, tmp_path, tmp_path / "labels.sqlite")
    main_window.show_data(make_vetting_data(n=80, seed=0, unscored=2), threshold=0.5)
    main_window.grid.view.setFocus()
    yield main_window
    main_window.cancel_job(wait=True)
    main_window.close()


# ------------------------------------------------------------------ one key, many tiles


def test_one_key_on_many_tiles_says_what_it_did_and_undoes_it(qtbot, window):
    labels = window.state.data.labels
    press(qtbot, window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    press(qtbot, window, Qt.Key.Key_B)
    labeled = int(np.count_nonzero(labels == BOGUS))
    assert labeled >= MANY_LABELED_OBJECTS
    banner = window.undo_banner
    assert banner.isVisible()
    assert f"labeled {labeled} objects bogus" in banner.message

    qtbot.mouseClick(banner.undo_button, Qt.MouseButton.LeftButton)
    assert (labels == UNLABELED).all()
    assert not banner.isVisible()


def test_a_few_tiles_or_a_later_label_leave_no_undo_notice(qtbot, window):
    labels = window.state.data.labels
    window.grid.view.label_selection(REAL)  # one tile: no notice
    assert not window.undo_banner.isVisible()
    press(qtbot, window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    press(qtbot, window, Qt.Key.Key_B)
    assert window.undo_banner.isVisible()
    # A later action hides it: its Undo must never undo anything but what it names.
    window.labels.label([int(np.flatnonzero(labels == BOGUS)[0])], REAL)
    assert not window.undo_banner.isVisible()
