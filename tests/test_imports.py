"""Import boundaries: core never pulls in Qt, and TensorFlow loads only when a model is used."""

import subprocess
import sys

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
