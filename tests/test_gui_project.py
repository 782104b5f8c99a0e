"""The window's vetting project (offscreen): many frames scored in the background, the
frames dock, next/previous frame keys, one label store, memory, cancel and bad frames."""

from pathlib import Path

import numpy as np
import pytest
from epoch_frames import write_epochs
from gui_window import open_project as shared_open_project
from gui_window import project_window  # noqa: F401 (the window fixture)
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QLabel

from rbvet.core.project import FAILED, PENDING, READY
from rbvet.core.session import REAL
from rbvet.gui.app import _frame_arguments, build_parser
from rbvet.gui.frames_dock import DONE, FIELD, LABELED, NAME, OBJECTS
from rbvet.gui.main_window import MainWindow

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def epoch_paths(tmp_path_factory):
    return [str(p) for p in write_epochs(tmp_path_factory.mktemp("epochs"), 3, shape=(128, 128))]


def open_project(qtbot, window, paths):
    controller = shared_open_project(qtbot, window, paths, TIMEOUT_MS)
    return controller


def cell(window, row, column):
    model = window.docks["Frames"].widget().model
    return model.data(model.index(row, column))


def test_frames_are_scored_in_turn_and_the_first_shown(qtbot, window, epoch_paths):
    shown = []
    window.classified.connect(lambda: shown.append(window.project.project.totals()[0]))
    controller = open_project(qtbot, window, epoch_paths)
    project = controller.project
    assert shown[0] == 1  # shown when the first frame was ready, before the others
    assert window.docks["Frames"].isVisible()
    assert [f.status for f in project.frames] == [READY] * 3
    assert window.state.data is project.data(0)
    for row, frame in enumerate(project.frames):
        assert cell(window, row, NAME) == f"epoch_{row + 1}.fits"
        assert cell(window, row, OBJECTS) == str(frame.objects) and frame.objects > 10
    assert [f.field_id for f in project.frames] == [0, 0, 0]
    assert "3 of 3 frames scored" in window.docks["Frames"].widget().totals_label.text()


