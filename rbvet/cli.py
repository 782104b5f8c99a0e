"""The ``rbvet`` command line: classify, evaluate, export, simulate, train and gui.

Every user error ends as one line on stderr and exit status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import warnings
from pathlib import Path

from rbvet.core.errors import RbvetError

EXIT_USER_ERROR = 2
SUBCOMMAND_MODULES = ("assess", "adapt", "weak_labels", "label", "review")
"""Modules of `rbvet.commands` that add a subcommand each (``add_parser(commands)``)."""


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal or forced.

    Called with each `rbvet.core.jobs.Progress` of a job (``run_job(job, bar)``); a
    progress without a total (reading a file) draws nothing.
    """

    def __init__(self, label, enabled=None, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.width = label, width
        self.started = time.perf_counter()

    def __call__(self, progress):
        done, total, fraction = progress.done, progress.total, progress.fraction
        if not self.enabled or fraction is None:
            return
        filled = int(self.width * fraction)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} ({rate:,.0f}/s)")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _add_frame_arguments(parser, many=False):
    """The frame, its extra HDUs or files, and its objects (a catalog, or detection options).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    many : bool
        Take any number of frames (``args.frames``, plus ``--list FILE``) and their
        catalogs by ``--catalog-pattern``, instead of one ``args.frame``.
    """
    if many:
        parser.add_argument("frames", nargs="*", metavar="FRAME", help="FITS image(s)")
        parser.add_argument(
            "--list", metavar="FILE", help="text file of frames, one per line (# comments)"
        )
    else:
        parser.add_argument("frame", help="FITS image")
    _add_frame_file_arguments(parser)
    parser.add_argument(
        "--catalog", "-c", help="catalog (ECSV, FITS, CSV, SExtractor); detect with sep if absent"
    )
    if many:
        parser.add_argument(
            "--catalog-pattern",
            metavar="PATTERN",
            help="each frame's catalog, from {stem} (name without .fits/.fz), {name} and "
            "{dir} (its folder), e.g. '{dir}/{stem}.cat'; relative to the working directory",
        )
    parser.add_argument(
        "--detect-threshold",
        type=float,
        default=3.0,
        help="detection threshold in sigma when there is no catalog [3]",
    )
    parser.add_argument(
        "--min-area",
        type=int,
        default=3,
        help="minimum connected pixels of a detected object [3]",
    )
    parser.add_argument("--fwhm", type=float, help="frame FWHM in pixels; estimated if absent")
    parser.add_argument(
        "--saturation",
        type=_saturation_spec,
        help="saturation level in image units, or 'none'; from the header or the histogram "
        "if absent",
    )
    parser.add_argument(
        "--no-datasec",
        dest="use_datasec",
        action="store_false",
        help="use the whole image, overscan included (TRIMSEC/DATASEC are honoured by default)",
    )


def _saturation_spec(value):
    """``--saturation``: a level, or ``none`` (False: no saturation level at all)."""
    if value.strip().lower() in ("none", "off"):
        return False
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'none': {value!r}") from None


def _add_frame_file_arguments(parser):
    """Where the image and its mask, noise and weight maps are (``--hdu`` ... ``--weight``)."""
    parser.add_argument("--hdu", help="image HDU (index or EXTNAME); default: first 2-D image")
    parser.add_argument("--mask", help="mask HDU (name/index) or FITS file; nonzero = bad")
    parser.add_argument("--error", help="1-sigma noise map HDU or FITS file")
    parser.add_argument(
        "--weight",
        help="weight (inverse-variance) map HDU or FITS file; its scale is set by the sky",
    )
    parser.add_argument(
        "--no-file-noise-map",
        dest="file_noise_map",
        action="store_false",
        help="ignore the file's own noise map (an HDU named WHT, ERR, VAR, STAT... of the "
        "image's shape) and estimate the noise from the sky alone",
    )


def _hdu_spec(value):
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def load_frame_and_catalog(args, log):
    """Frame, catalog table (with 0-based x, y) and FWHM from the command-line arguments."""
    from rbvet.core.classify import open_frame_and_catalog
    from rbvet.core.jobs import run_job

    return run_job(
        open_frame_and_catalog(args.frame, args.catalog, options=_frame_options(args), log=log)
    )


EXIT_FRAMES_FAILED = 1
"""Exit status of ``rbvet classify`` on several frames when some of them failed."""

BATCH_ONLY_OPTIONS = ("workers", "scheduler", "format", "overwrite")
"""``rbvet classify`` options that apply only to several frames."""
SINGLE_ONLY_OPTIONS = ("uncertainty",)
"""``rbvet classify`` options that apply only to one frame."""


