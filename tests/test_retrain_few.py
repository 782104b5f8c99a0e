"""Retraining with a class too small to hold out (issue 19: 3 real and 101 bogus labels).

Said before training (core log, ``rbvet train --labels``, the retrain dialog); undefined
figures are NaN / "n/a", never 0; Accept says what the comparison could not measure.
"""

import math
import re

import numpy as np
import pytest
from test_export import labeled_demo_store

from rbvet.cli import main
from rbvet.core.jobs import run_job
from rbvet.core.learn.labels import LabelStore
from rbvet.core.learn.retrain import (
    MIN_OBJECTS_PER_CLASS,
    class_size_problem,
    held_out_gaps,
    retrain,
)
from rbvet.core.learn.train import (
    EpochEnded,
    split_objects_by_class,
    train_model,
    undefined_auc_keys,
)

N_REAL = 3


def few_real_labels(path):
    """A label store at ``path``: the demo frame's labels with all but 3 real labels
    cleared (3 real, 101 bogus). Returns ``path``."""
    _, table, _, ids = labeled_demo_store(path)
    with LabelStore(path) as store:
        labels = store.labels(ids)
        real = ids[labels == 1]
        store.set_labels(real[N_REAL:], -1)
        summary = store.summary()
    assert (summary["real"], summary["bogus"]) == (N_REAL, 101)
    return path


@pytest.fixture(scope="module")
def few_real_store(tmp_path_factory):
    return few_real_labels(tmp_path_factory.mktemp("few") / "labels.sqlite")


def test_class_size_problem_names_the_small_class():
    problem = class_size_problem(3, 101)
    assert "only 3 real labeled" in problem and "bogus" not in problem.split(":")[0]
    assert class_size_problem(MIN_OBJECTS_PER_CLASS, MIN_OBJECTS_PER_CLASS) is None
    assert held_out_gaps(0, 26) == (
        "the held-out objects include no real ones: AUC, FNR are not measured (n/a) "
        "for either model"
    )
    assert held_out_gaps(1, 25) is None


@pytest.mark.parametrize("seed", range(20))
def test_splitting_objects_by_class_always_holds_out_the_rare_class(seed):
    labels = np.array([1] * N_REAL + [0] * 101)
    train, held_out = split_objects_by_class(labels, 0.25, np.random.default_rng(seed))
    assert np.array_equal(np.sort(np.concatenate([train, held_out])), np.arange(len(labels)))
    assert np.sum(labels[held_out] == 1) == 1 and np.sum(labels[train] == 1) == N_REAL - 1
    assert 20 <= np.sum(labels[held_out] == 0) <= 30


def test_keras_auc_of_a_one_class_part_is_reported_as_nan_not_zero():
    """Validation holding bogus objects only: Keras says AUC 0.0; the logs must say NaN."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(60, 31, 31, 2)).astype(np.float32)
    labels = np.r_[np.ones(20), np.zeros(40)]
    groups = np.r_[np.zeros(40), np.ones(10), np.full(10, 2)].astype(int)  # 1, 2: bogus only
    seed = next(s for s in range(50) if _validation_group(groups, s) != 0)
    assert undefined_auc_keys(labels[:40], labels[40:]) == ("val_auc",)
    epochs = []
    result = run_job(
        train_model(inputs, labels, groups=groups, epochs=1, batch_size=32, seed=seed),
        lambda progress: epochs.append(progress) if isinstance(progress, EpochEnded) else None,
    )
    assert set(labels[result.validation_index]) == {0.0}
    logs = epochs[-1].logs
    assert math.isnan(logs["val_auc"]) and math.isfinite(logs["auc"])


def _validation_group(groups, seed):
    from rbvet.core.learn.train import split_by_group

    _, validation = split_by_group(groups, (0.15,), np.random.default_rng(seed))
    return int(groups[validation[0]])


def test_retrain_says_before_training_and_measures_the_rare_class(few_real_store):
    with LabelStore(few_real_store, readonly=True) as store:
        data = store.training_data(with_stamps=False)
    messages = []
    result = run_job(retrain(data, epochs=1, log=messages.append))
    warned = next(i for i, text in enumerate(messages) if "only 3 real labeled" in text)
    training = next(i for i, text in enumerate(messages) if text.startswith("Fine-tuning"))
    assert warned < training
    assert result.comparison["new"]["real"] == 1  # held out within each class
    assert np.isfinite(result.comparison["new"]["auc"])


def test_cli_warns_before_training_and_never_prints_an_undefined_figure_as_zero(
    tmp_path, few_real_store, capsys
):
    output = tmp_path / "few.keras"
    argv = ["train", "--labels", str(few_real_store), "--epochs", "1", "-o", str(output)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert err.index("only 3 real labeled") < err.index("Fine-tuning")
    assert not re.search(r"auc 0(\.0*)?(,|\)|$)", captured.out + err, re.MULTILINE)
