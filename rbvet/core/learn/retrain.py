"""Retrain the model from the user's labels, judge it against the current one, version it.

`retrain` holds out labeled objects first — whole frames when the labels come from two
or more frames, single objects of each class otherwise — and only then hands the rest (optionally
mixed with simulated objects, so the model does not forget what it knew) to
`rbvet.core.learn.train.train_model`, which augments on the fly. Old and new model are then
scored on the held-out objects (`compare_models`): the user accepts the new model, and
`save_versioned` writes it next to the old name as ``name.vN.keras`` with a card naming
its parent and its data.

`retrain` and `simulated_objects` are jobs (`rbvet.core.jobs`): generators that yield
`Progress` (training's `EpochEnded` among them) and return their result; closing one
stops it and returns nothing.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.jobs import Progress

FINE_TUNE_LEARNING_RATE = 1e-4
SCRATCH_LEARNING_RATE = 1e-3
DEFAULT_HELD_OUT_FRACTION = 0.25
DEFAULT_VALIDATION_FRACTION = 0.15
SIMULATED_FRAME_SIZE = 512
SIMULATED_OBJECTS_PER_MEGAPIXEL = 350.0  # first guess of detections; measured ~360
SIMULATED_SEED_OFFSET = 3_000_017
MAX_SIMULATION_ROUNDS = 10
MIN_FRAMES_FOR_FRAME_VALIDATION = 3
DEFAULT_WEAK_WEIGHT = 0.3
"""Weight of a weak label (repeated exposures, a reference catalog) in the training loss,
a user's label counting 1: weak labels are many and mostly right, but not checked."""
MIN_OBJECTS_PER_CLASS = 8
"""Fewer labeled objects of a class than this cannot fill the three parts of retraining
(trained on, early-stopping validation, held out for the comparison) with enough of it
to measure anything: say so before training."""
_VERSIONED_NAME = re.compile(r"^(?P<stem>.+?)(?:\.v(?P<version>\d+))?(?P<suffix>\.keras|\.h5)$")


@dataclass
class RetrainResult:
    """What `retrain` made.

    Attributes
    ----------
    model : RealBogusModel
        The new model (unsaved; `accept` or `save_versioned` writes it).
    base_model : RealBogusModel
        The model it is compared with (and, unless trained from scratch, started from).
    comparison : dict
        `compare_models` of both on the held-out labeled objects.
    train_index, held_out_index : ndarray of int
        Rows of the training set trained on and held out (disjoint; split before any
        augmentation).
    history : keras.callbacks.History
    n_simulated : int
        Simulated objects mixed into the training part.
    n_weak : int
        Weakly labelled objects added to the training part.
    seconds : float
        Wall time of the whole retraining.
    """

    model: object
    base_model: object
    comparison: dict
    train_index: np.ndarray
    held_out_index: np.ndarray
    history: object = None
    n_simulated: int = 0
    n_weak: int = 0
    seconds: float = 0.0
    log: list = field(default_factory=list)

    def accept(self, path):
        """Save the new model as the next free ``name.vN.keras`` beside ``path``."""
        return save_versioned(self.model, path)


def compare_models(old_model, new_model, inputs, labels, threshold):
    """Score held-out objects with both models: AUC, FNR and FPR at the threshold.

    Parameters
    ----------
    old_model, new_model : RealBogusModel
    inputs : ndarray (N, size, size, 2)
    labels : array_like (N,)
        1 real, 0 bogus.
    threshold : float

    Returns
    -------
    dict
        ``{"old": {...}, "new": {...}}``; each with ``name``, ``auc``, ``fnr``, ``fpr``,
        ``threshold`` and the counts ``objects``, ``real``, ``bogus`` (NaN figures when
        a class is missing).
    """
    from rbvet.core.learn.metrics import error_rates, roc_auc

    labels = np.asarray(labels).astype(np.int8).ravel()
    comparison = {}
    for key, model in (("old", old_model), ("new", new_model)):
        scores = model.predict(inputs) if len(labels) else np.zeros(0, np.float32)
        fnr, fpr = error_rates(scores, labels, [threshold])
        comparison[key] = {
            "name": model.name,
            "auc": roc_auc(scores, labels),
            "fnr": float(fnr[0]),
            "fpr": float(fpr[0]),
            "threshold": float(threshold),
            "objects": int(len(labels)),
            "real": int(np.sum(labels == 1)),
            "bogus": int(np.sum(labels == 0)),
        }
    return comparison


