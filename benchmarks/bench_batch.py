"""Many-frame throughput: frames/s of `classify_frames` with 1 and 2 Dask workers, and the ratio.

Run: python benchmarks/bench_batch.py [--frames 8] [--size 1024] [--workers 1 2]

The same frames (simulated, ~1.7k catalogued objects each) are classified on a fresh
local cluster (`start_local_cluster`, as `classify_frames` starts it) for each worker
count. Each cluster's start-up (processes, TensorFlow, the model loaded once per worker,
a first frame on each) is timed apart from the frames: the rate is the steady one a long
night sees, the start-up what every run pays once. Also timed: the workers with a thread
per core each (oversubscribed) instead of one per core they may use, and the frames one
after another in this process without Dask (engine defaults). Other work on the machine
slows everything; the load average is printed before and after.

To time a real cluster instead, start one (see the README: dask-jobqueue, Kubernetes)
and give its scheduler: ``--scheduler tcp://host:8786`` (the frames must then be on a
file system the workers share: ``--workdir``).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from astropy.io import fits

from rbvet.core.batch import (
    catalog_for,
    classify_frames,
    classify_one_frame,
    close_local_cluster,
    limit_inference_threads,
    start_local_cluster,
)
from rbvet.core.detect.detection import detect_objects
from rbvet.core.io.catalog import write_catalog
from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import run_job
from rbvet.core.model.cache import cached_model
from rbvet.core.simulate import simulate_frame

PATTERN = "{dir}/{stem}.ecsv"
DENSE = {"n_stars": 3000, "n_galaxies": 900, "n_cosmic_rays": 500, "n_hot_pixels": 300}


def make_frames(folder, n_frames, size):
    """Simulated frames and their detected catalogs; returns the frame paths and objects."""
    frames, objects = [], 0
    for seed in range(n_frames):
        sim = simulate_frame(shape=(size, size), fwhm=2.0 + 0.3 * seed, rng=seed, **DENSE)
        path = Path(folder) / f"frame_{seed:02d}.fits"
        fits.PrimaryHDU(sim.image.astype(np.float32)).writeto(path, overwrite=True)
        table = detect_objects(frame_from_array(sim.image).ensure_background())
        write_catalog(table, path.with_suffix(".ecsv"))
        frames.append(str(path))
        objects += len(table)
    return frames, objects


def warm_worker(threads, frame, folder):
    """On a worker: set its inference threads, load the model and classify one frame.

    The frame pays the imports and first calls (FITS and catalog I/O, sep) a worker pays
    once, so the timed frames see a worker in its steady state.
    """
    limit_inference_threads(threads)
    output = Path(folder) / f"warm_{os.getpid()}.rb.ecsv"
    return run_job(classify_one_frame(frame, catalog_for(frame, PATTERN), output)).engine


def time_cluster(frames, outdir, workers, threads, scheduler=None):
    """(start-up s, frames/s) on a new local cluster, or on the given scheduler."""
    from distributed import Client

    started = time.perf_counter()
    cluster = None
    if scheduler is None:
        cluster = start_local_cluster(workers)
        scheduler = cluster.scheduler_address
    with Client(scheduler, set_as_default=False) as client:
        client.run(warm_worker, threads, frames[0], outdir.parent)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        summary = run_job(
            classify_frames(
                frames,
                outdir,
                catalog_pattern=PATTERN,
                scheduler=client,
                overwrite=True,
                inference_threads=threads,
            )
        )
        rate = len(frames) / (time.perf_counter() - started)
    if cluster is not None:
        close_local_cluster(cluster)
    failed = int(np.sum(summary["status"] == "failed"))
    if failed:
        print(f"  ({failed} frames failed: {summary['error'][summary['status'] == 'failed'][0]})")
    return startup, rate


def time_in_process(frames, outdir):
    """(model load s, frames/s) classifying the frames one after another in this process."""
    started = time.perf_counter()
    cached_model()
    warm = outdir.parent / "warm.ecsv"
    run_job(classify_one_frame(frames[0], catalog_for(frames[0], PATTERN), warm))
    startup = time.perf_counter() - started
    started = time.perf_counter()
    run_job(classify_frames(frames, outdir, catalog_pattern=PATTERN, n_workers=1, overwrite=True))
    return startup, len(frames) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scheduler", help="time an existing cluster instead of local ones")
    parser.add_argument("--workdir", help="folder for the frames [a temporary one]")
    parser.add_argument("--no-extra", action="store_true", help="only the worker counts")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    print(f"{cores} cores; load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        started = time.perf_counter()
        frames, objects = make_frames(folder, args.frames, args.size)
        made = time.perf_counter() - started
        print(
            f"{args.frames} frames of {args.size}x{args.size}, {objects} objects "
            f"({objects / args.frames:.0f} per frame), made in {made:.0f} s"
        )
        print(f"{'':40s} {'start-up s':>10s} {'frames/s':>9s} {'objects/s':>9s}")
        per_frame = objects / args.frames

        def row(label, startup, rate):
            print(f"{label:40s} {startup:10.1f} {rate:9.2f} {rate * per_frame:9.0f}")

        rates = {}
        if args.scheduler:
            startup, rate = time_cluster(frames, Path(folder) / "out", 0, 1, args.scheduler)
            row(f"cluster {args.scheduler}", startup, rate)
            return
        for workers in args.workers:
            threads = max(1, cores // workers)
            out = Path(folder) / f"out{workers}"
            startup, rates[workers] = time_cluster(frames, out, workers, threads)
            label = f"{workers} worker{'s' if workers > 1 else ''}, {threads} inference thread(s)"
            row(label, startup, rates[workers])
        if not args.no_extra and cores > 1:
            workers = min(cores, max(args.workers))
            startup, rate = time_cluster(frames, Path(folder) / "over", workers, cores)
            row(f"{workers} workers, {cores} inference threads each", startup, rate)
            startup, rate = time_in_process(frames, Path(folder) / "inproc")
            row("this process, no Dask (engine defaults)", startup, rate)
        low, high = min(rates), max(rates)
        if high != low:
            print(
                f"scaling {high} vs {low} worker(s): {rates[high] / rates[low]:.2f}x "
                f"(ideal {high / low:.0f}x)"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f} (above {cores}: the machine was busy)")


if __name__ == "__main__":
    main()
