"""The shipped model on undersampled simulated frames: FWHM, star recall, hot-pixel rejection.

Usage::

    python scripts/check_undersampled.py [--size 512] [--seeds 2]

For each PSF FWHM (0.8, 1.0, 1.2, 1.5 px before pixel integration; Gaussian, round) a
frame with stars and hot pixels (singles, pairs, clusters; no cosmic rays, satellites or
galaxies) is simulated, objects are detected and the FWHM measured as `rbvet classify`
does, and every detection is scored with the shipped model (a) at the measured FWHM and
(b) at the true pixelated FWHM ``sqrt(f**2 + 0.46)``. Printed: the measured FWHM, whether
it was found undersampled, the stars the estimator used that are hot pixels, and the
recall of stars of peak S/N >= 20 and the rejection of hot pixels at the model's
threshold. Copied into an older checkout's scripts/ it gives that version's figures.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rbvet.core.classify import score_objects  # noqa: E402
from rbvet.core.detect.detection import detect_objects  # noqa: E402
from rbvet.core.detect.psf import measure_fwhm  # noqa: E402
from rbvet.core.io.frame import frame_from_array  # noqa: E402
from rbvet.core.jobs import run_job  # noqa: E402
from rbvet.core.model.cache import cached_model  # noqa: E402
from rbvet.core.simulate import simulate_frame  # noqa: E402

FWHMS = (0.8, 1.0, 1.2, 1.5)


def undersampled_frame(size, fwhm, seed, n_stars=150, n_hot_pixels=150):
    """A simulated frame of round Gaussian stars and hot pixels only."""
    return simulate_frame(
        (size, size),
        fwhm=fwhm,
        rng=seed,
        n_stars=n_stars,
        n_galaxies=0,
        n_cosmic_rays=0,
        n_hot_pixels=n_hot_pixels,
        hot_pixel_mix={"single": 0.5, "pair": 0.35, "cluster": 0.15, "column_segment": 0.0},
        n_satellites=0,
        n_bad_columns=0,
        n_edge_bands=0,
        psf_model="gaussian",
        ellipticity=0.0,
        pair_fraction=0.0,
        group_fraction=0.0,
        sky_gradient=False,
    )


def nearest_truth(truth, x, y, reach=1.5):
    """Index of the truth row each detection is centred on, -1 where none within reach."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([truth["x"], truth["y"]]))
    distance, index = tree.query(np.column_stack([x, y]))
    return np.where(distance <= reach, index, -1)


def measure(size, fwhm, seed, model):
    """Figures of one frame (see the module's docstring)."""
    sim = undersampled_frame(size, fwhm, seed)
    frame = frame_from_array(sim.image).ensure_background()
    table = detect_objects(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
    match = nearest_truth(sim.truth, table["x"], table["y"])
    kind = np.where(match >= 0, np.asarray(sim.truth["kind"])[np.maximum(match, 0)], "")
    peak = np.where(match >= 0, np.asarray(sim.truth["peak_sigma"])[np.maximum(match, 0)], 0)
    bright_star = (kind == "star") & (peak >= 20)
    hot = kind == "hot_pixel"
    pixelated = float(np.sqrt(fwhm**2 + 0.46))
    row = {
        "fwhm": fwhm,
        "pixelated": pixelated,
        "measured": estimate.fwhm,
        "source": estimate.source
        + (" undersampled" if getattr(estimate, "undersampled", False) else ""),
        "stars_used": estimate.n_stars,
        "hot_used": int(np.sum(hot[estimate.stars])) if estimate.n_stars else 0,
        "bright_stars": int(bright_star.sum()),
        "hot_pixels": int(hot.sum()),
    }
    # 1.5 and 1.0 px: what up-scaling by 2 and by 3 (plan_rescale) gives, whatever the FWHM.
    for label, value in (
        ("measured", estimate.fwhm),
        ("true", pixelated),
        ("up2", 1.5),
        ("up3", 1.0),
    ):
        scores, _ = run_job(score_objects(frame, table["x"], table["y"], model, value))
        real = np.asarray(scores) >= model.threshold
        row[f"recall_{label}"] = float(np.mean(real[bright_star]))
        row[f"rejection_{label}"] = float(np.mean(~real[hot]))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    model = cached_model()
    print(
        f"{'FWHM':>4s} {'pix':>5s} {'seed':>4s} | {'measured':>8s} {'source':22s} "
        f"{'stars':>5s} {'hot':>4s} | {'n*':>4s} {'nhot':>4s} | recall / rejection at "
        "measured FWHM | at true FWHM | up-scaled x2 | up-scaled x3"
    )
    for fwhm in FWHMS:
        for seed in range(args.seeds):
            r = measure(args.size, fwhm, 900 + seed, model)
            print(
                f"{fwhm:4.1f} {r['pixelated']:5.2f} {seed:4d} | {r['measured']:8.2f} "
                f"{r['source']:22s} {r['stars_used']:5d} {r['hot_used']:4d} | "
                f"{r['bright_stars']:4d} {r['hot_pixels']:4d} | "
                f"{r['recall_measured']:6.1%} / {r['rejection_measured']:6.1%}"
                f"                | {r['recall_true']:6.1%} / {r['rejection_true']:6.1%}"
                f" | {r['recall_up2']:6.1%} / {r['rejection_up2']:6.1%}"
                f" | {r['recall_up3']:6.1%} / {r['rejection_up3']:6.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
