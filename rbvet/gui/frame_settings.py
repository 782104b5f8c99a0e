"""Frame settings: how the open frame was read and its objects found, and a way to redo it.

The panel shows the facts of the frame on screen (`rbvet.core.classify.FrameReading`):
the image HDU used, the data section, the saturation level and where it came from, how
many objects were found, and the FWHM with the stars it was measured on, their spread
and the size histogram it came from. Its fields are the `FrameOptions` of the next
reading: the HDU (of a multi-extension file), the detection threshold and minimum area,
the saturation level, the use of ``DATASEC``, and a FWHM override. **Re-detect and
re-score** asks the window (``redetectRequested``) to classify the frame again with them
in the background; the panel follows that job (`track`) with a progress bar and a Cancel
button. Labels are kept by the window's label store, which matches them by position.

The fields show the options the frame on screen was read with, so values the user set
survive the re-detection they asked for; the measured values stand beside them.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.classify import FrameOptions, describe_noise

SATURATION_AUTO = "From the header or histogram"
SATURATION_LEVEL = "Level"
SATURATION_OFF = "None"
SIZE_TICKS_PX = (1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50)
"""Where the size histogram's axis is labelled (pixels; the axis is logarithmic)."""
SIZE_BIN_DEX = 0.025
"""Width of the size histogram's bins in log10(FWHM): 6 % per bin."""
ALL_COLOUR = "#9e9e9e"
STARS_COLOUR = "#4fc3f7"
CHOSEN_COLOUR = "#ffd54f"
MEASURED_COLOUR = "#80deea"