def format_number(value, percent=False):
    """A metric for a table: 4 decimals, or a percentage; "n/a" when unknown."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f} %" if percent else f"{value:.4f}"


def format_comparison(comparison):
    """The comparison as a small aligned text table (for the command line)."""

    old = comparison["old"]
    lines = [
        f"Held-out labeled objects: {old['objects']} ({old['real']} real, {old['bogus']} "
        f"bogus), threshold {old['threshold']:.2f}",
    ]
    rows = [("", "model", "AUC", "FNR", "FPR")]
    for key in ("old", "new"):
        entry = comparison[key]
        rows.append(
            (
                key,
                entry["name"],
                format_number(entry["auc"]),
                format_number(entry["fnr"], True),
                format_number(entry["fpr"], True),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def class_size_problem(n_real, n_bogus):
    """Why the labels are too few in a class to hold some out, or None when they suffice.

    Parameters
    ----------
    n_real, n_bogus : int
        Objects labeled real and bogus.

    Returns
    -------
    str or None
        One sentence for the user (said before training, by the dialog and the CLI).
    """
    small = [
        (count, name)
        for count, name in ((n_real, "real"), (n_bogus, "bogus"))
        if count < MIN_OBJECTS_PER_CLASS
    ]
    if not small:
        return None
    counts = " and ".join(f"{count} {name}" for count, name in small)
    return (
        f"only {counts} labeled: too few to train on and also hold some out, so the "
        "held-out AUC and error rates may be unmeasured (n/a); label at least "
        f"{MIN_OBJECTS_PER_CLASS} of each class"
    )


def held_out_gaps(n_real, n_bogus):
    """What a comparison on held-out objects cannot measure, as one sentence, or None.

    A held-out part without real objects has no AUC and no FNR; one without bogus
    objects has no AUC and no FPR.

    Parameters
    ----------
    n_real, n_bogus : int
        Held-out objects labeled real and bogus.
    """
    counts = {"real": n_real, "bogus": n_bogus}
    missing = [name for name in ("real", "bogus") if counts[name] == 0]
    if not missing:
        return None
    figures = {"real": "FNR", "bogus": "FPR"}
    unmeasured = ["AUC"] + [figures[name] for name in missing]
    return (
        f"the held-out objects include no {' and no '.join(missing)} ones: "
        f"{', '.join(unmeasured)} are not measured (n/a) for either model"
    )


def check_simulated_ratio(ratio):
    """Refuse a negative share of simulated objects, before any work is done."""
    if ratio < 0:
        raise RbvetError(f"the simulated ratio must be >= 0, got {ratio}")


def check_weak_weight(weight):
    """Refuse a weak-label weight outside (0, 1], before any work is done: a weak label
    never counts more than a user's own."""
    if weight is not None and not 0 < weight <= 1:
        raise RbvetError(f"the weak-label weight must be in (0, 1], got {weight}")


def weak_training_rows(weak_set, training_set, held_out_frames, by_frame):
    """Rows of ``weak_set`` that may join the training part of `retrain`.

    Left out: objects that have a label of the user's in ``training_set`` (the user's
    label wins, and held-out objects are among these), and, when the comparison holds out
    whole frames, every object of a held-out frame (the new model must not have seen
    those frames).

    Returns
    -------
    rows : ndarray of int
    left_out_held_out : int
        Weak rows dropped because their frame is held out.
    """
    usable = np.ones(len(weak_set), bool)
    if weak_set.object_ids is not None and training_set.object_ids is not None:
        usable &= ~np.isin(weak_set.object_ids, training_set.object_ids)
    in_held_out = np.zeros(len(weak_set), bool)
    if by_frame:
        in_held_out = np.isin(np.asarray(weak_set.groups), held_out_frames)
    return np.flatnonzero(usable & ~in_held_out), int(np.sum(usable & in_held_out))


def _weak_info(weak_set, rows, weight, left_out):
    """What the weak labels added to training (for the card)."""
    kinds = np.asarray(weak_set.kinds, str)[rows] if weak_set.kinds is not None else None
    labels = np.asarray(weak_set.labels)[rows]
    sources = {}
    if kinds is not None:
        from rbvet.core.learn.labels import WEAK_SOURCES

        for name in WEAK_SOURCES:
            has = np.char.find(np.char.add(np.char.add("+", kinds), "+"), f"+{name}+") >= 0
            sources[name] = int(np.sum(has))
    return {
        "weight": float(weight),
        "objects": int(len(rows)),
        "real": int(np.sum(labels == 1)),
        "bogus": int(np.sum(labels == 0)),
        "sources": sources,
        "left_out_in_held_out_frames": int(left_out),
    }


def with_weak_labels(samples, weak_set, weak_weight, user_set, held_out_frames, by_frame, say):
    """``samples`` (inputs, labels, groups) with the usable weak labels appended, and the
    weight of every sample: 1 for these samples, ``weak_weight`` for a weak label.

    Retraining and adapting add weak labels the same way (`weak_training_rows` says which
    rows: never an object the user labeled, never one of a held-out frame).

    Parameters
    ----------
    samples : (ndarray, ndarray, ndarray)
        Training inputs, labels and groups so far.
    weak_set : TrainingSet or None
        ``LabelStore.weak_training_data``; None: nothing is added.
    weak_weight : float
    user_set : TrainingSet or None
        The user's labeled objects (their ids are left out of the weak rows).
    held_out_frames : array_like or None
        Frame ids held out whole; None when the user's labels were held out by object.
    by_frame : bool
        Weak rows keep their frame ids as groups (early stopping validates by frame);
        otherwise each is a group of its own.
    say : callable

    Returns
    -------
    (inputs, labels, groups), sample_weight, dict or None
        The extended samples, their weights, and what was added (the card's ``weak``);
        None when ``weak_set`` is None.
    """
    inputs, labels, groups = samples
    weight = np.ones(len(labels), np.float32)
    if weak_set is None:
        return samples, weight, None
    frames = np.zeros(0, np.int64) if held_out_frames is None else held_out_frames
    reference = user_set if user_set is not None else weak_set.subset(np.zeros(0, np.intp))
    rows, left_out = weak_training_rows(weak_set, reference, frames, held_out_frames is not None)
    info = _weak_info(weak_set, rows, weak_weight, left_out)
    weak_groups = (
        np.asarray(weak_set.groups, np.int64)[rows]
        if by_frame
        else np.max(groups, initial=0) + 1 + np.arange(len(rows), dtype=np.int64)
    )
    extended = (
        np.concatenate([inputs, np.asarray(weak_set.inputs, np.float32)[rows]]),
        np.concatenate([labels, np.asarray(weak_set.labels).astype(labels.dtype)[rows]]),
        np.concatenate([groups, weak_groups.astype(groups.dtype)]),
    )
    weight = np.concatenate([weight, np.full(len(rows), weak_weight, np.float32)])
    by_source = ", ".join(f"{count} {name}" for name, count in info["sources"].items())
    say(
        f"Adding {len(rows)} weak labels ({info['real']} real, "
        f"{info['bogus']} bogus; {by_source}) with weight {weak_weight:g}"
        + (f"; {left_out} of held-out frames left out" if left_out else "")
        if len(rows)
        else "No weak labels to add (none on objects without a label of yours"
        + (f" outside the held-out frames; {left_out} in them)" if left_out else ")")
    )
    return extended, weight, info


