"""Stamp cutting: positions, edges, masks, reasons; vectorised equals per-object slicing."""

import numpy as np
import pytest

from rbvet.core.cutouts import stamps as stamps_module
from rbvet.core.cutouts.preprocess import PreprocessParams, Rescale, plan_rescale
from rbvet.core.cutouts.stamps import (
    REASON_CENTRE_MASKED,
    REASON_MOSTLY_MISSING,
    REASON_NONFINITE,
    REASON_OFF_FRAME,
    FramePlanes,
    cut_stamps,
    iter_inputs,
    iter_stamps,
)
from rbvet.core.io.frame import frame_from_array


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


@pytest.fixture
def awkward_frame():
    """A sky-varying frame with NaN pixels, a masked block and a bright star near a corner."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:230, :310]
    image = (100 + 0.05 * xx + rng.normal(0, 5, xx.shape)).astype(np.float32)
    image += 3000 * np.exp(-((xx - 303) ** 2 + (yy - 4) ** 2) / 8.0).astype(np.float32)
    image[50:60, 70:75] = np.nan
    mask = np.zeros(image.shape, bool)
    mask[150:190, 10:45] = True
    frame = frame_from_array(image, mask=mask)
    return frame.ensure_background()


def awkward_positions(rng, n=400):
    x = np.concatenate([rng.uniform(-45, 355, n), [np.nan, 1e30, -3e20, 303.2, 72, 25, 309.6]])
    y = np.concatenate([rng.uniform(-45, 275, n), [3, 4, 5, 4.4, 55, 170, 229.4]])
    return x, y


@pytest.mark.parametrize("fwhm", [1.2, 1.9, 2.5, 4.6, 6.0, 9.5, 13.0])
def test_frame_planes_equal_cut_stamps(awkward_frame, fwhm):
    """Inputs, missing fractions and reasons from the frame planes equal the stamp path."""
    x, y = awkward_positions(np.random.default_rng(int(fwhm * 10)))
    rescale = plan_rescale(fwhm)
    params = PreprocessParams()
    stamps = cut_stamps(awkward_frame, x, y, rescale)
    cut = FramePlanes(awkward_frame, rescale).cut(x, y, params)
    np.testing.assert_array_equal(cut.reason, stamps.reason)
    np.testing.assert_allclose(cut.missing, stamps.missing, atol=1e-6)
    scorable = stamps.scorable
    assert scorable.sum() > 100 and (~scorable).sum() > 20
    np.testing.assert_allclose(cut.inputs[scorable], stamps.inputs(params)[scorable], atol=2e-6)


@pytest.mark.parametrize("coverage", [0.0, 1e9])
def test_iter_inputs_paths_agree(awkward_frame, monkeypatch, coverage):
    """Whichever path `iter_inputs` takes (planes or stamps), the chunks are the same."""
    x, y = awkward_positions(np.random.default_rng(5), n=60)
    rescale = plan_rescale(6.0)
    expected = cut_stamps(awkward_frame, x, y, rescale)
    monkeypatch.setattr(stamps_module, "PLANE_MIN_COVERAGE", coverage)
    planes_built = []
    monkeypatch.setattr(stamps_module.FramePlanes, "_block_windows", _recording(planes_built))
    chunks = list(iter_inputs(awkward_frame, x, y, rescale, chunk_size=16))
    assert [start for start, _ in chunks] == list(range(0, len(x), 16))
    assert bool(planes_built) == (coverage == 0.0)
    reason = np.concatenate([part.reason for _, part in chunks])
    inputs = np.concatenate([part.inputs for _, part in chunks])
    np.testing.assert_array_equal(reason, expected.reason)
    good = expected.scorable
    np.testing.assert_allclose(inputs[good], expected.inputs()[good], atol=2e-6)


def _recording(calls):
    original = stamps_module.FramePlanes._block_windows

    def block_windows(self):
        calls.append(self)
        return original(self)

    return block_windows


def test_frame_planes_need_maps_and_refuse_absurd_fwhm(frame):
    with pytest.raises(ValueError):
        FramePlanes(frame_from_array(np.ones((50, 50), np.float32)), Rescale())
    with pytest.raises(Exception, match="FWHM"):
        FramePlanes(frame, plan_rescale(400.0))


def test_a_smaller_first_chunk_then_full_chunks(awkward_frame):
    x, y = awkward_positions(np.random.default_rng(6), n=53)
    chunks = list(
        iter_inputs(awkward_frame, x, y, plan_rescale(2.5), chunk_size=20, first_chunk_size=7)
    )
    assert [(start, len(part)) for start, part in chunks] == [(0, 7), (7, 20), (27, 20), (47, 13)]
    whole = FramePlanes(awkward_frame, plan_rescale(2.5)).cut(x, y)
    np.testing.assert_array_equal(
        np.concatenate([part.inputs for _, part in chunks]), whole.inputs
    )
