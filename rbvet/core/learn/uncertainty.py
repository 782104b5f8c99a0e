"""How sure the network is of each object: Monte-Carlo dropout over its last layer.

The seed network ends in Dropout and a one-unit sigmoid Dense layer (`rbvet.core.model.head`).
Keeping dropout on at prediction time and sampling many dropout masks gives a distribution
of scores per object (Gal & Ghahramani's MC dropout, as GOTO's gotorb does). Since only the
last layer is sampled, the penultimate features are computed once (one pass of the network)
and each sample is one matrix product: ``S`` masked copies of the head's weights make an
(D, S) matrix, and the logits of ``N`` objects under all samples are ``features @ W``.

From the samples:

- the predictive mean, the average score over the samples;
- BALD (Houlsby et al. 2011), the mutual information between the label and the network's
  weights: the entropy of the mean score minus the mean entropy of the sampled scores. It
  is large where the samples *disagree* (the model does not know), not where they agree on
  0.5 (an object that is honestly ambiguous): the labels that teach the model most.

Dropout is inverted dropout as Keras applies it: a feature is kept with probability
``1 - rate`` and kept features are scaled by ``1 / (1 - rate)``, so the mean logit over
masks is the logit without dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.jobs import Progress
from rbvet.core.model.head import sigmoid

DEFAULT_SAMPLES = 100
"""Dropout masks drawn: BALD's ranking of 20k objects is stable to a few % at 100."""
DEFAULT_SEED = 0
CHUNK_OBJECTS = 8192
"""Objects per matrix product: (8192, 100) float64 is 6.5 MB, in the cache's reach."""
UNCERTAINTY = "Estimating uncertainty"
"""The `Progress` message of `compute_uncertainty`."""
BALD_COLUMN = "rb_bald"
MEAN_COLUMN = "rb_score_mean"
"""Catalog columns of `add_uncertainty`."""


@dataclass
class Uncertainty:
    """MC-dropout results per object.

    Attributes
    ----------
    mean : ndarray (N,) float32
        Predictive mean score over the dropout samples; NaN where not scored.
    bald : ndarray (N,) float32
        Mutual information (nats, in [0, ln 2]); NaN where not scored.
    features : ndarray (N, D) float32 or None
        The penultimate features the samples were drawn on (NaN rows where not scored).
    """

    mean: np.ndarray
    bald: np.ndarray
    features: np.ndarray | None = None


def dropout_heads(head, n_samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Weights of ``n_samples`` dropout draws of ``head``: an (D, S) float64 matrix.

    Column ``s`` is ``weights * mask_s / (1 - rate)`` (Keras' inverted dropout), so
    ``features @ W + bias`` are the logits under every mask at once. Deterministic for a
    given ``seed``. A head without dropout gives ``n_samples`` equal columns.
    """
    rate = float(head.dropout_rate)
    weights = np.asarray(head.weights, np.float64)
    if rate <= 0.0:
        return np.repeat(weights[:, None], n_samples, axis=1)
    rng = np.random.default_rng(seed)
    keep = rng.random((len(weights), n_samples)) >= rate
    return keep * (weights[:, None] / (1.0 - rate))


def binary_entropy(p):
    """Entropy (nats) of a Bernoulli(p), 0 at p = 0 or 1."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1.0 - 1e-12)
    return -(p * np.log(p) + (1.0 - p) * np.log1p(-p))


def mc_dropout(features, head, n_samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED, chunk=CHUNK_OBJECTS):
    """Predictive mean and BALD of each object from its penultimate features.

    Parameters
    ----------
    features : ndarray (N, D)
        Rows with NaN (unscored objects) give NaN.
    head : rbvet.core.model.head.Head
    n_samples : int
        Dropout masks; the same masks for every object.
    seed : int
    chunk : int
        Objects per matrix product (bounds memory at ``chunk * n_samples`` floats).

    Returns
    -------
    mean, bald : ndarray (N,) float32
    """
    features = np.asarray(features)
    heads = dropout_heads(head, n_samples, seed)
    mean = np.full(len(features), np.nan, np.float32)
    bald = np.full(len(features), np.nan, np.float32)
    rows = np.flatnonzero(np.isfinite(features).all(axis=1))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        mean[part], bald[part] = _mean_and_bald(features[part], heads, head.bias)
    return mean, bald


def _mean_and_bald(features, heads, bias):
    logits = features.astype(np.float64) @ heads
    logits += bias
    scores = sigmoid(logits)
    mean = scores.mean(axis=1)
    expected_entropy = binary_entropy(scores).mean(axis=1)
    return mean, np.maximum(binary_entropy(mean) - expected_entropy, 0.0)


def compute_uncertainty(
    frame, x, y, model, fwhm, n_samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED, keep_features=True
):
    """MC-dropout uncertainty for a frame's objects: a job (see `rbvet.core.jobs`).

    The features come from one pass of the network over the objects' inputs, prepared as
    scoring prepares them (`rbvet.core.classify.iter_features`); the samples are drawn in
    numpy (`mc_dropout`).

    Parameters
    ----------
    frame : rbvet.core.io.frame.Frame
    x, y : array_like (N,)
        0-based positions.
    model : rbvet.core.model.RealBogusModel
        Must end in a dropout + dense head (`RealBogusModel.head`).
    fwhm : float
    n_samples, seed : int
    keep_features : bool
        Keep the features in the result (the map and the label-next queue use them).

    Yields
    ------
    Progress

    Returns
    -------
    Uncertainty
    """
    from rbvet.core.classify import iter_features

    x = np.atleast_1d(np.asarray(x, np.float64))
    n_objects = len(x)
    head = model.head
    features = np.full((n_objects, head.n_features), np.nan, np.float32)
    yield Progress(0, n_objects, UNCERTAINTY)
    for start, scorable, chunk_features in iter_features(frame, x, y, model, fwhm):
        features[start + np.flatnonzero(scorable)] = chunk_features
        yield Progress(start + len(scorable), n_objects, UNCERTAINTY)
    mean, bald = mc_dropout(features, head, n_samples, seed)
    return Uncertainty(mean, bald, features if keep_features else None)


def add_uncertainty(table, uncertainty):
    """Write ``rb_score_mean`` and ``rb_bald`` into a catalog, in place (beside ``rb_score``)."""
    table[MEAN_COLUMN] = np.asarray(uncertainty.mean, np.float64)
    table[BALD_COLUMN] = np.asarray(uncertainty.bald, np.float64)
    return table
