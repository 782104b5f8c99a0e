"""MC-dropout uncertainty over the network's last layer: predictive mean and BALD."""

import numpy as np
import pytest
from astropy.table import Table

from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import run_job
from rbvet.core.learn.uncertainty import (
    BALD_COLUMN,
    MEAN_COLUMN,
    add_uncertainty,
    compute_uncertainty,
    dropout_heads,
    mc_dropout,
)
from rbvet.core.model import load_model
from rbvet.core.model.head import Head


def random_head(n_features=16, rate=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return Head(rng.normal(size=n_features), float(rng.normal()), rate)


def reference_mean_and_bald(features, head, masks):
    """One sample at a time, in plain terms: drop the masked features, scale the kept ones
    by 1 / (1 - rate), score; BALD = H(mean) - mean(H)."""
    samples = []
    for keep in masks.T:
        dropped = features * keep / (1.0 - head.dropout_rate)
        samples.append(1.0 / (1.0 + np.exp(-(dropped @ head.weights + head.bias))))
    samples = np.array(samples).T

    def entropy(p):
        return -(p * np.log(p) + (1 - p) * np.log(1 - p))

    mean = samples.mean(axis=1)
    return mean, entropy(mean) - entropy(samples).mean(axis=1)


def test_mc_dropout_matches_sampling_one_mask_at_a_time():
    head = random_head()
    features = np.random.default_rng(1).normal(size=(50, 16))
    n_samples = 40
    masks = dropout_heads(head, n_samples, seed=3) != 0  # the masks mc_dropout draws
    mean, bald = mc_dropout(features, head, n_samples, seed=3, chunk=7)  # chunks of 7 rows
    expected_mean, expected_bald = reference_mean_and_bald(features, head, masks)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bald, expected_bald, rtol=1e-4, atol=1e-6)
    assert 0.4 < masks.mean() < 0.6  # about half the features kept at rate 0.5


def test_the_same_seed_gives_the_same_uncertainty_and_another_seed_does_not():
    head = random_head()
    features = np.random.default_rng(1).normal(size=(30, 16))
    first = mc_dropout(features, head, 50, seed=5)
    np.testing.assert_array_equal(first[1], mc_dropout(features, head, 50, seed=5)[1])
    assert not np.array_equal(first[1], mc_dropout(features, head, 50, seed=6)[1])


def test_bald_is_high_where_samples_disagree_not_where_they_agree_on_half():
    """An object every mask scores 0.5 (no features: only the bias) is ambiguous but not
    uncertain; one with large features pulling both ways is."""
    head = Head(np.array([3.0, -3.0, 3.0, -3.0]), 0.0, 0.5)
    features = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0], [2.0, 0.0, 2.0, 0.0]])
    mean, bald = mc_dropout(features, head, 200, seed=0)
    assert mean[0] == pytest.approx(0.5)
    assert bald[0] == pytest.approx(0.0, abs=1e-9)
    assert bald[1] > 0.2  # the samples swing between about 0 and 1
    assert mean[2] > 0.85 and bald[2] < bald[1]  # most masks agree it is real


def test_a_head_without_dropout_has_no_bald_and_unscored_objects_have_nan():
    head = random_head(rate=0.0)
    features = np.random.default_rng(2).normal(size=(5, 16))
    features[3] = np.nan
    mean, bald = mc_dropout(features, head, 20)
    good = np.arange(5) != 3
    np.testing.assert_allclose(mean[good], head.scores(features[good]), rtol=1e-6)
    np.testing.assert_allclose(bald[good], 0.0, atol=1e-7)
    assert np.isnan(mean[3]) and np.isnan(bald[3])


def test_dropout_scaling_is_keras_inverted_dropout():
    """Keras scales the features a Dropout layer keeps by 1 / (1 - rate); so do the heads."""
    import keras

    rate = 0.5
    values = np.arange(1.0, 65.0, dtype=np.float32)[None, :]
    kept = np.asarray(keras.layers.Dropout(rate, seed=1)(values, training=True))[0]
    keras_scale = kept[kept != 0] / values[0, kept != 0]
    head = Head(np.ones(64), 0.0, rate)
    columns = dropout_heads(head, 10, seed=0)
    np.testing.assert_allclose(np.unique(columns[columns != 0]), np.unique(keras_scale))


def test_uncertainty_of_a_frame_with_the_shipped_model(make_star_field):
    image, x, y, _ = make_star_field(shape=(200, 200), n=25, seed=4)
    x = np.append(x, -50.0)  # off the frame: no features, NaN
    y = np.append(y, 10.0)
    frame = frame_from_array(image).ensure_background()
    model = load_model()
    result = run_job(compute_uncertainty(frame, x, y, model, 3.0, n_samples=64))
    assert result.features.shape == (26, model.head.n_features)
    assert np.isnan(result.bald[-1]) and np.isnan(result.mean[-1])
    assert np.isfinite(result.bald[:-1]).all() and (result.bald[:-1] >= 0).all()
    # The mean over masks is near the network's score (the same network, dropout on).
    scores = model.head.scores(result.features[:-1])
    assert np.abs(result.mean[:-1] - scores).max() < 0.25
    table = add_uncertainty(Table({"x": x, "y": y}), result)
    np.testing.assert_array_equal(table[BALD_COLUMN], result.bald.astype(np.float64))
    assert MEAN_COLUMN in table.colnames


def test_classify_and_export_write_the_uncertainty_columns_when_asked(tmp_path, capsys):
    from rbvet.cli import main
    from rbvet.core.paths import demo_frame_path

    demo = demo_frame_path()
    catalog = str(demo.with_suffix(".ecsv"))
    plain, uncertain = tmp_path / "plain.ecsv", tmp_path / "uncertain.ecsv"
    assert main(["classify", str(demo), "--catalog", catalog, "-o", str(plain), "-q"]) == 0
    command = ["classify", str(demo), "--catalog", catalog, "-o", str(uncertain), "-q"]
    assert main([*command, "--uncertainty"]) == 0
    without, table = Table.read(plain), Table.read(uncertain)
    assert BALD_COLUMN not in without.colnames
    np.testing.assert_allclose(table["rb_score"], without["rb_score"])  # beside, not instead
    bald = np.asarray(table[BALD_COLUMN])
    assert np.isfinite(bald).all() and (bald >= 0).all() and bald.max() > 0
    assert np.abs(np.asarray(table[MEAN_COLUMN]) - np.asarray(table["rb_score"])).max() < 0.3
    exported = tmp_path / "exported.ecsv"
    assert (
        main(["export", str(demo), "--catalog", catalog, "-o", str(exported), "--uncertainty"])
        == 0
    )
    np.testing.assert_allclose(Table.read(exported)[BALD_COLUMN], bald, rtol=1e-5)
    several = ["classify", str(demo), str(demo), "-o", str(tmp_path / "many"), "--uncertainty"]
    assert main(several) == 2  # several frames: refused
    assert "--uncertainty applies to one frame" in capsys.readouterr().err
