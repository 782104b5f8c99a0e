"""SAMP in the window (offscreen): a hub started in the test and a recording client."""

import numpy as np
import pytest
from astropy.table import Table
from epoch_frames import write_epochs
from PyQt6.QtCore import QItemSelection, QItemSelectionModel, QSettings
from test_samp import Recorder

from rbvet.core.io.samp import read_sent_table, samp_module
from rbvet.gui.main_window import MainWindow

TIMEOUT_MS = 180_000
SAMP_MS = 20_000


@pytest.fixture
def hub(tmp_path):
    server = samp_module().SAMPHubServer(web_profile=False, lockfile=str(tmp_path / "hub.lock"))
    server.start(wait=False)
    yield server
    if server.is_running:
        server.stop()


@pytest.fixture
def recorder(hub):
    client = Recorder(hub, name="topcat")
    yield client
    client.close()


@pytest.fixture
def window(qtbot, tmp_path, hub):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    main_window = MainWindow(settings=settings, label_store_path=tmp_path / "labels.sqlite")
    main_window.samp.link.hub_params = hub.params
    qtbot.addWidget(main_window)
    main_window.show()
    frame = write_epochs(tmp_path / "frames", 1, shape=(128, 128))[0]
    with qtbot.waitSignal(main_window.classified, timeout=TIMEOUT_MS):
        main_window.open_frame(frame)
    yield main_window
    main_window.samp.shutdown()
    main_window.cancel_job(wait=True)


def status_after(qtbot, window, action):
    with qtbot.waitSignal(window.samp.statusChanged, timeout=SAMP_MS) as signal:
        action()
    return signal.args[0]


def test_no_hub_is_one_status_line(qtbot, window, hub):
    hub.stop()
    text = status_after(qtbot, window, window.samp.connect_hub)
    assert text.startswith("SAMP: no hub")
    assert window.statusBar().currentMessage() == text


def test_selection_goes_to_topcat_as_a_votable(qtbot, window, recorder):
    view = window.grid.view
    proxy = view.model()
    selection = QItemSelection(proxy.index(0, 0), proxy.index(2, 0))
    view.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    rows = view.selected_objects()
    assert len(rows) == 3
    text = status_after(qtbot, window, window.samp.send_selection)
    assert text.startswith("SAMP: sent") and "(3 rows) to topcat" in text
    mtype, params = recorder.wait()
    table = read_sent_table(params["url"])
    data = window.state.data
    np.testing.assert_allclose(table["x"], data.x[rows])
    np.testing.assert_allclose(table["rb_score"], data.scores[rows], rtol=1e-6)
    ra, dec = data.frame.wcs.all_pix2world(data.x[rows], data.y[rows], 0)
    np.testing.assert_allclose(table["ra"], ra)
    assert list(table["rb_label"]) == [-1, -1, -1]


def test_whole_catalog_and_point_at_the_object(qtbot, window, recorder):
    data = window.state.data
    status_after(qtbot, window, window.samp.send_catalog)
    assert len(read_sent_table(recorder.wait()[1]["url"])) == len(data)
    window.state.select(4)
    text = status_after(qtbot, window, window.samp.point_at_object)
    assert text.startswith("SAMP: pointed topcat")
    mtype, params = recorder.wait()
    ra, dec = data.frame.wcs.all_pix2world([data.x[4]], [data.y[4]], 0)
    assert mtype == "coord.pointAt.sky"
    assert float(params["ra"]) == pytest.approx(ra[0]) and float(params["dec"]) == pytest.approx(
        dec[0]
    )


def test_a_table_from_topcat_becomes_the_catalog(qtbot, window, recorder, tmp_path):
    status_after(qtbot, window, window.samp.connect_hub)
    data = window.state.data
    ra, dec = data.frame.wcs.all_pix2world(data.x, data.y, 0)
    path = tmp_path / "stars.vot"
    Table({"RA": ra, "DEC": dec}).write(path, format="votable")
    ids = recorder.client.get_subscribed_clients("table.load.votable")
    rbvet_id = next(i for i in ids if recorder.client.get_metadata(i).get("samp.name") == "rbvet")
    message = {
        "samp.mtype": "table.load.votable",
        "samp.params": {"url": path.as_uri(), "name": "TOPCAT stars"},
    }
    with qtbot.waitSignal(window.classified, timeout=TIMEOUT_MS):
        recorder.client.notify(rbvet_id, message)
    new = window.state.data
    assert new is not data and len(new) == len(data)
    np.testing.assert_allclose(new.x, data.x, atol=1e-6)  # RA/Dec back to pixels by WCS
    assert "TOPCAT stars" in window.statusBar().currentMessage() or window.samp.received
    assert window.catalog_path == window.samp.received[-1]


def test_the_hub_vanishing_mid_send_is_a_status_line(qtbot, window, recorder, hub):
    status_after(qtbot, window, window.samp.connect_hub)
    recorder.close()
    hub.stop()
    text = status_after(qtbot, window, window.samp.send_catalog)
    assert text.startswith("SAMP: the hub went away")
    assert window.statusBar().currentMessage() == text
    assert window.state.data is not None and not window.error_banner.message
