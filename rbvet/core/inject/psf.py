"""The frame's own PSF, to inject stars and galaxies that look like the frame's.

`empirical_psf` stacks centred, sub-pixel-aligned stamps of the frame's isolated,
unsaturated, round stars (the ones `rbvet.core.detect.psf.measure_fwhm` chose), and falls
back to a Moffat profile of the measured FWHM when there are too few; the result says
which. `EmpiricalPsf` offers the interface of the simulator's PSF
(`rbvet.core.simulate.psf._Psf`: ``profile``, ``radius_at``, ``fwhm``, ``oversample``), so
the simulator's painters draw injected stars and galaxies with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.simulate.psf import _Psf

MIN_PSF_STARS = 5
"""Fewer usable stars than this: the PSF is a Moffat of the measured FWHM."""
MAX_PSF_STARS = 300
"""At most this many stars (the highest S/N ones) are stacked."""
MIN_STAR_SNR = 20.0
"""Stars fainter than this (box S/N) add more noise than shape to the stack."""
FALLBACK_BETA = 3.0
"""Moffat beta of the fallback PSF (typical of ground-based seeing)."""


@dataclass(frozen=True)
class EmpiricalPsf:
    """A pixel-integrated PSF stamp, unit flux, centred on its middle pixel.

    Its ``profile`` interpolates the stamp (cubic splines), so it is already integrated
    over pixels: ``oversample`` is 1 and the simulator samples it at pixel centres.
    """

    stamp: np.ndarray
    fwhm: float
    model: str = "empirical"

    @property
    def oversample(self):
        return 1

    @property
    def half(self):
        return self.stamp.shape[0] // 2

    def profile(self, dx, dy):
        """Value at offsets (dx, dy) from the centre, peak 1; 0 beyond the stamp."""
        from scipy.ndimage import map_coordinates

        dx, dy = np.broadcast_arrays(np.asarray(dx, np.float64), np.asarray(dy, np.float64))
        peak = self.stamp.max()
        coordinates = np.stack([dy.ravel() + self.half, dx.ravel() + self.half])
        values = map_coordinates(self.stamp / peak, coordinates, order=3, cval=0.0)
        return np.clip(values, 0.0, None).reshape(dx.shape)

    def radius_at(self, level):
        """Radius (px) beyond which the stamp stays below ``level`` of its peak."""
        half = self.half
        u = np.arange(-half, half + 1)
        radius = np.hypot(u[None, :], u[:, None]).ravel()
        order = np.argsort(radius)[::-1]
        envelope = np.maximum.accumulate((self.stamp.ravel() / self.stamp.max())[order])
        # envelope[i]: the highest value at this radius or beyond (radius decreasing).
        level = np.asarray(level, dtype=np.float64)
        reached = np.searchsorted(envelope, level, side="left")
        index = np.clip(reached, 0, len(order) - 1)
        return np.where(reached >= len(order), 0.0, radius[order][index])


@dataclass
class FramePsf:
    """The PSF injections are drawn with, and where it came from.

    Attributes
    ----------
    psf : EmpiricalPsf or rbvet.core.simulate.psf._Psf
        The profile to paint with.
    source : str
        ``"empirical"`` (stacked from ``n_stars`` stars), ``"fitted"`` (undersampled
        stars: the pixel-integrated Gaussian fitted to them, see `fitted_psf`) or
        ``"fallback"`` (a Moffat of the FWHM: too few stars).
    n_stars : int
    fwhm : float
        The frame's FWHM (px) the PSF rests on.
    note : str
        One line for logs and results.
    fwhm_source : str
        ``"measured"`` from the frame's stars, ``"given"`` by the user, or ``"default"``
        (no star could be measured: injected stars may not look like the frame's).
    """

    psf: object
    source: str
    n_stars: int
    fwhm: float
    note: str
    fwhm_source: str = "measured"

    @property
    def line_psf(self):
        """An analytic PSF of the same FWHM, for trails (its line-spread function)."""
        return moffat_psf(self.fwhm)

    def facts(self):
        return {
            "psf_source": self.source,
            "psf_stars": int(self.n_stars),
            "fwhm": float(self.fwhm),
            "psf_note": self.note,
            "fwhm_source": self.fwhm_source,
        }


def moffat_psf(fwhm, beta=FALLBACK_BETA):
    """A round Moffat PSF of this FWHM, in the simulator's form."""
    return _Psf("moffat", float(fwhm), float(beta), 0.0, 0.0)


def fitted_psf(fwhm_estimate):
    """The PSF of undersampled stars: the round Gaussian their pixels were fitted with.

    A stack of stamps aligned by sub-pixel shifts does not work at a FWHM near 1 px:
    the shift (band-limited) rings on a profile the pixels do not sample, and the
    spline that places an injected star between pixel centres would blur it. The fit
    (`rbvet.core.detect.psf.measure_fwhm`) already holds the shape the pixels show: a
    Gaussian of ``psf_sigma`` before pixel integration, which the simulator's painter
    integrates over the pixels at any sub-pixel centre.

    Parameters
    ----------
    fwhm_estimate : rbvet.core.detect.psf.FwhmEstimate
        With ``undersampled`` set.

    Returns
    -------
    FramePsf
        ``source`` ``"fitted"``.
    """
    sigma = max(float(fwhm_estimate.psf_sigma), 0.05)
    psf = _Psf("gaussian", sigma * 2.0 * np.sqrt(2.0 * np.log(2.0)), 0.0, 0.0, 0.0)
    note = (
        f"PSF: undersampled stars (FWHM {fwhm_estimate.fwhm:.2f} px with the pixels), a "
        f"pixel-integrated Gaussian of sigma {sigma:.2f} px fitted to "
        f"{fwhm_estimate.n_stars} of them"
    )
    return FramePsf(psf, "fitted", int(fwhm_estimate.n_stars), float(fwhm_estimate.fwhm), note)


def empirical_psf(frame, x, y, fwhm_estimate, min_stars=MIN_PSF_STARS):
    """The frame's PSF from its stars, or a Moffat of the FWHM when they are too few.

    Parameters
    ----------
    frame : Frame
        With background and noise maps.
    x, y : array_like
        0-based positions the FWHM was measured at (its ``stars`` index into them).
    fwhm_estimate : rbvet.core.detect.psf.FwhmEstimate
    min_stars : int

    Returns
    -------
    FramePsf
    """
    fwhm = float(fwhm_estimate.fwhm)
    stars = np.asarray(fwhm_estimate.stars, dtype=np.int64)
    half = int(np.clip(np.ceil(3.0 * fwhm), 6, 30))
    stamps = np.zeros((0, 2 * half + 1, 2 * half + 1))
    if len(stars) >= min_stars:
        x = np.asarray(x, np.float64)[stars]
        y = np.asarray(y, np.float64)[stars]
        stamps = _star_stamps(frame, x, y, half, fwhm)
    if len(stamps) < min_stars:
        usable = len(stamps) if len(stars) >= min_stars else len(stars)
        note = (
            f"PSF: Moffat (beta {FALLBACK_BETA:g}) of FWHM {fwhm:.2f} px: only {usable} "
            f"usable stars (need {min_stars})"
        )
        return FramePsf(moffat_psf(fwhm), "fallback", usable, fwhm, note)
    stack = np.median(stamps, axis=0)
    stack = _taper(np.clip(stack, 0.0, None), half)
    stack /= stack.sum()
    note = f"PSF: stacked from {len(stamps)} stars, FWHM {fwhm:.2f} px"
    return FramePsf(EmpiricalPsf(stack, fwhm), "empirical", len(stamps), fwhm, note)


def _star_stamps(frame, x, y, half, fwhm):
    """Unit-flux stamps of the stars, shifted so each centroid is on the middle pixel.

    Stars with a masked or saturated pixel, off the frame, or below `MIN_STAR_SNR` are left
    out; the `MAX_PSF_STARS` brightest are kept.
    """
    ny, nx = frame.shape
    pad = half + 2
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (ix >= pad) & (ix < nx - pad) & (iy >= pad) & (iy < ny - pad)
    ix, iy, x, y = ix[inside], iy[inside], x[inside], y[inside]
    u = np.arange(-pad, pad + 1)
    rows = iy[:, None, None] + u[None, :, None]
    cols = ix[:, None, None] + u[None, None, :]
    bad = frame.mask[rows, cols].any(axis=(1, 2))
    if frame.saturated is not None:
        bad |= frame.saturated[rows, cols].any(axis=(1, 2))
    data = (frame.image[rows, cols] - frame.background[rows, cols]).astype(np.float64)
    data[~np.isfinite(data)] = 0.0
    noise = frame.noise[iy, ix].astype(np.float64)
    # Centroid in a Gaussian window the size of the PSF, refined twice.
    sigma = max(fwhm / 2.3548, 0.6)
    cx, cy = x - ix, y - iy
    for _ in range(3):
        weight = np.exp(
            -0.5
            * (
                (u[None, None, :] - cx[:, None, None]) ** 2
                + (u[None, :, None] - cy[:, None, None]) ** 2
            )
            / sigma**2
        )
        weighted = weight * data
        total = weighted.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cx = np.clip((weighted * u[None, None, :]).sum(axis=(1, 2)) / total, -1.0, 1.0)
            cy = np.clip((weighted * u[None, :, None]).sum(axis=(1, 2)) / total, -1.0, 1.0)
    cx, cy = np.nan_to_num(cx), np.nan_to_num(cy)
    core = np.abs(u) <= max(2, int(round(fwhm)))
    flux = data[:, core][:, :, core].sum(axis=(1, 2))
    snr = flux / (noise * core.sum())
    keep = ~bad & (snr >= MIN_STAR_SNR) & (total > 0)
    order = np.argsort(-snr[keep])[:MAX_PSF_STARS]
    data, cx, cy = data[keep][order], cx[keep][order], cy[keep][order]
    if not len(data):
        return np.zeros((0, 2 * half + 1, 2 * half + 1))
    shifted = fourier_shift(data, -cx, -cy)[:, 2:-2, 2:-2]
    sums = shifted.sum(axis=(1, 2))
    good = sums > 0
    return shifted[good] / sums[good, None, None]


def fourier_shift(stamps, dx, dy):
    """Stamps (N, S, S) moved by (dx, dy) px each, by a phase ramp (band-limited shift)."""
    size = stamps.shape[-1]
    kx = np.fft.fftfreq(size)[None, None, :]
    ky = np.fft.fftfreq(size)[None, :, None]
    ramp = np.exp(
        -2j * np.pi * (kx * np.asarray(dx)[:, None, None] + ky * np.asarray(dy)[:, None, None])
    )
    return np.fft.ifft2(np.fft.fft2(stamps) * ramp).real


def _taper(stack, half):
    """Bring the stack's outer ring smoothly to zero, so injected stars have no edge."""
    u = np.arange(-half, half + 1)
    radius = np.hypot(u[None, :], u[:, None])
    inner = 0.7 * half
    weight = np.clip((half - radius) / (half - inner), 0.0, 1.0)
    return stack * weight * weight * (3.0 - 2.0 * weight)


def measure_frame_psf(frame, table, fwhm, fwhm_given=False):
    """The PSF of a frame from its objects: the one an assessment injects with.

    Parameters
    ----------
    frame : Frame
        With background and noise maps.
    table : astropy.table.Table
        The frame's objects (0-based ``x``, ``y``; flags used when present).
    fwhm : float
        The FWHM the objects are scored with: the fallback's when the stars measured do
        not give one, or always when ``fwhm_given``.
    fwhm_given : bool

    Returns
    -------
    FramePsf
    """
    import dataclasses
    import warnings

    from rbvet.core.detect.psf import measure_fwhm

    x, y = np.asarray(table["x"], np.float64), np.asarray(table["y"], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a default FWHM is reported as the PSF's fallback
        estimate = measure_fwhm(frame, x, y, table=table)
    if fwhm_given or estimate.source != "measured":
        estimate = dataclasses.replace(estimate, fwhm=float(fwhm))
    elif estimate.undersampled:
        return fitted_psf(estimate)
    result = empirical_psf(frame, x, y, estimate)
    if fwhm_given:
        return dataclasses.replace(result, fwhm_source="given")
    if estimate.source != "measured":
        # Undersampled stars (FWHM under the estimator's floor) or none at all: the
        # injected stars are a guess, and star completeness may be far from the truth.
        note = (
            f"{result.note}; FWHM not measured (no star found), {fwhm:.2f} px assumed: "
            "injected stars may not look like the frame's"
        )
        return dataclasses.replace(result, note=note, fwhm_source="default")
    return result


def matched_filter_snr(frame, frame_psf, x, y):
    """Measured matched-filter S/N of point sources at (x, y), as injections count it.

    ``sum(P D / s^2) / sqrt(sum(P^2 / s^2))`` over ``3 FWHM`` around each position, with
    P the PSF centred there, D the background-subtracted image and s the noise map: the
    S/N of the PSF-fitted flux, which for a star of flux F on a flat noise s is
    ``F sqrt(sum P^2) / s``, the ``snr`` an injected star is given
    (`rbvet.core.inject.inject.paint_round`). Masked and off-frame pixels count zero.

    Returns
    -------
    ndarray of float
        NaN where no pixel could be used.
    """
    frame.ensure_background()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ny, nx = frame.shape
    half = int(np.clip(np.ceil(3.0 * frame_psf.fwhm), 3, 30))
    offsets = np.arange(-half, half + 1)
    cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    px = cx[:, None, None] + offsets[None, None, :]
    py = cy[:, None, None] + offsets[None, :, None]
    px, py = np.broadcast_arrays(px, py)
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    ix, iy = np.clip(px, 0, nx - 1), np.clip(py, 0, ny - 1)
    data = frame.image[iy, ix] - frame.background[iy, ix]
    noise = frame.noise[iy, ix]
    usable = inside & np.isfinite(data) & np.isfinite(noise) & (noise > 0)
    if frame.mask is not None:
        usable &= ~frame.mask[iy, ix]
    weight = np.where(usable, 1.0 / np.where(usable, noise, 1.0) ** 2, 0.0)
    shape = frame_psf.psf.profile(px - x[:, None, None], py - y[:, None, None])
    signal = np.sum(np.where(usable, shape * data, 0.0) * weight, axis=(1, 2))
    power = np.sum(shape**2 * weight, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(power > 0, signal / np.sqrt(power), np.nan)
