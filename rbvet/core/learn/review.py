"""Label review: which labels in a store are probably wrong (confident learning).

Every labeled object gets an out-of-sample probability of being real: its penultimate
features (`RealBogusModel.features` of its stored stamp, preprocessed as the model needs
it, as retraining does) go to a logistic head fitted on the other folds' labels (k-fold;
`rbvet.core.model.head.fit_head`: an L2 pull towards the shipped head). A
label is then judged as cleanlab's confident learning does (Northcutt et al. 2021):

- the per-class threshold is the mean self-confidence of the objects with that label
  (mean probability of real over the objects labeled real, of bogus over those labeled
  bogus);
- an object is *flagged* when the class it confidently belongs to (the likeliest class
  whose probability reaches its threshold) is not its label: an off-diagonal entry of the
  confident joint;
- objects are ranked by self-confidence, the probability of their own label, lowest
  first, flagged objects before the others. (With two classes the normalized margin,
  p(label) - p(other), orders them the same way.)

The ranking is `label_error_score`: 1 - self-confidence, plus 1 when flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.jobs import Progress
from rbvet.core.learn.labels import BOGUS, REAL
from rbvet.core.model.head import DEFAULT_PRIOR_L2, fit_head

DEFAULT_FOLDS = 5
DEFAULT_L2 = DEFAULT_PRIOR_L2
"""Strength of the pull towards the starting (shipped) head's weights."""
MIN_PER_CLASS = 2
"""Fewest labels of each class a review needs (one per fold pair at least)."""


def stratified_folds(labels, n_folds=DEFAULT_FOLDS, seed=0):
    """Fold number (N,) of each object: each class spread evenly over the folds, shuffled."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), np.int64)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        folds[rng.permutation(members)] = np.arange(len(members)) % n_folds
    return folds


def out_of_sample_probabilities(
    features, labels, start=None, n_folds=DEFAULT_FOLDS, l2=DEFAULT_L2, seed=0
):
    """Probability of real (N,) for each object from a head fitted without it (k-fold).

    Parameters
    ----------
    features : ndarray (N, D)
    labels : ndarray (N,)
        1 real, 0 bogus.
    start : Head, optional
        See `rbvet.core.model.head.fit_head`.
    n_folds : int
        At most the size of the smaller class.
    l2 : float
    seed : int

    Returns
    -------
    ndarray (N,) float64
    """
    labels = np.asarray(labels)
    n_folds = int(max(2, min(n_folds, np.bincount(labels, minlength=2).min())))
    folds = stratified_folds(labels, n_folds, seed)
    probabilities = np.empty(len(labels), np.float64)
    for fold in range(n_folds):
        held_out = folds == fold
        head = fit_head(features[~held_out], labels[~held_out], start, l2)
        probabilities[held_out] = head.scores(features[held_out])
    return probabilities


def class_thresholds(probabilities, labels):
    """Confident-learning thresholds (bogus, real): the mean self-confidence per class."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    real = probabilities[labels == REAL]
    bogus = 1.0 - probabilities[labels == BOGUS]
    return (
        float(bogus.mean()) if len(bogus) else 0.5,
        float(real.mean()) if len(real) else 0.5,
    )


def self_confidence(probabilities, labels):
    """Probability each object's own label gets: p for real labels, 1 - p for bogus."""
    probabilities = np.asarray(probabilities, np.float64)
    return np.where(np.asarray(labels) == REAL, probabilities, 1.0 - probabilities)


def flag_label_issues(probabilities, labels, thresholds):
    """Objects whose confident class (see the module notes) is not their label.

    Parameters
    ----------
    probabilities : ndarray (N,)
        Out-of-sample probability of real.
    labels : ndarray (N,)
    thresholds : tuple of float
        (bogus, real), from `class_thresholds`.

    Returns
    -------
    ndarray (N,) bool
    """
    probabilities = np.asarray(probabilities, np.float64)
    real_ok = probabilities >= thresholds[1]
    bogus_ok = (1.0 - probabilities) >= thresholds[0]
    # The likeliest of the classes above their thresholds; none when neither is.
    confident_real = real_ok & (~bogus_ok | (probabilities >= 0.5))
    confident_bogus = bogus_ok & ~confident_real
    labels = np.asarray(labels)
    return ((labels == BOGUS) & confident_real) | ((labels == REAL) & confident_bogus)