def cmd_classify(args):
    """Score every object of a frame (or of many frames, on Dask) and write catalogs."""
    frames = list(args.frames)
    if args.list:
        from rbvet.core.batch import read_frame_list

        frames += read_frame_list(args.list)
    if not frames:
        raise RbvetError("give a FRAME, several, or --list FILE")
    if args.catalog and args.catalog_pattern:
        raise RbvetError("give --catalog or --catalog-pattern, not both")
    if args.list or len(frames) > 1:
        given = [name for name in SINGLE_ONLY_OPTIONS if getattr(args, name)]
        if given:
            raise RbvetError(f"--{given[0]} applies to one frame (classify them one by one)")
        return _classify_many(args, frames)
    given = [name for name in BATCH_ONLY_OPTIONS if getattr(args, name) not in (None, False)]
    if given:
        raise RbvetError(
            f"--{given[0]} applies to several frames (give more than one FRAME, or --list)"
        )
    return _classify_single(args, frames[0])


def _frame_options(args):
    """The `FrameOptions` the command line gives (see `_add_frame_arguments`)."""
    from rbvet.core.classify import FrameOptions

    return FrameOptions(
        hdu=_hdu_spec(args.hdu),
        mask=_hdu_spec(args.mask),
        error=_hdu_spec(args.error),
        weight=_hdu_spec(args.weight),
        file_noise_map=args.file_noise_map,
        detect_threshold=args.detect_threshold,
        fwhm=args.fwhm,
        # Commands that do not detect (evaluate) leave these to the defaults.
        **{
            name: getattr(args, name)
            for name in ("min_area", "saturation", "use_datasec")
            if hasattr(args, name)
        },
    )


def _classify_single(args, frame):
    """One frame in this process, with a progress bar over its objects."""
    from rbvet.core.batch import catalog_for, classify_one_frame, output_name
    from rbvet.core.jobs import run_job

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    catalog = args.catalog
    if args.catalog_pattern:
        catalog = catalog_for(frame, args.catalog_pattern)
    output = Path(args.output or output_name(frame))  # <stem>.rb.ecsv in the working dir
    started = time.perf_counter()
    result = run_job(
        classify_one_frame(
            frame,
            catalog,
            output,
            args.model,
            args.threshold,
            _frame_options(args),
            log=log,
            uncertainty=args.uncertainty,
        ),
        ProgressBar("Classifying", enabled=None if not args.quiet else False),
    )
    print(
        f"{frame}: {result.objects} objects, {result.scored} scored, "
        f"{result.kept} real and {result.scored - result.kept} bogus "
        f"at threshold {result.threshold:.2f}"
    )
    for reason, count in sorted(result.unscorable.items()):
        print(f"  unscorable ({reason}): {count}")
    print(
        f"  model {result.model} ({result.engine}), FWHM {result.fwhm:.2f} px, "
        f"{time.perf_counter() - started:.1f} s -> {output}"
    )
    return 0


def _classify_many(args, frames):
    """Several frames on Dask: a catalog per frame in OUTDIR and a summary table."""
    from rbvet.core.batch import (
        STATUS_DONE,
        STATUS_FAILED,
        STATUS_SKIPPED,
        SUMMARY_NAME,
        classify_frames,
    )
    from rbvet.core.jobs import run_job

    if args.catalog:
        raise RbvetError(
            "--catalog names the catalog of one frame; for several use --catalog-pattern"
        )
    if not args.output:
        raise RbvetError("several frames need -o OUTDIR, the folder for catalogs and summary")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    summary = run_job(
        classify_frames(
            frames,
            args.output,
            catalog_pattern=args.catalog_pattern,
            model_path=args.model,
            threshold=args.threshold,
            scheduler=args.scheduler,
            n_workers=args.workers,
            output_format=args.format or "ecsv",
            overwrite=args.overwrite,
            frame_options=_frame_options(args),
            log=log,
        ),
        ProgressBar("Frames", enabled=None if not args.quiet else False),
    )
    status = list(summary["status"])
    for row in summary:
        if row["status"] == STATUS_FAILED:
            named = Path(row["frame"]).name in str(row["error"])  # the reader's errors do
            print(f"  failed: {'' if named else row['frame'] + ': '}{row['error']}")
        elif row["warning"]:  # rbvet's warnings about a frame mostly name it already
            named = row["warning"].startswith(f"{row['frame']}: ")
            print(f"  warning: {'' if named else row['frame'] + ': '}{row['warning']}")
    objects = int(summary["objects"].filled(0).sum())
    kept = int(summary["kept"].filled(0).sum())
    failed = status.count(STATUS_FAILED)
    print(
        f"{len(summary)} frame{'s' if len(summary) != 1 else ''}: "
        f"{status.count(STATUS_DONE)} classified, "
        f"{status.count(STATUS_SKIPPED)} already done, {failed} failed; "
        f"{objects} objects, {kept} real -> {Path(args.output) / SUMMARY_NAME}"
    )
    failed_list = _write_failed_list(
        args.output, summary["frame"][summary["status"] == STATUS_FAILED]
    )
    if failed_list is not None:
        print(
            f"re-run just the {failed} failed frame{'s' if failed != 1 else ''} (the same "
            "options): "
            f"rbvet classify --list {failed_list} -o {args.output} ...; "
            "or the same command again: the frames already classified are skipped"
        )
    return EXIT_FRAMES_FAILED if failed else 0


