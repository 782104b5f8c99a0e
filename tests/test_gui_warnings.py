"""The window's command (``python main.py``) prints rbvet's warnings as ``rbvet`` does.

Seen on a CFHT cutout whose header kept its CCD's ``DATASEC``: ``rbvet classify`` said
the fallback in one line, ``python main.py`` in Python's two-line warning format with a
source line from rbvet's code.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]


def test_window_command_prints_a_fallback_as_one_rbvet_warning_line(tmp_path):
    rng = np.random.default_rng(6)
    image = rng.normal(1000.0, 10.0, (200, 200))
    y, x = np.mgrid[:200, :200]
    for cx, cy in rng.uniform(20, 180, (12, 2)):
        image += 2000.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
    frame = tmp_path / "cutout.fits"
    header = fits.Header({"DATASEC": "[1:4096,1:4096]"})  # the CCD's, not the cutout's
    fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(frame)
    result = subprocess.run(
        [sys.executable, "main.py", str(frame), "--screenshot", str(tmp_path / "w.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    warned = [line for line in result.stderr.splitlines() if "DATASEC ignored" in line]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith(f"rbvet: warning: {frame}: DATASEC ignored")
    assert "RbvetWarning" not in result.stderr and "frame_from_array(" not in result.stderr


def test_cycles_made_in_a_job_thread_are_collected_on_the_gui_thread(qapp, qtbot):
    """A cycle holding a Qt object must not be freed in a worker: collection runs from a
    timer on the GUI thread once the window's app sets it up."""
    import gc
    import threading

    from rbvet.gui.app import collect_garbage_on_gui_thread

    freed_in, kept = [], []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            freed_in.append(threading.current_thread() is threading.main_thread())

    def churn():
        Cycle()  # unreachable at once, but only a cycle collection frees it
        # Enough new containers to trigger automatic collection, kept alive so the
        # timer's check also sees them.
        kept.extend([] for _ in range(200_000))

    collector = collect_garbage_on_gui_thread(qapp, interval=0.05)
    try:
        assert not gc.isenabled()
        worker = threading.Thread(target=churn)
        worker.start()
        worker.join()
        assert freed_in == []  # nothing collected in the worker
        qtbot.waitUntil(lambda: bool(freed_in), timeout=5000)
        assert freed_in == [True]
    finally:
        collector.timer.stop()
        gc.enable()
        del qapp.garbage_collector
