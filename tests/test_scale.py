"""Large frames and catalogs: memory stays bounded, and the window stops cleanly.

The full-size check (an 8k x 8k frame with 100k objects, peak memory against 4 GB) is
``benchmarks/bench_scale.py``; these tests keep to sizes CI can afford and check the
mechanisms that make the large case work: chunks bounded in pixels, and a window that
cancels its classification and ends its threads when it is closed mid-way.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
from rbvet.core.cutouts.stamps import MAX_CHUNK_PIXELS, MAX_STAMP_SIZE, iter_stamps
from rbvet.core.io.frame import frame_from_array

CLASSIFY_TIMEOUT_MS = 300_000


def star_field(shape, n_stars, fwhm=3.0, seed=0):
    """Noise, sky and ``n_stars`` Gaussian stars, stamped all at once (no loop over stars).

    Returns ``(image, x, y)`` with 0-based float32 image and float64 positions.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    image = rng.normal(100.0, 5.0, shape).astype(np.float32)
    x = rng.uniform(8, nx - 9, n_stars)
    y = rng.uniform(8, ny - 9, n_stars)
    peak = rng.uniform(30.0, 3000.0, n_stars)
    half = 6
    offsets = np.arange(-half, half + 1)
    cols = np.rint(x).astype(np.int64)[:, None] + offsets
    rows = np.rint(y).astype(np.int64)[:, None] + offsets
    sigma = fwhm / 2.3548
    gauss_x = np.exp(-0.5 * ((cols - x[:, None]) / sigma) ** 2)
    gauss_y = np.exp(-0.5 * ((rows - y[:, None]) / sigma) ** 2)
    stamps = (peak[:, None, None] * gauss_y[:, :, None] * gauss_x[:, None, :]).astype(np.float32)
    np.add.at(image, (rows[:, :, None], cols[:, None, :]), stamps)
    return image, x, y


@pytest.fixture(scope="module")
def big_field(tmp_path_factory):
    """A 2048 x 2048 frame with 6000 stars, written as FITS with an ECSV catalog."""
    directory = tmp_path_factory.mktemp("big")
    image, x, y = star_field((2048, 2048), 6000)
    frame_path = directory / "big.fits"
    catalog_path = directory / "big.ecsv"
    fits.PrimaryHDU(image).writeto(frame_path)
    Table({"x": x, "y": y}).write(catalog_path)
    return frame_path, catalog_path


# ------------------------------------------------------------------- bounded memory


@pytest.mark.parametrize("fwhm", [3.0, 7.0, 40.0, 95.0])
def test_stamp_chunks_are_bounded_in_pixels_whatever_the_fwhm(fwhm):
    image, x, y = star_field((256, 256), 300)
    frame = frame_from_array(image).ensure_background()
    rescale = plan_rescale(fwhm, PreprocessParams())
    assert rescale.stamp_size <= MAX_STAMP_SIZE
    seen = 0
    for start, stamps in iter_stamps(frame, x, y, rescale):
        assert start == seen
        assert stamps.data.size <= max(MAX_CHUNK_PIXELS, rescale.stamp_size**2)
        seen += len(stamps)
    assert seen == len(x)


def test_an_absurd_fwhm_is_refused_before_any_memory_is_spent():
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.errors import RbvetError

    frame = frame_from_array(np.ones((64, 64)), path="frame.fits")
    rescale = plan_rescale(1e6, PreprocessParams())
    with pytest.raises(RbvetError, match="FWHM") as error:
        cut_stamps(frame, [10.0], [10.0], rescale)
    assert "frame.fits" in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------- closing while it works


@pytest.fixture
def window(qtbot, tmp_path):
    from PyQt6.QtCore import QSettings

    from rbvet.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings)
    qtbot.addWidget(main_window)
    main_window.resize(1200, 800)
    main_window.show()
    yield main_window
    main_window.cancel_job(wait=True)


@pytest.mark.parametrize(
    "phase",
    [
        "started",  # before the job has done anything
        "Reading",  # reading the frame, mapping its background, finding the FWHM
        "Classifying",  # scoring chunk by chunk
    ],
)
def test_closing_while_a_big_frame_opens_cancels_the_job(qtbot, window, big_field, phase):
    frame_path, catalog_path = big_field
    closed = []

    def close_in(progress):
        # Closed from the progress report itself: the result cannot be shown before it.
        reading = phase == "Reading" and progress.message.startswith("Reading")
        scoring = phase == "Classifying" and progress.message == "Classifying"
        if not closed and (reading or (scoring and progress.done > 0)):
            closed.append(window.job)
            window.close()

    window.open_frame(frame_path, catalog_path)
    if phase == "started":
        closed.append(window.job)
        window.close()
    else:
        window.job.progressed.connect(close_in)
        qtbot.waitUntil(lambda: bool(closed), timeout=CLASSIFY_TIMEOUT_MS)
    job = closed[0]
    assert not job.isRunning()  # it stopped in the bounded stop wait: not left to run on
    assert window.state.data is None  # nothing half-classified was shown
    # the leak check (tests/conftest.py) then verifies that no thread is left running


def test_the_application_exits_when_closed_mid_classification(big_field, tmp_path):
    """A real process: open the big frame, close the window while it is classified, and
    the process ends on its own, promptly and with status 0 (no crash, no hang)."""
    frame_path, catalog_path = big_field
    script = textwrap.dedent(
        f"""
        import sys
        from PyQt6.QtCore import QSettings
        from PyQt6.QtWidgets import QApplication
        from rbvet.gui.main_window import MainWindow

        app = QApplication([])
        window = MainWindow(settings=QSettings({str(tmp_path / "s.ini")!r},
                                               QSettings.Format.IniFormat))
        window.show()

        def close_once_scoring(progress):
            if progress.message == "Classifying" and progress.done > 0 and window.isVisible():
                print("closing at", progress.done, "of", progress.total, flush=True)
                window.close()

        window.open_frame({str(frame_path)!r}, {str(catalog_path)!r})
        window.job.progressed.connect(close_once_scoring)
        sys.exit(app.exec())
        """
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "closing at" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
