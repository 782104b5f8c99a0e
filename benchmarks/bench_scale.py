"""Scale: an 8k x 8k float32 frame with 100k objects, from the command line and in the window.

Run: python benchmarks/bench_scale.py [--size 8192] [--objects 100000] [--workdir DIR]
     [--window-only]

Makes the frame (noise, sky, Gaussian stars and single-pixel hits, stamped all at once)
and its ECSV catalog in a temporary folder, then runs, each in a process of its own:

1. ``rbvet classify FRAME --catalog CAT``: peak resident memory and wall time;
2. ``rbvet gui FRAME --catalog CAT --screenshot PNG``: the same for the window;
3. a probe of the window: the time to the frame classified and shown, the longest stall
   of the event loop while it works (a 20 ms timer's worst gap) and from showing the
   classified frame on (the window's own work, not the worker's), one page of the grid
   repainted while scrolling, and the frame view repainted after a zoom or a pan.

Peak memory is the child's ``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)``), read
in a small wrapper process so each figure is that command's alone. Figures are printed
with the 4 GB target; nothing asserts (the machine may be busy).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

PEAK_TARGET_GB = 4.0
PAGE_TARGET_MS = 10.0
HIT_FRACTION = 0.1  # objects that are single-pixel hits rather than stars

# Runs COMMAND..., then prints its peak RSS (kB, Linux) and wall time as JSON on stderr.
MEASURE_SCRIPT = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
status = subprocess.run(sys.argv[1:]).returncode
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("MEASURED " + json.dumps({"status": status, "seconds": seconds, "peak_kb": peak}),
      file=sys.stderr)
"""


# --------------------------------------------------------------------------- the data


def make_frame(size, n_objects, fwhm=3.0, seed=0):
    """A ``size`` x ``size`` float32 frame and the 0-based positions of its objects.

    Stars are circular Gaussians (peak S/N 5 to 600) on a sky of 100 with noise 5; one
    object in ten is a single hot pixel. Everything is stamped at once with
    ``np.add.at``: no loop over objects.
    """
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((size, size), dtype=np.float32)
    image *= 5.0
    image += 100.0
    x = rng.uniform(10, size - 11, n_objects)
    y = rng.uniform(10, size - 11, n_objects)
    n_hits = int(HIT_FRACTION * n_objects)
    star_x, star_y = x[n_hits:], y[n_hits:]
    peak = (5.0 * rng.uniform(5, 600, len(star_x))).astype(np.float32)
    half = 6
    offsets = np.arange(-half, half + 1)
    cols = np.rint(star_x).astype(np.int64)[:, None] + offsets
    rows = np.rint(star_y).astype(np.int64)[:, None] + offsets
    sigma = fwhm / 2.3548
    gauss_x = np.exp(-0.5 * ((cols - star_x[:, None]) / sigma) ** 2).astype(np.float32)
    gauss_y = np.exp(-0.5 * ((rows - star_y[:, None]) / sigma) ** 2).astype(np.float32)
    stamps = peak[:, None, None] * gauss_y[:, :, None] * gauss_x[:, None, :]
    np.add.at(image, (rows[:, :, None], cols[:, None, :]), stamps)
    hit_rows = np.rint(y[:n_hits]).astype(np.int64)
    hit_cols = np.rint(x[:n_hits]).astype(np.int64)
    image[hit_rows, hit_cols] += rng.uniform(50, 3000, n_hits).astype(np.float32)
    return image, x, y


def write_inputs(directory, size, n_objects):
    """Write ``scale.fits`` and ``scale.ecsv``; return their paths and the seconds taken."""
    from astropy.io import fits
    from astropy.table import Table

    started = time.perf_counter()
    image, x, y = make_frame(size, n_objects)
    frame_path = Path(directory) / "scale.fits"
    catalog_path = Path(directory) / "scale.ecsv"
    fits.PrimaryHDU(image).writeto(frame_path, overwrite=True)
    Table({"x": x, "y": y}).write(catalog_path, overwrite=True)
    return frame_path, catalog_path, time.perf_counter() - started


