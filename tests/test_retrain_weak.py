"""Weak labels (repeated exposures, a reference catalog) in retraining: down-weighted,
in the training part only, never over a label of the user's."""

import json
import shutil

import numpy as np
import pytest
from test_export import labeled_demo_store
from test_weak import SCHEMA_2_STORE

import rbvet.core.learn.train as train_module
from rbvet.cli import main
from rbvet.core.jobs import run_job
from rbvet.core.learn.dataset import TrainingSet
from rbvet.core.learn.labels import LabelStore
from rbvet.core.learn.retrain import retrain, retrain_from_store
from rbvet.core.learn.train import balanced_class_weights
from rbvet.core.model import card_path


@pytest.fixture(scope="module")
def weak_store(tmp_path_factory):
    """The demo frame's objects: every other one keeps the user's (true) label, the rest
    are cleared; 'repeat' weak labels on all (the true ones, but the opposite on the
    user's first five), 'reference' ones agreeing on some and disagreeing on others.

    Returns the path and the object ids: (labeled, repeat only, both agree, disagree).
    """
    path = tmp_path_factory.mktemp("weak") / "labels.sqlite"
    labeled_demo_store(path)
    with LabelStore(path) as store:
        data = store.training_data(with_stamps=False)
        ids, truth = data.object_ids, data.labels.astype(int)
        labeled, unlabeled = np.arange(0, len(ids), 2), np.arange(1, len(ids), 2)
        store.set_labels(ids[unlabeled], -1)
        weak = truth.copy()
        weak[labeled[:5]] = 1 - truth[labeled[:5]]  # weak says the opposite of the user
        store.set_weak_labels(ids, weak, "repeat")
        agree, disagree = unlabeled[0::4], unlabeled[1::4]
        store.set_weak_labels(ids[agree], truth[agree], "reference")
        store.set_weak_labels(ids[disagree], 1 - truth[disagree], "reference")
    repeat_only = np.setdiff1d(unlabeled, np.concatenate([agree, disagree]))
    return path, ids[labeled], ids[repeat_only], ids[agree], ids[disagree], truth


def test_weak_training_data_leaves_out_the_users_labels_and_disagreements(weak_store):
    path, labeled, repeat_only, agree, disagree, truth = weak_store
    with LabelStore(path, readonly=True) as store:
        weak = store.weak_training_data()
        human = store.training_data(with_stamps=False)
        only_reference = store.weak_training_data(sources=["reference"])
        other_frame = store.weak_training_data(frame_ids=[human.groups[0] + 1])
        summary = store.summary()
    assert np.array_equal(human.object_ids, labeled)
    assert np.array_equal(weak.object_ids, np.sort(np.concatenate([repeat_only, agree])))
    assert not set(weak.object_ids) & set(labeled) and not set(weak.object_ids) & set(disagree)
    all_ids = np.sort(np.concatenate([labeled, repeat_only, agree, disagree]))
    assert np.array_equal(weak.labels, truth[np.searchsorted(all_ids, weak.object_ids)])
    kinds = dict(zip(weak.object_ids.tolist(), weak.kinds.tolist(), strict=True))
    assert {kinds[i] for i in agree} == {"repeat+reference"}
    assert {kinds[i] for i in repeat_only} == {"repeat"}
    # From the reference catalog alone, its labels count, wrong ones too.
    reference = np.sort(np.concatenate([agree, disagree]))
    assert np.array_equal(only_reference.object_ids, reference)
    truth_of_reference = truth[np.searchsorted(all_ids, reference)]
    flipped = np.isin(reference, disagree)
    assert np.array_equal(
        only_reference.labels, np.where(flipped, 1 - truth_of_reference, truth_of_reference)
    )
    assert len(other_frame) == 0 and weak.inputs.shape[1:] == (31, 31, 2)
    n_all = len(all_ids)
    assert sum(summary["weak"]["repeat"].values()) == n_all
    assert sum(summary["weak"]["reference"].values()) == len(agree) + len(disagree)
    assert summary["weak"]["repeat"]["real"] == int(
        np.sum(truth) + np.sum(1 - 2 * truth[np.searchsorted(all_ids, labeled[:5])])
    )


