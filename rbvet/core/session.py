"""One frame's vetting session, without Qt: data, order, filter, labels, undo, threshold.

`VettingSession` is what the vetting window shows and changes, as plain Python: the frame's
`VettingData`, the threshold, the selected object, the display order (sort key, direction,
filter), the labels kept in a `rbvet.core.learn.labels.LabelStore`, and the model in use.
Every change is announced through an `Event` (a list of callables), so the Qt widgets in
`rbvet.gui` are thin adapters that re-emit them as signals, and a script or a test can drive
a whole session with no Qt imported.

Labels and the store:

- A frame is known by the hash of its pixels: reopening it (under any name, from any
  catalog) matches the catalog rows to the stored objects by position, within
  `MATCH_TOLERANCE` pixels, and shows their labels again (`VettingSession.restore`).
- An object is stored the first time it is labeled, with its raw stamp cut at that moment
  (`rbvet.core.cutouts.stamps.cut_stamps`, vectorised; about 0.1 ms per object).
- The store is opened lazily: a default store that does not exist yet is only created when
  the first label is given, so looking at frames leaves no file behind.
- Each call of `VettingSession.label` is one labeling action of the store, hence one undo
  step, however many objects it labels.
- Store errors (locked, damaged, not a label store) do not escape the labeling methods:
  they are announced once through ``error`` (one line; also kept in ``store_error``) and the
  action does nothing. A window shows them in a banner; a script can connect a callback
  that raises or prints.

Injected objects: once the frame has been assessed by injection-recovery
(`VettingSession.set_assessment`), the "filter" `FILTER_INJECTED` shows the injected objects
instead of the frame's: their tiles as they were scored, kind by kind, the worst first
(`injected_order`). They live in a read-only second session (`VettingSession.injected_session`)
that shares the threshold; they are never labels, never stored, never exported, and the
frame's own data, order and selection stay as they were until another filter is chosen.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.learn.labels import BOGUS, REAL, SOURCES, UNLABELED

__all__ = [
    "BOGUS",
    "REAL",
    "UNLABELED",
    "HUMAN",
    "MODEL",
    "Event",
    "VettingData",
    "VettingSession",
    "display_order",
    "filter_mask",
    "label_name",
    "model_save_target",
    "sort_values",
    "suspicion",
]

HUMAN, MODEL = SOURCES
"""Label sources in the store: given one by one, or by the score threshold in bulk."""
MATCH_TOLERANCE = 0.5
"""Pixels between a catalog position and a stored one that still make them one object."""
STORE_TIMEOUT = 0.1
"""Seconds to wait for another program's write to the store before giving up."""
DEFAULT_THRESHOLD = 0.5


def label_name(label):
    """'real', 'bogus' or 'unlabeled'."""
    return {REAL: "real", BOGUS: "bogus"}.get(int(label), "unlabeled")