def finished_model(result, base, threshold, training, held_out, name):
    """The trained network as a model whose card is complete but for its metrics, and
    old against new on each held-out set: the common tail of `retrain` and
    `rbvet.core.learn.adapt.adapt`.

    Parameters
    ----------
    result : rbvet.core.learn.train.TrainResult
        ``train_model``'s result (its card has the description, parent and history).
    base : RealBogusModel
        The parent: its preprocessing and real kinds are the new model's.
    threshold : float
        Of the new card and the comparisons.
    training : dict
        Added to the card's ``training`` (mode, split, labels, weak, seed, ...).
    held_out : dict of str to (ndarray, ndarray)
        Held-out inputs and labels by name.
    name : str
        The new model's name in the comparisons ("new model", "adapted model").

    Returns
    -------
    new_model : RealBogusModel
        Keras engine; the caller sets ``card["metrics"]`` from the comparisons.
    comparisons : dict of str to dict
        `compare_models` on each held-out set.
    """
    from rbvet.core.model import RealBogusModel

    card = result.card
    card["preprocessing"] = base.params.to_dict()
    card["threshold"] = float(threshold)
    card["real_kinds"] = list(base.card.get("real_kinds", ["star", "galaxy"]))
    card["training"].update(training)
    new_model = RealBogusModel(result.model, card, engine="keras")
    comparisons = {}
    for key, (inputs, labels) in held_out.items():
        comparisons[key] = compare_models(base, new_model, inputs, labels, threshold)
        comparisons[key]["new"]["name"] = name
    return new_model, comparisons


def _resolve_base_model(base_model):
    from rbvet.core.model import load_model

    if base_model is None or isinstance(base_model, (str, os.PathLike)):
        return load_model(base_model, engine="keras")
    return base_model


def _parent_reference(model):
    from rbvet.core.model import file_digest

    path = getattr(model, "path", None)
    digest = file_digest(path) if path is not None and Path(path).is_file() else None
    return {"name": model.name, "path": None if path is None else str(path), "digest": digest}


def _clone_for_fine_tuning(keras_model, learning_rate):
    from rbvet.core.model import compile_model, import_keras

    keras = import_keras()
    clone = keras.models.clone_model(keras_model)
    clone.set_weights(keras_model.get_weights())
    compile_model(clone, learning_rate)
    return clone


def fine_tuning_start(base_model, learning_rate=None):
    """The model to fine-tune from ``base_model`` on simulated objects, and its parent.

    Parameters
    ----------
    base_model : str, path, RealBogusModel or None
        The parent (None: the shipped default model).
    learning_rate : float, optional
        Default :data:`FINE_TUNE_LEARNING_RATE`.

    Returns
    -------
    base : RealBogusModel
        The parent as loaded (Keras engine).
    model : keras.Model
        A compiled copy of the parent's network, ready to train.
    parent : dict
        The parent reference for the new model's card (name, path, digest).
    """
    from rbvet.core.cutouts.preprocess import PreprocessParams

    base = _resolve_base_model(base_model)
    if base.params != PreprocessParams():
        raise RbvetError(
            f"{base.name}: simulated objects are preprocessed with the default "
            "representation; this model uses other preprocessing parameters"
        )
    rate = FINE_TUNE_LEARNING_RATE if learning_rate is None else float(learning_rate)
    return base, _clone_for_fine_tuning(base.keras_model, rate), _parent_reference(base)


def with_simulated_replay(samples, ratio, params, seed, say, frame_size=SIMULATED_FRAME_SIZE):
    """``samples`` (inputs, labels, groups) with ``ratio`` times as many simulated objects
    appended, so a fine-tuned model does not forget what it knew. A job.

    Returns
    -------
    (inputs, labels, groups), dict or None
        The extended samples, and what was added (for the card); None when nothing was.
    """
    inputs, labels, groups = samples
    n_simulated = int(round(ratio * len(labels)))
    if not n_simulated:
        return samples, None
    say(f"Simulating {n_simulated} objects to replay what the model knew")
    simulated = yield from simulated_objects(
        n_simulated, params, seed=seed, frame_size=frame_size, log=say
    )
    extended = (
        np.concatenate([inputs, simulated.inputs]),
        np.concatenate([labels, simulated.labels.astype(labels.dtype)]),
        np.concatenate([groups, simulated.groups.astype(groups.dtype)]),
    )
    info = {
        "ratio": float(ratio),
        "objects": n_simulated,
        "real": int(simulated.labels.sum()),
        **simulated.metadata,
    }
    return extended, info