FAILED_LIST_NAME = "failed_frames.txt"
"""The list (``--list`` file) of the frames a several-frame ``rbvet classify`` failed on,
in its OUTDIR."""


def _write_failed_list(outdir, frames):
    """Write the frames that failed to ``OUTDIR/failed_frames.txt`` (absolute paths, a
    ``--list`` file), or remove a list left by an earlier run when none did.

    Returns
    -------
    Path or None
        The list written; None when no frame failed.
    """
    from rbvet.core.io.files import atomic_write

    path = Path(outdir) / FAILED_LIST_NAME
    if not len(frames):
        path.unlink(missing_ok=True)  # an earlier run's failures are classified now
        return None
    text = "".join(f"{os.path.abspath(frame)}\n" for frame in frames)
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))
    return path


def _add_optics_argument(parser):
    """``--optics``, for the commands that simulate frames."""
    parser.add_argument(
        "--optics",
        nargs="*",
        metavar="OPTION",
        help="simulate with optics and sky options drawn per frame: all of tracking_length, "
        "coma, diffraction_spikes, n_short_trails, nebulosity, fringing, or the ones named "
        "(off by default)",
    )


def _optics(args):
    """Simulator options of ``--optics``: the named optics and sky options (or, with no
    name, all of them) drawn per frame."""
    from rbvet.core.simulate.optics import OPTICS_OPTIONS

    names = getattr(args, "optics", None)
    unknown = sorted(set(names or ()) - set(OPTICS_OPTIONS))
    if unknown:
        raise RbvetError(
            f"--optics: no option {', '.join(unknown)}; choose from {', '.join(OPTICS_OPTIONS)}"
        )
    return {} if names is None else {name: None for name in names or OPTICS_OPTIONS}


def cmd_train(args):
    """Train a model on simulated frames (split by frame), evaluate it on fresh frames."""
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.evaluate import TEST_SEED_OFFSET, evaluate_on_simulated, format_report
    from rbvet.core.learn.train import simulated_training_set, train_model
    from rbvet.core.model import RealBogusModel, save_model

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    check_writable(args.output)  # before an hour of training, not after it
    shape = (args.size, args.size)
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise RbvetError(f"--learning-rate must be above 0, got {args.learning_rate}")
    model, parent, description = None, None, f"trained on {args.simulate} simulated frames"
    if args.from_model:  # load the parent before the simulation, to fail early
        from rbvet.core.learn.retrain import fine_tuning_start

        base, model, parent = fine_tuning_start(args.from_model, args.learning_rate)
        description = f"fine-tuned from {base.name} on {args.simulate} simulated frames"
    data = run_job(
        simulated_training_set(
            n_frames=args.simulate, shape=shape, seed=args.seed, log=log, **_optics(args)
        ),
        ProgressBar("Simulating"),
    )
    command = "rbvet " + " ".join(sys.argv[1:]) if sys.argv[1:] else "rbvet train"
    result = run_job(
        train_model(
            data.inputs,
            data.labels,
            groups=data.groups,
            model=model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=1e-3 if args.learning_rate is None else args.learning_rate,
            seed=args.seed,
            log=log,
            description=description,
            parent=parent,
        ),
        _epoch_printer(log),
    )
    card = result.card
    card["training"].update(
        {
            "frames": args.simulate,
            "frame_shape": list(shape),
            "seed": args.seed,
            "command": command,
            "real_kinds": ["star", "galaxy"],
            "simulator_options": _optics(args),
        }
    )
    if args.test_frames:
        evaluation = run_job(
            evaluate_on_simulated(
                RealBogusModel(result.model, card),
                args.test_frames,
                seed=args.seed + TEST_SEED_OFFSET,
                shape=shape,
                log=log,
                **_optics(args),
            )
        )
        card["metrics"] = evaluation.metrics
        print(format_report(evaluation.metrics))

    def save(path):
        save_model(result.model, path, card)
        return path

    saved = save_or_keep(save, args.output)
    print(f"saved {saved}")
    return 0 if Path(saved) == Path(args.output) else EXIT_USER_ERROR


def _epoch_printer(log):
    """A `run_job` report that logs each training epoch's figures (and nothing else)."""
    from rbvet.core.learn.train import EpochEnded

    def report(progress):
        if isinstance(progress, EpochEnded):
            figures = ", ".join(
                f"{key} {value:.4g}" if math.isfinite(value) else f"{key} n/a"
                for key, value in progress.logs.items()
            )
            log(f"epoch {progress.done}/{progress.total}: {figures}")

    return report


