"""Injection-recovery: the frame's PSF, placement, painting, matching, figures and the CLI."""

import json
import sys

import numpy as np
import pytest
from astropy.table import Table
from conftest import render_gaussians, star_field

from rbvet.cli import main
from rbvet.core.detect.psf import measure_fwhm
from rbvet.core.errors import RbvetError
from rbvet.core.inject.assess import (
    STAR_SNR_MIN,
    Assessment,
    _match,
    _record_detections,
    _tree,
    assess_loaded,
    inject_rounds,
    summarize_injections,
)
from rbvet.core.inject.inject import (
    InjectionSettings,
    draw_kinds,
    free_distance,
    paint_round,
    place_injections,
)
from rbvet.core.inject.psf import empirical_psf, fourier_shift
from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import Progress, run_job
from rbvet.core.learn.metrics import bootstrap_error_rates, error_rates
from rbvet.core.model.cache import cached_model
from rbvet.core.paths import demo_frame_path


@pytest.fixture(scope="module")
def field():
    """A 256² field of 49 isolated Gaussian stars, FWHM 3 px, and its frame."""
    image, x, y, _ = star_field(shape=(256, 256), fwhm=3.0, n=49, snr=(40, 200), seed=1)
    frame = frame_from_array(image).ensure_background()
    return frame, x, y


def test_empirical_psf_is_centred_and_as_wide_as_the_stars(field):
    frame, x, y = field
    estimate = measure_fwhm(frame, x, y)
    result = empirical_psf(frame, x, y, estimate)
    assert result.source == "empirical" and result.n_stars >= 20
    stamp = result.psf.stamp
    assert stamp.sum() == pytest.approx(1.0)
    u = np.arange(stamp.shape[0]) - stamp.shape[0] // 2
    assert abs((stamp.sum(axis=0) * u).sum()) < 0.05  # sub-pixel aligned: centred
    assert abs((stamp.sum(axis=1) * u).sum()) < 0.05
    # The stars' own profile (a pixel-integrated Gaussian of 3 px FWHM) within 1.5 % of
    # its peak; a stack without sub-pixel alignment is 3 % off (wider).
    centre = stamp.shape[0] // 2
    true = render_gaussians(stamp.shape, [centre], [centre], [1.0], 3.0)
    assert np.abs(stamp - true).max() < 0.015 * true.max()


def test_psf_falls_back_to_a_moffat_without_stars_and_says_so():
    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, (128, 128)).astype(np.float32))
    frame.ensure_background()
    with pytest.warns(Warning):
        estimate = measure_fwhm(frame, [30.0, 60.0], [30.0, 60.0])
    result = empirical_psf(frame, [30.0, 60.0], [30.0, 60.0], estimate)
    assert result.source == "fallback" and result.psf.model == "moffat"
    assert "Moffat" in result.note and "0 usable stars" in result.note


def test_fourier_shift_moves_a_stamp_by_a_sub_pixel_amount():
    u = np.arange(21) - 10
    gauss = np.exp(-0.5 * ((u[None, :] - 0.0) ** 2 + u[:, None] ** 2) / 2.0**2)[None]
    moved = fourier_shift(gauss, np.array([0.4]), np.array([-0.3]))[0]
    assert (moved.sum(axis=0) * u).sum() / moved.sum() == pytest.approx(0.4, abs=1e-3)
    assert (moved.sum(axis=1) * u).sum() / moved.sum() == pytest.approx(-0.3, abs=1e-3)


def test_injections_keep_clear_of_objects_and_of_each_other(field):
    frame, x, y = field
    distance = free_distance(frame, x, y)
    rng = np.random.default_rng(0)
    px, py = place_injections(distance, 500, 32.0, 8.0, rng)
    assert 0 < px.size < 500  # a 256² frame has no room for 500
    ix, iy = np.rint(px).astype(int), np.rint(py).astype(int)
    assert np.all(distance[iy, ix] >= 8.0)
    nearest_star = np.hypot(px[:, None] - x[None, :], py[:, None] - y[None, :]).min(axis=1)
    assert nearest_star.min() >= 8.0
    pairs = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :])
    np.fill_diagonal(pairs, np.inf)
    assert pairs.min() >= 0.6 * 32.0  # jitter is +-0.2 step


