"""Everything about the selected object: what the CNN saw, the raw pixels, the numbers.

`DetailPanel` follows `VettingState.selectionChanged`. For the selected object it shows

- both preprocessed channels ("linear", "asinh") enlarged, from the object's tile in
  `VettingData.atlas` (what the grid and the CNN see);
- the raw science stamp, cut afresh with `rbvet.core.cutouts.stamps.cut_stamps` (or the one
  kept with the data: `VettingData.stamps`, an injected object's), with its own interval
  and stretch (`rbvet.gui.stretch`) and ticks pointing at the catalog position;
- score and verdict at the current threshold, reason (when unscored), label, position
  (x, y and RA/Dec when the frame has a WCS);
- the object's catalog row as a (column, value) table;
- once the uncertainty job has run: BALD, and the nearest labeled objects in the network's
  feature space (`rbvet.core.learn.feature_space.nearest_labeled`), as links that select
  them: how objects the network sees alike were labeled.

All images are drawn with row 0 at the bottom, as in the frame view. With nothing
selected the panel shows a "select a cutout" placeholder.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtGui import QFont, QPainterPath
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.cutouts.atlas import TILE_GAP
from rbvet.core.cutouts.stamps import cut_stamps, stamp_origins
from rbvet.core.session import BOGUS, REAL, label_name
from rbvet.gui.stretch import (
    BOGUS_COLOR,
    INTERVAL_NAMES,
    LABELED_BOGUS_COLOR,
    LABELED_REAL_COLOR,
    REAL_COLOR,
    SELECTION_COLOR,
    STRETCH_NAMES,
    UNSCORED_COLOR,
    hex_color,
    to_uint8,
)

EMPTY_TEXT = "select a cutout"
DEFAULT_RAW_INTERVAL = "min-max"
DEFAULT_RAW_STRETCH = "asinh"
TICKS_OUTER_FWHM = 4.0
"""The position ticks on the raw stamp reach from 0.6 to 1 times this many FWHM."""
_LABEL_COLOR = {REAL: LABELED_REAL_COLOR, BOGUS: LABELED_BOGUS_COLOR}


class DetailPanel(QWidget):
    """The selected object's channels, raw stamp, score, position and catalog row.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    parent : QWidget, optional

    Attributes
    ----------
    title_label : QLabel
        The selected object's place in the grid and its catalog row ("tile 3 of 253 ·
        catalog row 17", see `set_grid_order`), or "select a cutout".
    linear_item, asinh_item : pyqtgraph.ImageItem
        The two preprocessed channels (uint8, from the atlas tile).
    raw_item : pyqtgraph.ImageItem
        The raw stamp, pixel centres at the object's frame coordinates.
    raw_image : ndarray (S, S) uint8 or None
        The raw stamp as displayed (``S = rescale.stamp_size``); None when empty.
    raw_interval_combo, raw_stretch_combo : QComboBox
        Interval and stretch of the raw stamp.
    score_label, label_label, reason_label, position_label, sky_label : QLabel
    row_table : QTableWidget
        The object's catalog row: column name, value (with unit).
    """

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.raw_image = None
        self._raw_stamp = None  # float32 raw stamp of the selected object

        self.title_label = QLabel(EMPTY_TEXT)
        title_font = QFont(self.title_label.font())
        if title_font.pointSizeF() > 0:
            title_font.setPointSizeF(title_font.pointSizeF() * 1.2)
        title_font.setBold(True)
        self.title_label.setFont(title_font)

        self.images = pg.GraphicsLayoutWidget()
        self.images.ci.setSpacing(4)
        self.linear_item, self.linear_view = self._add_image("linear", 0)
        self.asinh_item, self.asinh_view = self._add_image("asinh", 1)
        self.raw_item, self.raw_view = self._add_image("raw", 2)
        self.position_ticks = pg.ScatterPlotItem(
            pxMode=False,
            symbol=_ticks_symbol(),
            brush=None,
            pen=pg.mkPen(SELECTION_COLOR, width=1.5),
        )
        self.raw_view.addItem(self.position_ticks)

        self.raw_interval_combo = QComboBox()
        self.raw_interval_combo.addItems(list(INTERVAL_NAMES))
        self.raw_interval_combo.setCurrentText(DEFAULT_RAW_INTERVAL)
        self.raw_interval_combo.setToolTip("Pixel values shown in the raw stamp")
        self.raw_stretch_combo = QComboBox()
        self.raw_stretch_combo.addItems(list(STRETCH_NAMES))
        self.raw_stretch_combo.setCurrentText(DEFAULT_RAW_STRETCH)
        self.raw_stretch_combo.setToolTip("Stretch of the raw stamp")

        self.score_label = QLabel()
        self.label_label = QLabel()
        self.reason_label = QLabel()
        self.position_label = QLabel()
        self.sky_label = QLabel()
        self.neighbours_label = QLabel()
        self.neighbours_label.setTextFormat(Qt.TextFormat.RichText)  # links; &nbsp; with none
        self.neighbours_label.setWordWrap(True)
        self.neighbours_label.setToolTip(
            "The labeled objects nearest to this one in the network's feature space "
            "(distance in features); click one to select it"
        )
        self.neighbours_label.linkActivated.connect(lambda link: state.select(int(link)))
        for label in (self.position_label, self.sky_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.row_table = QTableWidget(0, 2)
        self.row_table.setHorizontalHeaderLabels(["column", "value"])
        self.row_table.verticalHeader().setVisible(False)
        self.row_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.row_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.row_table.setAlternatingRowColors(True)
        self.row_table.setWordWrap(False)
        header = self.row_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.row_table.verticalHeader().setDefaultSectionSize(
            self.row_table.fontMetrics().height() + 6
        )

        raw_controls = QHBoxLayout()
        raw_controls.addWidget(QLabel("Raw"))
        raw_controls.addWidget(self.raw_interval_combo)
        raw_controls.addWidget(self.raw_stretch_combo)
        raw_controls.addStretch(1)
        facts = QFormLayout()
        facts.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        facts.setVerticalSpacing(2)
        facts.addRow("score", self.score_label)
        facts.addRow("label", self.label_label)
        facts.addRow("not scored", self.reason_label)
        facts.addRow("position", self.position_label)
        facts.addRow("sky", self.sky_label)
        facts.addRow("labeled nearby", self.neighbours_label)
        self._facts = facts

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(4)
        content_layout.addWidget(self.images)
        self.content_layout = content_layout  # more sections go under the images
        content_layout.addLayout(raw_controls)
        content_layout.addLayout(facts)
        content_layout.addWidget(self.row_table, 1)

        self.placeholder = QLabel(
            "Click a cutout in the grid or a marker on the frame\n"
            "to see its channels, raw pixels and catalog row."
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setEnabled(False)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(content)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self.title_label)
        layout.addWidget(self.stack, 1)

        self.raw_interval_combo.currentTextChanged.connect(self._draw_raw)
        self.raw_stretch_combo.currentTextChanged.connect(self._draw_raw)
        state.dataChanged.connect(self._show_selection)
        state.selectionChanged.connect(self._show_selection)
        state.thresholdChanged.connect(self._update_score)
        state.labelsChanged.connect(self._on_labels_changed)
        self._grid_order = None
        state.labelsChanged.connect(self._update_neighbours)
        state.uncertaintyChanged.connect(self._update_neighbours)
        self._show_selection()

    def set_grid_order(self, order):
        """Number the selected object by its place in the grid, not only its catalog row.

        Parameters
        ----------
        order : object
            The grid's display order: ``row_of(object_index)`` (-1 when filtered out),
            ``rowCount()`` and an ``orderChanged`` signal (`rbvet.gui.grid.TileProxy`).
        """
        self._grid_order = order
        order.orderChanged.connect(self._update_title)
        self._update_title()

    # ------------------------------------------------------------------ building

    def _add_image(self, caption, column):
        """A caption over an aspect-locked, non-interactive view holding one ImageItem."""
        self.images.addLabel(caption, row=0, col=column, size="9pt", color=(200, 200, 200))
        view = self.images.addViewBox(row=1, col=column, lockAspect=True, enableMouse=False)
        view.setMenuEnabled(False)
        view.invertY(False)
        view.setDefaultPadding(0.0)
        item = pg.ImageItem(axisOrder="row-major")
        view.addItem(item)
        return item, view

    def resizeEvent(self, event):
        """Keep the three image views square: their row is a third of the width high."""
        super().resizeEvent(event)
        caption = self.images.fontMetrics().height() + 14
        self.images.setFixedHeight(max(100, (self.width() - 12) // 3 + caption))

    # ------------------------------------------------------------------ state slots

    def _show_selection(self, *_):
        data, index = self.state.data, self.state.selected
        if data is None or index < 0:
            self._clear()
            return
        self._update_title()
        self.stack.setCurrentIndex(1)
        self._draw_channels(data, index)
        self._cut_raw(data, index)
        self._draw_raw()
        self._update_score()
        self._update_label()
        self._update_position(data, index)
        self._fill_row_table(data, index)
        self._update_neighbours()

    def _update_neighbours(self, *_):
        """BALD and the nearest labeled objects in feature space (when features exist)."""
        from rbvet.core.learn.feature_space import nearest_labeled

        data, index = self.state.data, self.state.selected
        if data is None or index < 0 or data.features is None:
            self._facts.setRowVisible(self.neighbours_label, False)
            return
        neighbours, distances = nearest_labeled(data.features, data.labels, index)
        bald = data.bald[index] if data.bald is not None else np.nan
        parts = [f"BALD {bald:.3f}" if np.isfinite(bald) else "BALD —"]
        for neighbour, distance in zip(neighbours.tolist(), distances.tolist(), strict=True):
            label = int(data.labels[neighbour])
            colour = hex_color(_LABEL_COLOR[label])
            parts.append(
                f"<a href='{neighbour}' style='color:{colour}'>#{neighbour} {label_name(label)}"
                f"</a> ({distance:.1f})"
            )
        if not len(neighbours):
            parts.append("no labeled objects yet")
        self.neighbours_label.setText(";&nbsp; ".join(parts))
        self._facts.setRowVisible(self.neighbours_label, True)

    def _update_title(self):
        data, index = self.state.data, self.state.selected
        if data is None or index < 0:
            return
        order = self._grid_order
        row = -1 if order is None else order.row_of(index)
        if row >= 0:
            text = f"tile {row + 1} of {order.rowCount()} · catalog row {index}"
        elif order is not None:
            text = f"catalog row {index} of {len(data)} (not in the grid: filtered out)"
        else:
            text = f"catalog row {index} of {len(data)}"
        self.title_label.setText(text)

    def _clear(self):
        self.title_label.setText(EMPTY_TEXT)
        self.stack.setCurrentIndex(0)
        self.raw_image = None
        self._raw_stamp = None
        for item in (self.linear_item, self.asinh_item, self.raw_item):
            item.clear()
        self.position_ticks.clear()
        self.row_table.setRowCount(0)
        for label in (self.score_label, self.label_label, self.reason_label):
            label.clear()
        self.position_label.clear()
        self.sky_label.clear()
        self.neighbours_label.clear()

    def _on_labels_changed(self, indices):
        if self.state.selected in np.atleast_1d(indices):
            self._update_label()

    # ------------------------------------------------------------------ images

    def _draw_channels(self, data, index):
        """The two CNN channels from the object's atlas tile (black without a stamp)."""
        tile = data.atlas[index][::-1]  # tiles are pictures (top row first); views are y-up
        size = tile.shape[0]
        for item, view, channel in (
            (self.linear_item, self.linear_view, tile[:, :size]),
            (self.asinh_item, self.asinh_view, tile[:, size + TILE_GAP :]),
        ):
            item.setImage(channel, autoLevels=False, levels=(0, 255))
            view.setRange(QRectF(0, 0, channel.shape[1], channel.shape[0]), padding=0)

    def _cut_raw(self, data, index):
        x, y = float(data.x[index]), float(data.y[index])
        if not (np.isfinite(x) and np.isfinite(y)):
            self._raw_stamp = None
            return
        if data.stamps is not None:  # kept with the data (an injected object)
            self._raw_stamp = data.stamps[index]
        else:
            self._raw_stamp = cut_stamps(data.frame, [x], [y], data.rescale).data[0]
        col0, row0 = stamp_origins([x], [y], data.rescale)
        size = self._raw_stamp.shape[0]
        self.raw_item.setPos(col0[0] - 0.5, row0[0] - 0.5)
        self.raw_view.setRange(QRectF(col0[0] - 0.5, row0[0] - 0.5, size, size), padding=0)
        fwhm = data.fwhm if np.isfinite(data.fwhm) and data.fwhm > 0 else 3.0
        self.position_ticks.setData(x=[x], y=[y], size=2 * TICKS_OUTER_FWHM * fwhm)

    def _draw_raw(self, *_):
        """Render the raw stamp with the chosen interval and stretch."""
        if self._raw_stamp is None:
            self.raw_image = None
            self.raw_item.clear()
            self.position_ticks.clear()
            return
        self.raw_image = to_uint8(
            self._raw_stamp,
            interval=self.raw_interval_combo.currentText(),
            stretch=self.raw_stretch_combo.currentText(),
        )
        self.raw_item.setImage(self.raw_image, autoLevels=False, levels=(0, 255))

    # ------------------------------------------------------------------ facts

    def _update_score(self, *_):
        data, index = self.state.data, self.state.selected
        if data is None or index < 0:
            return
        score = float(data.scores[index])
        reason = str(data.reasons[index])
        if np.isfinite(score):
            threshold = self.state.threshold
            real = score >= threshold
            verdict, color = ("real", REAL_COLOR) if real else ("bogus", BOGUS_COLOR)
            sign = "≥" if real else "&lt;"
            self.score_label.setText(
                f"<b>{score:.3f}</b> &nbsp;<span style='color:{hex_color(color)}'>{verdict}</span>"
                f" ({sign} t = {threshold:.3f})"
            )
        else:
            self.score_label.setText(f"<span style='color:{hex_color(UNSCORED_COLOR)}'>—</span>")
        self.reason_label.setText(reason)
        self._facts.setRowVisible(self.reason_label, bool(reason))

    def _update_label(self):
        data, index = self.state.data, self.state.selected
        if data is None or index < 0:
            return
        label = int(data.labels[index])
        if self.state.session.read_only:  # injected objects: never labels
            self.label_label.setText("— (injected: never labeled)")
        elif label in _LABEL_COLOR:
            self.label_label.setText(
                f"<span style='color:{hex_color(_LABEL_COLOR[label])}'><b>{label_name(label)}</b>"
                "</span>"
            )
        else:
            self.label_label.setText(label_name(label))

    def _update_position(self, data, index):
        x, y = float(data.x[index]), float(data.y[index])
        self.position_label.setText(f"x {x:.2f}   y {y:.2f}   (0-based px)")
        wcs = data.frame.wcs
        sky = ""
        if wcs is not None and np.isfinite(x) and np.isfinite(y):
            sky = _sky_text(wcs, x, y)
        self.sky_label.setText(sky)
        self._facts.setRowVisible(self.sky_label, bool(sky))

    def _fill_row_table(self, data, index):
        """The catalog row as (column, value) pairs, one table row per column."""
        table = data.table
        self.row_table.setRowCount(len(table.colnames))
        for row, name in enumerate(table.colnames):
            column = table[name]
            value = _format_value(column[index])
            if column.unit is not None and value != "—":
                value = f"{value} {column.unit}"
            name_item = QTableWidgetItem(name)
            value_item = QTableWidgetItem(value)
            value_item.setTextAlignment(
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            )
            self.row_table.setItem(row, 0, name_item)
            self.row_table.setItem(row, 1, value_item)


def _ticks_symbol():
    """Four ticks pointing at the centre from outside, so the object stays uncovered."""
    path = QPainterPath()
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        path.moveTo(0.3 * dx, 0.3 * dy)
        path.lineTo(0.5 * dx, 0.5 * dy)
    return path


def _sky_text(wcs, x, y):
    """RA/Dec of pixel (x, y), sexagesimal and in degrees; empty if the WCS fails."""
    try:
        coord = wcs.pixel_to_world(x, y)
        icrs = coord.icrs
        sexagesimal = icrs.to_string("hmsdms", sep=":", precision=2)
        return f"{sexagesimal}   ({icrs.ra.deg:.6f}°, {icrs.dec.deg:+.6f}°)"
    except Exception:  # an exotic WCS is shown as "no sky position", never an error
        return ""


def _format_value(value):
    """A catalog cell as text: floats at their own precision, masked as an em dash."""
    if value is np.ma.masked or isinstance(value, np.ma.core.MaskedConstant):
        return "—"
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.floating):
        if not np.isfinite(value):
            return str(value)
        return str(value) if value.dtype == np.float32 else f"{value:.10g}"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=4, threshold=8)
    return str(value)
