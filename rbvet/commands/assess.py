"""``rbvet assess``: how good is the score on this frame, by injection-recovery."""

from __future__ import annotations

import sys

from rbvet.core.errors import RbvetError


def add_parser(commands):
    """Add the ``assess`` subcommand."""
    from rbvet.cli import _add_frame_arguments, _add_model_arguments
    from rbvet.core.inject.inject import InjectionSettings

    assess = commands.add_parser(
        "assess",
        help="measure the classifier on a frame by injecting fakes into it (no labels)",
        description="Inject stars and small galaxies drawn with the frame's own PSF, and "
        "artifacts drawn relative to its noise (cosmic-ray spots, worms and tracks, hot "
        "pixels, short trails, column pieces), away from the frame's objects, in several "
        "rounds; detect and score them as the frame's own objects are; report star "
        "completeness against S/N, artifact rejection per kind, and FNR/FPR against the "
        "threshold with bootstrap 95 %% intervals.",
    )
    _add_frame_arguments(assess)
    _add_model_arguments(assess)
    assess.add_argument("--rounds", type=int, default=4, help="injection rounds [4]")
    assess.add_argument(
        "--injections", type=int, default=1000, help="objects to inject over all rounds [1000]"
    )
    assess.add_argument(
        "--extra-rounds",
        type=int,
        default=InjectionSettings.extra_rounds,
        help="more rounds, at most this many, while a small or crowded frame has had room "
        f"for fewer than --injections [{InjectionSettings.extra_rounds}]",
    )
    assess.add_argument("--seed", type=int, default=0, help="random seed of the injections [0]")
    assess.add_argument(
        "--target-fnr", type=float, default=0.05, help="report the threshold for this FNR [0.05]"
    )
    assess.add_argument(
        "--target-fpr", type=float, default=0.01, help="report the threshold for this FPR [0.01]"
    )
    assess.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    assess.add_argument(
        "--plot",
        metavar="PREFIX",
        help="write PREFIX_completeness.png and PREFIX_rates.png (needs matplotlib)",
    )
    assess.set_defaults(handler=cmd_assess)


def cmd_assess(args):
    """Assess the model on FRAME by injection-recovery and print a short summary."""
    from rbvet.cli import ProgressBar, _frame_options, check_writable
    from rbvet.core.classify import check_threshold
    from rbvet.core.inject.assess import assess_frame, save_assessment_plots, write_assessment
    from rbvet.core.inject.inject import InjectionSettings
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.evaluate import require_matplotlib

    if args.rounds < 1:
        raise RbvetError(f"--rounds must be at least 1, got {args.rounds}")
    if args.injections < 1:
        raise RbvetError(f"--injections must be at least 1, got {args.injections}")
    if args.extra_rounds < 0:
        raise RbvetError(f"--extra-rounds cannot be negative, got {args.extra_rounds}")
    for name in ("target_fnr", "target_fpr"):
        if not 0.0 < getattr(args, name) < 1.0:
            option = "--" + name.replace("_", "-")
            raise RbvetError(f"{option} must be between 0 and 1, got {getattr(args, name)}")
    threshold = None if args.threshold is None else check_threshold(args.threshold)
    if args.plot:
        require_matplotlib()  # fail before the long part, not after it
    if args.json:
        check_writable(args.json)
    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    settings = InjectionSettings(
        injections=args.injections,
        rounds=args.rounds,
        extra_rounds=args.extra_rounds,
        seed=args.seed,
    )
    assessment = run_job(
        assess_frame(
            args.frame,
            args.catalog,
            model_path=args.model,
            threshold=threshold,
            options=_frame_options(args),
            settings=settings,
            targets=(args.target_fnr, args.target_fpr),
            log=log,
        ),
        ProgressBar("Assessing"),
    )
    print(assessment.describe())
    if args.json:
        write_assessment(assessment, args.json)
        print(f"figures -> {args.json}")
    if args.plot:
        paths = save_assessment_plots(assessment, args.plot)
        print("plots -> " + ", ".join(str(path) for path in paths))
    return 0
