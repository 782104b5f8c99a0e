"""Weak labels: what repeated exposures of a field and a reference catalog say of objects.

The strongest labels an astronomer has without looking are physical. An object seen at the
same sky position in several exposures is real; a sharp one seen in only one, where the
others were deep enough to show it, is a cosmic ray or another artifact of that exposure;
an object at the position of a star of a reference catalog (a Gaia export) is very likely
real. These rules give weak labels, kept apart from the user's own (their source is
:data:`REPEAT` or :data:`REFERENCE`), with no opinion where the evidence is unsure:
saturated objects, blends, positions the other exposures do not cover deeply enough.

Frames are related through their celestial WCS: `overlap_groups` groups the frames that
overlap on the sky, `repeat_labels` matches each object into the other frames of its group
(a KD-tree on each frame's pixel positions) and `reference_labels` matches a reference
catalog into each frame. Nothing needs the network.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from rbvet.core.errors import RbvetError

REPEAT, REFERENCE = "repeat", "reference"
"""Sources of weak labels: repeated exposures, a reference catalog."""
WEAK_SOURCES = (REPEAT, REFERENCE)
NO_OPINION = -1

_PM_NAMES = (("pmra", "pmdec"), ("pmra", "pmde"), ("pm_ra", "pm_dec"))
_EPOCH_NAMES = ("ref_epoch", "epoch", "refepoch")


@dataclass
class FrameObjects:
    """What weak labels need of one frame: its WCS, noise, and its objects' positions.

    Build one from a read frame and its catalog with `frame_objects`.

    Attributes
    ----------
    name : str
        The frame (for messages and outputs).
    wcs : astropy.wcs.WCS
        Celestial WCS.
    shape : (int, int)
        Image shape (rows, columns).
    fwhm : float
        PSF FWHM in pixels.
    x, y : ndarray
        0-based positions of the objects.
    peak : ndarray
        Highest background-subtracted pixel near each object (ADU).
    saturated : ndarray of bool
        Objects touching saturated pixels.
    signal : ndarray or None
        Background-subtracted image (ADU), to see what a position shows where nothing
        was detected; None when not at hand.
    noise : ndarray
        1-σ noise map (ADU).
    usable : ndarray of bool
        Pixels where a detection could be made (not masked).
    threshold : float
        Detection threshold in σ the frame's objects were found at.
    year : float or None
        Epoch of the exposure (decimal year), for proper motions.
    """

    name: str
    wcs: object
    shape: tuple
    fwhm: float
    x: np.ndarray
    y: np.ndarray
    peak: np.ndarray
    saturated: np.ndarray
    noise: np.ndarray
    usable: np.ndarray
    threshold: float = 3.0
    year: float | None = None
    size: np.ndarray | None = None
    """Each object's own FWHM (px; NaN where unmeasured), when known."""
    blended: np.ndarray | None = None
    """Objects the detector deblended from a neighbour (sep's merged flag), when known."""
    signal: np.ndarray | None = None
    instrument: str = ""
    """``TELESCOP`` and ``INSTRUME`` of its header (`rbvet.core.project.instrument_name`):
    frames of different instruments never vouch for each other (`overlap_groups`)."""
    _tree: object = field(default=None, repr=False)

    @property
    def tree(self):
        """KD-tree of the object positions (built once)."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            finite = np.isfinite(self.x) & np.isfinite(self.y)
            points = np.column_stack(
                [np.where(finite, self.x, -1e9), np.where(finite, self.y, -1e9)]
            )
            self._tree = cKDTree(points)
        return self._tree

    def sky(self):
        """RA, Dec (degrees) of the objects."""
        return _pixel_to_sky(self.wcs, self.x, self.y)

    def to_pixels(self, ra, dec):
        """0-based pixel positions of sky positions (NaN where the WCS cannot map them)."""
        return _sky_to_pixel(self.wcs, ra, dec)

    def inside(self, x, y, edge=0.0):
        """Positions on the frame, at least ``edge`` px in, on usable pixels."""
        height, width = self.shape
        ok = np.isfinite(x) & np.isfinite(y)
        ok &= (x >= edge - 0.5) & (x <= width - 0.5 - edge)
        ok &= (y >= edge - 0.5) & (y <= height - 0.5 - edge)
        ix = np.clip(np.rint(np.where(ok, x, 0)).astype(int), 0, width - 1)
        iy = np.clip(np.rint(np.where(ok, y, 0)).astype(int), 0, height - 1)
        return ok & self.usable[iy, ix]

    def peak_at(self, x, y):
        """Highest signal within half a FWHM (at least 1 px) of positions; NaN unknown."""
        if self.signal is None:
            return np.full(np.shape(x), np.nan)
        rows, cols = _disc_windows(self.shape, x, y, max(1.0, 0.5 * self.fwhm))
        return np.nanmax(self.signal[rows, cols], axis=1, initial=-np.inf)

    def noise_at(self, x, y):
        """Noise σ at (clipped, rounded) pixel positions."""
        height, width = self.shape
        ix = np.clip(np.rint(np.nan_to_num(x)).astype(int), 0, width - 1)
        iy = np.clip(np.rint(np.nan_to_num(y)).astype(int), 0, height - 1)
        return self.noise[iy, ix]


def _pixel_to_sky(wcs, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(ra, float), np.asarray(dec, float)


def _sky_to_pixel(wcs, ra, dec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    return np.asarray(x, float), np.asarray(y, float)


def _disc_windows(shape, x, y, radius):
    """Rows and columns (N, M) of the pixels within ``radius`` of each position (clipped)."""
    reach = int(np.ceil(radius))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    disc = dx**2 + dy**2 <= radius**2 + 1e-9
    ix = np.rint(np.nan_to_num(x)).astype(int)
    iy = np.rint(np.nan_to_num(y)).astype(int)
    rows = np.clip(iy[:, None] + dy[disc][None, :], 0, shape[0] - 1)
    cols = np.clip(ix[:, None] + dx[disc][None, :], 0, shape[1] - 1)
    return rows, cols


def frame_year(header):
    """Decimal year of an exposure from ``MJD-OBS`` or ``DATE-OBS``, or None."""
    from astropy.time import Time

    if header is None:
        return None
    for key, form in (("MJD-OBS", "mjd"), ("DATE-OBS", "isot")):
        value = header.get(key)
        if value in (None, ""):
            continue
        try:
            return float(Time(value, format=form if form == "mjd" else None).decimalyear)
        except (ValueError, TypeError):
            continue
    return None


def frame_objects(frame, table, fwhm, threshold=3.0, name=None):
    """The `FrameObjects` of a read frame (with background and noise) and its objects.

    Parameters
    ----------
    frame : Frame
        With a celestial WCS; its background and noise maps are estimated if missing.
    table : astropy.table.Table
        The objects: 0-based ``x``, ``y``; a detection table's ``fwhm`` (each object's
        size) and ``flag`` (sep's flags: 1, merged, is a blend) are used when present.
    fwhm : float
        FWHM in pixels.
    threshold : float
        Detection threshold (σ) of the objects.
    name : str, optional
        Default: the frame's path.

    Raises
    ------
    RbvetError
        The frame has no celestial WCS.
    """
    from rbvet.core.project import frame_instrument

    name = str(name or frame.path or "frame")
    if frame.wcs is None:
        raise RbvetError(
            "the frame has no celestial WCS, so it cannot be matched on the sky", name
        )
    frame.ensure_background()
    x = np.asarray(table["x"], float)
    y = np.asarray(table["y"], float)
    size = np.asarray(table["fwhm"], float) if "fwhm" in table.colnames else None
    blended = None
    if "flag" in table.colnames and np.asarray(table["flag"]).dtype.kind in "iu":
        blended = (np.asarray(table["flag"]) & 1) != 0
    shape = frame.image.shape
    rows, cols = _disc_windows(shape, x, y, max(1.0, 0.5 * fwhm))
    values = frame.image[rows, cols] - frame.background[rows, cols]
    peak = np.nanmax(np.where(frame.mask[rows, cols], np.nan, values), axis=1, initial=-np.inf)
    saturated = np.zeros(len(x), bool)
    if frame.saturated is not None and frame.saturated.any():
        rows, cols = _disc_windows(shape, x, y, max(1.5, fwhm))
        saturated = frame.saturated[rows, cols].any(axis=1)
    noise = np.where(np.isfinite(frame.noise), frame.noise, np.inf).astype(np.float32)
    return FrameObjects(
        name=name,
        wcs=frame.wcs,
        shape=shape,
        fwhm=float(fwhm),
        x=x,
        y=y,
        peak=np.asarray(peak, float),
        saturated=saturated,
        noise=noise,
        usable=~frame.mask & np.isfinite(noise),
        signal=(frame.image - frame.background).astype(np.float32),
        threshold=float(threshold),
        year=frame_year(frame.header),
        size=size,
        blended=blended,
        instrument=frame_instrument(frame),
    )


def overlap_groups(frames):
    """Groups of frames that overlap on the sky (each a sorted list of indices).

    Frames are grouped as a project groups its fields (`rbvet.core.project.group_fields`):
    two frames of one kind (`rbvet.core.project.frame_kind`: one instrument, one image
    size) overlap when their sky footprints do, and groups are the connected sets of that
    relation. Frames of other instruments or sizes never share a group, so they never
    vouch for each other's objects. A frame without a WCS is a group of its own.

    Parameters
    ----------
    frames : sequence
        `FrameObjects` (their ``instrument``), or read `rbvet.core.io.frame.Frame`
        (`rbvet.core.project.frame_instrument`).

    Returns
    -------
    list of list of int
    """
    from rbvet.core.project import frame_instrument, frame_kind, group_fields, sky_footprint

    footprints = [None if f.wcs is None else sky_footprint(f.wcs, f.shape) for f in frames]
    kinds = [
        frame_kind(f.instrument if isinstance(f, FrameObjects) else frame_instrument(f), f.shape)
        for f in frames
    ]
    groups = {}
    for i, field_index in enumerate(group_fields(footprints, kinds)):
        groups.setdefault(int(field_index) if field_index >= 0 else -1 - i, []).append(i)
    return sorted(groups.values())


@dataclass
class RepeatEvidence:
    """What the other exposures of its field say of each object of a frame.

    Attributes
    ----------
    label : ndarray of int8
        1 seen again (real), 0 a single-exposure artifact, -1 no opinion.
    repeats : ndarray of int
        Other exposures where it was detected again at its sky position (and not at its
        detector position only).
    absent : ndarray of int
        Other exposures that cover its position deeply enough to show it and do not.
    """

    label: np.ndarray
    repeats: np.ndarray
    absent: np.ndarray


def _within_factor(a, b, factor):
    """a and b both positive and within ``factor`` of each other."""
    ok = (a > 0) & (b > 0)
    ratio = np.where(ok, a, 1.0) / np.where(ok, b, 1.0)
    return ok & (ratio <= factor) & (ratio >= 1.0 / factor)


def _mutual(frame, other, nearest):
    """Whether each object's match in ``other`` has that object as its own nearest one."""
    ra, dec = _pixel_to_sky(other.wcs, other.x[nearest], other.y[nearest])
    back_x, back_y = frame.to_pixels(ra, dec)
    query = np.column_stack([np.nan_to_num(back_x, nan=-1e9), np.nan_to_num(back_y, nan=-1e9)])
    _, back = frame.tree.query(query)
    return back == np.arange(len(frame.x))


def repeat_labels(
    frames,
    min_repeats=2,
    min_absent=2,
    match_radius=1.0,
    depth=3.0,
    max_peak_ratio=3.0,
    min_snr=5.0,
):
    """Weak labels of every object from the other exposures of its field.

    An object of frame *i* is matched into each other frame *j* of its group (by WCS) and
    looked for there within ``match_radius`` FWHM:

    * it is **seen again** in *j* when the nearest object there is within the radius,
      has it as its own nearest object in *i* (a mutual match: a hit beside a star does
      not take the star's repeats), has a peak within ``max_peak_ratio`` of its own
      (scaled by the PSF areas), and is nearer its sky position than its detector
      position (so a hot pixel or bad column, fixed on the detector, is not counted) with
      the pointing moving it by at least a pixel;
    * *j* shows it **absent** when nothing is within the radius although the position is
      on *j*'s usable pixels (one FWHM in from the edge) and the object, as bright at its
      peak as in *i* (scaled by the PSF areas), would stand ``depth`` times the detection
      threshold above *j*'s noise there, and *j*'s pixels there stay below half that peak
      (an object merged into a larger detection in *j*, a star under a trail, is there).

    Label 1 (real) with at least ``min_repeats`` repeats (or repeats in all the others
    when the group has fewer) and a peak of ``min_snr`` σ or more (fainter detections
    that repeat are often noise on the wings of a real object); 0 (a single-exposure artifact)
    when seen in no other exposure and absent from at least ``min_absent`` (or from all of
    them when the group has fewer others); no opinion on saturated objects or otherwise.

    Parameters
    ----------
    frames : sequence of FrameObjects
    min_repeats, min_absent : int
    min_snr : float
        Lowest peak signal-to-noise ratio of an object labeled real.
    match_radius : float
        Match radius in FWHM (the larger FWHM of the two frames).
    depth : float
        How far above the detection threshold a missing object must have been.
    max_peak_ratio : float
        Largest ratio of the peaks of an object and its match.

    Returns
    -------
    list of RepeatEvidence
        One per frame, aligned with its objects.
    """
    if min_repeats < 1:
        raise RbvetError(f"min_repeats must be at least 1, got {min_repeats}")
    results = []
    groups = overlap_groups(frames)
    group_of = {i: group for group in groups for i in group}
    for i, frame in enumerate(frames):
        n = len(frame.x)
        repeats = np.zeros(n, int)
        absent = np.zeros(n, int)
        seen = np.zeros(n, int)
        others = [j for j in group_of[i] if j != i]
        ra, dec = frame.sky()
        for j in others:
            other = frames[j]
            radius = match_radius * max(frame.fwhm, other.fwhm)
            xj, yj = other.to_pixels(ra, dec)
            covered = other.inside(xj, yj, edge=other.fwhm)
            query = np.column_stack([np.nan_to_num(xj, nan=-1e9), np.nan_to_num(yj, nan=-1e9)])
            distance, nearest = other.tree.query(query, distance_upper_bound=radius)
            found = covered & np.isfinite(distance)
            nearest = np.where(found, nearest, 0)
            n_other = len(other.x)
            if n_other:
                detector_distance = np.hypot(
                    other.x[nearest] - frame.x, other.y[nearest] - frame.y
                )
            else:
                detector_distance = np.zeros(n)
            moved = np.hypot(xj - frame.x, yj - frame.y) >= 1.0
            psf_area = (frame.fwhm**2 + 1.0) / (other.fwhm**2 + 1.0)
            expected = frame.peak * psf_area
            alike = _within_factor(
                other.peak[nearest] if n_other else expected, expected, max_peak_ratio
            )
            mutual = _mutual(frame, other, nearest) if n_other else found
            repeats += found & moved & mutual & alike & (distance < detector_distance)
            seen += found
            expected = frame.peak * min(psf_area, 1.0)
            deep = expected >= depth * other.threshold * other.noise_at(xj, yj)
            shows = other.peak_at(xj, yj)  # merged into another detection there?
            empty = ~(shows >= 0.5 * expected)  # NaN (not at hand): nothing to say against
            absent += covered & deep & ~found & empty
        label = np.full(n, NO_OPINION, np.int8)
        needed_absent = min(int(min_absent), len(others))
        needed_repeats = min(int(min_repeats), len(others))
        if others:
            significant = frame.peak >= min_snr * frame.noise_at(frame.x, frame.y)
            label[(repeats >= needed_repeats) & significant] = 1
            label[(seen == 0) & (absent >= max(needed_absent, 1))] = 0
        label[frame.saturated] = NO_OPINION
        results.append(RepeatEvidence(label=label, repeats=repeats, absent=absent))
    return results


@dataclass
class ReferenceCatalog:
    """Sky positions of a reference catalog (optionally with proper motions).

    Read one with `read_reference`.
    """

    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray | None = None
    """mas/yr, including cos(Dec) (as Gaia gives it)."""
    pmdec: np.ndarray | None = None
    epoch: np.ndarray | float | None = None
    """Decimal year of the positions."""
    name: str = "reference catalog"

    def at(self, year):
        """RA, Dec moved by their proper motions to ``year`` (as given without either)."""
        if self.pmra is None or year is None or self.epoch is None:
            return self.ra, self.dec
        years = year - np.asarray(self.epoch, float)
        dec = self.dec + np.nan_to_num(self.pmdec) * years / 3.6e6
        cos = np.cos(np.deg2rad(self.dec))
        ra = self.ra + np.nan_to_num(self.pmra) * years / 3.6e6 / np.maximum(cos, 1e-6)
        return ra, dec


def read_reference(path, epoch=None):
    """A reference catalog from a file (CSV, FITS, VOTable, ECSV) with RA/Dec.

    Proper motions are taken from ``pmra``/``pmdec`` (mas/yr) when present, at the epoch of
    an ``ref_epoch``/``epoch`` column, else ``epoch`` (decimal year; Gaia DR3 is 2016.0).

    Raises
    ------
    RbvetError
        Unreadable file or no RA/Dec columns.
    """
    from rbvet.core.io.catalog import _numeric, read_sky_catalog

    table, ra, dec = read_sky_catalog(path)
    lower = {name.lower(): name for name in reversed(table.colnames)}
    catalog = ReferenceCatalog(ra=ra, dec=dec, name=str(path))
    for pm_ra, pm_dec in _PM_NAMES:
        if pm_ra in lower and pm_dec in lower:
            catalog.pmra = _numeric(table, lower[pm_ra], path)
            catalog.pmdec = _numeric(table, lower[pm_dec], path)
            break
    column = next((lower[name] for name in _EPOCH_NAMES if name in lower), None)
    if column is not None:
        catalog.epoch = _numeric(table, column, path)
    elif epoch is not None:
        catalog.epoch = float(epoch)
    return catalog


def reference_labels(frames, reference, radius=None, isolation=1.5, min_size=0.6):
    """Weak labels from a reference catalog: 1 for objects at a reference position.

    Each reference position (moved by its proper motion to the frame's epoch) is taken to
    the frame's pixels; an object whose nearest reference source is within ``radius`` is
    labeled real, unless it is saturated, a blend (another object of the frame within
    ``isolation`` FWHM, another reference source within ``isolation`` FWHM of its match,
    or deblended by the detector), or sharper than ``min_size`` times the FWHM (a hit on a
    star, not the star): no opinion there. Objects without a match get no opinion (a
    reference catalog is never complete).

    Parameters
    ----------
    frames : sequence of FrameObjects
    reference : ReferenceCatalog
    radius : float, optional
        Match radius in arcseconds; default one FWHM of each frame.
    isolation : float
        Blend distance in FWHM.
    min_size : float
        Smallest object size (its own FWHM over the frame's) that can be a star.

    Returns
    -------
    list of ndarray of int8
        One per frame: 1 or -1 for each object.
    """
    from scipy.spatial import cKDTree

    results = []
    for frame in frames:
        n = len(frame.x)
        label = np.full(n, NO_OPINION, np.int8)
        ra, dec = reference.at(frame.year)
        good = np.isfinite(ra) & np.isfinite(dec)
        rx, ry = frame.to_pixels(ra[good], dec[good])
        on = np.isfinite(rx) & np.isfinite(ry)
        height, width = frame.shape
        reach = isolation * frame.fwhm
        on &= (rx > -reach) & (rx < width + reach) & (ry > -reach) & (ry < height + reach)
        rx, ry = rx[on], ry[on]
        if n == 0 or len(rx) == 0:
            results.append(label)
            continue
        pixel_radius = frame.fwhm if radius is None else radius / _pixel_scale(frame.wcs)
        references = cKDTree(np.column_stack([rx, ry]))
        distance, nearest = references.query(
            np.column_stack([frame.x, frame.y]), distance_upper_bound=pixel_radius
        )
        matched = np.isfinite(distance)
        blend = isolation * frame.fwhm
        crowded_reference = np.zeros(len(rx), bool)
        if len(rx) > 1:
            neighbour, _ = references.query(np.column_stack([rx, ry]), k=[2])
            crowded_reference = neighbour[:, 0] < blend
        crowded_object = np.zeros(n, bool)
        if n > 1:
            neighbour, _ = frame.tree.query(np.column_stack([frame.x, frame.y]), k=[2])
            crowded_object = neighbour[:, 0] < blend
        nearest = np.where(matched, nearest, 0)
        real = matched & ~crowded_reference[nearest] & ~crowded_object & ~frame.saturated
        if frame.blended is not None:
            real &= ~frame.blended
        if frame.size is not None:
            real &= ~(frame.size < min_size * frame.fwhm)  # unmeasured (NaN) sizes pass
        label[real] = 1
        results.append(label)
    return results


def _pixel_scale(wcs):
    """Arcseconds per pixel (geometric mean of the two axes)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    return float(np.sqrt(scales[0] * scales[1]))


def weak_label_records(frames, repeat=None, reference=None):
    """The weak labels as a JSON-ready list of ``{frame, x, y, weak_label, source}``.

    One record per object and source with an opinion (an object can have one from each).
    """
    records = []
    for source, per_frame in ((REPEAT, repeat), (REFERENCE, reference)):
        if per_frame is None:
            continue
        for frame, labels in zip(frames, per_frame, strict=True):
            labels = labels.label if isinstance(labels, RepeatEvidence) else labels
            for index in np.flatnonzero(labels >= 0):
                records.append(
                    {
                        "frame": frame.name,
                        "x": float(frame.x[index]),
                        "y": float(frame.y[index]),
                        "weak_label": int(labels[index]),
                        "source": source,
                    }
                )
    return records


# ------------------------------------------------------------------ the whole step


NEED_TWO_EXPOSURES = (
    "weak labels from repeats need at least two exposures of a field "
    "(or a reference catalog to match one frame to)"
)


@dataclass
class WeakLabels:
    """The weak labels `make_weak_labels` made.

    Attributes
    ----------
    frames : list of FrameObjects
    repeat : list of RepeatEvidence or None
        None with a single frame.
    reference : list of ndarray of int8 or None
        None without a reference catalog.
    lonely : list of str
        Frames that overlap no other of their instrument and size (no repeat labels).
    """

    frames: list
    repeat: list | None = None
    reference: list | None = None
    lonely: list = field(default_factory=list)

    def records(self):
        """`weak_label_records` of these labels."""
        return weak_label_records(self.frames, repeat=self.repeat, reference=self.reference)

    def counts(self):
        """Objects labeled by each source: ``{(source, label): count}`` for the sources
        `REPEAT` and `REFERENCE` and labels 1 (real) and 0 (a single-exposure artifact)."""
        counts = {(source, label): 0 for source in WEAK_SOURCES for label in (1, 0)}
        for source, per_frame in ((REPEAT, self.repeat), (REFERENCE, self.reference)):
            for labels in per_frame or ():
                labels = labels.label if isinstance(labels, RepeatEvidence) else labels
                for label in (1, 0):
                    counts[(source, label)] += int(np.count_nonzero(labels == label))
        return counts

    @property
    def objects(self):
        """Objects of all the frames."""
        return sum(len(frame.x) for frame in self.frames)

    def summary(self):
        """What was made, in one line: "repeat: 40 real, 3 single-exposure artifacts;
        reference: 12 real" (the reference part only when a reference catalog was used)."""
        counts = self.counts()
        text = (
            f"repeat: {counts[(REPEAT, 1)]} real, {counts[(REPEAT, 0)]} single-exposure artifacts"
        )
        if self.reference is not None:
            text += f"; reference: {counts[(REFERENCE, 1)]} real"
        return text


def make_weak_labels(
    frames,
    store_path=None,
    *,
    options=None,
    reference=None,
    match_radius=None,
    min_repeats=2,
    min_absent=2,
    log=None,
):
    """The weak labels of the objects of several frames, recorded in a label store if
    asked: what ``rbvet weak-labels`` and the window's Labels menu run.

    Each frame is read and its objects detected (or read from its catalog) as ``rbvet
    classify`` does; `repeat_labels` matches the frames of one field (`overlap_groups`),
    `reference_labels` matches a reference catalog. A job (`rbvet.core.jobs`): yields
    `Progress` as each frame is read (``done`` counts the frames); closing it stops, and
    nothing is written before the last frame was read and matched.

    Parameters
    ----------
    frames : sequence of (str, str or None)
        Frame paths and their catalogs (None: detect the objects).
    store_path : str or Path, optional
        Record the labels in this label store, apart from the user's labels (objects with
        an opinion are added); None: nothing is written.
    options : rbvet.core.classify.FrameOptions or sequence of them, optional
        How the frames are read (objects detected at its ``detect_threshold``): one for
        every frame, or one per frame (as the window's project read each); the defaults
        when None.
    reference : ReferenceCatalog, optional
    match_radius : float, optional
        Reference match radius in arcseconds (one FWHM by default).
    min_repeats, min_absent : int
        As in `repeat_labels`.
    log : callable, optional
        Takes the messages of reading the frames.

    Returns
    -------
    WeakLabels

    Raises
    ------
    RbvetError
        One frame and no reference catalog; several frames none of which overlaps
        another of its instrument and size, and no reference catalog (nothing to compare:
        nothing is written); frames without a celestial WCS; frames that cannot be read.
    """
    from rbvet.core.classify import FrameOptions, open_frame_and_catalog
    from rbvet.core.jobs import Progress

    frames = [(str(f), None if c is None else str(c)) for f, c in frames]
    if len(frames) < 2 and reference is None:
        raise RbvetError(NEED_TWO_EXPOSURES)
    if min_repeats < 1 or min_absent < 1:
        raise RbvetError("min_repeats and min_absent must be at least 1")
    if options is None:
        options = FrameOptions()
    if isinstance(options, FrameOptions):
        options = [options] * len(frames)
    options = list(options)
    if len(options) != len(frames):
        raise RbvetError(f"{len(options)} reading options given for {len(frames)} frames")
    loaded = []
    for done, ((path, catalog), frame_options) in enumerate(zip(frames, options, strict=True)):
        name = os.path.basename(path)
        yield Progress(done, len(frames), f"Reading {name}")
        frame, table, fwhm = yield from _counted(
            open_frame_and_catalog(
                path, catalog, options=frame_options, log=log, interruptible=True
            ),
            done,
            len(frames),
            name,
        )
        if frame.wcs is None:
            loaded.append((frame, None, fwhm))
            continue
        objects = frame_objects(frame, table, fwhm, frame_options.detect_threshold, name=path)
        loaded.append((frame if store_path is not None else None, objects, fwhm))
    missing = [path for (path, _), entry in zip(frames, loaded, strict=True) if entry[1] is None]
    if missing:
        raise RbvetError(
            "weak labels match frames on the sky, and these have no celestial WCS: "
            + ", ".join(missing)
        )
    yield Progress(len(frames), len(frames), "Matching the frames on the sky")
    objects = [entry[1] for entry in loaded]
    result = WeakLabels(objects)
    if len(objects) > 1:
        groups = overlap_groups(objects)
        result.lonely = [objects[group[0]].name for group in groups if len(group) == 1]
        if reference is None and len(groups) == len(objects):
            raise RbvetError(
                f"none of these {len(objects)} frames overlaps another of its instrument and "
                f"size on the sky, so no object can be seen again: {NEED_TWO_EXPOSURES}"
            )
        result.repeat = repeat_labels(objects, min_repeats=min_repeats, min_absent=min_absent)
    if reference is not None:
        result.reference = reference_labels(objects, reference, radius=match_radius)
    if store_path is not None:
        yield Progress(len(frames), len(frames), "Writing the weak labels")
        store_weak_labels(store_path, loaded, result.repeat, result.reference)
    return result


def _counted(step, done, total, name):
    """Run a frame's reading job, its `Progress` counted in frames (``done`` of ``total``)
    and named after the frame."""
    from rbvet.core.jobs import Progress

    try:
        while True:
            progress = next(step)
            yield Progress(done, total, f"{name}: {progress.message}")
    except StopIteration as finished:
        return finished.value
    finally:
        step.close()


def store_weak_labels(store_path, loaded, repeat, reference):
    """Record weak labels in a label store: the objects with an opinion are added (their
    stamps cut from their frame) and their weak labels set, apart from the user's.

    Parameters
    ----------
    store_path : str or Path
    loaded : list of (Frame, FrameObjects, float)
        Each frame, its objects and its FWHM.
    repeat : list of RepeatEvidence or None
    reference : list of ndarray or None
    """
    from rbvet.core.cutouts.preprocess import plan_rescale
    from rbvet.core.cutouts.stamps import cut_stamps
    from rbvet.core.learn.labels import LabelStore

    with LabelStore(store_path) as store:
        for index, (frame, objects, fwhm) in enumerate(loaded):
            opinions = []
            if repeat is not None:
                opinions.append((REPEAT, repeat[index].label))
            if reference is not None:
                opinions.append((REFERENCE, reference[index]))
            having = np.zeros(len(objects.x), bool)
            for _, labels in opinions:
                having |= labels >= 0
            if not having.any():
                continue
            rescale = plan_rescale(fwhm)
            rows = np.flatnonzero(having)
            x, y = objects.x[rows], objects.y[rows]
            frame_id = store.add_frame(frame, fwhm, rescale)
            ids = np.full(len(objects.x), -1, np.int64)
            ids[rows] = store.add_objects(frame_id, x, y, cut_stamps(frame, x, y, rescale))
            for source, labels in opinions:
                chosen = (labels >= 0) & (ids >= 0)
                if chosen.any():
                    store.set_weak_labels(ids[chosen], labels[chosen], source)


def measure_on_simulated_epochs(seeds, n_epochs=4, size=512, threshold=3.0, **options):
    """Precision and recall of `repeat_labels` against the truth of simulated epochs.

    Each seed is one field of ``n_epochs`` exposures (`simulate_epochs`, ``**options`` as
    for `simulate_frame`); each exposure is detected and its FWHM measured as ``rbvet
    weak-labels`` does, and its detections labeled from truth (`label_detections`).
    Detections whose truth is ambiguous (an artifact on a source) count neither way.
    `reference_labels` is measured too, with the field's true stars of a peak of 5 σ or
    more (in the first exposure) as the reference catalog, as a Gaia export would list
    the stars down to about the frame's depth.

    Returns
    -------
    dict
        For 'real' and 'artifact' (of `repeat_labels`) and 'reference' (real by
        `reference_labels`): ``right``, ``wrong``, ``ambiguous`` (called so with
        ambiguous truth), ``total`` (detections that truly are so), ``precision`` and
        ``recall``; and ``frames``, ``detections``.
    """
    from rbvet.core.detect.detection import detect_objects
    from rbvet.core.detect.psf import measure_fwhm
    from rbvet.core.io.frame import frame_from_array
    from rbvet.core.simulate import label_detections, simulate_epochs

    counts = {name: np.zeros(4, int) for name in ("real", "artifact", REFERENCE)}
    n_frames = n_detections = 0
    for seed in seeds:
        frames, truth = [], []
        epochs = simulate_epochs(n_epochs, (size, size), rng=seed, **options)
        truth_table = epochs[0].frame.truth
        stars = truth_table[(truth_table["kind"] == "star") & (truth_table["peak_sigma"] >= 5)]
        ra, dec = _pixel_to_sky(epochs[0].wcs, stars["x"], stars["y"])
        reference = ReferenceCatalog(ra=ra, dec=dec, name="true stars")
        for epoch in epochs:
            frame = frame_from_array(epoch.frame.image, header=epoch.wcs.to_header())
            table = detect_objects(frame.ensure_background(), thresh=threshold)
            fwhm = measure_fwhm(frame, table["x"], table["y"], table=table).fwhm
            frames.append(frame_objects(frame, table, fwhm, threshold))
            truth.append(label_detections(epoch.frame, table["x"], table["y"])[0])
            n_detections += len(table)
        n_frames += len(frames)
        matched = reference_labels(frames, reference)
        for evidence, by_reference, labels in zip(
            repeat_labels(frames), matched, truth, strict=True
        ):
            for name, weak, want in (
                ("real", evidence.label, 1),
                ("artifact", evidence.label, 0),
                (REFERENCE, by_reference, 1),
            ):
                called = weak == want
                counts[name] += [
                    np.sum(called & (labels == want)),
                    np.sum(called & (labels == 1 - want)),
                    np.sum(called & (labels < 0)),
                    np.sum(labels == want),
                ]
    result = {"frames": n_frames, "detections": n_detections}
    for name, (right, wrong, ambiguous, total) in counts.items():
        result[name] = {
            "right": int(right),
            "wrong": int(wrong),
            "ambiguous": int(ambiguous),
            "total": int(total),
            "precision": float(right / max(right + wrong, 1)),
            "recall": float(right / max(total, 1)),
        }
    return result
