"""The vetting session without Qt: order and filter, events, labels through a real store
with undo and redo, restoring a reopened frame, and where a retrained model is saved."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rbvet.core.errors import RbvetError
from rbvet.core.learn.labels import LabelStore
from rbvet.core.session import (
    BOGUS,
    FILTER_ANNOTATORS_DISAGREE,
    FILTER_BOGUS,
    FILTER_DISAGREE,
    FILTER_LABELED,
    FILTER_REAL,
    FILTER_UNLABELED,
    FILTER_UNSCORED,
    FILTERS,
    REAL,
    SORT_POSITION,
    SORT_SCORE,
    SORT_SUSPICIOUS,
    SORT_UNCERTAINTY,
    UNLABELED,
    VettingSession,
    column_sort_key,
    model_save_target,
    with_score_order,
)

TESTS = Path(__file__).parent


def reference_order(data, key, descending, filter_name, threshold):
    """Display order written the slow, obvious way: Python's sort over tuples.

    Kept objects, scored ones with a value for the key first (by value, then catalog
    order), then scored ones without a value, then unscored ones (catalog order).
    """
    rows = []
    for i in range(len(data)):
        score, label = float(data.scores[i]), int(data.labels[i])
        scored = np.isfinite(score)
        above = scored and score >= np.float32(threshold)
        keep = {
            "all": True,
            FILTER_REAL: above,
            FILTER_BOGUS: scored and not above,
            FILTER_UNLABELED: label == UNLABELED,
            FILTER_LABELED: label != UNLABELED,
            FILTER_DISAGREE: (label == REAL and scored and not above)
            or (label == BOGUS and above),
            FILTER_UNSCORED: not scored,
            FILTER_ANNOTATORS_DISAGREE: data.annotators_disagree is not None
            and bool(data.annotators_disagree[i]),
        }[filter_name]
        if not keep:
            continue
        if key == SORT_SCORE:
            value = (score,)
        elif key == SORT_UNCERTAINTY:
            value = (abs(score - threshold),)
        elif key == SORT_SUSPICIOUS:
            value = (abs(label - score) if label != UNLABELED else np.nan,)
        elif key == SORT_POSITION:
            value = (float(data.y[i]), float(data.x[i]))
        else:
            value = (float(data.table[key.split(":", 1)[1]][i]),)
        has_value = all(np.isfinite(v) for v in value)
        sign = -1 if descending else 1
        group = 2 if not scored else (0 if has_value else 1)
        keyed = tuple(sign * v for v in value) if has_value else (0.0,) * len(value)
        rows.append((group, keyed, i))
    return np.array([i for _, _, i in sorted(rows)], np.intp)


class Recorder:
    """Every event of a session, in order, as (name, args)."""

    NAMES = (
        "data_changed",
        "threshold_changed",
        "selection_changed",
        "labels_changed",
        "order_changed",
        "order_settings_changed",
        "counts_changed",
        "store_changed",
        "error",
        "message",
    )

    def __init__(self, session):
        self.events = []
        for name in self.NAMES:
            getattr(session, name).connect(
                lambda *args, name=name: self.events.append((name, args))
            )

    def names(self):
        return [name for name, _ in self.events]

    def clear(self):
        self.events.clear()


def test_a_session_is_driven_without_qt(tmp_path):
    script = f"""
