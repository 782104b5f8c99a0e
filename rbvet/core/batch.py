"""Many frames: classify each on a Dask cluster, one output catalog per frame and a summary.

One function, `classify_one_frame`, classifies one frame (read, find or detect the
objects, score them, write the catalog atomically). The single-frame command line calls it
in its own process; `classify_frames` sends it, one task per frame, to the workers of a
`dask.distributed` cluster (a local one sized to the machine, or an existing one given by
its scheduler address), so a frame gives the same catalog whichever way it is classified.

Both are jobs (`rbvet.core.jobs`): generators that yield `Progress` (objects scored,
frames done) and return their result; the command line drives them with a progress bar.

The model is loaded once per worker process, not once per frame:
`rbvet.core.model.cache.cached_model` keeps it in a process-wide cache keyed by the
model file's path and version. This was chosen over a Dask ``WorkerPlugin`` because the
same cache serves the single-frame path (no Dask at all) and the GUI, needs nothing
registered on an existing cluster, loads the model only on workers that receive a frame,
and still notices a model file replaced between runs on a long-lived cluster.

Dask is imported only here, inside the functions that start or reach a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbvet.core.classify import FrameOptions
from rbvet.core.errors import RbvetError, RbvetWarning, error_message
from rbvet.core.jobs import Progress, cpu_count, run_job
from rbvet.core.model.cache import cached_model

__all__ = [
    "FrameResult",
    "OUTPUT_FORMATS",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_SKIPPED",
    "SUMMARY_NAME",
    "catalog_for",
    "classify_frames",
    "classify_one_frame",
    "close_local_cluster",
    "frame_stem",
    "limit_inference_threads",
    "output_name",
    "read_frame_list",
    "start_local_cluster",
    "summary_table",
]

SUMMARY_NAME = "summary.ecsv"
"""File name of the summary table in the output directory."""

OUTPUT_FORMATS = ("ecsv", "fits", "csv")
"""Formats of the per-frame output catalogs (the file name ends ``.rb.<format>``)."""

STATUS_DONE = "done"
STATUS_SKIPPED = "skipped (done)"
STATUS_FAILED = "failed"
FRAMES = "Frames"
"""The `Progress` message of `classify_frames`."""

PATTERN_PLACEHOLDERS = ("stem", "name", "dir")
"""Placeholders of a catalog pattern: see `catalog_for`."""

_FITS_SUFFIXES = (".fz", ".gz", ".fits", ".fit", ".fts")

# Environment variables read by the inference engines: rbvet's parallel ONNX runs (see
# `rbvet.core.model.inference_threads`) and TensorFlow's pools when it starts (TensorFlow
# converts the model and is the fallback engine).
_THREAD_VARIABLES = (
    "RBVET_INFERENCE_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


@dataclass
class FrameResult:
    """What classifying one frame gave: one row of the summary.

    Attributes
    ----------
    frame : str
        The frame as given.
    catalog : str
        The catalog read; empty when the objects were detected.
    output : str
        The output catalog written (or found complete).
    status : str
        ``"done"``, ``"skipped (done)"`` (the output was already complete) or ``"failed"``.
    objects, scored, kept : int or None
        Objects in the catalog, objects with a score, and objects at or above the
        threshold (called real). None when unknown (a failed frame).
    median_score : float
        Median of the finite scores; NaN when there are none or it is unknown.
    fwhm : float
        The frame's FWHM in pixels (given or estimated).
    seconds : float
        Time spent on the frame, without loading the model (for a skipped frame: in the
        run that classified it).
    model_seconds : float
        Time spent getting the model: loading it for the first frame of a process, about
        nothing afterwards.
    error : str
        One line: why the frame failed; empty otherwise.
    warning : str
        rbvet's warnings about the frame (e.g. a catalog that does not fit it), joined.
    model, engine : str
        Name of the model file and the inference engine used.
    threshold : float
        Score threshold of ``kept`` and of the bogus flag.
    unscorable : dict
        Reason -> number of objects that could not be scored for that reason.
    """

    frame: str
    catalog: str
    output: str
    status: str
    objects: int | None = None
    scored: int | None = None
    kept: int | None = None
    median_score: float = float("nan")
    fwhm: float = float("nan")
    seconds: float = float("nan")
    model_seconds: float = float("nan")
    error: str = ""
    warning: str = ""
    model: str = ""
    engine: str = ""
    threshold: float = float("nan")
    unscorable: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _FrameTask:
    """Everything a worker needs for one frame; all paths absolute."""

    frame: str
    frame_label: str
    catalog: str | None
    catalog_label: str
    output: str
    model_path: str | None
    threshold: float | None
    frame_options: FrameOptions
    inference_threads: int | None


def frame_stem(frame_path):
    """A frame's file name without its FITS and compression extensions.

    ``night1/img_042.fits.fz`` -> ``img_042``. Case-insensitive.
    """
    name = Path(frame_path).name
    for suffix in _FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def output_name(frame_path, output_format="ecsv"):
    """File name of a frame's output catalog: ``<stem>.rb.<format>``."""
    return f"{frame_stem(frame_path)}.rb.{output_format}"


