"""Long work off the GUI thread: a job is a plain function run in a `QThread`.

A job is called as ``job(report, should_stop)``; it calls ``report(done, total, message)``
as it goes and returns early (raising `Cancelled`) once ``should_stop()`` is true. The
thread turns the outcome into exactly one of the signals ``succeeded(result)``,
``failed(message)`` or ``cancelled()``, always delivered on the GUI thread.

A window that closes calls `JobThread.stop`: the job is cancelled and waited for a
bounded time; one still inside a step it cannot interrupt (a C library mapping a large
frame's background) is left to end on its own, detached from the window and silent.
"""

from __future__ import annotations

import sys
import threading
import traceback
from concurrent.futures import CancelledError

from PyQt6.QtCore import QThread, pyqtSignal

from rbvet.core.errors import RbvetError, error_message

STOP_TIMEOUT_MS = 3000
"""How long `JobThread.stop` waits for a cancelled job before detaching it."""

Cancelled = CancelledError
"""Raised inside a job when the user asked it to stop. It is the standard library's
`concurrent.futures.CancelledError`, which the core functions that take a
``should_stop`` raise too (the core never imports Qt)."""

_detached = set()
"""Cancelled jobs still running after `JobThread.stop`, referenced until they end."""


class JobThread(QThread):
    """Runs one job function in a thread; see the module docstring."""

    progressed = pyqtSignal(int, int, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()

    def __init__(self, job, name="", parent=None):
        super().__init__(parent)
        self.job = job
        self.name = name
        self._stop = threading.Event()

    def cancel(self):
        """Ask the job to stop at its next check."""
        self._stop.set()

    def should_stop(self):
        return self._stop.is_set()

    def stop(self, timeout_ms=STOP_TIMEOUT_MS):
        """Cancel the job and wait up to ``timeout_ms`` for its thread to end.

        A job still running then is detached: its signals are disconnected (it will
        report to no one), it leaves its parent (so closing or deleting that cannot
        destroy a running thread) and it is kept referenced until it ends.

        Returns
        -------
        bool
            True when the thread has ended.
        """
        self.cancel()
        if self.wait(max(0, int(timeout_ms))):
            return True
        signals = (self.progressed, self.succeeded, self.failed, self.cancelled, self.finished)
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
        self.wait()  # ``finished`` comes from the thread just before it really ends
        _detached.discard(self)

    def _report(self, done, total, message=""):
        if self._stop.is_set():
            raise Cancelled()
        self.progressed.emit(int(done), int(total), str(message))

    def run(self):
        try:
            result = self.job(self._report, self.should_stop)
        except Cancelled:
            self.cancelled.emit()
        except Exception as error:  # every failure must reach the user, not kill the app
            if not isinstance(error, RbvetError):
                traceback.print_exc(file=sys.stderr)
            self.failed.emit(error_message(error))
        else:
            if self._stop.is_set():
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)
