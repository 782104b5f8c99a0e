"""Metrics against brute-force definitions."""

import numpy as np
import pytest

from rbvet.core.metrics import error_rates, roc_auc, summarize, threshold_for_rate


def brute_auc(scores, labels):
    real, bogus = scores[labels == 1], scores[labels == 0]
    greater = (real[:, None] > bogus[None, :]).sum()
    ties = (real[:, None] == bogus[None, :]).sum()
    return (greater + 0.5 * ties) / (len(real) * len(bogus))


def test_auc_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.uniform(size=400) * 0.5 + 0.4 * labels, 2)  # many ties
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_error_rates_and_threshold_for_rate():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, np.nan])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    fnr, fpr = error_rates(scores, labels, [0.5])
    assert fnr[0] == pytest.approx(1 / 4) and fpr[0] == pytest.approx(1 / 3)
    t = threshold_for_rate(scores, labels, fpr=0.0)
    assert t == pytest.approx(0.7)
    t = threshold_for_rate(scores, labels, fnr=0.0)
    assert t == pytest.approx(0.3)


def test_summarize_by_kind_and_fwhm():
    scores = np.array([0.9, 0.8, 0.1, 0.6, np.nan])
    labels = np.array([1, 1, 0, 0, 0])
    kinds = np.array(["star", "galaxy", "cosmic_ray", "hot_pixel", "noise"])
    fwhm = np.array([1.5, 3.0, 1.5, 6.0, 3.0])
    result = summarize(scores, labels, 0.5, kinds=kinds, fwhm=fwhm)
    assert result["unscored_fraction"] == pytest.approx(0.2)
    assert result["called_real_by_kind"] == {
        "cosmic_ray": 0.0,
        "galaxy": 1.0,
        "hot_pixel": 1.0,
        "star": 1.0,
    }
    assert result["auc_by_fwhm"]["0-2.5"] == 1.0
    assert np.isnan(result["auc_by_fwhm"]["4.5-inf"])
