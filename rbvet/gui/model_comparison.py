"""A table of the current against a new model on one held-out set: AUC, FNR and FPR.

The retraining dialog shows one (held-out labeled objects); adapting shows two, one per
held-out set (injection rounds and labeled objects), so the table is one widget.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout

BETTER_COLOR = "#8fd18f"
WORSE_COLOR = "#f0a070"

METRICS = (
    ("auc", "AUC", False, True),
    ("fnr", "FNR (real lost)", True, False),
    ("fpr", "FPR (bogus kept)", True, False),
)
"""(key, label, shown as percent, higher is better)."""


class ComparisonTable(QGroupBox):
    """Old and new model side by side on one held-out set, with the change coloured.

    Parameters
    ----------
    title : str
        What the held-out set is (the box's title).
    parent : QWidget, optional

    Attributes
    ----------
    note : QLabel
        What was compared (counts, threshold), or why nothing was.
    headers : dict
        ``headers[which]`` for which in 'old', 'new', 'change'.
    cells : dict
        ``cells[(metric, which)]``: metric 'auc', 'fnr', 'fpr'; which 'old', 'new',
        'change'.
    """

    def __init__(self, title, parent=None):
        super().__init__(title, parent)
        self.note = QLabel()
        self.note.setWordWrap(True)
        grid = QGridLayout()
        grid.setHorizontalSpacing(24)
        self.headers = {which: QLabel(which) for which in ("old", "new", "change")}
        self.headers["old"].setText("current")
        bold = QFont(self.font())
        bold.setBold(True)
        for column, which in enumerate(("old", "new", "change"), start=1):
            header = self.headers[which]
            header.setFont(bold)
            header.setAlignment(Qt.AlignmentFlag.AlignRight)
            grid.addWidget(header, 0, column)
        self.cells = {}
        for row, (key, title_text, _, _) in enumerate(METRICS, start=1):
            grid.addWidget(QLabel(title_text), row, 0)
            for column, which in enumerate(("old", "new", "change"), start=1):
                cell = QLabel()
                cell.setAlignment(Qt.AlignmentFlag.AlignRight)
                cell.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                self.cells[(key, which)] = cell
                grid.addWidget(cell, row, column)
        grid.setColumnStretch(4, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(grid)
        self._grid = grid

    def show_comparison(self, comparison, what):
        """Fill the table from `rbvet.core.learn.retrain.compare_models` and show it.

        Parameters
        ----------
        comparison : dict
            ``{"old": {...}, "new": {...}}``.
        what : str
            The held-out objects in words ("labeled objects", "injected objects").
        """
        from rbvet.core.learn.retrain import format_number

        old, new = comparison["old"], comparison["new"]
        self.note.setText(
            f"{old['objects']} {what} ({old['real']} real, {old['bogus']} bogus) "
            f"the new model never saw; FNR and FPR at the threshold {old['threshold']:.3f}."
        )
        self.headers["old"].setText(f"current ({old['name']})")
        self._set_grid_visible(True)
        for key, _, percent, higher_better in METRICS:
            before, after = old[key], new[key]
            self.cells[(key, "old")].setText(format_number(before, percent))
            self.cells[(key, "new")].setText(format_number(after, percent))
            change = self.cells[(key, "change")]
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
        self.show()

    def show_nothing(self, reason):
        """Show the box with only ``reason`` (nothing of this kind was held out)."""
        self.note.setText(reason)
        self._set_grid_visible(False)
        for cell in self.cells.values():
            cell.setText("")
        self.show()

    def _set_grid_visible(self, visible):
        for index in range(self._grid.count()):
            self._grid.itemAt(index).widget().setVisible(visible)