class Event:
    """A list of callbacks, all called in order by `emit` (a Qt-free signal).

    Examples
    --------
    >>> changed = Event()
    >>> seen = []
    >>> _ = changed.connect(seen.append)
    >>> changed.emit(0.7)
    >>> seen
    [0.7]
    """

    def __init__(self):
        self._callbacks = []

    def connect(self, callback):
        """Call ``callback(*args)`` at every `emit`; returns it (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback):
        """Stop calling ``callback`` (ValueError when it is not connected)."""
        self._callbacks.remove(callback)

    def emit(self, *args):
        for callback in list(self._callbacks):
            callback(*args)

    def __len__(self):
        return len(self._callbacks)


# ------------------------------------------------------------------------------ the data


@dataclass
class VettingData:
    """Everything shown about one frame, indexed by object (catalog row order).

    Attributes
    ----------
    frame : rbvet.core.io.frame.Frame
    table : astropy.table.Table
        The catalog with 0-based ``x``, ``y`` and the ``rb_score``/``rb_reason`` columns.
    x, y : ndarray (N,) float64
    scores : ndarray (N,) float32
        NaN for objects that could not be scored.
    reasons : ndarray (N,) str
        Why an object was not scored; empty when it was.
    atlas : ndarray (N, h, w) uint8
        One tile per object (`rbvet.core.cutouts.atlas.render_tiles`), unscored ones
        included when they have a stamp; black without one.
    fwhm : float
    rescale : rbvet.core.cutouts.preprocess.Rescale
    params : rbvet.core.cutouts.preprocess.PreprocessParams
    model_name : str
    frame_path, catalog_path : str or None
        ``catalog_path`` is None when the objects were detected.
    labels : ndarray (N,) int8
        `UNLABELED`, `BOGUS` or `REAL`.
    stamps : ndarray (N, S, S) float32 or None
        Raw stamps kept with the data, for objects whose pixels are not in ``frame``
        (injected objects, cut from their round's injected frame); None: cut from
        ``frame`` when needed.
    tags : ndarray (N,) str or None
        A short word per object that a grid writes where a label would go (the kind of an
        injected object); None for none.
    score_order : ndarray (N,) intp or None
        All objects by descending score (`display_order`'s default), when made ahead of
        time (`with_score_order`, in the worker that classified the frame): sorting a
        million scores would otherwise stall the window that shows them.
    review_probability : ndarray (N,) float64 or None
        Out-of-sample probability of real from the last label review
        (`rbvet.core.learn.review`), NaN for objects it did not see; None before one.
    review_thresholds : tuple of float or None
        The review's confident-learning thresholds (bogus, real).
    annotators_disagree : ndarray (N,) bool or None
        Two annotators gave the object different labels (`VettingSession.agreement`).
    reading : rbvet.core.classify.FrameReading or None
        How the frame was read (options, facts, FWHM estimate, image HDUs), when known.
    features : ndarray (N, D) float32 or None
        Penultimate features of the network (NaN rows where not scored), once the
        uncertainty job has run (`VettingSession.set_uncertainty`).
    score_mean, bald : ndarray (N,) float32 or None
        MC-dropout predictive mean and BALD (`rbvet.core.learn.uncertainty`), likewise.
    clusters : ndarray (N,) intp or None
        k-means cluster of each object's features (`rbvet.core.learn.active`), -1 where
        there are none; the label-next queue spreads its picks over them.
    """

    frame: object
    table: object
    x: np.ndarray
    y: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    atlas: np.ndarray
    fwhm: float
    rescale: object
    params: object
    model_name: str = ""
    frame_path: str | None = None
    catalog_path: str | None = None
    labels: np.ndarray = field(default=None)
    stamps: np.ndarray = field(default=None, repr=False)
    tags: np.ndarray = field(default=None, repr=False)
    score_order: np.ndarray = field(default=None, repr=False)
    review_probability: np.ndarray = field(default=None, repr=False)
    review_thresholds: tuple = None
    annotators_disagree: np.ndarray = field(default=None, repr=False)
    reading: object = field(default=None, repr=False)
    features: np.ndarray = field(default=None, repr=False)
    score_mean: np.ndarray = field(default=None, repr=False)
    bald: np.ndarray = field(default=None, repr=False)
    clusters: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if self.labels is None:
            self.labels = np.full(len(self.scores), UNLABELED, np.int8)

    @classmethod
    def from_scores(cls, frame, table, scores, reasons, atlas, *, fwhm, params, **fields):
        """The data of a classified frame: its catalog, the scores and the rendered tiles.

        Writes the scores into ``table`` (``rb_score``/``rb_reason``, in place), takes the
        positions from its ``x`` and ``y`` columns and plans the rescaling from ``fwhm``.

        Parameters
        ----------
        frame : rbvet.core.io.frame.Frame or None
        table : astropy.table.Table
            The catalog, with 0-based ``x`` and ``y`` columns.
        scores : array_like (N,) float
            NaN for objects that could not be scored.
        reasons : array_like (N,) str
            Why an object was not scored; empty when it was.
        atlas : ndarray (N, h, w) uint8
        fwhm : float
        params : rbvet.core.cutouts.preprocess.PreprocessParams
        **fields
            The other fields (``model_name``, ``frame_path``, ``catalog_path``, ...).

        Returns
        -------
        VettingData
        """
        from rbvet.core.classify import add_scores
        from rbvet.core.cutouts.preprocess import plan_rescale

        scores = np.asarray(scores, np.float32)
        reasons = np.asarray(reasons, str)
        add_scores(table, scores, reasons)
        return cls(
            frame=frame,
            table=table,
            x=np.asarray(table["x"], np.float64),
            y=np.asarray(table["y"], np.float64),
            scores=scores,
            reasons=reasons,
            atlas=atlas,
            fwhm=fwhm,
            rescale=plan_rescale(fwhm, params),
            params=params,
            **fields,
        )

    def __len__(self):
        return len(self.scores)

    def counts(self, threshold):
        """(real, bogus, unscored): objects at or above ``threshold``, below it, and NaN."""
        scored = np.isfinite(self.scores)
        real = int(np.count_nonzero(self.scores[scored] >= threshold))
        n_scored = int(np.count_nonzero(scored))
        return real, n_scored - real, len(self.scores) - n_scored


# ---------------------------------------------------------------- order and filter

SORT_SCORE = "score"
SORT_UNCERTAINTY = "uncertainty"
SORT_POSITION = "position"
SORT_SUSPICIOUS = "suspicious"
"""Likely label errors first: by the label review's ranking once one has run (reviewed labels
first), else by |label - score|; unlabeled after."""
SORT_BALD = "bald"
"""Most uncertain first: by BALD (MC dropout); no value until the uncertainty job ran."""
SORT_LABEL_NEXT = "label_next"
"""The label-next queue (`rbvet.core.learn.active`): informative and diverse, unlabeled only
(labeled objects after, without a value)."""
SORT_WORST_FIRST = "worst first"
"""The injected objects' order (`injected_order`, kept in their `WORST_FIRST` column): kind
by kind, misses and false passes first, undetected ones included. Not offered for a
frame's own objects (not a key of `set_sort`): the injected objects' session is given it."""
COLUMN_PREFIX = "column:"
"""Sort keys of catalog columns are ``COLUMN_PREFIX + name`` (see `column_sort_key`)."""
DESCENDING_BY_DEFAULT = {
    SORT_SCORE: True,
    SORT_UNCERTAINTY: False,
    SORT_BALD: True,
    SORT_LABEL_NEXT: True,
    SORT_SUSPICIOUS: True,
    SORT_POSITION: False,
}
"""Direction a built-in key starts with (for the fixed ones below, the direction that puts
the most relevant end first); catalog columns start ascending."""
SORTS = (
    (SORT_SCORE, "score", "model score"),
    (
        SORT_LABEL_NEXT,
        "label next",
        "the most informative unlabeled objects (BALD; closeness to the threshold until it is "
        "computed), one of each kind in turn (clusters of the network's features)",
    ),
    (
        SORT_BALD,
        "most uncertain (BALD)",
        "where the network's dropout samples disagree most (BALD, MC dropout); computed in "
        "the background after scoring",
    ),
    (SORT_UNCERTAINTY, "closest to the threshold", "score closest to the threshold first"),
    (
        SORT_SUSPICIOUS,
        "suspicious labels first",
        "likely label errors first: by the label review (confident learning on out-of-sample "
        "probabilities) once it has run, else by |label - score|; unlabeled after",
    ),
    (SORT_POSITION, "position (y, x)", "position on the frame: by y, then x"),
)
"""The built-in sort keys with their names and descriptions, in the order a window offers
them."""
SORT_TIPS = tuple(tip for _, _, tip in SORTS)
"""Descriptions of the built-in sort keys, in the order of `SORTS`."""
FIXED_DIRECTION_SORTS = {
    SORT_UNCERTAINTY,
    SORT_BALD,
    SORT_LABEL_NEXT,
    SORT_SUSPICIOUS,
    SORT_POSITION,
}
"""Keys with one sensible direction: `VettingSession.set_sort` keeps them in it."""
LABEL_SORTS = {SORT_SUSPICIOUS, SORT_LABEL_NEXT}
"""Keys whose order depends on the labels."""
THRESHOLD_SORTS = {SORT_UNCERTAINTY, SORT_LABEL_NEXT}
"""Keys whose order depends on the threshold."""
UNCERTAINTY_SORTS = {SORT_BALD, SORT_LABEL_NEXT}
"""Keys whose order depends on the uncertainty (`VettingSession.set_uncertainty`)."""

FILTER_ALL = "all"
FILTER_REAL = "real"
FILTER_BOGUS = "bogus"
FILTER_UNLABELED = "unlabeled"
FILTER_LABELED = "labeled"
FILTER_DISAGREE = "disagree"
FILTER_UNSCORED = "unscored"
FILTER_ANNOTATORS_DISAGREE = "annotators disagree"
FILTER_INJECTED = "injected objects"
"""Not a filter of the frame's objects: shows the injected objects of the frame's assessment
instead (`VettingSession.set_assessment`); offered only once there is one."""
FILTERS = (
    FILTER_ALL,
    FILTER_REAL,
    FILTER_BOGUS,
    FILTER_UNLABELED,
    FILTER_LABELED,
    FILTER_DISAGREE,
    FILTER_UNSCORED,
    FILTER_ANNOTATORS_DISAGREE,
)
"""Filter names, in the order a window offers them."""
THRESHOLD_FILTERS = {FILTER_REAL, FILTER_BOGUS, FILTER_DISAGREE}
LABEL_FILTERS = {FILTER_UNLABELED, FILTER_LABELED, FILTER_DISAGREE, FILTER_ANNOTATORS_DISAGREE}


def column_sort_key(name):
    """The sort key of catalog column ``name``."""
    return COLUMN_PREFIX + name


def numeric_columns(table):
    """Names of the one-dimensional numeric columns of ``table`` (sortable keys)."""
    if table is None:
        return []
    return [
        name
        for name in table.colnames
        if table[name].ndim == 1 and table[name].dtype.kind in "biuf"
    ]


def filter_mask(data, name, threshold):
    """Boolean mask (N,) of the objects of ``data`` that filter ``name`` keeps.

    ``real`` and ``bogus`` split the scored objects at ``threshold`` exactly as
    `VettingData.counts` does; ``disagree`` keeps labels that contradict the score.
    """
    scores, labels = data.scores, data.labels
    scored = np.isfinite(scores)
    above = scored & (scores >= threshold)
    below = scored & ~above
    if name == FILTER_ALL:
        return np.ones(len(scores), bool)
    if name == FILTER_REAL:
        return above
    if name == FILTER_BOGUS:
        return below
    if name == FILTER_UNLABELED:
        return labels == UNLABELED
    if name == FILTER_LABELED:
        return labels != UNLABELED
    if name == FILTER_DISAGREE:
        return ((labels == REAL) & below) | ((labels == BOGUS) & above)
    if name == FILTER_UNSCORED:
        return ~scored
    if name == FILTER_ANNOTATORS_DISAGREE:
        if data.annotators_disagree is None:
            return np.zeros(len(scores), bool)
        return data.annotators_disagree.copy()
    raise ValueError(f"unknown filter {name!r}; expected one of {', '.join(FILTERS)}")


def count_text(count, noun):
    """``1 object``, ``2 objects``: a count with its noun, for messages and status lines."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def sort_values(data, key, threshold):
    """The values ``key`` sorts by, most significant first, as float64 arrays (N,).

    NaN marks an object without a value for that key.
    """
    if key == SORT_SCORE:
        return [data.scores.astype(np.float64)]
    if key == SORT_UNCERTAINTY:
        return [np.abs(data.scores.astype(np.float64) - threshold)]
    if key == SORT_SUSPICIOUS:
        fallback = suspicion(data.scores, data.labels)
        if data.review_probability is None:
            return [fallback]
        from rbvet.core.learn.review import label_error_score

        reviewed = label_error_score(data.review_probability, data.labels, data.review_thresholds)
        seen = np.isfinite(reviewed)
        return [
            np.where(np.isfinite(fallback), seen.astype(np.float64), np.nan),
            np.where(seen, reviewed, fallback),
        ]
    if key == SORT_BALD:
        return [_bald_or_nan(data)]
    if key == SORT_LABEL_NEXT:
        return [label_next_priority(data, threshold)]
    if key == SORT_POSITION:
        return [np.asarray(data.y, np.float64), np.asarray(data.x, np.float64)]
    if key.startswith(COLUMN_PREFIX):
        column = data.table[key[len(COLUMN_PREFIX) :]]
        return [np.ma.filled(np.ma.asarray(column).astype(np.float64), np.nan)]
    raise ValueError(f"unknown sort key {key!r}")


def _bald_or_nan(data):
    if data.bald is None:
        return np.full(len(data), np.nan)
    return data.bald.astype(np.float64)


def label_next_queue(data, threshold):
    """The label-next queue of ``data``: unlabeled scored objects, the next to label first.

    By BALD and spread over the feature clusters once the uncertainty job has run; by
    closeness to ``threshold`` before (`rbvet.core.learn.active`).

    Returns
    -------
    ndarray (M,) intp
    """
    from rbvet.core.learn.active import informativeness, label_next_order

    value = informativeness(data.scores, threshold, data.bald)
    return label_next_order(value, data.clusters, data.labels != UNLABELED)


def label_next_priority(data, threshold):
    """Sort values (descending) of the label-next queue of ``data``; NaN off the queue."""
    from rbvet.core.learn.active import queue_priority

    return queue_priority(label_next_queue(data, threshold), len(data))


def suspicion(scores, labels):
    """How strongly the model disagrees with each label: |label - score|, NaN if unlabeled.

    In the spirit of cleanlab's label-quality ranking: an object labeled real with a low
    score, or bogus with a high score, is the likeliest labeling mistake (or the model's
    most instructive error). Sorted descending, labeled real objects come by ascending
    score and labeled bogus ones by descending score, interleaved by how far they are off.

    Parameters
    ----------
    scores : ndarray (N,) float
    labels : ndarray (N,) int8

    Returns
    -------
    ndarray (N,) float64
        In [0, 1]; NaN for unlabeled (and unscored) objects.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    labeled = (labels == REAL) | (labels == BOGUS)
    return np.where(labeled, np.abs(labels.astype(np.float64) - scores), np.nan)


def display_order(data, key=SORT_SCORE, descending=True, filter_name=FILTER_ALL, threshold=0.5):
    """Object indices of ``data`` kept by ``filter_name``, in display order.

    Objects are sorted by ``key`` (descending or not); ties keep catalog order. Unscored
    objects always come last, after scored objects without a value for ``key``. One mask
    and one ``lexsort``: no Python runs per object. By descending score with the data's
    `VettingData.score_order` at hand, the filter only picks from it.

    Returns
    -------
    ndarray (M,) intp
    """
    if data is None or len(data) == 0:
        return np.empty(0, np.intp)
    if key == SORT_WORST_FIRST:  # unscored (undetected) objects in their place too
        kept = np.flatnonzero(filter_mask(data, filter_name, threshold))
        return kept[np.argsort(np.asarray(data.table[WORST_FIRST])[kept], kind="stable")]
    if key == SORT_LABEL_NEXT:
        return _label_next_display_order(data, filter_name, threshold)
    if key == SORT_SCORE and descending and data.score_order is not None:
        order = data.score_order
        if filter_name == FILTER_ALL:
            return order.copy()
        return order[filter_mask(data, filter_name, threshold)[order]]
    kept = np.flatnonzero(filter_mask(data, filter_name, threshold))
    values = [value[kept] for value in sort_values(data, key, threshold)]
    has_value = np.logical_and.reduce([np.isfinite(value) for value in values])
    group = np.where(np.isfinite(data.scores[kept]), np.where(has_value, 0, 1), 2)
    sign = -1.0 if descending else 1.0
    keys = [kept] + [sign * np.where(has_value, value, 0.0) for value in values[::-1]]
    return kept[np.lexsort(keys + [group])]


def _label_next_display_order(data, filter_name, threshold):
    """`display_order` by `SORT_LABEL_NEXT`: the queue, then the other scored objects (the
    labeled ones), then the unscored, each in catalog order; no sort beyond the queue's
    (it follows every label: at 20k objects a general ``lexsort`` would double its cost).
    """
    kept = filter_mask(data, filter_name, threshold)
    queue = label_next_queue(data, threshold)
    queue = queue[kept[queue]]
    rest = kept.copy()
    rest[queue] = False
    scored = np.isfinite(data.scores)
    return np.concatenate([queue, np.flatnonzero(rest & scored), np.flatnonzero(rest & ~scored)])


def with_score_order(data):
    """``data`` with its `VettingData.score_order` made (in a worker, before it is shown)."""
    data.score_order = None
    data.score_order = display_order(data)
    return data


# ------------------------------------------------------------------- injected objects

WORST_FIRST = "worst_first"
"""Column of the injected objects' table: their place in the grid (`injected_order`)."""
INJECTED_TAGS = {
    "star": "star",
    "galaxy": "galaxy",
    "cosmic_ray": "cosmic ray",
    "hot_pixel": "hot pixel",
    "satellite": "trail",
    "bad_column": "column",
}
"""How a tile names each injected kind (`VettingData.tags`)."""


def injected_order(kind, detected, score):
    """The injected objects kind by kind (in the order of
    `rbvet.core.inject.inject.INJECTED_KINDS`: stars and galaxies first), the worst first.

    Within a kind the detected objects come first, as the classifier treated them worst:
    stars and galaxies by ascending score (its misses lead), artifacts by descending score
    (its false passes lead); then the detected but unscored ones, then the undetected
    (the detector's part). The order does not depend on the threshold, so moving it
    recolours tiles without moving them.

    Parameters
    ----------
    kind : array_like (N,) str
    detected : array_like (N,) bool
    score : array_like (N,) float
        NaN when not scored.

    Returns
    -------
    ndarray (N,) intp
    """
    from rbvet.core.inject.inject import INJECTED_KINDS, REAL_KINDS

    kind = np.asarray(kind).astype(str)
    detected = np.asarray(detected, bool)
    score = np.asarray(score, np.float64)
    known = {name: rank for rank, name in enumerate(INJECTED_KINDS)}
    names, which = np.unique(kind, return_inverse=True)
    group = np.array([known.get(name, len(known)) for name in names], np.int64)[which]
    real = np.isin(kind, REAL_KINDS)
    scored = np.isfinite(score)
    # 0 for the worst a score can be (real at 0, artifact at 1), up to 1; then the rest.
    goodness = np.where(real, score, 1.0 - score)
    goodness = np.where(scored, goodness, np.where(detected, 2.0, 3.0))
    return np.lexsort((np.arange(len(kind)), goodness, group))


def injected_outcomes(data, threshold):
    """What became of each injected object of ``data`` (`injected_vetting_data`) at
    ``threshold``: 'found' / 'missed' (stars, galaxies: scored at or above it / not),
    'passed' / 'rejected' (artifacts: scored at or above it / not), or 'not detected'.

    Returns
    -------
    ndarray (N,) str
    """
    from rbvet.core.inject.inject import REAL_KINDS

    kind = np.asarray(data.table["kind"]).astype(str)
    detected = np.asarray(data.table["detected"], bool)
    with np.errstate(invalid="ignore"):
        above = np.asarray(data.scores, np.float64) >= threshold
    real = np.isin(kind, REAL_KINDS)
    outcome = np.where(real, np.where(above, "found", "missed"), "")
    outcome = np.where(~real, np.where(above, "passed", "rejected"), outcome)
    return np.where(detected, outcome, "not detected").astype("<U12")


def injected_summary(data, threshold, total=None):
    """One line: the injected stars and galaxies missed, the artifacts passed as real.

    Parameters
    ----------
    data : VettingData
        `injected_vetting_data`.
    threshold : float
    total : int, optional
        Objects the assessment injected, when more than ``data`` shows.
    """
    from rbvet.core.inject.inject import REAL_KINDS

    outcome = injected_outcomes(data, threshold)
    real = np.isin(np.asarray(data.table["kind"]).astype(str), REAL_KINDS)

    def count(which, kind_mask):
        return int(np.count_nonzero((outcome == which) & kind_mask))

    shown = f"{len(data):,} injected objects"
    if total is not None and total > len(data):
        shown = f"the first {len(data):,} of {total:,} injected objects"
    return (
        f"{shown} at t = {threshold:.3f}: stars and galaxies "
        f"{count('missed', real)} missed, {count('not detected', real)} not detected "
        f"of {int(real.sum())}; artifacts {count('passed', ~real)} passed as real of "
        f"{int(np.count_nonzero(~real & (outcome != 'not detected')))} detected"
    )


def injected_vetting_data(assessment, frame_data):
    """The injected objects of ``assessment`` as `VettingData`, for a grid to show.

    One object per pictured injection (`rbvet.core.inject.assess.InjectedStamps`): its tile
    and raw stamp as it was scored, its score (NaN when undetected or unscorable, with the
    reason), its kind as the tag, at the position where it was cut. The table holds
    ``kind``, ``subkind``, ``round``, ``snr``, ``detected``, ``n_detections``, the
    injected position (``x_injected``, ``y_injected``), ``x``, ``y`` and `WORST_FIRST`.

    Parameters
    ----------
    assessment : rbvet.core.inject.assess.Assessment
        With ``stamps``.
    frame_data : VettingData
        The frame's own data (its frame, FWHM, parameters and model name are shared).

    Returns
    -------
    VettingData
        Labels all unlabeled; never stored.
    """
    from astropy.table import Table

    pictures = assessment.stamps
    n = len(pictures)
    truth = assessment.truth[:n]
    kind = np.asarray(truth["kind"]).astype(str)
    detected = np.asarray(truth["detected"], bool)
    score = np.asarray(truth["score"], np.float64)
    reasons = np.asarray(pictures.reasons).astype(object)
    reasons[detected & ~np.isfinite(score) & (reasons == "")] = "not scored"
    rank = np.empty(n, np.int64)
    rank[injected_order(kind, detected, score)] = np.arange(n)
    table = Table(
        {
            "kind": kind,
            "subkind": np.asarray(truth["subkind"]).astype(str),
            "round": np.asarray(truth["round"], np.int16),
            "snr": np.asarray(truth["snr"], np.float64),
            "detected": detected,
            "n_detections": np.asarray(truth["n_detections"], np.int32),
            "x_injected": np.asarray(truth["x"], np.float64),
            "y_injected": np.asarray(truth["y"], np.float64),
            "x": np.asarray(pictures.x, np.float64),
            "y": np.asarray(pictures.y, np.float64),
            WORST_FIRST: rank,
        }
    )
    return VettingData(
        frame=frame_data.frame,
        table=table,
        x=np.asarray(pictures.x, np.float64),
        y=np.asarray(pictures.y, np.float64),
        scores=np.where(detected, score, np.nan).astype(np.float32),
        reasons=reasons.astype(str),
        atlas=pictures.tiles,
        fwhm=frame_data.fwhm,
        rescale=pictures.rescale,
        params=frame_data.params,
        model_name=frame_data.model_name,
        frame_path=frame_data.frame_path,
        stamps=pictures.stamps,
        tags=_injected_tags(kind),
    )


def _injected_tags(kind):
    names, which = np.unique(kind, return_inverse=True)
    return np.array([INJECTED_TAGS.get(name, name) for name in names], dtype=str)[which]


# ------------------------------------------------------------------------------ the model


def model_save_target(model_path=None, models_dir=None):
    """Where a retrained version of ``model_path`` goes (`save_versioned` picks ``vN``).

    Next to the current model when its folder is writable and is not the shipped
    ``resources`` folder; otherwise in ``models_dir`` (default ``user_data_dir()/models``).
    A legacy ``.h5`` model's versions are saved as ``.keras``.

    Parameters
    ----------
    model_path : str or Path, optional
        The current model; the shipped default when None.
    models_dir : str or Path, optional

    Returns
    -------
    Path
        ``folder/name.keras`` (or the current ``name.vK.keras``).
    """
    from rbvet.core.paths import default_model_path, is_user_folder, user_data_dir

    current = Path(model_path) if model_path else default_model_path()
    name = current.name if current.suffix.lower() == ".keras" else current.stem + ".keras"
    folder = current.parent.resolve()
    if is_user_folder(folder):
        return folder / name
    fallback = Path(models_dir) if models_dir is not None else user_data_dir() / "models"
    return fallback / name


def _match_stored(store, frame_id, data):
    """Match the objects of ``data`` to those stored for ``frame_id`` by position.

    Returns
    -------
    labels : ndarray (N,) int8
        Stored labels, unlabeled where no stored object is within `MATCH_TOLERANCE`.
    rows : ndarray intp
        The rows matched.
    stored_x, stored_y : ndarray
        The stored positions of those rows.
    """
    from rbvet.core.learn.labels import match_positions

    stored_x, stored_y, stored_labels = store.frame_labels(frame_id)
    match = match_positions(data.x, data.y, stored_x, stored_y, tolerance=MATCH_TOLERANCE)
    rows = np.flatnonzero(match >= 0)
    labels = np.full(len(data), UNLABELED, np.int8)
    labels[rows] = stored_labels[match[rows]]
    return labels, rows, stored_x[match[rows]], stored_y[match[rows]]


def _not_busy(_n_objects):
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- the session


class VettingSession:
    """One frame's vetting: what is shown, in which order, and the labels given to it.

    Parameters
    ----------
    store_path : str or Path, optional
        The label store; the user's default (``labels.sqlite`` in the user data folder,
        see `rbvet.core.learn.labels.default_store_path`) when None. Nothing is opened
        until `open_store` or the first use.
    model_path : str or Path, optional
        The model in use; the shipped default when None.
    models_dir : str or Path, optional
        Where retrained models go when ``model_path``'s folder cannot take them
        (`model_save_target`).
    read_only : str, optional
        Why these objects cannot be labeled: when given, `label`, `undo` and `redo` do
        nothing but say it through ``message`` (the injected objects' session).

    Attributes
    ----------
    store_path : Path
    store_error : str
        The last store error, empty when the store works.
    frame_id : int or None
        The current frame's id in the store; None while it is not stored.
    object_ids : ndarray (N,) int64
        Store id of each object of the current frame, -1 where not stored yet.
    model_path : str or None
    models_dir : Path or None
    busy : callable
        ``busy(n_objects)`` returns a context manager held while that many new objects are
        cut and stored (a window shows a wait cursor); no-op by default.

    Events
    ------
    data_changed()
        A new frame (or new scores) replaced `data`; it may be None (nothing open).
    threshold_changed(float)
        Only when the value changes.
    selection_changed(int)
        The selected object's index in `data`, or -1 for none.
    labels_changed(ndarray)
        Indices of objects whose label changed.
    order_changed()
        The display order may have changed: the sort key, direction or filter was set, or
        the threshold or labels moved under a sort or filter that follows them.
    order_settings_changed()
        The sort key, direction or filter was set (the order may be the same).
    counts_changed()
        Labels changed (in the store or on this frame): counts may differ.
    uncertainty_changed()
        The shown data received their uncertainty and features (`set_uncertainty`).
    store_changed()
        Another store was opened (or the current one failed to open).
    injected_changed()
        Injected objects became available or went (`set_assessment`, another frame), or
        they were shown or hidden (`FILTER_INJECTED`).
    error(str)
        A one-line message: the store could not be opened or written.
    message(str)
        A short note about the last labeling action ("Undid the labels of 5 objects").
    """

    def __init__(self, store_path=None, model_path=None, models_dir=None, read_only=""):
        self.data_changed = Event()
        self.threshold_changed = Event()
        self.selection_changed = Event()
        self.labels_changed = Event()
        self.order_changed = Event()
        self.order_settings_changed = Event()
        self.counts_changed = Event()
        self.uncertainty_changed = Event()
        self.store_changed = Event()
        self.injected_changed = Event()
        self.error = Event()
        self.message = Event()
        self.read_only = read_only

        self._data = None
        self._threshold = DEFAULT_THRESHOLD
        self._selected = -1
        self._sort_key = SORT_SCORE
        self._descending = True
        self._filter = FILTER_ALL

        self._default_store = store_path is None
        self.store_path = self._resolve(store_path)
        self._store = None
        self.store_error = ""
        self.frame_id = None
        self.object_ids = np.empty(0, np.int64)
        self._store_data = None  # the data frame_id and object_ids describe
        self._store_x = np.empty(0, np.float64)
        self._store_y = np.empty(0, np.float64)
        self.busy = _not_busy

        self.model_path = None if model_path is None else str(model_path)
        self.models_dir = None if models_dir is None else Path(models_dir)
        self._review = None
        self.agreement = None
        self._other_annotators = False
        self._assessment = None
        self._injected_data = None
        self._injected_session = None
        self._showing_injected = False

    # ------------------------------------------------------------------ what is shown

    @property
    def data(self):
        """The current `VettingData`, or None."""
        return self._data

    @property
    def threshold(self):
        return self._threshold

    @property
    def selected(self):
        """Index of the selected object, -1 for none."""
        return self._selected

    @property
    def labels(self):
        """Labels (N,) of the current frame (the data's own array; empty without data)."""
        return self._data.labels if self._data is not None else np.empty(0, np.int8)

    def set_data(self, data, threshold=None):
        """Show ``data`` (a `VettingData` or None); clears the selection.

        ``threshold_changed`` follows only when ``threshold`` changes it: every listener
        redraws on ``data_changed`` with the current threshold. A sort by a catalog column
        the new data lack falls back to the score, descending. The labels are taken as
        they are in ``data`` (see `restore` or `show` for the stored ones).
        """
        previous = self._threshold
        self._data = data
        self._selected = -1
        if threshold is not None:
            self._threshold = float(threshold)
        if self._sort_key.startswith(COLUMN_PREFIX) and data is not None:
            if self._sort_key[len(COLUMN_PREFIX) :] not in numeric_columns(data.table):
                self._sort_key, self._descending = SORT_SCORE, True
        self.data_changed.emit()
        if self._threshold != previous:
            self.threshold_changed.emit(self._threshold)
            if self._order_follows_threshold():
                self.order_changed.emit()
        self.selection_changed.emit(-1)
        self._follow_injected()

    def show(self, data, threshold=None):
        """Show a newly classified frame with its stored labels (`restore`, `set_data`).

        Returns
        -------
        int
            Number of labeled objects found in the store.
        """
        found = self.restore(data)
        self.set_data(data, threshold)
        return found

    def set_threshold(self, value):
        """Set the threshold (clipped to [0, 1]); events only when it changes. The injected
        objects' session follows it."""
        value = float(np.clip(value, 0.0, 1.0))
        if value != self._threshold:
            self._threshold = value
            if self._injected_session is not None:
                self._injected_session.set_threshold(value)
            self.threshold_changed.emit(value)
            if self._order_follows_threshold():
                self.order_changed.emit()

    def select(self, index):
        """Select object ``index`` (-1, or any index out of range, for none)."""
        index = int(index)
        if self._data is None or not 0 <= index < len(self._data):
            index = -1
        if index != self._selected:
            self._selected = index
            self.selection_changed.emit(index)

    def counts(self):
        """(real, bogus, unscored) at the threshold (`VettingData.counts`); zeros without
        data."""
        return (0, 0, 0) if self._data is None else self._data.counts(self._threshold)

    # -------------------------------------------------------------------- order and filter

    @property
    def sort_key(self):
        """A key of `SORTS` or a `column_sort_key`."""
        return self._sort_key

    @property
    def descending(self):
        return self._descending

    @property
    def filter_name(self):
        """One of `FILTERS`, or `FILTER_INJECTED` while the injected objects are shown."""
        return FILTER_INJECTED if self._showing_injected else self._filter

    def set_sort(self, key, descending=None):
        """Sort by ``key``; ``descending=None`` uses the key's natural direction.

        Keys of `FIXED_DIRECTION_SORTS` always take theirs: "closest to the threshold"
        reversed would show the surest objects first under a name that promises the least
        sure.
        """
        if key not in DESCENDING_BY_DEFAULT and not key.startswith(COLUMN_PREFIX):
            raise ValueError(f"unknown sort key {key!r}")
        if descending is None or key in FIXED_DIRECTION_SORTS:
            descending = DESCENDING_BY_DEFAULT.get(key, False)
        self._sort_key, self._descending = key, bool(descending)
        self.order_settings_changed.emit()
        self.order_changed.emit()

    def set_filter(self, name):
        """Show only the objects filter ``name`` (one of `FILTERS`) keeps, or, with
        `FILTER_INJECTED`, the injected objects of the frame's assessment instead.

        Raises
        ------
        ValueError
            An unknown name, or `FILTER_INJECTED` with no assessment of the frame shown
            (`injected_available`).
        """
        if name == FILTER_INJECTED:
            self._show_injected()
            return
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}; expected one of {', '.join(FILTERS)}")
        leaving = self._showing_injected
        self._showing_injected = False
        self._filter = name
        self.order_settings_changed.emit()
        self.order_changed.emit()
        if leaving:
            self.injected_changed.emit()

    def display_order(self):
        """Object indices shown, in display order (`display_order` of the settings).

        Returns
        -------
        ndarray (M,) intp
        """
        return display_order(
            self._data, self._sort_key, self._descending, self._filter, self._threshold
        )

    def visible(self):
        """Boolean mask (N,) of the objects the filter keeps."""
        if self._data is None:
            return np.zeros(0, bool)
        return filter_mask(self._data, self._filter, self._threshold)

    def _order_follows_threshold(self):
        return self._filter in THRESHOLD_FILTERS or self._sort_key in THRESHOLD_SORTS

    def _order_follows_labels(self):
        return self._filter in LABEL_FILTERS or self._sort_key in LABEL_SORTS

    # ------------------------------------------------------------------ uncertainty

    def set_uncertainty(self, data, uncertainty, clusters=None):
        """Give ``data`` its MC-dropout uncertainty (the background job's result).

        Stored in ``data`` (`VettingData.features`, ``score_mean``, ``bald``, ``clusters``)
        and written as catalog columns (``rb_score_mean``, ``rb_bald``). Results for data
        no longer shown are kept with those data but announce nothing.

        Parameters
        ----------
        data : VettingData
            The data the job ran on.
        uncertainty : rbvet.core.learn.uncertainty.Uncertainty
        clusters : ndarray (N,) int, optional
            `rbvet.core.learn.active.feature_clusters` of the features.
        """
        from rbvet.core.learn.uncertainty import add_uncertainty

        data.features = uncertainty.features
        data.score_mean = np.asarray(uncertainty.mean, np.float32)
        data.bald = np.asarray(uncertainty.bald, np.float32)
        data.clusters = clusters
        add_uncertainty(data.table, uncertainty)
        if data is not self._data:
            return
        self.uncertainty_changed.emit()
        if self._sort_key in UNCERTAINTY_SORTS:
            self.order_changed.emit()

    # ------------------------------------------------------------- injected objects

    @property
    def assessment(self):
        """The assessment kept by `set_assessment` (`rbvet.core.inject.assess.Assessment`),
        or None."""
        return self._assessment

    def set_assessment(self, assessment):
        """Keep the injection-recovery ``assessment`` of a frame, in memory, with its
        pictures of the injected objects (``keep_stamps``): they can be shown
        (`FILTER_INJECTED`) while that frame is shown with that model, with no re-run.

        One assessment is kept (the last): its pictures are bounded
        (`rbvet.core.inject.assess.MAX_KEPT_STAMPS`). None forgets it.
        """
        self._assessment = assessment
        self._injected_data = None
        if self._showing_injected and self.injected_available:
            self._show_injected()  # the new one's objects
            return
        if not self._follow_injected():
            self.injected_changed.emit()

    @property
    def injected_available(self):
        """True when the kept assessment measured the frame shown, with its model, and
        kept pictures of its injected objects."""
        assessment, data = self._assessment, self._data
        if assessment is None or data is None or assessment.stamps is None:
            return False
        if not len(assessment.stamps):
            return False
        summary = assessment.summary
        return (
            data.frame is not None
            and summary.get("frame_hash") == data.frame.content_hash
            and summary.get("model") == data.model_name
        )

    @property
    def showing_injected(self):
        """True while the injected objects are shown instead of the frame's."""
        return self._showing_injected

    @property
    def injected_session(self):
        """The read-only `VettingSession` of the injected objects (made at first use): its
        data are `injected_data`, its threshold this session's."""
        if self._injected_session is None:
            self._injected_session = VettingSession(
                self.store_path,
                read_only="Injected objects are never labels: show the frame's objects "
                "(another filter) to label them",
            )
            self._injected_session._threshold = self._threshold
            self._injected_session.message.connect(self.message.emit)
        return self._injected_session

    def injected_data(self):
        """The injected objects of the kept assessment as `VettingData` (built once), or
        None when `injected_available` is False."""
        if not self.injected_available:
            return None
        if self._injected_data is None:
            self._injected_data = injected_vetting_data(self._assessment, self._data)
        return self._injected_data

    def injected_summary(self):
        """One line about the injected objects at the current threshold: how many stars
        and galaxies were missed, how many artifacts passed as real (`injected_counts`);
        empty when none are available."""
        data = self.injected_data()
        if data is None:
            return ""
        return injected_summary(data, self._threshold, len(self._assessment.truth))

    def _show_injected(self):
        data = self.injected_data()
        if data is None:
            raise ValueError(
                "no injected objects to show: assess this frame first (Model › Assess this frame)"
            )
        session = self.injected_session
        session._threshold = self._threshold
        session._sort_key, session._descending = SORT_WORST_FIRST, False
        if session.data is not data:
            session.set_data(data, self._threshold)
        self._showing_injected = True
        self.order_settings_changed.emit()
        self.injected_changed.emit()

    def _follow_injected(self):
        """Stop showing the injected objects when they no longer belong to the data shown;
        True when that announced a change."""
        if self._showing_injected and not self.injected_available:
            self._showing_injected = False
            self.order_settings_changed.emit()
            self.injected_changed.emit()
            return True
        return False

    def _refuse_labels(self):
        """Say why nothing can be labeled now (read-only, or injected objects shown)."""
        if self.read_only:
            self.message.emit(self.read_only)
            return True
        if self._showing_injected:
            self.message.emit(
                "The grid shows injected objects: they are never labels. Choose another "
                "filter to label the frame's objects"
            )
            return True
        return False

    # ------------------------------------------------------------------ labels in memory

    def set_labels(self, indices, label):
        """Give ``label`` to the objects at ``indices``, in memory only (`label` stores)."""
        indices = np.atleast_1d(np.asarray(indices, np.intp))
        self._data.labels[indices] = label
        self._labels_changed(indices)

    def update_labels(self, indices, labels):
        """Give each object at ``indices`` its own label (e.g. after an undo), in memory.

        Parameters
        ----------
        indices : array_like of int
        labels : array_like of int
            `UNLABELED`, `BOGUS` or `REAL`, one per index.
        """
        indices = np.atleast_1d(np.asarray(indices, np.intp))
        self._data.labels[indices] = np.asarray(labels, np.int8)
        self._labels_changed(indices)

    def _labels_changed(self, indices):
        self.labels_changed.emit(indices)
        if self._order_follows_labels():
            self.order_changed.emit()

    # ------------------------------------------------------------------------ the store

    @staticmethod
    def _resolve(path):
        from rbvet.core.learn.labels import default_store_path

        return Path(path).expanduser() if path is not None else default_store_path()

    @property
    def store(self):
        """The open `LabelStore`, or None (not opened yet, missing or unusable)."""
        return self._store

    def set_store_path(self, path):
        """Use the store at ``path`` (the user's default when None) from the next use on;
        nothing is opened or announced (see `open_store`)."""
        self.close_store()
        self._default_store = path is None
        self.store_path = self._resolve(path)
        self.store_error = ""

    def open_store(self, path=None, create=False):
        """Use the label store at ``path`` (the current path when None).

        The labels of the current frame are then shown from that store. An existing file
        is opened at once (errors go to ``error``); a missing one is created now with
        ``create``, otherwise when the first label is given.

        Returns
        -------
        bool
            False when the store could not be opened.
        """
        if path is not None:
            self._default_store = False
            self.store_path = self._resolve(path)
        self.close_store()
        self.store_error = ""
        ok = True
        if create or self.store_path.exists():
            ok = self._connect(create=create) is not None
        if self._store_data is not None and self._store_data is self._data:
            self.restore(self._store_data)
        self.store_changed.emit()
        self.counts_changed.emit()
        return ok

    def close_store(self):
        """Close the store connection (every label is already on disk)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _connect(self, create):
        """Open the store (creating it if ``create``); None, with an error emitted, if not."""
        from rbvet.core.learn.labels import LabelStore

        if self._store is not None:
            return self._store
        try:
            self._store = LabelStore(
                None if self._default_store else self.store_path,
                create=create,
                timeout=STORE_TIMEOUT,
            )
        except RbvetError as error:
            self._fail(error)
            return None
        self.store_error = ""
        return self._store

    def _existing_store(self):
        """The store if its file exists and opens; never creates it."""
        if self._store is None and self.store_path.exists() and not self.store_error:
            self._connect(create=False)
        return self._store

    def _writable_store(self):
        """The store, created if needed; None (error emitted) when it cannot be used."""
        if self._store is None:
            self._connect(create=True)
        return self._store

    def _fail(self, error):
        self.store_error = str(error)
        self.error.emit(str(error))

    def store_summary(self):
        """Counts of the whole store (`LabelStore.summary`), or None when it is not open."""
        store = self._existing_store()
        if store is None:
            return None
        try:
            return store.summary()
        except RbvetError as error:
            self._fail(error)
            return None

    # ------------------------------------------------------------ the frame in the store

    def restore(self, data):
        """Take ``data`` (a newly classified `VettingData`) as the store's current frame
        and fill its labels from the store.

        Catalog rows are matched to the frame's stored objects by position (within
        `MATCH_TOLERANCE` px; one vectorised nearest-neighbour query) and get their
        stored labels. Their store ids are looked up when they are next labeled (by the
        stored positions, so no object is stored twice). When ``data`` is already shown,
        the change is announced through ``labels_changed``. Nothing is written.

        Returns
        -------
        int
            Number of labeled objects found.
        """
        n = 0 if data is None else len(data)
        self._store_data = data
        self.frame_id = None
        self.object_ids = np.full(n, -1, np.int64)
        if data is None:
            return 0
        self._store_x = np.array(data.x, np.float64)
        self._store_y = np.array(data.y, np.float64)
        labels = np.full(n, UNLABELED, np.int8)
        store = self._existing_store()
        try:
            self.frame_id = None if store is None else store.find_frame(data.frame)
            if self.frame_id is not None:
                labels = self._stored_labels(store, data)
        except RbvetError as error:
            self._fail(error)
        self._apply_review(data)
        self.refresh_agreement()
        if data is self._data:
            self.update_labels(np.arange(n), labels)
        else:
            data.labels[:] = labels
        self.counts_changed.emit()
        return int(np.count_nonzero(labels != UNLABELED))

    def _stored_labels(self, store, data):
        """Labels (N,) of the frame's catalog rows as stored (unlabeled where no stored
        object is within `MATCH_TOLERANCE`); matched rows take the stored positions."""
        labels, rows, stored_x, stored_y = _match_stored(store, self.frame_id, data)
        self._store_x[rows] = stored_x
        self._store_y[rows] = stored_y
        return labels

    # ---------------------------------------------------------- review and agreement

    @property
    def review(self):
        """The last `rbvet.core.learn.review.LabelReview` given to `set_review`, or None."""
        return self._review

    def set_review(self, review):
        """Sort "likely label errors" by ``review`` (a `LabelReview` of this store) from now on.

        Its out-of-sample probabilities are matched to the current frame's stored objects
        by position; labels given later fall back to |label - score| (after the reviewed
        ones). None forgets the review.
        """
        self._review = review
        self._apply_review(self._store_data)
        if self._sort_key == SORT_SUSPICIOUS:
            self.order_changed.emit()
        self.message.emit(self.suspicious_source())

    def _apply_review(self, data):
        if data is None:
            return
        review = self._review
        if review is None:
            data.review_probability, data.review_thresholds = None, None
            return
        from rbvet.core.learn.labels import match_positions

        probability = np.full(len(data), np.nan)
        if self.frame_id is not None:
            mine = np.flatnonzero(review.frame_ids == self.frame_id)
            match = match_positions(
                self._store_x, self._store_y, review.x[mine], review.y[mine], tolerance=1e-3
            )
            rows = np.flatnonzero(match >= 0)
            probability[rows] = review.probabilities[mine[match[rows]]]
        data.review_probability, data.review_thresholds = probability, review.thresholds

    def suspicious_source(self):
        """What the sort "likely label errors" ranks by now, in words."""
        data = self._data
        if self._review is None or data is None or data.review_probability is None:
            return "Likely label errors: by |label − score| (the label review has not run)"
        seen = int(np.count_nonzero(np.isfinite(data.review_probability)))
        return (
            f"Likely label errors: by the label review ({seen} labels of this frame, "
            f"k-fold confident learning with {self._review.model or 'the model'})"
        )

    def refresh_agreement(self):
        """Recompute `agreement` and the data's ``annotators_disagree`` from the store.

        Returns
        -------
        rbvet.core.learn.agreement.Agreement or None
            None without a stored frame.
        """
        from rbvet.core.learn.agreement import agreement
        from rbvet.core.learn.labels import default_annotator, match_positions

        data = self._store_data
        self.agreement = None
        self._other_annotators = False
        if data is None:
            return None
        disagree = np.zeros(len(data), bool)
        store = self._existing_store()
        if store is not None and self.frame_id is not None:
            try:
                ids, names, labels, x, y = store.annotator_labels(self.frame_id)
            except RbvetError as error:
                self._fail(error)
                ids = names = labels = x = y = np.zeros(0)
            result = agreement(ids, names, labels)
            self.agreement = result
            self._other_annotators = bool(set(result.annotators) - {default_annotator()})
            order = np.searchsorted(ids[np.argsort(ids)], result.object_ids)
            by_id = np.argsort(ids)[order] if len(ids) else order
            match = match_positions(
                x[by_id], y[by_id], self._store_x, self._store_y, tolerance=1e-3
            )
            disagree[match[(match >= 0) & result.disagree]] = True
        data.annotators_disagree = disagree
        return self.agreement

    def _refresh_agreement_if_shared(self):
        """`refresh_agreement` when someone else labeled this frame too (else nothing to
        compare, and a key press stays one store write)."""
        if self._other_annotators:
            self.refresh_agreement()

    def stored_labels(self, data):
        """The labels the store holds for the objects of ``data``, which need not be the
        frame shown (a project's frame scored in the background): nothing changes in the
        session. Unlabeled everywhere when the store is missing or fails (said once).

        Returns
        -------
        ndarray (N,) int8
        """
        store = self._existing_store()
        try:
            frame_id = None if store is None else store.find_frame(data.frame)
            if frame_id is not None:
                return _match_stored(store, frame_id, data)[0]
        except RbvetError as error:
            self._fail(error)
        return np.full(len(data), UNLABELED, np.int8)

    def frame_counts(self):
        """(real, bogus) labeled objects of the current frame."""
        labels = self.labels
        return int(np.count_nonzero(labels == REAL)), int(np.count_nonzero(labels == BOGUS))

    # ------------------------------------------------------------------- labeling actions

    def label(self, indices, label, source=HUMAN, origin=None, annotator=None, confirm=False):
        """Give ``label`` to objects of the current frame, as one undoable store action.

        Objects that already have the label are left alone, and unscored objects (no
        usable stamp) cannot be labeled. Objects labeled for the first time are stored
        with their stamps first.

        Parameters
        ----------
        indices : array_like of int
            Object indices (catalog rows).
        label : int
            `REAL`, `BOGUS` or `UNLABELED` (clears the label).
        source : {'human', 'model'}
            Recorded with the labels in the store.
        origin : str, optional
            One of `rbvet.core.learn.labels.ORIGINS`; by default 'key' for one object and
            'bulk' for several.
        annotator : str, optional
            Who labeled; `rbvet.core.learn.labels.default_annotator` when None.
        confirm : bool
            Record the label also for objects that already have it (another annotator
            confirms it: agreement between annotators counts it).

        Returns
        -------
        bool
            False when the store could not be written (nothing changed then).
        """
        from rbvet.core.cutouts.stamps import cut_stamps

        data = self._data
        if self._refuse_labels():
            return False
        if data is None:
            return False
        if data is not self._store_data:
            self.restore(data)
        label = int(label)
        indices = np.unique(np.atleast_1d(np.asarray(indices, np.intp)))
        scored = np.isfinite(data.scores[indices])
        skipped = int(np.count_nonzero(~scored))
        changing = indices[scored & ((data.labels[indices] != label) | bool(confirm))]
        if not len(changing):
            if skipped:
                self.message.emit(f"{skipped} unscored objects cannot be labeled")
            return True
        store = self._writable_store()
        if store is None:
            return False
        try:
            if self.frame_id is None:
                self.frame_id = store.add_frame(data.frame, data.fwhm, data.rescale)
            new = changing[self.object_ids[changing] < 0]
            if len(new):
                x, y = self._store_x[new], self._store_y[new]
                with self.busy(len(new)):
                    stamps = cut_stamps(data.frame, x, y, data.rescale)
                    self.object_ids[new] = store.add_objects(self.frame_id, x, y, stamps)
            changing = changing[self.object_ids[changing] >= 0]
            if not len(changing):
                return True
            store.set_labels(
                self.object_ids[changing],
                label,
                source=source,
                origin=origin or ("key" if len(indices) == 1 else "bulk"),
                annotator=annotator,
                model=data.model_name or None,
                scores=data.scores[changing],
            )
        except RbvetError as error:
            self._fail(error)
            return False
        self.store_error = ""
        self._refresh_agreement_if_shared()  # before the order follows the new labels
        self.set_labels(changing, label)
        text = f"Labeled {len(changing)} {label_name(label)}" if label != UNLABELED else ""
        text = text or f"Cleared {count_text(len(changing), 'label')}"
        if skipped:
            text += f" ({skipped} unscored left out)"
        self.message.emit(text)
        self.counts_changed.emit()
        return True

    def below_threshold_candidates(self):
        """Unlabeled scored objects scoring below the threshold (what `label_below_threshold`
        would label bogus)."""
        data = self._data
        if data is None:
            return np.empty(0, np.intp)
        with np.errstate(invalid="ignore"):
            below = np.isfinite(data.scores) & (data.scores < self._threshold)
        return np.flatnonzero(below & (data.labels == UNLABELED))

    def label_below_threshold(self):
        """Label every unlabeled object scoring below the threshold bogus, as one action.

        Labels already given (in particular real labels below the threshold) are kept.
        The labels are recorded with source 'model': the threshold chose them, not an eye
        on each tile.

        Returns
        -------
        int
            Number of objects labeled (0 when none, or when the store failed).
        """
        candidates = self.below_threshold_candidates()
        if not len(candidates) or not self.label(candidates, BOGUS, source=MODEL):
            return 0
        return len(candidates)

    def undo(self):
        """Undo the store's last labeling action (any depth; bulk actions are one step).

        Returns
        -------
        ndarray of intp
            Object indices of the current frame whose labels changed back.
        """
        return self._replay("undo")

    def redo(self):
        """Redo the last undone action.

        Returns
        -------
        ndarray of intp
            Object indices of the current frame whose labels changed.
        """
        return self._replay("redo")

    def _replay(self, which):
        nothing = np.empty(0, np.intp)
        if self.read_only:
            self.message.emit(self.read_only)
            return nothing
        store = self._existing_store()
        done = "Undid" if which == "undo" else "Redid"
        if store is None:
            self.message.emit(f"Nothing to {which}")
            return nothing
        try:
            ids = store.undo() if which == "undo" else store.redo()
            if not len(ids):
                self.message.emit(f"Nothing to {which}")
                return nothing
            rows = np.flatnonzero(np.isin(self.object_ids, ids))
            data = self._store_data
            if len(np.unique(self.object_ids[rows])) < len(ids) and self.frame_id is not None:
                # Objects not looked up since the frame was opened (labeled in an earlier
                # session), or on another frame: read the whole frame's labels again.
                labels = self._stored_labels(store, data)
                rows = np.union1d(rows, np.flatnonzero(labels != data.labels))
                labels = labels[rows]
            else:
                labels = store.labels(self.object_ids[rows])
        except RbvetError as error:
            self._fail(error)
            return nothing
        self._refresh_agreement_if_shared()
        if len(rows):
            self.update_labels(rows, labels)
        text = f"{done} the labels of {len(ids)} objects"
        if len(rows) < len(ids):
            text += f" ({len(rows)} on this frame)"
        self.message.emit(text)
        self.counts_changed.emit()
        return rows

    @property
    def can_undo(self):
        """True when there is a labeling action to undo."""
        store = self._existing_store()
        try:
            return store is not None and store.can_undo
        except RbvetError:
            return False

    @property
    def can_redo(self):
        """True when there is an undone action to redo."""
        store = self._existing_store()
        try:
            return store is not None and store.can_redo
        except RbvetError:
            return False

    # ----------------------------------------------------------------- training and model

    def frame_training_data(self, params=None):
        """The current frame's labeled objects as a `LabeledTrainingSet` (with stamps).

        Raises
        ------
        RbvetError
            No store, or nothing labeled on this frame.
        """
        store = self._existing_store()
        if store is None or self.frame_id is None:
            raise RbvetError("no labeled objects on this frame")
        training_set = store.training_data(params, frame_ids=[self.frame_id])
        if not len(training_set):
            raise RbvetError("no labeled objects on this frame")
        return training_set

    def save_target(self):
        """Where an accepted retrained version of the model in use is saved
        (`model_save_target` of ``model_path`` and ``models_dir``)."""
        return model_save_target(self.model_path, self.models_dir)