def simulated_objects(n_objects, params, seed=0, frame_size=SIMULATED_FRAME_SIZE, log=None):
    """About ``n_objects`` labeled simulated objects (a `TrainingSet`), exactly that many.

    Small frames are simulated (in parallel) until there are enough detections, then
    ``n_objects`` of them are drawn at random. Group ids are negative (-1, -2, ... per
    frame) so they never collide with label-store frame ids. A job: yields the
    simulation's `Progress`.
    """
    from rbvet.core.cutouts.preprocess import PreprocessParams
    from rbvet.core.learn.dataset import TrainingSet
    from rbvet.core.learn.train import simulated_training_set

    if params != PreprocessParams():
        raise RbvetError(
            "simulated objects are preprocessed with the default representation; "
            "this model uses other preprocessing parameters (use --simulated-ratio 0)"
        )
    rng = np.random.default_rng([SIMULATED_SEED_OFFSET, seed])
    per_frame = SIMULATED_OBJECTS_PER_MEGAPIXEL * frame_size**2 / 1e6
    parts, have, frames_done = [], 0, 0
    for _ in range(MAX_SIMULATION_ROUNDS):
        if have >= n_objects:
            break
        n_frames = max(1, math.ceil(1.15 * (n_objects - have) / max(per_frame, 1.0)))
        part = yield from simulated_training_set(
            n_frames=n_frames,
            shape=(frame_size, frame_size),
            seed=int(rng.integers(2**31)),
            workers=1 if n_frames < 3 else None,
            log=log,
        )
        part.groups = (-(frames_done + 1) - part.groups.astype(np.int64)).astype(np.int32)
        parts.append(part)
        have += len(part)
        frames_done += n_frames
        per_frame = max(1.0, len(part) / n_frames)
    if have < n_objects:
        raise RbvetError(f"simulated frames gave only {have} of {n_objects} objects")
    data = TrainingSet.concatenate(parts)
    data.metadata = {"simulated_frames": len(np.unique(data.groups)), "frame_size": frame_size}
    return data.subset(np.sort(rng.choice(len(data), size=n_objects, replace=False)))


def _check_training_set(training_set, size):
    inputs = np.asarray(training_set.inputs)
    labels = np.asarray(training_set.labels)
    if len(labels) < 4:
        raise RbvetError(f"need at least 4 labeled objects to retrain, have {len(labels)}")
    if inputs.ndim != 4 or inputs.shape[1:] != (size, size, 2):
        raise RbvetError(
            f"training inputs of shape {inputs.shape[1:]} do not fit the model's "
            f"({size}, {size}, 2)"
        )
    if not np.isin(labels, (0, 1)).all():
        raise RbvetError("training labels must be 0 (bogus) or 1 (real)")


