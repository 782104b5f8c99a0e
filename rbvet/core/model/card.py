"""The JSON card that goes with a model file, and file digests.

The card says what input the network takes, how stamps are
preprocessed for it, what it was trained on and how well it did; with an ONNX file, the
card also records that file's SHA-256.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from rbvet.core.cutouts.preprocess import PreprocessParams
from rbvet.core.errors import RbvetError
from rbvet.core.io.files import atomic_write, json_default

CARD_FORMAT = "rbvet-model-card/1"
CARD_SUFFIX = ".card.json"


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
    """A model card as a plain dict: input shape, preprocessing, training data, metrics."""
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


def write_card(model_path, card):
    """Write ``card`` next to the model file, atomically."""
    text = json.dumps(card, indent=2, sort_keys=False, default=json_default) + "\n"
    atomic_write(card_path(model_path), lambda temporary: Path(temporary).write_text(text))


def bytes_digest(data):
    """SHA-256 of bytes, in hexadecimal."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path, length=12):
    """SHA-256 of a file in hexadecimal, cut to ``length`` characters (None: all 64).

    The short form names a model's parent on its card; the full one ties an ONNX file
    to the model file it was made from.
    """
    return bytes_digest(Path(path).read_bytes())[:length]