def cmd_evaluate(args):
    """Judge a model on labeled objects it never saw and print the evaluation table."""
    import numpy as np

    from rbvet.core.classify import check_threshold
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.dataset import load_training_set
    from rbvet.core.learn.evaluate import (
        evaluate_on_catalog,
        evaluate_on_simulated,
        evaluate_training_set,
        format_report,
        require_matplotlib,
        save_plots,
        write_metrics_json,
    )
    from rbvet.core.model import load_model

    sources = [args.frame is not None, args.simulate is not None, args.training_set is not None]
    if sum(sources) != 1:
        raise RbvetError(
            "give one source of labeled objects: FRAME --catalog CAT --truth-column COL, "
            "--simulate N or --training-set FILE.npz"
        )
    if args.frame is not None and (args.catalog is None or args.truth_column is None):
        raise RbvetError(
            "evaluating on a frame needs --catalog CAT and --truth-column COL "
            "(1/0, true/false or real/bogus)",
            args.frame,
        )
    if args.simulate is not None and args.simulate < 1:
        raise RbvetError(f"--simulate needs at least one frame, got {args.simulate}")
    if not 0.0 < args.target_rate < 1.0:
        raise RbvetError(f"--target-rate must be between 0 and 1, got {args.target_rate}")
    if args.output and args.frame is None:
        raise RbvetError("--output writes FRAME's catalog: give FRAME --catalog CAT")
    if args.output:
        check_writable(args.output)
    if args.plot:
        require_matplotlib()  # fail before the long part, not after it
    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    model = load_model(args.model)
    threshold = check_threshold(model.threshold if args.threshold is None else args.threshold)
    if args.simulate is not None:
        evaluation = run_job(
            evaluate_on_simulated(
                model,
                args.simulate,
                seed=args.seed,
                shape=(args.size, args.size),
                threshold=threshold,
                target_rate=args.target_rate,
                log=log,
            ),
            ProgressBar("Simulating"),
        )
    elif args.training_set is not None:
        data = load_training_set(args.training_set)
        n_frames = 0 if data.groups is None else len(np.unique(data.groups))
        frames = f" ({n_frames} frame{'' if n_frames == 1 else 's'})" if n_frames else ""
        evaluation = evaluate_training_set(
            model,
            data,
            threshold=threshold,
            target_rate=args.target_rate,
            description=f"training set {args.training_set}{frames}",
        )
    else:
        frame, table, fwhm = load_frame_and_catalog(args, log)
        evaluation = run_job(
            evaluate_on_catalog(
                model,
                frame,
                table,
                args.truth_column,
                fwhm,
                kind_column=args.kind_column,
                threshold=threshold,
                target_rate=args.target_rate,
                description=f"{args.frame} with {args.catalog} (FWHM {fwhm:.2f} px)",
                source=args.catalog,
            ),
            ProgressBar("Classifying"),
        )
    print(f"Model {model.name} ({model.engine_name})")
    print(format_report(evaluation.metrics))
    _report_calibration(args, model, evaluation, table if args.frame is not None else None)
    if args.json:
        write_metrics_json(evaluation.metrics, args.json)
        print(f"metrics -> {args.json}")
    if args.plot:
        title = f"{model.name}: {evaluation.metrics['evaluated_on']}"
        paths = save_plots(evaluation, args.plot, title=title)
        print("plots -> " + ", ".join(str(path) for path in paths))
    return 0


def _report_calibration(args, model, evaluation, table):
    """Print the ECE before and after temperature scaling; with ``--output``, write the
    catalog with ``rb_prob`` (calibrated) beside ``rb_score``."""
    from rbvet.core.classify import add_scores
    from rbvet.core.io.catalog import write_catalog
    from rbvet.core.learn import calibration

    fit = {}
    if args.calibrate_labels:
        store = None if args.calibrate_labels == DEFAULT_STORE else args.calibrate_labels
        fit_scores, fit_labels = calibration.store_scores(store, model)
        fit = {
            "fit_scores": fit_scores,
            "fit_labels": fit_labels,
            "fitted_on": f"{len(fit_labels)} labels of {args.calibrate_labels}",
        }
    try:
        result = calibration.calibrate(evaluation.scores, evaluation.labels, **fit)
    except RbvetError as error:
        print(f"  calibration: not fitted ({error.problem})")
        if args.output:
            raise
        return
    print("  " + result.summary())
    evaluation.metrics["calibration"] = {
        "temperature": result.temperature,
        "ece_before": result.ece_before,
        "ece_after": result.ece_after,
        "objects": result.objects,
        "fitted_on": result.fitted_on,
    }
    if args.output:
        output = table.copy(copy_data=True)
        add_scores(output, evaluation.catalog_scores, evaluation.catalog_reasons)
        probabilities = calibration.calibrated(evaluation.catalog_scores, result.temperature)
        calibration.add_probability_column(output, probabilities)
        write_catalog(output, args.output)
        print(f"catalog with rb_score and rb_prob (calibrated) -> {args.output}")


