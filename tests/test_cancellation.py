"""Cancelling long work: core steps asked to stop, and job threads stopped within a bound.

Closing the window mid-way through the GUI is in ``test_scale.py`` (classification) and
``test_gui_labeling.py`` (retraining).
"""

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.core.classify import open_frame_and_catalog

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
    qtbot.wait(10)
    release.set()
    qtbot.waitUntil(lambda: thread not in workers._detached, timeout=10_000)
    assert not thread.isRunning()
    assert heard == []  # a detached job reports to no one
