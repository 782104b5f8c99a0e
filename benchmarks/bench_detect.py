"""Detection CPU time over scoring CPU time on an 8k x 8k simulated frame (target <= 1).

Run: python benchmarks/bench_detect.py [--size 8192] [--objects 100000]

Draws the frame of benchmarks/bench_scale.py (sky, noise, Gaussian stars and single-pixel
hits, ~100k objects), estimates its background and noise, then measures in one run, each
with ``time.process_time`` (all threads of this process):

- before: detection in one sep extraction over the whole frame (``tile_size=None``, the
  old path, kept for this comparison);
- after: detection in overlapping tiles (the default);
- the FWHM of the frame, from the detected objects;
- scoring: cutting, preprocessing and scoring every detected object with the default
  model (``rbvet.core.classify.score_objects``).

Prints the objects found by each path, the CPU times and the two ratios. Nothing asserts.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_scale import make_frame  # noqa: E402

from rbvet.core.classify import score_objects  # noqa: E402
from rbvet.core.detect.detection import detect_objects  # noqa: E402
from rbvet.core.detect.psf import measure_fwhm  # noqa: E402
from rbvet.core.io.frame import frame_from_array  # noqa: E402
from rbvet.core.model import load_model  # noqa: E402


def cpu(function, *args, **kwargs):
    """``(result, CPU seconds)`` of one call."""
    started = time.process_time()
    result = function(*args, **kwargs)
    return result, time.process_time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--skip-before", action="store_true", help="only the tiled path")
    args = parser.parse_args()

    image, x, y = make_frame(args.size, args.objects)
    frame = frame_from_array(image)
    del image
    _, background_cpu = cpu(frame.ensure_background)
    print(f"frame {args.size}^2, {args.objects} objects drawn; background {background_cpu:.1f} s")

    before_cpu = np.nan
    if not args.skip_before:
        before, before_cpu = cpu(detect_objects, frame, tile_size=None)
        print(f"before (one extraction): {len(before)} objects, {before_cpu:.1f} s CPU")
        del before
    after, after_cpu = cpu(detect_objects, frame)
    print(f"after (tiles):           {len(after)} objects, {after_cpu:.1f} s CPU")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwhm, fwhm_cpu = cpu(measure_fwhm, frame, after["x"], after["y"], table=after)
    print(f"{fwhm.describe()}: {fwhm_cpu:.1f} s CPU")

    model = load_model()
    _, score_cpu = cpu(score_objects, frame, after["x"], after["y"], model, fwhm.fwhm)
    print(f"scoring {len(after)} objects: {score_cpu:.1f} s CPU")
    print(
        f"\ndetection / scoring CPU: before {before_cpu / score_cpu:.2f}, "
        f"after {after_cpu / score_cpu:.2f} (target <= 1)\n"
        f"(detection + FWHM) / scoring: before {(before_cpu + fwhm_cpu) / score_cpu:.2f}, "
        f"after {(after_cpu + fwhm_cpu) / score_cpu:.2f}\n"
        f"(background + detection + FWHM) / scoring, after: "
        f"{(background_cpu + after_cpu + fwhm_cpu) / score_cpu:.2f}"
    )


if __name__ == "__main__":
    main()