def _add_evaluate_parser(commands):
    """The ``evaluate`` subcommand and its options."""
    from rbvet.core.learn.evaluate import DEFAULT_EVALUATION_SEED, DEFAULT_TARGET_RATE

    evaluate = commands.add_parser(
        "evaluate",
        help="judge a model on labeled objects it never saw",
        description="Score labeled objects with a model and print ROC AUC, FNR and FPR at "
        "the threshold, thresholds for a target rate, AUC per FWHM bin and pass rates per "
        "kind. The objects come from fresh simulated frames (--simulate), a saved "
        "training set (--training-set), or FRAME with a catalog holding a truth column.",
    )
    source = evaluate.add_argument_group("labeled objects (one of)")
    source.add_argument("frame", nargs="?", help="FITS image (with --catalog, --truth-column)")
    source.add_argument(
        "--simulate",
        type=int,
        metavar="N",
        help="simulate N fresh frames, detect and label their objects as training does",
    )
    source.add_argument(
        "--training-set",
        metavar="FILE.npz",
        help="a training set: `rbvet export -o FILE.npz`, or any .npz with X (N,31,31,2) and y",
    )
    simulated = evaluate.add_argument_group("simulated frames")
    simulated.add_argument("--size", type=int, default=1024, help="frame side in pixels [1024]")
    simulated.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_EVALUATION_SEED,
        help=f"seed of the frames, far from training seeds [{DEFAULT_EVALUATION_SEED}]",
    )
    catalog = evaluate.add_argument_group("frame and labeled catalog")
    catalog.add_argument(
        "--catalog", "-c", metavar="CAT", help="catalog of FRAME (ECSV, FITS, CSV, SExtractor)"
    )
    catalog.add_argument(
        "--truth-column",
        metavar="COL",
        help="column of truth labels: 1/0, true/false or real/bogus",
    )
    catalog.add_argument(
        "--kind-column", metavar="COL", help="column of object kinds, for rates per kind"
    )
    _add_frame_file_arguments(catalog)
    catalog.add_argument("--fwhm", type=float, help="frame FWHM in pixels; estimated if absent")
    _add_model_arguments(evaluate)
    evaluate.add_argument(
        "--target-rate",
        type=float,
        default=DEFAULT_TARGET_RATE,
        help=f"target FPR and FNR for the suggested thresholds [{DEFAULT_TARGET_RATE}]",
    )
    evaluate.add_argument(
        "--plot",
        metavar="PREFIX",
        help="save PREFIX_roc.png and PREFIX_rates.png (needs matplotlib)",
    )
    evaluate.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    evaluate.add_argument(
        "--calibrate-labels",
        metavar="STORE",
        help="fit the calibration temperature on the labels of this label store "
        "('default': the user's) [on the evaluated objects, ECE cross-fitted]",
    )
    evaluate.add_argument(
        "--output",
        "-o",
        metavar="CAT",
        help="with FRAME: write the catalog with rb_score and the calibrated probability "
        "rb_prob beside it",
    )
    evaluate.set_defaults(handler=cmd_evaluate, detect_threshold=3.0)


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
    """Write a simulated frame (or ``--epochs N`` of one field) and its truth-labeled catalog."""
    from rbvet.core.simulate import simulate_frame

    options = {**(DEMO_OPTIONS if args.demo else {}), **_optics(args)}
    if args.epochs is not None:
        return _simulate_epochs(args, options)
    sim = simulate_frame(shape=(args.size, args.size), fwhm=args.fwhm, rng=args.seed, **options)
    catalog = Path(args.catalog) if args.catalog else Path(args.output).with_suffix(".ecsv")
    _write_simulated(sim, Path(args.output), catalog, args)
    return 0


def _simulate_epochs(args, options):
    """``rbvet simulate --epochs N -o PREFIX.fits``: PREFIX_1.fits ... with their catalogs."""
    from rbvet.core.simulate.epochs import simulate_epochs

    if args.epochs < 1:
        raise RbvetError(f"--epochs needs at least 1 exposure, got {args.epochs}")
    if args.catalog:
        raise RbvetError("--catalog names one catalog; with --epochs each is PREFIX_K.ecsv")
    output = Path(args.output)
    epochs = simulate_epochs(
        args.epochs, shape=(args.size, args.size), rng=args.seed, fwhm=args.fwhm, **options
    )
    for number, epoch in enumerate(epochs, start=1):
        name = output.with_name(f"{output.stem}_{number}{output.suffix or '.fits'}")
        header = epoch.wcs.to_header()
        header["EPOCH"] = (number, "rbvet simulate exposure number")
        header["MJD-OBS"] = (60000.0 + 0.01 * (number - 1), "simulated exposure start")
        header["SIMXSHFT"] = (round(epoch.exposure.shift[0], 4), "pointing offset x [px]")
        header["SIMYSHFT"] = (round(epoch.exposure.shift[1], 4), "pointing offset y [px]")
        header["SIMROT"] = (round(epoch.exposure.rotation, 5), "rotation [deg]")
        _write_simulated(epoch.frame, name, name.with_suffix(".ecsv"), args, header)
    return 0


