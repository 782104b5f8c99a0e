"""Labeling speed in the full window, offscreen: keypress to repainted tile at 20k tiles.

Run: python benchmarks/bench_labeling.py [--objects 20000] [--presses 30]

A synthetic frame (Gaussian stars on noise) with ``--objects`` detections, random
scores and synthetic tiles (no TensorFlow) is shown in a `MainWindow` whose label store
is a temporary file. Each timed press is a real key event sent to the grid
(``QTest.keyClick``): the label is written to the store (one action, fsync'ed), the
state, grid, frame markers and error-rate plots follow, and the grid's viewport is
repainted. Printed: the median and the 90th percentile over the presses, for R (label
and move on, as while vetting), Ctrl+Z (undo) and Ctrl+Shift+Z (redo), the time until
every other panel has repainted too, the store write alone, and the bulk actions (wall
and CPU time). Nothing here asserts: the machine may be busy.
"""

import argparse
import atexit
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from astropy.table import Table
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication

from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.io.frame import frame_from_array
from rbvet.gui.main_window import MainWindow
from rbvet.gui.state import REAL, VettingData

KEYPRESS_TARGET_MS = 50.0
FRAME_SIDE = 2048
FWHM = 3.0
CHUNK = 2500
NO_MODIFIER = Qt.KeyboardModifier.NoModifier
CONTROL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


