"""Test helper: N small simulated exposures of one field, each with its own WCS.

One `simulate_frame` canvas gives the sky (stars, galaxies, their truth); each epoch is a
window of it shifted by a few pixels, with its own noise and its own cosmic-ray hits, and
a TAN WCS whose reference pixel follows the shift, so a star has one sky position in all
epochs. Fixed seeds: the same call writes the same files.
"""

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

PIXEL_SCALE_DEG = 0.4 / 3600.0
FIELD_CENTRE = (150.0, 2.0)


def epoch_wcs(shape, shift=(0, 0), centre=FIELD_CENTRE):
    """A TAN WCS of a frame whose pixel (x, y) sees canvas pixel (x + dx, y + dy)."""
    rows, cols = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(centre)
    wcs.wcs.cdelt = [-PIXEL_SCALE_DEG, PIXEL_SCALE_DEG]
    wcs.wcs.crpix = [cols / 2 + 0.5 - shift[0], rows / 2 + 0.5 - shift[1]]
    return wcs


def simulate_epochs(n=3, shape=(128, 128), max_shift=4, seed=11, n_hits=6, n_stars=40):
    """N exposures of one field as (image, wcs, truth, shift, hits) tuples.

    ``truth`` has the stars' 0-based ``x``, ``y`` in that exposure; ``hits`` the (x, y) of
    its own cosmic-ray pixels; ``shift`` its (dx, dy) pointing offset in pixels.
    """
    from rbvet.core.simulate.frame import simulate_frame

    margin = max_shift + 1
    canvas_shape = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    sky = simulate_frame(
        canvas_shape,
        fwhm=3.0,
        rng=seed,
        n_stars=n_stars,
        n_satellites=0,
        n_cosmic_rays=0,
        n_hot_pixels=0,
        n_edge_bands=0,  # an unexposed band would blank part of the field
        bright_star_fraction=0.0,
    )
    rng = np.random.default_rng(seed + 1)
    stars = sky.truth[np.isin(sky.truth["kind"], ["star", "galaxy"])]
    epochs = []
    for k in range(n):
        dx, dy = (
            (0, 0) if k == 0 else tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
        )
        rows = slice(margin + dy, margin + dy + shape[0])
        cols = slice(margin + dx, margin + dx + shape[1])
        clean = sky.background[rows, cols] + sky.sources[rows, cols]
        image = clean + rng.normal(0.0, 1.0, shape) * sky.noise[rows, cols]
        hx = rng.integers(5, shape[1] - 5, n_hits)
        hy = rng.integers(5, shape[0] - 5, n_hits)
        image[hy, hx] += 60.0 * sky.noise[rows, cols][hy, hx]
        truth = Table(
            {"x": stars["x"] - margin - dx, "y": stars["y"] - margin - dy, "kind": stars["kind"]}
        )
        inside = (truth["x"] > 0) & (truth["x"] < shape[1] - 1)
        inside &= (truth["y"] > 0) & (truth["y"] < shape[0] - 1)
        epochs.append(
            (
                image.astype(np.float32),
                epoch_wcs(shape, (dx, dy)),
                truth[inside],
                (dx, dy),
                np.column_stack([hx, hy]),
            )
        )
    return epochs


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
