"""One simulated frame: sky, sources, artifacts, noise and saturation, with full truth.

One call of :func:`simulate_frame` draws a frame: sky (with optional gradients), stars and
galaxies seen through a Gaussian or Moffat PSF (`rbvet.core.simulate.sources`), and the
artifacts a detector shows (`rbvet.core.simulate.artifacts`), then Poisson and read noise,
saturation and (optionally) column bleeding. What it is drawn from is one
`SimulationSettings` (`rbvet.core.simulate.settings`). The sources, each artifact kind and
the noise draw from random streams of their own, so turning one artifact kind off leaves
everything else in the frame as it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from rbvet.core.simulate import optics
from rbvet.core.simulate.artifacts import (
    _make_bad_columns,
    _make_cosmic_rays,
    _make_edge_bands,
    _make_hot_pixels,
    _make_satellites,
)
from rbvet.core.simulate.psf import _Canvas, _oversample, _Psf
from rbvet.core.simulate.settings import SimulationSettings, _draw_frame_params
from rbvet.core.simulate.sources import _make_galaxies, _make_stars, _place_sources
from rbvet.core.simulate.truth import SOURCE_KINDS, _dominant_kind, _truth_table

_N_STREAMS = 12


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
        Noise-free stars + galaxies layer (ADU above sky), unclipped; zero in edge bands.
    artifacts : ndarray, float32
        Noise-free artifact layer (ADU above sky), with the bleed trails of saturated
        stars; bad columns and edge bands may be negative.
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


def _seed_from(rng):
    """Turn ``rng`` (Generator, int, SeedSequence or None) into a recordable int seed."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, np.random.SeedSequence):
        return int(rng.generate_state(2, np.uint64)[0] >> np.uint64(1))
    if rng is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))
    return int(rng)


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


