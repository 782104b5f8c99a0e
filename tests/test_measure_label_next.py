"""The machinery of scripts/measure_label_next.py on small synthetic features (fast): the
refit of the last layer, the labeling loop, labels-to-target and the plot. The figures
themselves come from running the script."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rbvet.core.learn.metrics import roc_auc
from rbvet.core.model.head import Head

SCRIPT = Path(__file__).parents[1] / "scripts" / "measure_label_next.py"


@pytest.fixture(scope="module")
def measure():
    spec = importlib.util.spec_from_file_location("measure_label_next", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic(measure, n, seed):
    """Two classes that differ along feature 0; a misleading feature 1 the prior trusts."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int8)
    features = rng.normal(size=(n, 6))
    features[:, 0] += 2.5 * labels
    return measure.LabeledFeatures(features, labels)


def misleading_head():
    return Head(np.array([0.0, 2.0, 0, 0, 0, 0]), 0.0, 0.5)  # looks at noise only


def test_refit_head_learns_from_labels_and_stays_near_the_prior_under_a_strong_pull(measure):
    objects = synthetic(measure, 400, 0)
    prior = misleading_head()
    refit = measure.refit_head(objects.features, objects.labels, prior, l2=1.0)
    assert roc_auc(prior.logits(objects.features), objects.labels) < 0.6
    assert roc_auc(refit.logits(objects.features), objects.labels) > 0.9
    assert refit.dropout_rate == prior.dropout_rate
    # at the optimum the gradient of the penalised loss vanishes (the bias is not pulled)
    residual = refit.scores(objects.features) - objects.labels
    gradient = objects.features.T @ residual + (refit.weights - prior.weights)
    assert np.abs(gradient).max() < 1e-5 and abs(residual.sum()) < 1e-4
    pinned = measure.refit_head(objects.features, objects.labels, prior, l2=1e9)
    np.testing.assert_allclose(pinned.weights, prior.weights, atol=1e-4)
    # from scratch: the same pull, toward zero; the prior's dropout rate is kept
    scratch = measure.refit_head(objects.features, objects.labels, prior, 1e9, scratch=True)
    np.testing.assert_allclose(scratch.weights, 0, atol=1e-4)
    assert scratch.dropout_rate == prior.dropout_rate


def test_every_order_labels_distinct_objects_and_improves_on_the_prior(measure):
    pool, held_out = synthetic(measure, 300, 1), synthetic(measure, 300, 2)
    clusters = np.arange(len(pool)) % 4
    for order in measure.ORDERS:
        used, aucs, fnrs = measure.run_order(
            order,
            misleading_head(),
            pool,
            held_out,
            batch=10,
            budget=60,
            seed=0,
            clusters=clusters,
        )
        np.testing.assert_array_equal(used, np.arange(0, 70, 10))
        assert aucs[-1] > aucs[0] + 0.2, order
        assert len(fnrs) == len(used) and np.all((fnrs >= 0) & (fnrs <= 1))


def test_labels_to_reach_counts_the_labels_after_which_the_target_holds(measure):
    used = np.array([0, 10, 20, 30, 40])
    assert measure.labels_to_reach(used, [0.5, 0.9, 0.7, 0.95, 0.96], 0.9) == 30
    assert measure.labels_to_reach(used, [0.9, 0.9, 0.9, 0.9, 0.9], 0.9) == 0
    assert measure.labels_to_reach(used, [0.5, 0.5, 0.5, 0.5, 0.8], 0.9) is None
    assert measure.labels_to_reach(used, [0.3, 0.1, 0.2, 0.05, 0.04], 0.1, False) == 30


def test_measure_summarises_and_plots(measure, tmp_path):
    pool, held_out = synthetic(measure, 200, 3), synthetic(measure, 200, 4)
    result = measure.measure(
        misleading_head(),
        [(pool, held_out, 5)],
        batch=20,
        budget=80,
        gap=0.8,
        n_clusters=4,
        log=lambda *a: None,
        refits=measure.REFITS,
    )
    table, ratios = measure.summary(result)
    assert set(ratios) == {"auc", "fnr"}
    scratch = {f"{order} (scratch)" for order in measure.ORDERS}
    assert {order for order, _ in table} == set(measure.ORDERS) | scratch
    run = result["runs"][0]["orders"]
    assert run["random"]["auc"] != run["random (scratch)"]["auc"]  # two refits, two curves
    path = tmp_path / "curves.png"
    measure.plot(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
