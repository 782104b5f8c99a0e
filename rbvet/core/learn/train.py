"""Leak-free training: split by group before augmentation, augment on the fly, fit.

The held-out objects are chosen by *group* (a frame, for simulated or labeled data) before
any augmentation, so no rotated copy of a training stamp is ever used to judge the model,
which is what made STDPipe's validation figures meaningless. Training samples are seen
under a random one of the 8 symmetries of the square at every epoch.

`train_model` and `simulated_training_set` are jobs (`rbvet.core.jobs`): generators that
yield `Progress` and return their result; closing one stops it (training at the end of
the current batch, simulation at once) and returns nothing.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.jobs import Progress, cpu_count
from rbvet.core.learn.dataset import TrainingSet

N_SYMMETRIES = 8
SIMULATING = "Simulating frames"
"""The `Progress` message of `simulated_training_set`."""


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


def split_objects_by_class(labels, fraction, rng):
    """Hold out ``fraction`` of each class's objects (at least one of a class with two
    or more), so that a rare class is never missing from the held-out part by chance.

    Parameters
    ----------
    labels : ndarray (N,)
        1 real, 0 bogus.
    fraction : float
    rng : numpy.random.Generator

    Returns
    -------
    train_index, held_out_index : ndarray of int
        Sorted, disjoint, together every object.
    """
    labels = np.asarray(labels)
    train, held_out = [], []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        if len(members) < 2:
            train.append(members)
            continue
        kept, out = split_by_group(members, (fraction,), rng)
        train.append(members[kept])
        held_out.append(members[out])
    empty = np.zeros(0, np.intp)
    return np.sort(np.concatenate([empty, *train])), np.sort(np.concatenate([empty, *held_out]))


def undefined_auc_keys(train_labels, validation_labels):
    """Keras' AUC keys (``auc``, ``val_auc``) that are undefined for these labels.

    Keras reports the AUC of a part holding one class as 0.0; that figure is a missing
    measurement, not a bad model, and must be shown as such (NaN, "n/a").
    """
    keys = []
    for key, part in (("auc", train_labels), ("val_auc", validation_labels)):
        if len(np.unique(np.asarray(part))) < 2:
            keys.append(key)
    return tuple(keys)


def balanced_class_weights(labels, sample_weight=None):
    """Class weights that give both classes the same total weight (None if one class).

    With ``sample_weight`` (e.g. down-weighted weak labels) the classes are balanced by
    their summed sample weights rather than their counts.
    """
    labels = np.asarray(labels)
    weight = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight)
    n_real = float(np.sum(weight[labels == 1]))
    n_bogus = float(np.sum(weight[labels == 0]))
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


@dataclass(frozen=True)
class EpochEnded(Progress):
    """The `Progress` of training at the end of an epoch, with that epoch's Keras logs.

    ``done`` counts the epochs run, ``total`` the epochs asked for; ``logs`` holds the
    epoch's figures (``loss``, ``auc``, ``val_loss``, ``val_auc``, ...) as floats.
    """

    logs: dict = field(default_factory=dict, compare=False)


def fit_in_thread(model, batches, epochs, callbacks=(), undefined=(), **fit_options):
    """``model.fit`` as a job: yields `Progress` after each batch, `EpochEnded` after each
    epoch, and returns the Keras ``History``.

    Keras' fit loop cannot yield, so it runs in a thread of its own and reports through
    a queue. Closing the job asks Keras to stop at the end of the current batch and waits
    for that (a batch takes milliseconds to a second); an error in the fit comes out of
    the job as it is.

    Parameters
    ----------
    model : keras.Model
    batches : keras.utils.PyDataset
        Training batches (``len`` is the number of batches per epoch).
    epochs : int
    callbacks : sequence of keras.callbacks.Callback
    undefined : sequence of str
        Keys of the epoch logs that are undefined (see `undefined_auc_keys`): reported
        as NaN instead of Keras' figure.
    **fit_options
        Passed to ``model.fit`` (``validation_data``, ...).
    """
    import queue
    import threading

    from rbvet.core.model import import_keras

    keras = import_keras()
    events = queue.SimpleQueue()
    stop = threading.Event()
    per_epoch = max(1, len(batches))
    total = int(epochs) * per_epoch

    class _Report(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if stop.is_set():
                self.model.stop_training = True
            message = f"epoch {self.epoch + 1} of {epochs}"
            events.put(Progress(self.epoch * per_epoch + batch + 1, total, message))

        def on_epoch_end(self, epoch, logs=None):
            logs = {key: float(value) for key, value in (logs or {}).items()}
            logs.update({key: float("nan") for key in undefined if key in logs})
            events.put(EpochEnded(epoch + 1, int(epochs), f"epoch {epoch + 1} done", logs))

    outcome = {}

    def fit():
        try:
            outcome["history"] = model.fit(
                batches, epochs=epochs, callbacks=[*callbacks, _Report()], verbose=0, **fit_options
            )
        except BaseException as error:  # handed to the job, which raises it
            outcome["error"] = error
        finally:
            events.put(None)

    thread = threading.Thread(target=fit, name="rbvet training", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:  # also when closed: stop at the end of the batch and let the thread end
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["history"]


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
    log=None,
    description="",
    parent=None,
    sample_weight=None,
):
    """Fit a model with a group-wise held-out split and on-the-fly augmentation.

    A job (`rbvet.core.jobs`): yields `Progress` after every batch and `EpochEnded`
    after every epoch (see `fit_in_thread`); ``run_job`` returns its result. Closing it
    stops training at the end of the current batch, and nothing is returned.

    Parameters
    ----------
    inputs : ndarray (N, size, size, 2)
    labels : ndarray (N,)
        1 real, 0 bogus.
    groups : ndarray (N,), optional
        Frame (or other group) of each sample; split sample by sample, within each class
        (`split_objects_by_class`), when None or when every sample is a group of its own.
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
    log : callable, optional
    sample_weight : ndarray (N,), optional
        Weight of each sample in the loss (training and validation), times its class
        weight; e.g. below 1 for weak labels. All 1 when None.

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
    # One group per sample (no groups, or a caller splitting a single frame by object).
    by_sample = len(np.unique(group_ids)) == len(group_ids)
    if by_sample:
        train_index, validation_index = split_objects_by_class(labels, validation_fraction, rng)
    else:
        train_index, validation_index = split_by_group(group_ids, (validation_fraction,), rng)
    if sample_weight is None:
        sample_weight = np.ones(len(labels), np.float32)
    sample_weight = np.asarray(sample_weight, np.float32).ravel()
    if sample_weight.shape != labels.shape or not np.all(sample_weight > 0):
        raise RbvetError("sample weights must be positive, one per sample")
    if class_weight == "balanced":
        class_weight = balanced_class_weights(labels[train_index], sample_weight[train_index])
    weights = sample_weight.copy()
    if class_weight:
        for value, weight in class_weight.items():
            weights[labels == value] *= weight
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
    batches = _batches_class()(
        inputs[train_index], labels[train_index], weights[train_index], batch_size, seed
    )
    started = time.perf_counter()
    history = yield from fit_in_thread(
        model,
        batches,
        epochs,
        callbacks,
        undefined=undefined_auc_keys(labels[train_index], labels[validation_index]),
        validation_data=(
            inputs[validation_index],
            labels[validation_index],
            weights[validation_index],
        ),
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


_WORKER_MODULES = (
    "__main__",
    "rbvet.core.learn.train",
    "rbvet.core.simulate",
    "rbvet.core.io.frame",
    "rbvet.core.detect.detection",
    "rbvet.core.detect.psf",
    "rbvet.core.cutouts.stamps",
    "rbvet.core.cutouts.preprocess",
    "scipy.spatial",
    "sep",
)
"""What a simulating process imports: loaded once by the fork server, not by each worker."""


def _worker_context():
    """The multiprocessing context of the simulating processes.

    A fork server: one clean process (never a fork of this one, whose threads, Qt's or
    TensorFlow's, a fork would not carry over safely) imports `_WORKER_MODULES` once, and
    every worker is a fork of it, ready at once; the server lives on for later sets. A
    spawned worker (where there is no fork server) imports them all itself, 1-2 s each.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_WORKER_MODULES))  # used when the server starts
    return context


_pool_server_started = False
"""Whether this process has started a simulating pool: its fork server lives on, so the
next pool starts at once."""


def _simulated_in_pool(tasks, workers):
    """Each task's `_simulate_one` part, in task order, from a pool of ``workers``.

    The pool starts in a thread of its own and is handed the tasks at once. The first
    pool of a process waits for its fork server to import the simulator (about a second
    of one core, more on a busy machine): meanwhile this process, with the other core,
    simulates the first frame itself. Closing the generator terminates the pool (once
    it has started, if it has not yet).
    """
    from concurrent.futures import ThreadPoolExecutor

    global _pool_server_started
    here = 0 if _pool_server_started else 1

    def start():
        pool = _worker_context().Pool(max(1, min(workers, len(tasks) - here)))
        return pool, pool.imap(_simulate_one, tasks[here:])

    with ThreadPoolExecutor(1, thread_name_prefix="rbvet pool start") as starter:
        starting = starter.submit(start)
        try:
            if here:
                yield _simulate_one(tasks[0])
            pool, parts = starting.result()
            _pool_server_started = True
            yield from parts
        finally:
            pool, _ = starting.result()
            pool.terminate()
            pool.join()


def simulated_training_set(
    n_frames=100,
    shape=(1024, 1024),
    seed=0,
    real_kinds=("star", "galaxy"),
    fwhm_range=None,
    detect_threshold_range=(2.0, 5.0),
    workers=None,
    log=None,
    **options,
):
    """Simulate ``n_frames`` frames and turn their detections into a labeled training set.

    Frames are simulated in parallel processes (``workers``, default: all cores), forks of
    a server that imported the simulator once (`_worker_context`), handed one frame at a
    time so that none waits while another has frames left; while the first pool starts,
    this process simulates the first frame (`_simulated_in_pool`); frame ``i`` uses seed
    ``(seed, i)``, so the set is reproducible and a different ``seed`` gives frames never
    seen. ``fwhm_range`` (optional) draws the FWHM uniformly in that range instead of the
    simulator's default distribution. A job (`rbvet.core.jobs`): yields `Progress` over
    the frames; closing it stops the simulating processes.
    """
    log = log or (lambda *args, **kwargs: None)
    seeds = np.random.SeedSequence(seed).spawn(n_frames)
    tasks = []
    for index, frame_seed in enumerate(seeds):
        frame_options = dict(options, detect_threshold_range=tuple(detect_threshold_range))
        if fwhm_range is not None:
            low, high = fwhm_range
            frame_options["fwhm"] = float(np.random.default_rng(frame_seed).uniform(low, high))
        tasks.append((index, frame_seed, tuple(shape), tuple(real_kinds), frame_options))
    workers = workers or cpu_count()
    parts = []
    started = time.perf_counter()
    yield Progress(0, n_frames, SIMULATING)
    if workers > 1 and n_frames > 1:
        simulated = _simulated_in_pool(tasks, min(workers, n_frames))
    else:
        simulated = (_simulate_one(task) for task in tasks)
    with contextlib.closing(simulated):  # closing the job stops the pool here
        for part in simulated:
            parts.append(part)
            yield Progress(len(parts), n_frames, SIMULATING)
    data = TrainingSet.concatenate(parts, metadata={"n_frames": n_frames, "seed": seed})
    log(
        f"Simulated {n_frames} frames in {time.perf_counter() - started:.0f} s: {len(data)} "
        f"objects, {int(data.labels.sum())} real"
    )
    return data
