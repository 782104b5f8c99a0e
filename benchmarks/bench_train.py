"""Training-data and training throughput: simulated frames/s and training samples/s.

Run: python benchmarks/bench_train.py [--frames 8] [--size 1024] [--samples 8000]
[--seconds 40] [--repeats 1]

Simulation: `simulated_training_set` (simulate, detect with sep, label from truth, cut
stamps, preprocess) of the same frames with a process per core and with one process, and
the ratio; the pool's start-up is part of the parallel time, as it is for a user.

Training: one epoch of the seed CNN on the simulated objects (repeated to ``--samples``,
which does not matter for a rate), each measurement in a subprocess of its own, so that a
Keras backend, a thread setting or a dtype policy, which hold for a whole process, apply
to that measurement only. First `train_model` (a random symmetry of the square per
sample, balanced class weights) under each Keras 3 backend (``KERAS_BACKEND`` tensorflow,
jax, torch; one not installed in this Python is printed as such), with the ratio to
TensorFlow; then variants under TensorFlow, with the ratio to `train_model`: XLA
(``jit_compile``), batch sizes, thread settings, mixed bfloat16, a tf.data pipeline with
the symmetries applied in the graph per batch, plain ``keras.Model.fit`` without
augmentation, and channels-first. A rate is timed from the end of the warm-up batches
(graph tracing) to the last batch timed, at most ``--seconds`` (training stops there),
so validation is not in it; "per CPU-s" divides by the process's CPU time over the same
batches, which says how much of the cores a variant used (rate / CPU rate). With
``--repeats R`` the measurements take turns R times and the best of each is shown.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from rbvet.core.jobs import run_job
from rbvet.core.learn.train import simulated_training_set

BATCH_SIZE = 128
WARM_UP_BATCHES = 5
LABEL_WIDTH = 44
RESULT_TAG = "RESULT "

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
"""Keras backend -> the module that must be importable for it."""

BASELINE = "train_model"
VARIANTS = {
    # name: (how it trains, options)
    BASELINE: ("train_model", {}),
    "train_model, XLA (jit_compile)": ("train_model", {"jit_compile": True}),
    "train_model, batch 64": ("train_model", {"batch_size": 64}),
    "train_model, batch 256": ("train_model", {"batch_size": 256}),
    "train_model, threads intra 1 inter 2": ("train_model", {"threads": (1, 2)}),
    "train_model, threads intra 2 inter 1": ("train_model", {"threads": (2, 1)}),
    "train_model, mixed_bfloat16": ("train_model", {"policy": "mixed_bfloat16"}),
    "tf.data + prefetch, symmetry per batch": ("tf.data", {}),
    "keras fit (no augmentation)": ("fit", {}),
    "keras fit, channels_first": ("fit", {"channels_first": True}),
}
"""The TensorFlow variants measured; `BASELINE` also runs under each backend."""


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


def batch_timer(keras, batch_size, max_seconds):
    """A callback that records wall and CPU time at each batch end and stops training
    ``max_seconds`` after the warm-up batches."""

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.cpu = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())
            if len(self.ends) > WARM_UP_BATCHES:
                if self.ends[-1] - self.ends[WARM_UP_BATCHES - 1] > max_seconds:
                    self.model.stop_training = True

        def rates(self, n_samples):
            """(samples/s, samples per CPU-s, samples timed) after the warm-up batches."""
            if len(self.ends) <= WARM_UP_BATCHES + 1:
                raise SystemExit(f"too few batches to time: use more than {WARM_UP_BATCHES + 1}")
            timed = min(n_samples, len(self.ends) * batch_size) - WARM_UP_BATCHES * batch_size
            first = WARM_UP_BATCHES - 1
            return (
                timed / (self.ends[-1] - self.ends[first]),
                timed / (self.cpu[-1] - self.cpu[first]),
                timed,
            )

    return BatchTimer()


def tf_data_batches(inputs, labels, weights, batch_size, seed):
    """Shuffled batches with prefetch, each batch under one random symmetry, in the graph."""
    import tensorflow as tf

    def symmetry(x, y, w):
        k = tf.random.uniform((), 0, 4, dtype=tf.int32, seed=seed)
        x = tf.image.rot90(x, k)
        x = tf.cond(tf.random.uniform((), seed=seed) < 0.5, lambda: x[:, :, ::-1], lambda: x)
        return x, y, w

    return (
        tf.data.Dataset.from_tensor_slices((inputs, labels, weights))
        .shuffle(len(labels), seed=seed)
        .batch(batch_size)
        .map(symmetry, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def measure(variant, data_path, max_seconds):
    """Train one epoch (at most ``max_seconds`` timed) as ``variant`` says; the rates."""
    from rbvet.core.learn.train import balanced_class_weights, split_by_group, train_model
    from rbvet.core.model import compile_model, create_model, import_keras

    how, options = VARIANTS[variant]
    if "threads" in options:
        import tensorflow as tf

        intra, inter = options["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    keras = import_keras()
    if "policy" in options:
        keras.mixed_precision.set_global_policy(options["policy"])
    data = np.load(data_path)
    inputs, labels, groups = data["inputs"], data["labels"], data["groups"]
    batch_size = options.get("batch_size", BATCH_SIZE)
    timer = batch_timer(keras, batch_size, max_seconds)
    if how == "train_model":
        model = create_model(input_shape=inputs.shape[1:])
        if options.get("jit_compile"):
            compile_model(model, jit_compile=True)
        result = run_job(
            train_model(
                inputs,
                labels,
                groups=groups,
                model=model,
                epochs=1,
                batch_size=batch_size,
                callbacks=[timer],  # in place of early stopping and the LR schedule
            )
        )
        n_train = len(result.train_index)
    else:
        train_index, _ = split_by_group(groups, (0.15,), np.random.default_rng(0))
        x, y = inputs[train_index], labels[train_index]
        n_train = len(y)
        if how == "tf.data":
            weights = np.vectorize(balanced_class_weights(y).get)(y).astype(np.float32)
            create_model().fit(
                tf_data_batches(x, y, weights, batch_size, seed=0),
                epochs=1,
                callbacks=[timer],
                verbose=0,
            )
        else:
            if options.get("channels_first"):
                keras.config.set_image_data_format("channels_first")
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            model = create_model(input_shape=x.shape[1:])
            model.fit(x, y, batch_size=batch_size, epochs=1, callbacks=[timer], verbose=0)
    rate, cpu_rate, timed = timer.rates(n_train)
    return {"rate": rate, "cpu_rate": cpu_rate, "samples": timed}


def run_measurement(variant, backend, data_path, max_seconds):
    """`measure` in a subprocess under ``backend``: its result, or {'error': text}."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [sys.executable, __file__, "--measure", variant]
    command += ["--data", str(data_path), "--seconds", str(max_seconds)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=os.getcwd())
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"failed: {last[:120]}"}


