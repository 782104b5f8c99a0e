"""Synthetic frames with full truth, to train and test the real-bogus classifier.

One call of :func:`simulate_frame` draws a frame: sky (with optional gradients), stars and
galaxies seen through a Gaussian or Moffat PSF, and the artifacts a detector shows —
cosmic rays, hot pixels, satellite trails and bad columns — then Poisson and read noise,
saturation and (optionally) column bleeding. Everything is drawn from broad per-frame
distributions, and every artifact amplitude is drawn in units of the frame's noise σ, so a
classifier trained here learns shapes rather than one simulator's absolute numbers.

Physics that matters for a classifier:

* PSF light is **integrated over pixels** (oversampled sub-pixel grid at sub-pixel centres);
  point-sampling a FWHM 1.2 px PSF would make stars too peaked and too much like hits.
* Galaxies are Sérsic profiles **convolved with the PSF** (batched FFT on a fine grid).
* Cosmic rays and hot pixels are **not** PSF-convolved: hits get at most a small
  charge-diffusion kernel, always narrower than the PSF; hot pixels get none.
* Satellite trails carry the PSF's own profile across them (its line-spread function).

Each object is rendered into a stamp whose radius reaches down to ``wing_level`` σ of the
frame; its light is normalised inside that stamp, so a truth ``flux`` is exactly the light
the object puts into its noise-free layer (minus what falls off the frame).

Rendering is vectorised per kind: stamps for all objects of a kind and stamp size are built
at once as ``N×S×S`` arrays and added to the frame with ``np.bincount`` on flat indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy import fft as sp_fft
from scipy import ndimage, special

__all__ = [
    "ARTIFACT_KINDS",
    "SOURCE_KINDS",
    "SimulatedFrame",
    "draw_fwhm",
    "label_detections",
    "simulate_frame",
]

ARTIFACT_KINDS = ("cosmic_ray", "hot_pixel", "satellite", "bad_column", "noise")
"""Bogus kinds; ``artifact_kind`` maps hold index+1 into this tuple ('noise' is never
injected: it is what :func:`label_detections` calls a detection that matches nothing)."""

SOURCE_KINDS = ("star", "galaxy")
"""Astrophysical (real) kinds; ``source_kind`` maps hold index+1 into this tuple."""

MEGAPIXEL = 1.0e6
SHARP_FWHM = (1.2, 2.5)
"""FWHM range (px) of the undersampled frames, where stars and hits look most alike."""
MAX_FWHM = 10.0
SHARP_SHARE = 0.4
"""Share of :func:`draw_fwhm` draws that fall in :data:`SHARP_FWHM`."""

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_MAX_STAMP_RADIUS = 128
_RADIUS_LADDER = np.array([3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128])
MAX_SERSIC_RADIUS = 5.0
"""Sérsic profiles are truncated at most this many half-light radii out."""
GALAXY_WING_FACTOR = 5.0
"""Galaxies are truncated (smoothly) this many times higher than ``wing_level``: their
extended, low-surface-brightness outskirts would otherwise dominate the rendering time."""
_MAX_GALAXY_RADIUS = 90
_MAX_FINE_GRID = 256  # largest oversampled galaxy stamp side (px of the fine grid)
_CHUNK_ELEMENTS = 3_000_000  # bound on N×S×S per rendering batch
_N_STREAMS = 8
_NEIGHBOURS_8 = np.array([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)])
_TRUTH_FLOAT_COLUMNS = (
    "flux",
    "peak",
    "peak_sigma",
    "length",
    "angle",
    "width",
    "x0",
    "y0",
    "x1",
    "y1",
    "sersic_n",
    "r_eff",
    "axis_ratio",
)


# --------------------------------------------------------------------------------------
# The frame


@dataclass
class SimulatedFrame:
    """A simulated frame, its noise-free layers and the truth about every injected object.

    Attributes
    ----------
    image : ndarray, float32
        Sky + sources + artifacts + noise (ADU), clipped at ``params['saturation']``.
    background : ndarray, float32
        True sky level map (ADU).
    noise : ndarray, float32
        Expected 1-σ noise of the sky (ADU): what a background-rms map should recover.
    sources : ndarray, float32
        Noise-free stars + galaxies layer (ADU above sky), unclipped; includes bleed trails.
    artifacts : ndarray, float32
        Noise-free artifact layer (ADU above sky); bad columns may be negative.
    artifact_kind : ndarray, uint8
        Index+1 into :data:`ARTIFACT_KINDS` of the artifact dominating each pixel; 0 where
        no artifact reaches ``wing_level`` σ.
    truth : astropy.table.Table
        One row per injected object (see :func:`simulate_frame`).
    fwhm : float
        PSF FWHM (px) of the frame.
    params : dict
        Every drawn or given frame parameter, including ``seed``: passing the same seed and
        options to :func:`simulate_frame` gives the same frame.
    source_kind : ndarray, uint8 or None
        Index+1 into :data:`SOURCE_KINDS` of the source dominating each pixel; 0 where no
        source reaches ``wing_level`` σ.
    """

    image: np.ndarray
    background: np.ndarray
    noise: np.ndarray
    sources: np.ndarray
    artifacts: np.ndarray
    artifact_kind: np.ndarray
    truth: Table
    fwhm: float
    params: dict = field(default_factory=dict)
    source_kind: np.ndarray | None = None


# --------------------------------------------------------------------------------------
# Random helpers


def _log_uniform(rng, low, high, size=None):
    """Draw from a log-uniform distribution on [low, high]."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _power_law(rng, low, high, slope, size):
    """Draw values in [low, high] with cumulative counts N(>v) ∝ v**-slope."""
    u = rng.uniform(0.0, 1.0, size)
    if high <= low:
        return np.full(size, float(low))
    tail = (low / high) ** slope
    return low * (1.0 - u * (1.0 - tail)) ** (-1.0 / slope)


