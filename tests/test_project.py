"""The Qt-free vetting project: frames from arguments, fields by WCS, memory, epochs."""

import numpy as np
import pytest
from astropy.io import fits
from epoch_frames import epoch_wcs, simulate_epochs, write_epochs

from rbvet.core.errors import RbvetError
from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import run_job
from rbvet.core.project import (
    PENDING,
    READY,
    FrameSummary,
    VettingProject,
    combined_order,
    epoch_stamps,
    frames_from_arguments,
    group_fields,
    read_footprint,
)
from rbvet.core.session import REAL, VettingData


def fake_data(n, seed=0):
    """Scored data of n objects without pixels (what the project keeps and drops)."""
    rng = np.random.default_rng(seed)
    return VettingData(
        frame=None,
        table=None,
        x=rng.uniform(0, 100, n),
        y=rng.uniform(0, 100, n),
        scores=rng.uniform(0, 1, n).astype(np.float32),
        reasons=np.full(n, ""),
        atlas=np.zeros((n, 4, 9), np.uint8),
        fwhm=3.0,
        rescale=None,
        params=None,
    )


def blank_frames(folder, count, shifts=None, shape=(64, 64)):
    paths = []
    for k in range(count):
        header = epoch_wcs(shape, shifts[k]).to_header() if shifts else fits.Header()
        path = folder / f"f{k:02d}.fits"
        fits.PrimaryHDU(np.zeros(shape, np.float32), header=header).writeto(path)
        paths.append(str(path))
    return paths


def test_frames_from_a_folder_a_list_file_and_paths(tmp_path):
    frames = blank_frames(tmp_path, 3)
    fits.BinTableHDU.from_columns([fits.Column("x", "E", array=[1.0])]).writeto(
        tmp_path / "cat.fits"
    )
    from_folder = frames_from_arguments([tmp_path])
    assert [p for p, _ in from_folder] == frames  # sorted, the table-only file left out

    listing = tmp_path / "night.txt"
    listing.write_text("# tonight\nf01.fits cat.fits\n\nf00.fits  # first\n")
    pairs = frames_from_arguments([frames[2]], list_file=listing)
    assert pairs == [
        (frames[2], None),
        (str(tmp_path / "f01.fits"), str(tmp_path / "cat.fits")),
        (str(tmp_path / "f00.fits"), None),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("missing.fits\n", "no such file"),
        ("a b c\n", r"list.txt:1: expected .FRAME \[CATALOG\]"),
        ("# none\n", "no frames"),
    ],
)
def test_bad_list_files_say_which_line(tmp_path, content, message):
    listing = tmp_path / "list.txt"
    listing.write_text(content)
    with pytest.raises(RbvetError, match=message):
        frames_from_arguments(list_file=listing)


def test_a_missing_path_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(RbvetError, match="no such file"):
        frames_from_arguments([tmp_path / "nope.fits"])
    with pytest.raises(RbvetError, match="no FITS images"):
        frames_from_arguments([tmp_path])


def test_overlapping_frames_are_one_field_and_frames_without_wcs_none(tmp_path):
    near = blank_frames(tmp_path, 3, shifts=[(0, 0), (5, -3), (40, 40)])
    far = tmp_path / "far.fits"
    header = epoch_wcs((64, 64), centre=(151.0, 2.0)).to_header()
    fits.PrimaryHDU(np.zeros((64, 64), np.float32), header=header).writeto(far)
    bare = tmp_path / "bare.fits"
    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(bare)

    project = VettingProject([(p, None) for p in near + [str(far), str(bare)]])
    assert [f.field_id for f in project.frames] == [0, 0, 0, 1, -1]
    assert project.epochs(1) == [1, 0, 2]
    assert project.epochs(4) == [4]
    assert project.fields() == 2
    notes = " ".join(project.notes)
    assert "1 of 5 frames have no WCS" in notes and "bare.fits" in notes
    assert "different sizes" in notes


def test_frames_touching_only_through_a_chain_share_a_field(tmp_path):
    # 0 overlaps 1 and 1 overlaps 2, but 0 and 2 do not overlap: one field all the same.
    paths = blank_frames(tmp_path, 3, shifts=[(0, 0), (50, 0), (100, 0)])
    footprints = [read_footprint(p)[0] for p in paths]
    assert list(group_fields(footprints)) == [0, 0, 0]
    assert list(group_fields([footprints[0], footprints[2]])) == [0, 1]


