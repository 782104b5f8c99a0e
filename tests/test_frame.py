"""Tests for rbvet.core.io.frame: HDU choice, companion maps, WCS, errors, background."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.frame import Frame, frame_from_array, read_frame

SHAPE = (40, 50)


def _image(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return rng.normal(100.0, 5.0, shape).astype(np.float32)


def _tan_header(shape=SHAPE):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.cdelt = [-0.0002, 0.0002]
    return w.to_header()


def _check_image(frame, expected):
    assert isinstance(frame, Frame)
    assert frame.image.dtype == np.float32
    assert frame.image.dtype.isnative
    assert frame.image.flags.c_contiguous
    assert frame.mask.dtype == bool and frame.mask.shape == frame.shape
    np.testing.assert_allclose(frame.image, expected, rtol=1e-6)


# ------------------------------------------------------------------------ HDU choice


def test_primary_image(tmp_path):
    data = _image()
    path = tmp_path / "prim.fits"
    fits.PrimaryHDU(data).writeto(path)
    frame = read_frame(path)
    _check_image(frame, data)
    assert frame.hdu == 0
    assert frame.path == str(path)
    assert frame.shape == SHAPE
    assert not frame.mask.any()
    assert frame.background is None and frame.noise is None
    assert frame.wcs is None


def test_first_image_extension_when_primary_is_empty(tmp_path):
    data = _image()
    path = tmp_path / "ext.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), table, fits.ImageHDU(data, name="SCI")]).writeto(path)
    frame = read_frame(path)
    _check_image(frame, data)
    assert frame.hdu == 2


def test_hdu_by_name_and_index(tmp_path):
    first, second = _image(1), _image(2)
    path = tmp_path / "two.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(first, name="SCI"), fits.ImageHDU(second, name="OTHER")]
    ).writeto(path)
    _check_image(read_frame(path), first)
    _check_image(read_frame(path, hdu="OTHER"), second)
    _check_image(read_frame(path, hdu="other"), second)
    frame = read_frame(path, hdu=2)
    _check_image(frame, second)
    assert frame.hdu == 2


def test_unknown_hdu_name_and_index(tmp_path):
    path = tmp_path / "named.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(_image(), name="SCI")]).writeto(path)
    with pytest.raises(RbvetError, match=r"named\.fits: no HDU named 'NOPE'.*SCI"):
        read_frame(path, hdu="NOPE")
    with pytest.raises(RbvetError, match=r"named\.fits: no HDU 5"):
        read_frame(path, hdu=5)
    with pytest.raises(RbvetError, match=r"named\.fits: HDU 0 holds no 2-D image"):
        read_frame(path, hdu=0)


def test_fpack_compressed_image(tmp_path):
    data = _image()
    path = tmp_path / "comp.fits.fz"
    comp = fits.CompImageHDU(data, name="SCI", compression_type="GZIP_2", quantize_level=0.0)
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    frame = read_frame(path)
    _check_image(frame, data)
    assert frame.hdu == 1
    _check_image(read_frame(path, hdu="SCI"), data)


def test_fpack_integer_rice(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE) % 3000
    path = tmp_path / "rice.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(
        path
    )
    _check_image(read_frame(path), data.astype(np.float32))


def test_int16_with_bzero_bscale(tmp_path):
    values = np.linspace(-50.0, 5000.0, np.prod(SHAPE)).reshape(SHAPE)
    hdu = fits.PrimaryHDU(values.copy())
    hdu.scale("int16", bzero=16000.0, bscale=0.5)
    path = tmp_path / "int16.fits"
    hdu.writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 16000.0
    frame = read_frame(path)
    assert frame.image.dtype == np.float32 and frame.image.dtype.isnative
    np.testing.assert_allclose(frame.image, values, atol=0.5)


def test_uint16_data(tmp_path):
    data = np.full(SHAPE, 60000, dtype=np.uint16)
    data[0, 0] = 3
    path = tmp_path / "uint16.fits"
    fits.PrimaryHDU(data).writeto(path)
    frame = read_frame(path)
    assert frame.image[1, 1] == 60000.0 and frame.image[0, 0] == 3.0


def test_integer_blank_is_masked(tmp_path):
    data = np.full(SHAPE, 7, dtype=np.int16)
    data[3, 4] = -32768
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"] = -32768
    path = tmp_path / "blank.fits"
    hdu.writeto(path)
    frame = read_frame(path)
    assert frame.mask[3, 4] and frame.mask.sum() == 1
    assert not np.isfinite(frame.image[3, 4])


def test_big_endian_arrays():
    data = _image()
    for dtype in (">f8", ">f4", ">i4", "<i2"):
        arr = np.round(data).astype(dtype)
        frame = frame_from_array(arr)
        _check_image(frame, np.round(data))


def test_degenerate_leading_axis_is_dropped(tmp_path):
    data = _image()
    path = tmp_path / "deg.fits"
    fits.PrimaryHDU(data[None]).writeto(path)
    _check_image(read_frame(path), data)


# --------------------------------------------------------------------- companion maps


def _file_with_maps(path, data, mask, err, weight):
    fits.HDUList(
        [
            fits.PrimaryHDU(data),
            fits.ImageHDU(mask, name="MASK"),
            fits.ImageHDU(err, name="ERR"),
            fits.ImageHDU(weight, name="WHT"),
        ]
    ).writeto(path)


def _maps():
    data = _image()
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[5, 6] = 4
    err = np.full(SHAPE, 2.0, dtype=np.float32)
    weight = np.full(SHAPE, 0.25, dtype=np.float32)
    weight[7, 8] = 0.0
    return data, mask, err, weight


def test_mask_error_weight_from_extensions(tmp_path):
    data, mask, err, weight = _maps()
    path = tmp_path / "maps.fits"
    _file_with_maps(path, data, mask, err, weight)

    frame = read_frame(path, mask="MASK", error="ERR")
    _check_image(frame, data)
    assert frame.mask[5, 6] and frame.mask.sum() == 1
    np.testing.assert_allclose(frame.noise, 2.0)
    assert frame.noise.dtype == np.float32

    frame = read_frame(path, mask=1, weight="WHT").ensure_background()
    assert frame.mask[5, 6] and frame.mask[7, 8] and frame.mask.sum() == 2
    assert frame.noise[0, 0] == pytest.approx(5.0, rel=0.2)  # the sky's scatter
    assert np.isinf(frame.noise[7, 8])
    assert frame.noise_source == "weight map"


def test_maps_from_separate_files_and_arrays(tmp_path):
    data, mask, err, weight = _maps()
    image_path = tmp_path / "sci.fits"
    fits.PrimaryHDU(data).writeto(image_path)
    mask_path = tmp_path / "mask.fits"
    fits.PrimaryHDU(mask).writeto(mask_path)
    err_path = tmp_path / "err.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(err, name="ERR")]).writeto(err_path)

    frame = read_frame(image_path, mask=str(mask_path), error=err_path)
    assert frame.mask[5, 6] and frame.mask.sum() == 1
    np.testing.assert_allclose(frame.noise, 2.0)

    frame = read_frame(image_path, mask=(mask_path, 0), error=(err_path, "ERR"))
    assert frame.mask.sum() == 1

    frame = read_frame(image_path, mask=mask.astype(bool), weight=weight, background=90.0)
    assert frame.mask.sum() == 2
    frame.ensure_background()
    np.testing.assert_allclose(frame.background, 90.0)  # given: kept
    assert frame.noise[0, 0] == pytest.approx(5.0, rel=0.2)


def _seamed_sky(seed=3, shape=(256, 256), sigma=5.0, seam=slice(120, 123)):
    """A sky of noise ``sigma`` with a 3-column seam 4 times noisier: the pixel-scale
    structure a drizzled mosaic's weight map holds and a mesh-scale estimate cannot."""
    rng = np.random.default_rng(seed)
    sigmas = np.full(shape, sigma, dtype=np.float32)
    sigmas[:, seam] *= 4.0
    image = (100.0 + rng.normal(0.0, 1.0, shape) * sigmas).astype(np.float32)
    return image, sigmas


