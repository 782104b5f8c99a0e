"""Tests for rbvet.core.io.catalog: formats, pixel conventions, detection, FWHM, writing."""

import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.wcs import WCS

from rbvet.core.detect.detection import detect_objects, detect_objects_in_child_process
from rbvet.core.detect.psf import estimate_fwhm, measure_fwhm
from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.catalog import BOGUS_FLAG, find_positions, read_catalog, write_catalog
from rbvet.core.io.frame import frame_from_array
from rbvet.core.jobs import run_job

SHAPE = (128, 128)


def _wcs(shape=SHAPE):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cd = [[-0.0002, 0.00001], [0.00001, 0.0002]]
    return w


@pytest.fixture
def field(make_star_field):
    """A small star field with a WCS: (frame, true x, true y)."""
    image, x, y, _ = make_star_field(shape=SHAPE, fwhm=3.0, n=16, seed=4)
    frame = frame_from_array(image, header=_wcs().to_header())
    assert frame.wcs is not None
    return frame, x, y


def test_bogus_flag_value():
    assert BOGUS_FLAG == 0x1000


# ------------------------------------------------------------------- formats & columns


def test_ecsv_with_x_y_taken_as_zero_based(tmp_path, field):
    _, x, y = field
    path = tmp_path / "cat.ecsv"
    Table({"x": x.astype(np.float32), "y": y, "mag": np.arange(len(x))}).write(path)
    table = read_catalog(path)
    assert table["x"].dtype == np.float64 and table["y"].dtype == np.float64
    np.testing.assert_allclose(table["x"], x, atol=1e-5)
    np.testing.assert_allclose(table["y"], y)
    assert "mag" in table.colnames


def test_sextractor_fits_x_image_is_converted_to_zero_based(tmp_path, field):
    frame, x, y = field
    path = tmp_path / "sex.fits"
    Table({"NUMBER": np.arange(1, len(x) + 1), "X_IMAGE": x + 1.0, "Y_IMAGE": y + 1.0}).write(path)
    table = read_catalog(path, frame=frame)
    np.testing.assert_allclose(table["x"], x, atol=1e-9)
    np.testing.assert_allclose(table["y"], y, atol=1e-9)
    np.testing.assert_allclose(table["X_IMAGE"], x + 1.0)  # original kept as it was
    # The converted positions land on the stars: the light centroid in a 7x7 box around
    # each position is within 0.25 px of it (and 1 px away from the unconverted value).
    ix, iy = np.rint(table["x"]).astype(int), np.rint(table["y"]).astype(int)
    offsets = np.arange(-3, 4)
    boxes = frame.image[iy[:, None, None] + offsets[:, None], ix[:, None, None] + offsets]
    boxes = boxes - np.median(frame.image)
    cx = ix + (boxes * offsets).sum(axis=(1, 2)) / boxes.sum(axis=(1, 2))
    cy = iy + (boxes * offsets[:, None]).sum(axis=(1, 2)) / boxes.sum(axis=(1, 2))
    assert np.abs(cx - table["x"]).max() < 0.25 and np.abs(cy - table["y"]).max() < 0.25
    assert np.abs(cx - table["X_IMAGE"]).min() > 0.75


def test_sextractor_ascii_head(tmp_path, field):
    _, x, y = field
    lines = [
        "#   1 NUMBER                 Running object number",
        "#   2 XWIN_IMAGE             Windowed position estimate along x         [pixel]",
        "#   3 YWIN_IMAGE             Windowed position estimate along y         [pixel]",
        "#   4 FLUX_AUTO              Flux within a Kron-like elliptical aperture [count]",
        "#   5 FLAGS                  Extraction flags",
    ]
    lines += [
        f"{i + 1:10d} {xi + 1:10.4f} {yi + 1:10.4f} {1000.0 + i:12.3f} 0"
        for i, (xi, yi) in enumerate(zip(x, y, strict=True))
    ]
    path = tmp_path / "image.cat"
    path.write_text("\n".join(lines) + "\n")
    table = read_catalog(path)
    assert "XWIN_IMAGE" in table.colnames and len(table) == len(x)
    np.testing.assert_allclose(table["x"], x, atol=1e-4)
    np.testing.assert_allclose(table["y"], y, atol=1e-4)


