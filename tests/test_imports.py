"""Import boundaries: core never pulls in Qt, and TensorFlow loads only when a model is used."""

import os
import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import rbvet.realbogus, rbvet.cli
import rbvet.core.io.frame, rbvet.core.io.catalog
import rbvet.core.cutouts.stamps, rbvet.core.cutouts.preprocess
import rbvet.core.session, rbvet.core.learn.labels, rbvet.core.learn.retrain
import rbvet.core.classify, rbvet.core.learn.metrics, rbvet.core.learn.train, rbvet.core.model
heavy = sorted(m for m in ("PyQt6", "pyqtgraph", "tensorflow", "keras", "sep") if m in sys.modules)
print(",".join(heavy))
"""


def test_core_imports_no_qt_and_no_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_importing_the_frame_reader_leaves_astropy_wcs_out():
    """``astropy.wcs`` (with astropy.coordinates, ~0.13 s) is imported when a header's WCS
    is read, not by every process that imports the frame reader (the CLI, workers)."""
    root = Path(__file__).resolve().parents[1]
    check = "import rbvet.core.io.frame, sys; print('astropy.wcs' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.stdout.strip() == "False"
