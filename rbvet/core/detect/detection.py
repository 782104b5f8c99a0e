"""Detect objects on a frame with sep, here or in a child process that can be stopped.

sep's extraction cost grows much faster than the frame (16x the area cost 93x the CPU on
a crowded 8k x 8k frame), so large frames are searched in overlapping tiles, each object
kept by the tile that owns its centre; the same objects are found for a fraction of the
CPU. Background and noise come from the frame (see
:meth:`rbvet.core.io.frame.Frame.ensure_background`), which leaves saturated columns and
bright objects out of both, so a galaxy does not swallow its faint neighbours.
"""

from __future__ import annotations

import json

import numpy as np
from astropy.table import Table

from rbvet.core.detect.psf import (
    DETECTION_META_KEY,
    _adaptive_moments,
    _detection_arrays,
    _psf_fwhm,
)
from rbvet.core.errors import RbvetError

__all__ = [
    "CHILD_PROCESS_MIN_PIXELS",
    "MIN_DETECTION_SIZE",
    "TILE_SIZE",
    "TILE_OVERLAP",
    "detect_objects",
    "detect_objects_in_child_process",
]

EXTENDED_NPIX = 500
"""An object this many pixels large makes its tile be searched again on a local background."""
LOCAL_MEDIAN_FWHMS = 4.5
"""Width, in FWHMs, of the median that is the local background of the second search."""
LOCAL_PEAK_SNR = 5.0
"""The second search adds only objects peaking this many sigma above the local background."""
MERGE_RADIUS = 4.0
"""Objects of the second search this close (px) to one already found are the same object."""
MIN_DETECTION_SIZE = 8
"""Frames narrower than this (px) are refused by :func:`detect_objects`: no PSF fits."""
TILE_SIZE = 1024
"""Side (px) of the tiles a large frame is searched in; a frame this size or smaller is one."""
TILE_OVERLAP = 64
"""Pixels each tile reaches beyond the part it owns, so objects up to about this radius on
a tile's border are found whole by the tile that owns their centre."""

CHILD_PROCESS_MIN_PIXELS = 2048 * 2048
"""Frames with more pixels than this are searched in a child process when it may be stopped.

sep holds Python's GIL for its whole run, so no other thread (the GUI's included) runs
while it detects objects: about 5 s on a 4k x 4k frame, minutes on a crowded 8k x 8k one.
A child process can be stopped at any moment, but takes 1-2 s to start, longer than the
detection itself on smaller frames. See :func:`detect_objects_in_child_process`.
"""


# ----------------------------------------------------------------------------- detection


def detect_objects(
    frame,
    thresh=3.0,
    minarea=3,
    deblend_cont=0.005,
    mask=None,
    edge=0,
    tile_size=TILE_SIZE,
    tile_overlap=TILE_OVERLAP,
    local_background=True,
) -> Table:
    """Detect objects on a frame with sep.

    Detection runs on the background-subtracted image with the threshold in units of the
    frame's noise map (both estimated with sep if the frame has none), ignoring masked
    pixels. Frames larger than ``tile_size`` are searched in overlapping tiles: each tile
    is extracted with ``tile_overlap`` pixels of its neighbours around it and keeps the
    objects whose centre falls in the part it owns.

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
    tile_size : int or None
        Side of the tiles; None searches the whole frame in one extraction (slower on
        large frames, kept for comparison).
    tile_overlap : int
        Margin each tile reaches into its neighbours.
    local_background : bool
        Where a tile holds an extended object (a galaxy, a nebula, a bright star's halo:
        :data:`EXTENDED_NPIX` pixels or more), search it once more after subtracting a
        local background that follows it (a median over 4.5 FWHM), and add the compact objects
        found there that the first search merged into it: faint stars on a galaxy's
        wings, its nucleus.

    Returns
    -------
    astropy.table.Table
        One row per object with ``x``, ``y`` (0-based), ``flux``, ``a``, ``b``, ``theta``,
        ``peak``, ``npix``, ``flag`` (sep's flags) and ``fwhm`` (per-object adaptive-moment
        FWHM in pixels, NaN where it cannot be measured). Empty when nothing is found.
    """
    if min(frame.shape) < MIN_DETECTION_SIZE:
        raise RbvetError(
            f"the image is only {frame.shape[1]}x{frame.shape[0]} pixels: too small to detect "
            f"objects on (at least {MIN_DETECTION_SIZE} px a side)",
            frame.path,
        )
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

    parts = []
    for rows, cols, owned in _tiles(frame.shape, tile_size, tile_overlap):
        tile_data, tile_noise, tile_bad = (
            np.ascontiguousarray(array[rows, cols]) for array in (data, noise, bad)
        )  # copied once, for both searches
        found = _extract(
            tile_data, tile_noise, tile_bad, thresh, minarea, deblend_cont, frame.path
        )
        if found is None or len(found) == 0:
            continue
        if local_background and np.any(found["npix"] >= EXTENDED_NPIX):
            found = _with_compact_objects(
                found,
                (tile_data, tile_bad, tile_noise),
                (thresh, minarea, deblend_cont),
                frame.path,
            )
        x = found["x"] + cols.start
        y = found["y"] + rows.start
        own_rows, own_cols = owned
        keep = (x >= own_cols.start - 0.5) & (x < own_cols.stop - 0.5)
        keep &= (y >= own_rows.start - 0.5) & (y < own_rows.stop - 0.5)
        parts.append({name: np.asarray(found[name])[keep] for name in _SEP_COLUMNS})
        parts[-1]["x"], parts[-1]["y"] = x[keep], y[keep]

    table = _empty_detection_table()
    if not parts or sum(len(part["x"]) for part in parts) == 0:
        return table
    objects = {name: np.concatenate([part[name] for part in parts]) for name in _SEP_COLUMNS}
    ny, nx = frame.shape
    keep = (
        (objects["x"] >= edge)
        & (objects["x"] <= nx - 1 - edge)
        & (objects["y"] >= edge)
        & (objects["y"] <= ny - 1 - edge)
    )
    if not keep.any():
        return table

    table = Table()
    for name, dtype in zip(_SEP_COLUMNS, _SEP_DTYPES, strict=True):
        table[name] = np.asarray(objects[name][keep], dtype=dtype)

    # Per-object FWHM, measured with the stamp size that suits the frame's PSF.
    xs, ys = np.asarray(table["x"]), np.asarray(table["y"])
    _, second, _ = _psf_fwhm(
        data, ~bad, noise, xs, ys, table["flag"] == 0, snr_min=10.0, measure_stars=False
    )
    if second is None:
        a_b = np.sqrt(np.clip(table["a"] * table["b"], 0.25, 16.0))
        second = _adaptive_moments(data, ~bad, noise, xs, ys, 8, a_b)
    table["fwhm"] = second["fwhm"]
    table.meta[DETECTION_META_KEY] = True
    return table


