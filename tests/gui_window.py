"""Test helper: the main window as the GUI tests open it."""

import pytest
from PyQt6.QtCore import QSettings

from rbvet.gui.main_window import MainWindow


def shown_window(qtbot, tmp_path):
    """A `MainWindow` shown at 1400 × 900, its settings and label store in ``tmp_path``.

    The caller's fixture yields it and ends what the test left running.
    """
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    qtbot.addWidget(main_window)
    main_window.resize(1400, 900)
    main_window.show()
    return main_window


def end_project_window(window):
    """Stop what a project test left running: the project's jobs, then the window's."""
    window.project.shutdown()
    window.cancel_job(wait=True)


@pytest.fixture(name="window")
def project_window(qtbot, tmp_path):
    """The ``window`` fixture of the project tests: a `shown_window` whose project jobs and
    window job are ended after the test (import it into a test module to use it)."""
    main_window = shown_window(qtbot, tmp_path)
    yield main_window
    end_project_window(main_window)


def open_project(qtbot, window, paths, timeout_ms):
    """Open ``paths`` as a project and wait for its first frame to be shown and scoring to
    settle (the controller's ``idle``)."""
    controller = window.project
    with qtbot.waitSignal(controller.idle, timeout=timeout_ms):
        with qtbot.waitSignal(window.classified, timeout=timeout_ms):
            controller.open_paths(paths)
    return controller
