"""Catalogs: read and write them, find pixel positions, detect objects, measure the FWHM.

Every catalog that leaves this module has float64 columns ``x`` and ``y`` holding 0-based
pixel coordinates in the numpy/astropy convention: the centre of the first pixel is
``(0.0, 0.0)``. Catalogs in the 1-based SExtractor convention are converted on read.
Rows whose position is non-finite or off the frame are kept; later steps give them a NaN
score with a reason.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.files import atomic_write

__all__ = [
    "BOGUS_FLAG",
    "DEFAULT_FWHM",
    "read_catalog",
    "find_positions",
    "detect_objects",
    "CHILD_PROCESS_MIN_PIXELS",
    "detect_objects_in_child_process",
    "estimate_fwhm",
    "write_catalog",
]

#: Flag bit set on objects classified as bogus (the value STDPipe uses).
BOGUS_FLAG = 0x1000

#: FWHM (pixels) returned, with a warning, when too few objects can be measured.
DEFAULT_FWHM = 3.0

CHILD_PROCESS_MIN_PIXELS = 2048 * 2048
"""Frames with more pixels than this are searched in a child process when it may be stopped.

sep holds Python's GIL for its whole run, so no other thread (the GUI's included) runs
while it detects objects: about 5 s on a 4k x 4k frame, minutes on a crowded 8k x 8k one.
A child process can be stopped at any moment, but takes 1-2 s to start, longer than the
detection itself on smaller frames. See :func:`detect_objects_in_child_process`.
"""

_GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))  # FWHM / sigma of a Gaussian
_FIRST_PASS_MAX = 3000  # objects measured to find the stars before measuring all
_MIN_FWHM = 1.0  # px; sharper objects are taken as hot pixels or cosmic rays
_SHARP_FWHM = 1.35  # px; a cluster sharper than this may be cosmic rays rather than stars
_MAX_ELLIPTICITY = 0.5  # moment ellipticity above which an object is not a star

# Pixel-position column pairs, in order of preference: (x name, y name, origin). Names are
# matched case-insensitively, except where the case tells the convention apart (photutils
# writes 0-based ``xcenter``; IRAF/DAOPHOT writes 1-based ``XCENTER``).
_PIXEL_PAIRS = (
    ("x", "y", 0),
    ("xwin_image", "ywin_image", 1),
    ("x_image", "y_image", 1),
    ("x_image_dbl", "y_image_dbl", 1),
    ("xpsf_image", "ypsf_image", 1),
    ("xmodel_image", "ymodel_image", 1),
    ("x_fit", "y_fit", 0),
    ("xcentroid", "ycentroid", 0),
    ("x_0", "y_0", 0),
    ("xpeak_image", "ypeak_image", 1),
)
_CASE_PAIRS = (("xcenter", "ycenter", 0), ("XCENTER", "YCENTER", 1))
_ONE_BASED = {x for x, _, origin in _PIXEL_PAIRS if origin == 1} | {
    y for _, y, origin in _PIXEL_PAIRS if origin == 1
}

# Sky-position column pairs (degrees unless the column carries a unit).
_SKY_PAIRS = (
    ("ra", "dec"),
    ("alphawin_j2000", "deltawin_j2000"),
    ("alpha_j2000", "delta_j2000"),
    ("raj2000", "dej2000"),
    ("ra_icrs", "de_icrs"),
    ("ra_deg", "dec_deg"),
    ("alpha_sky", "delta_sky"),
)

# Output formats by file-name ending (checked longest first).
_WRITE_FORMATS = {
    ".fits.gz": "fits",
    ".fit.gz": "fits",
    ".fts.gz": "fits",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".ecsv": "ascii.ecsv",
    ".txt": "ascii.ecsv",
    ".csv": "ascii.csv",
}
_READ_FORMATS = dict(_WRITE_FORMATS, **{".ldac": "fits", ".vot": "votable", ".xml": "votable"})
del _READ_FORMATS[".txt"]  # plain text is guessed

_SEXTRACTOR_HEAD = re.compile(rb"^#\s+\d+\s+[A-Za-z_]\w*")


# ------------------------------------------------------------------------------ reading


def read_catalog(path, frame=None, x_column=None, y_column=None) -> Table:
    """Read a catalog of positions and add 0-based pixel columns ``x`` and ``y``.

    The format comes from the file name: ``.ecsv``, ``.csv``, FITS tables (``.fits``,
    ``.fit``, ``.fts``, optionally gzipped, and SExtractor ``FITS_LDAC``), VOTable; other
    names are sniffed (SExtractor ``ASCII_HEAD`` catalogs are recognised by their
    ``#   1 NAME`` header) and otherwise left to astropy's ASCII guessing.

    Positions are found as described in :func:`find_positions`: existing ``x``/``y`` are
    taken as 0-based as they are; SExtractor ``XWIN_IMAGE``/``X_IMAGE`` (1-based) have 1
    subtracted; photutils ``xcentroid``/``x_fit`` are 0-based; otherwise RA/Dec columns are
    converted through ``frame.wcs``. The original columns are kept.

    Parameters
    ----------
    path : str or os.PathLike
        Catalog file.
    frame : Frame, optional
        The frame the catalog belongs to; its WCS converts RA/Dec to pixels.
    x_column, y_column : str, optional
        Explicit pixel columns. Known 1-based SExtractor names (``X_IMAGE`` ...) are
        converted; any other name is taken as 0-based.

    Returns
    -------
    astropy.table.Table
        All rows of the file in their order, with float64 ``x`` and ``y``. Rows with
        non-finite or off-frame positions are kept (an :class:`RbvetWarning` says so when
        no position at all falls on ``frame``).

    Raises
    ------
    RbvetError
        Missing or unreadable file, no rows, no usable position columns, RA/Dec without a
        WCS, or non-numeric positions.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise RbvetError("no such file", path)
    if os.path.isdir(path):
        raise RbvetError("is a directory, not a catalog", path)
    table = _read_table(path)
    if len(table) == 0:
        raise RbvetError("the catalog is empty (no rows)", path)
    wcs = None if frame is None else frame.wcs
    x, y = find_positions(table, wcs=wcs, x_column=x_column, y_column=y_column, source=path)
    table["x"] = x
    table["y"] = y
    if frame is not None:
        ny, nx = frame.shape
        on = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        if not on.any():
            warnings.warn(
                f"{path}: none of the {len(table)} positions falls on the frame "
                f"({nx}x{ny} px); is this the catalog of another image?",
                RbvetWarning,
                stacklevel=2,
            )
    return table


def _read_table(path) -> Table:
    fmt = _format_from_name(path) or _sniff_format(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # unit and header chatter
            if fmt == "fits":
                return Table.read(path, format="fits", hdu=_fits_table_hdu(path))
            if fmt is not None:
                try:
                    return Table.read(path, format=fmt)
                except Exception:
                    if not fmt.startswith("ascii"):
                        raise
            return Table.read(path, format="ascii")
    except RbvetError:
        raise
    except Exception as exc:  # astropy raises many types for unreadable files
        text = str(exc).strip().splitlines()
        detail = text[0][:160] if text else type(exc).__name__
        raise RbvetError(f"cannot read as a catalog ({detail})", path) from None


def _format_from_name(path) -> str | None:
    name = os.path.basename(path).lower()
    for ending in sorted(_READ_FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return _READ_FORMATS[ending]
    return None


def _sniff_format(path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise RbvetError(f"cannot open ({exc.strerror or exc})", path) from None
    if not head.strip():
        raise RbvetError("the catalog file is empty", path)
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"# %ECSV"):
        return "ascii.ecsv"
    if _SEXTRACTOR_HEAD.match(head):
        return "ascii.sextractor"
    return None


def _fits_table_hdu(path) -> int:
    """The table HDU of a FITS catalog: LDAC_OBJECTS, else the first non-empty table."""
    from astropy.io import fits

    from rbvet.core.frame import check_fits_headers

    check_fits_headers(path)  # a corrupt NAXIS or TFIELDS would hang fits.open
    try:
        with fits.open(path) as hdul:
            tables = [
                (i, h.name, h.header.get("NAXIS2", 0))
                for i, h in enumerate(hdul)
                if isinstance(h, (fits.BinTableHDU, fits.TableHDU))
            ]
    except RbvetError:
        raise
    except Exception as exc:
        raise RbvetError(f"not a readable FITS file ({exc})", path) from None
    if not tables:
        raise RbvetError("no table in this FITS file (is it an image?)", path)
    for i, name, _ in tables:
        if name == "LDAC_OBJECTS":
            return i
    for i, _, nrows in tables:
        if nrows > 0:
            return i
    return tables[0][0]


# ----------------------------------------------------------------------------- positions


def find_positions(
    table, wcs=None, x_column=None, y_column=None, source=None
) -> tuple[np.ndarray, np.ndarray]:
    """Find 0-based pixel positions for every row of a catalog.

    Column pairs are tried in this order (names matched case-insensitively):

    1. ``x``/``y`` — taken as 0-based, as they are;
    2. ``XWIN_IMAGE``, ``X_IMAGE``, ``X_IMAGE_DBL``, ``XPSF_IMAGE``, ``XMODEL_IMAGE``
       (SExtractor, 1-based: 1 is subtracted);
    3. ``x_fit``, ``xcentroid``, ``x_0`` (photutils, 0-based);
    4. ``XPEAK_IMAGE`` (1-based); ``xcenter`` (photutils, 0-based) and ``XCENTER``
       (IRAF/DAOPHOT, 1-based), told apart by case;
    5. RA/Dec: ``ra``/``dec``, ``ALPHAWIN_J2000``/``DELTAWIN_J2000``,
       ``ALPHA_J2000``/``DELTA_J2000``, ``RAJ2000``/``DEJ2000``, ``RA_ICRS``/``DE_ICRS``
       (degrees unless the column has an angle unit; sexagesimal strings are parsed as
       hours and degrees), converted with ``wcs.world_to_pixel``.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog.
    wcs : astropy.wcs.WCS, optional
        Needed only when the positions are RA/Dec.
    x_column, y_column : str, optional
        Explicit pixel columns (give both). Known 1-based SExtractor names are converted;
        any other name is taken as 0-based.
    source : str, optional
        File name used in error messages.

    Returns
    -------
    x, y : numpy.ndarray
        float64, 0-based; NaN where a row has no valid position. No row is dropped.

    Raises
    ------
    RbvetError
        No usable columns, RA/Dec without a WCS, or non-numeric positions.
    """
    if (x_column is None) != (y_column is None):
        raise RbvetError("give both x_column and y_column, or neither", source)
    if x_column is not None:
        for name in (x_column, y_column):
            if name not in table.colnames:
                raise RbvetError(
                    f"no column {name!r}; the catalog has {_brief(table.colnames)}", source
                )
        origin = 1 if x_column.lower() in _ONE_BASED else 0
        return _pixel_pair(table, x_column, y_column, origin, source)

    lower = {}
    for name in table.colnames:
        lower.setdefault(name.lower(), name)
    for xname, yname, origin in _PIXEL_PAIRS:
        if xname in lower and yname in lower:
            return _pixel_pair(table, lower[xname], lower[yname], origin, source)
    for xname, yname, origin in _CASE_PAIRS:
        if xname in table.colnames and yname in table.colnames:
            return _pixel_pair(table, xname, yname, origin, source)
    for raname, decname in _SKY_PAIRS:
        if raname in lower and decname in lower:
            ra_col, dec_col = lower[raname], lower[decname]
            if wcs is None:
                raise RbvetError(
                    f"the catalog has only sky positions ({ra_col}, {dec_col}) and the "
                    "frame has no WCS to convert them to pixels",
                    source,
                )
            return _sky_to_pixel(table, ra_col, dec_col, wcs, source)
    raise RbvetError(
        "no position columns (expected x/y, X_IMAGE/Y_IMAGE, XWIN_IMAGE/YWIN_IMAGE, "
        f"xcentroid/ycentroid or RA/Dec); the catalog has {_brief(table.colnames)}",
        source,
    )


def _brief(names, limit=12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _pixel_pair(table, xname, yname, origin, source):
    x = _numeric(table, xname, source) - origin
    y = _numeric(table, yname, source) - origin
    return x, y


def _numeric(table, name, source, unit=None) -> np.ndarray:
    """A column as float64 (masked -> NaN).

    Numbers written as strings are accepted; other strings are an error. With ``unit``,
    a column that carries a unit is converted to it (e.g. hours or radians to degrees).
    """
    col = table[name]
    if getattr(col, "ndim", 1) != 1:
        raise RbvetError(f"column {name!r} is not a 1-D column of numbers", source)
    col_unit = getattr(col, "unit", None)
    raw = np.ma.asarray(getattr(col, "value", col) if not hasattr(col, "mask") else col)
    if raw.dtype.kind == "b":
        raise RbvetError(f"column {name!r} holds booleans, not numbers", source)
    try:
        values = raw.astype(np.float64)
    except (TypeError, ValueError):
        example = next((v for v in np.asarray(raw).ravel() if not _is_number(v)), "?")
        raise RbvetError(
            f"column {name!r} is not numeric (it holds values like {str(example)!r})", source
        ) from None
    values = np.asarray(np.ma.filled(values, np.nan), dtype=np.float64)
    if unit is not None and col_unit is not None and not _unrecognized(col_unit):
        try:
            values = values * col_unit.to(unit)
        except Exception:  # a unit that cannot be converted to the expected one
            raise RbvetError(
                f"column {name!r} has unit {col_unit}, not convertible to {unit}", source
            ) from None
    return values


def _unrecognized(unit) -> bool:
    """True for unit strings astropy could not parse; such values are taken as degrees."""
    import astropy.units as u

    return isinstance(unit, u.UnrecognizedUnit)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _sky_to_pixel(table, ra_name, dec_name, wcs, source):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs import NoConvergence

    ra_col, dec_col = table[ra_name], table[dec_name]
    if np.asarray(ra_col).dtype.kind in "USO" or np.asarray(dec_col).dtype.kind in "USO":
        ra, dec = _parse_sexagesimal(ra_col, dec_col, ra_name, dec_name, source)
    else:
        ra = _numeric(table, ra_name, source, unit=u.deg)
        dec = _numeric(table, dec_name, source, unit=u.deg)
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    x = np.full(len(ra), np.nan)
    y = np.full(len(ra), np.nan)
    if not good.any():
        return x, y
    coords = SkyCoord(ra[good] * u.deg, dec[good] * u.deg, frame="icrs")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            px, py = wcs.world_to_pixel(coords)
    except NoConvergence as exc:  # distortion solution did not converge for some rows
        sol = np.array(exc.best_solution, dtype=np.float64)
        bad = np.zeros(len(sol), bool)
        for attr in ("divergent", "slow_conv"):
            idx = getattr(exc, attr, None)
            if idx is not None:
                bad[np.asarray(idx, dtype=int)] = True
        sol[bad] = np.nan
        px, py = sol[:, 0], sol[:, 1]
    except Exception as exc:
        raise RbvetError(
            f"cannot convert RA/Dec to pixels with the frame's WCS ({exc})", source
        ) from None
    x[good] = px
    y[good] = py
    return x, y


def _parse_sexagesimal(ra_col, dec_col, ra_name, dec_name, source):
    """RA/Dec given as strings: decimal degrees, or sexagesimal hours and degrees."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra_s = np.ma.filled(np.ma.asarray(ra_col).astype(str), "")
    dec_s = np.ma.filled(np.ma.asarray(dec_col).astype(str), "")
    if all(_is_number(v) for v in ra_s) and all(_is_number(v) for v in dec_s):
        return ra_s.astype(np.float64), dec_s.astype(np.float64)
    try:
        coords = SkyCoord(ra_s, dec_s, unit=(u.hourangle, u.deg))
    except Exception:
        raise RbvetError(
            f"columns {ra_name!r}/{dec_name!r} are neither numbers nor sexagesimal "
            f"coordinates (e.g. {ra_s[0]!r}, {dec_s[0]!r})",
            source,
        ) from None
    return coords.ra.deg.astype(np.float64), coords.dec.deg.astype(np.float64)


# ----------------------------------------------------------------------------- detection


def detect_objects(frame, thresh=3.0, minarea=3, deblend_cont=0.005, mask=None, edge=0) -> Table:
    """Detect objects on a frame with sep.

    Detection runs on the background-subtracted image with the threshold in units of the
    frame's noise map (both estimated with sep if the frame has none), ignoring masked
    pixels.

    Parameters
    ----------
    frame : Frame
        The frame; its background and noise are filled in if missing.
    thresh : float
        Detection threshold in units of the local noise.
    minarea : int
        Minimum number of connected pixels above the threshold.
    deblend_cont : float
        sep's minimum contrast ratio for deblending.
    mask : array_like, optional
        Extra mask (nonzero = ignore), combined with ``frame.mask``.
    edge : int
        Drop objects whose centre is closer than this many pixels to the frame border.

    Returns
    -------
    astropy.table.Table
        One row per object with ``x``, ``y`` (0-based), ``flux``, ``a``, ``b``, ``theta``,
        ``peak``, ``npix``, ``flag`` (sep's flags) and ``fwhm`` (per-object adaptive-moment
        FWHM in pixels, NaN where it cannot be measured). Empty when nothing is found.
    """
    import sep

    frame.ensure_background()
    bad = np.array(frame.mask, dtype=bool, copy=True)
    if mask is not None:
        extra = np.asarray(mask)
        if extra.shape != frame.shape:
            raise RbvetError(
                f"detection mask has shape {extra.shape} but the image has {frame.shape}",
                frame.path,
            )
        bad |= extra != 0
    data, noise = _detection_arrays(frame, bad)

    # sep's default buffers (300k pixels, 1024 sub-objects) overflow on busy frames; raise
    # them with the frame size, and once more (capped) if they still overflow.
    pixstack = int(np.clip(data.size // 10, 300_000, 2_000_000))
    limits = ((pixstack, 4096), (min(5 * pixstack, 10_000_000), 16384))
    objects = None
    for attempt, (stack, sub_objects) in enumerate(limits):
        sep.set_extract_pixstack(stack)
        sep.set_sub_object_limit(sub_objects)
        try:
            objects = sep.extract(
                data,
                float(thresh),
                err=noise,
                mask=bad,
                minarea=int(minarea),
                deblend_cont=float(deblend_cont),
            )
            break
        except Exception as exc:  # sep raises plain Exceptions
            message = str(exc).split(":")[0]
            overflow = "pixel buffer full" in message or "deblending overflow" in message
            if overflow and attempt + 1 < len(limits):
                continue
            raise RbvetError(
                f"source extraction failed ({message}); try a higher threshold", frame.path
            ) from None

    table = _empty_detection_table()
    if objects is None or len(objects) == 0:
        return table
    ny, nx = frame.shape
    keep = (
        (objects["x"] >= edge)
        & (objects["x"] <= nx - 1 - edge)
        & (objects["y"] >= edge)
        & (objects["y"] <= ny - 1 - edge)
    )
    objects = objects[keep]
    if len(objects) == 0:
        return table

    table = Table()
    table["x"] = np.asarray(objects["x"], dtype=np.float64)
    table["y"] = np.asarray(objects["y"], dtype=np.float64)
    table["flux"] = np.asarray(objects["flux"], dtype=np.float64)
    table["a"] = np.asarray(objects["a"], dtype=np.float64)
    table["b"] = np.asarray(objects["b"], dtype=np.float64)
    table["theta"] = np.asarray(objects["theta"], dtype=np.float64)
    table["peak"] = np.asarray(objects["peak"], dtype=np.float64)
    table["npix"] = np.asarray(objects["npix"], dtype=np.int64)
    table["flag"] = np.asarray(objects["flag"], dtype=np.int32)

    # Per-object FWHM, measured with the stamp size that suits the frame's PSF.
    xs, ys = np.asarray(table["x"]), np.asarray(table["y"])
    _, second = _psf_fwhm(data, ~bad, noise, xs, ys, table["flag"] == 0, snr_min=10.0)
    if second is None:
        a_b = np.sqrt(np.clip(table["a"] * table["b"], 0.25, 16.0))
        second = _adaptive_moments(data, ~bad, noise, xs, ys, 8, a_b)
    table["fwhm"] = second["fwhm"]
    return table


def _empty_detection_table() -> Table:
    names = ("x", "y", "flux", "a", "b", "theta", "peak", "npix", "flag", "fwhm")
    dtypes = ("f8",) * 7 + ("i8", "i4", "f8")
    return Table(names=names, dtype=dtypes)


def _detection_arrays(frame, bad):
    """Background-subtracted float32 image (0 at bad pixels) and a finite noise map.

    Worked in place, so a large frame costs one new image and at most one new noise map
    (the frame's own noise map is returned as it is when it is already finite).
    """
    data = np.subtract(frame.image, frame.background, dtype=np.float32)
    data[bad | ~np.isfinite(data)] = 0
    noise = np.ascontiguousarray(frame.noise, dtype=np.float32)
    finite = np.isfinite(noise) & (noise > 0)
    if not finite.all():
        fill = np.float32(noise[finite].max()) if finite.any() else np.float32(1)
        noise = np.where(finite, noise, fill)
    return np.ascontiguousarray(data), noise


_POLL_SECONDS = 0.1  # how often a parent waiting for its detection child asks should_stop
_FRAME_ARRAYS = ("image", "mask", "background", "noise")  # all detect_objects reads of a frame


def detect_objects_in_child_process(
    frame, should_stop, thresh=3.0, minarea=3, deblend_cont=0.005, mask=None, edge=0
) -> Table:
    """:func:`detect_objects` in a child process, so that it can be stopped at any moment.

    The frame's image, mask, background and noise maps go to a new ("spawn") process,
    which detects the objects and sends the columns back; the result is the same table
    :func:`detect_objects` returns. Meanwhile the calling thread asks ``should_stop``
    every 0.1 s; other threads keep running, as they cannot while sep runs in-process.
    Arrays cross the pipe as raw bytes, not pickles. Starting the child costs up to 1-2 s
    (see :data:`CHILD_PROCESS_MIN_PIXELS`). The child never outlives this call.

    Parameters
    ----------
    frame : Frame
        The frame; its background and noise are filled in here if missing.
    should_stop : callable
        Returns True once the detection should be abandoned.
    thresh, minarea, deblend_cont, mask, edge
        As in :func:`detect_objects`.

    Returns
    -------
    astropy.table.Table
        As from :func:`detect_objects`.

    Raises
    ------
    concurrent.futures.CancelledError
        Once ``should_stop()`` returns True; the child is terminated.
    RbvetError
        As :func:`detect_objects` raises it, or when the child ends without an answer
        (killed, out of memory).
    """
    import multiprocessing

    from rbvet.core.errors import raise_if_stopped

    frame.ensure_background()
    options = {
        "thresh": float(thresh),
        "minarea": int(minarea),
        "deblend_cont": float(deblend_cont),
        "edge": int(edge),
    }
    arrays = {name: getattr(frame, name) for name in _FRAME_ARRAYS}
    if mask is not None:
        arrays["detection_mask"] = np.asarray(mask) != 0  # as detect_objects reads it
    where = f"{frame.path}: " if frame.path else ""

    def answer_when_ready(connection):
        while not connection.poll(_POLL_SECONDS):
            raise_if_stopped(should_stop, f"{where}object detection cancelled")
        return _receive_arrays(connection)

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_detect_in_child, args=(theirs,), name="rbvet object detection", daemon=True
    )
    child.start()
    theirs.close()  # the child now holds the only copy: its exit reads here as EOF
    try:
        answer_when_ready(ours)  # the child has started and waits for the frame
        _send_arrays(ours, {"path": frame.path, "options": options}, arrays)
        answer, columns = answer_when_ready(ours)
    except (EOFError, OSError):  # the child died: killed, out of memory, a crash
        child.join(timeout=5)
        raise RbvetError(
            "object detection stopped without an answer (its process ended with exit "
            f"code {child.exitcode})",
            frame.path,
        ) from None
    finally:  # terminated before the pipe closes, so a child still reading sees no EOF
        if child.is_alive():
            child.terminate()
        child.join(timeout=5)
        if child.is_alive():  # terminate is a request; kill is not
            child.kill()
            child.join()
        ours.close()
    if "problem" in answer:
        raise RbvetError(answer["problem"], answer["path"])
    return Table(columns)


def _detect_in_child(connection) -> None:
    """Body of the child process of :func:`detect_objects_in_child_process`."""
    from astropy.io import fits

    from rbvet.core.frame import Frame

    try:
        _send_arrays(connection, {"ready": True})
        request, arrays = _receive_arrays(connection)
        detection_mask = arrays.pop("detection_mask", None)
        # The dataclass rather than frame_from_array, which would re-derive the mask.
        frame = Frame(wcs=None, header=fits.Header(), path=request["path"], **arrays)
        try:
            table = detect_objects(frame, mask=detection_mask, **request["options"])
        except RbvetError as exc:
            _send_arrays(connection, {"problem": exc.problem, "path": exc.path})
        else:
            columns = {name: np.asarray(table[name]) for name in table.colnames}
            _send_arrays(connection, {}, columns)
    finally:
        connection.close()


def _send_arrays(connection, header, arrays=None) -> None:
    """Send a JSON header, then each numeric array as raw bytes (no pickle)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in (arrays or {}).items()}
    layout = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    connection.send_bytes(json.dumps({"header": header, "arrays": layout}).encode())
    for a in arrays.values():
        connection.send_bytes(a.reshape(-1).view(np.uint8))


def _receive_arrays(connection) -> tuple[dict, dict]:
    """Receive what :func:`_send_arrays` sent: ``(header, {name: array})``."""
    message = json.loads(connection.recv_bytes())
    arrays = {}
    for name, dtype, shape in message["arrays"]:
        a = np.empty(shape, dtype=np.dtype(dtype))
        size = connection.recv_bytes_into(a.reshape(-1).view(np.uint8))
        if size != a.nbytes:
            raise EOFError(f"array {name!r}: {size} bytes instead of {a.nbytes}")
        arrays[name] = a
    return message["header"], arrays


# ---------------------------------------------------------------------------------- FWHM


def estimate_fwhm(
    image_or_frame, x, y, table=None, snr_min=15.0, default=DEFAULT_FWHM, max_objects=20_000
) -> float:
    """Robust FWHM (pixels) of the point sources of a frame, measured at given positions.

    Works for any catalog's positions, not only sep's. Each object is measured on the
    background-subtracted image, all objects at once, with adaptive (Gaussian-weighted,
    iteratively matched and recentred) second moments. Only well-measured objects count:
    weighted S/N >= ``snr_min``, round (moment ellipticity < 0.5), no masked or off-frame
    pixel in the core, not flagged in ``table`` (``flag``/``flags``/``FLAGS`` = 0).

    The stars are the sharpest well-populated cluster of the log-FWHM distribution: hot
    pixels and cosmic rays are sharper than 1 px (or, up to 1.35 px, fewer than the stars)
    and galaxies are wider, even when they outnumber the stars. The FWHM is then measured
    without assuming a Gaussian profile, from the mean area of the stars' pixels above half
    their peak (the peak being corrected for the pixel phase), so Moffat-like PSFs with
    wings are not overestimated as a second-moment width would be.

    The value is the FWHM of the pixelated profile, as SExtractor or imexam would report
    it: for a Gaussian PSF of width ``f`` integrated over pixels it is about
    ``sqrt(f**2 + 0.46)``, i.e. 5 % more at 2 px and 1 % more at 4 px.

    Parameters
    ----------
    image_or_frame : Frame or numpy.ndarray
        The frame, or a 2-D image (its background and noise are then estimated with sep).
    x, y : array_like
        0-based positions of candidate objects (any catalog, not only sep's).
    table : astropy.table.Table, optional
        The catalog the positions come from. Its flag column excludes flagged objects, and
        when the image gives too few usable objects its ``FWHM_IMAGE`` or ``fwhm`` column
        is used instead.
    snr_min : float
        Minimum weighted signal-to-noise of a usable object.
    default : float
        Returned, with an :class:`RbvetWarning`, when fewer than 5 objects are usable.
    max_objects : int
        At most this many candidates are measured (an even subsample of the rest).

    Returns
    -------
    float
        FWHM in pixels.
    """
    from rbvet.core.frame import Frame, frame_from_array

    frame = (
        image_or_frame if isinstance(image_or_frame, Frame) else frame_from_array(image_or_frame)
    )
    frame.ensure_background()
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise RbvetError(f"x and y have different shapes: {x.shape} and {y.shape}", frame.path)

    candidates = np.isfinite(x) & np.isfinite(y)
    if table is not None and len(table) == len(x):
        for name in ("flag", "flags", "FLAGS"):
            if name in table.colnames:
                flags = np.ma.filled(np.ma.asarray(table[name]), 0)
                candidates &= np.asarray(flags) == 0
                break
    index = np.flatnonzero(candidates)
    if len(index) > max_objects:
        index = index[np.linspace(0, len(index) - 1, max_objects).astype(int)]

    result = None
    if len(index):
        data, noise = _detection_arrays(frame, frame.mask)
        eligible = np.ones(len(index), dtype=bool)
        result, _ = _psf_fwhm(
            data, ~frame.mask, noise, x[index], y[index], eligible, snr_min=snr_min
        )
    if result is None and table is not None:
        result = _fwhm_from_table(table)
    if result is None:
        where = f"{frame.path}: " if frame.path else ""
        warnings.warn(
            f"{where}too few well-measured objects to estimate the FWHM; using {default:g} px",
            RbvetWarning,
            stacklevel=2,
        )
        return float(default)
    return float(result)


def _fwhm_from_table(table):
    lower = {name.lower(): name for name in table.colnames}
    for key in ("fwhm_image", "fwhm"):
        if key in lower:
            try:
                values = np.ma.filled(np.ma.asarray(table[lower[key]], dtype=np.float64), np.nan)
            except (TypeError, ValueError):
                return None
            for flag in ("flags", "flag"):
                if flag in lower and len(table) == len(values):
                    values = values[np.ma.filled(np.ma.asarray(table[lower[flag]]), 1) == 0]
                    break
            stars = _star_cluster(values, np.ones(len(values), dtype=bool))
            return None if stars is None else stars[0]
    return None


def _psf_fwhm(data, valid, noise, x, y, eligible, snr_min, min_count=5):
    """The frame's FWHM from objects at (x, y), and the per-object measurements.

    A first pass on the brightest eligible objects, with stamps large enough for a wide
    PSF, finds the stars (see :func:`_star_cluster`) and so the stamp size for the second
    pass, which measures every object. The FWHM is then taken from the mean half-maximum
    area of the stars of the second pass, which does not assume a Gaussian profile.

    Returns
    -------
    fwhm : float or None
        None when fewer than ``min_count`` stars are usable.
    moments : dict or None
        Output of :func:`_adaptive_moments` for all objects (None if no first-pass stars).
    """
    eligible = np.asarray(eligible, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    candidates = np.flatnonzero(eligible)
    if len(candidates) < min_count:
        return None, None
    if len(candidates) > _FIRST_PASS_MAX:
        box = _box_snr(data, noise, x[candidates], y[candidates])
        candidates = candidates[np.argsort(-box)[:_FIRST_PASS_MAX]]
    first = _adaptive_moments(data, valid, noise, x[candidates], y[candidates], 16, 1.5)
    stars = _star_cluster(first["fwhm"], _star_like(first, snr_min), min_count)
    if stars is None:
        return None, None
    sigma0 = max(stars[0] / _GAUSS_FWHM, 0.5)
    half = int(np.clip(np.ceil(4.0 * sigma0), 5, 40))
    second = _adaptive_moments(data, valid, noise, x, y, half, sigma0)
    stars = _star_cluster(second["fwhm"], eligible & _star_like(second, snr_min), min_count)
    if stars is None:
        return None, second
    area = np.sort(second["area"][stars[1]])
    trim = len(area) // 10
    area = area[trim : len(area) - trim] if len(area) > 2 * trim else area
    return float(2.0 * np.sqrt(np.nanmean(area) / np.pi)), second


def _star_like(moments, snr_min):
    """Objects measured well enough, and round enough, to be stars."""
    with np.errstate(invalid="ignore"):
        return (
            moments["usable"]
            & (moments["snr"] >= snr_min)
            & (moments["ellipticity"] < _MAX_ELLIPTICITY)
        )


def _box_snr(data, noise, x, y, half=2):
    """Cheap S/N in a (2 half + 1)^2 box around each position, moved inside the frame."""
    ny, nx = data.shape
    # Clipped before the cast: a position beyond the int64 range has no integer index.
    ix = np.clip(np.rint(x), half, nx - 1 - half).astype(np.int64)
    iy = np.clip(np.rint(y), half, ny - 1 - half).astype(np.int64)
    u = np.arange(-half, half + 1)
    rows = np.clip(iy[:, None] + u, 0, ny - 1)  # frames narrower than the box
    cols = np.clip(ix[:, None] + u, 0, nx - 1)
    flux = data[rows[:, :, None], cols[:, None, :]].sum(axis=(1, 2))
    sigma = noise[rows[:, half], cols[:, half]].astype(np.float64) * (2 * half + 1)
    return np.where(sigma > 0, flux / sigma, 0.0)


def _star_cluster(fwhm, ok, min_count=5):
    """Find the stars among measured objects: the sharpest well-populated FWHM cluster.

    Values below :data:`_MIN_FWHM` (hot pixels, sharp cosmic rays: no PSF sampled by
    pixels is that sharp) or above 100 px are ignored. In the kernel density of log FWHM,
    stars form the sharpest significant peak: galaxies are wider, and barely resolved
    ones can outnumber the stars. So the peak kept is the sharpest one at least half as
    high as the highest and holding at least 3 objects, except that a peak sharper than
    :data:`_SHARP_FWHM` (where cosmic-ray hits gather, whatever the PSF) is skipped when
    another peak holds more objects. A clipped median refines the peak.

    Returns
    -------
    tuple or None
        ``(fwhm, members)``: the cluster's median FWHM and a boolean mask over ``fwhm``;
        None when fewer than ``min_count`` values are usable.
    """
    fwhm = np.asarray(fwhm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.asarray(ok, dtype=bool) & np.isfinite(fwhm)
        ok &= (fwhm >= _MIN_FWHM) & (fwhm < 100.0)
    if ok.sum() < min_count:
        return None
    logf = np.full(len(fwhm), np.nan)
    logf[ok] = np.log10(fwhm[ok])
    step, width = 0.005, 0.03  # bin and kernel sigma in dex (0.03 dex = 7 %)
    edges = np.arange(np.log10(_MIN_FWHM) - 0.2, np.log10(100.0) + 0.2, step)
    centres = edges[:-1] + 0.5 * step
    hist, _ = np.histogram(logf[ok], bins=edges)
    kx = np.arange(-int(4 * width / step), int(4 * width / step) + 1) * step
    density = np.convolve(hist, np.exp(-0.5 * (kx / width) ** 2), mode="same")
    padded = np.concatenate([[-1.0], density, [-1.0]])
    peaks = np.flatnonzero((density >= padded[:-2]) & (density > padded[2:]))
    peaks = peaks[density[peaks] >= 0.5 * density.max()]
    sorted_logf = np.sort(logf[ok])
    counts = np.searchsorted(sorted_logf, centres[peaks] + 2 * width) - np.searchsorted(
        sorted_logf, centres[peaks] - 2 * width
    )
    peaks, counts = peaks[counts >= 3], counts[counts >= 3]
    if len(peaks) == 0:
        return None
    if len(peaks) > 1 and centres[peaks[0]] < np.log10(_SHARP_FWHM):
        if counts[0] < counts[1:].max():  # a sharp cluster outnumbered: cosmic rays
            peaks, counts = peaks[1:], counts[1:]
    centre = centres[peaks[0]]
    half_width = 0.1
    for _ in range(5):
        with np.errstate(invalid="ignore"):
            members = ok & (np.abs(logf - centre) < half_width)
        if members.sum() < 3:
            return None
        centre = np.median(logf[members])
        spread = 1.4826 * np.median(np.abs(logf[members] - centre))
        half_width = float(np.clip(3.0 * spread, 0.02, 0.1))
    with np.errstate(invalid="ignore"):
        members = ok & (np.abs(logf - centre) < half_width)
    if members.sum() < 3:
        return None
    return float(10.0**centre), members


def _adaptive_moments(data, valid, noise, x, y, half, sigma0, n_iter=12, chunk=2000):
    """Adaptive second moments of objects at (x, y), vectorised over objects.

    A circular Gaussian window is matched iteratively to each object's size and
    recentred on it; the object's Gaussian sigma then follows from the windowed moment
    ``m`` and the window ``w`` as ``s**2 = m w**2 / (w**2 - m)``.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image, 0 at bad pixels.
    valid : numpy.ndarray
        True for usable pixels.
    noise : numpy.ndarray
        Finite 1-sigma noise map.
    x, y : numpy.ndarray
        0-based positions.
    half : int
        Half-size of the square stamps measured.
    sigma0 : float or numpy.ndarray
        Starting window sigma.

    Returns
    -------
    dict of numpy.ndarray
        ``fwhm`` (Gaussian-equivalent FWHM, NaN when not measurable), ``snr`` (weighted
        S/N), ``usable`` (core free of masked or off-frame pixels, window not truncated,
        position converged), ``area`` (number of pixels above half the peak) and
        ``ellipticity`` (of the windowed moments, 0 for a round object).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    out = {
        "fwhm": np.full(n, np.nan),
        "snr": np.full(n, np.nan),
        "usable": np.zeros(n, dtype=bool),
        "area": np.full(n, np.nan),
        "ellipticity": np.full(n, np.nan),
    }
    sigma0 = np.broadcast_to(np.asarray(sigma0, dtype=np.float64), (n,))
    ny, nx = data.shape
    inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5)
    inside &= (y > -0.5) & (y < ny - 0.5)
    u = np.arange(-half, half + 1, dtype=np.float64)
    w2_min, w2_max = 1.0, (half / 2.5) ** 2

    for start in range(0, n, chunk):
        sel = np.flatnonzero(inside[start : start + chunk]) + start
        if len(sel) == 0:
            continue
        xi = np.rint(x[sel]).astype(np.int64)
        yi = np.rint(y[sel]).astype(np.int64)
        rows = yi[:, None] + u.astype(np.int64)[None, :]
        cols = xi[:, None] + u.astype(np.int64)[None, :]
        in_rows = (rows >= 0) & (rows < ny)
        in_cols = (cols >= 0) & (cols < nx)
        rows_c = np.clip(rows, 0, ny - 1)
        cols_c = np.clip(cols, 0, nx - 1)
        ok = in_rows[:, :, None] & in_cols[:, None, :]
        ok &= valid[rows_c[:, :, None], cols_c[:, None, :]]
        img = np.where(ok, data[rows_c[:, :, None], cols_c[:, None, :]], 0.0)
        sigma = noise[rows_c[:, :, None], cols_c[:, None, :]].astype(np.float64)
        var = np.where(ok, sigma * sigma, 0.0)  # per stamp: no float64 copy of the frame

        cx = x[sel] - xi
        cy = y[sel] - yi
        w2 = np.clip(sigma0[sel] ** 2, w2_min, w2_max)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for it in range(n_iter + 1):
                dx = u[None, None, :] - cx[:, None, None]
                dy = u[None, :, None] - cy[:, None, None]
                r2 = dx * dx + dy * dy
                window = np.exp(-0.5 * r2 / w2[:, None, None])
                weighted = window * img
                m0 = weighted.sum(axis=(1, 2))
                mx = (weighted * dx).sum(axis=(1, 2)) / m0
                my = (weighted * dy).sum(axis=(1, 2)) / m0
                m = 0.5 * (weighted * r2).sum(axis=(1, 2)) / m0
                if it == n_iter:
                    qxx_yy = (weighted * (dx * dx - dy * dy)).sum(axis=(1, 2))
                    qxy = 2.0 * (weighted * dx * dy).sum(axis=(1, 2))
                    ellipticity = np.where(m > 0, np.hypot(qxx_yy, qxy) / (2.0 * m * m0), np.nan)
                    break
                good = (m0 > 0) & np.isfinite(m) & np.isfinite(mx) & np.isfinite(my)
                cx = np.where(good, np.clip(cx + np.clip(mx, -1, 1), -half / 2, half / 2), cx)
                cy = np.where(good, np.clip(cy + np.clip(my, -1, 1), -half / 2, half / 2), cy)
                w2 = np.where(good & (m > 0), np.clip(2.0 * m, w2_min, w2_max), w2)

            s2 = m * w2 / (w2 - m)
            measured = (m0 > 0) & np.isfinite(m) & (m < 0.9 * w2)
            s2 = np.where(measured, np.maximum(s2, 0.0), np.nan)
            snr = m0 / np.sqrt((window * window * var).sum(axis=(1, 2)))
            full = np.exp(-0.5 * r2 / w2[:, None, None])
            lost = (full * ~ok).sum(axis=(1, 2)) / full.sum(axis=(1, 2))

            # Half-maximum area: pixels above half the peak. The peak is the pixel nearest
            # the centroid, corrected for its offset with the core's Gaussian width.
            ic = np.clip(np.rint(cy).astype(np.int64) + half, 0, 2 * half)
            jc = np.clip(np.rint(cx).astype(np.int64) + half, 0, 2 * half)
            d2 = (u[ic] - cy) ** 2 + (u[jc] - cx) ** 2
            boost = np.exp(np.minimum(0.5 * d2 / np.where(s2 > 0, s2, np.inf), np.log(2.0)))
            peak = img[np.arange(len(sel)), ic, jc] * boost
            reach2 = np.maximum(9.0 * np.where(measured, s2, 0.0), 2.25)
            above = ok & (img > 0.5 * peak[:, None, None]) & (r2 < reach2[:, None, None])
            area = np.where(measured & (peak > 0), above.sum(axis=(1, 2)), np.nan)
        out["fwhm"][sel] = _GAUSS_FWHM * np.sqrt(s2)
        out["area"][sel] = area
        out["ellipticity"][sel] = ellipticity
        out["snr"][sel] = snr
        out["usable"][sel] = (
            measured
            & (lost < 0.01)
            & (w2 < 0.99 * w2_max)
            & (np.abs(cx) < 0.4 * half)
            & (np.abs(cy) < 0.4 * half)
        )
    return out


# ------------------------------------------------------------------------------- writing


def write_catalog(table, path, overwrite=True) -> None:
    """Write a catalog atomically, in the format its file name asks for.

    ``.ecsv`` and ``.txt`` are written as ECSV (plain text that keeps column types,
    units and metadata), ``.csv`` as CSV, ``.fits``/``.fit``/``.fts`` (optionally
    ``.gz``) as a FITS binary table. The table goes to a temporary file in the same
    directory, which then replaces ``path``, so a reader never sees a half-written file.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog.
    path : str or os.PathLike
        Output file.
    overwrite : bool
        Replace an existing file (default). If False, an existing file is an error.

    Raises
    ------
    RbvetError
        Unknown extension, existing file with ``overwrite=False``, or a failed write.
    """
    path = os.fspath(path)
    name = os.path.basename(path).lower()
    ending = next(
        (e for e in sorted(_WRITE_FORMATS, key=len, reverse=True) if name.endswith(e)), None
    )
    if ending is None:
        raise RbvetError(
            "unknown catalog extension; use one of " + ", ".join(sorted(_WRITE_FORMATS)), path
        )
    if not overwrite and os.path.exists(path):
        raise RbvetError("file exists (overwrite=False)", path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RbvetError("the directory does not exist", path)

    def write(temporary):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # e.g. HIERARCH meta keys
            table.write(temporary, format=_WRITE_FORMATS[ending], overwrite=True)

    try:
        atomic_write(path, write, suffix=ending)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise RbvetError(f"cannot write the catalog ({text[0] if text else exc})", path) from None