def _seed_from(rng):
    """Turn ``rng`` (Generator, int, SeedSequence or None) into a recordable int seed."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, np.random.SeedSequence):
        return int(rng.generate_state(2, np.uint64)[0] >> np.uint64(1))
    if rng is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))
    return int(rng)


def draw_fwhm(rng, n=None):
    """Draw PSF FWHMs (px) from the training distribution.

    A share :data:`SHARP_SHARE` (40 %) of draws is uniform in :data:`SHARP_FWHM`
    (1.2–2.5 px), where stars and cosmic-ray hits look most alike; the rest is log-uniform
    from 2.5 to :data:`MAX_FWHM` (10 px).

    Parameters
    ----------
    rng : numpy.random.Generator or int
        Random generator or seed.
    n : int, optional
        Number of draws; ``None`` returns one float.

    Returns
    -------
    float or ndarray
    """
    rng = np.random.default_rng(rng)
    size = 1 if n is None else int(n)
    sharp = rng.uniform(0.0, 1.0, size) < SHARP_SHARE
    values = np.where(
        sharp,
        rng.uniform(SHARP_FWHM[0], SHARP_FWHM[1], size),
        _log_uniform(rng, SHARP_FWHM[1], MAX_FWHM, size),
    )
    return float(values[0]) if n is None else values


# --------------------------------------------------------------------------------------
# PSF


@dataclass(frozen=True)
class _Psf:
    """An elliptical Gaussian or Moffat PSF; ``fwhm`` is the geometric mean of the axes."""

    model: str
    fwhm: float
    beta: float
    ellipticity: float
    angle: float  # major axis, radians counter-clockwise from +x

    @property
    def axis_ratio(self):
        return 1.0 - self.ellipticity

    @property
    def scale(self):
        """Gaussian σ or Moffat α (px) of the equivalent round profile."""
        if self.model == "gaussian":
            return self.fwhm / _FWHM_PER_SIGMA
        return self.fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def _radius2(self, dx, dy):
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        along = dx * cos + dy * sin
        across = dy * cos - dx * sin
        q = self.axis_ratio
        return (q * along * along + across * across / q) / self.scale**2

    def profile(self, dx, dy):
        """Surface brightness at offsets (dx, dy) from the centre, peak 1."""
        r2 = self._radius2(dx, dy)
        if self.model == "gaussian":
            return np.exp(-0.5 * r2)
        return (1.0 + r2) ** (-self.beta)

    def radius_at(self, level):
        """Major-axis radius (px) where the profile has fallen to ``level`` of its peak."""
        level = np.clip(np.asarray(level, dtype=float), 1e-300, 1.0)
        if self.model == "gaussian":
            t = np.sqrt(2.0 * np.log(1.0 / level))
        else:
            t = np.sqrt(level ** (-1.0 / self.beta) - 1.0)
        return t * self.scale / np.sqrt(self.axis_ratio)

    def line_width(self, line_angle):
        """Scale (px) of the line-spread function across a line at ``line_angle``."""
        normal = line_angle + np.pi / 2.0
        along = np.cos(normal - self.angle)
        across = np.sin(normal - self.angle)
        q = self.axis_ratio
        return self.scale * np.sqrt(along**2 / q + across**2 * q)

    def line_profile(self, distance, line_angle):
        """Profile across a straight line of light (the PSF integrated along it), peak 1."""
        z2 = (distance / self.line_width(line_angle)) ** 2
        if self.model == "gaussian":
            return np.exp(-0.5 * z2)
        return (1.0 + z2) ** (0.5 - self.beta)

    def line_radius_at(self, level, line_angle):
        """Distance from a line where its profile falls to ``level`` of its peak."""
        level = np.clip(level, 1e-300, 1.0)
        if self.model == "gaussian":
            t = np.sqrt(2.0 * np.log(1.0 / level))
        else:
            t = np.sqrt(level ** (-1.0 / (self.beta - 0.5)) - 1.0)
        return t * self.line_width(line_angle)


def _oversample(fwhm):
    """Sub-pixel sampling factor that integrates a profile of this FWHM over pixels.

    The midpoint rule on k×k sub-cells errs by ~ f''/(24 k²) of the peak: 6/FWHM keeps
    that near 0.5 % at every FWHM (k = 5 at 1.2 px, 1 from 6 px on).
    """
    k = np.clip(np.ceil(6.0 / np.asarray(fwhm, dtype=float)), 1, 5).astype(int)
    return int(k) if k.ndim == 0 else k


def _ladder_radius(radius):
    """Round stamp radii up to a few fixed sizes so objects can be rendered in batches."""
    radius = np.clip(np.ceil(radius), _RADIUS_LADDER[0], _MAX_STAMP_RADIUS)
    return _RADIUS_LADDER[np.searchsorted(_RADIUS_LADDER, radius)]


def _subpixel_offsets(dx, dy, radius, k):
    """Offsets from each object's centre of a k×k sub-sampled (2R+1)² stamp grid.

    The stamp is centred on the pixel nearest to the object; ``dx, dy`` are the object's
    offsets from that pixel centre. Returns float32 X of shape (N, 1, G) and Y of shape
    (N, G, 1), G = (2R+1)·k, sample ``j·k+m`` at the centre of sub-cell m of pixel j.
    """
    grid = ((np.arange((2 * radius + 1) * k) + 0.5) / k - 0.5 - radius).astype(np.float32)
    dx, dy = np.asarray(dx, np.float32), np.asarray(dy, np.float32)
    return grid[None, None, :] - dx[:, None, None], grid[None, :, None] - dy[:, None, None]


def _bin(fine, k):
    """Average k×k sub-samples into pixels: (N, S·k, S·k) → (N, S, S)."""
    if k == 1:
        return fine
    n, g, _ = fine.shape
    return fine.reshape(n, g // k, k, g // k, k).mean(axis=(2, 4))


def _render_psf_stamps(psf, dx, dy, radius, k):
    """Pixel-integrated, unit-flux PSF stamps (N, 2R+1, 2R+1) at sub-pixel offsets.

    The core (3 FWHM) is integrated on a k×k sub-grid; the smooth wings are sampled at
    pixel centres, which is accurate there and keeps large stamps cheap.
    """
    x_off, y_off = _subpixel_offsets(dx, dy, radius, 1)
    stamps = psf.profile(x_off, y_off)
    if k > 1:
        core = int(min(radius, max(2, np.ceil(3.0 * psf.fwhm))))
        x_off, y_off = _subpixel_offsets(dx, dy, core, k)
        lo, hi = radius - core, radius + core + 1
        stamps[:, lo:hi, lo:hi] = _bin(psf.profile(x_off, y_off), k)
    return stamps / stamps.sum(axis=(1, 2), dtype=np.float64, keepdims=True)


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
    kernel = psf.profile(wrapped[None, :], wrapped[:, None])
    kernel_spectrum = sp_fft.rfft2(kernel / kernel.sum())
    spectrum = sp_fft.rfft2(galaxy, s=(size, size)) * kernel_spectrum
    convolved = sp_fft.irfft2(spectrum, s=(size, size))[:, :fine, :fine]
    stamps = _bin(np.clip(convolved, 0.0, None), k)
    return stamps / stamps.sum(axis=(1, 2), dtype=np.float64, keepdims=True)


# --------------------------------------------------------------------------------------
# Accumulating many small contributions into a frame


class _Canvas:
    """Collects (flat index, value) contributions and sums them into an image at once."""

    def __init__(self, shape):
        self.shape = shape
        self._index = []
        self._value = []

    def add_pixels(self, rows, cols, values):
        rows, cols = np.asarray(rows), np.asarray(cols)
        values = np.broadcast_to(values, np.broadcast_shapes(rows.shape, cols.shape))
        height, width = self.shape
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        flat = rows * width + cols
        self._index.append(np.broadcast_to(flat, inside.shape)[inside])
        self._value.append(values[inside])

    def add_stamps(self, ix, iy, stamps):
        radius = stamps.shape[-1] // 2
        offsets = np.arange(-radius, radius + 1)
        rows = iy[:, None, None] + offsets[None, :, None]
        cols = ix[:, None, None] + offsets[None, None, :]
        self.add_pixels(rows, cols, stamps)

    def image(self):
        height, width = self.shape
        if not self._index:
            return np.zeros(self.shape)
        summed = np.bincount(
            np.concatenate(self._index), np.concatenate(self._value), minlength=height * width
        )
        return summed.reshape(self.shape)


def _batches(radius, oversample):
    """Yield (stamp radius, k, object indices): objects sharing a ladder radius and k.

    Batches are cut so that a batch's fine grids hold at most ``_CHUNK_ELEMENTS`` samples.
    """
    ladder = _ladder_radius(radius)
    oversample = np.broadcast_to(oversample, ladder.shape)
    for value, k in sorted(set(zip(ladder.tolist(), oversample.tolist(), strict=True))):
        members = np.flatnonzero((ladder == value) & (oversample == k))
        step = max(1, _CHUNK_ELEMENTS // ((2 * value + 1) * k) ** 2)
        for start in range(0, members.size, step):
            yield int(value), int(k), members[start : start + step]


# --------------------------------------------------------------------------------------
# Frame parameters


def _draw_frame_params(rng, shape, given):
    """Draw every frame-level parameter (in a fixed order), then apply the given ones."""
    drawn = {
        "fwhm": draw_fwhm(rng),
        "psf_model": "moffat" if rng.uniform() < 0.7 else "gaussian",
        "moffat_beta": rng.uniform(1.8, 6.0),
        "ellipticity": rng.uniform(0.0, 0.25),
        "psf_angle": rng.uniform(0.0, 180.0),
        "sky": _log_uniform(rng, 10.0, 1.0e4),
        "sky_gradient": rng.uniform() < 0.4,
        "gradient_amplitude": _log_uniform(rng, 0.005, 0.3),
        "gradient_angle": rng.uniform(0.0, 360.0),
        "gradient_curvature": rng.uniform(-1.0, 1.0) if rng.uniform() < 0.5 else 0.0,
        "gain": _log_uniform(rng, 0.5, 5.0),
        "read_noise": _log_uniform(rng, 2.0, 20.0),
        "full_well": _log_uniform(rng, 2.0e4, 3.0e5),
        "quantized": rng.uniform() < 0.3,
        "real_density": _log_uniform(rng, 100.0, 3000.0),
        "galaxy_fraction": rng.uniform(0.05, 0.6),
        "pair_fraction": rng.uniform(0.0, 0.25),
        "star_count_slope": rng.uniform(0.4, 1.2),
        "galaxy_count_slope": rng.uniform(0.6, 1.4),
        "bleed": rng.uniform() < 0.5,
        "cosmic_ray_density": 0.0 if rng.uniform() < 0.15 else _log_uniform(rng, 5.0, 400.0),
        "cosmic_ray_mix": rng.dirichlet([2.0, 2.0, 2.0, 1.5]),
        "charge_diffusion": rng.uniform(0.0, 0.35),
        "hot_pixel_density": 0.0 if rng.uniform() < 0.2 else _log_uniform(rng, 5.0, 300.0),
        "hot_pixel_mix": rng.dirichlet([3.0, 2.0, 1.5, 0.5]),
        "n_satellites": int(rng.choice(3, p=[0.5, 0.3, 0.2])),
        "n_bad_columns": 0 if rng.uniform() < 0.7 else int(rng.integers(1, 5)),
    }
    params = {**drawn, **{key: value for key, value in given.items() if value is not None}}
    params["shape"] = tuple(int(v) for v in shape)
    params["fwhm"] = float(params["fwhm"])
    if params["psf_model"] not in ("gaussian", "moffat"):
        raise ValueError(f"psf_model must be 'gaussian' or 'moffat', not {params['psf_model']!r}")
    if params["psf_model"] == "gaussian":
        params["moffat_beta"] = None
    # The CR diffusion kernel is part of the PSF for stars too: keep it narrower.
    sigma_psf = params["fwhm"] / _FWHM_PER_SIGMA
    params["charge_diffusion"] = float(min(params["charge_diffusion"], 0.6 * sigma_psf))
    for key, names in (("cosmic_ray_mix", _CR_SUBKINDS), ("hot_pixel_mix", _HOT_SUBKINDS)):
        mix = params[key]
        if isinstance(mix, dict):
            mix = [float(mix.get(name, 0.0)) for name in names]
        mix = np.asarray(mix, dtype=float)
        params[key] = dict(zip(names, (mix / mix.sum()).tolist(), strict=True))
    return params


def _sky_model(params):
    """Sky level map: flat, or with a linear (and optionally quadratic) gradient."""
    height, width = params["shape"]
    sky = float(params["sky"])
    if not params["sky_gradient"]:
        return np.full(params["shape"], sky)
    angle = np.deg2rad(params["gradient_angle"])
    rows = (np.arange(height)[:, None] - (height - 1) / 2.0) / max(height, width)
    cols = (np.arange(width)[None, :] - (width - 1) / 2.0) / max(height, width)
    ramp = cols * np.cos(angle) + rows * np.sin(angle)
    shape = ramp + params["gradient_curvature"] * (ramp**2 - 1.0 / 12.0) * 2.0
    return np.clip(sky * (1.0 + params["gradient_amplitude"] * shape), 0.5 * sky, None)


# --------------------------------------------------------------------------------------
# Truth rows


def _truth_rows(n, kind, **columns):
    """Truth columns for ``n`` objects of one kind; absent float columns are NaN."""
    rows = {
        "kind": np.full(n, kind, dtype=object),
        "subkind": np.broadcast_to(np.asarray(columns.pop("subkind", ""), dtype=object), (n,)),
        "saturated": np.broadcast_to(np.asarray(columns.pop("saturated", False), bool), (n,)),
    }
    for name in ("x", "y", *_TRUTH_FLOAT_COLUMNS):
        value = columns.pop(name, np.nan)
        rows[name] = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if columns:
        raise TypeError(f"unknown truth columns: {sorted(columns)}")
    return rows


def _truth_table(parts):
    """Stack per-kind truth columns into one Table in a fixed column order."""
    order = ("x", "y", "kind", "subkind", *_TRUTH_FLOAT_COLUMNS[:3], "saturated")
    order += _TRUTH_FLOAT_COLUMNS[3:]
    columns = {}
    for name in order:
        values = [part[name] for part in parts]
        columns[name] = np.concatenate(values) if values else np.zeros(0)
    for name in ("kind", "subkind"):
        columns[name] = np.asarray(columns[name], dtype=str)
    columns["saturated"] = np.asarray(columns["saturated"], dtype=bool)
    return Table(columns)


# --------------------------------------------------------------------------------------
# Stars and galaxies


def _place_sources(rng, params, shape, fwhm, margin, min_separation):
    """Positions of stars and galaxies, with close pairs, optionally thinned for isolation."""
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

    def uniform(n):
        x = rng.uniform(margin - 0.5, width - 0.5 - margin, n)
        y = rng.uniform(margin - 0.5, height - 0.5 - margin, n)
        return x, y

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
    subkind = np.concatenate([np.where(paired, "pair", "single"), np.full(n_companions, "pair")])
    star_x, star_y = np.concatenate([star_x, comp_x]), np.concatenate([star_y, comp_y])
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


def _make_stars(rng, psf, params, x, y, subkind, background, noise, canvas):
    """Render stars (power-law peaks in σ units), saturation flags and bleed trails."""
    n = x.size
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    height, width = background.shape
    inside_r, inside_c = np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)
    sigma = noise[inside_r, inside_c]
    bg_local = background[inside_r, inside_c]
    saturation = params["saturation"]

    psf_k = _oversample(psf.fwhm)
    unit_peak = float(_render_psf_stamps(psf, np.zeros(1), np.zeros(1), 3, psf_k).max())
    low, high = params["star_peak_snr"]
    if high is None:
        high = 5.0 * (saturation - params["sky"]) / params["noise_median"]
    peak_snr = _power_law(rng, low, max(high, low), params["star_count_slope"], n)
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
                canvas.add_pixels(rows, cols, values)
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


# --------------------------------------------------------------------------------------
# Artifacts

_CR_SUBKINDS = ("single", "cluster", "worm", "track")
_HOT_SUBKINDS = ("single", "pair", "cluster", "column_segment")


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


def _draw_artifact_subkinds(rng, params, shape, kind, subkinds):
    """How many artifacts of ``kind`` a frame gets, and the index in ``subkinds`` of each.

    The count is Poisson with ``params[f"{kind}_density"]`` per megapixel unless
    ``params[f"n_{kind}s"]`` gives it; the subkinds follow ``params[f"{kind}_mix"]``.
    """
    height, width = shape
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
    canvas = _Canvas(background.shape)
    canvas.add_pixels(rows, cols, values)
    layer = canvas.image()
    if diffusion > 0.05 and n:
        kernel = _diffusion_kernel(diffusion)
        layer = ndimage.convolve1d(layer, kernel, axis=0, mode="constant")
        layer = ndimage.convolve1d(layer, kernel, axis=1, mode="constant")
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
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


def _make_cosmic_rays(rng, params, background, noise):
    """Cosmic-ray hits: singles, clusters, worms and tracks; amplitudes log-uniform in σ."""
    height, width = background.shape
    n, kind_index = _draw_artifact_subkinds(
        rng, params, background.shape, "cosmic_ray", _CR_SUBKINDS
    )
    x = rng.uniform(-0.5, width - 0.5, n)
    y = rng.uniform(-0.5, height - 0.5, n)
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
        track_len = _log_uniform(rng, 5.0, 150.0, tracks.size)
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


def _make_hot_pixels(rng, params, background, noise):
    """Hot pixels (singles, adjacent pairs, 3–5 px clusters) and warm column segments."""
    height, width = background.shape
    n, kind_index = _draw_artifact_subkinds(
        rng, params, background.shape, "hot_pixel", _HOT_SUBKINDS
    )
    ix = rng.integers(0, width, n)
    iy = rng.integers(0, height, n)
    sigma, amplitude = _draw_artifact_amplitudes(
        rng, params, "hot_pixel", background, noise, ix, iy
    )
    segment_amp = _log_uniform(rng, 3.0, 50.0, n) * sigma

    sizes = np.select(
        [kind_index == 0, kind_index == 1, kind_index == 2],
        [1, 2, rng.integers(3, 6, n)],
        default=rng.integers(3, 51, n),
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


def _make_satellites(rng, psf, params, background, noise):
    """Satellite trails: straight lines with the PSF's profile across, sometimes glinting."""
    height, width = background.shape
    layer = np.zeros(background.shape)
    rows_grid = np.arange(height, dtype=float)[:, None]
    cols_grid = np.arange(width, dtype=float)[None, :]
    diagonal = float(np.hypot(height, width))
    sigma_median = params["noise_median"]
    k = _oversample(psf.fwhm)
    sub = (np.arange(k) + 0.5) / k - 0.5
    parts = []
    for _ in range(int(params["n_satellites"])):
        angle = rng.uniform(0.0, np.pi)
        px, py = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        crossing = rng.uniform() < 0.6
        half_length = 2.0 * diagonal if crossing else diagonal * _log_uniform(rng, 0.025, 0.5)
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
        along = (cols_grid - x0) * ux + (rows_grid - y0) * uy
        across = np.abs((rows_grid - y0) * ux - (cols_grid - x0) * uy)
        band = (across <= reach + 1.0) & (along >= -reach - 1.0) & (along <= length + reach + 1)
        r, c = np.nonzero(band)
        values = trail.brightness(c.astype(float), r.astype(float))
        core = across[r, c] <= 3.0 * psf.fwhm + 1.0
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


