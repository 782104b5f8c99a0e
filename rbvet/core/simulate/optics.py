"""What real frames hold that the rest of the simulator does not draw: optics and sky.

Six options of `SimulationSettings`, all off by default:

* ``tracking_length``: every source smeared along a line (tracking or wind shake), an
  elongated PSF the same over the frame;
* ``coma``: stars grow a tail pointing away from the frame centre, stronger towards the
  edge (coma and field-edge aberrations): an asymmetric, field-dependent PSF;
* ``diffraction_spikes``: bright stars get four spikes (the spider of the secondary
  mirror); a detection on a spike is bogus (kind 'spike'), the star itself real;
* ``n_short_trails``: short trails (3 FWHM to 40 px), satellites or aircraft crossing
  only a small part of the frame, bogus (kind 'satellite', subkind 'short');
* ``nebulosity``: structured sky (lognormal clouds with a power-law spectrum), part of
  the sky, not of any object: `label_detections` calls a detection on a knot of it a
  noise peak (bogus). Knots look like faint galaxies, and a fine-tuning mix with this
  option lost galaxy recall (99.7 % to 90.7 %), so leave it out of training mixes
  (``rbvet train --optics`` with the other names) until such detections get a label of
  their own;
* ``fringing``: wavy interference bands in the sky.

Each option left at ``None`` is drawn per frame (see `draw_optics_params`); `OPTICS_DRAWN`
draws them all. Every draw comes from random streams of this module's own (spawn keys
`_STREAM_KEY` on), so with the options off a frame is pixel-identical to one of a
simulator without this module, and turning one option on changes nothing else.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

from rbvet.core.simulate.artifacts import _make_satellites
from rbvet.core.simulate.psf import _batches, _render_psf_stamps
from rbvet.core.simulate.settings import _log_uniform
from rbvet.core.simulate.truth import _truth_rows

OPTICS_OPTIONS = (
    "tracking_length",
    "coma",
    "diffraction_spikes",
    "n_short_trails",
    "nebulosity",
    "fringing",
)
"""The `SimulationSettings` fields this module draws."""
OPTICS_DRAWN = dict.fromkeys(OPTICS_OPTIONS)
"""Simulator options that draw every optics and sky option per frame (all ``None``)."""
_STREAM_KEY = 100
"""First spawn key of this module's streams, far past the frame's own (0–11)."""
_N_STREAMS = 5
SPIKE_MIN_SIGMA = 3.0
"""Stars whose spikes start at this many σ or more get them."""
SHORT_TRAIL_MAX = 40.0
"""Longest short trail (px)."""
_COMA_COPIES = np.array([0.6, 1.2, 1.8])
"""Offsets (in FWHM at the frame corner) of the PSF copies that make a coma tail."""
_COMA_WEIGHTS = np.array([0.5, 0.3, 0.2])
_SPIKE_ACROSS = np.linspace(-1.5, 1.5, 13)
"""Sample offsets across a spike, in FWHM."""


def optics_streams(seed):
    """This module's independent generators for the frame of ``seed``.

    They are children ``_STREAM_KEY…`` of the frame's seed sequence, which the frame's own
    streams (children 0–11) never use.
    """
    return [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_KEY + i,)))
        for i in range(_N_STREAMS)
    ]


def draw_optics_params(rng, settings, fwhm):
    """Draw the optics and sky options (all, in a fixed order), then apply the given ones.

    An option is drawn only where ``settings`` holds ``None``; a given value is used as
    is. The defaults of `SimulationSettings` turn every option off.

    Parameters
    ----------
    rng : numpy.random.Generator
        The first of `optics_streams`.
    settings : SimulationSettings
    fwhm : float
        The frame's PSF FWHM (px): the tracking length is drawn in FWHM.

    Returns
    -------
    dict
        The six options, and ``tracking_angle``, ``spike_angle``, ``spike_strength``,
        ``spike_reach`` and ``fringe_count`` that shape them.
    """
    drawn = {
        "tracking_length": 0.0 if rng.uniform() < 0.6 else _log_uniform(rng, 0.3, 1.5) * fwhm,
        "coma": 0.0 if rng.uniform() < 0.5 else rng.uniform(0.1, 0.5),
        "diffraction_spikes": bool(rng.uniform() < 0.4),
        "n_short_trails": 0 if rng.uniform() < 0.4 else int(rng.integers(1, 21)),
        "nebulosity": 0.0 if rng.uniform() < 0.7 else _log_uniform(rng, 2.0, 50.0),
        "fringing": 0.0 if rng.uniform() < 0.8 else rng.uniform(0.5, 4.0),
    }
    shapes = {
        "tracking_angle": rng.uniform(0.0, 180.0),
        "spike_angle": rng.uniform(0.0, 90.0),
        "spike_strength": _log_uniform(rng, 0.003, 0.03),
        "spike_reach": rng.uniform(0.3, 1.0),
        "fringe_count": rng.uniform(3.0, 10.0),
    }
    given = {key: getattr(settings, key) for key in OPTICS_OPTIONS}
    params = {**drawn, **{key: value for key, value in given.items() if value is not None}}
    params["tracking_length"] = float(params["tracking_length"])
    params["coma"] = float(params["coma"])
    params["diffraction_spikes"] = bool(params["diffraction_spikes"])
    params["n_short_trails"] = int(params["n_short_trails"])
    params["nebulosity"] = float(params["nebulosity"])
    params["fringing"] = float(params["fringing"])
    for key in ("tracking_length", "coma", "n_short_trails", "nebulosity", "fringing"):
        if params[key] < 0:
            raise ValueError(f"{key} must be at least 0, got {params[key]}")
    return {**params, **shapes}


def _sky_sigma(params):
    """Noise σ (ADU) of the flat sky level, for amplitudes given in σ."""
    read_noise_adu = params["read_noise"] / params["gain"]
    return float(np.sqrt(params["sky"] / params["gain"] + read_noise_adu**2))


def _random_field(rng, shape, slope, scale, smooth=0.0):
    """A Gaussian random field of zero mean and unit σ with power ∝ (k + 1/scale)^-slope.

    ``smooth`` (px) cuts the small scales off with a Gaussian of that σ.
    """
    height, width = shape
    ky = sp_fft.fftfreq(height)[:, None]
    kx = sp_fft.rfftfreq(width)[None, :]
    k = np.hypot(kx, ky)
    amplitude = (k + 1.0 / scale) ** (-slope / 2.0)
    amplitude *= np.exp(-0.5 * (2.0 * np.pi * k * smooth) ** 2)
    amplitude[0, 0] = 0.0
    spectrum = rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)
    field = sp_fft.irfft2(spectrum * amplitude, s=shape)
    return (field - field.mean()) / max(float(field.std()), 1e-300)


def structured_sky(rng, params, background):
    """The sky with nebulosity and fringing added (``background`` itself if both are off).

    Nebulosity: lognormal clouds, zero over about half the frame, reaching
    ``params['nebulosity']`` σ at their 99th percentile. Fringing: bands
    ``sin(2π n g)`` of ``params['fringing']`` σ, ``g`` a smooth random field and ``n``
    ``params['fringe_count']``, so the bands bend and change width as real fringes do.
    """
    if not params["nebulosity"] and not params["fringing"]:
        return background
    shape = background.shape
    sigma = _sky_sigma(params)
    # Both fields are drawn whatever is on, so one option does not change the other.
    clouds = np.exp(_random_field(rng, shape, 3.0, max(shape) / 4.0))
    waves = _random_field(rng, shape, 3.0, max(shape) / 2.0, smooth=40.0)
    sky = background.copy()
    if params["nebulosity"]:
        clouds = np.clip(clouds - np.median(clouds), 0.0, None)
        top = float(np.percentile(clouds, 99.0))
        sky += params["nebulosity"] * sigma * clouds / max(top, 1e-300)
    if params["fringing"]:
        sky += params["fringing"] * sigma * np.sin(2.0 * np.pi * params["fringe_count"] * waves)
    return np.clip(sky, 0.0, None)


def add_coma(psf, params, stars, noise, canvas):
    """Add each star's coma tail to ``canvas``: PSF copies stepping away from the centre.

    At the fraction ρ of the half-diagonal from the frame centre, a star gets
    ``coma·ρ²`` of its flux again in three PSF copies, 0.6, 1.2 and 1.8 ρ FWHM further
    out along the radius (weights 0.5, 0.3, 0.2): a flared, one-sided star that grows
    towards the field edge, as coma does. Tails fainter than the wing level are skipped.
    """
    coma = params["coma"]
    x, y, flux = (np.asarray(stars[key], float) for key in ("x", "y", "flux"))
    if not coma or not x.size:
        return
    height, width = noise.shape
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    dx, dy = x - centre_x, y - centre_y
    distance = np.hypot(dx, dy)
    rho = distance / np.hypot(centre_x, centre_y)
    ux = np.divide(dx, distance, out=np.zeros_like(dx), where=distance > 0)
    uy = np.divide(dy, distance, out=np.zeros_like(dy), where=distance > 0)
    offsets = _COMA_COPIES[None, :] * (rho * psf.fwhm)[:, None]  # (N, copies)
    copy_x = (x[:, None] + offsets * ux[:, None]).ravel()
    copy_y = (y[:, None] + offsets * uy[:, None]).ravel()
    copy_flux = (coma * rho**2 * flux)[:, None] * _COMA_WEIGHTS[None, :]
    copy_flux = copy_flux.ravel()
    ix, iy = np.rint(copy_x).astype(int), np.rint(copy_y).astype(int)
    sigma = noise[np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)]
    unit_peak = float(_render_psf_stamps(psf, np.zeros(1), np.zeros(1), 3, psf.oversample).max())
    peak = copy_flux * unit_peak
    seen = peak > params["wing_level"] * sigma
    if not seen.any():
        return
    ix, iy, copy_x, copy_y = ix[seen], iy[seen], copy_x[seen], copy_y[seen]
    copy_flux, peak, sigma = copy_flux[seen], peak[seen], sigma[seen]
    radius = np.maximum(psf.radius_at(params["wing_level"] * sigma / peak), 2.0 * psf.fwhm)
    for stamp_radius, _, members in _batches(radius, psf.oversample):
        stamps = _render_psf_stamps(
            psf,
            copy_x[members] - ix[members],
            copy_y[members] - iy[members],
            stamp_radius,
            psf.oversample,
        )
        canvas.add_stamps(ix[members], iy[members], stamps * copy_flux[members, None, None])


def _line_kernel(length, angle):
    """Unit-sum kernel of a line ``length`` px long at ``angle`` degrees (bilinear)."""
    half = length / 2.0
    t = np.linspace(-half, half, max(2, int(np.ceil(4.0 * length)) + 1))
    px, py = t * np.cos(np.deg2rad(angle)), t * np.sin(np.deg2rad(angle))
    reach = int(np.ceil(half)) + 1
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1))
    _splat(kernel, px + reach, py + reach, np.ones_like(px))
    return kernel / kernel.sum()


def _splat(image, x, y, values):
    """Add ``values`` at sub-pixel (x, y) into ``image``, shared bilinearly among 4 pixels."""
    height, width = image.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for ox, oy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        cols, rows = x0 + ox, y0 + oy
        inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        np.add.at(image, (rows[inside], cols[inside]), (values * weight)[inside])


def smear(params, *layers):
    """The source layers smeared along the tracking line (the same layers when it is off).

    The smear conserves light: each layer is convolved with a unit-sum line kernel
    ``params['tracking_length']`` px long at ``params['tracking_angle']``.
    """
    if params["tracking_length"] <= 0:
        return layers
    from scipy import signal  # 1 s to import: only for frames that trail

    kernel = _line_kernel(params["tracking_length"], params["tracking_angle"])
    return tuple(signal.oaconvolve(layer, kernel, mode="same") for layer in layers)


def diffraction_spikes(psf, params, stars, noise):
    """Four spikes on every star whose spikes start at ≥ `SPIKE_MIN_SIGMA` σ, an artifact layer.

    The spikes run at ``spike_angle`` + k·90° (the same on the whole frame, as the
    spider is), with the PSF's line profile across; along them the surface brightness
    falls as ``strength·peak·(1 + r/FWHM)^-1.5`` out to ``spike_reach·FWHM·√(peak/σ)``
    (at most 400 px). A detection near the star's centre stays real (the star outshines
    its spikes there); one out on a spike is bogus, kind 'spike'.

    Returns
    -------
    layer : ndarray
    truth : list of dict
        One 'spike' row per arm reaching ½ FWHM or more onto the frame, centred on the
        part of it on the frame.
    """
    height, width = noise.shape
    layer = np.zeros(noise.shape)
    if not params["diffraction_spikes"]:
        return layer, []
    peak_sigma = np.asarray(stars["peak_sigma"], float)
    bright = np.flatnonzero(params["spike_strength"] * peak_sigma >= SPIKE_MIN_SIGMA)
    if not bright.size:
        return layer, []
    fwhm = psf.fwhm
    x, y = np.asarray(stars["x"], float)[bright], np.asarray(stars["y"], float)[bright]
    peak = np.asarray(stars["peak"], float)[bright]
    length = np.clip(params["spike_reach"] * fwhm * np.sqrt(peak_sigma[bright]), 3 * fwhm, 400)
    angles = np.deg2rad(params["spike_angle"] + 90.0 * np.arange(4))
    star, arm = np.repeat(np.arange(bright.size), 4), np.tile(np.arange(4), bright.size)
    line = np.stack([psf.line_profile(_SPIKE_ACROSS * fwhm, angle) for angle in angles])
    floor = 0.25 * params["wing_level"] * params["noise_median"]
    steps = np.arange(0.5 * fwhm, float(length.max()) + 0.5, 0.5)
    # Arms in chunks of at most ~2M samples: every 0.5 px along and across (±1.5 FWHM).
    chunk = max(1, 2_000_000 // (steps.size * _SPIKE_ACROSS.size))
    for first in range(0, star.size, chunk):
        _paint_arms(
            layer,
            x,
            y,
            peak,
            length,
            angles,
            star[first : first + chunk],
            arm[first : first + chunk],
            steps,
            line,
            fwhm,
            params,
            floor,
        )
    # Each arm's truth row: the part of it on the frame, from the star outwards.
    ends = _ray_inside(x[star], y[star], angles[arm], length[star], noise.shape)
    seen = ends > 0.5 * fwhm
    cos, sin = np.cos(angles[arm])[seen], np.sin(angles[arm])[seen]
    sx, sy, ends = x[star][seen], y[star][seen], ends[seen]
    start = params["spike_strength"] * peak[star][seen] * 1.5**-1.5
    truth = _truth_rows(
        int(seen.sum()),
        "spike",
        subkind="diffraction",
        x=sx + 0.5 * ends * cos,
        y=sy + 0.5 * ends * sin,
        peak=start,
        peak_sigma=start / params["noise_median"],
        length=ends,
        angle=np.rad2deg(angles[arm][seen]) % 360.0,
        width=fwhm,
        x0=sx,
        y0=sy,
        x1=sx + ends * cos,
        y1=sy + ends * sin,
    )
    return layer, [truth]


def _ray_inside(x, y, angle, length, shape):
    """How far (px, up to ``length``) rays from (x, y) at ``angle`` stay on the frame."""
    height, width = shape
    reach = np.asarray(length, float).copy()
    for position, direction, size in ((x, np.cos(angle), width), (y, np.sin(angle), height)):
        safe = np.where(np.abs(direction) < 1e-12, 1.0, direction)
        edge = np.where(direction > 0, size - 0.5 - position, -0.5 - position) / safe
        reach = np.where(np.abs(direction) < 1e-12, reach, np.minimum(reach, edge))
    return np.clip(reach, 0.0, None)


def _paint_arms(layer, x, y, peak, length, angles, star, arm, steps, line, fwhm, params, floor):
    """Splat the samples of some spike arms (``star``, ``arm`` index pairs) into ``layer``."""
    along = steps[None, :, None]
    across = (_SPIKE_ACROSS * fwhm)[None, None, :]
    cos, sin = np.cos(angles[arm])[:, None, None], np.sin(angles[arm])[:, None, None]
    sample_x = x[star][:, None, None] + along * cos - across * sin
    sample_y = y[star][:, None, None] + along * sin + across * cos
    values = (
        params["spike_strength"]
        * peak[star][:, None, None]
        * (1.0 + along / fwhm) ** -1.5
        * line[arm][:, None, :]
        * (0.5 * 3.0 * fwhm / (_SPIKE_ACROSS.size - 1))  # px² of one sample
    )
    keep = (along <= length[star][:, None, None]) & (values > floor)
    _splat(layer, sample_x[keep], sample_y[keep], values[keep])


def short_trails(rng, psf, params, background, noise):
    """``params['n_short_trails']`` trails 3 FWHM to `SHORT_TRAIL_MAX` px long, anywhere.

    The satellite painter draws them (the PSF's line profile, some glinting); their truth
    rows are kind 'satellite', subkind 'short'.
    """
    count = params["n_short_trails"]
    height, width = background.shape
    if not count:
        return np.zeros(background.shape), []
    x = rng.uniform(0.0, width - 1.0, count)
    y = rng.uniform(0.0, height - 1.0, count)
    layer, parts = _make_satellites(
        rng, psf, dict(params, max_artifact_length=SHORT_TRAIL_MAX), background, noise, (x, y)
    )
    for part in parts:
        part["subkind"] = np.full(part["subkind"].shape, "short", dtype=object)
    return layer, parts
