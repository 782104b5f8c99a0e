"""How the vetting panels turn pixel values and scores into display colours.

One place for the names shown in the stretch combo boxes and what they mean:

- an *interval* (``zscale``, ``99.5%``, ``99%``, ``min-max``) picks the pixel values shown
  as black and white; it is computed with `astropy.visualization` on a regular
  subsample of at most `MAX_INTERVAL_SAMPLES` usable pixels, so an 8k x 8k frame costs
  no more than a small one;
- a *stretch* (``linear``, ``asinh``, ``log``, ``sqrt``) is an `astropy.visualization`
  stretch evaluated once on a `LUT_SIZE`-entry lookup table; the image is then mapped
  through that table in row blocks, so no full-size float copy of the frame is made.

It also holds the score palette shared by the frame markers and the score histogram:
bogus-side colours below the threshold, real-side colours above it.
"""

from __future__ import annotations

import numpy as np
from astropy.visualization import (
    AsinhStretch,
    LinearStretch,
    LogStretch,
    MinMaxInterval,
    PercentileInterval,
    SqrtStretch,
    ZScaleInterval,
)

INTERVAL_NAMES = ("zscale", "99.5%", "99%", "min-max")
"""Interval names in the order the combo boxes list them."""

STRETCH_NAMES = ("linear", "asinh", "log", "sqrt")
"""Stretch names in the order the combo boxes list them."""

MAX_INTERVAL_SAMPLES = 1_000_000
"""Most pixels an interval is computed from (a regular subsample of the image)."""

LUT_SIZE = 65536
"""Entries of the stretch lookup table: fine enough that log and asinh stay smooth."""

ROW_BLOCK_PIXELS = 1 << 22
"""Pixels converted at a time by `to_uint8` (bounds the float temporaries to ~16 MB)."""


def hex_color(color):
    """``#rrggbb`` of an (r, g, b) colour, for rich text."""
    return "#{:02x}{:02x}{:02x}".format(*color)


BOGUS_COLOR = (255, 112, 67)
"""RGB of scores below the threshold (orange-red)."""
THRESHOLD_COLOR = (255, 214, 10)
"""RGB of scores at the threshold, and of the threshold line (amber)."""
REAL_COLOR = (41, 182, 246)
"""RGB of scores at or above the threshold (sky blue)."""
LABELED_REAL_COLOR = (0, 230, 118)
"""RGB of objects the user labeled real (green)."""
LABELED_BOGUS_COLOR = (234, 64, 251)
"""RGB of objects the user labeled bogus (magenta)."""
UNSCORED_COLOR = (158, 158, 158)
"""RGB of objects that could not be scored (grey)."""
SELECTION_COLOR = (255, 255, 255)
"""RGB of the selected-object highlight."""


def make_interval(name):
    """The `astropy.visualization` interval for a combo-box ``name``.

    Parameters
    ----------
    name : str
        One of `INTERVAL_NAMES`.

    Returns
    -------
    astropy.visualization.BaseInterval
    """
    if name == "zscale":
        return ZScaleInterval()
    if name == "min-max":
        return MinMaxInterval()
    if name.endswith("%"):
        return PercentileInterval(float(name[:-1]))
    raise ValueError(f"unknown interval {name!r}; expected one of {INTERVAL_NAMES}")


def make_stretch(name):
    """The `astropy.visualization` stretch for a combo-box ``name``.

    Parameters
    ----------
    name : str
        One of `STRETCH_NAMES`.

    Returns
    -------
    astropy.visualization.BaseStretch
    """
    stretches = {
        "linear": LinearStretch,
        "asinh": AsinhStretch,
        "log": LogStretch,
        "sqrt": SqrtStretch,
    }
    if name not in stretches:
        raise ValueError(f"unknown stretch {name!r}; expected one of {STRETCH_NAMES}")
    return stretches[name]()


def interval_sample(image, mask=None, max_samples=MAX_INTERVAL_SAMPLES):
    """Usable pixels of ``image`` on a regular grid of at most ``max_samples`` points.

    Parameters
    ----------
    image : ndarray (H, W)
    mask : ndarray (H, W) bool, optional
        True where a pixel is unusable; those pixels, and non-finite ones, are left out.
    max_samples : int

    Returns
    -------
    ndarray (M,)
        A 1-D copy of the sampled pixel values (M may be 0).
    """
    image = np.asarray(image)
    step = max(1, int(np.ceil(np.sqrt(image.size / max(1, max_samples)))))
    sample = image[::step, ::step]
    usable = np.isfinite(sample)
    if mask is not None:
        usable &= ~np.asarray(mask)[::step, ::step]
    return sample[usable]


