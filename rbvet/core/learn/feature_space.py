"""The network's feature space: a 2-D map of the objects and each one's labeled neighbours.

The map is a PCA projection (an SVD of the centred features, in numpy). Why PCA and not
t-SNE or UMAP: it takes ~10 ms for 20k objects with no new dependency; it is deterministic
and stable (one more label or a rerun does not reshuffle the picture, so the user's
mental map of "the cosmic rays are bottom left" holds); distances along its axes are the
feature distances the k-means clusters and the neighbours below use, so what looks close
mostly is. Its cost: clusters that overlap in the two leading directions overlap on the
map; the neighbour list (full feature space) is then the better guide.
"""

from __future__ import annotations

import numpy as np

from rbvet.core.learn.active import squared_distances

DEFAULT_NEIGHBOURS = 5


def project_2d(features):
    """The objects' coordinates on the two leading principal axes of their features.

    Parameters
    ----------
    features : ndarray (N, D)
        NaN rows (unscored objects) are left out of the fit and get NaN.

    Returns
    -------
    ndarray (N, 2) float32
        Signs fixed so that the largest loading of each axis is positive (reruns agree).
    """
    features = np.asarray(features, np.float64)
    coordinates = np.full((len(features), 2), np.nan, np.float32)
    good = np.flatnonzero(np.isfinite(features).all(axis=1))
    if len(good) < 2:
        if len(good):
            coordinates[good] = 0.0
        return coordinates
    centred = features[good] - features[good].mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    projected = centred @ (axes * signs[:, None]).T
    coordinates[good, : projected.shape[1]] = projected
    if projected.shape[1] < 2:
        coordinates[good, 1] = 0.0
    return coordinates


def nearest_labeled(features, labels, index, k=DEFAULT_NEIGHBOURS):
    """The ``k`` labeled objects nearest to object ``index`` in feature space.

    Parameters
    ----------
    features : ndarray (N, D)
    labels : ndarray (N,)
        Negative for unlabeled.
    index : int
        The object; it is never its own neighbour.
    k : int

    Returns
    -------
    neighbours : ndarray (M,) intp
        Nearest first; M <= k (fewer labeled objects, or none when the object has no
        features).
    distances : ndarray (M,) float64
        Euclidean distances in feature space.
    """
    features = np.asarray(features)
    labeled = np.asarray(labels) >= 0
    labeled[index] = False
    labeled &= np.isfinite(features).all(axis=1)
    candidates = np.flatnonzero(labeled)
    if not len(candidates) or not np.isfinite(features[index]).all():
        return np.empty(0, np.intp), np.empty(0)
    distances = np.sqrt(squared_distances(features[candidates], features[index][None])[:, 0])
    nearest = np.lexsort((candidates, distances))[:k]
    return candidates[nearest], distances[nearest]


def points_in_polygon(x, y, polygon_x, polygon_y):
    """Which points (x, y) lie inside a polygon (even-odd rule), vectorised over points.

    Parameters
    ----------
    x, y : ndarray (N,)
    polygon_x, polygon_y : ndarray (M,)
        Vertices; the polygon is closed from the last back to the first.

    Returns
    -------
    ndarray (N,) bool
        False for NaN points.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    px = np.asarray(polygon_x, np.float64)
    py = np.asarray(polygon_y, np.float64)
    inside = np.zeros(len(x), bool)
    if len(px) < 3:
        return inside
    for x0, y0, x1, y1 in zip(px, py, np.roll(px, -1), np.roll(py, -1), strict=True):
        crosses = (y0 > y) != (y1 > y)  # the edge spans the point's height
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside
