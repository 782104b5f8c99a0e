"""Judge a model on labeled objects it never saw, and report the result.

Three sources of labeled objects, one evaluation:

* `evaluate_on_simulated`: fresh-seed simulated frames, detected and labeled exactly as
  training frames are (`rbvet train` judges its model with it, `rbvet evaluate
  --simulate` too);
* `evaluate_training_set`: a `TrainingSet` (inputs already preprocessed), e.g. one read
  with `rbvet.core.learn.dataset.load_training_set`;
* `evaluate_on_catalog`: a user's frame and catalog with a truth column, which is how a
  model is checked on another telescope's data.

Each returns an `Evaluation` (scores, labels, kinds, FWHM and the `summarize` dict).
`format_report` turns the dict into the aligned text table the command line prints, and
`save_plots` draws the ROC and the FNR/FPR-versus-threshold curves (matplotlib, Agg,
imported only then). Nothing here imports Qt; TensorFlow is reached only through the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.io.files import atomic_write
from rbvet.core.learn.metrics import (
    FWHM_BINS,
    error_rates,
    fwhm_bin_name,
    roc_auc,
    roc_curve,
    summarize,
)

TEST_SEED_OFFSET = 1_000_003
"""`rbvet train` judges its model on frames of seed ``--seed + TEST_SEED_OFFSET``."""

DEFAULT_EVALUATION_SEED = 2_000_029
"""Default seed of `rbvet evaluate --simulate`: far from training seeds (small integers)
and from the test frames of `rbvet train` (``seed + TEST_SEED_OFFSET``)."""

DEFAULT_TARGET_RATE = 0.01

REAL_WORDS = ("1", "real", "true", "yes", "t", "y")
BOGUS_WORDS = ("0", "bogus", "false", "no", "f", "n")
UNLABELED_WORDS = ("", "-1", "nan", "none", "null", "?", "unknown", "ambiguous", "--")
"""Truth values (case-insensitive) read as real, bogus and 'not labeled'."""

PLOT_SUFFIXES = ("_roc.png", "_rates.png")


@dataclass
class Evaluation:
    """Scores of a model on labeled objects and the metrics computed from them.

    Attributes
    ----------
    scores : ndarray (N,) float
        NaN for objects that could not be scored.
    labels : ndarray (N,) int8
        1 real, 0 bogus.
    kinds : ndarray (N,) str or None
    fwhm : ndarray (N,) float or None
        FWHM (px) of each object's frame.
    metrics : dict
        `rbvet.core.learn.metrics.summarize` output plus ``evaluated_on`` (and ``unlabeled``
        for catalogs).
    catalog_scores, catalog_reasons : ndarray (M,) or None
        For a catalog: the scores and reasons of all its rows, labeled or not.
    """

    scores: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray | None
    fwhm: np.ndarray | None
    metrics: dict
    catalog_scores: np.ndarray | None = None
    catalog_reasons: np.ndarray | None = None

    @property
    def threshold(self):
        return self.metrics["threshold"]


def evaluate_scores(
    scores,
    labels,
    threshold=0.5,
    kinds=None,
    fwhm=None,
    target_rate=DEFAULT_TARGET_RATE,
    description="",
):
    """Wrap scores and labels into an `Evaluation` with its metrics.

    Parameters
    ----------
    scores : array_like (N,)
    labels : array_like (N,)
        1 real, 0 bogus.
    threshold : float
    kinds, fwhm : array_like (N,), optional
    target_rate : float
    description : str
        What the objects are (stored as ``metrics['evaluated_on']``).

    Returns
    -------
    Evaluation
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int8)
    kinds = None if kinds is None else np.asarray(kinds).astype(str)
    fwhm = None if fwhm is None else np.broadcast_to(np.asarray(fwhm, np.float64), scores.shape)
    metrics = summarize(scores, labels, threshold, kinds=kinds, fwhm=fwhm, target_rate=target_rate)
    if description:
        metrics["evaluated_on"] = description
    return Evaluation(scores, labels, kinds, fwhm, metrics)