def retrain(
    training_set,
    base_model=None,
    from_scratch=False,
    simulated_ratio=0.0,
    epochs=10,
    seed=0,
    log=None,
    *,
    held_out_fraction=DEFAULT_HELD_OUT_FRACTION,
    validation_fraction=DEFAULT_VALIDATION_FRACTION,
    batch_size=128,
    learning_rate=None,
    threshold=None,
    simulated_frame_size=SIMULATED_FRAME_SIZE,
    weak_set=None,
    weak_weight=DEFAULT_WEAK_WEIGHT,
):
    """Train a new model from labeled objects and compare it with the current one.

    A job (`rbvet.core.jobs`): yields `Progress` (simulation, then training's batches and
    `rbvet.core.learn.train.EpochEnded` after each epoch); ``run_job`` returns the
    result. Closing it stops at once, or training at the end of the current batch, and
    nothing is returned.

    Parameters
    ----------
    training_set : TrainingSet
        Labeled objects, preprocessed for the base model (e.g.
        ``LabelStore.training_data(base_model.params)``); ``groups`` are frame ids.
    base_model : RealBogusModel, str or Path, optional
        The current model: fine-tuned (a copy; it is not changed) unless
        ``from_scratch``, and the "old" model of the comparison. The shipped default
        model when None.
    from_scratch : bool
        Train a new network of the seed's architecture instead of fine-tuning.
    simulated_ratio : float
        Mix ``simulated_ratio`` x (number of labeled training objects) simulated
        objects from small frames into the training part (never into the held-out part).
    epochs : int
        Training passes; each shows every training object under a random one of the 8
        symmetries of the square. Early stopping may end training sooner.
    seed : int
    log : callable, optional
        Called with one-line messages.
    held_out_fraction : float
        Fraction of frames (or, with one frame, of objects) kept for the comparison.
    validation_fraction : float
        Fraction of the training part `train_model` keeps for early stopping.
    batch_size : int
    learning_rate : float, optional
        Default 1e-4 for fine-tuning, 1e-3 from scratch.
    threshold : float, optional
        Of the comparison and the new card; default the base model's.
    simulated_frame_size : int
    weak_set : TrainingSet, optional
        Weakly labelled objects (``LabelStore.weak_training_data``), added to the
        training part only, with ``weak_weight`` (`weak_training_rows` says which: never
        an object the user labeled, never one of a held-out frame). They are never held
        out: the comparison is on the user's labels alone.
    weak_weight : float
        Weight of a weak label in the loss, in (0, 1]; a user's label counts 1.

    Returns
    -------
    RetrainResult
    """
    if learning_rate is not None and not learning_rate > 0:
        raise RbvetError(f"learning rate must be positive, got {learning_rate}")
    from rbvet.core.learn.train import split_by_group, split_objects_by_class, train_model

    started = time.perf_counter()
    messages = []

    def say(message):
        messages.append(message)
        if log is not None:
            log(message)

    check_simulated_ratio(simulated_ratio)
    check_weak_weight(weak_weight)
    if base_model is None or isinstance(base_model, (str, os.PathLike)):  # a file to load
        yield Progress(message="Loading the current model")
    base = _resolve_base_model(base_model)
    _check_training_set(training_set, base.input_size)
    threshold = base.threshold if threshold is None else float(threshold)
    labels = np.asarray(training_set.labels).astype(np.int8)
    groups = np.asarray(training_set.groups).astype(np.int64)
    frames = np.unique(groups)
    rng = np.random.default_rng(seed)

    # 1. Held-out objects first, before any augmentation or simulated data.
    problem = class_size_problem(int(np.sum(labels == 1)), int(np.sum(labels == 0)))
    if problem:
        say(f"Warning: {problem}")
    by_frame = len(frames) >= 2
    if by_frame:
        train_index, held_out_index = split_by_group(groups, (held_out_fraction,), rng)
    else:
        train_index, held_out_index = split_objects_by_class(labels, held_out_fraction, rng)
    held_out_frames = np.unique(groups[held_out_index])
    held_real = int(np.sum(labels[held_out_index] == 1))
    held_bogus = len(held_out_index) - held_real
    say(
        f"Held out {len(held_out_index)} of {len(labels)} labeled objects "
        f"({held_real} real, {held_bogus} bogus; "
        + (
            f"{len(held_out_frames)} of {len(frames)} frames)"
            if by_frame
            else "one frame: split by object within each class)"
        )
    )
    gaps = held_out_gaps(held_real, held_bogus)
    if gaps:
        say(f"Warning: {gaps}")

    # 2. Training part: labeled objects (+ simulated ones), grouped for validation.
    inputs = np.asarray(training_set.inputs, np.float32)[train_index]
    train_labels = labels[train_index]
    train_frames = groups[train_index]
    validation_by_frame = (
        by_frame and len(np.unique(train_frames)) >= MIN_FRAMES_FOR_FRAME_VALIDATION
    )
    if validation_by_frame:
        train_groups = train_frames
    else:
        train_groups = np.arange(1, len(train_index) + 1, dtype=np.int64)
    (inputs, train_labels, train_groups), simulated_info = yield from with_simulated_replay(
        (inputs, train_labels, train_groups),
        simulated_ratio,
        base.params,
        seed,
        say,
        frame_size=simulated_frame_size,
    )
    n_simulated = 0 if simulated_info is None else simulated_info["objects"]
    (inputs, train_labels, train_groups), sample_weight, weak_info = with_weak_labels(
        (inputs, train_labels, train_groups),
        weak_set,
        weak_weight,
        training_set,
        held_out_frames if by_frame else None,
        validation_by_frame,
        say,
    )
    n_weak = 0 if weak_info is None else weak_info["objects"]

    # 3. Fit (train_model splits a validation part off for early stopping and augments).
    if from_scratch:
        model = None
        rate = SCRATCH_LEARNING_RATE if learning_rate is None else learning_rate
    else:
        rate = FINE_TUNE_LEARNING_RATE if learning_rate is None else learning_rate
        model = _clone_for_fine_tuning(base.keras_model, rate)
    yield Progress(message="Training")
    say(
        ("Training from scratch" if from_scratch else f"Fine-tuning {base.name}")
        + f" for up to {epochs} epochs (learning rate {rate:g})"
    )
    parent = _parent_reference(base)
    result = yield from train_model(
        inputs,
        train_labels,
        groups=train_groups,
        model=model,
        validation_fraction=validation_fraction,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=rate,
        seed=seed,
        log=say,
        description=(
            f"{'trained from scratch' if from_scratch else 'fine-tuned from ' + base.name} "
            f"on {len(train_index)} labeled objects"
            + (f" and {n_simulated} simulated ones" if n_simulated else "")
            + (f" and {n_weak} weak labels (weight {weak_weight:g})" if n_weak else "")
        ),
        parent=parent,
        sample_weight=sample_weight,
    )

    # 4. The new model's card, and both models on the held-out objects.
    held_out_inputs = np.asarray(training_set.inputs, np.float32)[held_out_index]
    new_model, comparisons = finished_model(
        result,
        base,
        threshold,
        {
            "split": (
                f"held out by {'frame' if by_frame else 'object'} before augmentation; "
                f"validation (early stopping) by "
                f"{'frame' if validation_by_frame else 'object'}"
                + (", simulated objects by frame" if n_simulated else "")
            ),
            "mode": "from scratch" if from_scratch else "fine-tuned",
            "learning_rate": rate,
            "labels": _data_description(training_set, train_index, held_out_index, by_frame),
            "simulated": simulated_info,
            "weak": weak_info,
            "seed": int(seed),
        },
        {"labels": (held_out_inputs, labels[held_out_index])},
        "new model",
    )
    comparison = comparisons["labels"]
    new_model.card["metrics"] = _card_metrics(comparison)
    seconds = time.perf_counter() - started
    say(f"Retrained in {seconds:.0f} s")
    return RetrainResult(
        model=new_model,
        base_model=base,
        comparison=comparison,
        train_index=train_index,
        held_out_index=held_out_index,
        history=result.history,
        n_simulated=n_simulated,
        n_weak=n_weak,
        seconds=seconds,
        log=messages,
    )


