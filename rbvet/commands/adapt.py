"""``rbvet adapt``: fine-tune the model on injections into the user's own frames."""

from __future__ import annotations

import sys

from rbvet.core.errors import RbvetError


def add_parser(commands):
    """Add the ``adapt`` subcommand."""
    from rbvet.cli import _add_frame_arguments
    from rbvet.core.learn.adapt import (
        DEFAULT_ANCHOR_CONFIDENCE,
        DEFAULT_EPOCHS,
        DEFAULT_SIMULATED_RATIO,
    )

    adapt = commands.add_parser(
        "adapt",
        help="fine-tune the model on fakes injected into your frames (and your labels)",
        description="Inject stars, galaxies and artifacts into each FRAME, fine-tune a copy "
        "of the model on the detected injections (labelled by what was injected), on the "
        "labels of --labels STORE when given (and its weak labels with --weak-weight), and "
        "on simulated objects so it forgets "
        "nothing; hold out the last injection round(s) of every frame and some labelled "
        "frames, compare old and new on them, and write the new model with a card.",
    )
    _add_frame_arguments(adapt, many=True)
    adapt.add_argument("--model", "-m", help="model to adapt; default: the shipped model")
    adapt.add_argument("--labels", metavar="STORE", help="label store to train on as well")
    adapt.add_argument(
        "--weak-weight",
        type=float,
        metavar="W",
        help="also train on the store's weak labels (rbvet weak-labels) of objects without "
        "a label of yours, each weighing W in (0, 1] against 1 for yours, as rbvet train "
        "does; never held out [not used]",
    )
    adapt.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training passes [{DEFAULT_EPOCHS}]"
    )
    adapt.add_argument("--rounds", type=int, default=4, help="injection rounds per frame [4]")
    adapt.add_argument(
        "--injections", type=int, default=1000, help="objects injected per frame [1000]"
    )
    adapt.add_argument(
        "--held-out-rounds", type=int, default=1, help="rounds per frame held out [1]"
    )
    adapt.add_argument(
        "--simulated-ratio",
        type=float,
        default=DEFAULT_SIMULATED_RATIO,
        help=f"simulated objects per training sample (replay) [{DEFAULT_SIMULATED_RATIO}]",
    )
    adapt.add_argument(
        "--anchor-confidence",
        type=float,
        default=DEFAULT_ANCHOR_CONFIDENCE,
        metavar="C",
        help="also train on each frame's own objects the current model scores at least this "
        "sure of (>= C real, <= 1-C bogus), at that label, so adapting keeps what it "
        f"already does right there [{DEFAULT_ANCHOR_CONFIDENCE}]",
    )
    adapt.add_argument(
        "--no-anchors", action="store_true", help="injections (and labels) only, no anchors"
    )
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--output", "-o", required=True, help="the adapted model (.keras)")
    adapt.set_defaults(handler=cmd_adapt)


def cmd_adapt(args):
    """Adapt the model to FRAME(s), print old against new, write the model and its card."""
    from pathlib import Path

    from rbvet.cli import ProgressBar, _frame_options, check_writable, save_or_keep
    from rbvet.core.batch import catalog_for, read_frame_list
    from rbvet.core.inject.inject import InjectionSettings
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.adapt import adapt
    from rbvet.core.learn.retrain import check_weak_weight, format_comparison
    from rbvet.core.model import save_model

    frames = list(args.frames) + (read_frame_list(args.list) if args.list else [])
    if not frames:
        raise RbvetError("give a FRAME (or several, or --list FILE)")
    if args.catalog and len(frames) > 1:
        raise RbvetError("--catalog names the catalog of one frame; use --catalog-pattern")
    if Path(args.output).suffix.lower() != ".keras":
        raise RbvetError("the adapted model must be a .keras file", args.output)
    if args.epochs < 1:
        raise RbvetError(f"--epochs must be at least 1, got {args.epochs}")
    if args.labels and not Path(args.labels).exists():
        raise RbvetError("label store not found", args.labels)
    if args.weak_weight is not None and not args.labels:
        raise RbvetError("--weak-weight trains on a label store's weak labels: give --labels")
    check_weak_weight(args.weak_weight)
    check_writable(args.output)

    def catalog(frame):
        if args.catalog_pattern:
            return catalog_for(frame, args.catalog_pattern)
        return args.catalog

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    try:
        settings = InjectionSettings(
            injections=args.injections, rounds=args.rounds, seed=args.seed
        )
    except ValueError as error:
        raise RbvetError(str(error)) from None
    result = run_job(
        adapt(
            [(frame, catalog(frame)) for frame in frames],
            base_model=args.model,
            store_path=args.labels,
            epochs=args.epochs,
            settings=settings,
            simulated_ratio=args.simulated_ratio,
            held_out_rounds=args.held_out_rounds,
            seed=args.seed,
            options=_frame_options(args),
            log=log,
            weak_weight=args.weak_weight,
            anchor_confidence=None if args.no_anchors else args.anchor_confidence,
        ),
        ProgressBar("Adapting"),
    )
    for name, title in (("injections", "held-out injection rounds"), ("labels", "labels")):
        if name in result.comparisons:
            text = format_comparison(result.comparisons[name])
            if name == "injections":
                text = text.replace("Held-out labeled objects", "Held-out injected objects")
            print(f"On {title}:\n{text}")
    model = result.model

    def save(path):
        save_model(model.keras_model, path, model.card)
        return path

    written = save_or_keep(save, args.output)
    print(f"adapted model -> {written} ({result.seconds:.0f} s)")
    return 0
