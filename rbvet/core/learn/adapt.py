"""Adapt the model to the user's own frames: fine-tune on injections into them.

`adapt` injects stars, galaxies and artifacts into each frame (`rbvet.core.inject`), cuts
the CNN inputs of the detections that match an injection, labelled by what was injected,
and fine-tunes a copy of the current model on them, on the label store's labels when one
is given (and its weak labels, down-weighted, when asked: as retraining adds them), and on
simulated objects (replay, so nothing it knew is forgotten). Whole
injection rounds, and labelled objects (by frame, or by object with one frame), are held
out first; old and new models are compared on both held-out sets, and the new model's
card names the frames, the injection settings and those figures.

A job (`rbvet.core.jobs`): closing it stops it and nothing is written; saving is the
caller's (`rbvet adapt` writes the model only once it is made).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.jobs import Progress

ROUND_GROUP = 1000
"""Injection samples of frame ``i`` (from 1) and round ``r`` are in group ``1000 i + r``."""
DEFAULT_EPOCHS = 3
DEFAULT_SIMULATED_RATIO = 0.5
DEFAULT_ANCHOR_CONFIDENCE = 0.9
"""The frame's own objects the current model scores at least this sure of (>= 0.9 real,
<= 0.1 bogus) are kept at that label while adapting: injections alone taught the model
that "real" looks like the injected PSF, and it then rejected a crowded field's stars."""
MAX_ANCHORS_PER_FRAME = 2000


@dataclass
class AdaptResult:
    """What `adapt` made.

    Attributes
    ----------
    model : RealBogusModel
        The adapted model (unsaved; its card is complete).
    base_model : RealBogusModel
    comparisons : dict
        ``"injections"`` and, with labels, ``"labels"``: `compare_models` of old and new on
        the held-out injection rounds and the held-out labelled objects.
    counts : dict
        Training and held-out sample counts.
    seconds : float
    """

    model: object
    base_model: object
    comparisons: dict
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0


def injected_training_set(
    frame,
    table,
    fwhm,
    params,
    settings,
    *,
    frame_number=1,
    detect_threshold=3.0,
    fwhm_given=False,
    log=None,
):
    """CNN inputs of the detected injections into one frame, labelled by what was injected.

    A job: yields `Progress` of `rbvet.core.inject.assess.inject_rounds` and returns a
    `TrainingSet` whose ``groups`` are ``ROUND_GROUP * frame_number + round`` and whose
    ``kinds`` are the injected kinds.
    """
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import iter_inputs
    from rbvet.core.inject.assess import inject_rounds
    from rbvet.core.inject.inject import REAL_KINDS
    from rbvet.core.learn.dataset import TrainingSet

    rescale = plan_rescale(fwhm, params)
    # The rounds are the groups whole rounds are held out by: only the planned ones.
    settings = dataclasses.replace(settings, extra_rounds=0)

    def cut(injected, total):
        chunks = list(iter_inputs(injected.frame, injected.x, injected.y, rescale, params))
        inputs = np.concatenate([c.inputs for _, c in chunks]) if chunks else None
        scorable = np.concatenate([c.scorable for _, c in chunks]) if chunks else None
        if inputs is None:
            return None
        kinds = np.asarray(injected.truth["kind"]).astype(str)[injected.owner]
        keep = scorable
        return TrainingSet(
            inputs[keep],
            np.isin(kinds[keep], REAL_KINDS).astype(np.int8),
            groups=np.full(int(keep.sum()), ROUND_GROUP * frame_number + injected.index),
            kinds=kinds[keep],
            fwhm=np.full(int(keep.sum()), fwhm, np.float32),
            x=injected.x[keep],
            y=injected.y[keep],
        )

    rounds = yield from inject_rounds(
        frame,
        table,
        fwhm,
        settings,
        use_round=cut,
        detect_threshold=detect_threshold,
        fwhm_given=fwhm_given,
        log=log,
    )
    parts = [part for _, part in rounds.results if part is not None and len(part)]
    if not parts:
        raise RbvetError("no injected object was detected to train on", frame.path)
    data = TrainingSet.concatenate(parts)
    data.metadata = {
        "psf": rounds.psf.facts(),
        "placed": int(sum(rounds.placed_by_round)),
        "settings": rounds.settings_facts(detect_threshold),
    }
    return data