def evaluate_training_set(
    model, data, threshold=None, target_rate=DEFAULT_TARGET_RATE, description=""
):
    """Score a `TrainingSet` (preprocessed inputs with labels) and evaluate.

    Parameters
    ----------
    model : RealBogusModel
    data : rbvet.core.learn.dataset.TrainingSet
        ``kinds`` and ``fwhm`` are used when present.
    threshold : float, optional
        Default: the model card's.
    target_rate : float
    description : str

    Returns
    -------
    Evaluation
    """
    threshold = model.threshold if threshold is None else float(threshold)
    scores = model.predict(data.inputs) if len(data) else np.zeros(0, np.float32)
    return evaluate_scores(
        scores,
        data.labels,
        threshold,
        kinds=data.kinds,
        fwhm=data.fwhm,
        target_rate=target_rate,
        description=description,
    )


def evaluate_on_simulated(
    model,
    n_frames,
    seed=DEFAULT_EVALUATION_SEED,
    shape=(1024, 1024),
    threshold=None,
    target_rate=DEFAULT_TARGET_RATE,
    workers=None,
    log=None,
    **options,
):
    """Simulate fresh frames, detect and label them as training does, score and evaluate.

    A job (`rbvet.core.jobs`): yields the simulation's `Progress`.

    Parameters
    ----------
    model : RealBogusModel
        Its card's ``real_kinds`` decide which source kinds are labeled real.
    n_frames : int
    seed : int
        Seed of the frames; pick one the model was not trained on.
    shape : tuple of int
    threshold : float, optional
        Default: the model card's.
    target_rate : float
    workers : int, optional
        Simulation processes (default: all cores).
    log : callable, optional
        Passed to `rbvet.core.learn.train.simulated_training_set`.
    **options
        Simulator options (e.g. ``fwhm_range``), as for `simulated_training_set`.

    Returns
    -------
    Evaluation
        Detections the simulator cannot label (ambiguous) or rbvet cannot score are left
        out when the frames are turned into a set, as in training.
    """
    from rbvet.core.learn.train import simulated_training_set

    if n_frames < 1:
        raise RbvetError(f"need at least one frame to simulate, got {n_frames}")
    real_kinds = tuple(model.card.get("real_kinds", ("star", "galaxy")))
    data = yield from simulated_training_set(
        n_frames=n_frames,
        shape=tuple(shape),
        seed=seed,
        real_kinds=real_kinds,
        workers=workers,
        log=log,
        **options,
    )
    size = "x".join(str(side) for side in shape)
    frames = "frame" if n_frames == 1 else "frames"
    return evaluate_training_set(
        model,
        data,
        threshold=threshold,
        target_rate=target_rate,
        description=f"{n_frames} fresh-seed simulated {size} {frames} (seed {seed})",
    )


def truth_labels(values, column="truth"):
    """Real (1), bogus (0) or unlabeled (-1) for each value of a truth column.

    Accepted: booleans; numbers 1/0 (-1 and NaN mean unlabeled, as in the catalogs
    `rbvet simulate` writes); strings ``real``/``bogus``, ``true``/``false``, ``yes``/``no``
    or ``1``/``0`` in any case (empty, ``-1``, ``unknown`` ... mean unlabeled). Masked
    entries are unlabeled.

    Parameters
    ----------
    values : array_like
        The column (a masked astropy column is fine).
    column : str
        Its name, for the error message.

    Returns
    -------
    ndarray of int8

    Raises
    ------
    RbvetError
        Any other value, or no labeled object at all.
    """
    masked = np.ma.getmaskarray(values)
    data = np.asarray(np.ma.getdata(values))
    labels = np.full(data.shape, -1, np.int8)
    if data.ndim != 1:
        raise RbvetError(f"truth column '{column}' is not one value per object")
    if data.dtype.kind == "b":
        labels[:] = data.astype(np.int8)
        unknown = np.zeros(data.shape, bool)
        shown = data
    elif data.dtype.kind in "iuf":
        numbers = data.astype(np.float64)
        labels[numbers == 1] = 1
        labels[numbers == 0] = 0
        unknown = ~np.isin(numbers, (0.0, 1.0, -1.0)) & ~np.isnan(numbers)
        shown = data
    elif data.dtype.kind in "SUO":
        words = np.char.lower(np.char.strip(data.astype(str)))
        labels[np.isin(words, REAL_WORDS)] = 1
        labels[np.isin(words, BOGUS_WORDS)] = 0
        unknown = ~np.isin(words, REAL_WORDS + BOGUS_WORDS + UNLABELED_WORDS)
        shown = data.astype(str)
    else:
        raise RbvetError(f"truth column '{column}' has values of type {data.dtype}")
    labels[masked] = -1
    unknown &= ~masked
    if unknown.any():
        examples = ", ".join(repr(str(value)) for value in np.unique(shown[unknown])[:5])
        raise RbvetError(
            f"truth column '{column}' has values other than 1/0, true/false or real/bogus: "
            f"{examples} (-1, NaN or empty mark objects without a label)"
        )
    if not (labels >= 0).any():
        raise RbvetError(f"truth column '{column}' labels no object real or bogus")
    return labels