import json, sys
sys.path.insert(0, {str(TESTS)!r})
from conftest import vetting_data
from rbvet.core.session import REAL, BOGUS, VettingSession
session = VettingSession({str(tmp_path / "labels.sqlite")!r})
data = vetting_data(n=30, seed=2, unscored=1)
session.show(data, threshold=0.4)
session.set_sort("position")
session.set_filter("real")
first = [int(i) for i in session.display_order()[:3]]
ok = session.label(first, REAL) and session.label(first[:1], BOGUS)
session.undo()
heavy = [m for m in ("PyQt6", "pyqtgraph", "tensorflow", "keras") if m in sys.modules]
print(json.dumps({{"ok": ok, "labels": [int(v) for v in data.labels[first]], "heavy": heavy}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["ok"] and report["labels"] == [REAL, REAL, REAL]


@pytest.mark.parametrize(
    ("key", "descending"),
    [
        (SORT_SCORE, True),
        (SORT_SCORE, False),
        (SORT_UNCERTAINTY, False),
        (SORT_SUSPICIOUS, True),
        (SORT_POSITION, False),
        (column_sort_key("flux"), True),
        (column_sort_key("flux"), False),
    ],
)
@pytest.mark.parametrize("made_ahead", [False, True])
def test_display_order_matches_a_slow_reference(session, data, key, descending, made_ahead):
    data.scores[1:4] = data.scores[0]  # ties keep catalog order
    if made_ahead:  # the score order made in the worker gives the same orders
        with_score_order(data)
        assert data.score_order is not None
    labels = np.full(len(data), UNLABELED, np.int8)
    labels[[3, 9, 17, 40, 59]] = [REAL, BOGUS, REAL, BOGUS, REAL]  # 59 is unscored
    session.update_labels(np.arange(len(data)), labels)
    session.set_sort(key, descending)
    for threshold in (0.5, 0.23):
        session.set_threshold(threshold)
        for name in FILTERS:
            session.set_filter(name)
            expected = reference_order(data, key, descending, name, threshold)
            assert np.array_equal(session.display_order(), expected), (name, threshold)
            mask = np.zeros(len(data), bool)
            mask[expected] = True
            assert np.array_equal(session.visible(), mask)


def test_a_sort_key_sets_its_natural_direction(session):
    session.set_sort(SORT_UNCERTAINTY)
    assert session.sort_key == SORT_UNCERTAINTY and not session.descending
    session.set_sort(SORT_SCORE)
    assert session.descending
    with pytest.raises(ValueError):
        session.set_sort("brightness")
    with pytest.raises(ValueError):
        session.set_filter("maybe")


def test_a_missing_column_sort_falls_back_to_the_score(session, make_vetting_data):
    session.set_sort(column_sort_key("flux"))
    other = make_vetting_data(n=20, seed=4, unscored=0)
    other.table.remove_column("flux")
    session.set_data(other)
    assert (session.sort_key, session.descending) == (SORT_SCORE, True)
    assert np.array_equal(session.display_order(), np.argsort(-other.scores, kind="stable"))


def test_events_fire_once_per_change_and_never_without_one(session, data):
    events = Recorder(session)
    session.set_threshold(0.5)  # the same value
    session.set_threshold(7.0)  # clipped to 1.0: a change
    session.set_threshold(1.0)  # the same again
    assert events.events == [("threshold_changed", (1.0,))]  # the score sort ignores it

    events.clear()
    session.set_filter(FILTER_REAL)
    assert events.names() == ["order_settings_changed", "order_changed"]
    events.clear()
    session.set_threshold(0.3)  # the real filter follows the threshold
    assert events.names() == ["threshold_changed", "order_changed"]

    events.clear()
    session.select(5)
    session.select(5)
    session.select(10_000)  # out of range: nothing selected
    assert events.events == [("selection_changed", (5,)), ("selection_changed", (-1,))]

    events.clear()
    session.set_labels([1, 2], REAL)  # in memory; the real filter ignores labels
    assert events.names() == ["labels_changed"]
    assert list(events.events[0][1][0]) == [1, 2]
    session.set_filter(FILTER_UNLABELED)
    events.clear()
    session.set_labels([4], BOGUS)
    assert events.names() == ["labels_changed", "order_changed"]

    events.clear()
    session.set_data(data, threshold=0.3)  # same threshold: no threshold event
    assert events.names() == ["data_changed", "selection_changed"]
    assert session.selected == -1


def stored(session, objects):
    """Labels of objects as a second connection to the store reads them."""
    with LabelStore(session.store_path, create=False) as store:
        return store.labels(session.object_ids[np.asarray(objects)])


def test_labels_undo_and_redo_go_through_the_store(session, data):
    assert not session.store_path.exists()  # showing a frame writes nothing
    assert not session.can_undo
    events = Recorder(session)
    order = session.display_order()
    assert session.label(order[:3], REAL)
    assert session.store_path.exists()
    assert events.names().count("labels_changed") == 1  # one action, one event
    assert ("message", ("Labeled 3 real",)) in events.events
    assert session.label(order[2:5], BOGUS)
    assert list(stored(session, order[:5])) == [REAL, REAL, BOGUS, BOGUS, BOGUS]
    assert session.frame_counts() == (2, 3)

    changed = session.undo()  # the bogus action, as one step
    assert sorted(changed) == sorted(order[2:5])
    assert list(data.labels[order[:5]]) == [REAL, REAL, REAL, UNLABELED, UNLABELED]
    assert list(stored(session, order[:5])) == [REAL, REAL, REAL, UNLABELED, UNLABELED]
    assert session.can_redo
    session.undo()
    assert (data.labels == UNLABELED).all() and not session.can_undo
    assert len(session.undo()) == 0  # nothing left: no harm
    session.redo()
    session.redo()
    assert list(data.labels[order[:5]]) == [REAL, REAL, BOGUS, BOGUS, BOGUS]
    assert not session.can_redo

    events.clear()
    unscored = np.flatnonzero(~np.isfinite(data.scores))
    assert session.label(unscored, REAL)  # nothing to store: no action, a note
    assert (data.labels[unscored] == UNLABELED).all()
    assert events.names() == ["message"] and "cannot be labeled" in events.events[0][1][0]


def test_bulk_bogus_below_the_threshold_is_one_undo_step(session, data):
    below = np.flatnonzero(np.isfinite(data.scores) & (data.scores < 0.5))
    session.label(below[:1], REAL)  # a label given by hand is kept
    assert np.array_equal(session.below_threshold_candidates(), below[1:])
    assert session.label_below_threshold() == len(below) - 1
    assert (data.labels[below[1:]] == BOGUS).all() and data.labels[below[0]] == REAL
    assert set(session.frame_training_data().kinds) == {"human", "model"}
    session.undo()
    assert np.count_nonzero(data.labels != UNLABELED) == 1


def test_reopening_a_frame_restores_its_labels(tmp_path, session, data, make_vetting_data):
    order = session.display_order()
    session.label(order[:4], REAL)
    session.label(order[10:13], BOGUS)
    session.label(order[:1], UNLABELED)  # cleared: restored as unlabeled
    given = data.labels.copy()
    session.close_store()

    again = VettingSession(session.store_path)
    same = make_vetting_data(n=60, seed=0, unscored=2)  # the same pixels, a new catalog
    same.x = same.x + 0.3  # positions measured again, a little off
    assert again.show(same, threshold=0.5) == 6
    assert np.array_equal(same.labels, given)
    assert again.frame_counts() == (3, 3)
    again.label(order[1:2], BOGUS)  # the stored object changes; no new one
    with LabelStore(session.store_path, create=False) as store:
        assert store.summary()["objects"] == 7
    again.undo()  # this session's relabel is taken back ...
    assert np.array_equal(same.labels, given)
    again.undo()  # ... and nothing of the first session's: undo is this program's own
    assert np.array_equal(same.labels, given) and same.labels[order[0]] == UNLABELED
    other = make_vetting_data(n=60, seed=1, unscored=2)
    assert again.show(other) == 0 and (other.labels == UNLABELED).all()
    again.close_store()


def test_store_errors_are_events_not_exceptions(tmp_path, data):
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    session = VettingSession(path)
    errors = []
    session.error.connect(errors.append)
    assert not session.open_store()
    assert len(errors) == 1 and "not an rbvet label store" in errors[0]
    session.set_data(data)
    assert not session.label([0], REAL)
    assert (data.labels == UNLABELED).all() and session.store_error
    with pytest.raises(RbvetError, match="no labeled objects"):
        session.frame_training_data()
    assert session.open_store(tmp_path / "fine.sqlite", create=True)
    assert session.store_error == "" and session.label([0], REAL)


def test_the_save_target_of_a_retrained_model(tmp_path):
    from rbvet.core.paths import default_model_path

    models = tmp_path / "models"
    shipped = model_save_target(None, models)  # the shipped folder is never written
    assert shipped == models / default_model_path().name
    mine = tmp_path / "mine" / "better.v2.keras"
    mine.parent.mkdir()
    assert model_save_target(mine, models) == mine.parent.resolve() / mine.name
    assert model_save_target(tmp_path / "old.h5", models).name == "old.keras"
    session = VettingSession(tmp_path / "labels.sqlite", models_dir=models)
    assert session.save_target() == shipped
    session.model_path = str(mine)
    assert session.save_target() == mine.parent.resolve() / mine.name


def test_retraining_from_a_missing_store_says_so(tmp_path):
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.retrain import retrain_from_store

    with pytest.raises(RbvetError, match="no such label store"):
        run_job(retrain_from_store(tmp_path / "none.sqlite"))
    assert not (tmp_path / "none.sqlite").exists()


def test_counts_are_said_with_their_noun_in_the_right_number():
    from rbvet.core.session import count_text

    assert [count_text(n, "object") for n in (0, 1, 2, 12345)] == [
        "0 objects", "1 object", "2 objects", "12,345 objects"
    ]  # fmt: skip


def test_labels_record_where_they_came_from_the_model_and_the_score_on_screen(session, data):
    import sqlite3

    order = session.display_order()
    session.label(order[:1], REAL)  # one key press
    session.label(order[1:4], BOGUS)  # a bulk action
    with sqlite3.connect(session.store_path) as connection:
        rows = connection.execute(
            "SELECT origin, model, score_on_screen FROM label_log WHERE action = 'set'"
            " ORDER BY event"
        ).fetchall()
    assert [row[0] for row in rows] == ["key", "bulk", "bulk", "bulk"]
    assert {row[1] for row in rows} == {data.model_name}
    shown = sorted(float(s) for s in data.scores[order[1:4]])
    assert rows[0][2] == pytest.approx(float(data.scores[order[0]]))
    assert sorted(row[2] for row in rows[1:]) == pytest.approx(shown)
