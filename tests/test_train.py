"""Training: group-wise split before augmentation, symmetries, progress and cancel."""

import numpy as np

from rbvet.cli import main
from rbvet.core.learn.train import all_symmetries, random_symmetries, split_by_group, train_model
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
    epochs = []
    result = train_model(
        inputs,
        labels,
        groups=np.arange(200) // 10,
        epochs=2,
        batch_size=50,
        progress=lambda epoch, logs: epochs.append((epoch, logs)),
    )
    assert [e for e, _ in epochs] == [0, 1] and "val_loss" in epochs[0][1]
    held_out = set(np.arange(200)[result.validation_index] // 10)
    assert not held_out & set(np.arange(200)[result.train_index] // 10)
    stopped = train_model(inputs, labels, epochs=5, batch_size=50, should_stop=lambda: True)
    assert len(stopped.history.history["loss"]) == 1


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
