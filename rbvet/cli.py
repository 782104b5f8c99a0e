"""The ``rbvet`` command line: classify (and, as they land, train, simulate, evaluate).

Every user error ends as one line on stderr and exit status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .core.errors import RbvetError

EXIT_USER_ERROR = 2


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal or forced."""

    def __init__(self, label, enabled=None, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.width = label, width
        self.started = time.perf_counter()

    def __call__(self, done, total):
        if not self.enabled or total <= 0:
            return
        filled = int(self.width * done / total)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} ({rate:,.0f}/s)")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _add_frame_arguments(parser):
    parser.add_argument("frame", help="FITS image")
    parser.add_argument("--hdu", help="image HDU (index or EXTNAME); default: first 2-D image")
    parser.add_argument("--mask", help="mask HDU (name/index) or FITS file; nonzero = bad")
    parser.add_argument("--error", help="1-sigma noise map HDU or FITS file")
    parser.add_argument("--weight", help="inverse-variance weight map HDU or FITS file")
    parser.add_argument(
        "--catalog", "-c", help="catalog (ECSV, FITS, CSV, SExtractor); detect with sep if absent"
    )
    parser.add_argument(
        "--detect-threshold",
        type=float,
        default=3.0,
        help="detection threshold in sigma when there is no catalog [3]",
    )
    parser.add_argument("--fwhm", type=float, help="frame FWHM in pixels; estimated if absent")


def _hdu_spec(value):
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def load_frame_and_catalog(args, log):
    """Frame, catalog table (with 0-based x, y) and FWHM from the command-line arguments."""
    from .core.catalog import detect_objects, estimate_fwhm, read_catalog
    from .core.frame import read_frame

    frame = read_frame(
        args.frame,
        hdu=_hdu_spec(args.hdu),
        mask=_hdu_spec(args.mask),
        error=_hdu_spec(args.error),
        weight=_hdu_spec(args.weight),
    )
    frame.ensure_background()
    if args.catalog:
        table = read_catalog(args.catalog, frame=frame)
        log(f"Catalog {args.catalog}: {len(table)} objects")
    else:
        table = detect_objects(frame, thresh=args.detect_threshold)
        log(f"Detected {len(table)} objects at {args.detect_threshold:g} sigma")
        if len(table) == 0:
            raise RbvetError("no objects detected (try a lower --detect-threshold)", args.frame)
    fwhm = args.fwhm
    if fwhm is None:
        fwhm = estimate_fwhm(frame, table["x"], table["y"], table=table)
        log(f"FWHM {fwhm:.2f} px (estimated)")
    return frame, table, float(fwhm)


