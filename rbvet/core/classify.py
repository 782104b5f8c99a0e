"""Frame + positions -> real-bogus scores, in memory-bounded chunks.

`iter_scores` is a generator of scored chunks, so a caller (the GUI, which renders each
chunk's tiles) sees each chunk as it is done; `score_objects` collects them. Reading a
frame (`open_frame_and_catalog`) and scoring it (`score_objects`) are jobs in the sense
of `rbvet.core.jobs`: generators that yield `Progress` and return their result.
`FrameOptions` are the options of reading a frame and finding its objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rbvet.core.cutouts.preprocess import plan_rescale
from rbvet.core.cutouts.stamps import DEFAULT_CHUNK_SIZE, ObjectInputs, iter_inputs
from rbvet.core.errors import RbvetError
from rbvet.core.io.catalog import BOGUS_FLAG
from rbvet.core.jobs import Progress

SCORE_COLUMN = "rb_score"
REASON_COLUMN = "rb_reason"
FLAGS_COLUMN = "flags"
SCORING = "Classifying"
"""The `Progress` message of `score_objects`."""
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
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    # While the network scores one chunk, the next one is cut and preprocessed.
    pending = None
    chunks = iter_model_inputs(frame, x, y, model, fwhm, chunk_size)
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


def iter_model_inputs(frame, x, y, model, fwhm, chunk_size=DEFAULT_CHUNK_SIZE):
    """``(start, ObjectInputs)`` chunks: the objects' inputs as ``model`` takes them.

    The one place that turns a frame and positions into a model's inputs (cut at the
    rescaling the FWHM asks for, preprocessed by the model card's parameters), for scores
    (`iter_scores`) and features (`iter_features`) alike.
    """
    rescale = plan_rescale(fwhm, model.params)
    return iter_inputs(
        frame, x, y, rescale, model.params, chunk_size=chunk_size, first_chunk_size=FIRST_CHUNK
    )


def iter_features(frame, x, y, model, fwhm, chunk_size=DEFAULT_CHUNK_SIZE):
    """Penultimate features of the scorable objects, chunk by chunk.

    Yields
    ------
    start : int
        Catalog row of the chunk's first object.
    scorable : ndarray (n,) bool
        Which objects of the chunk have features.
    features : ndarray (scorable.sum(), D) float32
        `RealBogusModel.features` of their inputs.
    """
    for start, objects in iter_model_inputs(frame, x, y, model, fwhm, chunk_size):
        scorable = objects.scorable
        yield start, scorable, model.features(objects.inputs[scorable])


def _collect(start, objects, scorable, scores_later):
    scores = np.full(len(objects), np.nan, np.float32)
    scores[scorable] = scores_later()
    return ScoredChunk(start, objects, scores)


@dataclass(frozen=True)
class FrameOptions:
    """How to read a frame and find its objects: the options every frame-reading path takes.

    Attributes
    ----------
    hdu : int or str, optional
        Image HDU (index or EXTNAME); the first 2-D image when None.
    mask, error, weight : int or str, optional
        Mask (nonzero = bad), 1-sigma noise and inverse-variance weight maps: an HDU of
        the frame's file (index or EXTNAME) or another FITS file.
    detect_threshold : float
        Detection threshold in sigma, when objects are detected (no catalog).
    min_area : int
        Minimum number of connected pixels above the threshold of a detected object.
    fwhm : float, optional
        Frame FWHM in pixels; estimated from the objects when None.
    saturation : float or False, optional
        Saturation level in image units; from the header or the histogram when None,
        none at all when False (see `rbvet.core.io.frame.frame_from_array`).
    use_datasec : bool
        Leave the pixels outside the header's ``TRIMSEC``/``DATASEC`` (overscan) out.
    file_noise_map : bool
        Without ``error`` and ``weight``, take the noise's shape from the file's own
        noise map (an HDU named ``WHT``, ``ERR``, ``VAR`` ...; see
        `rbvet.core.io.frame.read_frame`).
    """

    hdu: int | str | None = None
    mask: int | str | None = None
    error: int | str | None = None
    weight: int | str | None = None
    detect_threshold: float = 3.0
    min_area: int = 3
    fwhm: float | None = None
    saturation: float | bool | None = None
    use_datasec: bool = True
    file_noise_map: bool = True

    def for_another_frame(self):
        """These options without what belongs to one file (its HDU and maps, its FWHM and
        saturation level): what carries over to the next frame opened."""
        return replace(
            self, hdu=None, mask=None, error=None, weight=None, fwhm=None, saturation=None
        )

    def read_options(self):
        """Keyword arguments of `rbvet.core.io.frame.read_frame`."""
        return {
            "hdu": self.hdu,
            "mask": self.mask,
            "error": self.error,
            "weight": self.weight,
            "saturation": self.saturation,
            "use_datasec": self.use_datasec,
            "file_noise_map": self.file_noise_map,
        }


@dataclass
class FrameReading:
    """A frame as read for scoring, with what was learnt on the way.

    Attributes
    ----------
    frame : rbvet.core.io.frame.Frame
    table : astropy.table.Table
        Its objects, with 0-based ``x`` and ``y`` columns.
    fwhm : float
        The FWHM used (given, or measured).
    options : FrameOptions
        The options it was read with.
    facts : dict
        The frame's facts (`Frame.facts`), the FWHM's (`FwhmEstimate.facts`, or
        ``fwhm_source="given"``), ``objects``, ``objects_source`` and, when detected,
        ``detect_threshold`` and ``min_area``: what the catalog's ``rbvet_*`` metadata
        holds.
    estimate : rbvet.core.detect.psf.FwhmEstimate or None
        The measured FWHM with its stars and size histogram; None when the FWHM was
        given and not measured.
    image_hdus : list of (int, str, tuple)
        The file's 2-D image HDUs (index, name, shape) when listed (`image_hdus`).
    """

    frame: object
    table: object
    fwhm: float
    options: FrameOptions
    facts: dict
    estimate: object = None
    image_hdus: list = field(default_factory=list)


def open_frame_and_catalog(
    frame_path, catalog_path=None, *, options=None, log=None, interruptible=False
):
    """Read a frame (with background and noise maps) and its objects, and find the FWHM.

    A job (see `rbvet.core.jobs`): `read_frame_and_objects` returning its three main
    results only.

    Returns
    -------
    frame : Frame
    table : astropy.table.Table
        With 0-based ``x`` and ``y`` columns.
    fwhm : float
    """
    reading = yield from read_frame_and_objects(
        frame_path, catalog_path, options=options, log=log, interruptible=interruptible
    )
    return reading.frame, reading.table, reading.fwhm


def read_frame_and_objects(
    frame_path,
    catalog_path=None,
    *,
    options=None,
    log=None,
    interruptible=False,
    measure_given_fwhm=False,
):
    """Read a frame (with background and noise maps) and its objects, and find the FWHM.

    A job (see `rbvet.core.jobs`): yields `Progress` between the steps (reading,
    background and noise maps, objects, FWHM); ``run_job`` returns its result.

    Parameters
    ----------
    frame_path : str or Path
    catalog_path : str or Path, optional
        Catalog to read; without one, objects are detected with sep at
        ``options.detect_threshold`` sigma and ``options.min_area`` pixels.
    options : FrameOptions, optional
        HDUs and maps, saturation, data section, detection, FWHM; the defaults when None.
    log : callable, optional
        Called with one-line messages on what was found.
    interruptible : bool
        Detect the objects of frames larger than
        `rbvet.core.detect.detection.CHILD_PROCESS_MIN_PIXELS` in a child process, which
        yields while it waits, so closing the job stops detection at once and other
        threads keep running (a GUI wants this; starting the child costs 1-2 s).
    measure_given_fwhm : bool
        Measure the FWHM even when ``options.fwhm`` gives it, so the measurement can be
        shown beside the value used (a window's override).

    Returns
    -------
    FrameReading
    """
    from rbvet.core.detect.detection import (
        CHILD_PROCESS_MIN_PIXELS,
        detect_objects,
        detect_objects_in_child_process,
    )
    from rbvet.core.detect.psf import measure_fwhm
    from rbvet.core.io.catalog import read_catalog
    from rbvet.core.io.frame import read_frame

    options = options or FrameOptions()
    log = log or (lambda message: None)
    name = Path(frame_path).name
    yield Progress(message=f"Reading {name}")
    frame = read_frame(frame_path, **options.read_options())
    facts = frame.facts()
    log(describe_frame(facts))
    for note in facts["notes"]:
        log(f"Note: {note}")
    yield Progress(message="Mapping background and noise")
    frame.ensure_background()
    facts["noise_scale"] = frame.noise_scale  # known once the noise is mapped
    if catalog_path:
        yield Progress(message="Reading the catalog")
        table = read_catalog(catalog_path, frame=frame)
        log(f"Catalog {catalog_path}: {len(table)} objects")
    else:
        threshold, min_area = options.detect_threshold, options.min_area
        yield Progress(message="Detecting objects")
        if interruptible and frame.image.size > CHILD_PROCESS_MIN_PIXELS:
            table = yield from detect_objects_in_child_process(
                frame, thresh=threshold, minarea=min_area
            )
        else:
            table = detect_objects(frame, thresh=threshold, minarea=min_area)
        log(f"Detected {len(table)} objects at {threshold:g} sigma")
        if len(table) == 0:
            raise RbvetError(f"no objects detected: {_why_nothing_detected(frame)}", frame_path)
    fwhm = options.fwhm
    estimate = None
    if fwhm is None or measure_given_fwhm:
        yield Progress(message="Estimating the FWHM")
        estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
        log(estimate.describe())
    if fwhm is None:
        fwhm = estimate.fwhm
        facts.update(estimate.facts())
    else:
        facts.update(fwhm=float(fwhm), fwhm_source="given")
    facts.update(objects=len(table), objects_source="catalog" if catalog_path else "detected")
    if not catalog_path:
        facts.update(detect_threshold=options.detect_threshold, min_area=options.min_area)
    table.meta.update(catalog_meta(facts))
    return FrameReading(frame, table, float(fwhm), options, facts, estimate)


def _why_nothing_detected(frame):
    """What to tell a user whose frame gave no objects: a flat frame, or the threshold."""
    usable = ~frame.mask
    low = float(np.min(frame.image, where=usable, initial=np.inf))
    high = float(np.max(frame.image, where=usable, initial=-np.inf))
    if low == high:
        return f"every usable pixel is {low:g} (a blank or saturated frame holds no objects)"
    return "try a lower detection threshold or minimum area"


def catalog_meta(facts):
    """Frame facts as flat ``rbvet_*`` metadata that every catalog format keeps (FITS too)."""
    meta = {}
    for key, value in facts.items():
        if isinstance(value, (tuple, list)):
            value = "x".join(map(str, value)) if key == "shape" else "; ".join(map(str, value))
        if value is not None and value != "":
            meta[f"rbvet_{key}"] = value
    return meta


def describe_frame(facts):
    """One line for logs: the HDU, data section, saturation level and noise map (when one
    was used) a frame was read with."""
    height, width = facts["shape"]
    section = facts["data_section"] or "the whole image"
    if facts["saturation"] is None:
        saturation = "no saturation level found"
    else:
        saturation = (
            f"saturation {facts['saturation']:g} ({facts['saturation_source']}, "
            f"{facts['saturated_pixels']} pixels)"
        )
    line = f"HDU {facts['hdu']}, {width} x {height} px, data section {section}, {saturation}"
    if facts.get("noise_source", "sky") not in ("sky", "given"):
        line += f", noise {describe_noise(facts)}"
    return line


def describe_noise(facts):
    """Where a frame's noise map came from, in words (`Frame.facts`' ``noise_source`` and
    ``noise_scale``): the log line and the frame panel say it alike."""
    source, scale = facts.get("noise_source", "sky"), facts.get("noise_scale")
    if source == "sky":
        return "the sky's scatter (no noise map used)"
    if source == "given":
        return "the error map given"
    factor = "" if scale is None else f" (x{scale:.3g})"
    return f"shaped by the {source}, set to the sky's level{factor}"


def score_objects(frame, x, y, model, fwhm, on_chunk=None, **kwargs):
    """Scores and reasons for all objects.

    A job (see `rbvet.core.jobs`): yields `Progress` over the objects after each chunk;
    ``run_job`` returns its result.

    Parameters
    ----------
    on_chunk : callable, optional
        Called with each `ScoredChunk` as it is scored (the window renders its tiles).
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
    yield Progress(0, len(x), SCORING)
    for chunk in iter_scores(frame, x, y, model, fwhm, **kwargs):
        scores[chunk.start : chunk.stop] = chunk.scores
        reasons[chunk.start : chunk.stop] = chunk.reason
        if on_chunk is not None:
            on_chunk(chunk)
        yield Progress(chunk.stop, len(x), SCORING)
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
