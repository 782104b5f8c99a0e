"""Tests of the frame simulator: reproducibility, photometry, PSF shapes, truth, labels."""

import dataclasses

import numpy as np
import pytest

from rbvet.core.simulate import (
    ARTIFACT_KINDS,
    SOURCE_KINDS,
    SimulationSettings,
    draw_fwhm,
    label_detections,
    simulate_frame,
)
from rbvet.core.simulate.optics import draw_optics_params

NO_ARTIFACTS = dict(
    cosmic_ray_density=0, hot_pixel_density=0, n_satellites=0, n_bad_columns=0, n_edge_bands=0
)


def only_stars(**options):
    """A small frame with only bright, isolated, unsaturated stars."""
    settings = dict(
        shape=(256, 256),
        n_galaxies=0,
        pair_fraction=0,
        star_peak_snr=(80.0, 400.0),
        min_separation=8.0,
        margin=15,
        saturation=1e9,
        sky_gradient=False,
        **NO_ARTIFACTS,
    )
    settings.update(options)
    return simulate_frame(**settings)


def one_star(fwhm, psf_model, **options):
    """A noise-free-usable frame holding one bright round star in its middle."""
    settings = dict(
        shape=(160, 160),
        fwhm=fwhm,
        rng=3,
        n_stars=1,
        n_galaxies=0,
        psf_model=psf_model,
        moffat_beta=3.0,
        ellipticity=0.0,
        star_peak_snr=(5000.0, 5000.0),
        margin=70,
        saturation=1e12,
        **NO_ARTIFACTS,
    )
    settings.update(options)
    frame = simulate_frame(**settings)
    assert len(frame.truth) == 1
    return frame


def moments(layer, x, y, radius):
    """Flux, centroid and mean per-axis second moment of a layer in a box around (x, y)."""
    x0, y0 = int(round(x)), int(round(y))
    box = layer[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1].astype(float)
    rows, cols = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    flux = box.sum()
    cx, cy = (box * cols).sum() / flux, (box * rows).sum() / flux
    variance = 0.5 * (box * ((cols - cx) ** 2 + (rows - cy) ** 2)).sum() / flux
    return flux, cx, cy, variance


# --- reproducibility -------------------------------------------------------------------


