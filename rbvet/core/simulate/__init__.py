"""Synthetic frames with full truth, to train and test the real-bogus classifier.

The simulator follows the frame's making, one module a step:

* `settings`: `SimulationSettings`, every option of a frame and the distribution each is
  drawn from when left open; `draw_fwhm`;
* `psf`: the PSF and pixel-integrated rendering of stamps into a frame;
* `sources`: stars and galaxies (Sérsic profiles convolved with the PSF), saturation and
  bleeding;
* `artifacts`: cosmic rays, hot pixels, satellite trails, bad columns and edge bands,
  drawn relative to the noise;
* `truth`: the truth table, and `label_detections`, which labels what a detector found;
* `frame`: `simulate_frame`, which puts them together with sky, noise and saturation;
* `epochs`: `simulate_epochs`, aligned exposures of one field with a WCS each (an
  `Exposure` is one of them: the field's sky, its own artifacts and noise).
"""

from rbvet.core.simulate.epochs import SimulatedEpoch, simulate_epochs
from rbvet.core.simulate.frame import SimulatedFrame, simulate_frame
from rbvet.core.simulate.settings import Exposure, SimulationSettings, draw_fwhm
from rbvet.core.simulate.truth import ARTIFACT_KINDS, SOURCE_KINDS, label_detections

__all__ = [
    "ARTIFACT_KINDS",
    "Exposure",
    "SOURCE_KINDS",
    "SimulatedEpoch",
    "SimulatedFrame",
    "SimulationSettings",
    "draw_fwhm",
    "label_detections",
    "simulate_epochs",
    "simulate_frame",
]
