"""Simulated training sets: the same from a process pool as in one process, and the
pool's workers come with the simulator already imported."""

import sys

import numpy as np
import pytest

from rbvet.core.jobs import run_job
from rbvet.core.learn.train import _worker_context, simulated_training_set


def _already_imported(name):
    """In a worker: whether ``name`` was imported before this task came."""
    return name in sys.modules


def test_a_set_from_worker_processes_is_the_one_made_in_one_process():
    options = dict(n_frames=3, shape=(256, 256), seed=11)
    alone = run_job(simulated_training_set(workers=1, **options))
    pooled = run_job(simulated_training_set(workers=2, **options))
    assert len(alone) > 0 and len(np.unique(alone.groups)) == 3
    for name in ("inputs", "labels", "groups", "kinds", "fwhm"):
        np.testing.assert_array_equal(getattr(pooled, name), getattr(alone, name))


def test_simulating_workers_start_with_the_simulator_and_detector_imported():
    with _worker_context().Pool(1) as pool:
        for name in ("rbvet.core.simulate", "rbvet.core.detect.detection", "sep"):
            assert pool.apply(_already_imported, (name,)), name


def test_closing_the_set_while_its_pool_starts_leaves_no_worker_behind(monkeypatch):
    from rbvet.core.learn import train

    context, pools = train._worker_context(), []

    class RecordingContext:
        def Pool(self, processes):  # noqa: N802 - multiprocessing's name
            pools.append(context.Pool(processes))
            return pools[-1]

    monkeypatch.setattr(train, "_worker_context", RecordingContext)
    job = simulated_training_set(n_frames=6, shape=(128, 128), seed=3, workers=2)
    assert next(job).done == 0
    assert next(job).done == 1
    job.close()  # waits for the pool to have started, then stops it
    (pool,) = pools
    assert pool._pool and not any(worker.is_alive() for worker in pool._pool)


@pytest.mark.parametrize("first_pool", [True, False])
def test_a_set_made_while_its_pool_starts_has_every_frame_in_order(first_pool, monkeypatch):
    from rbvet.core.learn import train

    # The first pool of a process leaves the first frame to this process; later ones not.
    monkeypatch.setattr(train, "_pool_server_started", not first_pool)
    options = dict(n_frames=5, shape=(128, 128), seed=5)
    alone = run_job(simulated_training_set(workers=1, **options))
    pooled = run_job(simulated_training_set(workers=2, **options))
    assert list(np.unique(pooled.groups)) == list(range(5))
    assert np.all(np.diff(pooled.groups) >= 0)
    np.testing.assert_array_equal(pooled.labels, alone.labels)
    np.testing.assert_array_equal(pooled.inputs, alone.inputs)
