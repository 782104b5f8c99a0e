"""Model creation, saving with a card, loading (.keras and STDPipe .h5), refusal, engines."""

import json
import os

import numpy as np
import pytest

from rbvet.core.errors import RbvetError
from rbvet.core.model import (
    RealBogusModel,
    card_path,
    create_model,
    file_digest,
    load_model,
    make_card,
    onnx_path,
    save_model,
)


def shifted_model(model):
    """``model`` with its output bias raised by 1, so its scores surely differ."""
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel, bias + 1.0])
    return model


@pytest.fixture(scope="module")
def keras_model():
    return create_model()


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(0).normal(size=(300, 31, 31, 2)).astype(np.float32)


def test_save_load_round_trip_with_card(tmp_path, keras_model, inputs):
    path = tmp_path / "m.keras"
    card = make_card(31, description="test", metrics={"auc": 0.9})
    save_model(keras_model, path, card)
    assert path.exists() and card_path(path).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files
    loaded = load_model(path, engine="keras")
    assert loaded.card["metrics"] == {"auc": 0.9}
    assert json.loads(card_path(path).read_text())["input_shape"] == [31, 31, 2]
    expected = np.asarray(keras_model(inputs, training=False)).ravel()
    np.testing.assert_allclose(loaded.predict(inputs), expected, atol=1e-6)


def test_onnx_engine_equals_keras(keras_model, inputs):
    fast = RealBogusModel(keras_model, engine="auto")
    scores = fast.predict(inputs)
    assert fast.engine_name == "onnx"
    reference = RealBogusModel(keras_model, engine="keras").predict(inputs)
    np.testing.assert_allclose(scores, reference, atol=1e-5)
    assert scores.shape == (300,) and np.all((scores >= 0) & (scores <= 1))


def test_stdpipe_h5_model_loads_with_same_outputs(tmp_path, inputs):
    stdpipe_rb = pytest.importorskip("stdpipe.realbogus")
    model = stdpipe_rb.create_realbogus_model()
    path = tmp_path / "stdpipe_model.h5"
    stdpipe_rb.save_realbogus_model(model, model_file=str(path))
    loaded = load_model(path)
    assert loaded.card["preprocessing"]["target_size"] == 31
    expected = model.predict(inputs, verbose=0).ravel()
    np.testing.assert_allclose(loaded.predict(inputs), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [((31, 31, 3), "3 input channels"), ((32, 32, 2), "even"), ((31, 25, 2), "not square")],
)
def test_unfit_input_shape_is_refused(tmp_path, shape, problem):
    model = create_model(input_shape=shape, filters=(4,), dense_units=4)
    path = tmp_path / "odd.keras"
    model.save(path)
    with pytest.raises(RbvetError, match=problem) as error:
        load_model(path)
    assert "odd.keras" in str(error.value)


def test_card_that_does_not_match_is_refused(tmp_path, keras_model):
    path = tmp_path / "m.keras"
    card = make_card(31)
    card["input_shape"] = [41, 41, 2]
    save_model(keras_model, path, card)
    with pytest.raises(RbvetError, match="card says input shape"):
        load_model(path)