# ------------------------------------------------------------------------ measurement


def measure(command, log_path):
    """Run ``command`` in a wrapper process; its output goes to ``log_path``.

    Returns
    -------
    dict
        ``status``, ``seconds`` and ``peak_gb`` of the command, and ``log`` (its output).
    """
    with open(log_path, "w") as log:
        result = subprocess.run(
            [sys.executable, "-c", MEASURE_SCRIPT, *map(str, command)],
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        )
    measured = next(
        (
            json.loads(line[9:])
            for line in result.stderr.splitlines()
            if line.startswith("MEASURED ")
        ),
        {"status": result.returncode, "seconds": float("nan"), "peak_kb": 0},
    )
    measured["peak_gb"] = measured.pop("peak_kb") / 1024**2
    measured["log"] = Path(log_path).read_text()
    return measured


# The window probe runs in its own process (started by main()) and prints one JSON line.
PROBE_SCRIPT = textwrap.dedent(
    """
    import json, os, statistics, sys, time
    from PyQt6.QtCore import QRectF, QSettings, QTimer
    from PyQt6.QtWidgets import QApplication
    from rbvet.gui.app import apply_theme
    from rbvet.gui.main_window import MainWindow

    frame_path, catalog_path, width, height, pages = sys.argv[1:6]
    app = QApplication([])
    apply_theme(app)
    window = MainWindow(settings=QSettings(os.devnull, QSettings.Format.IniFormat))
    window.resize(int(width), int(height))
    window.show()
    app.processEvents()

    gaps, ticks, last = [], [], [time.perf_counter()]
    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        ticks.append(now)
        last[0] = now
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)

    outcome = {}
    window.classified.connect(lambda: outcome.setdefault("classified", time.perf_counter()))
    window.failed.connect(lambda message: outcome.setdefault("failed", message))
    started = time.perf_counter()
    window.open_frame(frame_path, catalog_path)
    while not outcome:
        app.processEvents()
        time.sleep(0.002)
    if "failed" in outcome:
        print(json.dumps({"failed": outcome["failed"]}))
        sys.exit(2)
    # Let the window settle (the grid lays out, the frame draws), still timing the loop.
    settle_until = time.perf_counter() + 2.0
    while time.perf_counter() < settle_until:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()

    def timed(function):
        t = time.perf_counter()
        function()
        return 1e3 * (time.perf_counter() - t)

    bar = window.grid.view.verticalScrollBar()
    viewport = window.grid.view.viewport()
    page_ms = []
    for _ in range(int(pages)):
        bar.setValue(min(bar.value() + bar.pageStep(), bar.maximum()))
        app.processEvents()
        page_ms.append(timed(viewport.repaint))

    view = window.frame_view
    canvas = view.plot.viewport()
    frame_ms = {}
    def move(rect):
        view.view_box.setRange(rect, padding=0)
        app.processEvents()
        canvas.repaint()
    rows, cols = view.display_image.shape
    def fit():
        view.fit_frame()
        app.processEvents()
        canvas.repaint()
    def then_settled(function):
        # The repaint, then the view's deferred work (markers follow the view after a
        # short delay) and the repaint after it.
        first = timed(function)
        time.sleep(0.2)
        return first, timed(lambda: (app.processEvents(), canvas.repaint()))
    frame_ms["fit"] = then_settled(fit)
    frame_ms["zoom to 1:1"] = then_settled(lambda: move(QRectF(cols / 2, rows / 2, 800, 600)))
    frame_ms["pan one screen"] = then_settled(
        lambda: move(QRectF(cols / 2 + 800, rows / 2, 800, 600))
    )
    frame_ms["zoom out x8"] = then_settled(lambda: move(QRectF(cols / 4, rows / 4, 6400, 4800)))
    frame_ms["fit again"] = then_settled(fit)

    # The window shows the frame just before it reports "classified"; the first tick
    # after that waited for it.
    shown_gaps_ms = [1e3 * g for g, t in zip(gaps, ticks) if t >= outcome["classified"]]
    gaps_ms = sorted(1e3 * g for g in gaps)
    print(json.dumps({
        "shown_gap_max_ms": max(shown_gaps_ms, default=float("nan")),
        "objects": len(window.state.data),
        "classified_s": outcome["classified"] - started,
        "loop_gap_max_ms": gaps_ms[-1],
        "loop_gap_p99_ms": gaps_ms[int(0.99 * (len(gaps_ms) - 1))],
        "page_ms_median": statistics.median(page_ms),
        "page_ms_max": max(page_ms),
        "frame_ms": frame_ms,
    }))
    window.close()
    """
)


