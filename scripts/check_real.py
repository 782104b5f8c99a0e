"""Check assessment and adaptation on real labelled frames (issue 18, item 3).

Usage::

    python scripts/check_real.py [--rounds 16] [--injections 2000] [--epochs 3]
                                 [--skip-adapt] [--json OUT.json]

The frames and their labels by eye are in ``tests/data/real`` (its README says where each
frame comes from and how it was labelled); the model never saw them.

1. *Assessment against labels*: for each frame, `rbvet.core.inject.assess.assess_frame`
   measures star completeness (injected stars of S/N >= 20 detected and scored at or
   above the threshold) and artifact rejection (detected injected artifacts scored below
   it) on injections, and `rbvet.core.inject.labelled.label_measured` measures them on
   the labelled objects, same threshold, same S/N (matched filter with the frame's PSF).
   Both are printed with their difference (target: within 3 points).
2. *Adaptation against held-out labels*: `rbvet.core.learn.adapt.adapt` fine-tunes the
   model (a) on injections into every frame only, then every label is held out; (b) on
   injections plus the labels of the left half of each frame (through a label store), and
   the right halves are held out. AUC and FNR at FPR <= 1 % of the old and new models are
   printed on the held-out labels (target: FNR at FPR <= 1 % at least halved where it
   starts above 2 %).

Nothing is written but ``--json`` and temporary files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rbvet.core.classify import open_frame_and_catalog, score_objects  # noqa: E402
from rbvet.core.inject.assess import assess_loaded  # noqa: E402
from rbvet.core.inject.inject import InjectionSettings  # noqa: E402
from rbvet.core.inject.labelled import label_measured  # noqa: E402
from rbvet.core.inject.psf import measure_frame_psf  # noqa: E402
from rbvet.core.jobs import run_job  # noqa: E402
from rbvet.core.learn.metrics import summarize  # noqa: E402
from rbvet.core.model.cache import cached_model  # noqa: E402

REAL = ROOT / "tests" / "data" / "real"
FRAMES = (
    ("aspen_cg16_ey_uma.fit.gz", "Apogee Aspen CG16, 0.4 m, raw"),
    ("saao_1m_raw_a8280271.fits", "SAAO 1.0 m STE3, raw"),
    ("eso_ntt_emmi_sep.fits", "ESO NTT EMMI, sum of 3"),
    ("skyview_m13.fits", "SkyView cut-out of M13"),
    ("ukidss_wfcam_image.fits", "UKIRT WFCAM (UKIDSS)"),
)
"""Frame files in tests/data/real, each with ``<stem>.labels.ecsv`` beside it."""
TARGET_FPR = 0.01


def labels_path(frame_name):
    """The labels of a frame: ``<name without its extensions>.labels.ecsv``."""
    return REAL / (frame_name.split(".")[0] + ".labels.ecsv")


@dataclass
class LabelledFrame:
    """One frame read, its detections scored, and its labels matched to them."""

    name: str
    path: Path
    frame: object
    table: object
    fwhm: float
    truth: object
    measured: object


def load_labelled(name, model):
    """Read, detect, score and measure the labels of one frame."""
    from astropy.table import Table

    path = REAL / name
    frame, table, fwhm = run_job(open_frame_and_catalog(path))
    scores, _ = run_job(score_objects(frame, table["x"], table["y"], model, fwhm))
    truth = Table.read(labels_path(name), format="ascii.ecsv")
    frame_psf = measure_frame_psf(frame, table, fwhm)
    measured = label_measured(frame, table, scores, truth, frame_psf, model.threshold)
    return LabelledFrame(name, path, frame, table, fwhm, truth, measured)


def percent(value):
    return "   n/a" if value is None or not np.isfinite(value) else f"{100 * value:5.1f}%"


def _number(value, percent_of=True):
    if value is None or not np.isfinite(value):
        return "   n/a"
    return f"{100 * value:5.1f}%" if percent_of else f"{value:6.4f}"


def difference(a, b):
    if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
        return "   n/a"
    return f"{100 * (a - b):+5.1f}"


def check_assessment(frames, model, settings):
    """Print injected against labelled figures per frame; return them as a list of dicts."""
    print(f"\nAssessment against labels (threshold {model.threshold:.2f}; stars of S/N >= 20)")
    print(
        f"{'frame':28s} {'PSF':9s} {'placed':>6s} | {'star completeness':^29s} | "
        f"{'artifact rejection':^29s} | kind compared"
    )
    print(f"{'':46s}| {'inject':>6s} {'labels':>6s} {'n':>4s} {'diff':>6s}  | "
          f"{'inject':>6s} {'labels':>6s} {'n':>4s} {'diff':>6s}  |")  # fmt: skip
    rows = []
    for item in frames:
        started = time.perf_counter()
        assessment = run_job(
            assess_loaded(item.frame, item.table, item.fwhm, model, settings=settings)
        )
        seconds = time.perf_counter() - started
        injected, labelled = assessment.summary, item.measured.summary
        kinds = list(labelled["artifact_rejection_by_kind"])
        kind = kinds[0] if len(kinds) == 1 else None
        inject_rejection = (
            injected["artifact_rejection_by_kind"].get(kind, np.nan)
            if kind
            else injected["artifact_rejection"]
        )
        label_rejection = labelled["artifact_rejection"]
        stars_key, count_key = "star_completeness", "stars_bright"
        if labelled["counts"]["stars_bright"] == 0:  # real objects not told apart by kind
            stars_key, count_key = "real_completeness", "real_bright"
        row = {
            "frame": item.name,
            "psf": injected["psf"]["psf_source"],
            "placed": injected["counts"]["placed"],
            "injected_star_completeness": injected["star_completeness"],
            "injected_stars": injected["counts"]["stars_bright"],
            "labelled_star_completeness": labelled[stars_key],
            "labelled_stars": labelled["counts"][count_key],
            "injected_artifact_rejection": inject_rejection,
            "injected_artifacts": (
                injected["counts"]["detected_by_kind"].get(kind, 0)
                if kind
                else injected["counts"]["artifacts_detected"]
            ),
            "labelled_artifact_rejection": label_rejection,
            "labelled_artifacts": labelled["counts"]["bogus_detected"],
            "artifact_kind": kind or "all",
            "injected_by_kind": injected["artifact_rejection_by_kind"],
            "seconds": round(seconds, 1),
        }
        rows.append(row)
        print(
            f"{item.name[:28]:28s} {row['psf'][:9]:9s} {row['placed']:6d} | "
            f"{percent(row['injected_star_completeness'])} "
            f"{percent(row['labelled_star_completeness'])} {row['labelled_stars']:4d} "
            f"{difference(row['injected_star_completeness'], row['labelled_star_completeness'])}"
            f"  | {percent(inject_rejection)} {percent(label_rejection)} "
            f"{row['labelled_artifacts']:4d} {difference(inject_rejection, label_rejection)}"
            f"  | {row['artifact_kind']}"
            + (" (real = stars and galaxies)" if stars_key == "real_completeness" else "")
        )
    return rows


def held_out_metrics(items, model, select):
    """AUC and FNR at FPR <= 1 % of ``model`` on the labelled rows ``select(item)`` keeps:
    ``{"all": pooled, frame name: that frame's}`` (`rbvet.core.learn.metrics.summarize`)."""
    scores, labels, figures = [], [], {}
    for item in items:
        truth = item.truth[select(item)]
        if not len(truth):
            continue
        value, _ = run_job(score_objects(item.frame, truth["x"], truth["y"], model, item.fwhm))
        scores.append(np.asarray(value, np.float64))
        labels.append(np.asarray(truth["true_label"], np.int8))
        figures[item.name] = summarize(
            scores[-1], labels[-1], model.threshold, target_rate=TARGET_FPR
        )
    pooled = summarize(
        np.concatenate(scores), np.concatenate(labels), model.threshold, target_rate=TARGET_FPR
    )
    return {"all": pooled, **figures}


def left_half(item):
    return np.asarray(item.truth["x"]) < item.frame.shape[1] / 2


def right_half(item):
    return ~left_half(item)


def everything(item):
    return np.ones(len(item.truth), bool)


def label_store_of(items, select, model, directory):
    """A label store holding the labels ``select`` keeps, imported as the window would."""
    from rbvet.core.learn.label_import import import_labels

    store = Path(directory) / "train_labels.sqlite"
    for item in items:
        truth = item.truth[select(item)]
        if len(truth):
            run_job(
                import_labels(
                    item.frame,
                    truth,
                    item.fwhm,
                    "true_label",
                    store,
                    model,
                    annotator="check_real",
                    frame_path=str(item.path),
                )
            )
    return store


def check_adaptation(items, model, settings, epochs, log, anchor_confidence):
    """Adapt (a) on injections only and (b) with the left halves' labels; print both."""
    from rbvet.core.learn.adapt import adapt

    frames = [(str(item.path), None) for item in items]
    results = []
    with tempfile.TemporaryDirectory() as directory:
        plans = (
            ("injections only; all labels held out", None, everything),
            (
                "injections + left-half labels; right halves held out",
                lambda: label_store_of(items, left_half, model, directory),
                right_half,
            ),
        )
        for title, store_maker, held_out in plans:
            started = time.perf_counter()
            store = store_maker() if store_maker else None
            result = run_job(
                adapt(
                    frames,
                    base_model=model,
                    store_path=store,
                    epochs=epochs,
                    settings=settings,
                    log=log,
                    anchor_confidence=anchor_confidence,
                )
            )
            seconds = time.perf_counter() - started
            before = held_out_metrics(items, model, held_out)
            after = held_out_metrics(items, result.model, held_out)
            results.append({"plan": title, "before": before, "after": after, "seconds": seconds})
            pooled = before["all"]
            print(
                f"\nAdapted ({title}) in {seconds:.0f} s; held-out labels: "
                f"{pooled['real']} real, {pooled['bogus']} bogus"
            )
            heads = ("AUC", "FNR at FPR<=1%", "FNR at 0.5", "FPR at 0.5")
            print(f"{'held-out labels':26s} {'real':>4s} {'bogus':>5s} |"
                  + "".join(f"{head:^16s}|" for head in heads))  # fmt: skip
            print(f"{'':38s}|" + " before   after |" * 4)
            for name in before:
                old, new = before[name], after[name]
                cells = [
                    f" {_number(old[key], percent_of=key != 'auc')} "
                    f"{_number(new[key], percent_of=key != 'auc')} |"
                    for key in ("auc", "fnr_at_target_fpr", "fnr", "fpr")
                ]
                print(f"{name[:26]:26s} {old['real']:4d} {old['bogus']:5d} |" + "".join(cells))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=16, help="injection rounds per frame")
    parser.add_argument("--injections", type=int, default=2000, help="injections per frame")
    parser.add_argument("--epochs", type=int, default=3, help="adaptation epochs")
    parser.add_argument("--skip-adapt", action="store_true", help="only the assessment")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--verbose", action="store_true", help="print adapt's log")
    parser.add_argument(
        "--no-anchors", action="store_true", help="adapt without the frames' own objects"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = cached_model()
    settings = InjectionSettings(injections=args.injections, rounds=args.rounds)
    items = [load_labelled(name, model) for name, _ in FRAMES]
    total = sum(len(item.truth) for item in items)
    real = sum(int(np.sum(item.measured.labels == 1)) for item in items)
    print(f"{len(items)} frames, {total} labelled objects ({real} real, {total - real} bogus)")
    for (name, description), item in zip(FRAMES, items, strict=True):
        counts = item.measured.summary["counts"]
        print(
            f"  {name}: {description}; {item.frame.shape[1]}x{item.frame.shape[0]}, "
            f"FWHM {item.fwhm:.2f} px, {len(item.table)} detections, "
            f"{counts['real']} real + {counts['bogus']} bogus labelled"
        )
    report = {"assessment": check_assessment(items, model, settings)}
    if not args.skip_adapt:
        log = (lambda message: print(message, file=sys.stderr)) if args.verbose else None
        from rbvet.core.learn.adapt import DEFAULT_ANCHOR_CONFIDENCE

        anchors = None if args.no_anchors else DEFAULT_ANCHOR_CONFIDENCE
        report["adaptation"] = check_adaptation(items, model, settings, args.epochs, log, anchors)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n{report['seconds']:.0f} s in all")
    if args.json:
        from rbvet.core.inject.assess import _plain

        Path(args.json).write_text(json.dumps(_plain(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
