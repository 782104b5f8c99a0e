"""Simulated epochs, weak labels from repeated exposures and reference catalogs, and their
place in the label store (apart from the user's own labels)."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.errors import RbvetError
from rbvet.core.io.frame import frame_from_array
from rbvet.core.learn.labels import SCHEMA_VERSION, LabelStore
from rbvet.core.learn.weak import (
    FrameObjects,
    ReferenceCatalog,
    measure_on_simulated_epochs,
    overlap_groups,
    read_reference,
    reference_labels,
    repeat_labels,
)
from rbvet.core.simulate import Exposure, simulate_epochs
from rbvet.core.simulate.epochs import epoch_wcs

SHAPE = (200, 200)
SCHEMA_2_STORE = Path(__file__).parent / "data" / "labels_schema_2.sqlite"
"""Made by rbvet at 882b244 (schema 2): five objects, 1 and 2 real (key, ada, scores 0.9
and 0.8), 3 bogus, 4 bogus then real by the model, 5 labeled real and undone."""


# ------------------------------------------------------------------------------ epochs


def test_epochs_see_the_same_sky_with_their_own_artifacts():
    epochs = simulate_epochs(3, (256, 256), rng=4, n_stars=60, n_galaxies=10, n_cosmic_rays=20)
    skies, hits = [], []
    for epoch in epochs:
        truth = epoch.frame.truth
        stars = truth[truth["kind"] == "star"]
        ra, dec = epoch.wcs.pixel_to_world_values(stars["x"], stars["y"])
        skies.append(np.round(np.column_stack([ra, dec]) * 3.6e5))  # 0.01 arcsec
        rays = truth[truth["kind"] == "cosmic_ray"]
        hits.append({(round(x), round(y)) for x, y in zip(rays["x"], rays["y"], strict=True)})
    shifts = [epoch.exposure.shift for epoch in epochs]
    assert len({tuple(np.round(shift, 3)) for shift in shifts}) == 3  # pointings differ
    common = set(map(tuple, skies[0])) & set(map(tuple, skies[1])) & set(map(tuple, skies[2]))
    assert len(common) >= 0.9 * len(skies[0])  # same stars, same sky (edges may drop a few)
    assert len(hits[0] & hits[1]) <= 1 and len(hits[0]) == 20  # cosmic rays of their own
    again = simulate_epochs(3, (256, 256), rng=4, n_stars=60, n_galaxies=10, n_cosmic_rays=20)
    assert np.array_equal(again[2].frame.image, epochs[2].frame.image)


def test_an_exposure_with_no_offset_keeps_the_sky_and_redraws_only_its_own_artifacts():
    from rbvet.core.simulate import simulate_frame

    options = dict(n_stars=30, n_galaxies=5, n_cosmic_rays=10, n_satellites=0)
    plain = simulate_frame((128, 128), rng=9, **options)
    exposure = simulate_frame((128, 128), rng=9, exposure=Exposure(seed=1), **options)
    assert np.array_equal(plain.sources, exposure.sources)
    assert not np.array_equal(plain.artifacts, exposure.artifacts)
    assert exposure.params["exposure"] == {"seed": 1, "shift": (0.0, 0.0), "rotation": 0.0}


def test_simulate_epochs_command_writes_aligned_frames_and_truth(tmp_path):
    out = tmp_path / "field.fits"
    args = ["simulate", "--epochs", "2", "-o", str(out), "--size", "128", "--seed", "3"]
    assert main(args) == 0
    for number in (1, 2):
        header = fits.getheader(tmp_path / f"field_{number}.fits")
        assert header["CTYPE1"] == "RA---TAN" and header["EPOCH"] == number
        catalog = Table.read(tmp_path / f"field_{number}.ecsv")
        assert {"x", "y", "true_label", "true_kind"} <= set(catalog.colnames)
    first = fits.getheader(tmp_path / "field_1.fits")
    second = fits.getheader(tmp_path / "field_2.fits")
    assert first["CRPIX1"] != second["CRPIX1"]  # each pointing in its own WCS
    assert main(args + ["--catalog", str(tmp_path / "c.ecsv")]) == 2


# ----------------------------------------------------------------- repeats, by hand


def objects_in(exposure, x, y, peak, noise=1.0, shape=SHAPE):
    """FrameObjects of an exposure with objects at (x, y) of its own pixels."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return FrameObjects(
        name=f"shift {exposure.shift}",
        wcs=epoch_wcs(shape, exposure),
        shape=shape,
        fwhm=3.0,
        x=x,
        y=y,
        peak=np.broadcast_to(np.asarray(peak, float), x.shape).copy(),
        saturated=np.zeros(len(x), bool),
        noise=np.full(shape, noise, np.float32),
        usable=np.ones(shape, bool),
    )