def _write_simulated(sim, output, catalog, args, header=None):
    """Write a simulated frame, detect its objects, label them from truth, write the catalog."""
    import numpy as np
    from astropy.io import fits

    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.io.catalog import write_catalog
    from rbvet.core.io.files import atomic_write
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.simulate import label_detections

    header = fits.Header() if header is None else header
    header["FWHM"] = (round(float(sim.fwhm), 3), "simulated PSF FWHM [px]")
    header["SIMSEED"] = (int(sim.params["seed"]), "rbvet simulate seed")
    header["ORIGIN"] = "rbvet simulate"
    hdu = fits.PrimaryHDU(sim.image.astype(np.float32), header=header)
    atomic_write(output, lambda temporary: hdu.writeto(temporary, overwrite=True))
    frame = frame_from_array(sim.image).ensure_background()
    table = detect_objects(frame, thresh=args.detect_threshold)
    labels, kinds = label_detections(sim, table["x"], table["y"])
    table["true_label"] = labels
    table["true_kind"] = kinds
    write_catalog(table, catalog)
    counts = ", ".join(f"{kind} {int(np.sum(kinds == kind))}" for kind in sorted(set(kinds)))
    height, width = sim.image.shape
    print(
        f"{output}: {width}x{height}, FWHM {sim.fwhm:.2f} px; {catalog}: "
        f"{len(table)} detections ({counts})"
    )


DEFAULT_STORE = "default"
"""``--labels`` given without a value: the default label store."""


def check_writable(path):
    """Refuse an output whose folder cannot take a file, before the work that makes it."""
    from rbvet.core.errors import RbvetWriteError
    from rbvet.core.io.files import atomic_write

    probe = Path(path).with_name(f".{Path(path).name}.probe")
    try:
        atomic_write(probe, lambda temporary: Path(temporary).write_bytes(b""))
    except RbvetWriteError as error:
        raise RbvetError(
            error.problem.replace("cannot write", "cannot write here"), path
        ) from None
    probe.unlink(missing_ok=True)


def save_or_keep(save, path):
    """``save(path)``; if the disk refuses it, save to rbvet's models folder (then the
    temporary folder) instead and say where, so a trained model is never lost.

    Returns
    -------
    Path
        Where the model was written.
    """
    import tempfile

    from rbvet.core.errors import RbvetWriteError
    from rbvet.core.paths import user_data_dir

    try:
        return Path(save(path))
    except RbvetWriteError as first:
        failures = [str(first)]
        for folder in (user_data_dir() / "models", Path(tempfile.gettempdir())):
            fallback = folder / f"unsaved-{time.strftime('%Y%m%d-%H%M%S')}-{Path(path).name}"
            try:
                written = Path(save(fallback))
            except RbvetWriteError as error:
                failures.append(str(error))
                continue
            print(f"rbvet: {first}; the model was saved to {written} instead", file=sys.stderr)
            return written
        raise RbvetError(
            "could not save the trained model anywhere: " + "; ".join(failures)
        ) from None


def cmd_train_any(args):
    """``rbvet train``: from a label store with ``--labels``, else from simulated frames."""
    if args.weak_weight is not None and not args.labels:
        raise RbvetError("--weak-weight trains on a label store's weak labels: give --labels")
    return cmd_train_labels(args) if args.labels else cmd_train(args)


def cmd_train_labels(args):
    """Retrain from a label store, compare old and new on held-out labels, save versioned."""
    import numpy as np

    from rbvet.core.jobs import run_job
    from rbvet.core.learn.retrain import (
        format_comparison,
        held_out_gaps,
        retrain_from_store,
        save_versioned,
    )

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    if args.from_model:
        raise RbvetError("--from fine-tunes on simulated frames; with --labels use --base-model")
    if args.simulated_ratio < 0:
        raise RbvetError(f"--simulated-ratio must be >= 0, got {args.simulated_ratio}")
    if args.epochs < 1:
        raise RbvetError(f"--epochs must be at least 1, got {args.epochs}")
    check_writable(args.output)
    result = run_job(
        retrain_from_store(
            None if args.labels == DEFAULT_STORE else args.labels,
            args.base_model,
            from_scratch=args.from_scratch,
            simulated_ratio=args.simulated_ratio,
            epochs=args.epochs,
            seed=args.seed,
            batch_size=args.batch_size,
            weak_weight=args.weak_weight,
            log=log,
        ),
        _epoch_printer(log),
    )
    command = "rbvet " + " ".join(sys.argv[1:]) if sys.argv[1:] else "rbvet train --labels"
    result.model.card["training"]["command"] = command
    print(format_comparison(result.comparison))
    gaps = held_out_gaps(result.comparison["old"]["real"], result.comparison["old"]["bogus"])
    if gaps:
        print(f"  note: {gaps}")
    old, new = result.comparison["old"]["auc"], result.comparison["new"]["auc"]
    if np.isfinite(old) and np.isfinite(new) and new < old:
        print("  note: the new model has a lower AUC on the held-out labels than the old one")
    path = save_or_keep(lambda target: save_versioned(result.model, target), args.output)
    print(f"saved {path} (parent {result.base_model.name}, {result.seconds:.0f} s)")
    return 0 if path.parent == Path(args.output).parent else EXIT_USER_ERROR


