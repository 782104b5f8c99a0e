"""Make the README's picture of a vetting project: docs/images/project.png.

Run: python docs/project_screenshot.py [FRAME...]

Without frames it simulates six exposures of one field (the tests' `epoch_frames` helper:
pointing offsets of a few pixels, own noise and cosmic-ray hits, a WCS each), opens them as
a project, waits until all are scored, goes to the second frame, selects an object and
blinks once, so the frames dock, the epochs in the object panel and the blink show.
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from screenshots import IMAGES, wait_for  # the README screenshots' script, beside this one

from rbvet.gui.app import apply_theme
from rbvet.gui.main_window import MainWindow


def simulated_frames(folder):
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from epoch_frames import write_epochs

    return [str(p) for p in write_epochs(folder, 6, shape=(384, 384), n_stars=150, n_hits=25)]


def main():
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_theme(app)
    workdir = Path(tempfile.mkdtemp(prefix="rbvet-project-screen-"))
    frames = sys.argv[1:] or simulated_frames(workdir)
    window = MainWindow(
        settings=QSettings(os.devnull, QSettings.Format.IniFormat),
        label_store_path=workdir / "labels.sqlite",
    )
    window.resize(1700, 1000)
    window.show()
    window.project.open_paths(frames)
    wait_for(app, window.project.idle)
    window.project.go_to(1)
    app.processEvents()
    order = window.grid.proxy.order()
    window.labels.label(order[:6], 1)
    window.project.set_done(0)
    window.state.select(int(order[2]))
    wait_for(app, window.epochs.stampsReady)  # the epochs are cut in a job
    window.epochs.blink()
    app.processEvents()
    IMAGES.mkdir(exist_ok=True)
    path = IMAGES / "project.png"
    window.grab().save(str(path))
    print(f"saved {path}")
    window.close()


if __name__ == "__main__":
    main()
