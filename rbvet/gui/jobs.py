"""The window's long jobs, as plain functions for `JobThread`: open and classify a frame.

They run in worker threads, so they only build data; the window shows it when the
thread reports success.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from rbvet.gui.state import VettingData


class ModelCache:
    """Models loaded once per path (loading opens the ONNX engine; no TensorFlow for vetting)."""

    def __init__(self):
        self._models = {}
        self._lock = threading.Lock()

    def get(self, path=None):
        """The model at ``path`` (the shipped default when None), loading it if needed."""
        from rbvet.core.model import load_model

        key = str(Path(path).resolve()) if path else None
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(path)
            return self._models[key]


def classify_frame(frame_path, catalog_path, model_path, models, report, should_stop, **options):
    """Read a frame and its objects, score them all and render their tiles.

    Parameters
    ----------
    frame_path, catalog_path, model_path : str or None
        No catalog: objects are detected. No model: the shipped default.
    models : ModelCache
    report, should_stop : callable
        From `JobThread`.
    **options
        Passed to `rbvet.core.classify.open_frame_and_catalog` (``hdu``, ``fwhm``, ...).

    Returns
    -------
    tuple of (VettingData, threshold)
    """
    from rbvet.core.classify import iter_scores, open_frame_and_catalog
    from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
    from rbvet.gui.frame_view import prepare_display

    report(0, 0, f"Reading {Path(frame_path).name}")
    frame, table, fwhm = open_frame_and_catalog(
        frame_path, catalog_path, should_stop=should_stop, **options
    )
    report(0, 0, "Loading model")
    model = models.get(model_path)
    n_objects = len(table)
    x = np.asarray(table["x"], np.float64)
    y = np.asarray(table["y"], np.float64)
    scores = np.full(n_objects, np.nan, np.float32)
    reasons = np.full(n_objects, "", dtype=object)
    atlas = empty_atlas(n_objects, model.params.target_size)
    report(0, n_objects, "Classifying")
    for chunk in iter_scores(frame, x, y, model, fwhm):
        scores[chunk.start : chunk.stop] = chunk.scores
        reasons[chunk.start : chunk.stop] = chunk.reason
        scored = np.flatnonzero(chunk.scorable)
        atlas[chunk.start + scored] = render_tiles(chunk.inputs[scored])
        report(chunk.stop, n_objects, "Classifying")
    report(n_objects, n_objects, "Preparing the display")
    prepare_display(frame)  # about a second at 8k x 8k: here, not on the GUI thread
    frame.content_hash  # noqa: B018 (hashed here, not when the label store looks it up)
    data = VettingData.from_scores(
        frame,
        table,
        scores,
        reasons,
        atlas,
        fwhm=fwhm,
        params=model.params,
        model_name=model.name,
        frame_path=str(frame_path),
        catalog_path=str(catalog_path) if catalog_path else None,
    )
    return data, model.threshold
