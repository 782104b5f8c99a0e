"""Injection-recovery on a simulated 2048² frame: time, and how close it comes to the truth.

Run: python benchmarks/bench_assess.py [--size 2048] [--injections 5000] [--rounds 4]
     [--fwhm 3.0] [--seed 0]

Simulates a frame (stars, galaxies, cosmic rays, hot pixels; no trails or bad columns, whose
truth rows are whole lines), detects its objects as the CLI does, then:

* *truth-measured* figures on the frame's own objects: star completeness (isolated,
  unsaturated truth stars of S/N >= 20 that are detected and scored at or above the
  threshold) and artifact rejection (detections that `label_detections` calls a cosmic
  ray or hot pixel, scored below the threshold), i.e. what labels would measure;
* *injection-measured* figures from `rbvet.core.inject.assess.assess_loaded` with
  ``--injections`` fakes in ``--rounds`` rounds, timed (wall and CPU).

Prints both side by side (the issue's target: within 3 points) and the time of each
stage. Nothing asserts.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rbvet.core.classify import score_objects  # noqa: E402
from rbvet.core.detect.detection import detect_objects  # noqa: E402
from rbvet.core.detect.psf import measure_fwhm  # noqa: E402
from rbvet.core.inject.assess import (  # noqa: E402
    STAR_SNR_MIN,
    assess_loaded,
    summarize_injections,
)
from rbvet.core.inject.inject import InjectionSettings, star_snr_ratio  # noqa: E402
from rbvet.core.io.frame import frame_from_array  # noqa: E402
from rbvet.core.jobs import run_job  # noqa: E402
from rbvet.core.model.cache import cached_model  # noqa: E402
from rbvet.core.simulate import label_detections, simulate_frame  # noqa: E402
from rbvet.core.simulate.psf import _Psf  # noqa: E402


def truth_figures(sim, frame, table, scores, threshold):
    """Star completeness and artifact rejection measured from the simulator's truth."""
    from scipy.spatial import cKDTree

    params = sim.params
    psf = _Psf(
        params["psf_model"],
        params["fwhm"],
        np.nan if params["moffat_beta"] is None else params["moffat_beta"],
        params["ellipticity"],
        np.deg2rad(params["psf_angle"]),
    )
    ratio, _ = star_snr_ratio(psf)
    truth = sim.truth
    kind = np.asarray(truth["kind"]).astype(str)
    sources = np.isin(kind, ("star", "galaxy"))
    tx, ty = np.asarray(truth["x"]), np.asarray(truth["y"])
    tree = cKDTree(np.column_stack([tx[sources], ty[sources]]))
    neighbours = tree.query_ball_point(
        np.column_stack([tx, ty]), r=2.0 * sim.fwhm, return_length=True
    )
    stars = (
        (kind == "star")
        & ~np.asarray(truth["saturated"], bool)
        & (np.asarray(truth["peak_sigma"]) * ratio >= STAR_SNR_MIN)
        & (neighbours <= 1)
    )
    dx, dy = np.asarray(table["x"]), np.asarray(table["y"])
    distance, nearest = cKDTree(np.column_stack([dx, dy])).query(
        np.column_stack([tx[stars], ty[stars]])
    )
    found = distance <= max(1.5, 0.5 * sim.fwhm)
    kept = found & (scores[nearest] >= threshold)
    label, detected_kind = label_detections(sim, dx, dy)
    artifacts = (label == 0) & np.isin(detected_kind, ("cosmic_ray", "hot_pixel"))
    scored = np.isfinite(scores)
    rejected = artifacts & scored & (scores < threshold)
    by_kind = {
        name: float(np.mean(scores[(detected_kind == name) & artifacts & scored] < threshold))
        for name in ("cosmic_ray", "hot_pixel")
        if np.any((detected_kind == name) & artifacts & scored)
    }
    return {
        "star_completeness": float(kept.mean()) if stars.any() else float("nan"),
        "stars": int(stars.sum()),
        "artifact_rejection": float(rejected.sum() / max((artifacts & scored).sum(), 1)),
        "artifacts": int((artifacts & scored).sum()),
        "by_kind": by_kind,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--injections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--fwhm", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    sim = simulate_frame(
        (args.size, args.size),
        fwhm=args.fwhm,
        rng=args.seed,
        n_satellites=0,
        n_bad_columns=0,
        real_density=500.0,
        cosmic_ray_density=100.0,
        hot_pixel_density=30.0,
    )
    seconds = time.perf_counter() - started
    print(f"simulated {args.size}² frame, FWHM {sim.fwhm:.2f} px: {seconds:.1f} s")
    frame = frame_from_array(sim.image)
    started = time.perf_counter()
    table = detect_objects(frame)
    fwhm = measure_fwhm(frame, table["x"], table["y"], table=table).fwhm
    print(
        f"detected {len(table)} objects, FWHM {fwhm:.2f} px: {time.perf_counter() - started:.1f} s"
    )
    model = cached_model()
    threshold = model.threshold
    started = time.perf_counter()
    scores, _ = run_job(score_objects(frame, table["x"], table["y"], model, fwhm))
    print(f"scored them: {time.perf_counter() - started:.1f} s")
    truth = truth_figures(sim, frame, table, scores, threshold)

    stages, last = [], [time.perf_counter(), "start"]

    def report(progress):
        """Time since the last report goes to the step that report announced."""
        now = time.perf_counter()
        stages.append((last[1], now - last[0]))
        last[0], last[1] = now, progress.message

    settings = InjectionSettings(injections=args.injections, rounds=args.rounds, seed=args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    assessment = run_job(assess_loaded(frame, table, fwhm, model, settings=settings), report)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    summary = assessment.summary
    counts = summary["counts"]
    per_stage = {}
    for message, seconds in stages:
        step = message.split(":")[-1].strip()
        key = "painting" if step.startswith("round") else step
        per_stage[key] = per_stage.get(key, 0.0) + seconds
    print(
        f"\nassessed with {counts['placed']} of {counts['requested']} injections "
        f"({counts['placed_by_round']} per round): {wall:.1f} s wall, {cpu:.1f} s CPU "
        f"({summary['psf']['psf_note']})"
    )
    print("  time after each step: " + ", ".join(f"{k} {v:.1f} s" for k, v in per_stage.items()))
    print(f"\nthreshold {threshold:.2f}            truth-measured   injection-measured")
    print(
        f"  star completeness (S/N>=20)  {100 * truth['star_completeness']:6.1f} % "
        f"({truth['stars']:4d})  {100 * summary['star_completeness']:6.1f} % "
        f"({counts['stars_bright']})"
    )
    print(
        f"  artifact rejection           {100 * truth['artifact_rejection']:6.1f} % "
        f"({truth['artifacts']:4d})  {100 * summary['artifact_rejection']:6.1f} % "
        f"({counts['artifacts_detected']})"
    )
    present = list(truth["by_kind"])
    truth_kinds = assessment.truth[np.isin(assessment.truth["kind"], present)]
    alike = summarize_injections(truth_kinds, threshold)["artifact_rejection"]
    print(f"    of the kinds in the frame                        {100 * alike:6.1f} %")
    for name, value in truth["by_kind"].items():
        injected = summary["artifact_rejection_by_kind"].get(name)
        shown = "n/a" if injected is None else f"{100 * injected:6.1f} %"
        print(f"    {name:<26s} {100 * value:6.1f} %         {shown}")
    for name in ("satellite", "bad_column"):
        if name in summary["artifact_rejection_by_kind"]:
            value = summary["artifact_rejection_by_kind"][name]
            print(f"    {name:<26s}    (none)        {100 * value:6.1f} %")


if __name__ == "__main__":
    main()
