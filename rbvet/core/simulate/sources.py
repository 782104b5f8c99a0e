"""Stars and galaxies: placement, brightness, rendering, saturation and bleeding.

Galaxies are Sérsic profiles **convolved with the PSF** (batched FFT on a fine grid).
Each object is rendered into a stamp whose radius reaches down to ``wing_level`` σ of the
frame; its light is normalised inside that stamp, so a truth ``flux`` is exactly the light
the object puts into its noise-free layer (minus what falls off the frame).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import special

from rbvet.core.simulate.psf import (
    _FWHM_PER_SIGMA,
    _batches,
    _bin,
    _ladder_radius,
    _oversample,
    _render_psf_stamps,
    _subpixel_offsets,
)
from rbvet.core.simulate.settings import MEGAPIXEL, _log_uniform
from rbvet.core.simulate.truth import _truth_rows

MAX_SERSIC_RADIUS = 5.0
"""Sérsic profiles are truncated at most this many half-light radii out."""
GALAXY_WING_FACTOR = 5.0
"""Galaxies are truncated (smoothly) this many times higher than ``wing_level``: their
extended, low-surface-brightness outskirts would otherwise dominate the rendering time."""
_MAX_GALAXY_RADIUS = 90
_MAX_FINE_GRID = 256  # largest oversampled galaxy stamp side (px of the fine grid)


def _power_law(rng, low, high, slope, size):
    """Draw values in [low, high] with cumulative counts N(>v) ∝ v**-slope."""
    u = rng.uniform(0.0, 1.0, size)
    if high <= low:
        return np.full(size, float(low))
    tail = (low / high) ** slope
    return low * (1.0 - u * (1.0 - tail)) ** (-1.0 / slope)


def _sersic_b(n):
    """Sérsic b_n such that the half-light radius encloses half of the light (exact)."""
    return special.gammaincinv(2.0 * n, 0.5)


def _render_galaxy_stamps(psf, dx, dy, n, r_eff, q, theta, truncation, radius, k):
    """Unit-flux Sérsic ⊗ PSF stamps, integrated over pixels (N, 2R+1, 2R+1).

    Galaxy and PSF are sampled on the same fine lattice (spacing 1/k px), convolved with a
    batched FFT, and the fine grid is averaged into pixels (the pixel integration). The
    convolution is circular on the stamp grid: the stamp already reaches past the PSF's
    reach, so what wraps round is below the wing level.
    """
    x_off, y_off = _subpixel_offsets(dx, dy, radius, k)
    cos = np.cos(theta).astype(np.float32)[:, None, None]
    sin = np.sin(theta).astype(np.float32)[:, None, None]
    along = x_off * cos + y_off * sin
    across = y_off * cos - x_off * sin
    qq = q.astype(np.float32)[:, None, None]
    m2 = (qq * along * along + across * across / qq) / (r_eff.astype(np.float32) ** 2)[
        :, None, None
    ]
    # exp(-b m^(1/n)), in place; then a smooth taper over the outer quarter of truncation.
    log_m2 = np.log(np.maximum(m2, np.float32(1e-30)))
    galaxy = np.exp(log_m2 * (0.5 / n).astype(np.float32)[:, None, None])
    galaxy *= -_sersic_b(n).astype(np.float32)[:, None, None]
    np.exp(galaxy, out=galaxy)
    edge = truncation.astype(np.float32)[:, None, None]
    taper = np.clip((edge - np.sqrt(m2)) / (0.25 * edge), 0.0, 1.0)
    galaxy *= taper * taper * (3.0 - 2.0 * taper)

    fine = galaxy.shape[-1]
    size = sp_fft.next_fast_len(fine, real=True)
    wrapped = (((np.arange(size) + size // 2) % size) - size // 2).astype(np.float32) / k
    # Single precision throughout, as the galaxy is sampled: a double kernel made the
    # inverse transform, the largest part of the rendering, a double one.
    kernel = psf.profile(wrapped[None, :], wrapped[:, None]).astype(np.float32)
    kernel_spectrum = sp_fft.rfft2(kernel / kernel.sum())
    spectrum = sp_fft.rfft2(galaxy, s=(size, size)) * kernel_spectrum
    convolved = sp_fft.irfft2(spectrum, s=(size, size))[:, :fine, :fine]
    stamps = _bin(np.clip(convolved, 0.0, None), k)
    return stamps / stamps.sum(axis=(1, 2), dtype=np.float64, keepdims=True)


def _star_groups(rng, n_stars, fraction, fwhm, uniform):
    """Positions of about ``fraction × n_stars`` extra stars in chains and small groups.

    Each group has 3–6 stars, each 0.7–3 FWHM from the previous one; half of the groups
    are chains (the direction turns by at most ±40° a step), the rest clumps (any direction).
    """
    n_members = rng.binomial(n_stars, fraction) if n_stars else 0
    sizes = rng.integers(3, 7, max(1, int(np.ceil(n_members / 4.5))))
    sizes = sizes[np.cumsum(sizes) - sizes < n_members] if n_members else sizes[:0]
    n_groups, longest = sizes.size, 6
    start_x, start_y = uniform(n_groups)
    step = rng.uniform(0.7, 3.0, (n_groups, longest - 1)) * fwhm
    chain = rng.uniform(0.0, 1.0, n_groups) < 0.5
    turns = np.where(
        chain[:, None],
        rng.uniform(-np.pi / 4.5, np.pi / 4.5, (n_groups, longest - 1)),
        rng.uniform(0.0, 2.0 * np.pi, (n_groups, longest - 1)),
    )
    direction = rng.uniform(0.0, 2.0 * np.pi, n_groups)[:, None] + np.cumsum(turns, axis=1)
    zero = np.zeros((n_groups, 1))
    gx = start_x[:, None] + np.concatenate([zero, np.cumsum(step * np.cos(direction), 1)], 1)
    gy = start_y[:, None] + np.concatenate([zero, np.cumsum(step * np.sin(direction), 1)], 1)
    member = np.arange(longest)[None, :] < sizes[:, None]
    return gx[member], gy[member]


def _place_sources(rng, params, shape, fwhm, margin, min_separation, group_rng=None):
    """Positions of stars and galaxies, with close pairs, optionally thinned for isolation.

    Stars in chains and small groups (``params['group_fraction']``) are drawn from
    ``group_rng`` and added after the others, so the rest of the frame stays as it was.
    """
    height, width = shape
    area = height * width
    n_stars, n_galaxies = params["n_stars"], params["n_galaxies"]
    if n_stars is None or n_galaxies is None:
        crowding_cap = MEGAPIXEL / (30.0 * fwhm**2)
        density = min(params["real_density"], crowding_cap)
        total = rng.poisson(density * area / MEGAPIXEL)
        n_gal = rng.binomial(total, params["galaxy_fraction"])
        n_stars = total - n_gal if n_stars is None else int(n_stars)
        n_galaxies = n_gal if n_galaxies is None else int(n_galaxies)

    def uniform_with(generator):
        def uniform(n):
            x = generator.uniform(margin - 0.5, width - 0.5 - margin, n)
            y = generator.uniform(margin - 0.5, height - 0.5 - margin, n)
            return x, y

        return uniform

    uniform = uniform_with(rng)

    n_companions = min(rng.binomial(n_stars, params["pair_fraction"]), max(n_stars - 1, 0))
    n_primary = n_stars - n_companions
    star_x, star_y = uniform(n_primary)
    host = rng.integers(0, max(n_primary, 1), n_companions)
    distance = rng.uniform(0.5, 3.0, n_companions) * fwhm
    angle = rng.uniform(0.0, 2.0 * np.pi, n_companions)
    comp_x = star_x[host] + distance * np.cos(angle)
    comp_y = star_y[host] + distance * np.sin(angle)
    paired = np.zeros(n_primary, bool)
    paired[host] = True
    group_x, group_y = np.zeros(0), np.zeros(0)
    if group_rng is not None and params.get("group_fraction", 0.0) > 0:
        group_x, group_y = _star_groups(
            group_rng, n_stars, params["group_fraction"], fwhm, uniform_with(group_rng)
        )
    subkind = np.concatenate(
        [
            np.where(paired, "pair", "single"),
            np.full(n_companions, "pair"),
            np.full(group_x.size, "group"),
        ]
    )
    star_x = np.concatenate([star_x, comp_x, group_x])
    star_y = np.concatenate([star_y, comp_y, group_y])
    gal_x, gal_y = uniform(n_galaxies)

    x, y = np.concatenate([star_x, gal_x]), np.concatenate([star_y, gal_y])
    keep = (
        (x >= margin - 0.5)
        & (x <= width - 0.5 - margin)
        & (y >= margin - 0.5)
        & (y <= height - 0.5 - margin)
    )
    if min_separation and x.size > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(np.column_stack([x, y])).query_pairs(
            min_separation * fwhm, output_type="ndarray"
        )
        keep[pairs.max(axis=1)] = False
    is_star = np.arange(x.size) < star_x.size
    star_keep, gal_keep = keep[is_star], keep[~is_star]
    return (star_x[star_keep], star_y[star_keep], subkind[star_keep]), (
        gal_x[gal_keep],
        gal_y[gal_keep],
    )


def _bleed_trails(stamps, ix, iy, bg_local, saturation, max_length, rng):
    """Column bleed of charge above full well, as (rows, cols, values) to add to a layer.

    The charge above saturation in each column of a saturated star is spilled up and down
    that column beyond the saturated run, filling pixels to the saturation level.
    """
    n, size, _ = stamps.shape
    radius = size // 2
    level = stamps + bg_local[:, None, None]
    over = level > saturation
    excess = np.clip(level - saturation, 0.0, None).sum(axis=1)  # (n, columns)
    star, column = np.nonzero(excess > 0)
    if star.size == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    well = np.maximum(saturation - bg_local[star], 1e-6)
    spill = np.minimum(excess[star, column] / well, 2.0 * max_length)
    share_up = rng.uniform(0.3, 0.7, n)[star]
    first = np.argmax(over[star, :, column], axis=1)
    last = size - 1 - np.argmax(over[star, ::-1, column], axis=1)

    rows, cols, values = [], [], []
    for direction, amount, start in (
        (1, spill * share_up, last),
        (-1, spill * (1 - share_up), first),
    ):
        count = np.ceil(amount).astype(int)
        owner = np.repeat(np.arange(star.size), count)
        step = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count) + 1
        fill = np.minimum(amount[owner] - (step - 1), 1.0)  # last pixel partly filled
        stamp_row = start[owner] + direction * step
        inside = (stamp_row >= 0) & (stamp_row < size)
        own = np.zeros(owner.size)
        own[inside] = stamps[star[owner][inside], stamp_row[inside], column[owner][inside]]
        rows.append(iy[star[owner]] - radius + stamp_row)
        cols.append(ix[star[owner]] - radius + column[owner])
        values.append(np.clip(fill * well[owner] * 1.001 - own, 0.0, None))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def _make_stars(
    rng, psf, params, x, y, subkind, background, noise, canvas, bleed_canvas, bright_rng=None
):
    """Render stars (power-law peaks in σ units), saturation flags and bleed trails.

    The stars go to ``canvas``, their bleed trails to ``bleed_canvas``: a detection on a
    bleed piece is an artifact, not the star. A share ``params['bright_star_fraction']``
    of the stars, chosen with ``bright_rng``, gets a peak of 0.5–20 times the saturation
    headroom instead (log-uniform): most of them saturate, with flat tops.
    """
    n = x.size
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    height, width = background.shape
    inside_r, inside_c = np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)
    sigma = noise[inside_r, inside_c]
    bg_local = background[inside_r, inside_c]
    saturation = params["saturation"]

    psf_k = psf.oversample  # 1 for a PSF that is already pixel-integrated (empirical)
    unit_peak = float(_render_psf_stamps(psf, np.zeros(1), np.zeros(1), 3, psf_k).max())
    low, high = params["star_peak_snr"]
    if high is None:
        high = 5.0 * (saturation - params["sky"]) / params["noise_median"]
    peak_snr = _power_law(rng, low, max(high, low), params["star_count_slope"], n)
    if bright_rng is not None and params.get("bright_star_fraction", 0.0) > 0:
        bright = bright_rng.uniform(0.0, 1.0, n) < params["bright_star_fraction"]
        headroom = np.maximum(saturation - bg_local, sigma) / sigma
        bright_snr = _log_uniform(bright_rng, 0.5, 20.0, n) * headroom
        peak_snr = np.where(bright, bright_snr, peak_snr)
    flux = peak_snr * sigma / unit_peak

    wing = params["wing_level"] * sigma / (flux * unit_peak)
    radius = np.maximum(psf.radius_at(wing), 2.0 * psf.fwhm)
    peak = np.zeros(n)
    for stamp_radius, _, members in _batches(radius, psf_k):
        offset_x, offset_y = x[members] - ix[members], y[members] - iy[members]
        stamps = _render_psf_stamps(psf, offset_x, offset_y, stamp_radius, psf_k)
        stamps *= flux[members, None, None]
        peak[members] = stamps.max(axis=(1, 2))
        canvas.add_stamps(ix[members], iy[members], stamps)
        if params["bleed"]:
            saturated = peak[members] + bg_local[members] > saturation
            if saturated.any():
                chosen = members[saturated]
                rows, cols, values = _bleed_trails(
                    stamps[saturated],
                    ix[chosen],
                    iy[chosen],
                    bg_local[chosen],
                    saturation,
                    max_length=height // 4,
                    rng=rng,
                )
                bleed_canvas.add_pixels(rows, cols, values)
    saturated = peak + bg_local > saturation
    return _truth_rows(
        n,
        "star",
        x=x,
        y=y,
        subkind=subkind,
        flux=flux,
        peak=peak,
        peak_sigma=peak / sigma,
        saturated=saturated,
        width=psf.fwhm,
    )


def _make_galaxies(rng, psf, params, x, y, background, noise, canvas):
    """Render PSF-convolved Sérsic galaxies, faint to moderately bright."""
    n = x.size
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    height, width = background.shape
    sigma = noise[np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)]

    sersic_n = _log_uniform(rng, 0.5, 4.0, n)
    r_eff = np.maximum(_log_uniform(rng, 0.3, 3.0, n) * psf.fwhm, 0.3)
    axis_ratio = rng.uniform(0.2, 1.0, n)
    theta = rng.uniform(0.0, np.pi, n)
    low, high = params["galaxy_peak_snr"]
    peak_snr = _power_law(rng, low, max(high, low), params["galaxy_count_slope"], n)
    # Peak-to-flux of a Gaussian with the PSF's and the galaxy's widths added in quadrature.
    sigma_psf2 = (psf.fwhm / _FWHM_PER_SIGMA) ** 2 + 1.0 / 12.0
    sigma_gal2 = (r_eff / 1.1774) ** 2
    flux = peak_snr * sigma * 2.0 * np.pi * (sigma_psf2 + sigma_gal2)

    # Truncate each profile (smoothly) where it falls below wing_level·σ, at most at
    # MAX_SERSIC_RADIUS r_e and within a 90 px radius; the stamp adds the PSF's reach.
    b = _sersic_b(sersic_n)
    surface_e = flux / (
        2.0
        * np.pi
        * sersic_n
        * r_eff**2
        * np.exp(b)
        * b ** (-2.0 * sersic_n)
        * special.gamma(2.0 * sersic_n)
    )
    wing = GALAXY_WING_FACTOR * params["wing_level"] * sigma
    reach = np.clip(1.0 + np.log(np.maximum(surface_e / wing, 1e-12)) / b, 0.0, None)
    psf_reach = np.clip(
        psf.radius_at(wing / np.maximum(peak_snr * sigma, wing)), psf.fwhm, 3.0 * psf.fwhm
    )
    truncation = np.minimum(reach**sersic_n, MAX_SERSIC_RADIUS)
    room = _MAX_GALAXY_RADIUS - psf_reach
    truncation = np.minimum(truncation, room * np.sqrt(axis_ratio) / r_eff)
    truncation = np.maximum(truncation, 1.0)  # keep at least the half-light isophote
    radius = np.maximum(truncation * r_eff / np.sqrt(axis_ratio) + psf_reach, 2.0 * psf.fwhm + 1.0)

    # Sample as finely as the sharpest of PSF and galaxy core needs, within the fine budget.
    core_fwhm = 2.0 * r_eff * (np.log(2.0) / b) ** sersic_n
    oversample = _oversample(np.hypot(psf.fwhm, core_fwhm))
    oversample = np.clip(
        np.minimum(oversample, _MAX_FINE_GRID // (2 * _ladder_radius(radius) + 1)), 1, None
    )
    peak = np.zeros(n)
    for stamp_radius, k, members in _batches(radius, oversample):
        stamps = _render_galaxy_stamps(
            psf,
            x[members] - ix[members],
            y[members] - iy[members],
            sersic_n[members],
            r_eff[members],
            axis_ratio[members],
            theta[members],
            truncation[members],
            stamp_radius,
            k,
        )
        stamps *= flux[members, None, None]
        peak[members] = stamps.max(axis=(1, 2))
        canvas.add_stamps(ix[members], iy[members], stamps)
    subkind = np.array([f"sersic n={value:.1f}" for value in sersic_n], dtype=object)
    return _truth_rows(
        n,
        "galaxy",
        x=x,
        y=y,
        subkind=subkind,
        flux=flux,
        peak=peak,
        peak_sigma=peak / sigma,
        saturated=peak + background[np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)]
        > params["saturation"],
        angle=np.rad2deg(theta),
        sersic_n=sersic_n,
        r_eff=r_eff,
        axis_ratio=axis_ratio,
    )
