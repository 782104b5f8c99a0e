"""Place and paint fake objects into a real frame, away from its own objects.

Positions come from a jittered grid laid over the frame's free area (pixels far enough
from every object and bad pixel), a fresh grid each round, so injections never crowd
each other nor the frame's own objects. The objects are painted with the simulator's
painters (`rbvet.core.simulate.sources` and `rbvet.core.simulate.artifacts`), with the
frame's own PSF (`rbvet.core.inject.psf`) and amplitudes relative to the frame's noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.simulate.artifacts import (
    _make_bad_columns,
    _make_cosmic_rays,
    _make_hot_pixels,
    _make_satellites,
)
from rbvet.core.simulate.psf import _Canvas, _render_psf_stamps
from rbvet.core.simulate.sources import _make_galaxies, _make_stars
from rbvet.core.simulate.truth import _CR_SUBKINDS, _HOT_SUBKINDS, _truth_table

REAL_KINDS = ("star", "galaxy")
ARTIFACT_KINDS = ("cosmic_ray", "hot_pixel", "satellite", "bad_column")
"""Injected artifact kinds, as the simulator names them (satellites and bad columns are
short trails and column pieces here)."""
INJECTED_KINDS = REAL_KINDS + ARTIFACT_KINDS


DEFAULT_MIX = {
    "star": 0.4,
    "galaxy": 0.15,
    "cosmic_ray": 0.26,
    "hot_pixel": 0.17,
    "satellite": 0.01,
    "bad_column": 0.01,
}
"""Shares of the injected kinds; the artifacts follow a frame's own. Of the bogus
detections of 40 frames of the simulator (`scripts/compare_models.py`) of the kinds
injected here, 59 % were cosmic rays, 38 % hot pixels, 1.8 % trail pieces and 1.0 % column
pieces, and the 174 bogus objects labelled on the real frames of ``tests/data/real`` are
all hits and hot pixels. The injected artifacts are 58 % hits, 38 % hot pixels and 2.2 %
each trail and column pieces (10 of each in 1000 injections, for their own figures)."""


@dataclass(frozen=True)
class InjectionSettings:
    """What is injected, how much and where.

    Attributes
    ----------
    injections : int
        Objects requested over all rounds.
    rounds : int
        Rounds; each paints a fresh set of positions into a fresh copy of the frame.
    extra_rounds : int
        More rounds, at most this many, while fewer than ``injections`` have been placed
        (a small or crowded frame has room for only a few at a time): each finds room
        anew, so the figures rest on more objects. 0 runs only ``rounds``.
    mix : dict
        Share of each kind of `INJECTED_KINDS` (normalised). The artifacts follow their
        shares among a frame's bogus detections (cosmic rays and hot pixels nearly all of
        them, trail and column pieces 1-2 % each: see :data:`DEFAULT_MIX`), so that
        the pooled artifact rejection is that of a frame's own artifacts; each kind's own
        rejection is reported apart.
    star_snr : (float, float)
        Range of the injected stars' matched-filter S/N (log-uniform); galaxies span
        the same range of peak S/N in sigma.
    artifact_snr : (float, float or None)
        Peak range of hits and hot pixels in sigma; None: up to saturation.
    spacing : float or None
        Grid step (px) between injections; default ``max(32, 8 FWHM)``: a CNN stamp
        holds one injection.
    clearance : float or None
        Least distance (px) from an injection to a pixel of the frame's objects or a bad
        pixel; default ``max(5, 1.5 FWHM)`` (object pixels are already grown by 4 px).
    seed : int
    """

    injections: int = 1000
    rounds: int = 4
    extra_rounds: int = 36
    mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    star_snr: tuple = (3.0, 300.0)
    artifact_snr: tuple = (5.0, None)
    spacing: float | None = None
    clearance: float | None = None
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.mix) - set(INJECTED_KINDS)
        if unknown:
            raise ValueError(f"unknown injected kinds: {sorted(unknown)}")
        if self.rounds < 1 or self.injections < 1:
            raise ValueError("injections and rounds must be at least 1")
        if self.extra_rounds < 0:
            raise ValueError("extra rounds cannot be negative")

    def grid_step(self, fwhm):
        return float(self.spacing or max(32.0, 8.0 * fwhm))

    def min_clearance(self, fwhm):
        return float(self.clearance or max(5.0, 1.5 * fwhm))

    def facts(self):
        """Plain values for a result file."""
        return {**dataclasses.asdict(self), "star_snr": list(self.star_snr)}


def free_distance(frame, x, y):
    """Distance (px) of each pixel to the nearest pixel of an object or a bad pixel.

    Objects are the frame's source pixels (the residual above 2.5 sigma over 3x3 pixels,
    grown by 4 px, as the background estimate leaves out, with the sigma of a 3x3 sum
    measured on frames with correlated noise) and the catalog positions.
    """
    from scipy.ndimage import distance_transform_edt

    from rbvet.core.io.frame import _source_pixels

    frame.ensure_background()
    ignore = frame.background_mask()
    data = np.where(ignore, np.float32(0), frame.image)
    occupied = ignore | _source_pixels(
        data, frame.background, frame.noise, ignore, measured_box_noise=True
    )
    occupied |= ~np.isfinite(frame.noise)
    ny, nx = frame.shape
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    inside = np.isfinite(x) & np.isfinite(y)
    ix = np.clip(np.rint(x[inside]), 0, nx - 1).astype(np.int64)
    iy = np.clip(np.rint(y[inside]), 0, ny - 1).astype(np.int64)
    occupied[iy, ix] = True
    if not occupied.any():
        return np.full(frame.shape, np.hypot(*frame.shape), np.float32)
    return distance_transform_edt(~occupied).astype(np.float32)


def place_injections(distance, n, step, clearance, rng):
    """Up to ``n`` positions on a randomly shifted, jittered grid of pitch ``step``.

    A position is kept when it is at least ``clearance`` from an occupied pixel (see
    `free_distance`) and half a step inside the frame; fewer than ``n`` come back when
    the frame has no more room.

    Returns
    -------
    x, y : ndarray
    """
    ny, nx = distance.shape
    margin = 0.5 * step
    offset = rng.uniform(0.0, step, 2)
    xs = np.arange(margin + offset[0] % (0.5 * step), nx - margin, step)
    ys = np.arange(margin + offset[1] % (0.5 * step), ny - margin, step)
    gx, gy = (grid.ravel() for grid in np.meshgrid(xs, ys))
    jitter = 0.2 * step
    gx = gx + rng.uniform(-jitter, jitter, gx.size)
    gy = gy + rng.uniform(-jitter, jitter, gy.size)
    ix = np.clip(np.rint(gx), 0, nx - 1).astype(np.int64)
    iy = np.clip(np.rint(gy), 0, ny - 1).astype(np.int64)
    free = distance[iy, ix] >= clearance
    chosen = rng.permutation(np.flatnonzero(free))[:n]
    return gx[chosen], gy[chosen]


def star_snr_ratio(psf):
    """Matched-filter S/N over peak S/N of a star, ``sqrt(sum P**2) / max P``, and
    ``sum P**2`` (P the unit-flux PSF: a star's noise area is its inverse)."""
    zero = np.zeros(1)
    stamp = _render_psf_stamps(psf, zero, zero, 15, psf.oversample)[0]
    # The peak as `_make_stars` finds it (on a 7x7 stamp) turns peak S/N into flux.
    unit_peak = _render_psf_stamps(psf, zero, zero, 3, psf.oversample)[0].max()
    power = float((stamp**2).sum())
    return float(np.sqrt(power) / unit_peak), power


def _painter_params(frame, fwhm, settings, step):
    """The frame parameters the simulator's painters read, taken from the real frame."""
    saturation = frame.saturation
    if saturation is None or not np.isfinite(saturation):
        finite = frame.image[np.isfinite(frame.image)]
        saturation = float(finite.max()) if finite.size else 1e30
    return {
        "saturation": float(saturation),
        "sky": float(np.median(frame.background)),
        "noise_median": float(np.median(frame.noise[np.isfinite(frame.noise)])),
        "wing_level": 0.02,
        "bleed": False,
        "star_count_slope": 1e-3,  # ~log-uniform
        "galaxy_count_slope": 1e-3,
        "cosmic_ray_snr": tuple(settings.artifact_snr),
        "hot_pixel_snr": tuple(settings.artifact_snr),
        "cosmic_ray_mix": dict(zip(_CR_SUBKINDS, (0.3, 0.25, 0.3, 0.15), strict=True)),
        "hot_pixel_mix": dict(zip(_HOT_SUBKINDS, (0.4, 0.25, 0.2, 0.15), strict=True)),
        "charge_diffusion": float(min(0.2, 0.25 * fwhm / 2.3548)),
        "max_artifact_length": 0.6 * step,
    }


def photon_variance_per_adu(frame):
    """Variance (ADU^2) an injected ADU adds: 1/gain from the header's GAIN, else from the
    sky (noise^2 / sky, when the noise is about the sky's photon noise), else 0."""
    gain = frame.header.get("GAIN") if frame.header is not None else None
    try:
        gain = float(gain)
    except (TypeError, ValueError):
        gain = None
    if gain and gain > 0:
        return 1.0 / gain, "header GAIN"
    sky = float(np.median(frame.background))
    noise2 = float(np.median(frame.noise[np.isfinite(frame.noise)])) ** 2
    if sky > 4.0 * noise2 > 0:  # a sky-dominated, not sky-subtracted, frame
        return noise2 / sky, "sky"
    return 0.0, "none"


@dataclass
class InjectedRound:
    """One round: the injected frame's image and the truth about what was put in."""

    image: np.ndarray
    truth: object  # astropy Table
    requested: int


def paint_round(frame, frame_psf, x, y, kinds, settings, rng, variance_per_adu=0.0):
    """Paint one round of injections into a copy of the frame's image.

    Parameters
    ----------
    frame : Frame
        With background and noise maps.
    frame_psf : rbvet.core.inject.psf.FramePsf
    x, y : ndarray
        Positions (see `place_injections`).
    kinds : ndarray of str
        Kind of each position, one of `INJECTED_KINDS`.
    settings : InjectionSettings
    rng : numpy.random.Generator
    variance_per_adu : float
        Photon-noise variance each injected ADU adds (see `photon_variance_per_adu`).

    Returns
    -------
    image : ndarray float32
        The frame's image with the injections, clipped at saturation.
    truth : astropy.table.Table
        The simulator's truth columns plus ``snr`` (matched-filter S/N of stars and
        galaxies, NaN for artifacts).
    """
    fwhm = frame_psf.fwhm
    psf = frame_psf.psf
    params = _painter_params(frame, fwhm, settings, settings.grid_step(fwhm))
    ratio, psf_power = star_snr_ratio(psf)
    low, high = settings.star_snr
    params["star_peak_snr"] = params["galaxy_peak_snr"] = (low / ratio, high / ratio)
    background, noise = frame.background, frame.noise
    canvas = _Canvas(frame.shape)

    def where(kind):
        chosen = kinds == kind
        return x[chosen], y[chosen]

    sx, sy = where("star")
    # Bleed of an injected star stays with it, as a star's own light (bright_rng=None:
    # no extra bright stars are drawn here).
    stars = _make_stars(
        rng, psf, params, sx, sy, np.full(sx.size, "single"), background, noise, canvas, canvas
    )
    gx, gy = where("galaxy")
    galaxies = _make_galaxies(rng, psf, params, gx, gy, background, noise, canvas)
    layer = canvas.image()
    cr_layer, cr_truth = _make_cosmic_rays(rng, params, background, noise, where("cosmic_ray"))
    hot_layer, hot_truth = _make_hot_pixels(rng, params, background, noise, where("hot_pixel"))
    trail_layer, trail_truth = _make_satellites(
        rng, frame_psf.line_psf, params, background, noise, where("satellite")
    )
    column_layer, column_truth = _make_bad_columns(
        rng, params, background, noise, where("bad_column")
    )
    layer += cr_layer + hot_layer + trail_layer + column_layer
    truth = _truth_table([stars, galaxies, cr_truth, hot_truth, *trail_truth, *column_truth])

    ny, nx = frame.shape
    tx = np.clip(np.rint(np.asarray(truth["x"])), 0, nx - 1).astype(np.int64)
    ty = np.clip(np.rint(np.asarray(truth["y"])), 0, ny - 1).astype(np.int64)
    sigma = frame.noise[ty, tx].astype(np.float64)
    flux = np.asarray(truth["flux"], np.float64)
    r_eff = np.nan_to_num(np.asarray(truth["r_eff"], np.float64))
    noise_area = 1.0 / psf_power + 4.0 * np.pi * (r_eff / 1.1774) ** 2
    is_source = np.isin(np.asarray(truth["kind"]), REAL_KINDS)
    truth["snr"] = np.where(is_source, flux / (sigma * np.sqrt(noise_area)), np.nan)

    image = frame.image.astype(np.float64) + layer
    if variance_per_adu > 0:
        image += rng.standard_normal(frame.shape) * np.sqrt(
            np.clip(layer, 0.0, None) * variance_per_adu
        )
    image = np.minimum(image, params["saturation"]).astype(np.float32)
    return image, truth


def injected_frame(frame, image, saturation):
    """A copy of ``frame`` holding ``image``: same mask, background and noise maps."""
    saturated = image >= saturation
    if frame.saturated is not None:
        saturated |= frame.saturated
    return dataclasses.replace(frame, image=image, saturated=saturated)


def draw_kinds(settings, n, rng):
    """The kind of each of ``n`` injections, following ``settings.mix``."""
    names = [kind for kind in INJECTED_KINDS if settings.mix.get(kind, 0) > 0]
    weights = np.array([settings.mix[kind] for kind in names], dtype=np.float64)
    return np.asarray(names, dtype=object)[rng.choice(len(names), n, p=weights / weights.sum())]