def test_a_weight_map_gives_the_noise_its_shape_and_the_sky_its_level(tmp_path):
    image, sigmas = _seamed_sky()
    weight = 600.0 / sigmas**2  # an exposure-time weight: right shape, any scale
    weight[10:20, 30:40] = 0.0  # no data there
    path = tmp_path / "drz.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(image, name="SCI"), fits.ImageHDU(weight, name="WHT")]
    ).writeto(path)
    frame = read_frame(path, hdu="SCI", weight="WHT").ensure_background()
    sky = np.median(frame.noise[:, :100])
    assert sky == pytest.approx(5.0, rel=0.1)
    assert np.median(frame.noise[:, 120:123]) == pytest.approx(4 * sky, rel=0.15)
    assert frame.mask[10:20, 30:40].all() and np.isinf(frame.noise[15, 35])
    assert frame.noise_scale == pytest.approx(5.0 * np.sqrt(600.0 / 25.0), rel=0.1)
    plain = read_frame(path, hdu="SCI", file_noise_map=False).ensure_background()
    assert np.median(plain.noise[:, 120:123]) < 2 * sky  # what the map adds
    assert plain.noise_source == "sky"


def test_the_files_own_noise_map_is_found_by_name_shape_and_extver(tmp_path):
    image, sigmas = _seamed_sky()
    other = np.full_like(sigmas, 5.0)
    path = tmp_path / "flt.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(image, name="SCI", ver=1),
            fits.ImageHDU(other, name="ERR", ver=1),
            fits.ImageHDU(image, name="SCI", ver=2),
            fits.ImageHDU(np.ones((4, 4), np.float32), name="WHT", ver=2),  # wrong shape
            fits.ImageHDU(sigmas**2, name="VAR", ver=2),
        ]
    ).writeto(path)
    first = read_frame(path).ensure_background()
    assert first.hdu == 1 and first.noise_source == "HDU 2 'ERR' (error)"
    second = read_frame(path, hdu=3).ensure_background()
    assert second.noise_source == "HDU 5 'VAR' (variance)"
    assert np.median(second.noise[:, 120:123]) > 3 * np.median(second.noise[:, :100])
    assert second.facts()["noise_source"] == "HDU 5 'VAR' (variance)"
    assert read_frame(path, hdu=3, error=4.0).noise_source == "given"