def _with_compact_objects(found, arrays, options, path):
    """``found`` plus the objects of a search on the data minus a local background that
    peak :data:`LOCAL_PEAK_SNR` sigma up and lie farther than :data:`MERGE_RADIUS` from
    every object already found.

    The local background is a median along rows, then along columns, over about 4.5 times
    the objects' typical FWHM: it follows a galaxy's profile or a nebula, while a star, a
    few pixels of each line, leaves it unchanged (a separable median costs 2k, not k**2,
    per pixel). ``arrays`` are the tile's ``(data, bad, noise)``; ``options`` sep's
    ``(thresh, minarea, deblend_cont)``.
    """
    from scipy.spatial import cKDTree

    data, bad, noise = arrays
    ny, nx = data.shape
    compact = (found["flag"] == 0) & (found["npix"] >= 5) & (found["npix"] < EXTENDED_NPIX)
    size = np.sqrt(found["a"][compact] * found["b"][compact])
    fwhm = 2.3548 * float(np.median(size)) if compact.any() else 3.0
    width = int(np.clip(round(LOCAL_MEDIAN_FWHMS * fwhm), 9, 41)) | 1
    local = _running_median(_running_median(data, width, axis=1), width, axis=0)
    residual = np.subtract(data, local, dtype=np.float32)
    residual[bad] = 0
    compact = _extract(residual, noise, bad, *options, path)
    if compact is None or len(compact) == 0:
        return found
    tree = cKDTree(np.column_stack([found["x"], found["y"]]))
    distance, _ = tree.query(np.column_stack([compact["x"], compact["y"]]))
    column = np.clip(np.rint(compact["x"]).astype(np.int64), 0, nx - 1)
    row = np.clip(np.rint(compact["y"]).astype(np.int64), 0, ny - 1)
    # Only clear peaks: a threshold-level bump on a nebula's or a galaxy's texture is
    # no more an object than one on the sky, where the first search left it below.
    clear = compact["peak"] >= LOCAL_PEAK_SNR * noise[row, column]
    new = compact[clear & (distance > MERGE_RADIUS) & (compact["npix"] < EXTENDED_NPIX)]
    if len(new) == 0:
        return found
    return np.concatenate([found[list(_SEP_COLUMNS)], new[list(_SEP_COLUMNS)]])


def _running_median(data, width, axis):
    """Median over ``width`` (odd) pixels along ``axis`` of a 2-D array, edges repeated.

    The same as ``scipy.ndimage.median_filter`` with a ``width``-long line footprint and
    ``mode="nearest"``, 4-15 times faster: scipy's fast running median serves 1-D input
    only, so the lines are laid end to end, each padded with ``width // 2`` copies of its
    end pixels, and filtered as one 1-D array; no window reaches from one line into the
    next.
    """
    from scipy.ndimage import median_filter

    lines = np.moveaxis(np.asarray(data), axis, -1)
    half = width // 2
    padded = np.pad(lines, ((0, 0), (half, half)), mode="edge")
    filtered = median_filter(padded.ravel(), size=width, mode="nearest").reshape(padded.shape)
    return np.moveaxis(filtered[:, half : half + lines.shape[1]], -1, axis)


