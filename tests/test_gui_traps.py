"""The labeling traps a new user fell into (issue 19): each test drives the window as that
user did and checks what they should have seen.

Every window here uses settings and a label store in a temporary folder.
"""

import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Table
from PyQt6.QtCore import Qt
from test_gui_labeling import CLASSIFY_TIMEOUT_MS, new_window, press
from test_retrain_few import few_real_labels

from rbvet.core.cutouts.stamps import REASON_MOSTLY_MISSING, REASON_NONFINITE
from rbvet.core.jobs import run_job
from rbvet.core.model import card_path, onnx_path
from rbvet.core.paths import default_model_path, demo_frame_path
from rbvet.gui.jobs import classify_frame
from rbvet.gui.labeling import MANY_LABELED_OBJECTS
from rbvet.gui.retrain_dialog import RetrainDialog
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


# ------------------------------------------------------------------ retraining with few labels


@pytest.fixture
def retrain_dialog(qtbot, tmp_path):
    store = few_real_labels(tmp_path / "labels.sqlite")
    dialog = RetrainDialog(store, threshold=0.5, models_dir=tmp_path / "models")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_the_retrain_dialog_says_before_training_that_a_class_is_too_small(retrain_dialog):
    assert "only 3 real labeled" in retrain_dialog.store_label.text()
    assert retrain_dialog.class_size_warning.startswith("only 3 real labeled")
    assert retrain_dialog.train_button.isEnabled()  # said, not refused


def test_an_undefined_validation_auc_is_logged_and_drawn_as_missing(retrain_dialog):
    nan = float("nan")
    retrain_dialog._on_epoch(0, 3, {"loss": 0.4, "val_loss": 0.5, "auc": 0.9, "val_auc": nan})
    assert "(validation n/a)" in retrain_dialog.log_view.toPlainText()
    x, y = retrain_dialog.curves["val_auc"].getData()
    assert x is None or len(x) == 0  # no point at all, never one at 0
    assert "n/a" in retrain_dialog.auc_plot.plotItem.titleLabel.text
    retrain_dialog._on_epoch(1, 3, {"loss": 0.3, "val_loss": 0.4, "auc": 0.9, "val_auc": 0.8})
    retrain_dialog._on_epoch(2, 3, {"loss": 0.3, "val_loss": 0.4, "auc": 0.9, "val_auc": nan})
    x, y = retrain_dialog.curves["val_auc"].getData()
    assert list(x) == [1, 2, 3] and y[1] == 0.8 and np.isnan(y[0]) and np.isnan(y[2])
    assert retrain_dialog.curves["val_auc"].opts["connect"] == "finite"  # gaps, not zeros


def test_accept_says_what_the_comparison_could_not_measure(retrain_dialog):
    nan = float("nan")
    entry = {"auc": nan, "fnr": nan, "fpr": 0.04, "threshold": 0.5}
    counts = {"objects": 26, "real": 0, "bogus": 26}
    comparison = {
        "old": {"name": "rbvet_default.keras", **entry, **counts},
        "new": {"name": "new model", **entry, **counts},
    }
    retrain_dialog._on_trained(SimpleNamespace(comparison=comparison, seconds=1.0))
    assert retrain_dialog.accept_note.isVisible()
    note = retrain_dialog.accept_note.text()
    assert "no real ones" in note and "AUC, FNR are not measured" in note
    assert retrain_dialog.comparison_labels[("auc", "new")].text() == "n/a"
    assert retrain_dialog.accept_button.toolTip() == note


# ------------------------------------------------------------------ the model across restarts


def copy_shipped_model(folder, name="mine.v1"):
    """A copy of the shipped model (network, ONNX file and card) under another name."""
    source = default_model_path()
    target = folder / f"{name}.keras"
    shutil.copy(source, target)
    shutil.copy(onnx_path(source), onnx_path(target))
    shutil.copy(card_path(source), card_path(target))
    return target


def launch(qtbot, folder):
    """A new window on the settings and label store under ``folder``: a new session."""
    return new_window(qtbot, folder, folder / "labels.sqlite")


