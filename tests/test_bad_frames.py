"""Frames that hold nothing a user expects (issue 16's bad input), on the CLI and in the window.

A frame with no stars (only cosmic rays), an entirely saturated frame, a 3x3 frame, a
``DATASEC`` outside the image or malformed. Each says in one line which file and what is
wrong; where rbvet goes on with a fallback, the output says so.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from PyQt6.QtCore import QSettings

from rbvet.cli import main

CLASSIFY_TIMEOUT_MS = 120_000
# The command line prints rbvet's warnings (one line each); in the window they are raised
# in a worker thread, where the suite's "error" filter would turn a fallback into a
# failure, and the window says the fallback on screen instead.
SAY_WARNINGS = pytest.mark.filterwarnings("always::rbvet.core.errors.RbvetWarning")
IN_WINDOW = pytest.mark.filterwarnings("ignore::rbvet.core.errors.RbvetWarning")


def cosmic_rays_only(path):
    rng = np.random.default_rng(7)
    image = rng.normal(100.0, 5.0, (200, 200)).astype(np.float32)
    y, x = rng.integers(5, 195, (2, 40))
    image[y, x] += rng.uniform(300.0, 3000.0, 40).astype(np.float32)
    fits.PrimaryHDU(image).writeto(path)


def saturated_everywhere(path, header=None):
    image = np.full((200, 200), 65535.0, np.float32)
    fits.PrimaryHDU(image, header=fits.Header(header or {})).writeto(path)


def three_by_three(path):
    fits.PrimaryHDU(np.arange(9, dtype=np.float32).reshape(3, 3)).writeto(path)


def with_datasec(section):
    def write(path, make_star_field):
        image, *_ = make_star_field(shape=(160, 160), n=25, seed=8)
        fits.PrimaryHDU(image, header=fits.Header({"DATASEC": section})).writeto(path)

    return write


REFUSED = {
    "saturated": (saturated_everywhere, "every usable pixel is 65535"),
    "saturated_header": (
        lambda path: saturated_everywhere(path, {"SATURATE": 60000}),
        "100% of the usable pixels are saturated",
    ),
    "tiny": (three_by_three, "only 3x3 pixels"),
}
DATASEC = {
    "outside": ("[300:400,1:160]", "lies outside the 160x160 image"),
    "malformed": ("[1:100;1-160", "is not of the form [x1:x2,y1:y2]"),
}


def new_window(qtbot, tmp_path):
    from rbvet.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(window)
    window.show()
    return window


def open_in_window(qtbot, window, path):
    with qtbot.waitSignal(window.classified, timeout=CLASSIFY_TIMEOUT_MS):
        window.open_frame(path)
    return window.state.data


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_frame_with_nothing_to_detect_is_one_line_on_the_cli(kind, tmp_path, capsys):
    write, words = REFUSED[kind]
    path = tmp_path / f"{kind}.fits"
    write(path)
    assert main(["classify", str(path), "-o", str(tmp_path / "out.ecsv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"rbvet: error: {path}: ") and words in err
    assert not (tmp_path / "out.ecsv").exists()


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_frame_with_nothing_to_detect_is_one_line_in_the_window(kind, qtbot, tmp_path):
    write, words = REFUSED[kind]
    path = tmp_path / f"{kind}.fits"
    write(path)
    window = new_window(qtbot, tmp_path)
    with qtbot.waitSignal(window.failed, timeout=CLASSIFY_TIMEOUT_MS) as failure:
        window.open_frame(path)
    message = failure.args[0]
    assert str(path) in message and words in message and "\n" not in message
    assert window.error_banner.message == message


@SAY_WARNINGS
def test_cosmic_rays_only_fall_back_to_the_default_fwhm_and_say_so_on_the_cli(tmp_path, capsys):
    path = tmp_path / "cosmics.fits"
    cosmic_rays_only(path)
    out = tmp_path / "cosmics.ecsv"
    assert main(["classify", str(path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    warning = f"rbvet: warning: {path}: too few well-measured stars to estimate the FWHM"
    assert warning in err
    assert "FWHM 3.00 px (default: too few stars to measure it)" in err
    assert "classify.py" not in err  # one line, not Python's warning with its source line
    meta = Table.read(out).meta
    assert meta["rbvet_fwhm_source"] == "default" and meta["rbvet_fwhm_stars"] == 0


@IN_WINDOW
def test_cosmic_rays_only_say_the_fallback_in_the_window(qtbot, tmp_path):
    path = tmp_path / "cosmics.fits"
    cosmic_rays_only(path)
    window = new_window(qtbot, tmp_path)
    data = open_in_window(qtbot, window, path)
    assert data.reading.estimate.source == "default"
    assert "1 fallback (see Frame settings)" in window.summary_label.text()
    assert "too few stars to measure the FWHM" in window.summary_label.toolTip()
    panel = window.frame_settings
    assert "too few stars to measure: default 3.00 px" in panel.fwhm_label.text()
    assert "too few stars to measure the FWHM" in panel.notes_label.text()


@SAY_WARNINGS
@pytest.mark.parametrize("kind", sorted(DATASEC))
def test_a_bad_datasec_is_ignored_and_said_on_the_cli(kind, tmp_path, capsys, make_star_field):
    section, words = DATASEC[kind]
    path = tmp_path / f"{kind}.fits"
    with_datasec(section)(path, make_star_field)
    out = tmp_path / "out.ecsv"
    assert main(["classify", str(path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"rbvet: warning: {path}: DATASEC ignored: " in err and words in err
    assert "data section the whole image" in err
    notes = Table.read(out).meta["rbvet_notes"]
    assert "DATASEC ignored" in notes and words in notes


@IN_WINDOW
@pytest.mark.parametrize("kind", sorted(DATASEC))
def test_a_bad_datasec_is_ignored_and_said_in_the_window(kind, qtbot, tmp_path, make_star_field):
    section, words = DATASEC[kind]
    path = tmp_path / f"{kind}.fits"
    with_datasec(section)(path, make_star_field)
    window = new_window(qtbot, tmp_path)
    data = open_in_window(qtbot, window, path)
    assert data.frame.data_section is None
    panel = window.frame_settings
    assert "DATASEC ignored" in panel.notes_label.text() and words in panel.notes_label.text()
    assert "the whole image" in panel.section_label.text()
    assert "fallback" in window.summary_label.text()
