"""The retraining dialog's adapt choice (injections into the shown frame + labels + replay):
both held-out comparisons, Accept as for retraining, Cancel changes nothing; and a
project's frame marked assessed when an assessment of it ends or a kept one is shown."""

import numpy as np
import pytest
from epoch_frames import write_epochs
from PyQt6.QtCore import QSettings
from test_gui_labeling import (
    CLASSIFY_TIMEOUT_MS,
    TRAIN_TIMEOUT_MS,
    open_labeled_demo,
)

from rbvet.core.inject.inject import InjectionSettings
from rbvet.core.model import read_card
from rbvet.core.paths import demo_frame_path
from rbvet.gui.assessment import start_assessment
from rbvet.gui.frames_dock import ASSESSED
from rbvet.gui.main_window import MainWindow
from rbvet.gui.retrain_dialog import ADAPT_EPOCHS, DEFAULT_EPOCHS, RetrainDialog

SMALL = InjectionSettings(injections=240, rounds=3, seed=2)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "labels.sqlite"


def choose_adapt(dialog, injections=SMALL.injections, rounds=SMALL.rounds):
    """The adapt choice with tiny settings (one epoch, little replay)."""
    dialog.adapt_radio.setChecked(True)
    assert dialog.epochs_spin.value() == ADAPT_EPOCHS  # adapting's own defaults
    assert dialog.injections_spin.isVisibleTo(dialog) and dialog.train_button.text() == "Adapt"
    dialog.epochs_spin.setValue(1)
    dialog.simulated_spin.setValue(0.1)
    dialog.injections_spin.setValue(injections)
    dialog.rounds_spin.setValue(rounds)


def test_adapt_compares_on_both_held_out_sets_and_accept_rescores(qtbot, tmp_path, store_path):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    old_scores = window.state.data.scores.copy()
    dialog = window.retrain_from_labels()
    assert not dialog.injections_spin.isVisibleTo(dialog)  # retraining: no injections
    choose_adapt(dialog)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=TRAIN_TIMEOUT_MS) as finished:
        dialog.start_training()
    assert finished.args == [True], dialog.error_label.text()
    result = dialog.retrain_result
    assert set(result.comparisons) == {"injections", "labels"}
    assert len(dialog.curves["loss"].getData()[0]) == 1
    shown = {
        "injections": dialog.injection_comparison_box,
        "labels": dialog.comparison_box,
    }
    for name, box in shown.items():
        assert box.isVisible()
        comparison = result.comparisons[name]
        for which in ("old", "new"):
            assert box.cells[("auc", which)].text() == f"{comparison[which]['auc']:.4f}"
        assert box.note.text().startswith(str(comparison["old"]["objects"]))
    assert dialog.accept_button.isEnabled()

    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        saved = dialog.accept_model()
    assert dialog.decision == "accepted"
    assert saved == tmp_path / "models" / "rbvet_default.v1.keras" and saved.exists()
    card = read_card(saved)
    assert card["training"]["mode"] == "adapted by injection"
    assert card["training"]["frames"][0]["path"] == str(demo_frame_path())
    assert card["training"]["injection"]["injections"] == SMALL.injections
    assert card["metrics"]["held_out_labels"]["objects"] > 0
    assert window.model_path == str(saved)
    assert not np.array_equal(window.state.data.scores, old_scores)
    window.close()


def test_cancelled_adapt_leaves_the_model_and_writes_nothing(qtbot, tmp_path, store_path):
    window = open_labeled_demo(qtbot, tmp_path, store_path)
    data = window.state.data
    dialog = window.retrain_from_labels()
    choose_adapt(dialog, injections=2000, rounds=20)
    dialog.start_training()
    with qtbot.waitSignal(
        dialog.job.progressed,
        timeout=TRAIN_TIMEOUT_MS,
        check_params_cb=lambda progress: "round" in progress.message,
    ):
        pass
    assert dialog.is_training and not dialog.train_button.isEnabled()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=TRAIN_TIMEOUT_MS) as finished:
        dialog.cancel_training()
    assert finished.args == [False] and dialog.retrain_result is None
    assert "adapting cancelled" in dialog.progress_bar.format()
    assert not dialog.accept_button.isVisible() and dialog.accept_model() is None
    assert not dialog.injection_comparison_box.isVisible()
    assert not (tmp_path / "models").exists()
    assert window.model_path is None and window.state.data is data
    dialog.close()
    window.close()


def test_adapt_needs_a_frame_but_no_labels(qtbot, tmp_path):
    store = tmp_path / "labels.sqlite"  # no labels at all
    without_frame = RetrainDialog(store, models_dir=tmp_path / "models")
    qtbot.addWidget(without_frame)
    assert not without_frame.adapt_radio.isEnabled()
    assert not without_frame.train_button.isEnabled()

    frame = demo_frame_path()
    dialog = RetrainDialog(store, frames=[(frame, None)], models_dir=tmp_path / "models")
    qtbot.addWidget(dialog)
    dialog.show()
    assert frame.name in dialog.adapt_radio.text()
    assert not dialog.train_button.isEnabled()  # retraining needs labels
    dialog.adapt_radio.setChecked(True)
    assert dialog.train_button.isEnabled()  # adapting does not
    assert dialog.simulated_spin.suffix() == " × training"
    dialog.fine_tune_radio.setChecked(True)
    assert not dialog.train_button.isEnabled()
    assert dialog.epochs_spin.value() == DEFAULT_EPOCHS
    assert not dialog.injections_spin.isVisibleTo(dialog)


@pytest.fixture
def project_window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(window)
    window.show()
    yield window
    window.project.shutdown()
    window.cancel_job(wait=True)


def test_assessing_a_project_frame_marks_it_assessed(qtbot, tmp_path, project_window):
    window = project_window
    paths = [str(p) for p in write_epochs(tmp_path / "epochs", 2, shape=(256, 256))]
    controller = window.project
    with qtbot.waitSignal(controller.idle, timeout=CLASSIFY_TIMEOUT_MS):
        with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
            controller.open_paths(paths)
    frames = controller.project.frames
    model = window.docks["Frames"].widget().model
    assert not any(frame.assessed for frame in frames)

    thread = start_assessment(window, InjectionSettings(injections=120, rounds=2, seed=1))
    with qtbot.waitSignal(thread.succeeded, timeout=TRAIN_TIMEOUT_MS):
        pass
    assert [frame.assessed for frame in frames] == [True, False]
    assert model.data(model.index(0, ASSESSED)) == "yes"
    assert model.data(model.index(1, ASSESSED)) == ""
    qtbot.waitUntil(lambda: not window.busy, timeout=10_000)

    # A kept assessment shown with the frame marks it too.
    controller.project.set_assessed(0, False)
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        controller.go_to(1)
    assert [frame.assessed for frame in frames] == [False, False]  # none kept for frame 2
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        controller.go_to(0)
    assert [frame.assessed for frame in frames] == [True, False]
