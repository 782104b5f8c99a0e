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
    from rbvet.cli import check_writable
    from rbvet.core.learn.weak import (
        read_reference,
        reference_labels,
        repeat_labels,
        weak_label_records,
    )

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
        raise RbvetError(
            "weak labels from repeats need at least two exposures of a field "
            "(or give --reference CAT to match one frame to a catalog)"
        )
    if args.min_repeats < 1 or args.min_absent < 1:
        raise RbvetError("--min-repeats and --min-absent must be at least 1")
    if args.json:
        check_writable(args.json)
    reference = None
    if args.reference:
        reference = read_reference(args.reference, epoch=args.reference_epoch)

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    loaded = [_load(frame, args, log) for frame in frames]
    objects = [entry[1] for entry in loaded]
    missing = [str(frame) for frame, entry in zip(frames, objects, strict=True) if entry is None]
    if missing:
        raise RbvetError(
            "weak labels match frames on the sky, and these have no celestial WCS: "
            + ", ".join(missing)
        )
    repeat = None
    if len(objects) > 1:
        from rbvet.core.learn.weak import overlap_groups

        for group in overlap_groups(objects):
            if len(group) == 1:
                log(f"{objects[group[0]].name} overlaps no other frame: no repeat labels")
        repeat = repeat_labels(objects, min_repeats=args.min_repeats, min_absent=args.min_absent)
    matched = None
    if reference is not None:
        matched = reference_labels(objects, reference, radius=args.match_radius)
    records = weak_label_records(objects, repeat=repeat, reference=matched)
    if args.json:
        from rbvet.core.io.files import atomic_write

        text = json.dumps(records, indent=1)
        atomic_write(Path(args.json), lambda temporary: Path(temporary).write_text(text))
    if args.labels:
        _store(args.labels, loaded, repeat, matched)
    counts = {}
    for record in records:
        key = (record["source"], record["weak_label"])
        counts[key] = counts.get(key, 0) + 1
    total = sum(len(entry.x) for entry in objects)
    print(
        f"{len(objects)} frames, {total} objects: "
        f"repeat: {counts.get(('repeat', 1), 0)} real, {counts.get(('repeat', 0), 0)} "
        f"single-exposure artifacts; reference: {counts.get(('reference', 1), 0)} real"
        + (f" -> {args.json}" if args.json else "")
    )
    return 0


def _load(path, args, log):
    """(frame, FrameObjects or None when it has no WCS, fwhm) of one frame.

    The frame itself is kept only for ``--labels`` (its stamps go to the store); the
    FrameObjects keep the noise and background-subtracted maps the matching needs.
    """
    from rbvet.cli import _frame_options
    from rbvet.core.batch import catalog_for
    from rbvet.core.classify import open_frame_and_catalog
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.weak import frame_objects

    catalog = catalog_for(path, args.catalog_pattern) if args.catalog_pattern else None
    frame, table, fwhm = run_job(
        open_frame_and_catalog(path, catalog, options=_frame_options(args), log=log)
    )
    if frame.wcs is None:
        return frame, None, fwhm
    objects = frame_objects(frame, table, fwhm, threshold=args.detect_threshold, name=str(path))
    return (frame if args.labels else None), objects, fwhm


def _store(store_path, loaded, repeat, reference):
    """Record the weak labels in a label store (objects with an opinion are added)."""
    import numpy as np

    from rbvet.cli import DEFAULT_STORE
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.learn.labels import LabelStore
    from rbvet.core.learn.weak import REFERENCE, REPEAT

    with LabelStore(None if store_path == DEFAULT_STORE else store_path) as store:
        for index, (frame, objects, fwhm) in enumerate(loaded):
            opinions = []
            if repeat is not None:
                opinions.append((REPEAT, repeat[index].label))
            if reference is not None:
                opinions.append((REFERENCE, reference[index]))
            having = np.zeros(len(objects.x), bool)
            for _, labels in opinions:
                having |= labels >= 0
            if not having.any():
                continue
            rescale = plan_rescale(fwhm)
            rows = np.flatnonzero(having)
            x, y = objects.x[rows], objects.y[rows]
            frame_id = store.add_frame(frame, fwhm, rescale)
            ids = np.full(len(objects.x), -1, np.int64)
            ids[rows] = store.add_objects(frame_id, x, y, cut_stamps(frame, x, y, rescale))
            for source, labels in opinions:
                chosen = (labels >= 0) & (ids >= 0)
                if chosen.any():
                    store.set_weak_labels(ids[chosen], labels[chosen], source)
