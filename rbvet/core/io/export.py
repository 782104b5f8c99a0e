"""Export the result of vetting: the catalog and a DS9 region file.

(The third export, the labeled training set, is `rbvet.core.learn.dataset.save_training_set`.)
Both are written atomically (a temporary file renamed onto the final name), so a reader
never sees half a file and an interrupted export leaves the old file in place.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from rbvet.core.classify import FLAGS_COLUMN, REASON_COLUMN, add_scores, check_threshold
from rbvet.core.errors import RbvetError
from rbvet.core.io.catalog import BOGUS_FLAG, write_catalog
from rbvet.core.io.files import atomic_write
from rbvet.core.learn.dataset import SUFFIX as TRAINING_SET_SUFFIX

LABEL_COLUMN = "rb_label"
REGION_COLORS = {"real": "green", "bogus": "red", "above": "cyan", "below": "orange"}
"""DS9 colours: labeled real / bogus; unlabeled scoring at or above / below the threshold."""
CATALOG_SUFFIXES = (".ecsv", ".fits", ".fit", ".fts", ".csv", ".fits.gz")
REGION_SUFFIX = ".reg"


def export_kind(path):
    """What an output file name asks for: 'catalog', 'training_set' or 'regions'.

    Raises
    ------
    RbvetError
        For any other extension.
    """
    name = Path(path).name.lower()
    if name.endswith(TRAINING_SET_SUFFIX):
        return "training_set"
    if name.endswith(REGION_SUFFIX):
        return "regions"
    if name.endswith(CATALOG_SUFFIXES):
        return "catalog"
    raise RbvetError(
        "unknown export format: use .ecsv/.fits/.csv (catalog), .npz (training set) "
        "or .reg (DS9 regions)",
        path,
    )


def _labels_array(labels, n):
    if labels is None:
        return np.full(n, -1, np.int8)
    labels = np.asarray(labels).astype(np.int8).ravel()
    if len(labels) != n:
        raise RbvetError(f"{len(labels)} labels for {n} objects")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise RbvetError("labels must be 1 (real), 0 (bogus) or -1 (unlabeled)")
    return labels


def export_catalog(table, scores, labels, threshold, path, reasons=None):
    """Write the vetted catalog: every row, with ``rb_score``, ``rb_label`` and flags.

    Parameters
    ----------
    table, scores, labels, threshold, reasons
        As for `vetted_catalog`.
    path : str or Path
        ``.ecsv``, ``.fits`` (or ``.csv``); the format follows the extension.

    Returns
    -------
    astropy.table.Table
        The table written.
    """
    out = vetted_catalog(table, scores, labels, threshold, reasons)
    write_catalog(out, path)
    return out


def vetted_catalog(table, scores, labels, threshold, reasons=None):
    """The vetted catalog: a copy of ``table`` with ``rb_score``, ``rb_label`` and flags.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog (not modified; a copy is returned).
    scores : array_like of float
        Model scores, NaN for unscorable objects.
    labels : array_like of int or None
        1 real, 0 bogus, -1 unlabeled (None: none labeled).
    threshold : float
        Score threshold of the bogus flag.
    reasons : array_like of str, optional
        Why objects could not be scored; the table's ``rb_reason`` column when present,
        else "not scored" for NaN scores.

    Returns
    -------
    astropy.table.Table

    Notes
    -----
    The bogus bit `BOGUS_FLAG` of ``flags`` is set by score (`add_scores`), then a human
    label overrides it: set for objects labeled bogus, cleared for objects labeled real.
    ``rb_label`` keeps the label itself, so both decisions can be told apart.
    """
    threshold = check_threshold(threshold)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != len(table):
        raise RbvetError(f"{len(scores)} scores for a catalog of {len(table)} rows")
    labels = _labels_array(labels, len(table))
    if reasons is None:
        if REASON_COLUMN in table.colnames:
            reasons = np.asarray(table[REASON_COLUMN], dtype=str)
        else:
            reasons = np.where(np.isfinite(scores), "", "not scored")
    out = table.copy(copy_data=True)
    add_scores(out, scores, reasons, threshold=threshold)
    out[LABEL_COLUMN] = labels.astype(np.int16)  # FITS has no signed bytes (int8 -> bool)
    flags = np.asarray(out[FLAGS_COLUMN])
    flags = np.where(labels == 1, flags & ~BOGUS_FLAG, flags)
    flags = np.where(labels == 0, flags | BOGUS_FLAG, flags)
    out[FLAGS_COLUMN] = flags.astype(out[FLAGS_COLUMN].dtype)
    out.meta["rb_threshold"] = float(threshold)
    out.meta["rb_label_meaning"] = "1 real, 0 bogus, -1 unlabeled"
    out.meta["rb_bogus_flag"] = int(BOGUS_FLAG)
    return out


def region_colors(labels, scores, threshold):
    """DS9 colour of each object (see `REGION_COLORS`); NaN scores count as below."""
    labels = np.asarray(labels)
    above = np.asarray(scores, dtype=np.float64) >= threshold
    return np.select(
        [labels == 1, labels == 0, above],
        [REGION_COLORS["real"], REGION_COLORS["bogus"], REGION_COLORS["above"]],
        REGION_COLORS["below"],
    )


def export_regions(x, y, labels, scores, threshold, path, radius=8.0):
    """Write a DS9 region file: a circle per object, coloured by label, its score as text.

    Parameters
    ----------
    x, y : array_like
        0-based pixel positions (written 1-based, in DS9's ``image`` system).
    labels : array_like of int or None
        1 real (green), 0 bogus (red), -1 unlabeled: cyan when the score is at or above
        the threshold, orange below or unscored.
    scores : array_like of float
        Written as each circle's text (``nan`` when unscored).
    threshold : float
    path : str or Path
    radius : float
        Circle radius in pixels.

    Returns
    -------
    int
        Number of regions written (objects with non-finite positions are left out).
    """
    threshold = check_threshold(threshold)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not (len(x) == len(y) == len(scores)):
        raise RbvetError(f"{len(x)} x, {len(y)} y and {len(scores)} scores do not match")
    labels = _labels_array(labels, len(x))
    keep = np.isfinite(x) & np.isfinite(y)
    colors = region_colors(labels, scores, threshold)[keep]
    score_text = np.where(np.isfinite(scores), np.char.mod("%.3f", scores), "nan")[keep]
    columns = [
        "circle(",
        np.char.mod("%.3f", x[keep] + 1.0),
        ",",
        np.char.mod("%.3f", y[keep] + 1.0),
        f",{float(radius):.4g}) # color=",
        colors,
        " text={",
        score_text,
        "}",
    ]
    lines = functools.reduce(np.char.add, columns) if keep.any() else np.array([], str)
    header = (
        "# Region file format: DS9 version 4.1\n"
        f"# rbvet: green = labeled real, red = labeled bogus, unlabeled: cyan = score >= "
        f"{threshold:g}, orange = below; text = rb_score\n"
        'global color=green width=1 font="helvetica 9 normal roman" select=1 '
        "highlite=1 dash=0 fixed=0 edit=0 move=0 delete=1 include=1 source=1\n"
        "image\n"
    )
    text = header + "".join(np.char.add(lines, "\n").tolist())
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))
    return int(keep.sum())
