"""Test helper: N small simulated exposures of one field, each with its own WCS.

A thin layer over the core `rbvet.core.simulate.simulate_epochs`: the same field in every
epoch, moved by the epoch's pointing offset, with its own noise and cosmic-ray hits, and a TAN
WCS that follows the offset, so a star has one sky position in all epochs. The frames leave
the simulator's rarer features out (satellite trails, hot pixels, bad columns, unexposed
bands, saturated stars) so that tests see plain stars. Fixed seeds: the same call writes the
same files.
"""

from pathlib import Path

import numpy as np
from astropy.io import fits

from rbvet.core.simulate import Exposure
from rbvet.core.simulate import simulate_epochs as simulate_field_epochs
from rbvet.core.simulate.epochs import FIELD_CENTRE
from rbvet.core.simulate.epochs import epoch_wcs as exposure_wcs


def epoch_wcs(shape, shift=(0, 0), centre=FIELD_CENTRE):
    """The core `epoch_wcs` of a frame whose sources sit ``shift`` (dx, dy) px off."""
    return exposure_wcs(shape, Exposure(0, shift), centre)


def simulate_epochs(n=3, shape=(128, 128), max_shift=4, seed=11, n_hits=6, n_stars=40):
    """N exposures of one field as (image, wcs, truth, shift, hits) tuples.

    ``truth`` has the stars' and galaxies' 0-based ``x``, ``y`` in that exposure; ``hits``
    the (x, y) of its own cosmic rays; ``shift`` the (dx, dy) in pixels by which its sources
    sit off the reference frame's (`Exposure.shift`).
    """
    epochs = simulate_field_epochs(
        n,
        shape,
        rng=seed,
        max_shift=max_shift,
        max_rotation=0.0,
        fwhm=3.0,
        n_stars=n_stars,
        n_cosmic_rays=n_hits,
        n_satellites=0,
        n_hot_pixels=0,
        n_bad_columns=0,
        n_edge_bands=0,  # an unexposed band would blank part of the field
        bright_star_fraction=0.0,
    )
    result = []
    for epoch in epochs:
        truth = epoch.frame.truth
        sources = truth[np.isin(truth["kind"], ["star", "galaxy"])]
        inside = (sources["x"] > 0) & (sources["x"] < shape[1] - 1)
        inside &= (sources["y"] > 0) & (sources["y"] < shape[0] - 1)
        hits = truth[truth["kind"] == "cosmic_ray"]
        result.append(
            (
                epoch.frame.image.astype(np.float32),
                epoch.wcs,
                sources[inside]["x", "y", "kind"],
                epoch.exposure.shift,
                np.column_stack([hits["x"], hits["y"]]),
            )
        )
    return result


def write_epochs(folder, n=3, prefix="epoch", wcs=True, **options):
    """Write `simulate_epochs` as ``prefix_K.fits`` (K from 1) in ``folder``.

    Returns the list of paths; ``wcs=False`` writes frames without a WCS.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (image, frame_wcs, truth, _shift, _hits) in enumerate(simulate_epochs(n, **options), 1):
        header = frame_wcs.to_header() if wcs else fits.Header()
        path = folder / f"{prefix}_{k}.fits"
        fits.PrimaryHDU(image, header=header).writeto(path, overwrite=True)
        truth.write(path.with_suffix(".ecsv"), overwrite=True)
        paths.append(path)
    return paths
