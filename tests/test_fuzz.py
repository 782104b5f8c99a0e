"""Fuzzing the readers and the classifier with bad input.

Astronomers point rbvet at whatever is on their disk. For the frame reader, the catalog
reader and `classify_realbogus`, Hypothesis throws mutated and random bytes, truncated
files, wrong HDU kinds, odd dtypes and shapes, non-finite values and hostile catalogs.

Every strategy knows what it generated, so each case is classified by construction:

- *valid* — it must succeed, and its result is checked against a reference computed
  here (the pixels as the FITS standard defines them, the positions written to the file,
  the scores' contract for scorable and unscorable rows);
- *invalid* — it must raise rbvet's own `RbvetError` with a one-line message that
  names the file;
- *either* — mutations whose effect the test cannot know (a flipped bit in a header):
  both outcomes are allowed, but a result is still checked against the invariants.

Anything else (another exception, library warnings, a wrong result) is a bug; each bug
found keeps its regression case as an ``@example``. Each fuzz test states, with
`reaches`, how many valid cases at least must reach the correctness check and how many
invalid ones must be refused, and fails when fewer did: a strategy that drifts into
generating only errors cannot pass unnoticed.

Runs are reproducible (``derandomize=True``, no example database). The number of cases
and their outcomes are printed at the end of the module (``pytest -s`` or ``-rA``).
"""

import functools
import gzip
import io
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rbvet.core.errors import RbvetError, RbvetWarning
from rbvet.core.io.catalog import read_catalog
from rbvet.core.io.frame import frame_from_array, read_frame

# Moderate counts: the whole module runs in about a minute on a busy 2-core machine.
# RBVET_FUZZ_SCALE=20 runs twenty times as many cases (a deeper search, for a nightly run).
FUZZ_SCALE = float(os.environ.get("RBVET_FUZZ_SCALE", "1"))


