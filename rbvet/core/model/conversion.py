"""Keras network -> ONNX: export, check against Keras, store, and reopen without TensorFlow.

An ONNX file made here carries, in its metadata, the SHA-256 of the model file it was
made from (`MODEL_DIGEST_KEY`). It is opened for a model file only when that digest
matches, so a conversion of other weights (a re-saved ``.keras``, a copied file) is never
used; the check needs only ONNX Runtime. The export itself (`export_onnx`) needs
TensorFlow, Keras and tf2onnx, which Keras' exporter uses.

An ONNX file made here also gives, as a second output named `FEATURES_OUTPUT`, the
network's penultimate features (the input of its last dense layer), and carries that
layer's weights in its metadata (`HEAD_KEY`). With them, Monte-Carlo dropout, label-error
review and the map of objects run in numpy on one pass of the network, without TensorFlow
(see `rbvet.core.model.engines.Head`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from rbvet.core.io.files import atomic_write
from rbvet.core.model.card import bytes_digest
from rbvet.core.paths import user_cache_dir

ONNX_OPSET = 17
ONNX_SUFFIX = ".onnx"
MODEL_DIGEST_KEY = "rbvet_model_sha256"
HEAD_KEY = "rbvet_head"
"""Metadata key of the last layer's weights, dropout rate and activation (JSON)."""
FEATURES_OUTPUT = "features"
FORMAT_TAG = "f1"
"""Bumped when what an ONNX file holds changes, so older cached conversions are redone."""
ENGINE_TOLERANCE = 1e-5
"""Largest score difference allowed between an ONNX file and its Keras network."""
PROBE_SIZE = 16


def onnx_path(model_path):
    """The ONNX file saved beside a model file: ``name.onnx`` for ``name.keras``."""
    return Path(model_path).with_suffix(ONNX_SUFFIX)


def cache_path(model_digest):
    """Where the conversion of a model file without its own ONNX file is kept.

    Converting takes seconds and would otherwise be paid by every GUI start and every
    Dask worker; the file is named by the model file's digest (and holds it too).
    """
    name = f"{model_digest}-opset{ONNX_OPSET}-{FORMAT_TAG}{ONNX_SUFFIX}"
    return user_cache_dir() / "onnx" / name


def export_onnx(keras_model, input_size):
    """The Keras network as serialised ONNX (Keras' own exporter), or None if it cannot be.

    The score is the first output. When the network ends in a dense layer with one unit
    (the seed's), its input is exported as a second output, `FEATURES_OUTPUT`, and the
    layer's weights are written into the metadata (`HEAD_KEY`). None when TensorFlow,
    Keras or tf2onnx is missing or the export fails: the caller then predicts with Keras,
    or saves without an ONNX file.
    """
    try:
        from rbvet.core.model.network import import_keras, penultimate_head

        keras = import_keras()
        head = penultimate_head(keras_model)
        if head is not None:
            keras_model = keras.Model(
                inputs=keras_model.inputs[0],
                outputs=[keras_model.outputs[0], keras_model.layers[-1].input],
            )
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        spec = keras.InputSpec(shape=(None, input_size, input_size, 2), dtype="float32")
        with tempfile.TemporaryDirectory(prefix="rbvet-onnx-") as folder:
            target = Path(folder) / "model.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keras_model.export(
                    target,
                    format="onnx",
                    verbose=False,
                    input_signature=[spec],
                    opset_version=ONNX_OPSET,
                )
            onnx_bytes = target.read_bytes()
        if head is not None:
            onnx_bytes = _with_metadata(onnx_bytes, HEAD_KEY, json.dumps(head))
        return onnx_bytes
    except Exception:  # any missing piece or failed export means: no ONNX here
        return None


def stamp_model_digest(onnx_bytes, model_digest):
    """The ONNX bytes with the model file's digest in their metadata (needs ``onnx``)."""
    return _with_metadata(onnx_bytes, MODEL_DIGEST_KEY, model_digest)


def _with_metadata(onnx_bytes, key, value):
    """The ONNX bytes with metadata ``key`` set to the string ``value`` (needs ``onnx``)."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    for entry in list(proto.metadata_props):
        if entry.key == key:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
    return proto.SerializeToString()


def onnx_session(onnx_bytes):
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
    except Exception:  # a damaged file: not used
        return None


def open_onnx_for(path, model_digest, file_digest=None):
    """The ONNX session in ``path`` if it was made from the model file with ``model_digest``.

    Parameters
    ----------
    path : Path or None
    model_digest : str
        Full SHA-256 of the model file; the ONNX file must name it in its metadata.
    file_digest : str, optional
        SHA-256 the ONNX file must have (the card's record), when known.

    Returns
    -------
    onnxruntime.InferenceSession or None
        None when the file is missing, damaged, or belongs to other weights.
    """
    try:
        onnx_bytes = None if path is None else Path(path).read_bytes()
    except OSError:
        return None
    if onnx_bytes is None or (file_digest is not None and bytes_digest(onnx_bytes) != file_digest):
        return None
    session = onnx_session(onnx_bytes)
    if session is None:
        return None
    stamped = session.get_modelmeta().custom_metadata_map.get(MODEL_DIGEST_KEY)
    return session if stamped == model_digest else None


def probe_inputs(input_size, count=PROBE_SIZE):
    """A fixed random batch on which an ONNX file and its Keras network must agree."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, input_size, input_size, 2)).astype(np.float32)


def max_difference(session, keras_model, input_size):
    """Largest score difference between an ONNX session and a Keras network on the probe."""
    probe = probe_inputs(input_size)
    reference = np.asarray(keras_model(probe, training=False)).ravel()
    converted = session.run(None, {session.get_inputs()[0].name: probe})[0].ravel()
    return float(np.max(np.abs(converted - reference)))


def write_onnx(path, onnx_bytes):
    """Write ONNX bytes to ``path`` atomically."""
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(onnx_bytes))