def _data_description(training_set, train_index, held_out_index, by_frame):
    params = dict(getattr(training_set, "metadata", None) or {})
    frames = [
        {key: frame.get(key) for key in ("id", "path", "content_hash", "shape")}
        for frame in params.get("frames", [])
        if isinstance(frame, dict)
    ]
    labels = np.asarray(training_set.labels)
    groups = np.asarray(training_set.groups)
    return {
        "source": params.get("source", "training set"),
        "store": params.get("store"),
        "frames": frames or sorted(int(g) for g in np.unique(groups)),
        "objects": int(len(labels)),
        "real": int(np.sum(labels == 1)),
        "bogus": int(np.sum(labels == 0)),
        "trained_on": int(len(train_index)),
        "held_out": int(len(held_out_index)),
        "held_out_frames": sorted(int(g) for g in np.unique(groups[held_out_index])),
        "split": "by frame" if by_frame else "by object",
    }


def _card_metrics(comparison):
    from rbvet.core.learn.evaluate import metrics_for_json

    new, old = comparison["new"], comparison["old"]
    metrics = {key: new[key] for key in ("auc", "fnr", "fpr", "threshold", "objects", "real")}
    metrics["bogus"] = new["bogus"]
    metrics["evaluated_on"] = "held-out labeled objects"
    metrics["parent_on_same_objects"] = {key: old[key] for key in ("name", "auc", "fnr", "fpr")}
    return metrics_for_json(metrics)