def cases(count):
    """Settings for ``count`` cases (times RBVET_FUZZ_SCALE), reproducible, no deadline."""
    return settings(
        max_examples=max(1, round(count * FUZZ_SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


VALID, INVALID, EITHER = "valid", "invalid", "either"
"""What a generated case is, by construction: see the module docstring."""

OUTCOMES = Counter()
"""(test, outcome) -> number of cases; printed when the module ends."""

_RUNNING = []  # the name of the fuzz test running now (set by `reaches`)


def reaches(valid=0, invalid=0):
    """Check, after a Hypothesis test has run all its cases, that at least ``valid`` valid
    cases reached the correctness check and at least ``invalid`` invalid ones were refused
    with a checked message (figures for RBVET_FUZZ_SCALE=1; more cases only add).

    The floors are about half the counts seen: Hypothesis' mix of cases is reproducible
    for one test run alone but shifts somewhat with what ran before it in the session.
    """

    def decorate(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            name = test.__name__
            for key in [key for key in OUTCOMES if key[0] == name]:
                del OUTCOMES[key]
            _RUNNING[:] = [name]
            try:
                test(*args, **kwargs)
            finally:
                _RUNNING.clear()
            reached = (OUTCOMES[name, "valid: checked"], OUTCOMES[name, "invalid: refused"])
            assert reached[0] >= valid and reached[1] >= invalid, (
                f"{name}: {reached[0]} valid cases checked (at least {valid} wanted), "
                f"{reached[1]} invalid ones refused (at least {invalid} wanted)"
            )

        return run

    return decorate


def count(outcome, test=None):
    """Count one case of the running fuzz test (or of ``test``) as ``outcome``."""
    OUTCOMES[test or _RUNNING[0], outcome] += 1


SHAPE = (40, 48)  # (ny, nx) of the valid frame the mutations start from


# ----------------------------------------------------------------------------- helpers


def tan_header(shape=SHAPE):
    """A simple TAN WCS header for a frame of ``shape``."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cdelt = [-0.0002, 0.0002]
    return wcs.to_header()


def star_image(shape=SHAPE, seed=0):
    """Noise, a flat sky and a few stars: a small but real frame."""
    rng = np.random.default_rng(seed)
    x = np.array([10.3, 30.7, 20.1, 38.2])
    y = np.array([9.6, 12.2, 27.9, 30.4])
    rows, cols = np.indices(shape)
    sigma = 2.5 / 2.3548
    squared = (cols[..., None] - x) ** 2 + (rows[..., None] - y) ** 2
    image = 100.0 + (500.0 * np.exp(-0.5 * squared / sigma**2)).sum(axis=-1)
    image += rng.normal(0.0, 5.0, shape)
    return image.astype(np.float32), x, y


def valid_fits_bytes():
    """A small valid FITS file: a star field with a WCS, and a mask extension."""
    image, _, _ = star_image()
    hdus = fits.HDUList(
        [
            fits.PrimaryHDU(image, header=tan_header()),
            fits.ImageHDU(np.zeros(SHAPE, np.uint8), name="MASK"),
        ]
    )
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return buffer.getvalue()


VALID_FITS = valid_fits_bytes()
HEADER_CARD_OFFSETS = [
    offset
    for block in (0, 2880 * (1 + math.ceil(SHAPE[0] * SHAPE[1] * 4 / 2880)))
    for offset in range(block, block + 2880, 80)
]


def with_card(data, offset, card):
    """``data`` with the 80-character header card at ``offset`` replaced by ``card``."""
    data = bytearray(data)
    data[offset : offset + 80] = card.encode("ascii").ljust(80)[:80]
    return bytes(data)


def card_offset(data, keyword):
    """Offset of the first header card named ``keyword`` in ``data``."""
    return data.index(keyword.encode("ascii").ljust(8) + b"=")


# Regression cases found by fuzzing (see the module docstring of rbvet.core.io.frame).
# A second NAXIS card with a huge value: astropy looped over 2**40 axes (hung for hours).
HUGE_NAXIS = with_card(VALID_FITS, 5 * 80, "NAXIS   = 1099511627776")
HUGE_NAXIS_IN_EXTENSION = with_card(
    VALID_FITS, HEADER_CARD_OFFSETS[36 + 2], "NAXIS   =        4398046511104"
)
# A second SIMPLE card instead of BITPIX: astropy raised AttributeError.
BITPIX_REPLACED_BY_SIMPLE = with_card(VALID_FITS, 80, "SIMPLE  =                    0")
# An unparsable value on a mandatory card: astropy raised VerifyError, not an OSError.
UNPARSABLE_NAXIS = with_card(
    VALID_FITS, card_offset(VALID_FITS, "NAXIS"), "NAXIS   =                    x"
)


def check_input_error(error, path=None):
    """rbvet's error: one non-empty line, naming the file when there is one."""
    message = str(error)
    assert message.strip(), "empty error message"
    assert "\n" not in message, f"multi-line message: {message!r}"
    if path is not None:
        assert os.path.basename(str(path)) in message, f"file not named: {message!r}"


def outcome_of(expected, function, *args, path=None, **kwargs):
    """Call ``function`` on a case that is ``expected`` (VALID, INVALID or EITHER).

    A valid case must return: its result is returned for the caller to check, and the
    caller then calls ``count("valid: checked")``. An invalid case must raise
    `RbvetError` with a one-line message naming ``path`` (when given): it is counted
    here and None is returned. An "either" case may do both (None after the error).
    Any other exception propagates (and fails the test); so do warnings other than
    `RbvetWarning` (library chatter that would reach the user).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ResourceWarning)
        try:
            result = function(*args, **kwargs)
        except RbvetError as error:
            if expected == VALID:
                raise AssertionError(f"a valid input was refused: {error}") from error
            check_input_error(error, path)
            count("invalid: refused" if expected == INVALID else "either: refused")
            return None
    chatter = [w for w in caught if not issubclass(w.category, RbvetWarning)]
    assert not chatter, [f"{w.category.__name__}: {w.message}" for w in chatter]
    assert expected != INVALID, f"an invalid input was accepted: {result!r:.200}"
    if expected == EITHER:
        count("either: result")
    return result


def judged(*verdicts):
    """One verdict from those of a case's parts: invalid if any part is, valid if all are."""
    if INVALID in verdicts:
        return INVALID
    return VALID if all(verdict == VALID for verdict in verdicts) else EITHER


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request):
    """Print how many fuzz cases ran, and with which outcome, when the module ends."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"fuzz cases run: {sum(OUTCOMES.values())}"]
    for (target, outcome), count in sorted(OUTCOMES.items()):
        lines.append(f"  {target:<22} {outcome:<12} {count:5d}")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:  # pragma: no cover - without the terminal plugin
            print(line)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A directory for the files each example writes (overwritten example by example)."""
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------------ FITS frames


HOSTILE_KEYWORDS = (
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "NAXIS3",
    "EXTEND",
    "BZERO",
    "BSCALE",
    "BLANK",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "TFIELDS",
    "GROUPS",
    "ZNAXIS",
    "ZIMAGE",
    "CTYPE1",
    "CRPIX1",
    "CRVAL2",
    "CDELT1",
    "CD1_1",
    "PC1_1",
    "EXTNAME",
    "END",
)
HOSTILE_VALUES = (
    "0",
    "-1",
    "1",
    "2",
    "3",
    "8",
    "16",
    "-32",
    "-64",
    "17",
    "999",
    "1000",
    "99999999",
    "1099511627776",
    "-1099511627776",
    "1e400",
    "-1e-400",
    "NaN",
    "T",
    "F",
    "''",
    "'IMAGE   '",
    "'BINTABLE'",
    "'RA---TAN'",
    "'abc'",
    "(1.0, 2.0)",
    "x",
)


PIXELS_START = 2880  # the primary HDU's pixels follow its one header block
PIXELS_END = PIXELS_START + SHAPE[0] * SHAPE[1] * 4  # big-endian float32


def pixels_of(data):
    """The primary image as stored in the bytes of a (mutated) copy of `VALID_FITS`."""
    return np.frombuffer(bytes(data[PIXELS_START:PIXELS_END]), ">f4").reshape(SHAPE)


class FitsBytes:
    """A generated file and what it is by construction (VALID, INVALID or EITHER); the
    repr stays short."""

    def __init__(self, data, expected, how=""):
        self.data, self.expected, self.how = data, expected, how

    def __repr__(self):
        return f"FitsBytes(<{len(self.data)} bytes>, {self.expected!r}, {self.how!r})"


def random_mutation(draw, data):
    """One mutation anywhere: flipped bits, a cut, a hostile card, spliced junk, a lost block."""
    kind = draw(st.sampled_from(["flip", "truncate", "card", "splice", "drop_block"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "card":
        offsets = [o for o in HEADER_CARD_OFFSETS if o + 80 <= len(data)]
        if offsets:
            offset = draw(st.sampled_from(offsets))
            keyword = draw(st.sampled_from(HOSTILE_KEYWORDS))
            value = draw(st.sampled_from(HOSTILE_VALUES))
            data[offset : offset + 80] = hostile_card(keyword, value).encode().ljust(80)
    elif kind == "splice":
        start = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=160))
        data[start : start + len(junk)] = junk
    else:  # drop a whole 2880-byte block: headers and data no longer line up
        block = draw(st.integers(0, max(0, len(data) // 2880 - 1)))
        del data[block * 2880 : (block + 1) * 2880]
    return data


@st.composite
def mutated_fits(draw):
    """`VALID_FITS` mutated in one of three ways, a third of the cases each:

    - bits flipped and junk spliced only among the primary image's pixels: valid, and the
      image read must be those pixels;
    - cut short before the primary image ends: invalid (a truncated file);
    - one to three random mutations anywhere: either.
    """
    data = bytearray(VALID_FITS)
    target = draw(st.sampled_from([INVALID, EITHER, VALID]))
    if target == VALID:
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(PIXELS_START, PIXELS_END - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
        if draw(st.booleans()):
            junk = draw(st.binary(min_size=1, max_size=160))
            start = draw(st.integers(PIXELS_START, PIXELS_END - len(junk)))
            data[start : start + len(junk)] = junk
        return FitsBytes(bytes(data), VALID, "pixels changed")
    if target == INVALID:
        return FitsBytes(bytes(data[: draw(st.integers(0, PIXELS_END - 1))]), INVALID, "cut")
    for _ in range(draw(st.integers(1, 3))):
        if data:
            data = random_mutation(draw, data)
    return FitsBytes(bytes(data), EITHER, "mutated")


def check_frame(frame):
    """Invariants of every frame rbvet returns."""
    assert frame.image.ndim == 2 and min(frame.image.shape) > 0
    assert frame.image.dtype == np.float32 and frame.image.dtype.isnative
    assert frame.image.flags.c_contiguous
    assert frame.mask.dtype == bool and frame.mask.shape == frame.image.shape
    assert frame.mask[~np.isfinite(frame.image)].all(), "a non-finite pixel is not masked"
    assert not frame.mask.all(), "a frame with no usable pixel was returned"


@reaches(valid=100, invalid=20)
@cases(400)
@given(case=mutated_fits())
@example(case=FitsBytes(HUGE_NAXIS, INVALID, "huge NAXIS"))
@example(case=FitsBytes(HUGE_NAXIS_IN_EXTENSION, INVALID, "huge NAXIS in the mask HDU"))
@example(case=FitsBytes(UNPARSABLE_NAXIS, INVALID, "unparsable NAXIS"))
@example(case=FitsBytes(BITPIX_REPLACED_BY_SIMPLE, INVALID, "no BITPIX"))
@example(case=FitsBytes(VALID_FITS[: len(VALID_FITS) // 2], INVALID, "cut"))
@example(case=FitsBytes(VALID_FITS[:2880], INVALID, "header only"))
def test_read_frame_of_mutated_fits(scratch, case):
    path = scratch / "mutated.fits"
    path.write_bytes(case.data)
    frame = outcome_of(case.expected, read_frame, path, path=path)
    if frame is None:
        return
    check_frame(frame)
    if case.expected == VALID:
        np.testing.assert_array_equal(frame.image, pixels_of(case.data))
        np.testing.assert_array_equal(frame.mask, ~np.isfinite(frame.image))
        count("valid: checked")


@reaches(invalid=250)
@cases(300)
@given(
    data=st.one_of(
        st.binary(max_size=6000),
        st.binary(max_size=6000).map(lambda b: b"SIMPLE  =                    T" + b),
        st.binary(max_size=3000).map(lambda b: VALID_FITS[:2880] + b),
    ),
    name=st.sampled_from(["random.fits", "random.fits.gz", "random.fz", "random"]),
)
@example(data=b"", name="random.fits")
@example(data=b"PK\x03\x04", name="random.fits")  # a zip signature: BadZipFile escaped
@example(data=b"\x1f\x8b\x08\x00garbage", name="random.fits.gz")
@example(data=gzip.compress(HUGE_NAXIS_IN_EXTENSION), name="random.fits.gz")  # gzipped
def test_read_frame_refuses_random_bytes(scratch, data, name):
    """Random bytes, a FITS start then random bytes, a header and too little data: none
    is a FITS file, so every case is invalid by construction."""
    path = scratch / name
    path.write_bytes(data)
    outcome_of(INVALID, read_frame, path, path=path)


FITS_DTYPES = (">f4", "<f4", ">f8", "<f8", ">i2", "<i4", ">i8", "u1", "i1", ">u2", "<u4")
FINITE_OR_NOT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-1e300, max_value=1e300),
    st.integers(-(2**15), 2**15),
)


@dataclass
class FitsLayout:
    """The structure of a test FITS file; its repr is a readable falsifying example."""

    data: np.ndarray
    in_extension: bool = False
    cards: dict = field(default_factory=dict)  # BSCALE, BZERO, BLANK on the image
    table: str = "none"  # the table HDU: "none", "before", "after" the image, or "only"

    def hdus(self):
        """The HDUList this layout describes."""
        image = (fits.ImageHDU if self.in_extension else fits.PrimaryHDU)(self.data)
        if self.in_extension:
            image.name = "SCI"
        for keyword, value in self.cards.items():
            image.header[keyword] = value
        table = fits.BinTableHDU(Table({"a": np.arange(3.0), "x": [1.0, 2.0, 3.0]}), name="CAT")
        if self.table == "only":
            return fits.HDUList([fits.PrimaryHDU(), table])
        hdus = [fits.PrimaryHDU(), image] if self.in_extension else [image]
        if self.table == "before":
            hdus.insert(1, table)
        elif self.table == "after":
            hdus.append(table)
        return fits.HDUList(hdus)

    def image_index(self, hdu):
        """Index of the HDU `read_frame` must read for ``hdu``, or None when there is
        none: no HDU of that index or name, a table, or no 2-D image (a leading axis of
        length 1 aside)."""
        shape = squeezed(self.data.shape)
        if self.table == "only" or len(shape) != 2 or min(shape) == 0:
            return None
        index = (2 if self.table == "before" else 1) if self.in_extension else 0
        table_index = {"before": 1, "after": index + 1}.get(self.table)
        named = {"SCI": index if self.in_extension else None, "CAT": table_index}
        wanted = named.get(hdu) if isinstance(hdu, str) else hdu
        return index if hdu is None or wanted == index else None


def squeezed(shape):
    """``shape`` without its leading axes of length 1, down to two axes."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


@st.composite
def fits_layouts(draw):
    """A FITS file of some structure: image in the primary or an extension, tables,
    cubes, 1-D, zero-size, BZERO/BSCALE/BLANK integers, big- or little-endian data."""
    dtype = np.dtype(draw(st.sampled_from(FITS_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7))
    if draw(st.booleans()):
        shape = (1,) * draw(st.integers(0, 2)) + draw(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9)
        )
    with np.errstate(all="ignore"):
        values = draw(hnp.arrays(np.float64, shape, elements=FINITE_OR_NOT))
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.nan_to_num(values, nan=0, posinf=info.max, neginf=info.min)
            data = np.clip(values, info.min, info.max).astype(dtype)
        else:
            data = values.astype(dtype)
    cards = {}
    if dtype.kind == "i" and draw(st.booleans()):
        cards["BSCALE"] = draw(st.sampled_from([1.0, 0.5, -2.0, 0.0, 1e30]))
        cards["BZERO"] = draw(st.sampled_from([0.0, 10.0, -32768.0, 1e30]))
    if dtype.kind == "i" and draw(st.booleans()):
        cards["BLANK"] = int(data.flat[0]) if data.size else 0
    return FitsLayout(
        data=data,
        in_extension=draw(st.booleans()),
        cards=cards,
        table=draw(st.sampled_from(["none", "before", "after", "only"])),
    )


def expected_image(path, index):
    """The image as the FITS standard defines it, computed here in float64: stored values
    times BSCALE plus BZERO, NaN where the stored integer equals BLANK."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, do_not_scale_image_data=True) as opened:
            header = opened[index].header
            stored = np.asarray(opened[index].data)
            bscale, bzero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
            blank = header.get("BLANK") if header["BITPIX"] > 0 else None
    with np.errstate(over="ignore", invalid="ignore"):
        values = stored.astype(np.float64) * bscale + bzero
        if blank is not None:
            values[stored == blank] = np.nan
        return values.astype(np.float32)


@reaches(valid=30, invalid=100)
@cases(300)
@given(layout=fits_layouts(), hdu_choice=st.sampled_from([None, None, 0, 1, "SCI", "CAT", 7]))
# float64 beyond the float32 range: the cast warned (now inf, masked)
@example(layout=FitsLayout(np.full((2, 3), -1e300)), hdu_choice=None)
# BLANK applies to stored integers: int8 is stored as uint8 - 128, and BLANK = 0 was
# compared with the data after the offset, or ignored by astropy
@example(layout=FitsLayout(np.array([[0, 1]], np.int8), cards={"BLANK": 0}), hdu_choice=None)
@example(
    layout=FitsLayout(np.array([[0, 1]], ">i2"), cards={"BSCALE": 0.5, "BZERO": 10.0, "BLANK": 0}),
    hdu_choice=None,
)
@example(
    layout=FitsLayout(np.array([[0, 7]], ">u2"), cards={"BLANK": 7}, in_extension=True),
    hdu_choice="SCI",
)
def test_read_frame_of_any_layout_gives_the_image_or_a_clear_error(scratch, layout, hdu_choice):
    path = scratch / "layout.fits"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layout.hdus().writeto(path, overwrite=True)
    except (ValueError, TypeError, OSError, KeyError):  # astropy cannot write this case
        reject()
    index = layout.image_index(hdu_choice)
    expected = None
    if index is not None:
        expected = expected_image(path, index).reshape(squeezed(layout.data.shape))
    usable = expected is not None and np.isfinite(expected).any()
    frame = outcome_of(VALID if usable else INVALID, read_frame, path, hdu=hdu_choice, path=path)
    if frame is None:
        return
    check_frame(frame)
    assert frame.hdu == index
    np.testing.assert_allclose(frame.image, expected, rtol=1e-6)  # float32 vs 64 scaling
    np.testing.assert_array_equal(frame.mask, ~np.isfinite(expected))
    count("valid: checked")


ODD_MASKS = ("ragged", "text", "complex")  # not a mask at all: invalid whatever the image


def mask_for(spec, shape):
    """The mask of a spec: None, a usable one, a full one, or not a mask at all."""
    rows, cols = np.indices(shape) if len(shape) == 2 else (np.zeros(shape),) * 2
    return {
        None: None,
        "zeros": np.zeros(shape, bool),
        "checker": (rows + cols) % 2 == 0,
        "ragged": [[0, 1], [0]],
        "text": np.full(shape, "bad"),
        "complex": np.zeros(shape, complex),
        "nan": np.full(shape, np.nan),
        "ones": np.ones(shape, np.int8),
    }[spec]


def expected_frame(image, mask, noise):
    """``(image, mask)`` a valid call of `frame_from_array` must give, computed here from
    the contract, or None when the call is invalid (not a real 2-D numeric image, a mask
    or noise that is not one, or no usable pixel). ``object`` images give EITHER."""
    if isinstance(image, list) or isinstance(mask, list):
        return None  # ragged or text lists
    values = np.asarray(image)
    if values.dtype.kind == "O":
        return EITHER
    if values.dtype.kind not in "biuf" or values.ndim != 2 or values.size == 0:
        return None
    if mask is not None and np.asarray(mask).dtype.kind not in "biuf":
        return None
    noise_values = np.asarray(noise, dtype=complex if noise is not None else None)
    if noise is not None and (noise_values.imag.any() or noise_values.ndim not in (0, 2)):
        return None
    if noise is not None and noise_values.ndim == 2 and noise_values.shape != values.shape:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        pixels = np.ma.getdata(values).astype(np.float32)
        bad = ~np.isfinite(pixels) | np.ma.getmaskarray(image)
        if mask is not None:
            bad |= np.asarray(mask) != 0
        if noise is not None:
            sigma = np.broadcast_to(noise_values.real.astype(np.float32), values.shape)
            bad |= ~(np.isfinite(sigma) & (sigma > 0))
    return None if bad.all() else (pixels, bad)


@reaches(valid=25, invalid=100)
@cases(300)
@given(
    image=st.one_of(
        hnp.arrays(  # mostly fine: 2-D, real numbers of many kinds
            st.sampled_from(["f4", ">f8", "i2", "u1", "bool", "i8", "f2"]),
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
            elements=None,
        ),
        hnp.arrays(
            st.sampled_from(["f4", ">f8", "i2", "u1", "bool", "c8", "i8", "f2"]),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
            elements=None,
        ),
        st.just([[1, 2], [3]]),
        st.just([["a", "b"], ["c", "d"]]),
        st.just(np.ma.masked_array(np.ones((3, 4)), mask=np.eye(3, 4, dtype=bool))),
        st.just(np.full((4, 4), np.nan)),
        st.just(np.array([[np.datetime64("2020-01-01")]])),
        st.just(np.zeros((3, 3), dtype=object)),
    ),
    noise=st.one_of(
        st.none(),
        st.floats(1e-3, 1e3),
        FINITE_OR_NOT,
        st.just(np.zeros((2, 2))),
        st.just(np.full((2, 2), 3.0)),
        st.just(1j),
    ),
    mask=st.sampled_from([None, "zeros", "checker", "ragged", "text", "complex", "nan", "ones"]),
)
@example(image=np.zeros((1, 1), np.complex64), noise=None, mask=None)  # imaginary part dropped
@example(image=np.ones((2, 2)), noise=np.full((2, 2), 1e300), mask=None)  # beyond float32
@example(image=np.ones((2, 2)), noise=None, mask="ragged")  # numpy's ValueError escaped
@example(image=np.array([["2020-01-01"]], "M8[D]"), noise=None, mask=None)  # dates as pixels
def test_frame_from_array_with_odd_arrays(image, noise, mask):
    mask = mask_for(mask, np.shape(image) if not isinstance(image, list) else (2, 2))
    expected = expected_frame(image, mask, noise)
    verdict = EITHER if expected is EITHER else (INVALID if expected is None else VALID)
    frame = outcome_of(
        verdict,
        lambda: frame_from_array(image, mask=mask, noise=noise, path="memory.fits"),
        path="memory.fits",
    )
    if frame is None:
        return
    check_frame(frame)
    if verdict == VALID:
        pixels, bad = expected
        np.testing.assert_array_equal(frame.image, pixels)
        np.testing.assert_array_equal(frame.mask, bad)
        count("valid: checked")


# --------------------------------------------------------------------------- catalogs


POSITION_PAIRS = (
    ("x", "y", 0),
    ("X_IMAGE", "Y_IMAGE", 1),
    ("XWIN_IMAGE", "YWIN_IMAGE", 1),
    ("xcentroid", "ycentroid", 0),
    ("XCENTER", "YCENTER", 1),
    ("ra", "dec", None),
    ("ALPHA_J2000", "DELTA_J2000", None),
    (None, None, None),
)
POSITION_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-20.0, 60.0),
    st.sampled_from([0.0, -0.5, 47.49, 47.5, 1e308, -1e308, 1e20, 150.0, 2.0, 90.0, -91.0]),
)
PRINTABLE = st.text(  # no '#' or quotes: CSV would read them as comments or quoting
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='#"'),
    max_size=10,
)
COLUMN_KINDS = ("float",) * 5 + (  # mostly numbers: the invariants on positions get checked
    "int",
    "text",
    "numeric text",
    "sexagesimal",
    "bool",
    "masked",
    "2-D",
)


def position_column(draw, kind, n):
    """A column of ``n`` values of some kind, hostile or not."""
    if kind == "float":
        return np.array(draw(st.lists(POSITION_VALUES, min_size=n, max_size=n)), np.float64)
    if kind == "int":
        values = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
        return np.array(values, np.int64)
    if kind == "text":
        return np.array(draw(st.lists(PRINTABLE, min_size=n, max_size=n)) or [""][:n], str)
    if kind == "numeric text":
        values = draw(st.lists(POSITION_VALUES, min_size=n, max_size=n))
        return np.array([repr(v) for v in values] or [""][:n], str)
    if kind == "sexagesimal":
        parts = st.tuples(st.integers(-99, 99), st.integers(0, 70), st.floats(0, 70, width=16))
        values = draw(st.lists(parts, min_size=n, max_size=n))
        return np.array([f"{d:+03d}:{m:02d}:{s:05.2f}" for d, m, s in values] or [""][:n], str)
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    if kind == "masked":
        values = draw(st.lists(POSITION_VALUES, min_size=n, max_size=n))
        mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return MaskedColumn(np.array(values, np.float64), mask=mask)
    return np.zeros((n, 2))  # "2-D": a vector column


@st.composite
def hostile_catalogs(draw):
    """``(table, format, pair, kinds)``: a catalog with missing, mistyped, duplicated or
    non-finite positions, written as ECSV, CSV or a FITS table."""
    n = draw(st.integers(0, 8))
    x_name, y_name, origin = draw(st.sampled_from(POSITION_PAIRS))
    columns, kinds = {}, {}
    for name in (x_name, y_name):
        if name is None or draw(st.integers(0, 19)) == 0:  # sometimes one is missing
            continue
        kinds[name] = draw(st.sampled_from(COLUMN_KINDS))
        columns[name] = position_column(draw, kinds[name], n)
    columns["flux"] = np.array(draw(st.lists(POSITION_VALUES, min_size=n, max_size=n)))
    if draw(st.booleans()):
        flag_kind = draw(st.sampled_from(["int", "float", "text"]))
        columns["FLAGS"] = position_column(draw, flag_kind, n)
    if draw(st.booleans()):
        columns["FWHM_IMAGE"] = position_column(draw, draw(st.sampled_from(COLUMN_KINDS)), n)
    table = Table(columns)
    if n and draw(st.booleans()):  # duplicated rows
        rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))
        table = Table(table[list(range(n)) + rows], masked=False)
    file_format = draw(st.sampled_from(["ecsv", "csv", "fits"]))
    return table, file_format, (x_name, y_name, origin), kinds


def write_table(table, path, file_format):
    """Write a catalog as the test asks, or reject the example if astropy cannot."""
    formats = {"ecsv": "ascii.ecsv", "csv": "ascii.csv", "fits": "fits"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table.write(path, format=formats[file_format], overwrite=True)
    except (ValueError, TypeError, KeyError, OSError, NotImplementedError):
        reject()


FRAME_WITH_WCS = frame_from_array(star_image()[0], header=tan_header())
FRAME_WITHOUT_WCS = frame_from_array(star_image()[0])


@reaches(valid=30, invalid=100)
@cases(300)
@given(catalog=hostile_catalogs(), with_wcs=st.booleans(), with_frame=st.booleans())
@example(  # strings where numbers belong
    catalog=(Table({"x": ["a", "b"], "y": [1.0, 2.0]}), "ecsv", ("x", "y", 0), {"x": "text"}),
    with_wcs=False,
    with_frame=True,
)
@example(  # RA/Dec and no WCS
    catalog=(Table({"ra": [150.0], "dec": [2.0]}), "fits", ("ra", "dec", None), {}),
    with_wcs=False,
    with_frame=True,
)
@example(  # positions at +-inf, duplicated rows
    catalog=(
        Table({"X_IMAGE": [np.inf, -np.inf, 3.0, 3.0], "Y_IMAGE": [1.0, 2.0, np.nan, np.nan]}),
        "fits",
        ("X_IMAGE", "Y_IMAGE", 1),
        {"X_IMAGE": "float", "Y_IMAGE": "float"},
    ),
    with_wcs=True,
    with_frame=True,
)
def test_read_catalog_of_hostile_tables(scratch, catalog, with_wcs, with_frame):
    table, file_format, (x_name, y_name, origin), kinds = catalog
    path = scratch / f"hostile.{file_format}"
    write_table(table, path, file_format)
    frame = (FRAME_WITH_WCS if with_wcs else FRAME_WITHOUT_WCS) if with_frame else None
    verdict = catalog_verdict(len(table), x_name, y_name, origin, kinds, with_wcs and with_frame)
    result = outcome_of(verdict, read_catalog, path, frame, path=path)
    if result is None:
        return
    assert len(result) == len(table) > 0
    for name in ("x", "y"):
        assert result[name].dtype == np.float64 and result[name].ndim == 1
    if verdict != VALID:
        return
    with warnings.catch_warnings():  # the values as the file holds them, read by astropy
        warnings.simplefilter("ignore")
        written = Table.read(path)
    ra, dec = (as_numbers(written[name]) for name in (x_name, y_name))
    if origin is not None:
        np.testing.assert_array_equal(result["x"], ra - origin)
        np.testing.assert_array_equal(result["y"], dec - origin)
    else:
        check_sky_positions(result, ra, dec)
    count("valid: checked")


def catalog_verdict(n, x_name, y_name, origin, kinds, has_wcs):
    """What reading a generated catalog must do: rows, a position pair of numbers (a
    pixel pair, or RA/Dec with a WCS) are valid; no rows, a missing column, RA/Dec without
    a WCS, booleans, vectors or dates in a pixel column are invalid; free text may be
    numbers or not."""
    if n == 0 or x_name not in kinds or y_name not in kinds:
        return INVALID
    if origin is None and not has_wcs:
        return INVALID
    numeric = {"float", "int", "masked", "numeric text"}
    hostile = {"bool", "2-D"} | ({"sexagesimal"} if origin is not None else set())
    return judged(
        *(
            INVALID if kind in hostile else VALID if kind in numeric else EITHER
            for kind in (kinds[x_name], kinds[y_name])
        )
    )


def as_numbers(column):
    """A column's values as float64, masked values as NaN."""
    return np.ma.filled(np.ma.asarray(column).astype(np.float64), np.nan)


def check_sky_positions(result, ra, dec):
    """Rows without a valid sky position have NaN pixels; the others map back through the
    frame's WCS to where they were (RA modulo 360)."""
    wcs = FRAME_WITH_WCS.wcs
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    assert np.isnan(result["x"][~good]).all() and np.isnan(result["y"][~good]).all()
    mapped = good & np.isfinite(result["x"]) & (np.abs(ra) < 1e6)
    if mapped.any():
        back_ra, back_dec = wcs.pixel_to_world_values(result["x"][mapped], result["y"][mapped])
        turn = np.abs((back_ra - ra[mapped] + 180.0) % 360.0 - 180.0)
        np.testing.assert_allclose(turn, 0.0, atol=1e-6)
        np.testing.assert_allclose(back_dec, dec[mapped], atol=1e-6)


VALID_ECSV = Table({"x": [10.3, 30.7, 20.1], "y": [9.6, 12.2, 27.9], "flux": [1.0, 2.0, 3.0]})


def catalog_bytes(table, kind):
    """The bytes of ``table`` written as ``kind``: "ecsv", "csv" or "fits"."""
    if kind == "fits":
        buffer = io.BytesIO()
        table.write(buffer, format="fits")
        return buffer.getvalue()
    buffer = io.StringIO()
    table.write(buffer, format=f"ascii.{kind}")
    return buffer.getvalue().encode()


VALID_CATALOG_TEXT = {kind: catalog_bytes(VALID_ECSV, kind) for kind in ("ecsv", "csv", "fits")}


def hostile_card(keyword, value):
    """An 80-character header card, or END."""
    return "END" if keyword == "END" else f"{keyword:<8}= {value:>20}"


FITS_CATALOG_END = 2 * 2880 + len(VALID_ECSV) * 3 * 8  # two headers, then 3 rows of 3 doubles


def flip_bit(data, where):
    """``data`` with the lowest bit of the byte at fraction ``where`` of it flipped."""
    data = bytearray(data)
    data[int(where * (len(data) - 1))] ^= 1
    return bytes(data)


HOSTILE_CARDS = st.tuples(st.sampled_from(HOSTILE_KEYWORDS), st.sampled_from(HOSTILE_VALUES))


class CatalogBytes:
    """A catalog file's bytes, its name's suffix and what it is by construction."""

    def __init__(self, data, suffix, expected, how="", table=None):
        self.data, self.suffix, self.expected, self.how = data, suffix, expected, how
        self.table = VALID_ECSV if table is None else table  # what a valid file holds

    def __repr__(self):
        size = f"<{len(self.data)} bytes>"
        return f"CatalogBytes({size}, {self.suffix!r}, {self.expected!r}, {self.how!r})"


@st.composite
def mutated_catalogs(draw):
    """One of the valid catalogs (ECSV, CSV, FITS) under some name, then:

    - left as it is: valid when the name does not claim another format (a text catalog
      named ``.fits``, or a FITS one named ``.ecsv``/``.csv``, is invalid);
    - a FITS catalog cut short before its rows end: invalid;
    - flipped bits, a hostile header card, a cut and junk: either.
    """
    kind = draw(st.sampled_from(sorted(VALID_CATALOG_TEXT)))
    suffix = draw(st.sampled_from([".ecsv", ".csv", ".fits", ".cat", ".txt", ""]))
    change = draw(st.sampled_from(["mutate", "cut", "none"]))
    if change == "none":  # a fresh catalog of finite positions in that format
        n = draw(st.integers(1, 5))
        values = st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)
        table = Table({name: np.array(draw(values)) for name in ("x", "y", "flux")})
        wrong_name = suffix == ".fits" if kind != "fits" else suffix in (".ecsv", ".csv")
        return CatalogBytes(
            catalog_bytes(table, kind), suffix, INVALID if wrong_name else VALID, "fresh", table
        )
    data = bytearray(VALID_CATALOG_TEXT[kind])
    if change == "cut":  # a FITS catalog cut before its rows end
        cut = draw(st.integers(0, FITS_CATALOG_END - 1))
        return CatalogBytes(VALID_CATALOG_TEXT["fits"][:cut], suffix, INVALID, "cut")
    card = draw(st.one_of(st.none(), st.tuples(st.integers(0, 71), HOSTILE_CARDS)))
    if card is not None and card[0] * 80 + 80 <= len(data):
        data[card[0] * 80 : card[0] * 80 + 80] = hostile_card(*card[1]).encode().ljust(80)
    for where, bit in draw(
        st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), max_size=6)
    ):
        data[int(where * (len(data) - 1))] ^= 1 << bit
    cut = draw(st.one_of(st.just(1.0), st.floats(0.0, 1.0)))
    data = bytes(data[: int(cut * len(data))]) + draw(st.binary(max_size=64))
    return CatalogBytes(data, suffix, EITHER, "mutated")


@reaches(valid=50, invalid=20)
@cases(300)
@given(case=mutated_catalogs())
@example(case=CatalogBytes(flip_bit(VALID_CATALOG_TEXT["fits"], 0.3), ".fits", EITHER, "flip"))
# A huge TFIELDS or NAXIS: astropy looped over them (hung for hours).
@example(
    case=CatalogBytes(
        with_card(VALID_CATALOG_TEXT["fits"], 43 * 80, hostile_card("TFIELDS", "1099511627776")),
        ".fits",
        INVALID,
        "huge TFIELDS",
    )
)
@example(
    case=CatalogBytes(
        with_card(VALID_CATALOG_TEXT["fits"], 2 * 80, hostile_card("NAXIS", "1099511627776")),
        "",
        INVALID,
        "huge NAXIS",
    )
)
def test_read_catalog_of_mutated_files(scratch, case):
    path = scratch / f"mutated{case.suffix}"
    path.write_bytes(case.data)
    result = outcome_of(case.expected, read_catalog, path, FRAME_WITHOUT_WCS, path=path)
    if result is None:
        return
    assert len(result) > 0
    assert result["x"].dtype == np.float64 and result["y"].dtype == np.float64
    if case.expected == VALID:
        for name in ("x", "y", "flux"):
            np.testing.assert_array_equal(result[name], case.table[name])
        count("valid: checked")


# -------------------------------------------------------------------- classification


@pytest.fixture(scope="module")
def tiny_model():
    """An untrained, very small network with Keras as the engine: fast to build and run."""
    from rbvet.core.model import RealBogusModel

    return RealBogusModel(tiny_network(), engine="keras")


IMAGE_KINDS = (
    "stars",
    "stars",
    "nan patch",
    "all nan",
    "constant",
    "inf",
    "int16",
    "big-endian",
    "tiny",
    "1-D",
    "3-D",
    "masked array",
    "huge values",
    "list",
    "strings",
)


@st.composite
def hostile_images(draw):
    """A science image: the star field, or the star field made hostile."""
    image, _, _ = star_image()
    kind = draw(st.sampled_from(IMAGE_KINDS))
    if kind == "nan patch":
        top, left = draw(st.integers(0, SHAPE[0] - 1)), draw(st.integers(0, SHAPE[1] - 1))
        image[top : top + draw(st.integers(1, 30)), left : left + draw(st.integers(1, 30))] = (
            np.nan
        )
    elif kind == "all nan":
        image[:] = np.nan
    elif kind == "constant":
        image[:] = draw(st.sampled_from([0.0, 1.0, -5.0]))
    elif kind == "inf":
        image[draw(st.integers(0, SHAPE[0] - 1)), :] = draw(st.sampled_from([np.inf, -np.inf]))
    elif kind == "int16":
        image = image.astype(np.int16)
    elif kind == "big-endian":
        image = image.astype(">f8")
    elif kind == "tiny":
        image = image[: draw(st.integers(1, 4)), : draw(st.integers(1, 4))]
    elif kind == "1-D":
        image = image[0]
    elif kind == "3-D":
        image = image[None]
    elif kind == "masked array":
        image = np.ma.masked_array(image, mask=image > 300)
    elif kind == "huge values":
        image = image.astype(np.float64) * 1e300
    elif kind == "list":
        image = image[:8, :8].tolist()
    elif kind == "strings":
        image = image.astype(str)
    return kind, image


OBJECT_DAMAGE = ("no y", "text x", "int x", "masked y", "float flags", "text flags", "int flags")


@st.composite
def hostile_objects(draw):
    """A catalog: the stars' positions mixed with hostile ones, duplicates, bad columns."""
    _, star_x, star_y = star_image()
    n_stars = draw(st.integers(0, len(star_x)))
    extra = draw(st.lists(st.tuples(POSITION_VALUES, POSITION_VALUES), max_size=6))
    x = np.concatenate([star_x[:n_stars], [p[0] for p in extra]])
    y = np.concatenate([star_y[:n_stars], [p[1] for p in extra]])
    if len(x) and draw(st.booleans()):  # duplicated rows
        rows = draw(st.lists(st.integers(0, len(x) - 1), min_size=1, max_size=4))
        x, y = np.append(x, x[rows]), np.append(y, y[rows])
    table = Table({"x": x, "y": y})
    damage = draw(
        st.sampled_from(("none",) * 3 + OBJECT_DAMAGE)  # mostly sane: deeper code is reached
    )
    if damage == "no y":
        del table["y"]
    elif damage == "text x":
        table["x"] = np.array([f"{v}" for v in x] or [""][:0], dtype=str)
    elif damage == "int x":
        table["x"] = np.clip(np.nan_to_num(x), -1e9, 1e9).astype(np.int64)
    elif damage == "masked y":
        table["y"] = MaskedColumn(y, mask=np.arange(len(y)) % 2 == 0)
    elif damage == "float flags":
        table["flags"] = np.zeros(len(x))
    elif damage == "text flags":
        table["flags"] = np.array(["0"] * len(x), dtype=str)
    elif damage == "int flags":
        table["flags"] = np.arange(len(x), dtype=np.int16)
    return HostileObjects(table, damage)


class HostileObjects:
    """A generated catalog and the damage done to it (see `OBJECT_VERDICTS`)."""

    def __init__(self, table, damage="none"):
        self.table, self.damage = table, damage

    def __repr__(self):
        return f"HostileObjects({self.table.colnames}, {len(self.table)} rows, {self.damage!r})"


OBJECT_VERDICTS = {  # damage -> verdict (without / with flag_bogus)
    "none": (VALID, VALID),
    "no y": (INVALID, INVALID),
    "text x": (EITHER, EITHER),  # numbers written as text: accepting them is a policy
    "int x": (VALID, VALID),
    "masked y": (VALID, VALID),
    "float flags": (VALID, INVALID),  # the bogus bit needs integer flags
    "text flags": (VALID, INVALID),
    "int flags": (VALID, VALID),
}
IMAGE_VERDICTS = {
    "stars": VALID,
    "nan patch": VALID,
    "all nan": INVALID,
    "constant": EITHER,  # no noise to measure
    "inf": VALID,
    "int16": VALID,
    "big-endian": VALID,
    "tiny": EITHER,  # smaller than a background box
    "1-D": INVALID,
    "3-D": INVALID,
    "masked array": VALID,
    "huge values": INVALID,  # beyond float32: every pixel unusable
    "list": EITHER,
    "strings": EITHER,
}
MAP_VERDICTS = {  # spec -> (as background, as noise)
    None: (VALID, VALID),
    0.0: (VALID, INVALID),
    -1.0: (VALID, INVALID),
    5.0: (VALID, VALID),
    100.0: (VALID, VALID),
    "zeros map": (VALID, INVALID),
    "noisy map": (VALID, VALID),
    "wrong shape": (INVALID, INVALID),
    "nan map": (INVALID, INVALID),
}
MASK_VERDICTS = {
    None: VALID,
    "none masked": VALID,
    "int mask": VALID,
    "all masked": INVALID,
    "wrong shape": INVALID,
}
FWHM_VERDICTS = {None: VALID, 2.5: VALID, 0.0: VALID, -1.0: VALID, 40.0: VALID, "3": EITHER}
THRESHOLD_VERDICTS = {0.0: VALID, 0.5: VALID, 1.0: VALID}


def map_verdict(spec, which):
    """A background (0) or noise (1) map's verdict; NaN and inf are unusable everywhere."""
    if isinstance(spec, float) and not np.isfinite(spec):
        return INVALID
    return MAP_VERDICTS[spec][which]


def classify_verdict(obj, options, flag_bogus=False, empty=INVALID):
    """What `classify_realbogus`/`extract_cutouts` must do with this catalog and options:
    valid only if every part is, invalid if any part is (e.g. no rows, an image with no
    usable pixel, a NaN noise level, an infinite FWHM, a threshold outside [0, 1]).
    ``empty`` is the verdict on a catalog with no rows."""
    fwhm, threshold = options["fwhm"], options["threshold"]
    return judged(
        empty if len(obj.table) == 0 else VALID,
        OBJECT_VERDICTS[obj.damage][bool(flag_bogus)],
        IMAGE_VERDICTS[options["image_kind"]],
        map_verdict(options["bg"], 0),
        map_verdict(options["err"], 1),
        MASK_VERDICTS[options["mask"]],
        FWHM_VERDICTS.get(fwhm, INVALID if fwhm in (np.inf, 1e6, "wide") else EITHER)
        if not (isinstance(fwhm, float) and np.isnan(fwhm))
        else VALID,  # NaN: no rescaling, as in STDPipe
        THRESHOLD_VERDICTS.get(threshold, INVALID),
    )


MAP_VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, -1.0, 5.0, np.nan, np.inf, 100.0]),
    st.sampled_from(["zeros map", "nan map", "wrong shape", "noisy map"]),
)


