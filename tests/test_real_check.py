"""The assessment's figures against labels: S/N as injections count it, label-measured
figures, and injection against labels on real labelled frames (tests/data/real)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from conftest import star_field

from rbvet.core.classify import open_frame_and_catalog, score_objects
from rbvet.core.inject.assess import STAR_SNR_MIN, assess_loaded
from rbvet.core.inject.inject import InjectionSettings, injected_frame, paint_round
from rbvet.core.inject.labelled import label_measured
from rbvet.core.inject.psf import (
    FramePsf,
    matched_filter_snr,
    measure_frame_psf,
    moffat_psf,
)
from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import run_job
from rbvet.core.model.cache import cached_model

REAL = Path(__file__).parent / "data" / "real"


def test_measured_snr_is_the_snr_an_injected_star_is_given():
    rng = np.random.default_rng(4)
    sky = (100.0 + rng.normal(0.0, 5.0, (200, 200))).astype(np.float32)
    # Saturation given: without it the frame's brightest pixel (here the sky's) clips.
    frame = frame_from_array(sky, saturation=1e6).ensure_background()
    frame_psf = FramePsf(moffat_psf(3.0), "fallback", 0, 3.0, "test")
    grid = np.arange(30.0, 180.0, 40.0)
    px, py = (v.ravel() for v in np.meshgrid(grid, grid))
    kinds = np.full(px.size, "star", object)
    settings = InjectionSettings(star_snr=(40.0, 40.001))
    image, truth = paint_round(frame, frame_psf, px, py, kinds, settings, rng)
    painted = injected_frame(frame, image, np.inf)
    measured = matched_filter_snr(painted, frame_psf, truth["x"], truth["y"])
    # Each star's S/N is 40 +- 1 (its noise); a peak or aperture S/N would be far off.
    assert np.mean(measured / truth["snr"]) == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(measured - truth["snr"]) < 5.0)
    empty = matched_filter_snr(frame, frame_psf, truth["x"], truth["y"])
    assert np.all(np.abs(empty) < 5.0)  # the sky alone: noise


def test_label_measured_figures_count_as_the_assessment_counts():
    image, x, y, _ = star_field(shape=(160, 160), fwhm=3.0, n=9, snr=(60, 80), seed=2)
    frame = frame_from_array(image).ensure_background()
    frame_psf = FramePsf(moffat_psf(3.0), "fallback", 0, 3.0, "test")
    # Four labelled stars (the fourth undetected), one faint star below the S/N cut,
    # and two bogus objects on empty sky (the second undetected).
    faint = frame_psf.psf.profile(*np.meshgrid(np.arange(-8, 9), np.arange(-8, 9)))
    image = image.copy()
    image[38:55, 38:55] += (12.0 * faint).astype(np.float32)  # peak 2.4 sigma at (46, 46)
    frame = frame_from_array(image).ensure_background()
    truth = Table(
        {
            "x": [x[0], x[1], x[2], x[3], 46.0, 46.0, 113.0],
            "y": [y[0], y[1], y[2], y[3], 46.0, 113.0, 46.0],
            "true_label": [1, 1, 1, 1, 1, 0, 0],
            "kind": ["star"] * 5 + ["cosmic_ray", "hot_pixel"],
        }
    )
    detections = Table({"x": [x[0] + 0.5, x[1], x[2], 46, 46.5], "y": [y[0], y[1], y[2], 46, 113]})
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.7])
    result = label_measured(frame, detections, scores, truth, frame_psf, threshold=0.5)
    assert np.all(result.snr[:4] >= STAR_SNR_MIN) and 1.0 < result.snr[4] < STAR_SNR_MIN
    summary = result.summary
    assert summary["star_completeness"] == pytest.approx(2 / 4)  # low score, undetected
    assert summary["artifact_rejection"] == 0.0  # the one detected is called real
    assert summary["artifact_rejection_by_kind"] == {"cosmic_ray": 0.0}
    assert summary["counts"]["stars_bright"] == 4 and summary["counts"]["bogus_detected"] == 1
    assert np.isnan(result.scores[3]) and result.scores[0] == pytest.approx(0.9)


def test_an_unmeasured_fwhm_is_said_in_the_psf_note():
    """Hot pixels only: no star gives a FWHM, the PSF is a guess and the note says so."""
    rng = np.random.default_rng(5)
    image = rng.normal(100.0, 5.0, (128, 128)).astype(np.float32)
    x, y = rng.uniform(10, 118, 20), rng.uniform(10, 118, 20)
    image[np.rint(y).astype(int), np.rint(x).astype(int)] += 500.0
    frame = frame_from_array(image).ensure_background()
    table = Table({"x": np.rint(x), "y": np.rint(y)})
    result = measure_frame_psf(frame, table, 3.0)
    assert result.source == "fallback" and result.fwhm_source == "default"
    assert "FWHM not measured" in result.note and result.facts()["fwhm_source"] == "default"
    assert measure_frame_psf(frame, table, 2.5, fwhm_given=True).fwhm_source == "given"


def labelled_frame(name, labels):
    model = cached_model()
    frame, table, fwhm = run_job(open_frame_and_catalog(REAL / name))
    scores, _ = run_job(score_objects(frame, table["x"], table["y"], model, fwhm))
    truth = Table.read(REAL / labels, format="ascii.ecsv")
    frame_psf = measure_frame_psf(frame, table, fwhm)
    measured = label_measured(frame, table, scores, truth, frame_psf, model.threshold)
    return model, frame, table, fwhm, measured.summary


def test_injected_star_completeness_matches_the_labels_on_a_real_frame():
    """UKIDSS WFCAM: 7 labelled stars of S/N >= 20, all kept; injections say the same
    within 10 points (one star of 7 is 14), from at least 15 injected bright stars."""
    model, frame, table, fwhm, labelled = labelled_frame(
        "ukidss_wfcam_image.fits", "ukidss_wfcam_image.labels.ecsv"
    )
    assert labelled["counts"]["stars_bright"] >= 5
    settings = InjectionSettings(injections=240, rounds=4, mix={"star": 1.0}, seed=3)
    injected = run_job(assess_loaded(frame, table, fwhm, model, settings=settings)).summary
    assert injected["psf"]["psf_source"] == "empirical"
    assert injected["counts"]["stars_bright"] >= 15
    assert injected["star_completeness"] == pytest.approx(labelled["star_completeness"], abs=0.10)


def test_injected_hit_rejection_matches_the_labels_on_a_raw_frame():
    """SAAO 1 m raw: its 18 labelled cosmic-ray hits are all rejected, and so are the
    injected hits (within 5 points, from at least 40 detected)."""
    model, frame, table, fwhm, labelled = labelled_frame(
        "saao_1m_raw_a8280271.fits", "saao_1m_raw_a8280271.labels.ecsv"
    )
    assert labelled["counts"]["bogus_detected"] >= 15
    settings = InjectionSettings(injections=200, rounds=4, mix={"cosmic_ray": 1.0}, seed=3)
    injected = run_job(assess_loaded(frame, table, fwhm, model, settings=settings)).summary
    assert injected["counts"]["detected_by_kind"]["cosmic_ray"] >= 40
    assert injected["artifact_rejection_by_kind"]["cosmic_ray"] == pytest.approx(
        labelled["artifact_rejection_by_kind"]["cosmic_ray"], abs=0.05
    )


@pytest.mark.filterwarnings("ignore:.*TRIMSEC ignored")
def test_undersampled_aspen_frame_is_assessed_with_its_own_sharp_psf():
    """Aspen thumbnail (stars with ~1 px cores among 154 hot pixels): the FWHM is measured
    as undersampled (not the 3 px default), the injected stars are the fitted
    pixel-integrated Gaussian, and their completeness follows the labels within one star
    of the six bright ones (it was 100 % injected against 14 % labelled with 3-px Moffats)."""
    model, frame, table, fwhm, labelled = labelled_frame(
        "aspen_cg16_ey_uma.fit.gz", "aspen_cg16_ey_uma.labels.ecsv"
    )
    assert 0.7 < fwhm < 1.1
    bright = labelled["counts"]["stars_bright"]
    assert bright >= 5
    settings = InjectionSettings(injections=800, rounds=12, mix={"star": 1.0}, seed=3)
    injected = run_job(assess_loaded(frame, table, fwhm, model, settings=settings)).summary
    assert injected["psf"]["psf_source"] == "fitted"
    assert injected["counts"]["stars_bright"] >= 15
    assert injected["star_completeness"] == pytest.approx(
        labelled["star_completeness"], abs=1.0 / bright + 0.01
    )
