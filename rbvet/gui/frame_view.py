"""The full frame with a marker on every object, as an astronomer sees it in DS9.

`FrameView` draws the frame once as a uint8 display image (interval and stretch from
`rbvet.gui.stretch`) in a pyqtgraph `ImageItem` whose pixel centres sit at integer
0-based coordinates, row 0 at the bottom. The objects are one scatter item of open
circles, coloured by score relative to the threshold (or by label once labeled); the
selected object gets its own highlight item. The panel only reads `VettingState` and
follows its signals; clicking a marker selects the object through the state.

A big frame stays responsive: the image is drawn from a pyramid level about as coarse as
the screen (the display can be made ahead in a worker, `prepare_display`), markers share a
few pens and are set without per-point Python work (`MarkerScatter`), and with many
objects only the markers in and near the view are drawn, refreshed once the view settles.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt, QTimer
from PyQt6.QtGui import QPainterPath, QTransform
from PyQt6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.session import BOGUS, REAL, UNLABELED, count_text
from rbvet.gui.stretch import (
    BOGUS_COLOR,
    INTERVAL_NAMES,
    LABELED_BOGUS_COLOR,
    LABELED_REAL_COLOR,
    REAL_COLOR,
    SELECTION_COLOR,
    STRETCH_NAMES,
    THRESHOLD_COLOR,
    UNSCORED_COLOR,
    display_limits,
    score_colors,
    to_uint8,
)

SHOW_ALL, SHOW_REAL, SHOW_BOGUS = "all", "real only", "bogus only"
SHOW_OPTIONS = (SHOW_ALL, SHOW_REAL, SHOW_BOGUS)

DEFAULT_INTERVAL = "zscale"
DEFAULT_STRETCH = "linear"

MARKER_DIAMETER_FWHM = 5.0
"""Marker diameter in units of the frame's FWHM (image pixels)."""
MIN_MARKER_PIXELS = 10
"""Smallest marker on screen, so markers stay visible on a zoomed-out big frame."""
MAX_MARKER_PIXELS = 90
MARKER_PEN_WIDTH = 1.4
LABELED_PEN_WIDTH = 2.4
PYRAMID_MAX_SIDE = 2048
"""The display pyramid halves the image until its longer side is at most this."""
COLOR_STEPS = 8
"""Colours per side of the threshold (markers share a handful of pens)."""
CONTEXT_PIXELS = 512
"""Selecting an object zooms in to about this width (or 60 FWHM) when zoomed further out."""
CONTEXT_FWHM = 60.0
RELABEL_REDRAW_ALL = 200
"""Relabeling more objects than this redraws all markers instead of re-penning each."""
RELABEL_DELAY_MS = 250
"""Markers follow labels this long after the last one (off the keypress's repaint)."""
NO_FRAME_TEXT = "No frame: File › Open frame…, or drop a FITS file here"
"""The readout with no frame (the view has no axes then)."""
MARKER_CULL_OBJECTS = 5000
"""With more markers to draw than this, only those in and near the view are drawn."""
MARKER_CULL_MARGIN = 0.5
"""Culled markers are drawn this many view widths (heights) beyond each side of the view,
so a short pan finds them already there."""
VIEW_SETTLE_MS = 50
"""Culled markers follow the view this long after it last moved."""
DEFER_DRAW_OBJECTS = 100_000
"""Frames with more objects than this are drawn in the event-loop turn after the grid."""
DEFER_DRAW_MS = 1
MAX_DRAWN_MARKERS = 20_000
"""At most this many markers are drawn at once. With more objects in and near the view, a
fixed sample of them is drawn (labeled objects first) and a note says so: a million circles
take seconds to set and paint and show no more than their density does."""