def make_map(spec, shape):
    """A background/noise map from a spec: None, a scalar or a named map."""
    if spec is None or not isinstance(spec, str):
        return spec
    if spec == "wrong shape":
        return np.ones((3, 5))
    if len(shape) != 2:
        return np.ones((2, 2))
    return {
        "zeros map": np.zeros(shape),
        "nan map": np.full(shape, np.nan),
        "noisy map": np.random.default_rng(1).uniform(1, 10, shape),
    }[spec]


def same_values(a, b):
    """Arrays equal, NaN equal to NaN."""
    return np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True)


HOSTILE_OPTIONS = {
    "image": hostile_images(),  # (kind, image)
    "bg": MAP_VALUES,
    "err": MAP_VALUES,
    "mask": st.sampled_from(["none masked", "all masked", "wrong shape", "int mask"]),
    "fwhm": st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e6, 40.0, 150.0, "3", "wide"]),
    "threshold": st.sampled_from([0.0, 1.0, -0.1, np.nan, "half"]),
}
SANE_OPTIONS = {
    "bg": None,
    "err": None,
    "mask": None,
    "fwhm": None,
    "threshold": 0.5,
    "image_kind": "stars",
    "image": star_image()[0],
}


@st.composite
def classify_options(draw):
    """The star field and sane options, with at most two made hostile: one bad thing at a
    time reaches deeper into the code than many at once."""
    options = dict(SANE_OPTIONS, fwhm=draw(st.sampled_from([None, 2.5])))
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE_OPTIONS)), max_size=2)):
        if name == "image":
            options["image_kind"], options["image"] = draw(HOSTILE_OPTIONS[name])
        else:
            options[name] = draw(HOSTILE_OPTIONS[name])
    return options


