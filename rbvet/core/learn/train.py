"""Leak-free training: split by group before augmentation, augment on the fly, fit.

The held-out objects are chosen by *group* (a frame, for simulated or labeled data) before
any augmentation, so no rotated copy of a training stamp is ever used to judge the model,
which is what made STDPipe's validation figures meaningless. Training samples are seen
under a random one of the 8 symmetries of the square at every epoch.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.errors import RbvetError, RbvetWarning, raise_if_stopped
from rbvet.core.learn.dataset import TrainingSet

N_SYMMETRIES = 8


def apply_symmetry(inputs, index):
    """One of the 8 symmetries of the square (rotations by k*90 deg, optionally flipped)."""
    out = np.rot90(inputs, k=index % 4, axes=(1, 2))
    if index >= 4:
        out = out[:, :, ::-1]
    return out


def random_symmetries(inputs, rng):
    """Each input under an independently drawn symmetry (vectorised per symmetry)."""
    choice = rng.integers(0, N_SYMMETRIES, size=len(inputs))
    out = np.empty_like(inputs)
    for index in range(N_SYMMETRIES):
        selected = choice == index
        if selected.any():
            out[selected] = apply_symmetry(inputs[selected], index)
    return out


def all_symmetries(inputs):
    """The 8 symmetric copies of every input, stacked (N*8, ...), copies of one input apart."""
    return np.stack([apply_symmetry(inputs, k) for k in range(N_SYMMETRIES)], axis=1).reshape(
        (-1,) + inputs.shape[1:]
    )


def split_by_group(groups, fractions, rng):
    """Assign whole groups to consecutive subsets of the given sizes.

    Parameters
    ----------
    groups : ndarray (N,)
        Group id of each sample (frame id), or None to split sample by sample.
    fractions : sequence of float
        Fractions of the held-out subsets (e.g. ``(0.15,)`` or ``(0.1, 0.1)``); the rest
        is the training subset.
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray of int
        Indices of the training subset followed by one array per held-out fraction.
    """
    groups = np.asarray(groups)
    unique = rng.permutation(np.unique(groups))
    if len(unique) < len(fractions) + 1:
        raise RbvetError(
            f"cannot split {len(unique)} group(s) into {len(fractions) + 1} "
            "subsets: need more frames (or objects)"
        )
    counts = np.maximum(1, np.round(np.asarray(fractions) * len(unique)).astype(int))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    subsets = [np.flatnonzero(np.isin(groups, unique[bounds[-1] :]))]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        subsets.append(np.flatnonzero(np.isin(groups, unique[start:stop])))
    return subsets


def balanced_class_weights(labels):
    """Class weights that give both classes the same total weight (None if one class)."""
    labels = np.asarray(labels)
    n_real = int(np.sum(labels == 1))
    n_bogus = int(np.sum(labels == 0))
    if n_real == 0 or n_bogus == 0:
        return None
    total = n_real + n_bogus
    return {0: total / (2.0 * n_bogus), 1: total / (2.0 * n_real)}


def _batches_class():
    from rbvet.core.model import import_keras

    keras = import_keras()

    class AugmentedBatches(keras.utils.PyDataset):
        """Shuffled training batches, each input under a random symmetry, with weights."""

        def __init__(self, inputs, labels, weights, batch_size, seed):
            super().__init__()
            self.inputs, self.labels, self.weights = inputs, labels, weights
            self.batch_size = int(batch_size)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(labels))

        def __len__(self):
            return int(np.ceil(len(self.labels) / self.batch_size))

        def __getitem__(self, index):
            take = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
            batch = random_symmetries(self.inputs[take], self.rng)
            return batch, self.labels[take], self.weights[take]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.labels))

    return AugmentedBatches


def progress_callback(progress=None, should_stop=None):
    """A Keras callback that reports each epoch and stops training when asked.

    ``progress(epoch, logs)`` is called after every epoch; training stops at the end of
    the current batch once ``should_stop()`` returns True.
    """
    from rbvet.core.model import import_keras

    keras = import_keras()

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress is not None:
                progress(epoch, dict(logs or {}))

        def on_train_batch_end(self, batch, logs=None):
            if should_stop is not None and should_stop():
                self.model.stop_training = True

    return _Progress()


@dataclass
class TrainResult:
    """A trained model, its history, held-out indices and a card describing the run."""

    model: object
    history: object
    train_index: np.ndarray
    validation_index: np.ndarray
    card: dict = field(default_factory=dict)


def train_model(
    inputs,
    labels,
    groups=None,
    model=None,
    validation_fraction=0.15,
    epochs=20,
    batch_size=128,
    class_weight="balanced",
    callbacks=None,
    patience=4,
    learning_rate=1e-3,
    seed=0,
    progress=None,
    should_stop=None,
    log=None,
    description="",
    parent=None,
):
    """Fit a model with a group-wise held-out split and on-the-fly augmentation.

    Parameters
    ----------
    inputs : ndarray (N, size, size, 2)
    labels : ndarray (N,)
        1 real, 0 bogus.
    groups : ndarray (N,), optional
        Frame (or other group) of each sample; split sample by sample when None.
    model : keras.Model, optional
        Continue training this model (fine-tuning); a new seed-architecture model if None.
    validation_fraction : float
        Fraction of groups held out for early stopping.
    epochs, batch_size, patience : int
    class_weight : 'balanced', dict or None
    callbacks : list, optional
        Extra Keras callbacks; replace the default early stopping and LR schedule.
    learning_rate : float
        For new models only.
    seed : int
    progress : callable, optional
        ``progress(epoch, logs)`` after every epoch.
    should_stop : callable, optional
        Cancels training when it returns True.
    log : callable, optional

    Returns
    -------
    TrainResult
    """
    from rbvet.core.cutouts.preprocess import PreprocessParams
    from rbvet.core.model import create_model, import_keras, make_card

    keras = import_keras()
    log = log or (lambda *args, **kwargs: None)
    inputs = np.asarray(inputs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32).ravel()
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    group_ids = np.arange(len(labels)) if groups is None else np.asarray(groups)
    train_index, validation_index = split_by_group(group_ids, (validation_fraction,), rng)
    if class_weight == "balanced":
        class_weight = balanced_class_weights(labels[train_index])
    weights = np.ones(len(labels), np.float32)
    if class_weight:
        for value, weight in class_weight.items():
            weights[labels == value] = weight
    # One group per sample (no groups, or a caller splitting a single frame by object).
    by_sample = len(np.unique(group_ids)) == len(group_ids)
    log(
        f"Training on {len(train_index)} samples ({int(labels[train_index].sum())} real), "
        f"validating on {len(validation_index)} from held-out "
        f"{'samples' if by_sample else 'frames'}"
    )
    if model is None:
        model = create_model(input_shape=inputs.shape[1:], learning_rate=learning_rate)
    if callbacks is None:
        callbacks = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, patience // 2), min_lr=1e-5
            ),
        ]
    callbacks = list(callbacks) + [progress_callback(progress, should_stop)]
    batches = _batches_class()(
        inputs[train_index], labels[train_index], weights[train_index], batch_size, seed
    )
    started = time.perf_counter()
    history = model.fit(
        batches,
        validation_data=(
            inputs[validation_index],
            labels[validation_index],
            weights[validation_index],
        ),
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )
    elapsed = time.perf_counter() - started
    size = inputs.shape[1]
    card = make_card(
        size,
        PreprocessParams(target_size=size),
        training={
            "samples": int(len(train_index)),
            "validation_samples": int(len(validation_index)),
            "split": "by sample" if by_sample else "by frame",
            "augmentation": "8 symmetries of the square, random per epoch",
            "epochs_run": len(history.history.get("loss", [])),
            "seconds": round(elapsed, 1),
        },
        description=description,
        parent=parent,
    )
    return TrainResult(model, history, train_index, validation_index, card)


def training_set_from_frame(
    sim,
    frame_index=0,
    real_kinds=("star", "galaxy"),
    detect_threshold=3.0,
    params=None,
    use_true_fwhm=False,
):
    """Detect, label and preprocess the objects of one simulated frame, as a pipeline would.

    Background and noise are mapped with sep, objects detected with sep, the FWHM
    estimated from the detections (unless ``use_true_fwhm``), and each detection is
    labeled by `rbvet.core.simulate.label_detections`; ambiguous ones are left out.
    """
    from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import estimate_fwhm
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.simulate import label_detections

    params = params or PreprocessParams()
    frame = frame_from_array(sim.image).ensure_background()
    detections = detect_objects(frame, thresh=detect_threshold)
    x = np.asarray(detections["x"], np.float64)
    y = np.asarray(detections["y"], np.float64)
    labels, kinds = label_detections(sim, x, y, real_kinds=real_kinds)
    if use_true_fwhm:
        fwhm = sim.fwhm
    else:
        with warnings.catch_warnings():
            # A sparse frame falls back to the default FWHM, as a pipeline would.
            warnings.simplefilter("ignore", RbvetWarning)
            fwhm = estimate_fwhm(frame, x, y, table=detections)
    rescale = plan_rescale(fwhm, params)
    stamps = cut_stamps(frame, x, y, rescale)
    keep = (labels >= 0) & stamps.scorable
    inputs = stamps.inputs(params, keep)
    n = int(keep.sum())
    return TrainingSet(
        inputs=inputs,
        labels=labels[keep].astype(np.int8),
        groups=np.full(n, frame_index, np.int32),
        kinds=np.asarray(kinds)[keep].astype("U16"),
        fwhm=np.full(n, sim.fwhm, np.float32),
    )


def _simulate_one(task):
    from rbvet.core.simulate import simulate_frame

    index, seed, shape, real_kinds, options = task
    rng = np.random.default_rng(seed)
    detect_threshold = float(rng.uniform(*options.pop("detect_threshold_range", (3.0, 3.0))))
    sim = simulate_frame(shape=shape, rng=rng, **options)
    return training_set_from_frame(sim, index, real_kinds, detect_threshold=detect_threshold)


def simulated_training_set(
    n_frames=100,
    shape=(1024, 1024),
    seed=0,
    real_kinds=("star", "galaxy"),
    fwhm_range=None,
    detect_threshold_range=(2.0, 5.0),
    workers=None,
    log=None,
    progress=None,
    should_stop=None,
    **options,
):
    """Simulate ``n_frames`` frames and turn their detections into a labeled training set.

    Frames are simulated in parallel processes (``workers``, default: all cores); frame
    ``i`` uses seed ``(seed, i)``, so the set is reproducible and a different ``seed``
    gives frames never seen. ``fwhm_range`` (optional) draws the FWHM uniformly in that
    range instead of the simulator's default distribution. ``progress(done, total)`` is
    called after each frame; once ``should_stop()`` returns True,
    `concurrent.futures.CancelledError` is raised there.
    """
    import multiprocessing

    log = log or (lambda *args, **kwargs: None)
    seeds = np.random.SeedSequence(seed).spawn(n_frames)
    tasks = []
    for index, frame_seed in enumerate(seeds):
        frame_options = dict(options, detect_threshold_range=tuple(detect_threshold_range))
        if fwhm_range is not None:
            low, high = fwhm_range
            frame_options["fwhm"] = float(np.random.default_rng(frame_seed).uniform(low, high))
        tasks.append((index, frame_seed, tuple(shape), tuple(real_kinds), frame_options))
    workers = workers or os.cpu_count() or 1
    parts = []
    started = time.perf_counter()

    def frame_done(part):
        parts.append(part)
        if progress is not None:
            progress(len(parts), n_frames)
        raise_if_stopped(should_stop, "simulation cancelled")

    if workers > 1 and n_frames > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for part in pool.imap(_simulate_one, tasks):
                frame_done(part)
    else:
        for task in tasks:
            frame_done(_simulate_one(task))
    data = TrainingSet.concatenate(parts, metadata={"n_frames": n_frames, "seed": seed})
    log(
        f"Simulated {n_frames} frames in {time.perf_counter() - started:.0f} s: {len(data)} "
        f"objects, {int(data.labels.sum())} real"
    )
    return data
