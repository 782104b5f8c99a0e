"""What a simulated frame is drawn from: one `SimulationSettings` and the per-frame draws.

Everything is drawn from broad per-frame distributions, and every artifact amplitude is
drawn in units of the frame's noise σ, so a classifier trained here learns shapes rather
than one simulator's absolute numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.simulate.psf import _FWHM_PER_SIGMA
from rbvet.core.simulate.truth import _CR_SUBKINDS, _HOT_SUBKINDS

MEGAPIXEL = 1.0e6
SHARP_FWHM = (1.2, 2.5)
"""FWHM range (px) of the undersampled frames, where stars and hits look most alike."""
MAX_FWHM = 10.0
SHARP_SHARE = 0.4
"""Share of :func:`draw_fwhm` draws that fall in :data:`SHARP_FWHM`."""


def _log_uniform(rng, low, high, size=None):
    """Draw from a log-uniform distribution on [low, high]."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


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


@dataclass(frozen=True)
class SimulationSettings:
    """Every option of :func:`~rbvet.core.simulate.frame.simulate_frame` but shape and seed.

    An option left at ``None`` is drawn per frame from the distribution given in brackets
    (see `_draw_frame_params`); amplitudes are in units of the local sky noise σ. Give
    settings to `simulate_frame` as one object, as keyword overrides, or both
    (``simulate_frame(shape, settings=base, fwhm=2.0)``); `dataclasses.replace` makes
    variants.
    """

    fwhm: float | None = None
    """PSF FWHM (px) [:func:`draw_fwhm`: 40 % in 1.2–2.5, rest log-uniform 2.5–10]."""
    real_density: float | None = None
    """Stars + galaxies per megapixel [log-uniform 100–3000, capped at one per 30 FWHM²]."""
    n_stars: int | None = None
    """Exact number of stars, overriding the density (before pair placement and thinning)."""
    n_galaxies: int | None = None
    """Exact number of galaxies, overriding the density."""
    galaxy_fraction: float | None = None
    """Share of galaxies among the sources [uniform 0.05–0.6]."""
    pair_fraction: float | None = None
    """Share of stars placed 0.5–3 FWHM from another star [uniform 0–0.25]."""
    star_peak_snr: tuple = (2.0, None)
    """Range of star peaks in σ; ``None`` upper = 5× the saturation headroom."""
    star_count_slope: float | None = None
    """γ of N(>peak) ∝ peak^-γ for stars [uniform 0.4–1.2]."""
    galaxy_peak_snr: tuple = (2.0, 300.0)
    """Range of (approximate) galaxy peaks in σ."""
    galaxy_count_slope: float | None = None
    """γ of N(>peak) ∝ peak^-γ for galaxies [uniform 0.6–1.4]."""
    min_separation: float = 0.0
    """If > 0, drop sources closer than this many FWHM to an earlier one (isolated)."""
    margin: float = 0.0
    """Keep source centres this many px inside the frame edges."""
    psf_model: str | None = None
    """'gaussian' or 'moffat' [Moffat 70 %]."""
    moffat_beta: float | None = None
    """Moffat β [uniform 1.8–6]."""
    ellipticity: float | None = None
    """PSF 1 − b/a [uniform 0–0.25]."""
    psf_angle: float | None = None
    """PSF major axis, degrees from +x [uniform 0–180]."""
    sky: float | None = None
    """Mean sky level, ADU [log-uniform 10–10⁴]."""
    sky_gradient: bool | None = None
    """Whether the sky has a gradient (0.5–30 % across the frame, sometimes curved) [40 %]."""
    gain: float | None = None
    """e-/ADU [log-uniform 0.5–5]."""
    read_noise: float | None = None
    """Read noise, e- [log-uniform 2–20]."""
    saturation: float | None = None
    """ADU [min(65535, full well / gain), full well log-uniform 2·10⁴–3·10⁵ e-; at least
    sky + 200 σ]."""
    quantized: bool | None = None
    """Round the image to integer ADU [30 %]."""
    bleed: bool | None = None
    """Saturated stars bleed charge along their columns [50 %]."""
    cosmic_ray_density: float | None = None
    """Cosmic-ray hits per megapixel [0 in 15 % of frames, else log-uniform 5–400]."""
    n_cosmic_rays: int | None = None
    """Exact number of hits, overriding the density."""
    cosmic_ray_mix: dict | None = None
    """Weights of 'single', 'cluster', 'worm', 'track' [Dirichlet(2, 2, 2, 1.5)]."""
    cosmic_ray_snr: tuple = (5.0, None)
    """Peak range of hits in σ, log-uniform; ``None`` upper = saturation."""
    charge_diffusion: float | None = None
    """σ (px) of the diffusion kernel of hits [uniform 0–0.35, at most 0.6 σ_PSF]."""
    hot_pixel_density: float | None = None
    """Hot-pixel defects per megapixel [0 in 20 % of frames, else log-uniform 5–300]."""
    n_hot_pixels: int | None = None
    """Exact number of hot-pixel defects, overriding the density."""
    hot_pixel_mix: dict | None = None
    """Weights of 'single', 'pair', 'cluster', 'column_segment' [Dirichlet(3, 2, 1.5, .5)]."""
    hot_pixel_snr: tuple = (5.0, None)
    """Peak range of hot pixels in σ, log-uniform; ``None`` upper = saturation."""
    n_satellites: int | None = None
    """Satellite trails [0: 50 %, 1: 30 %, 2: 20 %], 3–500 σ, 60 % crossing the frame."""
    n_bad_columns: int | None = None
    """Bad columns/rows [0 in 70 % of frames, else 1–4], ±2–200 σ (25 % negative)."""
    group_fraction: float | None = None
    """Share of stars in chains and small groups of 3–6 stars, each 0.7–3 FWHM from the
    previous one (real-on-real blends) [0 in 30 % of frames, else uniform 0–0.3]."""
    cosmic_ray_on_star_fraction: float | None = None
    """Share of cosmic-ray hits placed touching or overlapping a star, 0–2 FWHM from its
    centre [0 in 30 % of frames, else uniform 0–0.3]. This over-represents such hits for
    training; 0 gives hits anywhere, as on a detector."""
    bright_star_fraction: float | None = None
    """Share of stars 0.5–20× as bright as saturation allows (log-uniform peak), most of
    them saturated with flat tops (and bleeding, with ``bleed``) [0 in 40 % of frames,
    else uniform 0–0.03]."""
    n_edge_bands: int | None = None
    """Unexposed bands (overscan or prescan) along frame edges, 2–60 px wide, their level
    ±3–300 σ from the sky: a step at the band's inner side [0 in 70 % of frames, else 1–2]."""
    tracking_length: float | None = 0.0
    """Smear of every source (tracking, wind shake), px, along one angle per frame; 0 is
    off, ``None`` draws it [0 in 60 % of frames, else log-uniform 0.3–1.5 FWHM]. This and
    the five options after it are drawn in `rbvet.core.simulate.optics`, from streams of
    their own (`OPTICS_DRAWN` draws all six)."""
    coma: float | None = 0.0
    """Share of a star's flux in a tail pointing away from the frame centre, at the
    corner (∝ radius²): an asymmetric PSF growing towards the field edge; 0 is off,
    ``None`` draws it [0 in 50 %, else uniform 0.1–0.5]."""
    diffraction_spikes: bool | None = False
    """Four spikes on bright stars (where a spike starts at ≥ 3 σ), kind 'spike' [drawn:
    40 %]."""
    n_short_trails: int | None = 0
    """Trails 3 FWHM–40 px long, kind 'satellite' subkind 'short' [drawn: 0 in 40 %,
    else 1–20]."""
    nebulosity: float | None = 0.0
    """Structured sky (lognormal clouds), σ at its 99th percentile [drawn: 0 in 70 %,
    else log-uniform 2–50]."""
    fringing: float | None = 0.0
    """Amplitude (σ) of wavy fringe bands in the sky [drawn: 0 in 80 %, else uniform
    0.5–4]."""
    wing_level: float = 0.02
    """Stamps extend to where an object's profile falls below this many σ (galaxies:
    :data:`~rbvet.core.simulate.sources.GALAXY_WING_FACTOR` times more)."""


