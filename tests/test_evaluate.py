"""Evaluation: `rbvet evaluate` on a saved set, simulated frames and a labeled catalog."""

import json
import sys

import numpy as np
import pytest

from rbvet.cli import main
from rbvet.core.errors import RbvetError
from rbvet.core.jobs import run_job
from rbvet.core.learn.dataset import load_training_set, save_training_set
from rbvet.core.learn.evaluate import evaluate_scores, format_report, truth_labels
from rbvet.core.learn.metrics import error_rates, roc_auc
from rbvet.core.learn.train import simulated_training_set
from rbvet.core.model import load_model
from rbvet.core.paths import demo_frame_path

N_FLIPPED = 6


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Two small simulated frames, with a few labels flipped so the AUC is below 1."""
    data = run_job(simulated_training_set(n_frames=2, shape=(256, 256), seed=5, workers=1))
    flipped = np.random.default_rng(0).choice(len(data), N_FLIPPED, replace=False)
    data.labels[flipped] = 1 - data.labels[flipped]
    path = tmp_path_factory.mktemp("sets") / "tiny.npz"
    save_training_set(data, path)
    return path


def test_training_set_table_and_json_match_metrics(tiny_set, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--training-set", str(tiny_set), "-t", "0.4", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    for text in ("ROC AUC", "operating point", "FPR <= 1 %", "< 2.5 px", "> 4.5 px", "kind"):
        assert text in table
    metrics = json.loads(out.read_text())  # strict JSON: undefined figures are null
    data = load_training_set(tiny_set)
    scores = load_model().predict(data.inputs)
    assert metrics["auc"] == pytest.approx(roc_auc(scores, data.labels), abs=1e-12)
    assert metrics["auc"] < 1.0
    fnr, fpr = error_rates(scores, data.labels, [0.4])
    assert metrics["threshold"] == 0.4
    assert (metrics["fnr"], metrics["fpr"]) == pytest.approx((fnr[0], fpr[0]))
    assert metrics["objects"] == len(data) and metrics["real"] == int(data.labels.sum())
    assert sum(bin_["objects"] for bin_ in metrics["counts_by_fwhm"].values()) == len(data)
    assert set(metrics["called_real_by_kind"]) == set(data.kinds)


def test_plot_writes_two_pngs(tiny_set, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    prefix = tmp_path / "run"
    assert main(["evaluate", "--training-set", str(tiny_set), "--plot", str(prefix)]) == 0
    for name in ("run_roc.png", "run_rates.png"):
        content = (tmp_path / name).read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 5000
    assert "run_rates.png" in capsys.readouterr().out


def test_plot_without_matplotlib_is_one_line_error(tiny_set, tmp_path, capsys, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    code = main(["evaluate", "--training-set", str(tiny_set), "--plot", str(tmp_path / "p")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "matplotlib" in err and "rbvet[plots]" in err and "\n" not in err


def test_simulated_frames_use_a_fresh_seed(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--simulate", "1", "--size", "256", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert "seed 2000029" in metrics["evaluated_on"] and metrics["objects"] > 5
    assert "fresh-seed simulated 256x256 frame" in capsys.readouterr().out


def test_catalog_with_truth_column(tmp_path, capsys):
    demo = demo_frame_path()
    out = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            str(demo),
            "--catalog",
            str(demo.with_suffix(".ecsv")),
            "--truth-column",
            "true_label",
            "--kind-column",
            "true_kind",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["auc"] > 0.95
    assert metrics["objects"] == 253 and metrics["unlabeled"] == 0
    assert {"star", "galaxy", "cosmic_ray"} <= set(metrics["called_real_by_kind"])
    assert metrics["real_fraction_by_kind"]["cosmic_ray"] == 0.0
    table = capsys.readouterr().out
    assert "cosmic_ray" in table and "rejected" in table


def test_catalog_counts_unlabeled_and_unscored_objects(tmp_path):
    from astropy.table import Table

    demo = demo_frame_path()
    table = Table.read(demo.with_suffix(".ecsv"))
    table["x"][0] = -500.0  # off the frame: unscorable
    table["true_label"][1] = -1  # no label
    catalog = tmp_path / "edited.ecsv"
    table.write(catalog)
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(demo), "-c", str(catalog), "--truth-column", "true_label"]
    assert main([*args, "--fwhm", "2.4", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["unlabeled"] == 1 and metrics["objects"] == len(table) - 1
    assert metrics["unscored_fraction"] == pytest.approx(1 / (len(table) - 1))


@pytest.mark.parametrize("column, problem", [("true_kind", "real/bogus"), ("nope", "no truth")])
def test_bad_truth_column_is_one_line_error(column, problem, capsys):
    demo = demo_frame_path()
    catalog = demo.with_suffix(".ecsv")
    code = main(["evaluate", str(demo), "-c", str(catalog), "--truth-column", column])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress log
    assert error.startswith("rbvet: error:")
    assert problem in error and column in error and catalog.name in error


def test_evaluate_needs_exactly_one_source(tmp_path, capsys):
    assert main(["evaluate"]) == 2
    assert "one source" in capsys.readouterr().err
    assert main(["evaluate", str(demo_frame_path())]) == 2
    assert "--truth-column" in capsys.readouterr().err
    assert main(["evaluate", "--training-set", str(tmp_path / "none.npz")]) == 2
    assert "not found" in capsys.readouterr().err


def test_truth_labels_accept_common_spellings():
    from astropy.table import MaskedColumn

    assert truth_labels(np.array([True, False])).tolist() == [1, 0]
    assert truth_labels(np.array([1, 0, -1])).tolist() == [1, 0, -1]
    assert truth_labels(np.array([1.0, np.nan, 0.0])).tolist() == [1, -1, 0]
    words = np.array(["Real", "bogus ", "TRUE", "no", "", "unknown"])
    assert truth_labels(words).tolist() == [1, 0, 1, 0, -1, -1]
    masked = MaskedColumn([1, 0, 1], mask=[False, False, True])
    assert truth_labels(masked).tolist() == [1, 0, -1]
    with pytest.raises(RbvetError, match="'star'"):
        truth_labels(np.array(["real", "star"]), "kind")
    with pytest.raises(RbvetError, match="2"):
        truth_labels(np.array([0, 1, 2]))
    with pytest.raises(RbvetError, match="no object"):
        truth_labels(np.array([-1, -1]))


def test_report_says_n_a_where_a_figure_is_undefined():
    evaluation = evaluate_scores(
        [0.9, 0.8, np.nan],
        [1, 1, 0],
        kinds=["star", "star", "cosmic_ray"],
        fwhm=[2.0, 3.0, 3.0],
        description="three objects",
    )
    report = format_report(evaluation.metrics)
    assert "Evaluated on three objects" in report
    auc_line = next(line for line in report.splitlines() if line.startswith("ROC AUC"))
    assert auc_line.split()[-1] == "n/a"
    assert "33.33 %" in report  # unscored
    assert "cosmic_ray" not in report  # its only object is unscored
