"""The one training-set format: round trip, old files, `rbvet export` -> `rbvet evaluate`,
and the same file trains STDPipe's own classifier."""

import json

import numpy as np
import pytest
from test_export import labeled_demo_store

from rbvet.cli import main
from rbvet.core.errors import RbvetError
from rbvet.core.learn.dataset import (
    FORMAT,
    TrainingSet,
    as_training_set,
    load_training_set,
    save_training_set,
)
from rbvet.core.learn.labels import LabelStore
from rbvet.core.paths import demo_frame_path

N = 7


def full_set(rng=None):
    """A set with every attribute filled, stamps of two sizes NaN-padded to the larger."""
    rng = rng or np.random.default_rng(3)
    stamps = rng.normal(size=(N, 62, 62)).astype(np.float32)
    stamps[:3, 31:, :] = np.nan
    stamps[:3, :, 31:] = np.nan
    return TrainingSet(
        inputs=rng.normal(size=(N, 31, 31, 2)).astype(np.float32),
        labels=np.array([1, 0, 1, 1, 0, 0, 1], np.int8),
        groups=np.array([4, 4, 4, 9, 9, -1, -1], np.int32),
        kinds=np.array(["human", "model", "human", "human", "human", "star", "cosmic_ray"]),
        fwhm=rng.uniform(1.2, 8.0, N).astype(np.float32),
        object_ids=np.arange(100, 100 + N, dtype=np.int64),
        x=rng.uniform(0, 500, N),
        y=rng.uniform(0, 500, N),
        stamps=stamps,
        backgrounds=np.where(np.isnan(stamps), np.nan, 100.0).astype(np.float32),
        noise=rng.uniform(1, 5, N).astype(np.float32),
        stamp_size=np.array([31, 31, 31, 62, 62, 62, 62], np.int32),
        metadata={"source": "test", "preprocessing": {"target_size": 31}},
    )


def assert_same_rows(a, b):
    for name in ("inputs", "labels", "groups", "kinds", "fwhm", "object_ids", "x", "y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("stamps", "backgrounds", "noise", "stamp_size"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_round_trip_preserves_every_field(tmp_path):
    data = full_set()
    path = tmp_path / "set.npz"
    written = save_training_set(data, path, metadata={"note": "kept"})
    back = load_training_set(path)
    assert_same_rows(back, data)
    assert back.labels.dtype == np.int8 and back.inputs.dtype == np.float32
    assert back.metadata == written
    assert written["source"] == "test" and written["note"] == "kept"
    assert (written["format"], written["objects"], written["real"]) == (FORMAT, N, 4)
    with np.load(path, allow_pickle=False) as npz:  # what STDPipe and plain numpy see
        assert str(npz["format"]) == FORMAT
        np.testing.assert_array_equal(npz["X"], data.inputs)
        np.testing.assert_array_equal(npz["y"], data.labels)
        np.testing.assert_array_equal(npz["x_pixel"], data.x)


def test_plain_arrays_round_trip_without_optional_fields(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 31, 31, 2)).astype(np.float32)
    y = np.array([1, 0, 1, 1, 0, 0])
    save_training_set((X, y), tmp_path / "xy.npz")
    back = load_training_set(tmp_path / "xy.npz")
    np.testing.assert_array_equal(back.inputs, X)
    np.testing.assert_array_equal(back.labels, y)
    assert back.groups is None and back.kinds is None and back.stamps is None
    with np.load(tmp_path / "xy.npz", allow_pickle=False) as npz:
        assert "groups" not in npz.files
    with pytest.raises(RbvetError, match="0 \\(bogus\\) or 1"):
        save_training_set((X, np.full(6, -1)), tmp_path / "bad.npz")
    with pytest.raises(RbvetError, match="written as .npz"):
        save_training_set((X, y), tmp_path / "set.txt")


def test_a_set_from_the_label_store_round_trips(tmp_path, make_star_field):
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.io.frame import frame_from_array

    image, x, y, _ = make_star_field(shape=(160, 160), n=20)
    frame = frame_from_array(image).ensure_background()
    rescale = plan_rescale(3.0)
    with LabelStore(tmp_path / "s.sqlite") as store:
        ids = store.add_objects(
            store.add_frame(frame, 3.0, rescale), x, y, cut_stamps(frame, x, y, rescale)
        )
        store.set_labels(ids[:12], 1)
        store.set_labels(ids[12:16], 0)
        data = store.training_data()
    path = tmp_path / "set.npz"
    save_training_set(data, path, metadata={"note": "test"})
    with np.load(path, allow_pickle=False) as npz:
        assert npz["X"].shape == (16, 31, 31, 2) and npz["X"].dtype == np.float32
        assert npz["y"].shape == (16,) and npz["y"].sum() == 12
        assert npz["stamps"].shape == (16, 31, 31)
        np.testing.assert_array_equal(npz["object_id"], ids[:16])
        np.testing.assert_array_equal(npz["x_pixel"], x[:16])
        assert set(npz["kinds"].tolist()) == {"human"} and (npz["groups"] == 1).all()
        metadata = json.loads(str(npz["metadata"]))
    assert metadata["objects"] == 16 and metadata["real"] == 12 and metadata["note"] == "test"
    assert metadata["preprocessing"]["target_size"] == 31
    assert_same_rows(load_training_set(path), data)


