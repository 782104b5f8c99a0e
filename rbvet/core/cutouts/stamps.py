"""Cut raw stamps for all objects of a frame at once.

A stamp is the raw science cutout around an object, with its background cutout and a
noise level: everything the preprocessing needs, and what the label store keeps, so a
change of preprocessing never needs the FITS file again.

Stamps are cut by fancy indexing with clipped index grids (no per-object loop). Pixels
outside the frame, masked or non-finite are replaced by the background there and
counted; an object is unscorable, with a reason, when its position is not finite, its
centre is off the frame or masked, or most of its stamp is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.cutouts.preprocess import (
    PreprocessParams,
    Rescale,
    noise_level,
    preprocess_stamps,
    rescale_linear,
    two_channel_inputs,
)
from rbvet.core.errors import RbvetError

REASON_NONFINITE = "non-finite position"
REASON_OFF_FRAME = "off frame"
REASON_CENTRE_MASKED = "centre masked"
REASON_MOSTLY_MISSING = "stamp mostly missing"
REASON_SATURATED = "saturated"
"""Reason of a scored object whose centre is saturated: its score is kept, but a flat-topped
star is unlike what the network learnt, so a low score there is never silently bogus."""
SATURATION_REACH = 1
"""An object is saturated when a saturated pixel lies this close (px) to its centre pixel."""
DEFAULT_MAX_MISSING = 0.5
DEFAULT_CHUNK_SIZE = 2048
MAX_CHUNK_PIXELS = DEFAULT_CHUNK_SIZE * 62 * 62
"""Stamp pixels per chunk: a large FWHM (wide stamps) means fewer objects per chunk."""
MAX_STAMP_SIZE = 1023
"""Widest stamp cut (33 blocks of 31 px): a FWHM up to about 100 px at the canonical 3 px."""
POSITION_LIMIT = 2.0**40
"""Positions beyond this many pixels are off any frame; they are not turned into indices."""
NOISE_SAMPLE_STEP = 5
PLANE_MIN_COVERAGE = 1 / 16
"""Cut inputs from frame planes when the objects' stamps cover at least this fraction of
the frame; below it, building the planes costs more than cutting stamps one by one."""


@dataclass
class Stamps:
    """Raw stamps of a batch of objects.

    Attributes
    ----------
    data : ndarray (N, S, S) float32
        Science pixels; missing pixels hold the background value.
    background : ndarray (N, S, S) float32
        Background pixels.
    noise : ndarray (N,) float32
        Noise sigma of each stamp (median of the noise map), NaN when unknown.
    missing : ndarray (N,) float32
        Fraction of each stamp's pixels that were off the frame, masked or non-finite.
    reason : ndarray (N,) str
        Why an object cannot be scored; empty string when it can, `REASON_SATURATED` when
        it can but its centre is saturated.
    rescale : Rescale
        The FWHM rescaling these stamps were cut for.
    """

    data: np.ndarray
    background: np.ndarray
    noise: np.ndarray
    missing: np.ndarray
    reason: np.ndarray
    rescale: Rescale
    has_background: bool = True

    def __len__(self):
        return len(self.data)

    def inputs(self, params=None, select=None):
        """CNN inputs of these stamps (or of ``select``, an index or mask).

        Stamps cut from a frame without a background map use each stamp's edge median;
        without a noise map, a MAD estimate of the noise (the seed's rules).
        """
        select = slice(None) if select is None else select
        noise = self.noise[select]
        return preprocess_stamps(
            self.data[select],
            self.background[select] if self.has_background else None,
            None if np.isnan(noise).all() else noise,
            self.rescale,
            params,
        )

    @property
    def scorable(self):
        return is_scorable(self.reason)


def stamp_origins(x, y, rescale):
    """Top-left pixel (column, row) of each object's stamp.

    Without downscaling the stamp is centred on the nearest pixel, as in STDPipe. With
    block-averaging by ``k`` it is placed so the object falls nearest the centre of the
    middle block, keeping it at the input's centre pixel after rescaling.
    """
    half_blocks = rescale.target_size // 2
    offset = half_blocks * rescale.down + (rescale.down - 1) / 2.0
    col0 = np.floor(np.asarray(x, np.float64) - offset + 0.5)
    row0 = np.floor(np.asarray(y, np.float64) - offset + 0.5)
    return col0, row0


def cut_stamps(frame, x, y, rescale, max_missing=DEFAULT_MAX_MISSING):
    """Cut stamps of ``rescale.stamp_size`` pixels for the objects at ``x``, ``y``.

    Parameters
    ----------
    frame : Frame
        Frame with ``image``, ``mask`` and, optionally, ``background`` and ``noise`` maps.
        Without a background map the background stamps are zero (the preprocessing then
        uses each stamp's edge median); without a noise map the noise is NaN.
    x, y : array_like
        0-based pixel positions.
    rescale : Rescale
        Sets the stamp size and centring.
    max_missing : float
        Largest fraction of missing pixels that still lets an object be scored.

    Returns
    -------
    Stamps

    Raises
    ------
    RbvetError
        When the rescaling asks for stamps wider than `MAX_STAMP_SIZE` (an absurd FWHM).
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    height, width = frame.image.shape
    size = rescale.stamp_size
    _check_stamp_size(rescale, frame.path)
    finite, row0, col0 = _finite_origins(x, y, rescale)
    offsets = np.arange(size)
    rows = row0[:, None] + offsets
    cols = col0[:, None] + offsets
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
        :, None, :
    ]
    rows_c = np.clip(rows, 0, height - 1)[:, :, None]
    cols_c = np.clip(cols, 0, width - 1)[:, None, :]
    # One flat index for every map: np.take on a raveled map beats 2-D fancy indexing.
    flat = rows_c * width + cols_c

    data = _gather(frame.image, flat)
    valid = inside & ~_gather(frame.mask, flat) & np.isfinite(data)
    if frame.background is not None:
        background = _gather(frame.background, flat)
    else:
        background = np.zeros_like(data)
    data = np.where(valid, data, background).astype(np.float32, copy=False)

    noise = stamp_noise(frame.noise, row0, col0, rescale)
    missing = 1.0 - valid.reshape(len(x), -1).mean(axis=1)
    centre_x, centre_y, on_frame = _centre_pixels(x, y, finite, width, height)
    centre_row = np.clip(centre_y - row0, 0, size - 1).astype(np.int64)
    centre_col = np.clip(centre_x - col0, 0, size - 1).astype(np.int64)
    centre_valid = valid[np.arange(len(x)), centre_row, centre_col]
    reason = unscorable_reasons(finite, on_frame, centre_valid, missing, max_missing)
    reason = mark_saturated(frame, x, y, reason)
    return Stamps(
        data=data,
        background=background.astype(np.float32, copy=False),
        noise=noise,
        missing=missing.astype(np.float32),
        reason=reason,
        rescale=rescale,
        has_background=frame.background is not None,
    )


def _check_stamp_size(rescale, path):
    size = rescale.stamp_size
    if size > MAX_STAMP_SIZE:
        raise RbvetError(
            f"a FWHM this large needs stamps {size} px wide (at most {MAX_STAMP_SIZE}); "
            "is the FWHM right?",
            path,
        )


def _finite_origins(x, y, rescale):
    """Which positions are finite, and the integer stamp origins (row, column) of all.

    Far-off positions are off the frame whatever they are; they get the origin of
    position 0 like non-finite ones, so no float beyond the int64 range becomes an index.
    """
    finite = np.isfinite(x) & np.isfinite(y)
    near = finite & (np.abs(x) < POSITION_LIMIT) & (np.abs(y) < POSITION_LIMIT)
    col0, row0 = stamp_origins(np.where(near, x, 0), np.where(near, y, 0), rescale)
    return finite, row0.astype(np.int64), col0.astype(np.int64)


def _centre_pixels(x, y, finite, width, height):
    centre_x = np.rint(np.where(finite, x, -1))
    centre_y = np.rint(np.where(finite, y, -1))
    on_frame = (centre_x >= 0) & (centre_x < width) & (centre_y >= 0) & (centre_y < height)
    return centre_x, centre_y, on_frame


def stamp_noise(noise_map, row0, col0, rescale):
    """Noise sigma of each stamp: the median of the noise map on a sparse grid over it.

    The noise map is smooth or per-pixel, so a median over every few pixels is robust.
    NaN for every object when there is no noise map.
    """
    if noise_map is None:
        return np.full(len(row0), np.nan, np.float32)
    height, width = noise_map.shape
    offsets = np.arange(0, rescale.stamp_size, max(rescale.down, NOISE_SAMPLE_STEP))
    rows = np.clip(row0[:, None] + offsets, 0, height - 1)
    cols = np.clip(col0[:, None] + offsets, 0, width - 1)
    samples = _gather(noise_map, rows[:, :, None] * width + cols[:, None, :])
    return np.median(samples.reshape(len(row0), -1), axis=1).astype(np.float32)


def is_scorable(reason):
    """Objects the network scores: no reason, or only `REASON_SATURATED`."""
    reason = np.asarray(reason)
    return (reason == "") | (reason == REASON_SATURATED)


def mark_saturated(frame, x, y, reason):
    """``reason`` with `REASON_SATURATED` for scorable objects whose centre is saturated.

    Parameters
    ----------
    frame : Frame
        Its ``saturated`` map (None: nothing is saturated).
    x, y : array_like
        0-based positions.
    reason : ndarray (N,) str
        Reasons so far; only empty ones change.

    Returns
    -------
    ndarray (N,) str
    """
    saturated = getattr(frame, "saturated", None)
    if saturated is None or len(reason) == 0 or not saturated.any():
        return reason
    height, width = saturated.shape
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    near = np.abs(x) < POSITION_LIMIT
    near &= np.abs(y) < POSITION_LIMIT
    centre_x = np.rint(np.where(near, x, -10)).astype(np.int64)
    centre_y = np.rint(np.where(near, y, -10)).astype(np.int64)
    u = np.arange(-SATURATION_REACH, SATURATION_REACH + 1)
    rows = centre_y[:, None] + u
    cols = centre_x[:, None] + u
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
        :, None, :
    ]
    hit = saturated[
        np.clip(rows, 0, height - 1)[:, :, None], np.clip(cols, 0, width - 1)[:, None, :]
    ]
    flagged = (hit & inside).any(axis=(1, 2)) & (np.asarray(reason) == "")
    if not flagged.any():
        return reason
    reason = np.asarray(reason, dtype=object).copy()
    reason[flagged] = REASON_SATURATED
    return reason.astype(str)


