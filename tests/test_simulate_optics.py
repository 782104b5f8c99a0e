"""Tests of the simulator's optics and sky options (rbvet/core/simulate/optics.py)."""

import numpy as np
import pytest

from rbvet.core.errors import RbvetError
from rbvet.core.simulate import (
    ARTIFACT_KINDS,
    SimulationSettings,
    label_detections,
    simulate_frame,
)
from rbvet.core.simulate.optics import OPTICS_DRAWN, OPTICS_OPTIONS, draw_optics_params

NO_ARTIFACTS = dict(
    cosmic_ray_density=0, hot_pixel_density=0, n_satellites=0, n_bad_columns=0, n_edge_bands=0
)
ONE_STAR = dict(
    n_stars=1,
    n_galaxies=0,
    pair_fraction=0,
    group_fraction=0,
    bright_star_fraction=0,
    psf_model="gaussian",
    ellipticity=0.0,
    star_peak_snr=(3000.0, 3000.0),
    saturation=1e12,
    sky_gradient=False,
    **NO_ARTIFACTS,
)


def star_moments(layer, x, y, radius, angle):
    """Flux, centroid and second moments along and across ``angle`` (deg) of a box."""
    x0, y0 = int(round(x)), int(round(y))
    box = layer[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1].astype(float)
    rows, cols = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    flux = box.sum()
    cx, cy = (box * cols).sum() / flux, (box * rows).sum() / flux
    ux, uy = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    along = (cols - cx) * ux + (rows - cy) * uy
    across = (rows - cy) * ux - (cols - cx) * uy
    return flux, cx, cy, (box * along**2).sum() / flux, (box * across**2).sum() / flux


def test_options_are_off_by_default_and_off_equals_not_given():
    settings = SimulationSettings()
    drawn = draw_optics_params(np.random.default_rng(1), settings, fwhm=3.0)
    assert not any(drawn[name] for name in OPTICS_OPTIONS)
    plain = simulate_frame((96, 128), rng=4)
    explicit = simulate_frame(
        (96, 128),
        rng=4,
        tracking_length=0,
        coma=0,
        diffraction_spikes=False,
        n_short_trails=0,
        nebulosity=0,
        fringing=0,
    )
    assert np.array_equal(plain.image, explicit.image)


def test_drawn_options_vary_per_frame_and_given_values_are_kept():
    draws = [
        draw_optics_params(np.random.default_rng(seed), SimulationSettings(**OPTICS_DRAWN), 2.0)
        for seed in range(200)
    ]
    for name in OPTICS_OPTIONS:
        on = np.mean([bool(draw[name]) for draw in draws])
        assert 0.1 < on < 0.7, name  # sometimes on, more often off
    kept = draw_optics_params(
        np.random.default_rng(0), SimulationSettings(**{**OPTICS_DRAWN, "coma": 0.3}), 2.0
    )
    assert kept["coma"] == 0.3
    with pytest.raises(ValueError, match="nebulosity"):
        draw_optics_params(np.random.default_rng(0), SimulationSettings(nebulosity=-1.0), 2.0)


@pytest.mark.parametrize(
    "option",
    [
        dict(n_short_trails=6),
        dict(diffraction_spikes=True),
        dict(nebulosity=10.0),
        dict(tracking_length=4.0),
        dict(coma=0.4),
    ],
)
def test_one_option_changes_only_its_own_part_of_the_frame(option):
    base = dict(shape=(192, 192), rng=21, bright_star_fraction=0.05, n_cosmic_rays=30)
    off, on = simulate_frame(**base), simulate_frame(**base, **option)
    assert not np.array_equal(off.image, on.image)
    other = ("cosmic_ray", "hot_pixel", "star", "galaxy", "bad_column")
    for kind in other:
        before, after = off.truth[off.truth["kind"] == kind], on.truth[on.truth["kind"] == kind]
        assert np.array_equal(before["x"], after["x"]) and np.array_equal(before["y"], after["y"])
    name = next(iter(option))
    if name in ("n_short_trails", "diffraction_spikes"):  # artifacts: sky and sources stay
        assert np.array_equal(off.sources, on.sources)
        assert np.array_equal(off.background, on.background)
    if name in ("tracking_length", "coma"):  # the sources' light: sky and artifacts stay
        assert np.array_equal(off.background, on.background)
        assert np.array_equal(off.artifacts, on.artifacts)
        assert not np.array_equal(off.sources, on.sources)
    if name == "nebulosity":  # the sky; its noise follows it (and peaks drawn in σ of it)
        assert np.all(on.background >= off.background - 1e-9)
        assert np.all(on.noise >= off.noise - 1e-9) and np.any(on.noise > off.noise)


def test_tracking_smears_a_star_along_its_angle_and_keeps_its_light():
    length = 8.0
    still = simulate_frame((96, 96), fwhm=2.5, rng=5, margin=40, **ONE_STAR)
    moved = simulate_frame(
        (96, 96), fwhm=2.5, rng=5, margin=40, tracking_length=length, **ONE_STAR
    )
    angle = moved.params["tracking_angle"]
    x, y = still.truth["x"][0], still.truth["y"][0]
    flux0, _, _, along0, across0 = star_moments(still.sources, x, y, 20, angle)
    flux1, cx, cy, along1, across1 = star_moments(moved.sources, x, y, 20, angle)
    assert flux1 == pytest.approx(flux0, rel=1e-3)
    assert np.hypot(cx - x, cy - y) < 0.1  # smeared about its centre
    # A uniform smear of length L adds L²/12 to the variance along it, nothing across.
    assert along1 - along0 == pytest.approx(length**2 / 12.0, rel=0.1)
    assert 0.0 <= across1 - across0 < 0.25  # only the kernel's bilinear sub-pixel spread


