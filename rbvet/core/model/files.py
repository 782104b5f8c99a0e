"""Model files: load (refusing Python code), save with the card and the ONNX file beside.

A saved model is three files: ``name.keras`` (the Keras network, for training),
``name.onnx`` (the same network for ONNX Runtime, checked against Keras on a probe batch
when written, and stamped with the ``.keras`` file's digest) and
``name.keras.card.json``. Loading with the 'auto' or 'onnx' engine opens the ``.onnx``
file without importing TensorFlow.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.files import atomic_write, check_input_file
from rbvet.core.model import conversion
from rbvet.core.model.card import (
    bytes_digest,
    file_digest,
    make_card,
    read_card,
    write_card,
)
from rbvet.core.model.engines import ENGINES, RealBogusModel
from rbvet.core.model.network import (
    TRAIN_EXTRA,
    KerasNotInstalled,
    import_keras,
    input_size_of,
    load_keras_network,
)
from rbvet.core.paths import default_model_path

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
EXPORT_SCRIPT = "scripts/export_onnx.py"


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_container(path):
    """Say what is wrong with a model file that is not the archive its name promises.

    Keras reports an empty, truncated or text ``.keras`` file as "File not found"; the
    file is there, so say what it is instead.
    """
    import zipfile

    size = path.stat().st_size
    if size == 0:
        raise RbvetError("empty file (0 bytes), not a model", path)
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as file:
                zip_start = file.read(4) == b"PK\x03\x04"
            problem = "truncated or damaged" if zip_start else "not a zip archive"
            raise RbvetError(
                f"not a readable .keras model: {problem} (a .keras file is a zip archive "
                f"of the network; this one has {size} bytes)",
                path,
            )
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            damaged = str(error)
        if damaged is not None:
            raise RbvetError(f"not a readable .keras model: damaged archive ({damaged})", path)
    else:
        with open(path, "rb") as file:
            if file.read(8) != _HDF5_SIGNATURE:
                raise RbvetError("not a readable .h5 model: not an HDF5 file", path)


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
    except (ImportError, OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile):
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


def check_model_file(path):
    """Check, without loading the network, that ``path`` is a model file rbvet can load.

    Cheap (no TensorFlow, no ONNX Runtime): the file exists, has a model suffix, is a
    whole archive (``.keras``) or an HDF5 file (``.h5``), holds no ``Lambda`` layer and
    its card, if any, is readable.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict or None
        The model's card (None when it has none).

    Raises
    ------
    RbvetError
        Saying what is wrong with the file.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        hint = " (train one with `rbvet train`)" if path == default_model_path() else ""
        raise RbvetError(f"model file not found{hint}", path)
    check_input_file(path, "model file")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise RbvetError("unknown model format: expected a .keras or .h5 file", path)
    _check_container(path)
    _refuse_lambda_layers(path)
    return read_card(path)


def load_model(path=None, engine="auto"):
    """Load a model (``.keras`` or STDPipe's legacy ``.h5``) and its card.

    With the 'auto' or 'onnx' engine, the ONNX file beside the model (``name.onnx``)
    is used when it was made from this very file (its digest says so, and matches the
    card's record); else a cached conversion; else the Keras network is loaded and
    converted (needs TensorFlow). Only the last imports TensorFlow.

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
        Missing or unreadable file, a network whose input rbvet cannot feed, one
        holding a ``Lambda`` layer (Python code; models load in Keras' safe mode), or a
        model without a usable ONNX file when TensorFlow is not installed.
    """
    path = Path(path) if path is not None else default_model_path()
    if engine not in ENGINES:
        raise RbvetError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    card = check_model_file(path)
    if engine != "keras":
        model = _open_onnx(path, card)
        if model is not None:
            return model
    try:
        network = load_keras_network(path)
    except KerasNotInstalled:
        if engine == "keras":
            raise  # Keras itself was asked for
        raise RbvetError(
            f"no ONNX file made from this model ({conversion.onnx_path(path).name} is "
            f"missing or belongs to other weights), and TensorFlow is not installed to "
            f"convert it: pip install '{TRAIN_EXTRA}', or write the ONNX file with "
            f"`python {EXPORT_SCRIPT} {path.name}` where TensorFlow is installed",
            path,
        ) from None
    return RealBogusModel(network, card, path=path, engine=engine)


