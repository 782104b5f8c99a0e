"""The frame settings dock (offscreen): what the frame was read with, and reading it again.

Each test opens a small synthetic frame in the window, changes a field of the panel, asks
for a re-detection with its button and waits for the window's signals.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from gui_window import shown_window
from PyQt6.QtCore import Qt

from rbvet.gui.frame_settings import SATURATION_LEVEL
from rbvet.gui.state import REAL

CLASSIFY_TIMEOUT_MS = 120_000


@pytest.fixture
def window(qtbot, tmp_path):
    main_window = shown_window(qtbot, tmp_path)
    yield main_window
    main_window.cancel_job(wait=True)


@pytest.fixture
def frame_path(tmp_path, make_star_field):
    image, *_ = make_star_field(shape=(160, 160), fwhm=3.0, n=25, seed=1)
    path = tmp_path / "stars.fits"
    fits.PrimaryHDU(image).writeto(path)
    return path


def open_frame(qtbot, window, path, catalog=None):
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(path, catalog)
    return window.state.data


def redetect(qtbot, window):
    """Click the panel's button and wait for the frame to be shown again."""
    panel = window.frame_settings
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        qtbot.mouseClick(panel.redetect_button, Qt.MouseButton.LeftButton)
    return window.state.data


def test_a_fwhm_override_rescores_and_survives_the_redetection(qtbot, window, frame_path):
    data = open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    measured = data.reading.estimate
    assert measured.source == "measured" and measured.n_stars >= 5
    assert f"from {measured.n_stars} stars" in panel.fwhm_label.text()
    assert not panel.fwhm_spin.isEnabled()  # no override yet: the measured value shown
    assert panel.fwhm_spin.value() == pytest.approx(measured.fwhm, abs=0.01)
    star_tiles = panel.star_sizes.getData()[1]
    assert star_tiles.sum() == measured.n_stars  # the histogram holds the stars it used
    labeled = int(np.nanargmax(data.scores))
    window.labels.label([labeled], REAL)

    panel.fwhm_override.setChecked(True)
    panel.fwhm_spin.setValue(3 * measured.fwhm)
    rescored = redetect(qtbot, window)

    assert rescored is not data
    assert rescored.fwhm == pytest.approx(3 * measured.fwhm, abs=0.01)
    assert np.nanmax(np.abs(rescored.scores - data.scores)) > 0.1
    # what the user set is still there, the measurement beside it
    assert panel.fwhm_override.isChecked()
    assert panel.fwhm_spin.value() == pytest.approx(3 * measured.fwhm, abs=0.01)
    assert "set by you" in panel.fwhm_label.text()
    assert panel.chosen_line.value() == pytest.approx(np.log10(3 * measured.fwhm), abs=1e-3)
    assert panel.measured_line.value() == pytest.approx(np.log10(measured.fwhm), abs=1e-3)
    assert window.frame_options.fwhm == pytest.approx(3 * measured.fwhm, abs=0.01)
    # the label followed its object (matched by position in the store)
    same = int(np.argmin(np.hypot(rescored.x - data.x[labeled], rescored.y - data.y[labeled])))
    assert rescored.labels[same] == REAL


def test_the_hdu_chooser_reads_the_other_image_of_a_two_extension_file(
    qtbot, window, tmp_path, make_star_field
):
    first, *_ = make_star_field(shape=(160, 160), n=25, seed=2)
    second, *_ = make_star_field(shape=(120, 200), n=9, seed=3)
    path = tmp_path / "two.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(first, name="CCD1"),
            fits.ImageHDU(second, name="CCD2"),
        ]
    ).writeto(path)
    data = open_frame(qtbot, window, path)
    panel = window.frame_settings
    assert data.frame.shape == (160, 160)
    assert "HDU 1 (CCD1)" in panel.used_label.text()
    assert panel.hdu_combo.isEnabled()
    assert [panel.hdu_combo.itemData(i) for i in range(panel.hdu_combo.count())] == [1, 2]
    assert "CCD2 — 200 × 120" in panel.hdu_combo.itemText(1)

    panel.hdu_combo.setCurrentIndex(1)
    other = redetect(qtbot, window)

    assert other.frame.shape == (120, 200)
    assert other.reading.facts["hdu"] == 2
    assert "HDU 2 (CCD2)" in panel.used_label.text()
    assert panel.hdu_combo.currentData() == 2
    assert np.array_equal(other.frame.image, second)


def test_cancel_leaves_the_frame_and_its_options_as_they_were(qtbot, window, frame_path):
    data = open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    options = window.frame_options
    panel.fwhm_override.setChecked(True)
    panel.fwhm_spin.setValue(9.0)
    qtbot.mouseClick(panel.redetect_button, Qt.MouseButton.LeftButton)
    assert panel.busy and panel.cancel_button.isVisible()
    job = window.job
    with qtbot.waitSignal(job.cancelled, timeout=CLASSIFY_TIMEOUT_MS):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy and not window.busy, timeout=CLASSIFY_TIMEOUT_MS)
    assert window.state.data is data
    assert window.frame_options is options
    assert data.fwhm == pytest.approx(data.reading.estimate.fwhm)
    assert panel.redetect_button.isVisible() and not panel.progress_bar.isVisible()