def _catalog_column(table, name, what, source=None):
    if name not in table.colnames:
        shown = ", ".join(table.colnames[:12]) + (", ..." if len(table.colnames) > 12 else "")
        raise RbvetError(f"no {what} column '{name}' in the catalog (columns: {shown})", source)
    return table[name]


def evaluate_on_catalog(
    model,
    frame,
    table,
    truth_column,
    fwhm,
    kind_column=None,
    threshold=None,
    target_rate=DEFAULT_TARGET_RATE,
    description="",
    source=None,
):
    """Score the objects of a frame's labeled catalog and evaluate.

    A job (`rbvet.core.jobs`): yields `Progress` while scoring.

    Parameters
    ----------
    model : RealBogusModel
    frame : Frame
    table : astropy.table.Table
        Catalog with 0-based ``x``, ``y`` (as `read_catalog` returns it).
    truth_column : str
        Column of truth labels (see `truth_labels`); unlabeled objects are left out and
        counted in ``metrics['unlabeled']``.
    fwhm : float
        Frame FWHM (px), for rescaling and for the per-FWHM AUC.
    kind_column : str, optional
        Column of object kinds, for the per-kind pass rates.
    threshold : float, optional
        Default: the model card's.
    target_rate : float
    description : str
    source : str, optional
        The catalog's file name, for error messages.

    Returns
    -------
    Evaluation
        Objects that could not be scored keep score NaN and count in the unscored fraction.
    """
    from rbvet.core.classify import score_objects

    try:
        labels = truth_labels(_catalog_column(table, truth_column, "truth"), truth_column)
    except RbvetError as error:
        raise RbvetError(error.problem, source) from None
    kinds = None
    if kind_column is not None:
        kinds = np.asarray(_catalog_column(table, kind_column, "kind", source)).astype(str)
    labeled = labels >= 0
    x = np.asarray(table["x"], np.float64)
    y = np.asarray(table["y"], np.float64)
    all_scores, reasons = yield from score_objects(frame, x, y, model, fwhm)
    scores = all_scores[labeled]
    threshold = model.threshold if threshold is None else float(threshold)
    evaluation = evaluate_scores(
        scores,
        labels[labeled],
        threshold,
        kinds=None if kinds is None else kinds[labeled],
        fwhm=float(fwhm),
        target_rate=target_rate,
        description=description,
    )
    evaluation.metrics["unlabeled"] = int(np.sum(~labeled))
    evaluation.catalog_scores, evaluation.catalog_reasons = all_scores, reasons
    return evaluation