def best(results):
    """The fastest of repeated measurements (an error if every one failed)."""
    good = [result for result in results if "error" not in result]
    return max(good, key=lambda result: result["rate"]) if good else results[-1]


def row(label, value):
    print(f"  {label:<{LABEL_WIDTH}}{value}")


def rate_row(label, result, reference=None, reference_name=""):
    if "error" in result:
        row(label, result["error"])
        return
    text = f"{result['rate']:7,.0f} samples/s  {result['cpu_rate']:7,.0f} per CPU-s"
    if reference is not None and "error" not in reference:
        text += f"  {result['rate'] / reference['rate']:5.2f} x {reference_name}"
    row(label, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=40.0, help="most time per rate")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # in a subprocess
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = measure(args.measure, args.data, args.seconds)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return
    cores = os.cpu_count() or 1

    print(
        f"Simulation: {args.frames} frames of {args.size}^2 (simulate, detect, label, cut, "
        f"preprocess); {cores} cores; load average {os.getloadavg()[0]:.1f}"
    )
    parallel, data = simulation_rate(args.frames, args.size, workers=cores)
    single, _ = simulation_rate(args.frames, args.size, workers=1)
    row(f"workers {cores} (all cores)", f"{parallel:8.2f} frames/s  ({len(data)} objects)")
    row("workers 1", f"{single:8.2f} frames/s")
    row("all cores / one process", f"{parallel / single:8.2f} x")

    inputs, labels, groups = repeat_to(data, args.samples)
    installed = {b: importlib.util.find_spec(m) is not None for b, m in BACKENDS.items()}
    tasks = [(BASELINE, backend) for backend in BACKENDS if installed[backend]]
    tasks += [(variant, "tensorflow") for variant in VARIANTS if variant != BASELINE]
    results = {task: [] for task in tasks}
    with tempfile.TemporaryDirectory(prefix="rbvet-bench-train-") as folder:
        data_path = Path(folder) / "training.npz"
        np.savez(data_path, inputs=inputs, labels=labels, groups=groups)
        for _ in range(args.repeats):  # taking turns, so a change of load hits all alike
            for task in tasks:
                results[task].append(run_measurement(*task, data_path, args.seconds))
                print(f"  measured {task[0]} under {task[1]}", flush=True)
    results = {task: best(values) for task, values in results.items()}

    print(
        f"\nTraining: {len(labels)} samples (about 85 % of them training), batch "
        f"{BATCH_SIZE}, one epoch or at most {args.seconds:.0f} s timed from batch "
        f"{WARM_UP_BATCHES + 1} on; best of {args.repeats}; load average "
        f"{os.getloadavg()[0]:.1f}\n\ntrain_model under each Keras backend:"
    )
    reference = results.get((BASELINE, "tensorflow"))
    for backend in BACKENDS:
        if not installed[backend]:
            row(backend, "not installed")
        else:
            rate_row(backend, results[(BASELINE, backend)], reference, "tensorflow")
    print("\nTensorFlow variants:")
    for variant in VARIANTS:
        rate_row(variant, results[(variant, "tensorflow")], reference, BASELINE)


if __name__ == "__main__":
    main()
