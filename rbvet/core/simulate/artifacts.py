"""Detector artifacts: cosmic rays, hot pixels, satellite trails, bad columns, edge bands.

Cosmic rays and hot pixels are **not** PSF-convolved: hits get at most a small
charge-diffusion kernel, always narrower than the PSF; hot pixels get none. Satellite
trails carry the PSF's own profile across them (its line-spread function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from rbvet.core.simulate.psf import _FWHM_PER_SIGMA, _Canvas, _oversample, _Psf
from rbvet.core.simulate.settings import MEGAPIXEL, _log_uniform
from rbvet.core.simulate.truth import _CR_SUBKINDS, _HOT_SUBKINDS, _truth_rows

_NEIGHBOURS_8 = np.array([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)])


def _grow_clusters(rng, n, sizes, max_size):
    """Pixel offsets (n, max_size, 2) of compact clumps: each pixel touches an earlier one."""
    offsets = np.zeros((n, max_size, 2), int)
    for j in range(1, max_size):
        parent = rng.integers(0, j, n)
        step = _NEIGHBOURS_8[rng.integers(0, 8, n)]
        offsets[:, j] = offsets[np.arange(n), parent] + step
    valid = np.arange(max_size)[None, :] < sizes[:, None]
    return offsets, valid


def _random_walks(rng, n, lengths, max_length):
    """Pixel offsets (n, max_length, 2) of persistent random walks (worm-like hits)."""
    turns = rng.choice([-1, 0, 1], size=(n, max_length - 1), p=[0.25, 0.5, 0.25])
    direction = (rng.integers(0, 8, n)[:, None] + np.cumsum(turns, axis=1)) % 8
    steps = _NEIGHBOURS_8[direction]
    offsets = np.concatenate([np.zeros((n, 1, 2), int), np.cumsum(steps, axis=1)], axis=1)
    valid = np.arange(max_length)[None, :] < lengths[:, None]
    return offsets, valid


def _segment_pixels(x0, y0, x1, y1, width, k):
    """Pixel coverage of anti-aliased straight segments of given widths.

    Returns (object index, row, col, covered area in px²) for every touched pixel; the area
    comes from k×k sub-samples of each candidate pixel.
    """
    length = np.hypot(x1 - x0, y1 - y0)
    n_samples = np.ceil(length / 0.5).astype(int) + 1
    owner = np.repeat(np.arange(x0.size), n_samples)
    position = np.arange(owner.size) - np.repeat(np.cumsum(n_samples) - n_samples, n_samples)
    fraction = position / np.maximum(n_samples[owner] - 1, 1)
    sx = x0[owner] + fraction * (x1 - x0)[owner]
    sy = y0[owner] + fraction * (y1 - y0)[owner]
    reach = int(np.ceil(np.max(width, initial=0.0) / 2.0 + 1.0))
    grid = np.arange(-reach, reach + 1)
    rows = (np.rint(sy)[:, None, None] + grid[None, :, None]).astype(np.int64)
    cols = (np.rint(sx)[:, None, None] + grid[None, None, :]).astype(np.int64)
    owners = np.broadcast_to(owner[:, None, None], np.broadcast_shapes(rows.shape, cols.shape))
    rows, cols = np.broadcast_arrays(rows, cols)
    key = np.unique(
        (owners.ravel() * (1 << 21) + rows.ravel() + (1 << 20)) * (1 << 21)
        + cols.ravel()
        + (1 << 20)
    )
    cols = (key % (1 << 21)) - (1 << 20)
    rest = key // (1 << 21)
    rows = (rest % (1 << 21)) - (1 << 20)
    owner = rest // (1 << 21)

    sub = (np.arange(k) + 0.5) / k - 0.5
    px = cols[:, None, None] + sub[None, None, :]
    py = rows[:, None, None] + sub[None, :, None]
    ux, uy = (
        ((x1 - x0) / np.maximum(length, 1e-9))[owner],
        ((y1 - y0) / np.maximum(length, 1e-9))[owner],
    )
    rel_x, rel_y = px - x0[owner, None, None], py - y0[owner, None, None]
    along = rel_x * ux[:, None, None] + rel_y * uy[:, None, None]
    across = rel_y * ux[:, None, None] - rel_x * uy[:, None, None]
    inside = (
        (along >= 0)
        & (along <= length[owner, None, None])
        & (np.abs(across) <= width[owner, None, None] / 2.0)
    )
    area = inside.mean(axis=(1, 2))
    keep = area > 0
    return owner[keep], rows[keep], cols[keep], area[keep]


def _diffusion_kernel(sigma):
    """Pixel-integrated 1-D Gaussian kernel of charge diffusion (σ in px)."""
    edges = np.arange(-2.5, 3.0, 1.0)
    cdf = special.ndtr(edges / sigma)
    return np.diff(cdf) / (cdf[-1] - cdf[0])


# Cosmic rays and hot pixels are drawn and painted alike: a count and a subkind each (from
# the ``<kind>_density``, ``n_<kind>s`` and ``<kind>_mix`` parameters), a peak amplitude
# log-uniform in σ (``<kind>_snr``), pixels deposited per artifact, and a truth row each.


def _draw_artifact_subkinds(rng, params, shape, kind, subkinds, n=None):
    """How many artifacts of ``kind`` a frame gets, and the index in ``subkinds`` of each.

    The count is ``n`` when given (artifacts at given positions), else Poisson with
    ``params[f"{kind}_density"]`` per megapixel unless ``params[f"n_{kind}s"]`` gives it;
    the subkinds follow ``params[f"{kind}_mix"]``.
    """
    height, width = shape
    if n is None:
        n = rng.poisson(params[f"{kind}_density"] * height * width / MEGAPIXEL)
        if params[f"n_{kind}s"] is not None:
            n = int(params[f"n_{kind}s"])
    mix = np.array([params[f"{kind}_mix"][name] for name in subkinds])
    return n, rng.choice(len(subkinds), size=n, p=mix)


def _draw_artifact_amplitudes(rng, params, kind, background, noise, ix, iy):
    """Noise σ at each artifact's pixel and a peak amplitude (ADU) log-uniform in σ.

    ``params[f"{kind}_snr"]`` bounds the amplitude in σ; an open upper bound stops at
    saturation.
    """
    sigma = noise[iy, ix]
    low, high = params[f"{kind}_snr"]
    if high is None:
        high = (params["saturation"] - background[iy, ix]) / sigma
    amplitude = _log_uniform(rng, low, np.maximum(high, low * 1.001), len(sigma)) * sigma
    return sigma, amplitude


def _paint_artifacts(
    kind, subkinds, kind_index, pixels, sigma, ix, iy, background, params, diffusion=0.0, **columns
):
    """Sum the artifacts' pixels into a layer and give each artifact its truth row.

    Parameters
    ----------
    kind : str
    subkinds : sequence of str
    kind_index : ndarray (n,) int
        Each artifact's subkind, an index into ``subkinds``.
    pixels : tuple of ndarray (owner, rows, cols, values)
        One entry per deposited pixel: the artifact it belongs to and what it adds (ADU).
    sigma : ndarray (n,)
        Noise σ at each artifact's reference pixel ``(iy, ix)``.
    ix, iy : ndarray (n,) int
    background : ndarray
    params : dict
        The frame parameters (for ``saturation``).
    diffusion : float
        Charge diffusion σ (px) that blurs the layer; none below 0.05.
    **columns
        The other truth columns (``x`` and ``y`` at least).

    Returns
    -------
    layer : ndarray
    truth : dict
        From `_truth_rows`; ``flux`` and ``peak`` as measured on the layer.
    """
    owner, rows, cols, values = pixels
    n = len(kind_index)
    height, width = background.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    canvas = _Canvas(background.shape)
    if diffusion > 0.05 and n:
        # Each deposit spread by the (separable) diffusion kernel where it lies: the
        # frame-wide convolution, computed on the few pixels that hold a deposit.
        kernel = _diffusion_kernel(diffusion)
        reach = np.arange(kernel.size) - kernel.size // 2
        canvas.add_pixels(
            rows[inside, None, None] + reach[None, :, None],
            cols[inside, None, None] + reach[None, None, :],
            values[inside, None, None] * np.multiply.outer(kernel, kernel)[None],
        )
    else:
        canvas.add_pixels(rows, cols, values)
    layer = canvas.image()
    flux = np.bincount(owner[inside], values[inside], minlength=n)
    peak = np.zeros(n)
    np.maximum.at(peak, owner[inside], layer[rows[inside], cols[inside]])
    truth = _truth_rows(
        n,
        kind,
        subkind=np.array(subkinds, dtype=object)[kind_index],
        flux=flux,
        peak=peak,
        peak_sigma=peak / sigma,
        saturated=peak + background[iy, ix] > params["saturation"],
        **columns,
    )
    return layer, truth


def _move_onto_stars(rng, x, y, share, star_x, star_y, fwhm):
    """Move a ``share`` of the points (x, y) to 0–2 FWHM from randomly chosen stars.

    Drawn from a generator of its own, so the hits' other draws stay as they were.
    """
    moved = rng.uniform(0.0, 1.0, x.size) < share
    if not star_x.size or not moved.any():
        return x, y
    star = rng.integers(0, star_x.size, x.size)
    distance = rng.uniform(0.0, 2.0, x.size) * fwhm
    angle = rng.uniform(0.0, 2.0 * np.pi, x.size)
    x = np.where(moved, star_x[star] + distance * np.cos(angle), x)
    y = np.where(moved, star_y[star] + distance * np.sin(angle), y)
    return x, y


def _make_cosmic_rays(rng, params, background, noise, positions=None, on_stars=None):
    """Cosmic-ray hits: singles, clusters, worms and tracks; amplitudes log-uniform in σ.

    Placed uniformly over the frame, or at ``positions`` (x, y arrays) when given. Tracks
    are at most ``params["max_artifact_length"]`` px long when that is set.
    ``on_stars`` = (generator, star x, star y): a share ``cosmic_ray_on_star_fraction`` of
    the uniformly placed hits is moved to touch or overlap those stars (see
    `_move_onto_stars`).
    """
    height, width = background.shape
    n, kind_index = _draw_artifact_subkinds(
        rng,
        params,
        background.shape,
        "cosmic_ray",
        _CR_SUBKINDS,
        n=None if positions is None else len(positions[0]),
    )
    if positions is None:
        x = rng.uniform(-0.5, width - 0.5, n)
        y = rng.uniform(-0.5, height - 0.5, n)
    else:
        x, y = (np.asarray(v, dtype=float) for v in positions)
    if on_stars is not None and positions is None:
        near_rng, star_x, star_y = on_stars
        x, y = _move_onto_stars(
            near_rng, x, y, params["cosmic_ray_on_star_fraction"], star_x, star_y, params["fwhm"]
        )
        x = np.clip(x, -0.5, width - 0.5)
        y = np.clip(y, -0.5, height - 0.5)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    ix, iy = np.clip(ix, 0, width - 1), np.clip(iy, 0, height - 1)
    sigma, amplitude = _draw_artifact_amplitudes(
        rng, params, "cosmic_ray", background, noise, ix, iy
    )

    owners, rows, cols, values = [], [], [], []
    length = np.full(n, np.nan)
    angle = np.full(n, np.nan)
    track_width = np.full(n, np.nan)
    ends = np.full((4, n), np.nan)  # x0, y0, x1, y1 of tracks
    centre_x, centre_y = ix.astype(float), iy.astype(float)

    def add_clumps(members, offsets, valid, relative):
        """Deposit pixel clumps; their truth position is the deposit-weighted centroid."""
        owners.append(np.broadcast_to(members[:, None], valid.shape)[valid])
        rows.append((iy[members][:, None] + offsets[..., 1])[valid])
        cols.append((ix[members][:, None] + offsets[..., 0])[valid])
        values.append((relative * amplitude[members][:, None])[valid])
        length[members] = valid.sum(axis=1)
        weight = np.where(valid, relative, 0.0)
        total = np.maximum(weight.sum(axis=1), 1e-12)
        centre_x[members] += (weight * offsets[..., 0]).sum(axis=1) / total
        centre_y[members] += (weight * offsets[..., 1]).sum(axis=1) / total

    singles = np.flatnonzero(kind_index == 0)
    owners.append(singles)
    rows.append(iy[singles])
    cols.append(ix[singles])
    values.append(amplitude[singles])
    length[singles] = 1

    clusters = np.flatnonzero(kind_index == 1)
    offsets, valid = _grow_clusters(rng, clusters.size, rng.integers(2, 5, clusters.size), 4)
    relative = rng.uniform(0.2, 1.0, valid.shape)
    relative[:, 0] = 1.0
    add_clumps(clusters, offsets, valid, relative)

    worms = np.flatnonzero(kind_index == 2)
    offsets, valid = _random_walks(rng, worms.size, rng.integers(3, 16, worms.size), 15)
    relative = rng.uniform(0.3, 1.0, valid.shape)
    relative /= np.max(np.where(valid, relative, 0.0), axis=1, keepdims=True)
    add_clumps(worms, offsets, valid, relative)

    tracks = np.flatnonzero(kind_index == 3)
    if tracks.size:
        longest = min(150.0, params.get("max_artifact_length") or 150.0)
        track_len = _log_uniform(rng, min(5.0, longest), longest, tracks.size)
        track_angle = rng.uniform(0.0, np.pi, tracks.size)
        track_w = rng.uniform(0.5, 1.5, tracks.size)
        half_x, half_y = (
            0.5 * track_len * np.cos(track_angle),
            0.5 * track_len * np.sin(track_angle),
        )
        owner, r, c, area = _segment_pixels(
            x[tracks] - half_x,
            y[tracks] - half_y,
            x[tracks] + half_x,
            y[tracks] + half_y,
            track_w,
            5,
        )
        deposit = amplitude[tracks][owner] * area / np.minimum(track_w[owner], 1.0)
        deposit *= rng.lognormal(0.0, 0.2, owner.size)
        owners.append(tracks[owner])
        rows.append(r)
        cols.append(c)
        values.append(deposit)
        length[tracks], angle[tracks] = track_len, np.rad2deg(track_angle)
        track_width[tracks] = track_w
        centre_x[tracks], centre_y[tracks] = x[tracks], y[tracks]
        ends[0][tracks], ends[1][tracks] = x[tracks] - half_x, y[tracks] - half_y
        ends[2][tracks], ends[3][tracks] = x[tracks] + half_x, y[tracks] + half_y

    return _paint_artifacts(
        "cosmic_ray",
        _CR_SUBKINDS,
        kind_index,
        tuple(np.concatenate(a) for a in (owners, rows, cols, values)),
        sigma,
        ix,
        iy,
        background,
        params,
        diffusion=params["charge_diffusion"],
        x=centre_x,
        y=centre_y,
        length=length,
        angle=angle,
        width=track_width,
        x0=ends[0],
        y0=ends[1],
        x1=ends[2],
        y1=ends[3],
    )


def _make_hot_pixels(rng, params, background, noise, positions=None):
    """Hot pixels (singles, adjacent pairs, 3–5 px clusters) and warm column segments.

    Placed uniformly over the frame, or at ``positions`` (x, y arrays) when given; column
    segments are at most ``params["max_artifact_length"]`` px long when that is set.
    """
    height, width = background.shape
    n, kind_index = _draw_artifact_subkinds(
        rng,
        params,
        background.shape,
        "hot_pixel",
        _HOT_SUBKINDS,
        n=None if positions is None else len(positions[0]),
    )
    if positions is None:
        ix = rng.integers(0, width, n)
        iy = rng.integers(0, height, n)
    else:
        ix, iy = (
            np.clip(np.rint(v), 0, size - 1).astype(int)
            for v, size in zip(positions, (width, height), strict=True)
        )
    sigma, amplitude = _draw_artifact_amplitudes(
        rng, params, "hot_pixel", background, noise, ix, iy
    )
    segment_amp = _log_uniform(rng, 3.0, 50.0, n) * sigma

    sizes = np.select(
        [kind_index == 0, kind_index == 1, kind_index == 2],
        [1, 2, rng.integers(3, 6, n)],
        default=rng.integers(3, int(min(50, params.get("max_artifact_length") or 50)) + 1, n),
    )
    offsets, valid = _grow_clusters(rng, n, sizes, 5)
    vertical = rng.uniform(0.0, 1.0, n) < 0.7
    pair = kind_index == 1
    offsets[pair, 1] = np.where(vertical[pair, None], [0, 1], [1, 0])
    relative = rng.uniform(0.2, 1.0, valid.shape)
    relative[:, 0] = 1.0

    clumps = kind_index != 3
    owner = np.broadcast_to(np.arange(n)[:, None], valid.shape)[valid & clumps[:, None]]
    select = valid & clumps[:, None]
    rows = (iy[:, None] + offsets[..., 1])[select]
    cols = (ix[:, None] + offsets[..., 0])[select]
    values = (relative * amplitude[:, None])[select]

    segments = np.flatnonzero(~clumps)
    seg_len = sizes[segments]
    seg_owner = np.repeat(segments, seg_len)
    seg_step = np.arange(seg_owner.size) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    owner = np.concatenate([owner, seg_owner])
    rows = np.concatenate([rows, iy[seg_owner] + seg_step])
    cols = np.concatenate([cols, ix[seg_owner]])
    values = np.concatenate([values, segment_amp[seg_owner]])

    centre_x = ix + np.where(clumps, (offsets[..., 0] * valid).sum(1) / valid.sum(1), 0.0)
    centre_y = iy + np.where(
        clumps, (offsets[..., 1] * valid).sum(1) / valid.sum(1), (sizes - 1) / 2.0
    )
    return _paint_artifacts(
        "hot_pixel",
        _HOT_SUBKINDS,
        kind_index,
        (owner, rows, cols, values),
        sigma,
        ix,
        iy,
        background,
        params,
        x=centre_x,
        y=centre_y,
        length=sizes.astype(float),
        angle=np.where(clumps, np.nan, 90.0),
    )


def _clip_line_to_frame(px, py, angle, half_length, shape):
    """Endpoints of a line through (px, py) at ``angle``, limited to ±half_length and the frame."""
    height, width = shape
    ux, uy = np.cos(angle), np.sin(angle)
    low, high = -half_length, half_length
    for position, direction, size in ((px, ux, width), (py, uy, height)):
        if abs(direction) < 1e-12:
            continue
        t0, t1 = (-0.5 - position) / direction, (size - 0.5 - position) / direction
        low, high = max(low, min(t0, t1)), min(high, max(t0, t1))
    return px + low * ux, py + low * uy, px + high * ux, py + high * uy


@dataclass(frozen=True)
class _Trail:
    """A satellite trail: a segment of light seen through the PSF, optionally glinting."""

    psf: _Psf
    x0: float
    y0: float
    angle: float  # radians from +x
    length: float  # px, may run beyond the frame
    amplitude: float  # ADU at the trail's centre line
    glint_period: float = np.inf
    glint_gain: float = 0.0
    glint_phase: float = 0.0

    def brightness(self, cols, rows):
        """Surface brightness (ADU) at (cols, rows)."""
        ux, uy = np.cos(self.angle), np.sin(self.angle)
        along = (cols - self.x0) * ux + (rows - self.y0) * uy
        across = (rows - self.y0) * ux - (cols - self.x0) * uy
        values = self.amplitude * self.psf.line_profile(across, self.angle)
        ends_scale = np.sqrt(2.0) * self.psf.fwhm / _FWHM_PER_SIGMA  # ends fade over the PSF
        values *= 0.5 * (
            special.erf(along / ends_scale) - special.erf((along - self.length) / ends_scale)
        )
        if self.glint_gain:
            phase = 2.0 * np.pi * along / self.glint_period + self.glint_phase
            values *= 1.0 + self.glint_gain * (0.5 + 0.5 * np.cos(phase)) ** 8
        return values


def _make_satellites(rng, psf, params, background, noise, positions=None):
    """Satellite trails: straight lines with the PSF's profile across, sometimes glinting.

    ``params["n_satellites"]`` trails anywhere (60 % crossing the frame), or, with
    ``positions`` (x, y arrays), one short trail centred on each, its length log-uniform
    from 3 FWHM to ``params["max_artifact_length"]`` (40 px when not set).
    """
    height, width = background.shape
    layer = np.zeros(background.shape)
    diagonal = float(np.hypot(height, width))
    sigma_median = params["noise_median"]
    k = _oversample(psf.fwhm)
    sub = (np.arange(k) + 0.5) / k - 0.5
    parts = []
    count = int(params["n_satellites"]) if positions is None else len(positions[0])
    longest = params.get("max_artifact_length") or 40.0
    for index in range(count):
        angle = rng.uniform(0.0, np.pi)
        if positions is None:
            px, py = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            crossing = rng.uniform() < 0.6
            half_length = 2.0 * diagonal if crossing else diagonal * _log_uniform(rng, 0.025, 0.5)
        else:
            px, py = float(positions[0][index]), float(positions[1][index])
            half_length = 0.5 * _log_uniform(rng, min(3.0 * psf.fwhm, longest), longest)
        amplitude = _log_uniform(rng, 3.0, 500.0) * sigma_median
        glint = rng.uniform() < 0.3
        period, gain = _log_uniform(rng, 15.0, 300.0), _log_uniform(rng, 0.5, 5.0)
        trail = _Trail(
            psf,
            px - half_length * np.cos(angle),
            py - half_length * np.sin(angle),
            angle,
            2.0 * half_length,
            amplitude,
            period,
            gain if glint else 0.0,
            rng.uniform(0.0, 2.0 * np.pi),
        )
        x0, y0, x1, y1 = _clip_line_to_frame(px, py, angle, half_length, (height, width))
        length = float(np.hypot(x1 - x0, y1 - y0))
        if length < 1.0:
            continue
        # Pixels near the visible segment; integrated on a k×k sub-grid near the centre line,
        # point-sampled in the smooth wings.
        reach = min(
            psf.line_radius_at(params["wing_level"] * sigma_median / amplitude, angle), 64.0
        )
        ux, uy = np.cos(angle), np.sin(angle)
        # Only the segment's bounding box (grown by the reach) can hold its pixels.
        margin = reach + 2.0
        row0 = int(max(0, np.floor(min(y0, y1) - margin)))
        row1 = int(min(height, np.ceil(max(y0, y1) + margin) + 1))
        col0 = int(max(0, np.floor(min(x0, x1) - margin)))
        col1 = int(min(width, np.ceil(max(x0, x1) + margin) + 1))
        rows_grid = np.arange(row0, row1, dtype=float)[:, None]
        cols_grid = np.arange(col0, col1, dtype=float)[None, :]
        along = (cols_grid - x0) * ux + (rows_grid - y0) * uy
        across = np.abs((rows_grid - y0) * ux - (cols_grid - x0) * uy)
        band = (across <= reach + 1.0) & (along >= -reach - 1.0) & (along <= length + reach + 1)
        r, c = np.nonzero(band)
        core = across[r, c] <= 3.0 * psf.fwhm + 1.0
        r, c = r + row0, c + col0
        values = trail.brightness(c.astype(float), r.astype(float))
        if k > 1:
            values[core] = trail.brightness(
                c[core, None, None] + sub[None, None, :], r[core, None, None] + sub[None, :, None]
            ).mean(axis=(1, 2))
        layer[r, c] += values
        parts.append(
            _truth_rows(
                1,
                "satellite",
                x=0.5 * (x0 + x1),
                y=0.5 * (y0 + y1),
                subkind="glint" if glint else "trail",
                flux=values.sum(),
                peak=values.max(),
                peak_sigma=values.max() / sigma_median,
                length=length,
                angle=np.rad2deg(angle),
                width=psf.fwhm,
                x0=x0,
                y0=y0,
                x1=x1,
                y1=y1,
                saturated=values.max() + params["sky"] > params["saturation"],
            )
        )
    return layer, parts


def _make_bad_columns(rng, params, background, noise, positions=None):
    """Bad columns/rows: full, to-the-edge or segment, offset by a few to many σ.

    ``params["n_bad_columns"]`` of them anywhere, or, with ``positions`` (x, y arrays), one
    brighter column piece centred on each, 10 px to ``params["max_artifact_length"]``
    (40 px when not set) long.
    """
    height, width = background.shape
    layer = np.zeros(background.shape)
    sigma_median = params["noise_median"]
    parts = []
    count = int(params["n_bad_columns"]) if positions is None else len(positions[0])
    for index in range(count):
        if positions is None:
            is_row = rng.uniform() < 0.15
        else:
            is_row = False
        along_size, across_size = (width, height) if is_row else (height, width)
        line = int(rng.integers(0, across_size))
        thickness = 1 if rng.uniform() < 0.8 else 2
        extent = rng.choice(["full", "edge", "segment"], p=[0.4, 0.4, 0.2])
        start_point = int(rng.integers(0, along_size))
        if positions is not None:
            longest = max(params.get("max_artifact_length") or 40.0, 11.0)
            seg = int(_log_uniform(rng, 10.0, longest))
            line = int(np.clip(np.rint(positions[0][index]), 0, across_size - 1))
            centre = int(np.rint(positions[1][index]))
            extent = "piece"
            start, stop = max(0, centre - seg // 2), min(along_size, centre - seg // 2 + seg)
        elif extent == "full":
            start, stop = 0, along_size
        elif extent == "edge":
            start, stop = (
                (0, start_point + 1) if rng.uniform() < 0.5 else (start_point, along_size)
            )
        else:
            seg = int(_log_uniform(rng, 10.0, max(along_size / 2.0, 11.0)))
            start, stop = start_point, min(along_size, start_point + seg)
        amplitude = _log_uniform(rng, 2.0, 200.0) * sigma_median
        dead = rng.uniform() < 0.25
        if dead and positions is None:  # a dead or low-sensitivity line loses at most the sky
            amplitude = -min(amplitude, 0.9 * params["sky"])
        ripple = 1.0 + 0.05 * rng.standard_normal(stop - start)
        lines = slice(line, min(line + thickness, across_size))
        if is_row:
            layer[lines, start:stop] += amplitude * ripple[None, :]
            x0, x1, y0 = start, stop - 1, line + (thickness - 1) / 2.0
            y1 = y0
        else:
            layer[start:stop, lines] += amplitude * ripple[:, None]
            y0, y1, x0 = start, stop - 1, line + (thickness - 1) / 2.0
            x1 = x0
        parts.append(
            _truth_rows(
                1,
                "bad_column",
                x=0.5 * (x0 + x1),
                y=0.5 * (y0 + y1),
                subkind=("row_" if is_row else "column_") + str(extent),
                flux=amplitude * (stop - start) * thickness,
                peak=amplitude,
                peak_sigma=amplitude / sigma_median,
                length=stop - start,
                angle=0.0 if is_row else 90.0,
                width=thickness,
                x0=x0,
                y0=y0,
                x1=x1,
                y1=y1,
            )
        )
    return layer, parts


_EDGE_SIDES = ("left", "right", "bottom", "top")


def _make_edge_bands(rng, params, background, noise):
    """Unexposed bands along frame edges (overscan, prescan) at their own level.

    Each band is 2–60 px wide (log-uniform) along a random side; its level is the sky
    ± 3–300 σ (log-uniform; 70 % below the sky, as an unexposed band without sky is). The
    layer holds level − sky inside the bands; sources and other artifacts are removed
    there by the caller (`mask`), as nothing reaches unexposed pixels.

    Returns
    -------
    layer : ndarray
    mask : ndarray of bool
        The band pixels.
    truth : list of dict
    """
    height, width = background.shape
    layer = np.zeros(background.shape)
    mask = np.zeros(background.shape, bool)
    sigma = params["noise_median"]
    parts = []
    for _ in range(int(params["n_edge_bands"])):
        side = _EDGE_SIDES[int(rng.integers(0, 4))]
        along_size = height if side in ("left", "right") else width
        across_size = width if side in ("left", "right") else height
        band_width = int(min(_log_uniform(rng, 2.0, 60.0), across_size // 4 + 1))
        offset = _log_uniform(rng, 3.0, 300.0) * sigma
        if rng.uniform() < 0.7:
            offset = -min(offset, 0.95 * params["sky"])
        band = {
            "left": np.s_[:, :band_width],
            "right": np.s_[:, width - band_width :],
            "bottom": np.s_[:band_width, :],
            "top": np.s_[height - band_width :, :],
        }[side]
        level = params["sky"] + offset
        layer[band] = level - background[band]
        mask[band] = True
        inner = band_width - 0.5 if side in ("left", "bottom") else across_size - band_width - 0.5
        centre_across = (band_width - 1) / 2.0
        if side in ("right", "top"):
            centre_across = across_size - 1 - centre_across
        vertical = side in ("left", "right")
        centre = (along_size - 1) / 2.0
        parts.append(
            _truth_rows(
                1,
                "edge",
                x=centre_across if vertical else centre,
                y=centre if vertical else centre_across,
                subkind=side,
                flux=offset * band_width * along_size,
                peak=offset,
                peak_sigma=offset / sigma,
                length=along_size,
                angle=90.0 if vertical else 0.0,
                width=band_width,
                x0=inner if vertical else -0.5,
                y0=-0.5 if vertical else inner,
                x1=inner if vertical else width - 0.5,
                y1=height - 0.5 if vertical else inner,
            )
        )
    # Overlapping bands: the later one's level wins.
    return layer, mask, parts