def default_output(frame_path):
    """``<frame stem>.rb.ecsv`` in the working directory."""
    name = Path(frame_path).name
    for suffix in (".fz", ".gz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return Path(f"{name}.rb.ecsv")


def cmd_classify(args):
    """Score every object of a frame and write the catalog with rb_score."""
    import numpy as np

    from .core.catalog import write_catalog
    from .core.classify import add_scores, check_threshold, score_objects
    from .core.model import load_model

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    started = time.perf_counter()
    frame, table, fwhm = load_frame_and_catalog(args, log)
    model = load_model(args.model)
    threshold = check_threshold(model.threshold if args.threshold is None else args.threshold)
    progress = ProgressBar("Classifying", enabled=None if not args.quiet else False)
    scores, reasons = score_objects(frame, table["x"], table["y"], model, fwhm, progress=progress)
    add_scores(table, scores, reasons, threshold=threshold)
    output = Path(args.output) if args.output else default_output(args.frame)
    write_catalog(table, output)
    scored = np.isfinite(scores)
    real = int(np.sum(scores >= threshold))
    print(
        f"{args.frame}: {len(table)} objects, {int(scored.sum())} scored, "
        f"{real} real and {int(scored.sum()) - real} bogus at threshold {threshold:.2f}"
    )
    unscored = reasons[~scored]
    for reason in sorted(set(unscored)):
        print(f"  unscorable ({reason}): {int(np.sum(unscored == reason))}")
    print(
        f"  model {model.name} ({model.engine_name}), FWHM {fwhm:.2f} px, "
        f"{time.perf_counter() - started:.1f} s -> {output}"
    )
    return 0


def cmd_train(args):
    """Train a model on simulated frames (split by frame), evaluate it on fresh frames."""
    import json

    from .core.metrics import summarize
    from .core.model import RealBogusModel, save_model
    from .core.train import simulated_training_set, train_model

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    shape = (args.size, args.size)
    data = simulated_training_set(
        n_frames=args.simulate,
        shape=shape,
        seed=args.seed,
        log=log,
        progress=ProgressBar("Simulating"),
    )
    command = "rbvet " + " ".join(sys.argv[1:]) if sys.argv[1:] else "rbvet train"

    def report(epoch, logs):
        log(
            f"epoch {epoch + 1}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, float))
        )

    result = train_model(
        data.inputs,
        data.labels,
        groups=data.groups,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=report,
        log=log,
        description=f"trained on {args.simulate} simulated frames",
    )
    card = result.card
    card["training"].update(
        {
            "frames": args.simulate,
            "frame_shape": list(shape),
            "seed": args.seed,
            "command": command,
            "real_kinds": ["star", "galaxy"],
        }
    )
    if args.test_frames:
        test = simulated_training_set(
            n_frames=args.test_frames, shape=shape, seed=args.seed + 1_000_003, log=log
        )
        scores = RealBogusModel(result.model, card).predict(test.inputs)
        card["metrics"] = summarize(
            scores, test.labels, card["threshold"], kinds=test.kinds, fwhm=test.fwhm
        )
        card["metrics"]["evaluated_on"] = (
            f"{args.test_frames} fresh-seed simulated frames (seed {args.seed + 1_000_003})"
        )
        print(json.dumps(card["metrics"], indent=2))
    save_model(result.model, args.output, card)
    print(f"saved {args.output}")
    return 0


DEMO_OPTIONS = {
    "n_stars": 260,
    "n_galaxies": 80,
    "n_cosmic_rays": 70,
    "n_hot_pixels": 40,
    "n_satellites": 1,
    "n_bad_columns": 2,
}
"""Counts for a demo frame that shows every kind of object."""


def cmd_simulate(args):
    """Write a simulated frame and its detected, truth-labeled catalog."""
    import numpy as np
    from astropy.io import fits

    from .core.catalog import detect_objects, write_catalog
    from .core.files import atomic_write
    from .core.frame import frame_from_array
    from .core.simulate import label_detections, simulate_frame

    options = DEMO_OPTIONS if args.demo else {}
    sim = simulate_frame(shape=(args.size, args.size), fwhm=args.fwhm, rng=args.seed, **options)
    header = fits.Header()
    header["FWHM"] = (round(float(sim.fwhm), 3), "simulated PSF FWHM [px]")
    header["SIMSEED"] = (int(sim.params["seed"]), "rbvet simulate seed")
    header["ORIGIN"] = "rbvet simulate"
    output = Path(args.output)
    hdu = fits.PrimaryHDU(sim.image.astype(np.float32), header=header)
    atomic_write(output, lambda temporary: hdu.writeto(temporary, overwrite=True))
    frame = frame_from_array(sim.image).ensure_background()
    table = detect_objects(frame, thresh=args.detect_threshold)
    labels, kinds = label_detections(sim, table["x"], table["y"])
    table["true_label"] = labels
    table["true_kind"] = kinds
    catalog = Path(args.catalog) if args.catalog else output.with_suffix(".ecsv")
    write_catalog(table, catalog)
    counts = ", ".join(f"{kind} {int(np.sum(kinds == kind))}" for kind in sorted(set(kinds)))
    print(
        f"{output}: {args.size}x{args.size}, FWHM {sim.fwhm:.2f} px; {catalog}: "
        f"{len(table)} detections ({counts})"
    )
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rbvet", description="Vet detections on astronomical images with a real-bogus CNN."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    classify = commands.add_parser(
        "classify",
        help="score the objects of a frame and write the catalog with rb_score",
        description="Score each object of FRAME as real (1) or bogus (0) and write the "
        "catalog with rb_score, rb_reason and the bogus flag (0x1000) in flags.",
    )
    _add_frame_arguments(classify)
    classify.add_argument(
        "--model", "-m", help="model file (.keras or STDPipe .h5); default: the shipped model"
    )
    classify.add_argument(
        "--threshold", "-t", type=float, help="score threshold; default: the model card's (0.5)"
    )
    classify.add_argument(
        "--output",
        "-o",
        help="output catalog; format from the extension "
        "(.ecsv, .fits, .csv); default FRAME.rb.ecsv",
    )
    classify.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    classify.set_defaults(handler=cmd_classify)

    simulate = commands.add_parser(
        "simulate",
        help="write a simulated frame and its truth-labeled detections",
        description="Simulate a frame (stars, galaxies, cosmic rays, hot pixels, trails, "
        "bad columns), detect its objects with sep and label them from truth.",
    )
    simulate.add_argument("--output", "-o", required=True, help="FITS image to write")
    simulate.add_argument("--catalog", help="catalog to write [OUTPUT with .ecsv]")
    simulate.add_argument("--size", type=int, default=1024)
    simulate.add_argument("--fwhm", type=float, help="PSF FWHM in px [drawn]")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--detect-threshold", type=float, default=3.0)
    simulate.add_argument(
        "--demo",
        action="store_true",
        help="a few hundred objects with every artifact kind (demo data)",
    )
    simulate.set_defaults(handler=cmd_simulate)

    train = commands.add_parser(
        "train",
        help="train a model on simulated frames",
        description="Simulate frames, detect and label their objects, train with a "
        "frame-wise held-out split and evaluate on fresh-seed frames.",
    )
    train.add_argument(
        "--simulate",
        type=int,
        default=100,
        metavar="N",
        help="number of simulated training frames [100]",
    )
    train.add_argument("--size", type=int, default=1024, help="frame side in pixels [1024]")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--test-frames",
        type=int,
        default=20,
        help="fresh-seed frames to evaluate on (0: skip) [20]",
    )
    train.add_argument("--output", "-o", required=True, help="model file (.keras)")
    train.set_defaults(handler=cmd_train)
    return parser


def main(argv=None):
    """Entry point of the ``rbvet`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except RbvetError as error:
        print(f"rbvet: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rbvet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
