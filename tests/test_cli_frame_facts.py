"""``rbvet classify`` says how it read the frame, and writes the same into the catalog.

HDU, saturation level, FWHM and how many stars, objects detected: printed, and written with
the model, the score threshold and the detection settings into the output's metadata.
"""

import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.cli import main

SATURATE = 20000.0


@pytest.fixture
def two_extension_frame(tmp_path, make_star_field):
    """A file whose second image HDU (``SCI2``) has a saturated star and a SATURATE card."""
    first, *_ = make_star_field(shape=(128, 128), n=16, seed=5)
    image, x, y, _ = make_star_field(shape=(160, 160), fwhm=3.0, n=25, seed=6)
    image[
        int(round(y[0])) - 1 : int(round(y[0])) + 2, int(round(x[0])) - 1 : int(round(x[0])) + 2
    ] = SATURATE + 500
    header = fits.Header({"SATURATE": SATURATE})
    path = tmp_path / "two.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(first, name="SCI1"),
            fits.ImageHDU(image, header=header, name="SCI2"),
        ]
    ).writeto(path)
    return path


def metadata(path):
    return {key.lower(): value for key, value in Table.read(path).meta.items()}


def test_classify_prints_and_writes_hdu_saturation_fwhm_and_objects(
    two_extension_frame, tmp_path, capsys
):
    out = tmp_path / "out.ecsv"
    argv = ["classify", str(two_extension_frame), "--hdu", "SCI2", "-t", "0.3", "-o", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "HDU 2, 160 x 160 px" in err
    assert f"saturation {SATURATE:g} (header SATURATE, 9 pixels)" in err
    detected = re.search(r"Detected (\d+) objects at 3 sigma", err)
    fwhm = re.search(r"FWHM (\d+\.\d+) px from (\d+) stars", err)
    assert detected and fwhm
    table = Table.read(out)
    meta = metadata(out)
    assert meta["rbvet_hdu"] == 2
    assert meta["rbvet_saturation"] == SATURATE
    assert meta["rbvet_saturation_source"] == "header SATURATE"
    assert meta["rbvet_saturated_pixels"] == 9
    assert meta["rbvet_objects"] == int(detected.group(1)) == len(table)
    assert meta["rbvet_fwhm"] == pytest.approx(float(fwhm.group(1)), abs=0.006)
    assert meta["rbvet_fwhm_stars"] == int(fwhm.group(2))
    assert meta["rbvet_model"] == "rbvet_default.keras"
    assert meta["rbvet_threshold"] == 0.3
    assert (meta["rbvet_detect_threshold"], meta["rbvet_min_area"]) == (3.0, 3)


def test_the_frame_options_of_the_command_line_reach_the_catalog(
    two_extension_frame, tmp_path, capsys
):
    out = tmp_path / "out.fits"
    argv = [
        "classify",
        str(two_extension_frame),
        "--hdu",
        "2",
        "--saturation",
        "none",
        "--no-datasec",
        "--min-area",
        "6",
        "--detect-threshold",
        "8",
        "--fwhm",
        "3.3",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "no saturation level found" in err and "Detected" in err and "at 8 sigma" in err
    meta = metadata(out)
    assert meta["rbvet_saturation_source"] == "none" and "rbvet_saturation" not in meta
    assert (meta["rbvet_detect_threshold"], meta["rbvet_min_area"]) == (8.0, 6)
    assert meta["rbvet_fwhm"] == 3.3 and meta["rbvet_fwhm_source"] == "given"


def test_a_given_saturation_level_is_used_and_a_wrong_one_refused(
    two_extension_frame, tmp_path, capsys
):
    out = tmp_path / "out.ecsv"
    argv = ["classify", str(two_extension_frame), "--hdu", "2", "-o", str(out)]
    assert main([*argv, "--saturation", "15000"]) == 0
    assert metadata(out)["rbvet_saturation_source"] == "given"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*argv, "--saturation", "lots"])
    assert "not a number or 'none'" in capsys.readouterr().err
    assert np.isfinite(metadata(out)["rbvet_saturation"])