def test_balanced_class_weights_balance_summed_sample_weights():
    labels = np.array([1, 1, 1, 1, 0, 0])
    assert balanced_class_weights(labels) == {0: 1.5, 1: 0.75}
    # Four real weak labels at 0.25 weigh as much as two bogus ones at 0.5: balanced already.
    weights = balanced_class_weights(labels, np.array([0.25, 0.25, 0.25, 0.25, 0.5, 0.5]))
    assert weights == pytest.approx({0: 1.0, 1: 1.0})


def quadrants(data):
    """The demo frame's objects as four "frames", so retraining holds out whole frames."""
    groups = 10 + (data.x > 384).astype(np.int32) + 2 * (data.y > 384).astype(np.int32)
    return TrainingSet(
        inputs=data.inputs,
        labels=data.labels,
        groups=groups,
        kinds=data.kinds,
        fwhm=data.fwhm,
        object_ids=data.object_ids,
        x=data.x,
        y=data.y,
        metadata=data.metadata,
    )


def test_weak_rows_train_with_their_weight_and_are_never_held_out(weak_store, monkeypatch):
    path, labeled, *_ = weak_store
    with LabelStore(path, readonly=True) as store:
        human = quadrants(store.training_data(with_stamps=False))
        weak = quadrants(store.weak_training_data())
    # A weak set that also holds five objects the user labeled, with the other label.
    contradicting = human.subset(np.arange(5))
    contradicting.labels = 1 - contradicting.labels
    contradicting.kinds = np.full(5, "repeat")
    weak = TrainingSet.concatenate([weak, contradicting])
    calls = []
    real_train_model = train_module.train_model

    def recording_train_model(inputs, labels, **options):
        calls.append((np.asarray(inputs), np.asarray(labels), options))
        return (yield from real_train_model(inputs, labels, **options))

    monkeypatch.setattr(train_module, "train_model", recording_train_model)
    result = run_job(retrain(human, weak_set=weak, weak_weight=0.3, epochs=1, seed=2))

    inputs, labels, options = calls[0]
    weights = options["sample_weight"]
    held_out_frames = np.unique(human.groups[result.held_out_index])
    expected = np.flatnonzero(
        ~np.isin(weak.groups, held_out_frames) & ~np.isin(weak.object_ids, human.object_ids)
    )
    assert 0 < len(expected) < len(weak) - 5  # some weak rows were in held-out frames
    n_human = len(result.train_index)
    assert len(labels) == n_human + len(expected)
    assert np.all(weights[:n_human] == 1) and np.allclose(weights[n_human:], 0.3)
    assert np.array_equal(inputs[n_human:], weak.inputs[expected])
    assert np.array_equal(labels[n_human:], weak.labels[expected])
    # Held out: the user's labels alone, none of them trained on under any label.
    trained = {row.tobytes() for row in inputs}
    assert not any(row.tobytes() in trained for row in human.inputs[result.held_out_index])
    assert result.comparison["old"]["objects"] == len(result.held_out_index)
    assert np.all(result.held_out_index < len(human))
    card = result.model.card["training"]["weak"]
    assert card["weight"] == 0.3 and card["objects"] == len(expected) == result.n_weak
    in_held_out = np.isin(weak.groups, held_out_frames) & ~np.isin(
        weak.object_ids, human.object_ids
    )
    assert card["left_out_in_held_out_frames"] == int(in_held_out.sum())
    kinds = weak.kinds[expected]
    assert card["sources"] == {
        "repeat": int(np.sum(np.char.startswith(kinds, "repeat"))),
        "reference": int(np.sum(np.char.endswith(kinds, "reference"))),
    }
    assert "weak labels (weight 0.3)" in result.model.card["description"]


