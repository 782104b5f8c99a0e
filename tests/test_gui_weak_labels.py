"""Labels › Make weak labels from the frames: the weak-labels step on the window's project,
as a job with progress and Cancel, into the window's label store."""

import numpy as np
import pytest
from gui_window import open_project as shared_open_project
from gui_window import project_window  # noqa: F401 (the window fixture)
from PyQt6.QtCore import Qt

from rbvet.cli import main
from rbvet.core.learn.labels import LabelStore
from rbvet.core.learn.weak import REPEAT

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def epoch_paths(tmp_path_factory):
    """Three simulated exposures of one field (``rbvet simulate --epochs``)."""
    folder = tmp_path_factory.mktemp("field")
    args = ["simulate", "--epochs", "3", "-o", str(folder / "ep.fits"), "--size", "256"]
    assert main(args + ["--seed", "7"]) == 0
    return [str(folder / f"ep_{k}.fits") for k in (1, 2, 3)]


def open_project(qtbot, window, paths):
    controller = shared_open_project(qtbot, window, paths, TIMEOUT_MS)
    frames = controller.project.frames
    qtbot.waitUntil(lambda: all(f.header_read for f in frames), timeout=TIMEOUT_MS)
    return controller


def weak_summary(window):
    with LabelStore(window.labels.store_path) as store:
        return store.summary()


def test_weak_labels_of_the_projects_frames_go_to_the_store_and_are_counted(
    qtbot, window, epoch_paths
):
    open_project(qtbot, window, epoch_paths)
    scored = int(np.flatnonzero(np.isfinite(window.state.data.scores))[0])
    assert window.labels.label([scored], 1)  # the user's, which weak labels leave alone
    progress = []
    thread = window.make_weak_labels()
    thread.progressed.connect(progress.append)
    assert window.busy and window.cancel_button.isVisible()
    with qtbot.waitSignal(thread.succeeded, timeout=TIMEOUT_MS) as done:
        pass
    # The job's end is shown once its finished slot ran (busy turns False a little earlier).
    qtbot.waitUntil(lambda: not window.progress_bar.isVisibleTo(window), timeout=TIMEOUT_MS)
    made = done.args[0]
    counts = made.counts()
    real, artifacts = counts[(REPEAT, 1)], counts[(REPEAT, 0)]
    assert real > 10  # the stars seen in all three exposures
    message = window.statusBar().currentMessage()
    assert "Weak labels from 3 frames" in message
    assert message.endswith(
        f"repeat: {real} real, {artifacts} single-exposure artifacts → labels.sqlite"
    )
    summary = weak_summary(window)
    assert summary["weak"][REPEAT] == {"real": real, "bogus": artifacts}
    assert (summary["real"], summary["bogus"]) == (1, 0)  # the user's label only
    assert {p.done for p in progress} >= {0, 1, 2, 3} and {p.total for p in progress} == {3}
    tip = f"weak labels (repeat): {real} real, {artifacts} bogus"
    qtbot.waitUntil(lambda: tip in window.store_button.toolTip(), timeout=TIMEOUT_MS)


def test_weak_labels_read_each_frame_as_the_window_did(qtbot, window, epoch_paths):
    """A frame re-detected at a higher threshold in the frame panel gives weak labels of
    the objects the window shows for it, not of those a default reading would find."""
    controller = open_project(qtbot, window, epoch_paths)
    project = controller.project
    default_objects = len(window.state.data)
    window.frame_settings.threshold_spin.setValue(12.0)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.frame_settings.redetect_button, Qt.MouseButton.LeftButton)
    shown = len(window.state.data)
    assert 0 < shown < default_objects and project.frames[0].objects == shown
    thread = window.make_weak_labels()
    with qtbot.waitSignal(thread.succeeded, timeout=TIMEOUT_MS) as done:
        pass
    made = done.args[0]
    assert [frame.threshold for frame in made.frames] == [12.0, 3.0, 3.0]
    assert [len(frame.x) for frame in made.frames] == [f.objects for f in project.frames]


def test_a_single_frame_says_why_and_writes_nothing(qtbot, window, epoch_paths):
    open_project(qtbot, window, epoch_paths[:1])
    assert window.make_weak_labels() is None
    assert "at least two frames that overlap" in window.error_banner.message
    assert "one frame is open" in window.error_banner.message
    assert not window.busy
    assert not window.labels.store_path.exists() or not weak_summary(window)["weak"]


def test_frames_that_overlap_nothing_say_so_before_reading_pixels(
    qtbot, window, epoch_paths, tmp_path
):
    from astropy.io import fits

    far = tmp_path / "far.fits"
    with fits.open(epoch_paths[1]) as hdus:
        hdus[0].header["CRVAL1"] += 10.0  # another field
        hdus.writeto(far)
    open_project(qtbot, window, [epoch_paths[0], str(far)])
    assert window.make_weak_labels() is None
    assert "none of these 2 frames overlaps another" in window.error_banner.message
    assert not window.busy


def test_cancelled_weak_labels_write_nothing(qtbot, window, epoch_paths):
    open_project(qtbot, window, epoch_paths)
    thread = window.make_weak_labels()
    with qtbot.waitSignal(thread.cancelled, timeout=TIMEOUT_MS):
        window.cancel_job()
    # The job's end is shown once its finished slot ran (busy turns False a little earlier).
    qtbot.waitUntil(lambda: not window.progress_bar.isVisibleTo(window), timeout=TIMEOUT_MS)
    assert "Cancelled" in window.statusBar().currentMessage()
    assert not window.labels.store_path.exists() or not weak_summary(window)["weak"]
    assert np.all(window.state.data.labels < 1)