def metrics_for_json(value):
    """A copy of a metrics dict with NaN (undefined figures) as None, i.e. JSON ``null``."""
    if isinstance(value, dict):
        return {str(key): metrics_for_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [metrics_for_json(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_metrics_json(metrics, path):
    """Write a metrics dict as strict JSON (NaN as null), atomically."""
    text = json.dumps(metrics_for_json(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def _target(rate):
    return f"{100.0 * rate:g} %"


def _percent(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{100.0 * value:.2f} %"


def _fixed(value, digits):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fwhm_bin_label(low, high):
    if low <= 0:
        return f"< {high:g} px"
    if not np.isfinite(high):
        return f"> {low:g} px"
    return f"{low:g}-{high:g} px"


def _table(rows, header, align):
    """Rows of strings under a header as aligned text lines, rows indented by two spaces.

    ``align`` is '<' or '>' for each column.
    """
    rows = [["  " + row[0], *row[1:]] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row):
        cells = (f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True))
        return "  ".join(cells).rstrip()

    return [line(header)] + [line(row) for row in rows]


def _truth_of_kind(real_fraction):
    if real_fraction == 1.0:
        return "real"
    if real_fraction == 0.0:
        return "bogus"
    return f"{100.0 * real_fraction:.0f} % real"


def format_report(metrics):
    """The evaluation table (from `summarize`'s dict) as aligned plain text.

    Parameters
    ----------
    metrics : dict
        `summarize` output, optionally with ``evaluated_on`` and ``unlabeled``; NaN or
        None figures print as ``n/a``.

    Returns
    -------
    str
    """
    target = metrics.get("target_rate", DEFAULT_TARGET_RATE)
    lines = []
    if metrics.get("evaluated_on"):
        lines.append(f"Evaluated on {metrics['evaluated_on']}")
    counts = f"{metrics['objects']} ({metrics['real']} real, {metrics['bogus']} bogus)"
    summary = [("objects", counts)]
    if metrics.get("unlabeled"):
        summary.append(("unlabeled", f"{metrics['unlabeled']} (left out)"))
    summary += [
        ("unscored", _percent(metrics["unscored_fraction"])),
        ("ROC AUC", _fixed(metrics["auc"], 4)),
    ]
    width = max(len(name) for name, _ in summary)
    lines += [f"{name:<{width}}  {value}" for name, value in summary]

    lines.append("")
    points = [
        ("at the threshold", metrics["threshold"], metrics["fnr"], metrics["fpr"]),
        (
            f"FPR <= {_target(target)}",
            metrics.get("threshold_at_target_fpr"),
            metrics.get("fnr_at_target_fpr"),
            metrics.get("fpr_at_target_fpr"),
        ),
        (
            f"FNR <= {_target(target)}",
            metrics.get("threshold_at_target_fnr"),
            metrics.get("fnr_at_target_fnr"),
            metrics.get("fpr_at_target_fnr"),
        ),
    ]
    lines += _table(
        [[name, _fixed(t, 3), _percent(fnr), _percent(fpr)] for name, t, fnr, fpr in points],
        ["operating point", "threshold", "FNR", "FPR"],
        "<>>>",
    )

    if "auc_by_fwhm" in metrics:
        lines.append("")
        rows = []
        for low, high in FWHM_BINS:
            name = fwhm_bin_name(low, high)
            count = metrics.get("counts_by_fwhm", {}).get(name, {})
            rows.append(
                [
                    _fwhm_bin_label(low, high),
                    str(count.get("objects", "")),
                    str(count.get("real", "")),
                    str(count.get("bogus", "")),
                    _fixed(metrics["auc_by_fwhm"].get(name), 4),
                ]
            )
        lines += _table(rows, ["FWHM", "objects", "real", "bogus", "AUC"], "<>>>>")

    if "called_real_by_kind" in metrics:
        called_real = metrics["called_real_by_kind"]
        real_fraction = metrics.get("real_fraction_by_kind", {})
        scored = metrics.get("scored_by_kind", {})
        # Real kinds first (their "called real" is the retention), then the artifacts
        # (their "rejected" is the rejection).
        order = sorted(called_real, key=lambda kind: (-real_fraction.get(kind, 0.0), kind))
        rows = [
            [
                kind,
                _truth_of_kind(real_fraction[kind]) if kind in real_fraction else "",
                str(scored.get(kind, "")),
                _percent(called_real[kind]),
                _percent(None if called_real[kind] is None else 1.0 - called_real[kind]),
            ]
            for kind in order
        ]
        lines.append("")
        lines += _table(rows, ["kind", "truth", "scored", "called real", "rejected"], "<<>>>")
        lines.append("(called real = retention of real kinds; rejected = rejection of artifacts)")
    return "\n".join(lines)


def require_matplotlib():
    """Import matplotlib's Agg canvas and Figure, or raise a one-line `RbvetError`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RbvetError(
            "plots need matplotlib: pip install 'rbvet[plots]' (or pip install matplotlib)"
        ) from None
    return FigureCanvasAgg, Figure


def plot_paths(prefix):
    """``PREFIX_roc.png`` and ``PREFIX_rates.png``."""
    prefix = str(prefix)
    return tuple(Path(prefix + suffix) for suffix in PLOT_SUFFIXES)


def save_plots(evaluation, prefix, title=None):
    """Save the ROC curve and the FNR/FPR-versus-threshold curves as two PNG files.

    The ROC has a logarithmic false-positive axis (a good model lives at FPR of a few
    per cent or less) and marks the threshold's operating point; the rates plot shows FNR
    and FPR against the threshold on a logarithmic axis, with the threshold and the target
    rate marked. Drawn with matplotlib's Agg canvas, without pyplot.

    Parameters
    ----------
    evaluation : Evaluation
    prefix : str or Path
        Files are ``PREFIX_roc.png`` and ``PREFIX_rates.png``.
    title : str, optional
        First line of both titles (default: ``metrics['evaluated_on']``).

    Returns
    -------
    tuple of Path
        The ROC and rates files.
    """
    canvas_class, figure_class = require_matplotlib()
    scores, labels = evaluation.scores, evaluation.labels
    metrics = evaluation.metrics
    scored = np.isfinite(scores)
    n_real = int(np.sum(labels[scored] == 1))
    n_bogus = int(np.sum(labels[scored] == 0))
    if n_real == 0 or n_bogus == 0:
        raise RbvetError("cannot plot ROC and error rates: need both real and bogus objects")
    threshold = metrics["threshold"]
    target = metrics.get("target_rate", DEFAULT_TARGET_RATE)
    title = title or metrics.get("evaluated_on", "")
    roc_path, rates_path = plot_paths(prefix)

    false_positive, true_positive, _ = roc_curve(scores, labels)
    fnr_here, fpr_here = (rate[0] for rate in error_rates(scores, labels, [threshold]))
    smallest_fpr = 0.5 / n_bogus
    figure = figure_class(figsize=(6.0, 5.0), layout="constrained")
    canvas_class(figure)
    axes = figure.add_subplot()
    axes.plot(np.maximum(false_positive, smallest_fpr), true_positive, color="C0", lw=1.5)
    axes.plot(
        max(fpr_here, smallest_fpr),
        1.0 - fnr_here,
        "o",
        color="C3",
        label=f"threshold {threshold:.3f}: FNR {_percent(fnr_here)}, FPR {_percent(fpr_here)}",
    )
    axes.set_xscale("log")
    axes.set_xlim(smallest_fpr, 1.0)
    # Show the curve from the first false positive on (and at least from TPR 0.9).
    first_false_positive_tpr = true_positive[false_positive > 0].min()
    axes.set_ylim(max(0.0, min(first_false_positive_tpr, 0.9) - 0.02), 1.005)
    axes.set_xlabel("false-positive rate (bogus called real)")
    axes.set_ylabel("true-positive rate (real kept)")
    axes.set_title(f"{title}\nROC AUC {roc_auc(scores, labels):.4f}", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    _save_figure(figure, roc_path)

    thresholds = np.linspace(0.0, 1.0, 1001)
    fnr, fpr = error_rates(scores, labels, thresholds)
    smallest_rate = 0.5 / max(n_real, n_bogus)
    figure = figure_class(figsize=(6.0, 4.5), layout="constrained")
    canvas_class(figure)
    axes = figure.add_subplot()
    axes.plot(thresholds, np.maximum(fnr, smallest_rate), color="C0", label="FNR (real lost)")
    axes.plot(
        thresholds, np.maximum(fpr, smallest_rate), color="C1", label="FPR (bogus called real)"
    )
    axes.axvline(threshold, color="C3", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    axes.axhline(target, color="0.5", ls=":", lw=1, label=f"target rate {_target(target)}")
    axes.set_yscale("log")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(smallest_rate, 1.2)
    axes.set_xlabel("score threshold")
    axes.set_ylabel("error rate")
    axes.set_title(
        f"{title}\nat {threshold:.3f}: FNR {_percent(fnr_here)}, FPR {_percent(fpr_here)}",
        fontsize=9,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper center", fontsize=8)
    _save_figure(figure, rates_path)
    return roc_path, rates_path


def _save_figure(figure, path):
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
