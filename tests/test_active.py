"""The label-next queue: informative objects, spread over clusters of features."""

import numpy as np

from rbvet.core.learn.active import (
    feature_clusters,
    informativeness,
    kmeans,
    label_next_order,
    queue_priority,
)


def blobs(sizes, seed=0, spread=0.1):
    """Points in well separated blobs, and the blob of each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(len(sizes), 8))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return centres[truth] + rng.normal(scale=spread, size=(len(truth), 8)), truth


def test_kmeans_finds_separated_blobs():
    points, truth = blobs([40, 25, 60, 10])
    labels, centres = kmeans(points, 4, seed=1)
    assert centres.shape == (4, 8)
    # One cluster per blob: the pairs (blob, cluster) are one to one.
    assert len(set(zip(truth.tolist(), labels.tolist(), strict=True))) == 4
    assert len(np.unique(labels)) == 4


def test_objects_without_features_have_no_cluster():
    points, _ = blobs([10, 10])
    points[3] = np.nan
    clusters = feature_clusters(points, 2)
    assert clusters[3] == -1 and (np.delete(clusters, 3) >= 0).all()


def test_queue_takes_the_best_of_each_cluster_in_turn():
    value = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.5])
    clusters = np.array([0, 0, 0, 1, 1, 2])
    order = label_next_order(value, clusters)
    # Round 0: best of clusters 0, 2, 1 by value; round 1: 0.8 (cluster 0), 0.1 (1); then 0.7.
    np.testing.assert_array_equal(order, [0, 5, 3, 1, 4, 2])


def test_without_clusters_the_queue_is_by_value_and_labeled_or_nan_objects_leave_it():
    value = np.array([0.3, np.nan, 0.9, 0.5, 0.7])
    labeled = np.array([False, False, False, False, True])
    np.testing.assert_array_equal(label_next_order(value, labeled=labeled), [2, 3, 0])
    clusters = np.array([0, 0, 1, 1, 1])
    np.testing.assert_array_equal(label_next_order(value, clusters, labeled), [2, 0, 3])


def test_queue_spreads_over_clusters_where_sorting_by_value_does_not():
    """A blob of many near-identical uncertain objects takes the whole top of a plain
    sort; the queue's first picks cover every blob."""
    points, truth = blobs([200, 20, 20, 20], seed=3)
    value = np.where(truth == 0, 0.6, 0.3) + np.random.default_rng(0).uniform(0, 0.01, len(truth))
    clusters = feature_clusters(points, 4)
    assert set(truth[label_next_order(value)[:4]].tolist()) == {0}
    assert set(truth[label_next_order(value, clusters)[:4]].tolist()) == {0, 1, 2, 3}


def test_informativeness_prefers_bald_and_falls_back_to_closeness():
    scores = np.array([0.1, 0.48, 0.9, np.nan])
    closeness = informativeness(scores, 0.5)
    assert np.nanargmax(closeness) == 1 and np.isnan(closeness[3])
    bald = np.array([0.3, 0.01, 0.2, np.nan])
    assert np.nanargmax(informativeness(scores, 0.5, bald)) == 0


def test_queue_priority_sorts_descending_into_the_queue():
    order = np.array([4, 0, 2])
    priority = queue_priority(order, 5)
    assert np.isnan(priority[[1, 3]]).all()
    finite = np.flatnonzero(np.isfinite(priority))
    np.testing.assert_array_equal(finite[np.argsort(-priority[finite])], order)
