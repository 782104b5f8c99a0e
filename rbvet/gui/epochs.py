"""Epochs of a field in the window: the selected object in every exposure, and a blink.

`EpochStrip` sits in the object panel. When the current frame belongs to a project field of
several epochs, it shows the selected object's surroundings in each, resampled onto the
current frame's pixels through the WCS (`rbvet.core.project.VettingProject.epoch_stamps`),
all with one display interval so brightness compares. The stamps are made once per
selection, in a job off the GUI thread (`ProjectController.cut_epochs`: reading a window of
each of twenty files takes a few hundred milliseconds); ``stampsReady`` says when they are
shown. `blink` then only swaps a precomputed uint8 image in an overlay of the frame view
(the "large view") and names the epoch shown, well under the 50 ms a switch a blink needs.
Shift+E (`STOP_KEY`), another selection or another frame ends the blink. An epoch whose file
vanished or became unreadable is shown blank, named so.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QImage, QPixmap
from PyQt6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from rbvet.gui.stretch import display_limits, to_uint8

BLINK_KEY = "E"
"""Blinks the selected object's epochs in the frame view (B labels bogus)."""
STOP_KEY = "Shift+E"
"""Ends the blink: the frame view shows the current frame again."""
REGION_FWHM = 12.0
"""Side of the blinked region in FWHM (at least `MIN_REGION` pixels)."""
MIN_REGION = 61
THUMBNAIL_PIXELS = 72
"""Side of an epoch's thumbnail in the object panel (screen pixels)."""
THUMBNAILS_PER_ROW = 5
BLINK_VIEW_REGIONS = 2.5
"""A blink zooms the frame view to this many times the blinked region's side."""
STRETCH = "asinh"
INTERVAL = "99.5%"