@reaches(valid=100, invalid=60)
@cases(400)
@given(obj=hostile_objects(), options=classify_options(), flag_bogus=st.booleans())
# a float 'flags' column: `flags |= BOGUS_FLAG` raised a TypeError
@example(
    obj=HostileObjects(Table({"x": [0.0], "y": [0.0], "flags": [0.0]}), "float flags"),
    options=SANE_OPTIONS,
    flag_bogus=True,
)
# a position beyond the int64 range: the cast to a stamp index warned
@example(
    obj=HostileObjects(Table({"x": [0.0, 10.3], "y": [9.223372036854776e18, 9.6]})),
    options=SANE_OPTIONS,
    flag_bogus=False,
)
# a FWHM of 10^6 px: stamps of 10^7 px, a MemoryError
@example(
    obj=HostileObjects(Table({"x": [10.3], "y": [9.6]})),
    options=dict(SANE_OPTIONS, fwhm=1e6),
    flag_bogus=False,
)
# masked positions were scored at whatever value lay under the mask
@example(
    obj=HostileObjects(
        Table({"x": [10.3, 30.7], "y": MaskedColumn([9.6, 12.2], mask=[True, False])}),
        "masked y",
    ),
    options=SANE_OPTIONS,
    flag_bogus=False,
)
def test_classify_realbogus_with_hostile_input(tiny_model, obj, options, flag_bogus):
    from rbvet.realbogus import BOGUS_FLAG, classify_realbogus

    verdict = classify_verdict(obj, options, flag_bogus)
    obj = obj.table
    image, threshold = options["image"], options["threshold"]
    shape = np.shape(image)
    original = obj.copy()
    result = outcome_of(
        verdict,
        classify_realbogus,
        obj,
        image,
        model=tiny_model,
        bg=make_map(options["bg"], shape),
        err=make_map(options["err"], shape),
        mask=make_mask(options["mask"], shape),
        fwhm=options["fwhm"],
        threshold=threshold,
        flag_bogus=flag_bogus,
    )
    if result is None:
        return
    scores = np.asarray(obj["rb_score"], np.float64)
    reasons = np.asarray(obj["rb_reason"], str)
    assert len(obj) == len(original), "rows were added or dropped"
    for name in ("x", "y"):
        assert same_values(obj[name], original[name]), f"{name} changed"
    finite = np.isfinite(scores)
    assert np.all((scores[finite] >= 0) & (scores[finite] <= 1))
    assert np.array_equal(~finite, reasons != ""), "a NaN score without a reason, or vice versa"
    if flag_bogus:
        kept = scores >= float(threshold)
        assert len(result) == int(kept.sum())
        flagged = (np.asarray(obj["flags"]).astype(np.int64) & BOGUS_FLAG) != 0
        assert np.array_equal(flagged, ~kept)
    else:
        assert result is obj
    if verdict == VALID:
        x, y = positions_of(original)
        check_scorable_rows(x, y, shape, finite, reasons)
        check_duplicates_agree(x, y, scores)
        if is_sane_star_field(options):
            assert finite[: stars_in(original)].all(), "a star was not scored"
        count("valid: checked")


