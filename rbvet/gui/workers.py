"""Long work off the GUI thread: a job generator run in a `QThread`.

A job is a generator (see `rbvet.core.jobs`): it yields `Progress` as it goes and returns
its result. The thread forwards each `Progress` as ``progressed(progress)`` and turns the
outcome into exactly one of the signals ``succeeded(result)``, ``failed(message)`` or
``cancelled()``, always delivered on the GUI thread.

The thread drives the job with `rbvet.core.jobs.run_job`. Cancelling sets a flag that
the thread checks each time the job yields; it then has `run_job` close the job
(`GeneratorExit` at that ``yield``, so the job releases what it holds) and emits
``cancelled``. A job cancelled after its last yield is reported cancelled too: its result
is dropped.

`JobThread.stop` cancels and waits a bounded time; a job still inside a step it cannot
interrupt (a C library mapping a large frame's background) is left to end on its own,
detached from the window and silent. Nothing here waits without a bound.

A job that reports text as it goes (a ``log`` callable) is given `JobThread.log`, never a
widget's own signal: the window or dialog may be closed and deleted while a detached job
still runs, and a signal of a deleted object emitted from the thread crashes the process;
the thread object lives until its job ends.
"""

from __future__ import annotations

import sys
import threading
import traceback

from PyQt6.QtCore import QThread, pyqtSignal

from rbvet.core.errors import RbvetError, error_message
from rbvet.core.jobs import run_job

STOP_TIMEOUT_MS = 3000
"""How long `JobThread.stop` waits for a cancelled job before detaching it."""

_detached = set()
"""Cancelled jobs still running after `JobThread.stop`, referenced until they end."""


class JobThread(QThread):
    """Runs one job generator in a thread; see the module docstring.

    Parameters
    ----------
    job : generator
        Yields `rbvet.core.jobs.Progress`, returns the result. Its body runs in the
        thread only (a generator does nothing until it is first advanced).
    name : str
    parent : QObject, optional
    """

    progressed = pyqtSignal(object)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()
    logged = pyqtSignal(str)

    def __init__(self, job, name="", parent=None):
        super().__init__(parent)
        self.job = job
        self.name = name
        self._cancel = threading.Event()

    def cancel(self):
        """Ask the job to stop at its next ``yield``."""
        self._cancel.set()

    def log(self, message):
        """Pass a message of the job on as ``logged(message)`` (called in the job's
        thread; see the module docstring). Once the job is detached it reaches no one."""
        self.logged.emit(str(message))

    @property
    def is_cancelled(self):
        """True once `cancel` (or `stop`) was called."""
        return self._cancel.is_set()

    def stop(self, timeout_ms=STOP_TIMEOUT_MS):
        """Cancel the job and wait up to ``timeout_ms`` for its thread to end.

        A job still running then is detached: its signals are disconnected (it will
        report to no one), it leaves its parent (so closing or deleting that cannot
        destroy a running thread) and it is kept referenced until it ends. With
        ``timeout_ms=0`` nothing is waited for: the job is cancelled and, if running,
        detached at once.

        Returns
        -------
        bool
            True when the thread has ended.
        """
        self.cancel()
        if self.wait(max(0, int(timeout_ms))):
            return True
        signals = (
            self.progressed,
            self.succeeded,
            self.failed,
            self.cancelled,
            self.logged,
            self.finished,
        )
        for signal in signals:
            try:
                signal.disconnect()
            except TypeError:  # nothing was connected
                pass
        self.setParent(None)
        _detached.add(self)
        self.finished.connect(self._forget)
        if self.isFinished():  # it ended while being detached, before the connection
            self._forget()
        return False

    def _forget(self):
        # ``finished`` comes from the thread just before it really ends: a short wait.
        self.wait(STOP_TIMEOUT_MS)
        _detached.discard(self)

    def run(self):
        job, self.job = self.job, None  # the thread owns the job; it goes when the run ends
        try:
            if self._cancel.is_set():
                raise _Cancelled  # cancelled before it started: its body never runs
            result = run_job(job, self._forward)
        except _Cancelled:
            job.close()  # run_job has closed a started job (GeneratorExit at its yield)
            self.cancelled.emit()
            return
        except Exception as error:  # every failure must reach the user, not kill the app
            if not isinstance(error, RbvetError):
                traceback.print_exc(file=sys.stderr)
            self.failed.emit(error_message(error))
            return
        if self._cancel.is_set():
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)

    def _forward(self, progress):
        """`run_job`'s report: stop the job if cancelled, else pass its `Progress` on."""
        if self._cancel.is_set():
            raise _Cancelled
        self.progressed.emit(progress)


class _Cancelled(Exception):
    """Raised in `JobThread`'s report to make `run_job` close a cancelled job."""
