"""Labeling in the window: keys, undo/redo, bulk labels, the label store, the suspicious
sort, exports, and retraining from labels (the last with TensorFlow).

Every window here uses a label store in a temporary folder; none touches the user's.
"""

import json

import numpy as np
import pytest
from astropy.table import Table
from PyQt6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication

from rbvet.core.learn.labels import LabelStore
from rbvet.core.model import read_card
from rbvet.core.paths import demo_frame_path
from rbvet.core.session import SORT_SUSPICIOUS, model_save_target, suspicion
from rbvet.gui.main_window import MainWindow
from rbvet.gui.state import BOGUS, REAL, UNLABELED
from rbvet.gui.workers import STOP_TIMEOUT_MS

CLASSIFY_TIMEOUT_MS = 180_000
TRAIN_TIMEOUT_MS = 300_000


def new_window(qtbot, folder, store_path, **options):
    """A shown `MainWindow` with its settings, label store and models under ``folder``."""
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(
        settings=settings,
        label_store_path=store_path,
        models_dir=folder / "models",
        **options,
    )
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "labels.sqlite"


@pytest.fixture
def window(qtbot, tmp_path, store_path, make_vetting_data):
    main_window = new_window(qtbot, tmp_path, store_path)
    main_window.show_data(make_vetting_data(n=60, seed=0, unscored=2), threshold=0.5)
    main_window.grid.view.setFocus()
    yield main_window
    main_window.cancel_job(wait=True)
    main_window.close()


def stored_labels(window, objects):
    """Labels of objects as a second connection to the store reads them."""
    ids = window.labels.object_ids[np.asarray(objects)]
    with LabelStore(window.labels.store_path, create=False) as store:
        return store.labels(ids)


def press(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window.grid.view, key, modifier)


def undo(qtbot, window):
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)


def redo(qtbot, window):
    press(
        qtbot,
        window,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )


def click_tile(qtbot, window, row, modifier=Qt.KeyboardModifier.NoModifier):
    view = window.grid.view
    index = window.grid.proxy.index(row)
    view.scrollTo(index)
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, modifier, view.visualRect(index).center()
    )


def test_keys_label_the_current_tile_and_advance(qtbot, window, store_path):
    state, order = window.state, window.grid.proxy.order()
    labels = state.data.labels
    assert not store_path.exists()  # the store is made by the first label
    assert state.selected == order[0]
    press(qtbot, window, Qt.Key.Key_R)
    assert labels[order[0]] == REAL
    assert state.selected == order[1]  # R and B move on to the next tile
    press(qtbot, window, Qt.Key.Key_B)
    assert labels[order[1]] == BOGUS
    assert state.selected == order[2]
    assert list(stored_labels(window, order[:2])) == [REAL, BOGUS]

    state.select(order[0])
    press(qtbot, window, Qt.Key.Key_U)
    assert labels[order[0]] == UNLABELED
    assert state.selected == order[0]  # clearing stays
    state.select(order[1])
    press(qtbot, window, Qt.Key.Key_Backspace)
    assert labels[order[1]] == UNLABELED
    assert list(stored_labels(window, order[:2])) == [UNLABELED, UNLABELED]
    assert np.count_nonzero(labels != UNLABELED) == 0


def test_labeling_the_last_tile_stays_there(qtbot, window):
    order = window.grid.proxy.order()
    window.state.select(order[-3])  # the last scored tile
    window.grid.view.label_selection(REAL)
    window.state.select(order[-1])  # unscored tiles cannot be labeled
    press(qtbot, window, Qt.Key.Key_R)
    assert window.state.data.labels[order[-1]] == UNLABELED
    assert window.state.data.labels[order[-3]] == REAL