def test_ldac_objects_table_is_chosen(tmp_path, field):
    _, x, y = field
    path = tmp_path / "ldac.cat.fits"
    imhead = fits.BinTableHDU.from_columns(
        [fits.Column(name="Field Header Card", format="80A", array=["SIMPLE = T"])],
        name="LDAC_IMHEAD",
    )
    objects = fits.BinTableHDU(Table({"X_IMAGE": x + 1, "Y_IMAGE": y + 1}), name="LDAC_OBJECTS")
    fits.HDUList([fits.PrimaryHDU(), imhead, objects]).writeto(path)
    table = read_catalog(path)
    np.testing.assert_allclose(table["x"], x, rtol=1e-6)


def test_csv_with_photutils_centroids(tmp_path, field):
    _, x, y = field
    path = tmp_path / "phot.csv"
    Table({"id": np.arange(len(x)), "xcentroid": x, "ycentroid": y}).write(path)
    table = read_catalog(path)
    np.testing.assert_allclose(table["x"], x)
    np.testing.assert_allclose(table["y"], y)


def test_plain_text_is_guessed(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("X Y mag\n10.5 20.25 17.1\n30 40 18.0\n")
    table = read_catalog(path)
    np.testing.assert_allclose(table["x"], [10.5, 30.0])
    np.testing.assert_allclose(table["y"], [20.25, 40.0])


def test_xcenter_case_tells_the_convention():
    photutils = Table({"xcenter": [5.0], "ycenter": [6.0]})
    iraf = Table({"XCENTER": [5.0], "YCENTER": [6.0]})
    assert find_positions(photutils)[0][0] == 5.0
    x, y = find_positions(iraf)
    assert (x[0], y[0]) == (4.0, 5.0)


def test_explicit_columns(tmp_path):
    table = Table({"px": [1.0, 2.0], "py": [3.0, 4.0], "X_IMAGE": [5.0, 6.0], "Y_IMAGE": [7.0, 8]})
    x, y = find_positions(table, x_column="px", y_column="py")
    np.testing.assert_allclose(x, [1.0, 2.0])
    x, y = find_positions(table, x_column="X_IMAGE", y_column="Y_IMAGE")
    np.testing.assert_allclose(x, [4.0, 5.0])
    np.testing.assert_allclose(y, [6.0, 7.0])
    path = tmp_path / "explicit.ecsv"
    table.write(path)
    with pytest.raises(RbvetError, match=r"explicit\.ecsv: no column 'nope'.*px, py"):
        read_catalog(path, x_column="nope", y_column="py")
    with pytest.raises(RbvetError, match=r"explicit\.ecsv: give both"):
        read_catalog(path, x_column="px")
    np.testing.assert_allclose(read_catalog(path, x_column="px", y_column="py")["x"], [1, 2])


# -------------------------------------------------------------------------- sky columns


def test_ra_dec_through_wcs_round_trip(tmp_path, field):
    frame, x, y = field
    sky = frame.wcs.pixel_to_world(x, y)
    path = tmp_path / "radec.csv"
    Table({"RA": sky.ra.deg, "DEC": sky.dec.deg}).write(path)
    table = read_catalog(path, frame=frame)
    np.testing.assert_allclose(table["x"], x, atol=1e-6)
    np.testing.assert_allclose(table["y"], y, atol=1e-6)


def test_ra_dec_units_and_sexagesimal(tmp_path, field):
    frame, x, y = field
    sky = frame.wcs.pixel_to_world(x, y)
    qpath = tmp_path / "radec_units.ecsv"
    QTable({"ALPHA_J2000": sky.ra.to(u.hourangle), "DELTA_J2000": sky.dec.to(u.arcsec)}).write(
        qpath
    )
    table = read_catalog(qpath, frame=frame)
    np.testing.assert_allclose(table["x"], x, atol=1e-6)

    spath = tmp_path / "radec_strings.csv"
    ra_s = sky.ra.to_string(unit=u.hourangle, sep=":", precision=4)
    dec_s = sky.dec.to_string(unit=u.deg, sep=":", precision=3, alwayssign=True)
    Table({"ra": ra_s, "dec": dec_s}).write(spath)
    table = read_catalog(spath, frame=frame)
    np.testing.assert_allclose(table["x"], x, atol=0.01)
    np.testing.assert_allclose(table["y"], y, atol=0.01)


def test_ra_dec_without_wcs(tmp_path):
    path = tmp_path / "sky_only.csv"
    Table({"ra": [150.0], "dec": [2.0]}).write(path)
    with pytest.raises(RbvetError, match=r"sky_only\.csv: the catalog has only sky positions"):
        read_catalog(path)
    with pytest.raises(RbvetError, match=r"sky_only\.csv: .*no WCS"):
        read_catalog(path, frame=frame_from_array(np.ones((8, 8))))


# ------------------------------------------------------------------------------ errors


def test_missing_and_unreadable_catalogs(tmp_path):
    with pytest.raises(RbvetError, match=r"absent\.ecsv: no such file"):
        read_catalog(tmp_path / "absent.ecsv")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(RbvetError, match=r"junk\.fits: "):
        read_catalog(junk)
    binary = tmp_path / "junk.ecsv"
    binary.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(RbvetError, match=r"junk\.ecsv: cannot read as a catalog"):
        read_catalog(binary)
    empty = tmp_path / "nothing.cat"
    empty.write_text("")
    with pytest.raises(RbvetError, match=r"nothing\.cat: .*empty"):
        read_catalog(empty)


def test_image_given_as_catalog(tmp_path):
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    with pytest.raises(RbvetError, match=r"image\.fits: no table"):
        read_catalog(path)


def test_empty_catalog(tmp_path):
    path = tmp_path / "empty.ecsv"
    Table({"x": np.zeros(0), "y": np.zeros(0)}).write(path)
    with pytest.raises(RbvetError, match=r"empty\.ecsv: the catalog is empty"):
        read_catalog(path)
    fpath = tmp_path / "empty.fits"
    Table({"X_IMAGE": np.zeros(0), "Y_IMAGE": np.zeros(0)}).write(fpath)
    with pytest.raises(RbvetError, match=r"empty\.fits: the catalog is empty"):
        read_catalog(fpath)


def test_no_position_columns(tmp_path):
    path = tmp_path / "nopos.csv"
    Table({"mag": [1.0], "flux": [2.0], "name": ["a"]}).write(path)
    with pytest.raises(RbvetError, match=r"nopos\.csv: no position columns.*mag, flux, name"):
        read_catalog(path)


def test_string_positions(tmp_path):
    path = tmp_path / "strings.csv"
    path.write_text("x,y\n1.0,2.0\nabc,3.0\n")
    with pytest.raises(RbvetError, match=r"strings\.csv: column 'x' is not numeric.*abc"):
        read_catalog(path)
    sky = tmp_path / "sky_strings.csv"
    sky.write_text("ra,dec\nfoo,bar\n")
    frame = frame_from_array(np.ones((8, 8)), header=_wcs((8, 8)).to_header())
    with pytest.raises(RbvetError, match=r"sky_strings\.csv: columns 'ra'/'dec' are neither"):
        read_catalog(sky, frame=frame)


def test_off_frame_and_non_finite_rows_are_kept(tmp_path, field):
    frame, _, _ = field
    path = tmp_path / "odd.csv"
    path.write_text("x,y,id\n10,10,1\n-50,20,2\n5000,5000,3\n,7,4\nnan,nan,5\n")
    table = read_catalog(path, frame=frame)
    assert list(table["id"]) == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(table["x"][:3], [10.0, -50.0, 5000.0])
    assert np.isnan(table["x"][3]) and np.isnan(table["x"][4])

    sky = frame.wcs.pixel_to_world([10.0, -500.0], [10.0, 20.0])
    spath = tmp_path / "odd_sky.ecsv"
    Table({"ra": [sky.ra.deg[0], sky.ra.deg[1], np.nan], "dec": [*sky.dec.deg, 95.0]}).write(spath)
    table = read_catalog(spath, frame=frame)
    assert len(table) == 3
    np.testing.assert_allclose(table["x"][:2], [10.0, -500.0], atol=1e-6)
    assert np.isnan(table["x"][2])


def test_catalog_entirely_off_the_frame_warns(tmp_path, field):
    frame, _, _ = field
    path = tmp_path / "elsewhere.csv"
    Table({"x": [1000.0, 2000.0], "y": [5.0, 6.0]}).write(path)
    with pytest.warns(RbvetWarning, match=r"elsewhere\.csv: none of the 2 positions"):
        table = read_catalog(path, frame=frame)
    assert len(table) == 2


# --------------------------------------------------------------------------- detection


def test_detect_objects_finds_stars(field):
    frame, x, y = field
    table = detect_objects(frame)
    for name in ("x", "y", "flux", "a", "b", "theta", "peak", "npix", "flag", "fwhm"):
        assert name in table.colnames
    assert table["x"].dtype == np.float64
    assert len(table) == len(x)
    dist = np.hypot(table["x"][:, None] - x[None, :], table["y"][:, None] - y[None, :])
    assert dist.min(axis=0).max() < 0.1
    assert np.nanmedian(table["fwhm"]) == pytest.approx(3.0, rel=0.1)
    assert frame.background is not None and frame.noise is not None


def test_detect_objects_empty_frame():
    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(0.0, 1.0, (64, 64)))
    table = detect_objects(frame, thresh=50.0)
    assert len(table) == 0
    assert "x" in table.colnames and "fwhm" in table.colnames


