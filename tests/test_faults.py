"""Faults found by a fault test of the released window and CLI, each kept as a class of inputs.

Non-regular files, damaged or vanished label stores, two programs on one store, headers that
promise more data than the file holds, and chunks of catalog rows with nothing to score.
"""

import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rbvet.cli import main as cli_main
from rbvet.core.cutouts.atlas import render_tiles, tile_shape
from rbvet.core.errors import RbvetError
from rbvet.core.io.catalog import read_catalog
from rbvet.core.io.frame import frame_from_array, read_frame
from rbvet.core.learn import labels as labels_module
from rbvet.core.learn.labels import SCHEMA_VERSION, LabelStore
from rbvet.core.paths import demo_frame_path

CLI_TIMEOUT_S = 120


def write_frame(path, shape=(64, 64)):
    rng = np.random.default_rng(0)
    fits.PrimaryHDU(rng.normal(100, 5, shape).astype(np.float32)).writeto(path)
    return path


def new_window(qtbot, tmp_path):
    """A vetting window with its own settings file, closed by qtbot at the end."""
    from PyQt6.QtCore import QSettings

    from rbvet.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    return window


# ------------------------------------------------------------------ non-regular files


def make_fifo(path):
    os.mkfifo(path)


def make_socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


def make_directory(path):
    path.mkdir()


def make_link_loop(path):
    other = path.with_name("other_" + path.name)
    os.symlink(other, path)
    os.symlink(path, other)


def make_dangling_link(path):
    os.symlink(path.with_name("nowhere.fits"), path)


NON_REGULAR = {
    "fifo": (make_fifo, "named pipe"),
    "socket": (make_socket, "socket"),
    "directory": (make_directory, "directory"),
    "link loop": (make_link_loop, "symbolic link loop"),
    "dangling link": (make_dangling_link, "broken symbolic link"),
}


@pytest.fixture(params=sorted(NON_REGULAR))
def non_regular(request, tmp_path):
    """(path, words the message must hold) for each kind of path that is not a file."""
    make, words = NON_REGULAR[request.param]
    path = tmp_path / "thing.fits"
    keep = make(path)
    yield path, words
    if keep is not None:
        keep.close()


def test_non_regular_frames_catalogs_and_maps_are_refused_with_the_reason(non_regular, tmp_path):
    path, words = non_regular
    with pytest.raises(RbvetError, match=words) as error:
        read_frame(path)
    assert str(path) in str(error.value)
    with pytest.raises(RbvetError, match=words):
        read_catalog(path)
    good = write_frame(tmp_path / "good.fits")
    with pytest.raises(RbvetError, match=f"mask file .*{words}"):
        read_frame(good, mask=str(path))
    # the same readers take the regular file they were refused the others for
    assert read_frame(good).image.shape == (64, 64)


def test_the_command_line_refuses_a_fifo_frame_or_catalog_at_once(tmp_path):
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    frame = write_frame(tmp_path / "frame.fits")
    for arguments in ([str(fifo)], [str(frame), "--catalog", str(fifo)]):
        result = subprocess.run(
            [sys.executable, "-m", "rbvet.cli", "classify", *arguments, "-o",
             str(tmp_path / "out.ecsv")],
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1] == f"rbvet: error: {fifo}: is a named pipe (FIFO), not a " + (
            "FITS file" if arguments[0] == str(fifo) else "catalog"
        )


# --------------------------------------------------------------------- misleading words


def test_a_header_promising_more_data_than_the_file_holds_says_so(tmp_path):
    path = write_frame(tmp_path / "huge.fits", shape=(10, 10))
    header = fits.getheader(path)
    header["NAXIS1"] = header["NAXIS2"] = 100_000
    blob = bytearray(path.read_bytes())
    blob[:2880] = header.tostring().encode("ascii")
    path.write_bytes(bytes(blob))
    with pytest.raises(RbvetError, match=r"declares 37\.3 GiB of data .* the file holds") as error:
        read_frame(path)
    assert "allocate" not in str(error.value)


