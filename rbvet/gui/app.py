"""Start the vetting window: ``python main.py [FRAME...|DIR] [--list FILE] [--catalog CAT]``.

With no frame it opens the shipped demo frame and catalog with the default model. One
frame opens as it always did; several frames, a folder or ``--list FILE`` open a vetting
project (`rbvet.gui.project`): the frames are scored one after another and the first is
shown as soon as it is ready.
``--screenshot PATH`` loads and classifies, saves a PNG of the window and exits.
Before Qt starts, `rbvet.gui.display` checks for a display and the libraries Qt's platform
plugin needs; without them it exits with status 2 and one line saying what to install.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_NO_DISPLAY = 2


def build_parser(parser=None):
    """Arguments of the window (also used by ``rbvet gui``)."""
    parser = parser or argparse.ArgumentParser(
        prog="rbvet-gui", description="Vet the detections of a frame in the rbvet window."
    )
    parser.add_argument(
        "frame",
        nargs="*",
        metavar="FRAME",
        help="FITS image(s) or a folder of them [the shipped demo frame]; several open a "
        "project of frames",
    )
    parser.add_argument(
        "--list",
        metavar="FILE",
        dest="frame_list",
        help="a text file naming one frame a line, optionally followed by its catalog",
    )
    parser.add_argument(
        "--catalog", "-c", help="catalog of a single frame; objects are detected without one"
    )
    parser.add_argument("--model", "-m", help="model (.keras or .h5) [the shipped default]")
    parser.add_argument(
        "--screenshot", metavar="PNG", help="classify, save a picture of the window and exit"
    )
    parser.add_argument(
        "--window-size", default="1600x1000", help="window size WIDTHxHEIGHT [1600x1000]"
    )
    return parser


def apply_theme(app):
    """A dark Fusion theme: easy on eyes adapted to the dark, and matching pyqtgraph."""
    from PyQt6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#232629",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1b1d20",
        QPalette.ColorRole.AlternateBase: "#2a2e32",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#2f3337",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d7fc1",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#2f3337",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
        QPalette.ColorRole.PlaceholderText: "#8a8f94",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(disabled, role, QColor("#6b7075"))
    app.setPalette(palette)


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--window-size: expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def _application_exists():
    """Whether this process has a QApplication already (pytest-qt's), without importing Qt."""
    widgets = sys.modules.get("PyQt6.QtWidgets")
    return widgets is not None and widgets.QApplication.instance() is not None


def run(args):
    """Open the window as ``args`` asks; returns the exit status."""
    if not _application_exists():
        from rbvet.gui.display import display_problem

        problem = display_problem()  # before Qt, which aborts the process without a display
        if problem:
            print(f"rbvet: {problem}", file=sys.stderr)
            return EXIT_NO_DISPLAY

    from PyQt6.QtCore import QSettings, QTimer
    from PyQt6.QtWidgets import QApplication

    from rbvet.gui.main_window import MainWindow

    frames = _frame_arguments(args)
    if isinstance(frames, str):
        print(f"rbvet: {frames}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("rbvet")
    collect_garbage_on_gui_thread(app)
    apply_theme(app)
    settings = None
    if args.screenshot:
        # A screenshot must not depend on, or change, the user's saved window layout.
        settings = QSettings(os.devnull, QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(*parse_size(args.window_size))
    window.show()
    status = {"code": 0}

    if args.screenshot:

        def save_and_quit():
            app.processEvents()
            window.grab().save(args.screenshot)
            print(f"saved {args.screenshot}")
            window.close()
            app.quit()

        def fail(message):
            print(f"rbvet: {message}", file=sys.stderr)
            status["code"] = 2
            window.close()
            app.quit()

        window.classified.connect(lambda: QTimer.singleShot(500, save_and_quit))
        window.failed.connect(fail)
    QTimer.singleShot(0, lambda: open_from_arguments(window, args))
    code = app.exec()
    return status["code"] or code


def collect_garbage_on_gui_thread(app, interval=1.0):
    """Run Python's cycle collector only on the GUI thread, from a timer.

    Left automatic, the collector runs in whichever thread happens to allocate, often a
    background job's; a cycle holding a Qt object (a pyqtgraph item, a widget) is then
    deleted off the GUI thread, which can crash a later paint. pyqtgraph's
    `GarbageCollector` turns automatic collection off and collects on a timer instead.
    """
    from pyqtgraph.util.garbage_collector import GarbageCollector

    app.garbage_collector = GarbageCollector(interval=interval)
    return app.garbage_collector


def open_from_arguments(window, args):
    """Open in ``window`` what the arguments name: one frame (with its catalog) as always,
    the demo without any; several frames, a folder or a list file as a project."""
    from rbvet.core.paths import demo_frame_path

    frames = _frame_arguments(args)
    if len(frames) > 1 or args.frame_list or (frames and os.path.isdir(frames[0])):
        window.model_path = args.model
        window.project.open_paths(frames, args.frame_list)
        return
    frame, catalog = (frames or [None])[0], args.catalog
    if frame is None:
        frame = demo_frame_path()
        catalog = catalog or frame.with_suffix(".ecsv")
    window.open_frame(frame, catalog, args.model)


def _frame_arguments(args):
    """The frame arguments as a list, or a one-line error (a catalog given for several)."""
    frames = args.frame
    frames = [frames] if isinstance(frames, str) else list(frames or [])
    if (len(frames) > 1 or args.frame_list) and args.catalog:
        return "--catalog names the catalog of one frame; give several in a --list file"
    return frames


def main(argv=None):
    """Entry point of ``main.py``: rbvet's warnings (a fallback taken while reading a frame)
    go to the terminal as one line each, as the ``rbvet`` command writes them."""
    import warnings

    from rbvet.cli import _show_warning

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return run(args)