def test_space_jumps_to_the_next_unlabeled_tile_and_wraps(qtbot, window):
    state, order = window.state, window.grid.proxy.order()
    window.labels.label(order[1:3], REAL)
    state.select(order[0])
    press(qtbot, window, Qt.Key.Key_Space)
    assert state.selected == order[3]
    # the last scored tile: wrap round to the first unlabeled one
    window.labels.label(order[:1], BOGUS)
    state.select(order[-3])
    press(qtbot, window, Qt.Key.Key_Space)
    assert state.selected == order[3]


def test_undo_and_redo_several_steps_across_a_bulk_action(qtbot, window):
    state, order = window.state, window.grid.proxy.order()
    labels = state.data.labels
    press(qtbot, window, Qt.Key.Key_R)  # order[0] real
    press(qtbot, window, Qt.Key.Key_R)  # order[1] real
    assert state.selected == order[2]
    press(qtbot, window, Qt.Key.Key_B)  # order[2] bogus
    # select five tiles, the first already labeled: click, then shift-click
    click_tile(qtbot, window, 2)
    click_tile(qtbot, window, 6, Qt.KeyboardModifier.ShiftModifier)
    assert list(window.grid.view.selected_objects()) == sorted(order[2:7])
    press(qtbot, window, Qt.Key.Key_R)
    assert (labels[order[2:7]] == REAL).all()
    assert len(window.grid.view.selected_objects()) == 5  # a selection stays put
    after = labels.copy()

    undo(qtbot, window)  # the bulk action, one step
    assert labels[order[2]] == BOGUS and (labels[order[3:7]] == UNLABELED).all()
    undo(qtbot, window)
    assert labels[order[2]] == UNLABELED
    undo(qtbot, window)
    undo(qtbot, window)
    assert (labels == UNLABELED).all()
    assert (stored_labels(window, order[:7]) == UNLABELED).all()
    undo(qtbot, window)  # nothing left: no harm
    assert (labels == UNLABELED).all()

    for _ in range(4):
        redo(qtbot, window)
    assert np.array_equal(labels, after)
    assert np.array_equal(stored_labels(window, order[:7]), after[order[:7]])
    # the window's menu actions do the same
    window.undo_action.trigger()
    assert labels[order[2]] == BOGUS
    window.redo_action.trigger()
    assert np.array_equal(labels, after)


def test_ctrl_a_labels_everything_shown(qtbot, window):
    window.grid.proxy.set_filter("real")
    shown = window.grid.proxy.order()
    press(qtbot, window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    press(qtbot, window, Qt.Key.Key_R)
    labels = window.state.data.labels
    assert (labels[shown] == REAL).all()
    assert np.count_nonzero(labels == REAL) == len(shown)


def test_rubber_band_selects_several_tiles(qtbot, window):
    view = window.grid.view
    first = view.visualRect(window.grid.proxy.index(0)).center()
    last = view.visualRect(window.grid.proxy.index(2)).center()
    viewport = view.viewport()
    left = Qt.MouseButton.LeftButton
    none = Qt.KeyboardModifier.NoModifier

    def send(kind, point, buttons):
        event = QMouseEvent(
            kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), left, buttons, none
        )
        QApplication.sendEvent(viewport, event)

    send(QEvent.Type.MouseButtonPress, first, left)
    send(QEvent.Type.MouseMove, (first + last) / 2, left)
    send(QEvent.Type.MouseMove, last + QPoint(0, 1), left)
    send(QEvent.Type.MouseButtonRelease, last + QPoint(0, 1), Qt.MouseButton.NoButton)
    assert len(view.selected_objects()) == 3


