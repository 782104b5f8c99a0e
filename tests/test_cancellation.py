"""Cancelling long work: core steps asked to stop, and job threads stopped within a bound.

Closing the window mid-way through the GUI is in ``test_scale.py`` (classification) and
``test_gui_labeling.py`` (retraining).
"""

import multiprocessing
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.core.classify import open_frame_and_catalog
from rbvet.core.detect import detection as catalog
from rbvet.core.errors import RbvetError

READING_STEPS = 4
"""Times `open_frame_and_catalog` asks ``should_stop`` when it estimates the FWHM."""


@pytest.fixture
def frame_and_catalog(tmp_path, make_star_field):
    image, x, y, _ = make_star_field(shape=(128, 128), n=25)
    frame_path = tmp_path / "frame.fits"
    catalog_path = tmp_path / "frame.ecsv"
    fits.PrimaryHDU(image).writeto(frame_path)
    Table({"x": x, "y": y}).write(catalog_path)
    return frame_path, catalog_path


@pytest.mark.parametrize("catalog", [True, False], ids=["catalog", "detected"])
def test_reading_stops_at_the_step_after_it_is_asked_to(frame_and_catalog, catalog):
    frame_path, catalog_path = frame_and_catalog
    catalog_path = catalog_path if catalog else None
    for allowed in range(READING_STEPS):
        asked = []

        def should_stop(allowed=allowed, asked=asked):
            asked.append(True)
            return len(asked) > allowed

        with pytest.raises(CancelledError, match="frame.fits: reading cancelled"):
            open_frame_and_catalog(frame_path, catalog_path, should_stop=should_stop)
        assert len(asked) == allowed + 1  # nothing more was done once it said stop
    frame, table, fwhm = open_frame_and_catalog(
        frame_path, catalog_path, should_stop=lambda: False
    )
    assert len(table) > 20 and np.isfinite(fwhm)


# ------------------------------------------------- object detection in a child process


def _detection_children():
    return [p for p in multiprocessing.active_children() if p.name == "rbvet object detection"]


@pytest.fixture
def detection_in_a_child(monkeypatch):
    """Objects are detected in a child process on frames of any size (when cancellable)."""
    monkeypatch.setattr(catalog, "CHILD_PROCESS_MIN_PIXELS", 0)


@pytest.fixture
def frame_sent_at(monkeypatch):
    """A list that receives the time the parent has sent the frame to the detection child."""
    sent_at = []
    send = catalog._send_arrays

    def send_and_tell(connection, header, arrays=None):
        send(connection, header, arrays)
        if "options" in header:
            sent_at.append(time.monotonic())

    monkeypatch.setattr(catalog, "_send_arrays", send_and_tell)
    return sent_at


def test_objects_detected_in_a_child_process_are_those_detected_in_process(
    frame_and_catalog, detection_in_a_child
):
    frame_path, _ = frame_and_catalog
    _, here, fwhm_here = open_frame_and_catalog(frame_path)  # no should_stop: in process
    children = []

    def should_stop():
        children.extend(_detection_children())
        return False

    _, there, fwhm_there = open_frame_and_catalog(frame_path, should_stop=should_stop)
    assert children and not any(child.is_alive() for child in children)
    assert there.colnames == here.colnames and len(there) == len(here) > 20
    for name in here.colnames:
        np.testing.assert_array_equal(there[name], here[name])
    assert fwhm_there == fwhm_here


def test_cancelling_terminates_the_detection_child(tmp_path, detection_in_a_child, frame_sent_at):
    frame_path = tmp_path / "noise.fits"
    noise = np.random.default_rng(0).normal(100.0, 5.0, (1024, 1024)).astype(np.float32)
    fits.PrimaryHDU(noise).writeto(frame_path)  # seconds of detection at 0.3 sigma
    children, stopped_at = [], []

    def should_stop():  # True from 0.3 s after the child has the frame, while it detects
        children.extend(_detection_children())
        if not stopped_at and frame_sent_at and time.monotonic() - frame_sent_at[0] > 0.3:
            stopped_at.append(time.monotonic())
        return bool(stopped_at)

    with pytest.raises(CancelledError, match=r"noise\.fits: object detection cancelled"):
        open_frame_and_catalog(frame_path, detect_threshold=0.3, should_stop=should_stop)
    assert stopped_at  # and the call returned: the child was stopped, as the next lines show
    assert children and not any(child.is_alive() for child in children)
    assert all(child.exitcode is not None for child in children)
    assert _detection_children() == []


def test_a_detection_child_that_dies_is_an_error(frame_and_catalog, detection_in_a_child):
    frame_path, _ = frame_and_catalog

    def kill_the_child():
        for child in _detection_children():
            child.kill()
        return False

    with pytest.raises(RbvetError, match=r"frame\.fits: object detection stopped without an"):
        open_frame_and_catalog(frame_path, should_stop=kill_the_child)
    assert _detection_children() == []


def test_no_objects_found_in_a_child_process(tmp_path, detection_in_a_child):
    frame_path = tmp_path / "blank.fits"
    fits.PrimaryHDU(np.random.default_rng(1).normal(100.0, 5.0, (64, 64))).writeto(frame_path)
    with pytest.raises(RbvetError, match=r"blank\.fits: no objects detected") as error:
        open_frame_and_catalog(frame_path, detect_threshold=50.0, should_stop=lambda: False)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------ job threads (Qt)


def test_a_core_cancellation_ends_the_job_as_cancelled(qtbot):
    from rbvet.gui.workers import JobThread

    def job(report, should_stop):
        raise CancelledError("reading cancelled")

    thread = JobThread(job, name="cancelled in the core")
    failures = []
    thread.failed.connect(failures.append)
    with qtbot.waitSignal(thread.cancelled, timeout=5000):
        thread.start()
    thread.wait()
    assert failures == []


def test_stop_waits_for_a_job_that_checks(qtbot):
    from rbvet.gui.workers import JobThread

    def job(report, should_stop):
        while True:
            report(0, 0, "working")
            time.sleep(0.01)

    thread = JobThread(job, name="checks")
    started = threading.Event()
    thread.progressed.connect(lambda *args: started.set())
    thread.start()
    qtbot.waitUntil(started.is_set, timeout=5000)
    with qtbot.waitSignal(thread.cancelled, timeout=5000):
        assert thread.stop(timeout_ms=5000)
    assert not thread.isRunning()


def test_stop_detaches_a_job_that_cannot_stop_in_time(qtbot):
    from PyQt6.QtCore import QObject

    from rbvet.gui import workers

    inside, release = threading.Event(), threading.Event()

    def job(report, should_stop):
        inside.set()
        release.wait(30)  # a step that cannot be interrupted
        return "result"

    owner = QObject()
    thread = workers.JobThread(job, name="stubborn", parent=owner)
    heard = []
    for signal in (thread.succeeded, thread.failed, thread.cancelled):
        signal.connect(heard.append)
    thread.start()
    assert inside.wait(10)
    assert not thread.stop(timeout_ms=50)
    assert thread.isRunning() and thread.parent() is None and thread in workers._detached
    owner.deleteLater()  # the owner goes away; the running thread must not go with it
    with qtbot.waitSignal(owner.destroyed, timeout=5000):
        pass
    release.set()
    qtbot.waitUntil(lambda: thread not in workers._detached, timeout=10_000)
    assert not thread.isRunning()
    assert heard == []  # a detached job reports to no one
