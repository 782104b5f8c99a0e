"""Agreement between annotators: Cohen's kappa, each annotator's labels in the store, and
the window's "annotators disagree" filter."""

import numpy as np
import pytest

from rbvet.core.cutouts.stamps import cut_stamps
from rbvet.core.learn.agreement import agreement, cohen_kappa
from rbvet.core.learn.labels import LabelStore


def test_kappa_matches_a_hand_computed_value():
    # 10 objects: both real on 4, both bogus on 3, A real / B bogus on 2, A bogus / B real on 1
    first = [1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    second = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    # observed 0.7; A real 0.6, B real 0.5: chance 0.6*0.5 + 0.4*0.5 = 0.5; kappa 0.2/0.5
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert np.isnan(cohen_kappa([1, 1], [1, 1]))  # chance agreement is certain
    assert np.isnan(cohen_kappa([], []))


def test_agreement_picks_the_pair_with_most_objects_in_common():
    ids = [1, 1, 2, 2, 3, 3, 4, 4, 5]
    who = ["ada", "bo", "ada", "bo", "ada", "bo", "ada", "cy", "cy"]
    labels = [1, 1, 0, 1, 0, 0, 1, -1, 1]
    result = agreement(ids, who, labels)
    assert result.pair == ("ada", "bo") and result.shared == 3
    # ada 1,0,0 vs bo 1,1,0: observed 2/3, chance 1/3*2/3 + 2/3*1/3 = 4/9
    assert result.kappa == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9))
    assert result.object_ids.tolist() == [1, 2, 3, 4, 5]
    assert result.disagree.tolist() == [False, True, False, False, False]
    assert "κ = 0.40" in result.summary() and "1 disagree" in result.summary()


@pytest.fixture
def store_with_objects(tmp_path, make_vetting_data):
    """A store holding the 8 objects of a vetting data's frame (nothing labeled)."""
    data = make_vetting_data(n=8, unscored=0)
    store = LabelStore(tmp_path / "labels.sqlite")
    frame_id = store.add_frame(data.frame, data.fwhm, data.rescale)
    stamps = cut_stamps(data.frame, data.x, data.y, data.rescale)
    ids = store.add_objects(frame_id, data.x, data.y, stamps)
    yield store, frame_id, ids, data
    store.close()


def test_each_annotators_label_in_force_ignores_undone_actions(store_with_objects, tmp_path):
    store, frame_id, ids, *_ = store_with_objects
    store.set_labels(ids[:4], 1, annotator="ada")
    store.set_labels(ids[2:4], 0, annotator="ada")  # ada changes her mind on 2 and 3
    store.set_labels(ids[3:6], 0, annotator="bo")
    other = LabelStore(store.path, create=False)  # bo's second session: a label then undo
    other.set_labels(ids[:2], 0, annotator="bo")
    other.undo()
    other.close()
    got = store.annotator_labels(frame_id)
    pairs = {(int(i), str(a)): int(label) for i, a, label, *_ in zip(*got, strict=True)}
    expected = {(int(i), "ada"): 1 for i in ids[:2]}
    expected |= {(int(i), "ada"): 0 for i in ids[2:4]}
    expected |= {(int(i), "bo"): 0 for i in ids[3:6]}
    assert pairs == expected
    result = agreement(*got[:3])
    assert result.pair == ("ada", "bo") and result.shared == 1 and not result.disagree.any()


def test_the_window_shows_kappa_and_filters_objects_annotators_disagree_on(
    store_with_objects, monkeypatch
):
    from rbvet.core.session import FILTER_ANNOTATORS_DISAGREE, VettingSession

    store, frame_id, ids, data = store_with_objects
    store.set_labels(ids[:5], 1, annotator="ada")
    store.set_labels(ids[3:7], 0, annotator="bo")
    path = store.path
    store.close()
    data.x = data.x + 0.1  # a re-detection moves a little
    monkeypatch.setenv("RBVET_ANNOTATOR", "cy")
    session = VettingSession(path)
    session.show(data)
    assert session.agreement.pair == ("ada", "bo") and session.agreement.shared == 2
    assert session.agreement.kappa == pytest.approx(0.0)  # they never agree, at chance level
    session.set_filter(FILTER_ANNOTATORS_DISAGREE)
    assert sorted(session.display_order().tolist()) == [3, 4]
    # cy now labels object 0 bogus: ada said real, so they disagree there too
    announced = []
    session.order_changed.connect(lambda: announced.append(session.display_order().tolist()))
    session.label([0], 0)
    assert sorted(session.display_order().tolist()) == [0, 3, 4]
    assert sorted(announced[-1]) == [0, 3, 4]  # the window redraws with the new filter


def test_a_second_annotators_import_is_recorded_where_they_agree_too(tmp_path, monkeypatch):
    """Agreement needs both annotators' labels on the same objects, equal ones included."""
    from astropy.table import Table

    from rbvet.cli import main

    image = tmp_path / "field.fits"
    assert main(["simulate", "-o", str(image), "--size", "512", "--seed", "3"]) == 0
    catalog = tmp_path / "field.ecsv"
    table = Table.read(catalog)
    truth = np.asarray(table["true_label"], int)
    second = truth.copy()
    second[:4] = 1 - second[:4]  # bo disagrees with ada on four objects
    table["bo"] = second
    table.write(catalog, overwrite=True)
    store = tmp_path / "labels.sqlite"
    base = ["label", str(image), "--catalog", str(catalog), "--labels", str(store)]
    assert main(base + ["--column", "true_label", "--annotator", "ada"]) == 0
    assert main(base + ["--column", "bo", "--annotator", "bo"]) == 0
    with LabelStore(store, readonly=True) as opened:
        events = opened.event_count()
        result = agreement(*opened.annotator_labels()[:3])
    n = len(result.object_ids)
    assert result.pair == ("ada", "bo") and result.shared == n
    unscorable_disagreements = 4 - int(result.disagree.sum())
    assert 0 <= unscorable_disagreements < 4
    assert main(base + ["--column", "bo", "--annotator", "bo"]) == 0  # again: nothing new
    with LabelStore(store, readonly=True) as opened:
        assert opened.event_count() == events
