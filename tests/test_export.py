"""Export: vetted catalog and DS9 regions; the ``rbvet export`` command (with a training set)."""

import json
import re

import numpy as np
import pytest
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.errors import RbvetError
from rbvet.core.io.catalog import BOGUS_FLAG
from rbvet.core.io.export import REGION_COLORS, export_catalog, export_kind, export_regions
from rbvet.core.learn.labels import LabelStore
from rbvet.core.paths import demo_frame_path

_CIRCLE = re.compile(r"^circle\(([-\d.]+),([-\d.]+),([\d.]+)\) # color=(\w+) text=\{(.*)\}$")


def labeled_demo_store(path):
    """A label store holding the demo frame's objects, labeled from its ``true_label``.

    Returns ``(frame, table, fwhm, object_ids)``.
    """
    from rbvet.core.classify import open_frame_and_catalog
    from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.jobs import run_job

    demo = demo_frame_path()
    frame, table, fwhm = run_job(open_frame_and_catalog(demo, demo.with_suffix(".ecsv")))
    rescale = plan_rescale(fwhm, PreprocessParams())
    stamps = cut_stamps(frame, table["x"], table["y"], rescale)
    truth = np.asarray(table["true_label"])
    with LabelStore(path) as store:
        ids = store.add_objects(
            store.add_frame(frame, fwhm, rescale), table["x"], table["y"], stamps
        )
        usable = stamps.scorable & (ids >= 0)
        store.set_labels(ids[usable & (truth == 1)], 1)
        store.set_labels(ids[usable & (truth == 0)], 0)
    return frame, table, fwhm, ids


def small_catalog():
    table = Table({"x": [10.0, 20.0, 30.0, 40.0, 50.0], "y": [5.0, 6.0, 7.0, 8.0, 9.0]})
    scores = np.array([0.9, 0.2, 0.8, 0.1, np.nan])
    labels = np.array([-1, -1, 0, 1, -1])
    return table, scores, labels


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
def test_catalog_round_trip(tmp_path, suffix):
    table, scores, labels = small_catalog()
    path = tmp_path / f"vetted{suffix}"
    export_catalog(table, scores, labels, 0.5, path)
    back = Table.read(path)
    assert len(back) == 5 and "rb_score" not in table.colnames  # input left alone
    np.testing.assert_allclose(back["rb_score"], scores)
    np.testing.assert_array_equal(back["rb_label"], labels)
    bogus = (np.asarray(back["flags"]) & BOGUS_FLAG) != 0
    # score 0.9 real; 0.2 bogus; labeled bogus despite 0.8; labeled real despite 0.1; NaN bogus
    np.testing.assert_array_equal(bogus, [False, True, True, False, True])
    reasons = back["rb_reason"]
    reasons = reasons.filled("") if hasattr(reasons, "filled") else reasons  # ECSV: "" masked
    assert list(reasons) == ["", "", "", "", "not scored"]


def test_regions_round_trip(tmp_path):
    x = np.array([0.0, 10.5, 20.0, 30.0, np.nan])
    y = np.array([0.0, 11.5, 21.0, 31.0, 5.0])
    labels = np.array([1, 0, -1, -1, -1])
    scores = np.array([0.1, 0.95, 0.7, np.nan, 0.9])
    path = tmp_path / "objects.reg"
    assert export_regions(x, y, labels, scores, 0.5, path, radius=6) == 4
    text = path.read_text().splitlines()
    assert text[0].startswith("# Region file format: DS9")
    assert "image" in text
    circles = [_CIRCLE.match(line) for line in text if line.startswith("circle")]
    assert len(circles) == 4 and all(circles)
    colors = [match[4] for match in circles]
    assert colors == [
        REGION_COLORS["real"],
        REGION_COLORS["bogus"],
        REGION_COLORS["above"],
        REGION_COLORS["below"],
    ]
    assert (float(circles[0][1]), float(circles[0][2])) == (1.0, 1.0)  # 1-based
    assert (float(circles[1][1]), float(circles[1][2])) == (11.5, 12.5)
    assert [match[5] for match in circles] == ["0.100", "0.950", "0.700", "nan"]
    assert float(circles[0][3]) == 6


def test_export_kind_follows_the_extension():
    assert export_kind("a.ecsv") == export_kind("a.FITS") == "catalog"
    assert export_kind("a.npz") == "training_set" and export_kind("a.reg") == "regions"
    with pytest.raises(RbvetError, match="unknown export format"):
        export_kind("a.txt")


def test_cli_export_writes_all_three(tmp_path, capsys):
    store = tmp_path / "labels.sqlite"
    _, table, _, ids = labeled_demo_store(store)
    demo = demo_frame_path()
    outputs = [tmp_path / "demo.ecsv", tmp_path / "demo.reg", tmp_path / "demo.npz"]
    argv = ["export", str(demo), "--catalog", str(demo.with_suffix(".ecsv"))]
    argv += ["--labels", str(store)]
    for output in outputs:
        argv += ["-o", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "catalog ->" in printed and "regions ->" in printed and "training set ->" in printed
    vetted = Table.read(outputs[0])
    truth = np.asarray(table["true_label"])
    np.testing.assert_array_equal(np.asarray(vetted["rb_label"]), np.where(ids >= 0, truth, -1))
    assert np.isfinite(vetted["rb_score"]).all()
    colors = re.findall(r"color=(\w+)", outputs[1].read_text().split("image\n", 1)[1])
    assert len(colors) == len(table)
    assert colors.count("green") == int(np.sum(truth == 1))
    assert colors.count("red") == int(np.sum(truth == 0))
    with np.load(outputs[2], allow_pickle=False) as npz:
        assert npz["X"].shape == (int(np.sum(truth >= 0)), 31, 31, 2)
        assert json.loads(str(npz["metadata"]))["frame"] == str(demo)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    demo = str(demo_frame_path())
    assert main(["export", demo, "-o", str(tmp_path / "out.txt")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(["export", demo, "-o", str(tmp_path / "out.npz")]) == 2
    assert "--labels" in capsys.readouterr().err
    missing = tmp_path / "none.sqlite"
    assert main(["export", demo, "--labels", str(missing), "-o", str(tmp_path / "a.reg")]) == 2
    assert "no such label store" in capsys.readouterr().err
