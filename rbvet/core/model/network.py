"""The network: the seed's architecture, the input it takes, and reading a Keras file.

Everything that needs Keras imports it inside the function, through `import_keras`, so
vetting with ONNX Runtime never loads TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.errors import RbvetError

TRAIN_EXTRA = "rbvet[train]"


class KerasNotInstalled(RbvetError):
    """TensorFlow/Keras is needed (training, a model without its ONNX file) but missing."""


def import_keras():
    """Import Keras with TensorFlow's start-up chatter silenced.

    Raises
    ------
    KerasNotInstalled
        When Keras or its TensorFlow backend cannot be imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if "keras" in sys.modules:
            import keras
        else:
            with _native_stderr_silenced():
                import keras
    except ImportError as error:
        raise KerasNotInstalled(
            f"TensorFlow/Keras is not installed ({error}); training and converting models "
            f"need it: pip install '{TRAIN_EXTRA}'"
        ) from None
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return keras


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to the null device meanwhile.

    TensorFlow 2.21 logs through absl before ``TF_CPP_MIN_LOG_LEVEL`` is read ("All log
    messages before absl::InitializeLog() ...", "oneDNN custom operations are on"), four
    lines on every command that trains. Python's own errors are raised, not printed, so
    nothing a user needs is lost.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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


def compile_model(model, learning_rate=1e-3, **compile_options):
    """Compile for binary classification with accuracy and AUC metrics.

    ``compile_options`` go to ``model.compile`` (e.g. ``jit_compile``, which
    ``benchmarks/bench_train.py`` measures).
    """
    keras = import_keras()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
        **compile_options,
    )


def input_size_of(keras_model, path=None):
    """Side of the square two-channel input a Keras model expects (31 if dynamic).

    Raises `RbvetError` for models rbvet cannot feed (see `input_size_from_shape`).
    """
    shape = keras_model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise RbvetError(f"model has {len(shape)} inputs; rbvet feeds one image input", path)
        shape = shape[0]
    return input_size_from_shape(shape, path)


def check_output_shape(shape, path=None, n_outputs=1):
    """Refuse a network that does not give one score per object.

    rbvet reads one real-bogus probability per object: a single output of shape
    ``(batch, 1)`` (or ``(batch,)``). A classifier with more classes, or a network that
    outputs images, would fail later, deep in classification.

    Parameters
    ----------
    shape : sequence
        The output's shape, batch first (None or a symbolic name where dynamic).
    path : str or Path, optional
    n_outputs : int
        How many outputs the network has.

    Raises
    ------
    RbvetError
    """
    if n_outputs != 1:
        raise RbvetError(
            f"model has {n_outputs} outputs; rbvet reads one real-bogus score per object", path
        )
    shape = tuple(size if isinstance(size, (int, np.integer)) else None for size in shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        per_object = "x".join("?" if size is None else str(size) for size in shape[1:])
        raise RbvetError(
            f"model outputs {per_object} values per object; rbvet reads one real-bogus "
            "score per object (a single sigmoid output, shape (N, 1))",
            path,
        )


def output_shape_of(keras_model):
    """(output shape, number of outputs) of a Keras model."""
    shape = keras_model.output_shape
    if isinstance(shape, list):
        return (shape[0] if shape else ()), len(shape)
    return shape, 1


def input_size_from_shape(shape, path=None):
    """Side of the square input of a network whose input has ``shape`` (batch first).

    Dimensions that are not integers (None, or an ONNX symbolic name) are dynamic; a
    fully dynamic image takes the seed's 31 pixels.

    Raises
    ------
    RbvetError
        Not 4-D, not two channels, not square or of even size.
    """
    shape = tuple(size if isinstance(size, (int, np.integer)) else None for size in shape)
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


def load_keras_network(path):
    """The Keras network in a model file, loaded in safe mode and checked for sound weights.

    Raises
    ------
    KerasNotInstalled
        Without TensorFlow/Keras.
    RbvetError
        A file Keras cannot read, or weights that are not finite.
    """
    path = Path(path)
    keras = import_keras()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Not compiled: predicting needs no optimizer, fine-tuning compiles a clone
            # afresh, and the optimizer of a file saved under PyTorch names a module of
            # Keras' torch backend, whose import here would load PyTorch into this process.
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


def penultimate_head(keras_model):
    """The last layer as a plain dict, when it is a one-unit sigmoid dense layer.

    Returns
    -------
    dict or None
        ``weights`` (the kernel, one value per penultimate feature), ``bias``,
        ``dropout_rate`` (of a Dropout layer just before it, else 0) and ``activation``;
        None for a network that ends otherwise, whose features rbvet then cannot use.
    """
    keras = import_keras()
    layers = keras_model.layers
    last = layers[-1] if layers else None
    if not isinstance(last, keras.layers.Dense) or last.units != 1:
        return None
    if keras.activations.serialize(last.activation) != "sigmoid":
        return None
    kernel, *rest = last.get_weights()
    before = layers[-2] if len(layers) > 1 else None
    rate = float(before.rate) if isinstance(before, keras.layers.Dropout) else 0.0
    return {
        "weights": [float(v) for v in np.asarray(kernel).ravel()],
        "bias": float(np.asarray(rest[0]).ravel()[0]) if rest else 0.0,
        "dropout_rate": rate,
        "activation": "sigmoid",
    }