def simulate_frame(
    shape=(1024, 1024), fwhm=None, rng=None, *, settings=None, exposure=None, **overrides
):
    """Draw one synthetic frame with stars, galaxies, artifacts, noise and full truth.

    Every setting left at ``None`` is drawn per frame from the distribution given in
    `SimulationSettings`; amplitudes are in units of the local sky noise σ.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (rows, columns).
    fwhm : float, optional
        PSF FWHM (px); overrides ``settings.fwhm``.
    rng : numpy.random.Generator or int, optional
        Generator or seed; the seed actually used is ``params['seed']``.
    settings : SimulationSettings, optional
        The options; default ``SimulationSettings()`` (everything drawn).
    exposure : Exposure, optional
        One exposure of the field ``rng`` seeds: the same sky, seen with the exposure's
        pointing, with its own cosmic rays, hot pixels, satellites and noise (see
        `Exposure`); objects whose centres it moves off the frame leave the truth.
    **overrides
        Any `SimulationSettings` field, replacing the one in ``settings``
        (e.g. ``n_satellites=0``); an unknown name is a `TypeError`.

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

    * star pairs: companion 0.5–3 FWHM from its host, at any angle; chains and groups
      (``group_fraction``, subkind 'group'): 3–6 stars, each 0.7–3 FWHM from the previous
      one, half of them chains turning ≤ 40° a step, added on top of the other stars;
    * bright stars (``bright_star_fraction``): peaks 0.5–20× the saturation headroom;
    * saturated stars have flat tops at ``saturation`` and, with ``bleed``, spill their
      excess charge up and down their columns (charge-conserving); the trails are in the
      artifact layer (kind 'bleed'), so detections on them are bogus, the star real;
    * galaxies: Sérsic n log-uniform 0.5–4, r_e log-uniform 0.3–3 FWHM (≥ 0.3 px), axis
      ratio uniform 0.2–1, any angle; truncated smoothly at ≤ `MAX_SERSIC_RADIUS` r_e;
    * cosmic rays: single pixels; 2–4 px clusters; worms (persistent 8-neighbour random
      walks of 3–15 px); tracks (5–150 px log-uniform, any angle, width 0.5–1.5 px,
      anti-aliased, ±20 % deposit fluctuations), then the charge-diffusion kernel; a share
      ``cosmic_ray_on_star_fraction`` of the hits is centred 0–2 FWHM from a star (on it or
      touching it), labelled by what a detection is centred on;
    * hot pixels: singles, adjacent pairs (70 % along columns), 3–5 px clusters, and warm
      column segments of 3–50 px at 3–50 σ; no diffusion;
    * satellites: the PSF's line-spread function across, fading over a PSF width at ends
      inside the frame, 30 % with periodic glints;
    * bad columns/rows (15 % rows): full, from a point to an edge, or a segment; 1–2 px
      wide; 5 % ripple along;
    * edge bands (``n_edge_bands``): unexposed overscan/prescan strips 2–60 px wide along
      a random side, at the sky ± 3–300 σ (70 % below), holding no sources or other
      artifacts (their truth rows are dropped); one truth row each, kind 'edge'.

    Every option added after the first version (groups, hits on stars, edge bands,
    bright stars) draws from a random stream of its own, so with it off a frame is the
    same as before (but for the bleed trails, now in the artifact layer).
    """
    settings = SimulationSettings() if settings is None else settings
    if fwhm is not None:
        overrides["fwhm"] = fwhm
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    seed = _seed_from(rng)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(_N_STREAMS)]
    param_rng, star_rng, galaxy_rng, cr_rng, hot_rng, sat_rng, column_rng, noise_rng = streams[:8]
    # Streams of the options added later, so a frame's other content is as it was before.
    group_rng, on_star_rng, edge_rng, bright_rng = streams[8:]
    if exposure is not None:  # the exposure's own draws; the sky and the detector stay
        cr_rng, hot_rng, sat_rng, noise_rng, on_star_rng = exposure.streams(5)
    shape = (int(shape[0]), int(shape[1]))
    params = _draw_frame_params(param_rng, shape, settings)
    optics_rngs = optics.optics_streams(seed)  # tracking, coma, spikes, trails, sky
    if exposure is not None:  # short trails cross one exposure, not the field
        optics_rngs[2] = exposure.streams(6)[5]
    params.update(optics.draw_optics_params(optics_rngs[0], settings, params["fwhm"]))
    params.update(
        seed=seed,
        n_stars=settings.n_stars,
        n_galaxies=settings.n_galaxies,
        n_cosmic_rays=settings.n_cosmic_rays,
        n_hot_pixels=settings.n_hot_pixels,
        star_peak_snr=tuple(settings.star_peak_snr),
        galaxy_peak_snr=tuple(settings.galaxy_peak_snr),
        cosmic_ray_snr=tuple(settings.cosmic_ray_snr),
        hot_pixel_snr=tuple(settings.hot_pixel_snr),
        min_separation=float(settings.min_separation),
        margin=float(settings.margin),
        wing_level=float(settings.wing_level),
    )
    if exposure is not None:
        params["exposure"] = exposure.record()

    gain_, read_noise_adu = params["gain"], params["read_noise"] / params["gain"]
    background = optics.structured_sky(optics_rngs[1], params, _sky_model(params))
    noise_var = background / gain_ + read_noise_adu**2 + (1.0 / 12.0 if params["quantized"] else 0)
    noise = np.sqrt(noise_var)
    params["noise_median"] = float(np.median(noise))
    saturation = settings.saturation
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
        star_rng,
        params,
        shape,
        psf.fwhm,
        params["margin"],
        params["min_separation"],
        group_rng,
    )
    if exposure is not None:
        star_x, star_y = exposure.to_pixels(star_x, star_y, shape)
        gal_x, gal_y = exposure.to_pixels(gal_x, gal_y, shape)
    star_canvas, galaxy_canvas, bleed_canvas = _Canvas(shape), _Canvas(shape), _Canvas(shape)
    stars = _make_stars(
        star_rng,
        psf,
        params,
        star_x,
        star_y,
        star_sub,
        background,
        noise,
        star_canvas,
        bleed_canvas,
        bright_rng,
    )
    galaxies = _make_galaxies(
        galaxy_rng, psf, params, gal_x, gal_y, background, noise, galaxy_canvas
    )
    optics.add_coma(psf, params, stars, noise, star_canvas)
    star_layer, galaxy_layer = optics.smear(params, star_canvas.image(), galaxy_canvas.image())

    cr_layer, cr_truth = _make_cosmic_rays(
        cr_rng, params, background, noise, on_stars=(on_star_rng, star_x, star_y)
    )
    hot_layer, hot_truth = _make_hot_pixels(hot_rng, params, background, noise)
    sat_layer, sat_truth = _make_satellites(sat_rng, psf, params, background, noise)
    trail_layer, trail_truth = optics.short_trails(optics_rngs[2], psf, params, background, noise)
    sat_layer, sat_truth = sat_layer + trail_layer, sat_truth + trail_truth
    spike_layer, spike_truth = optics.diffraction_spikes(psf, params, stars, noise)
    col_layer, col_truth = _make_bad_columns(column_rng, params, background, noise)
    edge_layer, unexposed, edge_truth = _make_edge_bands(edge_rng, params, background, noise)
    bleed_layer = bleed_canvas.image()
    source_layers = (star_layer, galaxy_layer)
    artifact_layers = (cr_layer, hot_layer, sat_layer, col_layer, bleed_layer)
    if unexposed.any():
        for layer in (*source_layers, *artifact_layers, spike_layer):
            layer[unexposed] = 0.0  # nothing reaches overscan or prescan pixels
    artifact_layers += (edge_layer, spike_layer)
    floor = np.multiply(noise, params["wing_level"], dtype=np.float32)
    sources = _layer_sum(source_layers)
    source_kind = _dominant_kind(source_layers, floor)
    artifacts = _layer_sum(artifact_layers)
    artifact_kind = _dominant_kind(artifact_layers, floor)

    mean = np.add(background, sources, dtype=np.float32)
    mean += artifacts
    np.clip(mean, 0.0, None, out=mean)
    image = _noisy_image(noise_rng, mean, gain_, read_noise_adu)
    if params["quantized"]:
        np.round(image, out=image)
    np.minimum(image, np.float32(params["saturation"]), out=image)

    stars, galaxies, cr_truth, hot_truth = (
        _exposed_rows(part, unexposed) for part in (stars, galaxies, cr_truth, hot_truth)
    )
    truth = _truth_table(
        [stars, galaxies, cr_truth, hot_truth, *sat_truth, *col_truth, *edge_truth, *spike_truth]
    )
    if exposure is not None:
        x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
        height, width = shape
        inside = (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
        truth = truth[inside | ~np.isin(truth["kind"], SOURCE_KINDS)]
    params["n_stars"] = int(np.sum(truth["kind"] == "star"))
    params["n_galaxies"] = int(np.sum(truth["kind"] == "galaxy"))
    params["n_cosmic_rays"] = int(np.sum(truth["kind"] == "cosmic_ray"))
    params["n_hot_pixels"] = int(np.sum(truth["kind"] == "hot_pixel"))
    params["n_saturated_stars"] = int(np.sum(stars["saturated"]))
    params = {key: _plain(value) for key, value in params.items()}
    return SimulatedFrame(
        image=image,
        background=background.astype(np.float32),
        noise=noise.astype(np.float32),
        sources=sources,
        artifacts=artifacts,
        artifact_kind=artifact_kind,
        truth=truth,
        fwhm=psf.fwhm,
        params=params,
        source_kind=source_kind,
    )


POISSON_MAX_COUNTS = 100.0
"""Pixels expecting more photo-electrons than this get photon noise from a normal draw
with the Poisson skew (see `_noisy_image`)."""


def _noisy_image(rng, mean, gain, read_noise):
    """``mean`` (ADU, ≥ 0) seen with photon and read noise, as float32.

    Photon noise is Poisson in electrons. Where a pixel expects more than
    `POISSON_MAX_COUNTS` electrons, photon and read noise together are drawn from one
    single-precision standard normal ``z`` as ``mean + σ z + γσ (z² − 1) / 6`` (the
    Cornish-Fisher expansion), with σ² = mean / gain + read_noise² and γ their skewness:
    the mean, the variance and the skew of the Poisson draw, so the tails that make noise
    peaks stay as they were, at several times less cost than a Poisson draw of every
    pixel (the largest cost of a frame). Fainter pixels (a dark sky) keep the Poisson
    draw, plus the read noise from the same normal draw.
    """
    mean = np.asarray(mean, np.float32)
    z = rng.standard_normal(mean.shape, dtype=np.float32)
    variance = np.multiply(mean, np.float32(1.0 / gain))
    variance += np.float32(read_noise**2)
    # γσ/6: the photon noise's third moment, mean / gain², over 6 σ².
    skew = np.multiply(mean, np.float32(1.0 / (6.0 * gain**2)))
    skew /= variance
    sigma = np.sqrt(variance, out=variance)
    low = mean < np.float32(POISSON_MAX_COUNTS / gain)
    if low.any():
        sigma[low] = read_noise
        skew[low] = 0.0
    image = z * z
    image -= 1.0
    image *= skew
    z *= sigma
    image += z
    image += mean
    if low.any():
        faint = mean[low]
        image[low] += rng.poisson(faint.astype(np.float64) * gain) / gain - faint
    return image


def _layer_sum(layers):
    """Sum of full-frame layers in one float32 array (no intermediate sums)."""
    total = np.array(layers[0], dtype=np.float32)
    for layer in layers[1:]:
        np.add(total, layer, out=total, casting="same_kind")
    return total


def _exposed_rows(rows, unexposed):
    """The truth rows whose centre pixel is not in an unexposed band (all if none)."""
    if not unexposed.any() or not len(rows["x"]):
        return rows
    height, width = unexposed.shape
    ix = np.clip(np.rint(rows["x"]).astype(int), 0, width - 1)
    iy = np.clip(np.rint(rows["y"]).astype(int), 0, height - 1)
    keep = ~unexposed[iy, ix]
    return {name: np.asarray(values)[keep] for name, values in rows.items()}


def _plain(value):
    """Numpy scalars (also inside tuples and dicts) as Python ones, for JSON and repr."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value
