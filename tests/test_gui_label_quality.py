"""The window's label-quality pieces: the ECE/agreement line of the threshold panel and the
background label review behind the "likely label errors" sort."""

import numpy as np
import pytest

from rbvet.cli import main
from rbvet.core.session import BOGUS, REAL, SORT_SCORE, SORT_SUSPICIOUS, VettingSession
from rbvet.gui.state import VettingState
from rbvet.gui.threshold import ThresholdPanel

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def test_the_threshold_panel_shows_the_ece_once_both_classes_are_labeled(qtbot, make_vetting_data):
    state = VettingState()
    panel = ThresholdPanel(state)
    qtbot.addWidget(panel)
    data = make_vetting_data(n=60, seed=0, unscored=2)
    state.set_data(data, threshold=0.5)
    line = panel.quality_label
    assert line.text() == "" and line.calibration is None
    scored = np.flatnonzero(np.isfinite(data.scores))
    state.set_labels(scored[:20], REAL)
    state.set_labels(scored[20:40], BOGUS)
    qtbot.waitUntil(lambda: "→" in line.text())
    # random scores against these labels: the ECE is what calibration.reliability says
    from rbvet.core.learn.calibration import expected_calibration_error

    labeled = scored[:40]
    expected = expected_calibration_error(data.scores[labeled], data.labels[labeled])
    assert f"ECE {expected:.3f} →" in line.text()
    assert line.calibration.objects == 40
    assert "Reliability" in line.toolTip()


@pytest.fixture
def labeled_store(tmp_path):
    """A simulated frame, its catalog and a store with its truth labels imported."""
    image = tmp_path / "field.fits"
    assert main(["simulate", "-o", str(image), "--size", "512", "--seed", "3"]) == 0
    catalog, store = tmp_path / "field.ecsv", tmp_path / "labels.sqlite"
    argv = ["label", str(image), "--catalog", str(catalog), "--column", "true_label"]
    assert main(argv + ["--labels", str(store)]) == 0
    return image, catalog, store


def test_sorting_by_likely_label_errors_runs_the_review_in_the_background(qtbot, labeled_store):
    from rbvet.core.jobs import run_job
    from rbvet.gui.jobs import classify_frame
    from rbvet.gui.label_quality import LabelReviewer

    image, catalog, store = labeled_store
    state = VettingState(session=VettingSession(store))
    reviewer = LabelReviewer(state)
    data, _ = run_job(classify_frame(str(image), str(catalog)))
    state.session.show(data)
    messages = []
    reviewer.message.connect(messages.append)
    state.session.set_sort(SORT_SCORE)
    assert reviewer.job is None  # only the suspicious sort asks for a review
    with qtbot.waitSignal(reviewer.message, timeout=60000):
        state.session.set_sort(SORT_SUSPICIOUS)
    assert "in the background" in messages[0]
    qtbot.waitUntil(lambda: state.session.review is not None, timeout=60000)
    qtbot.waitUntil(lambda: reviewer.job is None, timeout=10000)
    assert "label review" in messages[-1]
    seen = np.isfinite(data.review_probability)
    assert seen.sum() == int((data.labels >= 0).sum())
    assert seen[state.session.display_order()[: seen.sum()]].all()
    # choosing the sort again uses the review already made
    state.session.set_sort(SORT_SCORE)
    state.session.set_sort(SORT_SUSPICIOUS)
    assert reviewer.job is None and "label review" in messages[-1]


def test_a_review_that_cannot_run_says_why_and_keeps_the_fallback(qtbot, tmp_path):
    from rbvet.gui.label_quality import LabelReviewer

    state = VettingState(session=VettingSession(tmp_path / "missing.sqlite"))
    reviewer = LabelReviewer(state)
    messages = []
    reviewer.message.connect(messages.append)
    reviewer.start()
    qtbot.waitUntil(lambda: reviewer.job is None, timeout=30000)
    assert "not possible" in messages[-1] and "|label − score|" in messages[-1]
    assert state.session.review is None