def catalog_for(frame_path, pattern):
    """The catalog path a pattern gives for a frame.

    Parameters
    ----------
    frame_path : str or Path
        The frame, as given.
    pattern : str
        A path with placeholders: ``{stem}`` the frame's name without its FITS
        extensions (``img_042`` for ``img_042.fits.fz``), ``{name}`` its whole file name,
        ``{dir}`` its folder. A relative result is relative to the working directory, like
        any other path: ``{dir}/{stem}.cat`` is next to the frame, ``catalogs/{stem}.fits``
        in ``./catalogs``.

    Returns
    -------
    str

    Raises
    ------
    RbvetError
        The pattern has another placeholder or a stray brace.
    """
    frame = Path(frame_path)
    values = {"stem": frame_stem(frame), "name": frame.name, "dir": str(frame.parent)}
    try:
        return pattern.format(**values)
    except (KeyError, IndexError, ValueError) as error:
        known = ", ".join("{" + name + "}" for name in PATTERN_PLACEHOLDERS)
        raise RbvetError(
            f"catalog pattern {pattern!r} is not usable ({type(error).__name__}: {error}); "
            f"its placeholders are {known}"
        ) from None


def read_frame_list(path):
    """Frames listed in a text file, one per line; blank lines and ``#`` comments skipped.

    Relative paths are relative to the working directory (as ``ls night1/*.fits > list``
    writes them).
    """
    if not os.path.isfile(path):
        raise RbvetError("no such file (the frame list)", path)
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise RbvetError(f"cannot read the frame list ({error_message(error)})", path) from None
    frames = [line.strip() for line in lines]
    frames = [line for line in frames if line and not line.startswith("#")]
    if not frames:
        raise RbvetError("the frame list names no frames", path)
    return frames


def limit_inference_threads(threads):
    """Ask ONNX Runtime and TensorFlow, not yet started in this process, for ``threads``.

    With a worker process per core, one intra-op thread each is fastest: the default (a
    thread per core in every process) oversubscribes the CPUs, and ONNX Runtime's spinning
    threads then cost more than they give (measured: 1 thread ~1.5-2x the throughput of 2
    on a 2-core machine that was already busy). Variables already set are kept, so a
    cluster's administrator can choose otherwise; once an engine has started the call has
    no effect.
    """
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(int(threads)))


