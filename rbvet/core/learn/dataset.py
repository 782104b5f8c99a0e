"""The one training-set format: preprocessed inputs with labels, in memory and on disk.

A `TrainingSet` holds one row per labeled object: the preprocessed input (the
(31, 31, 2) two-channel representation the network takes), the label (1 real, 0 bogus) and,
when known, where the object came from (frame id, label source or simulated kind, the
frame's FWHM, its store id and 0-based position) and its raw stamp. The label store, the
simulator, training, retraining, evaluation and export all pass this one type around, and
`save_training_set` / `load_training_set` are the one way it is written and read.

On disk it is an uncompressed ``.npz`` with no pickled objects, so
``np.load(path)["X"], np.load(path)["y"]`` is all STDPipe's
``train_realbogus_classifier(training_data=(X, y))`` needs:

=========== ============================================= ===============
entry       contents                                      attribute
=========== ============================================= ===============
format      ``"rbvet-training-set/2"`` (`FORMAT`)
X           (N, S, S, 2) float32 inputs                   ``inputs``
y           (N,) int64: 1 real, 0 bogus                   ``labels``
groups      (N,) frame id (negative: simulated frames)    ``groups``
kinds       (N,) str: label source or simulated kind      ``kinds``
fwhm        (N,) float32: FWHM (px) of the frame          ``fwhm``
object_id   (N,) int64: label-store object id             ``object_ids``
x_pixel     (N,) float64: 0-based column                  ``x``
y_pixel     (N,) float64: 0-based row                     ``y``
stamps      (N, M, M) float32 raw stamps, NaN-padded      ``stamps``
backgrounds (N, M, M) float32 background under them       ``backgrounds``
noise       (N,) float32: noise σ of each stamp           ``noise``
stamp_size  (N,) int32: side of each stamp before padding ``stamp_size``
metadata    JSON string: preprocessing, frames, counts    ``metadata``
=========== ============================================= ===============

Only ``X`` and ``y`` are required. Older files still load: ``rbvet-training-set/1`` (the
same entries without ``format``) and the first layout (``inputs``, ``labels``, ``groups``,
``kinds``, ``fwhm``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.io.files import atomic_write, json_default

FORMAT = "rbvet-training-set/2"
"""Value of the ``format`` entry (and of ``metadata['format']``) of files written now."""
READABLE_FORMATS = ("rbvet-training-set/1", FORMAT)
SUFFIX = ".npz"

ENTRY_OF = {
    "inputs": "X",
    "labels": "y",
    "groups": "groups",
    "kinds": "kinds",
    "fwhm": "fwhm",
    "object_ids": "object_id",
    "x": "x_pixel",
    "y": "y_pixel",
    "stamps": "stamps",
    "backgrounds": "backgrounds",
    "noise": "noise",
    "stamp_size": "stamp_size",
}
"""The ``.npz`` entry of each per-object attribute of `TrainingSet`."""

OPTIONAL_NAMES = tuple(name for name in ENTRY_OF if name not in ("inputs", "labels"))

FIRST_LAYOUT = ("inputs", "labels", "groups", "kinds", "fwhm")
"""Entries of the first layout, written by the old ``TrainingSet.save`` (no ``X``/``y``)."""


@dataclass
class TrainingSet:
    """Labeled objects as preprocessed inputs, with what each one came from.

    Attributes
    ----------
    inputs : ndarray (N, S, S, 2) float32
        Preprocessed inputs (``X`` in STDPipe's words).
    labels : ndarray (N,) int8
        1 real, 0 bogus (``y``).
    groups : ndarray (N,) int, optional
        Frame of each object: the label store's frame id, negative for simulated frames.
        Held-out splits are drawn by group.
    kinds : ndarray (N,) str, optional
        The label's source ('human', 'model') or the simulated kind ('star', 'cosmic_ray').
    fwhm : ndarray (N,) float32, optional
        FWHM (px) of each object's frame.
    object_ids : ndarray (N,) int64, optional
        Label-store object ids.
    x, y : ndarray (N,) float64, optional
        0-based pixel positions in the frame.
    stamps, backgrounds : ndarray (N, M, M) float32, optional
        Raw science stamps and the background under them, NaN-padded to the largest
        stamp (``stamp_size`` gives each one's side).
    noise : ndarray (N,) float32, optional
        Noise σ of each stamp.
    stamp_size : ndarray (N,) int32, optional
    metadata : dict
        JSON-able description: preprocessing parameters, frames, counts.
    """

    inputs: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None
    kinds: np.ndarray | None = None
    fwhm: np.ndarray | None = None
    object_ids: np.ndarray | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    stamps: np.ndarray | None = None
    backgrounds: np.ndarray | None = None
    noise: np.ndarray | None = None
    stamp_size: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.inputs = np.asarray(self.inputs, dtype=np.float32)
        labels = np.asarray(self.labels).ravel()
        if self.inputs.ndim != 4 or self.inputs.shape[-1] != 2 or len(self.inputs) != len(labels):
            raise RbvetError(
                f"training inputs must be (N, size, size, 2) with N labels; got X "
                f"{self.inputs.shape} and {len(labels)} labels"
            )
        if not np.isin(labels, (0, 1)).all():
            raise RbvetError("training labels must be 0 (bogus) or 1 (real)")
        self.labels = labels.astype(np.int8)
        for name in OPTIONAL_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value)
            if len(value) != len(labels):
                raise RbvetError(f"training set: {len(value)} {name} for {len(labels)} objects")
            setattr(self, name, value.astype(str) if value.dtype.kind in "OSU" else value)
        self.metadata = dict(self.metadata or {})

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        """The objects at ``index`` (integer indices or a boolean mask), metadata copied."""
        arrays = {name: _take(getattr(self, name), index) for name in ENTRY_OF}
        return TrainingSet(**arrays, metadata=dict(self.metadata))

    @classmethod
    def concatenate(cls, parts, metadata=None):
        """One set from several; an attribute is kept only when every part has it.

        Stamps of different sizes are NaN-padded to the largest.
        """
        arrays = {}
        for name in ENTRY_OF:
            values = [getattr(part, name) for part in parts]
            if any(value is None for value in values):
                arrays[name] = None
            elif name in ("stamps", "backgrounds"):
                arrays[name] = _stack_padded(values)
            else:
                arrays[name] = np.concatenate(values)
        return cls(**arrays, metadata=metadata or {})


def _take(values, index):
    return None if values is None else values[index]


def _stack_padded(stamps):
    side = max(part.shape[-1] for part in stamps)
    out = np.full((sum(len(part) for part in stamps), side, side), np.nan, np.float32)
    start = 0
    for part in stamps:
        out[start : start + len(part), : part.shape[1], : part.shape[2]] = part
        start += len(part)
    return out


def as_training_set(data):
    """A `TrainingSet` from itself, ``(X, y)``, STDPipe's ``(X, y, fwhm)`` or a dict.

    As in STDPipe, only ``X`` and ``y`` of a tuple or dict are used: its other entries
    (STDPipe's ``fwhm`` of the frames before augmentation, its ``metadata`` list) need not
    line up with the samples.

    Raises
    ------
    RbvetError
        Anything else, or inputs and labels that do not fit together.
    """
    if isinstance(data, TrainingSet):
        return data
    if isinstance(data, dict) and "X" in data and "y" in data:
        return TrainingSet(inputs=data["X"], labels=data["y"])
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return TrainingSet(inputs=data[0], labels=data[1])
    raise RbvetError(
        "training data must be a TrainingSet, (X, y), (X, y, fwhm) or a dict with X and y"
    )


def save_training_set(data, path, metadata=None):
    """Write a training set as ``.npz`` (see the module notes for its entries).

    Parameters
    ----------
    data : TrainingSet, tuple or dict
        Anything `as_training_set` takes.
    path : str or Path
        Destination; must end in ``.npz``. Written atomically.
    metadata : dict, optional
        Added to the set's own metadata.

    Returns
    -------
    dict
        The metadata written (with ``format``, ``objects``, ``real``, ``bogus`` and
        ``input_shape`` added).
    """
    if Path(path).suffix.lower() != SUFFIX:
        raise RbvetError("a training set is written as .npz", path)
    data = as_training_set(data)
    info = {**data.metadata, **(metadata or {})}
    info.update(
        format=FORMAT,
        objects=len(data),
        real=int(np.sum(data.labels == 1)),
        bogus=int(np.sum(data.labels == 0)),
        input_shape=list(data.inputs.shape[1:]),
    )
    entries = {"format": np.array(FORMAT)}
    for name, entry in ENTRY_OF.items():
        value = getattr(data, name)
        if value is not None:
            entries[entry] = value
    entries["y"] = data.labels.astype(np.int64)  # plain integers for any reader
    entries["metadata"] = np.array(json.dumps(info, default=json_default))

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **entries)

    atomic_write(path, write)
    return info


def load_training_set(path):
    """Read a training set written by `save_training_set` (or by an older rbvet).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    TrainingSet
        ``metadata`` is the file's JSON metadata (empty for a plain ``X``/``y`` file).

    Raises
    ------
    RbvetError
        One line saying why: missing, not a ``.npz``, no inputs and labels, a format
        from a newer rbvet, or inputs and labels that do not fit together.
    """
    path = Path(path)
    if not path.exists():
        raise RbvetError("training set not found", path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy: one array
            raise ValueError("one array, not a .npz archive")
        with loaded:
            entries = {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RbvetError(
            f"not a training set (.npz): {type(error).__name__} {reason}"[:300], path
        ) from None
    return _from_entries(entries, path)


def _from_entries(entries, path=None):
    """A `TrainingSet` from the entries of a file, of any readable layout."""
    metadata = entries.pop("metadata", None)
    try:
        metadata = {} if metadata is None else dict(json.loads(str(metadata)))
    except (ValueError, TypeError):
        raise RbvetError("training set metadata is not a JSON object", path) from None
    version = str(entries.pop("format", metadata.get("format", "")))
    if version and version not in READABLE_FORMATS:
        raise RbvetError(
            f"training set format {version!r} is not one this rbvet reads "
            f"({', '.join(READABLE_FORMATS)}): a newer rbvet wrote it?",
            path,
        )
    if "X" in entries and "y" in entries:
        arrays = {name: entries.get(entry) for name, entry in ENTRY_OF.items()}
    elif "inputs" in entries and "labels" in entries:
        arrays = {name: entries.get(name) for name in FIRST_LAYOUT}
    else:
        raise RbvetError(
            "not a training set: it needs entries X and y (or inputs and labels); found "
            + (", ".join(sorted(entries)) or "none"),
            path,
        )
    try:
        return TrainingSet(**arrays, metadata=metadata)
    except RbvetError as error:
        raise RbvetError(error.problem, path) from None
