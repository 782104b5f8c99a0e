"""Shared test fixtures: tiny synthetic star fields."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# ONNX conversions and label stores live in per-user folders; a test run keeps its own,
# so no test reads or writes the user's label store.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rbvet-test-cache-")
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="rbvet-test-data-")

import math

import numpy as np
import pytest

for _folder in (os.environ["XDG_CACHE_HOME"], os.environ["XDG_DATA_HOME"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)

_erf = np.frompyfunc(math.erf, 1, 1)


def _pixel_profile(centres, sigma, size):
    """Gaussian integrated over each pixel, shape (n, size); pixel i spans [i-0.5, i+0.5]."""
    edges = np.arange(size + 1, dtype=np.float64) - 0.5
    z = (edges[None, :] - np.asarray(centres, dtype=np.float64)[:, None]) / (
        np.sqrt(2.0) * np.asarray(sigma, dtype=np.float64).reshape(-1, 1)
    )
    cdf = 0.5 * (1.0 + _erf(z).astype(np.float64))
    return np.diff(cdf, axis=1)


def render_gaussians(shape, x, y, flux, fwhm):
    """Pixel-integrated circular Gaussians (fwhm scalar or per object) on a zero image."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    sigma = np.broadcast_to(np.asarray(fwhm, dtype=np.float64), x.shape) / 2.3548200450309493
    px = _pixel_profile(x, sigma, shape[1])
    py = _pixel_profile(y, sigma, shape[0])
    return np.einsum("n,ny,nx->yx", np.asarray(flux, dtype=np.float64), py, px)


def star_field(
    shape=(128, 128), fwhm=3.0, n=25, noise=5.0, background=100.0, snr=(40, 300), seed=0
):
    """Stars on a grid with random sub-pixel offsets, Gaussian noise and a flat background.

    Returns ``(image, x, y, flux)`` with 0-based true positions. Stars are at least
    ``max(4 fwhm, 8)`` px from the edges and from each other.
    """
    rng = np.random.default_rng(seed)
    margin = max(4.0 * fwhm, 8.0)
    side = int(np.ceil(np.sqrt(n)))
    gx = np.linspace(margin, shape[1] - 1 - margin, side)
    gy = np.linspace(margin, shape[0] - 1 - margin, side)
    xx, yy = np.meshgrid(gx, gy)
    x = xx.ravel()[:n] + rng.uniform(-0.5, 0.5, n)
    y = yy.ravel()[:n] + rng.uniform(-0.5, 0.5, n)
    # peak S/N between snr[0] and snr[1]
    sigma = fwhm / 2.3548200450309493
    peak = noise * rng.uniform(snr[0], snr[1], n)
    flux = peak * 2.0 * np.pi * sigma**2
    image = background + render_gaussians(shape, x, y, flux, fwhm)
    image += rng.normal(0.0, noise, shape)
    return image.astype(np.float32), x, y, flux


@pytest.fixture
def make_star_field():
    """Factory fixture: ``make_star_field(**kwargs)`` -> ``(image, x, y, flux)``."""
    return star_field


@pytest.fixture
def render():
    """Factory fixture: ``render(shape, x, y, flux, fwhm)`` -> image of Gaussians."""
    return render_gaussians


def vetting_data(n=60, seed=0, unscored=2):
    """A `VettingData` for widget tests, without TensorFlow: a star field, its real
    stamps and tiles, and random scores (the last ``unscored`` objects are NaN)."""
    from astropy.table import Table

    from rbvet.core.cutouts.atlas import empty_atlas, render_tiles
    from rbvet.core.cutouts.preprocess import PreprocessParams, plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.session import VettingData

    fwhm = 3.0
    image, x, y, flux = star_field(shape=(256, 256), n=n, seed=seed)
    frame = frame_from_array(image).ensure_background()
    params = PreprocessParams()
    stamps = cut_stamps(frame, x, y, plan_rescale(fwhm, params))
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    reasons = np.full(n, "", dtype="U32")
    if unscored:
        scores[-unscored:] = np.nan
        reasons[-unscored:] = "off frame"
    atlas = empty_atlas(n, params.target_size)
    good = np.isfinite(scores)
    atlas[good] = render_tiles(stamps.inputs(params, good))
    table = Table({"x": x, "y": y, "flux": flux})
    return VettingData.from_scores(
        frame,
        table,
        scores,
        reasons,
        atlas,
        fwhm=fwhm,
        params=params,
        model_name="test",
        frame_path="test.fits",
    )


@pytest.fixture
def make_vetting_data():
    """Factory fixture: ``make_vetting_data(n=60, seed=0, unscored=2)`` -> VettingData."""
    return vetting_data


@pytest.fixture(scope="module")
def crowded_frame():
    """A simulated 320 x 320 frame dense with stars and galaxies, and its detections: room
    for injections is scarce, as on a real crowded field."""
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.simulate import simulate_frame

    sim = simulate_frame(
        (320, 320), fwhm=2.5, rng=5, n_satellites=0, n_bad_columns=0, real_density=300
    )
    frame = frame_from_array(sim.image)
    return frame, detect_objects(frame)


