"""Talk to TOPCAT, DS9 and Aladin over SAMP, without Qt.

`SampLink` is rbvet's SAMP client. It connects to a running hub, sends tables
(``table.load.votable``: TOPCAT opens them, Aladin draws them as marks) and sky positions
(``coord.pointAt.sky``: DS9 and Aladin pan there), and receives the tables other programs
send (TOPCAT's *Transmit table*). Every method returns a one-line status and never raises
for a SAMP problem: without a hub, or when the hub vanishes in the middle of a send, the
line says so and the link counts as disconnected. A window shows that line in its status
bar; a script can print it.

Received tables arrive on the SAMP client's own thread: ``on_table(table, name)`` is
called there, so a window must pass them on to its GUI thread (`rbvet.gui.samp`).
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np

__all__ = ["SampLink", "samp_module", "sky_columns"]

CLIENT_NAME = "rbvet"
TABLE_MTYPE = "table.load.votable"
POINT_MTYPE = "coord.pointAt.sky"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")
"""Tables are fetched only from the local machine (SAMP hubs serve them from there)."""


def samp_module():
    """``astropy.samp`` (astropy is a base requirement). Astropy 8 deprecates it in favour
    of ``pyvo.samp``, the same code; its deprecation warning is silenced here, and moving
    to pyvo means changing this one import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation: the same API, still working
        import astropy.samp as samp
    return samp


def sky_columns(table, wcs):
    """``ra``/``dec`` (degrees) for a table with 0-based ``x``/``y``, through ``wcs``.

    Returns a copy with the two columns added (TOPCAT, DS9 and Aladin plot by sky
    position); the table unchanged when there is no WCS or it has them already.
    """
    if wcs is None or "ra" in table.colnames or not {"x", "y"} <= set(table.colnames):
        return table
    table = table.copy(copy_data=False)
    ra, dec = wcs.all_pix2world(np.asarray(table["x"], float), np.asarray(table["y"], float), 0)
    table["ra"], table["dec"] = ra, dec
    table["ra"].unit = table["dec"].unit = "deg"
    table["ra"].meta["ucd"] = "pos.eq.ra;meta.main"
    table["dec"].meta["ucd"] = "pos.eq.dec;meta.main"
    return table


