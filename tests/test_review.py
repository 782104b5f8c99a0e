"""Label import (`rbvet label`), label review (`rbvet review`, confident learning) and the
window's "likely label errors" sort fed by a review."""

import dataclasses
import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from rbvet.cli import main
from rbvet.core.learn.labels import LabelStore
from rbvet.core.learn.metrics import roc_auc
from rbvet.core.learn.review import (
    class_thresholds,
    flag_label_issues,
    label_error_score,
    out_of_sample_probabilities,
    review_labels,
)
from rbvet.core.model.head import Head, fit_head, sigmoid

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A simulated 512 x 512 frame and its truth catalog, written by ``rbvet simulate``."""
    folder = tmp_path_factory.mktemp("sim")
    image = folder / "field.fits"
    assert main(["simulate", "-o", str(image), "--size", "512", "--seed", "3"]) == 0
    return image, folder / "field.ecsv"


def write_column(catalog, name, values, path):
    table = Table.read(catalog)
    table[name] = values
    table.write(path, overwrite=True)
    return table


# ------------------------------------------------------------------------ rbvet label


def test_label_imports_a_column_with_origin_and_annotator_and_skips_blanks(
    simulated, tmp_path, capsys
):
    image, catalog = simulated
    truth = np.asarray(Table.read(catalog)["true_label"])
    words = np.where(truth == 1, "Real", "BOGUS").astype(object)
    words[:4] = ["", "-1", "nan", "unknown"]
    words = words.astype(str)
    edited = tmp_path / "vetted.ecsv"
    write_column(catalog, "vetting", words, edited)
    store = tmp_path / "labels.sqlite"
    argv = ["label", str(image), "--catalog", str(edited), "--column", "vetting"]
    assert main(argv + ["--labels", str(store), "--annotator", "ada"]) == 0
    out = capsys.readouterr().out
    with sqlite3.connect(store) as connection:
        rows = connection.execute(
            "SELECT label, annotator, origin, score_on_screen FROM label_log"
        ).fetchall()
    labels = np.array([row[0] for row in rows])
    assert {row[1:3] for row in rows} == {("ada", "import")}
    assert all(row[3] is not None for row in rows)  # the score each object had is kept
    kept = truth[4:]
    # every labeled row is imported except those without a usable stamp
    with LabelStore(store, readonly=True) as opened:
        summary = opened.summary()
    unscorable = len(kept) - len(rows)
    assert 0 <= unscorable < 10
    assert summary["real"] + summary["bogus"] == len(rows)
    assert int(np.sum(labels == 1)) <= int(np.sum(kept == 1))
    assert f"imported {len(rows)} labels" in out and "4 without a label" in out
    # importing again changes nothing and says so
    assert main(argv + ["--labels", str(store), "--annotator", "ada"]) == 0
    assert f"{len(rows)} already so" in capsys.readouterr().out
    with LabelStore(store, readonly=True) as opened:
        assert opened.summary()["events"] == summary["events"]


def test_imported_labels_are_those_the_window_shows_for_the_frame(simulated, tmp_path):
    from rbvet.core.jobs import run_job
    from rbvet.core.session import VettingSession
    from rbvet.gui.jobs import classify_frame

    image, catalog = simulated
    store = tmp_path / "labels.sqlite"
    args = ["label", str(image), "--catalog", str(catalog), "--column", "true_label"]
    assert main(args + ["--labels", str(store)]) == 0
    data, _ = run_job(classify_frame(str(image), str(catalog)))
    session = VettingSession(store)
    session.show(data)
    truth = np.asarray(Table.read(catalog)["true_label"])
    scored = np.isfinite(data.scores)
    np.testing.assert_array_equal(data.labels[scored], truth[scored])
    assert np.all(data.labels[~scored] == -1)


@pytest.mark.parametrize(
    "values, message",
    [(None, "no label column 'vetting'"), (["maybe"] * 3, "values other than")],
)
def test_label_refuses_a_missing_or_unreadable_column(
    simulated, tmp_path, capsys, values, message
):
    image, catalog = simulated
    edited = tmp_path / "edited.ecsv"
    table = Table.read(catalog)
    if values is not None:
        table["vetting"] = np.resize(np.array(values), len(table))
    table.write(edited, overwrite=True)
    argv = ["label", str(image), "--catalog", str(edited), "--column", "vetting"]
    assert main(argv + ["--labels", str(tmp_path / "s.sqlite")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()


def test_a_column_with_no_label_at_all_is_refused(simulated, tmp_path, capsys):
    image, catalog = simulated
    edited = tmp_path / "edited.ecsv"
    write_column(catalog, "vetting", np.full(len(Table.read(catalog)), -1), edited)
    argv = ["label", str(image), "--catalog", str(edited), "--column", "vetting"]
    assert main(argv + ["--labels", str(tmp_path / "s.sqlite")]) == 2
    assert "labels no object real or bogus" in capsys.readouterr().err


# ------------------------------------------------------------------- review, the core


def test_the_logistic_fit_reaches_the_penalised_optimum():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 5))
    truth = Head(np.array([2.0, -1.0, 0.5, 0.0, 0.0]), 0.3)
    labels = (rng.random(300) < truth.scores(features)).astype(int)
    start = Head(np.array([0.5, 0.5, 0.5, 0.5, 0.5]), 0.0)
    fitted = fit_head(features, labels, start, l2=2.0)
    weights, bias = fitted.weights, fitted.bias
    # the gradient of log-loss + l2/2 |w - w_start|^2 vanishes at the answer
    residual = sigmoid(features @ weights + bias) - labels
    np.testing.assert_allclose(
        features.T @ residual + 2.0 * (weights - start.weights), 0, atol=1e-6
    )
    assert abs(residual.sum()) < 1e-4
    assert np.corrcoef(weights, truth.weights)[0, 1] > 0.95


def test_the_fit_stays_finite_on_separable_labels():
    features = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    fitted = fit_head(features, [0, 0, 1, 1], l2=1e-3)
    weights, bias = fitted.weights, fitted.bias
    assert np.all(np.isfinite(weights)) and np.isfinite(bias) and weights[0] > 0


def test_out_of_sample_probabilities_do_not_see_their_own_label():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] > 0).astype(int)
    labels[7] = 1 - labels[7]
    features[7, 0] = 3.0 * (1 if labels[7] == 0 else -1)  # far on the other side
    probabilities = out_of_sample_probabilities(features, labels, l2=0.1)
    assert abs(probabilities[7] - (1 - labels[7])) < 0.05  # the fold without it disagrees
    assert np.mean((probabilities > 0.5) == labels) > 0.95


def test_confident_learning_thresholds_flags_and_scores_by_hand():
    probabilities = np.array([0.9, 0.8, 0.1, 0.3, 0.2, 0.95])
    labels = np.array([1, 1, 1, 0, 0, 0])
    thresholds = class_thresholds(probabilities, labels)
    # bogus: mean of 1 - p over labeled bogus = (0.7 + 0.8 + 0.05) / 3; real: (0.9+0.8+0.1)/3
    np.testing.assert_allclose(thresholds, [1.55 / 3, 1.8 / 3])
    flagged = flag_label_issues(probabilities, labels, thresholds)
    assert flagged.tolist() == [False, False, True, False, False, True]
    scores = label_error_score(probabilities, labels, thresholds)
    np.testing.assert_allclose(scores, [0.1, 0.2, 1.9, 0.3, 0.2, 1.95])
    assert np.argsort(-scores)[:2].tolist() == [5, 2]
    assert np.isnan(label_error_score([0.5], [-1], thresholds)[0])


def test_review_needs_both_classes():
    from rbvet.core.errors import RbvetError

    with pytest.raises(RbvetError, match="at least 2 real"):
        review_labels(np.zeros((5, 2)), np.array([1, 0, 0, 0, 0]))


# --------------------------------------------------------------------- rbvet review


def test_review_lists_flipped_labels_first_as_json(simulated, tmp_path, capsys):
    image, catalog = simulated
    table = Table.read(catalog)
    truth = np.asarray(table["true_label"], int)
    flipped = np.flatnonzero(truth == 0)[[3, 9]]  # two bogus objects called real
    noisy = truth.copy()
    noisy[flipped] = 1
    edited = tmp_path / "noisy.ecsv"
    write_column(catalog, "vetted", noisy, edited)
    store = tmp_path / "labels.sqlite"
    label = ["label", str(image), "--catalog", str(edited), "--column", "vetted"]
    assert main(label + ["--labels", str(store)]) == 0
    output = tmp_path / "review.json"
    assert main(["review", "--labels", str(store), "--json", str(output), "--top", "4"]) == 0
    records = json.loads(output.read_text())
    assert len(records) == 4
    assert {"frame", "x", "y", "label", "probability_real", "rank_score"} <= set(records[0])
    assert all(r["frame"] == "field.fits" for r in records)
    top = {(round(r["x"], 3), round(r["y"], 3)) for r in records[:4]}
    wanted = {(round(float(table["x"][i]), 3), round(float(table["y"][i]), 3)) for i in flipped}
    assert wanted <= top
    assert all(r["label"] == 1 for r in records if (round(r["x"], 3), round(r["y"], 3)) in wanted)
    scores = [r["rank_score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    assert "labels reviewed" in capsys.readouterr().out


def test_review_of_a_missing_store_is_a_clean_error(tmp_path, capsys):
    assert main(["review", "--labels", str(tmp_path / "none.sqlite")]) == 2
    assert "rbvet: error:" in capsys.readouterr().err


def test_eight_percent_flipped_labels_are_found_in_the_top_of_the_review(tmp_path):
    """The brief's measure, smaller: 2 simulated 1024 px frames (bench_review runs 8)."""
    spec = importlib.util.spec_from_file_location("bench_review", BENCHMARKS / "bench_review.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.flipped_label_recall(tmp_path, n_frames=2, size=1024, seed=11)
    assert result["flipped"] >= 30
    assert result["recall"] >= 0.8, result


def test_the_bench_smooths_a_frame_in_place_for_its_unseen_domain(tmp_path):
    """bench_review --smooth: the FITS image itself is smoothed (what `rbvet label` and
    `rbvet review` then read), its flux and dtype kept."""
    from astropy.io import fits

    spec = importlib.util.spec_from_file_location("bench_review", BENCHMARKS / "bench_review.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    image = np.zeros((21, 21), np.float32)
    image[10, 10] = 100.0
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(image).writeto(path)
    bench.smooth_image(path, 0.8)
    smoothed = fits.getdata(path)
    assert smoothed.dtype.kind == "f" and smoothed.dtype.itemsize == 4
    assert 10.0 < smoothed[10, 10] < 50.0 and smoothed[10, 11] > 1.0
    assert smoothed.sum() == pytest.approx(100.0, rel=1e-4)


# ------------------------------------------------------------- the window's sort


def test_the_suspicious_sort_follows_the_review_once_given(simulated, tmp_path):
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.review import review_store
    from rbvet.core.model import load_model
    from rbvet.core.session import SORT_SUSPICIOUS, VettingSession
    from rbvet.gui.jobs import classify_frame

    image, catalog = simulated
    store = tmp_path / "labels.sqlite"
    argv = ["label", str(image), "--catalog", str(catalog), "--column", "true_label"]
    assert main(argv + ["--labels", str(store)]) == 0
    data, _ = run_job(classify_frame(str(image), str(catalog)))
    session = VettingSession(store)
    session.show(data)
    session.set_sort(SORT_SUSPICIOUS)
    before = session.display_order()
    assert "|label − score|" in session.suspicious_source()
    review = run_job(review_store(store, load_model()))
    # a review that ranks the least suspicious object first, to see the order follow it
    review.probabilities = np.where(review.labels == 1, 1.0, 0.0)
    review.probabilities[-1] = 1.0 - review.labels[-1]
    orders = []
    session.order_changed.connect(lambda: orders.append(session.display_order()))
    session.set_review(review)
    assert orders, "the order is announced as changed"
    first = session.display_order()[0]
    match = np.hypot(data.x[first] - review.x[-1], data.y[first] - review.y[-1]) < 1e-3
    assert match and before[0] != first
    assert "label review" in session.suspicious_source()
    # labels the review did not see (given after it) come after the reviewed ones
    kept = slice(0, len(review) - 5)
    partial = dataclasses.replace(
        review, **{name: getattr(review, name)[kept] for name in ARRAY_FIELDS}
    )
    session.set_review(partial)
    order = session.display_order()
    seen = np.isfinite(data.review_probability)
    labeled = data.labels >= 0
    assert seen.sum() == len(partial) and (labeled & ~seen).sum() == 5
    assert seen[order[: len(partial)]].all() and not seen[order[len(partial) :]].any()
    assert (data.labels[order[len(partial) : len(partial) + 5]] >= 0).all()


ARRAY_FIELDS = ("object_ids", "frame_ids", "frames", "x", "y", "labels", "probabilities")
ARRAY_FIELDS += ("scores", "flagged")


def test_a_head_fitted_toward_the_prior_beats_one_fitted_from_scratch_on_few_labels():
    """40 labels in 16 dimensions: from scratch the fit chases noise; pulled toward a good
    (not perfect) prior head it keeps what the prior knew and corrects it."""
    rng = np.random.default_rng(5)
    truth = Head(rng.normal(size=16), 0.0)
    prior = Head(truth.weights + 0.5 * rng.normal(size=16), 0.5)
    wins = []
    for _ in range(5):
        features = rng.normal(size=(2040, 16))
        labels = (rng.random(2040) < truth.scores(features)).astype(int)
        few, test = slice(0, 40), slice(40, None)
        pulled = fit_head(features[few], labels[few], prior)
        scratch = fit_head(features[few], labels[few], None)
        auc = [roc_auc(head.logits(features[test]), labels[test]) for head in (pulled, scratch)]
        wins.append(auc[0] - auc[1])
    assert min(wins) > 0.005, wins
    assert pulled.dropout_rate == prior.dropout_rate and scratch.dropout_rate == 0.0
