"""SAMP in the window: tables to TOPCAT, marks and positions to DS9 and Aladin, tables back.

`SampBridge` is a thin Qt adapter over `rbvet.core.io.samp.SampLink`. Each SAMP exchange
runs as a small job in a `JobThread`, so a hub that is slow or stuck never freezes the
window; its one-line status goes to the status bar. A table another program sends (TOPCAT's
*Transmit table*) arrives on the SAMP thread and reaches the GUI thread through a queued
signal; it then becomes the current frame's catalog (by ``x``/``y`` or, through the
frame's WCS, by RA/Dec) and the frame is scored again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from rbvet.core.io.samp import SampLink, sky_columns
from rbvet.core.jobs import Progress
from rbvet.gui.workers import JobThread

STATUS_MS = 8000
"""How long a SAMP status line stays in the status bar."""


def _exchange(call, *args):
    """A job doing one SAMP exchange; returns its status line."""
    yield Progress(message="SAMP")
    return call(*args)


class SampBridge(QObject):
    """The window's SAMP client: a `SampLink` whose exchanges run off the GUI thread.

    Parameters
    ----------
    window : rbvet.gui.main_window.MainWindow
    hub_params : dict, optional
        A particular hub (tests); the user's running hub when None.

    Attributes
    ----------
    link : SampLink
    job : JobThread or None
        The exchange under way.
    received : list of str
        Files of the tables received (the catalogs opened from them).

    Signals
    -------
    statusChanged(str)
        The last exchange's one-line status.
    tableReceived(object, str)
        A table (astropy Table) and its name, sent by another program; on the GUI thread.
    """

    statusChanged = pyqtSignal(str)
    tableReceived = pyqtSignal(object, str)

    def __init__(self, window, hub_params=None):
        super().__init__(window)
        self.window = window
        self.link = SampLink(on_table=self.tableReceived.emit, hub_params=hub_params)
        self.job = None
        self.received = []
        self.tableReceived.connect(self._use_table)
        self.statusChanged.connect(lambda text: window.statusBar().showMessage(text, STATUS_MS))

    def add_menu(self, menu_bar):
        """A SAMP menu: connect, send the selection or the catalog, point at the object."""
        menu = menu_bar.addMenu("&SAMP")
        actions = (
            ("&Connect to the SAMP hub", self.connect_hub),
            ("Send &selection to TOPCAT / Aladin", self.send_selection),
            ("Send vetted &catalog to TOPCAT / Aladin", self.send_catalog),
            ("&Point DS9 / Aladin at the object", self.point_at_object),
            ("&Disconnect", self.disconnect_hub),
        )
        for text, slot in actions:
            menu.addAction(text).triggered.connect(lambda _checked=False, s=slot: s())
        return menu

    # ------------------------------------------------------------------ actions

    def connect_hub(self):
        """Connect (and so receive tables); the status bar says to what."""
        return self._run(self.link.connect)

    def disconnect_hub(self):
        return self._run(self.link.disconnect)

    def send_selection(self):
        """Send the selected tiles' rows (or the selected object's) as a VOTable."""
        data = self.window.state.data
        if data is None:
            return self._say("SAMP: open a frame first")
        rows = self.window.grid.view.selected_objects()
        if len(rows) == 0 and self.window.state.selected >= 0:
            rows = np.array([self.window.state.selected])
        if len(rows) == 0:
            return self._say("SAMP: select objects in the grid first")
        table = self._vetted()[np.asarray(rows)]
        return self._run(self.link.send_table, table, f"{self._stem()} selection")

    def send_catalog(self):
        """Send the whole vetted catalog (scores, labels, flags, RA/Dec) as a VOTable."""
        if self.window.state.data is None:
            return self._say("SAMP: open a frame first")
        return self._run(self.link.send_table, self._vetted(), f"{self._stem()} rbvet")

    def point_at_object(self):
        """Centre DS9 and Aladin on the selected object."""
        data, index = self.window.state.data, self.window.state.selected
        if data is None or index < 0:
            return self._say("SAMP: select an object first")
        if data.frame is None or data.frame.wcs is None:
            return self._say("SAMP: the frame has no WCS: no sky position to send")
        ra, dec = data.frame.wcs.all_pix2world([data.x[index]], [data.y[index]], 0)
        return self._run(self.link.point_at, float(ra[0]), float(dec[0]))

    def shutdown(self):
        """Leave the hub and stop a running exchange without waiting (window closing)."""
        if self.job is not None:
            self.job.stop(timeout_ms=0)
            self.job = None
        try:
            self.link.close()
        except Exception:  # closing: nothing to tell
            pass

    # ------------------------------------------------------------------ helpers

    def _vetted(self):
        from rbvet.core.io.export import vetted_catalog

        data = self.window.state.data
        table = vetted_catalog(
            data.table, data.scores, data.labels, self.window.state.threshold, data.reasons
        )
        return sky_columns(table, getattr(data.frame, "wcs", None))

    def _stem(self):
        return Path(self.window.frame_path or "frame").name.split(".")[0]

    def _say(self, text):
        self.statusChanged.emit(text)
        return False

    def _run(self, call, *args):
        """Run one exchange in a thread; False when another is still under way."""
        if self.job is not None:
            return self._say("SAMP: still busy with the last exchange")
        thread = JobThread(_exchange(call, *args), name="samp", parent=self)
        self.job = thread

        def done(*_):
            if self.job is thread:
                self.job = None

        def report(text):
            done()  # before the status: a listener may start the next exchange at once
            self.statusChanged.emit(text)

        thread.succeeded.connect(report)
        thread.failed.connect(lambda message: report(f"SAMP: {message}"))
        thread.cancelled.connect(done)
        thread.start()
        return True

    def _use_table(self, table, name):
        """A table from another program becomes the current frame's catalog."""
        if self.window.frame_path is None:
            self._say(f"SAMP: received {name}, but no frame is open to use it for")
            return
        path = self.link.folder / f"received_{len(self.received) + 1:03d}.ecsv"
        try:
            table.write(path, format="ascii.ecsv", overwrite=True)
        except (OSError, ValueError, TypeError) as error:
            self._say(f"SAMP: could not keep {name} ({error})")
            return
        self.received.append(str(path))
        self._say(f"SAMP: {name} ({len(table)} rows) is the catalog of this frame now")
        self.window.open_catalog(path)