@reaches(valid=20, invalid=20)
@cases(100)
@given(obj=hostile_objects(), options=classify_options())
def test_extract_cutouts_with_hostile_input(obj, options):
    from rbvet.realbogus import extract_cutouts

    # Nothing to extract from an empty catalog: empty arrays, as in STDPipe.
    verdict = classify_verdict(obj, dict(options, threshold=0.5), empty=VALID)
    obj = obj.table
    image = options["image"]
    shape = np.shape(image)
    result = outcome_of(
        verdict,
        extract_cutouts,
        obj,
        image,
        bg=make_map(options["bg"], shape),
        err=make_map(options["err"], shape),
        mask=make_mask(options["mask"], shape),
        fwhm=options["fwhm"],
    )
    if result is None:
        return
    cutouts, valid = result
    assert cutouts.shape == (len(valid), 31, 31, 2) and cutouts.dtype == np.float32
    assert np.isfinite(cutouts).all(), "a scorable object has a non-finite input"
    assert np.all(np.diff(valid) > 0) and (len(valid) == 0 or 0 <= valid.min() <= valid.max())
    assert len(valid) <= len(obj)
    if verdict == VALID:
        x, y = positions_of(obj)
        scorable = np.zeros(len(obj), bool)
        scorable[valid] = True
        check_scorable_rows(x, y, shape, scorable)
        inputs = np.full((len(obj), 31 * 31 * 2), np.nan, np.float32)
        inputs[valid] = cutouts.reshape(len(valid), 31 * 31 * 2)
        check_duplicates_agree(x, y, inputs)
        if is_sane_star_field(options):
            assert scorable[: stars_in(obj)].all(), "a star has no cutout"
        count("valid: checked")


