"""Vetting-grid speed, offscreen: atlas render, grid build, one-page repaint, re-sort.

Run: python benchmarks/bench_gui.py [--objects 20000] [--width 1280] [--height 900]

Synthetic data stand in for a classified frame: Gaussian blobs of random width and
position plus noise (some sharp single-pixel hits among them), rendered to tiles with
`rbvet.core.cutouts.atlas.render_tiles`, and random scores. Each figure is printed with its
target (the ``*_TARGET_*`` constants below); nothing here asserts, the machine may be busy.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from astropy.table import Table
from PyQt6.QtWidgets import QApplication

from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.cutouts.stamps import DEFAULT_CHUNK_SIZE as CLASSIFY_CHUNK
from rbvet.core.session import SORT_POSITION, SORT_SCORE
from rbvet.gui.grid import GridPanel
from rbvet.gui.state import VettingData, VettingState

INPUT_SIZE = 31
CHUNK = 2500
UNSCORED_FRACTION = 0.01
AFTER_SCORES_TARGET_S = 0.3
PAGE_TARGET_MS = 10.0
LAUNCH_TARGET_S = 2.0
LAUNCH_SCRIPT = """
import os, sys, time
started = float(sys.argv[1])
from PyQt6.QtCore import QSettings, QTimer
from PyQt6.QtWidgets import QApplication
from rbvet.gui.app import apply_theme
from rbvet.gui.main_window import MainWindow
app = QApplication([])
apply_theme(app)
window = MainWindow(settings=QSettings(os.devnull, QSettings.Format.IniFormat))
window.show()
def shown():
    print(time.time() - started, "tensorflow" in sys.modules)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def synthetic_inputs(n, rng):
    """(n, 31, 31, 2) float32 inputs: linear and asinh channels of noisy blobs."""
    grid = np.arange(INPUT_SIZE, dtype=np.float32) - INPUT_SIZE // 2
    centre = rng.uniform(-1.5, 1.5, (n, 2)).astype(np.float32)
    sigma = rng.uniform(0.7, 3.0, n).astype(np.float32)
    sigma[rng.uniform(size=n) < 0.15] = 0.3  # hot pixels and hits: sharper than any PSF
    dy = (grid[None, :] - centre[:, 1:2]) ** 2
    dx = (grid[None, :] - centre[:, 0:1]) ** 2
    blobs = np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * sigma[:, None, None] ** 2))
    snr = rng.uniform(5, 300, n).astype(np.float32)
    noisy = blobs * snr[:, None, None] + rng.standard_normal(blobs.shape, np.float32)
    linear = noisy / np.max(noisy, axis=(1, 2), keepdims=True)
    stretched = np.arcsinh(noisy)
    return np.stack([linear, stretched / stretched.max(axis=(1, 2), keepdims=True)], -1)


