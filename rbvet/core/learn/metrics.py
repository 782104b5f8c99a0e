"""Classifier metrics from scores and labels: ROC, AUC, error rates versus threshold.

Conventions: label 1 = real, 0 = bogus; an object is called real when its score is
>= the threshold. FNR is the fraction of real objects called bogus (lost sources), FPR
the fraction of bogus objects called real (artifacts let through). NaN scores are left
out; `summarize` reports how many there were.
"""

from __future__ import annotations

import numpy as np

FWHM_BINS = ((0.0, 2.5), (2.5, 4.5), (4.5, np.inf))


def _finite(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    keep = np.isfinite(scores) & ((labels == 0) | (labels == 1))
    return scores[keep], labels[keep].astype(np.int8)


def roc_auc(scores, labels):
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half); NaN if one class."""
    scores, labels = _finite(scores, labels)
    n_real = int(labels.sum())
    n_bogus = len(labels) - n_real
    if n_real == 0 or n_bogus == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - n_real * (n_real + 1) / 2.0) / (n_real * n_bogus))


def error_rates(scores, labels, thresholds):
    """FNR and FPR at each threshold.

    Returns
    -------
    fnr, fpr : ndarray
        Same shape as ``thresholds``; NaN where a class is absent.
    """
    scores, labels = _finite(scores, labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    real = np.sort(scores[labels == 1])
    bogus = np.sort(scores[labels == 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        fnr = np.searchsorted(real, thresholds, side="left") / len(real)
        fpr = 1.0 - np.searchsorted(bogus, thresholds, side="left") / len(bogus)
    return fnr, fpr


def bootstrap_error_rates(scores, labels, thresholds, n_boot=200, level=0.95, rng=0):
    """FNR and FPR at each threshold with bootstrap confidence intervals.

    A Poisson bootstrap (each object counted ``Poisson(1)`` times per resample), all
    resamples at once: each object's threshold bin is found once, and a resample's
    counts below each threshold are cumulative sums of weighted bin counts.

    Parameters
    ----------
    scores, labels : array_like
        As for `error_rates` (1 real, 0 bogus; NaN scores left out).
    thresholds : array_like
        Increasing thresholds.
    n_boot : int
        Resamples.
    level : float
        Coverage of the intervals (0.95: the 2.5 and 97.5 percentiles).
    rng : numpy.random.Generator or int

    Returns
    -------
    dict of ndarray
        ``fnr``, ``fpr`` (as `error_rates`) and ``fnr_low``, ``fnr_high``, ``fpr_low``,
        ``fpr_high``; all NaN for a class that is absent.
    """
    scores, labels = _finite(scores, labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    fnr, fpr = error_rates(scores, labels, thresholds)
    rng = np.random.default_rng(rng)
    # score < thresholds[j]  <=>  j >= searchsorted(thresholds, score, "right")
    bins = np.searchsorted(thresholds, scores, side="right")
    tails = (0.5 * (1.0 - level) * 100.0, 100.0 - 0.5 * (1.0 - level) * 100.0)
    result = {"fnr": fnr, "fpr": fpr}
    for name, members, below_is_error in (("fnr", labels == 1, True), ("fpr", labels == 0, False)):
        count = int(members.sum())
        if count == 0:
            nan = np.full(thresholds.shape, np.nan)
            result[f"{name}_low"], result[f"{name}_high"] = nan, nan.copy()
            continue
        weights = rng.poisson(1.0, size=(n_boot, count)).astype(np.float64)
        per_bin = np.zeros((n_boot, len(thresholds) + 1))
        np.add.at(per_bin.T, bins[members], weights.T)
        below = np.cumsum(per_bin, axis=1)[:, : len(thresholds)]
        total = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        rate = below / total if below_is_error else 1.0 - below / total
        low, high = np.percentile(rate, tails, axis=0)
        result[f"{name}_low"], result[f"{name}_high"] = low, high
    return result


def roc_curve(scores, labels):
    """False- and true-positive rates over all distinct thresholds (for plotting)."""
    scores, labels = _finite(scores, labels)
    thresholds = np.concatenate([[-np.inf], np.unique(scores), [np.inf]])
    fnr, fpr = error_rates(scores, labels, thresholds)
    return fpr, 1.0 - fnr, thresholds


def threshold_for_rate(scores, labels, fpr=None, fnr=None):
    """The threshold that keeps FPR (or FNR) at or below the target, most lenient first.

    With ``fpr`` the lowest threshold whose FPR <= target (keeps most real objects);
    with ``fnr`` the highest threshold whose FNR <= target (rejects most bogus ones).
    """
    if (fpr is None) == (fnr is None):
        raise ValueError("give exactly one of fpr and fnr")
    scores, labels = _finite(scores, labels)
    candidates = np.concatenate([np.unique(scores), [np.nextafter(1.0, 2.0)]])
    fnr_at, fpr_at = error_rates(scores, labels, candidates)
    if fpr is not None:
        ok = fpr_at <= fpr
        return float(candidates[ok].min()) if ok.any() else float("nan")
    ok = fnr_at <= fnr
    return float(candidates[ok].max()) if ok.any() else float("nan")


def _rate_at(scores, labels, threshold, which):
    """FNR (``which=0``) or FPR (``which=1``) at one threshold; NaN for a NaN threshold."""
    if not np.isfinite(threshold):
        return float("nan")
    return float(error_rates(scores, labels, [threshold])[which][0])


def fwhm_bin_name(low, high):
    """Key of a FWHM bin in `summarize`'s dicts, e.g. ``'0-2.5'`` or ``'4.5-inf'``."""
    return f"{low:g}-{high:g}"


