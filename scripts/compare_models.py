"""Compare real-bogus models on the same held-out simulated frames and on the real test frames.

``python scripts/compare_models.py OLD.keras NEW.keras [--frames 40] [--seed S] [--json OUT]
[--simulators new old optics] [--cache DIR] [--real]``

``--cache DIR`` keeps each frame's detections and labels, so a later run (a model that was
still training) scores the very same objects without simulating them again.

Every model scores the same detections: fresh-seed simulated frames, detected and labelled
as training does (`rbvet.core.learn.train.training_set_from_frame`), but kept with their
positions and the truth behind them, so that beyond `rbvet evaluate`'s figures (AUC per
FWHM bin, called real per kind) this reports what issue 16 asks of a default model:

* star recall and artifact rejection at the threshold;
* recall of stars with another star or galaxy (of peak >= 3 sigma) within 2 FWHM;
* saturated stars called real *or* flagged with the reason 'saturated';

once on frames of the issue-16 simulator (chains and groups, hits on stars, bright
saturated stars, edge bands: "new simulator"), once with those options off ("old
simulator": the frames the first default model was trained with; the same pixels, only
bleed pieces, which that simulator labelled as their star, are now labelled bogus), and
once with the optics and sky options drawn as well ("optics simulator": tracking, coma,
diffraction spikes, short trails, nebulosity, fringing; `rbvet train --optics`).
``--simulators`` picks some of the three. ``--real`` adds the hand-checked objects of
``tests/data/real`` (stars called real, cosmic-ray hits rejected).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rbvet.core.simulate.optics import OPTICS_DRAWN

OLD_SIMULATOR = dict(
    group_fraction=0.0, cosmic_ray_on_star_fraction=0.0, n_edge_bands=0, bright_star_fraction=0.0
)
"""Simulator options that turn off everything added after the shipped model was trained."""
SIMULATORS = {
    "new": {},
    "old": OLD_SIMULATOR,
    "optics": OPTICS_DRAWN,
}
"""Simulator options of the three sets of frames (see the module docstring)."""
NEIGHBOUR_FWHM = 2.0
NEIGHBOUR_MIN_SIGMA = 3.0


def frame_objects(task):
    """Detections of one simulated frame with labels, kinds and the truth behind them."""
    from scipy.spatial import cKDTree

    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import estimate_fwhm
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.simulate import SOURCE_KINDS, label_detections, simulate_frame

    index, frame_seed, shape, options = task
    rng = np.random.default_rng(frame_seed)
    detect_threshold = float(rng.uniform(2.0, 5.0))  # as simulated_training_set draws it
    sim = simulate_frame(shape=shape, rng=rng, **options)
    frame = frame_from_array(sim.image, saturation=sim.params["saturation"])
    frame.ensure_background()
    detections = detect_objects(frame, thresh=detect_threshold)
    x = np.asarray(detections["x"], np.float64)
    y = np.asarray(detections["y"], np.float64)
    labels, kinds = label_detections(sim, x, y)
    fwhm = estimate_fwhm(frame, x, y, table=detections)

    truth = sim.truth
    is_source = np.isin(np.asarray(truth["kind"], str), SOURCE_KINDS)
    tx, ty = np.asarray(truth["x"])[is_source], np.asarray(truth["y"])[is_source]
    visible = np.asarray(truth["peak_sigma"])[is_source] >= NEIGHBOUR_MIN_SIGMA
    saturated = np.asarray(truth["saturated"])[is_source]
    crowded = np.zeros(x.size, bool)
    on_saturated = np.zeros(x.size, bool)
    if tx.size and x.size:
        tree = cKDTree(np.column_stack([tx, ty]))
        distance, nearest = tree.query(np.column_stack([x, y]))
        matched = distance <= max(1.0, 0.5 * sim.fwhm) + 1.0
        pairs = tree.query_pairs(NEIGHBOUR_FWHM * sim.fwhm, output_type="ndarray")
        has_neighbour = np.zeros(tx.size, bool)
        for a, b in ((0, 1), (1, 0)):
            has_neighbour[pairs[:, a][visible[pairs[:, b]]]] = True
        crowded = matched & has_neighbour[nearest]
        on_saturated = matched & saturated[nearest]
    return {
        "frame": frame,
        "x": x,
        "y": y,
        "fwhm_estimate": fwhm,
        "labels": labels,
        "kinds": kinds,
        "crowded": crowded,
        "saturated": on_saturated,
        "fwhm": np.full(x.size, sim.fwhm),
        "index": index,
    }


def cached_frame_objects(task, cache=None):
    """`frame_objects`, kept in (and read back from) a pickle under ``cache`` if given.

    The frames, detections and labels do not depend on the models, so a cache lets a
    comparison simulate once and score again later (a new model, after training).
    """
    import hashlib
    import pickle

    if cache is None:
        return frame_objects(task)
    index, frame_seed, shape, options = task
    key = repr((frame_seed.entropy, frame_seed.spawn_key, tuple(shape), sorted(options.items())))
    path = Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    part = frame_objects(task)
    Path(cache).mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(part))
    return part


def score_frames(models, n_frames, seed, shape, options, cache=None):
    """Per-object arrays over ``n_frames`` frames, with every model's scores and reasons."""
    from rbvet.core.classify import score_objects
    from rbvet.core.jobs import run_job

    seeds = np.random.SeedSequence(seed).spawn(n_frames)
    columns = {}
    for index, frame_seed in enumerate(seeds):
        part = cached_frame_objects((index, frame_seed, shape, options), cache)
        keep = part["labels"] >= 0
        for name, model in models.items():
            scores, reasons = run_job(
                score_objects(
                    part["frame"],
                    part["x"][keep],
                    part["y"][keep],
                    model,
                    part["fwhm_estimate"],
                )
            )
            columns.setdefault(f"score:{name}", []).append(scores)
            columns.setdefault(f"reason:{name}", []).append(reasons)
        for key in ("labels", "kinds", "crowded", "saturated", "fwhm"):
            columns.setdefault(key, []).append(part[key][keep])
    return {key: np.concatenate(values) for key, values in columns.items()}


