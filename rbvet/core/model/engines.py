"""`RealBogusModel`: a network with its card, predicting with ONNX Runtime or Keras.

ONNX Runtime gives about twice the throughput of ``keras.Model.predict`` for this small
network on CPUs, with the same outputs, and needs no TensorFlow. A model opened from an
ONNX file loads its Keras network only when asked for it (retraining, the STDPipe API).
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.model import conversion
from rbvet.core.model.card import file_digest, make_card
from rbvet.core.model.head import Head
from rbvet.core.model.network import (
    check_output_shape,
    import_keras,
    input_size_from_shape,
    input_size_of,
    load_keras_network,
    output_shape_of,
    penultimate_head,
)

ENGINES = ("auto", "onnx", "keras")
IDLE_EXIT_S = 0.5
"""Seconds a prediction thread waits for work before it ends."""
DEFAULT_BATCH_SIZE = 256
_ONNX_BATCH_SIZE = 64
"""Small batches stay in the L2 cache: 64 runs about 1.3x faster than 256 here."""


class RealBogusModel:
    """A real-bogus network with its card and a fast prediction engine.

    Parameters
    ----------
    keras_model : keras.Model
    card : dict, optional
        Model card; a card describing the seed's preprocessing is made when missing.
    path : str or Path, optional
        Where the model came from (for messages and as a parent reference).
    engine : {'auto', 'onnx', 'keras'}
        Prediction engine. 'auto' and 'onnx' convert the network to ONNX on first use
        (reusing a cached conversion of a saved file) and keep Keras if that fails or
        scores differently; 'onnx' warns then. See `from_onnx` for a model that needs
        no Keras at all.
    """

    def __init__(self, keras_model, card=None, path=None, engine="auto"):
        if engine not in ENGINES:
            raise RbvetError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self._keras_model = keras_model
        shape, n_outputs = output_shape_of(keras_model)
        check_output_shape(shape, path, n_outputs)
        self._setup(input_size_of(keras_model, path), card, path)
        self._requested_engine = engine

    @classmethod
    def from_onnx(cls, session, card=None, path=None):
        """A model that predicts with an ONNX Runtime session; Keras loads when first needed.

        Parameters
        ----------
        session : onnxruntime.InferenceSession
        card : dict, optional
        path : str or Path, optional
            The model file (``.keras``/``.h5``) the session was made from.
        """
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise RbvetError(f"model has {len(inputs)} inputs; rbvet feeds one image input", path)
        outputs = session.get_outputs()
        head = _onnx_head(session)
        n_outputs = 1 if head is not None and len(outputs) == 2 else len(outputs)
        check_output_shape(outputs[0].shape if outputs else (), path, n_outputs)
        model = cls.__new__(cls)
        model._keras_model = None
        model._setup(input_size_from_shape(inputs[0].shape, path), card, path)
        model._onnx_session = session
        model._head = head
        model.engine_name = "onnx"
        return model

    def _setup(self, input_size, card, path):
        self.path = None if path is None else Path(path)
        self.input_size = input_size
        self.card = (
            card
            if card is not None
            else make_card(self.input_size, description="no card: assumed STDPipe preprocessing")
        )
        self.params = PreprocessParams.from_dict(self.card.get("preprocessing", {}))
        self._check_card()
        self.engine_name = "keras"
        self._onnx_session = None
        self._requested_engine = None
        self._head = None
        self._head_read_from_keras = False
        self._keras_features = None

    @property
    def keras_model(self):
        """The Keras network (loaded from `path` on first use when only the engine was)."""
        if self._keras_model is None:
            self._keras_model = load_keras_network(self.path)
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
        """Convert the Keras network to ONNX on first use, unless Keras was asked for."""
        if self._requested_engine is None:
            return
        requested, self._requested_engine = self._requested_engine, None
        if requested == "keras":
            return
        digest = None
        if self.path is not None and self.path.is_file():
            digest = file_digest(self.path, None)
            session = conversion.open_onnx_for(conversion.cache_path(digest), digest)
            if session is not None:
                self._onnx_session, self.engine_name = session, "onnx"
                self._head = _onnx_head(session)
                return
        onnx_bytes = conversion.export_onnx(self.keras_model, self.input_size)
        session = conversion.onnx_session(onnx_bytes)
        if session is None:
            if requested == "onnx":
                warnings.warn(
                    "ONNX Runtime engine unavailable; predicting with Keras",
                    RbvetWarning,
                    stacklevel=3,
                )
            return
        difference = conversion.max_difference(session, self.keras_model, self.input_size)
        if not difference <= conversion.ENGINE_TOLERANCE:
            warnings.warn(
                "ONNX Runtime disagrees with Keras on this model; using Keras",
                RbvetWarning,
                stacklevel=3,
            )
            return
        if digest is not None:
            try:
                cached = conversion.stamp_model_digest(onnx_bytes, digest)
                conversion.write_onnx(conversion.cache_path(digest), cached)
            except (OSError, RbvetError):  # a read-only or full cache: convert next time
                pass
        self._onnx_session, self.engine_name = session, "onnx"
        self._head = _onnx_head(session)

    @property
    def head(self):
        """The last layer as a `Head`, or None when the network does not end in one.

        Read from the ONNX file's metadata, so it needs no TensorFlow for a model saved
        by rbvet; from the Keras network otherwise (an older ONNX file, or the Keras
        engine), which raises `KerasNotInstalled` without TensorFlow.
        """
        self._ensure_engine()
        if self._head is None and not self._head_read_from_keras:
            record = penultimate_head(self.keras_model)
            self._head_read_from_keras = True
            self._head = None if record is None else Head.from_dict(record)
        return self._head

    def features(self, inputs, batch_size=DEFAULT_BATCH_SIZE):
        """Penultimate features (N, D) float32 of preprocessed inputs (N, size, size, 2).

        One pass of the network (ONNX Runtime when its file gives them, else Keras);
        ``self.head.scores(features)`` are then the scores `predict` gives.

        Raises
        ------
        RbvetError
            When the network does not end in a one-unit sigmoid dense layer.
        """
        inputs = self._checked_inputs(inputs)
        if self.head is None:
            raise RbvetError(
                "this model does not end in a one-unit sigmoid dense layer, so rbvet cannot "
                "read its features (uncertainty, review and the map need them)",
                self.path,
            )
        if len(inputs) == 0:
            return np.zeros((0, self.head.n_features), np.float32)
        if self._onnx_session is not None and _onnx_head(self._onnx_session) is not None:
            session = self._onnx_session
            name = session.get_inputs()[0].name
            step = min(batch_size, _ONNX_BATCH_SIZE)
            futures = [
                _PREDICTION_THREADS.submit(
                    lambda batch: session.run(None, {name: batch})[1], inputs[i : i + step]
                )
                for i in range(0, len(inputs), step)
            ]
            return np.concatenate([future.result() for future in futures]).astype(np.float32)
        keras = import_keras()
        if self._keras_features is None:
            network = self.keras_model
            self._keras_features = keras.Model(network.inputs[0], network.layers[-1].input)
        parts = [
            np.asarray(self._keras_features(inputs[i : i + batch_size], training=False))
            for i in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(parts).astype(np.float32)

    def _checked_inputs(self, inputs):
        """``inputs`` as a contiguous float32 batch of this network's input shape."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        expected = (self.input_size, self.input_size, 2)
        if inputs.ndim != 4 or inputs.shape[1:] != expected:
            raise RbvetError(
                f"inputs of shape {inputs.shape[1:]} do not fit the model's {expected}", self.path
            )
        return inputs

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
        inputs = self._checked_inputs(inputs)
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
        """Save the network, its ONNX file and its card (see `save_model`)."""
        from rbvet.core.model.files import save_model

        self.card = save_model(self.keras_model, path, self.card)
        self.path = Path(path)


def _onnx_head(session):
    """The `Head` in an ONNX session's metadata, or None (an older or foreign file)."""
    record = session.get_modelmeta().custom_metadata_map.get(conversion.HEAD_KEY)
    if record is None or len(session.get_outputs()) != 2:
        return None
    try:
        return Head.from_dict(record)
    except (ValueError, KeyError, TypeError):
        return None


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
