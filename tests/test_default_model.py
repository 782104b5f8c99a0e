"""The shipped default model: loads with no argument and separates real from bogus."""

import numpy as np

from rbvet import realbogus
from rbvet.core.jobs import run_job
from rbvet.core.learn.metrics import roc_auc
from rbvet.core.learn.train import simulated_training_set
from rbvet.core.model import load_model


def test_default_model_loads_without_argument():
    model = realbogus.load_realbogus_model()
    assert model.input_shape[1:] == (31, 31, 2)
    card = load_model().card
    assert card["metrics"]["auc"] > 0.95 and card["training"]["split"] == "by frame"


def test_default_model_meets_a_loose_floor_on_fresh_frames():
    # Seeds far from the training (1) and card-test (1000004) seeds; a deliberately loose
    # floor: the real targets are measured on many more frames and reported on the card.
    data = run_job(simulated_training_set(n_frames=4, shape=(512, 512), seed=987_654, workers=1))
    scores = load_model().predict(data.inputs)
    assert roc_auc(scores, data.labels) > 0.95
    stars = data.kinds == "star"
    assert np.mean(scores[stars] >= 0.5) > 0.9