def own_object_anchors(frame, table, fwhm, model, confidence, *, group, seed=0):
    """The frame's own objects that ``model`` scores with ``confidence``, at those labels.

    They anchor the fine-tuning to what the model already does right on this frame (a
    crowded field's stars, its galaxies) while injections teach it the rest. At most
    `MAX_ANCHORS_PER_FRAME`, drawn at random, so a rich frame does not drown the
    injections.

    Returns
    -------
    TrainingSet
        Labels 1 where the score is >= ``confidence``, 0 where it is <= 1 - ``confidence``;
        ``kinds`` "anchor"; every row in ``group``.
    """
    from rbvet.core.classify import iter_scores
    from rbvet.core.learn.dataset import TrainingSet

    x = np.asarray(table["x"], np.float64)
    y = np.asarray(table["y"], np.float64)
    size = model.params.target_size
    # Seeded with empty parts so that a frame without scorable objects gives an empty set.
    rows, inputs, scores = (
        [np.zeros(0, np.intp)],
        [np.zeros((0, size, size, 2), np.float32)],
        [np.zeros(0, np.float32)],
    )
    for chunk in iter_scores(frame, x, y, model, fwhm):  # unscorable ones have NaN scores
        sure = np.flatnonzero((chunk.scores >= confidence) | (chunk.scores <= 1 - confidence))
        rows.append(chunk.start + sure)
        inputs.append(chunk.inputs[sure])
        scores.append(chunk.scores[sure])
    sure, inputs, scores = (np.concatenate(parts) for parts in (rows, inputs, scores))
    keep = np.arange(len(sure))
    if len(keep) > MAX_ANCHORS_PER_FRAME:
        keep = np.sort(np.random.default_rng(seed).choice(keep, MAX_ANCHORS_PER_FRAME, False))
    sure = sure[keep]
    return TrainingSet(
        inputs[keep],
        (scores[keep] >= confidence).astype(np.int8),
        groups=np.full(len(sure), group, np.int64),
        kinds=np.full(len(sure), "anchor"),
        fwhm=np.full(len(sure), fwhm, np.float32),
        x=x[sure],
        y=y[sure],
    )