def test_map_shape_mismatch(tmp_path):
    data = _image()
    path = tmp_path / "bad_shape.fits"
    fits.HDUList(
        [fits.PrimaryHDU(data), fits.ImageHDU(np.zeros((10, 12), np.uint8), name="MASK")]
    ).writeto(path)
    with pytest.raises(RbvetError, match=r"bad_shape\.fits: mask from HDU 'MASK' has shape"):
        read_frame(path, mask="MASK")
    with pytest.raises(RbvetError, match=r"bad_shape\.fits: error has shape \(3, 3\)"):
        read_frame(path, error=np.ones((3, 3)))
    other = tmp_path / "small_err.fits"
    fits.PrimaryHDU(np.ones((4, 4), np.float32)).writeto(other)
    with pytest.raises(RbvetError, match=r"bad_shape\.fits: error from file 'small_err\.fits'"):
        read_frame(path, error=other)
    with pytest.raises(RbvetError, match=r"arr\.fits: mask has shape"):
        frame_from_array(data, mask=np.zeros((2, 2)), path="arr.fits")


def test_map_that_is_neither_hdu_nor_file(tmp_path):
    path = tmp_path / "sci.fits"
    fits.PrimaryHDU(_image()).writeto(path)
    with pytest.raises(RbvetError, match=r"sci\.fits: mask: 'WEIGHTS' is neither an HDU"):
        read_frame(path, mask="WEIGHTS")
    with pytest.raises(RbvetError, match=r"sci\.fits: give an error map or a weight map"):
        read_frame(path, error=1.0, weight=1.0)


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(RbvetError, match=r"nothere\.fits: no such file"):
        read_frame(tmp_path / "nothere.fits")


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "junk.fits"
    path.write_bytes(np.random.default_rng(0).bytes(6000))
    with pytest.raises(RbvetError, match=r"junk\.fits: not a readable FITS file"):
        read_frame(path)
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS\n")
    with pytest.raises(RbvetError, match=r"notes\.fits: not a readable FITS file"):
        read_frame(text)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.fits"
    fits.PrimaryHDU(_image(shape=(200, 200))).writeto(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    declares = r"cut\.fits: corrupt or truncated FITS file: the header of HDU 0 declares"
    with pytest.raises(RbvetError, match=declares):
        read_frame(path)
    header_only = tmp_path / "cut_header.fits"
    header_only.write_bytes(blob[:1000])
    with pytest.raises(RbvetError, match=r"cut_header\.fits: not a readable FITS file"):
        read_frame(header_only)


def test_truncated_compressed_file(tmp_path):
    path = tmp_path / "cut.fits.fz"
    comp = fits.CompImageHDU(_image(shape=(200, 200)), compression_type="GZIP_2")
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: 2 * len(blob) // 3])
    with pytest.raises(RbvetError, match=r"cut\.fits\.fz: corrupt or truncated FITS file"):
        read_frame(path)


def _gzip_skips(monkeypatch):
    """Bytes of decompressed data each forward seek in a gzip stream skips (recorded)."""
    import gzip

    skips = []
    seek = gzip.GzipFile.seek

    def recording_seek(stream, offset, whence=0):
        if whence == 1 and offset > 0:
            skips.append(offset)
        return seek(stream, offset, whence)

    monkeypatch.setattr(gzip.GzipFile, "seek", recording_seek)
    return skips


def test_gzip_header_check_does_not_decompress_the_last_data(tmp_path, monkeypatch):
    from rbvet.core.io.frame import check_fits_headers

    path = tmp_path / "frame.fits.gz"
    image = _image(shape=(1000, 1000))
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image)]).writeto(path)
    skips = _gzip_skips(monkeypatch)
    check_fits_headers(path)
    assert skips == []  # the gzip trailer says the image ends the stream
    _check_image(read_frame(path), image)