def make_mask(spec, shape):
    """A mask from a spec (see `MASK_VERDICTS`)."""
    return {
        None: None,
        "none masked": np.zeros(shape, bool),
        "all masked": np.ones(shape, bool),
        "wrong shape": np.zeros((2, 3), bool),
        "int mask": (np.arange(np.prod(shape)).reshape(shape) % 7 == 0).astype(int),
    }[spec]


def positions_of(table):
    """A catalog's x and y as float64, masked values as NaN."""
    return tuple(
        np.ma.filled(np.ma.asarray(table[name], dtype=np.float64), np.nan) for name in "xy"
    )


def check_scorable_rows(x, y, shape, scorable, reasons=None):
    """Rows whose position is not finite, or whose nearest pixel is off the image, are not
    scorable, and say why."""
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        on_image = (
            finite
            & (np.rint(x) >= 0)
            & (np.rint(x) < shape[1])
            & (np.rint(y) >= 0)
            & (np.rint(y) < shape[0])
        )
    assert not scorable[~on_image].any(), "an object off the image was scored"
    if reasons is not None:
        assert set(reasons[~finite]) <= {"non-finite position"}
        assert set(reasons[finite & ~on_image]) <= {"off frame"}


def check_duplicates_agree(x, y, values):
    """Rows at the same position get the same values (NaN equal to NaN)."""
    if len(x) == 0:
        return
    values = np.asarray(values).reshape(len(x), -1)  # x is not empty here
    _, first, which = np.unique(
        np.stack([x, y], axis=1), axis=0, return_index=True, return_inverse=True
    )
    assert same_values(values, values[first[which.ravel()]]), "duplicates scored differently"


