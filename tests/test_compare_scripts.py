"""The machinery of scripts/compare_models.py and scripts/miss_sheets.py on small frames:
the frame cache and the list of a model's misses. The figures come from running them."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from rbvet.core.model import load_model

SCRIPTS = Path(__file__).parents[1] / "scripts"


def script(name):
    sys.path.insert(0, str(SCRIPTS))  # miss_sheets imports compare_models
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


@pytest.fixture(scope="module")
def compare():
    return script("compare_models")


def test_cached_frames_are_read_back_without_simulating_again(compare, tmp_path, monkeypatch):
    seed = np.random.SeedSequence(5).spawn(1)[0]
    task = (0, seed, (160, 160), {"n_short_trails": 3})
    first = compare.cached_frame_objects(task, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1

    def refuse(task):
        raise AssertionError("simulated again")

    monkeypatch.setattr(compare, "frame_objects", refuse)
    again = compare.cached_frame_objects(task, tmp_path)
    for key in ("x", "y", "labels", "kinds"):
        np.testing.assert_array_equal(again[key], first[key])
    other = (0, seed, (160, 160), {"n_short_trails": 4})  # other options: not the same frame
    with pytest.raises(AssertionError, match="simulated again"):
        compare.cached_frame_objects(other, tmp_path)


def test_the_optics_set_draws_every_optics_option(compare):
    from rbvet.core.simulate.optics import OPTICS_OPTIONS

    assert set(compare.SIMULATORS) == {"new", "old", "optics"}
    assert compare.SIMULATORS["optics"] == dict.fromkeys(OPTICS_OPTIONS)


def test_misses_are_exactly_the_objects_called_against_their_label(tmp_path):
    misses = script("miss_sheets")
    model = load_model()
    found = misses.misses(
        model, 2, 3, (256, 256), {"n_short_trails": 6, "n_cosmic_rays": 30, "n_stars": 80}
    )
    scored = np.isfinite(found["score"])
    wrong = scored & ((found["score"] >= model.threshold) != (found["label"] == 1))
    np.testing.assert_array_equal(found["missed"], wrong)
    assert wrong.any() and not wrong.all()  # these frames hold misses (short trails) and hits
    assert len(found["inputs"]) == int(wrong.sum())
    misses.draw(found, tmp_path / "m.png", 4, "test")
    assert (tmp_path / "m.png").stat().st_size > 0
