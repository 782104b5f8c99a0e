"""The retraining dialog closed or hidden while its job runs: the job is cancelled, the
current model stays, and a job that outlives the dialog (stuck in a step it cannot leave)
reports to no deleted Qt object."""

import threading

import pytest
from test_retrain_few import few_real_labels

from rbvet.core.jobs import Progress
from rbvet.gui.retrain_dialog import RetrainDialog
from rbvet.gui.workers import JobThread

WAIT_MS = 20_000
STUCK_S = 30.0
"""Longest a fake job stays in its stuck step (the test releases it long before)."""


class FakeRetraining:
    """Stands in for `retrain_from_store`: logs and yields until cancelled, or sits in a
    step it cannot leave until `release` (as a C library's step would), then logs again.

    Attributes
    ----------
    inside : threading.Event
        Set once the job is in its stuck step (or, not stuck, has yielded once).
    errors : list of Exception
        What its log calls raised (a deleted dialog's signal: RuntimeError).
    """

    def __init__(self, stuck):
        self.stuck = stuck
        self.inside = threading.Event()
        self.gate = threading.Event()
        self.logged_after = False
        self.errors = []

    def release(self):
        self.gate.set()

    def __call__(self, store_path, base_model=None, *, log=None, **options):
        log("reading the labeled objects")
        yield Progress(message="Reading the labeled objects")
        if self.stuck:
            self.inside.set()
            self.gate.wait(STUCK_S)  # no yield in here: a cancel waits for its end
            try:
                log("the stuck step ended")
                self.logged_after = True
            except Exception as error:  # noqa: BLE001 (what the dialog's log raised)
                self.errors.append(error)
        while True:  # trains until cancelled
            self.inside.set()
            yield Progress(0, 1, "training")


def shown_dialog(qtbot, tmp_path):
    """A retraining dialog on a store of enough labels, shown (the caller deletes it)."""
    store = few_real_labels(tmp_path / "labels.sqlite")
    shown = RetrainDialog(store, threshold=0.5, models_dir=tmp_path / "models")
    shown.show()
    qtbot.waitExposed(shown)
    return shown


@pytest.fixture
def dialog(qtbot, tmp_path):
    shown = shown_dialog(qtbot, tmp_path)
    qtbot.addWidget(shown)
    return shown


def start(qtbot, dialog, monkeypatch, stuck=False):
    fake = FakeRetraining(stuck)
    monkeypatch.setattr("rbvet.core.learn.retrain.retrain_from_store", fake)
    accepted = []
    dialog.modelAccepted.connect(accepted.append)
    dialog.start_training()
    qtbot.waitUntil(fake.inside.is_set, timeout=WAIT_MS)
    assert dialog.is_training
    return fake, dialog.job, accepted


def nothing_changed(dialog, tmp_path, accepted):
    assert dialog.retrain_result is None and dialog.decision is None
    assert dialog.saved_path is None and accepted == []
    assert not (tmp_path / "models").exists()  # no new model, not even in part


def test_closing_the_dialog_mid_job_cancels_it_and_keeps_the_model(
    qtbot, dialog, tmp_path, monkeypatch
):
    fake, job, accepted = start(qtbot, dialog, monkeypatch)
    dialog.close()
    assert not dialog.isVisible()
    qtbot.waitUntil(job.isFinished, timeout=WAIT_MS)
    assert job.is_cancelled
    nothing_changed(dialog, tmp_path, accepted)


def test_hiding_the_dialog_mid_job_cancels_it(qtbot, dialog, tmp_path, monkeypatch):
    fake, job, accepted = start(qtbot, dialog, monkeypatch)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=WAIT_MS) as finished:
        dialog.hide()  # no Cancel or Accept to see any more: the job must not go on
    assert finished.args == [False] and job.is_cancelled
    qtbot.waitUntil(job.isFinished, timeout=WAIT_MS)
    nothing_changed(dialog, tmp_path, accepted)


def test_a_job_stuck_past_the_close_outlives_the_deleted_dialog_quietly(
    qtbot, tmp_path, monkeypatch, capfd
):
    dialog = shown_dialog(qtbot, tmp_path)  # deleted here, not by qtbot
    stop = JobThread.stop
    monkeypatch.setattr(JobThread, "stop", lambda thread, timeout_ms=0: stop(thread, 100))
    fake, job, accepted = start(qtbot, dialog, monkeypatch, stuck=True)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=WAIT_MS) as finished:
        dialog.close()  # waits its bounded time, then leaves the stuck job detached
    assert job.isRunning() and job.is_cancelled and job.parent() is None
    assert finished.args == [False] and not dialog.is_training
    assert "cancelled" in dialog.progress_bar.format()
    with qtbot.waitSignal(dialog.destroyed, timeout=WAIT_MS):
        dialog.deleteLater()
    fake.release()  # the stuck step ends: the job logs, sees the cancel and stops
    qtbot.waitUntil(job.isFinished, timeout=WAIT_MS)
    assert fake.errors == [] and fake.logged_after
    assert "has been deleted" not in capfd.readouterr().err
    assert not (tmp_path / "models").exists() and accepted == []