def unscorable_reasons(finite, on_frame, centre_valid, missing, max_missing):
    """Why each object cannot be scored (empty string when it can); the first rule wins."""
    reason = np.full(len(finite), "", dtype=object)
    reason[missing > max_missing] = REASON_MOSTLY_MISSING
    reason[on_frame & ~centre_valid] = REASON_CENTRE_MASKED
    reason[~on_frame] = REASON_OFF_FRAME
    reason[~finite] = REASON_NONFINITE
    return reason.astype(str)


def _gather(image, flat_index):
    return np.take(image.reshape(-1), flat_index)


def iter_stamps(frame, x, y, rescale, chunk_size=DEFAULT_CHUNK_SIZE, **kwargs):
    """Yield ``(start, Stamps)`` for consecutive chunks of objects, bounding memory.

    A chunk holds at most ``chunk_size`` objects and at most `MAX_CHUNK_PIXELS` stamp
    pixels, so wide stamps (a large FWHM) come in smaller chunks.
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    chunk_size = max(1, min(int(chunk_size), MAX_CHUNK_PIXELS // rescale.stamp_size**2))
    for start in range(0, len(x), chunk_size):
        stop = start + chunk_size
        yield start, cut_stamps(frame, x[start:stop], y[start:stop], rescale, **kwargs)


@dataclass
class ObjectInputs:
    """CNN inputs of a batch of objects, with why the unscorable ones cannot be scored.

    Attributes
    ----------
    inputs : ndarray (N, size, size, 2) float32
    missing : ndarray (N,) float32
        Fraction of each stamp's pixels that were off the frame, masked or non-finite.
    reason : ndarray (N,) str
        Empty for scorable objects (`REASON_SATURATED` for scorable saturated ones).
    """

    inputs: np.ndarray
    missing: np.ndarray
    reason: np.ndarray

    def __len__(self):
        return len(self.inputs)

    @property
    def scorable(self):
        return is_scorable(self.reason)


class FramePlanes:
    """Cuts CNN inputs for any objects of a frame from planes computed once per frame.

    The background-subtracted frame, zero where pixels are masked, non-finite or off the
    frame (which is what filling them with the background gives), is padded by a stamp
    width and, when the FWHM asks for downscaling by ``k``, averaged over the ``k x k``
    block at every pixel. An object's rescaled stamp is then one strided gather of
    ``target_size**2`` values instead of cutting ``stamp_size**2`` pixels of three maps;
    the missing fraction comes from a summed-area table of the usable pixels. The inputs
    equal ``cut_stamps(...).inputs(...)`` up to float32 rounding.

    Parameters
    ----------
    frame : Frame
        Must have background and noise maps (see `Frame.ensure_background`).
    rescale : Rescale
    """

    def __init__(self, frame, rescale):
        if frame.background is None or frame.noise is None:
            raise ValueError("FramePlanes needs a frame with background and noise maps")
        _check_stamp_size(rescale, frame.path)
        self.frame = frame
        self.rescale = rescale
        self.height, self.width = frame.image.shape
        self.usable = ~frame.mask & np.isfinite(frame.image)
        self._usable_table = None if self.usable.all() else _summed_area_table(self.usable)
        self.pad = rescale.stamp_size
        self._windows = self._block_windows()

    def _block_windows(self):
        pad, k, size = self.pad, self.rescale.down, self.rescale.target_size
        residual = np.zeros((self.height + 2 * pad, self.width + 2 * pad), np.float32)
        interior = residual[pad:-pad, pad:-pad]
        np.subtract(self.frame.image, self.frame.background, out=interior)
        interior[~self.usable] = 0.0
        if k > 1:
            residual = _block_means(residual, k)
        # windows[r, c] is the (size, size) picture of the stamp whose top-left corner is
        # padded pixel (r, c): every k-th block mean across and down from there.
        rows = residual.shape[0] - k * (size - 1)
        cols = residual.shape[1] - k * (size - 1)
        s0, s1 = residual.strides
        return np.lib.stride_tricks.as_strided(
            residual, (rows, cols, size, size), (s0, s1, k * s0, k * s1), writeable=False
        )

    def cut(self, x, y, params=None, max_missing=DEFAULT_MAX_MISSING):
        """Inputs, missing fractions and reasons for the objects at ``x``, ``y``.

        Parameters
        ----------
        x, y : array_like
            0-based pixel positions.
        params : PreprocessParams, optional
        max_missing : float
            Largest fraction of missing pixels that still lets an object be scored.

        Returns
        -------
        ObjectInputs
        """
        params = params or PreprocessParams()
        x = np.atleast_1d(np.asarray(x, np.float64))
        y = np.atleast_1d(np.asarray(y, np.float64))
        size = self.rescale.stamp_size
        finite, row0, col0 = _finite_origins(x, y, self.rescale)
        top = np.clip(row0 + self.pad, 0, self._windows.shape[0] - 1)
        left = np.clip(col0 + self.pad, 0, self._windows.shape[1] - 1)
        linear = self._windows[top, left]
        linear = rescale_linear(
            linear, Rescale(up=self.rescale.up, target_size=params.target_size), params.target_size
        )
        sigma = noise_level(linear, stamp_noise(self.frame.noise, row0, col0, self.rescale))
        inputs = two_channel_inputs(linear, sigma, params)

        missing = 1.0 - self._usable_counts(row0, col0, size) / float(size * size)
        centre_x, centre_y, on_frame = _centre_pixels(x, y, finite, self.width, self.height)
        centre_valid = self.usable[
            np.where(on_frame, centre_y, 0).astype(np.int64),
            np.where(on_frame, centre_x, 0).astype(np.int64),
        ]
        reason = unscorable_reasons(finite, on_frame, centre_valid, missing, max_missing)
        reason = mark_saturated(self.frame, x, y, reason)
        return ObjectInputs(inputs, missing.astype(np.float32), reason)

    def _usable_counts(self, row0, col0, size):
        bottom, right = (np.clip(row0 + size, 0, self.height), np.clip(col0 + size, 0, self.width))
        top, left = np.clip(row0, 0, self.height), np.clip(col0, 0, self.width)
        table = self._usable_table
        if table is None:
            return (bottom - top) * (right - left)
        return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


def _summed_area_table(usable):
    """``table[i, j]`` = number of usable pixels in ``usable[:i, :j]``."""
    dtype = np.int32 if usable.size < 2**31 else np.int64
    table = np.zeros((usable.shape[0] + 1, usable.shape[1] + 1), dtype)
    np.cumsum(usable, axis=0, dtype=dtype, out=table[1:, 1:])
    np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
    return table


def _block_means(image, k):
    """Mean of the ``k x k`` block whose top-left pixel is (r, c), for every (r, c).

    Sums ``k`` shifted copies along each axis (float32, as a per-stamp block mean is).
    """
    cols = image.shape[1] - k + 1
    across = image[:, :cols].copy()
    for shift in range(1, k):
        across += image[:, shift : shift + cols]
    rows = image.shape[0] - k + 1
    means = across[:rows].copy()
    for shift in range(1, k):
        means += across[shift : shift + rows]
    means *= np.float32(1.0 / (k * k))
    return means


def iter_inputs(
    frame,
    x,
    y,
    rescale,
    params=None,
    chunk_size=DEFAULT_CHUNK_SIZE,
    first_chunk_size=None,
    **kwargs,
):
    """Yield ``(start, ObjectInputs)`` for consecutive chunks of objects.

    Uses `FramePlanes` when the frame has background and noise maps and the objects'
    stamps cover enough of the frame (`PLANE_MIN_COVERAGE`) to repay them; otherwise
    cuts and preprocesses raw stamps chunk by chunk. Both give the same inputs.
    A smaller ``first_chunk_size`` (frame planes only) lets a consumer that works in
    parallel, such as the network, start sooner.
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    coverage = len(x) * rescale.stamp_size**2 / max(frame.image.size, 1)
    if frame.background is None or frame.noise is None or coverage < PLANE_MIN_COVERAGE:
        for start, stamps in iter_stamps(frame, x, y, rescale, chunk_size=chunk_size, **kwargs):
            yield start, ObjectInputs(stamps.inputs(params), stamps.missing, stamps.reason)
        return
    planes = FramePlanes(frame, rescale)
    first = min(chunk_size, first_chunk_size or chunk_size)
    starts = [0, *range(first, len(x), chunk_size)] if len(x) else []
    for start, stop in zip(starts, [*starts[1:], len(x)], strict=True):
        yield start, planes.cut(x[start:stop], y[start:stop], params, **kwargs)