def _add_label_training_arguments(train):
    """``rbvet train --labels STORE ...``: retraining from labels, an alternative mode."""
    train.description += (
        " With --labels STORE: retrain from the labeled objects of a label store instead "
        "(fine-tune --base-model or train --from-scratch), compare old and new model on "
        "held-out labeled frames and save OUTPUT.vN.keras."
    )
    group = train.add_argument_group("retraining from labels (instead of --simulate)")
    group.add_argument(
        "--labels",
        metavar="STORE",
        nargs="?",
        const=DEFAULT_STORE,
        help="label store (.sqlite); without a value the default store in the user data folder",
    )
    group.add_argument(
        "--base-model", metavar="M", help="model to fine-tune and compare with [shipped model]"
    )
    group.add_argument(
        "--from-scratch", action="store_true", help="train a new network instead of fine-tuning"
    )
    group.add_argument(
        "--simulated-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="mix in R simulated objects per labeled training object, so the model does "
        "not forget [0]",
    )
    group.add_argument(
        "--weak-weight",
        type=float,
        metavar="W",
        help="also train on the store's weak labels (rbvet weak-labels) of objects without "
        "a label of yours, each weighing W in (0, 1] against 1 for yours; never held out "
        "[not used]",
    )
    train.set_defaults(handler=cmd_train_any)


def cmd_export(args):
    """Write the vetted catalog, the labeled training set and/or DS9 regions of a frame."""
    import contextlib

    import numpy as np

    from rbvet.core.classify import check_threshold, score_objects
    from rbvet.core.io.export import export_catalog, export_kind, export_regions
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.dataset import save_training_set
    from rbvet.core.learn.labels import LabelStore, match_positions
    from rbvet.core.model import load_model
    from rbvet.core.session import MATCH_TOLERANCE

    outputs = [(Path(path), export_kind(path)) for path in args.output]
    kinds = {kind for _, kind in outputs}
    if "training_set" in kinds and not args.labels:
        raise RbvetError("a .npz training set is made from labels: give --labels STORE")
    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    with contextlib.ExitStack() as stack:
        store = None
        if args.labels:
            store_path = None if args.labels == DEFAULT_STORE else args.labels
            store = stack.enter_context(LabelStore(store_path, readonly=True))
        frame, table, fwhm = load_frame_and_catalog(args, log)
        model = load_model(args.model)
        threshold = check_threshold(model.threshold if args.threshold is None else args.threshold)
        x = np.asarray(table["x"], np.float64)
        y = np.asarray(table["y"], np.float64)
        labels = np.full(len(table), -1, np.int8)
        frame_id = None if store is None else store.find_frame(frame)
        if store is not None and frame_id is None:
            log(f"{args.frame}: not in label store {store.path}; no labels")
        elif frame_id is not None:
            stored_x, stored_y, stored_labels = store.frame_labels(frame_id)
            # matched as the window matches them (a re-detected catalog moves a little)
            found = match_positions(x, y, stored_x, stored_y, tolerance=MATCH_TOLERANCE)
            labels[found >= 0] = stored_labels[found[found >= 0]]
            log(
                f"Labels from {store.path}: {int(np.sum(labels == 1))} real, "
                f"{int(np.sum(labels == 0))} bogus of {len(table)} objects"
            )
        if kinds & {"catalog", "regions"}:
            scores, reasons = run_job(
                score_objects(frame, x, y, model, fwhm), ProgressBar("Classifying")
            )
            if args.uncertainty:
                from rbvet.core.learn.uncertainty import add_uncertainty, compute_uncertainty

                estimate = compute_uncertainty(frame, x, y, model, fwhm, keep_features=False)
                add_uncertainty(table, run_job(estimate, ProgressBar("Uncertainty")))
        for path, kind in outputs:
            if kind == "catalog":
                export_catalog(table, scores, labels, threshold, path, reasons=reasons)
                print(f"catalog -> {path}: {len(table)} objects, threshold {threshold:.2f}")
            elif kind == "regions":
                count = export_regions(
                    x, y, labels, scores, threshold, path, radius=max(3.0, 2.0 * fwhm)
                )
                print(f"regions -> {path}: {count} circles")
            else:
                if frame_id is None:
                    raise RbvetError("frame is not in the label store: nothing to export", path)
                data = store.training_data(model.params, frame_ids=[frame_id])
                if len(data) == 0:
                    raise RbvetError("no objects of this frame are labeled real or bogus", path)
                save_training_set(data, path, metadata={"frame": str(args.frame)})
                print(
                    f"training set -> {path}: {len(data)} objects "
                    f"({int(np.sum(data.labels == 1))} real)"
                )
    return 0


def _add_export_parser(commands):
    """The ``export`` subcommand and its options."""
    export = commands.add_parser(
        "export",
        help="write the vetted catalog, the labeled training set or DS9 regions",
        description="Score the objects of FRAME and write, by the extension of each -o: "
        "the catalog with rb_score, rb_label and the bogus flag (.ecsv, .fits, .csv), the "
        "labeled objects of FRAME from a label store as a training set (.npz: X, y, raw "
        "stamps, metadata) or a DS9 region file (.reg: green real, red bogus, unlabeled "
        "cyan above and orange below the threshold).",
    )
    _add_frame_arguments(export)
    _add_model_arguments(export)
    export.add_argument(
        "--labels",
        metavar="STORE",
        nargs="?",
        const=DEFAULT_STORE,
        help="label store whose labels of FRAME to export (found by the frame's pixels); "
        "without a value the default store",
    )
    export.add_argument(
        "--output",
        "-o",
        action="append",
        required=True,
        metavar="OUT",
        help="output file: .ecsv/.fits/.csv, .npz or .reg (repeat for several)",
    )
    _add_uncertainty_argument(export)
    export.set_defaults(handler=cmd_export)


