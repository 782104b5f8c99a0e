"""Agreement between annotators: Cohen's kappa and the objects they label differently.

An annotator's label of an object is the label of their latest event on it that is still
in force (`LabelStore.annotator_labels`). Two annotators agree on an object when both
label it and give the same label; kappa corrects their share of agreements for the
agreement expected by chance from each one's own share of real labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.learn.labels import BOGUS, REAL


def cohen_kappa(first, second):
    """Cohen's kappa of two annotators' labels of the same objects.

    Parameters
    ----------
    first, second : array_like (N,)
        Labels (1 real, 0 bogus) of the same N objects.

    Returns
    -------
    float
        1 for full agreement, 0 for agreement at chance level; NaN when there are no
        objects or chance agreement is certain (both gave one and the same class only).
    """
    first = np.asarray(first)
    second = np.asarray(second)
    if len(first) == 0:
        return float("nan")
    observed = float(np.mean(first == second))
    expected = sum(
        float(np.mean(first == value)) * float(np.mean(second == value)) for value in (BOGUS, REAL)
    )
    if expected >= 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


@dataclass
class Agreement:
    """Agreement between the annotators of some objects.

    Attributes
    ----------
    object_ids : ndarray (M,) int64
        Objects labeled real or bogus by at least one annotator.
    disagree : ndarray (M,) bool
        Two annotators gave the object different labels.
    pair : tuple of str or None
        The two annotators who labeled the most objects in common.
    kappa : float
        Their Cohen's kappa (NaN without a pair).
    shared : int
        Objects both of them labeled.
    annotators : list of str
    """

    object_ids: np.ndarray
    disagree: np.ndarray
    pair: tuple | None
    kappa: float
    shared: int
    annotators: list

    def summary(self):
        """One line for a status bar or panel, empty when fewer than two annotators overlap."""
        if self.pair is None or self.shared == 0:
            return ""
        kappa = "n/a" if not np.isfinite(self.kappa) else f"{self.kappa:.2f}"
        count = int(self.disagree.sum())
        return (
            f"Agreement {self.pair[0]}–{self.pair[1]}: κ = {kappa} on {self.shared} objects "
            f"({count} disagree)"
        )


def agreement(object_ids, annotators, labels):
    """Per-object disagreement and the kappa of the most overlapping pair of annotators.

    Parameters
    ----------
    object_ids : array_like (K,) int
    annotators : array_like (K,) str
    labels : array_like (K,) int
        One row per (object, annotator) label in force; -1 rows (cleared) are ignored.

    Returns
    -------
    Agreement
    """
    object_ids = np.asarray(object_ids, np.int64)
    annotators = np.asarray(annotators, dtype=str)
    labels = np.asarray(labels, np.int64)
    given = (labels == REAL) | (labels == BOGUS)
    object_ids, annotators, labels = object_ids[given], annotators[given], labels[given]
    objects, row = np.unique(object_ids, return_inverse=True)
    names, column = np.unique(annotators, return_inverse=True)
    table = np.full((len(objects), len(names)), -1, np.int64)
    table[row, column] = labels
    has_real = (table == REAL).any(axis=1)
    has_bogus = (table == BOGUS).any(axis=1)
    pair, kappa, shared = None, float("nan"), 0
    if len(names) >= 2:
        labeled = (table >= 0).astype(np.int64)
        overlap = labeled.T @ labeled
        np.fill_diagonal(overlap, -1)
        first, second = np.unravel_index(np.argmax(overlap), overlap.shape)
        both = (table[:, first] >= 0) & (table[:, second] >= 0)
        shared = int(both.sum())
        if shared:
            pair = (str(names[first]), str(names[second]))
            kappa = cohen_kappa(table[both, first], table[both, second])
    return Agreement(
        object_ids=objects,
        disagree=has_real & has_bogus,
        pair=pair,
        kappa=kappa,
        shared=shared,
        annotators=[str(name) for name in names],
    )
