"""How many labels the label-next queue saves: label-next vs closest-to-threshold vs random.

Run: python scripts/measure_label_next.py [--seeds 5] [--frames 10] [--budget 1600]
         [--scratch] [--cache DIR] [--plot docs/images/label_next.png] [--json OUT]

Starting from the shipped model, on simulated frames it was not trained on: fresh seeds,
and correlated noise (each frame smoothed by a Gaussian of ``--smooth`` px, as resampling
or coadding does to real images; the model was trained on independent pixel noise, and
on frames like its training frames its last layer has nothing left to learn: refit on
every label of a fresh pool it does no better than shipped). The objects of
``--frames`` frames are split at random into a pool to label and held-out objects (the
frames vary a lot, in FWHM, density and artifacts; held-out frames of their own would
measure that variation more than the labels). An annotator who answers from the
simulator's truth labels the pool in batches of ``--batch``, in each order. After each
batch the last layer is refit (`rbvet.core.model.head.fit_head`: logistic regression on
the penultimate features with an L2 pull toward the shipped layer's weights, as label
review fits its heads), and the held-out objects are scored: AUC and FNR at FPR 1 %
against the number of labels used. The same refit follows every order. ``--scratch``
runs every order a second time with the layer refit from scratch (the same pull, toward
zero), to show what starting from the shipped layer is worth.

Orders:

- label next: `rbvet.core.learn.active` (BALD of the current layer under MC dropout, spread
  over k-means clusters of the pool's features, labeled objects out);
- closest to the threshold: ``|score - 0.5|`` of the current layer, smallest first;
- random.

Target: the labels each order needs to close ``--gap`` (80 %) of the gap between the
shipped layer and a layer refit on *every* pool label; the ratio random / label-next is the
figure of issue 19 (target >= 2). Features are computed once per frame set (one network
pass, kept in ``--cache`` per model); the loops are numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from rbvet.core.learn.active import feature_clusters, label_next_order
from rbvet.core.learn.metrics import error_rates, roc_auc
from rbvet.core.learn.uncertainty import mc_dropout
from rbvet.core.model.head import DEFAULT_PRIOR_L2, Head, fit_head

ORDERS = ("label next", "closest to threshold", "random")
TARGET_FPR = 0.01
DEFAULT_L2 = DEFAULT_PRIOR_L2
"""Pull of the refit layer toward the shipped one (in units of one label's log loss)."""
REFITS = ("prior", "scratch")


@dataclass
class LabeledFeatures:
    """Features of objects with their true labels (1 real, 0 bogus)."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)


def simulate_features(model, seed, n_frames, shape=(1024, 1024), smooth=0.8):
    """Detections of ``n_frames`` fresh simulated frames, their pixels smoothed by a
    Gaussian of ``smooth`` px (correlated noise): features and true labels."""
    import dataclasses

    from scipy.ndimage import gaussian_filter

    from rbvet.core.learn.train import training_set_from_frame
    from rbvet.core.simulate import simulate_frame

    features, labels = [], []
    for index, frame_seed in enumerate(np.random.SeedSequence(seed).spawn(n_frames)):
        sim = simulate_frame(shape=shape, rng=np.random.default_rng(frame_seed))
        if smooth > 0:
            image = gaussian_filter(sim.image, smooth).astype(sim.image.dtype)
            sim = dataclasses.replace(sim, image=image)
        objects = training_set_from_frame(sim, index)
        features.append(model.features(objects.inputs))
        labels.append(objects.labels)
    return LabeledFeatures(np.concatenate(features), np.concatenate(labels).astype(np.int8))


def model_key(model):
    """A short digest of the model's last layer: cached features of another model (an
    older shipped one) are not reused."""
    import hashlib

    head = model.head
    digest = hashlib.sha1(np.append(head.weights, head.bias).astype(np.float64).tobytes())
    return digest.hexdigest()[:8]


def cached_features(model, seed, n_frames, shape, smooth, folder=None):
    """`simulate_features`, kept in ``folder`` (an .npz per set and model) when one is
    given."""
    path = None
    if folder:
        name = f"features_{model_key(model)}_{seed}_{n_frames}_{shape[0]}_{smooth:g}.npz"
        path = Path(folder) / name
        if path.is_file():
            with np.load(path) as stored:
                return LabeledFeatures(stored["features"], stored["labels"])
    objects = simulate_features(model, seed, n_frames, shape, smooth)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=objects.features, labels=objects.labels)
    return objects


def split(objects, seed, pool_share=0.5):
    """A random split of objects into a pool and held-out objects."""
    order = np.random.default_rng([seed, 99]).permutation(len(objects))
    cut = int(pool_share * len(objects))
    pool, held_out = order[:cut], order[cut:]
    return (
        LabeledFeatures(objects.features[pool], objects.labels[pool]),
        LabeledFeatures(objects.features[held_out], objects.labels[held_out]),
    )


def refit_head(features, labels, prior, l2=DEFAULT_L2, scratch=False):
    """The last layer refit on labeled features (`fit_head`): pulled toward ``prior``, or
    with ``scratch`` toward zero (the same pull, but nothing kept of the shipped layer)."""
    if scratch:
        fitted = fit_head(features, labels, None, l2)
        return Head(fitted.weights, fitted.bias, prior.dropout_rate)
    return fit_head(features, labels, prior, l2)


def fnr_at_fpr(values, labels, fpr=TARGET_FPR):
    """FNR at the lowest threshold whose FPR <= ``fpr`` (``values``: any monotone score)."""
    candidates = np.append(np.unique(values), np.inf)
    fnr, fpr_at = error_rates(values, labels, candidates)
    return float(fnr[np.flatnonzero(fpr_at <= fpr)[0]])


def held_out_metrics(head, held_out):
    """(AUC, FNR at FPR 1 %) of ``head`` on held-out objects, ranked by logits (no ties)."""
    logits = head.logits(held_out.features)
    return roc_auc(logits, held_out.labels), fnr_at_fpr(logits, held_out.labels)


def next_batch(order, head, pool, labeled, batch, rng, clusters, threshold=0.5):
    """The next ``batch`` unlabeled pool objects in ``order``."""
    if order == "random":
        return rng.permutation(np.flatnonzero(~labeled))[:batch]
    if order == "closest to threshold":
        closeness = -np.abs(head.scores(pool.features) - threshold)
        return label_next_order(closeness, labeled=labeled)[:batch]
    _, bald = mc_dropout(pool.features, head, seed=int(rng.integers(2**31)))
    return label_next_order(bald, clusters, labeled)[:batch]


def run_order(
    order, head, pool, held_out, batch, budget, seed, clusters, l2=DEFAULT_L2, scratch=False
):
    """Label the pool in ``order``, refitting after each batch (``scratch``: see
    `refit_head`).

    Returns
    -------
    labels_used, auc, fnr : ndarray
        One entry per batch, starting with 0 labels (the shipped layer).
    """
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(pool), bool)
    current = head
    used, aucs, fnrs = [0], *map(list, zip(held_out_metrics(head, held_out), strict=True))
    while labeled.sum() < min(budget, len(pool)):
        picks = next_batch(order, current, pool, labeled, batch, rng, clusters)
        assert not labeled[picks].any()
        labeled[picks] = True
        current = refit_head(pool.features[labeled], pool.labels[labeled], head, l2, scratch)
        auc, fnr = held_out_metrics(current, held_out)
        used.append(int(labeled.sum()))
        aucs.append(auc)
        fnrs.append(fnr)
    return np.array(used), np.array(aucs), np.array(fnrs)


def labels_to_reach(used, values, target, higher_is_better=True):
    """Fewest labels after which ``values`` reach ``target`` and stay there; None if never."""
    values = np.asarray(values)
    good = values >= target if higher_is_better else values <= target
    bad = np.flatnonzero(~good)
    first = 0 if len(bad) == 0 else bad[-1] + 1
    return int(used[first]) if first < len(used) else None


def measure(
    model_head, sets, batch, budget, gap, n_clusters, log=print, l2=DEFAULT_L2, refits=("prior",)
):
    """Every order on every (pool, held-out) set; the curves and labels-to-target.

    Parameters
    ----------
    model_head : Head
    sets : list of (LabeledFeatures, LabeledFeatures, int)
        Pool, held-out objects and a seed, one per repetition.
    refits : tuple of str
        `REFITS` to run every order with: "prior" (the orders' own names in the result)
        and "scratch" (``"<order> (scratch)"``). The target is the same for both: a fit
        pulled toward the shipped layer on every pool label.

    Returns
    -------
    dict
    """
    runs = []
    for pool, held_out, seed in sets:
        ceiling_head = refit_head(pool.features, pool.labels, model_head, l2)
        start = held_out_metrics(model_head, held_out)
        ceiling = held_out_metrics(ceiling_head, held_out)
        targets = {
            "auc": start[0] + gap * (ceiling[0] - start[0]),
            "fnr": start[1] + gap * (ceiling[1] - start[1]),
        }
        clusters = feature_clusters(pool.features, n_clusters, seed=seed)
        run = {"seed": seed, "pool": len(pool), "held_out": len(held_out), "start": start}
        run.update(ceiling=ceiling, targets=targets, orders={})
        for refit, order in ((refit, order) for refit in refits for order in ORDERS):
            used, aucs, fnrs = run_order(
                *(order, model_head, pool, held_out, batch, budget, seed, clusters, l2),
                scratch=refit == "scratch",
            )
            run["orders"][order if refit == "prior" else f"{order} (scratch)"] = {
                "used": used.tolist(),
                "auc": aucs.tolist(),
                "fnr": fnrs.tolist(),
                "labels_for_auc": labels_to_reach(used, aucs, targets["auc"]),
                "labels_for_fnr": labels_to_reach(used, fnrs, targets["fnr"], False),
            }
        log(describe_run(run))
        runs.append(run)
    return {"batch": batch, "budget": budget, "gap": gap, "l2": l2, "runs": runs}


def order_names(result):
    """The curves of a `measure` result, in their order: the orders, then scratch ones."""
    return list(result["runs"][0]["orders"])


def describe_run(run):
    lines = [
        f"seed {run['seed']}: pool {run['pool']}, held out {run['held_out']}; shipped AUC "
        f"{run['start'][0]:.5f} FNR@1% {run['start'][1]:.4f}; all pool labels AUC "
        f"{run['ceiling'][0]:.5f} FNR@1% {run['ceiling'][1]:.4f}; targets AUC "
        f">= {run['targets']['auc']:.5f}, FNR@1% <= {run['targets']['fnr']:.4f}"
    ]
    for order, result in run["orders"].items():
        lines.append(
            f"  {order:32s} labels to target: AUC {result['labels_for_auc']}, "
            f"FNR@1% {result['labels_for_fnr']}"
        )
    return "\n".join(lines)


def summary(result):
    """Median labels-to-target per order over the runs (None counts as never), and the
    ratios random / label next."""
    budget = result["budget"]
    table = {}
    for order in order_names(result):
        for metric in ("auc", "fnr"):
            values = [run["orders"][order][f"labels_for_{metric}"] for run in result["runs"]]
            reached = [v for v in values if v is not None]
            table[(order, metric)] = {
                "per_run": values,
                "median": float(np.median([budget + 1 if v is None else v for v in values])),
                "reached": f"{len(reached)}/{len(values)}",
            }
    ratios = {
        metric: table[("random", metric)]["median"]
        / max(table[("label next", metric)]["median"], 1)
        for metric in ("auc", "fnr")
    }
    return table, ratios


def plot(result, path):
    """Each order's held-out AUC and FNR@1% against labels (mean over runs; the band
    min-max; refits from scratch dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"label next": "tab:green", "closest to threshold": "tab:orange", "random": "k"}
    for name in order_names(result):
        order = name.removesuffix(" (scratch)")
        scratch = name != order
        runs = [run["orders"][name] for run in result["runs"]]
        length = min(len(run["used"]) for run in runs)
        used = np.array(runs[0]["used"][:length])
        for axis, metric in zip(axes, ("auc", "fnr"), strict=True):
            values = np.array([run[metric][:length] for run in runs])
            mean = values.mean(axis=0)
            style = {"linestyle": "--", "linewidth": 1} if scratch else {}
            axis.plot(used, mean, color=colours[order], label=name, **style)
            if len(runs) > 1 and not scratch:
                axis.fill_between(
                    used, values.min(axis=0), values.max(axis=0), color=colours[order], alpha=0.15
                )
    axes[0].set_ylabel("held-out AUC")
    axes[1].set_ylabel("held-out FNR at FPR 1 %")
    for axis in axes:
        axis.set_xlabel("labels used")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    n = len(result["runs"])
    scratch = " dashed: refit from scratch;" if len(order_names(result)) > len(ORDERS) else ""
    figure.suptitle(
        f"Refitting the last layer from labels on new frames with correlated noise\n"
        f"(solid: pulled toward the shipped layer;{scratch} mean of {n} runs, band min-max)",
        fontsize=9,
    )
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="repetitions (fresh frames each)")
    parser.add_argument("--frames", type=int, default=10, help="frames per repetition")
    parser.add_argument("--cache", help="folder to keep the simulated features in")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--smooth", type=float, default=0.8, help="noise correlation (px)")
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--budget", type=int, default=1600)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.8, help="share of the gap to close")
    parser.add_argument("--l2", type=float, default=DEFAULT_L2)
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="also refit from scratch (no pull toward the shipped layer), every order",
    )
    parser.add_argument("--plot", help="PNG of the curves")
    parser.add_argument("--json", help="write the curves and figures as JSON")
    args = parser.parse_args(argv)

    from rbvet.core.model import load_model

    model = load_model()
    started = time.perf_counter()
    sets = []
    for repetition in range(args.seeds):
        seed = 190_000 + repetition  # not the training seed (2) nor its test sets
        shape = (args.size, args.size)
        objects = cached_features(model, seed, args.frames, shape, args.smooth, args.cache)
        sets.append((*split(objects, seed), seed))
        print(f"simulated set {repetition + 1}: {time.perf_counter() - started:.0f} s", flush=True)
    refits = REFITS if args.scratch else REFITS[:1]
    result = measure(
        *(model.head, sets, args.batch, args.budget, args.gap, args.clusters),
        l2=args.l2,
        refits=refits,
    )
    table, ratios = summary(result)
    print(f"labels to close {args.gap:.0%} of the gap (median over {args.seeds} runs):")
    for (order, metric), row in table.items():
        print(
            f"  {order:32s} {metric}: median {row['median']:.0f} ({row['reached']} reached)"
            f" per run {row['per_run']}"
        )
    for metric, ratio in ratios.items():
        print(f"random / label next ({metric}): {ratio:.2f} (target >= 2)")
    if args.plot:
        plot(result, args.plot)
        print(f"plot -> {args.plot}")
    if args.json:
        result["summary"] = {f"{o} {m}": row for (o, m), row in table.items()}
        result["ratios"] = ratios
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
