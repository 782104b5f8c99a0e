"""Catalogs: read and write them and find pixel positions.

Every catalog that leaves this module has float64 columns ``x`` and ``y`` holding 0-based
pixel coordinates in the numpy/astropy convention: the centre of the first pixel is
``(0.0, 0.0)``. Catalogs in the 1-based SExtractor convention are converted on read.
Rows whose position is non-finite or off the frame are kept; later steps give them a NaN
score with a reason.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.files import atomic_write, check_input_file

__all__ = [
    "BOGUS_FLAG",
    "read_catalog",
    "read_sky_catalog",
    "find_positions",
    "write_catalog",
]

#: Flag bit set on objects classified as bogus (the value STDPipe uses).
BOGUS_FLAG = 0x1000

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
    ("_raj2000", "_dej2000"),
    ("radeg", "dedeg"),
    ("ra_j2000", "dec_j2000"),
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
    check_input_file(path, "catalog")
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
                except Exception as exc:
                    if not fmt.startswith("ascii"):
                        raise
                    if fmt == "ascii.ecsv" and _sniff_format(path) == "ascii.ecsv":
                        # It says it is ECSV: its own error, not a guess at plain text.
                        raise RbvetError(f"broken ECSV file ({_first_line(exc)})", path) from None
            return Table.read(path, format="ascii")
    except RbvetError:
        raise
    except Exception as exc:  # astropy raises many types for unreadable files
        raise RbvetError(f"cannot read as a catalog ({_first_line(exc)})", path) from None


def _first_line(error) -> str:
    """The first line of an exception's message (its type when it has none), shortened."""
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__


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

    from rbvet.core.io.frame import check_fits_headers

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


def read_sky_catalog(path) -> tuple[Table, np.ndarray, np.ndarray]:
    """Read a catalog of sky positions (a reference catalog: CSV, FITS, VOTable, ECSV).

    RA/Dec columns are found by their common names (those of :func:`find_positions`, plus
    ``_RAJ2000``/``_DEJ2000``, ``RAdeg``/``DEdeg``, ``ra_j2000``/``dec_j2000``).

    Returns
    -------
    table : astropy.table.Table
    ra, dec : numpy.ndarray
        float64 degrees; NaN where a row has none.

    Raises
    ------
    RbvetError
        Missing or unreadable file, no rows, or no RA/Dec columns.
    """
    path = os.fspath(path)
    check_input_file(path, "catalog")
    table = _read_table(path)
    if len(table) == 0:
        raise RbvetError("the catalog is empty (no rows)", path)
    lower = {}
    for name in table.colnames:
        lower.setdefault(name.lower(), name)
    for raname, decname in _SKY_PAIRS:
        if raname in lower and decname in lower:
            ra, dec = _sky_columns(table, lower[raname], lower[decname], path)
            return table, ra, dec
    known = ", ".join(f"{ra}/{dec}" for ra, dec in _SKY_PAIRS)
    raise RbvetError(
        f"no RA/Dec columns (expected one of {known}); the catalog has {_brief(table.colnames)}",
        path,
    )


def _sky_columns(table, ra_name, dec_name, source):
    """RA and Dec columns in degrees (numbers with or without units, or sexagesimal)."""
    import astropy.units as u

    ra_col, dec_col = table[ra_name], table[dec_name]
    if np.asarray(ra_col).dtype.kind in "USO" or np.asarray(dec_col).dtype.kind in "USO":
        return _parse_sexagesimal(ra_col, dec_col, ra_name, dec_name, source)
    return (
        _numeric(table, ra_name, source, unit=u.deg),
        _numeric(table, dec_name, source, unit=u.deg),
    )


def _sky_to_pixel(table, ra_name, dec_name, wcs, source):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs import NoConvergence

    ra, dec = _sky_columns(table, ra_name, dec_name, source)
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
    except RbvetError:
        raise
    except Exception as exc:  # astropy's writers raise many types for tables they refuse
        raise RbvetError(f"cannot write the catalog ({_first_line(exc)})", path) from None
