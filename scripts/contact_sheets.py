"""Contact sheets of the real test frames: every detected object as the CNN sees it.

Usage::

    python scripts/contact_sheets.py [--out docs/images]

For each real frame in ``tests/data/real`` (see its README for where they come from), the
objects are detected and scored as ``rbvet classify`` does, and one PNG shows every object's
tile, lowest score first, captioned with its score and what the hand-checked lists of
``tests/test_detect.py`` say it is (star, hit, or not on the lists). It prints the detection
recall of the listed stars and hits and the classification mistakes at the model's
threshold. Needs matplotlib (``pip install 'rbvet[plots]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from rbvet.core.classify import open_frame_and_catalog, score_objects
from rbvet.core.cutouts.atlas import render_tiles
from rbvet.core.jobs import run_job
from rbvet.core.model import load_model

ROOT = Path(__file__).resolve().parent.parent
MATCH_RADIUS = 4.0


def hand_checked():
    """{frame path: (stars, hits)} from tests/test_detect.py, the one place they are kept."""
    spec = importlib.util.spec_from_file_location("test_detect", ROOT / "tests" / "test_detect.py")
    lists = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lists)
    return {
        lists.SAAO: (lists.SAAO_STARS, lists.SAAO_HITS),
        lists.UKIDSS: (lists.UKIDSS_STARS, []),
    }


def nearest(table, points):
    """Row of the detection nearest each point (within MATCH_RADIUS), else -1."""
    x, y = np.asarray(table["x"]), np.asarray(table["y"])
    rows = []
    for px, py in points:
        distance = np.hypot(x - px, y - py)
        best = int(np.argmin(distance)) if len(distance) else -1
        rows.append(best if best >= 0 and distance[best] <= MATCH_RADIUS else -1)
    return np.array(rows, int)


def sheet(path, model, stars, hits, out):
    """Score one frame, print its figures and write its contact sheet; returns the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame, table, fwhm = run_job(open_frame_and_catalog(path))
    x, y = np.asarray(table["x"]), np.asarray(table["y"])
    scores, reasons = run_job(score_objects(frame, x, y, model, fwhm))
    threshold = model.threshold
    kind = np.full(len(table), "", object)
    star_rows, hit_rows = nearest(table, stars), nearest(table, hits)
    kind[star_rows[star_rows >= 0]] = "star"
    kind[hit_rows[hit_rows >= 0]] = "hit"
    star_missed = [
        tuple(p)
        for p, row in zip(stars, star_rows, strict=True)
        if row < 0 or scores[row] < threshold
    ]
    hit_kept = [
        tuple(p)
        for p, row in zip(hits, hit_rows, strict=True)
        if row >= 0 and scores[row] >= threshold
    ]
    print(
        f"{path.name}: {len(table)} objects, FWHM {fwhm:.2f} px; stars detected "
        f"{np.count_nonzero(star_rows >= 0)}/{len(stars)}, hits detected "
        f"{np.count_nonzero(hit_rows >= 0)}/{len(hits)}; at {threshold:.2f}: stars called "
        f"bogus {star_missed or 'none'}, hits called real {hit_kept or 'none'}"
    )
    inputs = np.zeros((len(table), model.input_size, model.input_size, 2), np.float32)
    from rbvet.core.classify import iter_model_inputs

    for start, objects in iter_model_inputs(frame, x, y, model, fwhm):
        inputs[start : start + len(objects.inputs)] = objects.inputs
    tiles = render_tiles(inputs)
    order = np.argsort(np.nan_to_num(scores, nan=-1.0), kind="stable")
    columns = 8
    rows = -(-len(order) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 1.25), dpi=80)
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, row in zip(np.ravel(axes), order, strict=False):
        axis.imshow(tiles[row], cmap="gray", vmin=0, vmax=255)
        label = "—" if not np.isfinite(scores[row]) else f"{scores[row]:.2f}"
        colour = "tab:blue" if np.isfinite(scores[row]) and scores[row] >= threshold else "tab:red"
        caption = f"{label} ({x[row]:.0f},{y[row]:.0f}) {kind[row] or reasons[row]}"
        axis.set_title(caption, fontsize=7, color=colour)
    figure.suptitle(
        f"{path.name}: {len(table)} detections, lowest score first "
        f"(blue ≥ {threshold:.2f} real, red bogus; 'star'/'hit': hand-checked)",
        fontsize=10,
    )
    figure.tight_layout()
    target = out / f"contact_{path.stem}.png"
    figure.savefig(target)
    plt.close(figure)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--model", help="model file [the shipped default]")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, (stars, hits) in hand_checked().items():
        print(f"  -> {sheet(path, model, stars, hits, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
