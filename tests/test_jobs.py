"""The one job protocol: `Progress`, `run_job`, closing as cancelling, `JobThread`, the
window that never waits for a stuck job, `FrameOptions` and `cpu_count`."""

import inspect
import os
import re
import threading
from pathlib import Path

import pytest

from rbvet.core import jobs
from rbvet.core.classify import FrameOptions
from rbvet.core.jobs import Progress, cpu_count, run_job

GUI_DIR = Path(__file__).resolve().parents[1] / "rbvet" / "gui"


def counting_job(steps, released=None):
    """A job of ``steps`` steps that returns ``"done"``; ``released`` records its cleanup."""
    try:
        for step in range(steps):
            yield Progress(step, steps, f"step {step}")
        return "done"
    finally:
        if released is not None:
            released.append(True)


# ------------------------------------------------------------------ the core protocol


def test_progress_is_a_frozen_value_with_a_fraction():
    progress = Progress(3, 4, "scoring")
    assert (progress.done, progress.total, progress.message) == (3, 4, "scoring")
    assert progress.fraction == 0.75 and Progress(message="reading").fraction is None
    with pytest.raises(AttributeError):
        progress.done = 4


def test_run_job_reports_every_progress_and_returns_the_result():
    seen, released = [], []
    assert run_job(counting_job(3, released), seen.append) == "done"
    assert seen == [Progress(step, 3, f"step {step}") for step in range(3)]
    assert released == [True]
    assert run_job(counting_job(2)) == "done"  # without a report


def test_a_job_interrupted_in_its_report_is_closed():
    released = []
    job = counting_job(5, released)

    def interrupt(progress):
        if progress.done == 1:
            raise KeyboardInterrupt  # Ctrl-C during a command-line progress bar

    with pytest.raises(KeyboardInterrupt):
        run_job(job, interrupt)
    assert released == [True] and inspect.getgeneratorstate(job) == inspect.GEN_CLOSED


def test_a_job_made_of_jobs_returns_through_yield_from():
    def outer():
        first = yield from counting_job(2)
        second = yield from counting_job(1)
        return first + second

    seen = []
    assert run_job(outer(), seen.append) == "donedone"
    assert [progress.message for progress in seen] == ["step 0", "step 1", "step 0"]


def test_the_command_line_progress_bar_draws_counted_progress_only():
    import io

    from rbvet.cli import ProgressBar

    def job():
        yield Progress(message="Reading frame.fits")  # no total: nothing to draw
        for done in (1, 2):
            yield Progress(done, 2, "Classifying")
        return "scores"

    stream = io.StringIO()
    assert run_job(job(), ProgressBar("Classifying", enabled=True, stream=stream)) == "scores"
    lines = stream.getvalue().split("\r")[1:]
    assert [line.split("]")[1].split("(")[0].strip() for line in lines] == ["1/2", "2/2"]
    assert lines[0].startswith("Classifying [" + "#" * 15 + "-" * 15 + "]")
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1


def test_cpu_count_follows_the_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    read_quota = jobs._cgroup_cpu_quota
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(jobs, "_cgroup_cpu_quota", lambda: None)
    jobs._cpu_count.cache_clear()
    try:
        assert cpu_count() == 3
        monkeypatch.setattr(jobs, "_cgroup_cpu_quota", lambda: 1.5)
        jobs._cpu_count.cache_clear()
        assert cpu_count() == 2  # a quota of 1.5 CPUs keeps 2 busy, not 3
    finally:
        jobs._cpu_count.cache_clear()
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert read_quota(quota) == 1.5
    quota.write_text("max 100000\n")
    assert read_quota(quota) is None
    assert read_quota(tmp_path / "absent") is None


def test_inference_threads_default_to_the_usable_cores(monkeypatch):
    from rbvet.core.model import inference_threads

    monkeypatch.delenv("RBVET_INFERENCE_THREADS", raising=False)
    monkeypatch.setattr(jobs, "cpu_count", lambda: 7)
    assert inference_threads() == 7


def test_the_command_line_frame_options_are_frame_options():
    from rbvet.cli import _frame_options, build_parser

    argv = ["classify", "f.fits", "--hdu", "1", "--mask", "BPM", "--error", "err.fits"]
    argv += ["--weight", "2", "--detect-threshold", "4.5", "--fwhm", "2.5"]
    argv += ["--min-area", "5", "--saturation", "none", "--no-datasec", "--no-file-noise-map"]
    options = _frame_options(build_parser().parse_args(argv))
    assert options == FrameOptions(
        hdu=1,
        mask="BPM",
        error="err.fits",
        weight=2,
        detect_threshold=4.5,
        min_area=5,
        fwhm=2.5,
        saturation=False,
        use_datasec=False,
        file_noise_map=False,
    )
    assert options.read_options() == {
        "hdu": 1,
        "mask": "BPM",
        "error": "err.fits",
        "weight": 2,
        "saturation": False,
        "use_datasec": False,
        "file_noise_map": False,
    }
    defaults = _frame_options(build_parser().parse_args(["classify", "f.fits"]))
    assert defaults == FrameOptions()


# ------------------------------------------------------------------ JobThread (Qt)