def test_same_seed_gives_identical_frame_and_different_seeds_differ():
    first = simulate_frame(shape=(128, 128), rng=42)
    second = simulate_frame(shape=(128, 128), rng=42)
    third = simulate_frame(shape=(128, 128), rng=43)
    for name in ("image", "background", "noise", "sources", "artifacts", "artifact_kind"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.params == second.params
    assert len(first.truth) == len(second.truth)
    assert not np.array_equal(first.image, third.image)


def test_generator_seed_is_recorded_and_reproduces_the_frame():
    frame = simulate_frame(shape=(96, 96), rng=np.random.default_rng(7))
    again = simulate_frame(shape=(96, 96), rng=frame.params["seed"])
    np.testing.assert_array_equal(frame.image, again.image)


def test_turning_one_kind_off_leaves_the_others_unchanged():
    with_hits = simulate_frame(shape=(128, 128), rng=5, cosmic_ray_density=300)
    without = simulate_frame(shape=(128, 128), rng=5, cosmic_ray_density=0)
    np.testing.assert_array_equal(with_hits.sources, without.sources)
    assert "cosmic_ray" in set(with_hits.truth["kind"])
    assert "cosmic_ray" not in set(without.truth["kind"])


def test_layers_have_the_contract_types():
    frame = simulate_frame(shape=(64, 80), rng=1)
    for name in ("image", "background", "noise", "sources", "artifacts"):
        layer = getattr(frame, name)
        assert layer.dtype == np.float32 and layer.shape == (64, 80)
    assert frame.artifact_kind.dtype == np.uint8
    assert frame.artifact_kind.max() <= len(ARTIFACT_KINDS) - 1  # 'noise' is never injected
    assert frame.image.max() <= frame.params["saturation"]
    for column in ("x", "y", "kind", "subkind", "flux", "peak", "length", "angle"):
        assert column in frame.truth.colnames


# --- photometry and PSF ------------------------------------------------------------------


@pytest.mark.parametrize("psf_model", ["gaussian", "moffat"])
@pytest.mark.parametrize("fwhm", [1.5, 4.0])
def test_star_flux_and_centroid_are_recovered_from_the_sources_layer(psf_model, fwhm):
    frame = one_star(fwhm, psf_model, moffat_beta=2.5, star_peak_snr=(300.0, 300.0))
    star = frame.truth[0]
    flux, cx, cy, _ = moments(frame.sources, star["x"], star["y"], int(8 * fwhm))
    assert flux == pytest.approx(star["flux"], rel=0.02)
    assert abs(cx - star["x"]) < 0.1 and abs(cy - star["y"]) < 0.1
    assert frame.sources.max() == pytest.approx(star["peak"], rel=1e-5)


@pytest.mark.parametrize("psf_model", ["gaussian", "moffat"])
@pytest.mark.parametrize("fwhm", [1.5, 3.0, 8.0])
def test_rendered_star_fwhm_matches_the_requested_one(psf_model, fwhm):
    frame = one_star(fwhm, psf_model, moffat_beta=4.0)
    star = frame.truth[0]
    _, _, _, variance = moments(frame.sources, star["x"], star["y"], 65)
    # Integrating over pixels adds the 1/12 px² variance of a pixel box.
    variance -= 1.0 / 12.0
    if psf_model == "gaussian":
        measured = 2.0 * np.sqrt(2.0 * np.log(2.0) * variance)
    else:  # per-axis variance of a Moffat is α² / (2(β − 2))
        beta = 4.0
        alpha = np.sqrt(2.0 * (beta - 2.0) * variance)
        measured = 2.0 * alpha * np.sqrt(2.0 ** (1.0 / beta) - 1.0)
    assert measured == pytest.approx(fwhm, rel=0.05)


def test_sharp_psf_is_integrated_over_pixels_not_point_sampled():
    frame = one_star(1.2, "gaussian", rng=11)
    star = frame.truth[0]
    sigma = 1.2 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    # A pixel-integrated Gaussian's peak pixel holds at most erf(0.5/(σ√2))² of the flux;
    # point sampling would put 1/(2πσ²) ≈ 0.61 there.
    from scipy.special import erf

    assert star["peak"] / star["flux"] <= erf(0.5 / (sigma * np.sqrt(2.0))) ** 2 + 1e-6


def test_elliptical_psf_has_the_requested_axis_ratio():
    frame = one_star(4.0, "gaussian", ellipticity=0.2, psf_angle=0.0)
    star = frame.truth[0]
    x0, y0, r = int(round(star["x"])), int(round(star["y"])), 30
    box = frame.sources[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(float)
    rows, cols = np.mgrid[-r : r + 1, -r : r + 1]
    vx = (box * (cols - (star["x"] - x0)) ** 2).sum() / box.sum() - 1 / 12
    vy = (box * (rows - (star["y"] - y0)) ** 2).sum() / box.sum() - 1 / 12
    assert np.sqrt(vy / vx) == pytest.approx(0.8, rel=0.02)


@pytest.mark.parametrize("sersic_n", [0.5, 1.0, 4.0])
def test_galaxy_profile_has_the_drawn_half_light_radius_axis_ratio_and_angle(sersic_n):
    from rbvet.core.simulate.psf import _Psf
    from rbvet.core.simulate.sources import _render_galaxy_stamps

    psf = _Psf("gaussian", 1.2, np.nan, 0.0, 0.0)
    r_eff, q, theta, radius = 6.0, 0.4, 0.6, 64
    stamp = _render_galaxy_stamps(
        psf,
        np.array([0.3]),
        np.array([-0.2]),
        np.array([sersic_n]),
        np.array([r_eff]),
        np.array([q]),
        np.array([theta]),
        np.array([10.0]),
        radius,
        1,
    )[0]
    rows, cols = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    dx, dy = cols - 0.3, rows + 0.2
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = dy * np.cos(theta) - dx * np.sin(theta)
    elliptical_radius = np.sqrt(q * along**2 + across**2 / q).ravel()
    order = np.argsort(elliptical_radius)
    enclosed = np.cumsum(stamp.ravel()[order])
    half_light = elliptical_radius[order][np.searchsorted(enclosed, 0.5)]
    # n = 4 is truncated at 10 r_e, which takes a few per cent of its light.
    assert half_light == pytest.approx(r_eff, rel=0.04 if sersic_n < 4 else 0.12)
    covariance = np.cov(np.vstack([dx.ravel(), dy.ravel()]), aweights=stamp.ravel())
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    assert np.sqrt(eigenvalues[0] / eigenvalues[1]) == pytest.approx(q, abs=0.03)
    major = np.arctan2(eigenvectors[1, 1], eigenvectors[0, 1]) % np.pi
    assert major == pytest.approx(theta, abs=0.02)


def test_galaxies_are_wider_than_stars_and_hits_sharper():
    frame = simulate_frame(
        shape=(256, 256),
        fwhm=1.4,
        rng=21,
        real_density=2000,
        galaxy_fraction=0.5,
        n_cosmic_rays=150,
        cosmic_ray_mix={"single": 1.0, "cluster": 1.0},
        hot_pixel_density=0,
        n_satellites=0,
        n_bad_columns=0,
    )
    truth = frame.truth
    concentration = np.asarray(truth["peak"] / truth["flux"])
    kind = np.asarray(truth["kind"])
    star_max = concentration[kind == "star"].max()
    # A galaxy is the PSF convolved with something: never more concentrated than a star.
    assert concentration[kind == "galaxy"].max() <= star_max * 1.01
    assert np.median(concentration[kind == "galaxy"]) < 0.6 * np.median(
        concentration[kind == "star"]
    )
    singles = (kind == "cosmic_ray") & (np.asarray(truth["subkind"]) == "single")
    assert singles.sum() > 20
    assert concentration[singles].min() > star_max


def test_noise_map_is_the_sky_noise():
    frame = simulate_frame(shape=(256, 256), rng=4, n_stars=0, n_galaxies=0, **NO_ARTIFACTS)
    residual = (frame.image - frame.background) / frame.noise
    assert np.std(residual) == pytest.approx(1.0, rel=0.02)
    assert abs(np.mean(residual)) < 0.02


# --- truth ------------------------------------------------------------------------------


def test_sep_recovers_the_injected_stars():
    sep = pytest.importorskip("sep")
    frame = only_stars(fwhm=2.5, rng=8, real_density=800, psf_model="gaussian")
    stars = frame.truth[frame.truth["kind"] == "star"]
    assert len(stars) >= 20
    data = np.ascontiguousarray(frame.image - frame.background, dtype=np.float64)
    objects = sep.extract(data, 5.0, err=np.ascontiguousarray(frame.noise, dtype=np.float64))
    assert len(objects) == len(stars)
    x, y, _ = sep.winpos(data, objects["x"], objects["y"], np.full(len(objects), 2.5 / 2.3548))
    distance = np.hypot(x[:, None] - stars["x"][None, :], y[:, None] - stars["y"][None, :])
    nearest = distance.min(axis=0)
    assert np.all(nearest < 0.1)
    assert len(set(distance.argmin(axis=0))) == len(stars)


def test_every_artifact_kind_appears_when_asked():
    frame = simulate_frame(
        shape=(256, 256),
        rng=12,
        n_cosmic_rays=120,
        cosmic_ray_mix={"single": 1, "cluster": 1, "worm": 1, "track": 1},
        n_hot_pixels=80,
        hot_pixel_mix={"single": 1, "pair": 1, "cluster": 1, "column_segment": 1},
        n_satellites=2,
        n_bad_columns=3,
        n_edge_bands=1,
        diffraction_spikes=True,
        bright_star_fraction=0.05,
    )
    truth = frame.truth
    kinds = set(truth["kind"])
    # 'bleed' has no truth rows of its own (it belongs to a saturated star; tested below).
    assert set(ARTIFACT_KINDS) - {"noise", "bleed"} <= kinds
    codes = {ARTIFACT_KINDS.index(kind) + 1 for kind in kinds if kind in ARTIFACT_KINDS}
    assert set(np.unique(frame.artifact_kind)) >= codes
    cosmic = truth[truth["kind"] == "cosmic_ray"]
    assert set(cosmic["subkind"]) == {"single", "cluster", "worm", "track"}
    hot = truth[truth["kind"] == "hot_pixel"]
    assert set(hot["subkind"]) == {"single", "pair", "cluster", "column_segment"}
    tracks = cosmic[cosmic["subkind"] == "track"]
    assert np.all((tracks["length"] >= 5) & (tracks["length"] <= 150))
    for kind in ("satellite", "bad_column"):
        rows = truth[truth["kind"] == kind]
        assert np.all(np.isfinite(rows["x0"]) & np.isfinite(rows["y1"]))
        assert np.all(rows["length"] > 0)
    # Amplitudes are relative to the noise: hits and hot pixels stand well above it (hits
    # drawn from 5σ, less what charge diffusion spreads out; warm segments from 3σ).
    assert np.all(cosmic["peak_sigma"] > 3.0) and np.all(hot["peak_sigma"] > 2.5)
    assert np.all(np.isfinite(tracks["x0"]) & np.isfinite(tracks["y1"]))


def test_saturated_stars_are_clipped_flat_and_bleed_along_columns():
    frame = simulate_frame(
        shape=(200, 200),
        fwhm=3.0,
        rng=2,
        n_stars=3,
        n_galaxies=0,
        star_peak_snr=(3e4, 3e4),
        saturation=20000.0,
        sky=200.0,
        bleed=True,
        min_separation=15,
        margin=40,
        **NO_ARTIFACTS,
    )
    assert np.all(frame.truth["saturated"])
    at_saturation = frame.image >= frame.params["saturation"]
    assert at_saturation.sum() > 30
    assert frame.image.max() == pytest.approx(frame.params["saturation"])
    rows, cols = np.nonzero(at_saturation)
    assert np.ptp(rows) > 0
    for star in frame.truth:  # taller than wide: the bleed runs along the column
        near = (np.abs(cols - star["x"]) < 20) & (np.abs(rows - star["y"]) < 100)
        assert np.ptp(rows[near]) > 1.5 * np.ptp(cols[near])


# --- labels -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_frame():
    return simulate_frame(
        shape=(256, 256),
        fwhm=2.0,
        rng=31,
        real_density=600,
        galaxy_fraction=0.3,
        n_hot_pixels=60,
        hot_pixel_mix={"single": 1.0},
        cosmic_ray_density=0,
        n_satellites=0,
        n_bad_columns=0,
    )


def test_label_detections_on_hot_pixel_star_and_empty_sky(labelled_frame):
    frame = labelled_frame
    truth = frame.truth
    sigma = frame.noise
    x_hot, y_hot = np.asarray(truth["x"]), np.asarray(truth["y"])
    kind = np.asarray(truth["kind"])

    hot = np.flatnonzero((kind == "hot_pixel") & (np.asarray(truth["peak_sigma"]) > 10))
    clean = [
        i
        for i in hot
        if frame.sources[
            int(y_hot[i]) - 2 : int(y_hot[i]) + 3, int(x_hot[i]) - 2 : int(x_hot[i]) + 3
        ].max()
        < 0.1 * sigma.min()
    ]
    inside = (x_hot > 3) & (x_hot < 252) & (y_hot > 3) & (y_hot < 252)
    stars = np.flatnonzero((kind == "star") & (np.asarray(truth["peak_sigma"]) > 10) & inside)
    assert clean and stars.size
    # Empty sky: where neither layer holds anything within a few pixels.
    from scipy import ndimage

    quiet = ndimage.maximum_filter(np.maximum(frame.sources, frame.artifacts), size=7)
    ey, ex = np.argwhere(quiet < 0.05 * sigma)[len(np.argwhere(quiet < 0.05 * sigma)) // 2]

    x = np.concatenate([x_hot[clean], x_hot[stars] + 0.3, [ex]])
    y = np.concatenate([y_hot[clean], y_hot[stars] - 0.2, [ey]])
    label, kinds = label_detections(frame, x, y)
    n_hot, n_star = len(clean), stars.size
    assert np.all(label[:n_hot] == 0) and np.all(kinds[:n_hot] == "hot_pixel")
    star_labels = label[n_hot : n_hot + n_star]
    assert np.mean(star_labels == 1) > 0.9  # a few may sit under a hot pixel
    assert np.all(kinds[n_hot : n_hot + n_star][star_labels == 1] == "star")
    assert label[-1] == 0 and kinds[-1] == "noise"


def test_label_detections_weighs_an_artifact_against_the_star_under_it(labelled_frame):
    frame = labelled_frame
    truth = frame.truth
    star = truth[(truth["kind"] == "star") & (truth["peak_sigma"] > 20)][0]
    x, y = int(round(star["x"])), int(round(star["y"]))

    def label_with_hot_pixel(ratio):
        sources_peak = frame.sources[y - 1 : y + 2, x - 1 : x + 2].max()
        artifacts = frame.artifacts.copy()
        kind_map = frame.artifact_kind.copy()
        artifacts[y + 1, x] += ratio * sources_peak
        kind_map[y + 1, x] = ARTIFACT_KINDS.index("hot_pixel") + 1
        patched = dataclasses.replace(frame, artifacts=artifacts, artifact_kind=kind_map)
        label, kind = label_detections(patched, [star["x"]], [star["y"]])
        return int(label[0]), str(kind[0])

    assert label_with_hot_pixel(3.0) == (0, "hot_pixel")
    assert label_with_hot_pixel(0.2) == (1, "star")
    assert label_with_hot_pixel(1.0)[0] == -1


def test_label_detections_real_kinds_and_outside(labelled_frame):
    frame = labelled_frame
    truth = frame.truth
    galaxies = truth[(truth["kind"] == "galaxy") & (truth["peak_sigma"] > 10)]
    assert len(galaxies)
    label, kind = label_detections(frame, galaxies["x"], galaxies["y"], real_kinds=("star",))
    assert np.mean((label == 0) & (kind == "galaxy")) > 0.8
    label, kind = label_detections(frame, galaxies["x"], galaxies["y"])
    assert np.mean((label == 1) & (kind == "galaxy")) > 0.8
    label, kind = label_detections(frame, [-5.0, np.nan], [10.0, 3.0])
    assert list(label) == [-1, -1] and list(kind) == ["outside", "outside"]
    assert set(SOURCE_KINDS) == {"star", "galaxy"}


# --- what the model got wrong on real frames ---------------------------------------------


def crowded(**options):
    """A frame of 120 stars, nothing else unless asked, for the crowding options."""
    settings = dict(
        shape=(256, 256),
        rng=41,
        fwhm=3.0,
        n_stars=120,
        n_galaxies=0,
        pair_fraction=0.0,
        group_fraction=0.0,
        star_peak_snr=(20.0, 200.0),
        saturation=1e9,
        **NO_ARTIFACTS,
    )
    settings.update(options)
    return simulate_frame(**settings)


def test_star_groups_are_chains_of_close_stars_added_to_an_unchanged_frame():
    plain, grouped = crowded(), crowded(group_fraction=0.3)
    stars = grouped.truth[grouped.truth["kind"] == "star"]
    group = stars[stars["subkind"] == "group"]
    assert 15 <= len(group) <= 60  # about 30 % of 120 stars, less those off the frame
    assert "group" not in set(plain.truth["subkind"])
    # Every group star has another star 0.7-3 FWHM away (the previous or next in its chain).
    from scipy.spatial import cKDTree

    xy = np.column_stack([stars["x"], stars["y"]])
    distance, _ = cKDTree(xy).query(np.column_stack([group["x"], group["y"]]), k=2)
    # (a few lose their chain neighbour off the frame; random stars would have one in 45 %)
    assert np.mean(distance[:, 1] <= 3.0 * 3.0 + 1e-9) > 0.95
    # The other stars are where they were: groups draw from a stream of their own.
    others = stars[stars["subkind"] != "group"]
    np.testing.assert_array_equal(others["x"], plain.truth["x"])
    np.testing.assert_array_equal(others["y"], plain.truth["y"])


def test_cosmic_ray_hits_on_stars_are_labelled_by_what_a_detection_is_centred_on():
    options = dict(
        fwhm=4.0,
        n_stars=30,
        min_separation=10.0,
        margin=20,
        star_peak_snr=(20.0, 20.0),
        n_cosmic_rays=20,
        cosmic_ray_mix={"single": 1.0},
        cosmic_ray_snr=(200.0, 300.0),
        charge_diffusion=0.0,
    )
    away = crowded(**options)
    frame = crowded(**options, cosmic_ray_on_star_fraction=1.0)
    truth = frame.truth
    stars, hits = truth[truth["kind"] == "star"], truth[truth["kind"] == "cosmic_ray"]
    gap = np.hypot(
        hits["x"][:, None] - stars["x"][None, :], hits["y"][:, None] - stars["y"][None, :]
    ).min(axis=1)
    assert len(hits) == 20 and np.all(gap <= 2.0 * 4.0 + 0.75)  # single hits sit on a pixel
    away_hits = away.truth[away.truth["kind"] == "cosmic_ray"]
    away_gap = np.hypot(
        away_hits["x"][:, None] - stars["x"][None, :],
        away_hits["y"][:, None] - stars["y"][None, :],
    ).min(axis=1)
    assert np.median(away_gap) > 2.0 * 4.0  # without the option, hits fall anywhere
    # A detection on a hit beside a star is the hit; one on the star is the star.
    beside = gap > 1.0 * 4.0
    label, kind = label_detections(frame, hits["x"][beside], hits["y"][beside])
    assert beside.sum() >= 5 and np.all(label == 0) and np.all(kind == "cosmic_ray")
    clear = (
        np.hypot(
            stars["x"][:, None] - hits["x"][None, :], stars["y"][:, None] - hits["y"][None, :]
        ).min(axis=1)
        > 0.5 * 4.0 + 1.5
    )
    label, kind = label_detections(frame, stars["x"][clear], stars["y"][clear])
    assert clear.sum() >= 3 and np.all(label == 1) and np.all(kind == "star")


def test_bright_stars_saturate_flat_and_their_bleed_is_bogus_the_star_real():
    frame = crowded(
        n_stars=40,
        min_separation=10.0,
        margin=30,
        sky=200.0,
        saturation=20000.0,
        bleed=True,
        bright_star_fraction=1.0,
        star_peak_snr=(20.0, 200.0),
    )
    stars = frame.truth[frame.truth["kind"] == "star"]
    assert np.mean(stars["saturated"]) > 0.7  # peaks 0.5-20 times the headroom
    assert crowded(n_stars=40, star_peak_snr=(20.0, 200.0)).params["n_saturated_stars"] == 0
    saturated = stars[stars["saturated"]]
    label, kind = label_detections(frame, saturated["x"], saturated["y"])
    assert np.all(label == 1) and np.all(kind == "star")
    assert np.all(frame.image[frame.artifact_kind > 0] <= frame.params["saturation"])
    # Bleed pixels are in the artifact layer, marked 'bleed', and labelled bogus.
    bleed = frame.artifact_kind == ARTIFACT_KINDS.index("bleed") + 1
    assert bleed.sum() > 50
    assert np.median(frame.image[bleed]) >= 0.9 * frame.params["saturation"]  # full wells
    rows, cols = np.nonzero(bleed)
    distance = np.hypot(
        cols[:, None] - saturated["x"][None, :], rows[:, None] - saturated["y"][None, :]
    ).min(axis=1)
    far = distance > 4.0 * 3.0  # well along the column, off the star's core
    assert far.sum() > 10
    label, kind = label_detections(frame, cols[far], rows[far])
    assert np.mean((label == 0) & (kind == "bleed")) > 0.9


@pytest.mark.parametrize("seed", [3, 8])
def test_edge_bands_are_unexposed_steps_labelled_edge(seed):
    plain = crowded(rng=seed, sky=500.0)
    frame = crowded(rng=seed, sky=500.0, n_edge_bands=1)
    band = frame.truth[frame.truth["kind"] == "edge"]
    assert len(band) == 1
    band = band[0]
    edge = frame.artifact_kind == ARTIFACT_KINDS.index("edge") + 1
    assert edge.sum() == band["width"] * band["length"]
    # Nothing reaches the band: its level is the sky plus the step, with only noise on it.
    level = np.median(frame.image[edge])
    assert level == pytest.approx(500.0 + band["peak"], abs=3 * float(frame.noise.max()))
    assert np.all(frame.sources[edge] == 0)
    inside = edge[np.rint(plain.truth["y"]).astype(int), np.rint(plain.truth["x"]).astype(int)]
    assert len(frame.truth) == len(plain.truth) - inside.sum() + 1
    # Outside the band the frame is the one drawn without it.
    np.testing.assert_array_equal(frame.sources[~edge], plain.sources[~edge])
    # A detection on the first exposed pixel beside the step is bogus, of kind 'edge'.
    vertical = band["angle"] == 90.0
    inner = band["x0"] if vertical else band["y0"]
    first_exposed = np.full(5, inner + (0.5 if inner < 128 else -0.5))
    along = np.linspace(40, 200, 5)
    x, y = (first_exposed, along) if vertical else (along, first_exposed)
    label, kind = label_detections(frame, x, y)
    assert np.all(label == 0) and np.all(kind == "edge")
    assert not np.any(label_detections(plain, x, y)[1] == "edge")


# --- FWHM distribution -----------------------------------------------------------------


def test_draw_fwhm_favours_sharp_frames_within_range():
    values = draw_fwhm(np.random.default_rng(0), 20000)
    assert values.min() >= 1.2 and values.max() <= 10.0
    assert np.mean(values < 2.5) == pytest.approx(0.4, abs=0.02)
    assert np.mean(values > 6.0) > 0.1
    assert isinstance(draw_fwhm(1), float)


def frame_digest(frame):
    """SHA-256 of every map, every truth column and the parameters of a simulated frame."""
    import hashlib
    import json

    digest = hashlib.sha256()
    maps = ("image", "background", "noise", "sources", "artifacts", "artifact_kind")
    for array in [getattr(frame, name) for name in maps] + [frame.source_kind]:
        digest.update(np.ascontiguousarray(array).tobytes())
    for name in frame.truth.colnames:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(frame.truth[name])).tobytes())
    later = {*LATER_OPTIONS, *OPTICS_PARAMS}
    params = {key: value for key, value in frame.params.items() if key not in later}
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


LATER_OPTIONS = dict(
    group_fraction=0, cosmic_ray_on_star_fraction=0, n_edge_bands=0, bright_star_fraction=0
)
"""Options added after the digests below were taken, turned off: they draw from streams of
their own, so with them off every pixel, truth row and older parameter is as before."""
OPTICS_PARAMS = set(draw_optics_params(np.random.default_rng(0), SimulationSettings(), fwhm=2.0))
"""Parameters of the optics options (`rbvet.core.simulate.optics`), off by default: with
them off, too, every pixel, truth row and older parameter is as before."""


# Digests first computed with the single-module simulator, before it was split into psf,
# sources, artifacts, truth and frame: the split (and the settings dataclass) must not change
# a pixel. The two frames with galaxies were taken again when galaxies came to be convolved
# in single precision, as they are sampled (their pixels moved by at most 2e-7 of their peak,
# a few image pixels by one count of Poisson noise); the same frames without galaxies kept
# the digests they had before that change, so nothing else moved. All four were taken again
# when the photon noise of bright pixels came to be drawn from a single-precision normal
# draw with the Poisson mean, variance and skew (`_noisy_image`): the truth, the sky, the
# noise map and the kind maps stayed equal, the noise-free layers within float32
# rounding, only the image's noise moved; and when cosmic rays came to be diffused where
# they lie rather than by a frame-wide convolution (their peaks moved by 1e-16 of
# themselves).
_BUSY_FRAME = dict(
    shape=(128, 96),
    rng=11,
    fwhm=1.5,
    n_cosmic_rays=12,
    n_hot_pixels=8,
    n_satellites=1,
    n_bad_columns=2,
    bleed=True,
    n_stars=30,
    n_galaxies=6,
    psf_model="moffat",
)
SEEDED_FRAMES = [
    (
        dict(shape=(96, 128), rng=7),
        "5cd1caf3f05d3b0a6d6027475721d1051fd9b9171b17b7424d67b16c9a1d27f4",
    ),
    (
        _BUSY_FRAME,
        "9e250115e2516f9f1b806137a77ba8e17c9147dc06598438a495041c796c86b2",
    ),
    (
        dict(_BUSY_FRAME, n_galaxies=0),
        "cccdbcd404d56aa548b887adfef682b121197d1097d59b7c67d94b380e9322fe",
    ),
    (
        dict(shape=(96, 128), rng=7, n_galaxies=0),
        "a57a21a9ab8a7b797d93fed0f8cc5c7af0bfa7d642ff25c446102b736c34e116",
    ),
]


@pytest.mark.parametrize(("options", "expected"), SEEDED_FRAMES)
def test_seeded_frame_is_unchanged(options, expected):
    assert frame_digest(simulate_frame(**options, **LATER_OPTIONS)) == expected


def test_settings_object_and_keyword_overrides_give_the_same_frame():
    from rbvet.core.simulate import SimulationSettings

    options, _ = SEEDED_FRAMES[1]
    options = dict(options)
    shape, rng, fwhm = options.pop("shape"), options.pop("rng"), options.pop("fwhm")
    settings = SimulationSettings(fwhm=fwhm, **options)
    expected = frame_digest(simulate_frame(shape, fwhm, rng, **options))
    assert frame_digest(simulate_frame(shape, rng=rng, settings=settings)) == expected
    # An override replaces that one setting of the object, and nothing else.
    overridden = simulate_frame(
        shape, rng=rng, settings=dataclasses.replace(settings, n_stars=3), n_stars=30
    )
    assert frame_digest(overridden) == expected
    fewer = simulate_frame(shape, rng=rng, settings=settings, n_stars=3, pair_fraction=0)
    assert int(np.sum(fewer.truth["kind"] == "star")) == 3
    assert settings.n_stars == 30  # the settings object is never changed


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match="n_planets"):
        simulate_frame((32, 32), rng=1, n_planets=3)