def open_demo(qtbot, window):
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(demo_frame_path())


def test_an_accepted_model_is_used_at_the_next_launch_until_reverted(qtbot, tmp_path):
    model = copy_shipped_model(tmp_path)
    first = launch(qtbot, tmp_path)
    first.retrain_from_labels().modelAccepted.emit(str(model))  # as Accept does
    first.close()

    second = launch(qtbot, tmp_path)
    assert second.model_path == str(model.resolve())
    open_demo(qtbot, second)
    assert second.state.data.model_name == "mine.v1.keras"
    assert second.model_label.text() == "model: mine.v1.keras (remembered)"
    assert "Revert to the shipped model" in second.model_label.toolTip()

    with qtbot.waitSignal(second.classified, timeout=CLASSIFY_TIMEOUT_MS):
        second.revert_to_shipped_model()
    assert second.state.data.model_name == default_model_path().name
    assert "remembered" not in second.model_label.text()
    second.close()
    earlier = launch(qtbot, tmp_path)  # kept: a dropped window dies mid-test
    assert earlier.model_path is None


@pytest.mark.parametrize("problem", ["vanished", "broken"])
def test_a_remembered_model_that_vanished_or_broke_gives_the_shipped_one_and_a_line(
    qtbot, tmp_path, make_vetting_data, problem
):
    model = copy_shipped_model(tmp_path)
    earlier = launch(qtbot, tmp_path)  # kept: a dropped window dies mid-test
    earlier.model_memory.remember(model)
    if problem == "vanished":
        model.unlink()
    else:
        model.write_bytes(model.read_bytes()[:1000])  # truncated
    window = launch(qtbot, tmp_path)
    assert window.model_path is None  # the shipped model
    window.show_data(make_vetting_data(n=20, seed=0, unscored=0), threshold=0.5)
    message = window.error_banner.message
    assert "remembered from your last session cannot be used" in message
    assert str(model) in message and "\n" not in message
    later = launch(qtbot, tmp_path)  # kept: a dropped window dies mid-test
    assert later.model_memory.path is None  # said once, then forgotten


# ------------------------------------------------------------------ unscored tiles


def test_an_unscored_object_near_the_edge_keeps_its_picture(tmp_path):
    demo = demo_frame_path()
    objects = Table.read(demo.with_suffix(".ecsv"))
    catalog = Table({"x": [*objects["x"], 1.0, np.nan], "y": [*objects["y"], 1.0, 5.0]})
    catalog.write(tmp_path / "edge.ecsv")
    data, _ = run_job(classify_frame(str(demo), str(tmp_path / "edge.ecsv")))
    corner, nowhere = len(objects), len(objects) + 1
    assert data.reasons[corner] == REASON_MOSTLY_MISSING and np.isnan(data.scores[corner])
    assert data.atlas[corner].std() > 0  # a picture, not a black tile
    assert data.reasons[nowhere] == REASON_NONFINITE and not data.atlas[nowhere].any()


def test_the_grid_draws_an_unscored_tiles_picture_under_its_reason(qtbot, window):
    data = window.state.data
    unscored = int(np.flatnonzero(np.isnan(data.scores))[0])

    def tile_pixels():
        window.show_data(data, threshold=0.5)
        view, proxy = window.grid.view, window.grid.proxy
        index = proxy.index(list(proxy.order()).index(unscored), 0)
        view.scrollTo(index)
        rect = view.visualRect(index)
        assert view.viewport().rect().contains(rect)
        return view.viewport().grab(rect).toImage()

    black = tile_pixels()  # no stamp: a dark tile and the reason
    data.atlas[unscored] = data.atlas[0]  # a stamp's picture
    assert tile_pixels() != black


# ------------------------------------------------------------------ smaller things


def test_the_object_title_counts_grid_tiles_and_names_the_catalog_row(qtbot, window):
    proxy, state = window.grid.proxy, window.state
    third = proxy.object_at(2)
    state.select(third)
    title = window.detail.title_label.text()
    assert title == f"tile 3 of {proxy.rowCount()} · catalog row {third}"
    window.grid.proxy.set_filter("real")  # fewer tiles: the count follows
    row = proxy.row_of(third)
    expected = (
        f"tile {row + 1} of {proxy.rowCount()}" if row >= 0 else "not in the grid: filtered out"
    )
    assert expected in window.detail.title_label.text()