def synthetic_data(n, seed=0):
    """A `VettingData` for ``n`` objects and the seconds `render_tiles` took for them."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.6, 0.6, n).astype(np.float32)
    unscored = rng.uniform(size=n) < UNSCORED_FRACTION
    scores[unscored] = np.nan
    reasons = np.where(unscored, "off frame", "").astype("U32")
    atlas = empty_atlas(n, INPUT_SIZE)
    render_seconds = 0.0
    for start in range(0, n, CHUNK):
        inputs = synthetic_inputs(min(CHUNK, n - start), rng)
        started = time.perf_counter()
        tiles = render_tiles(inputs)
        render_seconds += time.perf_counter() - started
        atlas[start : start + len(tiles)] = tiles
    atlas[unscored] = 0
    x = rng.uniform(0, 4096, n)
    y = rng.uniform(0, 4096, n)
    table = Table(
        {
            "x": x,
            "y": y,
            "flux": rng.lognormal(8, 1.5, n),
        }
    )
    params = PreprocessParams(target_size=INPUT_SIZE)
    data = VettingData.from_scores(
        None, table, scores, reasons, atlas, fwhm=2.5, params=params, model_name="synthetic"
    )
    return data, render_seconds


def seconds(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure_build(app, panel, state, data):
    """Seconds from `VettingState.set_data` until the view is laid out and painted."""

    def show():
        state.set_data(data, threshold=0.5)
        app.processEvents()
        while panel.view.verticalScrollBar().maximum() == 0:
            app.processEvents()

    return seconds(show)


def measure_page_repaints(app, panel, pages):
    """Milliseconds of each ``viewport().repaint()`` after scrolling one page down."""
    bar = panel.view.verticalScrollBar()
    viewport = panel.view.viewport()
    times = []
    for _ in range(pages):
        bar.setValue(min(bar.value() + bar.pageStep(), bar.maximum()))
        app.processEvents()
        times.append(1e3 * seconds(viewport.repaint))
    return times


def measure_resort(app, panel):
    """Seconds to re-sort by position and back by score, each laid out."""

    def resort(key):
        panel.proxy.set_sort(key)
        panel.view.executeDelayedItemsLayout()
        app.processEvents()

    return seconds(lambda: resort(SORT_POSITION)), seconds(lambda: resort(SORT_SCORE))


def measure_threshold_drag(app, panel, state, steps=20):
    """Median milliseconds per threshold step with the "real" filter on."""
    panel.filter_combo.setCurrentText("real")
    times = []
    for threshold in np.linspace(0.3, 0.7, steps):
        times.append(1e3 * seconds(lambda: (state.set_threshold(threshold), app.processEvents())))
    panel.filter_combo.setCurrentText("all")
    return statistics.median(times)


def measure_launch(repeats=3):
    """Seconds from starting a Python process to the main window shown (best of a few),
    and whether TensorFlow was imported by then (it must not be)."""
    import subprocess
    import sys

    times, tensorflow_loaded = [], False
    for _ in range(repeats):
        result = subprocess.run(
            [sys.executable, "-c", LAUNCH_SCRIPT, repr(time.time())],
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed, loaded = result.stdout.split()
        times.append(float(elapsed))
        tensorflow_loaded |= loaded == "True"
    return min(times), tensorflow_loaded


def tiles_per_page(panel):
    view = panel.view
    grid = view.gridSize()
    columns = max(view.viewport().width() // grid.width(), 1)
    rows = -(-view.viewport().height() // grid.height())
    return columns * rows


# ----------------------------------------------------------------------------------------
# main(): one line per figure, "name: value unit   (target ...)". More measurements (the
# main window's launch time) plug in here as further measure_* functions.
# ----------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20000)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])
    data, atlas_seconds = synthetic_data(args.objects)
    state = VettingState()
    panel = GridPanel(state)
    panel.resize(args.width, args.height)
    panel.show()
    app.processEvents()

    build_seconds = measure_build(app, panel, state, data)
    page_ms = measure_page_repaints(app, panel, args.pages)
    by_position, by_score = measure_resort(app, panel)
    threshold_ms = measure_threshold_drag(app, panel, state)
    launch_seconds, tensorflow_loaded = measure_launch()
    last_chunk = min(args.objects, CLASSIFY_CHUNK)
    last_chunk_seconds = atlas_seconds * last_chunk / args.objects

    print(
        f"{args.objects} objects, {args.width}x{args.height} offscreen, "
        f"~{tiles_per_page(panel)} tiles a page, {os.cpu_count()} cores"
    )
    print(
        f"atlas render, all tiles: {atlas_seconds:.3f} s (the window renders each chunk's "
        f"tiles as its scores arrive, so only the last chunk's is left at the end)"
    )
    print(f"grid build: {build_seconds:.3f} s")
    print(
        f"after the last scores arrive (last {last_chunk} tiles + grid build): "
        f"{last_chunk_seconds + build_seconds:.3f} s   (target <= {AFTER_SCORES_TARGET_S} s)"
    )
    print(
        f"launch to window shown: {launch_seconds:.2f} s, TensorFlow imported by then: "
        f"{tensorflow_loaded}   (target <= {LAUNCH_TARGET_S:.0f} s)"
    )
    print(
        f"page repaint: {statistics.median(page_ms):.1f} ms median, {min(page_ms):.1f} min, "
        f"{max(page_ms):.1f} max of {len(page_ms)}   (target <= {PAGE_TARGET_MS:.0f} ms)"
    )
    print(f"re-sort by position: {by_position:.3f} s; back by score: {by_score:.3f} s")
    print(f"threshold step, real filter: {threshold_ms:.1f} ms median")
    panel.close()


if __name__ == "__main__":
    main()