def test_every_setting_has_a_docstring():
    import ast
    import inspect

    from rbvet.core.simulate import SimulationSettings

    body = ast.parse(inspect.getsource(SimulationSettings)).body[0].body
    documented = {
        node.target.id
        for node, after in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
    }
    names = {item.name for item in dataclasses.fields(SimulationSettings)}
    assert len(names) >= 34 and documented == names


# --- noise draw and kind maps (the fast paths) -------------------------------------------


def test_noisy_image_has_the_photon_and_read_noise_of_each_pixel():
    from rbvet.core.simulate.frame import POISSON_MAX_COUNTS, _noisy_image

    gain, read_noise = 2.0, 3.0
    faint, bright = 0.25 * POISSON_MAX_COUNTS / gain, 40.0 * POISSON_MAX_COUNTS / gain
    mean = np.repeat(np.array([[faint], [bright]], np.float32), 200_000, axis=1)
    image = _noisy_image(np.random.default_rng(3), mean, gain, read_noise)
    assert image.dtype == np.float32 and image.shape == mean.shape
    for row, level in enumerate((faint, bright)):
        values = image[row].astype(np.float64)
        variance = level / gain + read_noise**2
        assert values.mean() == pytest.approx(level, abs=5 * np.sqrt(variance / values.size))
        assert values.var() == pytest.approx(variance, rel=0.02)