def test_the_status_line_says_where_a_new_frames_threshold_came_from(
    qtbot, window, make_vetting_data
):
    window.state.set_threshold(0.7)
    window.show_data(make_vetting_data(n=30, seed=1, unscored=0))  # threshold kept
    assert "threshold 0.700 carried over from the previous frame" in window.summary_label.text()
    window.state.set_threshold(0.65)  # the user's own: the note goes
    assert "carried over" not in window.summary_label.text()
    window.show_data(make_vetting_data(n=30, seed=2, unscored=0), threshold=0.5)
    assert "threshold 0.500 is the model's (it was 0.650 before)" in window.summary_label.text()


def test_cancel_says_what_was_cancelled_and_what_is_kept(qtbot, window):
    shown = window.state.data
    window.open_frame(demo_frame_path())
    with qtbot.waitSignal(window.job.finished, timeout=CLASSIFY_TIMEOUT_MS):
        window.cancel_job()
    assert window.state.data is shown
    assert window.statusBar().currentMessage() == (
        "Cancelled opening demo_frame.fits: nothing changed, still showing test.fits "
        "with its labels."
    )


def test_cancelled_training_says_no_model_was_made_and_which_stays(retrain_dialog):
    retrain_dialog._on_cancelled()
    assert "no new model" in retrain_dialog.progress_bar.format()
    log = retrain_dialog.log_view.toPlainText()
    assert "Training cancelled: no new model was made; the shipped model stays in use." in log


def test_the_empty_window_shows_no_meaningless_axis_ranges(qtbot, tmp_path, make_vetting_data):
    empty = launch(qtbot, tmp_path)
    plot = empty.frame_view.plot.getPlotItem()
    assert not plot.getAxis("left").isVisible() and not plot.getAxis("bottom").isVisible()
    assert "No frame" in empty.frame_view.readout.text()
    histogram = empty.threshold_panel.histogram_plot.getPlotItem()
    assert histogram.viewRange()[1] == [0.0, 1.0]  # counts from 0, not -400 x 0.001

    empty.show_data(make_vetting_data(n=30, seed=0, unscored=0), threshold=0.5)
    assert plot.getAxis("left").isVisible() and plot.getAxis("bottom").isVisible()
    low, high = histogram.viewRange()[1]
    assert low <= 0 and high >= 1


def test_a_remembered_model_that_fails_to_score_gives_the_shipped_one(qtbot, tmp_path):
    odd = tmp_path / "odd.keras"
    with zipfile.ZipFile(odd, "w") as archive:  # a whole archive, but no network in it
        archive.writestr("notes.txt", "not a model")
    earlier = launch(qtbot, tmp_path)  # kept: a dropped window dies mid-test
    earlier.model_memory.remember(odd)
    window = launch(qtbot, tmp_path)
    assert window.model_path == str(odd)  # it passes the cheap check at launch
    open_demo(qtbot, window)
    assert window.state.data.model_name == default_model_path().name
    assert "remembered from your last session cannot be used" in window.error_banner.message
    assert window.model_memory.path is None


def test_a_bad_first_frame_does_not_make_the_remembered_model_forgotten(qtbot, tmp_path):
    model = copy_shipped_model(tmp_path)
    earlier = launch(qtbot, tmp_path)  # kept: a dropped window dies mid-test
    earlier.model_memory.remember(model)
    window = launch(qtbot, tmp_path)
    (tmp_path / "bad.fits").write_text("not a FITS file")
    with qtbot.waitSignal(window.failed, timeout=CLASSIFY_TIMEOUT_MS) as failed:
        window.open_frame(tmp_path / "bad.fits")
    assert "bad.fits" in failed.args[0] and "bad.fits" in window.error_banner.message
    assert window.model_memory.path == str(model.resolve())
