"""Frame + positions -> real-bogus scores, in memory-bounded chunks.

`iter_scores` is a generator, so a caller (the CLI's progress bar, a GUI worker that
may be cancelled) sees each chunk as it is done; `score_objects` collects it into one
array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.cutouts.preprocess import plan_rescale
from rbvet.core.cutouts.stamps import DEFAULT_CHUNK_SIZE, ObjectInputs, iter_inputs
from rbvet.core.errors import RbvetError, raise_if_stopped
from rbvet.core.io.catalog import BOGUS_FLAG

SCORE_COLUMN = "rb_score"
REASON_COLUMN = "rb_reason"
FLAGS_COLUMN = "flags"
FIRST_CHUNK = 256
"""Objects in the first chunk: small, so the network starts while the rest is prepared."""


@dataclass
class ScoredChunk:
    """One chunk of objects: its place in the catalog, CNN inputs, reasons and scores."""

    start: int
    objects: ObjectInputs
    scores: np.ndarray

    @property
    def stop(self):
        return self.start + len(self.scores)

    @property
    def inputs(self):
        return self.objects.inputs

    @property
    def reason(self):
        return self.objects.reason

    @property
    def scorable(self):
        return self.objects.scorable


def iter_scores(frame, x, y, model, fwhm, chunk_size=DEFAULT_CHUNK_SIZE, batch_size=None):
    """Score objects chunk by chunk.

    Parameters
    ----------
    frame : Frame
        The frame; its background/noise maps are used when present.
    x, y : array_like
        0-based positions.
    model : RealBogusModel
    fwhm : float
        Frame FWHM in pixels; sets the rescaling (see `plan_rescale`).
    chunk_size : int
        Objects per chunk; bounds memory.
    batch_size : int, optional
        Inference batch size.

    Yields
    ------
    ScoredChunk
        Unscorable objects have score NaN and a ``reason``.
    """
    rescale = plan_rescale(fwhm, model.params)
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    # While the network scores one chunk, the next one is cut and preprocessed.
    pending = None
    chunks = iter_inputs(
        frame, x, y, rescale, model.params, chunk_size=chunk_size, first_chunk_size=FIRST_CHUNK
    )
    try:
        for start, objects in chunks:
            scorable = objects.scorable
            scores_later = model.predict_later(objects.inputs[scorable], **kwargs)
            previous, pending = pending, (start, objects, scorable, scores_later)
            if previous is not None:
                yield _collect(*previous)
        if pending is not None:
            last, pending = pending, None
            yield _collect(*last)
    finally:  # a consumer that stops early (a cancelled job) stops the network too
        if pending is not None:
            pending[-1].cancel()


def _collect(start, objects, scorable, scores_later):
    scores = np.full(len(objects), np.nan, np.float32)
    scores[scorable] = scores_later()
    return ScoredChunk(start, objects, scores)


def open_frame_and_catalog(
    frame_path,
    catalog_path=None,
    *,
    hdu=None,
    mask=None,
    error=None,
    weight=None,
    detect_threshold=3.0,
    fwhm=None,
    log=None,
    should_stop=None,
):
    """Read a frame (with background and noise maps) and its objects, and find the FWHM.

    Parameters
    ----------
    frame_path : str or Path
    catalog_path : str or Path, optional
        Catalog to read; without one, objects are detected with sep at
        ``detect_threshold`` sigma.
    hdu, mask, error, weight
        As in `rbvet.core.io.frame.read_frame`.
    fwhm : float, optional
        Frame FWHM in pixels; estimated from the objects when absent.
    log : callable, optional
        Called with one-line messages on what was found.
    should_stop : callable, optional
        Asked between the steps (reading, background and noise maps, objects, FWHM);
        once it returns True, `concurrent.futures.CancelledError` is raised. With it,
        objects on frames larger than `rbvet.core.detect.detection.CHILD_PROCESS_MIN_PIXELS` are
        detected in a child process, which it can stop at any moment and which leaves
        other threads running.

    Returns
    -------
    frame : Frame
    table : astropy.table.Table
        With 0-based ``x`` and ``y`` columns.
    fwhm : float
    """
    from rbvet.core.detect.detection import (
        CHILD_PROCESS_MIN_PIXELS,
        detect_objects,
        detect_objects_in_child_process,
    )
    from rbvet.core.detect.psf import estimate_fwhm
    from rbvet.core.io.catalog import read_catalog
    from rbvet.core.io.frame import read_frame

    def stop_if_asked():
        raise_if_stopped(should_stop, f"{frame_path}: reading cancelled")

    log = log or (lambda message: None)
    stop_if_asked()
    frame = read_frame(frame_path, hdu=hdu, mask=mask, error=error, weight=weight)
    stop_if_asked()
    frame.ensure_background()
    stop_if_asked()
    if catalog_path:
        table = read_catalog(catalog_path, frame=frame)
        log(f"Catalog {catalog_path}: {len(table)} objects")
    else:
        if should_stop is not None and frame.image.size > CHILD_PROCESS_MIN_PIXELS:
            table = detect_objects_in_child_process(frame, should_stop, thresh=detect_threshold)
        else:
            table = detect_objects(frame, thresh=detect_threshold)
        log(f"Detected {len(table)} objects at {detect_threshold:g} sigma")
        if len(table) == 0:
            raise RbvetError("no objects detected (try a lower detection threshold)", frame_path)
    if fwhm is None:
        stop_if_asked()
        fwhm = estimate_fwhm(frame, table["x"], table["y"], table=table)
        log(f"FWHM {fwhm:.2f} px (estimated)")
    return frame, table, float(fwhm)


def score_objects(frame, x, y, model, fwhm, progress=None, **kwargs):
    """Scores and reasons for all objects.

    Parameters
    ----------
    progress : callable, optional
        Called as ``progress(done, total)`` after each chunk.
    **kwargs
        Passed to `iter_scores`.

    Returns
    -------
    scores : ndarray (N,) float32
        NaN for unscorable objects.
    reasons : ndarray (N,) str
        Empty for scored objects.
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    scores = np.full(len(x), np.nan, np.float32)
    reasons = np.full(len(x), "", dtype=object)
    for chunk in iter_scores(frame, x, y, model, fwhm, **kwargs):
        scores[chunk.start : chunk.stop] = chunk.scores
        reasons[chunk.start : chunk.stop] = chunk.reason
        if progress is not None:
            progress(chunk.stop, len(x))
    return scores, reasons.astype(str)