_SEP_COLUMNS = ("x", "y", "flux", "a", "b", "theta", "peak", "npix", "flag")
_SEP_DTYPES = ("f8",) * 7 + ("i8", "i4")


def _tiles(shape, tile_size, overlap):
    """``(rows, cols, (owned_rows, owned_cols))`` slices of the tiles covering ``shape``.

    The owned parts tile the frame without overlap; each tile reaches ``overlap`` pixels
    beyond its owned part (within the frame). One tile when the frame is no larger than
    ``tile_size`` (or ``tile_size`` is None).
    """
    ny, nx = shape
    if tile_size is None or (ny <= tile_size and nx <= tile_size):
        whole = (slice(0, ny), slice(0, nx))
        return [(*whole, whole)]
    tile_size, overlap = int(tile_size), max(int(overlap), 0)
    row_edges = np.linspace(0, ny, max(1, round(ny / tile_size)) + 1).astype(int)
    col_edges = np.linspace(0, nx, max(1, round(nx / tile_size)) + 1).astype(int)
    tiles = []
    for r0, r1 in zip(row_edges[:-1], row_edges[1:], strict=True):
        for c0, c1 in zip(col_edges[:-1], col_edges[1:], strict=True):
            rows = slice(max(r0 - overlap, 0), min(r1 + overlap, ny))
            cols = slice(max(c0 - overlap, 0), min(c1 + overlap, nx))
            tiles.append((rows, cols, (slice(r0, r1), slice(c0, c1))))
    return tiles


def _extract(data, noise, bad, thresh, minarea, deblend_cont, path):
    """sep.extract with buffers raised for busy frames; failures become RbvetError."""
    import sep

    # sep's default buffers (300k pixels, 1024 sub-objects) overflow on busy frames; raise
    # them with the frame size, and once more (capped) if they still overflow.
    pixstack = int(np.clip(data.size // 10, 300_000, 2_000_000))
    limits = ((pixstack, 4096), (min(5 * pixstack, 10_000_000), 16384))
    for attempt, (stack, sub_objects) in enumerate(limits):
        sep.set_extract_pixstack(stack)
        sep.set_sub_object_limit(sub_objects)
        try:
            return sep.extract(
                data,
                float(thresh),
                err=noise,
                mask=bad,
                minarea=int(minarea),
                deblend_cont=float(deblend_cont),
            )
        except Exception as exc:  # sep raises plain Exceptions
            message = str(exc).split(":")[0]
            overflow = "pixel buffer full" in message or "deblending overflow" in message
            if overflow and attempt + 1 < len(limits):
                continue
            raise RbvetError(
                f"source extraction failed ({message}); try a higher threshold", path
            ) from None
    return None


def _empty_detection_table() -> Table:
    names = (*_SEP_COLUMNS, "fwhm")
    dtypes = (*_SEP_DTYPES, "f8")
    return Table(names=names, dtype=dtypes, meta={DETECTION_META_KEY: True})


_POLL_SECONDS = 0.1  # how often a parent waiting for its detection child yields
_FRAME_ARRAYS = ("image", "mask", "background", "noise")  # all detect_objects reads of a frame


def detect_objects_in_child_process(
    frame, thresh=3.0, minarea=3, deblend_cont=0.005, mask=None, edge=0
):
    """:func:`detect_objects` in a child process, so that it can be stopped at any moment.

    A job (see `rbvet.core.jobs`). The frame's image, mask, background and noise maps go
    to a new ("spawn") process, which detects the objects and sends the columns back; the
    result is the same table :func:`detect_objects` returns. Meanwhile this generator
    yields a `Progress` every 0.1 s; closing it terminates the child, and other threads
    keep running, as they cannot while sep runs in-process. Arrays cross the pipe as raw
    bytes, not pickles. Starting the child costs up to 1-2 s (see
    :data:`CHILD_PROCESS_MIN_PIXELS`). The child never outlives the job.

    Parameters
    ----------
    frame : Frame
        The frame; its background and noise are filled in here if missing.
    thresh, minarea, deblend_cont, mask, edge
        As in :func:`detect_objects`.

    Returns
    -------
    astropy.table.Table
        As from :func:`detect_objects`.

    Raises
    ------
    RbvetError
        As :func:`detect_objects` raises it, or when the child ends without an answer
        (killed, out of memory).
    """
    import multiprocessing

    from rbvet.core.jobs import Progress

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
    waiting = Progress(message="Detecting objects")

    def answer_when_ready(connection):
        while not connection.poll(_POLL_SECONDS):
            yield waiting
        return _receive_arrays(connection)

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_detect_in_child, args=(theirs,), name="rbvet object detection", daemon=True
    )
    child.start()
    theirs.close()  # the child now holds the only copy: its exit reads here as EOF
    try:
        yield from answer_when_ready(ours)  # the child has started and waits for the frame
        _send_arrays(ours, {"path": frame.path, "options": options}, arrays)
        answer, columns = yield from answer_when_ready(ours)
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

    from rbvet.core.io.frame import Frame

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