def test_gzip_header_check_still_walks_every_header(tmp_path, monkeypatch):
    import gzip
    import io

    from rbvet.core.io.frame import check_fits_headers

    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(_image()), fits.ImageHDU(_image(seed=1))]).writeto(buffer)
    blob = bytearray(buffer.getvalue())
    card = blob.index(b"NAXIS   =", blob.index(b"XTENSION"))
    blob[card : card + 80] = b"NAXIS   =        4398046511104".ljust(80)
    path = tmp_path / "corrupt_extension.fits.gz"
    path.write_bytes(gzip.compress(bytes(blob)))
    skips = _gzip_skips(monkeypatch)
    with pytest.raises(RbvetError, match="corrupt FITS header in HDU 1: NAXIS"):
        check_fits_headers(path)
    assert skips == [3 * 2880]  # the primary's data only (40 x 50 float32, padded)


def test_table_only_file(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0, 2.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(RbvetError, match=r"table\.fits: no 2-D image HDU"):
        read_frame(path)
    with pytest.raises(RbvetError, match=r"table\.fits: HDU 1 is a BinTableHDU, not an image"):
        read_frame(path, hdu=1)


def test_cube(tmp_path):
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 20, 20)), name="CUBE")]).writeto(
        path
    )
    with pytest.raises(RbvetError, match=r"cube\.fits: HDU 1 \(CUBE\) is a 3-D cube"):
        read_frame(path)
    with pytest.raises(RbvetError, match=r"cube\.fits: HDU 'CUBE' is a 3-D cube"):
        read_frame(path, hdu="CUBE")


def test_all_nan_or_all_masked(tmp_path):
    path = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full(SHAPE, np.nan, dtype=np.float32)).writeto(path)
    with pytest.raises(RbvetError, match=r"nan\.fits: no usable pixels"):
        read_frame(path)
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(_image()).writeto(good)
    with pytest.raises(RbvetError, match=r"good\.fits: no usable pixels"):
        read_frame(good, mask=np.ones(SHAPE, dtype=np.uint8))
    with pytest.raises(RbvetError, match=r"good\.fits: no usable pixels"):
        read_frame(good, weight=np.zeros(SHAPE))


def test_directory_is_not_a_frame(tmp_path):
    with pytest.raises(RbvetError, match=str(tmp_path.name)):
        read_frame(tmp_path)


def test_non_finite_pixels_are_masked():
    data = _image()
    data[1, 2] = np.nan
    data[3, 4] = np.inf
    frame = frame_from_array(data)
    assert frame.mask[1, 2] and frame.mask[3, 4] and frame.mask.sum() == 2


# ------------------------------------------------------------------------------- WCS