def test_detect_objects_edge_and_masks(field):
    frame, x, y = field
    edge = 20
    table = detect_objects(frame, edge=edge)
    inner = (x >= edge) & (x <= SHAPE[1] - 1 - edge) & (y >= edge) & (y <= SHAPE[0] - 1 - edge)
    assert len(table) == inner.sum()

    hide = np.zeros(SHAPE, bool)
    iy, ix = int(round(y[0])), int(round(x[0]))
    hide[iy - 6 : iy + 7, ix - 6 : ix + 7] = True
    table = detect_objects(frame, mask=hide)
    assert len(table) == len(x) - 1
    assert np.hypot(table["x"] - x[0], table["y"] - y[0]).min() > 5

    frame.path = "field.fits"
    with pytest.raises(RbvetError, match=r"field\.fits: detection mask has shape"):
        detect_objects(frame, mask=np.zeros((3, 3)))


def test_detect_objects_retries_when_sep_overflows(field, monkeypatch):
    import sep

    frame, x, _ = field
    real_extract = sep.extract
    calls = []

    def overflow_once(*args, **kwargs):
        calls.append(sep.get_extract_pixstack())
        if len(calls) == 1:
            raise Exception("internal pixel buffer full: The limit of 300000 was reached")
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(sep, "extract", overflow_once)
    assert len(detect_objects(frame)) == len(x)
    assert calls[1] > calls[0]

    def always_overflow(*args, **kwargs):
        raise Exception("object deblending overflow: limit of sub-objects reached")

    monkeypatch.setattr(sep, "extract", always_overflow)
    frame.path = "busy.fits"
    with pytest.raises(RbvetError, match=r"busy\.fits: source extraction failed"):
        detect_objects(frame)


