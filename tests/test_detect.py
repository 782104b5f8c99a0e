"""Detection and FWHM on real frames (hand-checked lists), on hard synthetic frames, in
tiles, on bad input; saturated objects get the reason 'saturated'."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from rbvet.core.detect.detection import _running_median, detect_objects
from rbvet.core.detect.psf import _adaptive_moments, measure_fwhm
from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.frame import frame_from_array, read_frame

REAL = Path(__file__).parent / "data" / "real"

# Hand-checked on PNG cut-outs (tests/data/real/README.md): 0-based (x, y) of every
# obvious star and artifact.
SAAO = REAL / "saao_1m_raw_a8280271.fits"
SAAO_STARS = [(168, 38), (450, 432), (402, 316), (123, 497), (333, 439)]
SAAO_HITS = [  # cosmic-ray hits: single pixels, pairs, a short track at (338, 121)
    (290, 463), (209, 216), (93, 69), (55, 131), (152, 160), (148, 167), (185, 8),
    (142, 262), (338, 121), (405, 137), (483, 93), (496, 25), (420, 306),
]  # fmt: skip
SAAO_FWHM = 7.6  # Moffat fits and half-maximum areas of the two bright stars
UKIDSS = REAL / "ukidss_wfcam_image.fits"
UKIDSS_STARS = [
    (146, 268), (252, 181), (166, 168), (150, 149), (147, 120), (161, 96), (155, 87),
    (65, 56), (73, 19),  # faint, on the nebula's outskirts
]  # fmt: skip
UKIDSS_FWHM = 4.15  # Moffat fits of five stars: 4.09-4.30


def _found(table, points, radius):
    """How many of ``points`` have a detection within ``radius`` px."""
    x, y = np.asarray(table["x"]), np.asarray(table["y"])
    return sum(bool(len(x)) and np.hypot(x - px, y - py).min() <= radius for px, py in points)


# ------------------------------------------------------------------------ real frames


def test_raw_saao_frame_finds_every_obvious_star_and_hit_and_the_right_fwhm():
    frame = read_frame(SAAO)
    assert frame.facts()["data_section"] == "[17:528,1:520]"  # TRIMSEC: prescan left out
    assert any("8 rows at the top edge masked" in note for note in frame.notes)
    table = detect_objects(frame)
    assert _found(table, SAAO_STARS, 4) == len(SAAO_STARS)
    assert _found(table, SAAO_HITS, 3) == len(SAAO_HITS)
    assert not np.any(table["y"] >= 510)  # nothing on the undeclared overscan rows
    assert not np.any(table["x"] < 16)  # nor on the prescan
    estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
    assert estimate.source == "measured" and estimate.n_stars >= 3
    assert estimate.fwhm == pytest.approx(SAAO_FWHM, rel=0.1)  # not the hits' 1.3 px


def test_ukidss_frame_finds_faint_stars_on_the_nebula():
    frame = read_frame(UKIDSS)
    assert frame.hdu == 1
    table = detect_objects(frame)
    assert _found(table, UKIDSS_STARS, 4) == len(UKIDSS_STARS)
    assert len(table) <= 3 * len(UKIDSS_STARS)  # the nebula is not cut into pieces
    estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
    assert estimate.fwhm == pytest.approx(UKIDSS_FWHM, rel=0.12)


# ------------------------------------------------------------------- synthetic frames


def _gaussian(shape, x, y, peak, fwhm):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    sigma = fwhm / 2.3548
    return peak * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)


def test_faint_stars_next_to_a_bright_galaxy_and_a_saturated_star_are_found():
    rng = np.random.default_rng(5)
    shape, noise, fwhm = (320, 320), 10.0, 3.0
    image = rng.normal(1000.0, noise, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(xx - 100, (yy - 160) / 0.6)
    image += 200.0 * np.exp(-7.67 * ((r / 25.0) ** 0.25 - 1.0)).clip(max=50.0)  # de Vaucouleurs
    image += _gaussian(shape, 240, 160, 2e6, fwhm)  # a star far above saturation ...
    image[120:200, 239:242] = 50000.0  # ... with a bleed column
    image = np.minimum(image, 50000.0)
    faint = [(100 + 30 * np.cos(a), 160 + 20 * np.sin(a)) for a in np.linspace(0, 6, 6)]
    faint += [(225, 160), (255, 150), (240, 110), (240, 215)]  # around the saturated star
    for x, y in faint:
        image += _gaussian(shape, x, y, 12 * noise, fwhm)  # 12 sigma peaks
    frame = frame_from_array(image.astype(np.float32))
    assert frame.saturation_source == "histogram plateau"
    table = detect_objects(frame)
    assert _found(table, faint, 2.5) >= len(faint) - 1
    assert _found(table, [(100, 160)], 2.5) == 1  # the galaxy's nucleus


def test_tiles_find_the_same_objects_as_one_extraction(make_star_field):
    image, x, y, _ = make_star_field(shape=(300, 340), fwhm=2.5, n=120, seed=3)
    frame = frame_from_array(image)
    whole = detect_objects(frame, tile_size=None)
    tiled = detect_objects(frame, tile_size=100, tile_overlap=16)
    assert len(tiled) == len(whole) >= 100
    order_whole = np.lexsort((whole["x"], whole["y"]))
    order_tiled = np.lexsort((tiled["x"], tiled["y"]))
    np.testing.assert_allclose(tiled["x"][order_tiled], whole["x"][order_whole], atol=1e-6)
    np.testing.assert_allclose(tiled["y"][order_tiled], whole["y"][order_whole], atol=1e-6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("width", [1, 9, 23, 41])
@pytest.mark.parametrize("axis", [0, 1])
def test_running_median_is_scipys_line_median_with_edges_repeated(width, axis):
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(width)
    data = rng.normal(size=(37, 29)).astype(np.float32)
    data[5] += np.linspace(0.0, 50.0, 29, dtype=np.float32)  # steps between lines
    data[:, 3] += 100.0
    size = (width, 1) if axis == 0 else (1, width)
    expected = median_filter(data, size=size, mode="nearest")
    np.testing.assert_array_equal(_running_median(data, width, axis), expected)


def test_adaptive_moments_of_round_and_elongated_objects_are_unchanged():
    # Expected values were taken with the window computed as one 2-D Gaussian per object,
    # before it was computed as a product of a row and a column profile.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160].astype(float)
    image = rng.normal(0.0, 1.0, yy.shape)
    objects = [  # x, y, sigma along, sigma across, angle (radians)
        (30.3, 30.6, 1.2, 1.2, 0.0), (80.0, 30.0, 3.0, 1.5, 0.5), (130.7, 29.2, 2.0, 1.0, -1.0),
        (30.0, 90.0, 4.0, 4.0, 0.0), (80.4, 89.8, 1.0, 2.5, 0.3), (130.0, 90.0, 2.5, 2.5, 0.0),
    ]  # fmt: skip
    for x0, y0, along, across, angle in objects:
        u = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
        v = (yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle)
        image += 200.0 * np.exp(-0.5 * ((u / along) ** 2 + (v / across) ** 2))
    x = np.array([o[0] for o in objects]) + 0.4  # off-centre starts: the window recentres
    y = np.array([o[1] for o in objects]) - 0.3
    out = _adaptive_moments(image, np.ones(image.shape, bool), np.ones(image.shape), x, y, 10, 1.5)
    expected = {
        "fwhm": [2.85109799627, 5.004166304799, 3.331674926463, 9.404359340613,
                 3.717555075809, 5.877398408883],
        "snr": [426.885223324556, 708.086593894902, 473.655981364177, 1417.847256833521,
                506.259011990854, 886.755903904663],
        "ellipticity": [1.725974126274e-03, 3.344394163537e-01, 3.318420546973e-01,
                        8.654616738132e-04, 4.266607101855e-01, 3.969657540270e-04],
    }  # fmt: skip
    for name, values in expected.items():
        np.testing.assert_allclose(out[name], values, rtol=1e-9, err_msg=name)
    np.testing.assert_array_equal(out["area"], [6, 19, 8, 69, 11, 25])
    np.testing.assert_array_equal(out["usable"], [True, True, True, False, True, True])


def test_a_3x3_frame_is_refused_in_one_line(tmp_path):
    path = tmp_path / "tiny.fits"
    fits.PrimaryHDU(np.arange(9, dtype=np.float32).reshape(3, 3)).writeto(path)
    with pytest.raises(RbvetError, match=r"^.*tiny\.fits: the image is only 3x3 pixels") as info:
        detect_objects(read_frame(path))
    assert "\n" not in str(info.value)


def test_a_frame_of_cosmic_rays_only_says_so_and_uses_the_default_fwhm(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.normal(100.0, 5.0, (200, 200)).astype(np.float32)
    hits = rng.integers(5, 195, (2, 80))
    image[hits[1], hits[0]] += rng.uniform(200, 3000, 80).astype(np.float32)
    path = tmp_path / "hits.fits"
    fits.PrimaryHDU(image).writeto(path)
    frame = read_frame(path)
    table = detect_objects(frame)
    assert len(table) >= 70
    with pytest.warns(RbvetWarning, match=r"hits\.fits: too few well-measured stars.*3 px"):
        estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
    assert estimate.source == "default" and estimate.n_stars == 0


# ------------------------------------------------------------------------- saturation


def test_a_saturated_star_is_scored_with_the_reason_saturated():
    from rbvet.core.classify import score_objects
    from rbvet.core.cutouts.stamps import REASON_SATURATED
    from rbvet.core.jobs import run_job
    from rbvet.core.model import load_model

    rng = np.random.default_rng(8)
    shape, fwhm = (160, 160), 3.0
    image = rng.normal(500.0, 10.0, shape)
    image += _gaussian(shape, 50, 50, 5e5, fwhm) + _gaussian(shape, 110, 110, 800.0, fwhm)
    image[30:70, 49:52] = np.maximum(image[30:70, 49:52], 30000.0)  # bleed
    image = np.minimum(image, 30000.0).astype(np.float32)
    header = fits.Header({"SATURATE": 30000.0})
    frame = frame_from_array(image, header=header).ensure_background()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores, reasons = run_job(
            score_objects(frame, [50.0, 110.0], [50.0, 110.0], load_model(), fwhm)
        )
    assert reasons[0] == REASON_SATURATED and np.isfinite(scores[0])  # scored and said
    assert reasons[1] == "" and np.isfinite(scores[1])
