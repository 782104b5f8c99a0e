"""How well `rbvet review` finds flipped labels: simulate, flip 8 %, import, review.

Simulated frames are written with `rbvet simulate`, their truth labels flipped at random
for a share of the labeled objects, imported with `rbvet label` and reviewed with
`rbvet review --json`. The figure is the share of the flipped labels found in the top
2 x (number flipped) of the list (target: >= 80 %).

    python benchmarks/bench_review.py --frames 8 --size 1024
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np


def flipped_label_recall(
    folder, n_frames=4, size=1024, flip_fraction=0.08, seed=0, top_factor=2, smooth=0.0
):
    """Simulate, flip, import and review in ``folder``; the recall and the counts.

    ``smooth`` > 0 smooths each simulated frame by a Gaussian of that many px (correlated
    noise, as resampling makes): frames unlike any the shipped model was trained on, where
    its own score is a weaker guide to the truth (see scripts/measure_label_next.py).

    Returns
    -------
    dict
        ``labels``, ``flipped``, ``found`` (flipped labels in the top ``top_factor`` x
        flipped) and ``recall``.
    """
    from astropy.table import Table

    from rbvet.cli import main

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    store = folder / "labels.sqlite"
    flipped_keys = set()
    n_labels = 0
    for index in range(n_frames):
        image = folder / f"sim{index:03d}.fits"
        catalog = folder / f"sim{index:03d}.ecsv"
        quiet(
            main, ["simulate", "-o", str(image), "--size", str(size), "--seed", str(seed + index)]
        )
        if smooth > 0:
            smooth_image(image, smooth)
        table = Table.read(catalog)
        truth = np.asarray(table["true_label"], np.int64)
        labeled = np.flatnonzero(truth >= 0)
        flip = labeled[rng.random(len(labeled)) < flip_fraction]
        noisy = truth.copy()
        noisy[flip] = 1 - noisy[flip]
        table["vetted"] = noisy
        table.write(catalog, overwrite=True)
        quiet(
            main,
            [
                "label",
                str(image),
                "--catalog",
                str(catalog),
                "--column",
                "vetted",
                "--labels",
                str(store),
                "--annotator",
                "bench",
            ],
        )
        flipped_keys |= {
            (image.name, round(float(table["x"][i]), 3), round(float(table["y"][i]), 3))
            for i in flip
        }
        n_labels += len(labeled)
    output = folder / "review.json"
    quiet(main, ["review", "--labels", str(store), "--json", str(output)])
    records = json.loads(output.read_text())
    keys = [(r["frame"], round(r["x"], 3), round(r["y"], 3)) for r in records]
    in_store = flipped_keys & set(keys)  # flipped objects that could be labeled (scorable)
    top = set(keys[: top_factor * len(in_store)])
    found = len(in_store & top)
    return {
        "labels": len(records),
        "catalog_labels": n_labels,
        "flipped": len(in_store),
        "found": found,
        "recall": found / max(len(in_store), 1),
        "fallback_recall": _fallback_recall(store, records, keys, in_store, top_factor),
        # the stricter figure: the top 1 x (number flipped), where the review must rank
        # every flipped label above every right one to find them all
        "recall_1x": len(in_store & set(keys[: len(in_store)])) / max(len(in_store), 1),
        "fallback_recall_1x": _fallback_recall(store, records, keys, in_store, 1),
    }


def smooth_image(path, sigma):
    """Smooth a FITS image in place by a Gaussian of ``sigma`` px (its dtype kept)."""
    from astropy.io import fits
    from scipy.ndimage import gaussian_filter

    with fits.open(path, mode="update") as hdus:
        hdu = next(h for h in hdus if h.data is not None and h.data.ndim == 2)
        hdu.data = gaussian_filter(hdu.data, sigma).astype(hdu.data.dtype)


def _fallback_recall(store, records, keys, flipped, top_factor):
    """The same figure for the window's fallback ranking, |label - score|."""
    from rbvet.core.learn.labels import LabelStore
    from rbvet.core.model import load_model
    from rbvet.core.session import suspicion

    model = load_model()
    with LabelStore(store, readonly=True) as opened:
        data = opened.training_data(model.params, with_stamps=False)
    suspicious = suspicion(model.predict(data.inputs), data.labels)
    key_of = {r["object_id"]: key for r, key in zip(records, keys, strict=True)}
    ranked = [key_of[int(i)] for i in data.object_ids[np.argsort(-suspicious, kind="stable")]]
    return len(flipped & set(ranked[: top_factor * len(flipped)])) / max(len(flipped), 1)


def quiet(function, argv):
    """Run ``rbvet`` with ``argv``, its output swallowed; fail loudly on an error."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            status = function(argv)
    except SystemExit as exit:  # argparse
        status = exit.code
    if status != 0:
        raise SystemExit(f"rbvet {' '.join(argv)} failed ({status}): {errors.getvalue()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--flip", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smooth", type=float, default=0.0, help="smooth the frames (px): an unseen domain"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = flipped_label_recall(
            folder, args.frames, args.size, args.flip, args.seed, smooth=args.smooth
        )
    smoothed = f", smoothed by {args.smooth:g} px" if args.smooth > 0 else ""
    print(
        f"{result['labels']} labels ({result['flipped']} flipped) on {args.frames} simulated "
        f"{args.size}x{args.size} frames{smoothed}: top {2 * result['flipped']} of the review "
        f"hold {result['found']} of the flipped labels = {100 * result['recall']:.0f} % "
        f"(|label - score| alone: {100 * result['fallback_recall']:.0f} %); top "
        f"{result['flipped']}: {100 * result['recall_1x']:.0f} % "
        f"(|label - score| alone: {100 * result['fallback_recall_1x']:.0f} %)"
    )


if __name__ == "__main__":
    main()
