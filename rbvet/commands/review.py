"""``rbvet review``: rank the labels of a store by how likely each one is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rbvet.cli import DEFAULT_STORE, ProgressBar
from rbvet.core.errors import RbvetError


def add_parser(commands):
    """Add the ``review`` subcommand."""
    review = commands.add_parser(
        "review",
        help="list the labels of a store most likely to be wrong",
        description="Give every labeled object of STORE an out-of-sample probability of "
        "being real (k-fold logistic heads on the model's penultimate features) and rank "
        "the labels by confident learning: flagged labels (the object confidently belongs "
        "to the other class) first, then by the probability of the given label, lowest "
        "first. Prints the top of the list; --json writes it all.",
    )
    review.add_argument(
        "--labels",
        required=True,
        metavar="STORE",
        help="label store (.sqlite); 'default' for the user's store",
    )
    review.add_argument("--model", "-m", help="model whose features are used [the shipped model]")
    review.add_argument(
        "--top", type=int, metavar="N", help="print (and write) only the N most suspicious"
    )
    review.add_argument(
        "--json",
        metavar="OUT",
        help="write the list, most suspicious first, as JSON: frame, x, y (0-based), label "
        "(1 real, 0 bogus), probability_real, rank_score, flagged",
    )
    review.add_argument("--folds", type=int, default=5, metavar="K", help="folds [5]")
    review.add_argument("--seed", type=int, default=0, help="seed of the fold split [0]")
    review.set_defaults(handler=cmd_review)


def cmd_review(args):
    """Review the store's labels, print the most suspicious and write the JSON list."""
    from rbvet.cli import check_writable
    from rbvet.core.io.files import atomic_write
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.review import review_store
    from rbvet.core.model import load_model

    if args.top is not None and args.top < 1:
        raise RbvetError(f"--top must be at least 1, got {args.top}")
    if args.folds < 2:
        raise RbvetError(f"--folds must be at least 2, got {args.folds}")
    if args.json:
        check_writable(args.json)
    model = load_model(args.model)
    store = None if args.labels == DEFAULT_STORE else args.labels
    review = run_job(
        review_store(store, model, n_folds=args.folds, seed=args.seed), ProgressBar("Reviewing")
    )
    records = review.records(args.top)
    flagged = int(review.flagged.sum())
    print(
        f"{len(review)} labels reviewed with {review.model}: {flagged} flagged as likely "
        f"wrong (thresholds: bogus {review.thresholds[0]:.2f}, real {review.thresholds[1]:.2f})"
    )
    shown = records[: args.top or 20]
    for row in shown:
        label = "real" if row["label"] == 1 else "bogus"
        mark = "*" if row["flagged"] else " "
        print(
            f"{row['rank']:5d}{mark} {row['frame'] or '(frame ' + str(row['frame_id']) + ')'} "
            f"x={row['x']:.1f} y={row['y']:.1f} labeled {label}, "
            f"P(real)={row['probability_real']:.3f}"
        )
    if args.json:
        text = json.dumps(records, indent=1)
        atomic_write(args.json, lambda temporary: Path(temporary).write_text(text + "\n"))
        print(f"{len(records)} objects -> {args.json}")
    elif len(review) > len(shown):
        print(f"... {len(review) - len(shown)} more (--json OUT writes them all)", file=sys.stderr)
    return 0
