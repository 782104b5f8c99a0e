"""Many frames on Dask: the same catalogs as one frame at a time, failures, resuming, CLI."""

import numpy as np
import pytest
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.batch import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_SKIPPED,
    SUMMARY_NAME,
    catalog_for,
    classify_frames,
    classify_one_frame,
    close_local_cluster,
    frame_stem,
    read_frame_list,
    start_local_cluster,
)
from rbvet.core.classify import FrameOptions
from rbvet.core.errors import RbvetError
from rbvet.core.jobs import run_job

PATTERN = "{dir}/{stem}.ecsv"
N_GOOD = 3


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three simulated 320x320 demo frames with their catalogs (FRAME.ecsv), and a corrupt one."""
    folder = tmp_path_factory.mktemp("frames")
    good = []
    for seed in range(N_GOOD):
        path = folder / f"night_{seed}.fits"
        command = ["simulate", "-o", str(path), "--size", "320", "--seed", str(seed), "--demo"]
        assert main([*command, "--fwhm", str(2.5 + 0.5 * seed)]) == 0
        good.append(str(path))
    bad = folder / "broken.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\x00" * 200)
    return good, str(bad)


@pytest.fixture(scope="module")
def references(frames, tmp_path_factory):
    """Each good frame classified in this process by the single-frame function."""
    good, _ = frames
    folder = tmp_path_factory.mktemp("reference")
    results = {}
    for frame in good:
        output = folder / f"{frame_stem(frame)}.rb.ecsv"
        result = run_job(classify_one_frame(frame, catalog_for(frame, PATTERN), output))
        results[frame] = (result, Table.read(output))
    return results


@pytest.fixture(scope="module")
def cluster():
    """A real local cluster of two worker processes, shared by the tests of this module."""
    local = start_local_cluster(2)
    yield local
    close_local_cluster(local)


@pytest.fixture(scope="module")
def cluster_run(frames, cluster, tmp_path_factory):
    """The good frames and the corrupt one classified on the cluster."""
    outdir = tmp_path_factory.mktemp("batch")
    return outdir, *classify_on_cluster(frames, outdir, cluster)


def classify_on_cluster(frames, outdir, cluster):
    """`classify_frames` of the good frames and the corrupt one: (summary, progress seen)."""
    good, bad = frames
    calls = []
    summary = run_job(
        classify_frames(good + [bad], outdir, catalog_pattern=PATTERN, scheduler=cluster),
        lambda progress: calls.append((progress.done, progress.total)),
    )
    return summary, calls


def text(column):
    """A text column as str, whether it was read from ECSV (str) or FITS (bytes)."""
    return np.ma.filled(np.ma.asarray(column), "").astype(str)


def same_catalog(table, reference):
    assert table.colnames == reference.colnames
    np.testing.assert_allclose(table["rb_score"], reference["rb_score"], atol=1e-6, rtol=0)
    assert np.array_equal(text(table["rb_reason"]), text(reference["rb_reason"]))
    assert np.array_equal(table["flags"], reference["flags"])
    assert np.array_equal(table["x"], reference["x"])


def test_cluster_equals_single_frame_and_reports_the_bad_frame(cluster_run, frames, references):
    outdir, summary, calls = cluster_run
    good, bad = frames
    assert list(summary["frame"]) == good + [bad]
    assert list(summary["status"]) == [STATUS_DONE] * N_GOOD + [STATUS_FAILED]
    failed = summary[-1]
    assert "broken.fits" in failed["error"] and "\n" not in failed["error"]
    assert failed["objects"] is np.ma.masked
    for row, frame in zip(summary[:N_GOOD], good, strict=True):
        result, reference = references[frame]
        same_catalog(Table.read(outdir / row["output"]), reference)
        assert (row["objects"], row["scored"], row["kept"]) == (
            result.objects,
            result.scored,
            result.kept,
        )
        assert row["median_score"] == pytest.approx(result.median_score, abs=1e-6)
        assert row["catalog"] == catalog_for(frame, PATTERN) and row["error"] == ""
    assert calls == [(done, N_GOOD + 1) for done in range(N_GOOD + 2)]
    written = Table.read(outdir / SUMMARY_NAME)
    assert list(written["status"]) == list(summary["status"])


def test_rerun_skips_complete_outputs_and_writes_nothing(cluster_run, frames, cluster):
    outdir, first, _ = cluster_run
    outputs = [outdir / name for name in first["output"][:N_GOOD]]
    stamps = [path.stat().st_mtime_ns for path in outputs]
    again, calls = classify_on_cluster(frames, outdir, cluster)
    assert list(again["status"]) == [STATUS_SKIPPED] * N_GOOD + [STATUS_FAILED]
    assert calls == [(0, 1), (1, 1)]  # only the failed frame was tried again
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    for name in ("objects", "scored", "kept"):  # carried over from the first summary
        assert list(again[name][:N_GOOD]) == list(first[name][:N_GOOD])
    # With every output complete nothing is sent: an unreachable scheduler is never asked.
    good, _ = frames
    done = run_job(
        classify_frames(
            good, outdir, catalog_pattern=PATTERN, scheduler="tcp://127.0.0.1:9", n_workers=2
        )
    )
    assert list(done["status"]) == [STATUS_SKIPPED] * N_GOOD
    assert [path.stat().st_mtime_ns for path in outputs] == stamps


def test_overwrite_and_detection_in_this_process(frames, references, tmp_path):
    good, _ = frames
    frame = good[0]
    first = run_job(classify_frames([frame], tmp_path, catalog_pattern=PATTERN, n_workers=1))
    output = tmp_path / first["output"][0]
    stamp = output.stat().st_mtime_ns
    again = run_job(
        classify_frames([frame], tmp_path, catalog_pattern=PATTERN, n_workers=1, overwrite=True)
    )
    assert list(again["status"]) == [STATUS_DONE]
    assert output.stat().st_mtime_ns != stamp
    same_catalog(Table.read(output), references[frame][1])
    options = FrameOptions(detect_threshold=4.0, fwhm=2.75)
    detected = run_job(
        classify_frames(
            [frame], tmp_path / "detected", output_format="csv", n_workers=1, frame_options=options
        )
    )
    assert detected["status"][0] == STATUS_DONE and detected["catalog"][0] == ""
    assert detected["objects"][0] > 10
    assert detected["fwhm"][0] == 2.75  # the frame options reached the frame
    assert (tmp_path / "detected" / f"{frame_stem(frame)}.rb.csv").is_file()


def test_missing_catalog_fails_its_frame_only(frames, tmp_path):
    good, _ = frames
    summary = run_job(
        classify_frames(good[:2], tmp_path, catalog_pattern="{dir}/{stem}.sex", n_workers=1)
    )
    assert list(summary["status"]) == [STATUS_FAILED] * 2
    assert all("no such file" in error and ".sex" in error for error in summary["error"])


def test_catalog_pattern_and_names(tmp_path):
    assert frame_stem("night1/img_042.fits.fz") == "img_042"
    assert frame_stem("IMG.FITS") == "IMG"
    assert catalog_for("night1/img_042.fits", "{dir}/{stem}.cat") == "night1/img_042.cat"
    assert catalog_for("night1/img_042.fits", "cats/{name}.ldac") == "cats/img_042.fits.ldac"
    with pytest.raises(RbvetError, match="placeholders"):
        catalog_for("img.fits", "{frame}.cat")
    listed = tmp_path / "frames.txt"
    listed.write_text("# tonight\na.fits\n\n  b.fits  \n")
    assert read_frame_list(listed) == ["a.fits", "b.fits"]
    with pytest.raises(RbvetError, match="would both write"):
        run_job(classify_frames(["n1/a.fits", "n2/a.fits"], tmp_path / "out", n_workers=1))


def test_closing_the_job_stops_after_the_frame_being_classified(frames, tmp_path):
    good, _ = frames
    job = classify_frames(good, tmp_path, catalog_pattern=PATTERN, n_workers=1)
    for progress in job:
        if progress.done == 1:
            break
    job.close()
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [f"{frame_stem(good[0])}.rb.ecsv"]  # no other frame, no summary
    summary = run_job(classify_frames(good, tmp_path, catalog_pattern=PATTERN, n_workers=1))
    assert list(summary["status"]) == [STATUS_SKIPPED] + [STATUS_DONE] * (N_GOOD - 1)


def test_cli_frames_and_list_in_this_process(frames, references, tmp_path, capsys):
    good, bad = frames
    outdir = tmp_path / "out"
    base = ["--catalog-pattern", PATTERN, "-o", str(outdir), "--workers", "1", "-q"]
    assert main(["classify", good[0], good[1], *base]) == 0
    assert "2 frames: 2 classified" in capsys.readouterr().out
    listed = tmp_path / "frames.txt"
    listed.write_text("\n".join(["# three good, one broken", *good, bad]) + "\n")
    assert main(["classify", "--list", str(listed), *base]) == 1  # a frame failed
    out = capsys.readouterr().out
    assert "1 classified, 2 already done, 1 failed" in out and "broken.fits" in out
    summary = Table.read(outdir / SUMMARY_NAME)
    assert list(summary["status"]) == [STATUS_SKIPPED] * 2 + [STATUS_DONE, STATUS_FAILED]
    same_catalog(Table.read(outdir / summary["output"][2]), references[good[2]][1])
    single = tmp_path / "single.ecsv"
    assert main(["classify", good[1], "--catalog-pattern", PATTERN, "-o", str(single)]) == 0
    same_catalog(Table.read(single), references[good[1]][1])


def test_cli_names_the_failed_frames_and_how_to_rerun_just_those(frames, tmp_path, capsys):
    import shutil

    from rbvet.cli import FAILED_LIST_NAME

    good, bad = frames
    broken = tmp_path / "broken.fits"
    shutil.copy(bad, broken)
    outdir = tmp_path / "out"
    base = ["--catalog-pattern", PATTERN, "-o", str(outdir), "--workers", "1", "-q"]
    assert main(["classify", good[0], str(broken), *base]) == 1
    out = capsys.readouterr().out
    failed_list = outdir / FAILED_LIST_NAME
    assert read_frame_list(failed_list) == [str(broken.resolve())]
    assert f"failed: {broken}" in out or f"failed: {broken}:" in out
    assert f"rbvet classify --list {failed_list} -o {outdir}" in out

    # The frame is mended; re-running the list classifies it alone, and the list goes.
    shutil.copy(good[1], broken)
    shutil.copy(catalog_for(good[1], PATTERN), catalog_for(str(broken), PATTERN))
    assert main(["classify", "--list", str(failed_list), *base]) == 0
    assert "1 frame: 1 classified, 0 already done, 0 failed" in capsys.readouterr().out
    assert not failed_list.exists()


def test_cli_on_a_scheduler(frames, references, cluster, tmp_path, capsys):
    good, _ = frames
    listed = tmp_path / "frames.txt"
    listed.write_text("\n".join(good[:2]) + "\n")
    outdir = tmp_path / "out"
    address = cluster.scheduler_address
    command = ["classify", "--list", str(listed), "--catalog-pattern", PATTERN, "-o", str(outdir)]
    assert main([*command, "--scheduler", address, "--format", "fits"]) == 0
    assert "2 frames: 2 classified" in capsys.readouterr().out
    same_catalog(Table.read(outdir / f"{frame_stem(good[1])}.rb.fits"), references[good[1]][1])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["a.fits", "b.fits", "-c", "a.cat", "-o", "out"], "--catalog-pattern"),
        (["a.fits", "b.fits"], "-o OUTDIR"),
        (["a.fits", "--workers", "2"], "--workers applies to several frames"),
        (["a.fits", "-c", "a.cat", "--catalog-pattern", "{stem}.cat"], "not both"),
        (["--list", "missing.txt", "-o", "out"], "no such file"),
        ([], "give a FRAME"),
    ],
)
def test_cli_argument_errors(arguments, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["classify", *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rbvet: error:") and message in err


def test_cached_model_is_loaded_once_and_again_when_the_file_is_replaced(tmp_path):
    from rbvet.core.model import create_model, make_card, save_model
    from rbvet.core.model.cache import cached_model

    path = tmp_path / "m.keras"
    save_model(create_model(), path, make_card(31))
    first = cached_model(path)
    assert cached_model(path) is first
    replacement = tmp_path / "other.keras"
    save_model(create_model(), replacement, make_card(31))
    replacement.replace(path)  # a new file under the old name
    assert cached_model(path) is not first
