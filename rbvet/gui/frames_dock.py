"""The frames dock: every frame of the project with its counts, a done mark and progress.

`FramesModel` is a thin Qt table model over the `ProjectFrame` list of a
`rbvet.gui.project.ProjectController`'s project (no copy of it): one row per frame, the
current one in bold, the done mark a check box the user ticks. `FramesDock` puts it in a
table with previous/next buttons, the background scoring's progress and its Cancel, a
"Retry failed" button (shown while frames have failed) and a context menu that retries one
failed frame or all of them, and a second tab, `CombinedView`: the objects of all scored
frames sorted together by score (the lowest of the night first, by default); clicking one
shows its frame with it selected.

Both are models over arrays whose columns have fixed widths: a table that measured its
contents (``ResizeToContents``) asked every cell again at each frame's progress, which
stalled the window for tenths of a second with many frames.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QAbstractTableModel, Qt, QTimer
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableView,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.project import FAILED, SCORING
from rbvet.core.session import count_text, label_name

COLUMNS = ("done", "frame", "objects", "scored", "labeled", "assessed", "field")
COMBINED_ROWS = 500
"""Objects the combined view lists (the first of the whole sorted night)."""
COMBINED_DELAY_MS = 300
"""The combined view is re-sorted this long after the last frame changed."""
COMBINED_COLUMNS = ("frame", "object", "score", "label")
COLUMN_PADDING = 12
"""Pixels beside the widest text of a fixed column (cell margins)."""
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
LOWEST, HIGHEST = "lowest scores first", "highest scores first"
NOTE_COLOR = "#e0b050"
"""The notes on the set of frames (no WCS, mixed sizes or instruments)."""
DONE, NAME, OBJECTS, SCORED, LABELED, ASSESSED, FIELD = range(len(COLUMNS))
RETRY_KEY = "Ctrl+Shift+R"
"""File › Retry failed frames."""


class FramesModel(QAbstractTableModel):
    """The project's frames as table rows (see the module docstring).

    Parameters
    ----------
    controller : rbvet.gui.project.ProjectController
    """

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        controller.framesChanged.connect(self._reset)
        controller.frameChanged.connect(self._row_changed)
        controller.currentChanged.connect(self._reset_fonts)
        self._current = -1

    @property
    def frames(self):
        return self.controller.project.frames

    def rowCount(self, parent=None):  # noqa: N802 (Qt's name)
        return 0 if parent is not None and parent.isValid() else len(self.frames)

    def columnCount(self, parent=None):  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return str(section + 1)
        return None

    def flags(self, index):
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == DONE:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        frame = self.frames[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.CheckStateRole and column == DONE:
            return Qt.CheckState.Checked if frame.done else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(frame, column)
        if role == Qt.ItemDataRole.FontRole and index.row() == self.controller.current:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = frame.frame_path
            if frame.catalog_path:
                tip += f"\ncatalog: {frame.catalog_path}"
            if frame.error:
                tip += f"\nfailed: {frame.error}"
            if frame.field_id < 0:
                tip += "\nno WCS: not grouped with other epochs"
            return tip
        if role == Qt.ItemDataRole.TextAlignmentRole and column not in (DONE, NAME):
            return RIGHT
        return None

    @staticmethod
    def _text(frame, column):
        if column == NAME:
            return frame.name
        if column == FIELD:
            return "—" if frame.field_id < 0 else str(frame.field_id + 1)
        if column == ASSESSED:
            return "yes" if frame.assessed else ""
        if column in (OBJECTS, SCORED, LABELED):
            if frame.status == FAILED:
                return "failed" if column == OBJECTS else ""
            if frame.objects is None:
                return "scoring…" if frame.status == SCORING and column == OBJECTS else ""
            return str(
                {OBJECTS: frame.objects, SCORED: frame.scored, LABELED: frame.labeled}[column]
            )
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):  # noqa: N802
        if index.column() == DONE and role == Qt.ItemDataRole.CheckStateRole:
            checked = Qt.CheckState(value) == Qt.CheckState.Checked
            self.controller.set_done(index.row(), checked)
            return True
        return False

    def _reset(self):
        self.beginResetModel()
        self.endResetModel()

    def _row_changed(self, row):
        if 0 <= row < len(self.frames):
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def _reset_fonts(self, row):
        for changed in {self._current, row}:
            self._row_changed(changed)
        self._current = row


class FramesDock(QWidget):
    """The frames table, previous/next buttons, totals and the scoring's progress.

    Parameters
    ----------
    controller : rbvet.gui.project.ProjectController

    Attributes
    ----------
    table : QTableView
    model : FramesModel
    totals_label : QLabel
        "3 of 20 frames scored · 6000 objects · 12 labeled · 1 done".
    notes_label : QLabel
        What the user should know about the set of frames (`VettingProject.notes`:
        frames without a WCS, of other sizes or instruments); hidden when nothing.
    progress_bar : QProgressBar
    cancel_button : QPushButton
    retry_button : QPushButton
        "Retry 2 failed": scores the failed frames again; hidden when none failed.
    """

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.model = FramesModel(controller, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the grid keeps the keys
        fixed_columns(self.table, NAME, {OBJECTS: "scoring…", SCORED: "00000", DONE: "MM"})
        self.table.clicked.connect(self._on_clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_menu)

        self.previous_button = QToolButton(text="◀")
        self.previous_button.setToolTip("Previous frame (Ctrl+PgUp)")
        self.next_button = QToolButton(text="▶")
        self.next_button.setToolTip("Next frame (Ctrl+PgDown)")
        self.previous_button.clicked.connect(controller.previous_frame)
        self.next_button.clicked.connect(controller.next_frame)
        self.totals_label = QLabel()
        self.notes_label = QLabel()
        self.notes_label.setWordWrap(True)
        self.notes_label.setStyleSheet(f"color: {NOTE_COLOR}")
        self.notes_label.hide()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop scoring the frames in the background")
        self.cancel_button.clicked.connect(controller.cancel)
        self.retry_button = QPushButton()
        self.retry_button.setToolTip(
            "Score the frames that failed again (their files may be back or mended); "
            f"File › Retry failed frames ({RETRY_KEY})"
        )
        self.retry_button.clicked.connect(lambda: controller.retry())

        top = QHBoxLayout()
        top.addWidget(self.previous_button)
        top.addWidget(self.next_button)
        top.addWidget(self.totals_label, 1)
        top.addWidget(self.retry_button)
        progress = QHBoxLayout()
        progress.addWidget(self.progress_bar, 1)
        progress.addWidget(self.cancel_button)
        self.combined = CombinedView(controller)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Frames")
        self.tabs.addTab(self.combined, "All objects")
        self.tabs.setTabToolTip(1, "The objects of every scored frame sorted together by score")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.notes_label)
        layout.addLayout(progress)
        layout.addWidget(self.tabs, 1)

        controller.progressed.connect(self._on_progress)
        controller.idle.connect(self._on_idle)
        controller.frameChanged.connect(self._update_totals)
        controller.framesChanged.connect(self._update_totals)
        controller.currentChanged.connect(self._on_current)
        controller.fieldsChanged.connect(self._update_notes)
        self._on_idle()
        self._update_totals()

    def _on_clicked(self, index):
        if index.column() != DONE:
            self.controller.go_to(index.row())

    def context_menu(self, row):
        """The menu of frame ``row``: retry it (enabled when it failed; the window switches
        to it once it is scored) or every failed one (the window stays where it is).

        Returns
        -------
        QMenu
        """
        menu = QMenu(self)
        failed = self.controller.project.failed()
        one = menu.addAction("Retry this frame")
        one.setEnabled(row in failed)
        one.triggered.connect(lambda: self.controller.retry_and_show(row))
        every = menu.addAction(f"Retry failed frames ({len(failed)})")
        every.setEnabled(bool(failed))
        every.triggered.connect(lambda: self.controller.retry())
        return menu

    def _show_menu(self, position):
        index = self.table.indexAt(position)
        if index.isValid():
            self.context_menu(index.row()).exec(self.table.viewport().mapToGlobal(position))

    def _on_current(self, row):
        self.table.selectRow(row)
        self.table.scrollTo(self.model.index(row, NAME))

    def _on_progress(self, message, scored, total):
        bar = self.progress_bar
        if bar.isHidden():
            bar.show()
            self.cancel_button.show()
        # Only what changed: a new value repaints the window at once (QProgressBar's
        # synchronous repaint), and progress comes many times a frame.
        if bar.maximum() != max(total, 1):
            bar.setRange(0, max(total, 1))
        if bar.value() != scored:
            bar.setValue(scored)
        bar.setFormat(message)

    def _on_idle(self):
        self.progress_bar.hide()
        self.cancel_button.hide()

    def _update_notes(self):
        notes = self.controller.project.notes
        self.notes_label.setText("\n".join(notes))
        self.notes_label.setVisible(bool(notes))

    def _update_totals(self, *_):
        project = self.controller.project
        failed = len(project.failed())
        self.retry_button.setText(f"Retry {failed} failed")
        self.retry_button.setVisible(bool(failed))
        scored, objects, labeled, done = project.totals()
        if not len(project):
            self.totals_label.setText("no frames: File › Open frames…")
            return
        fields = project.fields()
        self.totals_label.setText(
            f"{scored} of {len(project)} frames scored · {objects} objects · {labeled} labeled"
            f" · {done} done" + (f" · {count_text(fields, 'field')}" if fields else "")
        )


class CombinedModel(QAbstractTableModel):
    """Rows of the combined view: (frame, object, score, label) of the first objects of
    `combined_order`, read from arrays as they are painted.

    Attributes
    ----------
    frames, objects : ndarray of intp
    scores : ndarray of float32
    """

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.frames = self.objects = np.zeros(0, np.intp)
        self.scores = np.zeros(0, np.float32)

    def set_rows(self, frames, objects, scores):
        self.beginResetModel()
        self.frames, self.objects, self.scores = frames, objects, scores
        self.endResetModel()

    def rowCount(self, parent=None):  # noqa: N802 (Qt's name)
        return 0 if parent is not None and parent.isValid() else len(self.scores)

    def columnCount(self, parent=None):  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(COMBINED_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COMBINED_COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (1, 2):
            return RIGHT
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        frame = self.controller.project.frames[int(self.frames[row])]
        if column == 0:
            return frame.name
        if column == 1:
            return str(int(self.objects[row]))
        if column == 2:
            score = float(self.scores[row])
            return f"{score:.3f}" if score == score else "—"
        label = int(frame.summary.labels[self.objects[row]]) if frame.summary else -1
        return label_name(label) if label >= 0 else ""

    def text(self, row, column):
        """The text of a cell (what the table shows)."""
        return self.data(self.index(row, column))


class CombinedView(QWidget):
    """The objects of all scored frames in one list sorted by score (`combined_order`).

    Lists the first `COMBINED_ROWS` (frame, object, score, label); a click shows that
    frame with the object selected. Re-sorted a moment after frames change.

    Attributes
    ----------
    order_combo : QComboBox
        `LOWEST` or `HIGHEST` first.
    table : QTableView
    model : CombinedModel
    entries : list of (int, int)
        (frame index, object index) of each row.
    """

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.entries = []
        self.order_combo = QComboBox()
        self.order_combo.addItems([LOWEST, HIGHEST])
        self.count_label = QLabel()
        self.model = CombinedModel(controller, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        fixed_columns(self.table, 0, {1: "000000", 2: "0.000", 3: "bogus?"})
        top = QHBoxLayout()
        top.addWidget(self.order_combo)
        top.addWidget(self.count_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COMBINED_DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        controller.frameChanged.connect(lambda *_: self._timer.start())
        controller.framesChanged.connect(self._timer.start)
        self.order_combo.currentTextChanged.connect(self.refresh)
        self.table.clicked.connect(self._on_clicked)
        self.refresh()

    def refresh(self):
        """Sort every scored frame's objects again and list the first ones."""
        frames, objects, scores = self.controller.project.combined(
            ascending=self.order_combo.currentText() == LOWEST
        )
        total = len(scores)
        rows = (frames[:COMBINED_ROWS], objects[:COMBINED_ROWS], scores[:COMBINED_ROWS])
        self.entries = list(zip(rows[0].tolist(), rows[1].tolist(), strict=True))
        self.count_label.setText(
            f"first {len(self.entries)} of {count_text(total, 'object')}" if total else ""
        )
        self.model.set_rows(*rows)

    def _on_clicked(self, index):
        if 0 <= index.row() < len(self.entries):
            self.controller.show_object(*self.entries[index.row()])


def fixed_columns(table, stretch, samples):
    """Columns of fixed widths (their title or a sample text, whichever is wider) and
    one that stretches: the table never measures its cells (see the module docstring).

    Parameters
    ----------
    table : QTableView
    stretch : int
        The column that takes the room left.
    samples : dict of int to str
        The widest text expected in some columns.
    """
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    metrics, titles = table.fontMetrics(), header.fontMetrics()
    model = table.model()
    for column in range(model.columnCount()):
        if column == stretch:
            continue
        title = str(model.headerData(column, Qt.Orientation.Horizontal) or "")
        width = max(
            titles.horizontalAdvance(title), metrics.horizontalAdvance(samples.get(column, ""))
        )
        header.resizeSection(column, width + COLUMN_PADDING)
    table.verticalHeader().setDefaultSectionSize(metrics.height() + 6)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
