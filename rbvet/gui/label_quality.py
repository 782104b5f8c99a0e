"""How far the labels can be trusted, in the window: calibration, agreement, label review.

`LabelQualityLabel` is one line under the threshold panel's plots: the expected calibration
error of the frame's scores against its labels (before and after temperature scaling
fitted on them) and, when two annotators labeled the same objects, their Cohen's kappa.
Its tooltip holds the reliability bins. It is recomputed shortly after labels change, not
on the key press.

`LabelReviewer` runs the label review (`rbvet.core.learn.review.review_store`) as a
background job when the user sorts by "likely label errors" (or asks from the Label
menu) and hands the result to the session, whose sort then follows it.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import QLabel, QSizePolicy

from rbvet.core.errors import RbvetError
from rbvet.core.session import BOGUS, REAL, SORT_SUSPICIOUS

QUALITY_DELAY_MS = 150
"""Wait after the last label change before the calibration line is recomputed."""


class LabelQualityLabel(QLabel):
    """ECE before/after temperature scaling and annotator agreement for the shown frame.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    """

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(True)
        self.calibration = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(QUALITY_DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        state.dataChanged.connect(self.refresh)
        state.labelsChanged.connect(self._timer.start)
        self.refresh()

    def refresh(self):
        """Recompute the line from the current frame's scores, labels and agreement."""
        from rbvet.core.learn.calibration import calibrate, reliability

        data = self.state.data
        parts, tips = [], []
        self.calibration = None
        if data is not None:
            usable = np.isfinite(data.scores) & ((data.labels == REAL) | (data.labels == BOGUS))
            scores, labels = data.scores[usable], data.labels[usable]
            try:
                self.calibration = calibrate(scores, labels)
            except RbvetError:
                pass  # both classes not labeled yet: the rates line above says so
            else:
                result = self.calibration
                parts.append(
                    f"calibration: ECE {result.ece_before:.3f} → {result.ece_after:.3f} "
                    f"(T {result.temperature:.2g}, {result.objects} labels)"
                )
                bins = reliability(scores, labels)
                tips.append(
                    "Expected calibration error of the scores against your labels, before "
                    "→ after temperature scaling (T fitted on them; 'after' cross-fitted).\n"
                    "Reliability (score bin: mean score / real share, objects):"
                )
                for low, high, mean, share, count in zip(
                    bins.edges[:-1],
                    bins.edges[1:],
                    bins.mean_probability,
                    bins.real_fraction,
                    bins.counts,
                    strict=True,
                ):
                    if count:
                        tips.append(f"  {low:.1f}–{high:.1f}: {mean:.2f} / {share:.2f} ({count})")
            agreement = self.state.session.agreement
            if agreement is not None and agreement.summary():
                parts.append(agreement.summary())
                tips.append(
                    "Cohen's kappa of the two annotators who labeled most objects in common "
                    "(1 full agreement, 0 chance); filter 'annotators disagree' shows the rest"
                )
        self.setText(" · ".join(parts))
        self.setToolTip("\n".join(tips))


class LabelReviewer(QObject):
    """Runs the label review in the background and gives its ranking to the session.

    Starts by itself when the sort becomes "likely label errors" and no review of the
    current store has run; `start` runs it again (after new labels).

    Signals
    -------
    message(str)
        What the sort ranks by now, or why the review could not run.
    """

    message = pyqtSignal(str)

    def __init__(self, state, model_path=lambda: None, sort_combo=None, parent=None):
        super().__init__(parent)
        self.state = state
        self.model_path = model_path
        self.sort_combo = sort_combo
        self.job = None
        self._reviewed_store = None
        self.message.connect(self._show_in_tooltip)
        state.session.order_settings_changed.connect(self._on_sort_changed)
        state.session.store_changed.connect(self._on_store_changed)

    @property
    def running(self):
        return self.job is not None

    def _on_sort_changed(self):
        session = self.state.session
        if session.sort_key != SORT_SUSPICIOUS:
            return
        if session.review is None or self._reviewed_store != session.store_path:
            self.start()
        else:
            self.message.emit(session.suspicious_source())

    def _show_in_tooltip(self, text):
        """The sort's tooltip says what "likely label errors" ranks by now."""
        combo = self.sort_combo
        index = -1 if combo is None else combo.findData(SORT_SUSPICIOUS)
        if index >= 0:
            combo.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)

    def _on_store_changed(self):
        if (
            self._reviewed_store is not None
            and self._reviewed_store != self.state.session.store_path
        ):
            self.state.session.set_review(None)
            self._reviewed_store = None

    def start(self):
        """Review every label of the session's store (a `JobThread`); False if one runs."""
        from rbvet.core.learn.review import review_store
        from rbvet.core.model.cache import cached_model
        from rbvet.gui.workers import JobThread

        if self.job is not None:
            return False
        session = self.state.session
        store_path, model_path = session.store_path, self.model_path()

        def job():
            model = cached_model(model_path)
            return (yield from review_store(store_path, model))

        self.message.emit(
            "Reviewing the labels in the background; until then likely label errors are "
            "sorted by |label − score|"
        )
        self.job = JobThread(job(), name="review", parent=self)
        self.job.succeeded.connect(lambda review: self._done(review, store_path))
        self.job.failed.connect(self._failed)
        self.job.finished.connect(self._ended)
        self.job.start()
        return True

    def _done(self, review, store_path):
        self._reviewed_store = store_path
        self.state.session.set_review(review)
        self.message.emit(self.state.session.suspicious_source())

    def _failed(self, text):
        self.message.emit(f"Label review not possible ({text}): sorting by |label − score|")

    def _ended(self):
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()

    def stop(self, timeout_ms=0):
        """Cancel a running review (the window closes)."""
        if self.job is not None:
            self.job.stop(timeout_ms)
            self.job = None