def test_bad_model_files(tmp_path):
    with pytest.raises(RbvetError, match="not found"):
        load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(RbvetError, match="junk.keras: not a readable .keras model: not a zip"):
        load_model(junk)
    with pytest.raises(RbvetError, match="unknown model format"):
        load_model(junk.rename(tmp_path / "junk.pkl"))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_with_python_code_is_refused_before_keras_reads_it(tmp_path, suffix, monkeypatch):
    import keras

    image = keras.Input(shape=(31, 31, 2))
    doubled = keras.layers.Lambda(lambda tensor: 2.0 * tensor)(image)
    pooled = keras.layers.GlobalAveragePooling2D()(doubled)
    output = keras.layers.Dense(1, activation="sigmoid")(pooled)
    path = tmp_path / f"with_code{suffix}"
    keras.Model(image, output).save(path)

    def keras_must_not_deserialize(*args, **kwargs):
        raise AssertionError("Keras was asked to load a model holding Python code")

    monkeypatch.setattr(keras.saving, "load_model", keras_must_not_deserialize)
    with pytest.raises(RbvetError, match="Lambda layer") as error:
        load_model(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_models_load_in_keras_safe_mode(tmp_path, keras_model, suffix, monkeypatch):
    import keras

    path = tmp_path / f"m{suffix}"
    keras_model.save(path)
    real_load = keras.saving.load_model
    calls = []

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", recording_load)
    load_model(path, engine="keras")
    assert [call.get("safe_mode") for call in calls] == [True]


def test_wrong_inputs_to_predict(keras_model):
    with pytest.raises(RbvetError, match="do not fit"):
        RealBogusModel(keras_model, engine="keras").predict(np.zeros((2, 21, 21, 2)))


def test_a_model_without_its_onnx_file_is_converted_once_and_cached(
    tmp_path, keras_model, inputs, monkeypatch
):
    """An older model (no name.onnx) converts once; later loads reuse the cached file,
    and a damaged cached file is converted again."""
    from rbvet.core.model import conversion

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "m.keras"
    keras_model.save(path)  # as before rbvet wrote ONNX files: no .onnx, no card
    conversions = []
    export = conversion.export_onnx
    monkeypatch.setattr(
        conversion, "export_onnx", lambda *args: conversions.append(args) or export(*args)
    )
    reference = load_model(path, engine="keras").predict(inputs)

    first = load_model(path)
    np.testing.assert_allclose(first.predict(inputs), reference, atol=1e-5)
    cached = list((tmp_path / "cache" / "rbvet" / "onnx").iterdir())
    assert first.engine_name == "onnx" and len(conversions) == 1 and len(cached) == 1
    assert not onnx_path(path).exists()  # the user's folder is left as it was

    second = load_model(path)
    np.testing.assert_allclose(second.predict(inputs), reference, atol=1e-5)
    assert second.engine_name == "onnx" and len(conversions) == 1

    cached[0].write_bytes(b"not an onnx file")
    third = load_model(path)
    np.testing.assert_allclose(third.predict(inputs), reference, atol=1e-5)
    assert third.engine_name == "onnx" and len(conversions) == 2
    assert cached[0].read_bytes() != b"not an onnx file"


def test_cached_conversion_of_other_weights_is_not_trusted(tmp_path, inputs, monkeypatch):
    """A cached ONNX file made from other weights is not used for this model file."""
    from rbvet.core.model import conversion

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one, other = tmp_path / "one.keras", tmp_path / "other.keras"
    create_model().save(one)
    shifted_model(create_model()).save(other)
    load_model(other).predict(inputs)
    stale = conversion.cache_path(file_digest(other, None)).read_bytes()
    conversion.cache_path(file_digest(one, None)).write_bytes(stale)
    loaded = load_model(one)
    expected = load_model(one, engine="keras").predict(inputs)
    np.testing.assert_allclose(loaded.predict(inputs), expected, atol=1e-5)
    assert loaded.engine_name == "onnx"


def test_parallel_prediction_equals_serial(keras_model, inputs, monkeypatch):
    """Batches scored on several threads come back in order, equal to one thread's."""
    from rbvet.core.model import inference_threads

    monkeypatch.setenv("RBVET_INFERENCE_THREADS", "1")
    assert inference_threads() == 1
    serial = RealBogusModel(keras_model).predict(inputs)
    monkeypatch.setenv("RBVET_INFERENCE_THREADS", "3")
    assert inference_threads() == 3
    parallel = RealBogusModel(keras_model).predict(inputs)
    np.testing.assert_array_equal(parallel, serial)
    monkeypatch.setenv("RBVET_INFERENCE_THREADS", "many")
    assert inference_threads() >= 1


def test_prediction_threads_end_when_idle_and_pending_batches_can_be_dropped(keras_model, inputs):
    """No prediction thread outlives its work (so none is inside ONNX Runtime at exit)."""
    import threading
    import time
    from concurrent.futures import CancelledError

    from rbvet.core.model import IDLE_EXIT_S

    model = RealBogusModel(keras_model)
    pending = model.predict_later(np.repeat(inputs, 20, axis=0), batch_size=16)
    pending.cancel()
    with pytest.raises(CancelledError):
        pending()  # some batches were dropped, so the whole answer is not there
    expected = model.predict(inputs)
    np.testing.assert_allclose(model.predict_later(inputs)(), expected)
    deadline = time.monotonic() + 20 * IDLE_EXIT_S + 10
    while time.monotonic() < deadline and any(
        thread.name.startswith("rbvet-predict") for thread in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rbvet-predict")]


def test_keras_network_of_a_model_opened_from_onnx_loads_on_demand(tmp_path, keras_model, inputs):
    path = tmp_path / "m.keras"
    save_model(keras_model, path, make_card(31))
    lazy = load_model(path)
    assert lazy._keras_model is None and lazy.engine_name == "onnx"
    network = lazy.keras_model
    np.testing.assert_allclose(
        np.asarray(network(inputs, training=False)).ravel(), lazy.predict(inputs), atol=1e-5
    )


def test_prediction_threads_started_from_a_daemon_thread_are_not_daemons(keras_model, inputs):
    """Threads inherit their creator's daemon flag, and a QThread counts as a daemon; a
    daemon prediction thread inside ONNX Runtime at exit aborts the process."""
    import threading
    import time

    model = RealBogusModel(keras_model)
    model.predict(inputs[:2])  # the engine is ready

    def prediction_threads():
        return [t for t in threading.enumerate() if t.name.startswith("rbvet-predict")]

    deadline = time.monotonic() + 30
    while prediction_threads() and time.monotonic() < deadline:
        time.sleep(0.05)  # those started from this (non-daemon) thread end when idle
    assert not prediction_threads()
    seen = []

    def predict_from_daemon():
        pending = model.predict_later(inputs)
        seen.extend(thread.daemon for thread in prediction_threads())
        pending()

    creator = threading.Thread(target=predict_from_daemon, daemon=True)
    creator.start()
    creator.join(60)
    assert seen and not any(seen)


def test_importing_keras_prints_no_tensorflow_chatter_and_stderr_works_after():
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from rbvet.core.model.network import import_keras\n"
        "keras = import_keras()\n"
        "keras.layers.Dense(2)\n"
        "os.write(2, b'native after\\n')\n"
        "print('python after', file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["native after", "python after"]