def _make_bad_columns(rng, params, background, noise):
    """Bad columns/rows: full, to-the-edge or segment, offset by a few to many σ."""
    height, width = background.shape
    layer = np.zeros(background.shape)
    sigma_median = params["noise_median"]
    parts = []
    for _ in range(int(params["n_bad_columns"])):
        is_row = rng.uniform() < 0.15
        along_size, across_size = (width, height) if is_row else (height, width)
        line = int(rng.integers(0, across_size))
        thickness = 1 if rng.uniform() < 0.8 else 2
        extent = rng.choice(["full", "edge", "segment"], p=[0.4, 0.4, 0.2])
        start_point = int(rng.integers(0, along_size))
        if extent == "full":
            start, stop = 0, along_size
        elif extent == "edge":
            start, stop = (
                (0, start_point + 1) if rng.uniform() < 0.5 else (start_point, along_size)
            )
        else:
            seg = int(_log_uniform(rng, 10.0, max(along_size / 2.0, 11.0)))
            start, stop = start_point, min(along_size, start_point + seg)
        amplitude = _log_uniform(rng, 2.0, 200.0) * sigma_median
        if rng.uniform() < 0.25:  # a dead or low-sensitivity line can lose at most the sky
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


# --------------------------------------------------------------------------------------
# The frame


