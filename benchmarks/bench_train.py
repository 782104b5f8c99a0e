"""Training-data and training throughput: simulated frames/s and training samples/s.

Run: python benchmarks/bench_train.py [--frames 8] [--size 1024] [--samples 8000]

Simulation: `simulated_training_set` (simulate, detect with sep, label from truth, cut
stamps, preprocess) of the same frames with a process per core and with one process, and
the ratio; the pool's start-up is part of the parallel time, as it is for a user.

Training: one epoch of `train_model` (a random symmetry of the square per sample, balanced
class weights, held-out frames for validation) against plain ``keras.Model.fit`` on the
same training and validation arrays without augmentation or weights, with the ratio. The
rate is timed from the end of the warm-up batches (graph tracing) to the last training
batch, so validation is not in it. The simulated objects are repeated to reach
``--samples``, which does not matter for a rate.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from rbvet.core.jobs import run_job
from rbvet.core.learn.train import simulated_training_set, train_model
from rbvet.core.model import create_model, import_keras

BATCH_SIZE = 128
WARM_UP_BATCHES = 5
LABEL_WIDTH = 32


def simulation_rate(n_frames, size, workers):
    """Frames per second of `simulated_training_set` and the set it made."""
    started = time.perf_counter()
    data = run_job(
        simulated_training_set(n_frames=n_frames, shape=(size, size), seed=7, workers=workers)
    )
    return n_frames / (time.perf_counter() - started), data


def repeat_to(data, n_samples):
    """Inputs, labels and frame groups of a set, repeated (as new frames) to ``n_samples``."""
    repeats = int(np.ceil(n_samples / len(data)))
    n_groups = int(data.groups.max()) + 1
    inputs = np.concatenate([data.inputs] * repeats)[:n_samples]
    labels = np.concatenate([data.labels] * repeats)[:n_samples].astype(np.float32)
    groups = np.concatenate([data.groups + k * n_groups for k in range(repeats)])[:n_samples]
    return inputs, labels, groups


def batch_timer(keras):
    """A callback recording when each training batch ends (a list in ``.ends``)."""
    ends = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter())
    )
    callback.ends = ends
    return callback


def training_rate(ends, n_samples):
    """Samples per second after the warm-up batches (graph tracing), to the epoch's end."""
    if len(ends) <= WARM_UP_BATCHES + 1:
        raise SystemExit(f"too few batches to time: use more than {WARM_UP_BATCHES + 1}")
    timed_samples = n_samples - WARM_UP_BATCHES * BATCH_SIZE
    return timed_samples / (ends[-1] - ends[WARM_UP_BATCHES - 1])


def row(label, value):
    print(f"  {label:<{LABEL_WIDTH}}{value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=8000)
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    print(
        f"Simulation: {args.frames} frames of {args.size}^2 (simulate, detect, label, cut, "
        f"preprocess); {cores} cores"
    )
    parallel, data = simulation_rate(args.frames, args.size, workers=cores)
    single, _ = simulation_rate(args.frames, args.size, workers=1)
    row(f"workers {cores} (all cores)", f"{parallel:8.2f} frames/s  ({len(data)} objects)")
    row("workers 1", f"{single:8.2f} frames/s")
    row("all cores / one process", f"{parallel / single:8.2f} x")

    keras = import_keras()
    inputs, labels, groups = repeat_to(data, args.samples)
    augmented_timer = batch_timer(keras)
    # Own callbacks replace the early stopping and LR schedule, which act only at epoch end.
    result = run_job(
        train_model(
            inputs,
            labels,
            groups=groups,
            epochs=1,
            batch_size=BATCH_SIZE,
            callbacks=[augmented_timer],
        )
    )
    train_index, validation_index = result.train_index, result.validation_index
    augmented = training_rate(augmented_timer.ends, len(train_index))

    plain_timer = batch_timer(keras)
    create_model().fit(
        inputs[train_index],
        labels[train_index],
        validation_data=(inputs[validation_index], labels[validation_index]),
        batch_size=BATCH_SIZE,
        epochs=1,
        shuffle=True,
        callbacks=[plain_timer],
        verbose=0,
    )
    plain = training_rate(plain_timer.ends, len(train_index))

    print(
        f"\nTraining: {len(labels)} samples ({len(train_index)} training, "
        f"{len(validation_index)} validation), batch {BATCH_SIZE}\n"
        f"one epoch, timed from batch {WARM_UP_BATCHES + 1} on (after graph tracing); "
        "validation not timed"
    )
    row("rbvet train_model (augmented)", f"{augmented:8,.0f} samples/s")
    row("keras fit (no augmentation)", f"{plain:8,.0f} samples/s")
    row("train_model / plain fit", f"{augmented / plain:8.2f} x")


if __name__ == "__main__":
    main()