def display_limits(image, interval="zscale", mask=None, max_samples=MAX_INTERVAL_SAMPLES):
    """The pixel values shown as black and white under ``interval``.

    Parameters
    ----------
    image : ndarray (H, W)
    interval : str
        One of `INTERVAL_NAMES`.
    mask : ndarray (H, W) bool, optional
        Unusable pixels, left out of the estimate.
    max_samples : int
        The interval is computed on a regular subsample of at most this many pixels.

    Returns
    -------
    vmin, vmax : float
        ``vmax > vmin`` always (a flat or empty image gives ``(v, v + 1)``).
    """
    sample = interval_sample(image, mask, max_samples)
    if sample.size == 0:
        return 0.0, 1.0
    vmin, vmax = (float(v) for v in make_interval(interval).get_limits(sample))
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        vmin = float(np.min(sample))
        vmax = max(float(np.max(sample)), vmin + 1.0) if vmax <= vmin else vmax
    return vmin, vmax


def stretch_lut(stretch="linear", size=LUT_SIZE):
    """The stretch evaluated on ``size`` evenly spaced values in [0, 1], as uint8 levels.

    Parameters
    ----------
    stretch : str
        One of `STRETCH_NAMES`.
    size : int

    Returns
    -------
    ndarray (size,) uint8
    """
    levels = make_stretch(stretch)(np.linspace(0.0, 1.0, size), clip=True)
    return np.clip(levels * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_uint8(image, interval="zscale", stretch="linear", mask=None, limits=None):
    """Render ``image`` as uint8 display levels: interval, then stretch.

    Non-finite pixels become 0. The image is read in row blocks; no full-size float
    copy is made, so this suits frames of any size.

    Parameters
    ----------
    image : ndarray (H, W) or (N, H, W)
    interval : str
        One of `INTERVAL_NAMES`; ignored when ``limits`` is given.
    stretch : str
        One of `STRETCH_NAMES`.
    mask : ndarray, optional
        Unusable pixels, left out of the interval estimate.
    limits : (float, float), optional
        Precomputed ``(vmin, vmax)`` (see `display_limits`).

    Returns
    -------
    ndarray, same shape as ``image``, uint8
    """
    image = np.asarray(image)
    vmin, vmax = limits if limits is not None else display_limits(image, interval, mask)
    lut = stretch_lut(stretch)
    scale = np.float32((LUT_SIZE - 1) / (vmax - vmin)) if vmax > vmin else np.float32(0)
    offset = np.float32(vmin)
    out = np.empty(image.shape, np.uint8)
    rows = image.reshape(-1, image.shape[-1]) if image.ndim != 1 else image[None]
    out_rows = out.reshape(rows.shape)
    block = max(1, ROW_BLOCK_PIXELS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], block):
        chunk = rows[start : start + block].astype(np.float32, copy=True)
        chunk -= offset
        chunk *= scale
        chunk += np.float32(0.5)
        np.clip(chunk, 0, LUT_SIZE - 1, out=chunk)
        chunk[np.isnan(chunk)] = 0
        out_rows[start : start + block] = lut[chunk.astype(np.uint16)]
    return out


def score_colors(scores, threshold, steps=None):
    """RGB colours of ``scores``: bogus hue below ``threshold``, real hue above it.

    The colour runs from `BOGUS_COLOR` (score 0) to `THRESHOLD_COLOR` (at the
    threshold) to `REAL_COLOR` (score 1), so a marker's hue says on which side of the
    threshold it falls. NaN scores get `UNSCORED_COLOR`.

    Parameters
    ----------
    scores : ndarray (N,)
    threshold : float
    steps : int, optional
        Quantise each side of the threshold to this many colours (so that a few pens
        can draw thousands of markers).

    Returns
    -------
    ndarray (N, 3) uint8
    """
    scores = np.asarray(scores, np.float64)
    t = float(np.clip(threshold, 1e-6, 1 - 1e-6))
    below = scores < t
    with np.errstate(invalid="ignore"):
        weight = np.where(below, scores / t, (scores - t) / (1.0 - t))
    weight = np.clip(np.nan_to_num(weight), 0.0, 1.0)[:, None]
    if steps:
        weight = np.rint(weight * steps) / steps
    bogus, middle, real = (
        np.array(c, np.float64) for c in (BOGUS_COLOR, THRESHOLD_COLOR, REAL_COLOR)
    )
    start = np.where(below[:, None], bogus, middle)
    stop = np.where(below[:, None], middle, real)
    colors = start + (stop - start) * weight
    colors[~np.isfinite(scores)] = UNSCORED_COLOR
    return np.rint(colors).astype(np.uint8)