def simulate_frame(
    shape=(1024, 1024),
    fwhm=None,
    rng=None,
    real_density=None,
    *,
    n_stars=None,
    n_galaxies=None,
    galaxy_fraction=None,
    pair_fraction=None,
    star_peak_snr=(2.0, None),
    star_count_slope=None,
    galaxy_peak_snr=(2.0, 300.0),
    galaxy_count_slope=None,
    min_separation=0.0,
    margin=0.0,
    psf_model=None,
    moffat_beta=None,
    ellipticity=None,
    psf_angle=None,
    sky=None,
    sky_gradient=None,
    gain=None,
    read_noise=None,
    saturation=None,
    quantized=None,
    bleed=None,
    cosmic_ray_density=None,
    n_cosmic_rays=None,
    cosmic_ray_mix=None,
    cosmic_ray_snr=(5.0, None),
    charge_diffusion=None,
    hot_pixel_density=None,
    n_hot_pixels=None,
    hot_pixel_mix=None,
    hot_pixel_snr=(5.0, None),
    n_satellites=None,
    n_bad_columns=None,
    wing_level=0.02,
):
    """Draw one synthetic frame with stars, galaxies, artifacts, noise and full truth.

    Every option left at ``None`` is drawn per frame from the distribution given in
    brackets; amplitudes are in units of the local sky noise σ.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (rows, columns).
    fwhm : float, optional
        PSF FWHM (px) [:func:`draw_fwhm`: 40 % in 1.2–2.5, rest log-uniform 2.5–10].
    rng : numpy.random.Generator or int, optional
        Generator or seed; the seed actually used is ``params['seed']``.
    real_density : float, optional
        Stars + galaxies per megapixel [log-uniform 100–3000, capped at one per 30 FWHM²].
    n_stars, n_galaxies : int, optional
        Exact counts, overriding the density (before pair placement and thinning).
    galaxy_fraction : float, optional
        Share of galaxies among the sources [uniform 0.05–0.6].
    pair_fraction : float, optional
        Share of stars placed 0.5–3 FWHM from another star [uniform 0–0.25].
    star_peak_snr : (float, float or None)
        Range of star peaks in σ; ``None`` upper = 5× the saturation headroom.
    star_count_slope : float, optional
        γ of N(>peak) ∝ peak^-γ for stars [uniform 0.4–1.2].
    galaxy_peak_snr : (float, float)
        Range of (approximate) galaxy peaks in σ.
    galaxy_count_slope : float, optional
        γ for galaxies [uniform 0.6–1.4].
    min_separation : float
        If > 0, drop sources closer than this many FWHM to an earlier one (isolated sources).
    margin : float
        Keep source centres this many px inside the frame edges.
    psf_model : {'gaussian', 'moffat'}, optional
        [Moffat 70 %].
    moffat_beta : float, optional
        [uniform 1.8–6].
    ellipticity : float, optional
        PSF 1 − b/a [uniform 0–0.25].
    psf_angle : float, optional
        PSF major axis, degrees from +x [uniform 0–180].
    sky : float, optional
        Mean sky level, ADU [log-uniform 10–10⁴]; a gradient (0.5–30 % across the frame,
        sometimes curved) in 40 % of frames unless ``sky_gradient`` is given.
    sky_gradient : bool, optional
        Whether the sky has a gradient.
    gain : float, optional
        e-/ADU [log-uniform 0.5–5].
    read_noise : float, optional
        e- [log-uniform 2–20].
    saturation : float, optional
        ADU [min(65535, full well / gain), full well log-uniform 2·10⁴–3·10⁵ e-; at least
        sky + 200 σ].
    quantized : bool, optional
        Round the image to integer ADU [30 %].
    bleed : bool, optional
        Saturated stars bleed charge along their columns [50 %].
    cosmic_ray_density : float, optional
        Hits per megapixel [0 in 15 % of frames, else log-uniform 5–400].
    n_cosmic_rays, n_hot_pixels : int, optional
        Exact counts, overriding the densities.
    cosmic_ray_mix : dict, optional
        Weights of 'single', 'cluster', 'worm', 'track' [Dirichlet(2, 2, 2, 1.5)].
    cosmic_ray_snr, hot_pixel_snr : (float, float or None)
        Peak range in σ, log-uniform; ``None`` upper = saturation.
    charge_diffusion : float, optional
        σ (px) of the diffusion kernel of hits [uniform 0–0.35, at most 0.6 σ_PSF].
    hot_pixel_density : float, optional
        Hot-pixel defects per megapixel [0 in 20 % of frames, else log-uniform 5–300].
    hot_pixel_mix : dict, optional
        Weights of 'single', 'pair', 'cluster', 'column_segment' [Dirichlet(3, 2, 1.5, .5)].
    n_satellites : int, optional
        Satellite trails [0: 70 %, 1: 20 %, 2: 10 %], 3–500 σ, 60 % crossing the frame.
    n_bad_columns : int, optional
        Bad columns/rows [0 in 70 % of frames, else 1–4], ±2–200 σ (25 % negative).
    wing_level : float
        Stamps extend to where an object's profile falls below this many σ (galaxies:
        :data:`GALAXY_WING_FACTOR` times more).

    Returns
    -------
    SimulatedFrame
        ``truth`` has one row per object with columns x, y (0-based pixel centres), kind,
        subkind, flux, peak (ADU above sky, noise-free, unclipped), peak_sigma, saturated,
        length, angle (degrees from +x), width, x0, y0, x1, y1 (line endpoints), sersic_n,
        r_eff (px), axis_ratio; NaN where a column does not apply.

    Notes
    -----
    Per-object distributions (not options):

    * star pairs: companion 0.5–3 FWHM from its host, at any angle; saturated stars are
      clipped at ``saturation`` and, with ``bleed``, spill their excess charge up and down
      their columns (charge-conserving, in the sources layer);
    * galaxies: Sérsic n log-uniform 0.5–4, r_e log-uniform 0.3–3 FWHM (≥ 0.3 px), axis
      ratio uniform 0.2–1, any angle; truncated smoothly at ≤ :data:`MAX_SERSIC_RADIUS` r_e;
    * cosmic rays: single pixels; 2–4 px clusters; worms (persistent 8-neighbour random
      walks of 3–15 px); tracks (5–150 px log-uniform, any angle, width 0.5–1.5 px,
      anti-aliased, ±20 % deposit fluctuations), then the charge-diffusion kernel;
    * hot pixels: singles, adjacent pairs (70 % along columns), 3–5 px clusters, and warm
      column segments of 3–50 px at 3–50 σ; no diffusion;
    * satellites: the PSF's line-spread function across, fading over a PSF width at ends
      inside the frame, 30 % with periodic glints;
    * bad columns/rows (15 % rows): full, from a point to an edge, or a segment; 1–2 px
      wide; 5 % ripple along.
    """
    seed = _seed_from(rng)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(_N_STREAMS)]
    param_rng, star_rng, galaxy_rng, cr_rng, hot_rng, sat_rng, column_rng, noise_rng = streams
    shape = (int(shape[0]), int(shape[1]))
    given = {
        "fwhm": fwhm,
        "real_density": real_density,
        "galaxy_fraction": galaxy_fraction,
        "pair_fraction": pair_fraction,
        "star_count_slope": star_count_slope,
        "galaxy_count_slope": galaxy_count_slope,
        "psf_model": psf_model,
        "moffat_beta": moffat_beta,
        "ellipticity": ellipticity,
        "psf_angle": psf_angle,
        "sky": sky,
        "sky_gradient": sky_gradient,
        "gain": gain,
        "read_noise": read_noise,
        "quantized": quantized,
        "bleed": bleed,
        "cosmic_ray_density": cosmic_ray_density,
        "cosmic_ray_mix": cosmic_ray_mix,
        "charge_diffusion": charge_diffusion,
        "hot_pixel_density": hot_pixel_density,
        "hot_pixel_mix": hot_pixel_mix,
        "n_satellites": n_satellites,
        "n_bad_columns": n_bad_columns,
    }
    params = _draw_frame_params(param_rng, shape, given)
    params.update(
        seed=seed,
        n_stars=n_stars,
        n_galaxies=n_galaxies,
        n_cosmic_rays=n_cosmic_rays,
        n_hot_pixels=n_hot_pixels,
        star_peak_snr=tuple(star_peak_snr),
        galaxy_peak_snr=tuple(galaxy_peak_snr),
        cosmic_ray_snr=tuple(cosmic_ray_snr),
        hot_pixel_snr=tuple(hot_pixel_snr),
        min_separation=float(min_separation),
        margin=float(margin),
        wing_level=float(wing_level),
    )

    gain_, read_noise_adu = params["gain"], params["read_noise"] / params["gain"]
    background = _sky_model(params)
    noise_var = background / gain_ + read_noise_adu**2 + (1.0 / 12.0 if params["quantized"] else 0)
    noise = np.sqrt(noise_var)
    params["noise_median"] = float(np.median(noise))
    if saturation is None:
        saturation = min(65535.0, params["full_well"] / gain_)
        saturation = max(saturation, float(background.max()) + 200.0 * float(noise.max()))
    params["saturation"] = float(saturation)

    psf = _Psf(
        params["psf_model"],
        params["fwhm"],
        np.nan if params["moffat_beta"] is None else float(params["moffat_beta"]),
        float(params["ellipticity"]),
        np.deg2rad(params["psf_angle"]),
    )
    params["oversample"] = _oversample(psf.fwhm)

    (star_x, star_y, star_sub), (gal_x, gal_y) = _place_sources(
        star_rng, params, shape, psf.fwhm, params["margin"], params["min_separation"]
    )
    star_canvas, galaxy_canvas = _Canvas(shape), _Canvas(shape)
    stars = _make_stars(
        star_rng, psf, params, star_x, star_y, star_sub, background, noise, star_canvas
    )
    galaxies = _make_galaxies(
        galaxy_rng, psf, params, gal_x, gal_y, background, noise, galaxy_canvas
    )
    star_layer, galaxy_layer = star_canvas.image(), galaxy_canvas.image()
    sources = star_layer + galaxy_layer
    source_kind = _dominant_kind((star_layer, galaxy_layer), params["wing_level"] * noise)

    cr_layer, cr_truth = _make_cosmic_rays(cr_rng, params, background, noise)
    hot_layer, hot_truth = _make_hot_pixels(hot_rng, params, background, noise)
    sat_layer, sat_truth = _make_satellites(sat_rng, psf, params, background, noise)
    col_layer, col_truth = _make_bad_columns(column_rng, params, background, noise)
    artifact_layers = (cr_layer, hot_layer, sat_layer, col_layer)
    artifacts = cr_layer + hot_layer + sat_layer + col_layer
    artifact_kind = _dominant_kind(artifact_layers, params["wing_level"] * noise)

    mean = np.clip(background + sources + artifacts, 0.0, None)
    image = noise_rng.poisson(mean * gain_) / gain_
    image += noise_rng.normal(0.0, read_noise_adu, shape)
    if params["quantized"]:
        image = np.round(image)
    image = np.minimum(image, params["saturation"])

    truth = _truth_table([stars, galaxies, cr_truth, hot_truth, *sat_truth, *col_truth])
    params["n_stars"] = int(np.sum(truth["kind"] == "star"))
    params["n_galaxies"] = int(np.sum(truth["kind"] == "galaxy"))
    params["n_cosmic_rays"] = int(np.sum(truth["kind"] == "cosmic_ray"))
    params["n_hot_pixels"] = int(np.sum(truth["kind"] == "hot_pixel"))
    params["n_saturated_stars"] = int(np.sum(stars["saturated"]))
    params = {key: _plain(value) for key, value in params.items()}
    return SimulatedFrame(
        image=image.astype(np.float32),
        background=background.astype(np.float32),
        noise=noise.astype(np.float32),
        sources=sources.astype(np.float32),
        artifacts=artifacts.astype(np.float32),
        artifact_kind=artifact_kind,
        truth=truth,
        fwhm=psf.fwhm,
        params=params,
        source_kind=source_kind,
    )


