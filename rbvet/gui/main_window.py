"""The vetting window: the cutout grid in the middle, frame, detail, threshold and frame
settings docks.

Loading and classification run in a `JobThread`; the window keeps what it showed until
a new frame is ready, so a bad file never costs the user their current frame. Opening
another frame while one loads cancels the old job without waiting for it: it ends (or
is detached) in the background and its late results are never shown.

Labels go through a `LabelController` into the label store the status bar names (File ›
Label store… picks another); Labels › Make weak labels from the frames runs the
weak-labels step on the project's frames (`rbvet.gui.weak_labels`); Model › Retrain from
labels… opens a `RetrainDialog`, and a model accepted there scores the frame again. Every
failure is a one-line banner.
"""

from __future__ import annotations

import os
from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.classify import FrameOptions
from rbvet.core.errors import RbvetError
from rbvet.core.session import count_text
from rbvet.gui.assessment import add_injected_detail, show_kept_assessment, start_assessment
from rbvet.gui.detail import DetailPanel
from rbvet.gui.epochs import BLINK_KEY, STOP_KEY, EpochStrip
from rbvet.gui.feature_map import FeatureMap
from rbvet.gui.frame_settings import FrameSettingsPanel, fallback_summary, fallbacks
from rbvet.gui.frame_view import DEFER_DRAW_MS, DEFER_DRAW_OBJECTS, FrameView
from rbvet.gui.frames_dock import RETRY_KEY, FramesDock
from rbvet.gui.grid import GridPanel
from rbvet.gui.jobs import classify_frame
from rbvet.gui.label_quality import LabelReviewer
from rbvet.gui.labeling import LabelController
from rbvet.gui.model_memory import ModelMemory
from rbvet.gui.notices import UndoBanner, threshold_note
from rbvet.gui.project import ProjectController
from rbvet.gui.retrain_dialog import RetrainDialog
from rbvet.gui.samp import SampBridge
from rbvet.gui.state import BOGUS, REAL, UNLABELED, VettingState
from rbvet.gui.threshold import ThresholdPanel
from rbvet.gui.uncertainty import UncertaintyRunner
from rbvet.gui.weak_labels import start_weak_labels
from rbvet.gui.workers import STOP_TIMEOUT_MS, JobThread

FRAME_FILTER = "FITS images (*.fits *.fit *.fts *.fits.fz *.fz *.fits.gz);;All files (*)"
CATALOG_FILTER = "Catalogs (*.ecsv *.fits *.fit *.cat *.ldac *.csv *.txt *.dat);;All files (*)"
MODEL_FILTER = "Models (*.keras *.h5 *.hdf5);;All files (*)"
EXPORT_FILTER = "ECSV (*.ecsv);;FITS table (*.fits);;CSV (*.csv)"
TRAINING_SET_FILTER = "Training set (*.npz)"
REGION_FILTER = "DS9 regions (*.reg)"
STORE_FILTER = "Label stores (*.sqlite *.db);;All files (*)"
STORE_SUMMARY_DELAY_MS = 400
"""Store-wide counts are refreshed this long after the last label (off the keypress path)."""
MAX_RECENT = 10
CATALOG_SUFFIXES = (".ecsv", ".csv", ".cat", ".ldac", ".txt", ".dat", ".tsv")


def looks_like_catalog(path):
    """True for a table file: a catalog suffix, or a FITS file whose data are tables only."""
    name = Path(path).name.lower()
    if name.endswith(CATALOG_SUFFIXES):
        return True
    if not name.endswith((".fits", ".fit", ".fts", ".fz", ".gz")):
        return False
    from astropy.io import fits

    from rbvet.core.io.frame import check_fits_headers

    try:
        check_fits_headers(path)  # a corrupt header must not hang the GUI thread
        with fits.open(path, memmap=True) as hdus:
            kinds = [
                isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))
                for hdu in hdus
                if hdu.header.get("NAXIS", 0) > 0
            ]
    except Exception:  # unreadable: let the frame reader give the proper error
        return False
    return bool(kinds) and all(kinds)