def test_noisy_image_is_poisson_where_few_electrons_are_expected():
    from rbvet.core.simulate.frame import POISSON_MAX_COUNTS, _noisy_image

    gain, n = 1.5, 400_000
    counts = np.array([[4.0], [4.0 * POISSON_MAX_COUNTS]], np.float32)
    image = _noisy_image(np.random.default_rng(4), np.repeat(counts / gain, n, 1), gain, 0.0)
    faint, bright = image.astype(np.float64) * gain  # electrons
    # Without read noise, faint pixels hold whole electrons with Poisson's skew, 1/sqrt(4);
    # bright ones are continuous, with the Poisson variance and skew, 1/sqrt(400): the
    # tails, where noise peaks come from, of a Poisson draw (a plain Gaussian has none).
    assert np.allclose(faint, np.rint(faint), atol=1e-4)
    assert np.mean((faint - 4.0) ** 3) / 4.0**1.5 == pytest.approx(0.5, abs=0.03)
    assert np.mean(np.abs(bright - np.rint(bright)) > 0.01) > 0.9
    level = float(counts[1, 0])
    assert bright.var() == pytest.approx(level, rel=0.01)
    skew = np.mean((bright - bright.mean()) ** 3) / bright.std() ** 3
    assert skew == pytest.approx(1.0 / np.sqrt(level), abs=0.015)