@pytest.mark.parametrize(
    "shifts, hot_pixel_label",
    [
        ([(0.0, 0.0), (6.0, -4.0), (-5.0, 5.0)], 0),  # dithered away: seen once on the sky
        ([(0.0, 0.0), (2.0, -1.0), (-1.5, 2.0)], -1),  # within a FWHM: cannot tell
    ],
)
def test_repeats_on_the_sky_are_real_and_repeats_on_the_detector_are_not(shifts, hot_pixel_label):
    star = np.array([[100.0, 90.0]])
    hot_pixel = np.array([[50.0, 150.0]])  # the same detector pixel in every exposure
    frames = []
    for seed, shift in enumerate(shifts):
        exposure = Exposure(seed, shift)
        sx, sy = exposure.to_pixels(star[:, 0], star[:, 1], SHAPE)
        frames.append(
            objects_in(exposure, [sx[0], hot_pixel[0, 0]], [sy[0], hot_pixel[0, 1]], 50.0)
        )
    for result in repeat_labels(frames):
        assert result.label.tolist() == [1, hot_pixel_label]
        assert result.repeats.tolist() == [2, 0]


def test_a_sharp_hit_missing_from_deep_exposures_is_an_artifact_and_a_faint_one_no_opinion():
    exposures = [Exposure(0, (0.0, 0.0)), Exposure(1, (6.0, -4.0)), Exposure(2, (-5.0, 5.0))]
    first = objects_in(exposures[0], [60.0, 140.0], [60.0, 140.0], [200.0, 6.0])
    others = [objects_in(exposure, [20.0], [180.0], 50.0) for exposure in exposures[1:]]
    evidence = repeat_labels([first, *others])
    assert evidence[0].label.tolist() == [0, -1]  # 200 σ hit absent; a 6 σ one could hide
    assert evidence[0].absent.tolist() == [2, 0]
    noisy = [objects_in(exposure, [20.0], [180.0], 50.0, noise=30.0) for exposure in exposures[1:]]
    assert repeat_labels([first, *noisy])[0].label.tolist() == [-1, -1]  # too shallow
    for other in others:
        other.signal = np.zeros(SHAPE, np.float32)
    column = int(np.rint(exposures[2].to_pixels(60.0, 60.0, SHAPE)[0]))
    others[1].signal[:, column - 1 : column + 2] = 150.0  # a trail over it, detected apart
    evidence = repeat_labels([first, *others])
    assert evidence[0].absent.tolist() == [1, 0] and evidence[0].label.tolist() == [-1, -1]


def test_frames_are_grouped_by_their_footprints_on_the_sky():
    near = [objects_in(Exposure(k, (3.0 * k, 0.0)), [10.0], [10.0], 50.0) for k in range(2)]
    far = objects_in(Exposure(5, (5000.0, 0.0)), [10.0], [10.0], 50.0)
    assert overlap_groups([near[0], far, near[1]]) == [[0, 2], [1]]
    assert repeat_labels([near[0], far, near[1]])[1].label.tolist() == [-1]
    image = np.zeros(SHAPE, np.float32)
    read = [frame_from_array(image, wcs=near[0].wcs), frame_from_array(image)]  # Frames too
    read.append(frame_from_array(image, wcs=near[1].wcs))
    assert overlap_groups(read) == [[0, 2], [1]]  # the frame without a WCS on its own


# --------------------------------------------------------------- repeats, simulated