def test_files_of_the_first_export_format_still_load(tmp_path):
    """``rbvet-training-set/1``: today's entries, without the ``format`` entry."""
    data = full_set()
    path = tmp_path / "v1.npz"
    metadata = {"format": "rbvet-training-set/1", "objects": N, "frame": "a.fits"}
    np.savez(
        path,
        X=data.inputs,
        y=data.labels.astype(np.int64),
        groups=data.groups,
        kinds=data.kinds,
        fwhm=data.fwhm,
        stamps=data.stamps,
        backgrounds=data.backgrounds,
        noise=data.noise,
        stamp_size=data.stamp_size,
        object_id=data.object_ids,
        x_pixel=data.x,
        y_pixel=data.y,
        metadata=np.array(json.dumps(metadata)),
    )
    back = load_training_set(path)
    assert_same_rows(back, data)
    assert back.metadata["frame"] == "a.fits"


def test_files_of_the_first_layout_still_load(tmp_path):
    """The old ``TrainingSet.save``: inputs, labels, groups, kinds, fwhm (no X, y)."""
    data = full_set()
    path = tmp_path / "old.npz"
    np.savez(
        path,
        inputs=data.inputs,
        labels=data.labels,
        groups=data.groups,
        kinds=data.kinds.astype("U16"),
        fwhm=data.fwhm,
    )
    back = load_training_set(path)
    for name in ("inputs", "labels", "groups", "kinds", "fwhm"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.x is None and back.metadata == {}


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ({"a": np.zeros(3)}, "needs entries X and y"),
        (
            {
                "X": np.zeros((2, 31, 31, 2)),
                "y": np.array([0, 1]),
                "format": "rbvet-training-set/9",
            },
            "newer rbvet",
        ),
        ({"X": np.zeros((2, 31, 31, 2)), "y": np.array([0, 1, 1])}, "2, 31, 31, 2"),
        (
            {"X": np.zeros((2, 31, 31, 2)), "y": np.array([0, 1]), "fwhm": np.ones(5)},
            "5 fwhm for 2",
        ),
    ],
)
def test_unreadable_sets_are_refused_in_one_line(tmp_path, entries, problem):
    path = tmp_path / "bad.npz"
    np.savez(path, **entries)
    with pytest.raises(RbvetError, match=problem) as error:
        load_training_set(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_not_an_npz_is_refused(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    for path in (text, array):
        with pytest.raises(RbvetError, match="not a training set"):
            load_training_set(path)
    with pytest.raises(RbvetError, match="not found"):
        load_training_set(tmp_path / "none.npz")


def test_subset_and_concatenate_keep_rows_together():
    data = full_set()
    first, second = data.subset([0, 1, 2]), data.subset(np.arange(N) >= 3)
    assert first.stamps.shape == (3, 62, 62)  # padding kept: subset does not re-cut
    joined = TrainingSet.concatenate([second, first], metadata={"joined": True})
    order = [3, 4, 5, 6, 0, 1, 2]
    assert_same_rows(joined, data.subset(order))
    without_kinds = TrainingSet(inputs=data.inputs[:2], labels=data.labels[:2])
    assert TrainingSet.concatenate([first, without_kinds]).kinds is None
    assert len(TrainingSet.concatenate([first, without_kinds])) == 5


def test_as_training_set_takes_stdpipe_tuples_and_dicts():
    data = full_set()
    assert as_training_set(data) is data
    for given in ((data.inputs, data.labels), (data.inputs, data.labels, data.fwhm)):
        np.testing.assert_array_equal(as_training_set(given).labels, data.labels)
    # STDPipe's own dict: fwhm per frame (not per augmented sample), metadata as a list.
    stdpipe_dict = {"X": data.inputs, "y": data.labels, "fwhm": np.ones(2), "metadata": [{}]}
    np.testing.assert_array_equal(as_training_set(stdpipe_dict).inputs, data.inputs)
    for wrong in (data.inputs, {"inputs": data.inputs}):
        with pytest.raises(RbvetError, match="TrainingSet, \\(X, y\\)"):
            as_training_set(wrong)


@pytest.fixture(scope="module")
def exported_demo_set(tmp_path_factory):
    """``rbvet export`` of the demo frame's labels as a training set, through the CLI."""
    folder = tmp_path_factory.mktemp("exported")
    store = folder / "labels.sqlite"
    _, table, _, ids = labeled_demo_store(store)
    demo = demo_frame_path()
    path = folder / "set.npz"
    argv = ["export", str(demo), "--catalog", str(demo.with_suffix(".ecsv"))]
    assert main(argv + ["--labels", str(store), "-o", str(path)]) == 0
    truth = np.asarray(table["true_label"])[ids >= 0]
    return path, truth[truth >= 0]


def test_exported_set_evaluates_with_the_cli(exported_demo_set, tmp_path, capsys):
    path, truth = exported_demo_set
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--training-set", str(path), "--json", str(out)]) == 0
    assert "ROC AUC" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["objects"] == len(truth) and metrics["real"] == int(truth.sum())
    assert metrics["auc"] > 0.9  # the shipped model on its own demo frame
    assert metrics["evaluated_on"].endswith("set.npz (1 frame)")


def test_exported_set_trains_stdpipes_classifier(exported_demo_set):
    """The exported file's X and y, read with plain numpy, go into STDPipe as they are.

    STDPipe must be installed for this test: it fails (does not skip) without it.
    """
    from stdpipe.realbogus import train_realbogus_classifier

    path, truth = exported_demo_set
    with np.load(path) as npz:
        X, y = npz["X"], npz["y"]
    np.testing.assert_array_equal(y, truth)
    keep = np.concatenate([np.flatnonzero(y == 1)[:24], np.flatnonzero(y == 0)[:24]])
    model, history = train_realbogus_classifier(
        training_data=(X[keep], y[keep]), epochs=1, batch_size=16, verbose=False
    )
    assert model.input_shape[1:] == (31, 31, 2)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
