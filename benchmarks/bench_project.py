"""A vetting project of many frames, offscreen: first frame shown, responsiveness, memory.

Run: python benchmarks/bench_project.py [--frames 20] [--objects 2000] [--size 1024]
     [--keep 2] [--detect] [--profile] [--against CHECKOUT]

One simulated field (stars, galaxies, artifacts) is written as ``--frames`` exposures, each
shifted by a few pixels with its own noise and a TAN WCS, with a catalog of ``--objects``
positions (``--detect``: no catalogs, objects detected). The window opens them all as a
project and scores them in the background. Printed:

- time to the first frame shown (the ``classified`` signal) and to all frames scored;
- the longest gap between two turns of the event loop while scoring (a 10 ms timer): the
  window's responsiveness; and the most CPU time the GUI thread itself spent between two
  turns (on a busy machine a gap is also waiting for a core, or for the GIL that a worker
  holds in a C call: this part is what the window's own code costs);
- resident memory (RSS) after the first frame and after all, and the peak;
- going to the next frame (in memory) and to a frame whose data were dropped (rebuilt);
- an epoch blink switch in the frame view (target <= 50 ms).

``--profile`` samples the GUI thread's Python stack every few milliseconds (a sampler
thread) and prints, for the long gaps, where the GUI thread was: the innermost rbvet (or
pyqtgraph) functions seen. A gap in which the sampler itself got few samples was spent
waiting: for a core (a busy machine) or for the GIL that another thread held in a C call.

``--against CHECKOUT`` first runs the same measurement, on the same frames, with the rbvet
package of another checkout (e.g. the main branch before a change), in a child process, then
with this one: before and after under the same load of the machine (printed with each).

Nothing here asserts: the machine may be busy. Targets are printed beside the figures.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

BLINK_TARGET_MS = 50.0
GAP_TARGET_MS = 200.0
PIXEL_SCALE_DEG = 0.4 / 3600.0


def rss_mb():
    """Resident memory of this process now (MB), from /proc."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StackSampler(threading.Thread):
    """Samples the GUI thread's Python stack every ``interval`` seconds (a daemon thread).

    ``samples`` holds (time, where): ``where`` is the innermost frames of rbvet,
    pyqtgraph or this script, as "file:function" joined by " < " (inner first).
    """

    def __init__(self, main_ident, interval=0.004):
        super().__init__(daemon=True)
        self.main_ident = main_ident
        self.interval = interval
        self.samples = []
        self.running = True

    def run(self):
        while self.running:
            time.sleep(self.interval)
            frame = sys._current_frames().get(self.main_ident)
            where = []
            while frame is not None and len(where) < 4:
                path = frame.f_code.co_filename
                if "rbvet" in path or "pyqtgraph" in path:
                    where.append(f"{Path(path).stem}:{frame.f_code.co_name}")
                frame = frame.f_back
            self.samples.append((time.perf_counter(), " < ".join(where) or "(event loop)"))

    def during(self, start, stop):
        """(number of samples, Counter of where) between two perf_counter times."""
        seen = [where for t, where in self.samples if start <= t <= stop]
        return len(seen), Counter(seen)


