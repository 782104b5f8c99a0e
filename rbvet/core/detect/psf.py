"""The PSF size of a frame: its FWHM measured on star-like objects.

Cosmic-ray hits can outnumber stars ten to one and form their own sharp peak of the size
distribution, so the stars are chosen among objects that look like a sampled PSF: round,
unsaturated, isolated, above a PSF floor, and surviving a 3x3 median filter (a hit, sharper
than any PSF the pixels can sample, does not). Undersampled stars (FWHM near 1 px), below
the floor, are found by fitting pixel-integrated Gaussians where no star clears it.
:func:`measure_fwhm` says how many stars it used and their spread; :func:`estimate_fwhm`
returns the number alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.errors import RbvetError, RbvetWarning

__all__ = ["DEFAULT_FWHM", "FwhmEstimate", "estimate_fwhm", "measure_fwhm"]

DETECTION_META_KEY = "rbvet_detection"
"""Set in the ``meta`` of tables made by `rbvet.core.detect.detection.detect_objects`."""

#: FWHM (pixels) returned, with a warning, when too few objects can be measured.
DEFAULT_FWHM = 3.0

_GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))  # FWHM / sigma of a Gaussian
_FIRST_PASS_MAX = 3000  # objects measured to find the stars before measuring all
_MIN_FWHM = 1.0  # px; sharper objects are taken as hot pixels or cosmic rays
_PSF_FLOOR = 1.1  # px; no star population is sharper than this (pixelated FWHM >= ~1.2)
_SHARP_FWHM = 1.35  # px; a cluster sharper than this may be cosmic rays rather than stars
_MAX_ELLIPTICITY = 0.5  # moment ellipticity above which an object is not a star
_MIN_SURVIVAL = 0.08  # a star's 3x3-median peak keeps >= 15 % of its peak at 1.2 px FWHM;
# a cosmic-ray hit (one pixel, a 2x2 cluster, a worm) keeps a few per cent at most
_CLEAN_MIN_FWHM = 2.5  # px; from here on, hits inside star stamps are masked out
_ISOLATION = 2.0  # FWHMs: a star with another object closer than this is not used
_MAX_STARS = 2000  # stars measured for the final value (the highest S/N ones)
# Undersampled frames (pixelated FWHM under ~1.5 px): a pixel-integrated Gaussian fit.
_POINT_SIGMAS = np.round(np.arange(0.0, 1.01, 0.05), 2)  # px, intrinsic; 0 is a point
_POINT_PHASES = np.linspace(-0.5, 0.5, 11)  # sub-pixel centres tried, px
_UNDERSAMPLED_MAX_FWHM = 1.5  # px (pixelated): wider stars are measured by moments
_MIN_EXTENT_CHI2 = 25.0  # a star is wider than a point by at least 5 sigma
_MAX_MISFIT = 0.1  # residual beyond noise over the model: a cluster, worm or track fits worse
_MAX_ASYMMETRY = 0.5  # the widths along x and y agree: a round PSF
_MAX_UNDERSAMPLED_SPREAD = 0.15  # the stars' sizes agree to this (relative MAD)


@dataclass
class FwhmEstimate:
    """The frame's FWHM and what it rests on.

    Attributes
    ----------
    fwhm : float
        FWHM in pixels.
    n_stars : int
        Stars it was measured on (0 when a fallback was used).
    spread : float
        Robust relative spread (1.4826 MAD / median) of the stars' FWHMs; NaN without stars.
    source : str
        ``"measured"``, ``"catalog"`` (the table's ``FWHM_IMAGE``/``fwhm`` column) or
        ``"default"`` (too few stars: ``fwhm`` is the fallback value).
    sizes : numpy.ndarray
        Adaptive-moment FWHM of every well-measured candidate (for a size histogram).
    star_sizes : numpy.ndarray
        The same for the stars used.
    stars : numpy.ndarray
        Indices, into the positions measured, of the stars used (for an empirical PSF).
    undersampled : bool
        The stars are undersampled (pixelated FWHM under about 1.5 px): measured by fitting
        pixel-integrated Gaussians, not by moments (see :func:`measure_fwhm`).
    psf_sigma : float
        For undersampled stars, the fitted Gaussian's sigma (px) before pixel integration,
        for a fitted PSF model; NaN otherwise.
    """

    fwhm: float
    n_stars: int
    spread: float
    source: str
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    star_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stars: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    undersampled: bool = False
    psf_sigma: float = np.nan

    def facts(self) -> dict:
        """Plain values for logs and a catalog's metadata: ``fwhm``, ``fwhm_stars``,
        ``fwhm_spread`` (None without stars), ``fwhm_source`` and ``fwhm_undersampled``."""
        spread = None if not np.isfinite(self.spread) else round(float(self.spread), 4)
        return {
            "fwhm": round(float(self.fwhm), 3),
            "fwhm_stars": int(self.n_stars),
            "fwhm_spread": spread,
            "fwhm_source": self.source,
            "fwhm_undersampled": bool(self.undersampled),
        }

    def describe(self) -> str:
        """One line for logs: ``FWHM 3.02 px from 57 stars (spread 4 %)``."""
        if self.source == "measured":
            line = f"FWHM {self.fwhm:.2f} px from {self.n_stars} stars (spread {self.spread:.0%})"
            if self.undersampled:
                line += (
                    "; undersampled stars, measured by pixel-integrated Gaussian fits "
                    "(sharper than a model trained from 1.2 px sees: check its scores)"
                )
            return line
        if self.source == "catalog":
            return f"FWHM {self.fwhm:.2f} px from the catalog's FWHM column"
        return f"FWHM {self.fwhm:.2f} px (default: too few stars to measure it)"


def _detection_arrays(frame, bad):
    """Background-subtracted float32 image (0 at bad pixels) and a finite noise map.

    Worked in place, so a large frame costs one new image and at most one new noise map
    (the frame's own noise map is returned as it is when it is already finite).
    """
    data = np.subtract(frame.image, frame.background, dtype=np.float32)
    data[bad | ~np.isfinite(data)] = 0
    noise = np.ascontiguousarray(frame.noise, dtype=np.float32)
    finite = np.isfinite(noise) & (noise > 0)
    if not finite.all():
        fill = np.float32(noise[finite].max()) if finite.any() else np.float32(1)
        noise = np.where(finite, noise, fill)
    return np.ascontiguousarray(data), noise


# ---------------------------------------------------------------------------------- FWHM


def estimate_fwhm(
    image_or_frame, x, y, table=None, snr_min=15.0, default=DEFAULT_FWHM, max_objects=20_000
) -> float:
    """Robust FWHM (pixels) of the point sources of a frame, measured at given positions.

    :func:`measure_fwhm` without the details: see there.

    Returns
    -------
    float
        FWHM in pixels.
    """
    return measure_fwhm(
        image_or_frame,
        x,
        y,
        table=table,
        snr_min=snr_min,
        default=default,
        max_objects=max_objects,
        _stacklevel=3,
    ).fwhm


def measure_fwhm(
    image_or_frame,
    x,
    y,
    table=None,
    snr_min=15.0,
    default=DEFAULT_FWHM,
    max_objects=20_000,
    _stacklevel=2,
) -> FwhmEstimate:
    """Robust FWHM of the point sources of a frame, with how many stars it rests on.

    Works for any catalog's positions, not only sep's. Each object is measured on the
    background-subtracted image, all objects at once, with adaptive (Gaussian-weighted,
    iteratively matched and recentred) second moments. Only objects that can be stars
    count: weighted S/N >= ``snr_min``, round (moment ellipticity < 0.5), no masked,
    saturated or off-frame pixel in the core, not flagged in ``table``
    (``flag``/``flags``/``FLAGS`` = 0; flagged ones too when the others are too few), and
    keeping at least 8 % of their peak under a
    3x3 median filter, which a cosmic-ray hit does not (a sampled PSF of 1.2 px keeps 15 %).

    The stars are the sharpest well-populated cluster (the mode) of the log-FWHM
    distribution above a PSF floor of 1.1 px: hot pixels and cosmic rays are sharper, and
    galaxies are wider, even when they outnumber the stars. On frames with a FWHM of
    2.5 px or more, pixels of hits inside the stars' stamps (far above their 3x3 median)
    are left out, and stars with another object within 2 FWHM are not used when enough
    others are left. The FWHM is then measured without assuming a Gaussian profile, from
    the S/N-weighted mean area of the stars' pixels above half their peak (the peak
    being corrected for the pixel phase), so Moffat-like PSFs with wings are not
    overestimated as a second-moment width would be, nor faint stars' noisy peaks.

    Undersampled frames (pixelated FWHM under about 1.5 px, stars that moments cannot
    tell from hot pixels) give no star above the floor; then each candidate's pixels
    are fitted with pixel-integrated Gaussians, and a population of round objects
    clearly wider than a point, of one width, is taken for the stars (see
    :func:`_undersampled_fwhm`): the estimate says ``undersampled`` and holds the fitted
    Gaussian's ``psf_sigma``. Without such a population the fallback applies as before.

    The value is the FWHM of the pixelated profile, as SExtractor or imexam would report
    it: for a Gaussian PSF of width ``f`` integrated over pixels it is about
    ``sqrt(f**2 + 0.46)``, i.e. 5 % more at 2 px and 1 % more at 4 px.

    Parameters
    ----------
    image_or_frame : Frame or numpy.ndarray
        The frame, or a 2-D image (its background and noise are then estimated with sep).
    x, y : array_like
        0-based positions of candidate objects (any catalog, not only sep's).
    table : astropy.table.Table, optional
        The catalog the positions come from. Its flag column excludes flagged objects, and
        when the image gives too few usable objects its ``FWHM_IMAGE`` or ``fwhm`` column
        is used instead.
    snr_min : float
        Minimum weighted signal-to-noise of a usable object.
    default : float
        Used, with an :class:`RbvetWarning` naming the file, when fewer than 5 stars are
        usable (by moments or as undersampled stars) and the table has no FWHM column.
    max_objects : int
        At most this many candidates are measured (an even subsample of the rest).

    Returns
    -------
    FwhmEstimate
    """
    from rbvet.core.io.frame import Frame, frame_from_array

    frame = (
        image_or_frame if isinstance(image_or_frame, Frame) else frame_from_array(image_or_frame)
    )
    frame.ensure_background()
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise RbvetError(f"x and y have different shapes: {x.shape} and {y.shape}", frame.path)

    finite = np.isfinite(x) & np.isfinite(y)
    unflagged = finite.copy()
    if table is not None and len(table) == len(x):
        for name in ("flag", "flags", "FLAGS"):
            if name in table.colnames:
                flags = np.ma.filled(np.ma.asarray(table[name]), 0)
                unflagged &= np.asarray(flags) == 0
                break

    estimate = None
    data = noise = None
    # Unflagged objects first; where hits crowd the stars, most stars carry a blend flag.
    for candidates in (unflagged, finite) if unflagged.sum() < finite.sum() else (finite,):
        index = np.flatnonzero(candidates)
        if len(index) > max_objects:
            index = index[np.linspace(0, len(index) - 1, max_objects).astype(int)]
        if not len(index):
            continue
        if data is None:
            data, noise = _detection_arrays(frame, frame.mask)
        eligible = np.ones(len(index), dtype=bool)
        if frame.saturated is not None:
            eligible &= ~_near(frame.saturated, x[index], y[index], reach=2)
        fwhm, _, details = _psf_fwhm(
            data,
            ~frame.mask,
            noise,
            x[index],
            y[index],
            eligible,
            snr_min=snr_min,
            neighbours=(x[finite], y[finite]),
        )
        if fwhm is not None:
            details["stars"] = index[details["stars"]]
            estimate = FwhmEstimate(fwhm, source="measured", **details)
            break
    if estimate is None and data is not None:
        # No star above the PSF floor: the stars may be undersampled (FWHM near 1 px).
        # (Not when moments found a few: on frames crowded with cosmic-ray hits, which
        # charge diffusion widens as the pixels widen an undersampled star, the hits
        # would outvote them.)
        eligible = (
            np.ones(len(x), dtype=bool)
            if frame.saturated is None
            else ~_near(frame.saturated, x, y, reach=2)
        )
        eligible &= finite
        if unflagged.sum() >= 5:
            eligible &= unflagged
        found = _undersampled_fwhm(data, ~frame.mask, noise, x, y, eligible, snr_min)
        if found is not None:
            fwhm, _, details = found
            estimate = FwhmEstimate(fwhm, source="measured", **details)
    if estimate is None and table is not None:
        fwhm = _fwhm_from_table(table)
        if fwhm is not None:
            estimate = FwhmEstimate(float(fwhm), 0, np.nan, "catalog")
    if estimate is None:
        where = f"{frame.path}: " if frame.path else ""
        warnings.warn(
            f"{where}too few well-measured stars to estimate the FWHM; using {default:g} px",
            RbvetWarning,
            stacklevel=_stacklevel,
        )
        estimate = FwhmEstimate(float(default), 0, np.nan, "default")
    return estimate


def _undersampled_fwhm(data, valid, noise, x, y, eligible, snr_min, min_count=5):
    """The FWHM of undersampled stars, by fitting pixel-integrated Gaussians; or None.

    At a pixelated FWHM near 1 px, moments cannot tell a star from a hot pixel, but the
    pixels can: a star spreads light into its neighbours, along x and along y, as its PSF
    integrated over the pixels dictates, whatever its sub-pixel centre, while a hot pixel
    is a single pixel, a pair that is a point across it, or a cluster that no round
    profile fits. Each object's profiles along x and y (its 5x5 pixels summed over rows
    and columns) are fitted with Gaussians of every width of :data:`_POINT_SIGMAS` at
    every sub-pixel centre of :data:`_POINT_PHASES` (a grid, all objects at once; see
    :func:`_point_fits`); the stars are the objects clearly wider than a point along
    both (the chi-square of the best point fit higher by :data:`_MIN_EXTENT_CHI2`: only
    the brighter ones can show it), as wide along both (:data:`_MAX_ASYMMETRY`), whose
    5x5 pixels the two profiles' product fits (:data:`_MAX_MISFIT`: a worm, track or
    cluster does not), narrower than :data:`_UNDERSAMPLED_MAX_FWHM`, and of a common
    width: a clipped cluster of at least ``min_count`` whose sizes agree to
    :data:`_MAX_UNDERSAMPLED_SPREAD`. Cosmic-ray hits widened by charge diffusion look
    like such stars, so this runs only where moments found no star at all (see
    :func:`measure_fwhm`).

    Returns
    -------
    tuple or None
        ``(fwhm, psf_sigma, details)``: the pixelated FWHM ``2.355 sqrt(s**2 + 1/12)`` of
        the S/N-weighted mean fitted sigma ``s``, that sigma, and the
        :class:`FwhmEstimate` details; None without such a population.
    """
    eligible = np.asarray(eligible, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    ny, nx = data.shape
    inside = (x >= 2.5) & (x < nx - 3.5) & (y >= 2.5) & (y < ny - 3.5)
    index = np.flatnonzero(eligible & inside)
    if len(index):
        index = index[_box_snr(data, noise, x[index], y[index], half=1) >= snr_min]
    if len(index) < min_count:
        return None
    fit = _point_fits(data, valid, noise, x[index], y[index])
    sizes = _GAUSS_FWHM * np.sqrt(fit["sigma"] ** 2 + 1.0 / 12.0)
    with np.errstate(invalid="ignore"):
        extended = (
            fit["usable"]
            & (fit["snr"] >= snr_min)
            & (fit["extent"] >= _MIN_EXTENT_CHI2)
            & (fit["misfit"] <= _MAX_MISFIT)
            & (fit["asymmetry"] <= _MAX_ASYMMETRY)
            & (sizes < _UNDERSAMPLED_MAX_FWHM)
        )
    if extended.sum() < min_count:
        return None
    log_size = np.log10(sizes)
    members = _clipped_cluster(log_size, extended, np.median(log_size[extended]), min_count)
    if members is None:
        return None
    star_sizes = sizes[members]
    median = float(np.median(star_sizes))
    relative_spread = float(1.4826 * np.median(np.abs(star_sizes - median)) / median)
    if relative_spread > _MAX_UNDERSAMPLED_SPREAD:
        return None
    weights = np.minimum(fit["snr"][members], 200.0) ** 2
    sigma = float(np.sqrt(np.average(fit["sigma"][members] ** 2, weights=weights)))
    details = {
        "n_stars": int(members.sum()),
        "spread": relative_spread,
        "sizes": sizes[fit["usable"] & (fit["snr"] >= snr_min)],
        "star_sizes": star_sizes,
        "stars": index[members],
        "undersampled": True,
        "psf_sigma": sigma,
    }
    return float(_GAUSS_FWHM * np.sqrt(sigma**2 + 1.0 / 12.0)), sigma, details


def _point_profiles():
    """Pixel-integrated Gaussians across 5 pixels, one row per (sigma, sub-pixel centre).

    Returns ``(profiles, sigmas)``: unit-flux rows (K, 5) and the sigma of each; sigma 0
    is a point, all its light in the pixel holding its centre (split at an edge).
    """
    from scipy.special import erf

    u = np.arange(-2, 3, dtype=np.float64)
    sigma = np.maximum(_POINT_SIGMAS, 1e-6)[:, None, None]
    phase = _POINT_PHASES[None, :, None]
    scale = np.sqrt(2.0) * sigma
    along = 0.5 * (erf((u + 0.5 - phase) / scale) - erf((u - 0.5 - phase) / scale))
    return along.reshape(-1, 5), np.repeat(_POINT_SIGMAS, len(_POINT_PHASES))


def _profile_fits(profiles, noise):
    """Best pixel-integrated Gaussian of each 5-pixel profile (rows of ``profiles``), on
    the grid of :func:`_point_profiles` with a parabola between widths.

    Returns ``(sigma, extent, best)``: the width, how much worse the best point fits
    (chi-square), and the best unit-flux profile (N, 5).
    """
    templates, _ = _point_profiles()
    norm2 = (templates * templates).sum(axis=1)
    n_sigma = len(_POINT_SIGMAS)
    dot = profiles @ templates.T
    chi2 = ((profiles * profiles).sum(axis=1)[:, None] - np.maximum(dot, 0.0) ** 2 / norm2) / (
        noise[:, None] ** 2
    )
    by_sigma = chi2.reshape(len(profiles), n_sigma, -1).min(axis=2)
    k = np.argmin(by_sigma, axis=1)
    rows = np.arange(len(profiles))
    best = by_sigma[rows, k]
    left = by_sigma[rows, np.maximum(k - 1, 0)]
    right = by_sigma[rows, np.minimum(k + 1, n_sigma - 1)]
    curvature = left + right - 2.0 * best
    inner = (k > 0) & (k < n_sigma - 1) & (curvature > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(inner, 0.5 * (left - right) / curvature, 0.0)
    step = _POINT_SIGMAS[1] - _POINT_SIGMAS[0]
    sigma = np.clip(_POINT_SIGMAS[k] + np.clip(shift, -0.5, 0.5) * step, 0.0, None)
    return sigma, by_sigma[:, 0] - best, templates[np.argmin(chi2, axis=1)]


def _point_fits(data, valid, noise, x, y):
    """Pixel-integrated Gaussian fits of each object's profiles along x and along y (see
    :func:`_undersampled_fwhm`): its 5x5 pixels around the brightest of the 3x3 at
    (x, y), summed over rows and over columns.

    Fitting the two profiles apart keeps a pair of hot pixels from passing for a star:
    along the pair a sharp Gaussian at the right sub-pixel centre splits the light as
    the pair does, but across it the profile is a point.

    Returns
    -------
    dict of numpy.ndarray
        ``sigma`` (px, the geometric mean of the two widths), ``snr`` (of the fitted
        flux), ``extent`` (the lesser of the two profiles' chi-square gains over a
        point), ``misfit`` (the residual of the profiles' product fitted to the 25
        pixels, beyond noise, over the model: 0 for a perfect fit),
        ``asymmetry`` (the two widths' difference over their mean) and ``usable`` (no
        bad pixel, positive flux).
    """
    ny, nx = data.shape
    u = np.arange(-2, 3)
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    near = data[
        np.clip(iy[:, None, None] + u[None, 1:4, None], 0, ny - 1),
        np.clip(ix[:, None, None] + u[None, None, 1:4], 0, nx - 1),
    ].reshape(len(ix), 9)
    brightest = np.argmax(near, axis=1)
    iy = np.clip(iy + brightest // 3 - 1, 2, ny - 3)
    ix = np.clip(ix + brightest % 3 - 1, 2, nx - 3)
    rows = iy[:, None, None] + u[None, :, None]
    cols = ix[:, None, None] + u[None, None, :]
    box = data[rows, cols].astype(np.float64)
    good = valid[rows, cols].all(axis=(1, 2))
    sigma_noise = noise[iy, ix].astype(np.float64)
    noise_sum = sigma_noise * np.sqrt(5.0)  # of a 5-pixel sum
    sigma_x, extent_x, along_x = _profile_fits(box.sum(axis=1), noise_sum)
    sigma_y, extent_y, along_y = _profile_fits(box.sum(axis=2), noise_sum)
    # The two profiles' product, its flux fitted to the 25 pixels: an L-shaped cluster
    # of hot pixels has a fitting profile both ways, but not their product.
    model = along_y[:, :, None] * along_x[:, None, :]
    norm2 = (model * model).sum(axis=(1, 2))
    flux = (model * box).sum(axis=(1, 2)) / norm2
    residual2 = ((box - flux[:, None, None] * model) ** 2).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux * np.sqrt(norm2) / sigma_noise
        excess = np.maximum(residual2 - 24.0 * sigma_noise**2, 0.0)
        misfit = np.sqrt(excess / norm2) / np.abs(flux)
        mean = 0.5 * (sigma_x + sigma_y)
        asymmetry = np.where(mean > 0, np.abs(sigma_x - sigma_y) / mean, np.inf)
    return {
        "sigma": np.sqrt(sigma_x * sigma_y),
        "snr": snr,
        "extent": np.minimum(extent_x, extent_y),
        "misfit": misfit,
        "asymmetry": asymmetry,
        "usable": good & (flux > 0) & np.isfinite(snr),
    }


def _near(flags, x, y, reach):
    """True where a flagged pixel lies within ``reach`` pixels (a square) of (x, y)."""
    ny, nx = flags.shape
    u = np.arange(-reach, reach + 1)
    ix = np.clip(np.rint(np.nan_to_num(x)), -1, nx).astype(np.int64)
    iy = np.clip(np.rint(np.nan_to_num(y)), -1, ny).astype(np.int64)
    rows = np.clip(iy[:, None] + u, 0, ny - 1)
    cols = np.clip(ix[:, None] + u, 0, nx - 1)
    return flags[rows[:, :, None], cols[:, None, :]].any(axis=(1, 2))


def _median_survival(data, x, y):
    """Peak of the 3x3-median-filtered image near each object over its raw peak.

    A PSF sampled by the pixels keeps a good part of its peak under a 3x3 median (15 % at
    1.2 px FWHM, 70 % at 3 px); a cosmic-ray hit or a hot pixel, whose neighbours are sky,
    keeps almost nothing. Computed on a 5x5 cut-out per object, not on the frame.
    """
    ny, nx = data.shape
    u = np.arange(-2, 3)
    ix = np.clip(np.rint(x), 0, nx - 1).astype(np.int64)
    iy = np.clip(np.rint(y), 0, ny - 1).astype(np.int64)
    rows = np.clip(iy[:, None] + u, 0, ny - 1)
    cols = np.clip(ix[:, None] + u, 0, nx - 1)
    box = data[rows[:, :, None], cols[:, None, :]].astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(box, (3, 3), axis=(1, 2))
    filtered = np.median(windows.reshape(len(x), 3, 3, 9), axis=-1)
    raw_peak = box[:, 1:4, 1:4].max(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(raw_peak > 0, filtered.max(axis=(1, 2)) / raw_peak, 0.0)


def _fwhm_from_table(table):
    """The stars' FWHM from a catalog's own FWHM column (not from rbvet's detection,
    whose column holds the very measurements that just failed), or None."""
    if table.meta.get(DETECTION_META_KEY):
        return None
    lower = {name.lower(): name for name in table.colnames}
    for key in ("fwhm_image", "fwhm"):
        if key in lower:
            try:
                values = np.ma.filled(np.ma.asarray(table[lower[key]], dtype=np.float64), np.nan)
            except (TypeError, ValueError):
                return None
            for flag in ("flags", "flag"):
                if flag in lower and len(table) == len(values):
                    values = values[np.ma.filled(np.ma.asarray(table[lower[flag]]), 1) == 0]
                    break
            stars = _star_cluster(values, np.ones(len(values), dtype=bool))
            return None if stars is None else stars[0]
    return None


def _psf_fwhm(
    data, valid, noise, x, y, eligible, snr_min, min_count=5, neighbours=None, measure_stars=True
):
    """The frame's FWHM from objects at (x, y), and the per-object measurements.

    A first pass on the brightest eligible objects, with stamps large enough for a wide
    PSF, finds the stars (see :func:`_star_cluster`) among the objects that survive a
    3x3 median (see :func:`_median_survival`), and so the stamp size for the second pass,
    which measures every object. The stars are then measured once more, isolated ones
    only when enough are, with cosmic-ray pixels left out when the PSF is wide enough to
    tell them apart, and the FWHM is taken from their S/N-weighted mean half-maximum
    area, which does not assume a Gaussian profile.

    Parameters
    ----------
    neighbours : (array, array), optional
        Positions of all the frame's objects, for the isolation test (default: x, y).
    measure_stars : bool
        Measure the stars once more for the FWHM; False when only the per-object
        moments are wanted (then ``fwhm`` is the cluster's and ``details`` empty).

    Returns
    -------
    fwhm : float or None
        None when fewer than ``min_count`` stars are usable.
    moments : dict or None
        Output of :func:`_adaptive_moments` for all objects (None if no first-pass stars).
    details : dict
        ``n_stars``, ``spread``, ``sizes``, ``star_sizes`` and ``stars`` (indices into
        ``x, y``) for :class:`FwhmEstimate`.
    """
    eligible = np.asarray(eligible, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    candidates = np.flatnonzero(eligible)
    if len(candidates) < min_count:
        return None, None, {}
    if len(candidates) > _FIRST_PASS_MAX:
        box = _box_snr(data, noise, x[candidates], y[candidates])
        candidates = candidates[np.argsort(-box)[:_FIRST_PASS_MAX]]
    survival = np.zeros(len(x))
    survival[candidates] = _median_survival(data, x[candidates], y[candidates])
    first = _adaptive_moments(data, valid, noise, x[candidates], y[candidates], 16, 1.5)
    psf_like = np.zeros(len(x), dtype=bool)
    psf_like[candidates] = _survives_as_psf(survival[candidates], first["fwhm"])
    if psf_like.sum() < min_count:  # nothing survives: a frame sharper than any PSF floor
        psf_like[candidates] = True
    star_like = _star_like(first, snr_min)
    stars = _psf_cluster(first["fwhm"], star_like, psf_like[candidates], min_count)
    if stars is None:
        return None, None, {}
    sigma0 = max(stars[0] / _GAUSS_FWHM, 0.5)
    half = int(np.clip(np.ceil(4.0 * sigma0), 5, 40))
    # The window starts at the stars' size: fewer iterations converge (this pass measures
    # every object, the largest share of a crowded frame's detection time).
    second = _adaptive_moments(data, valid, noise, x, y, half, sigma0, n_iter=6)
    survival[eligible] = _median_survival(data, x[eligible], y[eligible])
    psf_like = _survives_as_psf(survival, second["fwhm"]) | ~np.any(psf_like)
    star_like = eligible & _star_like(second, snr_min)
    ok_second = star_like & psf_like
    stars = _psf_cluster(second["fwhm"], star_like, psf_like, min_count)
    if stars is None:
        return None, second, {}
    fwhm0, members = stars
    if not measure_stars:
        return fwhm0, second, {}

    # The stars once more: isolated ones if enough, hits in their stamps left out.
    chosen = np.flatnonzero(members)
    nx_, ny_ = neighbours if neighbours is not None else (x, y)
    isolated = _isolated(x[chosen], y[chosen], nx_, ny_, _ISOLATION * fwhm0)
    if isolated.sum() >= min_count:
        chosen = chosen[isolated]
    if len(chosen) > _MAX_STARS:  # plenty: the brightest are measured best
        chosen = chosen[np.argsort(-second["snr"][chosen])[:_MAX_STARS]]
    clean = fwhm0 >= _CLEAN_MIN_FWHM
    third = _adaptive_moments(
        data, valid, noise, x[chosen], y[chosen], half, sigma0, reject_hits=clean
    )
    final = _star_cluster(third["fwhm"], _star_like(third, snr_min), min_count)
    if final is None:
        third = {name: values[chosen] for name, values in second.items()}
        final = (fwhm0, np.ones(len(chosen), dtype=bool))
    # The half-maximum area of faint wide stars grows with their pixel noise (a noisy
    # peak pixel): a weighted mean (areas are whole pixels: a median would be too coarse
    # for sharp stars) of all but the 10 % largest and smallest, the weight growing as
    # S/N squared up to S/N 200.
    used = np.flatnonzero(final[1] & np.isfinite(third["area"]))
    if len(used) == 0:
        return None, second, {}
    used = used[np.argsort(third["area"][used])]
    trim = len(used) // 10
    used = used[trim : len(used) - trim] if len(used) > 2 * trim else used
    weights = np.minimum(third["snr"][used], 200.0) ** 2
    area = float(np.average(third["area"][used], weights=weights))
    star_sizes = third["fwhm"][final[1]]
    median = np.median(star_sizes)
    details = {
        "n_stars": int(final[1].sum()),
        "spread": float(1.4826 * np.median(np.abs(star_sizes - median)) / median),
        "sizes": second["fwhm"][ok_second & np.isfinite(second["fwhm"])],
        "star_sizes": star_sizes,
        "stars": chosen[final[1]],
    }
    return float(2.0 * np.sqrt(area / np.pi)), second, details


def _psf_cluster(fwhm, star_like, psf_like, min_count, max_hit_share=0.7):
    """:func:`_star_cluster` of the PSF-like objects, skipping clusters made of hits.

    Where most round objects of a cluster's size fail the median test (more than
    ``max_hit_share``), the few that pass are hits that happened to look like a PSF
    (on a star's wing, a fat cluster): that size belongs to cosmic rays, never to the
    stars, and the next cluster is taken.
    """
    ok = star_like & psf_like
    log_fwhm = np.log10(np.where(fwhm > 0, fwhm, np.nan))
    for _ in range(4):
        stars = _star_cluster(fwhm, ok, min_count)
        if stars is None:
            return None
        members = stars[1]
        low, high = np.nanmin(log_fwhm[members]), np.nanmax(log_fwhm[members])
        with np.errstate(invalid="ignore"):
            same_size = star_like & (log_fwhm >= low) & (log_fwhm <= high)
        hits = np.count_nonzero(same_size & ~psf_like)
        if hits <= max_hit_share * np.count_nonzero(same_size):
            return stars
        with np.errstate(invalid="ignore"):
            ok = ok & ~((log_fwhm >= low) & (log_fwhm <= high))
    return None


def _survives_as_psf(survival, fwhm):
    """Objects whose 3x3-median survival is at least half what a PSF of their size keeps.

    A pixel-centred Gaussian of width ``sigma`` keeps ``exp(-1 / (2 sigma**2))`` of its
    peak (its four nearest neighbours' value), more off centre; a cosmic-ray hit of the
    same second-moment size (a cluster, a worm) keeps far less, and a single pixel almost
    nothing (:data:`_MIN_SURVIVAL`).
    """
    sigma = np.asarray(fwhm, dtype=np.float64) / _GAUSS_FWHM
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        expected = np.exp(-0.5 / np.where(sigma > 0, sigma * sigma, np.nan))
    return (survival >= _MIN_SURVIVAL) & ~(survival < 0.5 * expected)


def _isolated(x, y, all_x, all_y, radius):
    """True for positions with no other position of ``all_x, all_y`` within ``radius``."""
    from scipy.spatial import cKDTree

    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    # Only positions that can be within reach: a catalog row far off the frame (x = 1e308)
    # would overflow the tree's squared distances.
    good = np.isfinite(all_x) & np.isfinite(all_y)
    good &= (all_x >= np.min(x) - radius) & (all_x <= np.max(x) + radius)
    good &= (all_y >= np.min(y) - radius) & (all_y <= np.max(y) + radius)
    tree = cKDTree(np.column_stack([all_x[good], all_y[good]]))
    counts = tree.query_ball_point(np.column_stack([x, y]), r=radius, return_length=True)
    return np.asarray(counts) <= 1  # itself


def _star_like(moments, snr_min):
    """Objects measured well enough, and round enough, to be stars."""
    with np.errstate(invalid="ignore"):
        return (
            moments["usable"]
            & (moments["snr"] >= snr_min)
            & (moments["ellipticity"] < _MAX_ELLIPTICITY)
        )


def _box_snr(data, noise, x, y, half=2):
    """Cheap S/N in a (2 half + 1)^2 box around each position, moved inside the frame."""
    ny, nx = data.shape
    # Clipped before the cast: a position beyond the int64 range has no integer index.
    ix = np.clip(np.rint(x), half, nx - 1 - half).astype(np.int64)
    iy = np.clip(np.rint(y), half, ny - 1 - half).astype(np.int64)
    u = np.arange(-half, half + 1)
    rows = np.clip(iy[:, None] + u, 0, ny - 1)  # frames narrower than the box
    cols = np.clip(ix[:, None] + u, 0, nx - 1)
    flux = data[rows[:, :, None], cols[:, None, :]].sum(axis=(1, 2))
    sigma = noise[rows[:, half], cols[:, half]].astype(np.float64) * (2 * half + 1)
    return np.where(sigma > 0, flux / sigma, 0.0)


def _star_cluster(fwhm, ok, min_count=5):
    """Find the stars among measured objects: the sharpest well-populated FWHM cluster.

    Values below :data:`_MIN_FWHM` (hot pixels, sharp cosmic rays: no PSF sampled by
    pixels is that sharp) or above 100 px are ignored. In the kernel density of log FWHM,
    stars form the sharpest significant peak: galaxies are wider, and barely resolved
    ones can outnumber the stars. So the peak kept is the sharpest one at least half as
    high as the highest and holding at least 3 objects, except that a peak sharper than
    :data:`_SHARP_FWHM` (where cosmic-ray hits gather, whatever the PSF) is skipped when
    another peak holds more objects. A clipped median refines the peak.

    Returns
    -------
    tuple or None
        ``(fwhm, members)``: the cluster's median FWHM and a boolean mask over ``fwhm``;
        None when fewer than ``min_count`` values are usable.
    """
    fwhm = np.asarray(fwhm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.asarray(ok, dtype=bool) & np.isfinite(fwhm)
        ok &= (fwhm >= _MIN_FWHM) & (fwhm < 100.0)
    if ok.sum() < min_count:
        return None
    logf = np.full(len(fwhm), np.nan)
    logf[ok] = np.log10(fwhm[ok])
    step, width = 0.005, 0.03  # bin and kernel sigma in dex (0.03 dex = 7 %)
    edges = np.arange(np.log10(_MIN_FWHM) - 0.2, np.log10(100.0) + 0.2, step)
    centres = edges[:-1] + 0.5 * step
    hist, _ = np.histogram(logf[ok], bins=edges)
    kx = np.arange(-int(4 * width / step), int(4 * width / step) + 1) * step
    density = np.convolve(hist, np.exp(-0.5 * (kx / width) ** 2), mode="same")
    padded = np.concatenate([[-1.0], density, [-1.0]])
    peaks = np.flatnonzero((density >= padded[:-2]) & (density > padded[2:]))
    peaks = peaks[density[peaks] >= 0.5 * density.max()]
    sorted_logf = np.sort(logf[ok])
    counts = np.searchsorted(sorted_logf, centres[peaks] + 2 * width) - np.searchsorted(
        sorted_logf, centres[peaks] - 2 * width
    )
    peaks, counts = peaks[counts >= 3], counts[counts >= 3]
    if len(peaks) == 0:
        return None
    if len(peaks) > 1 and centres[peaks[0]] < np.log10(_SHARP_FWHM):
        if counts[0] < counts[1:].max():  # a sharp cluster outnumbered: cosmic rays
            peaks, counts = peaks[1:], counts[1:]
    if len(peaks) > 1 and centres[peaks[0]] < np.log10(_PSF_FLOOR):
        peaks, counts = peaks[1:], counts[1:]  # below any sampled PSF: hits or hot pixels
    found = _clipped_cluster(logf, ok, centres[peaks[0]], 3, with_centre=True)
    if found is None:
        return None
    centre, members = found
    return float(10.0**centre), members


def _clipped_cluster(log_values, ok, centre, min_members, with_centre=False):
    """The members of ``ok`` within a clipped window around ``centre`` (log values): five
    times, the median of those within the window becomes the centre and three robust
    sigmas (0.02-0.1 dex) its half-width. None when fewer than ``min_members`` remain;
    ``(centre, members)`` when ``with_centre``."""
    half_width = 0.1
    for _ in range(5):
        with np.errstate(invalid="ignore"):
            members = ok & (np.abs(log_values - centre) < half_width)
        if members.sum() < min_members:
            return None
        centre = np.median(log_values[members])
        spread = 1.4826 * np.median(np.abs(log_values[members] - centre))
        half_width = float(np.clip(3.0 * spread, 0.02, 0.1))
    with np.errstate(invalid="ignore"):
        members = ok & (np.abs(log_values - centre) < half_width)
    if members.sum() < min_members:
        return None
    return (centre, members) if with_centre else members


def _adaptive_moments(
    data, valid, noise, x, y, half, sigma0, n_iter=12, chunk=2000, reject_hits=False
):
    """Adaptive second moments of objects at (x, y), vectorised over objects.

    A circular Gaussian window is matched iteratively to each object's size and
    recentred on it; the object's Gaussian sigma then follows from the windowed moment
    ``m`` and the window ``w`` as ``s**2 = m w**2 / (w**2 - m)``.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image, 0 at bad pixels.
    valid : numpy.ndarray
        True for usable pixels.
    noise : numpy.ndarray
        Finite 1-sigma noise map.
    x, y : numpy.ndarray
        0-based positions.
    half : int
        Half-size of the square stamps measured.
    sigma0 : float or numpy.ndarray
        Starting window sigma.
    reject_hits : bool
        Leave out pixels far above their 3x3 median (more than 5 sigma and more than 80 %
        of their value): cosmic-ray hits in the stamps of a PSF wider than about 2 px.

    Returns
    -------
    dict of numpy.ndarray
        ``fwhm`` (Gaussian-equivalent FWHM, NaN when not measurable), ``snr`` (weighted
        S/N), ``usable`` (core free of masked or off-frame pixels, window not truncated,
        position converged), ``area`` (number of pixels above half the peak) and
        ``ellipticity`` (of the windowed moments, 0 for a round object).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    out = {
        "fwhm": np.full(n, np.nan),
        "snr": np.full(n, np.nan),
        "usable": np.zeros(n, dtype=bool),
        "area": np.full(n, np.nan),
        "ellipticity": np.full(n, np.nan),
    }
    if reject_hits:  # the 3x3 medians hold 9 values per stamp pixel: smaller chunks
        chunk = max(16, min(chunk, 2_000_000 // (2 * half + 1) ** 2))
    sigma0 = np.broadcast_to(np.asarray(sigma0, dtype=np.float64), (n,))
    ny, nx = data.shape
    inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5)
    inside &= (y > -0.5) & (y < ny - 0.5)
    u = np.arange(-half, half + 1, dtype=np.float64)
    w2_min, w2_max = 1.0, (half / 2.5) ** 2

    for start in range(0, n, chunk):
        sel = np.flatnonzero(inside[start : start + chunk]) + start
        if len(sel) == 0:
            continue
        xi = np.rint(x[sel]).astype(np.int64)
        yi = np.rint(y[sel]).astype(np.int64)
        rows = yi[:, None] + u.astype(np.int64)[None, :]
        cols = xi[:, None] + u.astype(np.int64)[None, :]
        in_rows = (rows >= 0) & (rows < ny)
        in_cols = (cols >= 0) & (cols < nx)
        rows_c = np.clip(rows, 0, ny - 1)
        cols_c = np.clip(cols, 0, nx - 1)
        ok = in_rows[:, :, None] & in_cols[:, None, :]
        ok &= valid[rows_c[:, :, None], cols_c[:, None, :]]
        img = np.where(ok, data[rows_c[:, :, None], cols_c[:, None, :]], 0.0)
        sigma = noise[rows_c[:, :, None], cols_c[:, None, :]].astype(np.float64)
        if reject_hits:
            padded = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
            windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
            excess = img - np.median(windows.reshape(*img.shape, 9), axis=-1)
            hit = (excess > 5.0 * sigma) & (excess > 0.8 * img)
            ok &= ~hit
            img = np.where(hit, 0.0, img)
        var = np.where(ok, sigma * sigma, 0.0)  # per stamp: no float64 copy of the frame

        cx = x[sel] - xi
        cy = y[sel] - yi
        w2 = np.clip(sigma0[sel] ** 2, w2_min, w2_max)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # The round Gaussian window is a product of a row and a column profile, so
            # the moments come from the windowed stamp's row and column sums: two passes
            # over the stamps an iteration instead of a dozen.
            for it in range(n_iter + 1):
                dx = u[None, :] - cx[:, None]  # (objects, columns)
                dy = u[None, :] - cy[:, None]  # (objects, rows)
                along_x = np.exp(-0.5 * dx * dx / w2[:, None])
                along_y = np.exp(-0.5 * dy * dy / w2[:, None])
                weighted = along_y[:, :, None] * img * along_x[:, None, :]
                by_column, by_row = weighted.sum(axis=1), weighted.sum(axis=2)
                m0 = by_column.sum(axis=1)
                mx = (by_column * dx).sum(axis=1) / m0
                my = (by_row * dy).sum(axis=1) / m0
                xx, yy = (by_column * dx * dx).sum(axis=1), (by_row * dy * dy).sum(axis=1)
                m = 0.5 * (xx + yy) / m0
                if it == n_iter:
                    qxy = 2.0 * np.einsum("nij,ni,nj->n", weighted, dy, dx)
                    ellipticity = np.where(m > 0, np.hypot(xx - yy, qxy) / (2.0 * m * m0), np.nan)
                    window = along_y[:, :, None] * along_x[:, None, :]
                    r2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
                    break
                good = (m0 > 0) & np.isfinite(m) & np.isfinite(mx) & np.isfinite(my)
                cx = np.where(good, np.clip(cx + np.clip(mx, -1, 1), -half / 2, half / 2), cx)
                cy = np.where(good, np.clip(cy + np.clip(my, -1, 1), -half / 2, half / 2), cy)
                w2 = np.where(good & (m > 0), np.clip(2.0 * m, w2_min, w2_max), w2)

            s2 = m * w2 / (w2 - m)
            measured = (m0 > 0) & np.isfinite(m) & (m < 0.9 * w2)
            s2 = np.where(measured, np.maximum(s2, 0.0), np.nan)
            snr = m0 / np.sqrt((window * window * var).sum(axis=(1, 2)))
            lost = (window * ~ok).sum(axis=(1, 2)) / window.sum(axis=(1, 2))

            # Half-maximum area: pixels above half the peak. The peak is the pixel nearest
            # the centroid, corrected for its offset with the core's Gaussian width.
            ic = np.clip(np.rint(cy).astype(np.int64) + half, 0, 2 * half)
            jc = np.clip(np.rint(cx).astype(np.int64) + half, 0, 2 * half)
            d2 = (u[ic] - cy) ** 2 + (u[jc] - cx) ** 2
            boost = np.exp(np.minimum(0.5 * d2 / np.where(s2 > 0, s2, np.inf), np.log(2.0)))
            peak = img[np.arange(len(sel)), ic, jc] * boost
            reach2 = np.maximum(9.0 * np.where(measured, s2, 0.0), 2.25)
            above = ok & (img > 0.5 * peak[:, None, None]) & (r2 < reach2[:, None, None])
            area = np.where(measured & (peak > 0), above.sum(axis=(1, 2)), np.nan)
        out["fwhm"][sel] = _GAUSS_FWHM * np.sqrt(s2)
        out["area"][sel] = area
        out["ellipticity"][sel] = ellipticity
        out["snr"][sel] = snr
        out["usable"][sel] = (
            measured
            & (lost < 0.01)
            & (w2 < 0.99 * w2_max)
            & (np.abs(cx) < 0.4 * half)
            & (np.abs(cy) < 0.4 * half)
        )
    return out