def test_weak_labels_of_simulated_epochs_are_precise():
    measured = measure_on_simulated_epochs(
        (1, 3), n_epochs=4, size=320, n_stars=150, n_galaxies=30, n_cosmic_rays=15, n_hot_pixels=8
    )
    real, artifact = measured["real"], measured["artifact"]
    assert real["precision"] >= 0.99 and artifact["precision"] >= 0.98
    assert real["recall"] >= 0.5 and artifact["recall"] >= 0.5
    assert measured["reference"]["precision"] >= 0.97 and measured["reference"]["right"] > 50
    assert real["wrong"] + real["right"] > 100 and artifact["right"] > 30


# ----------------------------------------------------------------- reference catalog


def test_reference_matches_are_real_except_blends_and_saturated_objects(tmp_path):
    exposure = Exposure(0, (2.0, 1.0))
    x, y = [50.0, 120.0, 124.0, 160.0, 30.0, 80.0, 20.0], [50, 120, 121, 40, 170, 20, 100]
    frame = objects_in(exposure, x, y, 80)
    frame.saturated[3] = True
    frame.size = np.array([3.0, 3, 3, 3, 3, 0.8, np.nan])  # 5: a hit on a star
    frame.blended = np.zeros(7, bool)
    ra, dec = frame.wcs.pixel_to_world_values(frame.x + 0.3, frame.y - 0.2)
    catalog = tmp_path / "gaia.csv"
    ra, dec = np.delete(ra, 4), np.delete(dec, 4)
    Table({"RA_ICRS": ra, "DE_ICRS": dec, "Gmag": np.full(6, 15.0)}).write(catalog)
    reference = read_reference(catalog)
    (label,) = reference_labels([frame], reference)
    # 0 matched; 1, 2 a blend; 3 saturated; 4 not in the catalog; 5 sharp; 6 size unknown
    assert label.tolist() == [1, -1, -1, -1, -1, -1, 1]
    frame.blended[0] = True  # the detector deblended it from a neighbour
    assert reference_labels([frame], reference)[0].tolist()[0] == -1


def test_proper_motions_move_reference_positions_to_the_frame_epoch():
    frame = objects_in(Exposure(0), [100.0], [100.0], 80.0)
    frame.year = 2026.0
    ra, dec = frame.wcs.pixel_to_world_values(frame.x, frame.y)
    pmdec = 300.0  # mas/yr: 3 arcsec (6 px) in the 10 years from 2016
    reference = ReferenceCatalog(
        ra=ra, dec=dec - pmdec * 10 / 3.6e6, pmra=np.zeros(1), pmdec=np.full(1, pmdec)
    )
    assert reference_labels([frame], reference)[0].tolist() == [-1]  # no epoch: not moved
    reference.epoch = 2016.0
    assert reference_labels([frame], reference)[0].tolist() == [1]


@pytest.mark.parametrize("suffix", [".fits", ".vot", ".ecsv"])
def test_reference_catalogs_are_read_from_fits_votable_and_ecsv_with_proper_motions(
    tmp_path, suffix
):
    path = tmp_path / f"gaia{suffix}"
    table = Table({"ra": [150.0, 150.1], "dec": [2.2, 2.3], "pmra": [5.0, -1.0]})
    table["pmdec"] = [1.0, 2.0]
    table["ref_epoch"] = [2016.0, 2016.0]
    table.write(path, format="votable" if suffix == ".vot" else None)
    reference = read_reference(path)
    assert np.allclose(reference.ra, [150.0, 150.1]) and np.allclose(reference.dec, [2.2, 2.3])
    ra, dec = reference.at(2026.0)
    assert np.allclose((dec - reference.dec) * 3.6e6, [10.0, 20.0])  # mas over 10 years
    assert ra[0] > reference.ra[0] and ra[1] < reference.ra[1]  # east, west


