"""The vectorised preprocessing against a plain per-object implementation of the rules."""

import numpy as np
import pytest
from astropy.stats import mad_std

from rbvet.core.cutouts.preprocess import (
    PreprocessParams,
    Rescale,
    edge_median,
    fast_arcsinh,
    plan_rescale,
    preprocess_stamps,
)


def reference_input(sci, bg, err, rescale, size=31, softening_sigma=3.0):
    """One stamp, written out step by step as the seed document describes it."""
    sci = sci.astype(np.float64)
    if bg is None:
        ring = np.concatenate([sci[0, :], sci[-1, :], sci[:, 0], sci[:, -1]])
        bg = np.median(ring)
    bg = np.broadcast_to(np.asarray(bg, np.float64), sci.shape)
    if err is None:
        sigma = mad_std(sci)
    else:
        sigma = float(np.median(err))
    if not np.isfinite(sigma) or sigma <= 0:
        sigma = 1.0
    linear = sci - bg
    if rescale.down > 1:
        k = rescale.down
        h = (linear.shape[0] // k) * k
        linear = linear[:h, :h].reshape(h // k, k, h // k, k).mean(axis=(1, 3))
    elif rescale.up > 1:
        linear = np.repeat(np.repeat(linear, rescale.up, axis=0), rescale.up, axis=1)
    h = linear.shape[0]
    if h > size:
        start = (h - size) // 2
        linear = linear[start : start + size, start : start + size]
    elif h < size:
        pad = size - h
        linear = np.pad(linear, ((pad // 2, pad - pad // 2),) * 2, mode="edge")
    compressed = np.arcsinh(linear / (softening_sigma * sigma))
    channels = []
    for channel in (linear, compressed):
        peak = np.abs(channel).max()
        channels.append(channel / peak if peak > 1e-10 else channel)
    return np.stack(channels, axis=-1)


def random_stamps(rng, n, size):
    yy, xx = np.mgrid[:size, :size] - size // 2
    flux = rng.uniform(10, 5000, n)[:, None, None]
    width = rng.uniform(0.6, 4, n)[:, None, None]
    stars = flux * np.exp(-(xx**2 + yy**2) / (2 * width**2))
    sky = rng.uniform(50, 500, n)[:, None, None]
    return (sky + stars + rng.normal(0, 5, (n, size, size))).astype(np.float32), sky[:, 0, 0]


@pytest.mark.parametrize("fwhm", [None, 1.1, 1.4, 2.2, 3.0, 4.4, 5.0, 7.9, 9.5, 12.0])
@pytest.mark.parametrize("mode", ["none", "scalar", "maps"])
def test_batch_matches_reference(fwhm, mode):
    rng = np.random.default_rng(42)
    rescale = plan_rescale(fwhm)
    data, sky = random_stamps(rng, 20, rescale.stamp_size)
    if mode == "none":
        bg, err, ref_bg, ref_err = None, None, [None] * 20, [None] * 20
    elif mode == "scalar":
        bg, err = sky.astype(np.float32), np.full(20, 5.0)
        ref_bg, ref_err = sky, err
    else:
        bg = np.broadcast_to(sky[:, None, None], data.shape).astype(np.float32)
        err = rng.uniform(4, 6, data.shape)
        ref_bg, ref_err = bg, err
    batch = preprocess_stamps(data, bg, err, rescale)
    assert batch.shape == (20, 31, 31, 2) and batch.dtype == np.float32
    for i in range(20):
        expected = reference_input(data[i], ref_bg[i], ref_err[i], rescale)
        np.testing.assert_allclose(batch[i], expected, atol=2e-5)


def test_plan_follows_seed_rule():
    assert plan_rescale(3.0) == Rescale()
    assert plan_rescale(4.5) == Rescale()  # boundary: ratio 1.5 is not above threshold
    assert plan_rescale(6.0).down == 2 and plan_rescale(6.0).stamp_size == 62
    assert plan_rescale(9.1).down == 3
    assert plan_rescale(1.9).up == 2 and plan_rescale(1.9).stamp_size == 31
    assert plan_rescale(0.9).up == 3
    assert plan_rescale(None) == Rescale() and plan_rescale(float("nan")) == Rescale()


def test_a_fwhm_below_the_trained_ones_is_upscaled_to_at_least_2_5_px():
    """The seed's rule up-scales 1.2 px by round(2.5) = 2, to 2.4 px: sharper than any
    star the model was trained on; by 3 it is 3.6 px. From 1.25 px on, the seed's rule."""
    assert plan_rescale(1.2).up == 3 and plan_rescale(1.24).up == 3
    assert plan_rescale(1.25).up == 2 and plan_rescale(1.38).up == 2
    assert plan_rescale(0.85).up == 4  # round(3.53): the seed's rule already goes further


def test_inputs_are_brightness_invariant():
    rng = np.random.default_rng(1)
    data, sky = random_stamps(rng, 5, 31)
    a = preprocess_stamps(data - sky[:, None, None], 0.0, 5.0)
    b = preprocess_stamps(100 * (data - sky[:, None, None]), 0.0, 500.0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(np.abs(a).max(axis=(1, 2)), 1.0)


def test_downscaled_input_is_filled_with_real_pixels():
    # A flat frame with a gradient: an edge-padded input would have constant borders.
    rescale = plan_rescale(8.0)
    yy, xx = np.mgrid[: rescale.stamp_size, : rescale.stamp_size]
    data = (xx + 2.0 * yy)[None].astype(np.float32)
    linear = preprocess_stamps(data, 0.0, 1.0, rescale, PreprocessParams(normalize=False))
    border = linear[0, :, 0, 0]
    assert np.all(np.diff(border) > 0)


def test_params_round_trip_and_zero_stamp():
    params = PreprocessParams(target_fwhm=2.5)
    assert PreprocessParams.from_dict(params.to_dict() | {"unknown": 1}) == params
    out = preprocess_stamps(np.zeros((2, 31, 31), np.float32), 0.0, 1.0)
    assert np.all(out == 0)
    assert preprocess_stamps(np.zeros((0, 31, 31)), 0.0, 1.0).shape == (0, 31, 31, 2)


def test_edge_median():
    stamps = np.zeros((1, 5, 5))
    stamps[0, 1:4, 1:4] = 100
    assert edge_median(stamps)[0] == 0


def test_fast_arcsinh_matches_numpy():
    rng = np.random.default_rng(8)
    values = np.concatenate(
        [
            rng.normal(0, 1, 1000) * 10.0 ** rng.uniform(-8, 8, 1000),
            [0.0, -0.0, 1e-30, -1e-30, 1e18, 2e19, -5e25, 3.4e38, -3.4e38],
        ]
    ).astype(np.float32)
    got = fast_arcsinh(values)
    assert got.dtype == np.float32
    expected = np.arcsinh(values.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)
    assert np.array_equal(np.signbit(got), np.signbit(values))
    special = fast_arcsinh(np.array([np.inf, -np.inf, np.nan], np.float32))
    assert special[0] == np.inf and special[1] == -np.inf and np.isnan(special[2])
