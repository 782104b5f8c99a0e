"""FITS frames: choose the image HDU, attach mask / noise / background maps and the WCS.

A :class:`Frame` is what every later step works on: a 2-D float32 image, a boolean mask of
unusable pixels, a mask of saturated pixels, background and noise maps (estimated with sep
on demand, blind to saturated pixels, bleed columns and bright objects) and the celestial
WCS. The data section (``TRIMSEC``/``DATASEC``) is honoured: overscan and prescan are
masked, while pixel coordinates stay those of the HDU as stored. :func:`read_frame`
builds one from a FITS file, :func:`frame_from_array` from arrays the caller already has.
Problems with the input raise :class:`~rbvet.core.errors.RbvetError` with a one-line
message naming the file; they never surface as library tracebacks.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.utils.exceptions import AstropyWarning

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.files import check_input_file

if TYPE_CHECKING:  # astropy.wcs costs ~0.13 s of every process start: imported when used
    from astropy.wcs import WCS

__all__ = [
    "Frame",
    "read_frame",
    "frame_from_array",
    "image_hdus",
    "check_fits_headers",
    "SATURATION_KEYWORDS",
    "parse_section",
]

SATURATION_KEYWORDS = ("SATURATE", "SATLEVEL", "SATURATN", "SATUR", "MAXLIN", "DATAMAX")
"""Header keywords naming the saturation (or end of linearity) level, first found wins."""

SECTION_KEYWORDS = ("TRIMSEC", "DATASEC")
"""Header keywords naming the useful part of a raw frame; their intersection is kept."""

MAX_SATURATED_FRACTION = 0.5
"""A frame with more saturated pixels than this holds nothing to judge: refused."""

_BLEED_REACH = (6, 1)  # rows, columns: saturated pixels grown by this for the background
_SOURCE_MASK_SIGMA = 2.5  # 3x3-smoothed residual above this many of its sigma is a source
_SOURCE_MASK_GROW = 4  # px: source pixels grown by this before the second background pass
_MAX_SOURCE_FRACTION = 0.7  # more masked than this: keep the first background pass
_CORRELATED_NOISE_RATIO = 1.2  # a 3x3 sum noisier than white noise by more: correlated

# What astropy raises for files that are not FITS, are corrupt, or are cut short. Some of
# these only appear when the data are touched, so reads happen inside the guarded block.
_FITS_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    MemoryError,
    VerifyError,  # an unparsable card, found when its value is first needed
    AttributeError,  # an HDU of no known kind (e.g. a header without BITPIX)
    zipfile.BadZipFile,  # astropy opens a file starting with a zip signature as an archive
)

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)

# astropy builds lists as long as a header's NAXIS, ZNAXIS or TFIELDS claim, so one corrupt
# card (NAXIS = 1099511627776) makes fits.open run for hours and fill the memory. The FITS
# standard allows at most 999 of each; `check_fits_headers` refuses more before parsing.
_MAX_FITS_COUNT = 999
_COUNTED_KEYWORDS = ("NAXIS", "ZNAXIS", "TFIELDS")
_FITS_BLOCK = 2880
_GZIP_MIN_SIZE = 18  # a gzip member's header and trailer


def image_hash(image):
    """Content hash of an image: BLAKE2b of its shape and float32 pixels (hex, 32 chars).

    The same pixels give the same hash whatever the file name, compression or HDU.
    """
    pixels = np.ascontiguousarray(image, dtype="<f4")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(pixels.shape, dtype="<i8").tobytes())
    digest.update(pixels.data)
    return digest.hexdigest()


@dataclass(eq=False)  # frames compare by identity: element-wise array equality is no answer
class Frame:
    """One science image with everything needed to judge detections on it.

    Attributes
    ----------
    image : numpy.ndarray
        2-D float32, C-contiguous, native byte order. NaN is allowed where data are bad.
    mask : numpy.ndarray
        2-D bool, True where a pixel is unusable (user mask, non-finite image value,
        zero weight or non-positive error).
    background : numpy.ndarray or None
        2-D float32 background map; None until :meth:`ensure_background` estimates it.
    noise : numpy.ndarray or None
        2-D float32 1-sigma noise map; None until estimated. It is ``+inf`` where a pixel
        carries no information (weight 0).
    wcs : astropy.wcs.WCS or None
        Celestial WCS from the header, or None when the header has no usable one.
    header : astropy.io.fits.Header
        Header of the image HDU.
    path : str or None
        File the image came from.
    hdu : int, str or None
        Index of the HDU the image came from.
    saturated : numpy.ndarray or None
        2-D bool, True where a pixel is at or above the saturation level. Not part of
        ``mask``: the science image the CNN sees keeps them; the background and noise
        maps leave them (grown along the columns, for bleed trails) out.
    saturation : float or None
        Saturation level in image units, None when unknown.
    saturation_source : str
        Where ``saturation`` came from: ``"header SATURATE"`` (the keyword), ``"histogram
        plateau"``, ``"given"`` or ``"none"``.
    data_section : tuple of slice or None
        ``(rows, columns)``, 0-based, of the data section honoured (``TRIMSEC``/``DATASEC``);
        pixels outside it are in ``mask``. None when the whole image is data.
    notes : list of str
        Fallbacks taken while reading (each also warned once), for the output's metadata.
    relative_noise : numpy.ndarray or None
        The noise's shape from a weight map or the file's own noise map (see
        :func:`read_frame`), ``+inf`` where a pixel carries no information:
        :meth:`ensure_background` makes ``noise`` from it and the sky's measured scatter.
    noise_source : str
        Where ``noise`` comes from: ``"sky"`` (estimated), ``"given"``, or the map that
        gave ``relative_noise`` (e.g. ``"HDU 2 'WHT' (weight)"``).
    noise_scale : float or None
        The median factor that brought ``relative_noise`` to the sky's scatter.
    """

    image: np.ndarray
    mask: np.ndarray
    background: np.ndarray | None
    noise: np.ndarray | None
    wcs: WCS | None
    header: fits.Header
    path: str | None = None
    hdu: int | str | None = None
    saturated: np.ndarray | None = None
    saturation: float | None = None
    saturation_source: str = "none"
    data_section: tuple[slice, slice] | None = None
    notes: list[str] = field(default_factory=list)
    relative_noise: np.ndarray | None = None
    noise_source: str = "sky"
    noise_scale: float | None = None

    @cached_property
    def content_hash(self) -> str:
        """`image_hash` of the image, computed once (a frame's pixels do not change).

        It names the frame in label stores; the GUI computes it in its worker thread.
        """
        return image_hash(self.image)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the image, ``(ny, nx)``."""
        return self.image.shape

    def facts(self) -> dict:
        """What was learnt about the frame, as plain values for logs and catalog metadata.

        Returns
        -------
        dict
            ``hdu``, ``shape``, ``data_section`` (IRAF ``[x1:x2,y1:y2]`` or None),
            ``saturation`` (level or None), ``saturation_source``, ``saturated_pixels``,
            ``noise_source``, ``noise_scale`` and ``notes`` (fallbacks taken).
        """
        section = None
        if self.data_section is not None:
            rows, cols = self.data_section
            section = f"[{cols.start + 1}:{cols.stop},{rows.start + 1}:{rows.stop}]"
        return {
            "hdu": self.hdu,
            "shape": tuple(int(n) for n in self.shape),
            "data_section": section,
            "saturation": None if self.saturation is None else float(self.saturation),
            "saturation_source": self.saturation_source,
            "saturated_pixels": 0 if self.saturated is None else int(self.saturated.sum()),
            "noise_source": self.noise_source,
            "noise_scale": self.noise_scale,
            "notes": list(self.notes),
        }

    def background_mask(self) -> np.ndarray:
        """Pixels the background and noise maps must ignore: ``mask`` plus saturated pixels
        grown a little across and more along the columns, where bleed trails run."""
        if self.saturated is None or not self.saturated.any():
            return self.mask
        from scipy.ndimage import maximum_filter

        rows, cols = _BLEED_REACH
        grown = maximum_filter(self.saturated, size=(2 * rows + 1, 2 * cols + 1))
        return self.mask | grown

    def ensure_background(self, bw=64, bh=64, fw=3, fh=3) -> Frame:
        """Estimate the background and noise maps with sep where they are still missing.

        Masked and saturated pixels (see :meth:`background_mask`) are left out, and so are
        objects: a first estimate finds the pixels of stars and galaxies (the residual,
        smoothed over 3x3 pixels, above 2.5 sigma in at least 5 of 9 neighbouring pixels,
        grown by 4 px), and a second estimate
        leaves them out, so bright galaxies and saturated columns do not raise the
        background or noise around them. Maps that are already set (given by the user)
        are kept; only the missing one(s) are filled.

        Parameters
        ----------
        bw, bh : int
            Background mesh size in pixels (capped at the image size).
        fw, fh : int
            Median filter size, in meshes.

        Returns
        -------
        Frame
            ``self``, so calls can be chained.
        """
        if self.background is not None and self.noise is not None:
            return self
        ignore = self.background_mask()
        data = np.where(ignore, np.float32(0), self.image)  # a new array, in C order
        back, rms = self._sep_background(data, ignore, bw, bh, fw, fh)
        sources = _source_pixels(data, back, rms, ignore)
        without = ignore | sources
        if (
            sources.any()
            and without.mean() < _MAX_SOURCE_FRACTION
            and _some_mesh_usable(without, bw, bh)
        ):
            back, rms = self._sep_background(data, without, bw, bh, fw, fh)
        if self.background is None:
            self.background = back
        if self.noise is None and self.relative_noise is not None:
            self.noise = self._scaled_relative_noise(rms, ignore | sources, bw, bh, fw, fh)
        elif self.noise is None:
            self.noise = rms
        return self

    def _scaled_relative_noise(self, rms, busy, bw, bh, fw, fh):
        """sep's ``rms`` with the pixel-scale detail of ``relative_noise``: the map divided
        by its own smooth level (sep's background of it over the same meshes, ``busy``
        pixels left out), so its level is the sky's measured scatter wherever the map's
        overall scale or large-scale shape is off (drizzle weights are often exposure
        times), while seams, bad columns and pixels without data keep the map's shape."""
        relative = self.relative_noise
        usable = np.isfinite(relative)
        ignore = busy | ~usable
        if not _some_mesh_usable(ignore, bw, bh):
            ignore = ~usable
        values = np.where(ignore, np.float32(0), relative)
        level, _ = self._sep_background(values, ignore, bw, bh, fw, fh)
        with np.errstate(divide="ignore", invalid="ignore"):
            detail = relative / level
            ratio = rms / level
        sky = ~ignore & np.isfinite(ratio)
        self.noise_scale = float(np.median(ratio[sky])) if sky.any() else 1.0
        noise = np.where(usable & (level > 0), rms * detail, np.inf)
        return noise.astype(np.float32)

    def _sep_background(self, data, ignore, bw, bh, fw, fh):
        """sep's background and rms maps (float32) of ``data``, leaving ``ignore`` out."""
        import sep

        ny, nx = data.shape
        try:
            bkg = sep.Background(
                data,
                mask=np.ascontiguousarray(ignore, dtype=np.uint8),
                bw=int(min(bw, nx)),
                bh=int(min(bh, ny)),
                fw=int(fw),
                fh=int(fh),
            )
        except Exception as exc:  # sep raises bare Exceptions
            raise RbvetError(f"background estimation failed: {exc}", self.path) from None
        back = np.ascontiguousarray(bkg.back(), dtype=np.float32)
        rms = np.ascontiguousarray(bkg.rms(), dtype=np.float32)
        _clip_to_mesh_values(back, bw, bh)
        _clip_to_mesh_values(rms, bw, bh)
        return back, rms


def _some_mesh_usable(ignore, bw, bh):
    """Whether at least one of sep's meshes has half its pixels or more not ignored.

    sep leaves out a mesh with fewer good pixels than that; with none left it returns a
    background of 0 and a noise of 1 everywhere, whatever the image. Objects covering more
    than half of every mesh (the Sun's disc on a 128 px solar image, a galaxy filling a
    small cutout) did that to the second pass.
    """
    ny, nx = ignore.shape
    bw, bh = min(int(bw), nx), min(int(bh), ny)
    good = np.add.reduceat(
        np.add.reduceat(~ignore, np.arange(0, ny, bh), axis=0, dtype=np.int64),
        np.arange(0, nx, bw),
        axis=1,
    )
    rows = np.diff(np.append(np.arange(0, ny, bh), ny))
    cols = np.diff(np.append(np.arange(0, nx, bw), nx))
    return bool(np.any(good >= 0.5 * np.outer(rows, cols)))


def _clip_to_mesh_values(values, bw, bh):
    """Clip a sep map, in place, to the range of its mesh values.

    sep interpolates the per-mesh values with a bicubic spline, which overshoots between a
    mesh on a bright galaxy or nebula and its quiet neighbours when the grid is coarse (a
    frame of 2-4 meshes a side): the noise map went negative on a third of a 177 px Palomar
    frame of M1 and at the centres of M13 and NGC 1316, where every pixel then passed the
    detection threshold. The spline passes through the mesh values at the mesh centres
    (``(i + 0.5) * bw - 0.5``), so the map read at the pixels either side of them bounds
    what the meshes said.
    """
    ny, nx = values.shape
    bw, bh = min(int(bw), nx), min(int(bh), ny)

    def centres(n, size):
        centre = (np.arange(-(-n // size)) + 0.5) * size - 0.5
        return np.clip(np.concatenate([np.floor(centre), np.ceil(centre)]), 0, n - 1)

    nodes = values[np.ix_(centres(ny, bh).astype(np.intp), centres(nx, bw).astype(np.intp))]
    np.clip(values, nodes.min(), nodes.max(), out=values)


def _source_pixels(data, back, rms, ignore, measured_box_noise=False):
    """Pixels of objects: the 3x3 mean of the residual above 2.5 of its sigma in at least 5
    of 9 neighbouring pixels (1 % of pure noise), grown by 4 px.

    The sigma of a 3x3 mean is a third of the pixels' on white noise. With
    ``measured_box_noise`` it is measured instead where the frame's residual is noisier
    than that (see `_box_noise_ratio`: correlated noise of resampled, drizzled or scanned
    frames, or structure finer than the background mesh), else the noise itself passes
    and the mask covers such frames. The background estimate keeps the white-noise
    sigma: there, leaving a nebula's fine structure out is what keeps the noise map the
    sky's.
    """
    from scipy.ndimage import maximum_filter

    residual = np.subtract(data, back, dtype=np.float32)
    residual[ignore] = 0
    box = _box3_sum(residual, "edge")
    ratio = _box_noise_ratio(box, rms, ignore) if measured_box_noise else 1.0
    scale = np.float32(3.0 * _SOURCE_MASK_SIGMA * ratio)
    with np.errstate(invalid="ignore"):
        found = box > scale * rms
    found &= ~ignore
    found = _box3_sum(found.view(np.uint8), "constant") >= 5
    if not found.any():
        return found
    return maximum_filter(found.view(np.uint8), size=2 * _SOURCE_MASK_GROW + 1).view(bool)


def _box_noise_ratio(box, rms, ignore, max_samples=1_000_000):
    """How much noisier a 3x3 sum of the residual is than white noise would make it.

    The robust sigma of ``box / rms`` over the usable pixels (a subsample on large frames)
    divided by 3, its value on white noise; 1 unless it exceeds
    :data:`_CORRELATED_NOISE_RATIO`. Real frames measured 1.3-7.6 (a drizzled WFPC2
    mosaic 2.2, Palomar and UK Schmidt plate scans 3.3-5, a UKIRT WFCAM frame 5.2) against
    about 1.06 on a raw CCD frame: there the sum of 9 pixels has up to 7.6 times the noise
    a pixel's rms predicts, the 1 % false-alarm threshold becomes a 25 % one, and objects'
    pixels grown by 4 px covered every place to inject a fake in M13 or a DSS frame.
    """
    step = max(1, int(np.sqrt(box.size / max_samples)))
    usable = ~ignore[::step, ::step]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (box[::step, ::step] / rms[::step, ::step])[usable]
    z = z[np.isfinite(z)]
    if z.size < 100:
        return 1.0
    ratio = 1.4826 * float(np.median(np.abs(z - np.median(z)))) / 3.0
    return ratio if ratio > _CORRELATED_NOISE_RATIO else 1.0


def _box3_sum(values, mode):
    """Sum over each pixel's 3x3 neighbourhood, as two separable passes of slice additions
    (``mode`` pads the edges as `numpy.pad` does); several times quicker than scipy's
    filters on a full frame."""
    padded = np.pad(values, 1, mode=mode)
    rows = padded[:-2] + padded[1:-1]
    rows += padded[2:]
    total = rows[:, :-2] + rows[:, 1:-1]
    total += rows[:, 2:]
    return total


def read_frame(
    path,
    hdu=None,
    mask=None,
    error=None,
    weight=None,
    background=None,
    *,
    saturation=None,
    use_datasec=True,
    file_noise_map=True,
) -> Frame:
    """Read a 2-D image and its companion maps from a FITS file.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file (plain, gzipped, or tile-compressed/fpacked).
    hdu : int or str, optional
        HDU index or EXTNAME of the image. By default the primary HDU if it holds a 2-D
        image, else the first 2-D image HDU (tile-compressed ones included). Leading axes
        of length 1 (e.g. a ``(1, ny, nx)`` image) are dropped.
    mask : int, str, path, tuple or array, optional
        Bad-pixel mask, nonzero = bad. An HDU index or name in the same file, another FITS
        file (its first 2-D image, or ``(path, hdu)``), or an array.
    error : same kinds as ``mask``, optional
        1-sigma noise map, in image units. Pixels with non-finite or non-positive error
        are masked.
    weight : same kinds as ``mask``, optional
        Weight map, proportional to the inverse variance: the noise follows
        1/sqrt(weight), scaled to the sky's measured scatter (as SExtractor's
        ``MAP_WEIGHT``; drizzled images' weights are often exposure times). Pixels with
        weight <= 0 are masked (their noise is +inf). Give ``error`` or ``weight``, not
        both.
    background : same kinds as ``mask``, optional
        Background map; estimated with sep when needed if not given.

        For ``error``, ``weight`` and ``background`` a Python float is taken as a constant
        map; an int is always an HDU index.
    saturation, use_datasec
        As in :func:`frame_from_array`.
    file_noise_map : bool
        Without ``error`` and ``weight``, use the file's own noise map: an image HDU of
        the image's shape and ``EXTVER`` named as in :data:`FILE_NOISE_MAPS` (``WHT``,
        ``ERR``, ``VAR``, MUSE's ``STAT`` ...). Its shape is kept and its level scaled
        to the sky's scatter, as a weight map's; ``Frame.noise_source`` names it.

    Returns
    -------
    Frame

    Raises
    ------
    RbvetError
        Missing, unreadable, corrupt or truncated file; no 2-D image; a cube; an unknown
        HDU; maps whose shape differs from the image; a frame with no usable pixel; a
        frame saturated almost everywhere.
    """
    path = os.fspath(path)
    check_input_file(path, "FITS file")
    if error is not None and weight is not None:
        raise RbvetError("give an error map or a weight map, not both", path)

    with _open_fits(path) as hdul:
        index = _choose_image_hdu(hdul, hdu, path)
        image, header = _read_image(hdul, index, path)
        maps = {}
        for what, spec in (
            ("mask", mask),
            ("error", error),
            ("weight", weight),
            ("background", background),
        ):
            maps[what] = _resolve_map(spec, what, hdul, path, image.shape)
        relative, noise_source = None, "sky" if maps["error"] is None else "given"
        if maps["weight"] is not None:
            relative, noise_source = _relative_noise("weight", maps["weight"]), "weight map"
        elif maps["error"] is None and file_noise_map:
            found = _file_noise_map(hdul, index, image.shape, path)
            if found is not None:
                kind, map_index, name, data = found
                relative = _relative_noise(kind, data)
                noise_source = f"HDU {map_index} {name!r} ({kind})"

    mask = maps["mask"]
    if relative is not None:  # pixels that carry no information
        no_data = ~np.isfinite(relative)
        mask = no_data if mask is None else (np.asarray(mask) != 0) | no_data
    frame = frame_from_array(
        image,
        mask=mask,
        background=maps["background"],
        noise=maps["error"],
        header=header,
        path=path,
        saturation=saturation,
        use_datasec=use_datasec,
    )
    frame.hdu = index
    frame.relative_noise, frame.noise_source = relative, noise_source
    return frame


FILE_NOISE_MAPS = {
    "weight": ("WHT", "WEIGHT", "WGT", "IVM"),
    "error": ("ERR", "ERROR", "SIGMA", "RMS", "NOISE", "UNCERT"),
    "variance": ("VAR", "VARIANCE", "STAT"),
}
"""EXTNAMEs of the noise maps that FITS files carry beside their image, by kind:
drizzle's ``WHT``, HST's ``ERR``, Gemini's ``VAR``, MUSE's ``STAT`` (a variance)."""


def _file_noise_map(hdul, index, shape, path):
    """``(kind, index, name, data)`` of the file's noise map for image HDU ``index``, or
    None: the first HDU named in :data:`FILE_NOISE_MAPS` with the image's shape and
    ``EXTVER`` (so chip 2's ``ERR`` goes with chip 2's ``SCI``)."""
    version = hdul[index].header.get("EXTVER", 1)
    for kind, names in FILE_NOISE_MAPS.items():
        for i, h in enumerate(hdul):
            if i == index or not isinstance(h, _IMAGE_HDUS) or h.name.upper() not in names:
                continue
            if h.header.get("EXTVER", 1) != version:
                continue
            if _squeeze_shape(_hdu_shape(h)) != tuple(shape):
                continue
            return kind, i, h.name, _read_map_hdu(hdul, i, path, kind)
    return None


def _relative_noise(kind, values):
    """A weight, error or variance map as a 1-sigma noise map (any scale), float32,
    ``+inf`` where it is not finite and positive (a pixel without information)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "weight":
            noise = 1.0 / np.sqrt(values)
        elif kind == "variance":
            noise = np.sqrt(values)
        else:
            noise = values.copy()
        noise[~(np.isfinite(noise) & (noise > 0))] = np.inf
    return noise.astype(np.float32)


def image_hdus(path) -> list[tuple[int, str, tuple[int, int]]]:
    """The 2-D image HDUs of a FITS file, from their headers (no pixel is read).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of (int, str, (int, int))
        Index, EXTNAME (or ``""``) and ``(rows, columns)`` of each HDU `read_frame` could
        read as the image (leading axes of length 1 dropped).

    Raises
    ------
    RbvetError
        The file is missing or not a readable FITS file.
    """
    path = os.fspath(path)
    check_input_file(path, "FITS file")
    with _open_fits(path) as hdul:
        found = []
        for index, hdu in enumerate(hdul):
            if not isinstance(hdu, _IMAGE_HDUS):
                continue
            shape = _squeeze_shape(_hdu_shape(hdu))
            if len(shape) == 2 and min(shape) > 0:
                found.append((index, hdu.name or "", (int(shape[0]), int(shape[1]))))
    return found


def frame_from_array(
    image,
    mask=None,
    background=None,
    noise=None,
    header=None,
    wcs=None,
    path=None,
    *,
    saturation=None,
    use_datasec=True,
) -> Frame:
    """Build a :class:`Frame` from arrays the caller already has.

    This is what the STDPipe-style API uses when it is handed ``image, bg, err, mask``.

    Parameters
    ----------
    image : array_like
        2-D image, any numeric dtype or byte order (converted to native float32). A
        masked array contributes its mask.
    mask : array_like, optional
        Nonzero / True = unusable pixel. Non-finite image pixels are always masked.
    background, noise : array_like or float, optional
        Background and 1-sigma noise, as maps or scalars (broadcast to maps). Left None,
        they are estimated by :meth:`Frame.ensure_background` when needed. Non-finite or
        non-positive noise masks the pixel.
    header : astropy.io.fits.Header, optional
        Kept as metadata; its WCS is used when ``wcs`` is not given.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image.
    path : str, optional
        Where the image came from (used in messages).
    saturation : float or False, optional
        Saturation level in image units. By default it is read from the header (the
        first of :data:`SATURATION_KEYWORDS`), else found as a plateau at the top of the
        histogram (pixels piled up at the highest value); ``False`` turns it off.
    use_datasec : bool
        Mask the pixels outside the header's ``TRIMSEC``/``DATASEC`` (IRAF 1-based,
        inclusive ``[x1:x2,y1:y2]``). A malformed section, or one outside the image, is
        ignored with an :class:`RbvetWarning`.

    Returns
    -------
    Frame

    Raises
    ------
    RbvetError
        If the image is not 2-D, a map's shape differs, no pixel is usable, or more than
        half of the usable pixels are saturated.
    """
    path = None if path is None else os.fspath(path)
    extra_mask = None
    if isinstance(image, np.ma.MaskedArray):
        extra_mask = np.ma.getmaskarray(image)
        image = image.data
    try:
        values = np.asarray(image)
        if values.dtype.kind == "c":
            raise RbvetError("image is complex; rbvet needs real pixel values", path)
        if values.dtype.kind in "mM":  # numpy would turn dates into day counts
            raise RbvetError(f"image holds {values.dtype} values, not pixel values", path)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, masked
            arr = np.array(values, dtype=np.float32, order="C", copy=True)
    except RbvetError:
        raise
    except (TypeError, ValueError) as exc:
        raise RbvetError(f"image is not numeric: {_short(exc)}", path) from None
    if arr.ndim != 2:
        raise RbvetError(f"image must be 2-D, got shape {arr.shape}", path)
    if arr.size == 0:
        raise RbvetError("image is empty", path)

    bad = ~np.isfinite(arr)
    if extra_mask is not None:
        bad |= extra_mask
    if mask is not None:
        try:
            m = np.asarray(mask)
        except ValueError:  # ragged nested lists
            raise RbvetError("mask is not an array", path) from None
        if m.dtype.kind not in "biuf":
            raise RbvetError(f"mask must be boolean or numeric, not {m.dtype}", path)
        _check_shape(m, arr.shape, "mask", path)
        bad |= m.astype(bool) if m.dtype == bool else (m != 0)

    bg = _as_map(background, arr.shape, "background", path)
    sigma = _as_map(noise, arr.shape, "noise", path)
    if sigma is not None:
        bad_noise = ~(np.isfinite(sigma) & (sigma > 0))
        if bad_noise.any():
            sigma[bad_noise] = np.inf
            bad |= bad_noise
    if bg is not None:
        bad |= ~np.isfinite(bg)

    if header is None:
        header = fits.Header()
    notes = []
    section = None
    if use_datasec:
        section = _data_section(header, arr.shape, path, notes)
        if section is not None:
            outside = np.ones(arr.shape, dtype=bool)
            outside[section] = False
            bad |= outside

    if use_datasec and not bad.all():
        bad |= _edge_steps(arr, ~bad, notes)

    if bad.all():
        raise RbvetError("no usable pixels: the image is all NaN or masked", path)

    level, source = _saturation_level(arr, ~bad, header, saturation, path, notes)
    saturated = None
    if level is not None:
        with np.errstate(invalid="ignore"):
            saturated = (arr >= np.float32(level)) & ~bad
        fraction = saturated.sum() / max(int((~bad).sum()), 1)
        if fraction > MAX_SATURATED_FRACTION:
            raise RbvetError(
                f"{fraction:.0%} of the usable pixels are saturated (at or above {level:g}, "
                f"from the {source}): nothing can be measured on this frame",
                path,
            )

    if wcs is None:
        wcs = _celestial_wcs(header)
    return Frame(
        image=arr,
        mask=np.ascontiguousarray(bad),
        background=bg,
        noise=sigma,
        wcs=wcs,
        header=header,
        path=path,
        hdu=None,
        saturated=saturated,
        saturation=level,
        saturation_source=source,
        data_section=section,
        notes=notes,
    )


# --------------------------------------------------------------- data section, saturation

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def parse_section(text, shape):
    """0-based ``(rows, columns)`` slices of an IRAF section ``[x1:x2,y1:y2]``.

    IRAF sections are 1-based and inclusive, x (columns) first; a reversed range
    (``[100:1,...]``, a flipped readout) covers the same pixels. The section is clipped
    to the image.

    Parameters
    ----------
    text : str
        The section, e.g. ``"[17:528,1:520]"``; spaces are allowed.
    shape : (int, int)
        Image shape ``(rows, columns)``.

    Returns
    -------
    tuple of slice

    Raises
    ------
    ValueError
        The text is not a section, or it does not overlap the image.
    """
    x1, x2, y1, y2 = _section_bounds(text)
    ny, nx = shape
    if x1 > nx or y1 > ny or x2 < 1 or y2 < 1:
        raise ValueError(f"{text.strip()} lies outside the {nx}x{ny} image")
    return slice(max(y1, 1) - 1, min(y2, ny)), slice(max(x1, 1) - 1, min(x2, nx))


def _section_bounds(text):
    """``(x1, x2, y1, y2)`` of an IRAF section, 1-based, inclusive and in increasing order.

    Raises
    ------
    ValueError
        The text is not of the form ``[x1:x2,y1:y2]``.
    """
    match = _SECTION.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not of the form [x1:x2,y1:y2]")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    return (*sorted((x1, x2)), *sorted((y1, y2)))


def _reaches_beyond(text, shape):
    """Whether a section reaches past the image: it then describes a larger detector."""
    x1, x2, y1, y2 = _section_bounds(text)
    return x1 < 1 or y1 < 1 or x2 > shape[1] or y2 > shape[0]


def _data_section(header, shape, path, notes):
    """The intersection of the header's TRIMSEC and DATASEC as slices, or None.

    A malformed section, or one reaching beyond the image (a cutout keeps its CCD's
    ``DATASEC``), is skipped with a warning (and a note).
    """
    rows, cols = slice(0, shape[0]), slice(0, shape[1])
    found = False
    for keyword in SECTION_KEYWORDS:
        try:
            text = header.get(keyword)
        except Exception:  # an unparsable card
            text = "(unparsable card)"
        if text is None:
            continue
        try:
            r, c = parse_section(text, shape)
        except ValueError as exc:
            _note(notes, f"{keyword} ignored: {exc}; the whole image is used", path)
            continue
        if _reaches_beyond(text, shape):  # a cutout or a copy keeping the CCD's header
            ny, nx = shape
            _note(
                notes,
                f"{keyword} ignored: {str(text).strip()} reaches beyond the {nx}x{ny} image, "
                "so it describes a larger detector (a cutout's header?); the whole image "
                "is used",
                path,
            )
            continue
        found = True
        rows = slice(max(rows.start, r.start), min(rows.stop, r.stop))
        cols = slice(max(cols.start, c.start), min(cols.stop, c.stop))
    if not found:
        return None
    if rows.start >= rows.stop or cols.start >= cols.stop:
        _note(notes, "TRIMSEC and DATASEC do not overlap; the whole image is used", path)
        return None
    if (rows.start, rows.stop, cols.start, cols.stop) == (0, shape[0], 0, shape[1]):
        return None
    return rows, cols


def _edge_steps(image, valid, notes, reach=64, min_size=128, step_sigma=5.0):
    """Rows or columns at the frame's edges that sit at another level: undeclared overscan.

    A raw frame may carry a few rows or columns of bias (overscan, prescan) that its
    ``TRIMSEC``/``DATASEC`` does not leave out. Within ``reach`` pixels of each edge, a run
    of lines starting at the edge whose medians differ from the next ``reach`` lines' median
    by more than ``step_sigma`` times the pixel noise is masked (and noted).

    Returns
    -------
    numpy.ndarray
        Boolean map of the pixels masked.
    """
    ny, nx = image.shape
    masked = np.zeros(image.shape, dtype=bool)
    if min(ny, nx) < min_size:
        return masked
    reach = min(reach, min(ny, nx) // 8)

    def strip(rows, cols):  # NaN where unusable; only the strips are copied
        return np.where(valid[rows, cols], image[rows, cols], np.nan)

    def nanmedian(values, axis=None):  # numpy's nanmedian loops over lines in Python
        return (np.nanmedian if np.isnan(values).any() else np.median)(values, axis=axis)

    inner = strip(slice(reach, 3 * reach), slice(reach, -reach))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lines
        centre = nanmedian(inner)
        sigma = 1.4826 * nanmedian(np.abs(inner - centre))
        if not (np.isfinite(centre) and np.isfinite(sigma) and sigma > 0):
            return masked
        inside = slice(reach, -reach)
        sides = (
            ("bottom", nanmedian(strip(slice(0, reach), inside), axis=1), 0),
            ("top", nanmedian(strip(slice(-reach, None), inside), axis=1)[::-1], 0),
            ("left", nanmedian(strip(inside, slice(0, reach)), axis=0), 1),
            ("right", nanmedian(strip(inside, slice(-reach, None)), axis=0)[::-1], 1),
        )
    for side, medians, axis in sides:
        if np.isnan(medians[reach // 2 :]).all():  # no data there (a NaN border): no step
            continue
        reference = np.nanmedian(medians[reach // 2 :])
        off = ~(np.abs(medians - reference) <= step_sigma * sigma)  # NaN lines count too
        run = int(np.argmin(off)) if not off.all() else 0
        if run == 0 or run >= reach // 2 or np.all(np.isnan(medians[:run])):
            continue
        lines = slice(0, run) if side in ("bottom", "left") else slice(-run, None)
        if axis == 0:
            masked[lines, :] = True
        else:
            masked[:, lines] = True
        what = "rows" if axis == 0 else "columns"
        notes.append(
            f"{run} {what} at the {side} edge masked: they sit "
            f"{np.nanmedian(medians[:run]) - reference:+.4g} from the data next to them "
            "(overscan or prescan outside the header's data section)"
        )
    return masked & valid


def _note(notes, message, path):
    """Record a fallback taken and warn about it (one line naming the file)."""
    notes.append(message)
    warnings.warn(f"{path}: {message}" if path else message, RbvetWarning, stacklevel=4)


def _saturation_level(image, valid, header, given, path, notes):
    """``(level, source)``: given, from the header, from the histogram, or ``(None, "none")``."""
    if given is False:
        return None, "none"
    if given is not None:
        level = float(given)
        if not np.isfinite(level):
            raise RbvetError(f"saturation level must be a finite number, not {given!r}", path)
        return level, "given"
    median = _sample_median(image, valid)
    for keyword in SATURATION_KEYWORDS:
        try:
            value = header.get(keyword)
        except Exception:  # an unparsable card
            continue
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            _note(notes, f"{keyword} = {value!r} is not a number; ignored", path)
            continue
        if not np.isfinite(value) or (np.isfinite(median) and value <= median):
            if np.isfinite(value) and _saturated_everywhere(image, valid, value, median):
                return float(value), f"header {keyword}"  # saturated everywhere: refused
            _note(notes, f"{keyword} = {value!r} is not above the sky level; ignored", path)
            continue
        return float(value), f"header {keyword}"
    level = _plateau_level(image, valid, median)
    return (None, "none") if level is None else (level, "histogram plateau")


def _saturated_everywhere(image, valid, level, median):
    """True for a frame clipped at or above ``level`` nearly everywhere: every usable pixel
    at or above it, and at least half of them at the lowest value (a saturated plateau,
    not the sky of a frame whose header level is simply wrong)."""
    lowest = float(np.min(image, where=valid, initial=np.inf))
    return lowest >= level and median <= lowest


def _sample_median(image, valid, max_samples=1_000_000):
    """Median of the usable pixels, from an even subsample on large frames."""
    step = max(1, int(np.sqrt(image.size / max_samples)))
    sample = image[::step, ::step][valid[::step, ::step]]
    return float(np.median(sample)) if sample.size else np.nan


def _plateau_level(image, valid, median, bins=80, min_pile=8):
    """The level where pixels pile up at the top of the histogram (saturation), or None.

    Natural objects thin out towards the brightest pixel; saturated ones stack at the
    full-well or converter limit (one value in raw data, a narrow band after flat
    fielding). The range from the median to the maximum is split into ``bins`` bins; a
    pile-up is a bin among the top quarter holding at least ``min_pile`` pixels (and
    1e-5 of the frame) and 4 times more than a typical bin below it. The level is the
    lower edge of the run of well-filled bins around it.
    """
    top = float(np.max(image, where=valid, initial=-np.inf))
    bottom = float(np.min(image, where=valid, initial=np.inf))
    if not np.isfinite(top) or not np.isfinite(median) or top <= bottom:
        return None  # a constant frame has no plateau: it has no histogram
    at_top = int(np.count_nonzero((image == np.float32(top)) & valid))
    n_valid = int(np.count_nonzero(valid))
    if at_top > MAX_SATURATED_FRACTION * n_valid:
        # Most of the frame at one value: saturated everywhere if that is a converter's
        # full scale (4095, 65535, ...), else an odd but possible (e.g. test) frame.
        full_scale = top >= 4095 and top == float(int(top)) and (int(top) + 1) & int(top) == 0
        return top if full_scale else None
    if top <= median:
        return None
    low = median + 0.5 * (top - median)
    values = image[(image >= np.float32(low)) & valid]
    counts, edges = np.histogram(values, bins=bins, range=(low, top))
    typical = np.median(counts[: bins // 2])
    need = max(min_pile, 1e-5 * n_valid, 4.0 * typical + 1)
    upper = counts[-bins // 4 :]
    peak = len(counts) - len(upper) + int(np.argmax(upper))
    if counts[peak] < need:
        return None
    first = peak
    while first > 0 and counts[first - 1] >= counts[peak] / 4.0:
        first -= 1
    return float(max(edges[first], values[values >= edges[first]].min()))


# --------------------------------------------------------------------------- helpers


class _open_fits:
    """Context manager: ``fits.open`` whose failures become :class:`RbvetError`."""

    def __init__(self, path):
        self.path = path
        self.hdul = None

    def __enter__(self):
        check_fits_headers(self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                self.hdul = fits.open(self.path, memmap=False)
                len(self.hdul)  # forces reading all headers now
        except _FITS_ERRORS as exc:
            raise RbvetError(f"not a readable FITS file ({_short(exc)})", self.path) from None
        return self.hdul

    def __exit__(self, *exc_info):
        if self.hdul is not None:
            self.hdul.close()
        return False


def check_fits_headers(path) -> None:
    """Refuse a FITS file whose headers claim an impossible structure, before astropy reads it.

    The headers of a plain, gzip- or bzip2-compressed file are walked with
    :meth:`astropy.io.fits.Header.fromfile`, which only parses cards, skipping each HDU's
    data by the size its header declares. A ``NAXIS``, ``ZNAXIS`` or ``TFIELDS`` outside
    0-999 (the standard's limit) is an error: astropy would loop over that many axes or
    columns. Anything else that looks wrong stops the walk and is left to ``fits.open``,
    which reports it.

    Parameters
    ----------
    path : str
        The file.

    Raises
    ------
    RbvetError
        A header with an impossible ``NAXIS``, ``ZNAXIS`` or ``TFIELDS``.
    """
    import bz2
    import gzip

    check_input_file(path, "FITS file")
    gzip_size = None
    try:
        with open(path, "rb") as raw:
            magic = raw.read(3)
            size = os.fstat(raw.fileno()).st_size
            if magic.startswith(b"\x1f\x8b") and size >= _GZIP_MIN_SIZE:
                raw.seek(-4, os.SEEK_END)  # the trailer's uncompressed size, modulo 2**32
                gzip_size = int.from_bytes(raw.read(4), "little")
    except OSError as exc:
        raise RbvetError(f"cannot open ({exc.strerror or exc})", path) from None
    if magic.startswith(b"\x1f\x8b"):
        opener, size = gzip.open, None
    elif magic == b"BZh":
        opener, size = bz2.open, None
    else:
        opener = open
    try:
        with opener(path, "rb") as stream:
            for index in range(100_000):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", AstropyWarning)
                        header = fits.Header.fromfile(stream)
                except Exception:  # end of file, or a header fits.open will report
                    return
                data_size = _declared_data_size(header, index, path)
                if data_size is None:
                    return
                end = stream.tell() + data_size
                if size is not None and end - _FITS_BLOCK >= size:
                    raise RbvetError(
                        f"corrupt or truncated FITS file: the header of HDU {index} declares "
                        f"{_bytes(data_size)} of data ({_axes(header)}), the file holds "
                        f"{_bytes(size)}",
                        path,
                    )
                if size is not None and end >= size:
                    return  # no room for another header after this HDU
                if gzip_size is not None and end % 2**32 == gzip_size:
                    # This HDU ends the gzip stream: stop rather than decompress its data
                    # only to find nothing after it. A stream that does not end where the
                    # trailer says (several members, trailing bytes) is walked to its end.
                    return
                stream.seek(data_size, os.SEEK_CUR)
    except RbvetError:
        raise
    except (OSError, EOFError, ValueError):  # a broken compressed stream: fits.open reports it
        return


def _declared_data_size(header, index, path) -> int | None:
    """Bytes of data (padded to whole blocks) an HDU's header declares; None if unclear."""
    for keyword in _COUNTED_KEYWORDS:
        # Every card counts: astropy may take a duplicated keyword's last value.
        for count in _values_of(header, keyword):
            if _is_int(count) and not 0 <= count <= _MAX_FITS_COUNT:
                raise RbvetError(
                    f"corrupt FITS header in HDU {index}: {keyword} = {count} "
                    f"(at most {_MAX_FITS_COUNT} allowed)",
                    path,
                )
    try:
        naxis = header.get("NAXIS", 0)
        values = [header.get("BITPIX", 8), header.get("PCOUNT", 0), header.get("GCOUNT", 1)]
        if _is_int(naxis):
            values += [header.get(f"NAXIS{i + 1}", 0) for i in range(naxis)]
        groups = header.get("GROUPS") is True
    except Exception:  # an unparsable card: fits.open reports it
        return None
    if not _is_int(naxis) or not all(_is_int(v) and v >= -64 for v in values):
        return None
    bitpix, pcount, gcount, *axes = (int(v) for v in values)
    if naxis == 0:
        return 0
    if axes[0] == 0 and groups:
        axes = axes[1:]  # random groups: NAXIS1 = 0 marks the format
    elements = int(np.prod(axes, dtype=object)) if axes else 0
    size = abs(bitpix) // 8 * gcount * (pcount + elements)
    return -(-size // _FITS_BLOCK) * _FITS_BLOCK


def _bytes(size) -> str:
    """A byte count for people: ``37.3 GiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024


def _axes(header) -> str:
    """``NAXIS1 x NAXIS2`` of a header as text, ``BITPIX`` included."""
    axes = " x ".join(str(header.get(f"NAXIS{i + 1}")) for i in range(header.get("NAXIS", 0)))
    return f"{axes} values of BITPIX {header.get('BITPIX')}"


def _values_of(header, keyword) -> list:
    """The values of every card named ``keyword`` (unparsable cards are skipped)."""
    values = []
    for card in header.cards:
        try:
            if card.keyword == keyword:
                values.append(card.value)
        except Exception:  # a malformed card: fits.open will report it if it matters
            continue
    return values


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _short(exc) -> str:
    """One line of an exception's text, for a message."""
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _hdu_shape(h) -> tuple:
    """Shape of an image HDU from its header, without reading the data."""
    try:
        return tuple(h.shape)
    except Exception:  # a broken header is treated as 'no image'
        return ()


def _squeeze_shape(shape) -> tuple:
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _describe(hdul) -> str:
    """A short list of the HDUs in a file, for messages."""
    parts = []
    for i, h in enumerate(hdul[:8]):
        shape = _hdu_shape(h) if isinstance(h, _IMAGE_HDUS) else None
        kind = "table" if isinstance(h, (fits.BinTableHDU, fits.TableHDU)) else "image"
        desc = f"{i} {h.name or '?'} ({kind}"
        desc += f" {'x'.join(map(str, shape))})" if shape else ")"
        parts.append(desc)
    if len(hdul) > 8:
        parts.append(f"... {len(hdul) - 8} more")
    return ", ".join(parts)


def _choose_image_hdu(hdul, hdu, path) -> int:
    """Index of the HDU holding the image, by the rules of :func:`read_frame`."""
    if hdu is None:
        cube = None
        for i, h in enumerate(hdul):
            if not isinstance(h, _IMAGE_HDUS):
                continue
            shape = _squeeze_shape(_hdu_shape(h))
            if len(shape) == 2 and min(shape) > 0:
                return i
            if len(shape) > 2 and cube is None:
                cube = (i, shape)
        if cube is not None:
            i, shape = cube
            raise RbvetError(
                f"HDU {i} ({hdul[i].name}) is a {len(shape)}-D cube of shape {shape}, "
                "not a 2-D image; rbvet needs a single 2-D plane",
                path,
            )
        raise RbvetError(f"no 2-D image HDU in the file ({_describe(hdul)})", path)

    index = _hdu_index(hdul, hdu, path, "image")
    h = hdul[index]
    if not isinstance(h, _IMAGE_HDUS):
        raise RbvetError(f"HDU {hdu!r} is a {type(h).__name__}, not an image", path)
    shape = _squeeze_shape(_hdu_shape(h))
    if len(shape) > 2:
        raise RbvetError(
            f"HDU {hdu!r} is a {len(shape)}-D cube of shape {shape}, not a 2-D image", path
        )
    if len(shape) != 2 or min(shape) == 0:
        raise RbvetError(f"HDU {hdu!r} holds no 2-D image (shape {shape})", path)
    return index


def _hdu_index(hdul, hdu, path, what) -> int:
    """Resolve an HDU index or name, with a message listing what the file has."""
    if isinstance(hdu, (bool, np.bool_)):
        raise RbvetError(f"{what} HDU must be an index or a name, not {hdu!r}", path)
    if isinstance(hdu, (int, np.integer)):
        if not -len(hdul) <= int(hdu) < len(hdul):
            raise RbvetError(
                f"no HDU {int(hdu)} for the {what}: the file has {len(hdul)} ({_describe(hdul)})",
                path,
            )
        return int(hdu) % len(hdul)
    try:
        return hdul.index_of(hdu)
    except (KeyError, ValueError, TypeError, IndexError):
        raise RbvetError(
            f"no HDU named {hdu!r} for the {what} ({_describe(hdul)})", path
        ) from None


def _read_image(hdul, index, path) -> tuple[np.ndarray, fits.Header]:
    """Read an image HDU as native float32; BLANK values of integer data become NaN.

    BLANK names a value as stored, before BZERO and BSCALE: astropy's scaled data cannot
    tell (it returns unsigned data with the offset applied and ignores ``BLANK = 0``), so
    the blank pixels are found in the stored integers, read again unscaled.
    """
    h = hdul[index]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            blank = h.header.get("BLANK") if h.header.get("BITPIX", -32) > 0 else None
            raw = _scaled_data(h, path, index, blank)
            if raw is None:
                raise RbvetError(f"HDU {index} holds no data", path)
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, masked
                data = np.array(raw, dtype=np.float32, order="C", copy=True)
            if _is_int(blank):
                stored = _stored_integers(path, index)
                if stored is not None and stored.shape == data.shape:
                    data[stored == blank] = np.nan
            header = h.header.copy()
    except RbvetError:
        raise
    except _FITS_ERRORS as exc:
        raise RbvetError(
            f"cannot read the image data of HDU {index} (corrupt or truncated file: "
            f"{_short(exc)})",
            path,
        ) from None
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return np.ascontiguousarray(data), header


def _scaled_data(h, path, index, blank):
    """``h.data``, or, where astropy cannot scale it, the stored integers scaled here.

    astropy compares ``BLANK`` with int8 data after their offset (stored as uint8 with
    ``BZERO = -128``), then fails putting NaN into an int8 array; the image is then
    ``stored * BSCALE + BZERO`` (`_read_image` marks the blank pixels).
    """
    try:
        return h.data
    except ValueError:
        stored = _stored_integers(path, index) if _is_int(blank) else None
        if stored is None:
            raise
        scale, zero = h.header.get("BSCALE", 1.0), h.header.get("BZERO", 0.0)
        return stored.astype(np.float64) * scale + zero


def _stored_integers(path, index):
    """The integers of image HDU ``index`` as stored (no BZERO/BSCALE), or None."""
    with fits.open(path, memmap=False, do_not_scale_image_data=True) as unscaled:
        stored = unscaled[index].data
        return None if stored is None or stored.dtype.kind not in "iu" else np.asarray(stored)


def _resolve_map(spec, what, hdul, path, shape):
    """Turn a mask/error/weight/background spec into an array of the image's shape."""
    if spec is None:
        return None
    source = None
    if isinstance(spec, np.ndarray) or (what != "mask" and isinstance(spec, (float, np.floating))):
        arr = spec
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        index = _hdu_index(hdul, int(spec), path, what)
        source = f"HDU {index}"
        arr = _read_map_hdu(hdul, index, path, what)
    elif isinstance(spec, tuple) and len(spec) == 2:
        arr, source = _read_map_file(spec[0], spec[1], what, path)
    elif isinstance(spec, (str, os.PathLike)):
        name = os.fspath(spec)
        index = None
        if isinstance(spec, str):
            try:
                index = hdul.index_of(spec)
            except (KeyError, ValueError, TypeError, IndexError):
                index = None
        if index is not None:
            source = f"HDU {spec!r}"
            arr = _read_map_hdu(hdul, index, path, what)
        elif os.path.lexists(name):
            arr, source = _read_map_file(name, None, what, path)
        else:
            raise RbvetError(
                f"{what}: {name!r} is neither an HDU of this file ({_describe(hdul)}) "
                "nor an existing file",
                path,
            )
    elif isinstance(spec, (list, np.ma.MaskedArray)):
        arr = np.asarray(spec)
    else:
        raise RbvetError(
            f"{what} must be an HDU index or name, a file path or an array, "
            f"not {type(spec).__name__}",
            path,
        )
    if np.ndim(arr) == 0:
        return np.full(shape, float(arr), dtype=np.float32)
    arr = np.asarray(arr)
    if arr.ndim > 2:
        arr = arr.reshape(_squeeze_shape(arr.shape))
    if arr.shape != tuple(shape):
        where = f" from {source}" if source else ""
        raise RbvetError(
            f"{what}{where} has shape {arr.shape} but the image has {tuple(shape)}", path
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise RbvetError(f"{what} is not numeric (dtype {arr.dtype})", path)
    if what == "mask" and arr.dtype.kind == "f":
        arr = np.where(np.isnan(arr), 1, arr)  # a NaN in a mask counts as bad
    return arr


def _read_map_hdu(hdul, index, path, what):
    h = hdul[index]
    if not isinstance(h, _IMAGE_HDUS):
        raise RbvetError(f"{what} HDU {index} is a {type(h).__name__}, not an image", path)
    data, _ = _read_image(hdul, index, path)
    return data


def _read_map_file(other, hdu, what, path):
    """Read a map from another FITS file; errors name that file."""
    other = os.fspath(other)
    try:
        check_input_file(other, f"{what} file")
    except RbvetError as error:
        raise RbvetError(f"{what} file {other!r}: {error.problem}", path) from None
    with _open_fits(other) as hdul:
        index = _choose_image_hdu(hdul, hdu, other)
        data, _ = _read_image(hdul, index, other)
    return data, f"file {os.path.basename(other)!r}"


def _as_map(value, shape, what, path):
    """Scalar or array -> float32 map of ``shape`` (a copy), or None."""
    if value is None:
        return None
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise RbvetError(f"{what} is complex; it must hold real values", path)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf
            arr = arr.astype(np.float32, copy=False)
    except RbvetError:
        raise
    except (TypeError, ValueError):
        raise RbvetError(f"{what} is not numeric", path) from None
    if arr.ndim == 0:
        return np.full(shape, arr, dtype=np.float32)
    _check_shape(arr, shape, what, path)
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def _check_shape(arr, shape, what, path):
    if arr.shape != tuple(shape):
        raise RbvetError(f"{what} has shape {arr.shape} but the image has {tuple(shape)}", path)


def _celestial_wcs(header) -> WCS | None:
    """The celestial part of the header's WCS, or None; header warnings are silenced."""
    if header is None or not len(header):
        return None
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            w = WCS(header, relax=True)
            if not w.has_celestial:
                return None
            if w.naxis != 2:
                w = w.celestial
            if w.naxis != 2:
                return None
            # A WCS that cannot map its own reference pixel is of no use.
            test = w.all_pix2world([[0.0, 0.0]], 0)
            if not np.all(np.isfinite(test)):
                return None
            return w
    except Exception:  # any invalid WCS is 'no WCS', never an error
        return None