def classify_one_frame(
    frame_path,
    catalog_path,
    output_path,
    model_path=None,
    threshold=None,
    options=None,
    *,
    log=None,
    uncertainty=False,
):
    """Classify the objects of one frame and write its catalog with the scores.

    The unit of work of both ``rbvet classify FRAME`` and each task of
    `classify_frames`: read the frame (with background and noise maps), read its catalog
    or detect its objects, score them with the model (loaded once per process, see
    `cached_model`) and write the catalog with ``rb_score``, ``rb_reason`` and the bogus
    flag, atomically. A job (`rbvet.core.jobs`): yields `Progress` as it reads the frame
    and scores the objects; ``run_job`` returns its result.

    Parameters
    ----------
    frame_path : str or Path
        FITS image.
    catalog_path : str or Path or None
        Its catalog; None detects the objects with sep at ``detect_threshold`` sigma.
    output_path : str or Path
        Output catalog; the format follows the extension (.ecsv, .fits, .csv).
    model_path : str or Path, optional
        Model file; the shipped default model when None.
    threshold : float, optional
        Score threshold for the bogus flag; the model card's when None.
    options : FrameOptions, optional
        How to read the frame and find its objects; the defaults when None.
    log : callable, optional
        Called with one-line messages on what was found.
    uncertainty : bool
        Also write the MC-dropout predictive mean and BALD (``rb_score_mean``,
        ``rb_bald``; `rbvet.core.learn.uncertainty`), at about the cost of scoring again.

    Returns
    -------
    FrameResult
        With status ``"done"``.

    Raises
    ------
    RbvetError
        Any problem with the frame, the catalog, the model or the threshold.
    """
    from rbvet.core.classify import (
        add_scores,
        check_threshold,
        open_frame_and_catalog,
        score_objects,
    )
    from rbvet.core.io.catalog import write_catalog

    started = time.perf_counter()
    if threshold is not None:
        threshold = check_threshold(threshold)
    frame, table, fwhm = yield from open_frame_and_catalog(
        frame_path, catalog_path, options=options, log=log
    )
    loading = time.perf_counter()
    model = cached_model(model_path)
    model_seconds = time.perf_counter() - loading
    if threshold is None:
        threshold = check_threshold(model.threshold)
    scores, reasons = yield from score_objects(frame, table["x"], table["y"], model, fwhm)
    add_scores(table, scores, reasons, threshold=threshold)
    if uncertainty:
        from rbvet.core.learn.uncertainty import add_uncertainty, compute_uncertainty

        estimate = compute_uncertainty(
            frame, table["x"], table["y"], model, fwhm, keep_features=False
        )
        add_uncertainty(table, (yield from estimate))
    table.meta.update(rbvet_model=model.name, rbvet_threshold=float(threshold))
    write_catalog(table, output_path)
    scored = np.isfinite(scores)
    unscorable, counts = np.unique(reasons[~scored], return_counts=True)
    return FrameResult(
        frame=str(frame_path),
        catalog="" if catalog_path is None else str(catalog_path),
        output=str(output_path),
        status=STATUS_DONE,
        objects=len(table),
        scored=int(scored.sum()),
        kept=int(np.sum(scores >= threshold)),
        median_score=float(np.median(scores[scored])) if scored.any() else float("nan"),
        fwhm=float(fwhm),
        seconds=time.perf_counter() - started - model_seconds,
        model_seconds=model_seconds,
        model=model.name,
        engine=model.engine_name,
        threshold=threshold,
        unscorable=dict(zip(unscorable.tolist(), counts.tolist(), strict=True)),
    )