class SampLink:
    """rbvet's SAMP client (see the module docstring).

    Parameters
    ----------
    on_table : callable, optional
        ``on_table(table, name)`` for each table another program sends; called on the SAMP
        client's thread.
    hub_params : dict, optional
        Connect to this hub (a test's own, ``hub.params``) instead of the one the user's
        lock file names.
    folder : str or Path, optional
        Where sent tables are written; when None, a temporary folder made at the first send
        and deleted by :meth:`close` if nothing else was kept there.

    Attributes
    ----------
    status : str
        The last one-line status.
    """

    def __init__(self, on_table=None, hub_params=None, folder=None):
        self.on_table = on_table
        self.hub_params = hub_params
        self._folder = Path(folder) if folder else None
        self._own_folder = not folder
        self._client = None
        self._sent = 0
        self._sent_paths = []
        self.status = "SAMP: not connected"

    # ------------------------------------------------------------------ connection

    @property
    def connected(self):
        client = self._client
        return client is not None and client.is_connected

    def connect(self):
        """Connect to the hub and register for incoming tables.

        Returns
        -------
        str
            The status line ("SAMP: connected to …", or why not).
        """
        if self.connected:
            return self._say("SAMP: connected")
        samp = samp_module()
        client = samp.SAMPIntegratedClient(
            name=CLIENT_NAME,
            description="rbvet real/bogus vetting",
            metadata={"samp.description.text": "Real/bogus vetting of astronomical detections"},
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SAMPWarning about lock files: said below
                client.connect(hub_params=self.hub_params)
            for mtype in (TABLE_MTYPE,):
                client.bind_receive_notification(mtype, self._received_notification)
                client.bind_receive_call(mtype, self._received_call)
        except Exception as error:  # no hub, a stale lock file, a refused connection
            self._drop(client)
            return self._say(f"SAMP: no hub to connect to ({_first_line(error)})")
        self._client = client
        others = [n for n in self.clients().values() if n != "Hub"]
        listed = ", ".join(sorted(others)) if others else "no other programs yet"
        return self._say(f"SAMP: connected to the hub ({listed})")

    def disconnect(self):
        """Leave the hub (nothing happens when not connected)."""
        client, self._client = self._client, None
        self._drop(client)
        return self._say("SAMP: disconnected")

    @property
    def folder(self):
        """Where the tables sent are written (the temporary one is made on first use)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="rbvet-samp-"))
        return self._folder

    def close(self):
        """Leave the hub and delete the tables sent; the temporary folder too when empty.

        Other files kept there (the window keeps the tables it receives, which became a
        frame's catalog) stay; so does a folder given to the constructor.
        """
        self.disconnect()
        for path in self._sent_paths:
            path.unlink(missing_ok=True)
        self._sent_paths.clear()
        folder, self._folder = self._folder, None
        if self._own_folder and folder is not None and not any(folder.iterdir()):
            folder.rmdir()

    def clients(self, mtype=None):
        """Names of the other connected programs (those subscribed to ``mtype`` if given).

        Returns
        -------
        dict
            Client id -> name; empty without a hub.
        """
        if not self.connected:
            return {}
        client = self._client
        try:
            ids = (
                client.get_subscribed_clients(mtype) if mtype else client.get_registered_clients()
            )
            return {i: client.get_metadata(i).get("samp.name", i) for i in ids}
        except Exception as error:
            self._lost(error)
            return {}

    # ------------------------------------------------------------------ sending

    def send_table(self, table, name="rbvet"):
        """Send a table to every program that loads VOTables (TOPCAT, Aladin).

        Parameters
        ----------
        table : astropy.table.Table
        name : str
            The name the receivers show.

        Returns
        -------
        str
            The status line.
        """
        if not self._ensure_connected():
            return self.status
        self._sent += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "table"
        path = self.folder / f"{self._sent:03d}_{safe}.vot"
        try:
            _write_votable(table, path)
            self._sent_paths.append(path)
        except (OSError, ValueError, TypeError) as error:
            return self._say(f"SAMP: could not write the table ({_first_line(error)})")
        message = {
            "samp.mtype": TABLE_MTYPE,
            "samp.params": {"url": path.as_uri(), "name": name, "table-id": path.stem},
        }
        receivers = self._notify(message)
        if receivers is None:
            return self.status
        if not receivers:
            return self._say("SAMP: no program takes tables (start TOPCAT or Aladin)")
        rows = f"{len(table)} row{'s' if len(table) != 1 else ''}"
        return self._say(f"SAMP: sent {name} ({rows}) to {self._names(receivers)}")

    def point_at(self, ra, dec):
        """Ask DS9, Aladin (every program that can) to centre on a sky position (degrees).

        Returns
        -------
        str
        """
        if not self._ensure_connected():
            return self.status
        if not (np.isfinite(ra) and np.isfinite(dec)):
            return self._say("SAMP: the object has no sky position (the frame has no WCS)")
        message = {
            "samp.mtype": POINT_MTYPE,
            "samp.params": {"ra": f"{float(ra):.7f}", "dec": f"{float(dec):.7f}"},
        }
        receivers = self._notify(message)
        if receivers is None:
            return self.status
        if not receivers:
            return self._say("SAMP: no program takes sky positions (start DS9 or Aladin)")
        return self._say(f"SAMP: pointed {self._names(receivers)} at {ra:.5f} {dec:+.5f}")

    def _notify(self, message):
        """Notify all subscribers; their ids, or None when the hub failed (status set)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no client was able to receive": said
                return list(self._client.notify_all(message) or [])
        except Exception as error:  # the hub went away: a refused or broken connection
            self._lost(error)
            return None

    def _ensure_connected(self):
        if self.connected:
            return True
        self.connect()
        return self.connected

    # ------------------------------------------------------------------ receiving

    def _received_notification(self, private_key, sender_id, mtype, params, extra):
        self._receive(sender_id, params)

    def _received_call(self, private_key, sender_id, msg_id, mtype, params, extra):
        samp = samp_module()
        try:
            self._receive(sender_id, params)
            response = {"samp.status": samp.SAMP_STATUS_OK, "samp.result": {}}
        except Exception as error:
            response = {
                "samp.status": samp.SAMP_STATUS_ERROR,
                "samp.error": {"samp.errortxt": _first_line(error)},
            }
        try:
            self._client.reply(msg_id, response)
        except Exception as error:
            self._lost(error)

    def _receive(self, sender_id, params):
        """Read a sent table and hand it to ``on_table``; errors become the status."""
        url = params.get("url", "")
        name = params.get("name") or Path(urllib.parse.urlparse(url).path).name or "table"
        try:
            table = read_sent_table(url)
        except Exception as error:
            message = f"SAMP: could not read the table {name} ({_first_line(error)})"
            self._say(message)
            raise
        rows = f"{len(table)} row{'s' if len(table) != 1 else ''}"
        self._say(f"SAMP: received {name} ({rows})")
        if self.on_table is not None:
            self.on_table(table, name)

    # ------------------------------------------------------------------ helpers

    def _names(self, ids):
        names = []
        for i in ids:
            try:
                names.append(self._client.get_metadata(i).get("samp.name", i))
            except Exception:
                names.append(i)
        return ", ".join(sorted(names))

    def _lost(self, error):
        client, self._client = self._client, None
        self._drop(client)
        self._say(f"SAMP: the hub went away ({_first_line(error)}); reconnect when it is back")

    @staticmethod
    def _drop(client):
        if client is None:
            return
        try:
            if client.is_connected:
                client.disconnect()
        except Exception:  # a hub that is gone cannot be told we leave
            pass
        try:
            client.client.stop()  # the receiving server thread, if it still runs
        except Exception:
            pass

    def _say(self, text):
        self.status = text
        return text


def read_sent_table(url):
    """Read a table a SAMP message points at: a ``file://`` URL or one on this machine.

    Raises
    ------
    ValueError
        For a URL on another machine (nothing is fetched over the network).
    """
    from astropy.table import Table

    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = urllib.request.url2pathname(parsed.path)
        return Table.read(path, format="votable")
    if parsed.scheme in ("http", "https") and (parsed.hostname or "") in LOCAL_HOSTS:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local only)
            data = response.read()
        handle, path = tempfile.mkstemp(suffix=".vot")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            return Table.read(path, format="votable")
        finally:
            os.unlink(path)
    raise ValueError(f"not a local table: {url}")


def _write_votable(table, path):
    from astropy.io.votable import from_table

    out = table.copy(copy_data=False)
    out.meta = {}  # free-form metadata is not VOTable's
    for name in out.colnames:
        if out[name].dtype.kind == "O":
            out[name] = np.asarray(out[name], dtype=str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # column-name and unit remarks from the writer
        from_table(out).to_xml(str(path))


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
