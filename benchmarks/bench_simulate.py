"""Simulated training frames per second, this checkout against another, in one run.

Run: python benchmarks/bench_simulate.py [--frames 8] [--size 1024] [--repeats 2]
     [--baseline DIR]

Each measurement runs in a fresh Python process (so each pays its own imports and pool
start-up, as a user does), alternating between this checkout and ``--baseline`` (a
checkout of an older commit, e.g. ``git archive <commit> | tar -x -C DIR``), and prints
for each:

- frames/s of `simulated_training_set` with a process per core, start-up included, and
  the seconds until its first frame is ready (the pool's start-up and one frame);
- frames/s in one process, imports done before the clock starts;
- CPU seconds per frame of each stage (simulate, read the array, background, detect,
  label, FWHM, cut, preprocess), measured with ``time.process_time`` in one process;

and how many times faster this checkout is. The best of ``--repeats`` runs is kept, as
the machine may be busy.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_MEASURE = r"""
import json, sys, time, warnings
import numpy as np
mode, n_frames, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from rbvet.core.jobs import cpu_count, run_job
from rbvet.core.learn.train import simulated_training_set
if mode == "parallel":
    started, first = time.perf_counter(), []
    def report(progress):
        if progress.done >= 1 and not first:
            first.append(time.perf_counter() - started)
    run_job(simulated_training_set(n_frames=n_frames, shape=(size, size), seed=7), report)
    print(json.dumps({"rate": n_frames / (time.perf_counter() - started),
                      "first": first[0], "workers": cpu_count()}))
    sys.exit()
from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
from rbvet.core.cutouts.stamps import cut_stamps
from rbvet.core.detect.detection import detect_objects
from rbvet.core.detect.psf import estimate_fwhm
from rbvet.core.errors import RbvetWarning
from rbvet.core.io.frame import frame_from_array
from rbvet.core.simulate import label_detections, simulate_frame
warnings.simplefilter("ignore", RbvetWarning)
stages = {}
def timed(name, function, *args, **kwargs):
    started = time.process_time()
    value = function(*args, **kwargs)
    stages[name] = stages.get(name, 0.0) + time.process_time() - started
    return value
params = PreprocessParams()
wall = time.perf_counter()
for frame_seed in np.random.SeedSequence(7).spawn(n_frames):  # as the set draws them
    rng = np.random.default_rng(frame_seed)
    threshold = float(rng.uniform(2.0, 5.0))
    sim = timed("simulate", simulate_frame, shape=(size, size), rng=rng)
    frame = timed("read array", frame_from_array, sim.image)
    timed("background", frame.ensure_background)
    found = timed("detect", detect_objects, frame, thresh=threshold)
    x, y = np.asarray(found["x"], float), np.asarray(found["y"], float)
    labels, _ = timed("label", label_detections, sim, x, y)
    fwhm = timed("FWHM", estimate_fwhm, frame, x, y, table=found)
    stamps = timed("cut", cut_stamps, frame, x, y, plan_rescale(fwhm, params))
    timed("preprocess", stamps.inputs, params, (labels >= 0) & stamps.scorable)
rate = n_frames / (time.perf_counter() - wall)
print(json.dumps({"rate": rate, "stages": {k: v / n_frames for k, v in stages.items()}}))
"""


def measure(checkout, mode, frames, size):
    """One measurement in a fresh process importing rbvet from ``checkout``."""
    env = dict(os.environ, PYTHONPATH=str(checkout), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, mode, str(frames), str(size)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(checkouts, mode, frames, size, repeats):
    """Per checkout, the run with the highest rate, alternating checkouts each repeat."""
    results = {name: None for name in checkouts}
    for _ in range(repeats):
        for name, checkout in checkouts.items():
            result = measure(checkout, mode, frames, size)
            if results[name] is None or result["rate"] > results[name]["rate"]:
                results[name] = result
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="checkout of the commit to compare with")
    args = parser.parse_args()
    checkouts = {"this": HERE.parent}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    names = list(checkouts)

    def line(label, values, unit):
        """A row of figures; with a baseline, how many times faster this checkout is."""
        cells = "".join(f"{value:>12.3f}" for value in values)
        tail = ""
        if len(values) == 2:
            faster = values[0] / values[1] if unit == "frames/s" else values[1] / values[0]
            tail = f"{faster:>9.2f} x faster"
        print(f"  {label:<28}{cells} {unit:<10}{tail}")

    print(
        f"{args.frames} simulated frames of {args.size}^2 (simulate, detect, label, cut, "
        f"preprocess); best of {args.repeats}"
    )
    print(f"  {'':<28}" + "".join(f"{name:>12}" for name in names))
    parallel = best(checkouts, "parallel", args.frames, args.size, args.repeats)
    serial = best(checkouts, "serial", args.frames, args.size, args.repeats)
    workers = parallel[names[0]]["workers"]
    line(f"workers {workers}, start-up in", [parallel[n]["rate"] for n in names], "frames/s")
    line("  first frame after", [parallel[n]["first"] for n in names], "s")
    line("one process", [serial[n]["rate"] for n in names], "frames/s")
    print("  CPU seconds per frame:")
    for stage in serial[names[0]]["stages"]:
        line(f"  {stage}", [serial[n]["stages"][stage] for n in names], "s")
    line(
        "  total",
        [sum(serial[n]["stages"].values()) for n in names],
        "s",
    )


if __name__ == "__main__":
    main()