def test_footprints_across_ra_zero_overlap(tmp_path):
    a = epoch_wcs((64, 64), centre=(359.999, 0.0)).to_header()
    b = epoch_wcs((64, 64), centre=(0.001, 0.0)).to_header()
    paths = []
    for name, header in (("a", a), ("b", b)):
        fits.PrimaryHDU(np.zeros((64, 64), np.float32), header=header).writeto(tmp_path / name)
        paths.append(tmp_path / name)
    assert list(group_fields([read_footprint(p)[0] for p in paths])) == [0, 0]


def test_navigation_keeps_only_neighbours_in_memory(tmp_path):
    paths = blank_frames(tmp_path, 8)
    project = VettingProject([(p, None) for p in paths], keep_neighbours=1)
    changed = []
    project.current_changed.connect(changed.append)
    for index in range(8):
        assert project.next_to_score() == index
        project.set_scoring(index)
        project.attach(index, fake_data(20, seed=index))
    assert project.in_memory() == [0, 1]  # attached while frame 0 was current
    assert project.frames[5].status == PENDING and project.frames[5].objects == 20
    assert project.next_to_score() is None  # scored once: rebuilt only when current

    assert project.go_to(5) == 5 and changed == [5]
    assert project.in_memory() == []
    assert project.next_to_score() == 5  # the current frame is rebuilt first
    project.attach(5, fake_data(20, seed=5))
    assert project.frames[5].status == READY and project.in_memory() == [5]
    assert project.next() == 6 and project.next() == 7 and project.next() == 7
    assert project.in_memory() == []  # 5 is two away from 7
    assert project.previous() == 6
    assert project.go_to(-3) == 0


def test_counts_labels_and_done_marks(tmp_path):
    project = VettingProject([(p, None) for p in blank_frames(tmp_path, 2)])
    data = fake_data(10)
    data.scores[3] = np.nan
    project.attach(0, data)
    frame = project.frames[0]
    assert (frame.objects, frame.scored, frame.labeled) == (10, 9, 0)
    data.labels[[1, 2]] = REAL
    project.labels_changed(0, data.labels)
    project.set_done(0)
    assert frame.labeled == 2 and frame.done
    assert project.totals() == (1, 10, 2, 1)


def test_combined_order_sorts_all_frames_lowest_first_unscored_last():
    a = FrameSummary(
        np.zeros(3), np.zeros(3), np.float32([0.5, np.nan, 0.1]), None, None, np.zeros(3), 3.0
    )
    b = FrameSummary(np.zeros(2), np.zeros(2), np.float32([0.3, 0.9]), None, None, np.zeros(2), 3)
    frames, objects, scores = combined_order([a, None, b])
    assert list(zip(frames, objects, strict=True)) == [(0, 2), (2, 0), (0, 0), (2, 1), (0, 1)]
    np.testing.assert_allclose(scores[:4], [0.1, 0.3, 0.5, 0.9])
    frames, objects, _ = combined_order([a, b], ascending=False)
    assert (frames[0], objects[0]) == (1, 1) and (frames[-1], objects[-1]) == (0, 1)


def _peak(image):
    filled = np.where(np.isfinite(image), image, -np.inf)
    row, col = np.unravel_index(np.argmax(filled), image.shape)
    return col, row


