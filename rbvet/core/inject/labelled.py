"""The assessment's figures measured on labelled real objects, to check the injected ones.

`assess_frame` measures star completeness and artifact rejection on injections; given
labels of the frame's own objects (``x``, ``y``, ``true_label`` and optionally ``kind``),
`label_measured` measures the same figures on them with the same definitions: a labelled
object is *detected* when a detection lies within ``radius`` px, its score is that
detection's, and stars count from the same S/N (`STAR_SNR_MIN`, matched filter with the
frame's PSF, `rbvet.core.inject.psf.matched_filter_snr`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rbvet.core.inject.assess import STAR_SNR_MIN

MATCH_RADIUS = 3.0
"""Px: a labelled object is detected when a detection is this close."""


@dataclass
class LabelMeasured:
    """Figures of labelled objects, row by row and summed up.

    Attributes
    ----------
    labels : ndarray of int8
        1 real, 0 bogus, per labelled row.
    kinds : ndarray of str
        The ``kind`` column ("star" for every real row and "bogus" for the others when
        the labels have none).
    detected : ndarray of bool
    scores : ndarray of float
        Score of the detection matched to each row; NaN when undetected or unscorable.
    snr : ndarray of float
        Matched-filter S/N at each labelled position.
    summary : dict
        ``star_completeness`` (labelled stars of S/N >= `STAR_SNR_MIN` detected and scored
        at or above the threshold), ``real_completeness`` (the same for every real kind),
        ``artifact_rejection`` (detected bogus objects scored below it or unscorable) and
        ``artifact_rejection_by_kind``, and the counts they rest on.
    """

    labels: np.ndarray
    kinds: np.ndarray
    detected: np.ndarray
    scores: np.ndarray
    snr: np.ndarray
    summary: dict = field(default_factory=dict)


def label_measured(frame, detections, scores, truth, frame_psf, threshold, radius=MATCH_RADIUS):
    """Measure star completeness and artifact rejection on labelled objects.

    Parameters
    ----------
    frame : Frame
    detections : astropy.table.Table
        The frame's detections (0-based ``x``, ``y``), as scored.
    scores : ndarray
        Score of each detection (NaN: unscorable).
    truth : astropy.table.Table
        Labelled objects: ``x``, ``y`` (0-based), ``true_label`` (1 real, 0 bogus) and
        optionally ``kind``.
    frame_psf : rbvet.core.inject.psf.FramePsf
        For the S/N (`rbvet.core.inject.psf.measure_frame_psf`).
    threshold : float
    radius : float

    Returns
    -------
    LabelMeasured
    """
    from scipy.spatial import cKDTree

    from rbvet.core.inject.psf import matched_filter_snr

    tx, ty = np.asarray(truth["x"], np.float64), np.asarray(truth["y"], np.float64)
    labels = np.asarray(truth["true_label"]).astype(np.int8)
    if "kind" in truth.colnames:
        kinds = np.asarray(truth["kind"]).astype(str)
    else:
        kinds = np.where(labels == 1, "star", "bogus")
    scores = np.asarray(scores, np.float64)
    detected = np.zeros(len(tx), bool)
    matched = np.full(len(tx), np.nan)
    if len(detections):
        tree = cKDTree(np.column_stack([np.asarray(detections["x"]), detections["y"]]))
        distance, nearest = tree.query(np.column_stack([tx, ty]), distance_upper_bound=radius)
        detected = np.isfinite(distance)
        matched[detected] = scores[nearest[detected]]
    snr = matched_filter_snr(frame, frame_psf, tx, ty)
    called_real = detected & (matched >= threshold)
    bright = (labels == 1) & (snr >= STAR_SNR_MIN)
    stars = bright & (kinds == "star")
    bogus_found = (labels == 0) & detected
    rejected = bogus_found & ~called_real

    def fraction(good, pool):
        return float(good[pool].mean()) if pool.any() else float("nan")

    summary = {
        "threshold": float(threshold),
        "star_completeness": fraction(called_real, stars),
        "real_completeness": fraction(called_real, bright),
        "artifact_rejection": fraction(rejected, bogus_found),
        "artifact_rejection_by_kind": {
            str(kind): fraction(rejected, bogus_found & (kinds == kind))
            for kind in np.unique(kinds[bogus_found])
        },
        "counts": {
            "real": int(np.sum(labels == 1)),
            "bogus": int(np.sum(labels == 0)),
            "stars_bright": int(stars.sum()),
            "real_bright": int(bright.sum()),
            "real_detected": int(np.sum(detected & (labels == 1))),
            "bogus_detected": int(bogus_found.sum()),
        },
    }
    return LabelMeasured(labels, kinds, detected, matched, snr, summary)