def is_sane_star_field(options):
    """The star field at FWHM 2.5 px, nothing masked and no maps given: every star scores."""
    return (
        options["image_kind"] == "stars"
        and options["fwhm"] == 2.5
        and all(
            options[name] is None or options[name] == "none masked"
            for name in ("bg", "err", "mask")
        )
    )


def stars_in(table):
    """How many of a generated catalog's first rows are the star field's stars."""
    _, star_x, star_y = star_image()
    x, y = positions_of(table)
    n = 0
    while n < min(len(star_x), len(x)) and (x[n], y[n]) == (star_x[n], star_y[n]):
        n += 1
    return n


@reaches(valid=8)
@cases(8)
@given(
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    far=st.sampled_from([1e300, -9.3e18, np.inf, 0.0]),
)
@example(shape=(1, 1), far=0.0)  # a frame narrower than the S/N box: an IndexError
@example(shape=(64, 64), far=-9.3e18)  # beyond the int64 range: the index cast warned
def test_estimate_fwhm_with_many_positions_on_odd_frames(shape, far):
    """More than 3000 candidates take the cheap S/N ranking path of `estimate_fwhm`."""
    from rbvet.core.detect.psf import DEFAULT_FWHM, estimate_fwhm

    rng = np.random.default_rng(0)
    frame = frame_from_array(rng.normal(100.0, 5.0, shape))
    x = rng.uniform(-1.0, shape[1], 3001)
    y = rng.uniform(-1.0, shape[0], 3001)
    x[:50], y[50:100] = far, far
    fwhm = outcome_of(VALID, estimate_fwhm, frame, x, y)
    assert fwhm == DEFAULT_FWHM  # pure noise: too few stars, the default
    count("valid: checked")


