"""The CNN: architecture, loading and saving with a JSON model card, batched prediction.

TensorFlow is imported only inside the functions that need it, quietly, so importing
rbvet (and opening the GUI) stays fast.

Prediction runs through ONNX Runtime when it is installed: about twice the throughput
of ``keras.Model.predict`` for this small network on CPUs, with the same outputs (each
converted model is checked against Keras on a probe batch, and Keras is used if they
differ by more than `ENGINE_TOLERANCE`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import queue
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.files import atomic_write, json_default
from rbvet.core.paths import default_model_path, user_cache_dir

CARD_FORMAT = "rbvet-model-card/1"
CARD_SUFFIX = ".card.json"
ENGINE_TOLERANCE = 1e-5
ONNX_OPSET = 17
IDLE_EXIT_S = 0.5
_DIGEST_KEY = "rbvet_model_sha256"
"""Seconds a prediction thread waits for work before it ends."""
DEFAULT_BATCH_SIZE = 256
_ONNX_BATCH_SIZE = 64
"""Small batches stay in the L2 cache: 64 runs about 1.3x faster than 256 here."""


def import_keras():
    """Import Keras with TensorFlow's start-up chatter silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return keras


def create_model(
    input_shape=(31, 31, 2),
    filters=(32, 64, 128),
    dense_units=64,
    dropout_rate=0.5,
    learning_rate=1e-3,
):
    """Build and compile the seed's CNN.

    Convolution (3x3, ReLU) + batch normalisation + 2x2 max pooling per entry of
    ``filters``, global average pooling, a dense layer with dropout and a sigmoid output.
    Layer names follow STDPipe, so its weights load into it.

    Returns
    -------
    keras.Model
    """
    keras = import_keras()
    from keras import layers

    image_input = keras.Input(shape=tuple(input_shape), name="image_input")
    x = image_input
    for i, n_filters in enumerate(filters):
        x = layers.Conv2D(
            n_filters, (3, 3), activation="relu", padding="same", name=f"conv{i + 1}"
        )(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.MaxPooling2D((2, 2), name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense1")(x)
    x = layers.Dropout(dropout_rate, name="dropout")(x)
    output = layers.Dense(1, activation="sigmoid", name="output")(x)
    model = keras.Model(inputs=image_input, outputs=output, name="realbogus_classifier")
    compile_model(model, learning_rate)
    return model


def compile_model(model, learning_rate=1e-3):
    """Compile for binary classification with accuracy and AUC metrics."""
    keras = import_keras()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )


def input_size_of(keras_model, path=None):
    """Side of the square two-channel input a Keras model expects (31 if dynamic).

    Raises `RbvetError` for models rbvet cannot feed: several inputs, not 4-D, not two
    channels, not square or of even size.
    """
    shape = keras_model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise RbvetError(f"model has {len(shape)} inputs; rbvet feeds one image input", path)
        shape = shape[0]
    shape = tuple(shape)
    if len(shape) != 4:
        raise RbvetError(f"model input shape {shape[1:]} is not (size, size, 2)", path)
    height, width, channels = shape[1:]
    if channels != 2:
        raise RbvetError(
            f"model expects {channels} input channels; rbvet makes 2-channel inputs "
            f"(input shape {shape[1:]})",
            path,
        )
    if height is None and width is None:
        return PreprocessParams().target_size
    if height != width or height is None or width is None:
        raise RbvetError(f"model input {height}x{width} is not square", path)
    if height % 2 == 0:
        raise RbvetError(f"model input size {height} is even; stamps need a centre pixel", path)
    return int(height)


def card_path(model_path):
    """The JSON card that goes with a model file."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + CARD_SUFFIX)


def make_card(
    input_size,
    params=None,
    training=None,
    metrics=None,
    parent=None,
    description="",
    real_kinds=("star", "galaxy"),
    threshold=0.5,
):
    """A model card as a plain dict (see DESIGN.md, "Contracts")."""
    params = params or PreprocessParams(target_size=input_size)
    return {
        "format": CARD_FORMAT,
        "description": description,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input_shape": [int(input_size), int(input_size), 2],
        "preprocessing": params.to_dict(),
        "real_kinds": list(real_kinds),
        "threshold": float(threshold),
        "training": training or {},
        "metrics": metrics or {},
        "parent": parent,
    }


def file_digest(path, length=12):
    """Short SHA-256 of a file, used to name a model's parent on its card."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest[:length]


class RealBogusModel:
    """A Keras real-bogus model with its card and a fast prediction engine.

    Parameters
    ----------
    keras_model : keras.Model
    card : dict, optional
        Model card; a card describing the seed's preprocessing is made when missing.
    path : str or Path, optional
        Where the model came from (for messages and as a parent reference).
    engine : {'auto', 'onnx', 'keras'}
        Prediction engine. 'auto' uses ONNX Runtime when available and verified.
    """

    def __init__(self, keras_model, card=None, path=None, engine="auto"):
        self._keras_model = keras_model
        self.path = None if path is None else Path(path)
        self.input_size = input_size_of(keras_model, path)
        self.card = (
            card
            if card is not None
            else make_card(self.input_size, description="no card: assumed STDPipe preprocessing")
        )
        self.params = PreprocessParams.from_dict(self.card.get("preprocessing", {}))
        self._check_card()
        self.engine_name = "keras"
        self._onnx_session = None
        self._requested_engine = engine

    @classmethod
    def _from_cached_engine(cls, session, card, path):
        """A model that predicts with a cached ONNX session; Keras loads when first needed.

        None when the card does not describe the session's input.
        """
        size = session.get_inputs()[0].shape[1]
        if list(card.get("input_shape", [])) != [size, size, 2]:
            return None  # let the full load report what does not fit
        model = cls.__new__(cls)
        model._keras_model = None
        model.path = Path(path)
        model.card = card
        model.input_size = int(size)
        model.params = PreprocessParams.from_dict(card.get("preprocessing", {}))
        model._check_card()
        model._onnx_session = session
        model.engine_name = "onnx"
        model._requested_engine = None
        return model

    @property
    def keras_model(self):
        """The Keras network (loaded from `path` on first use when only the engine was)."""
        if self._keras_model is None:
            self._keras_model = _load_keras_model(self.path)
        return self._keras_model

    def _check_card(self):
        shape = list(self.card.get("input_shape", [self.input_size, self.input_size, 2]))
        expected = [self.input_size, self.input_size, 2]
        if shape != expected:
            raise RbvetError(
                f"model card says input shape {shape} but the network takes {expected}", self.path
            )
        if int(self.params.target_size) != self.input_size:
            raise RbvetError(
                f"model card preprocessing makes {self.params.target_size}-pixel inputs but "
                f"the network takes {self.input_size}",
                self.path,
            )

    @property
    def threshold(self):
        """Recommended score threshold from the card (0.5 when not given)."""
        return float(self.card.get("threshold", 0.5))

    @property
    def name(self):
        return self.path.name if self.path is not None else "unsaved model"

    def _ensure_engine(self):
        if self._requested_engine is None:
            return
        requested, self._requested_engine = self._requested_engine, None
        if requested == "keras":
            return
        cache = _onnx_cache_path(self.path)
        session = _cached_session(cache)
        if session is None or not self._agrees_with_keras(session):
            converted = _convert_to_onnx(self.keras_model, self.input_size)
            session = _onnx_session(converted)
            if session is None:
                if requested == "onnx":
                    warnings.warn(
                        "ONNX Runtime engine unavailable; predicting with Keras",
                        RbvetWarning,
                        stacklevel=3,
                    )
                return
            if not self._agrees_with_keras(session):
                warnings.warn(
                    "ONNX Runtime disagrees with Keras on this model; using Keras",
                    RbvetWarning,
                    stacklevel=3,
                )
                return
            _write_cached(cache, converted)
        self._onnx_session = session
        self.engine_name = "onnx"

    def _agrees_with_keras(self, session):
        """Whether an ONNX session scores a random probe batch as the Keras model does."""
        probe = (
            np.random.default_rng(0)
            .normal(size=(16, self.input_size, self.input_size, 2))
            .astype(np.float32)
        )
        reference = self._predict_keras(probe, 16)
        converted = session.run(None, {session.get_inputs()[0].name: probe})[0].ravel()
        return bool(np.max(np.abs(converted - reference)) <= ENGINE_TOLERANCE)

    def _predict_keras(self, inputs, batch_size):
        import_keras()
        if len(inputs) <= batch_size:
            return np.asarray(self.keras_model(inputs, training=False)).ravel()
        return self.keras_model.predict(inputs, batch_size=batch_size, verbose=0).ravel()

    def predict(self, inputs, batch_size=DEFAULT_BATCH_SIZE):
        """Scores in [0, 1] for a batch of preprocessed inputs of shape (N, size, size, 2)."""
        return self.predict_later(inputs, batch_size)()

    def predict_later(self, inputs, batch_size=DEFAULT_BATCH_SIZE):
        """Start scoring ``inputs``; returns a `PendingScores`, called to wait for them.

        With ONNX Runtime the batches run on the prediction threads while the caller
        goes on (say, preparing the next chunk of objects); the threads move on to the
        next call's batches without waiting for this one to be collected. With Keras the
        scores are computed before this returns.
        """
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        expected = (self.input_size, self.input_size, 2)
        if inputs.ndim != 4 or inputs.shape[1:] != expected:
            raise RbvetError(
                f"inputs of shape {inputs.shape[1:]} do not fit the model's {expected}", self.path
            )
        if len(inputs) == 0:
            return PendingScores(scores=np.zeros(0, np.float32))
        self._ensure_engine()
        if self._onnx_session is None:
            return PendingScores(scores=self._predict_keras(inputs, batch_size))
        session = self._onnx_session
        name = session.get_inputs()[0].name
        step = min(batch_size, _ONNX_BATCH_SIZE)

        def run(batch):
            return session.run(None, {name: batch})[0].ravel()

        futures = [
            _PREDICTION_THREADS.submit(run, inputs[i : i + step])
            for i in range(0, len(inputs), step)
        ]
        return PendingScores(futures)

    def save(self, path):
        """Save the network and its card (see `save_model`)."""
        save_model(self.keras_model, path, self.card)
        self.path = Path(path)


def inference_threads():
    """Threads that predict in parallel: ``RBVET_INFERENCE_THREADS``, else the cores this
    process may use (a Dask worker per core sets 1)."""
    from rbvet.core.jobs import cpu_count

    try:
        return max(1, int(os.environ["RBVET_INFERENCE_THREADS"]))
    except (KeyError, ValueError):
        return cpu_count()


class _PredictionThreads:
    """Threads that run ONNX batches: started on demand, ended after a moment idle.

    ONNX Runtime runs each batch on the calling thread (one intra-op thread), so
    `inference_threads` of these keep that many cores busy. Threads that outlive a call,
    rather than a pool per call, let the batches of consecutive calls follow each other
    without a pause at each call's end; ending them once idle for `IDLE_EXIT_S` leaves
    nothing running between classifications, and as they are not daemons the
    interpreter lets them finish their batch before it exits (a daemon thread inside
    ONNX Runtime at exit aborts the process).
    """

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, function, argument):
        """Run ``function(argument)`` on a prediction thread; returns its `Future`."""
        future = Future()
        with self._lock:
            self._queue.put((future, function, argument))
            while self._running < inference_threads():
                name = f"rbvet-predict-{self._running}"
                # Explicitly not a daemon: a thread inherits the daemon flag of its
                # creator, and Python counts a QThread (the GUI's jobs) as a daemon.
                threading.Thread(target=self._work, name=name, daemon=False).start()
                self._running += 1
        return future

    def _work(self):
        while True:
            try:
                future, function, argument = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:  # submit() queues under this lock: no task is stranded
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(argument))
                except BaseException as error:  # handed to whoever waits for it
                    future.set_exception(error)


