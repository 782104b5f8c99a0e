"""Make the README's pictures of the labeling loop (offscreen, a temporary label store).

Run: python docs/screenshots.py   -> docs/images/labeling.png, docs/images/retrain.png

Opens the demo frame, labels part of it from the demo catalog's truth (flipping a few
labels so that the "suspicious first" sort has something to show), then retrains from
those labels for two epochs and pictures the dialog's comparison.
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from astropy.table import Table
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication

from rbvet.core.paths import demo_frame_path
from rbvet.core.session import SORT_SUSPICIOUS
from rbvet.gui.app import apply_theme
from rbvet.gui.main_window import MainWindow
from rbvet.gui.state import BOGUS, REAL

IMAGES = Path(__file__).parent / "images"


def wait_for(app, signal, timeout_s=600):
    """Run the event loop until ``signal`` fires."""
    from PyQt6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()


def main():
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_theme(app)
    workdir = Path(tempfile.mkdtemp(prefix="rbvet-screens-"))
    window = MainWindow(
        settings=QSettings(os.devnull, QSettings.Format.IniFormat),
        label_store_path=workdir / "labels.sqlite",
        models_dir=workdir,
    )
    window.resize(1600, 1000)
    window.show()
    frame = demo_frame_path()
    window.open_frame(frame, frame.with_suffix(".ecsv"))
    wait_for(app, window.classified)

    truth = np.asarray(Table.read(frame.with_suffix(".ecsv"))["true_label"])
    rng = np.random.default_rng(3)
    chosen = rng.permutation(np.flatnonzero(truth >= 0))[:160]
    flipped = chosen[:6]  # a few slips of the hand, for the suspicious sort to find
    for label in (REAL, BOGUS):
        given = chosen[(truth[chosen] == label) != np.isin(chosen, flipped)]
        window.labels.label(given, label)
    window.grid.proxy.set_sort(SORT_SUSPICIOUS)
    order = window.grid.proxy.order()
    window.state.select(int(order[0]))
    app.processEvents()
    IMAGES.mkdir(exist_ok=True)
    window.grab().save(str(IMAGES / "labeling.png"))

    dialog = window.retrain_from_labels()
    dialog.epochs_spin.setValue(2)
    dialog.start_training()
    wait_for(app, dialog.trainingFinished)
    app.processEvents()
    dialog.grab().save(str(IMAGES / "retrain.png"))
    dialog.reject_model()
    window.close()
    print(f"saved {IMAGES / 'labeling.png'} and {IMAGES / 'retrain.png'}")


if __name__ == "__main__":
    main()
