"""Tiles for the vetting grid: both CNN input channels side by side, as uint8.

The grid draws every tile from one shared ``(N, height, width)`` uint8 buffer (a tall
greyscale image), so thousands of cutouts scroll without one image object per cutout.
Tiles are rendered chunk by chunk as scores arrive, vectorised over objects.
"""

from __future__ import annotations

import numpy as np

TILE_GAP = 1
"""Pixels between the linear and the asinh channel in a tile."""

LOW_PERCENTILE = 5.0
"""Each channel's black level: this percentile of its own pixels (the sky, not a dip)."""
LOW_SAMPLE_STEP = 4
"""The black level is taken from every 4th pixel: plenty for a percentile, 4x cheaper."""


def tile_shape(input_size):
    """(height, width) of the tile of an ``input_size`` square, two-channel input."""
    return int(input_size), 2 * int(input_size) + TILE_GAP


def render_tiles(inputs):
    """Render CNN inputs as uint8 tiles: linear channel left, asinh channel right.

    Each channel of each object is stretched linearly from its own low percentile to its
    peak, so the tile shows the input the CNN sees, at full contrast. Tiles are pictures:
    their first row is the top, so the stamp's row 0 (the bottom, as in DS9) comes last.

    Parameters
    ----------
    inputs : ndarray (N, S, S, 2)

    Returns
    -------
    ndarray (N, S, 2 S + TILE_GAP) uint8
        The gap column is mid-grey.
    """
    inputs = np.asarray(inputs, np.float32)
    n, size = inputs.shape[0], inputs.shape[1]
    # Channel-first rows: the reductions then run over contiguous memory; in-place
    # arithmetic keeps 20k tiles within a few passes over the data.
    channels = inputs.shape[-1]
    rows = np.ascontiguousarray(np.moveaxis(inputs, -1, 1)).reshape(n, channels, size * size)
    np.nan_to_num(rows, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    sample = rows[..., ::LOW_SAMPLE_STEP]
    kth = int(LOW_PERCENTILE / 100.0 * (sample.shape[-1] - 1))
    low = np.partition(sample, kth, axis=-1)[..., kth : kth + 1]
    gain = np.float32(255) / np.maximum(rows.max(axis=-1, keepdims=True) - low, 1e-12)
    rows -= low
    rows *= gain
    rows += np.float32(0.5)
    np.clip(rows, 0, 255, out=rows)
    levels = rows.astype(np.uint8).reshape(n, channels, size, size)[:, :, ::-1]
    tiles = np.full((n,) + tile_shape(size), 128, np.uint8)
    tiles[:, :, :size] = levels[:, 0]
    tiles[:, :, size + TILE_GAP :] = levels[:, 1]
    return tiles


def empty_atlas(n_objects, input_size):
    """A black atlas for ``n_objects`` tiles (unscored objects stay black)."""
    return np.zeros((int(n_objects),) + tile_shape(input_size), np.uint8)
