"""Stamp cutting: positions, edges, masks, reasons; vectorised equals per-object slicing."""

import numpy as np
import pytest

from rbvet.core.frame import frame_from_array
from rbvet.core.preprocess import Rescale, plan_rescale
from rbvet.core.stamps import (
    REASON_CENTRE_MASKED,
    REASON_MOSTLY_MISSING,
    REASON_NONFINITE,
    REASON_OFF_FRAME,
    cut_stamps,
    iter_stamps,
)


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    image = rng.normal(100, 5, (200, 300)).astype(np.float32)
    return frame_from_array(image, background=100.0, noise=5.0)


def test_interior_stamps_equal_slices(frame):
    rng = np.random.default_rng(0)
    x = rng.uniform(20, 280, 50)
    y = rng.uniform(20, 180, 50)
    stamps = cut_stamps(frame, x, y, Rescale())
    assert stamps.data.shape == (50, 31, 31)
    for i in range(50):
        xc, yc = int(round(x[i])), int(round(y[i]))
        np.testing.assert_array_equal(
            stamps.data[i], frame.image[yc - 15 : yc + 16, xc - 15 : xc + 16]
        )
    assert np.all(stamps.scorable) and np.all(stamps.missing == 0)
    np.testing.assert_allclose(stamps.noise, 5.0)


@pytest.mark.parametrize("fwhm", [6.0, 7.0, 9.5])
def test_downscale_stamp_puts_object_in_middle_block(frame, fwhm):
    rescale = plan_rescale(fwhm)
    k = rescale.down
    for x in (140.0, 140.3, 140.49, 140.51, 140.7):
        stamps = cut_stamps(frame, [x], [100.0], rescale)
        assert stamps.data.shape == (1, 31 * k, 31 * k)
        # The object's pixel lies in block 15 along x, and the block centre is within 0.5 px.
        col0 = np.floor(x - (15 * k + (k - 1) / 2) + 0.5)
        block_centre = col0 + 15 * k + (k - 1) / 2
        assert abs(block_centre - x) <= 0.5 + 1e-9


def test_edge_objects_are_padded_with_background_and_scored(frame):
    stamps = cut_stamps(frame, [0.0, 299.0, 299.0], [100.0, 100.0, 199.0], Rescale())
    assert stamps.reason.tolist() == ["", "", REASON_MOSTLY_MISSING]
    assert stamps.missing[0] == pytest.approx(15 * 31 / 961)
    assert stamps.missing[2] == pytest.approx(1 - 16 * 16 / 961)
    # Off-frame half of the first stamp holds the background.
    assert np.all(stamps.data[0, :, :15] == 100.0)
    assert np.all(stamps.data[0, :, 15:] == frame.image[85:116, 0:16])


def test_reasons(frame):
    frame.mask[50, 50] = True
    frame.mask[150:190, 200:240] = True
    x = [np.nan, -5.0, 50.0, 220.0, 400.0, 50.2]
    y = [10.0, 100.0, 50.0, 170.0, 10.0, np.inf]
    stamps = cut_stamps(frame, x, y, Rescale())
    assert stamps.reason.tolist() == [
        REASON_NONFINITE,
        REASON_OFF_FRAME,
        REASON_CENTRE_MASKED,
        REASON_CENTRE_MASKED,
        REASON_OFF_FRAME,
        REASON_NONFINITE,
    ]
    # Mostly masked but the centre is good: still unscorable.
    frame.mask[:] = True
    frame.mask[100, 100] = False
    stamps = cut_stamps(frame, [100.0], [100.0], Rescale())
    assert stamps.reason.tolist() == [REASON_MOSTLY_MISSING]


def test_masked_and_nan_pixels_hold_background(frame):
    frame.image[60, 61] = np.nan
    frame.mask[62, 60] = True
    stamps = cut_stamps(frame, [60.0], [60.0], Rescale())
    assert np.isfinite(stamps.data).all()
    assert stamps.data[0, 15, 16] == 100.0 and stamps.data[0, 17, 15] == 100.0
    assert stamps.missing[0] == pytest.approx(2 / 961)


def test_chunks_cover_all_objects(frame):
    x = np.linspace(10, 290, 25)
    y = np.linspace(10, 190, 25)
    whole = cut_stamps(frame, x, y, Rescale())
    starts, parts = zip(*iter_stamps(frame, x, y, Rescale(), chunk_size=7), strict=True)
    assert starts == (0, 7, 14, 21)
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts]), whole.data)