def test_a_reference_catalog_without_ra_dec_is_refused(tmp_path, capsys):
    catalog = tmp_path / "pixels.csv"
    Table({"x": [1.0], "y": [2.0], "mag_g": [17.0]}).write(catalog)
    # The error names the columns it looked for and those the catalog has.
    with pytest.raises(RbvetError, match=r"no RA/Dec columns \(expected one of ra/dec.*\)"):
        read_reference(catalog)
    with pytest.raises(RbvetError, match="the catalog has x, y, mag_g"):
        read_reference(catalog)
    # The command says so before reading any frame (these do not exist).
    frame = str(tmp_path / "never_read.fits")
    args = ["weak-labels", frame, "--reference", str(catalog), "--json", str(tmp_path / "o")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "pixels.csv" in error and "the catalog has x, y, mag_g" in error
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def epoch_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("epochs")
    args = ["simulate", "--epochs", "3", "-o", str(folder / "ep.fits"), "--size", "256"]
    assert main(args + ["--seed", "7"]) == 0
    return folder


def test_weak_labels_command_writes_json_and_a_store_apart_from_human_labels(
    epoch_files, tmp_path
):
    frames = [str(epoch_files / f"ep_{k}.fits") for k in (1, 2, 3)]
    out, store_path = tmp_path / "weak.json", tmp_path / "labels.sqlite"
    assert main(["weak-labels", *frames, "--json", str(out), "-q"]) == 0
    records = json.loads(out.read_text())
    assert records and all(set(r) == {"frame", "x", "y", "weak_label", "source"} for r in records)
    assert {r["source"] for r in records} == {"repeat"}
    truth = Table.read(epoch_files / "ep_1.ecsv")
    mine = [r for r in records if r["frame"] == frames[0]]
    found = {(round(x, 3), round(y, 3)) for x, y in zip(truth["x"], truth["y"], strict=True)}
    assert all((round(r["x"], 3), round(r["y"], 3)) in found for r in mine)  # 0-based rows

    from_catalogs = tmp_path / "from_catalogs.json"
    pattern = ["--catalog-pattern", "{dir}/{stem}.ecsv"]  # the detections rbvet simulate wrote
    assert main(["weak-labels", *frames, *pattern, "--json", str(from_catalogs), "-q"]) == 0
    assert len(json.loads(from_catalogs.read_text())) >= 0.9 * len(records)

    assert main(["weak-labels", *frames, "--labels", str(store_path), "-q"]) == 0
    with LabelStore(store_path) as store:
        summary = store.summary()
        ids = np.arange(1, summary["objects"] + 1)
        weak = store.weak_labels(ids, "repeat")
        assert summary["objects"] == len(records) and set(weak.tolist()) <= {0, 1}
        assert (summary["real"], summary["bogus"]) == (0, 0)  # no label of the user's
        store.set_labels(ids[:1], 1 - int(weak[0]))
    assert main(["weak-labels", *frames, "--labels", str(store_path), "-q"]) == 0
    with LabelStore(store_path) as store:
        assert store.labels(ids[:1]).tolist() == [1 - int(weak[0])]  # the user's stays
        assert len(store.training_data(with_stamps=False).y) == 1


def test_weak_labels_command_refuses_frames_without_wcs_and_a_lone_frame(
    epoch_files, tmp_path, capsys
):
    plain = tmp_path / "plain.fits"
    fits.writeto(plain, fits.getdata(epoch_files / "ep_1.fits"))
    frame = str(epoch_files / "ep_2.fits")
    assert main(["weak-labels", frame, str(plain), "--json", str(tmp_path / "o.json")]) == 2
    assert "no celestial WCS: " + str(plain) in capsys.readouterr().err
    assert main(["weak-labels", frame, "--json", str(tmp_path / "o.json")]) == 2
    assert "at least two exposures" in capsys.readouterr().err
    pixels = tmp_path / "pixels.csv"
    Table({"x": [1.0], "y": [2.0]}).write(pixels)
    args = ["weak-labels", frame, "--reference", str(pixels), "--json", str(tmp_path / "o")]
    assert main(args) == 2
    assert "no RA/Dec columns" in capsys.readouterr().err


# ----------------------------------------------------------------- the label store


def test_a_schema_2_store_opens_without_loss_and_takes_weak_labels(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copyfile(SCHEMA_2_STORE, path)
    expected = [1, 1, 0, 1, -1]
    with LabelStore(path, readonly=True) as store:
        assert store.labels(np.arange(1, 6)).tolist() == expected
    assert path.read_bytes() == SCHEMA_2_STORE.read_bytes()
    image = np.load(SCHEMA_2_STORE.with_suffix(".image.npy"))
    with LabelStore(path, create=False) as store:
        assert store.labels(np.arange(1, 6)).tolist() == expected
        assert store.find_frame(frame_from_array(image)) is not None
        assert store.summary()["events"] == 7
        training = store.training_data(with_stamps=False)
        assert training.labels.tolist() == [1, 1, 0, 1]
        assert training.kinds.tolist() == ["human", "human", "human", "model"]
        store.set_weak_labels([1, 3, 5], [0, 1, 1], "repeat")
        store.set_weak_labels([5], 0, "reference")
        assert store.weak_labels(np.arange(1, 6), "repeat").tolist() == [0, -1, 1, -1, 1]
        assert store.weak_labels([5, 4], "reference").tolist() == [0, -1]
        assert store.labels(np.arange(1, 6)).tolist() == expected  # weak never overwrites
        assert len(store.training_data(with_stamps=False).y) == 4  # nor counts as a label
        assert store.undo().size == 0  # nor is an undo step of this session
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = connection.execute(
            "SELECT annotator, origin, model, score_on_screen FROM label_log WHERE object = 1"
        ).fetchone()
    assert row == ("ada", "key", "m.v1", 0.9)


def test_weak_labels_in_the_store_are_checked(tmp_path):
    with LabelStore(tmp_path / "new.sqlite") as store:
        with pytest.raises(RbvetError, match="source must be one of"):
            store.set_weak_labels([1], 1, "human")
        with pytest.raises(RbvetError, match="1 \\(real\\) or 0"):
            store.set_weak_labels([1], -1, "repeat")
        with pytest.raises(RbvetError, match="not in the label store"):
            store.set_weak_labels([42], 1, "repeat")


def test_frames_that_cross_without_a_corner_inside_each_other_are_one_group():
    # A wide frame and the same camera turned a quarter, crossing like a plus sign: each
    # covers part of the other, and neither has a corner (or a point of a coarse lattice)
    # inside the other.
    shape = (20, 200)
    wide = frame_from_array(np.zeros(shape, np.float32), wcs=epoch_wcs(shape, Exposure(0)))
    turned_wcs = epoch_wcs(shape, Exposure(0, (0.0, 30.0), rotation=90.0))
    turned = frame_from_array(np.zeros(shape, np.float32), wcs=turned_wcs)
    apart_wcs = epoch_wcs(shape, Exposure(0, (130.0, 0.0), rotation=90.0))
    apart = frame_from_array(np.zeros(shape, np.float32), wcs=apart_wcs)
    assert overlap_groups([wide, turned]) == [[0, 1]]
    assert overlap_groups([wide, apart]) == [[0], [1]]


def test_frames_of_other_instruments_or_sizes_do_not_vouch_for_each_other():
    # The same star, dithered, in two exposures of one camera: each sees it again, so it
    # is real. When the second exposure is another camera's, or of another size, the
    # frames are groups of their own: no repeat, no opinion.
    star = (100.0, 90.0)
    exposures = [Exposure(0), Exposure(1, (6.0, -4.0))]

    def exposures_of(instruments, shapes):
        frames = []
        for exposure, instrument, shape in zip(exposures, instruments, shapes, strict=True):
            sx, sy = exposure.to_pixels([star[0]], [star[1]], SHAPE)
            frames.append(objects_in(exposure, sx, sy, 50.0, shape=shape))
            frames[-1].instrument = instrument
        return frames

    same = exposures_of(["SAAO 1.0m STE4"] * 2, [SHAPE] * 2)
    assert overlap_groups(same) == [[0, 1]]
    assert [r.label.tolist() for r in repeat_labels(same)] == [[1], [1]]
    for frames in (
        exposures_of(["SAAO 1.0m STE4", "UKIRT WFCAM"], [SHAPE] * 2),
        exposures_of(["SAAO 1.0m STE4"] * 2, [SHAPE, (220, 200)]),
    ):
        assert overlap_groups(frames) == [[0], [1]]
        assert [r.label.tolist() for r in repeat_labels(frames)] == [[-1], [-1]]


def test_the_instrument_of_a_frame_comes_from_its_headers(tmp_path):
    from rbvet.core.io.frame import read_frame
    from rbvet.core.learn.weak import frame_objects

    image = np.random.default_rng(1).normal(100.0, 5.0, SHAPE).astype(np.float32)
    header = epoch_wcs(SHAPE, Exposure(0)).to_header()
    header["INSTRUME"] = "STE4"
    primary = fits.PrimaryHDU(header=fits.Header([("TELESCOP", "SAAO 1.0m")]))
    path = tmp_path / "mef.fits"
    fits.HDUList([primary, fits.ImageHDU(image, header=header)]).writeto(path)
    frame = read_frame(path)
    table = Table({"x": [50.0], "y": [60.0]})
    assert frame_objects(frame, table, 3.0).instrument == "SAAO 1.0m STE4"
    other = frame_from_array(image, header=header)  # no file: its own header only
    assert overlap_groups([frame, other]) == [[0], [1]]


def test_frames_that_overlap_nothing_give_a_clear_error_and_write_nothing(epoch_files, tmp_path):
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.weak import make_weak_labels

    far = tmp_path / "far.fits"
    with fits.open(epoch_files / "ep_2.fits") as hdus:
        hdus[0].header["CRVAL1"] += 10.0  # another field
        hdus.writeto(far)
    store = tmp_path / "labels.sqlite"
    pairs = [(str(epoch_files / "ep_1.fits"), None), (str(far), None)]
    with pytest.raises(RbvetError, match="none of these 2 frames overlaps another"):
        run_job(make_weak_labels(pairs, store))
    with pytest.raises(RbvetError, match="at least two exposures"):
        run_job(make_weak_labels(pairs[:1], store))
    assert not store.exists()
    out = tmp_path / "weak.json"
    assert main(["weak-labels", *(p for p, _ in pairs), "--json", str(out), "-q"]) == 2
    assert not out.exists()

    made = run_job(make_weak_labels([(str(epoch_files / f"ep_{k}.fits"), None) for k in (1, 2)]))
    records = made.records()
    counts = made.counts()
    for (source, label), count in counts.items():
        assert count == sum(r["source"] == source and r["weak_label"] == label for r in records)
    assert counts[("repeat", 1)] > 0 and made.lonely == []


def test_each_frame_is_read_with_its_own_options(epoch_files):
    """Per-frame reading options (the window's project passes those each frame was read
    with): a frame detected at a higher threshold has fewer objects, the others keep theirs;
    one set of options for every frame still works, and a count that does not match fails."""
    from rbvet.core.classify import FrameOptions
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.weak import make_weak_labels

    pairs = [(str(epoch_files / f"ep_{k}.fits"), None) for k in (1, 2)]
    default = run_job(make_weak_labels(pairs))
    strict = FrameOptions(detect_threshold=12.0)
    made = run_job(make_weak_labels(pairs, options=[strict, FrameOptions()]))
    assert [frame.threshold for frame in made.frames] == [12.0, 3.0]
    assert 0 < len(made.frames[0].x) < len(default.frames[0].x)
    assert len(made.frames[1].x) == len(default.frames[1].x)
    shared = run_job(make_weak_labels(pairs, options=strict))
    for fewer, more in zip(shared.frames, default.frames, strict=True):
        assert 0 < len(fewer.x) < len(more.x)
    assert [frame.threshold for frame in shared.frames] == [12.0, 12.0]
    with pytest.raises(RbvetError, match="1 reading options given for 2 frames"):
        run_job(make_weak_labels(pairs, options=[strict]))


def test_the_weak_labels_command_reads_frames_with_its_frame_arguments(
    epoch_files, tmp_path, capsys
):
    frames = [str(epoch_files / f"ep_{k}.fits") for k in (1, 2)]
    out = str(tmp_path / "weak.json")
    counts = []
    for extra in ([], ["--detect-threshold", "12"]):
        assert main(["weak-labels", *frames, "--json", out, "-q", *extra]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        counts.append(int(line.split(" frames, ")[1].split(" objects")[0]))
    assert 0 < counts[1] < counts[0]