class FrameView(QWidget):
    """The frame with object markers, zoom and pan, stretch and a "show" filter.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    parent : QWidget, optional

    Attributes
    ----------
    plot : pyqtgraph.PlotWidget
    view_box : pyqtgraph.ViewBox
        Aspect locked, y up: row 0 of the image at the bottom, as in DS9.
    image_item : pyqtgraph.ImageItem
        Shows the uint8 display image; pixel ``(row, col)`` is centred on ``(col, row)``.
    scatter : pyqtgraph.ScatterPlotItem
        One open circle per drawn object; each point's ``data()`` is its object index.
        With more than `MARKER_CULL_OBJECTS` to draw, only those in and near the view are.
    highlight : pyqtgraph.ScatterPlotItem
        The selected object's marker (empty when nothing is selected).
    display_image : ndarray (H, W) uint8 or None
        The full-resolution display image (a zoomed-out view draws a halved copy).
    interval_combo, stretch_combo, show_combo : QComboBox
    fit_button : QToolButton
    readout : QLabel
        Position, pixel value (and RA/Dec) under the cursor; a frame summary otherwise.
    legend : QLabel
        What the marker colours mean.

    Methods
    -------
    visible_marker_indices()
        Object indices of the markers drawn.
    view_center()
        Centre of the visible area in image pixels.
    center_on(x, y)
        Pan to a position.
    fit_frame()
        Show the whole frame.
    """

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self._pyramid = []  # uint8 display image, then halved copies (see display_pyramid)
        self._level = -1  # pyramid level the ImageItem shows
        self._limits = {}  # interval name -> (vmin, vmax) for the current frame
        self._drawable = np.zeros(0, np.intp)  # objects the show filter keeps, in order
        self._visible = np.zeros(0, np.intp)  # those drawn (all, or the ones near the view)
        self._marker_pixels = 0
        self._pens = _PenCache()
        self._draw_rank = np.zeros(0, np.float64)  # per object: lower is drawn first
        self._drawn_data = None  # the data whose image and markers are drawn

        self.interval_combo = _combo(INTERVAL_NAMES, DEFAULT_INTERVAL, "Pixel values shown")
        self.stretch_combo = _combo(STRETCH_NAMES, DEFAULT_STRETCH, "Display stretch")
        self.show_combo = _combo(
            SHOW_OPTIONS, SHOW_ALL, "Markers to draw, split at the current threshold"
        )
        self.fit_button = QToolButton(text="Fit")
        self.fit_button.setToolTip("Show the whole frame")

        self.plot = pg.PlotWidget()
        self.view_box = self.plot.getViewBox()
        self.view_box.setAspectLocked(True)
        self.view_box.invertY(False)
        self.view_box.setMenuEnabled(False)
        self.plot.hideButtons()
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setStyle(tickTextOffset=4)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setZValue(0)
        self.image_item.setPos(-0.5, -0.5)  # pixel (row, col) centred on (x=col, y=row)
        self.scatter = MarkerScatter(symbol="o", size=10)
        self.scatter.setZValue(10)
        self.highlight = pg.ScatterPlotItem(
            pxMode=True,
            symbol=_reticle_symbol(),
            brush=None,
            pen=pg.mkPen(SELECTION_COLOR, width=2),
        )
        self.highlight.setZValue(20)
        self.plot.addItem(self.image_item)
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.highlight)

        self.readout = QLabel(" ")
        # Long readouts are clipped rather than widening the whole window.
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setMinimumWidth(120)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.marker_note = QLabel()
        self.marker_note.setToolTip("Zoom in to see every marker in the view")
        self.marker_note.hide()
        self.legend = QLabel(_legend_html())
        self.legend.setToolTip(
            "Marker colour: score relative to the threshold, or the label once labeled"
        )

        controls = QHBoxLayout()
        for text, combo in (
            ("Interval", self.interval_combo),
            ("Stretch", self.stretch_combo),
            ("Show", self.show_combo),
        ):
            label = QLabel(text)
            label.setBuddy(combo)
            controls.addWidget(label)
            controls.addWidget(combo)
            controls.addSpacing(8)
        controls.addStretch(1)
        controls.addWidget(self.fit_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addWidget(self.plot, 1)
        footer = QHBoxLayout()
        footer.addWidget(self.readout, 1)
        footer.addWidget(self.marker_note)
        footer.addWidget(self.legend)
        layout.addLayout(footer)

        self.interval_combo.currentTextChanged.connect(self._render_image)
        self.stretch_combo.currentTextChanged.connect(self._render_image)
        self.show_combo.currentTextChanged.connect(self._update_markers)
        self.fit_button.clicked.connect(self.fit_frame)
        self.scatter.sigClicked.connect(self._on_marker_clicked)
        self.view_box.sigTransformChanged.connect(self._update_view_scale)
        self.view_box.sigRangeChanged.connect(self._on_view_moved)
        self.plot.scene().sigMouseMoved.connect(self._update_readout)
        self._view_settle_timer = QTimer(self)
        self._view_settle_timer.setSingleShot(True)
        self._view_settle_timer.setInterval(VIEW_SETTLE_MS)
        self._view_settle_timer.timeout.connect(self._draw_markers)
        state.dataChanged.connect(self._on_data_changed)
        state.thresholdChanged.connect(self._update_markers)
        state.selectionChanged.connect(self._on_selection_changed)
        self._relabeled = []
        self._relabel_timer = QTimer(self)
        self._relabel_timer.setSingleShot(True)
        self._relabel_timer.setInterval(RELABEL_DELAY_MS)
        self._relabel_timer.timeout.connect(self._apply_relabels)
        state.labelsChanged.connect(self._on_labels_changed)
        self._on_data_changed()

    # ------------------------------------------------------------------ public API

    def visible_marker_indices(self):
        """Object indices of the markers currently drawn, in drawing order.

        Returns
        -------
        ndarray (M,) intp
        """
        return self._visible.copy()

    def view_center(self):
        """Centre of the visible area, in 0-based image pixels.

        Returns
        -------
        x, y : float
        """
        centre = self.view_box.viewRect().center()
        return centre.x(), centre.y()

    def center_on(self, x, y):
        """Pan so that image pixel ``(x, y)`` is at the centre of the view.

        The zoom is kept, except that a view much wider than the object's surroundings
        (`CONTEXT_PIXELS`, or `CONTEXT_FWHM` FWHM) zooms in to them. The view does not pan
        past the frame's edges, so an object near an edge is off-centre rather than the
        view half empty.
        """
        rect = self.view_box.viewRect()
        width, height = rect.width(), rect.height()
        data = self.state.data
        fwhm = data.fwhm if data is not None and np.isfinite(data.fwhm) else 3.0
        context = max(CONTEXT_PIXELS, CONTEXT_FWHM * fwhm)
        if min(width, height) > 2 * context:
            scale = context / min(width, height)
            width, height = width * scale, height * scale
        if self.display_image is not None:
            rows, cols = self.display_image.shape
            x, y = _centre_over_image(x, width, cols), _centre_over_image(y, height, rows)
        self.view_box.setRange(QRectF(x - width / 2, y - height / 2, width, height), padding=0)

    def fit_frame(self):
        """Zoom out to show the whole frame."""
        if self.display_image is None:
            return
        height, width = self.display_image.shape
        self.view_box.setRange(QRectF(-0.5, -0.5, width, height), padding=0.02)

    @property
    def display_image(self):
        """The full-resolution uint8 display image of the frame, or None."""
        return self._pyramid[0] if self._pyramid else None

    # ------------------------------------------------------------------ state slots

    def _on_data_changed(self):
        data = self.state.data
        self._limits = {}
        self._relabeled = []
        self._relabel_timer.stop()
        self._view_settle_timer.stop()
        self._visible = np.zeros(0, np.intp)  # the new objects' markers are all new
        self._drawable = np.zeros(0, np.intp)
        self.scatter.clear()
        self.highlight.clear()  # a new frame comes with no selection
        self.marker_note.hide()
        self._drawn_data = None
        self._show_axes(data is not None)
        if data is None:
            self._pyramid = []
            self._level = -1
            self.image_item.clear()
            self.readout.setText(NO_FRAME_TEXT)
            return
        if len(data) > DEFER_DRAW_OBJECTS:
            # Drawn in the next turn of the event loop: the grid shows the new objects
            # first, and the window never stalls for the two panels' work at once.
            self.image_item.clear()
            # A timer, not a posted call: input and paint events get their turn between.
            QTimer.singleShot(DEFER_DRAW_MS, lambda: self._draw_data(data))
        else:
            self._draw_data(data)

    def _show_axes(self, shown):
        """Pixel axes with a frame; none without one (they would show a meaningless range)."""
        for side in ("left", "bottom"):
            self.plot.getPlotItem().showAxis(side, shown)

    def _draw_data(self, data):
        """The new frame's image, whole in the view, and its markers."""
        if data is not self.state.data:
            return  # replaced before it was drawn
        self._drawn_data = data
        self._draw_rank = np.random.default_rng(0).permutation(len(data)).astype(np.float64)
        self._render_image()
        self.readout.setText(self._summary())
        self.fit_frame()  # first, so that culled markers are picked for the new view
        self._update_markers()
        if len(data) > DEFER_DRAW_OBJECTS and self.state.selected >= 0:
            self._on_selection_changed(self.state.selected)  # selected while deferred

    def _render_image(self):
        """Make the uint8 display image (and its pyramid) for the interval and stretch."""
        data = self.state.data
        if data is None:
            return
        frame = data.frame
        interval = self.interval_combo.currentText()
        stretch = self.stretch_combo.currentText()
        prepared = _prepared_displays.pop(frame, None)
        if prepared is not None:
            self._limits.setdefault(prepared.interval, prepared.limits)
        if prepared is not None and (prepared.interval, prepared.stretch) == (interval, stretch):
            self._pyramid = prepared.pyramid
        else:
            if interval not in self._limits:
                self._limits[interval] = display_limits(frame.image, interval, frame.mask)
            display = to_uint8(frame.image, stretch=stretch, limits=self._limits[interval])
            self._pyramid = display_pyramid(display)
        self._level = -1
        self._update_view_scale()

    def _update_markers(self, *_):
        """Redraw the markers: which objects (show filter) and their colours."""
        data = self.state.data
        if data is None or data is not self._drawn_data:
            return  # nothing, or not drawn yet (`_draw_data` draws them)
        threshold = self.state.threshold
        scores = data.scores
        drawable = np.isfinite(data.x) & np.isfinite(data.y)
        show = self.show_combo.currentText()
        with np.errstate(invalid="ignore"):
            if show == SHOW_REAL:
                drawable &= scores >= threshold
            elif show == SHOW_BOGUS:
                drawable &= scores < threshold
        self._drawable = np.flatnonzero(drawable)
        self._draw_markers(recolour=True)

    def _draw_markers(self, recolour=False):
        """Set the scatter's points: every drawable object, or with many of them the ones
        within `MARKER_CULL_MARGIN` of the view.

        Parameters
        ----------
        recolour : bool
            Give the markers already drawn their current colours (else they are kept).
        """
        data = self.state.data
        if data is None:
            return
        drawable = self._drawable
        if len(drawable) > MARKER_CULL_OBJECTS:
            rect = self.view_box.viewRect()
            margin_x = MARKER_CULL_MARGIN * rect.width()
            margin_y = MARKER_CULL_MARGIN * rect.height()
            x, y = data.x[drawable], data.y[drawable]
            near = (
                (x >= rect.left() - margin_x)
                & (x <= rect.right() + margin_x)
                & (y >= rect.top() - margin_y)
                & (y <= rect.bottom() + margin_y)
            )
            drawable = drawable[near]
        drawable = self._sample_markers(drawable)
        if np.array_equal(drawable, self._visible):
            if recolour:
                self.scatter.set_pens(slice(None), *self._marker_pens(drawable))
            return
        self._visible = drawable
        self._marker_pixels = self._marker_size()
        self.scatter.set_markers(
            data.x[drawable],
            data.y[drawable],
            drawable,
            *self._marker_pens(drawable),
            size=self._marker_pixels,
        )

    def _sample_markers(self, indices):
        """At most `MAX_DRAWN_MARKERS` of ``indices`` (sorted): labeled objects first, then
        a fixed random sample, so markers do not flicker as the view moves."""
        if len(indices) <= MAX_DRAWN_MARKERS:
            self.marker_note.hide()
            return indices
        rank = self._draw_rank[indices]
        rank[self.state.data.labels[indices] != UNLABELED] -= len(self._draw_rank)
        keep = np.argpartition(rank, MAX_DRAWN_MARKERS - 1)[:MAX_DRAWN_MARKERS]
        self.marker_note.setText(f"markers: {MAX_DRAWN_MARKERS:,} of {len(indices):,}")
        self.marker_note.show()
        return np.sort(indices[keep])

    def _on_view_moved(self, *_):
        """With culled markers, draw those near the new view once it settles."""
        if len(self._drawable) > MARKER_CULL_OBJECTS:
            self._view_settle_timer.start()

    def _marker_pens(self, indices):
        """Pens of the objects at ``indices``: colour by score, or by label when labeled.

        Returns
        -------
        pens : ndarray (S,) object
            The distinct pens.
        styles : ndarray (len(indices),) intp
            Each object's pen, as an index into ``pens``.
        """
        data = self.state.data
        colors = score_colors(data.scores[indices], self.state.threshold, steps=COLOR_STEPS)
        widths = np.full(len(indices), MARKER_PEN_WIDTH)
        labels = data.labels[indices]
        for label, color in ((REAL, LABELED_REAL_COLOR), (BOGUS, LABELED_BOGUS_COLOR)):
            colors[labels == label] = color
        widths[labels != UNLABELED] = LABELED_PEN_WIDTH
        return self._pens.pens_for(colors, widths)

    def _on_labels_changed(self, indices):
        """Collect relabeled objects; their markers change once labeling pauses.

        Repainting 20k markers costs tens of milliseconds, which would otherwise be paid
        inside every keypress's repaint of the grid.
        """
        self._relabeled.append(np.atleast_1d(np.asarray(indices, np.intp)))
        self._relabel_timer.start()

    def _apply_relabels(self):
        """Re-pen only the relabeled markers; a bulk change redraws them all."""
        if not self._relabeled:
            return
        indices = np.unique(np.concatenate(self._relabeled))
        self._relabeled = []
        if self.state.data is None or len(indices) > RELABEL_REDRAW_ALL:
            self._update_markers()
            return
        rows = np.searchsorted(self._visible, indices)
        shown = rows < len(self._visible)
        shown[shown] = self._visible[rows[shown]] == indices[shown]
        if not shown.any():
            return
        self.scatter.set_pens(rows[shown], *self._marker_pens(indices[shown]))

    def _on_selection_changed(self, index):
        data = self.state.data
        if data is None or index < 0 or not np.isfinite(data.x[index] + data.y[index]):
            self.highlight.clear()
            return
        x, y = float(data.x[index]), float(data.y[index])
        self.highlight.setData(x=[x], y=[y], size=_highlight_size(self._marker_pixels))
        self.center_on(x, y)

    # ------------------------------------------------------------------ view slots

    def _image_pixels_per_screen_pixel(self):
        width = self.view_box.width()
        if width <= 0:
            return 1.0
        return self.view_box.viewRect().width() / width

    def _marker_size(self):
        """Markers are `MARKER_DIAMETER_FWHM` FWHM across, within screen-size bounds."""
        data = self.state.data
        fwhm = data.fwhm if data is not None and np.isfinite(data.fwhm) and data.fwhm > 0 else 3.0
        size = MARKER_DIAMETER_FWHM * fwhm / self._image_pixels_per_screen_pixel()
        return int(np.clip(round(size), MIN_MARKER_PIXELS, MAX_MARKER_PIXELS))

    def _update_view_scale(self, *_):
        """After a zoom: pick the pyramid level to draw and resize the markers."""
        if not self._pyramid:
            return
        ratio = self._image_pixels_per_screen_pixel()
        level = int(np.clip(np.floor(np.log2(max(ratio, 1.0))), 0, len(self._pyramid) - 1))
        if level != self._level:
            self._level = level
            factor = float(2**level)
            self.image_item.setImage(self._pyramid[level], autoLevels=False, levels=(0, 255))
            self.image_item.setTransform(QTransform.fromScale(factor, factor))
        size = self._marker_size()
        if size != self._marker_pixels:
            self._marker_pixels = size
            self.scatter.set_marker_size(size)
            if len(self.highlight.data):
                self.highlight.setSize(_highlight_size(size))

    def _on_marker_clicked(self, _item, points, event=None):
        """Select the clicked object (the nearest one when markers overlap)."""
        tag = MarkerScatter.clicked_tag(points, event)
        if tag is not None:
            self.state.select(tag)

    def _summary(self):
        """What the readout shows while the cursor is off the frame."""
        data = self.state.data
        height, width = data.frame.image.shape
        name = os.path.basename(data.frame_path) if data.frame_path else "frame"
        objects = count_text(len(data), "object")
        return f"{name}   {width} × {height} px   {objects}   FWHM {data.fwhm:.2f} px"

    def _update_readout(self, scene_pos):
        data = self.state.data
        if data is None or not self.view_box.sceneBoundingRect().contains(scene_pos):
            return
        where = self.view_box.mapSceneToView(QPointF(scene_pos))
        x, y = where.x(), where.y()
        height, width = data.frame.image.shape
        col, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if not (0 <= col < width and 0 <= row < height):
            self.readout.setText(self._summary())
            return
        value = data.frame.image[row, col]
        text = f"x {x:8.1f}   y {y:8.1f}   value {value:.6g}"
        if data.frame.wcs is not None:
            ra, dec = data.frame.wcs.all_pix2world([[x, y]], 0)[0]
            text += f"   RA {ra:.6f}°  Dec {dec:+.6f}°"
        self.readout.setText(text)


def _combo(items, current, tooltip):
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setCurrentText(current)
    combo.setToolTip(tooltip)
    return combo


def display_pyramid(display, max_side=PYRAMID_MAX_SIDE):
    """``display`` followed by 2x2 block means of it until the longer side <= ``max_side``.

    A zoomed-out view draws a level whose pixels are about screen-sized, so a large
    frame costs no resampling when the user zooms or pans.

    Parameters
    ----------
    display : ndarray (H, W) uint8
    max_side : int

    Returns
    -------
    list of ndarray uint8
        Level ``k`` covers ``2**k`` x ``2**k`` display pixels per pixel (an odd last
        row or column is dropped).
    """
    levels = [display]
    while max(levels[-1].shape) > max_side and min(levels[-1].shape) >= 2:
        image = levels[-1]
        rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        total = image[0:rows:2, 0:cols:2].astype(np.uint16)
        total += image[1:rows:2, 0:cols:2]
        total += image[0:rows:2, 1:cols:2]
        total += image[1:rows:2, 1:cols:2]
        total += 2
        total //= 4
        levels.append(total.astype(np.uint8))
    return levels


@dataclass(frozen=True)
class _PreparedDisplay:
    """A frame's display limits and pyramid for one interval and stretch."""

    interval: str
    stretch: str
    limits: tuple
    pyramid: list


_prepared_displays = weakref.WeakKeyDictionary()
"""Frame -> `_PreparedDisplay` made by `prepare_display`; the view that shows it takes it."""


def prepare_display(frame, interval=DEFAULT_INTERVAL, stretch=DEFAULT_STRETCH):
    """Make a frame's display image and pyramid ahead of time, e.g. in a worker thread.

    For a big frame this is most of the cost of showing it (about a second at 8k x 8k).
    The next `FrameView` to show ``frame`` with this interval and stretch uses the result
    instead of computing it on the GUI thread; it is kept only as long as ``frame`` is.

    Parameters
    ----------
    frame : rbvet.core.io.frame.Frame
    interval, stretch : str
        The view's defaults unless the window shows others.
    """
    limits = display_limits(frame.image, interval, frame.mask)
    pyramid = display_pyramid(to_uint8(frame.image, stretch=stretch, limits=limits))
    _prepared_displays[frame] = _PreparedDisplay(interval, stretch, limits, pyramid)


def _centre_over_image(centre, span, extent):
    """View centre along one axis, moved so a ``span``-wide view stays on the image."""
    low, high = -0.5 + span / 2, extent - 0.5 - span / 2
    if low > high:
        return (extent - 1) / 2
    return min(max(centre, low), high)


def _legend_html():
    entries = (
        (BOGUS_COLOR, "bogus"),
        (THRESHOLD_COLOR, "≈ t"),
        (REAL_COLOR, "real"),
        (LABELED_REAL_COLOR, "labeled real"),
        (LABELED_BOGUS_COLOR, "labeled bogus"),
        (UNSCORED_COLOR, "unscored"),
    )
    return " ".join(
        "<span style='color:#{:02x}{:02x}{:02x}'>◯</span>&nbsp;{}".format(*color, text)
        for color, text in entries
    )


def _highlight_size(marker_pixels):
    return marker_pixels * 2.2 + 8


def _reticle_symbol():
    """A ring with four ticks pointing at the centre, leaving the object itself clear."""
    path = QPainterPath()
    path.addEllipse(QPointF(0, 0), 0.34, 0.34)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        path.moveTo(0.34 * dx, 0.34 * dy)
        path.lineTo(0.5 * dx, 0.5 * dy)
    return path


class _PenCache:
    """One QPen per (colour, width), kept for the life of the view.

    Markers share these pens, so pyqtgraph's symbol atlas renders each style once, and
    a threshold change reuses the pens (and atlas entries) of the previous one.
    """

    def __init__(self):
        self._pens = {}

    def pens_for(self, colors, widths):
        """The distinct pens for ``colors`` (N, 3) uint8 and ``widths`` (N,), and each row's.

        Returns
        -------
        pens : ndarray (S,) object
        styles : ndarray (N,) intp
            Row ``i`` is drawn with ``pens[styles[i]]``.
        """
        colors = colors.astype(np.int64)
        tenths = np.rint(np.asarray(widths) * 10).astype(np.int64)
        keys = (colors[:, 0] << 40) | (colors[:, 1] << 32) | (colors[:, 2] << 24) | tenths
        unique, styles = np.unique(keys, return_inverse=True)
        pens = np.empty(len(unique), dtype=object)
        pens[:] = [self._pen(int(key)) for key in unique]
        return pens, styles.ravel().astype(np.intp)

    def _pen(self, key):
        if key not in self._pens:
            color = ((key >> 40) & 255, (key >> 32) & 255, (key >> 24) & 255)
            self._pens[key] = pg.mkPen(color, width=(key & 0xFFFFFF) / 10)
        return self._pens[key]


class MarkerScatter(pg.ScatterPlotItem):
    """A pixel-mode scatter of points that share a few pens, set without per-point work.

    pyqtgraph's `setData`, `setSize` and `setPen` look each point's symbol up in the
    symbol atlas one at a time, in Python: about a second for 100k markers, paid again on
    every zoom that changes the marker size. Here every point keeps the index of its pen
    in a short style table; the atlas is asked once per style, and the per-point fields of
    pyqtgraph's record array (``data``: ``pen``, ``sourceRect``) are filled by indexing.
    Painting, clicks and ``points()`` stay pyqtgraph's. The symbol, size and brush are the
    item's defaults (``opts``), shared by all points.
    """

    def __init__(self, **options):
        super().__init__(pxMode=True, brush=None, **options)
        self._style_pens = np.zeros(0, dtype=object)  # style -> QPen
        self._point_styles = np.zeros(0, np.intp)  # point -> style

    @staticmethod
    def clicked_tag(points, event=None):
        """The ``data()`` of the clicked point, as `sigClicked` gives them.

        Of overlapping points the one nearest the click (``event.pos()``) is taken, the
        first when there is no event; None when there are no points.
        """
        if len(points) == 0:
            return None
        point = points[0]
        if event is not None and len(points) > 1:
            where = event.pos()
            positions = np.array([[p.pos().x(), p.pos().y()] for p in points])
            distance = np.hypot(positions[:, 0] - where.x(), positions[:, 1] - where.y())
            point = points[int(np.argmin(distance))]
        return int(point.data())

    def set_markers(self, x, y, tags, pens, styles, size):
        """Replace all points.

        Parameters
        ----------
        x, y : ndarray (N,)
        tags : ndarray (N,) int
            Each point's ``data()``.
        pens : ndarray (S,) object
        styles : ndarray (N,) intp
            Point ``i`` is drawn with ``pens[styles[i]]``.
        size : int
            Marker diameter in screen pixels.
        """
        # np.zeros and then None is ten times quicker than np.empty's per-record None.
        points = np.zeros(len(x), dtype=self.data.dtype)
        for name, (field_type, *_) in points.dtype.fields.items():
            if field_type.hasobject:
                points[name] = None  # pyqtgraph's "unset" (the item's default)
        points["x"] = x
        points["y"] = y
        points["size"] = -1  # pyqtgraph's "the item's size"
        points["visible"] = True
        points["data"] = tags
        self.data = points
        self.opts["size"] = size
        self._style_pens = np.asarray(pens, dtype=object)
        self._point_styles = np.asarray(styles, np.intp)
        self._restyle(slice(None))
        self.prepareGeometryChange()
        self.informViewBoundsChanged()
        self.bounds = [None, None]
        self.sigPlotChanged.emit(self)

    def set_pens(self, rows, pens, styles):
        """Give the points at ``rows`` the pens ``pens[styles]``."""
        position = {id(pen): i for i, pen in enumerate(self._style_pens)}
        table = list(self._style_pens)
        for pen in pens:
            if id(pen) not in position:
                position[id(pen)] = len(table)
                table.append(pen)
        self._style_pens = np.empty(len(table), dtype=object)
        self._style_pens[:] = table
        remap = np.array([position[id(pen)] for pen in pens], np.intp)
        self._point_styles[rows] = remap[styles]
        self._restyle(rows)

    def clear(self):
        """Remove all points."""
        super().clear()
        self._style_pens = np.zeros(0, dtype=object)
        self._point_styles = np.zeros(0, np.intp)

    def set_marker_size(self, size):
        """Draw every marker ``size`` screen pixels across."""
        if size != self.opts["size"]:
            self.opts["size"] = size
            self._restyle(slice(None))

    def pointsAt(self, pos):  # noqa: N802 (pyqtgraph's name)
        """The points under ``pos``, topmost first, as pyqtgraph ``SpotItem`` objects.

        pyqtgraph's version first makes a ``SpotItem`` for every point (a third of a
        second for 100k, on the first click); this makes them for the points hit only.
        """
        rows = np.flatnonzero(self._maskAt(pos))[::-1]
        items = self.data["item"]
        for row in rows[np.equal(items[rows], None)]:
            items[row] = pg.SpotItem(self.data[row], self, row)
        return items[rows]

    def _restyle(self, rows):
        """Set the pen and atlas rectangle of the points at ``rows`` from their styles."""
        symbol, size, brush = self.opts["symbol"], self.opts["size"], self.opts["brush"]
        rects = np.array(
            self.fragmentAtlas[[(symbol, size, pen, brush) for pen in self._style_pens]],
            dtype=self.data.dtype["sourceRect"],
        )
        styles = self._point_styles[rows]
        self.data["pen"][rows] = self._style_pens[styles]
        self.data["sourceRect"][rows] = rects[styles]
        self.updateSpots()  # nothing left to look up; resizes
        # updateSpots repaints only when it had rectangles to look up, and here it has
        # none: without this, new pens show only at the next repaint (a click).
        self.invalidate()