def write_project(folder, frames, objects, size, detect, seed=3):
    """``frames`` shifted exposures of one simulated field; returns the list file."""
    from rbvet.core.simulate.frame import simulate_frame

    margin = 8
    canvas = simulate_frame(
        (size + 2 * margin, size + 2 * margin),
        fwhm=3.0,
        rng=seed,
        n_stars=int(objects * 0.8),
        n_galaxies=int(objects * 0.1),
    )
    rng = np.random.default_rng(seed)
    truth = canvas.truth
    lines = []
    for k in range(frames):
        dx, dy = (int(v) for v in rng.integers(-margin, margin + 1, 2))
        rows = slice(margin + dy, margin + dy + size)
        cols = slice(margin + dx, margin + dx + size)
        noise = rng.normal(0, 1, (size, size)) * canvas.noise[rows, cols]  # its own noise
        image = canvas.image[rows, cols] + noise
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0, 2.0]
        wcs.wcs.cdelt = [-PIXEL_SCALE_DEG, PIXEL_SCALE_DEG]
        wcs.wcs.crpix = [size / 2 + 0.5 - dx, size / 2 + 0.5 - dy]
        path = Path(folder) / f"exposure_{k + 1:02d}.fits"
        fits.PrimaryHDU(image.astype(np.float32), header=wcs.to_header()).writeto(path)
        x = np.asarray(truth["x"]) - margin - dx
        y = np.asarray(truth["y"]) - margin - dy
        inside = (x > 2) & (x < size - 3) & (y > 2) & (y < size - 3)
        extra = max(0, objects - int(inside.sum()))  # pad with random positions (sky, hits)
        x = np.concatenate([x[inside], rng.uniform(3, size - 4, extra)])[:objects]
        y = np.concatenate([y[inside], rng.uniform(3, size - 4, extra)])[:objects]
        catalog = path.with_suffix(".ecsv")
        Table({"x": x, "y": y}).write(catalog)
        lines.append(path.name if detect else f"{path.name} {catalog.name}")
    listing = Path(folder) / "frames.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def load_text():
    """The machine's load averages (1, 5, 15 min) and cores, as one phrase."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--keep", type=int, default=2, help="neighbours kept in memory")
    parser.add_argument("--detect", action="store_true", help="detect instead of catalogs")
    parser.add_argument(
        "--profile", action="store_true", help="where the GUI thread was in long gaps"
    )
    parser.add_argument(
        "--against", metavar="CHECKOUT", help="measure another checkout's rbvet first"
    )
    parser.add_argument("--rbvet", help=argparse.SUPPRESS)  # the checkout to import from
    parser.add_argument("--folder", help=argparse.SUPPRESS)  # frames already written
    args = parser.parse_args(argv)
    sys.path.insert(0, args.rbvet or str(Path(__file__).resolve().parents[1]))

    if args.folder:
        folder, listing = args.folder, Path(args.folder) / "frames.txt"
    else:
        folder = tempfile.mkdtemp(prefix="rbvet-bench-project-")
        started = time.perf_counter()
        listing = write_project(folder, args.frames, args.objects, args.size, args.detect)
        print(
            f"wrote {args.frames} frames of {args.size}x{args.size} px, {args.objects} "
            f"objects each, in {time.perf_counter() - started:.1f} s ({folder})"
        )
    if args.against:
        child = [sys.executable, __file__, "--folder", folder, "--rbvet", args.against]
        child += ["--keep", str(args.keep)] + (["--profile"] if args.profile else [])
        print(f"\n== before: rbvet of {args.against} ==", flush=True)
        subprocess.run(child, check=False)
        print(f"\n== after: rbvet of {Path(__file__).resolve().parents[1]} ==", flush=True)
    try:
        measure(args, folder, listing)
    finally:
        if not args.folder:  # frames written by this run (~100 MB)
            shutil.rmtree(folder, ignore_errors=True)


def measure(args, folder, listing):
    """Open the project in a window and print the figures (see the module docstring)."""
    print(f"rbvet from {Path(__import__('rbvet').__file__).parent}; {load_text()}", flush=True)

    from PyQt6.QtCore import QElapsedTimer, QSettings, QTimer
    from PyQt6.QtWidgets import QApplication

    from rbvet.gui.app import apply_theme
    from rbvet.gui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    apply_theme(app)
    window = MainWindow(
        settings=QSettings(os.devnull, QSettings.Format.IniFormat),
        label_store_path=Path(folder) / "labels.sqlite",
    )
    window.resize(1600, 1000)
    window.show()
    app.processEvents()
    controller = window.project
    controller.project.keep_neighbours = args.keep
    baseline = rss_mb()

    sampler = None
    if args.profile:
        sampler = StackSampler(threading.get_ident())
        sampler.start()
    gaps = {"max": 0.0, "last": None, "long": [], "doing": "", "cpu": None, "busy": 0.0}
    controller.progressed.connect(lambda message, *_: gaps.__setitem__("doing", message))
    clock = QElapsedTimer()
    clock.start()

    def tick():
        now = clock.elapsed()
        cpu = time.thread_time()  # the GUI thread's own CPU time
        if gaps["cpu"] is not None:
            gaps["busy"] = max(gaps["busy"], 1000 * (cpu - gaps["cpu"]))
        gaps["cpu"] = cpu
        if gaps["last"] is not None:
            gap = now - gaps["last"]
            gaps["max"] = max(gaps["max"], gap)
            if gap > GAP_TARGET_MS:
                gaps["long"].append((gap, gaps["doing"], time.perf_counter()))
        gaps["last"] = now

    ticker = QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(tick)
    marks = {}

    def first_shown():
        if "first" not in marks:
            marks["first"] = time.perf_counter() - marks["open"]
            marks["rss_first"] = rss_mb()

    window.classified.connect(first_shown)
    controller.idle.connect(app.quit)
    ticker.start()

    def open_project():
        marks["open"] = time.perf_counter()
        controller.open_paths([], listing)  # in the event loop: its own stall is counted

    QTimer.singleShot(100, open_project)
    app.exec()
    ticker.stop()
    marks["all"] = time.perf_counter() - marks["open"]
    project = controller.project
    scored, objects, _, _ = project.totals()
    print(f"first frame shown after  {marks.get('first', float('nan')):7.2f} s")
    print(f"all {scored} frames scored after {marks['all']:7.2f} s ({objects} objects)")
    print(f"longest event-loop gap   {gaps['max']:7.0f} ms   (target <= {GAP_TARGET_MS:.0f})")
    print(
        f"longest GUI-thread work     {gaps['busy']:7.0f} ms CPU between two turns (the rest"
        " of a gap: waiting for a core or the GIL)"
    )
    print(f"gaps over {GAP_TARGET_MS:.0f} ms: {len(gaps['long'])}")
    for gap, doing, ended in sorted(gaps["long"], reverse=True)[:5]:
        print(f"    {gap:6.0f} ms after: {doing}")
        if sampler is not None:
            count, where = sampler.during(ended - gap / 1000, ended)
            expected = gap / 1000 / sampler.interval
            print(f"        {count} samples of ~{expected:.0f} (fewer: waiting for a core or GIL)")
            for place, n in where.most_common(4):
                print(f"        {n:4d}  {place}")
    if sampler is not None:
        sampler.running = False
    print(
        f"memory: {baseline:.0f} MB before, {marks.get('rss_first', 0):.0f} MB at the first frame,"
        f" {rss_mb():.0f} MB with all scored (peak {peak_rss_mb():.0f} MB); "
        f"data kept for {len(project.in_memory())} of {len(project)} frames"
    )

    # Next frame, kept in memory: the time to show it.
    started = time.perf_counter()
    controller.next_frame()
    app.processEvents()
    print(f"next frame (in memory)   {1000 * (time.perf_counter() - started):7.0f} ms")
    # A frame far away: its data were dropped and are rebuilt (scored again).
    far = len(project) - 1
    kept = "in memory" if project.data(far) is not None else "dropped, rebuilt"
    done = {}
    window.classified.connect(lambda: done.setdefault("t", time.perf_counter()))
    started = time.perf_counter()
    controller.go_to(far)
    while "t" not in done:
        app.processEvents()
        time.sleep(0.005)
    print(f"frame {far + 1} ({kept}) {done['t'] - started:7.2f} s")

    # Blink: stamps of every epoch made at the selection, then one switch per key.
    strip = window.epochs
    cut_done = {}
    if hasattr(strip, "stampsReady"):  # cut in a job
        strip.stampsReady.connect(lambda: cut_done.setdefault("t", time.perf_counter()))
    window.state.select(int(np.nanargmax(window.state.data.scores)))
    while hasattr(strip, "stampsReady") and strip.controller.epoch_job is not None:
        app.processEvents()  # the selection's own cut
    cut_done.clear()
    started = time.perf_counter()
    strip.refresh()  # again, timed (the selection may have been made before)
    while hasattr(strip, "stampsReady") and "t" not in cut_done:
        app.processEvents()
        time.sleep(0.002)
    cut = cut_done.get("t", time.perf_counter()) - started
    switches = []
    for _ in range(3 * len(window.epochs.stamps)):
        started = time.perf_counter()
        window.epochs.blink()
        app.processEvents()
        switches.append(1000 * (time.perf_counter() - started))
    print(
        f"epoch stamps of {len(window.epochs.stamps)} exposures cut in {1000 * cut:.0f} ms"
        f" ({'in a job' if cut_done else 'on the GUI thread'}); "
        f"blink switch median {np.median(switches):.1f} ms, max {max(switches):.1f} ms "
        f"(target <= {BLINK_TARGET_MS:.0f})"
    )
    print(f"{load_text()}", flush=True)
    window.close()


if __name__ == "__main__":
    main()