def test_cli_train_with_weak_weight_records_the_weak_labels(weak_store, tmp_path, capsys):
    path, labeled, repeat_only, agree, _, _ = weak_store
    output = tmp_path / "weak.keras"
    argv = ["train", "--labels", str(path), "--weak-weight", "0.25", "--epochs", "1"]
    assert main([*argv, "-o", str(output)]) == 0
    assert "with weight 0.25" in capsys.readouterr().err
    card = json.loads(card_path(tmp_path / "weak.v1.keras").read_text())
    weak = card["training"]["weak"]
    assert weak["weight"] == 0.25 and weak["objects"] == len(repeat_only) + len(agree)
    assert weak["sources"] == {"repeat": weak["objects"], "reference": len(agree)}
    assert card["training"]["labels"]["objects"] == len(labeled)  # the user's alone

    bad = ["train", "--labels", str(path), "--weak-weight", "1.5", "-o", str(output)]
    assert main(bad) == 2
    assert "weak-label weight must be in (0, 1]" in capsys.readouterr().err
    assert main(["train", "--weak-weight", "0.3", "-o", str(output)]) == 2
    assert "give --labels" in capsys.readouterr().err


def test_a_store_from_before_weak_labels_retrains_read_only_with_weak_weight(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copyfile(SCHEMA_2_STORE, path)
    messages = []
    result = run_job(retrain_from_store(path, weak_weight=0.3, epochs=1, log=messages.append))
    assert path.read_bytes() == SCHEMA_2_STORE.read_bytes()  # not migrated
    assert result.n_weak == 0 and result.model.card["training"]["weak"]["objects"] == 0
    assert any(message.startswith("No weak labels to add") for message in messages)


def test_the_retrain_dialog_offers_weak_labels_when_the_store_has_some(
    qtbot, weak_store, tmp_path
):
    from rbvet.gui.retrain_dialog import RetrainDialog

    path = weak_store[0]
    dialog = RetrainDialog(path, threshold=0.5, models_dir=tmp_path)
    qtbot.addWidget(dialog)
    assert "weak labels:" in dialog.store_label.text()
    assert dialog.weak_check.isEnabled() and not dialog.weak_check.isChecked()
    assert dialog.training_options()["weak_weight"] is None
    dialog.weak_check.setChecked(True)
    dialog.weak_weight_spin.setValue(0.5)
    assert dialog.training_options()["weak_weight"] == 0.5

    old = tmp_path / "old.sqlite"
    shutil.copyfile(SCHEMA_2_STORE, old)
    without = RetrainDialog(old, threshold=0.5, models_dir=tmp_path)
    qtbot.addWidget(without)
    assert not without.weak_check.isEnabled() and "weak" not in without.store_label.text()
    assert without.training_options()["weak_weight"] is None


# ------------------------------------------------------------------------ adapting


def test_cli_adapt_with_weak_weight_trains_on_them_down_weighted(weak_store, tmp_path, capsys):
    """`rbvet adapt --labels STORE --weak-weight W`: the store's weak labels join the
    training part with weight W (as in retraining), and the card says how many."""
    from rbvet.core.paths import demo_frame_path

    path = weak_store[0]
    with LabelStore(path, readonly=True) as store:
        weak = store.weak_training_data()
    calls = []
    real_train_model = train_module.train_model

    def recording_train_model(inputs, labels, **options):
        calls.append((np.asarray(inputs), np.asarray(labels), options))
        return (yield from real_train_model(inputs, labels, **options))

    demo = demo_frame_path()
    output = tmp_path / "adapted.keras"
    argv = ["adapt", str(demo), "--catalog", str(demo.with_suffix(".ecsv")), "--labels"]
    argv += [str(path), "--epochs", "1", "--injections", "200", "--rounds", "2"]
    argv += ["--simulated-ratio", "0", "-o", str(output)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "train_model", recording_train_model)
        assert main([*argv, "--weak-weight", "0.25"]) == 0
    assert "with weight 0.25" in capsys.readouterr().err

    inputs, labels, options = calls[0]
    weights = options["sample_weight"]
    n_weak = len(weak)  # one frame: labels held out by object, no weak row left out
    assert len(weights) == len(labels) and n_weak > 0
    assert np.all(weights[:-n_weak] == 1) and np.allclose(weights[-n_weak:], 0.25)
    assert np.array_equal(inputs[-n_weak:], weak.inputs)
    assert np.array_equal(labels[-n_weak:], weak.labels)
    card = json.loads(card_path(output).read_text())
    assert card["training"]["weak"]["weight"] == 0.25
    assert card["training"]["weak"]["objects"] == n_weak == card["training"]["counts"]["weak"]
    assert "weak labels (weight 0.25)" in card["description"]
    # Never held out: the comparison on labels counts the user's own only.
    counts = card["training"]["counts"]
    assert card["metrics"]["held_out_labels"]["objects"] == counts["labeled_held_out"]
    assert counts["labeled_held_out"] + counts["labeled_train"] == len(weak_store[1])


def test_cli_adapt_refuses_weak_weight_without_a_store_or_out_of_range(
    weak_store, tmp_path, capsys
):
    demo = str(tmp_path / "never_read.fits")
    output = str(tmp_path / "adapted.keras")
    assert main(["adapt", demo, "--weak-weight", "0.3", "-o", output]) == 2
    assert "give --labels" in capsys.readouterr().err
    store = str(weak_store[0])
    assert main(["adapt", demo, "--labels", store, "--weak-weight", "0", "-o", output]) == 2
    assert "weak-label weight must be in (0, 1]" in capsys.readouterr().err


def test_adapt_on_a_store_of_weak_labels_only_uses_them(weak_store, tmp_path):
    """A store without a label of the user's but with weak labels can adapt with them."""
    from rbvet.core.errors import RbvetError
    from rbvet.core.inject.inject import InjectionSettings
    from rbvet.core.learn.adapt import adapt

    path = tmp_path / "weak_only.sqlite"
    shutil.copyfile(weak_store[0], path)
    with LabelStore(path) as store:
        store.set_labels(store.training_data(with_stamps=False).object_ids, -1)
    frames = [(str(tmp_path / "never_read.fits"), None)]
    with pytest.raises(RbvetError, match="no objects labeled real or bogus"):
        run_job(adapt(frames, store_path=path))  # refused before any frame is read
    with pytest.raises(RbvetError, match="give one to use them"):
        run_job(adapt(frames, weak_weight=0.3))
    settings = InjectionSettings(injections=200, rounds=2, seed=1)
    messages = []
    from rbvet.core.paths import demo_frame_path

    demo = demo_frame_path()
    result = run_job(
        adapt(
            [(demo, demo.with_suffix(".ecsv"))],
            store_path=path,
            weak_weight=0.3,
            epochs=1,
            settings=settings,
            simulated_ratio=0,
            log=messages.append,
        )
    )
    training = result.model.card["training"]
    assert training["labels"] is None and "labels" not in result.comparisons
    assert training["weak"]["objects"] == result.counts["weak"] > 0
    assert any("the store's weak labels only" in message for message in messages)


def test_the_dialog_adapts_with_the_weak_labels_when_asked(qtbot, weak_store, tmp_path):
    import rbvet.core.learn.adapt as adapt_module
    from rbvet.core.errors import RbvetError
    from rbvet.core.paths import demo_frame_path
    from rbvet.gui.retrain_dialog import RetrainDialog

    demo = demo_frame_path()
    dialog = RetrainDialog(
        weak_store[0],
        threshold=0.5,
        models_dir=tmp_path,
        frames=[(str(demo), str(demo.with_suffix(".ecsv")))],
    )
    qtbot.addWidget(dialog)
    dialog.adapt_radio.setChecked(True)
    assert dialog.weak_check.isEnabled()
    dialog.weak_check.setChecked(True)
    dialog.weak_weight_spin.setValue(0.5)
    asked = []

    def recording_adapt(frames, **options):
        asked.append(options)
        raise RbvetError("recorded")
        yield  # a job

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapt_module, "adapt", recording_adapt)
        with qtbot.waitSignal(dialog.trainingFinished, timeout=30_000):
            dialog.start_training()
    qtbot.waitUntil(lambda: not dialog.is_training)  # its thread has ended, not just said so
    assert asked[0]["weak_weight"] == 0.5 and asked[0]["store_path"] == weak_store[0]
    assert asked[0]["use_labels"]  # enough labels of the user's to hold some out
    dialog.weak_check.setChecked(False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapt_module, "adapt", recording_adapt)
        with qtbot.waitSignal(dialog.trainingFinished, timeout=30_000):
            dialog.start_training()
    qtbot.waitUntil(lambda: not dialog.is_training)
    assert asked[1]["weak_weight"] is None
