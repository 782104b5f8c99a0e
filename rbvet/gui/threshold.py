"""Score histogram with a draggable threshold, live counts, and the error-rate plots.

`ThresholdPanel` shows where the scores of the current frame fall, split at the
threshold into a bogus side and a real side, and lets the user move the threshold with
the line or the spin box. Both only ever call `VettingState.set_threshold`; the state's
``thresholdChanged`` then moves both (a guard flag keeps that from echoing back).

Below the histogram sit the FNR/FPR-versus-threshold and ROC plots. They stay empty,
with a hint, until the user has labeled objects of both classes; then they are drawn
from `rbvet.core.learn.metrics` and follow the threshold and every new label. An
injection-recovery assessment of the frame (`rbvet.core.inject.assess`) adds its FNR and
FPR as dashed curves marked *injected* (`show_injected`), with no label needed.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.learn.metrics import error_rates, roc_auc, roc_curve
from rbvet.core.session import BOGUS, REAL
from rbvet.gui.label_quality import LabelQualityLabel
from rbvet.gui.stretch import BOGUS_COLOR, REAL_COLOR, THRESHOLD_COLOR, hex_color

HISTOGRAM_BINS = 50
THRESHOLD_DECIMALS = 3
RATE_THRESHOLDS = np.linspace(0.0, 1.0, 201)
NO_LABELS_HINT = "label objects (R/B)\nto see error rates"
_LOG_FLOOR = -0.25  # bar base in log10(count) units: a bin of 1 object still shows


class ThresholdPanel(QWidget):
    """Score histogram, threshold line and spin box, counts, and error-rate plots.

    Parameters
    ----------
    state : rbvet.gui.state.VettingState
    parent : QWidget, optional

    Attributes
    ----------
    spin : QDoubleSpinBox
        The threshold, 0 to 1 in steps of 0.01, shown with 3 decimals.
    line : pyqtgraph.InfiniteLine
        The draggable threshold on the histogram.
    counts_label : QLabel
        "real ≥ t: N (x%) · bogus < t: M · unscored: K".
    log_check : QCheckBox
        Log-scaled histogram counts.
    histogram_plot, rates_plot, roc_plot : pyqtgraph.PlotWidget
    bogus_bars, real_bars : pyqtgraph.BarGraphItem
        Histogram bins below and at/above the threshold.
    fnr_curve, fpr_curve, roc_curve_item : pyqtgraph.PlotDataItem
        Empty until both classes are labeled.
    rates_label : QLabel
        FNR, FPR and AUC at the threshold, or what is missing to compute them.
    """

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self._syncing = False
        self._bin_counts = np.zeros(HISTOGRAM_BINS)
        self._edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        self._has_rates = False
        self._auc = float("nan")
        self._labeled = (0, 0)

        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setSingleStep(0.01)
        self.spin.setDecimals(THRESHOLD_DECIMALS)
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip("Objects scoring at or above the threshold are called real")
        self.counts_label = QLabel()
        self.counts_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.log_check = QCheckBox("log counts")
        self.log_check.setToolTip("Logarithmic histogram counts")

        self.histogram_plot = _plot("score", "objects")
        self.histogram_plot.setXRange(0.0, 1.0, padding=0.01)
        self.histogram_plot.setMouseEnabled(x=False, y=False)
        self.histogram_plot.enableAutoRange(y=True)
        self.bogus_bars = _bars(BOGUS_COLOR)
        self.real_bars = _bars(REAL_COLOR)
        self.histogram_plot.addItem(self.bogus_bars)
        self.histogram_plot.addItem(self.real_bars)
        self.line = pg.InfiniteLine(
            pos=state.threshold,
            angle=90,
            movable=True,
            bounds=(0.0, 1.0),
            pen=pg.mkPen(THRESHOLD_COLOR, width=2),
            hoverPen=pg.mkPen(THRESHOLD_COLOR, width=4),
            label="t = {value:.3f}",
            labelOpts={"position": 0.9, "color": THRESHOLD_COLOR, "fill": (0, 0, 0, 160)},
        )
        self.line.setZValue(10)
        self.histogram_plot.addItem(self.line)

        self.rates_plot = _plot("threshold", "error rate")
        self.rates_plot.setTitle(
            f"<span style='color:{hex_color(REAL_COLOR)}'>FNR (real lost)</span> · "
            f"<span style='color:{hex_color(BOGUS_COLOR)}'>FPR (bogus kept)</span>",
            size="9pt",
        )
        self.roc_plot = _plot("FPR (bogus kept)", "TPR (real kept)")
        self.roc_plot.setTitle("ROC", size="9pt")
        for plot in (self.rates_plot, self.roc_plot):
            plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
            plot.setMouseEnabled(x=False, y=False)
        self.fnr_curve = self.rates_plot.plot(pen=pg.mkPen(REAL_COLOR, width=2))
        self.fpr_curve = self.rates_plot.plot(pen=pg.mkPen(BOGUS_COLOR, width=2))
        self.rates_line = pg.InfiniteLine(
            pos=state.threshold, angle=90, pen=pg.mkPen(THRESHOLD_COLOR, width=1.5)
        )
        self.rates_plot.addItem(self.rates_line)
        self.roc_curve_item = self.roc_plot.plot(pen=pg.mkPen((220, 220, 220), width=2))
        self.roc_plot.plot(
            [0, 1], [0, 1], pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle.DashLine)
        )
        self.roc_point = pg.ScatterPlotItem(
            size=10, pen=pg.mkPen(THRESHOLD_COLOR, width=2), brush=None
        )
        self.roc_plot.addItem(self.roc_point)
        self._hints = []
        for plot in (self.rates_plot, self.roc_plot):
            hint = pg.TextItem(NO_LABELS_HINT, color=(170, 170, 170), anchor=(0.5, 0.5))
            hint.setPos(0.5, 0.5)
            plot.addItem(hint)
            self._hints.append(hint)
        self.rates_label = QLabel()
        self.rates_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.quality_label = LabelQualityLabel(state)  # calibration (ECE) and agreement
        dashed = Qt.PenStyle.DashLine
        self.injected_fnr_curve = self.rates_plot.plot(
            pen=pg.mkPen(REAL_COLOR, width=1.5, style=dashed)
        )
        self.injected_fpr_curve = self.rates_plot.plot(
            pen=pg.mkPen(BOGUS_COLOR, width=1.5, style=dashed)
        )
        self.injected_text = pg.TextItem("injected", color=(200, 200, 200), anchor=(1, 0))
        self.injected_text.setPos(1.0, 1.0)
        self.injected_text.setVisible(False)
        self.rates_plot.addItem(self.injected_text)
        self.injected_label = QLabel()
        self.injected_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.injected_label.setVisible(False)
        self._injected = None

        header = QHBoxLayout()
        threshold_label = QLabel("Threshold")
        threshold_label.setBuddy(self.spin)
        header.addWidget(threshold_label)
        header.addWidget(self.spin)
        header.addStretch(1)
        header.addWidget(self.log_check)
        rates = QHBoxLayout()
        rates.setSpacing(4)
        rates.addWidget(self.rates_plot, 3)
        rates.addWidget(self.roc_plot, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.histogram_plot, 3)
        layout.addLayout(rates, 2)
        layout.addWidget(self.rates_label)
        layout.addWidget(self.quality_label)
        layout.addWidget(self.injected_label)

        self.spin.valueChanged.connect(self._on_spin_changed)
        self.line.sigPositionChanged.connect(self._on_line_moved)
        self.log_check.toggled.connect(self._draw_histogram)
        state.dataChanged.connect(self._on_data_changed)
        state.thresholdChanged.connect(self._on_threshold_changed)
        state.labelsChanged.connect(self._update_rates)
        self._on_data_changed()

    # ------------------------------------------------------------------ public API

    def counts(self):
        """(real, bogus, unscored) at the current threshold, as the label shows them.

        Returns
        -------
        tuple of int
        """
        data = self.state.data
        if data is None:
            return 0, 0, 0
        return data.counts(self.state.threshold)

    def show_injected(self, summary):
        """Draw the injected FNR and FPR of an assessment's summary (dashed, *injected*).

        Parameters
        ----------
        summary : dict
            `rbvet.core.inject.assess.Assessment.summary` (its ``curves`` and counts).
        """
        curves = summary["curves"]
        thresholds = np.asarray(curves["threshold"], np.float64)
        fnr = np.asarray(curves["fnr"], np.float64)
        fpr = np.asarray(curves["fpr"], np.float64)
        self._injected = (thresholds, fnr, fpr, summary)
        self.injected_fnr_curve.setData(thresholds, fnr, connect="finite")
        self.injected_fpr_curve.setData(thresholds, fpr, connect="finite")
        self.injected_text.setVisible(True)
        self._hints[0].setVisible(False)
        self._update_injected_label()

    def clear_injected(self):
        """Remove the injected curves (another frame or model is shown)."""
        self._injected = None
        self.injected_fnr_curve.setData([], [])
        self.injected_fpr_curve.setData([], [])
        self.injected_text.setVisible(False)
        self.injected_label.setVisible(False)
        self._hints[0].setVisible(not self._has_rates)

    @property
    def has_injected(self):
        """True while injected curves are drawn."""
        return self._injected is not None

    def _update_injected_label(self):
        if self._injected is None:
            return
        thresholds, fnr, fpr, summary = self._injected
        t = self.state.threshold
        at_fnr, at_fpr = np.interp(t, thresholds, fnr), np.interp(t, thresholds, fpr)
        scored = summary.get("counts", {}).get("scored", 0)
        self.injected_label.setText(
            f"injected ({scored} detected fakes): FNR {100 * at_fnr:.1f}% · "
            f"FPR {100 * at_fpr:.1f}% at t = {t:.3f}"
        )
        self.injected_label.setToolTip(
            "From injection-recovery on this frame (Model › Assess this frame), not labels"
        )
        self.injected_label.setVisible(True)

    # ------------------------------------------------------------------ user input

    def _on_spin_changed(self, value):
        if not self._syncing:
            self.state.set_threshold(value)

    def _on_line_moved(self, line):
        if not self._syncing:
            self.state.set_threshold(round(line.value(), THRESHOLD_DECIMALS))

    # ------------------------------------------------------------------ state slots

    def _on_data_changed(self):
        data = self.state.data
        if self._injected is not None and not _same_frame_and_model(data, self._injected[3]):
            self.clear_injected()
        if data is None:
            self._bin_counts = np.zeros(HISTOGRAM_BINS)
        else:
            scores = data.scores[np.isfinite(data.scores)]
            self._bin_counts, _ = np.histogram(scores, bins=self._edges)
        self._draw_histogram()
        self._update_rates()
        self._on_threshold_changed(self.state.threshold)

    def _on_threshold_changed(self, threshold):
        self._syncing = True
        try:
            self.spin.setValue(threshold)
            self.line.setValue(threshold)
            self.rates_line.setValue(threshold)
        finally:
            self._syncing = False
        self._draw_histogram()
        self._update_counts()
        self._update_operating_point()
        self._update_injected_label()

    def _update_counts(self):
        real, bogus, unscored = self.counts()
        t = self.state.threshold
        scored = real + bogus
        share = f" ({100.0 * real / scored:.1f}%)" if scored else ""
        self.counts_label.setText(
            f"<span style='color:{hex_color(REAL_COLOR)}'>real ≥ {t:.3f}: <b>{real}</b>"
            f"{share}</span>"
            f" · <span style='color:{hex_color(BOGUS_COLOR)}'>bogus &lt; {t:.3f}: <b>{bogus}</b>"
            f"</span> · unscored: <b>{unscored}</b>"
        )
        self.counts_label.setToolTip(
            f"real ≥ {t:.3f}: {real}{share} · bogus < {t:.3f}: {bogus} · unscored: {unscored}"
        )

    def _draw_histogram(self, *_):
        """Bars split at the threshold (by bin centre); optionally log-scaled counts."""
        counts = self._bin_counts.astype(np.float64)
        log = self.log_check.isChecked()
        if log:
            with np.errstate(divide="ignore"):
                heights = np.where(counts > 0, np.log10(np.maximum(counts, 1)), _LOG_FLOOR)
            base = _LOG_FLOOR
        else:
            heights, base = counts, 0.0
        empty = not counts.any()
        if empty:  # no scores: a plain 0-1 count axis, not pyqtgraph's range of nothing
            self.histogram_plot.enableAutoRange(y=False)
            self.histogram_plot.setYRange(base, base + 1.0, padding=0)
            self.histogram_plot.getAxis("left").setTicks([[(base, "0")], []])
        else:
            self.histogram_plot.enableAutoRange(y=True)
            ticks = _log_ticks(counts.max()) if log else None
            self.histogram_plot.getAxis("left").setTicks(ticks)
        centres = 0.5 * (self._edges[1:] + self._edges[:-1])
        width = self._edges[1] - self._edges[0]
        real_side = centres >= self.state.threshold
        for bars, side in ((self.real_bars, real_side), (self.bogus_bars, ~real_side)):
            bars.setOpts(x=centres[side], height=heights[side] - base, y0=base, width=width * 0.92)

    def _update_rates(self, *_):
        """Draw FNR/FPR vs threshold and the ROC once both classes are labeled."""
        data = self.state.data
        n_real = n_bogus = 0
        if data is not None:
            scored = np.isfinite(data.scores)
            n_real = int(np.count_nonzero(scored & (data.labels == REAL)))
            n_bogus = int(np.count_nonzero(scored & (data.labels == BOGUS)))
        self._has_rates = n_real > 0 and n_bogus > 0
        for hint in self._hints:
            hint.setVisible(not self._has_rates)
        if self._injected is not None:
            self._hints[0].setVisible(False)
        if not self._has_rates:
            for curve in (self.fnr_curve, self.fpr_curve, self.roc_curve_item):
                curve.setData([], [])
            self.roc_point.clear()
            self.rates_label.setText(
                f"labeled (scored): {n_real} real · {n_bogus} bogus — "
                "label both classes to see error rates"
            )
            return
        fnr, fpr = error_rates(data.scores, data.labels, RATE_THRESHOLDS)
        self.fnr_curve.setData(RATE_THRESHOLDS, fnr)
        self.fpr_curve.setData(RATE_THRESHOLDS, fpr)
        roc_fpr, roc_tpr, _ = roc_curve(data.scores, data.labels)
        self.roc_curve_item.setData(roc_fpr, roc_tpr)
        self._auc = roc_auc(data.scores, data.labels)
        self._labeled = (n_real, n_bogus)
        self._update_operating_point()

    def _update_operating_point(self):
        if not self._has_rates:
            return
        data = self.state.data
        t = self.state.threshold
        fnr, fpr = (float(v[0]) for v in error_rates(data.scores, data.labels, [t]))
        self.roc_point.setData([fpr], [1.0 - fnr])
        n_real, n_bogus = self._labeled
        self.rates_label.setText(
            f"at t = {t:.3f}:  FNR {100 * fnr:.1f}% of {n_real} real · "
            f"FPR {100 * fpr:.1f}% of {n_bogus} bogus · AUC {self._auc:.3f}"
        )


def _same_frame_and_model(data, summary):
    """Whether an assessment's summary belongs to the data shown (frame hash, model)."""
    if data is None:
        return False
    return data.frame.content_hash == summary.get("frame_hash") and data.model_name == summary.get(
        "model"
    )


def _plot(x_label, y_label):
    plot = pg.PlotWidget()
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setLabel("bottom", x_label)
    plot.setLabel("left", y_label)
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMinimumHeight(120)
    return plot


def _log_ticks(largest):
    """Ticks for log10(count) heights: 1, 10, 100, ... with 2 and 5 in between."""
    decades = 10.0 ** np.arange(0, max(1, int(np.ceil(np.log10(max(largest, 1)))) + 1))
    major = [(float(np.log10(v)), f"{v:g}") for v in decades]
    minor = [(float(np.log10(v * k)), "") for v in decades for k in (2, 5)]
    return [major, minor]


def _bars(color):
    return pg.BarGraphItem(
        x=[], height=[], width=0.02, brush=pg.mkBrush(*color, 200), pen=pg.mkPen(None)
    )
