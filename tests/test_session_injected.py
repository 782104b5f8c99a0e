"""The injected objects of an assessment in the vetting session: kept as they were scored,
shown instead of the frame's objects by the "injected objects" filter, never labels, and the
frame's objects unchanged when another filter is chosen."""

import numpy as np
import pytest
from astropy.table import Table

from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
from rbvet.core.inject import assess as assess_module
from rbvet.core.inject.assess import (
    NOT_DETECTED,
    _record_detections,
    assess_loaded,
    picture_injections,
)
from rbvet.core.inject.inject import InjectionSettings
from rbvet.core.jobs import run_job
from rbvet.core.model.cache import cached_model
from rbvet.core.session import (
    FILTER_ALL,
    FILTER_INJECTED,
    FILTER_REAL,
    REAL,
    SORT_POSITION,
    UNLABELED,
    VettingData,
    VettingSession,
    injected_order,
    injected_outcomes,
    injected_summary,
)

SETTINGS = InjectionSettings(injections=120, rounds=2, seed=4)


@pytest.fixture(scope="module")
def assessment(crowded_frame):
    frame, table = crowded_frame
    return run_job(
        assess_loaded(frame, table, 2.5, cached_model(), settings=SETTINGS, keep_stamps=True)
    )


def frame_data(frame, table, model_name=None):
    """The frame's own objects as a session shows them (scores made up)."""
    model = cached_model()
    n = len(table)
    scores = np.random.default_rng(0).uniform(0, 1, n).astype(np.float32)
    return VettingData.from_scores(
        frame,
        table.copy(),
        scores,
        np.full(n, ""),
        empty_atlas(n, model.input_size),
        fwhm=2.5,
        params=model.params,
        model_name=model.name if model_name is None else model_name,
    )


def test_assessment_keeps_each_injection_as_it_was_scored(crowded_frame, assessment):
    frame, _ = crowded_frame
    truth, pictures = assessment.truth, assessment.stamps
    assert len(pictures) == len(truth) == assessment.summary["counts"]["placed"]
    assert pictures.tiles.dtype == np.uint8 and pictures.tiles.shape[1:] == (31, 63)
    detected = np.asarray(truth["detected"])
    assert detected.any() and not detected.all()
    # Detected ones are cut where their best detection was, the others where injected.
    np.testing.assert_array_equal(pictures.x[detected], truth["x_scored"][detected])
    np.testing.assert_array_equal(pictures.x[~detected], truth["x"][~detected])
    assert set(pictures.reasons[~detected]) == {NOT_DETECTED}
    # Cut from the injected frame, not the frame itself: bright injected stars are there.
    bright = np.flatnonzero(detected & (np.asarray(truth["snr"]) > 50))
    assert len(bright)
    centre = pictures.stamps.shape[1] // 2
    ix = np.rint(pictures.x[bright]).astype(int)
    iy = np.rint(pictures.y[bright]).astype(int)
    added = pictures.stamps[bright, centre, centre] - frame.image[iy, ix]
    assert np.all(added > 5 * np.median(frame.noise))


def test_a_picture_is_the_input_its_score_came_from(crowded_frame):
    from rbvet.core.classify import iter_model_inputs

    frame, _ = crowded_frame
    model = cached_model()
    truth = Table(
        {
            "x": [100.0, 200.0],
            "y": [100.0, 150.0],
            "detected": [True, False],
            "x_scored": [101.3, np.nan],
            "y_scored": [99.2, np.nan],
        }
    )
    pictures = picture_injections(frame, truth, model, 2.5)
    (_, scored), *_ = iter_model_inputs(frame, [101.3, 200.0], [99.2, 150.0], model, 2.5)
    np.testing.assert_array_equal(pictures.tiles, render_tiles(scored.inputs))
    assert list(pictures.reasons) == ["", NOT_DETECTED]


def test_the_best_scoring_detection_gives_the_position():
    truth = Table({"x": [0.0, 50.0, 90.0]})
    owner = np.array([0, 0, 0, 1])
    scores = np.array([0.1, 0.8, np.nan, np.nan], np.float32)
    x = np.array([1.0, 2.0, 3.0, 51.0])
    _record_detections(truth, owner, scores, x, x + 100)
    np.testing.assert_array_equal(truth["x_scored"][:2], [2.0, 51.0])  # unscored: its own
    np.testing.assert_array_equal(truth["y_scored"][:2], [102.0, 151.0])
    assert np.isnan(truth["x_scored"][2])
    # A round in which no injection was detected: every position NaN, nothing detected.
    nothing = Table({"x": [0.0, 50.0]})
    empty = np.zeros(0)
    _record_detections(nothing, np.zeros(0, np.int64), empty.astype(np.float32), empty, empty)
    assert not nothing["detected"].any() and np.isnan(nothing["x_scored"]).all()


def test_stamps_kept_are_bounded(crowded_frame, monkeypatch, tmp_path):
    frame, table = crowded_frame
    monkeypatch.setattr(assess_module, "MAX_KEPT_STAMPS", 40)
    bounded = run_job(
        assess_loaded(frame, table, 2.5, cached_model(), settings=SETTINGS, keep_stamps=True)
    )
    assert len(bounded.stamps) == 40 < len(bounded.truth)
    session = VettingSession(store_path=tmp_path / "labels.sqlite")
    session.set_data(frame_data(frame, table))
    session.set_assessment(bounded)
    assert "the first 40 of" in session.injected_summary()
    # Without keep_stamps nothing is kept (the command line's run).
    plain = run_job(assess_loaded(frame, table, 2.5, cached_model(), settings=SETTINGS))
    assert plain.stamps is None


