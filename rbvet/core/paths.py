"""Where rbvet finds its shipped data and keeps the user's files."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

DEFAULT_MODEL_NAME = "rbvet_default.keras"


def resources_dir():
    """Folder of the shipped data (default model, demo frame, icons).

    ``RBVET_RESOURCES`` overrides it; otherwise it is the package data ``rbvet/resources``
    (installed with the wheel, or in the source tree of an editable install).
    """
    override = os.environ.get("RBVET_RESOURCES")
    if override:
        return Path(override)
    return Path(str(files("rbvet") / "resources"))


def default_model_path():
    """Path of the default model shipped in ``resources/models``."""
    return resources_dir() / "models" / DEFAULT_MODEL_NAME


def demo_frame_path():
    """The small simulated demo frame shipped in ``resources/demo``."""
    return resources_dir() / "demo" / "demo_frame.fits"


def is_user_folder(folder):
    """True for a folder rbvet may write a user's file into: writable, and not the
    shipped data (where a retrained model or an export of the demo does not belong)."""
    folder = Path(folder).resolve()
    shipped = resources_dir().resolve()
    return folder != shipped and shipped not in folder.parents and os.access(folder, os.W_OK)


def user_data_dir():
    """Per-user folder for saved models and label stores (XDG data home)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "rbvet"


def user_cache_dir():
    """Per-user folder for files rbvet can rebuild, such as ONNX conversions (XDG cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rbvet"