class FrameSettingsPanel(QWidget):
    """The frame settings dock: facts of the frame shown, options of its next reading.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    parent : QWidget, optional

    Signals
    -------
    redetectRequested(object)
        The `FrameOptions` to read, detect and score the frame with again.
    """

    redetectRequested = pyqtSignal(object)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.job = None
        self._reading = None

        self.used_label = QLabel("No frame open")
        self.used_label.setWordWrap(True)
        self.used_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hdu_combo = QComboBox()
        self.hdu_combo.setToolTip("The image HDU of a multi-extension file")

        self.threshold_spin = QDoubleSpinBox(decimals=1, minimum=0.5, maximum=1000, singleStep=0.5)
        self.threshold_spin.setSuffix(" σ")
        self.min_area_spin = QSpinBox(minimum=1, maximum=100_000)
        self.min_area_spin.setSuffix(" px")
        self.objects_label = QLabel()
        self.catalog_note = QLabel()
        self.catalog_note.setWordWrap(True)
        self.catalog_note.setStyleSheet("color: #b0b0b0;")

        self.saturation_combo = QComboBox()
        self.saturation_combo.addItems([SATURATION_AUTO, SATURATION_LEVEL, SATURATION_OFF])
        self.saturation_spin = QDoubleSpinBox(decimals=1, minimum=-1e12, maximum=1e12)
        self.saturation_label = QLabel()
        self.saturation_label.setWordWrap(True)
        self.datasec_check = QCheckBox("Leave out overscan (TRIMSEC / DATASEC)")
        self.section_label = QLabel()
        self.section_label.setWordWrap(True)
        self.noise_map_check = QCheckBox(
            "Shape the noise by the file's noise map (WHT, ERR, VAR…)"
        )
        self.noise_label = QLabel()
        self.noise_label.setWordWrap(True)

        self.fwhm_label = QLabel()
        self.fwhm_label.setWordWrap(True)
        self.fwhm_override = QCheckBox("Override")
        self.fwhm_spin = QDoubleSpinBox(decimals=2, minimum=0.5, maximum=100, singleStep=0.1)
        self.fwhm_spin.setSuffix(" px")
        self.size_plot = pg.PlotWidget()
        self.size_plot.setMinimumHeight(140)
        self.size_plot.setMenuEnabled(False)
        self.size_plot.setMouseEnabled(x=False, y=False)
        self.size_plot.hideButtons()
        self.size_plot.setLabel("bottom", "moment FWHM of the measured objects (px)")
        self.size_plot.setLabel("left", "objects")
        self.size_plot.getAxis("bottom").setTicks(
            [[(np.log10(px), f"{px:g}") for px in SIZE_TICKS_PX]]
        )
        self.all_sizes = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(ALL_COLOUR))
        self.star_sizes = pg.PlotDataItem(
            stepMode="center",
            fillLevel=0,
            brush=(79, 195, 247, 120),
            pen=pg.mkPen(STARS_COLOUR),
        )
        self.measured_line = pg.InfiniteLine(
            angle=90,
            pen=pg.mkPen(MEASURED_COLOUR, width=1.5, style=Qt.PenStyle.DashLine),
            movable=False,
        )
        self.chosen_line = pg.InfiniteLine(
            angle=90, pen=pg.mkPen(CHOSEN_COLOUR, width=2), movable=True
        )
        self.chosen_line.setToolTip("The FWHM used; drag it to override")
        for item in (self.all_sizes, self.star_sizes, self.measured_line, self.chosen_line):
            self.size_plot.addItem(item)
        # A caption, not a pyqtgraph legend: the legend's text items are deleted before
        # their last resize event when a window closes, which crashed the test suite.
        self.plot_caption = QLabel(
            f"<span style='color:{STARS_COLOUR}'>█</span> stars used · "
            f"<span style='color:{ALL_COLOUR}'>▭</span> all measured · "
            f"<span style='color:{CHOSEN_COLOUR}'>━</span> FWHM used · "
            f"<span style='color:{MEASURED_COLOUR}'>┅</span> measured (from the stars' "
            "half-maximum areas, which the second moments of wide wings overstate)"
        )
        self.plot_caption.setWordWrap(True)
        self.plot_caption.setStyleSheet("font-size: 8pt;")
        self.notes_label = QLabel()
        self.notes_label.setWordWrap(True)
        self.notes_label.setStyleSheet("color: #ffb74d;")

        self.redetect_button = QPushButton("Re-detect and re-score")
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")

        self._lay_out()
        self.saturation_combo.currentTextChanged.connect(self._enable_fields)
        self.saturation_combo.textActivated.connect(self._suggest_saturation_level)
        self.fwhm_override.toggled.connect(self._enable_fields)
        self.fwhm_spin.valueChanged.connect(self._move_chosen_line)
        self.fwhm_override.toggled.connect(self._move_chosen_line)
        self.chosen_line.sigPositionChangeFinished.connect(self._on_line_dragged)
        self.redetect_button.clicked.connect(self.redetect)
        self.cancel_button.clicked.connect(self.cancel)
        state.dataChanged.connect(self._on_data_changed)
        self._set_busy(False)
        self._on_data_changed()

    def _lay_out(self):
        frame_box = QGroupBox("Image")
        form = QFormLayout(frame_box)
        form.addRow(self.used_label)
        form.addRow("HDU", self.hdu_combo)
        form.addRow(self.datasec_check)
        form.addRow(self.section_label)
        form.addRow(self.noise_map_check)
        form.addRow(self.noise_label)
        saturation = QHBoxLayout()
        saturation.addWidget(self.saturation_combo, 1)
        saturation.addWidget(self.saturation_spin)
        form.addRow("Saturation", saturation)
        form.addRow(self.saturation_label)

        detection_box = QGroupBox("Detection")
        form = QFormLayout(detection_box)
        form.addRow("Threshold", self.threshold_spin)
        form.addRow("Minimum area", self.min_area_spin)
        form.addRow(self.objects_label)
        form.addRow(self.catalog_note)

        fwhm_box = QGroupBox("FWHM")
        column = QVBoxLayout(fwhm_box)
        column.addWidget(self.fwhm_label)
        override = QHBoxLayout()
        override.addWidget(self.fwhm_override)
        override.addWidget(self.fwhm_spin, 1)
        column.addLayout(override)
        column.addWidget(self.size_plot, 1)
        column.addWidget(self.plot_caption)

        inner = QWidget()
        content = QVBoxLayout(inner)
        for widget in (frame_box, detection_box, fwhm_box, self.notes_label):
            content.addWidget(widget)
        content.addStretch(1)
        self.content = QScrollArea()
        self.content.setWidgetResizable(True)
        self.content.setWidget(inner)

        buttons = QHBoxLayout()
        buttons.addWidget(self.redetect_button, 1)
        buttons.addWidget(self.progress_bar, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.content, 1)
        layout.addLayout(buttons)

    # -- the frame shown ----------------------------------------------------------------

    @property
    def reading(self):
        """The `FrameReading` of the frame shown, or None."""
        return self._reading

    def _on_data_changed(self):
        data = self.state.data
        reading = getattr(data, "reading", None)
        self._reading = reading
        self.content.setEnabled(reading is not None)
        self.redetect_button.setEnabled(reading is not None)
        if reading is None:
            self.used_label.setText("No frame open")
            self.hdu_combo.clear()
            self.all_sizes.setData([], [])
            self.star_sizes.setData([], [])
            return
        self._show_facts(reading, data)
        self._show_options(reading.options, reading.facts)
        self._show_sizes(reading)
        self._enable_fields()

    def _show_facts(self, reading, data):
        facts = reading.facts
        rows, cols = facts["shape"]
        names = {index: name for index, name, _ in reading.image_hdus}
        name = names.get(facts["hdu"]) or ""
        self.used_label.setText(
            f"<b>{html.escape(Path(data.frame_path or '').name)}</b>: HDU {facts['hdu']}"
            + (f" ({name})" if name else "")
            + f", {cols} × {rows} px"
        )
        section = facts["data_section"]
        self.section_label.setText(
            f"Data section used: {section}" if section else "Data section used: the whole image"
        )
        self.noise_label.setText(f"Noise: {describe_noise(facts)}")
        if facts["saturation"] is None:
            found = "No saturation level" + (
                " (turned off)" if reading.options.saturation is False else " found"
            )
        else:
            found = (
                f"Level {facts['saturation']:g} ({facts['saturation_source']}), "
                f"{facts['saturated_pixels']} pixels at or above it"
            )
        self.saturation_label.setText(found)
        source = (
            "in the catalog"
            if data.catalog_path
            else (
                f"detected at {reading.options.detect_threshold:g} σ, "
                f"{reading.options.min_area} px"
            )
        )
        self.objects_label.setText(f"{facts['objects']} objects {source}")
        if data.catalog_path:
            self.catalog_note.setText(
                f"Objects come from the catalog {Path(data.catalog_path).name}: threshold and "
                "minimum area apply only when objects are detected (File › Detect objects)."
            )
            self.redetect_button.setText("Re-read and re-score")
        else:
            self.catalog_note.setText("")
            self.redetect_button.setText("Re-detect and re-score")
        self.catalog_note.setVisible(bool(data.catalog_path))
        self.fwhm_label.setText(_fwhm_text(reading))
        notes = fallbacks(reading)
        self.notes_label.setText("\n".join(f"⚠ {note}" for note in notes))
        self.notes_label.setVisible(bool(notes))

    def _show_options(self, options, facts):
        self.hdu_combo.blockSignals(True)
        self.hdu_combo.clear()
        for index, name, (rows, cols) in self._reading.image_hdus:
            label = f"{index}" + (f" {name}" if name else "") + f" — {cols} × {rows}"
            self.hdu_combo.addItem(label, index)
        position = self.hdu_combo.findData(facts["hdu"])
        self.hdu_combo.setCurrentIndex(max(position, 0))
        self.hdu_combo.blockSignals(False)
        self.hdu_combo.setEnabled(self.hdu_combo.count() > 1)
        self.threshold_spin.setValue(options.detect_threshold)
        self.min_area_spin.setValue(options.min_area)
        self.datasec_check.setChecked(options.use_datasec)
        self.noise_map_check.setChecked(options.file_noise_map)
        if options.saturation is False:
            mode = SATURATION_OFF
        elif options.saturation is None:
            mode = SATURATION_AUTO
        else:
            mode = SATURATION_LEVEL
        self.saturation_combo.setCurrentText(mode)
        level = options.saturation if mode == SATURATION_LEVEL else facts["saturation"]
        if level is not None and level is not False:
            self.saturation_spin.setValue(float(level))
        self.fwhm_override.setChecked(options.fwhm is not None)
        estimate = self._reading.estimate
        shown = options.fwhm if options.fwhm is not None else getattr(estimate, "fwhm", None)
        self.fwhm_spin.setValue(float(shown if shown is not None else facts["fwhm"]))

    def _show_sizes(self, reading):
        estimate = reading.estimate
        sizes = getattr(estimate, "sizes", np.zeros(0))
        stars = getattr(estimate, "star_sizes", np.zeros(0))
        sizes = np.log10(sizes[np.isfinite(sizes) & (sizes > 0)])
        stars = np.log10(stars[np.isfinite(stars) & (stars > 0)])
        low = np.log10(0.8)
        high = max(np.log10(30.0), float(sizes.max()) if sizes.size else 0.0)
        edges = np.arange(low, high + SIZE_BIN_DEX, SIZE_BIN_DEX)
        self.all_sizes.setData(edges, np.histogram(sizes, edges)[0])
        self.star_sizes.setData(edges, np.histogram(stars, edges)[0])
        measured = getattr(estimate, "fwhm", None)
        self.measured_line.setVisible(measured is not None)
        if measured is not None:
            self.measured_line.setValue(np.log10(measured))
        self.size_plot.setXRange(low, high, padding=0.02)
        self._move_chosen_line()

    # -- the options of the next reading ---------------------------------------------------

    def options(self):
        """The `FrameOptions` the fields give (maps and the rest as the frame shown had).

        Returns
        -------
        FrameOptions
        """
        base = self._reading.options if self._reading is not None else FrameOptions()
        mode = self.saturation_combo.currentText()
        saturation = {
            SATURATION_AUTO: None,
            SATURATION_OFF: False,
            SATURATION_LEVEL: self.saturation_spin.value(),
        }[mode]
        return dataclasses.replace(
            base,
            hdu=self.hdu_combo.currentData() if self.hdu_combo.count() else base.hdu,
            detect_threshold=self.threshold_spin.value(),
            min_area=self.min_area_spin.value(),
            fwhm=self.fwhm_spin.value() if self.fwhm_override.isChecked() else None,
            saturation=saturation,
            use_datasec=self.datasec_check.isChecked(),
            file_noise_map=self.noise_map_check.isChecked(),
        )

    def redetect(self):
        """Ask for the frame to be read, detected and scored again with `options`."""
        if self._reading is not None:
            self.redetectRequested.emit(self.options())

    def _enable_fields(self):
        detecting = self.state.data is not None and not self.state.data.catalog_path
        self.threshold_spin.setEnabled(detecting)
        self.min_area_spin.setEnabled(detecting)
        self.saturation_spin.setEnabled(self.saturation_combo.currentText() == SATURATION_LEVEL)
        self.fwhm_spin.setEnabled(self.fwhm_override.isChecked())

    def _suggest_saturation_level(self, mode):
        """A level to start from when the user picks one and none was found: the image's
        highest pixel (computed once, on this click, not for every frame shown)."""
        reading = self._reading
        if mode != SATURATION_LEVEL or reading is None or reading.facts["saturation"] is not None:
            return
        if reading.options.saturation not in (None, False):
            return  # the level the user set is shown already
        frame = reading.frame
        highest = np.max(frame.image, where=~frame.mask, initial=-np.inf)
        if np.isfinite(highest):
            self.saturation_spin.setValue(float(highest))

    def _move_chosen_line(self):
        value = self.fwhm_spin.value() if self.fwhm_override.isChecked() else None
        if value is None and self._reading is not None:
            value = self._reading.fwhm
        if value:
            self.chosen_line.blockSignals(True)
            self.chosen_line.setValue(np.log10(value))
            self.chosen_line.blockSignals(False)

    def _on_line_dragged(self):
        fwhm = round(10 ** self.chosen_line.value(), 2)  # read before the override moves it
        self.fwhm_spin.setValue(fwhm)
        self.fwhm_override.setChecked(True)

    # -- the job that reads the frame again -----------------------------------------------

    def track(self, job):
        """Follow a classification job (`rbvet.gui.workers.JobThread`): progress and Cancel.

        Parameters
        ----------
        job : JobThread
        """
        self.job = job
        job.progressed.connect(self._on_progress)
        job.finished.connect(lambda: self._set_busy(False) if self.job is job else None)
        self._set_busy(True)

    def cancel(self):
        """Cancel the job being followed; the frame shown stays as it was."""
        if self.job is not None:
            self.job.cancel()

    @property
    def busy(self):
        return self.job is not None and self.job.isRunning()

    def _on_progress(self, progress):
        total = max(progress.total, 0)
        self.progress_bar.setMaximum(total)
        self.progress_bar.setValue(progress.done if total else 0)
        self.progress_bar.setFormat(f"{progress.message} %p%" if total else progress.message)

    def _set_busy(self, busy):
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.redetect_button.setVisible(not busy)
        if busy:
            self.progress_bar.setRange(0, 0)
        else:
            self.job = None


