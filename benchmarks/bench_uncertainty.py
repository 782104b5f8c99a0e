"""Uncertainty (MC dropout, BALD) against scoring, on the same objects in one run.

Run: python benchmarks/bench_uncertainty.py [--objects 20000] [--samples 100]

Times, best of ``--repeats`` (taking turns): scoring the frame's objects
(`score_objects`), the whole uncertainty job (features from one pass of the network, then
the dropout samples in numpy: `compute_uncertainty`), and the samples alone
(`mc_dropout` on the features). Target of issue 19: uncertainty <= 2 x scoring.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

from bench_classify import make_frame  # noqa: E402

from rbvet.core.classify import score_objects  # noqa: E402
from rbvet.core.io.frame import frame_from_array  # noqa: E402
from rbvet.core.jobs import run_job  # noqa: E402
from rbvet.core.learn.uncertainty import compute_uncertainty, mc_dropout  # noqa: E402
from rbvet.core.model import load_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    fwhm = 3.0
    image, table = make_frame(args.size, fwhm, args.objects, seed=1)
    frame = frame_from_array(image).ensure_background()
    x, y = table["x"], table["y"]
    model = load_model()
    run_job(score_objects(frame, x[:300], y[:300], model, fwhm))  # warm up the engine
    features = run_job(compute_uncertainty(frame, x, y, model, fwhm)).features

    def scoring():
        run_job(score_objects(frame, x, y, model, fwhm))

    def uncertainty():
        run_job(compute_uncertainty(frame, x, y, model, fwhm, n_samples=args.samples))

    def samples_only():
        mc_dropout(features, model.head, args.samples)

    steps = {"scoring": scoring, "uncertainty job": uncertainty, "dropout samples": samples_only}
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in times.items()}
    print(
        f"{len(x)} objects, {args.samples} dropout samples, model {model.name} "
        f"({model.engine_name}); best of {args.repeats} runs"
    )
    for name, seconds in best.items():
        print(f"  {name:16s} {seconds:7.3f} s")
    ratio = best["uncertainty job"] / best["scoring"]
    print(f"uncertainty / scoring = {ratio:.2f} (target <= 2)")
    print(f"dropout samples / scoring = {best['dropout samples'] / best['scoring']:.3f}")


if __name__ == "__main__":
    main()