def simulated_metrics(objects, name, threshold=0.5):
    """The figures of one model on the objects of `score_frames`."""
    from rbvet.core.learn.metrics import summarize
    from rbvet.core.simulate import ARTIFACT_KINDS

    scores, reasons = objects[f"score:{name}"], objects[f"reason:{name}"]
    labels, kinds = objects["labels"], objects["kinds"]
    scored = np.isfinite(scores)
    summary = summarize(scores, labels, threshold, kinds=kinds, fwhm=objects["fwhm"])
    real = scored & (scores >= threshold)

    def rate(selected, called):
        selected = selected & scored
        return float(np.mean(called[selected])) if selected.any() else float("nan")

    stars = (kinds == "star") & (labels == 1)
    artifacts = (labels == 0) & np.isin(kinds, [k for k in ARTIFACT_KINDS if k != "noise"])
    saturated = stars & objects["saturated"]
    return {
        "objects": int(scored.sum()),
        "auc": summary["auc"],
        "auc_by_fwhm": summary["auc_by_fwhm"],
        "star_recall": rate(stars, real),
        "artifact_rejection": rate(artifacts, ~real),
        "bogus_rejection": rate(labels == 0, ~real),
        "crowded_stars": int((stars & objects["crowded"] & scored).sum()),
        "crowded_star_recall": rate(stars & objects["crowded"], real),
        "saturated_stars": int((saturated & scored).sum()),
        "saturated_real_or_flagged": rate(saturated, real | (reasons == "saturated")),
        "saturated_called_real": rate(saturated, real),
        "called_real_by_kind": summary["called_real_by_kind"],
        "summary": summary,  # every figure of `rbvet evaluate`, as a model card holds them
    }


REAL_FRAMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"


def real_frame_metrics(models, threshold=0.5):
    """Hand-checked stars called real and hits rejected on ``tests/data/real`` frames."""
    sys.path.insert(0, str(REAL_FRAMES.parent.parent))
    from test_detect import SAAO, SAAO_HITS, SAAO_STARS, UKIDSS, UKIDSS_STARS

    from rbvet.core.classify import score_objects
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import measure_fwhm
    from rbvet.core.io.frame import read_frame
    from rbvet.core.jobs import run_job

    results = {}
    for path, groups in (
        (SAAO, {"stars": SAAO_STARS, "hits": SAAO_HITS}),
        (UKIDSS, {"stars": UKIDSS_STARS}),
    ):
        frame = read_frame(path)
        table = detect_objects(frame)
        dx, dy = np.asarray(table["x"]), np.asarray(table["y"])
        fwhm = measure_fwhm(frame, dx, dy, table=table).fwhm
        entry = {"fwhm": float(fwhm), "objects": int(len(table))}
        for name, model in models.items():
            all_scores, _ = run_job(score_objects(frame, dx, dy, model, fwhm))
            figures = {"detections_called_real": int(np.sum(all_scores >= threshold))}
            for group, points in groups.items():
                px, py = np.asarray(points, float).T
                nearest = np.argmin(np.hypot(dx[None] - px[:, None], dy[None] - py[:, None]), 1)
                scores = all_scores[nearest]
                figures[group] = [round(float(value), 3) for value in scores]
                wanted = scores >= threshold if group == "stars" else scores < threshold
                figures[f"{group}_right"] = f"{int(wanted.sum())}/{len(points)}"
            entry[name] = figures
        results[path.name] = entry
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model files (.keras or .onnx)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9_090_901, help="frames' seed [9090901]")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--real", action="store_true", help="also the tests/data/real frames")
    parser.add_argument("--json", help="write every figure as JSON")
    parser.add_argument(
        "--cache", help="keep the simulated frames and detections here, to score again later"
    )
    parser.add_argument(
        "--simulators",
        nargs="+",
        choices=sorted(SIMULATORS),
        default=list(SIMULATORS),
        help="which simulators' frames [all three]",
    )
    args = parser.parse_args(argv)

    from rbvet.core.model import load_model

    names = [
        Path(path).name if i == 0 else f"{Path(path).name}#{i}"
        for i, path in enumerate(args.models)
    ]
    names = list(dict.fromkeys(names))
    models = {name: load_model(path) for name, path in zip(names, args.models, strict=True)}
    shape = (args.size, args.size)
    report = {}
    for simulator in args.simulators:
        options = SIMULATORS[simulator]
        started = time.perf_counter()
        objects = score_frames(models, args.frames, args.seed, shape, options, args.cache)
        report[f"{simulator} simulator"] = {
            name: simulated_metrics(objects, name) for name in models
        }
        print(
            f"{simulator} simulator: {args.frames} frames of {args.size}^2, seed {args.seed} "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    if args.real:
        report["real frames"] = real_frame_metrics(models)
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