def classify_frame_task(task):
    """Run `classify_one_frame` for one task and never raise: failures become a result.

    rbvet's warnings about the frame are collected into the result's ``warning``
    (others pass on as usual). `warnings.catch_warnings` is process-wide, so on a worker
    with several threads a warning may land on a neighbour's frame.
    """
    started = time.perf_counter()
    if task.inference_threads is not None:
        limit_inference_threads(task.inference_threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RbvetWarning)
        try:
            result = run_job(
                classify_one_frame(
                    task.frame,
                    task.catalog,
                    task.output,
                    task.model_path,
                    task.threshold,
                    task.frame_options,
                )
            )
        except Exception as error:  # a failed frame must not stop the others
            result = _failed(task, error_message(error), time.perf_counter() - started)
    ours = [w for w in caught if issubclass(w.category, RbvetWarning)]
    for other in caught:
        if not issubclass(other.category, RbvetWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    result.frame, result.catalog = task.frame_label, task.catalog_label
    result.output = Path(task.output).name
    result.warning = "; ".join(dict.fromkeys(str(w.message) for w in ours))
    return result


def _failed(task, message, seconds=float("nan")):
    return FrameResult(
        frame=task.frame_label,
        catalog=task.catalog_label,
        output=Path(task.output).name,
        status=STATUS_FAILED,
        seconds=seconds,
        error=message,
    )


def classify_frames(
    frames,
    outdir,
    catalog_pattern=None,
    model_path=None,
    threshold=None,
    scheduler=None,
    n_workers=None,
    output_format="ecsv",
    overwrite=False,
    *,
    frame_options=None,
    inference_threads=None,
    log=None,
):
    """Classify many frames on a Dask cluster: one catalog per frame and a summary table.

    A job (`rbvet.core.jobs`): yields `Progress` each time a frame finishes (``total``
    counts the frames to classify, not those skipped); ``run_job`` returns the summary.
    Closing it stops: frames not yet classified are dropped (in this process none is
    started; on Dask their released tasks are forgotten), a local cluster is closed, no
    summary is written, and the catalogs already written stay (a later run skips them).

    Each frame's output ``OUTDIR/<stem>.rb.<format>`` is written atomically by
    `classify_one_frame` on a worker, so an output under its final name is complete:
    frames whose output exists are skipped (the run is resumable) unless ``overwrite``.
    A frame that fails is reported in the summary and does not stop the others. The
    summary is written atomically to ``OUTDIR/summary.ecsv``.

    Parameters
    ----------
    frames : sequence of str or Path
        FITS images. Paths are made absolute here, so workers with another working
        directory find them; on a remote cluster they must be on a shared file system,
        as must ``outdir``, the catalogs and the model.
    outdir : str or Path
        Output directory (created if needed).
    catalog_pattern : str, optional
        Where each frame's catalog is (see `catalog_for`); the objects are detected with
        sep when None. A catalog the pattern names but that does not exist fails its frame.
    model_path : str or Path, optional
        Model file; each worker's shipped default model when None.
    threshold : float, optional
        Score threshold; the model card's when None.
    scheduler : str or distributed.Client or cluster, optional
        None starts a local cluster of ``n_workers`` processes (one thread each) and
        closes it at the end. An address (``tcp://host:8786``), a cluster object (with a
        ``scheduler_address``, e.g. from dask-jobqueue) or a ``distributed.Client`` sends
        the frames to that cluster instead; a given client is left open.
    n_workers : int, optional
        Local worker processes; by default one per core, and never more than the frames
        to classify. With 1 (and no ``scheduler``) the frames are classified one after
        another in this process, without Dask.
    output_format : {'ecsv', 'fits', 'csv'}
        Format of the per-frame catalogs.
    overwrite : bool
        Classify every frame again, even when its output is complete.
    frame_options : FrameOptions, optional
        How to read every frame and find its objects; the defaults when None.
    inference_threads : int, optional
        Inference threads per task on the workers (see `limit_inference_threads`); by
        default cores / workers on a local cluster and 1 on an existing one. Not applied
        in this process.
    log : callable, optional
        Called with one-line messages (frames skipped, the cluster used).

    Returns
    -------
    astropy.table.Table
        The summary, one row per frame in the order given: ``frame``, ``catalog``,
        ``output`` (file name in ``outdir``), ``status`` (``done``, ``skipped (done)``,
        ``failed``), ``objects``, ``scored``, ``kept`` (at or above the threshold),
        ``median_score``, ``fwhm``, ``seconds``, ``error``, ``warning``. Counts are masked
        where unknown; a skipped frame keeps the figures of the run that classified it
        when the previous summary has them.

    Raises
    ------
    RbvetError
        No frames, two frames that would write the same output, an unusable catalog
        pattern, output directory, format, threshold, model path, worker count or
        scheduler. Problems with single frames do not raise.
    """
    from rbvet.core.classify import check_threshold

    log = log or (lambda message: None)
    frames = [str(frame) for frame in frames]
    if not frames:
        raise RbvetError("no frames to classify")
    if output_format not in OUTPUT_FORMATS:
        raise RbvetError(
            f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    if threshold is not None:
        threshold = check_threshold(threshold)
    if n_workers is not None and n_workers < 1:
        raise RbvetError(f"the number of workers must be at least 1, got {n_workers}")
    frame_options = frame_options or FrameOptions()
    if model_path is not None:
        model_path = os.path.abspath(model_path)
        if not os.path.isfile(model_path):
            raise RbvetError("model file not found", model_path)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise RbvetError("the output directory is a file", outdir)
    tasks = _plan_tasks(
        frames, outdir, catalog_pattern, model_path, threshold, output_format, frame_options
    )
    outdir.mkdir(parents=True, exist_ok=True)
    summary_path = outdir / SUMMARY_NAME

    results = [None] * len(tasks)
    to_run = []
    previous = {} if overwrite else _previous_rows(summary_path)
    for index, task in enumerate(tasks):
        if not overwrite and os.path.isfile(task.output):
            results[index] = _skipped(task, previous.get(Path(task.output).name))
        else:
            to_run.append(index)
    if len(to_run) < len(tasks):
        log(f"{len(tasks) - len(to_run)} of {len(tasks)} frames already done (skipped)")
    if to_run:
        yield Progress(0, len(to_run), FRAMES)
        finished = _run(
            [tasks[index] for index in to_run], scheduler, n_workers, inference_threads, log
        )
        with contextlib.closing(finished):
            for done, (index, result) in enumerate(finished, start=1):
                results[to_run[index]] = result
                yield Progress(done, len(to_run), FRAMES)
    summary = summary_table(results)
    summary.meta.update(_summary_meta(results, catalog_pattern, model_path, threshold))
    from rbvet.core.io.catalog import write_catalog

    write_catalog(summary, summary_path)
    return summary


def _plan_tasks(frames, outdir, pattern, model_path, threshold, output_format, frame_options):
    """One task per frame, with absolute paths; refuses two frames writing one output."""
    outputs = {}
    tasks = []
    for frame in frames:
        name = output_name(frame, output_format)
        if name in outputs:
            raise RbvetError(
                f"frames {outputs[name]} and {frame} would both write {name}; "
                "classify them into different output directories"
            )
        outputs[name] = frame
        catalog = None if pattern is None else catalog_for(frame, pattern)
        tasks.append(
            _FrameTask(
                frame=os.path.abspath(frame),
                frame_label=frame,
                catalog=None if catalog is None else os.path.abspath(catalog),
                catalog_label=catalog or "",
                output=os.path.abspath(outdir / name),
                model_path=model_path,
                threshold=threshold,
                frame_options=frame_options,
                inference_threads=None,
            )
        )
    return tasks


def require_dask():
    """Refuse, in one line, to classify frames in parallel without the ``[batch]`` extra."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise RbvetError(
            "classifying frames in parallel needs Dask: pip install 'rbvet[batch]' "
            "(or give --workers 1 to classify them one after another)"
        ) from None


def _run(tasks, scheduler, n_workers, inference_threads, log):
    """Yield ``(index in tasks, FrameResult)`` as frames finish, in this process or on Dask."""
    total = len(tasks)
    if scheduler is None:
        n_workers = min(n_workers or cpu_count(), total)
    if scheduler is None and n_workers == 1:
        for index, task in enumerate(tasks):
            yield index, classify_frame_task(task)
        return

    require_dask()
    from distributed import as_completed

    if inference_threads is None:
        inference_threads = max(1, cpu_count() // n_workers) if scheduler is None else 1
    with _dask_client(scheduler, n_workers, log) as client:
        futures = {
            client.submit(
                classify_frame_task,
                _with_threads(task, inference_threads),
                pure=False,
            ): index
            for index, task in enumerate(tasks)
        }
        for future in as_completed(futures, loop=client.loop):
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # the worker died or the task could not run
                result = _failed(tasks[index], error_message(error))
            future.release()
            yield index, result


def _with_threads(task, threads):
    return dataclasses.replace(task, inference_threads=threads)


@contextlib.contextmanager
def _dask_client(scheduler, n_workers, log):
    """A client of a new local cluster (closed at the end) or of the given scheduler."""
    from distributed import Client

    if scheduler is None:
        cluster = start_local_cluster(n_workers)
        try:
            with Client(cluster, set_as_default=False) as client:
                log(f"Local Dask cluster: {n_workers} worker processes")
                if _has_dashboard():
                    log(f"Dask dashboard: {client.dashboard_link}")
                yield client
        finally:
            close_local_cluster(cluster)
        return
    if isinstance(scheduler, Client):
        yield scheduler
        return
    address = getattr(scheduler, "scheduler_address", scheduler)
    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise RbvetError(
            f"cannot reach the Dask scheduler ({error_message(error)})", address
        ) from None
    with client:
        workers = len(client.scheduler_info().get("workers", {}))
        log(f"Dask scheduler {address}: {workers} workers")
        yield client


def _has_dashboard():
    return importlib.util.find_spec("bokeh") is not None


# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 so that freed memory goes
# back to the system at once. For frames that allocate and free large arrays this cost
# 40-50 % more time per frame (1024^2 frame, ~1k objects: 1.6-1.9 s against 1.1-1.3 s in
# the same process without it), so rbvet's local workers keep glibc's default.
_LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def start_local_cluster(n_workers):
    """A local Dask cluster as `classify_frames` starts it.

    ``n_workers`` processes of one thread each (a frame per core at a time), with
    glibc's default memory trimming, and the dashboard when ``bokeh`` is installed.
    Close it with `close_local_cluster`.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set(_LOCAL_CLUSTER_CONFIG):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":8787" if _has_dashboard() else None,
        )


def close_local_cluster(cluster):
    """Close a local cluster without the nanny's warnings about killing its workers.

    A spawned Python process that has loaded TensorFlow takes a few seconds to finalise,
    longer than the 4 s a nanny waits before killing it. By then every frame is written
    and its result received, so the kill loses nothing and the warning would only alarm.
    """
    logger = logging.getLogger("distributed.nanny")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        cluster.close()
    finally:
        logger.setLevel(level)


def _skipped(task, previous_row):
    """The result of a frame whose output is complete, with the figures of its run."""
    result = FrameResult(
        frame=task.frame_label,
        catalog=task.catalog_label,
        output=Path(task.output).name,
        status=STATUS_SKIPPED,
    )
    if previous_row is not None and previous_row["status"] in (STATUS_DONE, STATUS_SKIPPED):
        for name in ("objects", "scored", "kept", "median_score", "fwhm", "seconds", "warning"):
            value = previous_row[name]
            if not np.ma.is_masked(value):
                setattr(result, name, value.item() if isinstance(value, np.generic) else value)
    return result


def _previous_rows(summary_path):
    """Rows of an earlier summary by output name; empty when there is none or it is unreadable."""
    from astropy.table import Table

    if not summary_path.is_file():
        return {}
    try:
        table = Table.read(summary_path, format="ascii.ecsv")
        return {str(row["output"]): row for row in table}
    except Exception:  # an unreadable old summary only costs the carried-over figures
        return {}


_COUNT_COLUMNS = ("objects", "scored", "kept")
_FLOAT_COLUMNS = ("median_score", "fwhm", "seconds")
_TEXT_COLUMNS = ("frame", "catalog", "output", "status")


def summary_table(results):
    """The summary table of a list of `FrameResult` (see `classify_frames`)."""
    from astropy.table import MaskedColumn, Table

    table = Table()
    for name in _TEXT_COLUMNS:
        table[name] = np.array([getattr(result, name) for result in results], dtype=str)
    for name in _COUNT_COLUMNS:
        values = [getattr(result, name) for result in results]
        unknown = np.array([value is None for value in values], dtype=bool)
        data = np.array([-1 if value is None else value for value in values], dtype=np.int64)
        table[name] = MaskedColumn(data, mask=unknown)
    for name in _FLOAT_COLUMNS:
        table[name] = np.array([getattr(result, name) for result in results], dtype=np.float64)
    table["median_score"].format = ".4f"
    table["fwhm"].format = ".2f"
    table["seconds"].format = ".2f"
    for name in ("error", "warning"):
        table[name] = np.array([getattr(result, name) for result in results], dtype=str)
    return table


def _summary_meta(results, catalog_pattern, model_path, threshold):
    ran = [result for result in results if result.status == STATUS_DONE]
    models = sorted({f"{result.model} ({result.engine})" for result in ran})
    thresholds = sorted({result.threshold for result in ran})
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "catalog_pattern": catalog_pattern or "",
        "model_path": model_path or "default",
        "models_used": models,
        "threshold": threshold if threshold is not None else "model card",
        "thresholds_used": [float(value) for value in thresholds],
    }