def _class_counts(labels):
    labels = np.asarray(labels)
    n_real = int(np.sum(labels == 1))
    n_bogus = int(np.sum(labels == 0))
    return {"objects": n_real + n_bogus, "real": n_real, "bogus": n_bogus}


def summarize(scores, labels, threshold=0.5, kinds=None, fwhm=None, target_rate=0.01):
    """The evaluation table of a model on labeled objects, as a plain dict.

    Parameters
    ----------
    scores : array_like of float
        Scores in [0, 1]; NaN for objects that could not be scored.
    labels : array_like of int
        1 real, 0 bogus.
    threshold : float
        Objects scoring at or above it are called real.
    kinds : array_like of str, optional
        Object kind (star, galaxy, cosmic_ray, ...): adds, per kind of the scored
        objects, the fraction called real (``called_real_by_kind``: retention for real
        kinds, 1 - rejection for artifacts), the count (``scored_by_kind``) and the
        fraction whose label is real (``real_fraction_by_kind``).
    fwhm : array_like of float, optional
        FWHM (px) of each object's frame: adds the AUC per bin of `FWHM_BINS`
        (``auc_by_fwhm``) and the scored objects of each class in it (``counts_by_fwhm``).
    target_rate : float
        Target of the two operating points "lowest threshold with FPR <= target" and
        "highest threshold with FNR <= target"; both rates are given at each.

    Returns
    -------
    dict
        Plain Python numbers, strings and dicts (ready for JSON, except that undefined
        figures are NaN).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    fnr, fpr = error_rates(scores, labels, [threshold])
    at_target_fpr = threshold_for_rate(scores, labels, fpr=target_rate)
    at_target_fnr = threshold_for_rate(scores, labels, fnr=target_rate)
    result = {
        "objects": int(len(scores)),
        "real": int(np.sum(labels == 1)),
        "bogus": int(np.sum(labels == 0)),
        "unscored_fraction": float(np.mean(~np.isfinite(scores))) if len(scores) else 0.0,
        "auc": roc_auc(scores, labels),
        "threshold": float(threshold),
        "fnr": float(fnr[0]),
        "fpr": float(fpr[0]),
        "target_rate": float(target_rate),
        "threshold_at_target_fpr": at_target_fpr,
        "fnr_at_target_fpr": _rate_at(scores, labels, at_target_fpr, which=0),
        "fpr_at_target_fpr": _rate_at(scores, labels, at_target_fpr, which=1),
        "threshold_at_target_fnr": at_target_fnr,
        "fnr_at_target_fnr": _rate_at(scores, labels, at_target_fnr, which=0),
        "fpr_at_target_fnr": _rate_at(scores, labels, at_target_fnr, which=1),
    }
    finite = np.isfinite(scores)
    if kinds is not None:
        kinds = np.asarray(kinds).astype(str)
        scored_kinds, kind_index, kind_counts = np.unique(
            kinds[finite], return_inverse=True, return_counts=True
        )
        called_real = np.bincount(kind_index, weights=scores[finite] >= threshold)
        labeled_real = np.bincount(kind_index, weights=labels[finite] == 1)
        result["called_real_by_kind"] = {
            str(kind): float(value)
            for kind, value in zip(scored_kinds, called_real / kind_counts, strict=True)
        }
        result["scored_by_kind"] = {
            str(kind): int(count) for kind, count in zip(scored_kinds, kind_counts, strict=True)
        }
        result["real_fraction_by_kind"] = {
            str(kind): float(value)
            for kind, value in zip(scored_kinds, labeled_real / kind_counts, strict=True)
        }
    if fwhm is not None:
        fwhm = np.broadcast_to(np.asarray(fwhm, dtype=np.float64), scores.shape)
        in_bins = [(fwhm >= low) & (fwhm < high) for low, high in FWHM_BINS]
        names = [fwhm_bin_name(low, high) for low, high in FWHM_BINS]
        result["auc_by_fwhm"] = {
            name: roc_auc(scores[in_bin], labels[in_bin])
            for name, in_bin in zip(names, in_bins, strict=True)
        }
        result["counts_by_fwhm"] = {
            name: _class_counts(labels[in_bin & finite])
            for name, in_bin in zip(names, in_bins, strict=True)
        }
    return result
