"""Cancelling long work: core jobs closed mid-way, and job threads stopped within a bound.

Closing the window mid-way through the GUI is in ``test_scale.py`` (classification) and
``test_gui_labeling.py`` (retraining); the job protocol itself is in ``test_jobs.py``.
"""

import inspect
import multiprocessing
import threading
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.core.classify import FrameOptions, open_frame_and_catalog
from rbvet.core.detect import detection as catalog
from rbvet.core.errors import RbvetError
from rbvet.core.jobs import run_job

READING_STEPS = ("read_frame", "ensure_background", "objects", "measure_fwhm")
"""The steps of `open_frame_and_catalog`, one after each of its yields."""


@pytest.fixture
def frame_and_catalog(tmp_path, make_star_field):
    image, x, y, _ = make_star_field(shape=(128, 128), n=25)
    frame_path = tmp_path / "frame.fits"
    catalog_path = tmp_path / "frame.ecsv"
    fits.PrimaryHDU(image).writeto(frame_path)
    Table({"x": x, "y": y}).write(catalog_path)
    return frame_path, catalog_path


@pytest.fixture
def reading_steps(monkeypatch):
    """A list that receives the name of each step of `open_frame_and_catalog` as it runs."""
    from rbvet.core.detect import psf
    from rbvet.core.io import catalog as catalogs
    from rbvet.core.io import frame as frames

    done = []

    def spy(owner, name, step):
        original = getattr(owner, name)

        def step_and_tell(*args, **kwargs):
            done.append(step)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, step_and_tell)

    spy(frames, "read_frame", "read_frame")
    spy(frames.Frame, "ensure_background", "ensure_background")
    spy(catalogs, "read_catalog", "objects")
    spy(catalog, "detect_objects", "objects")
    spy(psf, "measure_fwhm", "measure_fwhm")
    return done


@pytest.mark.parametrize("catalog_given", [True, False], ids=["catalog", "detected"])
def test_reading_stops_at_the_yield_where_it_is_closed(
    frame_and_catalog, reading_steps, catalog_given
):
    frame_path, catalog_path = frame_and_catalog
    catalog_path = catalog_path if catalog_given else None
    for yields in range(1, len(READING_STEPS) + 1):
        reading_steps.clear()
        job = open_frame_and_catalog(frame_path, catalog_path)
        for _ in range(yields):
            next(job)
        job.close()
        assert inspect.getgeneratorstate(job) == inspect.GEN_CLOSED
        # the steps before the yield ran, their own calls included; none after it
        assert [step for step in dict.fromkeys(reading_steps)] == list(READING_STEPS[: yields - 1])
    reading_steps.clear()
    frame, table, fwhm = run_job(open_frame_and_catalog(frame_path, catalog_path))
    assert len(table) > 20 and np.isfinite(fwhm)
    assert list(dict.fromkeys(reading_steps)) == list(READING_STEPS)


# ------------------------------------------------- object detection in a child process


def _detection_children():
    return [p for p in multiprocessing.active_children() if p.name == "rbvet object detection"]


@pytest.fixture
def detection_in_a_child(monkeypatch):
    """Objects are detected in a child process on frames of any size (when interruptible)."""
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
    _, here, fwhm_here = run_job(open_frame_and_catalog(frame_path))  # in process
    children = []
    _, there, fwhm_there = run_job(
        open_frame_and_catalog(frame_path, interruptible=True),
        lambda progress: children.extend(_detection_children()),
    )
    assert children and not any(child.is_alive() for child in children)
    assert there.colnames == here.colnames and len(there) == len(here) > 20
    for name in here.colnames:
        np.testing.assert_array_equal(there[name], here[name])
    assert fwhm_there == fwhm_here


def test_cancelling_terminates_the_detection_child(tmp_path, detection_in_a_child, frame_sent_at):
    frame_path = tmp_path / "noise.fits"
    noise = np.random.default_rng(0).normal(100.0, 5.0, (1024, 1024)).astype(np.float32)
    fits.PrimaryHDU(noise).writeto(frame_path)  # seconds of detection at 0.3 sigma
    children = []
    options = FrameOptions(detect_threshold=0.3)
    job = open_frame_and_catalog(frame_path, options=options, interruptible=True)
    messages = []
    for progress in job:  # closed 0.3 s after the child has the frame, while it detects
        messages.append(progress.message)
        children.extend(_detection_children())
        if frame_sent_at and time.monotonic() - frame_sent_at[0] > 0.3:
            break
    else:
        pytest.fail("the detection ended before the job was closed")
    assert messages[-1] == "Detecting objects"
    job.close()
    assert children and not any(child.is_alive() for child in children)
    assert all(child.exitcode is not None for child in children)
    assert _detection_children() == []


def test_a_detection_child_that_dies_is_an_error(frame_and_catalog, detection_in_a_child):
    frame_path, _ = frame_and_catalog

    def kill_the_child(progress):
        for child in _detection_children():
            child.kill()

    with pytest.raises(RbvetError, match=r"frame\.fits: object detection stopped without an"):
        run_job(open_frame_and_catalog(frame_path, interruptible=True), kill_the_child)
    assert _detection_children() == []


def test_no_objects_found_in_a_child_process(tmp_path, detection_in_a_child):
    frame_path = tmp_path / "blank.fits"
    fits.PrimaryHDU(np.random.default_rng(1).normal(100.0, 5.0, (64, 64))).writeto(frame_path)
    with pytest.raises(RbvetError, match=r"blank\.fits: no objects detected") as error:
        run_job(
            open_frame_and_catalog(
                frame_path, options=FrameOptions(detect_threshold=50.0), interruptible=True
            )
        )
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------ job threads (Qt)


def test_stop_waits_for_a_job_that_yields(qtbot):
    from rbvet.core.jobs import Progress
    from rbvet.gui.workers import JobThread

    closed = threading.Event()

    def job():
        try:
            while True:
                yield Progress(message="working")
                time.sleep(0.01)
        finally:
            closed.set()

    thread = JobThread(job(), name="yields")
    started = threading.Event()
    thread.progressed.connect(lambda progress: started.set())
    thread.start()
    qtbot.waitUntil(started.is_set, timeout=5000)
    with qtbot.waitSignal(thread.cancelled, timeout=5000):
        assert thread.stop(timeout_ms=5000)
    assert not thread.isRunning() and closed.is_set()


def test_stop_detaches_a_job_that_cannot_stop_in_time(qtbot):
    from PyQt6.QtCore import QObject

    from rbvet.core.jobs import Progress
    from rbvet.gui import workers

    inside, release = threading.Event(), threading.Event()

    def job():
        yield Progress(message="starting")
        inside.set()
        release.wait(30)  # a step that cannot be interrupted
        return "result"

    owner = QObject()
    thread = workers.JobThread(job(), name="stubborn", parent=owner)
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