def fallbacks(reading):
    """The fallbacks taken while reading a frame, one line each (none for None).

    The frame's notes (a data section ignored, overscan rows masked, a header level
    ignored) and a FWHM that could not be measured.

    Parameters
    ----------
    reading : rbvet.core.classify.FrameReading or None

    Returns
    -------
    list of str
    """
    if reading is None:
        return []
    found = list(reading.facts.get("notes") or [])
    estimate = reading.estimate
    if estimate is not None and estimate.source == "default" and reading.options.fwhm is None:
        found.append(f"too few stars to measure the FWHM: {estimate.fwhm:g} px used")
    return found


def fallback_summary(reading):
    """`` · ⚠ N fallbacks (see Frame settings)`` for a status line, or ``""`` if none."""
    count = len(fallbacks(reading))
    if not count:
        return ""
    return f" · ⚠ {count} fallback{'' if count == 1 else 's'} (see Frame settings)"


def _fwhm_text(reading):
    """What the FWHM rests on: the value used, the measurement, how many stars, spread."""
    estimate = reading.estimate
    if estimate is None:
        measured = "not measured"
    elif estimate.source == "measured":
        measured = (
            f"measured {estimate.fwhm:.2f} px from {estimate.n_stars} stars "
            f"(spread {estimate.spread:.0%})"
        )
    elif estimate.source == "catalog":
        measured = f"{estimate.fwhm:.2f} px from the catalog's FWHM column"
    else:
        measured = f"too few stars to measure: default {estimate.fwhm:.2f} px"
    if reading.options.fwhm is not None:
        return f"Using <b>{reading.fwhm:.2f} px</b> (set by you); {measured}"
    return f"Using <b>{reading.fwhm:.2f} px</b>: {measured}"
