"""Writing files so that an interrupted write never leaves a half file under the final name."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path, write, suffix=None):
    """Call ``write(temporary_path)`` and rename the finished file onto ``path``.

    The temporary file lives in the same directory (so the rename is atomic) and ends
    like ``path`` (or ``suffix``), because writers such as Keras and astropy pick the
    format from the name. It is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def json_default(value):
    """``json.dumps`` fallback for numpy scalars and arrays (anything else as text)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
