"""The window's long jobs, as job generators for `JobThread`: open and classify a frame,
and estimate the uncertainty of its scores.

They run in worker threads, so they only build data; the window shows it when the
thread reports success.
"""

from __future__ import annotations

import numpy as np

from rbvet.core.classify import SCORING
from rbvet.core.cutouts.stamps import REASON_NONFINITE
from rbvet.core.jobs import Progress
from rbvet.core.session import with_score_order
from rbvet.gui.state import VettingData


def classify_frame(frame_path, catalog_path=None, model_path=None, options=None):
    """Read a frame and its objects, score them all and render their tiles.

    A job (`rbvet.core.jobs`): yields `Progress` and returns the result; closing it stops
    at once, object detection on a large frame included (it runs in a child process).

    Parameters
    ----------
    frame_path, catalog_path, model_path : str or None
        No catalog: objects are detected. No model: the shipped default. Models come
        from the process-wide `rbvet.core.model.cache.cached_model`.
    options : rbvet.core.classify.FrameOptions, optional

    Returns
    -------
    tuple of (VettingData, threshold)
    """
    from rbvet.core.classify import iter_scores, read_frame_and_objects
    from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
    from rbvet.core.io.frame import image_hdus
    from rbvet.core.model.cache import cached_model
    from rbvet.gui.frame_view import prepare_display

    # The FWHM is measured even when the user gave it: the frame settings show both.
    reading = yield from read_frame_and_objects(
        frame_path, catalog_path, options=options, interruptible=True, measure_given_fwhm=True
    )
    reading.image_hdus = image_hdus(frame_path)
    frame, table, fwhm = reading.frame, reading.table, reading.fwhm
    yield Progress(message="Loading the model")
    model = cached_model(model_path)
    n_objects = len(table)
    x = np.asarray(table["x"], np.float64)
    y = np.asarray(table["y"], np.float64)
    scores = np.full(n_objects, np.nan, np.float32)
    reasons = np.full(n_objects, "", dtype=object)
    atlas = empty_atlas(n_objects, model.params.target_size)
    yield Progress(0, n_objects, SCORING)
    for chunk in iter_scores(frame, x, y, model, fwhm):
        scores[chunk.start : chunk.stop] = chunk.scores
        reasons[chunk.start : chunk.stop] = chunk.reason
        # Every object with a position gets its picture, scored or not: the user judges
        # an unscored one (off the edge, masked) by eye, with its reason written over it.
        pictured = np.flatnonzero(chunk.reason != REASON_NONFINITE)
        atlas[chunk.start + pictured] = render_tiles(chunk.inputs[pictured])
        yield Progress(chunk.stop, n_objects, SCORING)
    yield Progress(n_objects, n_objects, "Preparing the display")
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
        reading=reading,
    )
    yield Progress(message="Sorting")
    return with_score_order(data), model.threshold


def estimate_uncertainty(data, model_path=None):
    """MC-dropout uncertainty and feature clusters of a classified frame's objects.

    A job (`rbvet.core.jobs`), run after `classify_frame` while the user already labels:
    `rbvet.core.learn.uncertainty.compute_uncertainty`, then the k-means clusters of the
    label-next queue (`rbvet.core.learn.active.feature_clusters`).

    Parameters
    ----------
    data : VettingData
    model_path : str or None
        The model that scored ``data`` (the shipped default when None).

    Returns
    -------
    tuple of (Uncertainty, ndarray) or None
        None when the model has no dropout + dense head to sample (nothing to show).
    """
    from rbvet.core.learn.active import feature_clusters
    from rbvet.core.learn.uncertainty import compute_uncertainty
    from rbvet.core.model.cache import cached_model

    model = cached_model(model_path)
    if model.head is None:
        return None
    uncertainty = yield from compute_uncertainty(data.frame, data.x, data.y, model, data.fwhm)
    yield Progress(message="Clustering the features")
    return uncertainty, feature_clusters(uncertainty.features)