def is_bogus(scores, threshold):
    """Bogus mask: below the threshold, or unscorable (NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    return ~(scores >= threshold)


def add_scores(table, scores, reasons, threshold=None):
    """Write ``rb_score`` and ``rb_reason`` (and the bogus flag bit) into a catalog, in place.

    The flag bit is set when ``threshold`` is given; existing ``flags`` are kept.
    """
    table[SCORE_COLUMN] = np.asarray(scores, dtype=np.float64)
    table[REASON_COLUMN] = np.asarray(reasons, dtype=str)
    if threshold is not None:
        set_bogus_flag(table, scores, threshold)
    return table


def check_flags_column(table):
    """Refuse a catalog whose ``flags`` column cannot hold the bogus bit (not integers)."""
    if FLAGS_COLUMN in table.colnames and table[FLAGS_COLUMN].dtype.kind not in "iu":
        raise RbvetError(
            f"catalog column {FLAGS_COLUMN!r} holds {table[FLAGS_COLUMN].dtype} values, not "
            "integers: cannot set the bogus flag"
        )


def set_bogus_flag(table, scores, threshold):
    """Set `BOGUS_FLAG` in ``flags`` (made if missing) where `is_bogus`; returns that mask.

    The other bits of existing flags are kept.
    """
    check_flags_column(table)
    if FLAGS_COLUMN not in table.colnames:
        table[FLAGS_COLUMN] = np.zeros(len(table), dtype=np.int64)
    bogus = is_bogus(scores, threshold)
    table[FLAGS_COLUMN][bogus] |= BOGUS_FLAG
    return bogus


def check_threshold(threshold):
    """Validate a score threshold (a number in [0, 1])."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise RbvetError(f"threshold must be a number, got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise RbvetError(f"threshold must be between 0 and 1, got {value}")
    return value
