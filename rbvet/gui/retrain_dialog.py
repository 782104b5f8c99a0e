"""Retrain the model from the label store, watch it learn, then keep it or not.

`RetrainDialog` is a non-modal window (the user can go on vetting while the network
trains). Its steps:

1. choose fine-tuning of the current model or training from scratch, the share of
   simulated objects mixed in, whether the store's weak labels join the training part
   (and their weight) and the number of epochs, then Train;
2. training runs in a `JobThread` as `rbvet.core.learn.retrain.retrain_from_store`, the
   sequence ``rbvet train --labels`` runs too: it opens its own `LabelStore` connection
   (SQLite connections belong to one thread), reads the labeled objects preprocessed for
   the current model and retrains; its messages go to the log; after each epoch the
   loss and AUC curves (training and validation) grow; Cancel stops at the end of the
   current batch and changes nothing;
3. old and new model side by side on the held-out labeled objects (never trained on):
   AUC, and FNR / FPR at the window's threshold;
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
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
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
from rbvet.core.session import model_save_target
from rbvet.gui.stretch import BOGUS_COLOR, REAL_COLOR, hex_color
from rbvet.gui.workers import JobThread

DEFAULT_EPOCHS = 5
DEFAULT_SIMULATED_RATIO = 1.0
TRAIN_COLOR = REAL_COLOR
VALIDATION_COLOR = BOGUS_COLOR
BETTER_COLOR = "#8fd18f"
WORSE_COLOR = "#f0a070"
ERROR_COLOR = "#ff9a9a"


class RetrainDialog(QDialog):
    """Retrain from labels, with live curves and an old-versus-new comparison.

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
    parent : QWidget, optional

    Attributes
    ----------
    retrain_result : rbvet.core.learn.retrain.RetrainResult or None
        The last finished training (None before, or after a failure or cancel).
    decision : {'accepted', 'rejected'} or None
    saved_path : Path or None
        The new model's file once accepted.
    job : JobThread or None
    fine_tune_radio, scratch_radio : QRadioButton
    simulated_spin : QDoubleSpinBox
        Simulated objects mixed in per labeled training object (default 1.0).
    weak_check : QCheckBox
        Also train on the store's weak labels (off by default; enabled when it has some).
    weak_weight_spin : QDoubleSpinBox
        Their weight in the loss, a label of the user's counting 1 (default 0.3).
    epochs_spin : QSpinBox
    train_button, cancel_button, accept_button, reject_button : QPushButton
    loss_plot, auc_plot : pyqtgraph.PlotWidget
    progress_bar : QProgressBar
    comparison_box : QGroupBox
        Hidden until a training finishes; ``comparison_labels[(metric, which)]`` are its
        cells (metric 'auc', 'fnr', 'fpr'; which 'old', 'new', 'change').
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
    _logged = pyqtSignal(str)  # emitted from the training thread

    METRICS = (
        ("auc", "AUC", False, True),
        ("fnr", "FNR (real lost)", True, False),
        ("fpr", "FPR (bogus kept)", True, False),
    )
    """(key, label, shown as percent, higher is better)."""

    def __init__(self, store_path, model_path=None, threshold=0.5, models_dir=None, parent=None):
        super().__init__(parent)
        self.store_path = Path(store_path)
        self.model_path = None if model_path is None else str(model_path)
        self.threshold = float(threshold)
        self.models_dir = models_dir
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
        self.fine_tune_radio.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.fine_tune_radio)
        modes.addButton(self.scratch_radio)
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
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.train_button.clicked.connect(self.start_training)

        for spin in (self.simulated_spin, self.epochs_spin):
            spin.setMinimumWidth(140)
        settings = QGroupBox("Training")
        form = QFormLayout(settings)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        modes_column = QVBoxLayout()
        modes_column.addWidget(self.fine_tune_radio)
        modes_column.addWidget(self.scratch_radio)
        form.addRow("Start from", modes_column)
        form.addRow("Simulated objects", self.simulated_spin)
        weak_row = QHBoxLayout()
        weak_row.addWidget(self.weak_check)
        weak_row.addWidget(self.weak_weight_spin)
        form.addRow("Weak labels", weak_row)
        form.addRow("Epochs", self.epochs_spin)
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

        self.comparison_box = QGroupBox("Held-out labeled objects: current versus new model")
        self.comparison_note = QLabel()
        self.comparison_note.setWordWrap(True)
        grid = QGridLayout()
        grid.setHorizontalSpacing(24)
        self.comparison_headers = {
            "old": QLabel("current"),
            "new": QLabel("new"),
            "change": QLabel("change"),
        }
        bold = QFont(self.font())
        bold.setBold(True)
        for column, which in enumerate(("old", "new", "change"), start=1):
            header = self.comparison_headers[which]
            header.setFont(bold)
            header.setAlignment(Qt.AlignmentFlag.AlignRight)
            grid.addWidget(header, 0, column)
        self.comparison_labels = {}
        for row, (key, title, _, _) in enumerate(self.METRICS, start=1):
            grid.addWidget(QLabel(title), row, 0)
            for column, which in enumerate(("old", "new", "change"), start=1):
                cell = QLabel()
                cell.setAlignment(Qt.AlignmentFlag.AlignRight)
                cell.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                self.comparison_labels[(key, which)] = cell
                grid.addWidget(cell, row, column)
        grid.setColumnStretch(4, 1)
        comparison = QVBoxLayout(self.comparison_box)
        comparison.addWidget(self.comparison_note)
        comparison.addLayout(grid)
        self.comparison_box.hide()

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
        layout.addWidget(self.comparison_box)
        layout.addWidget(self.accept_note)
        layout.addLayout(buttons)

        self._logged.connect(self._log)
        self.epochs_spin.valueChanged.connect(self._on_epochs_chosen)
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
            self.train_button.setEnabled(False)
            return None
        try:
            with LabelStore(self.store_path, create=False) as store:
                summary = store.summary()
        except RbvetError as error:
            self.store_label.setText(f"<b>Labels</b>: {error}")
            self.train_button.setEnabled(False)
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
        self.train_button.setEnabled(labeled >= 4 and not self.is_training)
        return summary

    def training_options(self):
        """The chosen settings, as keyword arguments of `retrain_from_store`."""
        return {
            "from_scratch": self.scratch_radio.isChecked(),
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
        store_path = self.store_path
        model_path = self.model_path
        threshold = self.threshold
        options = self.training_options()
        logged = self._logged

        def job():
            from rbvet.core.learn.retrain import retrain_from_store

            return (
                yield from retrain_from_store(
                    store_path, model_path, threshold=threshold, log=logged.emit, **options
                )
            )

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
        self.accept_note.hide()
        self.accept_button.hide()
        self.reject_button.hide()
        self.job = JobThread(job(), name="retrain", parent=self)
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_trained)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self._set_training(True)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("preparing")
        self.job.start()

    def cancel_training(self, wait=False):
        """Stop training at the end of the current batch (nothing is kept).

        With ``wait``, wait for the job to end, for a bounded time (`JobThread.stop`).
        """
        if self.is_training:
            self.job.cancel()
            self.progress_bar.setFormat("cancelling")
            if wait:
                self.job.stop()

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

    # ------------------------------------------------------------------ job slots

    def _on_epochs_chosen(self, epochs):
        if not self.is_training and not self._history["loss"]:
            self._epochs = int(epochs)
            self._draw_curves()

    def _on_progress(self, progress):
        from rbvet.core.learn.train import EpochEnded

        if isinstance(progress, EpochEnded):
            self._on_epoch(progress.done - 1, progress.total, progress.logs)
        elif progress.total <= 0 and progress.message:  # a step; counted ones are batches
            self._log(progress.message)
            if not self._history["loss"]:
                self.progress_bar.setFormat(progress.message)

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
        self._show_comparison(result.comparison)
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
        self.progress_bar.setFormat("training cancelled — no new model")
        model = Path(self.model_path).name if self.model_path else "the shipped model"
        self._log(f"Training cancelled: no new model was made; {model} stays in use.")
        self.trainingFinished.emit(False)

    # ------------------------------------------------------------------ drawing

    def _set_training(self, training):
        self._settings_box.setEnabled(not training)
        self.train_button.setEnabled(not training)
        self.cancel_button.setEnabled(training)

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

    def _show_comparison(self, comparison):
        from rbvet.core.learn.retrain import format_number, held_out_gaps

        old, new = comparison["old"], comparison["new"]
        gaps = held_out_gaps(old["real"], old["bogus"])
        note = f"Accepting means trusting the new model unmeasured: {gaps}." if gaps else ""
        self.accept_note.setText(note)
        self.accept_note.setVisible(bool(gaps))
        self.accept_button.setToolTip(note)
        self.comparison_note.setText(
            f"{old['objects']} labeled objects ({old['real']} real, {old['bogus']} bogus) "
            f"the new model never saw; FNR and FPR at the threshold {old['threshold']:.3f}."
        )
        self.comparison_headers["old"].setText(f"current ({old['name']})")
        self.comparison_headers["new"].setText("new")
        for key, _, percent, higher_better in self.METRICS:
            before, after = old[key], new[key]
            self.comparison_labels[(key, "old")].setText(format_number(before, percent))
            self.comparison_labels[(key, "new")].setText(format_number(after, percent))
            change = self.comparison_labels[(key, "change")]
            if np.isfinite(before) and np.isfinite(after):
                delta = after - before
                text = f"{100 * delta:+.1f} pts" if percent else f"{delta:+.4f}"
                better = delta > 0 if higher_better else delta < 0
                colour = BETTER_COLOR if better else WORSE_COLOR if delta else None
                change.setText(text)
                change.setStyleSheet(f"color: {colour};" if colour else "")
            else:
                change.setText("")
                change.setStyleSheet("")
        self.comparison_box.show()

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