def test_bulk_bogus_below_the_threshold_asks_first(qtbot, window, monkeypatch):
    state = window.state
    data = state.data
    scores = data.scores
    below = np.flatnonzero(np.isfinite(scores) & (scores < 0.5))
    kept_real = below[0]
    window.labels.label([kept_real], REAL)
    expected = len(below) - 1
    questions = []
    monkeypatch.setattr(window, "confirm", lambda text: questions.append(text) or False)
    assert window.label_below_threshold() == 0
    assert str(expected) in questions[0] and "0.500" in questions[0]
    assert np.count_nonzero(data.labels != UNLABELED) == 1

    monkeypatch.setattr(window, "confirm", lambda text: True)
    assert window.label_below_threshold() == expected
    assert (data.labels[below[1:]] == BOGUS).all()
    assert data.labels[kept_real] == REAL  # a label given by hand is kept
    above = np.isfinite(scores) & (scores >= 0.5)
    assert (data.labels[above] == UNLABELED).all()
    assert (stored_labels(window, below[1:]) == BOGUS).all()
    window.labels.undo()  # one step
    assert np.count_nonzero(data.labels != UNLABELED) == 1
    assert window.label_below_threshold() == expected


def test_reopening_a_frame_restores_its_labels(
    qtbot, tmp_path, store_path, window, make_vetting_data
):
    order = window.grid.proxy.order()
    window.labels.label(order[:4], REAL)
    window.labels.label(order[10:13], BOGUS)
    window.labels.label(order[:1], UNLABELED)  # cleared: restored as unlabeled
    given = window.state.data.labels.copy()
    window.close()
    with LabelStore(store_path, create=False) as store:
        objects = store.summary()["objects"]

    again = new_window(qtbot, tmp_path, store_path)
    data = make_vetting_data(n=60, seed=0, unscored=2)  # the same pixels, a new catalog
    data.x = data.x + 0.3  # positions measured again, a little off
    assert again.labels.restore(data) == 6
    again.show_data(data, threshold=0.5)
    assert np.array_equal(again.state.data.labels, given)
    assert "6 labeled (3 real, 3 bogus)" in again.store_button.text()
    # relabeling a restored object changes the stored object, it makes no new one
    again.labels.label(order[1:2], BOGUS)
    with LabelStore(store_path, create=False) as store:
        assert store.summary()["objects"] == objects
    # undo takes back this session's relabel, and stops there: the earlier session's
    # labels are not this window's to undo
    before = again.state.data.labels[order[1]]
    again.labels.undo()
    assert again.state.data.labels[order[1]] != before
    assert np.array_equal(again.state.data.labels, given)
    again.labels.undo()
    assert np.array_equal(again.state.data.labels, given)
    # another frame shows none of these labels
    again.show_data(make_vetting_data(n=60, seed=1, unscored=2), threshold=0.5)
    assert (again.state.data.labels == UNLABELED).all()
    again.close()


def suspicious_reference(scores, labels):
    """Labeled scored objects by |label - score| descending (ties in catalog order), then
    unlabeled scored objects, then unscored ones, each in catalog order."""
    scored = np.isfinite(scores)
    labeled = np.flatnonzero(scored & (labels != UNLABELED))
    badness = np.abs(labels[labeled] - scores[labeled].astype(np.float64))
    labeled = labeled[np.argsort(-badness, kind="stable")]
    unlabeled = np.flatnonzero(scored & (labels == UNLABELED))
    return np.concatenate([labeled, unlabeled, np.flatnonzero(~scored)])


def test_suspicious_sort_puts_the_worst_disagreements_first(qtbot, window):
    proxy, data = window.grid.proxy, window.state.data
    scores = data.scores
    order = window.grid.proxy.order()
    real_low = order[-5]  # low score labeled real: very suspicious
    bogus_high = order[0]  # high score labeled bogus: very suspicious
    agreeing = order[1]  # high score labeled real
    window.labels.label([real_low, agreeing], REAL)
    window.labels.label([bogus_high], BOGUS)
    window.labels.label(order[20:23], BOGUS)
    data.labels[order[-1]] = REAL  # unscored but labeled (as if from an older session)
    proxy.set_sort(SORT_SUSPICIOUS)
    assert window.grid.sort_combo.currentData() == SORT_SUSPICIOUS
    assert not window.grid.descending_button.isEnabled()
    shown = proxy.order()
    assert np.array_equal(shown, suspicious_reference(scores, data.labels))
    assert set(shown[:2]) == {real_low, bogus_high} and shown[5] == agreeing
    assert np.isnan(suspicion(scores, data.labels)[data.labels == UNLABELED]).all()
    # a new label re-sorts at once
    window.labels.label([agreeing], BOGUS)
    assert np.array_equal(proxy.order(), suspicious_reference(scores, data.labels))
    assert agreeing in proxy.order()[:3]


