"""Injection-measured against label-measured figures on the two real frames in tests/data/real.

Run: python benchmarks/bench_assess_real.py [--rounds 16] [--injections 2000]

The labels are the hand-checked lists of tests/test_detect.py (tests/data/real/README.md):
obvious stars and cosmic-ray hits. *Label-measured*: the listed stars detected (within 4 px)
and scored at or above the threshold, and the listed hits detected (within 3 px) and scored
below it. *Injection-measured*: `rbvet.core.inject.assess.assess_frame` on the same frame,
with many small rounds (these frames are small and leave little room per round). The lists
are short (5 and 9 stars, 13 hits): a difference of one object is 8-20 points. Nothing
asserts.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_detect import SAAO, SAAO_HITS, SAAO_STARS, UKIDSS, UKIDSS_STARS  # noqa: E402

from rbvet.core.classify import open_frame_and_catalog, score_objects  # noqa: E402
from rbvet.core.inject.assess import assess_frame  # noqa: E402
from rbvet.core.inject.inject import InjectionSettings  # noqa: E402
from rbvet.core.jobs import run_job  # noqa: E402
from rbvet.core.model.cache import cached_model  # noqa: E402


def labelled(table, scores, points, radius):
    """For each listed point: detected (a detection within radius) and its score."""
    x, y = np.asarray(table["x"]), np.asarray(table["y"])
    found, best = [], []
    for px, py in points:
        distance = np.hypot(x - px, y - py)
        nearest = int(np.argmin(distance))
        found.append(distance[nearest] <= radius)
        best.append(scores[nearest] if found[-1] else np.nan)
    return np.array(found), np.array(best)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--injections", type=int, default=2000)
    args = parser.parse_args()
    model = cached_model()
    threshold = model.threshold
    settings = InjectionSettings(injections=args.injections, rounds=args.rounds)
    for path, stars, hits in ((SAAO, SAAO_STARS, SAAO_HITS), (UKIDSS, UKIDSS_STARS, [])):
        frame, table, fwhm = run_job(open_frame_and_catalog(path))
        scores, _ = run_job(score_objects(frame, table["x"], table["y"], model, fwhm))
        found, star_scores = labelled(table, scores, stars, 4.0)
        kept = found & (star_scores >= threshold)
        summary = run_job(assess_frame(path, settings=settings)).summary
        counts = summary["counts"]
        print(f"\n{path.name}: FWHM {fwhm:.2f} px; {summary['psf']['psf_note']}")
        print(f"  injections placed: {counts['placed']} of {counts['requested']}")
        print(f"  threshold {threshold:.2f}          labels                injections")
        print(
            f"  star completeness   {kept.sum()}/{len(stars)} = {100 * kept.mean():5.1f} %"
            f"      {100 * summary['star_completeness']:5.1f} % of {counts['stars_bright']}"
            " (S/N >= 20)"
        )
        if hits:
            found, hit_scores = labelled(table, scores, hits, 3.0)
            rejected = found & (hit_scores < threshold)
            rate = rejected.sum() / max(found.sum(), 1)
            injected = summary["artifact_rejection_by_kind"].get("cosmic_ray", np.nan)
            print(
                f"  cosmic-ray rejection {rejected.sum()}/{found.sum()} = {100 * rate:5.1f} %"
                f"     {100 * injected:5.1f} % of "
                f"{summary['counts']['detected_by_kind'].get('cosmic_ray', 0)}"
            )
        by_kind = summary["artifact_rejection_by_kind"]
        print("  injected rejection by kind: " + ", ".join(
            f"{kind} {100 * value:.1f} %" for kind, value in by_kind.items()
        ))  # fmt: skip


if __name__ == "__main__":
    main()
