"""The label store: idempotent frames and objects, append-only events, undo/redo, crashes."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
from rbvet.core.cutouts.stamps import cut_stamps
from rbvet.core.errors import RbvetError
from rbvet.core.io.frame import frame_from_array
from rbvet.core.learn.labels import (
    LabelStore,
    decode_stamps,
    default_store_path,
    encode_stamps,
    frame_hash,
    match_positions,
)


def frame_and_stamps(make_star_field, fwhm=3.0, n=40, seed=0, shape=(192, 192)):
    image, x, y, _ = make_star_field(shape=shape, fwhm=fwhm, n=n, seed=seed)
    frame = frame_from_array(image).ensure_background()
    rescale = plan_rescale(fwhm, PreprocessParams())
    return frame, x, y, rescale, cut_stamps(frame, x, y, rescale)


@pytest.fixture
def store_with_objects(tmp_path, make_star_field):
    """A store holding one frame of 40 objects: ``(store, frame_id, ids, frame, x, y, stamps)``."""
    frame, x, y, rescale, stamps = frame_and_stamps(make_star_field)
    store = LabelStore(tmp_path / "labels.sqlite")
    frame_id = store.add_frame(frame, 3.0, rescale)
    ids = store.add_objects(frame_id, x, y, stamps)
    yield store, frame_id, ids, frame, x, y, stamps
    store.close()


def test_stamp_blobs_are_lossless():
    rng = np.random.default_rng(0)
    stamps = (rng.normal(100, 5, (7, 31, 31)) * np.float32(1.37)).astype(np.float32)
    stamps[0, 3, 4] = np.nan
    decoded = decode_stamps(encode_stamps(stamps), 31)
    np.testing.assert_array_equal(decoded, stamps)


def shuffled_bytes(stamps):
    """Each stamp's bytes grouped by significance: what a stamp blob holds, uncompressed."""
    stamps = np.ascontiguousarray(stamps, dtype="<f4")
    planes = stamps.view(np.uint8).reshape(len(stamps), -1, 4).transpose(0, 2, 1)
    return [plane.tobytes() for plane in planes]


@pytest.mark.parametrize("size", [31, 301])  # 301: a byte plane needs two stored blocks
def test_stamp_blobs_are_plain_zlib_streams(size):
    """Noisy stamps store their random low bytes uncompressed, inside a standard zlib
    stream: stores written now stay readable by earlier versions."""
    rng = np.random.default_rng(1)
    stamps = rng.normal(1000, 30, (3, size, size)).astype(np.float32)
    stamps[1, :5] = np.nan
    blobs = encode_stamps(stamps)
    assert [zlib.decompress(blob) for blob in blobs] == shuffled_bytes(stamps)
    assert blobs != [zlib.compress(data, 1) for data in shuffled_bytes(stamps)]
    assert sum(map(len, blobs)) < stamps.nbytes
    np.testing.assert_array_equal(decode_stamps(blobs, size), stamps)


def test_stamp_blobs_of_earlier_versions_are_read():
    """Stores written before random byte planes were stored hold one ``zlib.compress``
    (level 1) of each stamp's shuffled bytes; smooth stamps are still written that way."""
    rng = np.random.default_rng(2)
    smooth = np.cumsum(np.ones((4, 31, 31), np.float32), axis=2) * np.float32(0.25)
    noisy = rng.normal(100, 5, (4, 31, 31)).astype(np.float32)
    for stamps in (smooth, noisy):
        earlier = [zlib.compress(data, 1) for data in shuffled_bytes(stamps)]
        np.testing.assert_array_equal(decode_stamps(earlier, 31), stamps)
    assert encode_stamps(smooth) == [zlib.compress(data, 1) for data in shuffled_bytes(smooth)]