def test_a_damaged_store_gives_a_banner_not_a_crash(
    qtbot, tmp_path, make_vetting_data, store_path
):
    store_path.write_bytes(b"this is not a database" * 100)
    window = new_window(qtbot, tmp_path, store_path)
    message = window.error_banner.message
    assert "not an rbvet label store" in message and store_path.name in message
    assert "\n" not in message
    window.show_data(make_vetting_data(n=30, seed=0), threshold=0.5)
    window.grid.view.setFocus()
    press(qtbot, window, Qt.Key.Key_R)
    assert (window.state.data.labels == UNLABELED).all()
    assert window.error_banner.message
    assert "unavailable" in window.store_button.text()
    assert store_path.read_bytes().startswith(b"this is not")  # left untouched
    undo(qtbot, window)
    # another store: the banner goes, labeling works
    other = tmp_path / "other.sqlite"
    assert window.set_label_store(other)
    assert window.error_banner.message == ""
    press(qtbot, window, Qt.Key.Key_R)
    assert np.count_nonzero(window.state.data.labels == REAL) == 1
    assert "other.sqlite" in window.store_button.text()
    window.close()


def test_a_locked_store_gives_a_banner(qtbot, tmp_path, window, store_path, monkeypatch):
    import rbvet.core.session as labeling

    monkeypatch.setattr(labeling, "STORE_TIMEOUT", 0.05)
    window.labels.label(window.grid.proxy.order()[5:6], REAL)  # the store exists now
    window.labels.close()
    with LabelStore(store_path, create=False) as other:
        other._connection.execute("BEGIN IMMEDIATE")  # another program holds the lock
        press(qtbot, window, Qt.Key.Key_B)
        other._connection.execute("ROLLBACK")
    assert "locked" in window.error_banner.message
    assert "unavailable" in window.store_button.text()
    assert window.state.data.labels[window.state.selected] == UNLABELED
    press(qtbot, window, Qt.Key.Key_B)  # the other program is done: it works again
    assert np.count_nonzero(window.state.data.labels == BOGUS) == 1
    assert "1 bogus" in window.store_button.text()


def test_status_bar_names_the_store_and_counts(qtbot, window, store_path):
    order = window.grid.proxy.order()
    text = window.store_button.text()
    assert store_path.name in text and "0 labeled" in text
    window.labels.label(order[:3], REAL)
    window.labels.label(order[3:4], BOGUS)
    assert "4 labeled (3 real, 1 bogus)" in window.store_button.text()
    window._update_store_tooltip()
    assert "whole store: 4 labeled" in window.store_button.toolTip()


def test_error_rates_follow_labels_and_undo(qtbot, window):
    panel = window.threshold_panel
    order = window.grid.proxy.order()
    assert "label both classes" in panel.rates_label.text()
    window.labels.label(order[:5], REAL)
    window.labels.label(order[40:45], BOGUS)
    assert "AUC 1.000" in panel.rates_label.text()
    window.labels.label(order[:1], BOGUS)
    assert "AUC 1.000" not in panel.rates_label.text()
    window.labels.undo()
    window.labels.undo()
    assert "label both classes" in panel.rates_label.text()


