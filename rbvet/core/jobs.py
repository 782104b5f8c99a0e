"""The one job protocol: long core steps are generators that yield `Progress`.

A long step (read and detect a frame, score its objects, simulate a training set, train,
retrain, classify many frames) is written as a generator function. It yields a
`Progress` now and then and *returns* its result, so a caller that wants the result and
nothing else writes ``result = run_job(step(...))``, a step made of steps writes
``result = yield from step(...)``, and a GUI worker forwards each `Progress` to a signal.

Cancelling is closing: ``job.close()`` raises `GeneratorExit` at the ``yield`` where
the job waits, its ``finally`` blocks and context managers release what it holds (a
child process, a process pool, a training thread), and the caller receives nothing.
There is no other meaning of "stop": no exception to catch, no partial result.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

__all__ = ["Progress", "cpu_count", "run_job"]


@dataclass(frozen=True)
class Progress:
    """How far a job is.

    Attributes
    ----------
    done, total : int
        Units of work done and to do (objects, frames, batches); ``total`` 0 when the
        step cannot count (reading a file).
    message : str
        What the job is doing, for a status line.
    """

    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self):
        """``done / total`` in [0, 1], or None when the total is unknown."""
        if self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))


def run_job(job, report=None):
    """Run a job generator to its end and return its result.

    Parameters
    ----------
    job : generator
        Yields `Progress` and returns the result.
    report : callable, optional
        Called with each `Progress` (a command line's progress bar).

    Returns
    -------
    object
        What the generator returned.

    Notes
    -----
    If anything interrupts the run (an exception from ``report``, Ctrl-C), the job is
    closed before the exception passes on, so it releases what it holds.
    """
    try:
        while True:
            try:
                progress = next(job)
            except StopIteration as finished:
                return finished.value
            if report is not None:
                report(progress)
    finally:
        job.close()  # nothing to do for a job that has returned


def cpu_count():
    """Cores this process may use: its CPU affinity, within a cgroup's CPU quota.

    `os.cpu_count` counts the machine's cores, more than a process pinned by
    ``taskset`` or confined by a container may use, and sizing pools from it
    oversubscribes the cores the process has.
    """
    return _cpu_count()


@functools.cache
def _cpu_count():
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cgroup_cpu_quota(path="/sys/fs/cgroup/cpu.max"):
    """CPUs a cgroup (v2) quota allows (``cpu.max``: quota and period), or None."""
    try:
        with open(path) as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None