def test_a_frame_with_no_room_places_nothing():
    distance = np.zeros((200, 200), np.float32)
    distance[90:110, 90:110] = 50.0
    px, _ = place_injections(distance, 100, 32.0, 6.0, np.random.default_rng(1))
    assert px.size <= 1


def test_painted_round_puts_each_kind_where_asked(field):
    frame, x, y = field
    estimate = measure_fwhm(frame, x, y)
    frame_psf = empirical_psf(frame, x, y, estimate)
    px = np.array([40.0, 80.0, 120.0, 160.0, 200.0, 230.0])
    py = np.full(6, 20.0)
    kinds = np.array(
        ["star", "galaxy", "cosmic_ray", "hot_pixel", "satellite", "bad_column"], object
    )
    settings = InjectionSettings(star_snr=(50.0, 50.001))
    image, truth = paint_round(frame, frame_psf, px, py, kinds, settings, np.random.default_rng(2))
    assert sorted(truth["kind"]) == sorted(kinds)
    for kind, expected_x in zip(kinds, px, strict=True):
        row = truth[truth["kind"] == kind][0]
        assert abs(row["x"] - expected_x) < 10 and abs(row["y"] - 20.0) < 12
    star = truth[truth["kind"] == "star"][0]
    assert star["snr"] == pytest.approx(50.0, rel=0.01)
    assert np.isnan(truth[truth["kind"] == "cosmic_ray"]["snr"][0])
    added = image - frame.image
    assert added[15:26, 35:46].sum() == pytest.approx(star["flux"], rel=0.02)  # the star


def test_bootstrap_intervals_hold_the_rate_and_shrink_with_more_objects():
    rng = np.random.default_rng(3)
    thresholds = np.linspace(0, 1, 21)
    widths = []
    for n in (200, 3200):
        scores = np.r_[rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.7, n)]
        labels = np.r_[np.ones(n), np.zeros(n)]
        rates = bootstrap_error_rates(scores, labels, thresholds, rng=1)
        fnr, fpr = error_rates(scores, labels, thresholds)
        np.testing.assert_array_equal(rates["fnr"], fnr)
        assert np.all(rates["fnr_low"] <= fnr + 1e-12) and np.all(fnr <= rates["fnr_high"] + 1e-12)
        assert np.all(rates["fpr_low"] <= fpr + 1e-12) and np.all(fpr <= rates["fpr_high"] + 1e-12)
        widths.append(rates["fnr_high"][10] - rates["fnr_low"][10])  # threshold 0.5
    # The binomial 95 % width at FNR ~ 0.29: 3.92 sqrt(p (1 - p) / n).
    assert widths[0] == pytest.approx(3.92 * np.sqrt(0.29 * 0.71 / 200), rel=0.3)
    assert widths[1] < 0.35 * widths[0]


def _truth(rows):
    names = ("kind", "subkind", "snr", "detected", "score")
    return Table(rows=rows, names=names)