def test_injected_order_puts_the_worst_of_each_kind_first():
    kind = ["cosmic_ray", "star", "star", "star", "star", "cosmic_ray", "cosmic_ray", "galaxy"]
    detected = [True, True, False, True, True, False, True, True]
    score = [0.2, 0.9, np.nan, 0.1, np.nan, np.nan, 0.95, 0.4]
    order = injected_order(kind, detected, score)
    # stars: the missed (0.1), the found (0.9), detected unscored, undetected; the galaxy;
    # hits: the false pass (0.95), the rejected (0.2), the undetected.
    np.testing.assert_array_equal(order, [3, 1, 4, 2, 7, 6, 0, 5])


def test_outcomes_follow_the_threshold():
    table = Table(
        {
            "kind": ["star", "star", "star", "hot_pixel", "hot_pixel"],
            "detected": [True, True, False, True, True],
        }
    )
    scores = np.array([0.9, 0.3, np.nan, 0.7, 0.1], np.float32)
    data = VettingData(
        None, table, np.zeros(5), np.zeros(5), scores, np.full(5, ""), None, 2.5, None, None
    )
    assert list(injected_outcomes(data, 0.5)) == [
        "found",
        "missed",
        "not detected",
        "passed",
        "rejected",
    ]
    assert list(injected_outcomes(data, 0.8))[3] == "rejected"
    text = injected_summary(data, 0.5)
    assert "1 missed, 1 not detected of 3" in text and "1 passed as real of 2" in text


def test_injected_objects_show_instead_of_the_frame_and_leave_it_unchanged(
    crowded_frame, assessment, tmp_path
):
    frame, table = crowded_frame
    session = VettingSession(store_path=tmp_path / "labels.sqlite")
    data = frame_data(frame, table)
    session.set_data(data)
    session.set_sort(SORT_POSITION)
    session.set_filter(FILTER_REAL)
    session.select(3)
    order_before = session.display_order()
    changes = []
    session.injected_changed.connect(lambda: changes.append(session.showing_injected))
    with pytest.raises(ValueError, match="assess this frame first"):
        session.set_filter(FILTER_INJECTED)

    session.set_assessment(assessment)
    assert session.injected_available and changes == [False]
    session.set_filter(FILTER_INJECTED)
    assert session.showing_injected and session.filter_name == FILTER_INJECTED
    assert changes == [False, True]
    injected = session.injected_session.data
    assert len(injected) == len(assessment.truth)
    assert injected.atlas is assessment.stamps.tiles
    tags = {"star", "galaxy", "cosmic ray", "hot pixel", "trail", "column"}
    assert {"star", "cosmic ray"} <= set(injected.tags) <= tags
    shown = session.injected_session.display_order()
    assert len(shown) == len(injected)  # undetected ones too
    kinds = np.asarray(injected.table["kind"])[shown]
    assert kinds[0] == "star" and kinds[-1] != "star"
    # The frame's data, order and selection stay as they were underneath.
    assert session.data is data and session.selected == 3
    np.testing.assert_array_equal(session.display_order(), order_before)
    # The threshold is shared.
    session.set_threshold(0.8)
    assert session.injected_session.threshold == 0.8
    session.set_threshold(0.5)

    session.set_filter(FILTER_REAL)
    assert not session.showing_injected and changes[-1] is False
    np.testing.assert_array_equal(session.display_order(), order_before)
    assert session.data is data and session.selected == 3


def test_injected_objects_are_never_labels(crowded_frame, assessment, tmp_path):
    frame, table = crowded_frame
    store = tmp_path / "labels.sqlite"
    session = VettingSession(store_path=store)
    session.set_data(frame_data(frame, table))
    session.set_assessment(assessment)
    session.set_filter(FILTER_INJECTED)
    messages = []
    session.message.connect(messages.append)
    injected = session.injected_session
    assert not injected.label([0, 1], REAL)
    assert np.all(injected.data.labels == UNLABELED)
    assert not len(injected.undo()) and not len(injected.redo())
    # While they are shown, a label meant for the frame's (hidden) objects is refused too.
    assert not session.label([0], REAL) and session.label_below_threshold() == 0
    assert np.all(session.data.labels == UNLABELED)
    assert not store.exists()  # nothing was stored
    assert len(messages) == 5 and all("never labels" in text for text in messages)
    session.set_filter(FILTER_ALL)
    assert session.label([0], REAL) and store.exists()


def test_injected_objects_belong_to_their_frame_and_model(crowded_frame, assessment, tmp_path):
    frame, table = crowded_frame
    session = VettingSession(store_path=tmp_path / "labels.sqlite")
    session.set_data(frame_data(frame, table))
    session.set_assessment(assessment)
    session.set_filter(FILTER_INJECTED)
    changes = []
    session.injected_changed.connect(lambda: changes.append(session.injected_available))
    # Another model's scores of the same frame: not what was assessed.
    session.set_data(frame_data(frame, table, model_name="another.keras"))
    assert not session.showing_injected and session.filter_name != FILTER_INJECTED
    assert changes == [False]
    # The frame scored again with the assessed model: its injected objects are back.
    session.set_data(frame_data(frame, table))
    assert session.injected_available
    session.set_filter(FILTER_INJECTED)
    assert session.showing_injected
    session.set_assessment(None)
    assert not session.showing_injected and not session.injected_available