def test_epoch_stamps_keep_a_star_in_place_across_pointing_offsets():
    epochs = simulate_epochs(3, shape=(96, 96), max_shift=4, seed=5, n_hits=0)
    shifts = [e[3] for e in epochs]
    assert len(set(shifts)) == 3  # the offsets differ: a plain same-pixel cut would move
    frames = [frame_from_array(image, wcs=wcs) for image, wcs, *_ in epochs]
    truth = epochs[0][2]
    bright = truth[
        np.argmax(
            [
                frames[0].image[int(round(y)), int(round(x))]
                for x, y in zip(truth["x"], truth["y"], strict=True)
            ]
        )
    ]
    x, y = float(bright["x"]), float(bright["y"])
    stamps = epoch_stamps(frames, x, y, 21)
    assert len(stamps) == 3 and all(s.covered for s in stamps)
    peaks = {_peak(s.image) for s in stamps}
    assert len(peaks) == 1  # the star is on one pixel in all epochs
    (x0, y0) = shifts[0]  # the sources sit at reference + shift in every epoch, the first too
    for stamp, (dx, dy) in zip(stamps, shifts, strict=True):
        assert stamp.position == pytest.approx((x - x0 + dx, y - y0 + dy), abs=1e-6)
    # Same pixel, no WCS alignment: the star would sit elsewhere in the shifted epochs.
    moved = [_peak(f.image[int(y) - 10 : int(y) + 11, int(x) - 10 : int(x) + 11]) for f in frames]
    assert len(set(moved)) > 1


def test_epoch_stamps_without_wcs_or_off_the_image_are_blank():
    image = np.ones((40, 40), np.float32)
    with_wcs = frame_from_array(image, wcs=epoch_wcs((40, 40)))
    far = frame_from_array(image, wcs=epoch_wcs((40, 40), shift=(200, 0)))
    bare = frame_from_array(image)
    stamps = epoch_stamps([with_wcs, bare, far], 20.0, 20.0, 11)
    assert stamps[0].covered and np.isfinite(stamps[0].image).all()
    assert not stamps[1].covered and np.isnan(stamps[1].image).all()
    assert not stamps[2].covered and np.isnan(stamps[2].image).all()


def test_project_epoch_stamps_read_dropped_frames(tmp_path):
    from rbvet.core.io.frame import read_frame

    paths = write_epochs(tmp_path, 3, shape=(64, 64))
    project = VettingProject([(str(p), None) for p in paths], keep_neighbours=0)
    frame = read_frame(paths[0])
    data = fake_data(5)
    data.frame = frame
    data.x[:], data.y[:] = 30.0, 30.0
    project.attach(0, data)
    stamps = project.epoch_stamps(0, 15)
    assert [s.name for s in stamps] == ["epoch_1.fits", "epoch_2.fits", "epoch_3.fits"]
    assert [s.frame_index for s in stamps] == [0, 1, 2]
    assert all(s.covered for s in stamps)
    # Only a window of each dropped epoch was read; positions are in its whole image.
    sky = frame.wcs.all_pix2world([30.0], [30.0], 0)
    for stamp, path in zip(stamps[1:], paths[1:], strict=True):
        other = read_frame(path)
        expected = other.wcs.all_world2pix(*sky, 0)
        assert stamp.position == pytest.approx((expected[0][0], expected[1][0]), abs=1e-6)
        whole = epoch_stamps([frame, other], 30.0, 30.0, 15)[1]  # the same, from all pixels
        np.testing.assert_allclose(stamp.image, whole.image, rtol=1e-5, equal_nan=True)


def test_frames_of_other_sizes_or_instruments_work_but_are_not_epochs_of_one_field(tmp_path):
    """Overlapping frames of another size or instrument are not grouped (a blink
    across binnings or cameras compares nothing), and the notes say so."""
    same = blank_frames(tmp_path, 2, shifts=[(0, 0), (3, 2)])
    binned = tmp_path / "binned.fits"  # the same sky, 2x2 binned
    wcs = epoch_wcs((32, 32))
    wcs.wcs.cd = wcs.wcs.cd * 2
    fits.PrimaryHDU(np.zeros((32, 32), np.float32), header=wcs.to_header()).writeto(binned)
    other_camera = tmp_path / "other_camera.fits"
    header = epoch_wcs((64, 64), (1, 1)).to_header()
    header["INSTRUME"] = "WFCAM"
    fits.PrimaryHDU(np.zeros((64, 64), np.float32), header=header).writeto(other_camera)
    assert read_footprint(binned)[0] is not None  # they do overlap on the sky

    project = VettingProject([(p, None) for p in same + [str(binned), str(other_camera)]])
    fields = [f.field_id for f in project.frames]
    assert fields[0] == fields[1] and len(set(fields)) == 3 and min(fields) >= 0
    assert project.epochs(0) == [0, 1] and project.epochs(2) == [2] and project.epochs(3) == [3]
    assert project.frames[3].instrument == "WFCAM" and project.frames[0].instrument == ""
    notes = " ".join(project.notes)
    assert "different sizes in one project: 32x32, 64x64" in notes
    assert "epochs are grouped among frames of one size only" in notes
    assert "2 instruments" in notes and "WFCAM" in notes and "unnamed" in notes


