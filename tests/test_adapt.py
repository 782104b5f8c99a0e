"""Adapting the model to the user's frames: injections as training data, held-out rounds
and labels, the card, the files `load_realbogus_model` and `rbvet classify` accept."""

import inspect
import json

import numpy as np
import pytest
from test_export import labeled_demo_store

from rbvet.cli import main
from rbvet.core.inject.inject import InjectionSettings
from rbvet.core.jobs import run_job
from rbvet.core.learn.adapt import ROUND_GROUP, adapt, injected_training_set
from rbvet.core.learn.labels import LabelStore
from rbvet.core.model import card_path, load_model
from rbvet.core.paths import demo_frame_path

SMALL = InjectionSettings(injections=240, rounds=3, seed=2)


@pytest.fixture(scope="module")
def base():
    return load_model(engine="keras")


@pytest.fixture(scope="module")
def demo():
    from rbvet.core.classify import open_frame_and_catalog

    frame_path = demo_frame_path()
    return run_job(open_frame_and_catalog(frame_path, frame_path.with_suffix(".ecsv")))


def test_injections_become_labelled_inputs_grouped_by_round(demo, base):
    frame, table, fwhm = demo
    data = run_job(injected_training_set(frame, table, fwhm, base.params, SMALL, frame_number=2))
    assert data.inputs.shape[1:] == (base.input_size, base.input_size, 2)
    kinds = np.asarray(data.kinds)
    # Labelled by what was injected: stars and galaxies real, artifacts bogus.
    np.testing.assert_array_equal(data.labels, np.isin(kinds, ("star", "galaxy")))
    assert {"star", "cosmic_ray"} <= set(kinds)
    assert set(np.unique(data.groups)) <= {2 * ROUND_GROUP + r for r in range(SMALL.rounds)}
    assert data.metadata["psf"]["psf_source"] == "empirical"
    # The inputs are the injected objects' own: the network already sees most as they are.
    scores = base.predict(data.inputs)
    assert np.mean((scores >= 0.5) == (data.labels == 1)) > 0.8


def test_injections_into_a_starless_crowded_frame_record_the_fallback_and_the_room(base):
    from astropy.table import Table

    from rbvet.core.io.frame import frame_from_array

    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, (160, 160)).astype(np.float32))
    table = Table({"x": [40.0, 120.0], "y": [40.0, 120.0]})
    said = []
    data = run_job(
        injected_training_set(
            frame, table, 2.5, base.params, InjectionSettings(injections=60), log=said.append
        )
    )
    # What the adapted model's card records for the frame (``psf``, ``injected_placed``).
    assert data.metadata["psf"]["psf_source"] == "fallback"
    assert any("Moffat" in line for line in said)
    assert 0 < data.metadata["placed"] < 60 == data.metadata["settings"]["injections"]


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """The demo frame's labels, given while another model's scores were on screen."""
    path = tmp_path_factory.mktemp("adapt") / "labels.sqlite"
    labeled_demo_store(path)
    with LabelStore(path) as store:
        ids = store.training_data(with_stamps=False).object_ids[:5]
        store.set_labels(ids, 1, model="an_older_model.keras")
    return path


@pytest.fixture(scope="module")
def adapted(labelled_store, base):
    frame_path = demo_frame_path()
    return run_job(
        adapt(
            [(frame_path, frame_path.with_suffix(".ecsv"))],
            base_model=base,
            store_path=labelled_store,
            epochs=1,
            settings=SMALL,
            simulated_ratio=0.1,
        )
    )


def test_adapt_holds_out_whole_rounds_and_labels_and_compares(adapted, base):
    counts = adapted.counts
    assert counts["injection_held_out"] > 0 and counts["injection_train"] > 0
    assert counts["labeled_held_out"] > 0 and counts["labeled_train"] > 0
    assert counts["anchors"] > 0
    assert counts["simulated"] == round(
        0.1 * (counts["injection_train"] + counts["labeled_train"] + counts["anchors"])
    )
    for name in ("injections", "labels"):
        comparison = adapted.comparisons[name]
        assert comparison["old"]["name"] == base.name
        assert comparison["new"]["objects"] == comparison["old"]["objects"] > 0
    card = adapted.model.card
    training = card["training"]
    assert training["frames"][0]["path"].endswith(demo_frame_path().name)
    assert training["injection"]["rounds"] == SMALL.rounds
    assert training["injection"]["held_out_rounds"] == 1
    assert training["labels"]["from_other_models"] == ["an_older_model.keras"]
    held = card["metrics"]["held_out_injections"]
    assert held["evaluated_on"] == "held-out injection rounds"
    assert held["parent_on_same_objects"]["name"] == base.name
    assert card["metrics"]["held_out_labels"]["objects"] == counts["labeled_held_out"]
    assert card["parent"]["name"] == base.name
    anchors = training["anchors"]
    assert anchors["objects"] == counts["anchors"] == training["frames"][0]["anchors"]
    assert anchors["confidence"] == 0.9 and 0 < anchors["real"] < anchors["objects"]