@dataclass(frozen=True)
class Exposure:
    """One exposure of a field: its own random draws and where it points.

    Given to :func:`~rbvet.core.simulate.frame.simulate_frame` with the field's seed, it
    keeps the field's sky (frame parameters, stars, galaxies) and bad columns (fixed on the
    detector) but draws its own cosmic rays, hot pixels, satellite trails and noise, and
    moves the sources by its pointing: a reference-frame pixel ``p`` lands on
    ``R(rotation) (p - c) + c + shift``, ``c`` the frame centre.
    """

    seed: int
    """Seed of the exposure's own streams."""
    shift: tuple = (0.0, 0.0)
    """Pointing offset (x, y) in pixels."""
    rotation: float = 0.0
    """Rotation about the frame centre, degrees (counter-clockwise from +x towards +y)."""

    def streams(self, n):
        """``n`` independent generators of this exposure's own draws."""
        return [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(n)]

    def to_pixels(self, x, y, shape):
        """Reference-frame pixel positions as this exposure's pixel positions."""
        centre_y, centre_x = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
        angle = np.deg2rad(self.rotation)
        cos, sin = np.cos(angle), np.sin(angle)
        dx, dy = np.asarray(x, float) - centre_x, np.asarray(y, float) - centre_y
        return (
            cos * dx - sin * dy + centre_x + self.shift[0],
            sin * dx + cos * dy + centre_y + self.shift[1],
        )

    def record(self):
        """The exposure as plain values, for a frame's ``params``."""
        shift = (float(self.shift[0]), float(self.shift[1]))
        return {"seed": int(self.seed), "shift": shift, "rotation": float(self.rotation)}


def _draw_frame_params(rng, shape, settings):
    """Draw every frame-level parameter (in a fixed order), then apply the given settings.

    All are drawn whatever is given, so a setting changes nothing else about the frame.
    """
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
        # Drawn last, so frames drawn before these options existed keep all other draws.
        "group_fraction": 0.0 if rng.uniform() < 0.3 else rng.uniform(0.0, 0.3),
        "cosmic_ray_on_star_fraction": 0.0 if rng.uniform() < 0.3 else rng.uniform(0.0, 0.3),
        "n_edge_bands": 0 if rng.uniform() < 0.7 else int(rng.integers(1, 3)),
        "bright_star_fraction": 0.0 if rng.uniform() < 0.4 else rng.uniform(0.0, 0.03),
    }
    given = {key: getattr(settings, key, None) for key in drawn}
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