def _plain(value):
    """Numpy scalars (also inside tuples and dicts) as Python ones, for JSON and repr."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dominant_kind(layers, floor):
    """uint8 map of 1 + index of the layer with the largest |value|; 0 where all ≤ floor."""
    best = np.array(floor, dtype=float, copy=True)
    best = np.broadcast_to(best, layers[0].shape).copy()
    kind = np.zeros(layers[0].shape, np.uint8)
    for code, layer in enumerate(layers, start=1):
        strength = np.abs(layer)
        stronger = strength > best
        kind[stronger] = code
        np.maximum(best, strength, out=best)
    return kind


# --------------------------------------------------------------------------------------
# Truth matching


def label_detections(
    frame, x, y, real_kinds=SOURCE_KINDS, *, radius=None, floor=2.0, dominance=2.0
):
    """Label detections at (x, y) from the frame's noise-free layers.

    In a disc of ``radius`` px (default ``max(1, 0.5·FWHM)``) around each detection, take
    the maximum S of the sources layer and A of the (positive) artifact layer, and the sky
    noise σ at the detection:

    * ``max(S, A) < floor·σ`` → bogus, kind 'noise' (a noise peak);
    * ``S ≥ dominance·A`` → real, kind of the source dominating where S peaks (star or
      galaxy); if that kind is not in ``real_kinds`` it is bogus with that kind;
    * ``A ≥ dominance·S`` → bogus, kind of the artifact dominating where A peaks;
    * otherwise ambiguous (label -1, do not train on it), kind of the brighter of the two.

    So an artifact sitting on a star is bogus when it outshines the star twice, unlike a
    3-px proximity match that calls it real. Positions off the frame or not finite get
    label -1 and kind 'outside'. The windows of all detections are gathered at once
    (N × disc pixels) rather than through a maximum filter of the whole frame, so that
    the kind can be read where each maximum lies; the source kind comes from the frame's
    ``source_kind`` map there (or, without one, from the nearest truth source).

    Parameters
    ----------
    frame : SimulatedFrame
    x, y : array_like
        0-based pixel coordinates of the detections.
    real_kinds : sequence of str
        Source kinds counted as real (e.g. ``('star',)`` to call galaxies bogus).
    radius : float, optional
        Window radius (px).
    floor, dominance : float
        The σ floor and the dominance ratio of the rule above.

    Returns
    -------
    label : ndarray of int8
        1 real, 0 bogus, -1 ambiguous.
    kind : ndarray of str
    """
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    height, width = frame.image.shape
    radius = max(1.0, 0.5 * frame.fwhm) if radius is None else float(radius)
    reach = int(np.floor(radius))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    disc = dx**2 + dy**2 <= radius**2 + 1e-9
    dx, dy = dx[disc], dy[disc]

    valid = np.isfinite(x) & np.isfinite(y)
    valid &= (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
    ix = np.rint(np.where(valid, x, 0.0)).astype(int)
    iy = np.rint(np.where(valid, y, 0.0)).astype(int)
    rows = np.clip(iy[:, None] + dy[None, :], 0, height - 1)
    cols = np.clip(ix[:, None] + dx[None, :], 0, width - 1)
    source_window = frame.sources[rows, cols]
    artifact_window = np.clip(frame.artifacts[rows, cols], 0.0, None)
    s_arg, a_arg = source_window.argmax(axis=1), artifact_window.argmax(axis=1)
    index = np.arange(x.size)
    s_max, a_max = source_window[index, s_arg], artifact_window[index, a_arg]
    sigma = frame.noise[iy, ix]

    artifact_names = np.array(("noise", *ARTIFACT_KINDS))
    a_kind_code = frame.artifact_kind[rows[index, a_arg], cols[index, a_arg]]
    artifact_kind = artifact_names[
        np.where(a_kind_code == 0, ARTIFACT_KINDS.index("noise") + 1, a_kind_code)
    ]
    source_kind = _source_kind_at(frame, rows[index, s_arg], cols[index, s_arg], ix, iy)

    is_noise = np.maximum(s_max, a_max) < floor * sigma
    is_source = ~is_noise & (s_max >= dominance * a_max)
    is_artifact = ~is_noise & ~is_source & (a_max >= dominance * s_max)
    is_real = is_source & np.isin(source_kind, list(real_kinds))

    label = np.full(x.size, -1, dtype=np.int8)
    label[is_noise | is_artifact | (is_source & ~is_real)] = 0
    label[is_real] = 1
    kind = np.where(s_max >= a_max, source_kind, artifact_kind).astype(object)
    kind[is_noise] = "noise"
    kind[is_source] = source_kind[is_source]
    kind[is_artifact] = artifact_kind[is_artifact]
    label[~valid] = -1
    kind[~valid] = "outside"
    return label, kind.astype(str)


def _source_kind_at(frame, rows, cols, x, y):
    """Kind of the source dominating given pixels (or of the nearest truth source)."""
    names = np.array(("", *SOURCE_KINDS))
    if frame.source_kind is not None:
        kind = names[frame.source_kind[rows, cols]]
    else:
        kind = np.full(rows.size, "", dtype=names.dtype)
    missing = kind == ""
    truth = frame.truth
    is_source = np.isin(np.asarray(truth["kind"], dtype=str), SOURCE_KINDS)
    if missing.any() and is_source.any():
        from scipy.spatial import cKDTree

        tx, ty = np.asarray(truth["x"])[is_source], np.asarray(truth["y"])[is_source]
        tree = cKDTree(np.column_stack([tx, ty]))
        _, nearest = tree.query(np.column_stack([x[missing], y[missing]]))
        kind[missing] = np.asarray(truth["kind"], dtype=str)[is_source][nearest]
    kind[kind == ""] = SOURCE_KINDS[0]
    return kind