def test_a_broken_ecsv_header_is_named_not_read_as_an_empty_table(tmp_path):
    path = tmp_path / "broken.ecsv"
    Table({"x": [1.0, 2.0], "y": [3.0, 4.0]}).write(path)
    text = path.read_text()
    path.write_text(text.replace("datatype: float64}", "datatype: float64", 1))
    with pytest.raises(RbvetError, match=r"broken\.ecsv: broken ECSV file"):
        read_catalog(path)
    # a plain-text catalog that merely ends in .ecsv is still read
    plain = tmp_path / "plain.ecsv"
    plain.write_text("x y\n1 3\n2 4\n")
    assert len(read_catalog(plain)) == 2


# ------------------------------------------------------------------------ label stores


def stored_labels(make_star_field, path, n_labels=12):
    """A store at ``path`` with ``n_labels`` labels on a small frame; (ids, frame)."""
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps

    image, x, y, _ = make_star_field(n=16)
    frame = frame_from_array(image)
    frame.ensure_background()
    rescale = plan_rescale(3.0)
    stamps = cut_stamps(frame, x, y, rescale)
    with LabelStore(path) as store:
        ids = store.add_objects(store.add_frame(frame, 3.0, rescale), x, y, stamps)
        if n_labels:
            store.set_labels(ids[: n_labels // 2], 1)
            store.set_labels(ids[n_labels // 2 : n_labels], 0)
    return ids, frame


def damage_pages(path):
    """Overwrite the middle of every page after the first; the SQLite header stays valid."""
    page = 4096
    blob = bytearray(path.read_bytes())
    for start in range(page, len(blob), page):
        blob[start + 100 : start + 1000] = b"\xa5" * 900
    path.write_bytes(bytes(blob))


def test_a_store_with_damaged_pages_is_refused_not_read_as_empty(tmp_path, make_star_field):
    path = tmp_path / "labels.sqlite"
    stored_labels(make_star_field, path)
    with LabelStore(path, readonly=True) as store:
        assert store.summary()["real"] == 6  # sound before the damage
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_pages(path)
    for options in ({}, {"readonly": True}, {"create": False}):
        with pytest.raises(RbvetError, match="label store is damaged"):
            LabelStore(path, **options)


@pytest.mark.parametrize("seed", range(12))
def test_a_damaged_store_gives_its_labels_whole_or_an_error_never_fewer(
    tmp_path, make_star_field, seed
):
    """Damage drawn at random (a truncation, zeroed or scrambled pages): reading the store
    either refuses it in one line or gives back exactly the labels it held."""
    path = tmp_path / "labels.sqlite"
    ids, _ = stored_labels(make_star_field, path, n_labels=16)
    with LabelStore(path, readonly=True) as store:
        expected = store.labels(ids).tolist()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rng = np.random.default_rng(seed)
    blob = bytearray(path.read_bytes())
    page = 4096
    n_pages = len(blob) // page
    how = ["truncate", "zero", "scramble"][seed % 3]
    if how == "truncate":
        blob = blob[: int(rng.integers(page, len(blob)))]
    else:
        for index in rng.choice(np.arange(1, n_pages), size=min(3, n_pages - 1), replace=False):
            start = int(index) * page + int(rng.integers(0, page // 2))
            size = int(rng.integers(16, page // 2))
            noise = bytes(size) if how == "zero" else rng.bytes(size)
            blob[start : start + size] = noise
    path.write_bytes(bytes(blob))
    try:
        with LabelStore(path, readonly=True) as store:
            got = store.labels(ids).tolist()
    except RbvetError as error:
        assert str(path) in str(error) and "\n" not in str(error)
    else:
        assert got == expected


def test_export_of_labels_from_a_damaged_store_fails_with_one_line(
    tmp_path, make_star_field, capsys
):
    path = tmp_path / "labels.sqlite"
    stored_labels(make_star_field, path)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_pages(path)
    demo = demo_frame_path()
    out = tmp_path / "out.ecsv"
    code = cli_main(
        ["export", str(demo), "--catalog", str(demo.with_suffix(".ecsv")),
         "--labels", str(path), "-o", str(out)]
    )  # fmt: skip
    assert code != 0 and not out.exists()
    assert "label store is damaged" in capsys.readouterr().err


def test_reading_never_creates_a_store(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    for options in ({"create": False}, {"readonly": True}):
        with pytest.raises(RbvetError, match="empty file"):
            LabelStore(empty, **options)
        assert empty.stat().st_size == 0
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(RbvetError, match="no such label store"):
        LabelStore(missing, readonly=True)
    assert not missing.exists()
    # the window's own store (create=True) still makes an empty file a new store
    with LabelStore(empty) as store:
        assert store.summary()["objects"] == 0


def test_a_read_only_store_reads_and_refuses_writes(tmp_path, make_star_field):
    path = tmp_path / "labels.sqlite"
    ids, _ = stored_labels(make_star_field, path)
    with LabelStore(path, readonly=True) as store:
        assert (store.summary()["real"], store.summary()["bogus"]) == (6, 6)
        with pytest.raises(RbvetError, match="read-only"):
            store.set_labels(ids[:1], 0)
    with LabelStore(path, create=False) as store:
        assert store.summary()["real"] == 6


def test_the_open_problem_names_a_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(labels_module.os, "access", lambda path, mode: mode != os.W_OK)
    problem = labels_module._open_problem(tmp_path / "labels.sqlite", "unable to open")
    assert "is read-only" in problem and str(tmp_path) in problem


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_labels_given_after_the_store_vanished_are_refused(tmp_path, make_star_field, how):
    path = tmp_path / "labels.sqlite"
    ids, _ = stored_labels(make_star_field, path)
    store = LabelStore(path, create=False)
    store.set_labels(ids[:1], 0)  # still there: accepted
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.unlink(f"{path}{suffix}")
    if how == "replaced":
        LabelStore(path).close()
    with pytest.raises(RbvetError, match="deleted or replaced while open"):
        store.set_labels(ids[1:2], 1)
    store.close()


def test_undo_and_redo_act_on_this_programs_own_labels(tmp_path, make_star_field):
    path = tmp_path / "labels.sqlite"
    ids, _ = stored_labels(make_star_field, path, n_labels=0)
    mine, theirs = LabelStore(path, create=False), LabelStore(path, create=False)
    mine.set_labels(ids[:3], 1)
    theirs.set_labels(ids[3:5], 0)
    theirs.set_labels(ids[:1], 0)
    assert sorted(mine.undo().tolist()) == ids[:3].tolist()
    # each of my objects gets back what it had before my action; theirs keep their labels
    assert mine.labels(ids[:5]).tolist() == [-1, -1, -1, 0, 0]
    assert mine.undo().size == 0  # nothing more of mine; theirs are untouched
    assert theirs.labels(ids[3:5]).tolist() == [0, 0]
    assert sorted(mine.redo().tolist()) == ids[:3].tolist()
    assert sorted(theirs.undo().tolist()) == ids[:1].tolist()
    assert mine.labels(ids[:5]).tolist() == [1, 1, 1, 0, 0]
    mine.close()
    theirs.close()


RELEASED_STORE = Path(__file__).parent / "data" / "labels_release_0.1.sqlite"
"""Made by rbvet 0.1.0 (commit 8c4a918): six objects; 1, 2 real, 3, 4, 5 bogus (3 relabeled),
6 labeled real and undone."""


def test_a_store_made_by_the_previous_release_opens_without_loss(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copyfile(RELEASED_STORE, path)
    expected = [1, 1, 0, 0, 0, -1]
    with LabelStore(path, readonly=True) as store:  # reading neither migrates nor writes
        assert store.labels(np.arange(1, 7)).tolist() == expected
        assert not store.can_undo
    assert path.read_bytes() == RELEASED_STORE.read_bytes()
    image = np.load(RELEASED_STORE.with_suffix(".image.npy"))
    with LabelStore(path, create=False) as store:
        assert store.labels(np.arange(1, 7)).tolist() == expected
        assert store.find_frame(frame_from_array(image)) is not None
        summary = store.summary()
        assert (summary["objects"], summary["real"], summary["bogus"]) == (6, 2, 3)
        assert len(store.training_data(with_stamps=True).y) == 5
        store.set_labels([6], 0, origin="key", annotator="ada", model="m.v2", scores=[0.7])
        assert store.labels([6]).tolist() == [0]
        assert store.undo().tolist() == [6] and store.labels([6]).tolist() == [-1]
        # labels from before provenance have no annotator: no agreement is made up from them
        # (and ada's label was undone)
        assert len(store.annotator_labels()[0]) == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        row = connection.execute(
            "SELECT annotator, origin, model, score_on_screen FROM label_log"
            " WHERE object = 6 AND action = 'set' ORDER BY event DESC LIMIT 1"
        ).fetchone()
    assert row == ("ada", "key", "m.v2", 0.7)
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.review import review_store
    from rbvet.core.model import load_model

    review = run_job(review_store(path, load_model()))  # a label review reads the old labels
    assert sorted(review.object_ids.tolist()) == [1, 2, 3, 4, 5]
    assert sorted(review.labels.tolist()) == [0, 0, 0, 1, 1]


def test_each_label_records_who_gave_it_from_where_and_at_what_score(
    tmp_path, make_star_field, monkeypatch
):
    path = tmp_path / "labels.sqlite"
    ids, _ = stored_labels(make_star_field, path, n_labels=0)
    monkeypatch.setenv("RBVET_ANNOTATOR", "grace")
    with LabelStore(path, create=False) as store:
        store.set_labels(
            ids[[2, 0, 1]], 1, origin="bulk", model="default", scores=[0.2, 0.9, np.nan]
        )
        with pytest.raises(RbvetError, match="origin"):
            store.set_labels(ids[:1], 1, origin="telepathy")
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT object, annotator, origin, model, score_on_screen FROM label_log"
            " ORDER BY object"
        ).fetchall()
    assert rows == [
        (ids[0], "grace", "bulk", "default", 0.9),
        (ids[1], "grace", "bulk", "default", None),
        (ids[2], "grace", "bulk", "default", 0.2),
    ]


# ----------------------------------------------------------- nothing to score in a chunk


def test_an_empty_chunk_renders_no_tiles():
    tiles = render_tiles(np.zeros((0, 31, 31, 2), np.float32))
    assert tiles.shape == (0,) + tile_shape(31) and tiles.dtype == np.uint8


def test_the_window_opens_a_frame_whose_first_rows_hold_nothing_to_score(qtbot, tmp_path, capsys):

    demo = demo_frame_path()
    good = Table.read(demo.with_suffix(".ecsv"))[["x", "y"]]
    n_bad = 5000  # more than two chunks of unscorable rows before the first good one
    bad = Table({"x": np.full(n_bad, np.nan), "y": np.r_[np.full(n_bad - 10, np.nan),
                                                         np.full(10, 1e6)]})  # fmt: skip
    catalog = tmp_path / "catalog.ecsv"
    Table(np.concatenate([bad.as_array(), good.as_array()])).write(catalog)
    expected = tmp_path / "cli.ecsv"
    assert cli_main(["classify", str(demo), "--catalog", str(catalog), "-o", str(expected)]) == 0
    expected_scores = np.asarray(Table.read(expected)["rb_score"])

    window = new_window(qtbot, tmp_path)
    with qtbot.waitSignal(window.classified, timeout=180_000):
        window.open_frame(demo, catalog)
    data = window.state.data
    assert len(data) == n_bad + len(good)
    np.testing.assert_allclose(data.scores, expected_scores, atol=1e-5, equal_nan=True)
    assert np.isfinite(data.scores[n_bad:]).all() and np.isnan(data.scores[:n_bad]).all()
    window.close()


# ------------------------------------------------------------------ OS errors on write


def failing_replace(code):
    def replace(source, destination):
        raise OSError(code, os.strerror(code), str(destination))

    return replace


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A label store holding labels for the first 20 objects of the demo frame."""
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps

    demo = demo_frame_path()
    path = tmp_path_factory.mktemp("store") / "labels.sqlite"
    frame = read_frame(demo).ensure_background()
    table = Table.read(demo.with_suffix(".ecsv"))[:20]
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    rescale = plan_rescale(2.42)
    with LabelStore(path) as store:
        ids = store.add_objects(store.add_frame(frame, 2.42, rescale), x, y,
                                cut_stamps(frame, x, y, rescale))  # fmt: skip
        store.set_labels(ids, 1)
        store.set_labels(ids[np.asarray(table["true_label"]) == 0], 0)
    return path


def writer_command(kind, out, store):
    """The command that writes ``out`` with the writer ``kind``."""
    demo = demo_frame_path()
    frame = [str(demo), "--catalog", str(demo.with_suffix(".ecsv"))]
    if kind == "evaluate --json":
        return ["evaluate", *frame, "--truth-column", "true_label", "--json", str(out)]
    command = kind.split()[0]
    labels = ["--labels", str(store)] if out.suffix == ".npz" else []
    return [command, *frame, *labels, "-o", str(out)]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize(
    "kind, suffix",
    [
        ("classify", ".ecsv"),
        ("classify", ".fits"),
        ("export", ".csv"),
        ("export", ".reg"),
        ("export", ".npz"),
        ("evaluate --json", ".json"),
    ],
)
def test_every_writer_reports_an_os_error_in_one_line(
    tmp_path, monkeypatch, capsys, demo_store, kind, suffix, code
):
    out = tmp_path / "out" / f"out{suffix}"
    out.parent.mkdir()
    arguments = writer_command(kind, out, demo_store)
    monkeypatch.setattr(os, "replace", failing_replace(code))
    assert cli_main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == f"rbvet: error: {out}: cannot write ({os.strerror(code)})"
    assert "Traceback" not in "\n".join(error)
    assert sorted(os.listdir(out.parent)) == []  # no output, no temporary left behind
    monkeypatch.undo()
    assert cli_main(arguments) == 0 and out.exists()  # the same command, a sound disk


def test_a_broken_default_store_is_still_said_after_the_first_frame_opens(
    qtbot, tmp_path, monkeypatch
):

    from rbvet.core.learn.labels import default_store_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    broken = default_store_path()
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"SQLite format 3\x00" + b"\xa5" * 5000)
    window = new_window(qtbot, tmp_path)
    window.show()
    demo = demo_frame_path()
    with qtbot.waitSignal(window.classified, timeout=180_000):
        window.open_frame(demo, demo.with_suffix(".ecsv"))
    assert window.error_banner.isVisible()
    assert str(broken) in window.error_banner.message
    assert "unavailable" in window.store_button.text()
    assert broken.read_bytes()[:16] == b"SQLite format 3\x00"  # left untouched
    window.close()


TRAIN = ["train", "--simulate", "2", "--size", "256", "--epochs", "1", "--test-frames", "0"]


def test_train_refuses_an_unwritable_output_before_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.keras"
    monkeypatch.setattr(os, "replace", failing_replace(errno.EROFS))
    assert cli_main([*TRAIN, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert f"{out}: cannot write here (Read-only file system)" in captured.err
    assert "Simulat" not in captured.err and "epoch" not in captured.err  # nothing was done


def test_train_keeps_the_model_when_the_disk_refuses_it_after_training(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "model.keras"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    real_replace = os.replace

    def replace(source, destination):
        if str(destination) in (str(out), f"{out}.card.json", str(out.with_suffix(".onnx"))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    assert cli_main([*TRAIN, "-o", str(out)]) == 2
    kept = list((tmp_path / "data" / "rbvet" / "models").glob("unsaved-*-model.keras"))
    assert len(kept) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert f"{out}: cannot write (No space left on device)" in err and str(kept[0]) in err
    from rbvet.core.model import load_model

    assert load_model(kept[0]).card["training"]["frames"] == 2


# ------------------------------------------------------------------- models' outputs


def network_with_head(head):
    """A small two-channel 31x31 network ending in ``head`` (a callable on a tensor)."""
    import keras

    inputs = keras.Input((31, 31, 2))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, head(keras, features, inputs))


HEADS = {
    "one sigmoid": (lambda k, f, i: k.layers.Dense(1, activation="sigmoid")(f), None),
    "ten-class softmax": (
        lambda k, f, i: k.layers.Dense(10, activation="softmax")(f),
        "model outputs 10 values per object",
    ),
    "two sigmoids": (
        lambda k, f, i: k.layers.Dense(2, activation="sigmoid")(f),
        "model outputs 2 values per object",
    ),
    "an image": (
        lambda k, f, i: k.layers.Conv2D(1, 1)(i),
        "model outputs 31x31x1 values per object",
    ),
    "two outputs": (
        lambda k, f, i: [k.layers.Dense(1)(f), k.layers.Dense(1)(f)],
        "model has 2 outputs",
    ),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_model_of_any_output_shape_is_refused_at_load_unless_it_gives_one_score(tmp_path, head):
    from rbvet.core.model import load_model

    build, refusal = HEADS[head]
    path = tmp_path / "model.keras"
    network_with_head(build).save(path)
    if refusal is None:
        model = load_model(path, engine="keras")
        scores = model.predict(np.zeros((3, 31, 31, 2), np.float32))
        assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
        return
    with pytest.raises(RbvetError, match=refusal) as error:
        load_model(path, engine="keras")
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "shape, n_outputs, accepted",
    [
        (("batch", 1), 1, True),
        ((None,), 1, True),
        (("batch", 10), 1, False),
        (("batch", None), 1, False),
        (("batch", 31, 31, 1), 1, False),
        (("batch", 1), 2, False),
        ((), 0, False),
    ],
)
def test_onnx_outputs_are_checked_like_keras_ones(shape, n_outputs, accepted):
    from rbvet.core.model.network import check_output_shape

    if accepted:
        check_output_shape(shape, "m.onnx", n_outputs)
    else:
        with pytest.raises(RbvetError, match=r"m\.onnx: model (outputs|has)"):
            check_output_shape(shape, "m.onnx", n_outputs)


def test_export_finds_the_labels_of_a_catalog_measured_again_as_the_window_does(
    tmp_path, demo_store
):
    demo = demo_frame_path()
    moved = Table.read(demo.with_suffix(".ecsv"))
    truth = np.asarray(moved["true_label"])
    moved["x"] += 0.3  # the same objects, detected again
    catalog = tmp_path / "moved.ecsv"
    moved.write(catalog)
    out = tmp_path / "out.ecsv"
    assert cli_main(["export", str(demo), "--catalog", str(catalog), "--labels",
                     str(demo_store), "-o", str(out)]) == 0  # fmt: skip
    labels = np.asarray(Table.read(out)["rb_label"])
    np.testing.assert_array_equal(labels[:20], np.where(truth[:20] == 0, 0, 1))
    assert (labels[20:] == -1).all()


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty file"),
        (b"hello\n", "not a zip archive"),
        ("truncated", "truncated or damaged"),
        ("scrambled", "damaged archive"),
        (b"<html>not an h5</html>", "not an HDF5 file"),
    ],
)
def test_a_broken_model_file_says_what_it_is_not_file_not_found(tmp_path, content, words):
    from rbvet.core.model import load_model
    from rbvet.core.paths import default_model_path

    shipped = default_model_path().read_bytes()
    if content == "truncated":
        content = shipped[: len(shipped) // 2]
    elif content == "scrambled":  # the archive's directory intact, a member's bytes not
        blob = bytearray(shipped)
        blob[2000:6000] = bytes(4000)
        content = bytes(blob)
    path = tmp_path / ("model.h5" if words == "not an HDF5 file" else "model.keras")
    path.write_bytes(content)
    with pytest.raises(RbvetError, match=words) as error:
        load_model(path)
    assert str(path) in str(error.value) and "not found" not in str(error.value)


def test_a_big_frame_selects_its_first_tile_in_a_later_turn_unless_the_user_chose(
    qtbot, tmp_path, monkeypatch, make_vetting_data
):
    from PyQt6.QtCore import QTimer

    from rbvet.gui import main_window as main_window_module

    monkeypatch.setattr(main_window_module, "DEFER_DRAW_OBJECTS", 10)
    window = new_window(qtbot, tmp_path)
    window.set_label_store(tmp_path / "labels.sqlite")
    data = make_vetting_data(n=60, seed=3)
    window.show_data(data, threshold=0.5)
    assert window.state.selected == -1  # not in the same turn
    first = int(window.grid.proxy.order()[0])
    qtbot.waitUntil(lambda: window.state.selected == first)
    other = make_vetting_data(n=60, seed=4)
    window.show_data(other, threshold=0.5)
    window.state.select(7)  # the user was quicker
    later = QTimer()  # started after the deferred selection's timer, so it fires after it
    later.setSingleShot(True)
    later.setInterval(5)
    with qtbot.waitSignal(later.timeout, timeout=5000):
        later.start()
    assert window.state.selected == 7
    window.close()


def test_a_learning_rate_of_zero_is_refused_not_replaced_by_the_default():
    from rbvet.core.jobs import run_job
    from rbvet.core.learn.dataset import TrainingSet
    from rbvet.core.learn.retrain import retrain

    data = TrainingSet(
        inputs=np.zeros((4, 31, 31, 2), np.float32), labels=np.array([0, 1, 0, 1], np.int8)
    )
    for rate in (0.0, -1e-3, float("nan")):
        with pytest.raises(RbvetError, match="learning rate must be positive"):
            run_job(retrain(data, learning_rate=rate))


def test_frames_in_parallel_without_dask_is_one_line_and_one_at_a_time_still_works(
    tmp_path, monkeypatch, capsys
):
    demo = demo_frame_path()
    frames = []
    for name in ("a", "b"):
        frames.append(tmp_path / f"{name}.fits")
        shutil.copyfile(demo, frames[-1])
        shutil.copyfile(demo.with_suffix(".ecsv"), tmp_path / f"{name}.ecsv")
    common = ["classify", *map(str, frames), "--catalog-pattern", "{dir}/{stem}.ecsv", "-q"]
    monkeypatch.setitem(sys.modules, "distributed", None)  # the [batch] extra is missing
    assert cli_main([*common, "-o", str(tmp_path / "parallel"), "--workers", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "rbvet: error: classifying frames in parallel needs Dask: pip install "
        "'rbvet[batch]' (or give --workers 1 to classify them one after another)"
    )
    assert cli_main([*common, "-o", str(tmp_path / "serial"), "--workers", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "serial").glob("*.ecsv")) == [
        "a.rb.ecsv", "b.rb.ecsv", "summary.ecsv"
    ]  # fmt: skip


def test_exports_of_the_demo_are_not_suggested_into_the_package_folder(
    qtbot, tmp_path, monkeypatch
):

    from rbvet.core.paths import resources_dir

    monkeypatch.chdir(tmp_path)
    window = new_window(qtbot, tmp_path)
    window.frame_path = str(demo_frame_path())
    assert window._save_dir() == str(tmp_path)
    assert resources_dir().resolve() not in Path(window._save_dir()).resolve().parents
    mine = tmp_path / "night" / "frame.fits"
    mine.parent.mkdir()
    window.frame_path = str(mine)
    assert window._save_dir() == str(mine.parent.resolve())  # a user's frame: beside it
    window.close()
