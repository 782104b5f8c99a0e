"""Contact sheets of a model's mistakes on simulated frames, kind by kind.

Usage::

    python scripts/miss_sheets.py MODEL [--simulator optics] [--frames 20] [--out PNG]

The frames are those of ``scripts/compare_models.py`` (same seeds, detection and labels);
every detection labelled real but scored below the threshold, or labelled bogus and scored
at or above it, is a miss. It prints the misses per kind (of how many scored) and draws
up to ``--per-kind`` tiles of each kind's misses, as the CNN sees them, with their score
and the frame's FWHM. Needs matplotlib (``pip install 'rbvet[plots]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_models import SIMULATORS, frame_objects  # noqa: E402


def misses(model, n_frames, seed, shape, options):
    """Every scored labelled object's score, label, kind, FWHM and (for misses) input."""
    from rbvet.core.classify import iter_model_inputs, score_objects
    from rbvet.core.jobs import run_job

    found = {"score": [], "label": [], "kind": [], "fwhm": [], "inputs": [], "missed": []}
    for index, frame_seed in enumerate(np.random.SeedSequence(seed).spawn(n_frames)):
        part = frame_objects((index, frame_seed, shape, options))
        keep = part["labels"] >= 0
        x, y = part["x"][keep], part["y"][keep]
        scores, _ = run_job(score_objects(part["frame"], x, y, model, part["fwhm_estimate"]))
        labels = part["labels"][keep]
        called = scores >= model.threshold
        wrong = np.isfinite(scores) & (called != (labels == 1))
        inputs = np.zeros((int(wrong.sum()), model.input_size, model.input_size, 2), np.float32)
        rows = np.flatnonzero(wrong)
        if rows.size:
            for start, objects in iter_model_inputs(
                part["frame"], x[rows], y[rows], model, part["fwhm_estimate"]
            ):
                inputs[start : start + len(objects.inputs)] = objects.inputs
        found["score"].append(scores)
        found["label"].append(labels)
        found["kind"].append(part["kinds"][keep])
        found["fwhm"].append(part["fwhm"][keep])
        found["missed"].append(wrong)
        found["inputs"].append(inputs)
    return {key: np.concatenate(values) for key, values in found.items()}


def draw(found, out, per_kind, title):
    """One PNG: a row block of up to ``per_kind`` missed tiles for each kind with misses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbvet.core.cutouts.atlas import render_tiles

    missed = found["missed"]
    kinds = found["kind"][missed]
    tiles = render_tiles(found["inputs"]) if len(found["inputs"]) else []
    names = sorted(set(kinds.tolist()))
    columns = 8
    blocks = [np.flatnonzero(kinds == name)[:per_kind] for name in names]
    rows = sum(-(-len(block) // columns) for block in blocks) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 1.25), dpi=80)
    axes = np.atleast_2d(axes)
    for axis in axes.ravel():
        axis.axis("off")
    row = 0
    for name, block in zip(names, blocks, strict=True):
        for i, member in enumerate(block):
            axis = axes[row + i // columns, i % columns]
            axis.imshow(tiles[member], cmap="gray", vmin=0, vmax=255)
            score = found["score"][missed][member]
            fwhm = found["fwhm"][missed][member]
            axis.set_title(f"{name} {score:.2f} F{fwhm:.1f}", fontsize=7)
        row += -(-len(block) // columns)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--simulator", choices=sorted(SIMULATORS), default="optics")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=9_090_901, help="frames' seed [9090901]")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--per-kind", type=int, default=24)
    parser.add_argument("--out", type=Path, help="PNG [misses_<simulator>.png]")
    args = parser.parse_args(argv)

    from rbvet.core.model import load_model

    model = load_model(args.model)
    shape = (args.size, args.size)
    found = misses(model, args.frames, args.seed, shape, SIMULATORS[args.simulator])
    scored = np.isfinite(found["score"])
    for name in sorted(set(found["kind"].tolist())):
        members = scored & (found["kind"] == name)
        wrong = int((members & found["missed"]).sum())
        print(f"{name:>12}: {wrong:5d} missed of {int(members.sum()):6d}")
    out = args.out or Path(f"misses_{args.simulator}.png")
    title = (
        f"{Path(args.model).name}: misses at {model.threshold:.2f} on {args.frames} "
        f"'{args.simulator}' frames (kind, score, FWHM px)"
    )
    draw(found, out, args.per_kind, title)
    print(f"  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