def test_exports_write_catalog_training_set_and_regions(qtbot, window, tmp_path):
    data, order = window.state.data, window.grid.proxy.order()
    assert not window.export_training_set(tmp_path / "none.npz")  # nothing labeled yet
    assert "no labeled objects" in window.error_banner.message
    window.labels.label(order[:3], REAL)
    window.labels.label(order[:1], BOGUS)  # bogus above the threshold: flag set
    window.labels.label(order[-5:-3], REAL)  # real below the threshold: flag cleared

    catalog = tmp_path / "vetted.ecsv"
    assert window.export_scores(catalog)
    table = Table.read(catalog)
    assert np.array_equal(np.asarray(table["rb_label"]), data.labels)
    flagged = (np.asarray(table["flags"]) & 0x1000) != 0
    assert flagged[order[0]] and not flagged[order[1]]
    assert not flagged[order[-5]] and flagged[order[-6]]
    assert window.export_scores(tmp_path / "vetted.fits")

    training = tmp_path / "labels.npz"
    assert window.export_training_set(training)
    with np.load(training, allow_pickle=False) as npz:
        assert npz["X"].shape == (5, 31, 31, 2)
        assert sorted(npz["y"]) == [0, 1, 1, 1, 1]
        assert json.loads(str(npz["metadata"]))["model"] == "test"

    regions = tmp_path / "objects.reg"
    assert window.export_regions(regions)
    lines = regions.read_text().splitlines()
    circles = [line for line in lines if line.startswith("circle(")]
    assert len(circles) == len(data)
    assert sum("color=red" in line for line in circles) == 1


def test_model_save_target(tmp_path):
    from rbvet.core.paths import default_model_path

    shipped = model_save_target(None, tmp_path / "models")
    assert shipped == tmp_path / "models" / default_model_path().name
    mine = tmp_path / "mine" / "better.v2.keras"
    mine.parent.mkdir()
    assert model_save_target(mine, tmp_path / "models") == mine.parent.resolve() / mine.name
    assert model_save_target(tmp_path / "old.h5").name == "old.keras"


# ------------------------------------------------------------------ retraining (TensorFlow)


def open_labeled_demo(qtbot, tmp_path, store_path):
    """A window on the demo frame with every object labeled from the catalog's truth."""
    window = new_window(qtbot, tmp_path, store_path)
    frame = demo_frame_path()
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(frame, frame.with_suffix(".ecsv"))
    truth = np.asarray(Table.read(frame.with_suffix(".ecsv"))["true_label"])
    assert window.labels.label(np.flatnonzero(truth == 1), REAL)
    assert window.labels.label(np.flatnonzero(truth == 0), BOGUS)
    return window


def train(qtbot, window, epochs):
    dialog = window.retrain_from_labels()
    assert dialog.isVisible() and not dialog.isModal()
    assert dialog.simulated_spin.value() == 1.0 and dialog.epochs_spin.value() == 5
    assert dialog.train_button.isEnabled()
    dialog.simulated_spin.setValue(0.0)
    dialog.epochs_spin.setValue(epochs)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=TRAIN_TIMEOUT_MS) as finished:
        dialog.start_training()
    assert finished.args == [True], dialog.error_label.text()
    return dialog


def test_retrain_accept_saves_a_version_and_rescores(qtbot, tmp_path, store_path):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    old_scores = window.state.data.scores.copy()
    dialog = train(qtbot, window, epochs=2)
    assert dialog.comparison_box.isVisible() and dialog.accept_button.isEnabled()
    assert len(dialog.curves["loss"].getData()[0]) == 2
    assert len(dialog.curves["val_auc"].getData()[0]) == 2
    comparison = dialog.retrain_result.comparison
    for which in ("old", "new"):
        text = dialog.comparison_labels[("auc", which)].text()
        assert text == f"{comparison[which]['auc']:.4f}"
    assert "rbvet_default.keras" in dialog.comparison_headers["old"].text()

    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        saved = dialog.accept_model()
    assert dialog.decision == "accepted" and not dialog.isVisible()
    assert saved == tmp_path / "models" / "rbvet_default.v1.keras" and saved.exists()
    card = read_card(saved)
    assert card["parent"]["name"] == "rbvet_default.keras"
    assert card["training"]["labels"]["objects"] == 253
    assert window.model_path == str(saved)
    assert window.state.data.model_name == saved.name
    assert not np.array_equal(window.state.data.scores, old_scores)
    assert (window.state.data.labels != UNLABELED).all()  # the labels came back
    window.close()