def test_dominant_kind_is_the_strongest_layer_above_the_floor():
    from rbvet.core.simulate.truth import _dominant_kind

    rng = np.random.default_rng(5)
    shape = (64, 80)
    layers = [
        np.where(rng.uniform(size=shape) < 0.2, rng.normal(0.0, 5.0, shape), 0.0) for _ in range(3)
    ]
    layers.insert(1, np.zeros(shape))  # a kind absent from the frame
    floor = rng.uniform(0.5, 2.0, shape)
    strength = np.abs(np.stack(layers))
    expected = np.where(strength.max(0) > floor, strength.argmax(0) + 1, 0)
    kind = _dominant_kind(layers, floor)
    assert kind.dtype == np.uint8
    np.testing.assert_array_equal(kind, expected)
    assert set(np.unique(kind)) == {0, 1, 3, 4}


def test_cosmic_ray_diffusion_is_the_frame_wide_convolution():
    from scipy import ndimage

    from rbvet.core.simulate.artifacts import _diffusion_kernel, _paint_artifacts

    shape = (40, 50)
    rows = np.array([0, 5, 5, 39, 20, -1, 20])  # on the edges, and one off the frame
    cols = np.array([0, 7, 8, 49, 25, 3, 50])
    values = np.array([100.0, 50.0, 80.0, 30.0, 200.0, 999.0, 999.0])
    owner = np.array([0, 1, 1, 2, 3, 4, 4])
    columns = dict(x=np.zeros(5), y=np.zeros(5))
    background = np.full(shape, 100.0)
    args = ("cosmic_ray", ("single",), np.zeros(5, int), (owner, rows, cols, values))
    args += (np.ones(5), np.zeros(5, int), np.zeros(5, int), background, {"saturation": 1e9})
    layer, truth = _paint_artifacts(*args, diffusion=0.6, **columns)
    plain, _ = _paint_artifacts(*args, diffusion=0.0, **columns)
    kernel = _diffusion_kernel(0.6)
    expected = ndimage.convolve1d(plain, kernel, axis=0, mode="constant")
    expected = ndimage.convolve1d(expected, kernel, axis=1, mode="constant")
    np.testing.assert_allclose(layer, expected, rtol=1e-12, atol=1e-12)
    assert layer.sum() < values[:5].sum()  # light of edge deposits spread off the frame
    np.testing.assert_allclose(
        truth["peak"][:4], [expected[0, 0], expected[5, 8], expected[39, 49], expected[20, 25]]
    )
