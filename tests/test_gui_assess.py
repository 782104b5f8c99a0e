"""Model › Assess this frame: a background job whose injected FNR/FPR curves the threshold
panel draws, kept beside the label store; Cancel writes nothing."""

import json

import numpy as np
import pytest
from PyQt6.QtCore import QSettings, Qt, QTimer

from rbvet.core.inject.assess import kept_assessment_path
from rbvet.core.inject.inject import InjectionSettings
from rbvet.core.paths import demo_frame_path
from rbvet.core.session import FILTER_ALL, FILTER_INJECTED, UNLABELED
from rbvet.gui.assessment import show_kept_assessment, start_assessment
from rbvet.gui.main_window import MainWindow

TIMEOUT_MS = 180_000
SMALL = InjectionSettings(injections=150, rounds=2, seed=1)


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(main_window)
    main_window.show()
    frame = demo_frame_path()
    with qtbot.waitSignal(main_window.classified, timeout=TIMEOUT_MS):
        main_window.open_frame(frame, frame.with_suffix(".ecsv"))
    yield main_window
    main_window.cancel_job(wait=True)


def _sidecar(window):
    data = window.state.data
    return kept_assessment_path(window.labels.store_path, data.frame.content_hash, data.model_name)


def test_assessment_draws_injected_curves_and_keeps_them(qtbot, window):
    assert window.assess_action.text() == "&Assess this frame"
    panel = window.threshold_panel
    assert not panel.has_injected
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    thread = start_assessment(window, SMALL)
    assert window.busy and window.cancel_button.isVisibleTo(window)
    with qtbot.waitSignal(thread.succeeded, timeout=TIMEOUT_MS):
        pass
    timer.stop()
    assert len(ticks) >= 3  # the window kept turning while the fakes were injected
    qtbot.waitUntil(lambda: not window.busy, timeout=10_000)
    assert panel.has_injected
    x, fnr = panel.injected_fnr_curve.getData()
    assert len(x) == 101 and np.nanmax(fnr) <= 1.0
    # Injected curves are dashed and marked; the label curves stay empty (no labels yet).
    assert panel.injected_fnr_curve.opts["pen"].style() == Qt.PenStyle.DashLine
    assert panel.fnr_curve.opts["pen"].style() == Qt.PenStyle.SolidLine
    assert panel.fnr_curve.getData()[0] is None or len(panel.fnr_curve.getData()[0]) == 0
    assert panel.injected_text.isVisible() and "injected" in panel.injected_label.text()
    kept = json.loads(_sidecar(window).read_text())
    assert kept["model"] == window.state.data.model_name
    assert kept["settings"]["injections"] == SMALL.injections and kept["model_version"]
    # The label follows the threshold.
    before = panel.injected_label.text()
    window.state.set_threshold(0.05 if window.state.threshold > 0.5 else 0.95)
    assert panel.injected_label.text() != before
    # A frame shown again with the same model gets its kept curves back.
    panel.clear_injected()
    assert not panel.has_injected
    show_kept_assessment(window)
    assert panel.has_injected


def test_cancelled_assessment_keeps_nothing(qtbot, window):
    thread = start_assessment(window, InjectionSettings(injections=2000, rounds=20))
    with qtbot.waitSignal(
        thread.progressed,
        timeout=TIMEOUT_MS,
        check_params_cb=lambda progress: "round" in progress.message,
    ):
        pass
    with qtbot.waitSignal(thread.cancelled, timeout=TIMEOUT_MS):
        window.cancel_job()
    qtbot.waitUntil(lambda: not window.busy, timeout=10_000)
    assert not window.threshold_panel.has_injected
    assert not _sidecar(window).exists()
    assert window.state.session.assessment is None
    assert window.grid.filter_combo.findText(FILTER_INJECTED) < 0


def test_assess_without_a_frame_says_so(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    empty = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(empty)
    assert start_assessment(empty) is None
    assert "Open a frame first" in empty.error_banner.label.text()


def test_the_grid_shows_the_injected_objects_as_scored_and_never_as_labels(
    qtbot, window, tmp_path
):
    grid, session = window.grid, window.state.session
    data = window.state.data
    window.state.select(5)
    frame_order = grid.proxy.order()
    assert grid.filter_combo.findText(FILTER_INJECTED) < 0  # nothing assessed yet
    thread = start_assessment(window, SMALL)
    with qtbot.waitSignal(thread.succeeded, timeout=TIMEOUT_MS):
        pass
    qtbot.waitUntil(
        lambda: "Show › injected objects" in window.statusBar().currentMessage(), timeout=10_000
    )

    grid.filter_combo.setCurrentText(FILTER_INJECTED)
    assert session.showing_injected
    assert grid.pages.currentWidget() is grid.injected_view
    injected = grid.injected_state.data
    placed = session.assessment.summary["counts"]["placed"]
    assert len(injected) == placed == grid.injected_proxy.rowCount()
    assert grid.count_label.text() == f"{placed} injected"
    assert grid.injected_summary_label.isVisibleTo(grid) and not grid.sort_combo.isVisibleTo(grid)
    summary = grid.injected_summary_label.text()
    assert "missed" in summary and "passed as real" in summary
    window.state.set_threshold(0.97)
    assert grid.injected_summary_label.text() != summary  # it follows the threshold
    # The Object dock shows the selected injected object, from its kept stamp.
    first = grid.injected_proxy.object_at(0)
    grid.injected_state.select(first)
    detail = window.injected_detail
    assert detail.isVisible() and not window.detail.isVisible()
    assert detail.raw_image is not None and "never labeled" in detail.label_label.text()
    np.testing.assert_array_equal(detail._raw_stamp, injected.stamps[first])
    # Labeling keys and menu actions label nothing, and nothing reaches the store.
    grid.injected_view.setFocus()
    qtbot.keyClick(grid.injected_view, Qt.Key.Key_R)
    grid.view.label_selection(1)  # the Label menu acts on the frame's (hidden) grid
    assert np.all(injected.labels == UNLABELED) and np.all(data.labels == UNLABELED)
    assert not window.labels.store_path.exists()
    assert "never labels" in window.statusBar().currentMessage()
    # The export is the frame's objects.
    exported = tmp_path / "export.ecsv"
    assert window.export_scores(exported)
    from astropy.table import Table

    assert len(Table.read(exported)) == len(data)

    grid.filter_combo.setCurrentText(FILTER_ALL)
    assert not session.showing_injected and grid.pages.currentWidget() is grid.view
    assert window.detail.isVisible() and not detail.isVisible()
    assert window.state.data is data and window.state.selected == 5
    np.testing.assert_array_equal(grid.proxy.order(), frame_order)
    grid.grab().save(str(tmp_path / "grid.png"))  # paints without error


def test_the_status_line_names_a_fallback_psf_and_a_crowded_frame():
    from astropy.table import Table

    from rbvet.core.inject.assess import assess_loaded
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.jobs import run_job
    from rbvet.core.model.cache import cached_model
    from rbvet.gui.assessment import assessment_message

    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, (160, 160)).astype(np.float32))
    table = Table({"x": [40.0, 120.0], "y": [40.0, 120.0]})
    settings = InjectionSettings(injections=60, rounds=2, extra_rounds=0)
    assessment = run_job(
        assess_loaded(frame, table, 2.5, cached_model(), settings=settings, keep_stamps=True)
    )
    message = assessment_message(assessment)
    placed = assessment.summary["counts"]["placed"]
    assert f"room for only {placed} of 60" in message
    assert "Moffat profile, not the frame's own PSF" in message
    assert message.endswith("Show › injected objects: what was measured")
