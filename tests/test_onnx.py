"""ONNX files beside models: the shipped one, saving, trusting, and vetting without TensorFlow."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.model import (
    ENGINE_TOLERANCE,
    RealBogusModel,
    card_path,
    conversion,
    create_model,
    file_digest,
    load_model,
    make_card,
    onnx_path,
    read_card,
    save_model,
)
from rbvet.core.paths import default_model_path, demo_frame_path

REFERENCE = Path(__file__).parent / "data" / "default_model_demo_scores.txt"
DEMO_CATALOG = demo_frame_path().with_suffix(".ecsv")


def reference_scores():
    """The default model's demo scores from the Keras engine, before ONNX files, and the
    FWHM they were computed at."""
    header = [line for line in REFERENCE.read_text().splitlines() if line.startswith("# fwhm")]
    return np.loadtxt(REFERENCE, dtype=np.float32), float(header[0].split()[-1])


def shifted(model):
    """``model`` with its output bias raised by 1, so its scores surely differ."""
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel, bias + 1.0])
    return model


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(1).normal(size=(200, 31, 31, 2)).astype(np.float32)


def forbid_conversion(monkeypatch):
    """From now on, any conversion of a Keras network to ONNX fails the test."""

    def refuse(*args):
        raise AssertionError("the network was converted; its ONNX file should have been used")

    monkeypatch.setattr(conversion, "export_onnx", refuse)


def test_shipped_onnx_file_agrees_with_keras_and_with_its_card(inputs):
    path = default_model_path()
    card = read_card(path)
    record = card["onnx"]
    assert record["file"] == onnx_path(path).name
    assert file_digest(onnx_path(path), None) == record["sha256"]
    session = conversion.open_onnx_for(onnx_path(path), file_digest(path, None))
    assert session is not None  # made from this very .keras file
    network = load_model(path, engine="keras").keras_model
    assert conversion.max_difference(session, network, 31) <= ENGINE_TOLERANCE
    onnx_scores = session.run(None, {session.get_inputs()[0].name: inputs})[0].ravel()
    keras_scores = np.asarray(network(inputs, training=False)).ravel()
    np.testing.assert_allclose(onnx_scores, keras_scores, atol=ENGINE_TOLERANCE)


def test_default_model_scores_the_demo_frame_as_before(monkeypatch):
    """The shipped ONNX file gives the Keras engine's scores (`REFERENCE`) to 1e-5."""
    forbid_conversion(monkeypatch)
    from rbvet.core.classify import FrameOptions, open_frame_and_catalog, score_objects
    from rbvet.core.jobs import run_job

    expected, fwhm = reference_scores()
    frame, table, _ = run_job(
        open_frame_and_catalog(demo_frame_path(), DEMO_CATALOG, options=FrameOptions(fwhm=fwhm))
    )
    model = load_model()
    assert model.engine_name == "onnx" and model._keras_model is None
    scores, reasons = run_job(score_objects(frame, table["x"], table["y"], model, fwhm))
    assert len(scores) == len(expected) and not any(reasons)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_save_model_writes_a_matching_onnx_file(tmp_path, inputs, monkeypatch):
    network = shifted(create_model())
    path = tmp_path / "m.keras"
    card = make_card(31, description="given")
    written = save_model(network, path, card)
    assert "onnx" not in card  # the caller's card is left alone
    record = read_card(path)["onnx"]
    assert written["onnx"] == record and record["file"] == "m.onnx"
    assert record["sha256"] == file_digest(onnx_path(path), None)
    assert record["max_difference_from_keras"] <= ENGINE_TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.card.json", "m.onnx"]
    forbid_conversion(monkeypatch)
    loaded = load_model(path)
    assert loaded.engine_name == "onnx" and loaded._keras_model is None
    expected = np.asarray(network(inputs, training=False)).ravel()
    np.testing.assert_allclose(loaded.predict(inputs), expected, atol=ENGINE_TOLERANCE)


def test_realbogusmodel_save_keeps_the_card_it_wrote(tmp_path):
    model = RealBogusModel(create_model(), make_card(31))
    model.save(tmp_path / "m.keras")
    assert model.card == read_card(tmp_path / "m.keras") and "onnx" in model.card


def test_onnx_file_of_other_weights_is_not_used(tmp_path, inputs):
    """A .keras re-saved without rbvet (old .onnx and card left behind), or an .onnx
    copied from another model, is not taken for the model: the scores follow the .keras."""
    path, other = tmp_path / "m.keras", tmp_path / "other.keras"
    save_model(create_model(), path, make_card(31))
    network = shifted(create_model())
    network.save(path)  # the weights change; m.onnx and the card still describe the old ones
    expected = np.asarray(network(inputs, training=False)).ravel()
    resaved = load_model(path)
    np.testing.assert_allclose(resaved.predict(inputs), expected, atol=ENGINE_TOLERANCE)

    save_model(create_model(), other, make_card(31))
    save_model(network, path, make_card(31))
    shutil.copyfile(onnx_path(other), onnx_path(path))
    copied = load_model(path)
    np.testing.assert_allclose(copied.predict(inputs), expected, atol=ENGINE_TOLERANCE)


