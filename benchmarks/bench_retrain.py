"""Label store and retraining speed: one label action in a 20k-object store; a 10k retrain.

Run: python benchmarks/bench_retrain.py [--store-objects 20000] [--objects 10000] [--epochs 8]

Part 1 fills a store with 20k objects (random 31x31 stamps; their content only changes
the store size) and times one label action (one object and 1000 objects), undo, redo and
reading the labels back, with ``synchronous=FULL`` (the default: one fsync per action)
and NORMAL.

Part 2 simulates 1024^2 frames, detects their objects, labels them from the simulator's
truth and stores them with their stamps until 10k objects are labeled; then times
``LabelStore.training_data`` and ``retrain`` (fine-tuning the shipped model for
``--epochs`` epochs; each epoch shows every training stamp under a random one of the 8
symmetries of the square, so 8 epochs = 8x augmentation). Issue target: the retrain of
10k labeled stamps, 8x augmented, in <= 3 min on 2 cores.
"""

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from rbvet.core.cutouts.preprocess import PreprocessParams, Rescale, plan_rescale
from rbvet.core.cutouts.stamps import Stamps, cut_stamps
from rbvet.core.errors import RbvetWarning
from rbvet.core.io.frame import frame_from_array
from rbvet.core.learn.labels import LabelStore


