"""``rbvet weak-labels``: weak labels from repeated exposures and a reference catalog.

Each frame's objects are detected (or read from ``--catalog-pattern``) as ``rbvet
classify`` does; the frames are matched on the sky through their WCS
(`rbvet.core.learn.weak`). The labels go to a JSON list and/or a label store, where they
are kept apart from the user's own labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rbvet.core.errors import RbvetError


def add_parser(commands):
    """Add the ``weak-labels`` subcommand."""
    from rbvet.cli import DEFAULT_STORE, _add_frame_arguments

    parser = commands.add_parser(
        "weak-labels",
        help="weak labels from repeated exposures of a field and a reference catalog",
        description="Label objects without looking: an object detected at the same sky "
        "position in at least --min-repeats other exposures is real (source 'repeat'); one "
        "seen in no other exposure although they cover its position deeply enough to show "
        "it is a single-exposure artifact (bogus, source 'repeat'); one at the position of "
        "a --reference catalog source is real (source 'reference'). Saturated objects and "
        "blends get no opinion. The frames need a celestial WCS; no network is used.",
    )
    _add_frame_arguments(parser, many=True)
    parser.add_argument(
        "--json", metavar="OUT", help="write a JSON list of {frame, x, y, weak_label, source}"
    )
    parser.add_argument(
        "--labels",
        metavar="STORE",
        nargs="?",
        const=DEFAULT_STORE,
        help="record the weak labels in this label store, apart from the user's labels "
        "(without a value: the default store)",
    )
    parser.add_argument(
        "--reference",
        metavar="CAT",
        help="reference catalog with RA/Dec (CSV, FITS, VOTable, ECSV), e.g. a Gaia export",
    )
    parser.add_argument(
        "--reference-epoch",
        type=float,
        metavar="YEAR",
        help="epoch of the reference positions when it has proper motions (pmra, pmdec) "
        "but no ref_epoch column, e.g. 2016.0 for Gaia DR3",
    )
    parser.add_argument(
        "--match-radius",
        type=float,
        metavar="ARCSEC",
        help="reference match radius in arcseconds [one FWHM]",
    )
    parser.add_argument(
        "--min-repeats",
        type=int,
        default=2,
        metavar="N",
        help="other exposures an object must be seen in to be real [2, or all when fewer]",
    )
    parser.add_argument(
        "--min-absent",
        type=int,
        default=2,
        metavar="N",
        help="other exposures deep enough to show it that must miss an object for it to "
        "be a single-exposure artifact [2, or all when fewer]",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    parser.set_defaults(handler=cmd_weak_labels)


def cmd_weak_labels(args):
    """Weak labels of the objects of several frames (see `add_parser`)."""
    from rbvet.cli import DEFAULT_STORE, ProgressBar, _frame_options, check_writable
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.labels import default_store_path
    from rbvet.core.learn.weak import NEED_TWO_EXPOSURES, make_weak_labels, read_reference

    frames = list(args.frames)
    if args.list:
        from rbvet.core.batch import read_frame_list

        frames += read_frame_list(args.list)
    if not frames:
        raise RbvetError("give the frames: FRAME FRAME ... or --list FILE")
    if args.catalog:
        raise RbvetError("--catalog names the catalog of one frame; use --catalog-pattern")
    if not args.json and not args.labels:
        raise RbvetError("say where the weak labels go: --json OUT and/or --labels STORE")
    if len(frames) < 2 and not args.reference:
        raise RbvetError(f"{NEED_TWO_EXPOSURES} (--reference CAT)")
    if args.min_repeats < 1 or args.min_absent < 1:
        raise RbvetError("--min-repeats and --min-absent must be at least 1")
    if args.json:
        check_writable(args.json)
    reference = None
    if args.reference:
        reference = read_reference(args.reference, epoch=args.reference_epoch)

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    if args.catalog_pattern:
        from rbvet.core.batch import catalog_for

        pairs = [(frame, catalog_for(frame, args.catalog_pattern)) for frame in frames]
    else:
        pairs = [(frame, None) for frame in frames]
    store = None
    if args.labels:
        store = default_store_path() if args.labels == DEFAULT_STORE else args.labels
    made = run_job(
        make_weak_labels(
            pairs,
            store,
            options=_frame_options(args),
            reference=reference,
            match_radius=args.match_radius,
            min_repeats=args.min_repeats,
            min_absent=args.min_absent,
            log=log,
        ),
        ProgressBar("Frames", enabled=None if not args.quiet else False),
    )
    for name in made.lonely:
        log(f"{name} overlaps no other frame of its instrument and size: no repeat labels")
    if args.json:
        from rbvet.core.io.files import atomic_write

        text = json.dumps(made.records(), indent=1)
        atomic_write(Path(args.json), lambda temporary: Path(temporary).write_text(text))
    print(
        f"{len(made.frames)} frames, {made.objects} objects: {made.summary()}"
        + (f" -> {args.json}" if args.json else "")
    )
    return 0