@pytest.fixture
def data(make_vetting_data):
    """60 objects, two of them unscored: the frame most session and panel tests show."""
    return make_vetting_data(n=60, seed=0, unscored=2)


@pytest.fixture
def session(tmp_path, data):
    """A Qt-free vetting session showing ``data`` at threshold 0.5, with its own store."""
    from rbvet.core.session import VettingSession

    session = VettingSession(tmp_path / "labels.sqlite", models_dir=tmp_path / "models")
    session.show(data, threshold=0.5)
    yield session
    session.close_store()


# ------------------------------------------------- STDPipe comparisons fail, never skip

REQUIRED_FOR_COMPARISONS = ("stdpipe",)
"""Packages of ``[dev]`` that comparison tests need: a test skipped because one of them
cannot be imported fails instead, so a CI run without them cannot report "passed"."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn a skip caused by a missing `REQUIRED_FOR_COMPARISONS` package into a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        missing = [name for name in REQUIRED_FOR_COMPARISONS if f"'{name}" in reason]
        if missing:
            report.outcome = "failed"
            report.longrepr = (
                f"{missing[0]} is required for this comparison (pip install -e .[dev]), "
                f"and the test was skipped: {reason}"
            )


# ------------------------------------------------------------------- leak check (Qt tests)

LEAK_JOIN_TIMEOUT_S = 10.0
"""How long a test's leftover threads may take to finish before they count as leaked."""


def _running_qthreads():
    """Every `QThread` object alive in Python and still running (found through the GC)."""
    import gc

    from PyQt6.QtCore import QThread

    running = []
    for candidate in gc.get_objects():
        try:
            if isinstance(candidate, QThread) and candidate.isRunning():
                running.append(candidate)
        except RuntimeError:  # its C++ object is already gone
            continue
    return running


def _delete_new_widgets(app, widgets_before, settle):
    """Delete the test's remaining top-level widgets now, then collect garbage.

    Left to Python's garbage collector, a window of an earlier test would be deleted at a
    random moment, possibly while a later test processes a paint event of pyqtgraph items
    that belonged to it (a crash seen about once in a few full runs). Deleting them here,
    with no event being processed, keeps each test's Qt objects inside the test.
    """
    import gc

    for widget in set(app.topLevelWidgets()) - widgets_before:
        try:
            widget.close()
            widget.deleteLater()
        except RuntimeError:  # already deleted on the C++ side
            continue
    settle()
    gc.collect()
    settle()


@pytest.fixture(autouse=True)
def no_leaked_threads_or_widgets(request):
    """Fail a Qt test (one that uses ``qtbot``) that leaves threads or windows behind.

    Before the test it records the Python threads, the running `QThread`s and the
    top-level widgets; after it (this autouse fixture is set up before ``qtbot`` and so
    torn down after it, when pytest-qt has closed the widgets given to ``qtbot``) it
    processes pending events and deferred deletions, gives new threads
    `LEAK_JOIN_TIMEOUT_S` to finish, and fails if a new non-daemon thread is alive, a
    new `QThread` still runs or a new top-level widget is still visible. A test that
    already failed is not checked again.
    """
    if "qtbot" not in request.fixturenames:
        yield
        return
    import threading
    import time

    from PyQt6.QtCore import QCoreApplication, QEvent

    app = request.getfixturevalue("qapp")
    threads_before = set(threading.enumerate())
    qthreads_before = set(map(id, _running_qthreads()))
    widgets_before = set(app.topLevelWidgets())
    failures_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failures_before:
        return

    def settle():
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        app.processEvents()

    settle()
    deadline = time.monotonic() + LEAK_JOIN_TIMEOUT_S
    for thread in set(threading.enumerate()) - threads_before:
        if not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    for qthread in _running_qthreads():
        if id(qthread) not in qthreads_before:
            qthread.wait(max(0, int(1000 * (deadline - time.monotonic()))))
    settle()

    threads = [
        thread.name
        for thread in set(threading.enumerate()) - threads_before
        if thread.is_alive() and not thread.daemon
    ]
    qthreads = [
        f"{type(qthread).__name__}({getattr(qthread, 'name', '') or qthread.objectName()!r})"
        for qthread in _running_qthreads()
        if id(qthread) not in qthreads_before
    ]
    widgets = [
        f"{type(widget).__name__}({widget.windowTitle()!r})"
        for widget in set(app.topLevelWidgets()) - widgets_before
        if widget.isVisible()
    ]
    _delete_new_widgets(app, widgets_before, settle)
    if threads or qthreads or widgets:
        pytest.fail(
            "the test left behind "
            + "; ".join(
                f"{what}: {', '.join(sorted(items))}"
                for what, items in (
                    ("threads", threads),
                    ("running QThreads", qthreads),
                    ("visible top-level widgets", widgets),
                )
                if items
            ),
            pytrace=False,
        )