def _add_uncertainty_argument(parser):
    """``--uncertainty``: the catalog gets the MC-dropout columns too."""
    parser.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write rb_score_mean and rb_bald: the mean score over 100 dropout samples "
        "of the last layer and BALD, how much they disagree (high: a label there teaches "
        "the model most); about the time of scoring again",
    )


def _add_model_arguments(parser):
    """``--model`` and ``--threshold``, the same for every command that scores."""
    parser.add_argument(
        "--model", "-m", help="model file (.keras or STDPipe .h5); default: the shipped model"
    )
    parser.add_argument(
        "--threshold", "-t", type=float, help="score threshold; default: the model card's (0.5)"
    )


def _add_classify_parser(commands):
    """The ``classify`` subcommand: one frame, or many frames on Dask."""
    classify = commands.add_parser(
        "classify",
        help="score the objects of frames and write catalogs with rb_score",
        description="Score each object of FRAME as real (1) or bogus (0) and write the "
        "catalog with rb_score, rb_reason and the bogus flag (0x1000) in flags. With "
        "several frames (or --list) they are classified on a Dask cluster (local by "
        "default, or --scheduler), one catalog per frame in OUTDIR next to a summary "
        "table; frames whose output exists are skipped, so a run can be resumed. The "
        "exit status is 1 when some frames failed (see the summary).",
    )
    _add_frame_arguments(classify, many=True)
    _add_model_arguments(classify)
    classify.add_argument(
        "--output",
        "-o",
        help="one frame: output catalog, format from the extension (.ecsv, .fits, .csv), "
        "default FRAME.rb.ecsv; several frames: output directory (required)",
    )
    classify.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    _add_uncertainty_argument(classify)
    many = classify.add_argument_group("several frames")
    many.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local Dask worker processes [one per core]; 1 runs in this process",
    )
    many.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="send the frames to an existing dask.distributed scheduler (tcp://host:8786)",
    )
    many.add_argument(
        "--format",
        choices=("ecsv", "fits", "csv"),
        help="format of the per-frame catalogs OUTDIR/<stem>.rb.<format> [ecsv]",
    )
    many.add_argument(
        "--overwrite", action="store_true", help="classify again frames already done"
    )
    classify.set_defaults(handler=cmd_classify)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rbvet", description="Vet detections on astronomical images with a real-bogus CNN."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_classify_parser(commands)

    simulate = commands.add_parser(
        "simulate",
        help="write a simulated frame and its truth-labeled detections",
        description="Simulate a frame (stars, galaxies, cosmic rays, hot pixels, trails, "
        "bad columns), detect its objects with sep and label them from truth. With --epochs N: "
        "N exposures of one field (same sky, a WCS each, pointing offsets of a few pixels, "
        "their own cosmic rays, hot pixels, trails and noise).",
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
    _add_optics_argument(simulate)
    simulate.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="write N aligned exposures of one field with a WCS, OUTPUT_1.fits ... "
        "OUTPUT_N.fits, each with its own artifacts, noise and catalog OUTPUT_K.ecsv",
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
    train.add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        help="fine-tune MODEL (a .keras file) instead of training a new network",
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        help="initial learning rate [1e-3; with --from 1e-4]",
    )
    _add_optics_argument(train)
    train.add_argument("--output", "-o", required=True, help="model file (.keras)")
    train.set_defaults(handler=cmd_train)
    _add_label_training_arguments(train)
    _add_evaluate_parser(commands)
    _add_export_parser(commands)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"rbvet.commands.{name}").add_parser(commands)

    gui = commands.add_parser(
        "gui",
        help="open the vetting window",
        description="Open FRAME (default: the shipped demo) in the vetting window; several "
        "frames, a folder or --list FILE open them as a project.",
    )
    from rbvet.gui.app import build_parser as add_gui_arguments  # argparse only, no Qt

    add_gui_arguments(gui)
    gui.set_defaults(handler=cmd_gui)
    return parser


def cmd_gui(args):
    """Open the vetting window (Qt is imported only here)."""
    from rbvet.gui.app import run

    return run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """rbvet's own warnings as one line (``rbvet: warning: ...``), without the source line."""
    from rbvet.core.errors import RbvetWarning

    if issubclass(category, RbvetWarning):
        print(f"rbvet: warning: {message}", file=file or sys.stderr)
    else:
        print(
            warnings.formatwarning(message, category, filename, lineno, line),
            end="",
            file=file or sys.stderr,
        )


def main(argv=None):
    """Entry point of the ``rbvet`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.handler(args)
    except RbvetError as error:
        print(f"rbvet: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rbvet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