def test_retrain_cancel_and_reject_change_nothing(qtbot, tmp_path, store_path):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    data = window.state.data
    dialog = start_long_training(qtbot, window)
    assert dialog.is_training and not dialog.train_button.isEnabled()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=TRAIN_TIMEOUT_MS) as finished:
        dialog.cancel_training()
    assert finished.args == [False] and dialog.retrain_result is None
    assert "cancelled" in dialog.progress_bar.format()
    assert not dialog.accept_button.isVisible()
    dialog.close()

    dialog = train(qtbot, window, epochs=1)
    dialog.reject_model()
    assert dialog.decision == "rejected" and not dialog.isVisible()
    assert not (tmp_path / "models").exists()
    assert window.model_path is None and window.state.data is data
    assert not window.busy
    window.close()


def start_long_training(qtbot, window):
    """The retraining dialog training for up to 100 epochs, its first epoch done."""
    dialog = window.retrain_from_labels()
    dialog.simulated_spin.setValue(0.0)
    dialog.epochs_spin.setValue(100)
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.epochs_done >= 1, timeout=TRAIN_TIMEOUT_MS)
    assert dialog.is_training
    return dialog


def record_stop_waits(monkeypatch):
    """Record how long each `JobThread.stop` may wait (ms): the GUI thread's only waits."""
    from rbvet.gui.workers import JobThread

    waits = []
    stop = JobThread.stop

    def recorded_stop(thread, timeout_ms=STOP_TIMEOUT_MS):
        waits.append(timeout_ms)
        return stop(thread, timeout_ms)

    monkeypatch.setattr(JobThread, "stop", recorded_stop)
    return waits


def test_closing_the_window_while_retraining_stops_it(qtbot, tmp_path, store_path, monkeypatch):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    dialog = start_long_training(qtbot, window)
    job = dialog.job
    waits = record_stop_waits(monkeypatch)
    window.close()
    assert waits and max(waits) <= STOP_TIMEOUT_MS  # the GUI thread waited, but bounded
    qtbot.waitUntil(lambda: not job.isRunning(), timeout=10_000)  # it did stop
    assert not dialog.isVisible() and not window.isVisible()
    assert dialog.retrain_result is None and dialog.epochs_done < 100
    assert not (tmp_path / "models").exists()  # nothing saved, not even in part
    # the leak check (tests/conftest.py) then verifies that no thread is left running


def test_escape_closes_the_retrain_dialog_and_stops_training(
    qtbot, tmp_path, store_path, monkeypatch
):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    data = window.state.data
    dialog = start_long_training(qtbot, window)
    job = dialog.job
    waits = record_stop_waits(monkeypatch)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert waits and max(waits) <= STOP_TIMEOUT_MS  # the GUI thread waited, but bounded
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: not job.isRunning(), timeout=10_000)
    assert dialog.retrain_result is None and dialog.decision is None
    assert dialog.epochs_done < 100
    assert not (tmp_path / "models").exists()
    assert window.isVisible() and window.state.data is data and window.model_path is None
    window.close()


def test_frame_markers_follow_labels_once_labeling_pauses(qtbot, window):
    from rbvet.gui.stretch import LABELED_REAL_COLOR

    order = window.grid.proxy.order()
    press(qtbot, window, Qt.Key.Key_R)
    drawn = list(window.frame_view.visible_marker_indices())

    def marker_colour():
        pen = window.frame_view.scatter.data["pen"][drawn.index(order[0])]
        return pen.color().getRgb()[:3]

    assert marker_colour() != LABELED_REAL_COLOR  # not inside the keypress
    qtbot.waitUntil(lambda: marker_colour() == LABELED_REAL_COLOR, timeout=3000)
