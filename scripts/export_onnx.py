"""Write the ONNX file of existing model files, so they classify without TensorFlow.

Usage::

    python scripts/export_onnx.py MODEL.keras [MODEL.keras ...]

For each model it writes ``MODEL.onnx`` beside it (converted with Keras' own exporter,
checked against Keras on a probe batch, stamped with the model file's digest) and records
the ONNX file's SHA-256 on the model's card. The model file itself is not rewritten.
Needs TensorFlow, Keras and tf2onnx (``pip install 'rbvet[train]'``). Models saved by
rbvet already have their ONNX file; this is for older ones and the shipped default.
"""

from __future__ import annotations

import argparse
import sys

from rbvet.core.errors import RbvetError
from rbvet.core.model import export_onnx_file, read_card


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".keras or .h5 model file")
    args = parser.parse_args(argv)
    for model in args.models:
        try:
            written = export_onnx_file(model)
        except RbvetError as error:
            print(f"export_onnx: error: {error}", file=sys.stderr)
            return 1
        record = read_card(model)["onnx"]
        print(
            f"{written}: sha256 {record['sha256'][:12]}..., largest difference from Keras "
            f"{record['max_difference_from_keras']:.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