def test_wcs_is_read(tmp_path):
    header = _tan_header()
    path = tmp_path / "wcs.fits"
    fits.PrimaryHDU(_image(), header=header).writeto(path)
    frame = read_frame(path)
    assert frame.wcs is not None and frame.wcs.has_celestial
    sky = frame.wcs.pixel_to_world(24.5, 19.5)
    assert sky.ra.deg == pytest.approx(150.0) and sky.dec.deg == pytest.approx(2.0)


def test_wcs_on_compressed_and_degenerate_cube(tmp_path):
    header = _tan_header()
    path = tmp_path / "wcs.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(_image(), header=header)]).writeto(path)
    assert read_frame(path).wcs is not None

    cube_header = _tan_header()
    cube_header["WCSAXES"] = 3
    cube_header["CTYPE3"] = "FREQ"
    cube_header["CRVAL3"] = 1.4e9
    cube_header["CDELT3"] = 1e6
    cube_header["CRPIX3"] = 1.0
    path = tmp_path / "deg_wcs.fits"
    fits.PrimaryHDU(_image()[None], header=cube_header).writeto(path)
    frame = read_frame(path)
    assert frame.shape == SHAPE
    assert frame.wcs is not None and frame.wcs.naxis == 2


def test_bad_or_missing_wcs_is_none_without_warnings(tmp_path):
    header = fits.Header()
    header["CTYPE1"] = "RA---XXX"
    header["CTYPE2"] = "DEC--XXX"
    header["CRVAL1"] = 10.0
    header["CRVAL2"] = 100.0
    header["CD1_1"] = 0.0
    header["CD2_2"] = 0.0
    header["DATE-OBS"] = "2020/01/02"  # makes astropy's WCS emit a FITSFixedWarning
    header["RADECSYS"] = "FK5"
    path = tmp_path / "badwcs.fits"
    fits.PrimaryHDU(_image(), header=header).writeto(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_frame(path)
    assert frame.wcs is None

    plain = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(_image()).writeto(plain)
    assert read_frame(plain).wcs is None


def test_fixable_header_keeps_wcs_without_warnings(tmp_path):
    header = _tan_header()
    header["DATE-OBS"] = "2020/01/02"
    header["RADECSYS"] = "FK5"
    path = tmp_path / "fixable.fits"
    fits.PrimaryHDU(_image(), header=header).writeto(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_frame(path)
    assert frame.wcs is not None


# ------------------------------------------------------------------ frame_from_array


def test_frame_from_array_scalars_and_validation():
    data = _image()
    frame = frame_from_array(data, background=100.0, noise=5.0)
    assert frame.background.shape == SHAPE and frame.background.dtype == np.float32
    np.testing.assert_allclose(frame.noise, 5.0)
    assert frame.hdu is None and frame.path is None

    noise = np.full(SHAPE, 5.0)
    noise[0, 0] = 0.0
    frame = frame_from_array(data, noise=noise)
    assert frame.mask[0, 0] and frame.mask.sum() == 1

    masked = np.ma.masked_array(data, mask=np.zeros(SHAPE, bool))
    masked.mask[2, 2] = True
    assert frame_from_array(masked).mask[2, 2]

    with pytest.raises(RbvetError, match=r"cube\.npy: image must be 2-D"):
        frame_from_array(np.zeros((2, 3, 4)), path="cube.npy")
    with pytest.raises(RbvetError, match=r"img\.fits: background has shape"):
        frame_from_array(data, background=np.zeros((3, 3)), path="img.fits")


def test_frame_from_array_uses_header_wcs():
    frame = frame_from_array(_image(), header=_tan_header())
    assert frame.wcs is not None


# --------------------------------------------------------------------- background


def test_ensure_background_excludes_masked_pixels():
    rng = np.random.default_rng(3)
    data = (200.0 + 0.1 * np.arange(128)[None, :] + rng.normal(0.0, 4.0, (128, 128))).astype(
        np.float32
    )
    mask = np.zeros(data.shape, bool)
    data[40:60, 40:60] = 1e5  # masked junk that must not leak into the background
    mask[40:60, 40:60] = True
    data[0, 0] = np.nan
    frame = frame_from_array(data, mask=mask)
    assert frame.ensure_background(bw=32, bh=32) is frame
    assert frame.background.dtype == np.float32 and frame.noise.dtype == np.float32
    expected = 200.0 + 0.1 * np.arange(128)[None, :]
    assert np.abs(frame.background - expected)[~mask].max() < 3.0
    assert np.median(frame.noise) == pytest.approx(4.0, rel=0.1)
    assert frame.background[50, 50] < 300.0


def test_ensure_background_keeps_given_maps():
    data = _image()
    frame = frame_from_array(data, background=0.0)
    frame.ensure_background()
    np.testing.assert_array_equal(frame.background, 0.0)
    assert np.median(frame.noise) == pytest.approx(5.0, rel=0.15)


# ------------------------------------------------- saturation, data section, robust maps


def _star_field(seed=5, shape=(200, 240), sky=500.0, sigma=10.0):
    """Sky with noise and a few unsaturated Gaussian stars (peaks 20-200 sigma)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(sky, sigma, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y, peak in zip(
        rng.uniform(10, shape[1] - 10, 12),
        rng.uniform(10, shape[0] - 10, 12),
        rng.uniform(200, 2000, 12),
        strict=True,
    ):
        image += peak * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2)
    return image.astype(np.float32)


def _saturate(image, x, y, level=30000.0, bleed=25):
    """A saturated star at (x, y): a flat top at ``level`` and a bleed column up and down."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    image += 5e5 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 2.0**2)
    image[y - bleed : y + bleed, x - 1 : x + 2] = level
    np.minimum(image, np.float32(level), out=image)
    return image


def test_saturation_level_from_the_header_with_its_source():
    image = _saturate(_star_field(), 100, 100)
    header = fits.Header({"SATURATE": 25000.0})
    frame = frame_from_array(image, header=header)
    assert frame.saturation == 25000.0
    assert frame.saturation_source == "header SATURATE"
    assert frame.saturated[100, 100] and not frame.saturated[10, 10]
    assert not frame.mask[100, 100]  # the CNN still sees the saturated star
    assert frame.facts()["saturation_source"] == "header SATURATE"


def test_saturation_level_from_the_histogram_plateau():
    image = _saturate(_star_field(), 100, 100, level=30000.0)
    frame = frame_from_array(image)
    assert frame.saturation_source == "histogram plateau"
    assert frame.saturation == pytest.approx(30000.0, rel=1e-3)
    assert frame.saturated[80:120, 100].all()  # the bleed column


def test_no_plateau_on_a_frame_without_saturated_pixels():
    frame = frame_from_array(_star_field())
    assert frame.saturation is None and frame.saturation_source == "none"
    assert frame.saturated is None


def test_saturation_can_be_given_or_turned_off():
    image = _saturate(_star_field(), 100, 100)
    assert frame_from_array(image, saturation=False).saturated is None
    given = frame_from_array(image, saturation=1000.0)
    assert given.saturation_source == "given" and given.saturated[100, 100]


def test_header_saturation_below_the_sky_falls_back_with_a_warning():
    image = _saturate(_star_field(), 100, 100, level=30000.0)
    with pytest.warns(RbvetWarning, match="frame.fits: SATURATE = 10.0 is not above the sky"):
        frame = frame_from_array(image, header=fits.Header({"SATURATE": 10.0}), path="frame.fits")
    assert frame.saturation_source == "histogram plateau"
    assert frame.notes and "SATURATE" in frame.notes[0]


def test_entirely_saturated_frame_is_refused_in_one_line():
    image = np.full((64, 64), 65535.0, np.float32)
    image[:, :5] = 300.0
    with pytest.raises(RbvetError, match=r"^full\.fits: 9\d% of the usable pixels are saturated"):
        frame_from_array(image, path="full.fits")


def test_background_and_noise_ignore_saturated_columns_and_a_bright_galaxy():
    """The maps match astropy's sigma-clipped sky statistics, even next to the junk."""
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(11)
    shape = (256, 256)
    image = rng.normal(1000.0, 10.0, shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot((xx - 180) / 1.0, (yy - 70) / 0.7)
    image += (3000.0 * np.exp(-((r / 4.0) ** 0.5 - 1) * 3)).astype(np.float32)  # galaxy
    image = np.minimum(image, 60000.0)
    for x in (40, 41, 90, 140):  # saturated columns
        image[20:240, x] = 60000.0
    frame = frame_from_array(image).ensure_background(bw=32, bh=32)
    _, sky, sky_sigma = sigma_clipped_stats(image, sigma=3.0, maxiters=10)
    assert sky_sigma == pytest.approx(10.0, rel=0.1)  # the reference itself is sound
    far = ~frame.background_mask() & (r > 90)
    assert np.abs(frame.background[far] - sky).max() < 0.5 * sky_sigma
    # near the columns and around the galaxy the noise stays the sky's
    near_columns = np.zeros(shape, bool)
    near_columns[20:240, 30:150] = True
    near_columns &= ~frame.background_mask()
    assert np.percentile(frame.noise[near_columns], 99) < 1.2 * sky_sigma
    assert np.percentile(frame.noise[(r > 30) & (r < 90)], 99) < 1.2 * sky_sigma


def _raw_with_overscan(tmp_path, section="[  11: 90,   1: 60]", name="raw.fits"):
    image = _image(shape=(60, 100))
    image[:, :10] = 3000.0  # prescan step
    image[:, 90:] = 2000.0  # overscan
    header = fits.Header({"TRIMSEC": section})
    path = tmp_path / name
    fits.PrimaryHDU(image, header=header).writeto(path)
    return path


def test_trimsec_masks_overscan_and_keeps_stored_pixel_coordinates(tmp_path):
    frame = read_frame(_raw_with_overscan(tmp_path))
    assert frame.shape == (60, 100)  # coordinates stay in the stored HDU's frame
    assert frame.mask[:, :10].all() and frame.mask[:, 90:].all()
    assert not frame.mask[:, 10:90].any()
    assert frame.facts()["data_section"] == "[11:90,1:60]"
    frame.ensure_background(bw=16, bh=16)
    assert np.abs(frame.background[:, 10:90] - 100.0).max() < 5.0  # no step leaked in


def test_data_section_can_be_turned_off(tmp_path):
    frame = read_frame(_raw_with_overscan(tmp_path), use_datasec=False)
    assert not frame.mask.any() and frame.data_section is None


def test_intersection_of_trimsec_and_datasec():
    header = fits.Header({"TRIMSEC": "[5:50,1:40]", "DATASEC": "[1:45,3:40]"})
    frame = frame_from_array(_image(), header=header)
    rows, cols = frame.data_section
    assert (rows.start, rows.stop, cols.start, cols.stop) == (2, 40, 4, 45)


@pytest.mark.parametrize(
    ("section", "problem"),
    [("[1:20;1:20]", "not of the form"), ("[200:300,1:60]", "outside the 100x60 image")],
)
def test_malformed_or_outside_section_is_ignored_with_a_one_line_warning(
    tmp_path, section, problem
):
    path = _raw_with_overscan(tmp_path, section=section)
    with pytest.warns(RbvetWarning, match=f"raw.fits: TRIMSEC ignored: .*{problem}") as caught:
        frame = read_frame(path)
    assert all("\n" not in str(w.message) for w in caught)
    assert not frame.mask.any() and frame.data_section is None
    assert "TRIMSEC ignored" in frame.notes[0]


def test_parse_section_is_one_based_inclusive_and_allows_reversed_ranges():
    from rbvet.core.io.frame import parse_section

    assert parse_section("[1:10,5:6]", (100, 100)) == (slice(4, 6), slice(0, 10))
    assert parse_section("[10:1,6:5]", (100, 100)) == (slice(4, 6), slice(0, 10))
    assert parse_section("[1:500,1:500]", (100, 80)) == (slice(0, 100), slice(0, 80))


def test_undeclared_overscan_at_an_edge_is_masked_and_noted_but_a_gradient_is_not():
    rng = np.random.default_rng(4)
    image = rng.normal(300.0, 7.0, (200, 240)) + np.linspace(0, 40, 240)[None, :]  # gradient
    plain = frame_from_array(image.astype(np.float32))
    assert not plain.mask.any() and not plain.notes
    image[:, -6:] = rng.normal(217.0, 3.0, (200, 6))  # bias level: an overscan strip
    frame = frame_from_array(image.astype(np.float32))
    assert frame.mask[:, -6:].all() and not frame.mask[:, :-6].any()
    assert len(frame.notes) == 1
    assert frame.notes[0].startswith("6 columns at the right edge masked: they sit -1")
    assert not frame_from_array(image.astype(np.float32), use_datasec=False).mask.any()
