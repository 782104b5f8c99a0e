"""The uncertainty of a frame's scores, estimated in the background once it is shown.

`UncertaintyRunner` starts `rbvet.gui.jobs.estimate_uncertainty` in a `JobThread` after
each classification, hands the result to the session (`VettingSession.set_uncertainty`),
and stops a run whose frame is no longer shown. The user labels meanwhile; the sorts
"most uncertain (BALD)" and "label next" reorder when it arrives.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from rbvet.gui.jobs import estimate_uncertainty
from rbvet.gui.workers import JobThread


class UncertaintyRunner(QObject):
    """Runs the uncertainty job of the data shown; at most one at a time.

    Parameters
    ----------
    state : VettingState
    parent : QObject, optional

    Signals
    -------
    message(str)
        A short note for the status bar (started, done, failed).
    finished()
        The current run ended (done, failed or without a head to sample).
    """

    message = pyqtSignal(str)
    finished = pyqtSignal()

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.thread = None

    @property
    def running(self):
        return self.thread is not None and self.thread.isRunning()

    def start(self, data, model_path=None):
        """Estimate the uncertainty of ``data`` (stopping any run for other data)."""
        self.stop(timeout_ms=0)
        thread = JobThread(estimate_uncertainty(data, model_path), "uncertainty", self)

        def succeeded(result):
            if result is not None:
                self.state.session.set_uncertainty(data, *result)
                self.message.emit("Uncertainty ready: sorts 'label next' and 'most uncertain'")

        def current(slot):
            return lambda *args: slot(*args) if self.thread is thread else None

        thread.succeeded.connect(current(succeeded))
        thread.failed.connect(current(lambda text: self.message.emit(f"Uncertainty: {text}")))
        thread.finished.connect(current(self.finished.emit))
        self.thread = thread
        self.message.emit("Estimating uncertainty in the background")
        thread.start()

    def stop(self, timeout_ms=0):
        """Cancel the run (bounded wait, see `JobThread.stop`)."""
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.stop(timeout_ms)