def report(name, measured):
    """One line: peak memory against the target, and the time."""
    verdict = "ok" if measured["peak_gb"] <= PEAK_TARGET_GB else "OVER"
    print(
        f"{name}: peak {measured['peak_gb']:.2f} GB ({verdict}, target <= "
        f"{PEAK_TARGET_GB:.0f} GB), {measured['seconds']:.1f} s, exit status {measured['status']}"
    )
    if measured["status"] != 0:
        print(textwrap.indent(measured["log"][-2000:], "    "))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="frame side in pixels")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--workdir", help="keep the frame, catalog and logs here")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=20, help="grid pages scrolled")
    parser.add_argument(
        "--window-only", action="store_true", help="skip the two CLI runs; probe the window only"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rbvet-scale-") as temporary:
        directory = Path(args.workdir or temporary)
        directory.mkdir(parents=True, exist_ok=True)
        frame_path, catalog_path, made = write_inputs(directory, args.size, args.objects)
        megabytes = frame_path.stat().st_size / 1024**2
        print(
            f"{args.size}x{args.size} float32 frame ({megabytes:.0f} MB), "
            f"{args.objects} objects, made in {made:.1f} s; {os.cpu_count()} cores"
        )
        rbvet = [sys.executable, "-m", "rbvet.cli"]
        if not args.window_only:
            classify = measure(
                [*rbvet, "classify", frame_path, "--catalog", catalog_path,
                 "-o", directory / "scale.rb.ecsv"],
                directory / "classify.log",
            )  # fmt: skip
            report("rbvet classify", classify)
            for line in classify["log"].splitlines()[-3:]:
                print("    " + line)

            screenshot = measure(
                [*rbvet, "gui", frame_path, "--catalog", catalog_path,
                 "--screenshot", directory / "scale.png",
                 "--window-size", f"{args.width}x{args.height}"],
                directory / "gui.log",
            )  # fmt: skip
            report("rbvet gui --screenshot", screenshot)

        probe = measure(
            [sys.executable, "-c", PROBE_SCRIPT, frame_path, catalog_path,
             args.width, args.height, args.pages],
            directory / "probe.log",
        )  # fmt: skip
        report("window probe", probe)
        figures = next(
            (json.loads(line) for line in probe["log"].splitlines() if line.startswith("{")), None
        )
        if figures and "failed" not in figures:
            print(f"    classified and shown: {figures['classified_s']:.1f} s")
            print(
                f"    event loop while opening: worst gap {figures['loop_gap_max_ms']:.0f} ms, "
                f"99th percentile {figures['loop_gap_p99_ms']:.0f} ms (a 20 ms timer)"
            )
            print(
                "    event loop from showing the classified frame on: worst gap "
                f"{figures['shown_gap_max_ms']:.0f} ms"
            )
            print(
                f"    grid page repaint: {figures['page_ms_median']:.1f} ms median, "
                f"{figures['page_ms_max']:.1f} ms max   (target <= {PAGE_TARGET_MS:.0f} ms)"
            )
            moves = ", ".join(
                f"{name} {first:.0f} ms (+{after:.0f})"
                for name, (first, after) in figures["frame_ms"].items()
            )
            print(f"    frame view repaint (+ deferred work 0.2 s later): {moves}")


if __name__ == "__main__":
    main()
