"""Uncertainty in the vetting session: stored with the scores, the sorts that use it, and
every fixed-direction sort showing its most relevant end first."""

import numpy as np
import pytest

from rbvet.core.learn.active import feature_clusters
from rbvet.core.learn.uncertainty import BALD_COLUMN, MEAN_COLUMN, Uncertainty
from rbvet.core.session import (
    BOGUS,
    FIXED_DIRECTION_SORTS,
    REAL,
    SORT_BALD,
    SORT_LABEL_NEXT,
    SORT_POSITION,
    SORT_SUSPICIOUS,
    SORT_UNCERTAINTY,
    SORTS,
    UNLABELED,
)


def fake_uncertainty(data, seed=0):
    """Features in four blobs, and a BALD that is NaN where the object is unscored."""
    rng = np.random.default_rng(seed)
    blob = np.arange(len(data)) % 4
    features = (rng.normal(scale=5.0, size=(4, 8))[blob] + rng.normal(size=(len(data), 8))).astype(
        np.float32
    )
    bald = rng.uniform(0, 0.6, len(data)).astype(np.float32)
    scored = np.isfinite(data.scores)
    features[~scored] = np.nan
    bald[~scored] = np.nan
    mean = np.where(scored, data.scores, np.nan).astype(np.float32)
    return Uncertainty(mean, bald, features)


def test_uncertainty_is_stored_with_the_scores_and_written_to_the_catalog(session, data):
    events = []
    session.uncertainty_changed.connect(lambda: events.append("uncertainty"))
    session.order_changed.connect(lambda: events.append("order"))
    uncertainty = fake_uncertainty(data)
    clusters = feature_clusters(uncertainty.features, 4)
    session.set_uncertainty(data, uncertainty, clusters)
    assert events == ["uncertainty"]  # sorted by score: the order does not move
    np.testing.assert_array_equal(data.bald, uncertainty.bald)
    np.testing.assert_array_equal(data.clusters, clusters)
    assert data.features is uncertainty.features
    np.testing.assert_array_equal(data.table[BALD_COLUMN], uncertainty.bald.astype(float))
    assert MEAN_COLUMN in data.table.colnames
    session.set_sort(SORT_BALD)
    events.clear()
    session.set_uncertainty(data, uncertainty, clusters)
    assert events == ["uncertainty", "order"]


def test_uncertainty_of_data_no_longer_shown_announces_nothing(session, data, make_vetting_data):
    other = make_vetting_data(n=20, seed=1)
    events = []
    session.uncertainty_changed.connect(lambda: events.append("uncertainty"))
    session.set_uncertainty(other, fake_uncertainty(other))
    assert events == [] and other.bald is not None and data.bald is None


def most_relevant_first(data, key, threshold, order):
    """True when ``order`` starts with the object the sort ``key`` calls most relevant."""
    scored = np.isfinite(data.scores)
    labeled = data.labels != UNLABELED
    first = order[0]
    if key == SORT_UNCERTAINTY:
        gaps = np.abs(data.scores[scored] - threshold)
        return np.isclose(abs(data.scores[first] - threshold), gaps.min())
    if key == SORT_BALD:
        return np.isclose(data.bald[first], np.nanmax(data.bald))
    if key == SORT_SUSPICIOUS:
        off = np.abs(data.labels[labeled] - data.scores[labeled])
        return np.isclose(abs(data.labels[first] - data.scores[first]), np.nanmax(off))
    if key == SORT_LABEL_NEXT:  # the most uncertain unlabeled object (first of its round)
        candidates = scored & ~labeled
        return not labeled[first] and np.isclose(data.bald[first], data.bald[candidates].max())
    if key == SORT_POSITION:
        return data.y[first] == data.y.min()
    raise AssertionError(key)


@pytest.mark.parametrize("key", sorted(FIXED_DIRECTION_SORTS))
def test_each_fixed_sort_shows_its_most_relevant_end_first_whatever_direction_is_asked(
    session, data, key
):
    """The new user's "uncertain first" showed the least uncertain first: a fixed sort keeps
    its direction even when asked for the other one."""
    session.set_uncertainty(data, fake_uncertainty(data), None)
    labels = np.full(len(data), UNLABELED, np.int8)
    labels[[3, 9, 17, 40]] = [REAL, BOGUS, REAL, BOGUS]
    session.update_labels(np.arange(len(data)), labels)
    for asked in (None, True, False):
        session.set_sort(key, asked)
        order = session.display_order()
        assert most_relevant_first(data, key, session.threshold, order), (key, asked)


def test_every_sort_has_a_distinct_name_and_closest_to_threshold_says_so():
    names = [name for _, name, _ in SORTS]
    assert len(set(names)) == len(names)
    assert dict((key, name) for key, name, _ in SORTS)[SORT_UNCERTAINTY] == (
        "closest to the threshold"
    )


def test_label_next_follows_the_threshold_until_bald_then_spreads_over_clusters(session, data):
    session.set_sort(SORT_LABEL_NEXT)
    order = session.display_order()
    gaps = np.abs(data.scores - session.threshold)
    queued = np.isfinite(data.scores)
    assert np.all(np.diff(gaps[order[: queued.sum()]]) >= 0)  # closest first, before BALD
    uncertainty = fake_uncertainty(data)
    clusters = feature_clusters(uncertainty.features, 4)
    seen = []
    session.order_changed.connect(lambda: seen.append(session.display_order()))
    session.set_uncertainty(data, uncertainty, clusters)
    first_round = seen[-1][:4]
    assert sorted(clusters[first_round].tolist()) == [0, 1, 2, 3]  # one of each kind first


def test_labeled_objects_leave_the_label_next_queue(session, data):
    session.set_uncertainty(data, fake_uncertainty(data), None)
    session.set_sort(SORT_LABEL_NEXT)
    first = session.display_order()[:3]
    session.label(first, REAL)
    order = session.display_order()
    n_queued = int((np.isfinite(data.scores) & (data.labels == UNLABELED)).sum())
    assert not np.isin(first, order[:n_queued]).any()
    assert np.isin(first, order[n_queued:]).all()  # still shown, after the queue


@pytest.mark.parametrize("filter_name", ["all", "real", "unlabeled", "labeled", "unscored"])
def test_label_next_display_order_is_the_general_sort_by_queue_priority(
    session, data, filter_name
):
    """The label-next order takes a shortcut past the general sort; both must agree."""
    from rbvet.core.session import display_order, filter_mask, label_next_priority

    session.set_uncertainty(data, fake_uncertainty(data), np.arange(len(data)) % 5)
    labels = np.full(len(data), UNLABELED, np.int8)
    labels[[3, 9, 17, 40, 59]] = [REAL, BOGUS, REAL, BOGUS, REAL]
    session.update_labels(np.arange(len(data)), labels)
    order = display_order(data, SORT_LABEL_NEXT, True, filter_name, 0.4)
    # the general rule: by priority descending, no value after, unscored last, ties by row
    priority = label_next_priority(data, 0.4)
    kept = np.flatnonzero(filter_mask(data, filter_name, 0.4))
    group = np.where(np.isfinite(data.scores[kept]), np.where(np.isnan(priority[kept]), 1, 0), 2)
    expected = kept[np.lexsort((kept, -np.nan_to_num(priority[kept]), group))]
    np.testing.assert_array_equal(order, expected)