def versioned_path(path):
    """The next free ``name.vN.keras`` beside ``path`` (``name.keras`` or ``name.vK.keras``)."""
    path = Path(path)
    match = _VERSIONED_NAME.match(path.name)
    if match is None:
        raise RbvetError("model files must end in .keras (or .h5 for STDPipe)", path)
    stem, suffix = match["stem"], match["suffix"]
    pattern = re.compile(rf"^{re.escape(stem)}\.v(\d+){re.escape(suffix)}$")
    directory = path.parent
    versions = [
        int(found[1])
        for found in (pattern.match(entry.name) for entry in _entries(directory))
        if found
    ]
    return directory / f"{stem}.v{max(versions, default=0) + 1}{suffix}"


def _entries(directory):
    try:
        return list(Path(directory).iterdir())
    except FileNotFoundError:
        return []


def save_versioned(model, path):
    """Save a model as the next free version ``name.vN.keras`` beside ``path``.

    The name is reserved with an exclusive create (two programs saving at once get
    different versions), then the model and its card are written atomically
    (`rbvet.core.model.save_model`). The card keeps ``parent`` and records ``version``.

    Parameters
    ----------
    model : RealBogusModel
    path : str or Path
        ``name.keras`` (or an existing ``name.vK.keras``): where versions go.

    Returns
    -------
    Path
        The file written; ``model.path`` is set to it.
    """
    from rbvet.core.model import save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(1000):
        target = versioned_path(path)
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            continue
    else:
        raise RbvetError("cannot find a free version name", path)
    card = dict(model.card)
    card.setdefault("parent", None)
    card["version"] = int(_VERSIONED_NAME.match(target.name)["version"])
    try:
        card = save_model(model.keras_model, target, card)  # with its ONNX record
    except BaseException:
        if target.exists() and target.stat().st_size == 0:
            target.unlink()
        raise
    model.card = card
    model.path = target
    return target


def retrain_from_store(store_path=None, base_model=None, *, log=None, weak_weight=None, **options):
    """Retrain from every labeled object of a label store (the window's and ``rbvet train
    --labels``'s one sequence): open the store, load the model, read the labeled objects
    preprocessed for it, then `retrain`. A job (`rbvet.core.jobs`): it yields `Progress`.

    Parameters
    ----------
    store_path : str or Path, optional
        The label store; the user's default one when None. It must exist.
    base_model : str or Path, optional
        The current model (loaded with the Keras engine: it is fine-tuned and compared
        with); the shipped default when None.
    log : callable, optional
        Called with one-line messages, here and in `retrain`.
    weak_weight : float, optional
        Also train on the store's weak labels (`LabelStore.weak_training_data`) with
        this weight, in (0, 1]; not when None.
    **options
        Passed on to `retrain`: ``from_scratch``, ``simulated_ratio``, ``epochs``,
        ``seed``, ``batch_size``, ``threshold``, ...

    Yields
    ------
    Progress
        The steps before training (message only), then `retrain`'s.

    Returns
    -------
    RetrainResult
        Unsaved: `RetrainResult.accept` (or `save_versioned`) writes the new model.

    Raises
    ------
    RbvetError
        The store is missing or unusable, or holds no object labeled real or bogus.
    """
    from rbvet.core.learn.labels import LabelStore
    from rbvet.core.model import load_model

    check_simulated_ratio(options.get("simulated_ratio", 0.0))  # before the store is read
    check_weak_weight(weak_weight)
    say = log if log is not None else (lambda message: None)
    with LabelStore(store_path, readonly=True) as store:
        yield Progress(message="Loading the current model")
        base = load_model(base_model, engine="keras")
        yield Progress(message=f"Reading the labeled objects of {store.path}")
        training_set = store.training_data(base.params, with_stamps=False)
        if weak_weight is not None:
            options.update(weak_set=store.weak_training_data(base.params), weak_weight=weak_weight)
        where = store.path
    if len(training_set) == 0:
        raise RbvetError("no objects labeled real or bogus", where)
    counts = training_set.metadata
    say(
        f"Label store {where}: {len(training_set)} labeled objects "
        f"({counts['real']} real, {counts['bogus']} bogus) "
        f"on {len(np.unique(training_set.groups))} frame(s)"
    )
    return (yield from retrain(training_set, base_model=base, log=log, **options))