def test_a_job_thread_reports_progress_and_result(qtbot):
    from rbvet.gui.workers import JobThread

    thread = JobThread(counting_job(3), name="counts")
    seen = []
    thread.progressed.connect(seen.append)
    with qtbot.waitSignal(thread.succeeded, timeout=10_000) as result:
        thread.start()
    assert result.args == ["done"]
    assert [progress.done for progress in seen] == [0, 1, 2]
    assert thread.wait(10_000)


def test_a_failing_job_reports_one_line(qtbot):
    from rbvet.core.errors import RbvetError
    from rbvet.gui.workers import JobThread

    def job():
        yield Progress(message="reading")
        raise RbvetError("not a FITS file", "x.fits")

    thread = JobThread(job(), name="fails")
    with qtbot.waitSignal(thread.failed, timeout=10_000) as failure:
        thread.start()
    assert failure.args == ["x.fits: not a FITS file"]
    assert thread.wait(10_000)


def test_cancelling_closes_the_job_at_its_next_yield(qtbot):
    from rbvet.gui.workers import JobThread

    inside, go_on = threading.Event(), threading.Event()
    after_yield, closed = [], []

    def job():
        try:
            yield Progress(message="first step")
            inside.set()
            go_on.wait(30)  # a step that runs on after the cancel
            yield Progress(message="second step")
            after_yield.append(True)  # never reached: the job is closed at that yield
            return "result"
        except GeneratorExit:
            closed.append(True)
            raise

    thread = JobThread(job(), name="cancelled")
    heard = []
    thread.succeeded.connect(heard.append)
    thread.failed.connect(heard.append)
    thread.start()
    assert inside.wait(10)
    thread.cancel()
    with qtbot.waitSignal(thread.cancelled, timeout=10_000):
        go_on.set()
    assert closed == [True] and after_yield == [] and heard == []
    assert thread.wait(10_000)


def test_a_job_cancelled_before_it_starts_never_runs(qtbot):
    from rbvet.gui.workers import JobThread

    ran = []

    def job():
        ran.append(True)
        yield Progress()

    thread = JobThread(job(), name="never")
    thread.cancel()
    with qtbot.waitSignal(thread.cancelled, timeout=10_000):
        thread.start()
    assert ran == [] and thread.wait(10_000)


def window_classifying_with(classify_frame, qtbot, tmp_path, monkeypatch):
    """A window whose classify job is ``classify_frame``; (window, the results it showed)."""
    from PyQt6.QtCore import QSettings

    from rbvet.gui import main_window as window_module

    monkeypatch.setattr(window_module, "classify_frame", classify_frame)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = window_module.MainWindow(
        settings=settings, label_store_path=tmp_path / "labels.sqlite"
    )
    qtbot.addWidget(window)
    shown = []
    window._on_classified = shown.append
    return window, shown


def test_opening_a_frame_during_a_stuck_job_returns_at_once(qtbot, tmp_path, monkeypatch):
    from rbvet.gui import workers

    release, stuck_inside = threading.Event(), threading.Event()

    def classify_frame(frame_path, catalog_path=None, model_path=None, options=None):
        yield Progress(message=f"Reading {frame_path}")
        if frame_path == "stuck.fits":
            stuck_inside.set()
            release.wait(60)  # a step that cannot be interrupted
        return frame_path, 0.5

    window, shown = window_classifying_with(classify_frame, qtbot, tmp_path, monkeypatch)
    window.open_frame("stuck.fits")
    assert stuck_inside.wait(10)
    stuck = window.job
    # Were open_frame to wait for the stuck job, this would free it after 10 s, and the
    # assertion below would fail rather than the test hang.
    watchdog = threading.Timer(10.0, release.set)
    watchdog.start()
    try:
        window.open_frame("next.fits")
        assert not release.is_set()  # returned while the old job was still stuck
    finally:
        watchdog.cancel()
    assert stuck.isRunning() and stuck in workers._detached
    qtbot.waitUntil(lambda: shown == [("next.fits", 0.5)], timeout=10_000)
    assert window.frame_path == "next.fits"
    release.set()
    qtbot.waitUntil(lambda: stuck not in workers._detached, timeout=10_000)
    assert shown == [("next.fits", 0.5)] and window.frame_path == "next.fits"  # late: ignored
    window.cancel_job(wait=True)


def test_a_result_queued_before_another_frame_is_opened_is_dropped(qtbot, tmp_path, monkeypatch):
    def classify_frame(frame_path, catalog_path=None, model_path=None, options=None):
        yield Progress(message=f"Reading {frame_path}")
        return frame_path, 0.5

    window, shown = window_classifying_with(classify_frame, qtbot, tmp_path, monkeypatch)
    window.open_frame("first.fits")
    assert window.job.wait(10_000)  # done: its signals wait in the event queue, undelivered
    window.open_frame("second.fits")
    qtbot.waitUntil(lambda: ("second.fits", 0.5) in shown, timeout=10_000)
    qtbot.waitUntil(lambda: not window.busy, timeout=10_000)
    assert shown == [("second.fits", 0.5)] and window.frame_path == "second.fits"


def test_no_unbounded_wait_in_the_gui():
    """Every ``wait``/``join`` in rbvet/gui has a bound: ``x.wait()`` blocks for ever."""
    unbounded = re.compile(r"\.(wait|join)\(\s*\)")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(GUI_DIR.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if unbounded.search(line)
    ]
    assert found == []
