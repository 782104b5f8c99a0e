"""Calibration: temperature scaling of scores, expected calibration error, reliability bins.

A score of 0.9 should mean that nine in ten such objects are real. Networks trained on
simulations are often over-confident on real data. Temperature scaling (Guo et al. 2017)
divides the score's logit by one number T fitted on labeled objects (the user's labels, or
an assessment's injections): the order of the objects, hence the ROC curve and the AUC, is
unchanged; only the probabilities move. The calibrated probability is written beside the
score (``rb_prob`` beside ``rb_score``), never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.model.head import sigmoid

DEFAULT_BINS = 10
PROBABILITY_COLUMN = "rb_prob"
_EPSILON = 1e-7
_LOG_T_RANGE = (-5.0, 5.0)
"""Search range of log T: T between about 0.007 and 150."""


def logits_of(scores):
    """Logits (N,) of scores in [0, 1], clipped away from 0 and 1 (NaN stays NaN)."""
    scores = np.clip(np.asarray(scores, np.float64), _EPSILON, 1.0 - _EPSILON)
    return np.log(scores) - np.log1p(-scores)


def _valid(logits, labels):
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    keep = np.isfinite(logits) & ((labels == 0) | (labels == 1))
    return logits[keep], labels[keep].astype(np.float64)


def _negative_log_likelihood(log_t, logits, labels):
    scaled = logits * np.exp(-log_t)
    return float(np.sum(np.logaddexp(0.0, scaled) - labels * scaled))


def fit_temperature(logits, labels):
    """The temperature T minimising the log-loss of ``sigmoid(logits / T)`` on labels.

    Parameters
    ----------
    logits : array_like (N,)
        NaN entries are ignored.
    labels : array_like (N,)
        1 real, 0 bogus; other values ignored.

    Returns
    -------
    float
        T > 1 softens over-confident scores, T < 1 sharpens.

    Raises
    ------
    RbvetError
        Fewer than one real and one bogus labeled object.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = _valid(logits, labels)
    if labels.sum() < 1 or (1 - labels).sum() < 1:
        raise RbvetError("calibration needs at least one real and one bogus labeled object")
    result = minimize_scalar(
        _negative_log_likelihood,
        bounds=_LOG_T_RANGE,
        args=(logits, labels),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def calibrated(scores, temperature):
    """Probabilities (N,) of scores after temperature scaling (NaN stays NaN)."""
    scores = np.asarray(scores, np.float64)
    probability = np.full(scores.shape, np.nan)
    finite = np.isfinite(scores)
    probability[finite] = sigmoid(logits_of(scores[finite]) / float(temperature))
    return probability


@dataclass
class Reliability:
    """A reliability diagram: per probability bin, the mean probability and the real share.

    Attributes
    ----------
    edges : ndarray (B + 1,)
    counts : ndarray (B,) int
    mean_probability : ndarray (B,) float
        NaN for empty bins.
    real_fraction : ndarray (B,) float
        NaN for empty bins.
    ece : float
        Expected calibration error: the count-weighted mean |real_fraction -
        mean_probability| (NaN without objects).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    real_fraction: np.ndarray
    ece: float


def reliability(probabilities, labels, n_bins=DEFAULT_BINS):
    """Equal-width reliability bins and the expected calibration error.

    Parameters
    ----------
    probabilities : array_like (N,)
        Probabilities of real; NaN ignored.
    labels : array_like (N,)
        1 real, 0 bogus; other values ignored.
    n_bins : int

    Returns
    -------
    Reliability
    """
    probabilities, labels = _valid(probabilities, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sums = np.bincount(index, weights=probabilities, minlength=n_bins)
    reals = np.bincount(index, weights=labels, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.where(counts > 0, sums / counts, np.nan)
        real_fraction = np.where(counts > 0, reals / counts, np.nan)
    total = counts.sum()
    gaps = np.abs(np.nan_to_num(real_fraction - mean_probability))
    ece = float(np.sum(counts * gaps) / total) if total else float("nan")
    return Reliability(edges, counts, mean_probability, real_fraction, ece)


def expected_calibration_error(probabilities, labels, n_bins=DEFAULT_BINS):
    """ECE of probabilities against labels (`reliability`'s ``ece``)."""
    return reliability(probabilities, labels, n_bins).ece


@dataclass
class Calibration:
    """A fitted temperature and the ECE before and after it, on the objects it judges.

    Attributes
    ----------
    temperature : float
    ece_before, ece_after : float
    objects : int
        Labeled objects the ECE figures are computed on.
    fitted_on : str
        Where T comes from, in words.
    """

    temperature: float
    ece_before: float
    ece_after: float
    objects: int
    fitted_on: str

    def summary(self):
        """One line: ECE before and after, T and where it was fitted."""
        return (
            f"calibration: ECE {self.ece_before:.3f} -> {self.ece_after:.3f} on "
            f"{self.objects} labeled objects (temperature {self.temperature:.3g}, fitted on "
            f"{self.fitted_on})"
        )


def calibrate(scores, labels, fit_scores=None, fit_labels=None, fitted_on=None, seed=7919):
    """Fit a temperature and judge it by the ECE before and after, honestly.

    With separate ``fit_scores``/``fit_labels`` (a label store's, an assessment's
    injections), T is fitted on them and the ECE is measured on ``scores``/``labels``.
    Without, the ECE after scaling is cross-fitted (T fitted on one half of the objects,
    measured on the other, and the other way round), and the returned T is fitted on all.

    Parameters
    ----------
    scores, labels : array_like (N,)
    fit_scores, fit_labels : array_like (M,), optional
    fitted_on : str, optional
        Description of the fitting objects.
    seed : int
        Seed of the halves.

    Returns
    -------
    Calibration
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    usable = np.isfinite(scores) & ((labels == 0) | (labels == 1))
    before = expected_calibration_error(scores, labels)
    if fit_scores is not None:
        temperature = fit_temperature(logits_of(fit_scores), fit_labels)
        after = expected_calibration_error(calibrated(scores, temperature), labels)
        return Calibration(
            temperature, before, after, int(usable.sum()), fitted_on or "other labels"
        )
    temperature = fit_temperature(logits_of(scores), labels)
    half = np.random.default_rng(seed).random(len(scores)) < 0.5
    probability = np.full(len(scores), np.nan)
    for part in (half, ~half):
        try:
            fold_t = fit_temperature(logits_of(scores[~part]), labels[~part])
        except RbvetError:  # one half lacks a class: use the temperature of all
            fold_t = temperature
        probability[part] = calibrated(scores[part], fold_t)
    after = expected_calibration_error(probability, labels)
    return Calibration(
        temperature,
        before,
        after,
        int(usable.sum()),
        fitted_on or "these labels (ECE after: cross-fitted halves)",
    )


def store_scores(store_path, model):
    """Scores and labels of a label store's labeled objects under ``model``.

    Returns
    -------
    scores : ndarray (N,) float64
    labels : ndarray (N,) int8
    """
    from rbvet.core.learn.labels import LabelStore

    with LabelStore(store_path, create=False, readonly=True) as store:
        data = store.training_data(model.params, with_stamps=False)
    scores = model.predict(data.inputs) if len(data) else np.zeros(0)
    return np.asarray(scores, np.float64), np.asarray(data.labels, np.int8)


def add_probability_column(table, probabilities):
    """Put calibrated probabilities in ``table`` as `PROBABILITY_COLUMN`, right after
    ``rb_score`` (which stays as it is), in place."""
    from rbvet.core.classify import SCORE_COLUMN

    if PROBABILITY_COLUMN in table.colnames:
        table.remove_column(PROBABILITY_COLUMN)
    index = table.colnames.index(SCORE_COLUMN) + 1 if SCORE_COLUMN in table.colnames else None
    table.add_column(np.asarray(probabilities, np.float64), name=PROBABILITY_COLUMN, index=index)
    return table
