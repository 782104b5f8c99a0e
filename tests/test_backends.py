"""Keras 3 backends: a ``.keras`` file trained and saved under one backend loads under
another and predicts the same, and a model from any backend still exports to ONNX.

Each side runs in a subprocess with ``KERAS_BACKEND`` set (a backend holds for a whole
process). The TensorFlow round trip always runs; JAX and PyTorch run both ways with
TensorFlow wherever they are installed.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rbvet.cli import main
from rbvet.core.model import ENGINE_TOLERANCE, load_model
from rbvet.core.paths import demo_frame_path
from rbvet.realbogus import load_realbogus_model

ROOT = Path(__file__).resolve().parents[1]
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
INSTALLED = [name for name, module in BACKEND_MODULES.items() if importlib.util.find_spec(module)]
OTHERS = [name for name in INSTALLED if name != "tensorflow"]
PAIRS = [("tensorflow", "tensorflow")]
PAIRS += [pair for other in OTHERS for pair in ((other, "tensorflow"), ("tensorflow", other))]

TRAIN_AND_SAVE = """
import sys
import numpy as np
from rbvet.core.jobs import run_job
from rbvet.core.learn.train import train_model
from rbvet.core.model import import_keras

folder = sys.argv[1]
keras = import_keras()
rng = np.random.default_rng(0)
inputs = rng.normal(size=(160, 31, 31, 2)).astype(np.float32)
labels = (inputs[:, 15, 15, 0] > 0).astype(np.float32)
result = run_job(train_model(inputs, labels, epochs=1, batch_size=32, seed=1))
result.model.save(f"{folder}/model.keras")
probe = inputs[:24]
np.save(f"{folder}/probe.npy", probe)
np.save(f"{folder}/scores.npy", np.asarray(result.model.predict(probe, verbose=0)))
print("BACKEND", keras.backend.backend())
"""

LOAD_AND_PREDICT = """
import sys
import numpy as np
from rbvet.core.model import import_keras, save_model
from rbvet.core.model.network import load_keras_network

folder, export = sys.argv[1], sys.argv[2] == "export"
keras = import_keras()
network = load_keras_network(f"{folder}/model.keras")
probe = np.load(f"{folder}/probe.npy")
np.save(f"{folder}/loaded_scores.npy", np.asarray(network.predict(probe, verbose=0)))
if export:  # the ONNX exporter is TensorFlow's: re-save the reloaded network with it
    card = save_model(network, f"{folder}/exported.keras")
    print("ONNX", "onnx" in card)
print("BACKEND", keras.backend.backend())
"""


def run_under(backend, script, *args):
    """Run a script in a subprocess with ``KERAS_BACKEND=backend``; the backend it used."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        cwd=ROOT,  # this checkout's rbvet
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return lines


@pytest.mark.parametrize(
    ("saved_under", "loaded_under"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS]
)
def test_a_model_saved_under_one_backend_predicts_the_same_under_another(
    tmp_path, saved_under, loaded_under
):
    written = run_under(saved_under, TRAIN_AND_SAVE, tmp_path)
    assert written["BACKEND"] == saved_under
    export = loaded_under == "tensorflow"
    read = run_under(loaded_under, LOAD_AND_PREDICT, tmp_path, "export" if export else "-")
    assert read["BACKEND"] == loaded_under
    saved = np.load(tmp_path / "scores.npy")
    assert saved.shape == (24, 1) and np.ptp(saved) > 0  # a trained, input-dependent score
    np.testing.assert_allclose(np.load(tmp_path / "loaded_scores.npy"), saved, atol=1e-5)
    if export:
        assert read["ONNX"] == "True"
        # The ONNX file beside it scores as the network did under its own backend.
        exported = tmp_path / "exported.keras"
        assert load_realbogus_model(str(exported)) is not None
        onnx_model = load_model(exported, engine="onnx")
        probe = np.load(tmp_path / "probe.npy")
        onnx_scores = np.asarray(onnx_model.predict(probe)).reshape(saved.shape)
        np.testing.assert_allclose(onnx_scores, saved, atol=10 * ENGINE_TOLERANCE)

        scored = tmp_path / "scored.ecsv"
        argv = ["classify", str(demo_frame_path()), "--model", str(exported), "-o", str(scored)]
        assert main([*argv, "-q"]) == 0
        assert scored.exists()