class PendingScores:
    """Scores being computed on the prediction threads (see `RealBogusModel.predict_later`)."""

    def __init__(self, futures=(), scores=None):
        self._futures = list(futures)
        self._scores = scores

    def __call__(self):
        """Wait for the scores and return them."""
        if self._scores is None:
            parts = [future.result() for future in self._futures]
            self._scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return self._scores

    def cancel(self):
        """Drop the batches that have not started (the caller no longer wants them)."""
        for future in self._futures:
            future.cancel()


_PREDICTION_THREADS = _PredictionThreads()


def _convert_to_onnx(keras_model, input_size):
    """The Keras model as serialised ONNX, or None if it cannot be converted here."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError:
        return None
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = (tf.TensorSpec((None, input_size, input_size, 2), tf.float32, name="inputs"),)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function = tf.function(lambda x: keras_model(x, training=False))
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=spec, opset=ONNX_OPSET
            )
    except Exception:  # any conversion failure means: use Keras
        return None
    return proto.SerializeToString()


def _onnx_session(onnx_bytes):
    """An ONNX Runtime session for serialised ONNX, or None (no runtime, or bad bytes)."""
    if onnx_bytes is None:
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # One thread per run, no spin-waiting: `predict` runs batches on parallel threads,
    # which keeps both cores busy without the intra-op barriers that stall whenever
    # any other process takes a core, and lets the preparation of the next chunk run.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
    except Exception:  # a damaged cached file: convert again
        return None


def _onnx_cache_path(model_path):
    """Where the ONNX conversion of a saved model is kept, named by the file's digest.

    Converting takes seconds to tens of seconds and would otherwise be paid by every
    GUI start and every Dask worker. A cached file is used only after it agrees with
    the Keras model on a probe batch.
    """
    if model_path is None or not Path(model_path).is_file():
        return None
    return user_cache_dir() / "onnx" / f"{file_digest(model_path, 32)}-opset{ONNX_OPSET}.onnx"


def _cached_session(cache):
    """The ONNX session cached at ``cache`` (see `_onnx_cache_path`), if it is sound.

    The cache file names the model's digest twice: in its name and in its metadata
    (written with it, after the conversion agreed with Keras). A file whose metadata
    names another model, or that does not load, is not used.
    """
    session = _onnx_session(_read_cached(cache))
    if session is None:
        return None
    digest = session.get_modelmeta().custom_metadata_map.get(_DIGEST_KEY)
    return session if digest == cache.name.split("-")[0] else None


def _read_cached(path):
    try:
        return None if path is None else path.read_bytes()
    except OSError:
        return None


def _write_cached(path, onnx_bytes):
    if path is None or onnx_bytes is None:
        return
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = _DIGEST_KEY, path.name.split("-")[0]
    onnx_bytes = proto.SerializeToString()
    try:
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(onnx_bytes))
    except RbvetError:  # a read-only or full cache costs a conversion next time, nothing more
        pass


def read_card(path):
    """The card next to a model file, or None when there is none."""
    path = card_path(path)
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RbvetError(f"unreadable model card ({error})", path) from None
    if not isinstance(card, dict):
        raise RbvetError("model card is not a JSON object", path)
    return card


def _refuse_lambda_layers(path):
    """Refuse a model whose saved architecture holds a ``Lambda`` layer.

    A Lambda layer is stored as Python bytecode that loading would run. Keras' safe mode
    refuses it too, but not every Keras 3 release applies safe mode to ``.h5`` files, so
    the architecture (``config.json`` in a ``.keras`` zip, ``model_config`` in an HDF5
    file) is read and checked here first. A file whose architecture cannot be read is
    left to Keras, which reports it.
    """
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                text = archive.read("config.json")
        else:
            import h5py

            with h5py.File(path, "r") as hdf:
                text = hdf.attrs.get("model_config")
        config = json.loads(text) if text is not None else None
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile):
        return
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("class_name") in ("Lambda", "__lambda__"):
                raise RbvetError(
                    "model contains a Lambda layer (arbitrary Python code); rbvet does not "
                    "load it",
                    path,
                )
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def load_model(path=None, engine="auto"):
    """Load a model (``.keras`` or STDPipe's legacy ``.h5``) and its card.

    Parameters
    ----------
    path : str or Path, optional
        Model file; the default model shipped in ``resources/models`` when None.
    engine : {'auto', 'onnx', 'keras'}
        Prediction engine (see `RealBogusModel`).

    Returns
    -------
    RealBogusModel

    Raises
    ------
    RbvetError
        Missing or unreadable file, a network whose input rbvet cannot feed, or one
        holding a ``Lambda`` layer (Python code; models load in Keras' safe mode).
    """
    path = Path(path) if path is not None else default_model_path()
    if not path.exists():
        hint = " (train one with `rbvet train`)" if path == default_model_path() else ""
        raise RbvetError(f"model file not found{hint}", path)
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise RbvetError("unknown model format: expected a .keras or .h5 file", path)
    _refuse_lambda_layers(path)
    card = read_card(path)
    if engine != "keras" and card is not None and "input_shape" in card:
        # A model converted before: predict at once, and import TensorFlow only if the
        # Keras network itself is asked for (retraining, the STDPipe API).
        session = _cached_session(_onnx_cache_path(path))
        model = (
            None if session is None else RealBogusModel._from_cached_engine(session, card, path)
        )
        if model is not None:
            return model
    return RealBogusModel(_load_keras_model(path), card, path=path, engine=engine)


def _load_keras_model(path):
    """The Keras network in a model file, loaded in safe mode and checked for sound weights."""
    path = Path(path)
    suffix = path.suffix.lower()
    keras = import_keras()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if suffix == ".keras":
                keras_model = keras.saving.load_model(path, safe_mode=True)
            else:
                keras_model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RbvetError(
            f"cannot load model: {type(error).__name__} {message}"[:300], path
        ) from None
    if not all(np.isfinite(weights).all() for weights in keras_model.get_weights()):
        # Such a network scores every object NaN; refuse it rather than score nothing.
        raise RbvetError("model weights contain NaN or infinity", path)
    return keras_model


def save_model(keras_model, path, card=None):
    """Save a model as ``.keras`` (or legacy ``.h5``) and its JSON card, atomically.

    Parameters
    ----------
    keras_model : keras.Model
    path : str or Path
        Destination; the card goes to ``<path>.card.json``.
    card : dict, optional
        Model card; a minimal one is made when None.
    """
    path = Path(path)
    if path.suffix.lower() not in (".keras", ".h5"):
        raise RbvetError("model files must end in .keras (or .h5 for STDPipe)", path)
    size = input_size_of(keras_model, path)
    card = card if card is not None else make_card(size)
    import_keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atomic_write(path, keras_model.save)
    text = json.dumps(card, indent=2, sort_keys=False, default=json_default) + "\n"
    atomic_write(card_path(path), lambda temporary: Path(temporary).write_text(text))
