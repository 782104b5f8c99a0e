"""Calibration: temperature scaling, expected calibration error, rb_prob in rbvet evaluate."""

import json

import numpy as np
import pytest
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.errors import RbvetError
from rbvet.core.learn.calibration import (
    add_probability_column,
    calibrate,
    calibrated,
    expected_calibration_error,
    fit_temperature,
    logits_of,
    reliability,
)
from rbvet.core.model.head import sigmoid


def overconfident(n=20000, temperature=3.0, seed=0):
    """Scores whose logits are ``temperature`` times too large for the labels."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2, n)
    labels = (rng.random(n) < sigmoid(true_logits)).astype(int)
    return sigmoid(true_logits * temperature), labels


def test_the_fitted_temperature_undoes_overconfidence():
    scores, labels = overconfident(temperature=3.0)
    temperature = fit_temperature(logits_of(scores), labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(scores, labels)
    after = expected_calibration_error(calibrated(scores, temperature), labels)
    assert before > 0.08 and after < 0.02


def test_temperature_scaling_keeps_the_order_and_nan():
    scores = np.array([0.1, np.nan, 0.7, 0.99, 0.5])
    probabilities = calibrated(scores, 2.5)
    assert np.isnan(probabilities[1])
    finite = np.isfinite(scores)
    assert np.argsort(probabilities[finite]).tolist() == np.argsort(scores[finite]).tolist()
    assert probabilities[4] == pytest.approx(0.5)


def test_ece_and_reliability_bins_by_hand():
    probabilities = np.array([0.05, 0.15, 0.15, 0.85, 0.95, np.nan])
    labels = np.array([0, 1, 0, 1, 1, 1])
    result = reliability(probabilities, labels, n_bins=2)
    assert result.counts.tolist() == [3, 2]
    np.testing.assert_allclose(result.mean_probability, [0.35 / 3, 0.9])
    np.testing.assert_allclose(result.real_fraction, [1 / 3, 1.0])
    # (3 * |1/3 - 0.35/3| + 2 * |1 - 0.9|) / 5
    assert result.ece == pytest.approx((3 * (1 - 0.35) / 3 + 2 * 0.1) / 5)


def test_calibration_needs_both_classes():
    with pytest.raises(RbvetError, match="one real and one bogus"):
        fit_temperature([1.0, 2.0], [1, 1])


def test_calibrate_on_separate_labels_measures_on_the_evaluated_ones():
    fit_scores, fit_labels = overconfident(temperature=2.0, seed=1)
    scores, labels = overconfident(n=5000, temperature=2.0, seed=2)
    result = calibrate(scores, labels, fit_scores, fit_labels, fitted_on="a store")
    assert result.temperature == pytest.approx(2.0, rel=0.1)
    assert result.ece_after < result.ece_before
    assert result.objects == 5000 and "a store" in result.summary()


def test_rb_prob_goes_right_after_rb_score_which_is_kept():
    table = Table({"x": [1.0, 2.0], "rb_score": [0.2, 0.9], "flags": [0, 0]})
    add_probability_column(table, [0.3, 0.8])
    assert table.colnames == ["x", "rb_score", "rb_prob", "flags"]
    assert table["rb_score"].tolist() == [0.2, 0.9]


def test_evaluate_prints_ece_and_writes_rb_prob_beside_rb_score(tmp_path, capsys):
    image = tmp_path / "field.fits"
    assert main(["simulate", "-o", str(image), "--size", "512", "--seed", "3"]) == 0
    catalog, output = tmp_path / "field.ecsv", tmp_path / "scored.ecsv"
    argv = ["evaluate", str(image), "--catalog", str(catalog), "--truth-column", "true_label"]
    metrics = tmp_path / "metrics.json"
    assert main(argv + ["-o", str(output), "--json", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert "calibration: ECE" in out and "temperature" in out
    written = json.loads(metrics.read_text())["calibration"]
    assert written["temperature"] > 0 and written["objects"] > 10
    table = Table.read(output)
    assert len(table) == len(Table.read(catalog))
    index = table.colnames.index("rb_score")
    assert table.colnames[index + 1] == "rb_prob"
    scored = np.isfinite(table["rb_score"])
    assert scored.sum() > 0 and np.all(np.isfinite(table["rb_prob"][scored]))
    # same order as the scores (a monotone map), but not the scores themselves
    order = np.argsort(np.asarray(table["rb_score"][scored]), kind="stable")
    assert np.all(np.diff(np.asarray(table["rb_prob"][scored])[order]) >= -1e-12)


def test_evaluate_output_needs_a_frame(tmp_path, capsys):
    argv = ["evaluate", "--simulate", "1", "-o", str(tmp_path / "x.ecsv")]
    assert main(argv) == 2
    assert "--output writes FRAME's catalog" in capsys.readouterr().err
