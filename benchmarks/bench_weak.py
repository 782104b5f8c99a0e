"""Precision and recall of weak labels from repeated exposures, on simulated epochs.

Run: python benchmarks/bench_weak.py [--fields 20] [--epochs 4] [--size 512] [--seed 0]

Each field is ``--epochs`` exposures of one sky (`rbvet.core.simulate.simulate_epochs`:
pointing offsets of up to 5 px, a tiny rotation, their own cosmic rays, hot pixels,
trails and noise; every other setting drawn per field as for training), detected and
measured as ``rbvet weak-labels`` does; `rbvet.core.learn.weak.repeat_labels` labels them
with its defaults and the labels are compared with the truth (`label_detections`). Targets:
precision of "real" >= 0.99 and of "single-exposure artifact" >= 0.98; recall is stated.
Detections whose truth is ambiguous (an artifact on a source) are counted apart.
tests/test_weak.py checks a smaller setting.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rbvet.core.learn.weak import measure_on_simulated_epochs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    seeds = range(args.seed, args.seed + args.fields)
    result = measure_on_simulated_epochs(seeds, n_epochs=args.epochs, size=args.size)
    print(
        f"{args.fields} fields x {args.epochs} epochs of {args.size}x{args.size} px: "
        f"{result['detections']} detections, {time.perf_counter() - started:.0f} s"
    )
    for name, target in (("real", 0.99), ("artifact", 0.98), ("reference", 0.99)):
        row = result[name]
        print(
            f"  {name:8s} precision {row['precision']:.4f} (target {target}; "
            f"{row['right']} right, {row['wrong']} wrong, {row['ambiguous']} on ambiguous "
            f"truth)  recall {row['recall']:.3f} of {row['total']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