# ------------------------------------------------------------------ the window keeps state

WINDOW_TIMEOUT_MS = 300_000


def bad_inputs(directory):
    """Files a user might open by mistake, by kind: ``{name: (path, 'frame'|'catalog')}``."""
    table_only = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"x": [1.0]}))]).writeto(table_only)
    contents = {
        "truncated.fits": (VALID_FITS[: len(VALID_FITS) // 3], "frame"),
        "huge_naxis.fits": (HUGE_NAXIS, "frame"),
        "random.fits": (bytes(np.random.default_rng(3).integers(0, 256, 5000, np.uint8)), "frame"),
        "table_only.fits": (table_only.getvalue(), "frame"),
        "all_nan.fits": (None, "frame"),
        "no_positions.ecsv": (None, "catalog"),
        "huge_tfields.fits": (None, "catalog"),
    }
    paths = {}
    for name, (data, kind) in contents.items():
        path = directory / name
        if name == "all_nan.fits":
            fits.PrimaryHDU(np.full((32, 32), np.nan, np.float32)).writeto(path)
        elif name == "no_positions.ecsv":
            Table({"flux": [1.0, 2.0]}).write(path)
        elif name == "huge_tfields.fits":
            data = bytearray(VALID_CATALOG_TEXT["fits"])
            data[43 * 80 : 44 * 80] = hostile_card("TFIELDS", "1099511627776").encode().ljust(80)
            path.write_bytes(bytes(data))
        else:
            path.write_bytes(data)
        paths[name] = (path, kind)
    return paths


def window_showing_the_demo(qtbot, folder):
    """A shown main window (settings and label store under ``folder``) with the demo
    frame and its catalog classified; returns the window and the frame's path."""
    from PyQt6.QtCore import QSettings

    from rbvet.core.paths import demo_frame_path
    from rbvet.gui.main_window import MainWindow

    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, label_store_path=folder / "labels.sqlite")
    qtbot.addWidget(window)
    window.show()
    frame = demo_frame_path()
    with qtbot.waitSignal(window.classified, timeout=WINDOW_TIMEOUT_MS):
        window.open_frame(frame, frame.with_suffix(".ecsv"))
    return window, frame


def test_bad_files_after_a_good_one_keep_the_frame_and_its_labels(qtbot, tmp_path):
    """Open the demo, label a few objects, then open bad frames and bad catalogs: each
    shows its one-line message, and the frame, its labels and the labels on screen stay."""
    from rbvet.gui.state import BOGUS, REAL

    window, frame = window_showing_the_demo(qtbot, tmp_path)
    data = window.state.data
    window.state.set_labels([0, 1, 2], REAL)
    window.state.set_labels([3, 4], BOGUS)
    labels = data.labels.copy()
    shown = (window.windowTitle(), window.summary_label.text(), window.state.selected)

    for name, (path, kind) in bad_inputs(tmp_path).items():
        if kind == "catalog":  # a bad catalog for the frame that is open
            window.frame_path = str(frame)
        with qtbot.waitSignal(window.failed, timeout=WINDOW_TIMEOUT_MS) as failure:
            if kind == "frame":
                window.open_frame(path)
            else:
                window.open_catalog(path)
        message = failure.args[0]
        assert name in message and "\n" not in message, message
        assert window.error_banner.message == message
        assert window.state.data is data, f"{name}: the good frame was replaced"
        assert np.array_equal(data.labels, labels), f"{name}: the labels changed"
        assert (window.windowTitle(), window.summary_label.text(), window.state.selected) == shown
        count("invalid: refused", "window: bad files")
    window.close()


def test_a_catalog_opened_after_a_bad_frame_goes_with_the_frame_on_screen(qtbot, tmp_path):
    window, frame = window_showing_the_demo(qtbot, tmp_path)
    bad = tmp_path / "truncated.fits"
    bad.write_bytes(VALID_FITS[:3000])
    with qtbot.waitSignal(window.failed, timeout=WINDOW_TIMEOUT_MS):
        window.open_frame(bad)
    outcomes = []
    window.classified.connect(lambda: outcomes.append("classified"))
    window.failed.connect(outcomes.append)
    window.open_catalog(frame.with_suffix(".ecsv"))  # the catalog of the frame on screen
    qtbot.waitUntil(lambda: bool(outcomes), timeout=WINDOW_TIMEOUT_MS)
    window.close()
    assert outcomes == ["classified"]


# ------------------------------------------------------------------------ model files


PROBE = np.random.default_rng(0).normal(size=(4, 31, 31, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model_files(tmp_path_factory):
    """The tiny network saved as ``.keras`` and as ``.h5``: ``{suffix: bytes}``, and its
    scores on `PROBE` (what a model read back from those bytes must give)."""
    from rbvet.core.model import RealBogusModel, save_model

    network = tiny_network()
    directory = tmp_path_factory.mktemp("models")
    files = {}
    for suffix in (".keras", ".h5"):
        path = directory / f"tiny{suffix}"
        save_model(network, path)
        files[suffix] = path.read_bytes()
    return files, RealBogusModel(network, engine="keras").predict(PROBE)


def tiny_network():
    """A very small untrained network with the real input and output."""
    from rbvet.realbogus import create_realbogus_model

    return create_realbogus_model(filters=(4,), dense_units=4)


@reaches(valid=10, invalid=4)
@cases(60)
@given(
    suffix=st.sampled_from([".keras", ".h5"]),
    damage=st.sampled_from(["flipped", "cut", "none"]),
    cut=st.floats(0.0, 1.0, exclude_max=True),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=12),
)
def test_load_model_of_mutated_files(scratch, tiny_model_files, suffix, damage, cut, flips):
    """A model file as saved is valid and scores as the network did; one cut short is
    invalid; one with flipped bits may be either, and if it loads it still scores in [0, 1]."""
    from rbvet.core.model import load_model

    files, scores = tiny_model_files
    data = bytearray(files[suffix])
    if damage == "flipped":
        for where, bit in flips:
            data[int(where * (len(data) - 1))] ^= 1 << bit
    elif damage == "cut":
        data = data[: int(cut * len(data))]
    path = scratch / f"mutated{suffix}"
    path.write_bytes(bytes(data))
    expected = {"none": VALID, "cut": INVALID, "flipped": EITHER}[damage]
    model = outcome_of(expected, load_model, path, engine="keras", path=path)
    if model is None:
        return
    predicts = EITHER if damage == "flipped" else VALID
    predicted = outcome_of(predicts, model.predict, PROBE, path=path)
    if predicted is None:
        return
    assert np.all((predicted >= 0) & (predicted <= 1)), predicted
    if expected == VALID:
        np.testing.assert_allclose(predicted, scores, atol=1e-6)
        count("valid: checked")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_that_would_run_code_is_refused(tmp_path, suffix):
    """Keras' safe mode: a Lambda layer holding Python code is refused, and never run."""
    import keras

    from rbvet.core.model import load_model

    sentinel = tmp_path / "the_code_ran"
    marker = str(sentinel)  # the lambda's closure is saved with it: a plain string
    inputs = keras.Input((31, 31, 2))
    hidden = keras.layers.Lambda(lambda t: (open(marker, "w").close(), t)[1])(inputs)
    output = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(hidden)
    )
    path = tmp_path / f"lambda{suffix}"
    keras.Model(inputs, output).save(path)
    sentinel.unlink()  # building the model ran it once, here, on purpose
    with pytest.raises(RbvetError) as error:
        load_model(path)
    check_input_error(error.value, path)
    assert "Lambda" in str(error.value)
    assert not sentinel.exists()


def test_a_model_with_non_finite_weights_is_refused(tmp_path):
    from rbvet.core.model import load_model, save_model

    network = tiny_network()
    weights, bias = network.layers[-1].get_weights()
    network.layers[-1].set_weights([np.full_like(weights, np.nan), bias])
    path = tmp_path / "diverged.keras"
    with pytest.warns(RbvetWarning, match="NaN or infinite"):
        save_model(network, path)  # without an ONNX file, which would hide the NaNs
    with pytest.raises(RbvetError):
        load_model(path)