class ErrorBanner(QWidget):
    """A dismissable one-line error above the grid (never a blocking dialog)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(text="✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.setStyleSheet("background: #5c1f1f; color: #ffe0e0;")
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, message):
        self.label.setText(message)
        self.show()

    @property
    def message(self):
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """The rbvet vetting window.

    Parameters
    ----------
    settings : QSettings, optional
        Window geometry and recent files; the user's rbvet settings when None.
    label_store_path : str or Path, optional
        The label store; the user's default store (created at the first label) when None.
    models_dir : str or Path, optional
        Where retrained models go when the current model's folder is not writable or is
        the shipped resources; ``user_data_dir()/models`` when None.
    parent : QWidget, optional

    Attributes
    ----------
    state : VettingState
    labels : LabelController
    grid : GridPanel
    store_button : QToolButton
        Status bar: the store path and the frame's label counts; click to choose another.
    retrain_dialog : RetrainDialog or None
        The last retraining dialog opened.
    model_memory : ModelMemory
        The model remembered for the next launch (accepted, or opened from the menu).
    undo_banner : UndoBanner
        Says what one key did to many tiles, with an Undo button.

    Signals
    -------
    classified()
        A frame finished loading and its scores are shown.
    failed(str)
        Opening or classifying failed; the message is shown in the error banner.
    """

    classified = pyqtSignal()
    failed = pyqtSignal(str)

    def __init__(self, settings=None, label_store_path=None, models_dir=None, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings("rbvet", "rbvet")
        self.state = VettingState(self)
        self.job = None
        self.frame_path = None
        self.catalog_path = None
        self.model_path = None
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.retrain_dialog = None
        self.frame_options = FrameOptions()  # those the frame shown was read with
        self._pending = None
        self._threshold_note = ("", None)  # (note, the threshold it is about)
        self._job_outcome = ""  # said in the status bar once the job has ended
        self._remembered_trouble = None  # why the remembered model failed, while retrying
        self.labels = LabelController(self.state, label_store_path, parent=self)
        self.uncertainty = UncertaintyRunner(self.state, parent=self)
        self.uncertainty.message.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.setWindowTitle("rbvet")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)

        self.grid = GridPanel(self.state)
        self.error_banner = ErrorBanner()
        self.undo_banner = UndoBanner()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.error_banner)
        column.addWidget(self.undo_banner)
        column.addWidget(self.grid, 1)
        self.setCentralWidget(central)

        self.frame_view = FrameView(self.state)
        self.detail = DetailPanel(self.state)
        self.detail.set_grid_order(self.grid.proxy)
        self.threshold_panel = ThresholdPanel(self.state)
        self.docks = {}
        self._add_dock("Frame", self.frame_view, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Object", self.detail, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Threshold", self.threshold_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.frame_settings = FrameSettingsPanel(self.state)
        self.frame_settings.redetectRequested.connect(self.redetect)
        self._add_dock(
            "Frame settings", self.frame_settings, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.feature_map = FeatureMap(self.state, self.grid.view)
        self._add_dock("Map", self.feature_map, Qt.DockWidgetArea.RightDockWidgetArea)
        # Frame view large on the right; object details and threshold side by side below.
        self.splitDockWidget(self.docks["Frame"], self.docks["Object"], Qt.Orientation.Vertical)
        self.splitDockWidget(
            self.docks["Object"], self.docks["Threshold"], Qt.Orientation.Horizontal
        )
        self.tabifyDockWidget(self.docks["Threshold"], self.docks["Frame settings"])
        self.tabifyDockWidget(self.docks["Threshold"], self.docks["Map"])
        self.docks["Threshold"].raise_()
        self.project = ProjectController(self)
        frames_dock = self._add_dock(
            "Frames", FramesDock(self.project), Qt.DockWidgetArea.LeftDockWidgetArea
        )
        frames_dock.hide()  # shown when a project of frames is opened
        self.project.framesChanged.connect(frames_dock.show)
        self.epochs = EpochStrip(self.state, self.project, self.frame_view)
        self.detail.content_layout.insertWidget(1, self.epochs)
        self.injected_detail = add_injected_detail(self)
        self.samp = SampBridge(self)
        self._layout_pending = True

        self.reviewer = LabelReviewer(
            self.state, lambda: self.model_path, self.grid.sort_combo, parent=self
        )
        self.reviewer.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self._build_status_bar()
        self._build_menus()
        self.state.dataChanged.connect(self._update_title)
        self.state.thresholdChanged.connect(self._update_summary)
        self.state.dataChanged.connect(self._update_summary)
        self.grid.view.set_labeler(self.labels)
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(STORE_SUMMARY_DELAY_MS)
        self._summary_timer.timeout.connect(self._update_store_tooltip)
        self.labels.errorOccurred.connect(self.show_error)
        self.labels.errorOccurred.connect(self._update_store_status)
        self.labels.message.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.labels.countsChanged.connect(self._update_store_status)
        # A later label change (or undo) hides the notice before a new one can show.
        self.state.labelsChanged.connect(lambda *_: self.undo_banner.hide())
        self.state.dataChanged.connect(self.undo_banner.hide)
        self.labels.manyLabeled.connect(self.undo_banner.show_labeled)
        self.undo_banner.undoRequested.connect(self.labels.undo)
        self.labels.storeChanged.connect(self._update_store_status)
        self.labels.open_store()
        # The model the user chose last time (a vanished or broken one: the shipped model,
        # and the warning shown once the first frame is in).
        self.model_memory = ModelMemory(self.settings)
        self.model_path, self.model_warning = self.model_memory.recall()
        self.resize(1600, 1000)
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        dock_state = self.settings.value("window/state")
        if dock_state is not None:
            self._layout_pending = not self.restoreState(dock_state)

    def showEvent(self, event):
        super().showEvent(event)
        if self._layout_pending:
            self._layout_pending = False
            self._default_layout()

    def _default_layout(self):
        """Grid on the left ~40 %; on the right the frame over ~55 % of the height."""
        width, height = self.width(), self.height()
        docks = self.docks
        room = width - self.grid.minimumSizeHint().width() - 24
        right = max(docks["Frame"].minimumSizeHint().width(), min(int(0.6 * width), room))
        self.resizeDocks([docks["Frame"]], [right], Qt.Orientation.Horizontal)
        self.resizeDocks(
            [docks["Frame"], docks["Object"]],
            [int(0.55 * height), int(0.45 * height)],
            Qt.Orientation.Vertical,
        )
        self.resizeDocks(
            [docks["Object"], docks["Threshold"]],
            [int(0.45 * right), int(0.55 * right)],
            Qt.Orientation.Horizontal,
        )

    # -- construction ---------------------------------------------------------------

    def _add_dock(self, title, widget, area):
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def _build_status_bar(self):
        bar = self.statusBar()
        self.summary_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_job)
        self.model_label = QLabel()
        self.store_button = QToolButton()
        self.store_button.setAutoRaise(True)
        self.store_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.store_button.clicked.connect(self.choose_label_store)
        bar.addWidget(self.summary_label, 1)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.store_button)
        bar.addPermanentWidget(self.model_label)
        self._set_busy(False)

    def _action(self, menu, text, slot, shortcut=None):
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self):
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open frame…", self.choose_frame, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open &frames…", self.choose_frames, "Ctrl+Alt+O")
        self._action(file_menu, "&Next frame", self.project.next_frame, "Ctrl+PgDown")
        self._action(file_menu, "&Previous frame", self.project.previous_frame, "Ctrl+PgUp")
        self._action(file_menu, "Re&try failed frames", lambda: self.project.retry(), RETRY_KEY)
        self._action(file_menu, "Open &catalog…", self.choose_catalog, "Ctrl+Shift+O")
        self._action(file_menu, "&Detect objects (no catalog)", self.detect_objects, "Ctrl+D")
        self._action(file_menu, "&Frame settings…", self.show_frame_settings, "Ctrl+Shift+F")
        self.recent_menu = file_menu.addMenu("&Recent frames")
        self._refresh_recent_menu()
        file_menu.addSeparator()
        self._action(file_menu, "&Label store…", self.choose_label_store)
        file_menu.addSeparator()
        self._action(file_menu, "&Export catalog…", self.choose_export, "Ctrl+E")
        self._action(file_menu, "Export &training set…", self.choose_export_training_set)
        self._action(file_menu, "Export DS9 &regions…", self.choose_export_regions)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        # The grid handles the labeling keys itself (so typing in a spin box never labels);
        # the menu shows them after a tab and acts on the grid's selection.
        label_menu = self.menuBar().addMenu("&Label")
        self.undo_action = self._action(
            label_menu, "&Undo label", self.labels.undo, QKeySequence.StandardKey.Undo
        )
        self.redo_action = self._action(
            label_menu, "&Redo label", self.labels.redo, QKeySequence.StandardKey.Redo
        )
        label_menu.addSeparator()
        view = self.grid.view
        self._action(label_menu, "Label &real\tR", lambda: view.label_selection(REAL))
        self._action(label_menu, "Label &bogus\tB", lambda: view.label_selection(BOGUS))
        self._action(label_menu, "&Clear label\tU", lambda: view.label_selection(UNLABELED))
        self._action(label_menu, "&Next unlabeled\tSpace", view.next_unlabeled)
        label_menu.addSeparator()
        self._action(
            label_menu,
            "Label all unlabeled &below the threshold bogus…",
            self.label_below_threshold,
        )
        self._action(label_menu, "Re&view labels (find likely errors)", self.reviewer.start)
        self._action(label_menu, "Make &weak labels from the frames", self.make_weak_labels)
        label_menu.aboutToShow.connect(self._update_undo_actions)
        # Disabled actions ignore their shortcuts: enable them again once the menu closes.
        label_menu.aboutToHide.connect(lambda: self.undo_action.setEnabled(True))
        label_menu.aboutToHide.connect(lambda: self.redo_action.setEnabled(True))

        model_menu = self.menuBar().addMenu("&Model")
        self._action(model_menu, "&Open model…", self.choose_model, "Ctrl+M")
        self._action(model_menu, "&Retrain from labels…", self.retrain_from_labels, "Ctrl+T")
        self.assess_action = self._action(model_menu, "&Assess this frame", self.assess_frame)
        model_menu.addSeparator()
        self._action(model_menu, "Re&vert to the shipped model", self.revert_to_shipped_model)
        self.samp.add_menu(self.menuBar())
        view_menu = self.menuBar().addMenu("&View")
        self._action(view_menu, "&Blink epochs of the object", self.epochs.blink, BLINK_KEY)
        self._action(view_menu, "&Stop blinking", self.epochs.stop_blink, STOP_KEY)
        view_menu.addSeparator()
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())

    # -- opening --------------------------------------------------------------------

    def open_frame(self, frame_path, catalog_path=None, model_path=None):
        """Open a frame (and its catalog; objects are detected without one) and classify.

        The window switches to the new frame only once it is classified: a file that
        fails leaves the current frame, its catalog and model in place.
        """
        model_path = self.model_path if model_path is None else str(model_path)
        options = self.frame_options
        if str(frame_path) != self.frame_path:  # the HDU, FWHM, saturation were this frame's
            options = options.for_another_frame()
        self._start_classification(
            str(frame_path), str(catalog_path) if catalog_path else None, model_path, options
        )

    def open_catalog(self, catalog_path):
        """Use a catalog for the open frame and classify again."""
        if self.frame_path is None:
            self.show_error(f"{catalog_path}: open a frame before its catalog")
            return
        self._start_classification(self.frame_path, str(catalog_path), self.model_path)

    def open_model(self, model_path):
        """Score the open frame with another model (None: the shipped one)."""
        model_path = None if model_path is None else str(model_path)
        if self.frame_path is None:
            self.model_path = model_path
            return
        self._start_classification(self.frame_path, self.catalog_path, model_path)

    def revert_to_shipped_model(self):
        """Score with the shipped model again, now and at the next launches."""
        self.model_memory.forget()
        self.open_model(None)

    def detect_objects(self):
        """Drop the catalog and detect the frame's objects with sep."""
        if self.frame_path is not None:
            self._start_classification(self.frame_path, None, self.model_path)

    def redetect(self, options):
        """Read, detect (without a catalog) and score the open frame again with ``options``
        (`FrameOptions`), in the background; labels follow the objects by position."""
        if self.frame_path is not None:
            self._start_classification(
                self.frame_path, self.catalog_path, self.model_path, options
            )

    def show_frame_settings(self):
        """Show the frame settings dock in front."""
        dock = self.docks["Frame settings"]
        dock.show()
        dock.raise_()

    def _start_classification(self, frame_path, catalog_path, model_path, options=None):
        if self.job is not None:  # cancelled and, if still running, detached: not waited for
            self.job.stop(timeout_ms=0)
        options = self.frame_options if options is None else options
        self.uncertainty.stop()
        job = classify_frame(frame_path, catalog_path, model_path, options)

        def succeeded(result):
            self.frame_path, self.catalog_path, self.model_path = (
                frame_path,
                catalog_path,
                model_path,
            )
            self.frame_options = options
            self._remember_recent(frame_path)
            self._on_classified(result)

        self.start_window_job(
            job,
            "classify",
            f"Opening {Path(frame_path).name}",
            succeeded,
            failed=lambda message: self._on_failed(message, (frame_path, catalog_path)),
            cancelled=lambda: self._on_cancelled(frame_path),
            before_start=self.frame_settings.track,
        )

    def start_window_job(
        self, job, name, busy_text, succeeded, failed=None, cancelled=None, before_start=None
    ):
        """Run ``job`` as the window's job: its progress bar and Cancel, the busy state,
        and its outcome through ``succeeded(result)`` (``failed(message)`` and
        ``cancelled()``: the window's own by default).

        Each slot is called only while the job is the window's job: a signal already
        queued when another job took its place is dropped.

        Returns
        -------
        JobThread
        """
        thread = JobThread(job, name=name, parent=self)

        def while_current(slot):
            return lambda *args: slot(*args) if self.job is thread else None

        thread.progressed.connect(while_current(self._on_progress))
        thread.succeeded.connect(while_current(succeeded))
        thread.failed.connect(while_current(failed or self._on_failed))
        thread.cancelled.connect(while_current(cancelled or self._on_cancelled))
        thread.finished.connect(while_current(lambda: self._set_busy(False)))
        self.job = thread
        if before_start is not None:
            before_start(thread)
        self.error_banner.hide()
        self._set_busy(True, busy_text)
        thread.start()
        return thread

    def cancel_job(self, wait=False):
        """Ask the running job to stop at its next step.

        With ``wait``, wait for it a bounded time (`JobThread.stop`), then leave it to
        end in the background.
        """
        if self.job is not None and self.job.isRunning():
            self.job.cancel()
            if wait:
                self.job.stop()

    def _on_progress(self, progress):
        total = max(progress.total, 0)
        self.progress_bar.setMaximum(total)
        self.progress_bar.setValue(progress.done if total else 0)
        self.progress_bar.setFormat(f"{progress.message} %p%" if total else progress.message)
        self.statusBar().showMessage(progress.message)

    def _on_classified(self, result):
        data, threshold = result
        self.show_data(data, threshold)
        self.uncertainty.start(data, self.model_path)
        self.classified.emit()

    def show_data(self, data, threshold=None):
        """Show a classified frame: its labels from the store, the grid, the first tile.

        Parameters
        ----------
        data : VettingData
        threshold : float, optional
            The model's threshold; the current one is kept when None.
        """
        previous = self.state.threshold if self.state.data is not None else None
        self.state.session.show(data, threshold)  # its stored labels, then the data
        shown = self.state.threshold
        self._threshold_note = (threshold_note(previous, shown, threshold is None), shown)
        self._update_summary()
        self._show_model_name(data.model_name)
        if len(data) > DEFER_DRAW_OBJECTS:
            # The first tile is selected in a later turn: at a million objects, making it
            # current costs Qt as much as the grid itself, and the window must not stall.
            QTimer.singleShot(DEFER_DRAW_MS, lambda: self._select_first(data))
        else:
            self._select_first(data)
        self._update_store_status()
        show_kept_assessment(self)
        if self.labels.store_error:
            # Said once at start-up, then hidden by the frame's opening: say it again
            # now, or the user labels away into a store that takes nothing.
            self.show_error(self.labels.store_error)

    def _show_model_name(self, name):
        """Status bar: the model's name, marked when it is the one remembered from the
        last session; a remembered model given up at launch is said once, here."""
        if self._remembered_trouble is not None and self.model_path is None:
            self.model_memory.forget()  # the shipped model did what it could not
            self.model_warning = self.model_memory.unusable_text(self._remembered_trouble)
        self._remembered_trouble = None
        remembered = self.model_memory.is_remembered(self.model_path)
        self.model_label.setText(f"model: {name}" + (" (remembered)" if remembered else ""))
        self.model_label.setToolTip(
            f"{self.model_path}\nremembered from your last session: "
            "Model › Revert to the shipped model to stop using it"
            if remembered
            else "Model › Open model… or Retrain from labels… to use another"
        )
        if self.model_warning:
            self.show_error(self.model_warning)
            self.model_warning = None

    def _select_first(self, data):
        """Select the first tile of ``data`` in display order, if it is still shown."""
        proxy = self.grid.proxy
        if data is self.state.data and proxy.rowCount() and self.state.selected < 0:
            self.state.select(proxy.object_at(0))

    def _on_failed(self, message, attempt=None):
        """Show the error; but when the first frame fails with the model remembered from
        the last session, try it once more with the shipped model (if that works, the
        remembered model was the trouble: `_show_model_name` forgets it and says so)."""
        if (
            attempt is not None
            and self.state.data is None
            and self.model_memory.is_remembered(self.model_path)
            and self._remembered_trouble is None
        ):
            self._remembered_trouble = message
            self._start_classification(*attempt, None)
            return
        self._remembered_trouble = None
        self.show_error(message)
        self.failed.emit(message)

    def _on_cancelled(self, frame_path=None):
        """Say what was cancelled and what the window still shows (said when the job
        ends: `_set_busy` would otherwise wipe it)."""
        what = f"opening {Path(frame_path).name}" if frame_path else "the job"
        data = self.state.data
        kept = (
            f"still showing {Path(data.frame_path).name} with its labels"
            if data is not None
            else "no frame is open"
        )
        self._job_outcome = f"Cancelled {what}: nothing changed, {kept}."

    def show_error(self, message):
        """Show a one-line error; the window keeps its current frame."""
        self.error_banner.show_message(message)
        self.statusBar().showMessage("Error", 5000)

    def confirm(self, text):
        """Ask the user a yes/no question (tests replace this method).

        Returns
        -------
        bool
        """
        answer = QMessageBox.question(
            self,
            "rbvet",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _set_busy(self, busy, message=""):
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat(message)
            self.statusBar().showMessage(message)
        elif self._job_outcome:
            self.statusBar().showMessage(self._job_outcome, 10000)
            self._job_outcome = ""
        else:
            self.statusBar().clearMessage()

    @property
    def busy(self):
        return self.job is not None and self.job.isRunning()

    # -- dialogs --------------------------------------------------------------------

    def _start_dir(self):
        return str(Path(self.frame_path).parent) if self.frame_path else ""

    def _save_dir(self):
        """Where exports are suggested: the frame's folder, unless that is rbvet's shipped
        data (the demo) or cannot be written; then the working folder, else the home one."""
        from rbvet.core.paths import is_user_folder

        folder = Path(self._start_dir() or os.getcwd()).resolve()
        if is_user_folder(folder):
            return str(folder)
        return os.getcwd() if os.access(os.getcwd(), os.W_OK) else str(Path.home())

    def choose_frame(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open frame", self._start_dir(), FRAME_FILTER)
        if path:
            self.open_frame(path)

    def choose_frames(self):
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open frames", self._start_dir(), FRAME_FILTER
        )
        if paths:
            self.project.open_paths(paths)

    def choose_catalog(self):
        path, _ = QFileDialog.getOpenFileName(
            self, "Open catalog", self._start_dir(), CATALOG_FILTER
        )
        if path:
            self.open_catalog(path)

    def choose_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open model", self._start_dir(), MODEL_FILTER)
        if path:
            self.model_memory.remember(path)
            self.open_model(path)

    def choose_export(self):
        self._choose_save("Export scores", ".rb.ecsv", EXPORT_FILTER, self.export_scores)

    def choose_export_training_set(self):
        self._choose_save(
            "Export training set", ".labels.npz", TRAINING_SET_FILTER, self.export_training_set
        )

    def choose_export_regions(self):
        self._choose_save("Export DS9 regions", ".rb.reg", REGION_FILTER, self.export_regions)

    def _choose_save(self, title, suffix, file_filter, export):
        """Ask where to save (named after the frame) and call ``export(path)``."""
        if self.state.data is None:
            return
        stem = Path(self.frame_path or "frame").name.split(".")[0]
        suggested = str(Path(self._save_dir()) / f"{stem}{suffix}")
        path, _ = QFileDialog.getSaveFileName(self, title, suggested, file_filter)
        if path:
            export(path)

    def export_scores(self, path):
        """Write the catalog with ``rb_score``, ``rb_label``, ``rb_reason`` and the bogus
        flag at the current threshold (set or cleared by a label where there is one).

        Returns
        -------
        bool
            False when nothing was written (the error is shown).
        """
        from rbvet.core.io.export import export_catalog

        data = self.state.data
        return self._export(
            path,
            lambda: export_catalog(
                data.table, data.scores, data.labels, self.state.threshold, path, data.reasons
            ),
            f"Exported {count_text(len(data), 'object')} to {path}",
        )

    def export_training_set(self, path):
        """Write this frame's labeled objects as a training set ``.npz`` (inputs for the
        current model's preprocessing, labels and raw stamps, from the label store).

        Returns
        -------
        bool
        """
        from rbvet.core.learn.dataset import save_training_set

        data = self.state.data
        written = {}

        def write():
            training_set = self.labels.frame_training_data(data.params)
            written["n"] = len(training_set)
            save_training_set(training_set, path, metadata={"model": data.model_name})

        if not self._export(path, write, ""):
            return False
        self.statusBar().showMessage(f"Exported {written['n']} labeled objects to {path}", 5000)
        return True

    def export_regions(self, path):
        """Write a DS9 region file: a circle per object, coloured by label or by score.

        Returns
        -------
        bool
        """
        from rbvet.core.io.export import export_regions

        data = self.state.data
        return self._export(
            path,
            lambda: export_regions(
                data.x, data.y, data.labels, data.scores, self.state.threshold, path
            ),
            f"Exported {len(data)} regions to {path}",
        )

    def _export(self, path, write, message):
        if self.state.data is None:
            self.show_error("nothing to export: open a frame first")
            return False
        try:
            write()
        except (RbvetError, OSError) as error:
            self.show_error(str(error) if isinstance(error, RbvetError) else f"{path}: {error}")
            return False
        if message:
            self.statusBar().showMessage(message, 5000)
        return True

    # -- labels and retraining ----------------------------------------------------------

    @property
    def model_path(self):
        """The model in use (None: the shipped default): the session's ``model_path``."""
        return self.state.session.model_path

    @model_path.setter
    def model_path(self, path):
        self.state.session.model_path = None if path is None else str(path)

    @property
    def models_dir(self):
        """Where retrained models go when the model's folder cannot take them (the
        session's ``models_dir``, see `rbvet.core.session.model_save_target`)."""
        return self.state.session.models_dir

    @models_dir.setter
    def models_dir(self, folder):
        self.state.session.models_dir = None if folder is None else Path(folder)

    def set_label_store(self, path, create=True):
        """Keep labels in the store at ``path`` (made when missing, with ``create``); the
        frame's labels are then shown from it.

        Returns
        -------
        bool
            False when it could not be opened (the banner says why).
        """
        self.error_banner.hide()
        return self.labels.open_store(path, create=create)

    def choose_label_store(self):
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Label store (an existing one, or a new name)",
            str(self.labels.store_path),
            STORE_FILTER,
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.set_label_store(path)

    def label_below_threshold(self):
        """Label every unlabeled object scoring below the threshold bogus, after asking.

        Returns
        -------
        int
            Objects labeled (0 when there were none, or the user said no).
        """
        count = len(self.labels.below_threshold_candidates())
        threshold = self.state.threshold
        if count == 0:
            self.statusBar().showMessage(f"No unlabeled objects score below {threshold:.3f}", 4000)
            return 0
        text = (
            f"Label {count} unlabeled objects scoring below {threshold:.3f} as bogus?\n\n"
            "Labels already given are kept. This is one step: Ctrl+Z undoes it."
        )
        if not self.confirm(text):
            return 0
        return self.labels.label_below_threshold()

    def retrain_from_labels(self):
        """Open the retraining dialog (or bring the open one forward).

        Returns
        -------
        RetrainDialog
        """
        dialog = self.retrain_dialog
        if dialog is not None and dialog.isVisible():
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        dialog = RetrainDialog(
            self.labels.store_path,
            model_path=self.model_path,
            threshold=self.state.threshold,
            models_dir=self.models_dir,
            frames=None if self.state.data is None else [(self.frame_path, self.catalog_path)],
            frame_options=self.frame_options,
            parent=self,
        )
        dialog.modelAccepted.connect(self._on_model_accepted)
        self.retrain_dialog = dialog
        dialog.show()
        return dialog

    def make_weak_labels(self):
        """Labels › Make weak labels from the frames (`rbvet.gui.weak_labels`)."""
        return start_weak_labels(self)

    def assess_frame(self):
        """Model › Assess this frame: injection-recovery as a job (`rbvet.gui.assessment`)."""
        return start_assessment(self)

    def _on_model_accepted(self, path):
        self.statusBar().showMessage(f"New model saved: {path}", 8000)
        self.model_memory.remember(path)
        self.open_model(path)

    def _update_undo_actions(self):
        self.undo_action.setEnabled(self.labels.can_undo)
        self.redo_action.setEnabled(self.labels.can_redo)

    # -- recent files and drag and drop ------------------------------------------------

    def recent_frames(self):
        value = self.settings.value("recent/frames", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember_recent(self, path):
        paths = [path] + [p for p in self.recent_frames() if p != path]
        self.settings.setValue("recent/frames", paths[:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self):
        self.recent_menu.clear()
        for path in self.recent_frames():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda checked=False, p=path: self.open_frame(p))
        self.recent_menu.setEnabled(bool(self.recent_frames()))

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        self.open_dropped(paths)
        event.acceptProposedAction()

    def open_dropped(self, paths):
        """Open dropped files: images as the frame, tables as its catalog."""
        catalogs = [p for p in paths if looks_like_catalog(p)]
        frames = [p for p in paths if p not in catalogs]
        if frames:
            self.open_frame(frames[0], catalogs[0] if catalogs else None)
        elif catalogs:
            self.open_catalog(catalogs[0])

    # -- status ------------------------------------------------------------------------

    def _update_title(self):
        data = self.state.data
        if data is None:
            self.setWindowTitle("rbvet")
            return
        catalog = Path(data.catalog_path).name if data.catalog_path else "detected objects"
        self.setWindowTitle(f"rbvet — {Path(data.frame_path).name} ({catalog})")

    def _update_summary(self):
        data = self.state.data
        if data is None:
            self.summary_label.setText("")
            return
        real, bogus, unscored = data.counts(self.state.threshold)
        note, about = self._threshold_note  # until the user moves the threshold
        self.summary_label.setText(
            f"{count_text(len(data), 'object')} · FWHM {data.fwhm:.2f} px · "
            f"{real} real, {bogus} bogus at {self.state.threshold:.3f}"
            + (f" · {unscored} unscored" if unscored else "")
            + fallback_summary(data.reading)
            + (f" · {note}" if note and about == self.state.threshold else "")
        )
        self.summary_label.setToolTip("\n".join(fallbacks(data.reading)))

    def _update_store_status(self):
        """Status bar: the store and this frame's label counts (store-wide in the tip)."""
        path = _short_path(self.labels.store_path)
        if self.labels.store_error:
            self.store_button.setText(f"labels: {path} — unavailable")
            self.store_button.setToolTip(
                f"{self.labels.store_error}\nClick to choose another label store"
            )
            return
        real, bogus = self.labels.frame_counts()
        self.store_button.setText(
            f"labels: {path} · {real + bogus} labeled ({real} real, {bogus} bogus)"
        )
        self._summary_timer.start()

    def _update_store_tooltip(self):
        summary = self.labels.store_summary()
        path = str(self.labels.store_path)
        if summary is None:
            text = f"{path}\n(no labels yet: made at the first label)"
        else:
            text = (
                f"{path}\nwhole store: {summary['real'] + summary['bogus']} labeled "
                f"({summary['real']} real, {summary['bogus']} bogus) on {summary['frames']} "
                "frames"
            )
            for source, counts in summary.get("weak", {}).items():
                real, bogus = counts["real"], counts["bogus"]
                if real + bogus:
                    text += f"\nweak labels ({source}): {real} real, {bogus} bogus"
        self.store_button.setToolTip(text + "\nClick to choose another label store")

    def closeEvent(self, event):
        """Cancel the jobs, save the layout, then wait a bounded time for the jobs to
        end (`JobThread.stop`): closing never waits for a step that cannot stop."""
        dialog = self.retrain_dialog
        self.cancel_job()
        self.project.shutdown()
        self.samp.shutdown()
        if dialog is not None:
            dialog.cancel_training()
        self.labels.close()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.hide()  # not a frozen window while the jobs stop
        if dialog is not None:
            dialog.close()
        if self.job is not None:
            self.job.stop()
        self.reviewer.stop()
        self.uncertainty.stop(timeout_ms=STOP_TIMEOUT_MS)
        self.project.finish_shutdown()
        super().closeEvent(event)


def _short_path(path):
    """A path with the home folder written as ``~``."""
    path = Path(path)
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