def label_error_score(probabilities, labels, thresholds):
    """How likely each label is wrong: 1 - self-confidence, plus 1 when flagged.

    Higher is more suspicious; NaN where the probability is NaN or there is no label.

    Returns
    -------
    ndarray (N,) float64
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    flagged = flag_label_issues(probabilities, labels, thresholds)
    score = 1.0 - self_confidence(probabilities, labels) + flagged
    labeled = (labels == REAL) | (labels == BOGUS)
    return np.where(labeled & np.isfinite(probabilities), score, np.nan)


@dataclass
class LabelReview:
    """The labeled objects of a store, most suspicious label first.

    Attributes
    ----------
    object_ids, frame_ids : ndarray (N,) int64
    frames : ndarray (N,) str
        File name of each object's frame ('' when the store has none).
    x, y : ndarray (N,) float64
        0-based positions, as stored.
    labels : ndarray (N,) int8
        1 real, 0 bogus.
    probabilities : ndarray (N,) float64
        Out-of-sample probability of real.
    scores : ndarray (N,) float64
        `label_error_score` (higher is more suspicious); the rows are sorted by it.
    flagged : ndarray (N,) bool
    thresholds : tuple of float
        Confident-learning thresholds (bogus, real).
    model : str
    """

    object_ids: np.ndarray
    frame_ids: np.ndarray
    frames: np.ndarray
    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    thresholds: tuple
    model: str = ""

    def __len__(self):
        return len(self.object_ids)

    def records(self, top=None):
        """The first ``top`` rows (all when None) as JSON-ready dicts."""
        rows = range(len(self) if top is None else min(int(top), len(self)))
        return [
            {
                "rank": i + 1,
                "frame": str(self.frames[i]),
                "x": float(self.x[i]),
                "y": float(self.y[i]),
                "label": int(self.labels[i]),
                "probability_real": round(float(self.probabilities[i]), 6),
                "self_confidence": round(
                    float(self_confidence(self.probabilities[i], self.labels[i])), 6
                ),
                "rank_score": round(float(self.scores[i]), 6),
                "flagged": bool(self.flagged[i]),
                "object_id": int(self.object_ids[i]),
                "frame_id": int(self.frame_ids[i]),
            }
            for i in rows
        ]


def review_labels(features, labels, start=None, n_folds=DEFAULT_FOLDS, l2=DEFAULT_L2, seed=0):
    """Out-of-sample probabilities, thresholds, flags and scores of labeled features.

    Returns
    -------
    probabilities, scores : ndarray (N,) float64
    flagged : ndarray (N,) bool
    thresholds : tuple of float
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if counts.min() < MIN_PER_CLASS:
        raise RbvetError(
            f"a label review needs at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} bogus "
            f"labels; there are {counts[REAL]} real and {counts[BOGUS]} bogus"
        )
    probabilities = out_of_sample_probabilities(features, labels, start, n_folds, l2, seed)
    thresholds = class_thresholds(probabilities, labels)
    scores = label_error_score(probabilities, labels, thresholds)
    flagged = flag_label_issues(probabilities, labels, thresholds)
    return probabilities, scores, flagged, thresholds


def review_store(store_path, model, n_folds=DEFAULT_FOLDS, l2=DEFAULT_L2, seed=0):
    """Review every label of a store: a job yielding `Progress`, returning `LabelReview`.

    Parameters
    ----------
    store_path : str or Path or None
        The label store (read-only); the user's default when None.
    model : rbvet.core.model.RealBogusModel
        Gives the features (and its head is the start of the fitted heads).
    n_folds, l2, seed
        See `out_of_sample_probabilities`.

    Returns
    -------
    LabelReview

    Raises
    ------
    RbvetError
        The store cannot be read, the model gives no features, or too few labels.
    """
    from rbvet.core.learn.labels import LabelStore

    yield Progress(message="Reading the labeled objects")
    with LabelStore(store_path, create=False, readonly=True) as store:
        data = store.training_data(model.params, with_stamps=False)
        paths = {frame["id"]: frame["path"] or "" for frame in store.frames()}
    yield Progress(0, 2, "Computing features")
    features = model.features(data.inputs)
    yield Progress(1, 2, "Fitting out-of-sample heads")
    probabilities, scores, flagged, thresholds = review_labels(
        features, data.labels, model.head, n_folds, l2, seed
    )
    order = np.lexsort((data.object_ids, -scores))
    frame_ids = np.asarray(data.groups, np.int64)
    known, inverse = np.unique(frame_ids, return_inverse=True)
    names = np.array([Path(paths.get(int(i), "")).name for i in known], dtype=str)[inverse]
    yield Progress(2, 2, "Ranking")
    return LabelReview(
        object_ids=data.object_ids[order],
        frame_ids=frame_ids[order],
        frames=names[order],
        x=data.x[order],
        y=data.y[order],
        labels=np.asarray(data.labels, np.int8)[order],
        probabilities=probabilities[order],
        scores=scores[order],
        flagged=flagged[order],
        thresholds=thresholds,
        model=model.name,
    )