def _bench_gui():
    """`benchmarks/bench_gui.py` as a module (for its synthetic tiles)."""
    path = Path(__file__).with_name("bench_gui.py")
    spec = importlib.util.spec_from_file_location("bench_gui", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_frame(n, rng):
    """A frame with ``n`` Gaussian stars on noise, and their 0-based positions."""
    image = rng.normal(100.0, 5.0, (FRAME_SIDE, FRAME_SIDE)).astype(np.float32)
    x = rng.uniform(20, FRAME_SIDE - 20, n)
    y = rng.uniform(20, FRAME_SIDE - 20, n)
    sigma = FWHM / 2.3548
    offsets = np.arange(-6, 7)
    for dy in offsets:
        for dx in offsets:
            column = np.round(x).astype(int) + dx
            row = np.round(y).astype(int) + dy
            weight = np.exp(-((column - x) ** 2 + (row - y) ** 2) / (2 * sigma**2))
            np.add.at(image, (row, column), (500.0 * weight).astype(np.float32))
    return frame_from_array(image).ensure_background(), x, y


def synthetic_data(n, seed=0):
    """A classified-looking `VettingData` of ``n`` objects on a real (synthetic) frame."""
    rng = np.random.default_rng(seed)
    frame, x, y = synthetic_frame(n, rng)
    scores = rng.beta(0.6, 0.6, n).astype(np.float32)
    reasons = np.full(n, "", dtype="U32")
    atlas = empty_atlas(n, 31)
    inputs_of = _bench_gui().synthetic_inputs
    for start in range(0, n, CHUNK):
        tiles = render_tiles(inputs_of(min(CHUNK, n - start), rng))
        atlas[start : start + len(tiles)] = tiles
    return VettingData.from_scores(
        frame,
        Table({"x": x, "y": y}),
        scores,
        reasons,
        atlas,
        fwhm=FWHM,
        params=PreprocessParams(),
        model_name="synthetic",
        frame_path="synthetic.fits",
    )


def add_synthetic_uncertainty(window, data, seed=0):
    """Random BALD and 16 feature clusters, as the uncertainty job would give them."""
    from rbvet.core.learn.uncertainty import Uncertainty

    rng = np.random.default_rng(seed)
    n = len(data)
    features = rng.normal(size=(n, 64)).astype(np.float32)
    bald = rng.uniform(0, 0.3, n).astype(np.float32)
    clusters = rng.integers(0, 16, n)
    window.state.session.set_uncertainty(data, Uncertainty(data.scores, bald, features), clusters)


def timed_presses(app, window, key, modifier, presses):
    """(key to tile repainted, key to every pending event done) in ms, one per press."""
    view = window.grid.view
    to_tile, to_all = [], []
    for _ in range(presses):
        app.processEvents()
        started = time.perf_counter()
        QTest.keyClick(view, key, modifier)
        view.viewport().repaint()
        to_tile.append(1e3 * (time.perf_counter() - started))
        app.processEvents()
        to_all.append(1e3 * (time.perf_counter() - started))
    return to_tile, to_all


def timed_until_painted(app, view, action):
    """``action()``'s result, and the wall and CPU milliseconds from its start until the
    grid is repainted and every pending event done.

    The CPU time is this process's (all its threads): unlike the wall time, it does not
    grow when other programs keep the machine busy.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    view.viewport().repaint()
    app.processEvents()
    return result, 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


def report(name, to_tile, to_all):
    tile_median = statistics.median(to_tile)
    verdict = "ok" if tile_median <= KEYPRESS_TARGET_MS else "SLOW"
    print(
        f"{name:<26} key→tile median {tile_median:6.1f} ms  p90 "
        f"{np.percentile(to_tile, 90):6.1f} ms   key→whole window median "
        f"{statistics.median(to_all):6.1f} ms   (target ≤ {KEYPRESS_TARGET_MS:.0f} ms: "
        f"{verdict})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    started = time.perf_counter()
    data = synthetic_data(args.objects)
    print(f"{args.objects} synthetic objects in {time.perf_counter() - started:.1f} s")
    folder = Path(tempfile.mkdtemp(prefix="rbvet-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the store, ~90 MB
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, label_store_path=folder / "labels.sqlite")
    window.resize(args.width, args.height)
    window.show()
    window.show_data(data, threshold=0.5)
    view = window.grid.view
    view.setFocus()
    app.processEvents()
    order = window.grid.proxy.order()
    shown = len(window.grid.proxy.order())

    # Warm-up: the first label stores the frame (hashes its pixels) and makes the store.
    started = time.perf_counter()
    QTest.keyClick(view, Qt.Key.Key_R)
    app.processEvents()
    print(
        f"first label (creates the store, registers the frame): "
        f"{1e3 * (time.perf_counter() - started):.0f} ms"
    )
    window.state.select(int(order[100]))
    app.processEvents()
    print(f"{shown} tiles shown; window {args.width}x{args.height}; store {folder}")
    report(
        "R (label, move on)", *timed_presses(app, window, Qt.Key.Key_R, NO_MODIFIER, args.presses)
    )
    report("Ctrl+Z (undo)", *timed_presses(app, window, Qt.Key.Key_Z, CONTROL, args.presses))
    report(
        "Ctrl+Shift+Z (redo)",
        *timed_presses(app, window, Qt.Key.Key_Z, CONTROL | SHIFT, args.presses),
    )
    window.grid.proxy.set_sort("suspicious")
    window.state.select(int(window.grid.proxy.order()[50]))
    report(
        "R, suspicious sort", *timed_presses(app, window, Qt.Key.Key_R, NO_MODIFIER, args.presses)
    )
    add_synthetic_uncertainty(window, data)
    window.grid.proxy.set_sort("label_next")
    window.state.select(int(window.grid.proxy.order()[0]))
    report(
        "R, label-next sort", *timed_presses(app, window, Qt.Key.Key_R, NO_MODIFIER, args.presses)
    )
    window.grid.proxy.set_sort("score")

    store = window.labels.store
    ids = window.labels.object_ids[order[:1]]
    writes = []
    for label in [0, 1] * (args.presses // 2):
        began = time.perf_counter()
        store.set_labels(ids, label)
        writes.append(1e3 * (time.perf_counter() - began))
    print(f"{'store write alone':<26} median {statistics.median(writes):6.1f} ms (fsync'ed)")

    window.confirm = lambda text: True
    count, wall, cpu = timed_until_painted(app, view, window.label_below_threshold)
    print(
        f"{'bulk: below threshold':<26} {count} objects in {wall:.0f} ms, CPU {cpu:.0f} ms "
        "(stamps cut and stored)"
    )
    _, wall, cpu = timed_until_painted(
        app, view, lambda: QTest.keyClick(view, Qt.Key.Key_Z, CONTROL)
    )
    print(f"{'bulk: undo it':<26} {wall:.0f} ms, CPU {cpu:.0f} ms")
    QTest.keyClick(view, Qt.Key.Key_A, CONTROL)
    _, wall, cpu = timed_until_painted(app, view, lambda: QTest.keyClick(view, Qt.Key.Key_R))
    labeled = int(np.count_nonzero(window.state.data.labels == REAL))
    print(f"{'bulk: Ctrl+A, R':<26} {labeled} objects in {wall:.0f} ms, CPU {cpu:.0f} ms")
    window.close()


if __name__ == "__main__":
    main()
