"""The network's last layer in numpy: scores (and their dropout samples) from features.

The seed network ends in dropout and a one-unit sigmoid dense layer. Given its input, the
penultimate features (one pass of the network, `RealBogusModel.features`), the head is a
dot product: Monte-Carlo dropout draws many heads over the same features at the cost of
a matrix product, and label review or calibration fit new heads on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


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
