"""Training: group-wise split before augmentation, symmetries, progress and cancel."""

import threading

import numpy as np

from rbvet.cli import main
from rbvet.core.jobs import Progress, run_job
from rbvet.core.learn.train import (
    EpochEnded,
    all_symmetries,
    random_symmetries,
    split_by_group,
    train_model,
)
from rbvet.core.model import load_model


def test_split_keeps_each_group_on_one_side():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 1000)
    train, validation, test = split_by_group(groups, (0.2, 0.1), rng)
    assert len(train) + len(validation) + len(test) == 1000
    sides = [set(groups[i]) for i in (train, validation, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])


def test_symmetries_are_the_eight_distinct_ones():
    x = np.arange(2 * 5 * 5 * 2, dtype=np.float32).reshape(2, 5, 5, 2)
    copies = all_symmetries(x).reshape(2, 8, 5, 5, 2)
    assert len({c.tobytes() for c in copies[0]}) == 8
    np.testing.assert_array_equal(copies[:, 0], x)
    shuffled = random_symmetries(x, np.random.default_rng(1))
    assert any(np.array_equal(shuffled[0], c) for c in copies[0])


def test_train_reports_progress_and_can_be_cancelled():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(200, 31, 31, 2)).astype(np.float32)
    labels = (inputs[:, 15, 15, 0] > 0).astype(np.float32)
    seen = []
    result = run_job(
        train_model(inputs, labels, groups=np.arange(200) // 10, epochs=2, batch_size=50),
        seen.append,
    )
    epochs = [progress for progress in seen if isinstance(progress, EpochEnded)]
    assert [(e.done, e.total) for e in epochs] == [(1, 2), (2, 2)]
    assert "val_loss" in epochs[0].logs and "loss" in epochs[1].logs
    batches = [progress for progress in seen if not isinstance(progress, EpochEnded)]
    assert [b.done for b in batches] == list(range(1, batches[0].total + 1))  # every batch
    held_out = set(np.arange(200)[result.validation_index] // 10)
    assert not held_out & set(np.arange(200)[result.train_index] // 10)


def test_closing_training_stops_it_at_the_end_of_the_batch():
    from rbvet.core.model import import_keras

    keras = import_keras()
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(200, 31, 31, 2)).astype(np.float32)
    labels = (inputs[:, 15, 15, 0] > 0).astype(np.float32)
    trained = []

    class CountBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trained.append(batch)

    job = train_model(inputs, labels, epochs=5, batch_size=50, callbacks=[CountBatches()])
    first = next(job)
    assert isinstance(first, Progress) and first.done == 1 and first.total > 10
    job.close()  # waits for the training thread: it stops at the end of its batch
    assert not any(thread.name == "rbvet training" for thread in threading.enumerate())
    assert 1 <= len(trained) <= 2 < first.total  # the batch reported, and the one running


def test_cli_train_writes_model_with_card(tmp_path):
    out = tmp_path / "tiny.keras"
    assert (
        main(
            [
                "train",
                "--simulate",
                "3",
                "--size",
                "256",
                "--epochs",
                "1",
                "--test-frames",
                "1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    model = load_model(out, engine="keras")
    assert model.card["training"]["split"] == "by frame"
    assert "auc" in model.card["metrics"]


def test_cli_train_from_a_parent_fine_tunes_its_weights_and_names_it(tmp_path):
    from rbvet.core.model import file_digest
    from rbvet.core.paths import default_model_path

    parent_path = default_model_path()
    out = tmp_path / "child.keras"
    argv = ["train", "--simulate", "2", "--size", "256", "--epochs", "1", "--test-frames", "0"]
    argv += ["--from", str(parent_path), "--learning-rate", "1e-7", "-o", str(out)]
    assert main(argv) == 0
    child = load_model(out, engine="keras")
    parent = load_model(parent_path, engine="keras")
    assert child.card["parent"]["digest"] == file_digest(parent_path)
    assert child.card["description"].startswith(f"fine-tuned from {parent.name}")
    # At a tiny learning rate the convolution kernels stay the parent's (a new network
    # would start from random ones).
    for old, new in zip(
        parent.keras_model.trainable_weights, child.keras_model.trainable_weights, strict=True
    ):
        np.testing.assert_allclose(np.asarray(new), np.asarray(old), atol=1e-4)


def test_cli_train_refuses_a_bad_learning_rate_and_from_with_labels(tmp_path, capsys):
    out = str(tmp_path / "m.keras")
    assert main(["train", "--simulate", "2", "--learning-rate", "0", "-o", out]) == 2
    assert "--learning-rate must be above 0" in capsys.readouterr().err
    argv = ["train", "--labels", str(tmp_path / "s.sqlite"), "--from", out, "-o", out]
    assert main(argv) == 2
    assert "with --labels use --base-model" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()