def test_headers_read_later_give_the_same_fields_and_notes(tmp_path):
    """A window adds frames at once and reads their headers in a job (`header_job`,
    then `set_headers`): the fields and notes come out as when read at once."""
    paths = blank_frames(tmp_path, 3, shifts=[(0, 0), (5, -3), (40, 40)])
    bare = tmp_path / "bare.fits"
    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(bare)
    pairs = [(p, None) for p in paths + [str(bare)]]
    at_once = VettingProject(pairs)
    later = VettingProject()
    said = []
    later.fields_changed.connect(lambda: said.append(list(later.notes)))
    added = later.add_frames(pairs, read_headers=False)
    assert [f.field_id for f in later.frames] == [-1] * 4 and not later.notes
    assert not any(f.header_read for f in later.frames)
    later.set_headers(added, run_job(later.header_job(added)))
    assert [f.field_id for f in later.frames] == [f.field_id for f in at_once.frames]
    assert [0, 0, 0, -1] == [f.field_id for f in later.frames]
    assert said == [at_once.notes] and any("no WCS" in note for note in at_once.notes)


def test_an_epoch_whose_file_vanished_or_broke_is_blank_and_named(tmp_path):
    """Files that vanish or become unreadable after the project was opened: their stamps
    are blank with the reason, and the other epochs are cut as before."""
    from rbvet.core.io.frame import read_frame

    paths = write_epochs(tmp_path, 4, shape=(64, 64))
    project = VettingProject([(str(p), None) for p in paths], keep_neighbours=0)
    data = fake_data(5)
    data.frame = read_frame(paths[0])
    data.x[:], data.y[:] = 30.0, 30.0
    project.attach(0, data)
    paths[2].unlink()
    paths[3].write_bytes(b"SIMPLE  = not a FITS file any more" * 100)
    stamps = project.epoch_stamps(0, 15)
    assert [s.problem for s in stamps] == ["", "", "file missing", "file unreadable"]
    assert all(np.isnan(s.image).all() for s in stamps[2:])
    assert stamps[1].covered and np.isfinite(stamps[1].image).any()


def test_a_failed_frame_retried_joins_the_project_as_if_it_never_failed(tmp_path):
    """A frame whose file was missing when it was reached fails; once the file is back,
    retrying it scores it again, and it takes its place among its field's epochs."""
    from rbvet.core.project import FAILED

    paths = blank_frames(tmp_path, 3, shifts=[(0, 0), (5, -3), (3, 4)])
    hidden = tmp_path / "away.fits"
    (tmp_path / "f02.fits").rename(hidden)
    project = VettingProject([(p, None) for p in paths])  # the third unreadable: no field
    assert [f.field_id for f in project.frames] == [0, 0, -1]
    assert not project.notes  # an unreadable file is not one without a WCS
    for index in (0, 1):
        project.attach(index, fake_data(5, seed=index))
    project.set_scoring(2)
    project.fail(2, "f02.fits: no such file")
    assert project.failed() == [2] and project.next_to_score() is None  # stays failed
    assert project.retry([0]) == []  # only failed frames are retried

    hidden.rename(tmp_path / "f02.fits")
    changed = []
    project.frame_changed.connect(changed.append)
    assert project.retry() == [2] and changed == [2]
    frame = project.frames[2]
    assert frame.status == PENDING and frame.error == "" and not frame.header_read
    assert project.failed() == [] and project.next_to_score() == 2
    project.set_headers([2], run_job(project.header_job([2])))
    project.set_scoring(2)
    project.attach(2, fake_data(7, seed=2))
    assert frame.status == READY and frame.objects == 7
    assert [f.field_id for f in project.frames] == [0, 0, 0]
    assert project.epochs(0) == [0, 1, 2] and project.totals()[:2] == (3, 17)
    assert FAILED not in {f.status for f in project.frames}