def test_detection_in_a_child_process_equals_detection_in_process(field):
    frame, x, y = field
    hide = np.zeros(SHAPE, bool)
    iy, ix = int(round(y[0])), int(round(x[0]))
    hide[iy - 6 : iy + 7, ix - 6 : ix + 7] = True
    options = {"thresh": 4.0, "minarea": 4, "deblend_cont": 0.01, "mask": hide, "edge": 20}
    here = detect_objects(frame, **options)
    there = run_job(detect_objects_in_child_process(frame, **options))
    assert there.colnames == here.colnames
    assert 0 < len(there) == len(here) < len(x)
    for name in here.colnames:
        assert there[name].dtype == here[name].dtype
        np.testing.assert_array_equal(there[name], here[name])  # NaN where NaN


def test_detection_errors_in_a_child_process_come_back_as_they_are(field):
    frame, _, _ = field
    frame.path = "field.fits"
    with pytest.raises(RbvetError) as here:
        detect_objects(frame, mask=np.zeros((3, 3)))
    with pytest.raises(RbvetError) as there:
        run_job(detect_objects_in_child_process(frame, mask=np.zeros((3, 3))))
    assert str(there.value) == str(here.value)
    assert there.value.path == "field.fits" and "\n" not in str(there.value)


# -------------------------------------------------------------------------------- FWHM


def _field_with_artifacts(make_star_field, render, fwhm, seed):
    shape = (160, 160)
    image, x, y, _ = make_star_field(shape=shape, fwhm=fwhm, n=25, seed=seed)
    rng = np.random.default_rng(seed + 100)
    # hot pixels and short sharp cosmic-ray streaks
    hx, hy = rng.integers(5, shape[1] - 5, 8), rng.integers(5, shape[0] - 5, 8)
    image[hy, hx] += 3000.0
    cx, cy = rng.integers(10, shape[1] - 10, 5), rng.integers(10, shape[0] - 10, 5)
    for k in range(3):
        image[cy + k % 2, cx + k] += 1500.0
    # a few extended blobs (galaxies)
    bx, by = rng.uniform(20, shape[1] - 20, 4), rng.uniform(20, shape[0] - 20, 4)
    image += render(shape, bx, by, np.full(4, 4e4), 4.0 * fwhm).astype(np.float32)
    return frame_from_array(image), x, y


