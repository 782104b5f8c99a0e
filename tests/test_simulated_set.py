"""Simulated training sets: the same from a process pool as in one process, and the
pool's workers come with the simulator already imported."""

import sys

import numpy as np

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