def adapt(
    frames,
    base_model=None,
    store_path=None,
    *,
    epochs=DEFAULT_EPOCHS,
    settings=None,
    simulated_ratio=DEFAULT_SIMULATED_RATIO,
    held_out_rounds=1,
    held_out_fraction=0.25,
    batch_size=128,
    learning_rate=None,
    seed=0,
    options=None,
    log=None,
    weak_weight=None,
    use_labels=True,
    anchor_confidence=DEFAULT_ANCHOR_CONFIDENCE,
):
    """Fine-tune the model on injections into ``frames`` (+ labels, + weak labels, +
    simulated replay).

    Parameters
    ----------
    frames : sequence of (str, str or None)
        Frame paths and their catalogs (None: objects detected).
    base_model : RealBogusModel, str or Path, optional
        The model to adapt (a copy is trained); the shipped default when None.
    store_path : str or Path, optional
        A label store whose labelled objects are trained on and held out too. Labels
        given while another model's scores were shown are used, and the card says so.
    epochs : int
    settings : rbvet.core.inject.inject.InjectionSettings, optional
        What is injected into each frame (the seed is offset per frame).
    simulated_ratio : float
        Simulated objects mixed in, as a share of the training samples.
    held_out_rounds : int
        The last this many injection rounds of every frame are held out.
    held_out_fraction : float
        Of the labelled frames (or objects, with one frame), held out.
    batch_size : int
    learning_rate : float, optional
        Default `rbvet.core.learn.retrain.FINE_TUNE_LEARNING_RATE`.
    seed : int
    options : rbvet.core.classify.FrameOptions, optional
    log : callable, optional
    weak_weight : float, optional
        Also train on the store's weak labels (`LabelStore.weak_training_data`) with this
        weight in (0, 1], as `rbvet.core.learn.retrain.retrain` does: never an object the
        user labeled, never one of a held-out frame, never held out. Needs
        ``store_path``; the store may then hold weak labels only. Not when None.
    use_labels : bool
        Train on (and hold out) the store's labels of the user; False: its weak labels
        only (a window with too few labels to hold some out).
    anchor_confidence : float or None
        Also train on each frame's own objects the current model scores at least this
        sure of, at its label (`own_object_anchors`), so that adapting keeps what the
        model already does right there; None: injections (and labels) only.

    Returns
    -------
    AdaptResult
    """
    from rbvet.core.classify import FrameOptions, open_frame_and_catalog
    from rbvet.core.inject.inject import InjectionSettings
    from rbvet.core.learn.dataset import TrainingSet
    from rbvet.core.learn.retrain import (
        FINE_TUNE_LEARNING_RATE,
        _card_metrics,
        _clone_for_fine_tuning,
        _data_description,
        _parent_reference,
        _resolve_base_model,
        check_simulated_ratio,
        check_weak_weight,
        finished_model,
        with_simulated_replay,
        with_weak_labels,
    )
    from rbvet.core.learn.train import split_by_group, train_model

    started = time.perf_counter()
    say = log or (lambda message: None)
    check_simulated_ratio(simulated_ratio)
    check_weak_weight(weak_weight)
    if weak_weight is not None and store_path is None:
        raise RbvetError("weak labels are read from a label store: give one to use them")
    # Only the planned rounds (`injected_training_set`), as the card says.
    settings = dataclasses.replace(settings or InjectionSettings(), extra_rounds=0)
    options = options or FrameOptions()
    if not frames:
        raise RbvetError("give at least one frame to adapt the model to")
    if anchor_confidence is not None and not 0.5 < anchor_confidence < 1.0:
        raise RbvetError(f"anchor confidence must be in (0.5, 1), got {anchor_confidence}")
    if not 1 <= held_out_rounds < settings.rounds:
        raise RbvetError(
            f"held-out rounds must be at least 1 and fewer than the {settings.rounds} rounds"
        )
    rate = FINE_TUNE_LEARNING_RATE if learning_rate is None else float(learning_rate)
    yield Progress(message="Loading the current model")
    base = _resolve_base_model(base_model)
    threshold = base.threshold
    rng = np.random.default_rng(seed)

    # The store first: a refusal comes before the injections' minutes of work.
    labeled_train = labeled_held = labeled = weak_set = None
    label_models, by_frame, held_out_frames = [], False, None
    if store_path is not None:
        from rbvet.core.learn.labels import LabelStore

        with LabelStore(store_path, readonly=True) as store:
            labeled = store.training_data(base.params, with_stamps=False)
            label_models = store.label_models()
            if not use_labels:
                labeled = labeled.subset(np.zeros(0, np.intp))
            if weak_weight is not None:
                weak_set = store.weak_training_data(base.params)
        if len(labeled) == 0 and weak_set is None:
            raise RbvetError("no objects labeled real or bogus", store_path)
        if len(labeled) == 0:
            say("No labels of yours to train on: the store's weak labels only")
            labeled = None
    if labeled is not None:
        groups = np.asarray(labeled.groups, np.int64)
        by_frame = len(np.unique(groups)) >= 2
        split = groups if by_frame else np.arange(len(labeled))
        train_index, held_index = split_by_group(split, (held_out_fraction,), rng)
        labeled_train, labeled_held = labeled.subset(train_index), labeled.subset(held_index)
        if by_frame:
            held_out_frames = np.unique(groups[held_index])
        other = [name for name in label_models if name != base.name]
        if other:
            say(f"Labels were given with other models' scores shown ({', '.join(other)}): used")

    parts, anchors, frames_info = [], [], []
    for number, (path, catalog) in enumerate(frames, start=1):
        frame, table, fwhm = yield from open_frame_and_catalog(
            path, catalog, options=options, log=say
        )
        if anchor_confidence is not None:
            yield Progress(message=f"Scoring the objects of {path}")
            anchor = own_object_anchors(
                frame, table, fwhm, base, anchor_confidence, group=number, seed=seed + number
            )
            anchors.append(anchor)
            say(
                f"{path}: {len(anchor)} of its {len(table)} objects kept at the current "
                f"model's label ({int(anchor.labels.sum())} real)"
            )
        try:
            part = yield from injected_training_set(
                frame,
                table,
                fwhm,
                base.params,
                dataclasses.replace(settings, seed=settings.seed + number - 1),
                frame_number=number,
                detect_threshold=options.detect_threshold,
                fwhm_given=options.fwhm is not None,
                log=say,
            )
        except RbvetError as error:
            if len(frames) == 1:
                raise
            # One crowded frame (no room, nothing detected) does not stop the others.
            say(f"{path}: skipped: {error.problem}")
            frames_info.append(
                {
                    "path": str(path),
                    "catalog": None if catalog is None else str(catalog),
                    "content_hash": frame.content_hash,
                    "fwhm": round(float(fwhm), 3),
                    "skipped": error.problem,
                    "injected_placed": 0,
                    "samples": 0,
                    "anchors": len(anchors[-1]) if anchor_confidence is not None else 0,
                }
            )
            continue
        parts.append(part)
        frames_info.append(
            {
                "path": str(path),
                "catalog": None if catalog is None else str(catalog),
                "content_hash": frame.content_hash,
                "fwhm": round(float(fwhm), 3),
                "psf": part.metadata["psf"]["psf_source"],
                "injected_placed": part.metadata["placed"],
                "samples": len(part),
                "anchors": len(anchors[-1]) if anchor_confidence is not None else 0,
            }
        )
        real = int(part.labels.sum())
        say(f"{path}: {len(part)} detected injections to learn from ({real} real)")
        del frame
    if not parts:
        raise RbvetError("no frame had room for injections, or none of them was detected")
    injections = TrainingSet.concatenate(parts)
    held = (injections.groups % ROUND_GROUP) >= settings.rounds - held_out_rounds
    injection_train, injection_held = injections.subset(~held), injections.subset(held)

    train_parts = [injection_train] + ([labeled_train] if labeled_train is not None else [])
    train_parts += [anchor for anchor in anchors if len(anchor)]
    n_anchors = int(sum(len(anchor) for anchor in anchors))
    inputs = np.concatenate([np.asarray(p.inputs, np.float32) for p in train_parts])
    labels = np.concatenate([p.labels for p in train_parts]).astype(np.int8)
    # Early stopping validates on single objects: a frame's few rounds are too coarse
    # to split (the held-out rounds and labels, set aside above, judge the model).
    groups = np.arange(1, len(labels) + 1, dtype=np.int64)
    (inputs, labels, groups), simulated_info = yield from with_simulated_replay(
        (inputs, labels.astype(np.int8), groups), simulated_ratio, base.params, seed, say
    )
    n_simulated = 0 if simulated_info is None else simulated_info["objects"]
    (inputs, labels, groups), sample_weight, weak_info = with_weak_labels(
        (inputs, labels, groups), weak_set, weak_weight, labeled, held_out_frames, False, say
    )
    n_weak = 0 if weak_info is None else weak_info["objects"]

    yield Progress(message="Training")
    say(f"Fine-tuning {base.name} for up to {epochs} epochs on {len(labels)} samples")
    model = _clone_for_fine_tuning(base.keras_model, rate)
    result = yield from train_model(
        inputs,
        labels,
        groups=groups,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=rate,
        seed=seed,
        log=say,
        description=(
            f"adapted from {base.name} to {len(frames_info)} frame(s) by injection"
            + (" and their labels" if labeled_train is not None else "")
            + (f" and {n_weak} weak labels (weight {weak_weight:g})" if n_weak else "")
        ),
        parent=_parent_reference(base),
        sample_weight=sample_weight,
    )

    counts = {
        "injection_samples": int(len(injections)),
        "injection_train": int(len(injection_train)),
        "injection_held_out": int(len(injection_held)),
        "labeled_train": 0 if labeled_train is None else int(len(labeled_train)),
        "labeled_held_out": 0 if labeled_held is None else int(len(labeled_held)),
        "weak": n_weak,
        "anchors": n_anchors,
        "simulated": n_simulated,
    }
    held_out = {"injections": (injection_held.inputs, injection_held.labels)}
    if labeled_held is not None:
        held_out["labels"] = (labeled_held.inputs, labeled_held.labels)
    new_model, comparisons = finished_model(
        result,
        base,
        threshold,
        {
            "mode": "adapted by injection",
            "learning_rate": rate,
            "frames": frames_info,
            "injection": {
                **settings.facts(),
                "held_out_rounds": int(held_out_rounds),
                "held_out": f"the last {held_out_rounds} of {settings.rounds} rounds per frame",
            },
            "labels": (
                None
                if labeled is None
                else {
                    **_data_description(labeled, train_index, held_index, by_frame),
                    "given_with_models": label_models,
                    "from_other_models": [m for m in label_models if m != base.name],
                }
            ),
            "weak": weak_info,
            "anchors": (
                None
                if anchor_confidence is None
                else {
                    "confidence": float(anchor_confidence),
                    "objects": n_anchors,
                    "real": int(sum(int(anchor.labels.sum()) for anchor in anchors)),
                    "what": "the frames' own objects the current model was this sure of, "
                    "at its label",
                }
            ),
            "simulated": simulated_info,
            "counts": counts,
            "seed": int(seed),
        },
        held_out,
        "adapted model",
    )
    on_injections = _card_metrics(comparisons["injections"])
    on_injections["evaluated_on"] = "held-out injection rounds"
    new_model.card["metrics"] = {
        "held_out_injections": on_injections,
        "held_out_labels": (
            _card_metrics(comparisons["labels"]) if "labels" in comparisons else None
        ),
    }
    seconds = time.perf_counter() - started
    say(f"Adapted in {seconds:.0f} s")
    return AdaptResult(new_model, base, comparisons, counts, seconds)
