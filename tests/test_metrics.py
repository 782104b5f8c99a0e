"""Metrics against brute-force definitions."""

import numpy as np
import pytest

from rbvet.core.learn.metrics import error_rates, roc_auc, summarize, threshold_for_rate


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


def test_summarize_operating_points_at_target_rates():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.15), 0, 1)
    result = summarize(scores, labels, 0.5, target_rate=0.05)
    at_fpr = result["threshold_at_target_fpr"]
    at_fnr = result["threshold_at_target_fnr"]
    fnr, fpr = error_rates(scores, labels, [at_fpr, at_fnr])
    assert fpr[0] <= 0.05 and fnr[1] <= 0.05
    assert (result["fnr_at_target_fpr"], result["fpr_at_target_fpr"]) == (fnr[0], fpr[0])
    assert (result["fnr_at_target_fnr"], result["fpr_at_target_fnr"]) == (fnr[1], fpr[1])
    # The operating points are the extreme ones: one step further breaks the target.
    below = scores[scores < at_fpr].max()
    assert error_rates(scores, labels, [below])[1][0] > 0.05
    above = scores[scores > at_fnr].min()
    assert error_rates(scores, labels, [above])[0][0] > 0.05


def test_summarize_counts_per_kind_and_fwhm_bin():
    scores = np.array([0.9, 0.2, 0.7, 0.1, np.nan])
    labels = np.array([1, 1, 0, 0, 1])
    kinds = np.array(["star", "star", "cosmic_ray", "cosmic_ray", "star"])
    result = summarize(scores, labels, 0.5, kinds=kinds, fwhm=3.0)
    assert result["scored_by_kind"] == {"cosmic_ray": 2, "star": 2}
    assert result["real_fraction_by_kind"] == {"cosmic_ray": 0.0, "star": 1.0}
    assert result["counts_by_fwhm"]["2.5-4.5"] == {"objects": 4, "real": 2, "bogus": 2}
    assert result["counts_by_fwhm"]["0-2.5"] == {"objects": 0, "real": 0, "bogus": 0}
