"""Notices of what just happened: one key relabeling many tiles (a banner with an Undo
button), and where a new frame's threshold came from (a status-line note).

One key can relabel every selected tile (253 after Ctrl+A). Asking before each such key
would slow down the deliberate bulk labels; saying nothing hid a slip from a new user.
`UndoBanner` says what was done, stays until the next label change (or the ✕), and
undoes that very action with one click: any later label change hides it, so its Undo
never reaches a newer action.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

from rbvet.core.session import UNLABELED, count_text, label_name


def many_labeled_text(count, label):
    """What one key did to many tiles, e.g. ``"One key labeled 253 objects bogus."``."""
    objects = count_text(count, "object")
    if label == UNLABELED:
        return f"One key cleared the labels of {objects}."
    return f"One key labeled {objects} {label_name(label)}."


def threshold_note(previous, threshold, carried):
    """Where a newly shown frame's threshold comes from, when worth saying; else ``""``.

    Parameters
    ----------
    previous : float or None
        The threshold on the frame shown before (None: no frame was shown).
    threshold : float
        The new frame's threshold.
    carried : bool
        It was kept from the previous frame (not set from the model).
    """
    if previous is None:
        return ""
    if carried:
        return f"threshold {threshold:.3f} carried over from the previous frame"
    if round(previous, 6) != round(threshold, 6):
        return f"threshold {threshold:.3f} is the model's (it was {previous:.3f} before)"
    return ""


class UndoBanner(QWidget):
    """A dismissable notice of a labeling action with an Undo button.

    Attributes
    ----------
    label : QLabel
    undo_button : QPushButton

    Signals
    -------
    undoRequested()
        Undo was clicked (the banner hides itself first).
    """

    undoRequested = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo this one action (Ctrl+Z does the same)")
        self.undo_button.clicked.connect(self._undo)
        close = QToolButton(text="✕")
        close.setAutoRaise(True)
        close.setToolTip("Keep the labels and hide this notice")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.undo_button)
        layout.addWidget(close)
        self.setStyleSheet("background: #1f3d5c; color: #e0f0ff;")
        self.setAutoFillBackground(True)
        self.hide()

    def show_labeled(self, count, label):
        """Say that one key gave ``label`` to ``count`` objects."""
        self.label.setText(many_labeled_text(count, label) + " Undo if that was a slip.")
        self.show()

    @property
    def message(self):
        return self.label.text() if self.isVisible() else ""

    def _undo(self):
        self.hide()
        self.undoRequested.emit()
