"""Truth of a simulated frame: the kinds, the truth table, and labels for detections.

`label_detections` decides, from a frame's noise-free layers, whether what a detector found
at a position is a real source, an artifact, a noise peak or too mixed to label.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

ARTIFACT_KINDS = (
    "cosmic_ray",
    "hot_pixel",
    "satellite",
    "bad_column",
    "bleed",
    "edge",
    "spike",
    "noise",
)
"""Bogus kinds; ``artifact_kind`` maps hold index+1 into this tuple ('noise' is never
injected: it is what :func:`label_detections` calls a detection that matches nothing;
'bleed' is the charge a saturated star spills along its columns; 'edge' an unexposed
band, overscan or prescan, along a frame edge; 'spike' a bright star's diffraction
spike)."""


SOURCE_KINDS = ("star", "galaxy")
"""Astrophysical (real) kinds; ``source_kind`` maps hold index+1 into this tuple."""


_CR_SUBKINDS = ("single", "cluster", "worm", "track")
_HOT_SUBKINDS = ("single", "pair", "cluster", "column_segment")
_TRUTH_FLOAT_COLUMNS = (
    "flux",
    "peak",
    "peak_sigma",
    "length",
    "angle",
    "width",
    "x0",
    "y0",
    "x1",
    "y1",
    "sersic_n",
    "r_eff",
    "axis_ratio",
)


def _truth_rows(n, kind, **columns):
    """Truth columns for ``n`` objects of one kind; absent float columns are NaN."""
    rows = {
        "kind": np.full(n, kind, dtype=object),
        "subkind": np.broadcast_to(np.asarray(columns.pop("subkind", ""), dtype=object), (n,)),
        "saturated": np.broadcast_to(np.asarray(columns.pop("saturated", False), bool), (n,)),
    }
    for name in ("x", "y", *_TRUTH_FLOAT_COLUMNS):
        value = columns.pop(name, np.nan)
        rows[name] = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if columns:
        raise TypeError(f"unknown truth columns: {sorted(columns)}")
    return rows


def _truth_table(parts):
    """Stack per-kind truth columns into one Table in a fixed column order."""
    order = ("x", "y", "kind", "subkind", *_TRUTH_FLOAT_COLUMNS[:3], "saturated")
    order += _TRUTH_FLOAT_COLUMNS[3:]
    columns = {}
    for name in order:
        values = [part[name] for part in parts]
        columns[name] = np.concatenate(values) if values else np.zeros(0)
    for name in ("kind", "subkind"):
        columns[name] = np.asarray(columns[name], dtype=str)
    columns["saturated"] = np.asarray(columns["saturated"], dtype=bool)
    return Table(columns)


def _dominant_kind(layers, floor):
    """uint8 map of 1 + index of the layer with the largest |value|; 0 where all ≤ floor.

    Compared in single precision, as the layers are kept; a layer that is zero everywhere
    (no satellite on the frame, no edge band) is skipped.
    """
    shape = layers[0].shape
    best = np.array(np.broadcast_to(floor, shape), dtype=np.float32)
    kind = np.zeros(shape, np.uint8)
    strength = np.empty(shape, np.float32)
    stronger = np.empty(shape, bool)
    for code, layer in enumerate(layers, start=1):
        if not layer.any():
            continue
        np.abs(layer, out=strength, casting="same_kind")
        np.greater(strength, best, out=stronger)
        np.putmask(kind, stronger, code)
        np.maximum(best, strength, out=best)
    return kind


def label_detections(
    frame, x, y, real_kinds=SOURCE_KINDS, *, radius=None, floor=2.0, dominance=2.0
):
    """Label detections at (x, y) from the frame's noise-free layers.

    In a disc of ``radius`` px (default ``max(1, 0.5·FWHM)``) around each detection, take
    the maximum S of the sources layer and A of the (positive) artifact layer, and the sky
    noise σ at the detection:

    * ``max(S, A) < floor·σ`` → bogus, kind 'noise' (a noise peak);
    * ``S ≥ dominance·A`` → real, kind of the source dominating where S peaks (star or
      galaxy); if that kind is not in ``real_kinds`` it is bogus with that kind;
    * ``A ≥ dominance·S`` → bogus, kind of the artifact dominating where A peaks;
    * otherwise ambiguous (label -1, do not train on it), kind of the brighter of the two.

    So an artifact sitting on a star is bogus when it outshines the star twice, unlike a
    3-px proximity match that calls it real; a cosmic-ray hit beside a star is labelled by
    what the detection is centred on, as the disc reaches only half a FWHM. Bleed trails
    are in the artifact layer, so a detection on a bleed piece is bogus ('bleed') while
    one on the saturated star itself is real. Edge bands (kind 'edge') count by the size
    of their step from the sky, below or above it. Positions off the frame or not finite get
    label -1 and kind 'outside'. The windows of all detections are gathered at once
    (N × disc pixels) rather than through a maximum filter of the whole frame, so that
    the kind can be read where each maximum lies; the source kind comes from the frame's
    ``source_kind`` map there (or, without one, from the nearest truth source).

    Parameters
    ----------
    frame : SimulatedFrame
    x, y : array_like
        0-based pixel coordinates of the detections.
    real_kinds : sequence of str
        Source kinds counted as real (e.g. ``('star',)`` to call galaxies bogus).
    radius : float, optional
        Window radius (px).
    floor, dominance : float
        The σ floor and the dominance ratio of the rule above.

    Returns
    -------
    label : ndarray of int8
        1 real, 0 bogus, -1 ambiguous.
    kind : ndarray of str
    """
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    height, width = frame.image.shape
    radius = max(1.0, 0.5 * frame.fwhm) if radius is None else float(radius)
    reach = int(np.floor(radius))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    disc = dx**2 + dy**2 <= radius**2 + 1e-9
    dx, dy = dx[disc], dy[disc]

    valid = np.isfinite(x) & np.isfinite(y)
    valid &= (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
    ix = np.rint(np.where(valid, x, 0.0)).astype(int)
    iy = np.rint(np.where(valid, y, 0.0)).astype(int)
    rows = np.clip(iy[:, None] + dy[None, :], 0, height - 1)
    cols = np.clip(ix[:, None] + dx[None, :], 0, width - 1)
    source_window = frame.sources[rows, cols]
    # An edge band counts by how far its level is from the sky, above or below: either
    # way its step is what a detector finds there.
    kind_window = frame.artifact_kind[rows, cols]
    artifact_window = frame.artifacts[rows, cols]
    artifact_window = np.where(
        kind_window == ARTIFACT_KINDS.index("edge") + 1,
        np.abs(artifact_window),
        np.clip(artifact_window, 0.0, None),
    )
    s_arg, a_arg = source_window.argmax(axis=1), artifact_window.argmax(axis=1)
    index = np.arange(x.size)
    s_max, a_max = source_window[index, s_arg], artifact_window[index, a_arg]
    sigma = frame.noise[iy, ix]

    artifact_names = np.array(("noise", *ARTIFACT_KINDS))
    a_kind_code = frame.artifact_kind[rows[index, a_arg], cols[index, a_arg]]
    artifact_kind = artifact_names[
        np.where(a_kind_code == 0, ARTIFACT_KINDS.index("noise") + 1, a_kind_code)
    ]
    source_kind = _source_kind_at(frame, rows[index, s_arg], cols[index, s_arg], ix, iy)

    is_noise = np.maximum(s_max, a_max) < floor * sigma
    is_source = ~is_noise & (s_max >= dominance * a_max)
    is_artifact = ~is_noise & ~is_source & (a_max >= dominance * s_max)
    is_real = is_source & np.isin(source_kind, list(real_kinds))

    label = np.full(x.size, -1, dtype=np.int8)
    label[is_noise | is_artifact | (is_source & ~is_real)] = 0
    label[is_real] = 1
    kind = np.where(s_max >= a_max, source_kind, artifact_kind).astype(object)
    kind[is_noise] = "noise"
    kind[is_source] = source_kind[is_source]
    kind[is_artifact] = artifact_kind[is_artifact]
    label[~valid] = -1
    kind[~valid] = "outside"
    return label, kind.astype(str)


def _source_kind_at(frame, rows, cols, x, y):
    """Kind of the source dominating given pixels (or of the nearest truth source)."""
    names = np.array(("", *SOURCE_KINDS))
    if frame.source_kind is not None:
        kind = names[frame.source_kind[rows, cols]]
    else:
        kind = np.full(rows.size, "", dtype=names.dtype)
    missing = kind == ""
    truth = frame.truth
    is_source = np.isin(np.asarray(truth["kind"], dtype=str), SOURCE_KINDS)
    if missing.any() and is_source.any():
        from scipy.spatial import cKDTree

        tx, ty = np.asarray(truth["x"])[is_source], np.asarray(truth["y"])[is_source]
        tree = cKDTree(np.column_stack([tx, ty]))
        _, nearest = tree.query(np.column_stack([x[missing], y[missing]]))
        kind[missing] = np.asarray(truth["kind"], dtype=str)[is_source][nearest]
    kind[kind == ""] = SOURCE_KINDS[0]
    return kind
