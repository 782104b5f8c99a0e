"""What to label next: the most informative objects, spread over the kinds of objects.

Sorting by uncertainty alone spends the next labels on near-copies (twenty tiles of the
same diffraction spike, all equally uncertain); each adds little once the first is
labeled. The queue here clusters the penultimate features (k-means, numpy) once per frame
and takes the most informative unlabeled object of each cluster in turn (round-robin:
the best of every cluster, then the second best of every cluster, ...), the clusters'
picks of a round ordered by how informative they are.

Informative means a high BALD (`rbvet.core.learn.uncertainty`) when it has been computed,
else a score close to the threshold. Labeled objects leave the queue; recomputing it is
two sorts of the unlabeled objects (milliseconds at 20k), so it follows every label.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CLUSTERS = 16
KMEANS_ITERATIONS = 8
KMEANS_SAMPLE = 20000
"""k-means runs on at most this many objects; the others join their nearest centre."""


def squared_distances(points, centres):
    """(N, K) squared Euclidean distances, as one matrix product."""
    points = np.asarray(points, np.float64)
    centres = np.asarray(centres, np.float64)
    distances = (points * points).sum(axis=1)[:, None] - 2.0 * points @ centres.T
    distances += (centres * centres).sum(axis=1)[None, :]
    return np.maximum(distances, 0.0)


def kmeans(points, n_clusters=DEFAULT_CLUSTERS, iterations=KMEANS_ITERATIONS, seed=0):
    """Cluster points with k-means (k-means++ start, a few Lloyd iterations).

    Parameters
    ----------
    points : ndarray (N, D)
        Finite rows.
    n_clusters : int
        At most N.
    iterations : int
    seed : int

    Returns
    -------
    labels : ndarray (N,) intp
        The cluster of each point.
    centres : ndarray (K, D) float64
    """
    points = np.asarray(points, np.float64)
    n_clusters = max(1, min(int(n_clusters), len(points)))
    rng = np.random.default_rng(seed)
    sample = points
    if len(points) > KMEANS_SAMPLE:
        sample = points[rng.choice(len(points), KMEANS_SAMPLE, replace=False)]
    centres = [sample[rng.integers(len(sample))]]
    nearest = squared_distances(sample, np.array(centres))[:, 0]
    for _ in range(1, n_clusters):  # k-means++: far points are likelier next centres
        total = nearest.sum()
        weights = nearest / total if total > 0 else None
        pick = rng.choice(len(sample), p=weights)
        centres.append(sample[pick])
        nearest = np.minimum(nearest, squared_distances(sample, sample[pick][None])[:, 0])
    centres = np.array(centres)
    for _ in range(iterations):
        labels = squared_distances(sample, centres).argmin(axis=1)
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, sample)
        filled = counts > 0  # an emptied cluster keeps its centre
        centres[filled] = sums[filled] / counts[filled, None]
    return squared_distances(points, centres).argmin(axis=1), centres


def feature_clusters(features, n_clusters=DEFAULT_CLUSTERS, seed=0):
    """k-means cluster of each object's features; -1 where they are missing (NaN).

    Parameters
    ----------
    features : ndarray (N, D)

    Returns
    -------
    ndarray (N,) intp
    """
    features = np.asarray(features)
    clusters = np.full(len(features), -1, np.intp)
    good = np.flatnonzero(np.isfinite(features).all(axis=1))
    if len(good):
        clusters[good] = kmeans(features[good], n_clusters, seed=seed)[0]
    return clusters


def informativeness(scores, threshold, bald=None):
    """How much a label of each object should teach: BALD where known, else closeness.

    Closeness to the threshold is ``-|score - threshold|`` (higher is closer). BALD and
    closeness are not mixed: when ``bald`` is given, objects without it get NaN.

    Returns
    -------
    ndarray (N,) float64
        Higher first; NaN for objects that cannot be ranked (unscored).
    """
    if bald is not None:
        return np.asarray(bald, np.float64).copy()
    return -np.abs(np.asarray(scores, np.float64) - threshold)


def label_next_order(value, clusters=None, labeled=None):
    """The label-next queue: object indices, the next object to label first.

    Parameters
    ----------
    value : ndarray (N,) float
        Informativeness (`informativeness`), higher first; NaN objects are left out.
    clusters : ndarray (N,) int, optional
        Cluster of each object (`feature_clusters`); without it, the most informative
        first, with no spread.
    labeled : ndarray (N,) bool, optional
        Objects already labeled: left out.

    Returns
    -------
    ndarray (M,) intp
        Round-robin over the clusters: rank 0 of every cluster (by value), then rank 1, ...
    """
    value = np.asarray(value, np.float64)
    candidates = np.isfinite(value)
    if labeled is not None:
        candidates &= ~np.asarray(labeled, bool)
    candidates = np.flatnonzero(candidates)
    # One float sort; the rest are stable integer sorts (radix: linear time), each keeping
    # the order by value (ties: catalog order) within its keys.
    by_value = candidates[np.argsort(-value[candidates], kind="stable")]
    if clusters is None:
        return by_value
    groups = np.asarray(clusters)[by_value]
    by_group = np.argsort(groups, kind="stable")
    sorted_groups = groups[by_group]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(by_group)]))
    rank = np.empty(len(by_value), np.intp)
    rank[by_group] = np.arange(len(by_group)) - first_of_group
    return by_value[np.argsort(rank, kind="stable")]


def queue_priority(order, n_objects):
    """Sort values of a queue: ``n - position`` for queued objects (descending = queue
    order), NaN for the others."""
    priority = np.full(n_objects, np.nan)
    priority[order] = len(order) - np.arange(len(order), dtype=np.float64)
    return priority