def test_a_catalog_frame_disables_detection_and_says_why(
    qtbot, window, frame_path, tmp_path, make_star_field
):
    _, x, y, _ = make_star_field(shape=(160, 160), fwhm=3.0, n=25, seed=1)
    catalog = tmp_path / "stars.ecsv"
    Table({"x": x, "y": y}).write(catalog)
    open_frame(qtbot, window, frame_path, catalog)
    panel = window.frame_settings
    assert not panel.threshold_spin.isEnabled() and not panel.min_area_spin.isEnabled()
    assert "stars.ecsv" in panel.catalog_note.text()
    assert "only when objects are detected" in panel.catalog_note.text()
    assert panel.fwhm_override.isEnabled()  # the FWHM still applies
    assert "25 objects in the catalog" in panel.objects_label.text()


def test_detection_settings_and_saturation_apply_to_the_next_reading(qtbot, window, frame_path):
    data = open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    assert panel.threshold_spin.isEnabled()
    assert not panel.catalog_note.isVisible()
    panel.threshold_spin.setValue(50.0)
    panel.min_area_spin.setValue(9)
    panel.saturation_combo.setCurrentText(SATURATION_LEVEL)
    level = float(np.percentile(data.frame.image, 99.9))
    panel.saturation_spin.setValue(level)
    panel.datasec_check.setChecked(False)

    again = redetect(qtbot, window)

    options = again.reading.options
    assert (options.detect_threshold, options.min_area) == (50.0, 9)
    assert options.saturation == pytest.approx(level, abs=0.1)
    assert options.use_datasec is False
    assert len(again) < len(data)  # a 50-sigma threshold finds fewer objects
    assert again.frame.saturation_source == "given"
    assert f"{len(again)} objects detected at 50 σ, 9 px" in panel.objects_label.text()
    assert panel.threshold_spin.value() == 50.0 and panel.min_area_spin.value() == 9
    assert panel.saturation_combo.currentText() == SATURATION_LEVEL


def test_another_frame_starts_from_its_own_hdu_and_fwhm(
    qtbot, window, frame_path, tmp_path, make_star_field
):
    open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    panel.fwhm_override.setChecked(True)
    panel.fwhm_spin.setValue(6.0)
    panel.threshold_spin.setValue(4.0)
    redetect(qtbot, window)
    image, *_ = make_star_field(shape=(140, 140), n=16, seed=4)
    other = tmp_path / "other.fits"
    fits.PrimaryHDU(image).writeto(other)
    data = open_frame(qtbot, window, other)
    assert data.reading.options.fwhm is None  # measured for this frame
    assert data.reading.options.detect_threshold == 4.0  # a habit of the user: kept
    assert not panel.fwhm_override.isChecked()


def test_dragging_the_fwhm_line_sets_the_override(qtbot, window, frame_path):
    data = open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    assert panel.chosen_line.value() == pytest.approx(np.log10(data.fwhm), abs=1e-3)
    panel.chosen_line.setValue(np.log10(5.0))
    panel.chosen_line.sigPositionChangeFinished.emit(panel.chosen_line)
    assert panel.fwhm_override.isChecked() and panel.fwhm_spin.value() == pytest.approx(5.0)
    assert panel.options().fwhm == pytest.approx(5.0)


def test_picking_a_saturation_level_starts_from_the_highest_pixel(qtbot, window, frame_path):
    data = open_frame(qtbot, window, frame_path)
    panel = window.frame_settings
    assert data.reading.facts["saturation"] is None
    panel.saturation_combo.textActivated.emit(SATURATION_LEVEL)
    panel.saturation_combo.setCurrentText(SATURATION_LEVEL)
    assert panel.saturation_spin.isEnabled()
    assert panel.saturation_spin.value() == pytest.approx(float(data.frame.image.max()), abs=0.1)
    assert panel.options().saturation == pytest.approx(float(data.frame.image.max()), abs=0.1)


def test_the_files_noise_map_is_named_and_can_be_turned_off(
    qtbot, window, tmp_path, make_star_field
):
    image, *_ = make_star_field(shape=(160, 160), fwhm=3.0, n=25, seed=1)
    weight = np.full(image.shape, 600.0, np.float32)
    weight[:, 70:73] = 600.0 / 16  # a seam four times noisier
    path = tmp_path / "drizzled.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(image, name="SCI"), fits.ImageHDU(weight, name="WHT")]
    ).writeto(path)
    data = open_frame(qtbot, window, path)
    panel = window.frame_settings
    assert data.frame.noise_source == "HDU 2 'WHT' (weight)"
    assert panel.noise_map_check.isChecked()
    assert "shaped by the HDU 2 'WHT' (weight)" in panel.noise_label.text()

    panel.noise_map_check.setChecked(False)
    again = redetect(qtbot, window)
    assert again.reading.options.file_noise_map is False
    assert again.frame.noise_source == "sky"
    assert "no noise map used" in panel.noise_label.text()
    assert not panel.noise_map_check.isChecked()