def test_summary_counts_bright_stars_and_detected_artifacts_only():
    truth = _truth(
        [
            ("star", "single", 30.0, True, 0.9),  # bright, kept
            ("star", "single", 25.0, True, 0.2),  # bright, called bogus
            ("star", "single", 40.0, False, np.nan),  # bright, missed
            ("star", "single", 5.0, True, 0.1),  # faint: not in star_completeness
            ("galaxy", "sersic", 50.0, True, 0.8),
            ("cosmic_ray", "worm", np.nan, True, 0.1),  # rejected
            ("cosmic_ray", "track", np.nan, True, 0.7),  # let through
            ("hot_pixel", "single", np.nan, True, 0.05),  # rejected
            ("hot_pixel", "single", np.nan, False, np.nan),  # undetected: not counted
        ]
    )
    summary = summarize_injections(truth, threshold=0.5)
    assert summary["star_completeness"] == pytest.approx(1 / 3)
    assert summary["star_detection"] == pytest.approx(2 / 3)
    assert summary["artifact_rejection"] == pytest.approx(2 / 3)
    assert summary["artifact_rejection_by_kind"] == {"cosmic_ray": 0.5, "hot_pixel": 1.0}
    assert summary["artifact_rejection_by_subkind"]["cosmic_ray/track"] == 0.0
    assert summary["counts"]["stars_bright"] == 3 and summary["counts"]["scored"] == 7
    star_curve = summary["completeness"]["star"]
    assert sum(star_curve["injected"]) == 4 and sum(star_curve["called_real"]) == 1
    curves = summary["curves"]
    at_half = curves["threshold"].index(0.5)
    assert curves["fnr"][at_half] == pytest.approx(2 / 4)  # of 4 detected real: 2 below
    assert curves["fpr"][at_half] == pytest.approx(1 / 3)
    assert STAR_SNR_MIN == 20.0


def test_detections_match_new_objects_near_their_injection():
    truth = Table(
        {
            "x": [50.0, 150.0],
            "y": [50.0, 50.0],
            "kind": ["star", "cosmic_ray"],
            "subkind": ["single", "track"],
            "length": [np.nan, 20.0],
        }
    )
    found = Table({"x": [51.0, 158.0, 100.0, 50.5], "y": [50.0, 51.0, 50.0, 55.0]})
    baseline = _tree(np.array([50.5]), np.array([55.2]))  # the last one was there before
    owner = _match(found, truth, baseline, step=64.0, fwhm=3.0)
    # the star; a track piece 8 px from the centre (reach 4.5 + 10); nothing; an old object
    np.testing.assert_array_equal(owner, [0, 1, -1, -1])
    _record_detections(truth, owner[owner >= 0], np.array([0.9, 0.2], np.float32))
    np.testing.assert_array_equal(truth["detected"], [True, True])
    np.testing.assert_allclose(truth["score"], [0.9, 0.2], rtol=1e-6)


def test_a_track_cut_in_pieces_is_let_through_by_its_best_piece():
    truth = Table({"x": [0.0]})
    _record_detections(truth, np.array([0, 0, 0]), np.array([0.1, 0.8, np.nan], np.float32))
    assert truth["n_detections"][0] == 3 and truth["score"][0] == pytest.approx(0.8)


def test_assessment_of_a_simulated_frame(crowded_frame):
    frame, table = crowded_frame
    settings = InjectionSettings(injections=120, rounds=2, extra_rounds=0, seed=4)
    progress = []
    assessment = run_job(
        assess_loaded(frame, table, 2.5, cached_model(), settings=settings),
        progress.append,
    )
    summary = assessment.summary
    assert all(isinstance(p, Progress) for p in progress)
    done = [p.done for p in progress if p.total]
    assert done == sorted(done) and progress[-1].done == progress[-1].total
    counts = summary["counts"]
    assert counts["requested"] == 120 and 0 < counts["placed"] <= 120
    assert counts["placed"] == sum(counts["placed_by_round"]) == len(assessment.truth)
    assert set(np.unique(assessment.truth["round"])) == {0, 1}
    assert summary["psf"]["psf_source"] in ("empirical", "fallback")
    assert 0.0 <= summary["star_completeness"] <= 1.0
    # The shipped model keeps bright stars and rejects most hits on a simulated frame.
    assert summary["star_completeness"] > 0.8
    assert summary["artifact_rejection_by_kind"]["cosmic_ray"] > 0.7
    parsed = json.loads(assessment.to_json())
    assert parsed["frame_hash"] == frame.content_hash and parsed["model"]