def test_frames_and_objects_are_added_once(store_with_objects, make_star_field):
    store, frame_id, ids, frame, x, y, stamps = store_with_objects
    assert len(np.unique(ids)) == len(ids) == 40
    # Same pixels under another name (and another Frame object): the same frame.
    again = frame_from_array(frame.image.copy())
    again.path = "elsewhere/copy.fits"
    assert store.add_frame(again, 3.0, stamps.rescale) == frame_id
    assert store.find_frame(again) == frame_id
    np.testing.assert_array_equal(store.add_objects(frame_id, x, y, stamps), ids)
    # A subset, reversed, and a repeated position map to the stored ids.
    subset = np.array([5, 3, 3, 0])
    part = cut_stamps(frame, x[subset], y[subset], stamps.rescale)
    np.testing.assert_array_equal(
        store.add_objects(frame_id, x[subset], y[subset], part), ids[subset]
    )
    assert store.summary()["objects"] == 40 and store.summary()["frames"] == 1
    # Different pixels: a new frame.
    other, *_ = frame_and_stamps(make_star_field, seed=1)
    assert frame_hash(other.image) != frame_hash(frame.image)
    assert store.add_frame(other, 3.0, stamps.rescale) != frame_id
    assert store.summary()["frames"] == 2


def test_non_finite_positions_are_not_stored(store_with_objects):
    store, frame_id, _, frame, x, y, stamps = store_with_objects
    x2 = np.array([np.nan, 20.5])
    y2 = np.array([30.0, 21.25])
    new = store.add_objects(frame_id, x2, y2, cut_stamps(frame, x2, y2, stamps.rescale))
    assert new[0] == -1 and new[1] > 0
    with pytest.raises(RbvetError, match="not in the store"):
        store.set_labels(new, 1)


def test_labels_undo_and_redo_across_bulk_actions(store_with_objects):
    store, _, ids, *_ = store_with_objects
    rng = np.random.default_rng(3)
    assert store.undo().size == 0 and store.redo().size == 0
    states = [store.labels(ids)]
    actions = []
    for step in range(8):
        chosen = rng.choice(ids, size=int(rng.integers(1, 30)), replace=False)  # bulk actions
        label = [1, 0, -1][step % 3]
        actions.append(store.set_labels(chosen, label))
        expected = states[-1].copy()
        expected[np.searchsorted(ids, chosen)] = label
        np.testing.assert_array_equal(store.labels(ids), expected)
        states.append(expected)
    assert actions == sorted(actions)
    for back in range(1, 9):  # all the way back ...
        changed = store.undo()
        assert changed.size > 0
        np.testing.assert_array_equal(store.labels(ids), states[-1 - back])
    assert store.undo().size == 0 and not store.can_undo
    for forward in range(1, 9):  # ... and forward again
        assert store.redo().size > 0
        np.testing.assert_array_equal(store.labels(ids), states[forward])
    assert store.redo().size == 0
    for _ in range(3):  # and some steps back
        store.undo()
    np.testing.assert_array_equal(store.labels(ids), states[5])


def test_a_new_action_clears_the_redo_stack(store_with_objects):
    store, _, ids, *_ = store_with_objects
    store.set_labels(ids[:10], 1)
    store.set_labels(ids[5:15], 0)
    store.undo()
    assert store.can_redo
    store.set_labels(ids[20:25], 0)
    assert not store.can_redo and store.redo().size == 0
    expected = np.full(len(ids), -1)
    expected[:10], expected[20:25] = 1, 0
    np.testing.assert_array_equal(store.labels(ids), expected)
    store.undo()
    store.undo()
    assert (store.labels(ids) == -1).all()


def test_the_event_log_only_grows(store_with_objects):
    store, _, ids, *_ = store_with_objects
    path = store.path

    def snapshot():
        with sqlite3.connect(path) as connection:
            return (
                connection.execute("SELECT * FROM events ORDER BY id").fetchall(),
                connection.execute("SELECT * FROM actions ORDER BY id").fetchall(),
            )

    store.set_labels(ids[:12], 1)
    store.set_labels(ids[6:20], 0)
    before = snapshot()
    store.undo()
    store.undo()
    store.redo()
    after = snapshot()
    for old, new in zip(before, after, strict=True):
        assert len(new) > len(old) and new[: len(old)] == old
    assert store.event_count() == len(after[0])
    with sqlite3.connect(path) as connection:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE events SET label = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM actions")
        kinds = [row[0] for row in connection.execute("SELECT action FROM label_log")]
    assert {"set", "undo", "redo"} <= set(kinds)


