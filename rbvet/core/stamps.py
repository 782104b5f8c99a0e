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

from .errors import RbvetError
from .preprocess import Rescale, preprocess_stamps

REASON_NONFINITE = "non-finite position"
REASON_OFF_FRAME = "off frame"
REASON_CENTRE_MASKED = "centre masked"
REASON_MOSTLY_MISSING = "stamp mostly missing"
DEFAULT_MAX_MISSING = 0.5
DEFAULT_CHUNK_SIZE = 2048
MAX_CHUNK_PIXELS = DEFAULT_CHUNK_SIZE * 62 * 62
"""Stamp pixels per chunk: a large FWHM (wide stamps) means fewer objects per chunk."""
MAX_STAMP_SIZE = 1023
"""Widest stamp cut (33 blocks of 31 px): a FWHM up to about 100 px at the canonical 3 px."""
POSITION_LIMIT = 2.0**40
"""Positions beyond this many pixels are off any frame; they are not turned into indices."""
NOISE_SAMPLE_STEP = 5


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
        Why an object cannot be scored; empty string when it can.
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
        return self.reason == ""


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
    if size > MAX_STAMP_SIZE:
        raise RbvetError(
            f"a FWHM this large needs stamps {size} px wide (at most {MAX_STAMP_SIZE}); "
            "is the FWHM right?",
            frame.path,
        )
    finite = np.isfinite(x) & np.isfinite(y)
    # Far-off positions are off the frame whatever they are; cut them at 0 like non-finite
    # ones so that no float beyond the int64 range is cast to an index.
    near = finite & (np.abs(x) < POSITION_LIMIT) & (np.abs(y) < POSITION_LIMIT)
    col0, row0 = stamp_origins(np.where(near, x, 0), np.where(near, y, 0), rescale)
    offsets = np.arange(size)
    rows = row0.astype(np.int64)[:, None] + offsets
    cols = col0.astype(np.int64)[:, None] + offsets
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

    if frame.noise is not None:
        # The noise map is smooth or per-pixel; a median over a sparse grid is robust.
        step = max(rescale.down, NOISE_SAMPLE_STEP)
        noise_grid = _gather(frame.noise, flat[:, ::step, ::step])
        noise = np.median(noise_grid.reshape(len(x), -1), axis=1).astype(np.float32)
    else:
        noise = np.full(len(x), np.nan, np.float32)

    missing = 1.0 - valid.reshape(len(x), -1).mean(axis=1)
    centre_x = np.rint(np.where(finite, x, -1))
    centre_y = np.rint(np.where(finite, y, -1))
    on_frame = (centre_x >= 0) & (centre_x < width) & (centre_y >= 0) & (centre_y < height)
    centre_row = np.clip(centre_y - row0, 0, size - 1).astype(np.int64)
    centre_col = np.clip(centre_x - col0, 0, size - 1).astype(np.int64)
    centre_valid = valid[np.arange(len(x)), centre_row, centre_col]
    reason = np.full(len(x), "", dtype=object)
    reason[missing > max_missing] = REASON_MOSTLY_MISSING
    reason[on_frame & ~centre_valid] = REASON_CENTRE_MASKED
    reason[~on_frame] = REASON_OFF_FRAME
    reason[~finite] = REASON_NONFINITE
    return Stamps(
        data=data,
        background=background.astype(np.float32, copy=False),
        noise=noise,
        missing=missing.astype(np.float32),
        reason=reason.astype(str),
        rescale=rescale,
        has_background=frame.background is not None,
    )


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
