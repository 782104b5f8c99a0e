"""The CNN: architecture, model files (Keras + ONNX + JSON card), batched prediction.

- `network`: Keras import, the seed's architecture, input checks, reading a Keras file;
- `card`: the JSON model card and file digests;
- `conversion`: Keras -> ONNX export, checked against Keras, and reopening an ONNX file
  for the model file it was made from;
- `engines`: `RealBogusModel`, predicting with ONNX Runtime (parallel threads) or Keras;
- `files`: `load_model` and `save_model`.

Vetting (loading a saved model and scoring) needs only ONNX Runtime; TensorFlow is
imported inside the functions that train, convert or hand out the Keras network.
"""

from rbvet.core.model.card import (
    CARD_FORMAT,
    CARD_SUFFIX,
    card_path,
    file_digest,
    make_card,
    read_card,
)
from rbvet.core.model.conversion import ENGINE_TOLERANCE, ONNX_OPSET, onnx_path
from rbvet.core.model.engines import (
    DEFAULT_BATCH_SIZE,
    IDLE_EXIT_S,
    PendingScores,
    RealBogusModel,
    inference_threads,
)
from rbvet.core.model.files import export_onnx_file, load_model, save_model
from rbvet.core.model.network import (
    KerasNotInstalled,
    compile_model,
    create_model,
    import_keras,
    input_size_of,
)

__all__ = [
    "CARD_FORMAT",
    "CARD_SUFFIX",
    "DEFAULT_BATCH_SIZE",
    "ENGINE_TOLERANCE",
    "IDLE_EXIT_S",
    "ONNX_OPSET",
    "KerasNotInstalled",
    "PendingScores",
    "RealBogusModel",
    "card_path",
    "compile_model",
    "create_model",
    "export_onnx_file",
    "file_digest",
    "import_keras",
    "inference_threads",
    "input_size_of",
    "load_model",
    "make_card",
    "onnx_path",
    "read_card",
    "save_model",
]