def test_labels_and_sources_are_checked(store_with_objects):
    store, _, ids, *_ = store_with_objects
    with pytest.raises(RbvetError, match="label must be"):
        store.set_labels(ids[:2], 2)
    with pytest.raises(RbvetError, match="source"):
        store.set_labels(ids[:2], 1, source="robot")
    with pytest.raises(RbvetError, match="not in the label store"):
        store.set_labels([ids.max() + 100], 1)
    np.testing.assert_array_equal(store.labels([ids[0], 99999]), [-1, -1])
    assert store.summary()["actions"] == 0  # failed actions leave nothing behind


@pytest.mark.parametrize("fwhm", [3.0, 7.0, 1.2])
def test_training_data_equals_the_inputs_of_the_stamps(tmp_path, make_star_field, fwhm):
    frame, x, y, rescale, stamps = frame_and_stamps(make_star_field, fwhm=fwhm, shape=(320, 320))
    params = PreprocessParams()
    with LabelStore(tmp_path / "s.sqlite") as store:
        frame_id = store.add_frame(frame, fwhm, rescale)
        ids = store.add_objects(frame_id, x, y, stamps)
        store.set_labels(ids[::2], 1)
        store.set_labels(ids[1::4], 0)
        store.set_labels(ids[:2], 1, source="model")
        data = store.training_data(params)
    labeled = np.sort(np.concatenate([ids[::2], ids[1::4]]))
    np.testing.assert_array_equal(data.object_ids, labeled)
    rows = np.searchsorted(ids, data.object_ids)
    np.testing.assert_allclose(data.inputs, stamps.inputs(params)[rows], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(data.stamps, stamps.data[rows])
    assert data.inputs.shape[1:] == (31, 31, 2)
    assert set(data.labels.tolist()) == {0, 1} and (data.groups == frame_id).all()
    assert np.allclose(data.fwhm, fwhm)
    assert sorted(set(data.kinds.tolist())) == ["human", "model"]


def test_training_data_of_several_frames(tmp_path, make_star_field):
    with LabelStore(tmp_path / "s.sqlite") as store:
        frame_ids = []
        for seed, fwhm in ((0, 3.0), (1, 6.5)):
            frame, x, y, rescale, stamps = frame_and_stamps(make_star_field, fwhm=fwhm, seed=seed)
            frame_ids.append(store.add_frame(frame, fwhm, rescale))
            store.set_labels(store.add_objects(frame_ids[-1], x, y, stamps)[:10], 1)
        both = store.training_data()
        second = store.training_data(frame_ids=[frame_ids[1]])
    assert len(both) == 20 and sorted(set(both.groups.tolist())) == frame_ids
    assert len(second) == 10 and (second.groups == frame_ids[1]).all()
    assert both.stamps.shape[1] == 62 and np.isnan(both.stamps[0, 40, 40])  # NaN-padded
    assert set(both.stamp_size.tolist()) == {31, 62}


def test_reopened_store_gives_the_labels_back(tmp_path, make_star_field):
    frame, x, y, rescale, stamps = frame_and_stamps(make_star_field)
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        ids = store.add_objects(store.add_frame(frame, 3.0, rescale), x, y, stamps)
        store.set_labels(ids[:5], 1)
        store.set_labels(ids[5:8], 0)
    reopened_frame = frame_from_array(frame.image.copy())
    with LabelStore(path) as store:
        frame_id = store.find_frame(reopened_frame)
        assert frame_id is not None
        stored_x, stored_y, labels = store.frame_labels(frame_id)
        # A catalog in another order finds its rows' labels by position.
        order = np.random.default_rng(0).permutation(len(x))
        found = match_positions(x[order], y[order], stored_x, stored_y)
        assert (found >= 0).all()
        expected = np.full(len(x), -1)
        expected[:5], expected[5:8] = 1, 0
        np.testing.assert_array_equal(labels[found], expected[order])
        # Undo is the session's own: the earlier session's labels stay.
        assert not store.can_undo
        assert store.undo().size == 0
        summary = store.summary()
    assert (summary["real"], summary["bogus"], summary["objects"]) == (5, 3, 40)


def test_default_store_lives_in_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_store_path() == tmp_path / "data" / "rbvet" / "labels.sqlite"
    with LabelStore() as store:
        assert store.path == default_store_path() and store.path.exists()
        assert store.journal_mode == "wal"


def test_missing_store_is_not_created_when_asked_not_to(tmp_path):
    with pytest.raises(RbvetError, match="no such label store"):
        LabelStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


_LABELER = textwrap.dedent(
    """
    import sys
    from rbvet.core.learn.labels import LabelStore

    store = LabelStore(sys.argv[1])
    ids = [int(i) for i in sys.argv[2].split(",")]
    for step, object_id in enumerate(ids):
        action = store.set_labels([object_id], step % 2)
        print(action, object_id, step % 2, flush=True)
    print("done", flush=True)
    """
)


def test_labels_survive_sigkill(store_with_objects):
    store, _, ids, *_ = store_with_objects
    store.close()
    many = np.tile(ids, 50)  # far more actions than are given before the kill
    child = subprocess.Popen(
        [sys.executable, "-c", _LABELER, str(store.path), ",".join(map(str, many))],
        stdout=subprocess.PIPE,
        text=True,
    )
    printed = []
    try:
        while len(printed) < 25:
            line = child.stdout.readline()
            assert line and line != "done\n", "the labeling process ended before the kill"
            printed.append([int(v) for v in line.split()])
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    with LabelStore(store.path) as reopened:
        with sqlite3.connect(reopened.path) as connection:
            stored = {row[0] for row in connection.execute("SELECT id FROM actions")}
            for action, object_id, label in printed:
                assert action in stored
                (value,) = connection.execute(
                    "SELECT label FROM events WHERE action_id = ? AND object_id = ?",
                    (action, object_id),
                ).fetchone()
                assert value == label
        # The current label is that of the last printed action, or of a later one.
        last_action, last_object, last_label = printed[-1]
        later = [a for a in stored if a > last_action]
        if not later:
            assert reopened.labels([last_object])[0] == last_label
        assert reopened.summary()["actions"] >= len(printed)


def test_random_bytes_are_refused_and_left_alone(tmp_path):
    path = tmp_path / "labels.sqlite"
    content = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    path.write_bytes(content)
    with pytest.raises(RbvetError, match="not an rbvet label store") as error:
        LabelStore(path)
    assert str(path) in str(error.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.sqlite"]


def test_damaged_store_gives_a_clear_error(store_with_objects):
    store, _, ids, *_ = store_with_objects
    store.set_labels(ids, 1)
    store.close()
    data = bytearray(store.path.read_bytes())
    # Keep the SQLite header, wreck the pages after it.
    data[100:] = np.random.default_rng(1).integers(0, 256, len(data) - 100, np.uint8).tobytes()
    store.path.write_bytes(bytes(data))
    with pytest.raises(RbvetError, match=str(store.path)):
        with LabelStore(store.path) as damaged:
            damaged.labels(ids)
    assert store.path.read_bytes() == bytes(data)


def test_other_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text)")
    content = path.read_bytes()
    with pytest.raises(RbvetError, match="not an rbvet label store"):
        LabelStore(path)
    assert path.read_bytes() == content


def test_locked_store_gives_an_error_not_a_hang(store_with_objects):
    store, _, ids, *_ = store_with_objects
    impatient = LabelStore(store.path, timeout=0.2)  # opened before the lock is taken
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # Each call gives up after its 0.2 s timeout: an error, where a hang would not return.
        with pytest.raises(RbvetError, match="locked by another program") as error:
            LabelStore(store.path, timeout=0.2)
        assert str(store.path) in str(error.value)
        with pytest.raises(RbvetError, match="locked by another program"):
            impatient.set_labels(ids[:3], 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    impatient.set_labels(ids[:3], 1)  # usable again once the other program lets go
    assert (store.labels(ids[:3]) == 1).all()
    impatient.close()