def test_onnx_file_not_matching_its_card_record_is_not_used(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    save_model(create_model(), path, make_card(31))
    card = json.loads(card_path(path).read_text())
    card["onnx"]["sha256"] = "0" * 64
    card_path(path).write_text(json.dumps(card))
    converted = []
    export = conversion.export_onnx
    monkeypatch.setattr(
        conversion, "export_onnx", lambda *args: converted.append(args) or export(*args)
    )
    load_model(path).predict(np.zeros((2, 31, 31, 2), np.float32))
    assert len(converted) == 1


def test_a_model_that_cannot_be_converted_is_saved_without_a_stale_onnx(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    save_model(create_model(), path, make_card(31))
    monkeypatch.setattr(conversion, "export_onnx", lambda *args: None)
    with pytest.warns(RbvetWarning, match="saved without an ONNX file"):
        card = save_model(create_model(), path, make_card(31))
    assert not onnx_path(path).exists() and "onnx" not in card
    assert "onnx" not in read_card(path)


def test_unknown_engine_is_refused():
    with pytest.raises(RbvetError, match="unknown engine 'fast'"):
        load_model(engine="fast")


NO_TENSORFLOW = """
import sys
for name in ("tensorflow", "keras", "tf2onnx"):
    sys.modules[name] = None  # importing them raises ImportError, as when not installed
"""


def run_without_tensorflow(script, tmp_path):
    """Run ``script`` in a new interpreter where TensorFlow, Keras and tf2onnx cannot be
    imported, with an empty cache (so only shipped or saved ONNX files can be used)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "empty-cache"))
    code = NO_TENSORFLOW + textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=600,
    )


def test_vetting_runs_without_tensorflow(tmp_path):
    """classify, export, evaluate and the STDPipe API, with TensorFlow impossible to import."""
    from rbvet.core.learn.dataset import TrainingSet, save_training_set

    expected, fwhm = reference_scores()
    rng = np.random.default_rng(3)
    training_set = TrainingSet(
        inputs=rng.normal(size=(40, 31, 31, 2)).astype(np.float32),
        labels=np.tile(np.array([0, 1], np.int8), 20),
        groups=np.zeros(40, np.int32),
        kinds=np.tile(np.array(["cosmic_ray", "star"]), 20),
        fwhm=np.full(40, 3.0, np.float32),
    )
    save_training_set(training_set, tmp_path / "set.npz")
    frame, catalog = str(demo_frame_path()), str(DEMO_CATALOG)
    result = run_without_tensorflow(
        f"""
        import numpy as np
        from astropy.io import fits
        from astropy.table import Table
        from rbvet import realbogus
        from rbvet.cli import main

        out = {str(tmp_path)!r}
        frame = ["{frame}", "--catalog", "{catalog}", "--fwhm", "{fwhm!r}"]
        codes = [
            main(["classify", *frame, "-o", out + "/classified.ecsv", "-q"]),
            main(["export", *frame, "-o", out + "/exported.ecsv", "-o", out + "/regions.reg"]),
            main(["evaluate", *frame, "--truth-column", "true_label"]),
            main(["evaluate", "--training-set", out + "/set.npz"]),
        ]
        table = Table.read("{catalog}")
        realbogus.classify_realbogus(
            table, fits.getdata("{frame}"), fwhm={fwhm!r}, flag_bogus=False
        )
        np.save(out + "/api.npy", np.asarray(table["rb_score"]))
        print("codes", *codes)
        print("loaded", *(m for m in ("tensorflow", "keras", "tf2onnx") if sys.modules.get(m)))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "codes 0 0 0 0" in lines and "loaded" in lines, result.stdout[-2000:]
    from astropy.table import Table

    classified = Table.read(tmp_path / "classified.ecsv")["rb_score"]
    exported = Table.read(tmp_path / "exported.ecsv")["rb_score"]
    for scores in (classified, exported, np.load(tmp_path / "api.npy")):
        np.testing.assert_allclose(np.asarray(scores), expected, rtol=0, atol=1e-5)
    assert (tmp_path / "regions.reg").stat().st_size > 0


def test_without_tensorflow_a_model_with_no_onnx_file_says_what_to_do(tmp_path):
    path = tmp_path / "old.keras"
    shutil.copyfile(default_model_path(), path)
    result = run_without_tensorflow(
        f"""
        from rbvet.cli import main
        from rbvet.core.errors import RbvetError
        from rbvet.core.model import load_model

        try:
            load_model(None, engine="keras")
        except RbvetError as error:
            print("keras engine:", error)
        sys.exit(main(["classify", "{demo_frame_path()}", "--catalog", "{DEMO_CATALOG}",
                       "-m", "{path}", "-o", "{tmp_path / "out.ecsv"}"]))
        """,
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"rbvet: error: {path}: no ONNX file made from this model")
    assert "rbvet[train]" in message and "export_onnx.py" in message
    asked_for_keras = result.stdout.strip().splitlines()[-1]
    assert asked_for_keras.startswith("keras engine: TensorFlow/Keras is not installed")


def test_the_window_vets_the_demo_without_tensorflow(tmp_path):
    """The window opens, classifies and shows the demo frame with TensorFlow unimportable."""
    result = run_without_tensorflow(
        f"""
        import numpy as np
        from PyQt6.QtCore import QSettings, QTimer
        from PyQt6.QtWidgets import QApplication

        app = QApplication([])
        from rbvet.gui.main_window import MainWindow

        settings = QSettings("{tmp_path / "settings.ini"}", QSettings.Format.IniFormat)
        window = MainWindow(settings=settings, label_store_path="{tmp_path / "labels.db"}")
        outcome = []
        window.classified.connect(lambda: (outcome.append("classified"), app.quit()))
        window.failed.connect(lambda message: (outcome.append(message), app.quit()))
        QTimer.singleShot(300_000, app.quit)  # a bound, not a pause: quit comes sooner
        window.open_frame("{demo_frame_path()}", "{DEMO_CATALOG}")
        app.exec()
        np.save("{tmp_path / "scores.npy"}", window.state.data.scores)
        window.close()  # as a user does: the background uncertainty job is stopped too
        print("outcome", *outcome)
        print("loaded", *(m for m in ("tensorflow", "keras", "tf2onnx") if sys.modules.get(m)))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "outcome classified" in lines and "loaded" in lines, result.stdout[-2000:]
    expected, _ = reference_scores()
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), expected, rtol=0, atol=1e-5)


def test_export_onnx_file_adds_the_onnx_file_to_an_older_model(tmp_path, monkeypatch):
    """What scripts/export_onnx.py does: the .onnx and the card's record, .keras untouched."""
    from rbvet.core.model import export_onnx_file

    path = tmp_path / "old.keras"
    network = shifted(create_model())
    network.save(path)  # no card, no .onnx
    before = path.read_bytes()
    assert export_onnx_file(path) == tmp_path / "old.onnx"
    assert path.read_bytes() == before
    assert read_card(path)["onnx"]["sha256"] == file_digest(tmp_path / "old.onnx", None)
    forbid_conversion(monkeypatch)
    loaded = load_model(path)
    assert loaded.engine_name == "onnx" and loaded._keras_model is None
    probe = np.random.default_rng(2).normal(size=(50, 31, 31, 2)).astype(np.float32)
    expected = np.asarray(network(probe, training=False)).ravel()
    np.testing.assert_allclose(loaded.predict(probe), expected, atol=ENGINE_TOLERANCE)


# ------------------------------------------------------------------ penultimate features


def test_features_and_head_give_the_scores_of_the_network(tmp_path, inputs, monkeypatch):
    """A saved model's ONNX file gives features whose head reproduces its scores; the
    Keras engine gives the same features and head."""
    network = shifted(create_model())
    path = tmp_path / "m.keras"
    save_model(network, path)
    forbid_conversion(monkeypatch)
    onnx_model = load_model(path)
    features = onnx_model.features(inputs)
    assert onnx_model._keras_model is None  # features and head came from the ONNX file
    assert features.shape == (len(inputs), 64)
    head = onnx_model.head
    assert head.dropout_rate == pytest.approx(0.5)
    expected = np.asarray(network(inputs, training=False)).ravel()
    np.testing.assert_allclose(head.scores(features), expected, atol=1e-5)
    keras_model = load_model(path, engine="keras")
    np.testing.assert_allclose(keras_model.features(inputs), features, atol=1e-4)
    np.testing.assert_allclose(keras_model.head.weights, head.weights, atol=1e-7)
    assert keras_model.head.bias == pytest.approx(head.bias)


def test_the_shipped_model_gives_features_without_tensorflow(tmp_path):
    result = run_without_tensorflow(
        """
        import numpy as np
        from rbvet.core.model import load_model

        model = load_model()
        inputs = np.random.default_rng(2).normal(size=(50, 31, 31, 2)).astype(np.float32)
        features = model.features(inputs)
        gap = np.abs(model.head.scores(features) - model.predict(inputs)).max()
        print("features", features.shape[1], "gap", gap < 1e-5)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "features 64 gap True" in result.stdout


def test_a_network_without_a_sigmoid_unit_at_the_end_has_no_features(inputs):
    from rbvet.core.model.network import import_keras

    keras = import_keras()
    image = keras.Input(shape=(31, 31, 2))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    output = keras.layers.Dense(1, activation="linear")(pooled)
    model = RealBogusModel(keras.Model(image, output), engine="keras")
    assert model.head is None
    with pytest.raises(RbvetError, match="features"):
        model.features(inputs[:3])
    assert model.predict(inputs[:3]).shape == (3,)  # scoring itself still works
