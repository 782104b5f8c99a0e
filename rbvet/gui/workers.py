"""Long work off the GUI thread: a job is a plain function run in a `QThread`.

A job is called as ``job(report, should_stop)``; it calls ``report(done, total, message)``
as it goes and returns early (raising `Cancelled`) once ``should_stop()`` is true. The
thread turns the outcome into exactly one of the signals ``succeeded(result)``,
``failed(message)`` or ``cancelled()``, always delivered on the GUI thread.
"""

from __future__ import annotations

import sys
import threading
import traceback

from PyQt6.QtCore import QThread, pyqtSignal

from ..core.errors import RbvetError


class Cancelled(Exception):
    """Raised inside a job when the user asked it to stop."""


def error_message(error):
    """One line for the user: rbvet's own message, or the kind of an unexpected error."""
    if isinstance(error, RbvetError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else 'unexpected error'}"


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
