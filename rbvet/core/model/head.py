"""The network's last layer in numpy: scores (and their dropout samples) from features.

The seed network ends in dropout and a one-unit sigmoid dense layer. Given its input, the
penultimate features (one pass of the network, `RealBogusModel.features`), the head is a
dot product: Monte-Carlo dropout draws many heads over the same features at the cost of
a matrix product, and label review and the label-next measurement fit new heads on them
(`fit_head`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

DEFAULT_PRIOR_L2 = 1.0
"""Pull of a fitted head towards its prior head (`fit_head`), in units of one label's
log loss. Measured on frames the shipped model never saw (scripts/measure_label_next.py,
5 runs): 40 labels of the objects closest to the threshold, a biased sample, took a layer
fitted from scratch from the shipped AUC 0.889 to 0.747; pulled toward the shipped layer,
to 0.890. On random labels the pull changed little (0.916 vs 0.919)."""


@dataclass(frozen=True)
class Head:
    """A one-unit sigmoid dense layer (with the dropout before it) as numpy arrays.

    Attributes
    ----------
    weights : ndarray (D,) float64
    bias : float
    dropout_rate : float
        Share of features the Dropout layer before it drops in training (0 if none).
    """

    weights: np.ndarray
    bias: float
    dropout_rate: float = 0.0

    @classmethod
    def from_dict(cls, record):
        """A head from `rbvet.core.model.network.penultimate_head`'s dict (or its JSON)."""
        if isinstance(record, str):
            record = json.loads(record)
        return cls(
            np.asarray(record["weights"], np.float64),
            float(record.get("bias", 0.0)),
            float(record.get("dropout_rate", 0.0)),
        )

    @property
    def n_features(self):
        return len(self.weights)

    def logits(self, features):
        """Logits (N,) of features (N, D), dropout off (as the network scores)."""
        return np.asarray(features, np.float64) @ self.weights + self.bias

    def scores(self, features):
        """Scores in [0, 1] (N,) of features (N, D): what the network gives."""
        return sigmoid(self.logits(features))


def sigmoid(logits):
    """The logistic function, without overflow warnings for large |logits|."""
    logits = np.asarray(logits, np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def fit_head(features, labels, prior=None, l2=DEFAULT_PRIOR_L2, max_iter=50, tol=1e-8):
    """A head fitted to labeled features: logistic regression pulled towards ``prior``.

    Minimises the log loss plus ``l2 / 2 * |w - w_prior|^2`` (the bias is not pulled) by
    Newton's method, starting at the prior. With few labels the fit stays near the
    network's own head instead of being replaced by a head fitted on a few dozen objects,
    which a biased sample (the uncertain ones) can make much worse (`DEFAULT_PRIOR_L2`).

    Parameters
    ----------
    features : ndarray (N, D)
    labels : ndarray (N,)
        1 real, 0 bogus.
    prior : Head, optional
        The starting weights and the centre of the pull; zeros (a fit from scratch) when
        None. Its dropout rate is kept.
    l2 : float
    max_iter : int
    tol : float
        Stop when the largest Newton step is below this.

    Returns
    -------
    Head
    """
    features = np.asarray(features, np.float64)
    target = np.asarray(labels, np.float64)
    n, d = features.shape
    design = np.hstack([features, np.ones((n, 1))])
    centre = np.zeros(d + 1)
    if prior is not None:
        centre[:d], centre[d] = prior.weights, prior.bias
    penalty = np.full(d + 1, max(float(l2), 1e-6))
    penalty[d] = 1e-6  # the bias is nearly free (a tiny ridge keeps the Hessian invertible)

    def objective(theta):
        logits = design @ theta
        # -log-likelihood: log(1 + e^z) - y z, without overflow
        loss = np.sum(np.logaddexp(0.0, logits) - target * logits)
        return loss + 0.5 * np.sum(penalty * (theta - centre) ** 2)

    theta = centre.copy()
    value = objective(theta)
    for _ in range(max_iter):
        probability = sigmoid(design @ theta)
        gradient = design.T @ (probability - target) + penalty * (theta - centre)
        curvature = probability * (1.0 - probability)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        # Backtracking: a full Newton step can overshoot where the classes nearly separate.
        scale = 1.0
        while scale > 1e-6:
            trial = theta - scale * step
            trial_value = objective(trial)
            if trial_value <= value:
                break
            scale *= 0.5
        else:
            break
        theta, value = trial, trial_value
        if np.max(np.abs(scale * step)) < tol:
            break
    rate = prior.dropout_rate if prior is not None else 0.0
    return Head(theta[:d], float(theta[d]), rate)