def test_coma_pulls_a_star_outward_more_at_the_edge_than_at_the_centre():
    def shift(margin_rng):
        rng, centred = margin_rng
        options = dict(ONE_STAR, margin=60 if centred else 8)
        frame = simulate_frame((160, 160), fwhm=3.0, rng=rng, coma=0.5, **options)
        x, y = frame.truth["x"][0], frame.truth["y"][0]
        _, cx, cy, _, _ = star_moments(frame.sources, x, y, 7, 0.0)
        radial = np.array([x - 79.5, y - 79.5])
        outward = np.dot([cx - x, cy - y], radial / max(np.hypot(*radial), 1e-9))
        return np.hypot(*radial), outward

    edge = [shift((seed, False)) for seed in range(8)]
    distance, outward = max(edge, key=lambda item: item[0])
    assert distance > 60 and outward > 0.3  # the tail pulls the light away from the centre
    near_distance, near_outward = shift((3, True))
    assert near_distance < 20 and abs(near_outward) < 0.05


def test_detections_on_a_spike_are_bogus_spike_and_on_the_star_real():
    frame = simulate_frame(
        (200, 200),
        fwhm=2.5,
        rng=8,
        margin=90,
        diffraction_spikes=True,
        **dict(ONE_STAR, star_peak_snr=(30000.0, 30000.0)),
    )
    x, y = frame.truth["x"][0], frame.truth["y"][0]
    spikes = frame.truth[frame.truth["kind"] == "spike"]
    assert len(spikes) == 4
    angle = np.deg2rad(frame.params["spike_angle"])
    out = 8.0 * frame.fwhm
    px, py = x + out * np.cos(angle), y + out * np.sin(angle)
    labels, kinds = label_detections(frame, [x, px], [y, py])
    assert list(labels) == [1, 0]
    assert list(kinds) == ["star", "spike"]
    spike_code = ARTIFACT_KINDS.index("spike") + 1
    assert frame.artifact_kind[int(round(py)), int(round(px))] == spike_code


def test_short_trails_are_short_satellites():
    frame = simulate_frame((256, 256), rng=3, fwhm=2.0, n_short_trails=12, **NO_ARTIFACTS)
    trails = frame.truth[frame.truth["kind"] == "satellite"]
    assert len(trails) == 12 and set(trails["subkind"]) == {"short"}
    assert np.all(trails["length"] <= 40.0 + 1e-6)
    assert np.median(trails["length"]) >= 3.0 * 2.0
    labels, kinds = label_detections(frame, trails["x"], trails["y"])
    visible = trails["peak_sigma"] > 5
    assert np.all(kinds[visible & (labels == 0)] == "satellite")


def test_fringing_waves_about_the_sky_at_the_asked_amplitude():
    flat = simulate_frame((256, 256), rng=6, sky_gradient=False, **NO_ARTIFACTS)
    fringed = simulate_frame((256, 256), rng=6, sky_gradient=False, fringing=3.0, **NO_ARTIFACTS)
    sigma = np.sqrt(
        flat.params["sky"] / flat.params["gain"]
        + (flat.params["read_noise"] / flat.params["gain"]) ** 2
    )
    waves = (fringed.background - flat.background) / sigma
    assert abs(float(waves.mean())) < 0.5
    assert waves.max() == pytest.approx(3.0, rel=0.05)
    assert waves.min() == pytest.approx(-3.0, rel=0.05)


def test_train_optics_flag_draws_every_option_or_the_named_ones():
    from rbvet.cli import _optics, build_parser

    parser = build_parser()
    base = ["train", "--simulate", "1", "-o", "m.keras"]
    assert _optics(parser.parse_args(base)) == {}
    assert _optics(parser.parse_args([*base, "--optics"])) == OPTICS_DRAWN
    some = _optics(parser.parse_args([*base, "--optics", "coma", "fringing"]))
    assert some == {"coma": None, "fringing": None}
    with pytest.raises(RbvetError, match="no option planets"):
        _optics(parser.parse_args([*base, "--optics", "planets"]))


def test_simulate_command_with_optics_writes_the_optics_frame(tmp_path, capsys):
    from astropy.io import fits

    from rbvet.cli import main

    output = tmp_path / "optics.fits"
    assert main(["simulate", "-o", str(output), "--size", "128", "--seed", "9", "--optics"]) == 0
    expected = simulate_frame((128, 128), rng=9, **OPTICS_DRAWN)
    assert np.array_equal(fits.getdata(output), expected.image)
    assert not np.array_equal(expected.image, simulate_frame((128, 128), rng=9).image)


def test_short_trails_are_an_exposures_own_and_the_optics_of_the_field_stay():
    from rbvet.core.simulate import Exposure

    options = dict(n_short_trails=5, coma=0.3, diffraction_spikes=True, **NO_ARTIFACTS)
    first = simulate_frame((160, 160), rng=9, exposure=Exposure(seed=1), **options)
    second = simulate_frame((160, 160), rng=9, exposure=Exposure(seed=2), **options)
    trails = [frame.truth[frame.truth["kind"] == "satellite"] for frame in (first, second)]
    assert len(trails[0]) == len(trails[1]) == 5
    assert not np.allclose(trails[0]["x"], trails[1]["x"])  # a trail crosses one exposure
    assert np.array_equal(first.sources, second.sources)  # the sky, with its coma, stays