def test_anchors_are_the_frames_own_objects_the_model_is_sure_of(demo, base, monkeypatch):
    from rbvet.core.learn import adapt as adapt_module

    frame, table, fwhm = demo
    anchors = adapt_module.own_object_anchors(frame, table, fwhm, base, 0.9, group=3)
    scores = base.predict(anchors.inputs)
    # Each kept at the model's label, and only where it was sure: no middling score.
    np.testing.assert_array_equal(anchors.labels, scores >= 0.5)
    assert np.all((scores >= 0.9 - 1e-6) | (scores <= 0.1 + 1e-6))
    assert 0 < anchors.labels.sum() < len(anchors)
    assert set(np.unique(anchors.groups)) == {3}
    # Exactly the catalog's objects the model scores that surely, as scoring finds them.
    from rbvet.core.classify import score_objects

    scored, _ = run_job(score_objects(frame, table["x"], table["y"], base, fwhm))
    strict = 0.995
    sure = (scored >= strict) | (scored <= 1 - strict)
    assert 0 < sure.sum() < len(table)
    fewer = adapt_module.own_object_anchors(frame, table, fwhm, base, strict, group=3)
    np.testing.assert_allclose(np.sort(fewer.x), np.sort(np.asarray(table["x"])[sure]))
    monkeypatch.setattr(adapt_module, "MAX_ANCHORS_PER_FRAME", 7)
    few = adapt_module.own_object_anchors(frame, table, fwhm, base, 0.9, group=3)
    assert len(few) == 7


def test_adapt_without_anchors_and_with_a_bad_confidence(base):
    frame_path = demo_frame_path()
    frames = [(frame_path, frame_path.with_suffix(".ecsv"))]
    result = run_job(
        adapt(
            frames,
            base_model=base,
            epochs=1,
            settings=SMALL,
            simulated_ratio=0.1,
            anchor_confidence=None,
        )
    )
    assert result.counts["anchors"] == 0 and result.model.card["training"]["anchors"] is None
    from rbvet.core.errors import RbvetError

    with pytest.raises(RbvetError, match="anchor confidence"):
        run_job(adapt(frames, base_model=base, settings=SMALL, anchor_confidence=0.4))


def test_adapt_refuses_holding_out_every_round(base):
    from rbvet.core.errors import RbvetError

    job = adapt([(demo_frame_path(), None)], base_model=base, settings=SMALL, held_out_rounds=3)
    with pytest.raises(RbvetError, match="held-out rounds"):
        run_job(job)


def test_closing_adapt_while_it_injects_returns_nothing(base):
    job = adapt([(demo_frame_path(), None)], base_model=base, settings=SMALL)
    for progress in job:
        if "round 2" in progress.message:
            break
    job.close()
    assert inspect.getgeneratorstate(job) == inspect.GEN_CLOSED


def test_a_frame_with_no_room_is_skipped_and_the_others_adapt(tmp_path, base):
    from astropy.io import fits
    from conftest import star_field

    image, *_ = star_field(shape=(96, 96), fwhm=3.0, n=16, snr=(40, 200), seed=2)
    full = tmp_path / "full.fits"
    fits.writeto(full, image)
    messages = []
    job = adapt(
        [(full, None), (demo_frame_path(), None)],
        base_model=base,
        settings=SMALL,
        log=messages.append,
    )
    for progress in job:  # up to training: both frames injected, neither refused
        if progress.message == "Training":
            break
    job.close()
    assert any(str(full) in m and "skipped" in m and "no room" in m for m in messages)
    assert any(demo_frame_path().name in m and "to learn from" in m for m in messages)


def test_cli_adapt_writes_a_model_that_loads_and_classifies(tmp_path, capsys):
    from rbvet.realbogus import load_realbogus_model

    out = tmp_path / "adapted.keras"
    demo = demo_frame_path()
    code = main(
        [
            "adapt",
            str(demo),
            "--catalog",
            str(demo.with_suffix(".ecsv")),
            "--epochs",
            "1",
            "--injections",
            "200",
            "--rounds",
            "2",
            "--simulated-ratio",
            "0.1",
            "--anchor-confidence",
            "0.95",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Held-out injected objects" in printed and "adapted model" in printed
    card = json.loads(card_path(out).read_text())
    assert card["training"]["mode"] == "adapted by injection"
    assert card["training"]["anchors"]["confidence"] == 0.95
    assert card["training"]["anchors"]["objects"] > 0
    assert load_realbogus_model(str(out)) is not None
    scored = tmp_path / "scored.ecsv"
    assert main(["classify", str(demo), "--model", str(out), "-o", str(scored), "-q"]) == 0
    assert scored.exists()


def test_cli_adapt_without_anchors_says_so_on_the_card(tmp_path):
    out = tmp_path / "plain.keras"
    demo = demo_frame_path()
    arguments = ["adapt", str(demo), "--catalog", str(demo.with_suffix(".ecsv"))]
    arguments += ["--epochs", "1", "--injections", "120", "--rounds", "2", "--no-anchors"]
    assert main([*arguments, "--simulated-ratio", "0.1", "-o", str(out)]) == 0
    card = json.loads(card_path(out).read_text())
    assert card["training"]["anchors"] is None and card["training"]["counts"]["anchors"] == 0


def test_cli_adapt_refuses_a_non_keras_output_before_any_work(tmp_path, capsys):
    assert main(["adapt", str(demo_frame_path()), "-o", str(tmp_path / "m.h5")]) == 2
    assert ".keras" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


def test_closing_adapt_while_it_trains_leaves_the_current_model_untouched(base):
    before = [weights.copy() for weights in base.keras_model.get_weights()]
    job = adapt([(demo_frame_path(), None)], base_model=base, settings=SMALL, simulated_ratio=0.0)
    training = False
    for progress in job:
        training = training or progress.message == "Training"
        if training and progress.total:  # a batch of the fine-tuning has run
            break
    assert training
    job.close()
    assert inspect.getgeneratorstate(job) == inspect.GEN_CLOSED
    for old, now in zip(before, base.keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)


def test_cli_adapt_interrupted_writes_nothing(tmp_path, capsys, monkeypatch):
    import rbvet.core.learn.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl+C as the fine-tuning starts
        yield

    monkeypatch.setattr(train_module, "train_model", interrupted)
    out = tmp_path / "adapted.keras"
    arguments = ["adapt", str(demo_frame_path()), "--injections", "120", "--rounds", "2"]
    assert main([*arguments, "--simulated-ratio", "0", "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