@pytest.mark.parametrize("fwhm", [2.0, 3.5, 6.0])
def test_estimate_fwhm_is_robust(make_star_field, render, fwhm):
    frame, x, y = _field_with_artifacts(make_star_field, render, fwhm, seed=int(fwhm * 10))
    table = detect_objects(frame)
    assert len(table) > len(x)  # the artifacts were detected too
    assert estimate_fwhm(frame, table["x"], table["y"], table=table) == pytest.approx(
        fwhm, rel=0.1
    )
    assert estimate_fwhm(frame, x, y) == pytest.approx(fwhm, rel=0.1)


def test_estimate_fwhm_prefers_stars_over_more_numerous_galaxies(make_star_field, render):
    shape = (192, 192)
    image, x, y, _ = make_star_field(shape=shape, fwhm=3.0, n=12, seed=11)
    rng = np.random.default_rng(12)
    n_gal = 30  # barely resolved galaxies, 1.5-3x the PSF, outnumbering the stars
    gx, gy = rng.uniform(10, shape[1] - 10, n_gal), rng.uniform(10, shape[0] - 10, n_gal)
    gal_fwhm = 3.0 * 10 ** rng.uniform(np.log10(1.5), np.log10(3.0), n_gal)
    image += render(shape, gx, gy, 5.0 * 300 * gal_fwhm**2, gal_fwhm).astype(np.float32)
    frame = frame_from_array(image)
    table = detect_objects(frame)
    assert estimate_fwhm(frame, table["x"], table["y"], table=table) == pytest.approx(3.0, rel=0.1)


def test_estimate_fwhm_of_a_moffat_psf():
    shape, fwhm, beta = (160, 160), 3.5, 2.5
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    rng = np.random.default_rng(21)
    grid = np.linspace(20, 139, 5)
    x = np.repeat(grid, 5) + rng.uniform(-0.5, 0.5, 25)
    y = np.tile(grid, 5) + rng.uniform(-0.5, 0.5, 25)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r2 = (xx[None] - x[:, None, None]) ** 2 + (yy[None] - y[:, None, None]) ** 2
    peaks = rng.uniform(200.0, 2000.0, 25)
    image = (peaks[:, None, None] * (1.0 + r2 / alpha**2) ** -beta).sum(axis=0)
    image += rng.normal(100.0, 5.0, shape)
    assert estimate_fwhm(image, x, y) == pytest.approx(fwhm, rel=0.1)


def test_estimate_fwhm_from_array_and_bad_positions(make_star_field):
    image, x, y, _ = make_star_field(shape=(96, 96), fwhm=2.5, n=16, seed=9)
    xs = np.concatenate([x, [np.nan, -40.0, 1e4]])
    ys = np.concatenate([y, [5.0, 5.0, 5.0]])
    assert estimate_fwhm(image, xs, ys) == pytest.approx(2.5, rel=0.1)


def test_estimate_fwhm_falls_back_with_a_warning(make_star_field):
    image, x, y, _ = make_star_field(shape=(64, 64), fwhm=2.5, n=2, seed=5)
    with pytest.warns(RbvetWarning, match="too few well-measured stars.*using 3 px"):
        assert estimate_fwhm(image, x, y) == 3.0
    with pytest.warns(RbvetWarning, match="^frame.fits: too few well-measured stars"):
        estimate = measure_fwhm(frame_from_array(image, path="frame.fits"), x, y)
    assert (estimate.source, estimate.n_stars, estimate.fwhm) == ("default", 0, 3.0)
    assert "default" in estimate.describe()

    table = Table({"FWHM_IMAGE": [4.0, 4.1, 3.9, 4.0, 4.05, 25.0, 0.3], "FLAGS": [0] * 7})
    assert estimate_fwhm(image, np.full(7, np.nan), np.full(7, np.nan), table=table) == (
        pytest.approx(4.0, rel=0.03)
    )


# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize("name", ["out.ecsv", "out.fits", "out.fits.gz", "out.csv", "out.txt"])
def test_write_read_round_trip(tmp_path, name):
    table = Table(
        {
            "x": np.array([1.5, 2.25, np.nan]),
            "y": np.array([3.0, 4.0, 5.0]),
            "rb_score": np.array([0.9, 0.1, np.nan], dtype=np.float32),
            "flags": np.array([0, BOGUS_FLAG, BOGUS_FLAG]),
        }
    )
    path = tmp_path / name
    write_catalog(table, path)
    back = read_catalog(path)
    assert len(back) == 3
    np.testing.assert_array_equal(back["x"], table["x"])
    np.testing.assert_allclose(back["rb_score"], table["rb_score"])
    assert list(back["flags"]) == list(table["flags"])
    write_catalog(back, path)  # overwrite is the default
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_write_catalog_errors(tmp_path):
    table = Table({"x": [1.0], "y": [2.0]})
    with pytest.raises(RbvetError, match=r"out\.xlsx: unknown catalog extension"):
        write_catalog(table, tmp_path / "out.xlsx")
    path = tmp_path / "exists.ecsv"
    write_catalog(table, path)
    with pytest.raises(RbvetError, match=r"exists\.ecsv: file exists"):
        write_catalog(table, path, overwrite=False)
    with pytest.raises(RbvetError, match=r"out\.ecsv: the directory does not exist"):
        write_catalog(table, tmp_path / "no" / "out.ecsv")
    with pytest.raises(RbvetError, match=r"multi\.csv: cannot write"):
        write_catalog(Table({"x": np.zeros((2, 3))}), tmp_path / "multi.csv")
    assert sorted(os.listdir(tmp_path)) == ["exists.ecsv"]


def test_measure_fwhm_reports_the_stars_it_used(make_star_field):
    image, x, y, _ = make_star_field(shape=(160, 160), fwhm=3.0, n=30, seed=21)
    estimate = measure_fwhm(image, x, y)
    assert estimate.source == "measured"
    assert estimate.fwhm == pytest.approx(3.0, rel=0.1)
    assert 20 <= estimate.n_stars <= 30
    assert 0 <= estimate.spread < 0.05
    assert len(estimate.star_sizes) == estimate.n_stars
    assert len(estimate.sizes) >= estimate.n_stars
    assert "from" in estimate.describe() and "stars" in estimate.describe()
    facts = estimate.facts()
    assert facts["fwhm_stars"] == estimate.n_stars and facts["fwhm_source"] == "measured"
    assert facts["fwhm"] == pytest.approx(estimate.fwhm, abs=1e-3)


def _fwhm_error_on_simulated_frame(fwhm, seed, cosmic_rays_per_star):
    """Relative error of the FWHM measured on a simulated frame, as the CLI measures it,
    against the pixelated PSF's FWHM ``sqrt(f**2 + 0.46)`` that the estimator reports by
    design (+10 % over the PSF's own FWHM at 1.5 px, +1 % at 4 px)."""
    from rbvet.core.simulate import simulate_frame

    n_stars = 120
    sim = simulate_frame(
        (640, 640),
        fwhm=fwhm,
        rng=seed,
        n_stars=n_stars,
        n_galaxies=25,
        n_cosmic_rays=cosmic_rays_per_star * n_stars,
        # Hits anywhere, as on a detector: the training option that moves a share of them
        # onto stars would, at ten hits a star, leave hardly a star untouched.
        cosmic_ray_on_star_fraction=0.0,
    )
    frame = frame_from_array(sim.image).ensure_background()
    table = detect_objects(frame)
    estimate = measure_fwhm(frame, table["x"], table["y"], table=table)
    return estimate.fwhm / np.sqrt(sim.params["fwhm"] ** 2 + 0.46) - 1.0


def test_fwhm_is_not_captured_by_ten_times_more_cosmic_rays_than_stars():
    """Median |error| <= 10 %, worst <= 25 % over 1.5-8 px with up to 10x cosmic rays.

    The old estimator took the hits' 1.3-1.8 px for 6-8 px stars (errors of -70 to -80 %).
    benchmarks/bench_fwhm.py runs the same measurement on more frames.
    """
    cases = [(1.5, 10), (3.0, 10), (6.0, 10), (8.0, 10), (8.0, 3), (4.5, 1)]
    errors = np.array(
        [_fwhm_error_on_simulated_frame(f, 700 + i, n) for i, (f, n) in enumerate(cases)]
    )
    assert np.median(np.abs(errors)) <= 0.10, errors
    assert np.abs(errors).max() <= 0.25, errors
