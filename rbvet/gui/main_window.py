"""The vetting window: the cutout grid in the middle, frame, detail and threshold docks.

Loading and classification run in a `JobThread`; the window keeps what it showed until
a new frame is ready, so a bad file never costs the user their current frame.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .detail import DetailPanel
from .frame_view import FrameView
from .grid import GridPanel
from .jobs import ModelCache, classify_frame
from .state import VettingState
from .threshold import ThresholdPanel
from .workers import JobThread

FRAME_FILTER = "FITS images (*.fits *.fit *.fts *.fits.fz *.fz *.fits.gz);;All files (*)"
CATALOG_FILTER = (
    "Catalogs (*.ecsv *.fits *.fit *.cat *.ldac *.csv *.txt *.dat);;All files (*)"
)
MODEL_FILTER = "Models (*.keras *.h5 *.hdf5);;All files (*)"
EXPORT_FILTER = "ECSV (*.ecsv);;FITS table (*.fits);;CSV (*.csv)"
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

    try:
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

    Signals
    -------
    classified()
        A frame finished loading and its scores are shown.
    failed(str)
        Opening or classifying failed; the message is shown in the error banner.
    """

    classified = pyqtSignal()
    failed = pyqtSignal(str)

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings("rbvet", "rbvet")
        self.state = VettingState(self)
        self.models = ModelCache()
        self.job = None
        self.frame_path = None
        self.catalog_path = None
        self.model_path = None
        self._pending = None
        self.setWindowTitle("rbvet")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)

        self.grid = GridPanel(self.state)
        self.error_banner = ErrorBanner()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.error_banner)
        column.addWidget(self.grid, 1)
        self.setCentralWidget(central)

        self.frame_view = FrameView(self.state)
        self.detail = DetailPanel(self.state)
        self.threshold_panel = ThresholdPanel(self.state)
        self.docks = {}
        self._add_dock("Frame", self.frame_view, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Object", self.detail, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Threshold", self.threshold_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        # Frame view large on the right; object details and threshold side by side below.
        self.splitDockWidget(self.docks["Frame"], self.docks["Object"], Qt.Orientation.Vertical)
        self.splitDockWidget(
            self.docks["Object"], self.docks["Threshold"], Qt.Orientation.Horizontal
        )
        self._layout_pending = True

        self._build_status_bar()
        self._build_menus()
        self.state.dataChanged.connect(self._update_title)
        self.state.thresholdChanged.connect(self._update_summary)
        self.state.dataChanged.connect(self._update_summary)
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
        bar.addWidget(self.summary_label, 1)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
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
        self._action(file_menu, "Open &catalog…", self.choose_catalog, "Ctrl+Shift+O")
        self._action(file_menu, "&Detect objects (no catalog)", self.detect_objects, "Ctrl+D")
        self._action(file_menu, "Open &model…", self.choose_model, "Ctrl+M")
        self.recent_menu = file_menu.addMenu("&Recent frames")
        self._refresh_recent_menu()
        file_menu.addSeparator()
        self._action(file_menu, "&Export scores…", self.choose_export, "Ctrl+E")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())

    # -- opening --------------------------------------------------------------------

    def open_frame(self, frame_path, catalog_path=None, model_path=None):
        """Open a frame (and its catalog; objects are detected without one) and classify."""
        self.frame_path = str(frame_path)
        self.catalog_path = str(catalog_path) if catalog_path else None
        if model_path is not None:
            self.model_path = str(model_path)
        self._remember_recent(self.frame_path)
        self._start_classification()

    def open_catalog(self, catalog_path):
        """Use a catalog for the open frame and classify again."""
        if self.frame_path is None:
            self.show_error(f"{catalog_path}: open a frame before its catalog")
            return
        self.catalog_path = str(catalog_path)
        self._start_classification()

    def open_model(self, model_path):
        """Score the open frame with another model."""
        self.model_path = str(model_path)
        if self.frame_path is not None:
            self._start_classification()

    def detect_objects(self):
        """Drop the catalog and detect the frame's objects with sep."""
        if self.frame_path is not None:
            self.catalog_path = None
            self._start_classification()

    def _start_classification(self):
        self.cancel_job(wait=True)
        frame_path, catalog_path, model_path = self.frame_path, self.catalog_path, self.model_path
        models = self.models

        def job(report, should_stop):
            return classify_frame(
                frame_path, catalog_path, model_path, models, report, should_stop
            )

        self.job = JobThread(job, name="classify", parent=self)
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_classified)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.finished.connect(lambda: self._set_busy(False))
        self.error_banner.hide()
        self._set_busy(True, f"Opening {Path(frame_path).name}")
        self.job.start()

    def cancel_job(self, wait=False):
        """Ask the running job to stop; with ``wait``, block until its thread has ended."""
        if self.job is not None and self.job.isRunning():
            self.job.cancel()
            if wait:
                self.job.wait()

    def _on_progress(self, done, total, message):
        self.progress_bar.setMaximum(max(total, 0))
        self.progress_bar.setValue(done if total else 0)
        self.progress_bar.setFormat(f"{message} %p%" if total else message)
        self.statusBar().showMessage(message)

    def _on_classified(self, result):
        data, threshold = result
        self.state.set_data(data, threshold=threshold)
        self.model_label.setText(f"model: {data.model_name}")
        order = self.grid.proxy.order()
        if len(order):
            self.state.select(int(order[0]))
        self.classified.emit()

    def _on_failed(self, message):
        self.show_error(message)
        self.failed.emit(message)

    def _on_cancelled(self):
        self.statusBar().showMessage("Cancelled", 3000)

    def show_error(self, message):
        """Show a one-line error; the window keeps its current frame."""
        self.error_banner.show_message(message)
        self.statusBar().showMessage("Error", 5000)

    def _set_busy(self, busy, message=""):
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat(message)
            self.statusBar().showMessage(message)
        else:
            self.statusBar().clearMessage()

    @property
    def busy(self):
        return self.job is not None and self.job.isRunning()

    # -- dialogs --------------------------------------------------------------------

    def _start_dir(self):
        return str(Path(self.frame_path).parent) if self.frame_path else ""

    def choose_frame(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open frame", self._start_dir(), FRAME_FILTER)
        if path:
            self.open_frame(path)

    def choose_catalog(self):
        path, _ = QFileDialog.getOpenFileName(
            self, "Open catalog", self._start_dir(), CATALOG_FILTER
        )
        if path:
            self.open_catalog(path)

    def choose_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open model", self._start_dir(), MODEL_FILTER)
        if path:
            self.open_model(path)

    def choose_export(self):
        if self.state.data is None:
            return
        stem = Path(self.frame_path).name.split(".")[0]
        suggested = str(Path(self._start_dir()) / f"{stem}.rb.ecsv")
        path, _ = QFileDialog.getSaveFileName(self, "Export scores", suggested, EXPORT_FILTER)
        if path:
            self.export_scores(path)

    def export_scores(self, path):
        """Write the catalog with ``rb_score``, ``rb_reason`` and the bogus flag at the
        current threshold."""
        from ..core.catalog import write_catalog
        from ..core.classify import add_scores
        from ..core.errors import RbvetError

        data = self.state.data
        table = data.table.copy()
        add_scores(table, data.scores, data.reasons, threshold=self.state.threshold)
        try:
            write_catalog(table, path)
        except RbvetError as error:
            self.show_error(str(error))
            return False
        self.statusBar().showMessage(f"Exported {len(table)} objects to {path}", 5000)
        return True

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
        self.summary_label.setText(
            f"{len(data)} objects · FWHM {data.fwhm:.2f} px · "
            f"{real} real, {bogus} bogus at {self.state.threshold:.3f}"
            + (f" · {unscored} unscored" if unscored else "")
        )

    def closeEvent(self, event):
        self.cancel_job(wait=True)
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        super().closeEvent(event)

