"""Epochs of one field: aligned exposures of the same sky with a celestial WCS each.

Every epoch is one :func:`~rbvet.core.simulate.frame.simulate_frame` call with the field's
seed and an `Exposure` of its own: the frame parameters, stars, galaxies and bad columns
come from the field's streams, so they are the same in every epoch (the bad columns stay on
the same detector pixels), while cosmic rays, hot pixels, satellite trails and noise come
from the exposure's. The sources move with the exposure's pointing (a shift of a few pixels
and a tiny rotation), and the epoch's TAN WCS says so exactly: an object's sky position is
the same in every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.simulate.frame import SimulatedFrame, _seed_from, simulate_frame
from rbvet.core.simulate.settings import Exposure

FIELD_CENTRE = (150.0, 2.2)
"""RA, Dec (degrees) of the simulated field's centre (in the COSMOS field)."""
PIXEL_SCALE = 0.5
"""Arcseconds per pixel of the simulated detector."""
_POINTING_KEY = 1_000_003  # spawn key of the pointing draws, apart from the frame's streams


@dataclass
class SimulatedEpoch:
    """One exposure of a simulated field.

    Attributes
    ----------
    frame : SimulatedFrame
        The frame and its truth, in this exposure's pixels.
    wcs : astropy.wcs.WCS
        Its celestial (TAN) WCS.
    exposure : Exposure
        Its own seed and pointing.
    """

    frame: SimulatedFrame
    wcs: object
    exposure: Exposure


def epoch_wcs(shape, exposure, centre=FIELD_CENTRE, pixel_scale=PIXEL_SCALE):
    """The TAN WCS of an exposure whose pointing `Exposure.to_pixels` describes.

    The reference frame (no shift, no rotation) has the field centre at its central pixel,
    north up and east left; an exposure's reference pixel moves with its shift and its CD
    matrix turns with its rotation, so a sky position maps to ``to_pixels`` of where it is
    in the reference frame.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (rows, columns).
    exposure : Exposure
    centre : (float, float)
        RA, Dec of the field centre, degrees.
    pixel_scale : float
        Arcseconds per pixel.

    Returns
    -------
    astropy.wcs.WCS
    """
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [float(centre[0]), float(centre[1])]
    centre_x, centre_y = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    wcs.wcs.crpix = [centre_x + exposure.shift[0] + 1.0, centre_y + exposure.shift[1] + 1.0]
    scale = pixel_scale / 3600.0
    angle = np.deg2rad(exposure.rotation)
    unrotate = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]]) @ unrotate
    wcs.wcs.radesys = "ICRS"
    return wcs


def simulate_epochs(
    n_epochs,
    shape=(1024, 1024),
    rng=None,
    *,
    settings=None,
    max_shift=5.0,
    max_rotation=0.05,
    centre=FIELD_CENTRE,
    pixel_scale=PIXEL_SCALE,
    **overrides,
):
    """Simulate ``n_epochs`` aligned exposures of one field, each with its WCS and truth.

    Parameters
    ----------
    n_epochs : int
        Number of exposures (at least 1).
    shape : (int, int)
        Frame shape (rows, columns), the same for every epoch.
    rng : numpy.random.Generator or int, optional
        Generator or seed of the field; the same seed gives the same epochs.
    settings : SimulationSettings, optional
        As for `simulate_frame`; ``**overrides`` replace its fields.
    max_shift : float
        Pointing offsets are uniform in ±``max_shift`` px along each axis.
    max_rotation : float
        Rotations are uniform in ±``max_rotation`` degrees.
    centre, pixel_scale
        See `epoch_wcs`.

    Returns
    -------
    list of SimulatedEpoch
    """
    if int(n_epochs) < 1:
        raise ValueError(f"n_epochs must be at least 1, got {n_epochs}")
    field_seed = _seed_from(rng)
    pointing = np.random.SeedSequence(field_seed, spawn_key=(_POINTING_KEY,))
    pointing_rng = np.random.default_rng(pointing)
    shifts = pointing_rng.uniform(-max_shift, max_shift, (int(n_epochs), 2))
    rotations = pointing_rng.uniform(-max_rotation, max_rotation, int(n_epochs))
    seeds = pointing_rng.integers(0, 2**63 - 1, int(n_epochs))
    epochs = []
    for seed, shift, rotation in zip(seeds, shifts, rotations, strict=True):
        exposure = Exposure(int(seed), (float(shift[0]), float(shift[1])), float(rotation))
        frame = simulate_frame(
            shape, rng=field_seed, settings=settings, exposure=exposure, **overrides
        )
        wcs = epoch_wcs(frame.image.shape, exposure, centre, pixel_scale)
        epochs.append(SimulatedEpoch(frame=frame, wcs=wcs, exposure=exposure))
    return epochs
