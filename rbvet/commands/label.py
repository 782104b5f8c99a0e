"""``rbvet label``: import a catalog's truth or vetting column into a label store."""

from __future__ import annotations

import sys

from rbvet.cli import (
    DEFAULT_STORE,
    ProgressBar,
    _add_frame_file_arguments,
    load_frame_and_catalog,
)


def add_parser(commands):
    """Add the ``label`` subcommand."""
    label = commands.add_parser(
        "label",
        help="import the labels of a catalog column into a label store",
        description="Read a truth or vetting column of FRAME's catalog (1/0, true/false or "
        "real/bogus in any case; blank, -1 or NaN mean no label) into a label store, with "
        "origin 'import'. Objects are matched to the frame's stored objects as the window "
        "matches them, so the labels show up in the window, in retraining and in "
        "`rbvet review`.",
    )
    label.add_argument("frame", help="FITS image")
    label.add_argument(
        "--catalog", "-c", required=True, metavar="CAT", help="catalog with the column"
    )
    label.add_argument("--column", required=True, metavar="COL", help="column of labels")
    label.add_argument(
        "--labels",
        required=True,
        metavar="STORE",
        help="label store (.sqlite; created if missing); 'default' for the user's store",
    )
    label.add_argument(
        "--annotator",
        metavar="NAME",
        help="who gave these labels [RBVET_ANNOTATOR or the login name]",
    )
    label.add_argument("--model", "-m", help="model that scores the objects [the shipped model]")
    _add_frame_file_arguments(label)
    label.add_argument("--fwhm", type=float, help="frame FWHM in pixels; estimated if absent")
    label.set_defaults(handler=cmd_label, detect_threshold=3.0)


def cmd_label(args):
    """Import the labels and say how many were imported and skipped."""
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.label_import import import_labels
    from rbvet.core.model import load_model

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    frame, table, fwhm = load_frame_and_catalog(args, log)
    model = load_model(args.model)
    store = None if args.labels == DEFAULT_STORE else args.labels
    result = run_job(
        import_labels(
            frame,
            table,
            fwhm,
            args.column,
            store,
            model,
            annotator=args.annotator,
            frame_path=args.frame,
            source=args.catalog,
        ),
        ProgressBar("Scoring"),
    )
    print(
        f"{args.frame}: imported {result.imported} labels from '{args.column}' "
        f"({result.real} real, {result.bogus} bogus); {result.unchanged} already so; "
        f"skipped {result.skipped} ({result.unlabeled} without a label, "
        f"{result.unscorable} without a usable stamp)"
    )
    return 0
