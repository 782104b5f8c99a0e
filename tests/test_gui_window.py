"""The vetting window end to end (offscreen): open the demo, classify in the background,
follow the threshold and the selection, survive bad input, export, cancel and close."""

import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table
from PyQt6.QtCore import QSettings, QTimer

from rbvet.core.paths import demo_frame_path
from rbvet.gui.main_window import MainWindow, looks_like_catalog

CLASSIFY_TIMEOUT_MS = 180_000


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings)
    qtbot.addWidget(main_window)
    main_window.resize(1400, 900)
    main_window.show()
    yield main_window
    main_window.cancel_job(wait=True)


def open_demo(qtbot, window):
    frame = demo_frame_path()
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(frame, frame.with_suffix(".ecsv"))
    return window.state.data


def expected_order(scores):
    """Descending score, unscored (NaN) last, ties by catalog order."""
    keyed = np.where(np.isfinite(scores), -scores, np.inf)
    return np.argsort(keyed, kind="stable")


def test_demo_classifies_in_background_and_grid_follows_scores(qtbot, window):
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    data = open_demo(qtbot, window)
    timer.stop()
    # the event loop kept turning while the worker read, loaded and classified
    assert len(ticks) >= 3
    assert len(data) > 200
    assert np.isfinite(data.scores).all()
    order = window.grid.proxy.order()
    assert np.array_equal(order, expected_order(data.scores))
    # the demo frame's truth: the shipped model gets nearly every object right
    truth = np.asarray(Table.read(demo_frame_path().with_suffix(".ecsv"))["true_label"])
    known = truth >= 0
    accuracy = np.mean((data.scores[known] >= 0.5) == (truth[known] == 1))
    assert accuracy > 0.95
    # the top tile is selected and the title names the frame
    assert window.state.selected == order[0]
    assert demo_frame_path().name in window.windowTitle()


def test_threshold_moves_counts_filter_and_markers(qtbot, window):
    data = open_demo(qtbot, window)
    for threshold in (0.2, 0.5, 0.9):
        window.state.set_threshold(threshold)
        real, bogus, unscored = data.counts(threshold)
        assert window.threshold_panel.counts() == (real, bogus, unscored)
        assert abs(window.threshold_panel.spin.value() - threshold) < 1e-6
        window.grid.filter_combo.setCurrentIndex(window.grid.filter_combo.findText("real"))
        shown = window.grid.proxy.order()
        assert len(shown) == real
        assert (data.scores[shown] >= threshold).all()
        assert f"{real} real" in window.summary_label.text()
    window.threshold_panel.spin.setValue(0.7)
    assert window.state.threshold == pytest.approx(0.7)


def test_selecting_a_tile_centres_the_frame_view(qtbot, window):
    data = open_demo(qtbot, window)
    rows, cols = data.frame.image.shape
    index = int(np.argmin(np.hypot(data.x - cols / 2, data.y - rows / 2)))
    window.state.select(index)
    from PyQt6.QtCore import QPointF

    centre = QPointF(data.x[index], data.y[index])
    qtbot.waitUntil(lambda: window.frame_view.view_box.viewRect().contains(centre), timeout=1000)
    highlight = window.frame_view.highlight.data
    assert (highlight["x"][0], highlight["y"][0]) == (data.x[index], data.y[index])
    assert window.detail.row_table.rowCount() > 0


def test_bad_file_shows_message_and_keeps_the_frame(qtbot, window, tmp_path):
    data = open_demo(qtbot, window)
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    with qtbot.waitSignal(window.failed, timeout=CLASSIFY_TIMEOUT_MS) as failure:
        window.open_frame(bad)
    message = failure.args[0]
    assert "broken.fits" in message and "\n" not in message
    assert window.error_banner.message == message
    assert window.state.data is data  # the good frame is still shown
    assert window.isVisible()


def test_bad_model_shows_message(qtbot, window, tmp_path):
    data = open_demo(qtbot, window)
    bad_model = tmp_path / "nonsense.keras"
    bad_model.write_text("not a model")
    with qtbot.waitSignal(window.failed, timeout=CLASSIFY_TIMEOUT_MS) as failure:
        window.open_model(bad_model)
    assert "nonsense.keras" in failure.args[0]
    assert window.state.data is data


def test_cancel_keeps_previous_frame(qtbot, window):
    data = open_demo(qtbot, window)
    window.open_frame(demo_frame_path())  # detect objects this time
    with qtbot.waitSignal(window.job.finished, timeout=CLASSIFY_TIMEOUT_MS):
        window.cancel_job()
    assert window.state.data is data
    assert not window.busy


def test_export_writes_scores_and_flags(qtbot, window, tmp_path):
    data = open_demo(qtbot, window)
    window.state.set_threshold(0.6)
    output = tmp_path / "scores.ecsv"
    assert window.export_scores(output)
    table = Table.read(output)
    assert np.allclose(table["rb_score"], data.scores)
    flagged = (np.asarray(table["flags"]) & 0x1000) != 0
    assert np.array_equal(flagged, ~(data.scores >= 0.6))


def test_recent_frames_and_dropped_files(qtbot, window, tmp_path):
    frame = demo_frame_path()
    catalog = frame.with_suffix(".ecsv")
    assert looks_like_catalog(catalog) and not looks_like_catalog(frame)
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_dropped([str(catalog), str(frame)])
    assert window.catalog_path == str(catalog)
    assert window.recent_frames()[0] == str(frame)


def test_closing_while_classifying_stops_the_worker(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings)
    main_window.show()
    main_window.open_frame(demo_frame_path())
    job = main_window.job
    main_window.close()
    assert not job.isRunning()
    main_window.deleteLater()


def test_screenshot_command_writes_png(tmp_path):
    output = tmp_path / "window.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rbvet.cli",
            "gui",
            "--screenshot",
            str(output),
            "--window-size",
            "1200x800",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert output.stat().st_size > 20_000
    from PyQt6.QtGui import QImage

    image = QImage(str(output))
    assert (image.width(), image.height()) == (1200, 800)
