"""Retrain the model from the label store, or adapt it to the shown frame; watch it learn,
then keep it or not.

`RetrainDialog` is a non-modal window (the user can go on vetting while the network
trains). Its steps:

1. choose fine-tuning of the current model, training from scratch, or adapting the
   current model to the shown frame (fakes injected into it, plus the labels, plus
   simulated replay: `rbvet.core.learn.adapt.adapt`, what ``rbvet adapt`` runs), the
   share of simulated objects mixed in, whether the store's weak labels join the
   training part of a retraining or an adaptation (and their weight) and the number of
   epochs, then Train;
2. training runs in a `JobThread` as `rbvet.core.learn.retrain.retrain_from_store`, the
   sequence ``rbvet train --labels`` runs too (or as `adapt`): it opens its own
   `LabelStore` connection (SQLite connections belong to one thread), reads the labeled
   objects preprocessed for the current model and retrains; its messages go to the log;
   after each epoch the loss and AUC curves (training and validation) grow; Cancel
   stops at the end of the current batch (or injection step) and changes nothing, and
   so does closing or hiding the dialog (a job that cannot stop within the bounded wait
   is left to end on its own: it logs through its `JobThread`, never through the
   dialog, which may be deleted by then, and its result is dropped);
3. old and new model side by side on the held-out labeled objects (never trained on):
   AUC, and FNR / FPR at the window's threshold; adapting shows the held-out injection
   rounds too, at the model's threshold;
4. Accept saves the new model as the next ``name.vN.keras`` (`save_versioned`; its card
   names its parent and its data) and emits ``modelAccepted(path)``, on which the
   window scores the frame with it; Reject closes and nothing changes.

`accept_model`, `reject_model` and `start_training` are the buttons' actions, public so
tests (and scripts) can drive the dialog without a modal loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from rbvet.core.errors import RbvetError
from rbvet.core.learn.adapt import DEFAULT_EPOCHS as ADAPT_EPOCHS
from rbvet.core.learn.adapt import DEFAULT_SIMULATED_RATIO as ADAPT_SIMULATED_RATIO
from rbvet.core.session import model_save_target
from rbvet.gui.model_comparison import WORSE_COLOR, ComparisonTable
from rbvet.gui.stretch import BOGUS_COLOR, REAL_COLOR, hex_color
from rbvet.gui.workers import JobThread

DEFAULT_EPOCHS = 5
DEFAULT_SIMULATED_RATIO = 1.0
MIN_LABELED = 4
"""Labeled objects needed to retrain from labels, or to add them when adapting."""
TRAIN_COLOR = REAL_COLOR
VALIDATION_COLOR = BOGUS_COLOR
ERROR_COLOR = "#ff9a9a"


class RetrainDialog(QDialog):
    """Retrain from labels or adapt to the frame, with live curves and old versus new.

    Parameters
    ----------
    store_path : str or Path
        The label store whose labels (all frames) train the model.
    model_path : str or Path, optional
        The current model (fine-tuned, and compared with); the shipped default when None.
    threshold : float
        The window's threshold: FNR and FPR of the comparison are taken there.
    models_dir : str or Path, optional
        See `model_save_target`.
    frames : sequence of (str, str or None), optional
        The shown frame and its catalog (None: objects detected), which adapting injects
        into; without one the adapt choice is disabled.
    frame_options : rbvet.core.classify.FrameOptions, optional
        How the shown frame was read (adapting reads it the same way).
    parent : QWidget, optional

    Attributes
    ----------
    retrain_result : RetrainResult or AdaptResult or None
        The last finished training (`rbvet.core.learn.retrain.RetrainResult`, or
        `rbvet.core.learn.adapt.AdaptResult` when adapting; None before, or after a
        failure or cancel).
    decision : {'accepted', 'rejected'} or None
    saved_path : Path or None
        The new model's file once accepted.
    job : JobThread or None
    fine_tune_radio, scratch_radio, adapt_radio : QRadioButton
    simulated_spin : QDoubleSpinBox
        Simulated objects mixed in per labeled training object (default 1.0), or per
        training sample when adapting (default 0.5).
    weak_check : QCheckBox
        Also train on the store's weak labels (off by default; enabled when it has some).
    weak_weight_spin : QDoubleSpinBox
        Their weight in the loss, a label of the user's counting 1 (default 0.3).
    epochs_spin : QSpinBox
    injections_spin, rounds_spin : QSpinBox
        Adapting: objects injected into the frame over all rounds, and the rounds (the
        last one is held out); shown in the adapt mode only.
    train_button, cancel_button, accept_button, reject_button : QPushButton
    loss_plot, auc_plot : pyqtgraph.PlotWidget
    progress_bar : QProgressBar
    comparison_box : ComparisonTable
        Held-out labeled objects; hidden until a training finishes;
        ``comparison_labels[(metric, which)]`` are its cells (metric 'auc', 'fnr', 'fpr';
        which 'old', 'new', 'change').
    injection_comparison_box : ComparisonTable
        Held-out injection rounds, shown after adapting.
    class_size_warning : str or None
        Shown with the store's counts before training when a class is too small to hold
        some out (`rbvet.core.learn.retrain.class_size_problem`).
    accept_note : QLabel
        Beside Accept, what the comparison could not measure (hidden when nothing).

    Signals
    -------
    trainingFinished(bool)
        Training ended: True when a new model waits for Accept or Reject.
    modelAccepted(str)
        The path the accepted model was saved to.
    """

    trainingFinished = pyqtSignal(bool)
    modelAccepted = pyqtSignal(str)

    def __init__(
        self,
        store_path,
        model_path=None,
        threshold=0.5,
        models_dir=None,
        frames=None,
        frame_options=None,
        parent=None,
    ):
        super().__init__(parent)
        from rbvet.core.inject.inject import InjectionSettings

        self.store_path = Path(store_path)
        self.model_path = None if model_path is None else str(model_path)
        self.threshold = float(threshold)
        self.models_dir = models_dir
        self.frames = [(str(f), None if c is None else str(c)) for f, c in frames or ()]
        self.frame_options = frame_options
        self._labeled = 0
        self.retrain_result = None
        self.decision = None
        self.saved_path = None
        self.job = None
        self.class_size_warning = None
        self._history = {key: [] for key in ("loss", "val_loss", "auc", "val_auc")}
        self._epochs = DEFAULT_EPOCHS
        self.setWindowTitle("Retrain from labels — rbvet")
        self.setModal(False)
        self.resize(820, 720)

        self.store_label = QLabel()
        self.store_label.setWordWrap(True)
        self.store_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        model_name = Path(self.model_path).name if self.model_path else "the shipped default"
        self.fine_tune_radio = QRadioButton(f"Fine-tune the current model ({model_name})")
        self.scratch_radio = QRadioButton("Train a new model from scratch")
        frame_name = Path(self.frames[0][0]).name if self.frames else "no frame shown"
        self.adapt_radio = QRadioButton(
            f"Adapt the current model to this frame ({frame_name}): "
            "injections + my labels + replay"
        )
        self.adapt_radio.setToolTip(
            "Fakes (stars, galaxies, artifacts) are injected into the frame in rounds and\n"
            "the model is fine-tuned on them, on your labels and on simulated objects;\n"
            "the last round and a quarter of the labels are held out to compare"
        )
        self.adapt_radio.setEnabled(bool(self.frames))
        self.fine_tune_radio.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.fine_tune_radio)
        modes.addButton(self.scratch_radio)
        modes.addButton(self.adapt_radio)
        self.simulated_spin = QDoubleSpinBox()
        self.simulated_spin.setRange(0.0, 20.0)
        self.simulated_spin.setSingleStep(0.25)
        self.simulated_spin.setDecimals(2)
        self.simulated_spin.setValue(DEFAULT_SIMULATED_RATIO)
        self.simulated_spin.setSuffix(" × labeled")
        self.simulated_spin.setToolTip(
            "Simulated objects mixed into the training part, per labeled object,\n"
            "so the model does not forget what it knew (0: labels only)"
        )
        from rbvet.core.learn.retrain import DEFAULT_WEAK_WEIGHT

        self.weak_check = QCheckBox("Use weak labels, weight")
        self.weak_check.setToolTip(
            "Also train on the store's weak labels (repeated exposures, reference catalog)\n"
            "of objects you have not labeled, down-weighted; never held out for the comparison"
        )
        self.weak_weight_spin = QDoubleSpinBox()
        self.weak_weight_spin.setRange(0.05, 1.0)
        self.weak_weight_spin.setSingleStep(0.05)
        self.weak_weight_spin.setDecimals(2)
        self.weak_weight_spin.setValue(DEFAULT_WEAK_WEIGHT)
        self.weak_weight_spin.setToolTip("Weight of a weak label in the loss; yours count 1")
        self.weak_weight_spin.setEnabled(False)
        self.weak_check.toggled.connect(self.weak_weight_spin.setEnabled)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(DEFAULT_EPOCHS)
        self.epochs_spin.setToolTip("Training passes; early stopping may end sooner")
        injection_defaults = InjectionSettings()
        self.injections_spin = QSpinBox()
        self.injections_spin.setRange(20, 100_000)
        self.injections_spin.setSingleStep(100)
        self.injections_spin.setValue(injection_defaults.injections)
        self.injections_spin.setToolTip("Objects injected into the frame over all rounds")
        self.rounds_spin = QSpinBox()
        self.rounds_spin.setRange(2, 20)
        self.rounds_spin.setValue(injection_defaults.rounds)
        self.rounds_spin.setToolTip(
            "Injection rounds (fresh positions each); the last one is held out to compare"
        )
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.train_button.clicked.connect(self.start_training)

        for spin in (self.simulated_spin, self.epochs_spin, self.injections_spin):
            spin.setMinimumWidth(140)
        self.rounds_spin.setMinimumWidth(140)
        settings = QGroupBox("Training")
        form = QFormLayout(settings)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        modes_column = QVBoxLayout()
        modes_column.addWidget(self.fine_tune_radio)
        modes_column.addWidget(self.scratch_radio)
        modes_column.addWidget(self.adapt_radio)
        form.addRow("Start from", modes_column)
        form.addRow("Simulated objects", self.simulated_spin)
        weak_row = QHBoxLayout()
        weak_row.addWidget(self.weak_check)
        weak_row.addWidget(self.weak_weight_spin)
        form.addRow("Weak labels", weak_row)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Injected objects", self.injections_spin)
        form.addRow("Injection rounds", self.rounds_spin)
        self._form = form
        train_row = QHBoxLayout()
        train_row.addStretch(1)
        train_row.addWidget(self.train_button)
        form.addRow(train_row)
        self._settings_box = settings

        self.loss_plot = self._curve_plot("loss (binary cross-entropy)")
        self.auc_plot = self._curve_plot("AUC")
        self.curves = {}
        for plot, key in ((self.loss_plot, "loss"), (self.auc_plot, "auc")):
            legend = plot.addLegend(offset=(-8, 8), labelTextSize="8pt")
            legend.setBrush(pg.mkBrush(0, 0, 0, 120))
            self.curves[key] = plot.plot(
                pen=pg.mkPen(TRAIN_COLOR, width=2),
                symbol="o",
                symbolSize=5,
                symbolBrush=TRAIN_COLOR,
                symbolPen=None,
                name="training",
            )
            self.curves["val_" + key] = plot.plot(
                pen=pg.mkPen(VALIDATION_COLOR, width=2, style=Qt.PenStyle.DashLine),
                symbol="s",
                symbolSize=5,
                symbolBrush=VALIDATION_COLOR,
                symbolPen=None,
                name="validation",
            )
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.auc_plot)

        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("not started")
        self.progress_bar.setValue(0)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_training)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(200)
        self.log_view.setFixedHeight(self.fontMetrics().lineSpacing() * 4 + 12)
        self.log_view.setPlaceholderText("Messages of the training run")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.hide()

        self.comparison_box = ComparisonTable("Held-out labeled objects: current versus new model")
        self.comparison_labels = self.comparison_box.cells
        self.comparison_headers = self.comparison_box.headers
        self.comparison_note = self.comparison_box.note
        self.injection_comparison_box = ComparisonTable(
            "Held-out injection rounds: current versus new model"
        )
        self.comparison_box.hide()
        self.injection_comparison_box.hide()

        self.accept_note = QLabel()
        self.accept_note.setWordWrap(True)
        self.accept_note.setStyleSheet(f"color: {WORSE_COLOR};")
        self.accept_note.hide()
        self.reject_button = QPushButton("Reject (keep the current model)")
        self.reject_button.clicked.connect(self.reject_model)
        self.accept_button = QPushButton("Accept and use the new model")
        self.accept_button.clicked.connect(self.accept_model)
        self.accept_button.setEnabled(False)
        close_button = QPushButton("Close")
        close_button.clicked.connect(self.close)
        self.close_button = close_button
        buttons = QHBoxLayout()
        buttons.addWidget(close_button)
        buttons.addStretch(1)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.accept_button)
        self.reject_button.hide()
        self.accept_button.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(self.store_label)
        layout.addWidget(settings)
        layout.addLayout(plots, 1)
        layout.addLayout(progress_row)
        layout.addWidget(self.log_view)
        layout.addWidget(self.error_label)
        layout.addWidget(self.injection_comparison_box)
        layout.addWidget(self.comparison_box)
        layout.addWidget(self.accept_note)
        layout.addLayout(buttons)

        self.epochs_spin.valueChanged.connect(self._on_epochs_chosen)
        self.adapt_radio.toggled.connect(self._on_mode_chosen)
        self._show_adapt_settings(False)
        self._draw_curves()
        self.refresh_store_summary()

    # ------------------------------------------------------------------ public API

    @property
    def is_training(self):
        return self.job is not None and self.job.isRunning()

    @property
    def epochs_done(self):
        """Epochs the current (or last) training run has finished."""
        return len(self._history["loss"])

    def refresh_store_summary(self):
        """Show what the store holds; Train is enabled when there is something to learn."""
        from rbvet.core.learn.labels import LabelStore

        if not self.store_path.exists():
            self.store_label.setText(
                f"<b>Labels</b>: {self.store_path}<br>no labels yet — label objects with R / B"
            )
            self._labeled = 0
            self._update_train_button()
            return None
        try:
            with LabelStore(self.store_path, create=False) as store:
                summary = store.summary()
        except RbvetError as error:
            self.store_label.setText(f"<b>Labels</b>: {error}")
            self._labeled = 0
            self._update_train_button()
            return None
        from rbvet.core.learn.retrain import class_size_problem

        labeled = summary["real"] + summary["bogus"]
        weak = {
            source: counts["real"] + counts["bogus"]
            for source, counts in summary.get("weak", {}).items()
            if counts["real"] + counts["bogus"]
        }
        weak_text = (
            "; weak labels: " + ", ".join(f"{count} {source}" for source, count in weak.items())
            if weak
            else ""
        )
        self.weak_check.setEnabled(bool(weak))
        if not weak:
            self.weak_check.setChecked(False)
        problem = class_size_problem(summary["real"], summary["bogus"]) if labeled else None
        warning = f"<br><span style='color:{WORSE_COLOR}'>Before training: {problem}.</span>"
        self.store_label.setText(
            f"<b>Labels</b>: {self.store_path}<br>{labeled} labeled objects "
            f"(<span style='color:{hex_color(REAL_COLOR)}'>{summary['real']} real</span>, "
            f"<span style='color:{hex_color(BOGUS_COLOR)}'>{summary['bogus']} bogus</span>) "
            f"on {summary['frames']} frame{'s' if summary['frames'] != 1 else ''}"
            f"{weak_text}; a quarter is held out (never trained on) for the comparison."
            + (warning if problem else "")
        )
        self.class_size_warning = problem
        self._labeled = labeled
        self._update_train_button()
        return summary

    @property
    def adapting(self):
        """The adapt choice is made (injections into the shown frame)."""
        return self.adapt_radio.isChecked()

    def training_options(self):
        """The settings both jobs take (the weak-label weight None when not used)."""
        return {
            "simulated_ratio": float(self.simulated_spin.value()),
            "epochs": int(self.epochs_spin.value()),
            "weak_weight": (
                float(self.weak_weight_spin.value()) if self.weak_check.isChecked() else None
            ),
        }

    def start_training(self):
        """Train with the chosen settings in a background thread."""
        if self.is_training:
            return
        options = self.training_options()
        # The job logs through its thread, which outlives this dialog if the job must be
        # left running (`JobThread.log`); the thread gets its job once that is made.
        thread = JobThread(None, name="adapt" if self.adapting else "retrain", parent=self)
        if self.adapting:
            thread.job = self._adapt_job(options, thread.log)
        else:
            thread.job = self._retrain_job(options, thread.log)
        if thread.job is None:
            thread.setParent(None)  # never started: it goes with its last reference
            return
        self.retrain_result = None
        self.decision = None
        self.saved_path = None
        self._epochs = options["epochs"]
        for values in self._history.values():
            values.clear()
        self._draw_curves()
        self.log_view.clear()
        self.error_label.hide()
        self.comparison_box.hide()
        self.injection_comparison_box.hide()
        self.accept_note.hide()
        self.accept_button.hide()
        self.reject_button.hide()
        self.job = thread
        self.job.logged.connect(self._log)
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_trained)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self._set_training(True)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("preparing")
        self.job.start()

    def _retrain_job(self, options, log):
        """`retrain_from_store` on the store's labels, as a job; ``log`` (called in the
        job's thread) takes its messages."""
        store_path, model_path, threshold = self.store_path, self.model_path, self.threshold
        from_scratch = self.scratch_radio.isChecked()

        def job():
            from rbvet.core.learn.retrain import retrain_from_store

            return (
                yield from retrain_from_store(
                    store_path,
                    model_path,
                    threshold=threshold,
                    from_scratch=from_scratch,
                    log=log,
                    **options,
                )
            )

        return job()

    def _adapt_job(self, options, log):
        """`adapt` to the shown frame (with the store's labels when there are enough), as a
        job (``log`` takes its messages); None when the injection settings are refused
        (said in the error line)."""
        from rbvet.core.inject.inject import InjectionSettings

        try:
            settings = InjectionSettings(
                injections=int(self.injections_spin.value()),
                rounds=int(self.rounds_spin.value()),
            )
        except ValueError as error:
            self._show_error(str(error))
            return None
        frames, model_path = list(self.frames), self.model_path
        weak = options["weak_weight"] is not None
        enough = self._labeled >= MIN_LABELED
        store_path = self.store_path if enough or weak else None
        frame_options = self.frame_options

        def job():
            from rbvet.core.learn.adapt import adapt

            if store_path is None:
                log("Too few labels to add: adapting on injections and replay only")
            elif not enough:
                log("Too few labels to hold some out: with the weak labels only")
            return (
                yield from adapt(
                    frames,
                    base_model=model_path,
                    store_path=store_path,
                    settings=settings,
                    options=frame_options,
                    log=log,
                    use_labels=enough,
                    **options,
                )
            )

        return job()

    def cancel_training(self, wait=False):
        """Stop training at the end of the current batch (nothing is kept).

        With ``wait``, wait for the job to end, for a bounded time (`JobThread.stop`); a
        job still running then (inside a step it cannot leave) is detached: it reports to
        no one, and the dialog shows it cancelled at once.
        """
        if self.is_training:
            self.job.cancel()
            self.progress_bar.setFormat("cancelling")
            if wait and not self.job.stop():
                self._on_cancelled()
                self.job = None  # detached: it ends on its own, with no result kept

    def accept_model(self):
        """Save the new model (`save_versioned`, see `model_save_target`) and announce it.

        Returns
        -------
        Path or None
            The file written; None when there is no new model or saving failed.
        """
        from rbvet.core.learn.retrain import save_versioned

        if self.retrain_result is None:
            return None
        target = model_save_target(self.model_path, self.models_dir)
        try:
            path = save_versioned(self.retrain_result.model, target)
        except (RbvetError, OSError) as error:
            self._show_error(f"Could not save the new model: {error}")
            return None
        self.saved_path = path
        self.decision = "accepted"
        self.modelAccepted.emit(str(path))
        self.accept()
        return path

    def reject_model(self):
        """Close without keeping the new model; nothing changes."""
        self.cancel_training(wait=True)
        self.decision = "rejected"
        self.reject()

    def done(self, result):
        self.cancel_training(wait=True)
        super().done(result)

    def closeEvent(self, event):
        self.cancel_training(wait=True)
        super().closeEvent(event)

    def hideEvent(self, event):
        """Hidden by the program (not minimised): no one sees Cancel or Accept any more,
        so the training stops (`done` and `closeEvent` also wait for it, bounded)."""
        if not event.spontaneous():
            self.cancel_training()
        super().hideEvent(event)

    # ------------------------------------------------------------------ job slots

    def _on_epochs_chosen(self, epochs):
        if not self.is_training and not self._history["loss"]:
            self._epochs = int(epochs)
            self._draw_curves()

    def _on_progress(self, progress):
        from rbvet.core.learn.train import EpochEnded

        if isinstance(progress, EpochEnded):
            self._on_epoch(progress.done - 1, progress.total, progress.logs)
        elif progress.total <= 0 and progress.message:  # a step
            self._log(progress.message)
            if not self._history["loss"]:
                self.progress_bar.setFormat(progress.message)
        elif not self._history["loss"]:  # counted: injection rounds, simulating, batches
            self.progress_bar.setRange(0, progress.total)
            self.progress_bar.setValue(min(progress.done, progress.total))
            self.progress_bar.setFormat(f"{progress.message} · %p%")

    def _on_epoch(self, epoch, epochs, logs):
        for key, values in self._history.items():
            values.append(logs.get(key, np.nan))
        self._draw_curves()
        self.progress_bar.setRange(0, epochs)
        self.progress_bar.setValue(epoch + 1)
        from rbvet.core.learn.retrain import format_number

        figure = {key: format_number(logs.get(key, np.nan)) for key in self._history}
        self.progress_bar.setFormat(f"epoch %v of %m · loss {figure['loss']}")
        self._log(
            f"epoch {epoch + 1}/{epochs}: loss {figure['loss']} (validation "
            f"{figure['val_loss']}), AUC {figure['auc']} (validation {figure['val_auc']})"
        )

    def _on_trained(self, result):
        self._set_training(False)
        self.retrain_result = result
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        epochs_run = len(self._history["loss"])
        self.progress_bar.setFormat(f"done: {epochs_run} epochs in {result.seconds:.0f} s")
        self._show_comparisons(result)
        self.accept_button.show()
        self.reject_button.show()
        self.accept_button.setEnabled(True)
        self.accept_button.setDefault(True)
        self.trainingFinished.emit(True)

    def _on_failed(self, message):
        self._set_training(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("failed")
        self._show_error(message)
        self.trainingFinished.emit(False)

    def _on_cancelled(self):
        self._set_training(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        what = "adapting" if self.job is not None and self.job.name == "adapt" else "training"
        self.progress_bar.setFormat(f"{what} cancelled — no new model")
        model = Path(self.model_path).name if self.model_path else "the shipped model"
        self._log(f"{what.capitalize()} cancelled: no new model was made; {model} stays in use.")
        self.trainingFinished.emit(False)

    # ------------------------------------------------------------------ drawing

    def _set_training(self, training):
        self._settings_box.setEnabled(not training)
        self.cancel_button.setEnabled(training)
        self._update_train_button()

    def _update_train_button(self):
        """Train needs labels to retrain from, or a shown frame to adapt to."""
        ready = bool(self.frames) if self.adapting else self._labeled >= MIN_LABELED
        self.train_button.setEnabled(ready and not self.is_training)
        self.train_button.setText("Adapt" if self.adapting else "Train")
        self.cancel_button.setText("Cancel adapting" if self.adapting else "Cancel training")
        self.setWindowTitle(
            ("Adapt the model to this frame" if self.adapting else "Retrain from labels")
            + " — rbvet"
        )

    def _on_mode_chosen(self, adapting):
        """Adapting and retraining have their own defaults (`rbvet adapt`'s, the dialog's)."""
        self.epochs_spin.setValue(ADAPT_EPOCHS if adapting else DEFAULT_EPOCHS)
        self.simulated_spin.setValue(
            ADAPT_SIMULATED_RATIO if adapting else DEFAULT_SIMULATED_RATIO
        )
        self._show_adapt_settings(adapting)
        self._update_train_button()

    def _show_adapt_settings(self, adapting):
        self.simulated_spin.setSuffix(" × training" if adapting else " × labeled")
        self.simulated_spin.setToolTip(
            "Simulated objects mixed into the training part, per "
            + ("training sample (injected or labeled)" if adapting else "labeled object")
            + ",\nso the model does not forget what it knew (0: none)"
        )
        for spin in (self.injections_spin, self.rounds_spin):
            self._form.setRowVisible(spin, adapting)

    def _log(self, message):
        self.log_view.appendPlainText(message)

    def _show_error(self, message):
        self.error_label.setText(message)
        self.error_label.show()

    def _draw_curves(self):
        """Curves over all the epochs asked for (whole-epoch ticks); loss from 0, AUC up
        to 1 with at least a 0.02 span (so a flat AUC of 1 is not drawn as noise); an
        undefined figure (NaN) leaves a gap."""
        epochs = np.arange(1, len(self._history["loss"]) + 1)
        for key, curve in self.curves.items():
            values = np.asarray(self._history[key], np.float64)
            if np.isfinite(values).any():  # an undefined epoch is a gap in the line, not 0
                curve.setData(epochs, values, connect="finite")
            else:
                curve.setData([], [])
        last = max(self._epochs, len(epochs), 1)
        step = max(1, int(np.ceil(last / 10)))
        ticks = [[(float(i), str(i)) for i in range(1, last + 1, step)], []]
        for plot in (self.loss_plot, self.auc_plot):
            plot.setXRange(0.5, last + 0.5, padding=0)
            plot.getAxis("bottom").setTicks(ticks)
        losses = np.concatenate([self._history["loss"], self._history["val_loss"]])
        losses = losses[np.isfinite(losses)]
        self.loss_plot.setYRange(0.0, 1.1 * losses.max() if len(losses) else 1.0, padding=0)
        validation_aucs = np.asarray(self._history["val_auc"], np.float64)
        unmeasured = len(validation_aucs) and not np.isfinite(validation_aucs).any()
        self.auc_plot.setTitle(
            "AUC (validation: n/a, one class only)" if unmeasured else "AUC", size="9pt"
        )
        aucs = np.concatenate([self._history["auc"], validation_aucs])
        aucs = aucs[np.isfinite(aucs)]
        lowest = min(aucs.min(), 0.98) if len(aucs) else 0.5
        self.auc_plot.setYRange(max(0.0, lowest - 0.01), 1.0 + 0.002, padding=0)

    def _show_comparisons(self, result):
        """Old against new on each held-out set; Accept notes what could not be measured."""
        from rbvet.core.learn.retrain import held_out_gaps

        if hasattr(result, "comparisons"):  # adapted: injection rounds, and labels
            comparisons = result.comparisons
            self.injection_comparison_box.show_comparison(
                comparisons["injections"], "injected objects of the held-out rounds"
            )
            if "labels" in comparisons:
                self.comparison_box.show_comparison(comparisons["labels"], "labeled objects")
            else:
                self.comparison_box.show_nothing(
                    f"No labeled objects held out: fewer than {MIN_LABELED} labels, so the "
                    "new model was trained and measured on injections only."
                )
        else:
            comparisons = {"labels": result.comparison}
            self.comparison_box.show_comparison(result.comparison, "labeled objects")
        gaps = [held_out_gaps(c["old"]["real"], c["old"]["bogus"]) for c in comparisons.values()]
        gaps = [gap for gap in gaps if gap]
        note = f"Accepting means trusting the new model unmeasured: {'; '.join(gaps)}."
        note = note if gaps else ""
        self.accept_note.setText(note)
        self.accept_note.setVisible(bool(gaps))
        self.accept_button.setToolTip(note)

    @staticmethod
    def _curve_plot(title):
        plot = pg.PlotWidget()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setTitle(title, size="9pt")
        plot.setLabel("bottom", "epoch")
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setMinimumHeight(180)
        return plot