class EpochStrip(QWidget):
    """The selected object in every epoch of its field; `blink` cycles them in the frame view.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    controller : rbvet.gui.project.ProjectController
    frame_view : rbvet.gui.frame_view.FrameView
        Its plot gets the overlay the blink draws in.

    Attributes
    ----------
    stamps : list of rbvet.core.project.EpochStamp
        The selected object's stamps (the current frame's first); empty when the frame has
        no other epochs.
    images : ndarray (E, S, S) uint8 or None
        The stamps rendered with one interval, rows bottom-up as the frame view draws.
    blink_index : int
        The epoch the overlay shows, -1 when not blinking.
    overlay : pyqtgraph.ImageItem

    Signals
    -------
    stampsReady()
        The selected object's stamps are cut and shown.
    """

    stampsReady = pyqtSignal()

    def __init__(self, state, controller, frame_view, parent=None):
        super().__init__(parent)
        self.state = state
        self.controller = controller
        self.frame_view = frame_view
        self.stamps = []
        self.images = None
        self.blink_index = -1

        self.title = QLabel()
        self.title.setToolTip(
            "The selected object in every exposure of this field, aligned through the WCS;"
            f" {BLINK_KEY} blinks them in the frame view, {STOP_KEY} stops"
        )
        self.thumbnails = QGridLayout()
        self.thumbnails.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addLayout(self.thumbnails)
        self._labels = []

        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(5)  # over the frame, under the markers
        self.overlay.hide()
        self.caption = pg.TextItem(anchor=(0, 1), color=(255, 230, 120), fill=(0, 0, 0, 160))
        self.caption.setZValue(30)
        self.caption.hide()
        frame_view.plot.addItem(self.overlay)
        frame_view.plot.addItem(self.caption)

        state.selectionChanged.connect(self.refresh)
        state.dataChanged.connect(self.refresh)
        controller.fieldsChanged.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ stamps

    def refresh(self, *_):
        """Cut the selected object's stamps in every epoch in a job (or hide when there
        are none); `stampsReady` when they are shown."""
        self.stop_blink()
        self.controller.stop_epochs()
        self.stamps, self.images = [], None
        data, index = self.state.data, self.state.selected
        project = self.controller.project
        current = project.current
        if (
            data is None
            or index < 0
            or current < 0
            or data is not project.data(current)
            or len(project.epochs(current)) < 2
        ):
            self._show_thumbnails()
            self.hide()
            return
        fwhm = data.fwhm if np.isfinite(data.fwhm) and data.fwhm > 0 else 3.0
        size = max(MIN_REGION, int(round(REGION_FWHM * fwhm)) | 1)
        job = self.controller.cut_epochs(index, size)
        job.succeeded.connect(lambda stamps: self._show_stamps(job, stamps))
        job.failed.connect(lambda message: self._show_failure(job, message))
        self.title.setText("Epochs: cutting…")

    def _show_stamps(self, job, stamps):
        if job is not self.controller.epoch_job:
            return  # another selection came since
        self.controller.epoch_job = None
        self.stamps = stamps
        stack = np.stack([s.image for s in self.stamps])
        finite = stack[np.isfinite(stack)]
        limits = display_limits(finite[None, :], INTERVAL) if finite.size else (0.0, 1.0)
        self.images = to_uint8(stack, stretch=STRETCH, limits=limits)
        self._show_thumbnails()
        self.show()
        self.stampsReady.emit()

    def _show_failure(self, job, message):
        if job is self.controller.epoch_job:
            self.controller.epoch_job = None
            self.title.setText(f"Epochs: {message}")

    def _show_thumbnails(self):
        for label in self._labels:
            label.hide()  # now: deleteLater waits for the event loop
            self.thumbnails.removeWidget(label)
            label.deleteLater()
        self._labels = []
        count = len(self.stamps)
        self.title.setText(
            f"Epochs: {count} exposures of this field · {BLINK_KEY} blinks" if count else ""
        )
        for k, stamp in enumerate(self.stamps):
            picture = QLabel()
            picture.setFixedSize(THUMBNAIL_PIXELS, THUMBNAIL_PIXELS)
            picture.setPixmap(_pixmap(self.images[k][::-1], THUMBNAIL_PIXELS))
            why = _why_blank(stamp)
            caption = QLabel(f"{stamp.name}\n({why})" if why else stamp.name)
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            caption.setWordWrap(True)
            caption.setMaximumWidth(THUMBNAIL_PIXELS + 16)
            font = caption.font()
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
            caption.setFont(font)
            row, column = divmod(k, THUMBNAILS_PER_ROW)
            self.thumbnails.addWidget(picture, 2 * row, column)
            self.thumbnails.addWidget(caption, 2 * row + 1, column)
            self._labels += [picture, caption]

    # ------------------------------------------------------------------ blink

    @property
    def blinking(self):
        return self.blink_index >= 0

    def blink(self):
        """Show the next epoch in the frame view's overlay (the first press: the next
        exposure after the current frame's own).

        Returns
        -------
        bool
            False when the selected object has no other epochs.
        """
        if self.images is None or len(self.stamps) < 2:
            return False
        if not self.blinking:
            stamp = self.stamps[0]
            self.overlay.setPos(stamp.origin[0] - 0.5, stamp.origin[1] - 0.5)  # 1:1 pixels
            self.caption.setPos(stamp.origin[0] - 0.5, stamp.origin[1] - 0.5)
            x, y = self.stamps[0].position
            span = BLINK_VIEW_REGIONS * self.images.shape[-1]  # the region large on screen
            self.frame_view.view_box.setRange(
                QRectF(x - span / 2, y - span / 2, span, span), padding=0
            )
            self.blink_index = 0  # the current frame's own: the first press shows the next
        self.blink_index = (self.blink_index + 1) % len(self.stamps)
        self.overlay.setImage(self.images[self.blink_index], autoLevels=False, levels=(0, 255))
        self.overlay.show()
        stamp = self.stamps[self.blink_index]
        note = f" ({_why_blank(stamp)})" if _why_blank(stamp) else ""
        self.caption.setText(f"{self.blink_index + 1}/{len(self.stamps)} {stamp.name}{note}")
        self.caption.show()
        return True

    def stop_blink(self):
        """Hide the overlay: the frame view shows the current frame again."""
        self.blink_index = -1
        self.overlay.hide()
        self.caption.hide()


def _why_blank(stamp):
    """Why an epoch's stamp shows nothing ("" when it shows the object)."""
    if stamp.problem:
        return stamp.problem
    return "" if stamp.covered else "not covered"


def _pixmap(image, side):
    """A uint8 image (rows top-down) as a pixmap of ``side`` pixels, nearest-neighbour."""
    image = np.ascontiguousarray(image)
    height, width = image.shape
    qimage = QImage(image.data, width, height, width, QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(qimage.copy()).scaled(
        side,
        side,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )
