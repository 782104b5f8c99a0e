"""STDPipe-compatible real-bogus API, as thin wrappers over `rbvet.core`.

The names, signatures and meanings follow ``stdpipe.realbogus`` so existing scripts keep
working::

    from rbvet import realbogus
    obj = realbogus.classify_realbogus(obj, image, add_score=True, flag_bogus=False)
    print(obj['rb_score'])

Differences, all in the user's favour: objects near the edge are scored (padded) instead
of dropped; unscorable objects keep a NaN score and an ``rb_reason``; without ``bg``/
``err`` the background and noise are mapped with sep over the whole image instead of
guessed from each cutout's edge; large-FWHM cutouts are cut wide enough to fill the input
after rescaling; the model's card, not a global constant, sets the preprocessing; and
``load_realbogus_model()`` loads the model shipped with rbvet.
"""

from __future__ import annotations

import weakref

import numpy as np

from rbvet.core import classify as _classify
from rbvet.core import model as _model
from rbvet.core.classify import BOGUS_FLAG, SCORE_COLUMN  # noqa: F401  (public names)
from rbvet.core.cutouts.preprocess import (
    DEFAULT_ASINH_SOFTENING_SIGMA,
    TARGET_FWHM,
    PreprocessParams,
    plan_rescale,
    preprocess_stamps,
)
from rbvet.core.errors import RbvetError
from rbvet.core.jobs import run_job
from rbvet.core.paths import user_data_dir

DEFAULT_MODEL_DIR = str(user_data_dir() / "models")
DEFAULT_MODEL_NAME = "realbogus_default.keras"

__all__ = [
    "BOGUS_FLAG",
    "DEFAULT_ASINH_SOFTENING_SIGMA",
    "TARGET_FWHM",
    "classify_realbogus",
    "create_realbogus_model",
    "extract_cutouts",
    "load_realbogus_model",
    "preprocess_cutout",
    "save_realbogus_model",
    "train_realbogus_classifier",
]

# Keras models handed out by load_realbogus_model keep their card and fast engine here.
_WRAPPERS = weakref.WeakKeyDictionary()


def _logger(verbose):
    if callable(verbose):
        return verbose
    return print if verbose else (lambda *args, **kwargs: None)


def _wrap(model):
    """The RealBogusModel behind a Keras model (or the model itself if already wrapped)."""
    if isinstance(model, _model.RealBogusModel):
        return model
    wrapper = _WRAPPERS.get(model)
    if wrapper is None:
        wrapper = _model.RealBogusModel(model)
        _WRAPPERS[model] = wrapper
    return wrapper


def create_realbogus_model(
    input_shape=(31, 31, 2), filters=(32, 64, 128), dense_units=64, dropout_rate=0.5
):
    """Create the CNN real-bogus classifier (compiled Keras model).

    Parameters
    ----------
    input_shape : tuple
        (height, width, channels); height and width odd and equal, channels 2.
    filters : tuple of int
        Filters of each convolution block.
    dense_units : int
        Units of the dense layer.
    dropout_rate : float
        Dropout before the output.

    Returns
    -------
    keras.Model
    """
    return _model.create_model(input_shape, filters, dense_units, dropout_rate)


def preprocess_cutout(
    cutout_sci,
    cutout_bg=None,
    cutout_err=None,
    fwhm=None,
    target_fwhm=TARGET_FWHM,
    target_size=31,
    downscale_threshold=1.5,
    normalize=True,
    asinh_softening=None,
):
    """Preprocess one cutout into the (target_size, target_size, 2) CNN input.

    Parameters
    ----------
    cutout_sci : ndarray
        Science cutout.
    cutout_bg : ndarray or float, optional
        Background cutout or level; the median of the cutout's edge when None.
    cutout_err : ndarray or float, optional
        Noise cutout or level (its median sets the asinh softening); a MAD estimate
        from the cutout when None.
    fwhm : float, optional
        Frame FWHM; the cutout is rescaled towards ``target_fwhm`` when given.
    target_fwhm, target_size, downscale_threshold, normalize, asinh_softening
        Representation parameters (see `rbvet.core.cutouts.preprocess.PreprocessParams`).

    Returns
    -------
    preprocessed : ndarray (target_size, target_size, 2) float32
    scale_factor : float
        ``fwhm / target_fwhm`` (1.0 without ``fwhm``), as in STDPipe.
    """
    params = PreprocessParams(
        target_fwhm=target_fwhm,
        target_size=target_size,
        downscale_threshold=downscale_threshold,
        asinh_softening=(
            DEFAULT_ASINH_SOFTENING_SIGMA if asinh_softening is None else asinh_softening
        ),
        normalize=normalize,
    )
    sci = np.asarray(cutout_sci, dtype=np.float32)[None]
    bg = None if cutout_bg is None else np.asarray(cutout_bg, dtype=np.float32)
    if bg is not None and bg.ndim == 2:
        bg = bg[None]
    elif bg is not None:
        bg = bg.reshape(1)
    err = None if cutout_err is None else np.asarray(cutout_err, dtype=np.float64)
    if err is not None:
        err = err[None] if err.ndim == 2 else err.reshape(1)
    rescale = plan_rescale(fwhm, params)
    inputs = preprocess_stamps(sci, bg, err, rescale, params)
    scale_factor = float(fwhm) / target_fwhm if fwhm is not None and fwhm > 0 else 1.0
    return inputs[0], scale_factor


def _frame_and_fwhm(obj, image, bg, err, mask, fwhm, log):
    from rbvet.core.detect.psf import estimate_fwhm
    from rbvet.core.io.frame import frame_from_array

    frame = frame_from_array(image, mask=mask, background=bg, noise=err)
    frame.ensure_background()
    x, y = _positions(obj)
    if fwhm is None:
        fwhm = estimate_fwhm(frame, x, y, table=obj)
        log(f"Estimated FWHM: {fwhm:.2f} pixels")
    return frame, x, y, _check_fwhm(fwhm)


def _check_fwhm(fwhm):
    """The FWHM as a float; NaN or <= 0 mean 'no rescaling', as in STDPipe."""
    try:
        value = float(fwhm)
    except (TypeError, ValueError):
        raise RbvetError(f"fwhm must be a number of pixels, got {fwhm!r}") from None
    if np.isinf(value):
        raise RbvetError(f"fwhm must be finite, got {value}")
    return value


def _positions(obj):
    missing = [name for name in ("x", "y") if name not in obj.colnames]
    if missing:
        raise RbvetError(
            f"catalog has no {' and '.join(missing)} column(s) "
            f"(columns: {', '.join(obj.colnames[:12])})"
        )
    try:  # masked positions are missing ones: NaN, 'non-finite position'
        return tuple(
            np.ma.filled(np.ma.asarray(obj[name], dtype=np.float64), np.nan) for name in "xy"
        )
    except (TypeError, ValueError):
        raise RbvetError("catalog x/y columns are not numeric") from None


def extract_cutouts(
    obj,
    image,
    bg=None,
    err=None,
    mask=None,
    radius=15,
    fwhm=None,
    target_fwhm=TARGET_FWHM,
    asinh_softening=None,
    verbose=False,
):
    """Extract and preprocess cutouts for all objects (vectorised).

    Parameters
    ----------
    obj : astropy.table.Table
        Catalog with 0-based ``x`` and ``y`` columns.
    image : ndarray
        Science image.
    bg, err : ndarray or float, optional
        Background and noise maps or levels; estimated with sep when None.
    mask : ndarray of bool, optional
        True for bad pixels.
    radius : int
        Input half-size: inputs are (2*radius+1) pixels wide.
    fwhm : float, optional
        Frame FWHM; estimated from the image at the catalog positions when None.
    target_fwhm, asinh_softening
        Representation parameters.
    verbose : bool or callable

    Returns
    -------
    cutouts : ndarray (M, 2*radius+1, 2*radius+1, 2) float32
        Inputs of the scorable objects.
    valid_indices : ndarray (M,) int
        Their rows in ``obj``.
    """
    log = _logger(verbose)
    from rbvet.core.cutouts.stamps import iter_inputs

    params = PreprocessParams(
        target_fwhm=target_fwhm,
        target_size=2 * int(radius) + 1,
        asinh_softening=(
            DEFAULT_ASINH_SOFTENING_SIGMA if asinh_softening is None else asinh_softening
        ),
    )
    frame, x, y, fwhm = _frame_and_fwhm(obj, image, bg, err, mask, fwhm, log)
    rescale = plan_rescale(fwhm, params)
    size = params.target_size
    cutouts, valid = [np.zeros((0, size, size, 2), np.float32)], [np.zeros(0, np.intp)]
    for start, objects in iter_inputs(frame, x, y, rescale, params):  # chunks bound memory
        scorable = np.flatnonzero(objects.scorable)
        cutouts.append(objects.inputs[scorable])
        valid.append(start + scorable)
    valid = np.concatenate(valid)
    log(f"Extracted {len(valid)} valid cutouts from {len(obj)} objects")
    return np.concatenate(cutouts), valid


def load_realbogus_model(model_file=None, verbose=False):
    """Load a real-bogus model; the default model shipped with rbvet when no file is given.

    Parameters
    ----------
    model_file : str, optional
        ``.keras`` file (with its card) or an STDPipe ``.h5`` file.
    verbose : bool or callable

    Returns
    -------
    keras.Model
        Its card and fast prediction engine are remembered for `classify_realbogus`.
    """
    log = _logger(verbose)
    wrapper = _model.load_model(model_file)
    log(f"Loaded model {wrapper.path} ({wrapper.keras_model.count_params()} parameters)")
    _WRAPPERS[wrapper.keras_model] = wrapper
    return wrapper.keras_model


def save_realbogus_model(model, model_file=None, verbose=False):
    """Save a model (and its card) to ``model_file``, by default in the user data folder.

    Parameters
    ----------
    model : keras.Model
    model_file : str, optional
        ``.keras`` (recommended) or ``.h5``.
    verbose : bool or callable
    """
    from pathlib import Path

    log = _logger(verbose)
    path = Path(model_file) if model_file else Path(DEFAULT_MODEL_DIR) / DEFAULT_MODEL_NAME
    wrapper = _wrap(model)
    _model.save_model(wrapper.keras_model, path, wrapper.card)
    log(f"Saved model to {path}")


def classify_realbogus(
    obj,
    image,
    model=None,
    model_file=None,
    bg=None,
    err=None,
    mask=None,
    fwhm=None,
    asinh_softening=None,
    threshold=0.5,
    add_score=True,
    flag_bogus=True,
    batch_size=128,
    verbose=False,
):
    """Score detected objects as real (1) or bogus (0) with the CNN.

    Parameters
    ----------
    obj : astropy.table.Table
        Catalog with 0-based ``x`` and ``y`` columns; modified in place when
        ``add_score`` (columns ``rb_score`` and ``rb_reason``).
    image : ndarray
        Science image.
    model : keras.Model, optional
        Loaded model; else loaded from ``model_file``, else the shipped default model.
    model_file : str, optional
    bg, err : ndarray or float, optional
        Background and noise maps or levels; mapped with sep when None.
    mask : ndarray of bool, optional
        True for bad pixels.
    fwhm : float, optional
        Frame FWHM; estimated from the image at the catalog positions when None.
    asinh_softening : float, optional
        Overrides the model card's asinh softening (in units of the noise).
    threshold : float
        Objects scoring below it are bogus.
    add_score : bool
        Add the ``rb_score`` column.
    flag_bogus : bool
        Set ``flags |= BOGUS_FLAG`` on bogus and unscorable objects and return only
        the others.
    batch_size : int
        Inference batch size.
    verbose : bool or callable

    Returns
    -------
    astropy.table.Table
        The real objects (``flag_bogus=True``) or the whole catalog.
    """
    log = _logger(verbose)
    threshold = _classify.check_threshold(threshold)
    if model is None:
        wrapper = _model.load_model(model_file)
    else:
        wrapper = _wrap(model)
    if asinh_softening is not None:
        wrapper = _with_softening(wrapper, asinh_softening)
    if len(obj) == 0:
        raise RbvetError("catalog is empty: nothing to classify")
    if flag_bogus:
        _classify.check_flags_column(obj)  # before the work, not after it
    frame, x, y, fwhm = _frame_and_fwhm(obj, image, bg, err, mask, fwhm, log)
    log(f"Classifying {len(obj)} objects (threshold={threshold:.2f}, FWHM={fwhm:.2f})")
    scores, reasons = run_job(
        _classify.score_objects(frame, x, y, wrapper, fwhm, batch_size=batch_size)
    )
    if add_score:
        obj[SCORE_COLUMN] = scores.astype(np.float64)
        obj[_classify.REASON_COLUMN] = reasons
    if not flag_bogus:
        return obj
    bogus = _classify.set_bogus_flag(obj, scores, threshold)
    kept = obj[~bogus]
    log(f"Filtered: {len(kept)}/{len(obj)} objects retained")
    return kept


def _with_softening(wrapper, asinh_softening):
    import copy

    changed = copy.copy(wrapper)
    values = wrapper.params.to_dict() | {"asinh_softening": float(asinh_softening)}
    changed.params = PreprocessParams.from_dict(values)
    return changed


def train_realbogus_classifier(
    training_data=None,
    n_simulated=1000,
    image_size=(2048, 2048),
    fwhm_range=(1.5, 8.0),
    real_source_types=("star", "galaxy"),
    validation_split=0.15,
    model=None,
    model_file=None,
    epochs=50,
    batch_size=64,
    class_weight="balanced",
    callbacks=None,
    verbose=True,
):
    """Train the classifier on given inputs or on simulated frames.

    Unlike STDPipe, the validation set is split off *before* augmentation (by frame for
    simulated data, by sample for given arrays), training samples are augmented with the
    8 symmetries of the square, and early stopping watches the held-out loss.

    Parameters
    ----------
    training_data : tuple, dict or TrainingSet, optional
        ``(X, y)``, ``(X, y, fwhm)``, ``{'X': ..., 'y': ...}`` (e.g. the arrays of a saved
        training set) or a `rbvet.core.learn.dataset.TrainingSet`, with preprocessed inputs
        (N, size, size, 2) and labels (1 real, 0 bogus). Simulated when None.
    n_simulated : int
        Number of simulated frames when ``training_data`` is None.
    image_size : tuple
        Size of the simulated frames.
    fwhm_range : tuple
        FWHM range of the simulated frames.
    real_source_types : sequence of str
        Simulated kinds counted as real.
    validation_split : float
        Held-out fraction.
    model : keras.Model, optional
        Model to continue training (fine-tune); a new one when None.
    model_file : str, optional
        Save the trained model (and card) here.
    epochs, batch_size : int
    class_weight : 'balanced', dict or None
    callbacks : list of keras callbacks, optional
        Replace the default early stopping and learning-rate schedule.
    verbose : bool or callable

    Returns
    -------
    model : keras.Model
    history : keras.callbacks.History
    """
    from rbvet.core.learn import train as _train

    log = _logger(verbose)
    if training_data is None:
        data = run_job(
            _train.simulated_training_set(
                n_frames=n_simulated,
                shape=tuple(image_size)[::-1],
                fwhm_range=fwhm_range,
                real_kinds=tuple(real_source_types),
                log=log,
            )
        )
        X, y, groups = data.inputs, data.labels, data.groups
    else:
        from rbvet.core.learn.dataset import as_training_set

        data = as_training_set(training_data)
        X, y, groups = data.inputs, data.labels, None
    result = run_job(
        _train.train_model(
            X,
            y,
            groups=groups,
            model=None if model is None else _wrap(model).keras_model,
            validation_fraction=validation_split,
            epochs=epochs,
            batch_size=batch_size,
            class_weight=class_weight,
            callbacks=callbacks,
            log=log,
        )
    )
    if model_file is not None:
        _model.save_model(result.model, model_file, result.card)
        log(f"Saved model to {model_file}")
    return result.model, result.history