def test_next_and_previous_frame_keys(qtbot, window, epoch_paths):
    controller = open_project(qtbot, window, epoch_paths)
    grid = window.grid.view
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert controller.current == 1
    assert window.state.data is controller.project.data(1)
    assert "epoch_2.fits" in window.windowTitle()
    qtbot.keyClick(grid, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(grid, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert controller.current == 2  # stays on the last
    qtbot.keyClick(grid, Qt.Key.Key_PageUp, Qt.KeyboardModifier.ControlModifier)
    assert controller.current == 1 and "epoch_2.fits" in window.windowTitle()
    assert window.docks["Frames"].widget().table.currentIndex().row() == 1


def test_labels_go_to_one_store_and_come_back_with_the_frame(qtbot, window, epoch_paths):
    controller = open_project(qtbot, window, epoch_paths)
    project = controller.project
    project.keep_neighbours = 0  # every frame left is dropped and rebuilt on return
    window.labels.label([0, 1], REAL)
    assert cell(window, 0, LABELED) == "2"
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.next_frame()  # frame 2 was dropped (keep 0): scored again
    assert project.in_memory() == [1]
    assert project.frames[0].status == PENDING and cell(window, 0, LABELED) == "2"
    window.labels.label([3], REAL)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.previous_frame()
    data = window.state.data
    assert data is project.data(0)
    assert list(np.flatnonzero(data.labels == REAL)) == [0, 1]  # from the one store
    assert window.labels.store_summary()["frames"] == 2


def test_done_mark_is_a_check_box(qtbot, window, epoch_paths):
    controller = open_project(qtbot, window, epoch_paths)
    model = window.docks["Frames"].widget().model
    index = model.index(1, DONE)
    assert model.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    assert controller.project.frames[1].done
    assert model.data(index, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert "1 done" in window.docks["Frames"].widget().totals_label.text()


def test_cancel_stops_scoring_and_going_to_a_frame_resumes(qtbot, window, epoch_paths):
    controller = window.project
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        controller.open_paths(epoch_paths)
        controller.cancel()
    assert not controller.busy
    assert all(f.status == PENDING for f in controller.project.frames)
    assert window.docks["Frames"].widget().progress_bar.isHidden()
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.go_to(2)
    assert window.state.data is controller.project.data(2)


def test_a_bad_frame_fails_alone(qtbot, window, epoch_paths, tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = not a fits file at all" * 100)
    controller = window.project
    with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS):
        controller.open_paths([str(bad), epoch_paths[0]])
    qtbot.waitUntil(lambda: not controller.busy, timeout=TIMEOUT_MS)
    frames = controller.project.frames
    assert frames[0].status == FAILED and frames[1].status == READY
    assert cell(window, 0, OBJECTS) == "failed"
    assert window.error_banner.message
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.next_frame()


def test_missing_paths_are_a_banner(qtbot, window, tmp_path):
    assert not window.project.open_paths([str(tmp_path / "missing.fits")])
    assert "no such file" in window.error_banner.message
    assert not len(window.project.project)


def test_gui_arguments_take_frames_folders_and_lists():
    parser = build_parser()
    single = parser.parse_args(["a.fits", "--catalog", "a.ecsv"])
    assert _frame_arguments(single) == ["a.fits"]
    several = parser.parse_args(["a.fits", "b.fits", "--list", "night.txt"])
    assert _frame_arguments(several) == ["a.fits", "b.fits"]
    assert several.frame_list == "night.txt"
    assert _frame_arguments(parser.parse_args([])) == []
    clash = parser.parse_args(["a.fits", "b.fits", "--catalog", "a.ecsv"])
    assert "--catalog" in _frame_arguments(clash)


def test_object_panel_shows_every_epoch_and_e_blinks_them(qtbot, window, epoch_paths):
    controller = open_project(qtbot, window, epoch_paths)
    strip = window.epochs
    data = window.state.data
    brightest = int(np.nanargmax(data.table["flux"])) if "flux" in data.table.colnames else 0
    with qtbot.waitSignal(strip.stampsReady, timeout=TIMEOUT_MS):
        window.state.select(brightest)  # cut in a job: the window stays responsive
    assert strip.isVisible()
    assert [s.name for s in strip.stamps] == ["epoch_1.fits", "epoch_2.fits", "epoch_3.fits"]
    assert strip.images.shape[0] == 3 and strip.images.dtype == np.uint8
    assert "3 exposures" in strip.title.text()

    grid = window.grid.view
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_E)  # a menu shortcut, not the grid's keyboard search
    assert strip.blink_index == 1 and strip.overlay.isVisible()
    np.testing.assert_array_equal(strip.overlay.image, strip.images[1])
    assert "epoch_2.fits" in strip.caption.textItem.toPlainText()
    qtbot.keyClick(grid, Qt.Key.Key_E)
    qtbot.keyClick(grid, Qt.Key.Key_E)
    assert strip.blink_index == 0  # round to the current frame's own
    np.testing.assert_array_equal(strip.overlay.image, strip.images[0])
    # the overlay sits on the current frame's pixels: its origin is the stamp's
    origin = strip.stamps[0].origin
    assert (strip.overlay.pos().x(), strip.overlay.pos().y()) == (origin[0] - 0.5, origin[1] - 0.5)
    qtbot.keyClick(grid, Qt.Key.Key_E, Qt.KeyboardModifier.ShiftModifier)
    assert not strip.blinking and not strip.overlay.isVisible()

    strip.blink()
    with qtbot.waitSignal(strip.stampsReady, timeout=TIMEOUT_MS):
        window.state.select(brightest + 1)  # another object: the blink ends, new stamps
        assert not strip.blinking
    assert len(strip.stamps) == 3
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.project.keep_neighbours = 0
        controller.next_frame()
    with qtbot.waitSignal(strip.stampsReady, timeout=TIMEOUT_MS):
        window.state.select(0)
    assert strip.stamps[0].name == "epoch_2.fits"  # the current frame's own first


def test_a_single_frame_has_no_epoch_strip(qtbot, window, epoch_paths):
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        window.open_frame(epoch_paths[0])
    window.state.select(0)
    assert not window.epochs.isVisible() and not window.epochs.blink()


def test_all_objects_of_the_night_sorted_together(qtbot, window, epoch_paths):
    controller = open_project(qtbot, window, epoch_paths)
    combined = window.docks["Frames"].widget().combined
    combined.refresh()
    model = combined.model
    project = controller.project
    every = np.concatenate([f.summary.scores for f in project.frames])
    assert model.rowCount() == len(every)
    finite = np.sort(every[np.isfinite(every)])
    shown = [float(model.text(r, 2)) for r in range(len(finite))]
    np.testing.assert_allclose(shown, finite, atol=5e-4)  # lowest first, unscored last
    last = range(len(finite), len(every))
    assert all(model.text(r, 2) == "—" for r in last)
    frames_in_top = {model.text(r, 0) for r in range(10)}
    assert len(frames_in_top) > 1  # the frames are mixed, not listed one after another

    frame_index, object_index = combined.entries[0]
    target = (frame_index + 1) % 3 if frame_index == controller.current else frame_index
    row = next(r for r, e in enumerate(combined.entries) if e[0] == target)
    wanted = combined.entries[row][1]
    assert model.text(row, 0) == project.frames[target].name
    controller.project.keep_neighbours = 0  # the other frame must be scored again first
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        combined.table.clicked.emit(model.index(row, 0))
    assert controller.current == target and window.state.selected == wanted

    combined.order_combo.setCurrentText("highest scores first")
    assert float(model.text(0, 2)) == pytest.approx(finite[-1], abs=5e-4)


def test_stored_labels_are_counted_before_a_frame_is_shown(qtbot, window, epoch_paths, tmp_path):
    controller = open_project(qtbot, window, epoch_paths)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.go_to(2)
    window.labels.label([0, 1, 2], REAL)
    labeled = int(np.count_nonzero(window.state.data.labels == REAL))
    assert labeled >= 2
    window.close()

    settings = QSettings(str(tmp_path / "again.ini"), QSettings.Format.IniFormat)
    again = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(again)
    try:
        open_project(qtbot, again, epoch_paths)
        assert again.project.current == 0  # frame 3 was scored in the background only
        assert again.project.project.frames[2].labeled == labeled
        assert cell(again, 2, LABELED) == str(labeled)
        assert again.state.session.frame_counts() == (0, 0)  # the shown frame's own
    finally:
        again.project.shutdown()


def test_a_catalog_opened_for_the_current_frame_becomes_the_projects(
    qtbot, window, epoch_paths, tmp_path
):
    from astropy.table import Table

    controller = open_project(qtbot, window, epoch_paths)
    data = window.state.data
    catalog = tmp_path / "subset.ecsv"
    keep = len(data) - 2  # all but two: enough stars left to measure the FWHM
    Table({"x": data.x[:keep], "y": data.y[:keep]}).write(catalog)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        window.open_catalog(catalog)
    frame = controller.project.frames[0]
    assert controller.project.data(0) is window.state.data and len(window.state.data) == keep
    assert frame.catalog_path == str(catalog) and frame.objects == keep
    assert cell(window, 0, OBJECTS) == str(keep)


def test_gui_arguments_open_a_folder_as_a_project_and_one_frame_alone(qtbot, window, epoch_paths):
    from rbvet.gui.app import open_from_arguments

    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        open_from_arguments(window, build_parser().parse_args([epoch_paths[1]]))
    assert window.job is not None and not len(window.project.project)  # as it always was
    assert window.frame_path == epoch_paths[1]

    folder = str(Path(epoch_paths[0]).parent)
    with qtbot.waitSignal(window.project.idle, timeout=TIMEOUT_MS):
        open_from_arguments(window, build_parser().parse_args([folder]))
    frames = window.project.project.frames
    assert [f.name for f in frames] == ["epoch_1.fits", "epoch_2.fits", "epoch_3.fits"]
    assert window.state.data is window.project.project.data(0)


def test_closing_while_frames_are_scored_stops_the_job(qtbot, epoch_paths, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    main_window.show()
    main_window.project.open_paths(epoch_paths)
    job = main_window.project.job
    assert job is not None and job.isRunning()
    main_window.close()
    assert not job.isRunning() and not main_window.project.busy
    main_window.deleteLater()


def test_a_frame_file_that_vanishes_after_opening_fails_alone(qtbot, window, tmp_path):
    """The file of a frame not in memory is deleted after the project was opened: going
    to it says so in the banner and marks it failed; its blink stamp is named; the
    other frames keep working."""
    paths = [str(p) for p in write_epochs(tmp_path / "vanishing", 3, shape=(128, 128))]
    controller = open_project(qtbot, window, paths)
    qtbot.waitUntil(lambda: controller.project.frames[2].header_read, timeout=TIMEOUT_MS)
    controller.project.keep_neighbours = 0
    controller.project.drop(2)  # only its file is left
    Path(paths[2]).unlink()

    strip = window.epochs
    with qtbot.waitSignal(strip.stampsReady, timeout=TIMEOUT_MS):
        window.state.select(1)
    assert [s.problem for s in strip.stamps] == ["", "", "file missing"]
    captions = [label.text() for label in strip.findChildren(QLabel)]
    assert "epoch_3.fits\n(file missing)" in captions

    with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS) as failed:
        controller.go_to(2)
    assert "epoch_3.fits" in failed.args[0] and "no such file" in failed.args[0]
    assert window.error_banner.message == failed.args[0]
    assert controller.project.frames[2].status == FAILED and cell(window, 2, OBJECTS) == "failed"
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.go_to(0)  # dropped (keep 0): scored again from its file
    assert window.state.data is controller.project.data(0)
    window.labels.label([0], REAL)
    assert cell(window, 0, LABELED) == "1"


def test_frames_without_wcs_or_of_other_sizes_open_and_the_status_bar_says_so(
    qtbot, window, epoch_paths, tmp_path
):
    bare = write_epochs(tmp_path / "bare", 1, prefix="bare", wcs=False, shape=(128, 128))
    small = write_epochs(tmp_path / "small", 1, prefix="small", shape=(96, 96))
    paths = epoch_paths[:2] + [str(bare[0]), str(small[0])]
    controller = window.project
    said = []
    window.statusBar().messageChanged.connect(said.append)
    with qtbot.waitSignal(controller.fieldsChanged, timeout=TIMEOUT_MS):
        open_project(qtbot, window, paths)
    dock = window.docks["Frames"].widget()
    for text in (dock.notes_label.text(), next(m for m in said if "no WCS" in m)):
        assert "1 of 4 frames have no WCS" in text and "bare_1.fits" in text
        assert "different sizes" in text and "96x96" in text
    assert dock.notes_label.isVisible()
    frames = controller.project.frames
    assert all(f.objects > 10 and f.status != FAILED for f in frames)  # they work
    assert [f.field_id for f in frames] == [0, 0, -1, 1]
    model = window.docks["Frames"].widget().model
    assert model.data(model.index(2, FIELD)) == "—"
    assert "no WCS" in model.data(model.index(2, NAME), Qt.ItemDataRole.ToolTipRole)


def test_a_failed_frame_is_retried_from_the_dock_and_joins_its_field(qtbot, window, tmp_path):
    """A frame unreadable when it was reached fails; once mended, the dock's Retry scores
    it again and it becomes a frame like the others: counts, its field, its epochs."""
    paths = [str(p) for p in write_epochs(tmp_path / "mended", 3, shape=(128, 128))]
    content = Path(paths[2]).read_bytes()
    Path(paths[2]).write_bytes(b"SIMPLE  = not a FITS file yet" * 100)
    controller = window.project
    project = controller.project
    dock = window.docks["Frames"].widget()
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        controller.open_paths(paths)
    qtbot.waitUntil(lambda: all(f.header_read for f in project.frames), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: project.frames[2].status == FAILED, timeout=TIMEOUT_MS)
    assert [f.field_id for f in project.frames] == [0, 0, -1]
    assert dock.retry_button.isVisible() and dock.retry_button.text() == "Retry 1 failed"
    menu = dock.context_menu(0)
    retry_one, retry_all = menu.actions()
    assert not retry_one.isEnabled() and retry_all.text() == "Retry failed frames (1)"

    Path(paths[2]).write_bytes(content)
    retry_one = dock.context_menu(2).actions()[0]
    assert retry_one.isEnabled()
    with qtbot.waitSignal(controller.fieldsChanged, timeout=TIMEOUT_MS):
        retry_one.trigger()
    qtbot.waitUntil(lambda: project.frames[2].status == READY, timeout=TIMEOUT_MS)
    frame = project.frames[2]
    assert (
        frame.error == "" and frame.objects > 10 and cell(window, 2, OBJECTS) == str(frame.objects)
    )
    assert [f.field_id for f in project.frames] == [0, 0, 0]
    assert project.epochs(0) == [0, 1, 2]
    assert not dock.retry_button.isVisible() and project.failed() == []
    assert "3 of 3 frames scored" in dock.totals_label.text()


def test_retry_failed_frames_is_a_file_menu_action(qtbot, window, tmp_path):
    bad = tmp_path / "late.fits"
    bad.write_bytes(b"SIMPLE  = not a fits file at all" * 100)
    controller = window.project
    with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS):
        controller.open_paths([str(bad)])
    qtbot.waitUntil(lambda: not controller.busy, timeout=TIMEOUT_MS)
    action = next(a for a in window.findChildren(QAction) if a.text() == "Re&try failed frames")
    assert action.shortcut().toString() == "Ctrl+Shift+R"
    write_epochs(tmp_path / "good", 1, shape=(128, 128))
    bad.write_bytes((tmp_path / "good" / "epoch_1.fits").read_bytes())
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        action.trigger()  # the current frame: shown once it is scored
    assert not window.error_banner.isVisible()
    assert window.state.data is controller.project.data(0)


def redetect_shown_frame(qtbot, window, fwhm, threshold):
    """Set a FWHM and a detection threshold in the frame panel and re-detect the frame
    shown, as a user does."""
    panel = window.frame_settings
    panel.fwhm_override.setChecked(True)
    panel.fwhm_spin.setValue(fwhm)
    panel.threshold_spin.setValue(threshold)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        qtbot.mouseClick(panel.redetect_button, Qt.MouseButton.LeftButton)


def test_frames_are_read_with_the_panels_options_and_keep_their_own(qtbot, window, epoch_paths):
    """Frames added after the user re-detected one at another threshold are read at that
    threshold (a habit carried over, as File › Open does), not with its FWHM; and a
    re-detected frame whose data were dropped is read again as it was re-detected."""
    controller = open_project(qtbot, window, epoch_paths[:1])
    project = controller.project
    redetect_shown_frame(qtbot, window, fwhm=5.0, threshold=6.0)
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        controller.open_paths(epoch_paths[1:])
    for index in (1, 2):
        options = project.data(index).reading.options
        assert (options.detect_threshold, options.fwhm) == (6.0, None)
    project.drop(0)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.go_to(0)
    options = project.data(0).reading.options
    assert (options.detect_threshold, options.fwhm) == (6.0, 5.0)


def test_the_window_reads_the_frame_shown_with_its_own_options(qtbot, window, epoch_paths):
    """After frame 0 was re-detected with another FWHM and threshold, frame 1, once shown,
    is what the window's own readings (Model › Detect objects, a catalog) start from: its
    options, not frame 0's."""
    controller = open_project(qtbot, window, epoch_paths[:2])
    redetect_shown_frame(qtbot, window, fwhm=5.0, threshold=6.0)
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        controller.go_to(1)
    shown = controller.project.data(1).reading.options
    assert (shown.detect_threshold, shown.fwhm) == (3.0, None)
    assert window.frame_options == shown
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        window.detect_objects()
    options = window.state.data.reading.options
    assert (options.detect_threshold, options.fwhm) == (3.0, None)


def test_retry_this_frame_shows_it_once_scored_and_says_when_it_failed_again(
    qtbot, window, tmp_path
):
    """The dock's "Retry this frame" switches the window to the frame once it is scored
    (unless the user went to another frame meanwhile), and says so in the status bar when
    it fails again; "Retry failed frames" leaves the window on the frame it shows."""
    paths = [str(p) for p in write_epochs(tmp_path / "late", 4, shape=(128, 128))]
    contents = {k: Path(paths[k]).read_bytes() for k in (1, 2, 3)}
    for k in contents:
        Path(paths[k]).write_bytes(b"SIMPLE  = not a FITS file yet" * 100)
    controller = window.project
    project = controller.project
    dock = window.docks["Frames"].widget()
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        controller.open_paths(paths)
    qtbot.waitUntil(lambda: project.failed() == [1, 2, 3], timeout=TIMEOUT_MS)
    assert controller.current == 0

    def retry_this(row):
        dock.context_menu(row).actions()[0].trigger()

    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        retry_this(2)  # still broken
    assert project.failed() == [1, 2, 3] and controller.current == 0
    message = window.statusBar().currentMessage()
    assert message.startswith("epoch_3.fits failed again: not a readable FITS file")

    Path(paths[2]).write_bytes(contents[2])
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        retry_this(2)
    assert controller.current == 2 and window.state.data is project.data(2)
    assert dock.table.currentIndex().row() == 2

    Path(paths[1]).write_bytes(contents[1])
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        retry_this(1)
        controller.go_to(0)  # the user went elsewhere while it was scored
    assert project.frames[1].status == READY
    assert controller.current == 0 and window.state.data is project.data(0)

    Path(paths[3]).write_bytes(contents[3])
    with qtbot.waitSignal(controller.idle, timeout=TIMEOUT_MS):
        dock.context_menu(0).actions()[1].trigger()  # Retry failed frames (1)
    assert project.failed() == [] and project.frames[3].objects > 10  # scored
    assert controller.current == 0 and window.state.data is project.data(0)
