"""The process-wide model cache: each model file is loaded once per process.

Loading a model imports TensorFlow or builds an ONNX Runtime session, which costs seconds,
so every caller that needs "the model at this path" (each frame of a batch run on a Dask
worker, each frame the window opens) asks `cached_model`.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

_LOCK = threading.Lock()


def cached_model(model_path=None):
    """The model at ``model_path``, loaded once per process and kept.

    The cache is keyed by the file's path, size, modification time and inode (no read
    per call), so a model file replaced on disk is loaded again. The inference engine is
    set up at once, under a lock, so threads (of a Dask worker, of the GUI) share one
    model safely.

    Parameters
    ----------
    model_path : str or Path, optional
        Model file; the shipped default model when None.

    Returns
    -------
    RealBogusModel
    """
    from rbvet.core.paths import default_model_path

    path = Path(model_path) if model_path is not None else default_model_path()
    try:
        stat = path.stat()
        version = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        version = None  # load_model reports the problem
    with _LOCK:
        return _load_model_once(None if model_path is None else str(path.resolve()), version)


@functools.lru_cache(maxsize=4)
def _load_model_once(model_path, version):
    from rbvet.core.model import load_model

    model = load_model(model_path)
    size = model.input_size
    model.predict(np.zeros((1, size, size, 2), np.float32))  # converts and checks the engine
    return model
