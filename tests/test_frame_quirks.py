"""Quirks of real frames from many instruments, each reproduced on a small synthetic frame.

Found by running every command on real FITS images from public packages' test data (a
Palomar Schmidt frame of M1, a CFHT MegaPrime cutout, solar images, ...); each test here
fails without the fix it guards.
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from rbvet.core.errors import RbvetWarning
from rbvet.core.io.frame import frame_from_array, read_frame

SKY, SIGMA = 1000.0, 10.0


def _frame_with_nebula(side=177, amplitude=8000.0, width=30.0, seed=1):
    """A small frame filled by a bright extended nebula, like M1 on a 177 px POSS cutout."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    r2 = (x - side / 2) ** 2 + (y - side / 2) ** 2
    image = rng.normal(SKY, SIGMA, (side, side)) + amplitude * np.exp(-r2 / (2 * width**2))
    return image.astype(np.float32)


def test_noise_and_background_maps_do_not_overshoot_on_a_coarse_mesh():
    """Three meshes a side and a nebula in the middle: sep's spline went below zero noise."""
    frame = frame_from_array(_frame_with_nebula()).ensure_background()
    assert frame.noise.min() > 0.5 * SIGMA
    assert frame.background.min() > SKY - 3 * SIGMA


def test_objects_over_half_of_every_mesh_keep_the_first_background_estimate():
    """When leaving objects out empties every mesh (the Sun's disc on a 128 px AIA image),
    sep answered background 0 and noise 1 everywhere; the first estimate is kept instead."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[:128, :128]
    image = rng.normal(100.0, 5.0, (128, 128))
    for cy in range(3, 128, 16):  # a star every 16 px: grown, they cover 62 % of each mesh
        for cx in range(3, 128, 16):
            image += 500.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2.0)
    frame = frame_from_array(image.astype(np.float32)).ensure_background()
    assert np.abs(np.median(frame.background) - 100.0) < 10.0
    assert 2.5 < np.median(frame.noise) < 20.0


def test_a_data_section_reaching_beyond_the_image_is_ignored(tmp_path):
    """A 101 px CFHT MegaPrime cutout kept its CCD's ``DATASEC = [33:2080,1:4612]``; clipped
    to the cutout, it masked the first 32 columns of good sky as if they were prescan."""
    path = tmp_path / "cutout.fits"
    image = np.random.default_rng(3).normal(SKY, SIGMA, (101, 101)).astype(np.float32)
    fits.PrimaryHDU(image, header=fits.Header({"DATASEC": "[33:2080,1:4612]"})).writeto(path)
    with pytest.warns(RbvetWarning, match="cutout.fits: DATASEC ignored: .*reaches beyond"):
        frame = read_frame(path)
    assert not frame.mask.any() and frame.data_section is None
    assert "DATASEC ignored" in frame.notes[0]


def test_a_frame_with_a_wide_nan_border_reads_without_numpy_warnings():
    """The last 50 columns NaN (a mosaic's or a reprojected frame's empty border): the
    search for undeclared overscan printed numpy's "All-NaN slice" warning on the CLI."""
    image = np.random.default_rng(4).normal(SKY, SIGMA, (300, 300)).astype(np.float32)
    image[:, 250:] = np.nan
    image[50:60] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = frame_from_array(image)
    assert frame.mask[:, 250:].all() and frame.mask[50:60].all()
    assert not frame.notes


def _correlated_noise_frame(shape=(256, 256), seed=5):
    """Sky whose noise is correlated over a few pixels, as on resampled, drizzled or
    scanned frames (a Gaussian of 1 px sigma), with a 4 x 4 grid of faint stars."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(0.0, 1.0, shape), 1.0)
    image = SKY + SIGMA * noise / noise.std()
    y, x = np.mgrid[: shape[0], : shape[1]]
    stars = [(cx, cy) for cx in range(32, shape[1], 64) for cy in range(32, shape[0], 64)]
    for cx, cy in stars:
        image += 30 * SIGMA * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
    return image.astype(np.float32), np.array(stars, float)


def test_correlated_noise_leaves_room_to_inject_fakes():
    """On frames with correlated noise (M13 and a UK Schmidt frame from the DSS, an
    amateur thumbnail) the noise itself was taken for objects: nowhere was left to inject
    a fake, and ``rbvet assess`` refused the frame."""
    from rbvet.core.inject.inject import free_distance

    image, stars = _correlated_noise_frame()
    frame = frame_from_array(image)
    distance = free_distance(frame, stars[:, 0], stars[:, 1])
    assert (distance >= 5).mean() > 0.5  # 16 stars, grown by a few px, leave most free
    assert (distance[stars[:, 1].astype(int), stars[:, 0].astype(int)] == 0).all()


def _star_field(path, header=None, seed=7):
    rng = np.random.default_rng(seed)
    image = rng.normal(SKY, SIGMA, (200, 200))
    y, x = np.mgrid[:200, :200]
    for cx, cy in rng.uniform(20, 180, (12, 2)):
        image += 200 * SIGMA * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
    fits.PrimaryHDU(image.astype(np.float32), header=fits.Header(header or {})).writeto(path)
    return str(path)


@pytest.mark.filterwarnings("always::rbvet.core.errors.RbvetWarning")
def test_many_frames_name_each_frame_once_in_a_warning(tmp_path, capsys):
    """``rbvet classify`` of several frames printed "warning: FRAME: FRAME: DATASEC ...":
    the warning names its frame already."""
    from rbvet.cli import main

    cutout = _star_field(tmp_path / "cutout.fits", {"DATASEC": "[1:4096,1:4096]"})
    plain = _star_field(tmp_path / "plain.fits", seed=8)
    assert main(["classify", cutout, plain, "-o", str(tmp_path / "out"), "--workers", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "DATASEC" in line]
    assert len(lines) == 1 and lines[0].count(cutout) == 1, lines


def test_a_catalog_row_far_off_the_frame_does_not_stop_the_fwhm_measurement(tmp_path):
    """A finite but absurd position (x = 1e308) among a catalog's rows overflowed the
    neighbour search of the FWHM measurement (found by tests/test_fuzz.py)."""
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import measure_fwhm

    frame = read_frame(_star_field(tmp_path / "stars.fits"))
    found = detect_objects(frame)
    x = np.append(np.asarray(found["x"]), 1e308)
    y = np.append(np.asarray(found["y"]), 1e308)
    estimate = measure_fwhm(frame, x, y)
    assert estimate.fwhm == pytest.approx(2.3548 * 1.5, rel=0.15)


def test_int8_image_with_blank_reads(tmp_path):
    """int8 is stored as uint8 with BZERO = -128; astropy compared BLANK with the values
    after the offset and failed ("cannot convert float NaN to integer"), so the frame was
    refused as corrupt (found by tests/test_fuzz.py)."""
    values = np.tile(np.array([-127, 0, 1, 5], np.int8), (16, 4))
    hdu = fits.PrimaryHDU(values)
    hdu.header["BLANK"] = 1  # as stored: the value -127
    path = tmp_path / "int8.fits"
    hdu.writeto(path)
    image = read_frame(path, saturation=False).image
    assert np.isnan(image[values == -127]).all()
    np.testing.assert_array_equal(image[values != -127], values[values != -127])
