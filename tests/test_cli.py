"""The rbvet command line: classify, simulate, and one-line errors."""

import shutil

import numpy as np
import pytest
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.model import create_model, save_model
from rbvet.core.paths import demo_frame_path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "untrained.keras"
    save_model(create_model(), path)
    return str(path)


def test_classify_demo_with_catalog(tmp_path, model_file, capsys):
    demo = demo_frame_path()
    out = tmp_path / "scored.fits"
    code = main(
        [
            "classify",
            str(demo),
            "--catalog",
            str(demo.with_suffix(".ecsv")),
            "-m",
            model_file,
            "-t",
            "0.4",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    table = Table.read(out)
    assert len(table) == len(Table.read(demo.with_suffix(".ecsv")))
    scores = np.asarray(table["rb_score"])
    assert np.isfinite(scores).mean() > 0.95
    assert np.array_equal((table["flags"] & 0x1000) != 0, ~(scores >= 0.4))
    summary = capsys.readouterr().out
    assert "objects" in summary and "scored" in summary and str(out) in summary


def test_classify_detects_without_catalog(tmp_path, model_file):
    out = tmp_path / "detected.csv"
    assert main(["classify", str(demo_frame_path()), "-m", model_file, "-o", str(out), "-q"]) == 0
    assert len(Table.read(out)) > 50


def test_classify_writes_stem_rb_ecsv_in_the_working_directory(tmp_path, model_file, monkeypatch):
    demo = demo_frame_path()
    frame = tmp_path / "night1" / "img_042.FITS"
    frame.parent.mkdir()
    shutil.copy(demo, frame)
    monkeypatch.chdir(tmp_path)
    args = ["classify", str(frame), "-c", str(demo.with_suffix(".ecsv")), "-m", model_file, "-q"]
    assert main(args) == 0
    assert len(Table.read(tmp_path / "img_042.rb.ecsv")) == len(
        Table.read(demo.with_suffix(".ecsv"))
    )


def test_simulate_writes_frame_and_catalog(tmp_path, capsys):
    out = tmp_path / "sim.fits"
    assert main(["simulate", "-o", str(out), "--size", "256", "--seed", "2", "--demo"]) == 0
    catalog = Table.read(tmp_path / "sim.ecsv")
    assert {"x", "y", "true_label", "true_kind"} <= set(catalog.colnames)


@pytest.mark.parametrize("content", [b"SIMPLE  =                    T" + b" " * 50, b"\x00" * 10])
def test_bad_frame_is_one_line_error(tmp_path, model_file, capsys, content):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(content)
    assert main(["classify", str(bad), "-m", model_file]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rbvet: error:") and "bad.fits" in err and "\n" not in err


def test_bad_model_and_threshold(tmp_path, model_file, capsys):
    demo = str(demo_frame_path())
    assert main(["classify", demo, "-m", str(tmp_path / "none.keras")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["classify", demo, "-m", model_file, "-t", "1.5"]) == 2
    assert "threshold" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
def test_classify_says_how_the_frame_was_read_and_writes_it_into_the_catalog(
    tmp_path, capsys, suffix
):
    from astropy.table import Table

    from rbvet.core.paths import demo_frame_path

    out = tmp_path / f"demo{suffix}"
    assert main(["classify", str(demo_frame_path()), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "HDU 0, 768 x 768 px, data section the whole image" in err
    assert "FWHM" in err and "stars" in err
    meta = {key.lower(): value for key, value in Table.read(out).meta.items()}
    assert meta["rbvet_hdu"] == 0 and meta["rbvet_objects_source"] == "detected"
    assert meta["rbvet_fwhm_source"] == "measured" and meta["rbvet_fwhm_stars"] > 5
    assert meta["rbvet_model"] == "rbvet_default.keras" and meta["rbvet_threshold"] == 0.5