def median_ms(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def random_stamps(n, rng, size=31):
    data = rng.normal(100.0, 5.0, (n, size, size)).astype(np.float32)
    background = np.full((n, size, size), 100.0, np.float32) + rng.normal(0, 0.01, (n, 1, 1))
    return Stamps(
        data=data,
        background=background.astype(np.float32),
        noise=np.full(n, 5.0, np.float32),
        missing=np.zeros(n, np.float32),
        reason=np.full(n, ""),
        rescale=Rescale(),
    )


def bench_label_actions(directory, n_objects, repeats):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4096, 4096)).astype(np.float32)
    x = rng.uniform(0, 4096, n_objects)
    y = rng.uniform(0, 4096, n_objects)
    stamps = random_stamps(n_objects, rng)
    print(f"Label store with {n_objects} objects (31x31 stamps)")
    for synchronous in ("FULL", "NORMAL"):
        path = Path(directory) / f"labels-{synchronous}.sqlite"
        with LabelStore(path, synchronous=synchronous) as store:
            started = time.perf_counter()
            frame_id = store.add_frame(frame_from_array(image), 3.0, Rescale())
            ids = store.add_objects(frame_id, x, y, stamps)
            filled = time.perf_counter() - started
            for start in range(0, n_objects // 2, 100):  # some history: 100 actions
                store.set_labels(ids[start : start + 100], start % 2)
            one = iter(rng.permutation(ids))
            single = median_ms(lambda: store.set_labels([next(one)], 1), repeats)
            bulk = median_ms(lambda: store.set_labels(rng.choice(ids, 1000, False), 0), repeats)
            undo = median_ms(store.undo, repeats)
            redo = median_ms(store.redo, repeats)
            read = median_ms(lambda: store.labels(ids), 5)
            frame_read = median_ms(lambda: store.frame_labels(frame_id), 5)
            again = median_ms(lambda: store.add_objects(frame_id, x, y, stamps), 3)
        size_mb = path.stat().st_size / 1e6
        print(
            f"  synchronous={synchronous:6s} one label action {single:6.2f} ms | 1000-object "
            f"action {bulk:6.2f} ms | undo {undo:5.2f} ms | redo {redo:5.2f} ms"
        )
        print(
            f"  {'':20s} labels of all {n_objects} {read:6.1f} ms | frame_labels "
            f"{frame_read:6.1f} ms | reopen frame (add_objects again) {again:6.1f} ms"
        )
        print(
            f"  {'':20s} storing {n_objects} objects {filled:5.2f} s "
            f"({n_objects / filled:,.0f}/s), file {size_mb:.0f} MB"
        )


def fill_store_from_simulations(store, n_labeled, seed, log):
    """Simulated 1024^2 frames -> detections labeled from truth -> the store."""
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import estimate_fwhm
    from rbvet.core.simulate import label_detections, simulate_frame

    params = PreprocessParams()
    labeled, frames, started = 0, 0, time.perf_counter()
    while labeled < n_labeled:
        sim = simulate_frame(shape=(1024, 1024), rng=seed + frames)
        frame = frame_from_array(sim.image).ensure_background()
        table = detect_objects(frame, thresh=3.0)
        x, y = np.asarray(table["x"]), np.asarray(table["y"])
        truth, _ = label_detections(sim, x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RbvetWarning)
            fwhm = estimate_fwhm(frame, x, y, table=table)
        rescale = plan_rescale(fwhm, params)
        stamps = cut_stamps(frame, x, y, rescale)
        frame_id = store.add_frame(frame, fwhm, rescale)
        ids = store.add_objects(frame_id, x, y, stamps)
        usable = np.flatnonzero(stamps.scorable & (truth >= 0) & (ids >= 0))
        usable = usable[: n_labeled - labeled]
        for label in (1, 0):
            chosen = ids[usable[truth[usable] == label]]
            if len(chosen):
                store.set_labels(chosen, label)
        labeled += len(usable)
        frames += 1
    log(
        f"  {frames} simulated frames, {labeled} labeled objects stored "
        f"in {time.perf_counter() - started:.0f} s"
    )


def bench_retrain(directory, n_labeled, epochs, simulated_ratio, seed):
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.retrain import format_comparison, retrain
    from rbvet.core.learn.train import EpochEnded
    from rbvet.core.model import load_model

    print(f"Retraining on {n_labeled} labeled stamps")
    with LabelStore(Path(directory) / "retrain.sqlite", synchronous="NORMAL") as store:
        fill_store_from_simulations(store, n_labeled, seed, print)
        base = load_model(engine="keras")
        started = time.perf_counter()
        data = store.training_data(base.params, with_stamps=False)
        rebuild = time.perf_counter() - started
    print(f"  training_data: {len(data)} inputs rebuilt from stored stamps in {rebuild:.1f} s")
    epoch_times = []
    last = [time.perf_counter()]

    def progress(report):
        if not isinstance(report, EpochEnded):
            return
        now = time.perf_counter()
        epoch_times.append(now - last[0])
        last[0] = now
        print(
            f"  epoch {report.done}/{report.total}: {epoch_times[-1]:.1f} s, "
            f"val_loss {report.logs.get('val_loss', float('nan')):.4f}"
        )

    started = time.perf_counter()
    cpu_started = time.process_time()  # all threads of this process
    last[0] = started
    result = run_job(
        retrain(data, base_model=base, epochs=epochs, simulated_ratio=simulated_ratio, seed=seed),
        progress,
    )
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    trained = result.model.card["training"]["samples"]
    epochs_run = result.model.card["training"]["epochs_run"]
    rate = trained * epochs_run / sum(epoch_times)
    print(format_comparison(result.comparison))
    print(
        f"  retrain(): {total:.0f} s wall ({total / 60:.1f} min) for {trained} training stamps "
        f"x {epochs_run} epochs ({result.n_simulated} simulated), {len(result.held_out_index)} "
        f"held out; {rate:,.0f} stamps/s while fitting"
    )
    cores = os.cpu_count() or 1
    print(
        f"  CPU time of retrain(): {cpu:.0f} s, i.e. {cpu / total / cores:.0%} of {cores} cores "
        f"(other jobs share the machine): with all {cores} cores to itself ~{cpu / cores:.0f} s"
    )
    share = cpu / total / cores
    full = n_labeled * 8 / rate
    print(
        f"  all {n_labeled} stamps x 8 symmetries ({n_labeled * 8:,} samples) at that rate: "
        f"{full:.0f} s ({full / 60:.1f} min), ~{full * share:.0f} s with all cores; "
        "target <= 3 min"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-objects", type=int, default=20000)
    parser.add_argument("--objects", type=int, default=10000, help="labeled stamps to retrain on")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--simulated-ratio", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-retrain", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cores {os.cpu_count()}, load average {load:.1f} at start")
    with tempfile.TemporaryDirectory() as directory:
        bench_label_actions(directory, args.store_objects, args.repeats)
        if not args.skip_retrain:
            bench_retrain(directory, args.objects, args.epochs, args.simulated_ratio, args.seed)
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