def _open_onnx(path, card):
    """The model on an ONNX file made from ``path``: the one beside it, else the cache."""
    digest = file_digest(path, None)
    record = (card or {}).get("onnx")
    recorded = record.get("sha256") if isinstance(record, dict) else None
    candidates = ((conversion.onnx_path(path), recorded), (conversion.cache_path(digest), None))
    for candidate, expected in candidates:
        session = conversion.open_onnx_for(candidate, digest, expected)
        if session is not None:
            return RealBogusModel.from_onnx(session, card, path)
    return None


def save_model(keras_model, path, card=None):
    """Save a model as ``.keras`` (or legacy ``.h5``), its ONNX file and its JSON card.

    Each file is written to a temporary name and renamed. The ONNX file
    (``name.onnx``) is checked against Keras on a probe batch and stamped with the
    digest of the model file; the card records its SHA-256 under ``"onnx"``. When the
    network cannot be converted (tf2onnx missing, or ONNX Runtime disagrees), the model
    is saved without it, with a warning, and any older ``name.onnx`` is removed.

    Parameters
    ----------
    keras_model : keras.Model
    path : str or Path
        Destination; the card goes to ``<path>.card.json``.
    card : dict, optional
        Model card; a minimal one is made when None. It is not modified.

    Returns
    -------
    dict
        The card as written.
    """
    path = Path(path)
    if path.suffix.lower() not in (".keras", ".h5"):
        raise RbvetError("model files must end in .keras (or .h5 for STDPipe)", path)
    size = input_size_of(keras_model, path)
    card = dict(card) if card is not None else make_card(size)
    import_keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atomic_write(path, keras_model.save)
    return _write_onnx_and_card(keras_model, size, path, card)


def export_onnx_file(path):
    """Write the ONNX file of an existing model file and record it on its card.

    The model file itself is not rewritten. Needs TensorFlow, Keras and tf2onnx.

    Parameters
    ----------
    path : str or Path
        ``.keras`` or ``.h5`` model file.

    Returns
    -------
    Path
        The ONNX file written.
    """
    path = Path(path)
    if not path.exists():
        raise RbvetError("model file not found", path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise RbvetError("unknown model format: expected a .keras or .h5 file", path)
    _refuse_lambda_layers(path)
    network = load_keras_network(path)
    model = RealBogusModel(network, read_card(path), path=path, engine="keras")
    card = _write_onnx_and_card(network, model.input_size, path, model.card)
    if card.get("onnx") is None:
        raise RbvetError("cannot convert this model to ONNX", path)
    return conversion.onnx_path(path)


def _write_onnx_and_card(keras_model, size, path, card):
    """Write ``name.onnx`` for the saved model file at ``path``, then its card."""
    target = conversion.onnx_path(path)
    card.pop("onnx", None)  # a parent's record, or an older one of this file
    finite = all(np.isfinite(weights).all() for weights in keras_model.get_weights())
    session = difference = None
    if finite:
        onnx_bytes = conversion.export_onnx(keras_model, size)
        session = conversion.onnx_session(onnx_bytes)
    if session is not None:
        difference = conversion.max_difference(session, keras_model, size)
    if difference is None or not difference <= conversion.ENGINE_TOLERANCE:
        target.unlink(missing_ok=True)
        if not finite:
            problem = "has weights that are NaN or infinite (loading it will be refused)"
        elif difference is None:
            problem = "cannot be converted here (is tf2onnx installed?)"
        else:
            problem = f"scores {difference:.2g} apart in ONNX Runtime and Keras"
        warnings.warn(
            f"{path}: saved without an ONNX file: the network {problem}",
            RbvetWarning,
            stacklevel=3,
        )
    else:
        stamped = conversion.stamp_model_digest(onnx_bytes, file_digest(path, None))
        conversion.write_onnx(target, stamped)
        card["onnx"] = {
            "file": target.name,
            "sha256": bytes_digest(stamped),
            "opset": conversion.ONNX_OPSET,
            "max_difference_from_keras": difference,
        }
    write_card(path, card)
    return card
