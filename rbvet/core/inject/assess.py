"""How good is the score on *this* frame: injection-recovery without labels.

`assess_frame` (a job, see `rbvet.core.jobs`) injects stars and small galaxies drawn with
the frame's own PSF and artifacts drawn relative to its noise (`rbvet.core.inject.inject`)
in several rounds, runs the same detection and scoring as for the frame's own objects,
matches detections to injections and returns an `Assessment`: completeness against S/N
for stars and galaxies, rejection per artifact kind, FNR and FPR against the threshold
with bootstrap 95 % intervals, and the thresholds for a target FNR and FPR.

An injection is *detected* when a new detection (one the frame without injections does
not have) lies within its reach; it is *called real* when any of its detections scores
at or above the threshold (so a track cut into pieces is let through by any piece).

With ``keep_stamps`` (the window asks for it) the assessment also keeps the injected objects
as they were scored (`InjectedStamps`: the grid's tiles and the raw stamps, cut from the
injected frame of their round at their best-scoring detection, or where they were injected
when nothing was detected), so the window can show what was measured with no re-run.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.cutouts.preprocess import plan_rescale
from rbvet.core.errors import RbvetError
from rbvet.core.inject.inject import (
    ARTIFACT_KINDS,
    REAL_KINDS,
    InjectionSettings,
    draw_kinds,
    free_distance,
    injected_frame,
    paint_round,
    photon_variance_per_adu,
    place_injections,
)
from rbvet.core.jobs import Progress

STAR_SNR_MIN = 20.0
"""``star_completeness`` counts injected stars at or above this S/N."""
SNR_BINS = (3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 300.0)
"""Edges of the S/N bins of the completeness curves."""
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
"""Thresholds of the FNR and FPR curves."""
ASSESSING = "Assessing"
ROUND_UNITS = 1000
"""`Progress` units of one round (painting and detection half, scoring the other)."""
SAME_OBJECT = 1.5
"""Px: a detection this close to one of the frame without injections is not new."""
MAX_KEPT_STAMPS = 5000
"""Injections an assessment keeps pictures of (``keep_stamps``): the first ones, in round
order. A 31 px stamp and its tile take about 6 kB: 5000 of them about 30 MB."""
MAX_KEPT_STAMP_BYTES = 64 * 2**20
"""And no more bytes than this (wide stamps, a large FWHM, mean fewer pictures)."""
NOT_DETECTED = "not detected"
"""The reason an injected object has no score: no new detection within its reach."""


@dataclass
class InjectedStamps:
    """The injected objects as they were scored: pictures of the first rows of the truth.

    Row ``i`` pictures row ``i`` of `Assessment.truth`, for the first ``len(tiles)`` rows
    (`MAX_KEPT_STAMPS`). Each was cut from the injected frame of its round where it was
    scored (its best-scoring detection, ``x_scored``/``y_scored``), or where it was injected
    when nothing was detected.

    Attributes
    ----------
    x, y : ndarray (M,) float64
        Where each stamp was cut (0-based pixels of the frame).
    tiles : ndarray (M, h, w) uint8
        The CNN inputs as the grid draws them (`rbvet.core.cutouts.atlas.render_tiles`).
    stamps : ndarray (M, S, S) float32
        Raw science stamps (the injected frame's pixels), ``S = rescale.stamp_size``.
    reasons : ndarray (M,) str
        `NOT_DETECTED`, or the stamp's reason when it could not be scored; else empty.
    rescale : rbvet.core.cutouts.preprocess.Rescale
    """

    x: np.ndarray
    y: np.ndarray
    tiles: np.ndarray
    stamps: np.ndarray
    reasons: np.ndarray
    rescale: object

    def __len__(self):
        return len(self.tiles)


@dataclass
class Assessment:
    """What injection-recovery measured on one frame.

    Attributes
    ----------
    truth : astropy.table.Table
        One row per injection: the simulator's truth columns, ``round``, ``snr``,
        ``detected``, ``score`` (highest score of its detections; NaN when undetected or
        unscorable), ``n_detections`` and ``x_scored``, ``y_scored`` (where that
        detection is; NaN when undetected).
    summary : dict
        Plain values (see `summarize_injections`), ready for JSON.
    stamps : InjectedStamps or None
        Pictures of the injected objects as they were scored (``keep_stamps``); None when
        not kept (and for an assessment read back from its JSON).
    """

    truth: object
    summary: dict = field(default_factory=dict)
    stamps: InjectedStamps | None = None

    def to_json(self):
        """The summary as JSON text (NaN written as null)."""
        return json.dumps(_plain(self.summary), indent=2, allow_nan=False)

    def describe(self):
        """A few lines for a terminal."""
        s = self.summary
        counts = s["counts"]
        lines = [
            f"{s['frame']}: {counts['placed']} of {counts['requested']} injections placed "
            f"in {s['settings']['rounds']} rounds; {s['psf']['psf_note']}",
            f"  threshold {s['threshold']:.2f} (model {s['model']}): star completeness "
            f"{_percent(s['star_completeness'])} (S/N >= {STAR_SNR_MIN:g}, "
            f"{counts['stars_bright']} stars), artifact rejection "
            f"{_percent(s['artifact_rejection'])} ({counts['artifacts_detected']} detected)",
        ]
        by_kind = ", ".join(
            f"{kind} {_percent(value)}" for kind, value in s["artifact_rejection_by_kind"].items()
        )
        lines.append(f"  rejection by kind: {by_kind or 'none detected'}")
        target = s["targets"]
        lines.append(
            f"  threshold for FNR <= {target['fnr']:g}: {_number(target['threshold_at_fnr'])}; "
            f"for FPR <= {target['fpr']:g}: {_number(target['threshold_at_fpr'])}"
        )
        lines.extend(f"  note: {caveat}" for caveat in self.caveats())
        return "\n".join(lines)

    def caveats(self):
        """What the user must know to trust the figures, as short sentences: a frame too
        crowded for all the injections asked for, a PSF that is a fallback, not the
        frame's own.

        Returns
        -------
        list of str
        """
        s = self.summary
        counts, psf = s["counts"], s.get("psf", {})
        caveats = []
        if counts["placed"] < counts["requested"]:
            caveats.append(
                f"the frame had room for only {counts['placed']} of "
                f"{counts['requested']} injections (crowded or masked)"
            )
        if psf.get("psf_source") == "fallback":
            caveats.append(
                "stars and galaxies were injected with a Moffat profile, not the frame's own "
                f"PSF ({psf.get('psf_stars', 0)} usable stars): treat star completeness "
                "with care"
            )
        return caveats

    def rate_curves(self):
        """Thresholds and the injected FNR/FPR with their intervals, as arrays."""
        curves = self.summary["curves"]
        return {name: np.asarray(values, dtype=np.float64) for name, values in curves.items()}


def assess_frame(
    frame_path,
    catalog_path=None,
    *,
    model_path=None,
    threshold=None,
    options=None,
    settings=None,
    targets=(0.05, 0.01),
    log=None,
):
    """Read a frame (and catalog) and assess the model on it: see `assess_loaded`.

    A job: yields `Progress` and returns an `Assessment`.
    """
    from rbvet.core.classify import FrameOptions, check_threshold, open_frame_and_catalog
    from rbvet.core.model.cache import cached_model

    options = options or FrameOptions()
    if threshold is not None:
        threshold = check_threshold(threshold)
    frame, table, fwhm = yield from open_frame_and_catalog(
        frame_path, catalog_path, options=options, log=log
    )
    yield Progress(message="Loading the model")
    model = cached_model(model_path)
    return (
        yield from assess_loaded(
            frame,
            table,
            fwhm,
            model,
            threshold=threshold,
            settings=settings,
            detect_threshold=options.detect_threshold,
            fwhm_given=options.fwhm is not None,
            targets=targets,
            log=log,
        )
    )


def assess_loaded(
    frame,
    table,
    fwhm,
    model,
    *,
    threshold=None,
    settings=None,
    detect_threshold=3.0,
    fwhm_given=False,
    targets=(0.05, 0.01),
    keep_stamps=False,
    log=None,
):
    """Injection-recovery on a frame already read, with its objects and FWHM.

    A job (see `rbvet.core.jobs`): yields `Progress` over the rounds (and within each,
    over detection and scoring) and returns an `Assessment`. Closing it stops at the next
    step and returns nothing: nothing is written.

    Parameters
    ----------
    frame : Frame
    table : astropy.table.Table
        The frame's objects (0-based ``x``, ``y``): injections keep away from them.
    fwhm : float
        The FWHM the objects are scored with.
    model : RealBogusModel
    threshold : float, optional
        The model card's when None.
    settings : InjectionSettings, optional
    detect_threshold : float
        Sigma of the detection run on each injected frame (the frame's own).
    fwhm_given : bool
        The FWHM was given, not measured: the PSF stars are still looked for, and the
        fallback PSF has this FWHM.
    targets : (float, float)
        Target FNR and target FPR for the two thresholds reported.
    keep_stamps : bool
        Keep the injected objects' tiles and raw stamps (`Assessment.stamps`, at most
        `MAX_KEPT_STAMPS`) for a window to show.
    log : callable, optional

    Returns
    -------
    Assessment
    """
    from astropy.table import vstack

    from rbvet.core.classify import score_objects

    started = time.perf_counter()
    settings = settings or InjectionSettings()
    threshold = float(model.threshold if threshold is None else threshold)

    def score_round(injected, total):
        """Score the round's matched detections; the `Progress` runs over its second half."""
        if not injected.x.size:
            return np.zeros(0, np.float32)
        scoring = score_objects(injected.frame, injected.x, injected.y, model, fwhm)
        message = f"{round_message(injected.index, settings)}: scoring"
        while True:
            try:
                progress = next(scoring)
            except StopIteration as finished:
                return finished.value[0]
            done = ROUND_UNITS * (injected.index + 0.5 + 0.5 * (progress.fraction or 0.0))
            yield Progress(int(done), total, message)

    rounds = yield from inject_rounds(
        frame,
        table,
        fwhm,
        settings,
        use_round=score_round,
        detect_threshold=detect_threshold,
        fwhm_given=fwhm_given,
        log=log,
    )
    truths, pictures = [], []
    room = _stamp_room(plan_rescale(fwhm, model.params)) if keep_stamps else 0
    for injected, scores in rounds.results:
        truth = injected.truth
        _record_detections(truth, injected.owner, scores, injected.x, injected.y)
        truths.append(truth)
        if room > 0:
            pictures.append(picture_injections(injected.frame, truth[:room], model, fwhm))
            room -= len(pictures[-1])
    truth = vstack(truths)
    summary = summarize_injections(truth, threshold, targets)
    summary.update(
        frame=frame.path or "(array)",
        frame_hash=frame.content_hash,
        model=model.name,
        model_version=model_version(model),
        threshold=threshold,
        fwhm=float(fwhm),
        psf=rounds.psf.facts(),
        photon_noise=rounds.photon_noise,
        settings=rounds.settings_facts(detect_threshold),
        seconds=round(time.perf_counter() - started, 2),
    )
    summary["counts"].update(
        requested=int(settings.injections),
        placed=int(len(truth)),
        placed_by_round=rounds.placed_by_round,
    )
    total = ROUND_UNITS * len(rounds.placed_by_round)
    yield Progress(total, total, f"{ASSESSING}: done")
    return Assessment(truth, summary, _join_pictures(pictures) if keep_stamps else None)


def _stamp_room(rescale):
    """How many injected objects fit in `MAX_KEPT_STAMP_BYTES` (at most `MAX_KEPT_STAMPS`)."""
    from rbvet.core.cutouts.atlas import tile_shape

    height, width = tile_shape(rescale.target_size)
    each = 4 * rescale.stamp_size**2 + height * width
    return int(min(MAX_KEPT_STAMPS, MAX_KEPT_STAMP_BYTES // each))


def picture_injections(frame, truth, model, fwhm):
    """Tiles and raw stamps of injected objects, cut from their round's injected frame.

    Each is cut where it was scored (its best-scoring detection) or, undetected, where it
    was injected, with the rescaling and preprocessing of its scoring: its tile is the
    CNN input that got its score (`rbvet.core.cutouts.stamps.iter_inputs` gives the same
    inputs from frame planes).

    Parameters
    ----------
    frame : Frame
        The injected frame of the round of every row of ``truth``.
    truth : astropy.table.Table
        Rows of `Assessment.truth` (with ``detected``, ``x_scored``, ``y_scored``).
    model : RealBogusModel
    fwhm : float

    Returns
    -------
    InjectedStamps
    """
    from rbvet.core.cutouts.atlas import render_tiles
    from rbvet.core.cutouts.stamps import cut_stamps

    rescale = plan_rescale(fwhm, model.params)
    detected = np.asarray(truth["detected"], bool)
    x = np.where(detected, truth["x_scored"], truth["x"]).astype(np.float64)
    y = np.where(detected, truth["y_scored"], truth["y"]).astype(np.float64)
    stamps = cut_stamps(frame, x, y, rescale)
    tiles = render_tiles(stamps.inputs(model.params))
    reasons = np.where(detected, stamps.reason, NOT_DETECTED).astype(str)
    return InjectedStamps(x, y, tiles, stamps.data, reasons, rescale)


def _join_pictures(pictures):
    """One `InjectedStamps` of the rounds' pictures, in round order (None for none)."""
    if not pictures:
        return None
    joined = {
        name: np.concatenate([getattr(part, name) for part in pictures])
        for name in ("x", "y", "tiles", "stamps", "reasons")
    }
    return InjectedStamps(**joined, rescale=pictures[0].rescale)


@dataclass
class InjectedRound:
    """One round of injections, painted and detected.

    Attributes
    ----------
    index : int
    frame : Frame
        The frame with this round's injections.
    truth : astropy.table.Table
        What was injected (with ``round`` and ``snr``).
    x, y : ndarray
        The new detections matched to an injection.
    owner : ndarray of int
        The row of ``truth`` each of them belongs to.
    """

    index: int
    frame: object
    truth: object
    x: np.ndarray
    y: np.ndarray
    owner: np.ndarray


@dataclass
class InjectionRounds:
    """What `inject_rounds` did: the PSF, the room found, and each round's result."""

    psf: object
    settings: InjectionSettings
    step: float
    clearance: float
    photon_noise: str
    placed_by_round: list
    results: list

    def settings_facts(self, detect_threshold):
        return {
            **self.settings.facts(),
            "grid_step": self.step,
            "clearance": self.clearance,
            "detect_threshold": float(detect_threshold),
        }


def round_message(index, settings):
    """The progress message of round ``index`` (0-based) of an assessment."""
    if index < settings.rounds:
        return f"{ASSESSING}: round {index + 1} of {settings.rounds}"
    return f"{ASSESSING}: extra round {index + 1} (the frame had room for few at a time)"


def _another_round(settings, placed_by_round):
    """Whether `inject_rounds` runs one more round: the planned ones, then extra ones (see
    `InjectionSettings.extra_rounds`) while fewer than the injections asked for are
    placed. A round that finds no room costs next to nothing, and on a small frame (a
    cut-out of 50 x 100 px has a few grid points) another grid may find some."""
    done = len(placed_by_round)
    if done < settings.rounds:
        return True
    wanting = sum(placed_by_round) < settings.injections
    return wanting and done < settings.rounds + settings.extra_rounds


def inject_rounds(
    frame, table, fwhm, settings, use_round, *, detect_threshold=3.0, fwhm_given=False, log=None
):
    """Measure the frame's PSF, find room, and in each round paint, detect and match.

    A job (see `rbvet.core.jobs`): yields `Progress` (`ROUND_UNITS` per round, the first
    half for painting and detection) and returns `InjectionRounds`. Each round is handed
    to ``use_round(injected_round, total)``, itself a job (scoring for an assessment,
    cutting stamps to train on for `rbvet.core.learn.adapt`); its results are kept in
    ``results`` as ``(round, result)`` pairs.

    Raises
    ------
    RbvetError
        Nothing could be placed: the frame is too crowded or masked.
    """
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.inject.psf import measure_frame_psf

    log = log or (lambda message: None)
    frame.ensure_background()
    x, y = np.asarray(table["x"], np.float64), np.asarray(table["y"], np.float64)
    total = ROUND_UNITS * settings.rounds
    yield Progress(0, total, "Measuring the PSF")
    frame_psf = measure_frame_psf(frame, table, fwhm, fwhm_given=fwhm_given)
    log(frame_psf.note)

    yield Progress(0, total, "Finding room for injections")
    baseline = detect_objects(frame, thresh=detect_threshold)
    bx, by = np.asarray(baseline["x"]), np.asarray(baseline["y"])
    distance = free_distance(frame, np.r_[x, bx], np.r_[y, by])
    step, clearance = settings.grid_step(fwhm), settings.min_clearance(fwhm)
    variance_per_adu, noise_source = photon_variance_per_adu(frame)
    rng = np.random.default_rng(settings.seed)
    per_round = int(np.ceil(settings.injections / settings.rounds))
    baseline_tree = _tree(bx, by)
    saturation = _saturation_of(frame)

    results, placed_by_round = [], []
    for index in itertools.count():
        if not _another_round(settings, placed_by_round):
            break
        total = ROUND_UNITS * max(settings.rounds, index + 1)
        message = round_message(index, settings)
        yield Progress(ROUND_UNITS * index, total, message)
        wanted = min(per_round, settings.injections - sum(placed_by_round))
        px, py = place_injections(distance, wanted, step, clearance, rng)
        placed_by_round.append(int(px.size))
        if px.size == 0:
            continue
        kinds = draw_kinds(settings, px.size, rng)
        image, truth = paint_round(
            frame, frame_psf, px, py, kinds, settings, rng, variance_per_adu
        )
        truth["round"] = np.full(len(truth), index, np.int16)
        fake = injected_frame(frame, image, saturation)
        yield Progress(ROUND_UNITS * index + ROUND_UNITS // 10, total, f"{message}: detecting")
        found = detect_objects(fake, thresh=detect_threshold)
        owner = _match(found, truth, baseline_tree, step, fwhm)
        chosen = np.flatnonzero(owner >= 0)
        injected = InjectedRound(
            index,
            fake,
            truth,
            np.asarray(found["x"], np.float64)[chosen],
            np.asarray(found["y"], np.float64)[chosen],
            owner[chosen],
        )
        outcome = use_round(injected, total)
        if hasattr(outcome, "send"):  # a job
            outcome = yield from outcome
        results.append((injected, outcome))
    if not results:
        raise RbvetError(
            "no room to inject anything: the frame is too crowded or masked "
            f"(no place {clearance:.0f} px from every object)",
            frame.path,
        )
    return InjectionRounds(
        frame_psf, settings, step, clearance, noise_source, placed_by_round, results
    )


def model_version(model):
    """What tells one model file from another: its card's date and its file's digest."""
    from rbvet.core.model.card import file_digest

    digest = None
    if model.path is not None and model.path.exists():
        digest = file_digest(model.path)
    return {"created": model.card.get("created"), "digest": digest}


def _saturation_of(frame):
    if frame.saturation is not None and np.isfinite(frame.saturation):
        return float(frame.saturation)
    finite = frame.image[np.isfinite(frame.image)]
    return float(finite.max()) if finite.size else np.inf


def _tree(x, y):
    from scipy.spatial import cKDTree

    return cKDTree(np.column_stack([x, y])) if len(x) else None


def _match(found, truth, baseline_tree, step, fwhm):
    """For each detection, the row of ``truth`` it belongs to, or -1.

    A detection belongs to the nearest injection when it is new (not within `SAME_OBJECT`
    px of a detection of the frame without injections) and within that injection's reach:
    ``max(2 px, 1.5 FWHM)``, plus half its length for tracks, trails and column pieces.
    """
    owner = np.full(len(found), -1, np.int64)
    if len(found) == 0 or len(truth) == 0:
        return owner
    fx, fy = np.asarray(found["x"], np.float64), np.asarray(found["y"], np.float64)
    distance, nearest = _tree(np.asarray(truth["x"]), np.asarray(truth["y"])).query(
        np.column_stack([fx, fy]), distance_upper_bound=0.5 * step
    )
    near = np.isfinite(distance)
    length = np.nan_to_num(np.asarray(truth["length"], np.float64))
    extended = np.isin(np.asarray(truth["kind"]), ("satellite", "bad_column")) | (
        np.asarray(truth["subkind"]) == "track"
    )
    reach = max(2.0, 1.5 * fwhm) + np.where(extended, 0.5 * length, 0.0)
    index = np.where(near, nearest, 0)
    keep = near & (distance <= reach[index])
    if baseline_tree is not None:
        old, _ = baseline_tree.query(np.column_stack([fx, fy]), distance_upper_bound=SAME_OBJECT)
        keep &= ~np.isfinite(old)
    owner[keep] = index[keep]
    return owner


def _record_detections(truth, owner, scores, x=None, y=None):
    """Add ``detected``, ``n_detections``, ``score`` (the highest of its detections) and,
    given the detections' positions ``x``, ``y``, ``x_scored`` and ``y_scored``: where
    that detection is (its first detection when none could be scored; NaN when none)."""
    n = len(truth)
    counts = np.bincount(owner, minlength=n) if owner.size else np.zeros(n, np.int64)
    best = np.full(n, -np.inf)
    scores = np.asarray(scores, np.float64)
    finite = np.isfinite(scores)
    np.maximum.at(best, owner[finite], scores[finite])
    truth["detected"] = counts > 0
    truth["n_detections"] = counts.astype(np.int32)
    truth["score"] = np.where(np.isfinite(best), best, np.nan)
    if x is None:
        return
    # Per injection, its detections by score (unscored lowest), the best last.
    order = np.lexsort((np.where(finite, scores, -np.inf), owner))
    last = np.flatnonzero(np.r_[owner[order][1:] != owner[order][:-1], owner.size > 0])
    chosen = order[last]
    for name, values in (("x_scored", x), ("y_scored", y)):
        column = np.full(n, np.nan)
        column[owner[chosen]] = np.asarray(values, np.float64)[chosen]
        truth[name] = column


def summarize_injections(truth, threshold, targets=(0.05, 0.01)):
    """The figures of an assessment from its truth table (see `Assessment`).

    Returns
    -------
    dict
        ``threshold``; ``star_completeness`` (stars of S/N >= `STAR_SNR_MIN` detected and
        scored at or above the threshold, as a fraction of those injected);
        ``artifact_rejection`` (detected artifacts scored below the threshold, or
        unscorable, as a fraction of detected artifacts) and ``artifact_rejection_by_kind``
        / ``_by_subkind``; ``completeness`` (per kind of `REAL_KINDS`, per S/N bin:
        injected, detected, called real); ``curves`` (FNR and FPR of the detected
        injections against `THRESHOLDS`, with bootstrap 95 % intervals); ``targets``
        (thresholds for the target FNR and FPR); ``counts``.
    """
    from rbvet.core.learn.metrics import bootstrap_error_rates, threshold_for_rate

    kind = np.asarray(truth["kind"]).astype(str)
    subkind = np.asarray(truth["subkind"]).astype(str)
    detected = np.asarray(truth["detected"], bool)
    score = np.asarray(truth["score"], np.float64)
    snr = np.asarray(truth["snr"], np.float64)
    called_real = detected & (score >= threshold)
    is_artifact = np.isin(kind, ARTIFACT_KINDS)
    is_real = np.isin(kind, REAL_KINDS)

    bright = (kind == "star") & (snr >= STAR_SNR_MIN)
    artifacts_detected = is_artifact & detected
    rejected = artifacts_detected & ~called_real

    def fraction(good, pool):
        count = int(pool.sum())
        return float(good[pool].mean()) if count else float("nan")

    by_kind = {
        name: fraction(rejected, artifacts_detected & (kind == name))
        for name in ARTIFACT_KINDS
        if np.any(artifacts_detected & (kind == name))
    }
    labels = np.array([f"{k}/{s}" for k, s in zip(kind, subkind, strict=True)])
    by_subkind = {
        str(name): fraction(rejected, artifacts_detected & (labels == name))
        for name in np.unique(labels[artifacts_detected])
    }
    edges = np.asarray(SNR_BINS)
    completeness = {}
    for name in REAL_KINDS:
        members = kind == name
        which = np.digitize(snr[members], edges) - 1
        inside = (which >= 0) & (which < len(edges) - 1)
        nbins = len(edges) - 1
        injected = np.bincount(which[inside], minlength=nbins)
        found = np.bincount(which[inside], weights=detected[members][inside], minlength=nbins)
        real = np.bincount(which[inside], weights=called_real[members][inside], minlength=nbins)
        completeness[name] = {
            "snr_edges": edges.tolist(),
            "injected": injected.astype(int).tolist(),
            "detected": found.astype(int).tolist(),
            "called_real": real.astype(int).tolist(),
        }

    scored = detected & np.isfinite(score) & (is_real | is_artifact)
    labels01 = is_real[scored].astype(np.int8)
    curves = bootstrap_error_rates(score[scored], labels01, THRESHOLDS)
    target_fnr, target_fpr = targets
    return {
        "threshold": float(threshold),
        "star_completeness": fraction(called_real, bright),
        "star_detection": fraction(detected, bright),
        "artifact_rejection": fraction(rejected, artifacts_detected),
        "artifact_rejection_by_kind": by_kind,
        "artifact_rejection_by_subkind": by_subkind,
        "completeness": completeness,
        "curves": {"threshold": THRESHOLDS.tolist(), **{k: v.tolist() for k, v in curves.items()}},
        "targets": {
            "fnr": float(target_fnr),
            "fpr": float(target_fpr),
            "threshold_at_fnr": threshold_for_rate(score[scored], labels01, fnr=target_fnr),
            "threshold_at_fpr": threshold_for_rate(score[scored], labels01, fpr=target_fpr),
        },
        "counts": {
            "by_kind": {str(name): int(np.sum(kind == name)) for name in np.unique(kind)},
            "detected_by_kind": {
                str(name): int(np.sum(detected & (kind == name))) for name in np.unique(kind)
            },
            "stars_bright": int(bright.sum()),
            "artifacts_detected": int(artifacts_detected.sum()),
            "scored": int(scored.sum()),
        },
    }


def write_assessment(assessment, path):
    """Write the summary as JSON, atomically (a cancelled or failed run leaves nothing)."""
    from pathlib import Path

    from rbvet.core.io.files import atomic_write

    text = assessment.to_json()
    atomic_write(path, lambda temporary: Path(temporary).write_text(text + "\n"))


def _plain(value):
    """Numbers as JSON-safe Python values (NaN and infinities as None)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _percent(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f} %"


def _number(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def save_assessment_plots(assessment, prefix):
    """Save ``PREFIX_completeness.png`` (completeness against S/N, rejection per artifact
    kind) and ``PREFIX_rates.png`` (injected FNR and FPR against the threshold, with their
    bootstrap 95 % bands). Needs matplotlib (the ``plots`` extra).

    Returns
    -------
    tuple of Path
    """
    from pathlib import Path

    from rbvet.core.io.files import atomic_write
    from rbvet.core.learn.evaluate import require_matplotlib

    canvas_class, figure_class = require_matplotlib()
    summary = assessment.summary
    threshold = summary["threshold"]
    paths = (Path(f"{prefix}_completeness.png"), Path(f"{prefix}_rates.png"))

    figure = figure_class(figsize=(10.0, 4.2), layout="constrained")
    canvas_class(figure)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    for color, name in (("C0", "star"), ("C2", "galaxy")):
        curve = summary["completeness"][name]
        edges = np.asarray(curve["snr_edges"])
        centres = np.sqrt(edges[:-1] * edges[1:])
        injected = np.asarray(curve["injected"], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            found = np.asarray(curve["detected"]) / injected
            real = np.asarray(curve["called_real"]) / injected
        left.plot(centres, found, "--", color=color, label=f"{name}s detected")
        left.plot(centres, real, "o-", color=color, label=f"{name}s detected and called real")
    left.axvline(STAR_SNR_MIN, color="0.6", lw=0.8)
    left.set_xscale("log")
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("injected S/N (matched filter)")
    left.set_ylabel("fraction of injected")
    left.set_title(f"Injected sources, threshold {threshold:.2f}")
    left.legend(fontsize="small")
    kinds = list(summary["artifact_rejection_by_kind"])
    values = [summary["artifact_rejection_by_kind"][kind] for kind in kinds]
    right.bar(range(len(kinds)), [0.0 if v is None else v for v in values], color="C3")
    right.set_xticks(range(len(kinds)), kinds, rotation=20)
    right.set_ylim(0, 1.02)
    right.set_ylabel("detected artifacts rejected")
    right.set_title("Injected artifacts")
    figure.suptitle(f"{summary['frame']} — model {summary['model']} (injected)")
    atomic_write(paths[0], lambda temporary: figure.savefig(temporary, dpi=110))

    curves = assessment.rate_curves()
    figure = figure_class(figsize=(6.0, 4.5), layout="constrained")
    canvas_class(figure)
    axes = figure.add_subplot()
    for name, color in (("fnr", "C0"), ("fpr", "C3")):
        axes.fill_between(
            curves["threshold"],
            curves[f"{name}_low"],
            curves[f"{name}_high"],
            color=color,
            alpha=0.25,
        )
        axes.plot(
            curves["threshold"], curves[name], color=color, label=f"{name.upper()} (injected)"
        )
    axes.axvline(threshold, color="0.4", ls=":", label=f"threshold {threshold:.2f}")
    axes.set_xlabel("threshold")
    axes.set_ylabel("rate")
    axes.set_ylim(-0.01, 1.01)
    axes.legend()
    axes.set_title("Error rates of injected objects (95 % bootstrap bands)")
    atomic_write(paths[1], lambda temporary: figure.savefig(temporary, dpi=110))
    return paths


SIDECAR_SUFFIX = ".assessments"
"""Assessments are kept in ``<label store><SIDECAR_SUFFIX>/``, one JSON file each."""


def kept_assessment_path(store_path, frame_hash, model_name):
    """Where the assessment of a frame (by content hash) with a model (by name) is kept:
    beside the label store, so it travels with the labels of the same frames."""
    from pathlib import Path

    store = Path(store_path)
    safe_model = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(model_name))
    return store.with_name(store.name + SIDECAR_SUFFIX) / f"{frame_hash}-{safe_model}.json"


def keep_assessment(assessment, store_path):
    """Write an assessment's summary beside the label store (atomically); its path."""
    summary = assessment.summary
    path = kept_assessment_path(store_path, summary["frame_hash"], summary["model"])
    write_assessment(assessment, path)
    return path


def load_kept_assessment(store_path, frame_hash, model_name):
    """The kept `Assessment` (summary only) of a frame and model, or None."""
    path = kept_assessment_path(store_path, frame_hash, model_name)
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return Assessment(None, summary) if isinstance(summary, dict) else None