def test_closing_an_assessment_stops_it(crowded_frame):
    frame, table = crowded_frame
    job = assess_loaded(
        frame, table, 2.5, cached_model(), settings=InjectionSettings(injections=60, rounds=3)
    )
    for progress in job:
        if "round 2" in progress.message:
            break
    job.close()
    with pytest.raises(StopIteration):
        next(job)


def test_cli_assess_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "assess.json"
    demo = demo_frame_path()
    code = main(
        [
            "assess",
            str(demo),
            "--catalog",
            str(demo.with_suffix(".ecsv")),
            "--rounds",
            "2",
            "--injections",
            "160",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "demo"),
        ]
    )
    assert code == 0
    figures = json.loads(out.read_text())
    for key in ("threshold", "star_completeness", "artifact_rejection"):
        assert 0.0 <= figures[key] <= 1.0
    assert set(figures["artifact_rejection_by_kind"]) <= {
        "cosmic_ray",
        "hot_pixel",
        "satellite",
        "bad_column",
    }
    assert figures["counts"]["requested"] == 160 and figures["psf"]["psf_source"]
    assert figures["settings"]["rounds"] == 2 and figures["model"]
    assert (tmp_path / "demo_completeness.png").stat().st_size > 1000
    assert (tmp_path / "demo_rates.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "star completeness" in printed and "artifact rejection" in printed


def test_cli_assess_says_how_many_fit_in_a_crowded_frame(tmp_path, capsys):
    from astropy.io import fits

    image, *_ = star_field(shape=(192, 192), fwhm=3.0, n=16, snr=(40, 200), seed=2)
    path = tmp_path / "small.fits"
    fits.writeto(path, image)
    out = tmp_path / "small.json"
    command = ["assess", str(path), "--injections", "400", "--extra-rounds", "2"]
    assert main([*command, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert 0 < figures["counts"]["placed"] < 400
    assert len(figures["counts"]["placed_by_round"]) == 4 + 2  # the rounds, and the extra ones
    assert figures["settings"]["extra_rounds"] == 2
    assert f"room for only {figures['counts']['placed']} of 400" in capsys.readouterr().out


def test_cli_assess_refuses_a_frame_with_no_room_and_writes_nothing(tmp_path, capsys):
    from astropy.io import fits

    image, *_ = star_field(shape=(96, 96), fwhm=3.0, n=49, snr=(40, 200), seed=2)
    path = tmp_path / "full.fits"
    fits.writeto(path, image)
    out = tmp_path / "full.json"
    assert main(["assess", str(path), "--json", str(out)]) == 2
    assert "no room to inject" in capsys.readouterr().err
    assert not out.exists()


def test_cli_assess_plot_without_matplotlib_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    out = tmp_path / "x.json"
    code = main(
        ["assess", str(demo_frame_path()), "--plot", str(tmp_path / "p"), "--json", str(out)]
    )
    assert code == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not out.exists()  # refused before any work


def test_assessment_json_has_no_nan():
    summary = {"a": float("nan"), "b": [1.0, np.float32("nan")], "c": np.int64(3)}
    assert json.loads(Assessment(None, summary).to_json()) == {"a": None, "b": [1.0, None], "c": 3}


@pytest.fixture(scope="module")
def starless():
    """An assessment of a small frame of pure noise: no star for a PSF, little room."""
    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, (160, 160)).astype(np.float32))
    table = Table({"x": [40.0, 120.0], "y": [40.0, 120.0]})
    settings = InjectionSettings(injections=60, rounds=2, extra_rounds=0)
    return run_job(assess_loaded(frame, table, 2.5, cached_model(), settings=settings))


def test_an_assessment_without_stars_says_its_psf_is_a_fallback(starless):
    assert starless.summary["psf"]["psf_source"] == "fallback"
    caveats = starless.caveats()
    assert any("Moffat" in caveat and "0 usable stars" in caveat for caveat in caveats)
    assert "note: stars and galaxies were injected with a Moffat" in starless.describe()


def test_an_assessment_of_a_small_frame_says_how_many_fit(starless):
    placed = starless.summary["counts"]["placed"]
    assert 0 < placed < 60
    assert f"room for only {placed} of 60 injections" in starless.caveats()[0]


def test_cli_assess_interrupted_writes_nothing(tmp_path, capsys, monkeypatch):
    import rbvet.core.inject.assess as assess_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl+C once every round has been scored

    monkeypatch.setattr(assess_module, "summarize_injections", interrupted)
    demo = demo_frame_path()
    out = tmp_path / "assess.json"
    arguments = ["assess", str(demo), "--injections", "60", "--rounds", "1"]
    assert main([*arguments, "--json", str(out), "--plot", str(tmp_path / "p")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_small_frame_gets_extra_rounds_until_the_injections_asked_for_are_placed():
    image, x, y, _ = star_field(shape=(192, 192), fwhm=3.0, n=16, snr=(40, 200), seed=2)
    frame = frame_from_array(image)
    table = Table({"x": x, "y": y})

    def placed_by_round(extra_rounds, injections=60):
        settings = InjectionSettings(
            injections=injections, rounds=2, extra_rounds=extra_rounds, seed=1
        )
        rounds = run_job(inject_rounds(frame, table, 3.0, settings, lambda *_: None))
        truth_rounds = np.concatenate([np.asarray(r.truth["round"]) for r, _ in rounds.results])
        assert set(truth_rounds) <= set(range(len(rounds.placed_by_round)))
        return rounds.placed_by_round

    planned = placed_by_round(0)
    assert len(planned) == 2 and 0 < sum(planned) < 60  # the frame is too small for 60 at once
    filled = placed_by_round(InjectionSettings.extra_rounds)
    assert filled[:2] == planned  # the planned rounds are the same; more come after them
    assert 2 < len(filled) <= 2 + InjectionSettings.extra_rounds and sum(filled) == 60
    capped = placed_by_round(3, injections=10_000)
    assert len(capped) == 5 and sum(capped) > sum(planned)


def test_the_artifacts_injected_come_in_a_frames_usual_shares():
    """Hits and hot pixels are nearly all of a frame's artifacts; trails and column pieces
    are few, yet enough of them come in 1000 injections for their own figures."""
    kinds = draw_kinds(InjectionSettings(), 100_000, np.random.default_rng(0))
    artifacts = kinds[~np.isin(kinds, ("star", "galaxy"))]
    share = {kind: np.mean(artifacts == kind) for kind in np.unique(artifacts)}
    assert share["cosmic_ray"] + share["hot_pixel"] > 0.9
    assert 0.01 < share["satellite"] < 0.04 and 0.01 < share["bad_column"] < 0.04
    assert 0.35 < np.mean(kinds == "star") and 0.4 < len(artifacts) / len(kinds) < 0.5


def test_a_cut_out_whose_planned_rounds_found_no_room_gets_it_from_extra_rounds():
    """A 40 x 100 px frame has few grid points: the two planned rounds (seed 1) place
    nothing, and the extra rounds' other grids find room for some."""
    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, (40, 100)).astype(np.float32))
    table = Table({"x": [20.0, 50.0, 80.0], "y": [20.0, 20.0, 20.0]})

    def rounds(extra_rounds):
        settings = InjectionSettings(injections=60, rounds=2, extra_rounds=extra_rounds, seed=1)
        return run_job(inject_rounds(frame, table, 3.0, settings, lambda *_: None))

    with pytest.raises(RbvetError, match="no room to inject anything"):
        rounds(0)
    placed = rounds(InjectionSettings.extra_rounds).placed_by_round
    assert placed[:2] == [0, 0] and sum(placed) > 10
