"""SAMP without Qt: a hub started in the test, a recording client, a hub that vanishes."""

import threading

import numpy as np
import pytest
from astropy.table import Table
from epoch_frames import FIELD_CENTRE, epoch_wcs

from rbvet.core.io.samp import SampLink, read_sent_table, samp_module, sky_columns

WAIT_S = 20


@pytest.fixture
def hub(tmp_path):
    samp = samp_module()
    server = samp.SAMPHubServer(web_profile=False, lockfile=str(tmp_path / "hub.lock"))
    server.start(wait=False)
    yield server
    if server.is_running:
        server.stop()


class Recorder:
    """Another program on the hub (TOPCAT, DS9) that records what it is sent."""

    def __init__(self, hub, name="recorder", mtypes=("table.load.votable", "coord.pointAt.sky")):
        samp = samp_module()
        self.messages = []
        self.arrived = threading.Event()
        self.client = samp.SAMPIntegratedClient(name=name, metadata={"samp.name": name})
        self.client.connect(hub_params=hub.params)
        for mtype in mtypes:
            self.client.bind_receive_notification(mtype, self._record)

    def _record(self, private_key, sender_id, mtype, params, extra):
        self.messages.append((mtype, params))
        self.arrived.set()

    def wait(self):
        assert self.arrived.wait(WAIT_S), "nothing arrived"
        self.arrived.clear()
        return self.messages[-1]

    def close(self):
        if self.client.is_connected:
            self.client.disconnect()


@pytest.fixture
def recorder(hub):
    client = Recorder(hub)
    yield client
    client.close()


@pytest.fixture
def link(hub, tmp_path):
    received = []
    samp_link = SampLink(
        on_table=lambda table, name: received.append((table, name)),
        hub_params=hub.params,
        folder=tmp_path,
    )
    samp_link.received = received
    yield samp_link
    samp_link.disconnect()


def test_without_a_hub_every_call_is_a_status_line(tmp_path):
    params = {
        "samp.secret": "x",
        "samp.hub.xmlrpc.url": "http://127.0.0.1:9/",  # the discard port: nobody there
        "samp.profile.version": "1.3",
    }
    link = SampLink(hub_params=params, folder=tmp_path)
    assert link.connect().startswith("SAMP: no hub")
    assert not link.connected
    assert link.send_table(Table({"x": [1.0]}), "t").startswith("SAMP: no hub")
    assert link.point_at(10.0, 20.0).startswith("SAMP: no hub")
    assert link.disconnect() == "SAMP: disconnected"


def test_a_table_reaches_the_program_that_loads_tables(link, recorder):
    status = link.connect()
    assert status.startswith("SAMP: connected") and "recorder" in status
    table = Table({"x": [1.0, 2.0], "y": [3.0, 4.0], "rb_reason": np.array(["", "edge"], object)})
    status = link.send_table(table, "epoch 1 selection")
    assert status == "SAMP: sent epoch 1 selection (2 rows) to recorder"
    mtype, params = recorder.wait()
    assert mtype == "table.load.votable" and params["name"] == "epoch 1 selection"
    sent = read_sent_table(params["url"])
    np.testing.assert_allclose(sent["y"], [3.0, 4.0])
    assert list(sent["rb_reason"]) == ["", "edge"]


def test_point_at_sends_the_sky_position(link, recorder):
    assert link.point_at(150.0123456, -2.5).startswith("SAMP: pointed recorder")
    mtype, params = recorder.wait()
    assert mtype == "coord.pointAt.sky"
    assert float(params["ra"]) == pytest.approx(150.0123456) and float(params["dec"]) == -2.5
    assert "no sky position" in link.point_at(np.nan, np.nan)


def test_nobody_subscribed_is_said(link, hub):
    other = Recorder(hub, name="spectra", mtypes=("spectrum.load.ssa-generic",))
    try:
        assert "no program takes tables" in link.send_table(Table({"x": [1.0]}))
    finally:
        other.close()


def test_a_table_sent_to_rbvet_reaches_on_table(link, recorder, tmp_path):
    link.connect()
    path = tmp_path / "from_topcat.vot"
    Table({"ra": [150.0], "dec": [2.0]}).write(path, format="votable")
    message = {
        "samp.mtype": "table.load.votable",
        "samp.params": {"url": path.as_uri(), "name": "TOPCAT table"},
    }
    ids = recorder.client.get_subscribed_clients("table.load.votable")
    rbvet_id = next(i for i in ids if recorder.client.get_metadata(i).get("samp.name") == "rbvet")
    response = recorder.client.call_and_wait(rbvet_id, message, timeout=str(WAIT_S))
    assert response["samp.status"] == "samp.ok"
    ((table, name),) = link.received
    assert name == "TOPCAT table" and list(table["ra"]) == [150.0]
    assert link.status == "SAMP: received TOPCAT table (1 row)"

    bad = {"samp.mtype": "table.load.votable", "samp.params": {"url": "http://example.org/t.vot"}}
    response = recorder.client.call_and_wait(rbvet_id, bad, timeout=str(WAIT_S))
    assert response["samp.status"] == "samp.error"
    assert "not a local table" in link.status and len(link.received) == 1


def test_the_hub_vanishing_mid_send_is_a_status_line(link, recorder, hub):
    link.connect()
    recorder.close()
    hub.stop()
    status = link.send_table(Table({"x": [1.0]}), "after")
    assert status.startswith("SAMP: the hub went away")
    assert not link.connected
    assert link.point_at(1.0, 2.0).startswith("SAMP: no hub")


def test_sky_columns_from_the_wcs():
    wcs = epoch_wcs((64, 64))
    table = sky_columns(Table({"x": [31.5], "y": [31.5]}), wcs)
    assert table["ra"][0] == pytest.approx(FIELD_CENTRE[0])
    assert table["dec"][0] == pytest.approx(FIELD_CENTRE[1])
    assert table["ra"].unit == "deg"
    assert "ra" not in sky_columns(Table({"x": [1.0], "y": [1.0]}), None).colnames


def test_the_temporary_folder_is_made_on_the_first_send_and_removed_at_close(
    hub, recorder, tmp_path, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    link = SampLink(hub_params=hub.params)
    assert not list(tmp_path.glob("rbvet-samp-*"))  # nothing made by opening a window
    link.connect()
    assert link.send_table(Table({"x": [1.0]}), "t").startswith("SAMP: sent")
    recorder.wait()
    (made,) = tmp_path.glob("rbvet-samp-*")
    assert list(made.glob("*.vot"))
    link.close()
    assert not made.exists() and not link.connected


def test_close_keeps_the_files_it_did_not_send(hub, recorder, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    link = SampLink(hub_params=hub.params)
    link.connect()
    link.send_table(Table({"x": [1.0]}), "t")
    recorder.wait()
    kept = link.folder / "received_001.ecsv"  # as the window keeps a received catalog
    kept.write_text("x\n1\n")
    link.close()
    assert kept.exists() and not list(kept.parent.glob("*.vot"))
