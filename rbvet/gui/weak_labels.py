"""Labels › Make weak labels from the frames: ``rbvet weak-labels`` on the project, as a job.

`start_weak_labels` runs `rbvet.core.learn.weak.make_weak_labels` (what the command runs)
on the frames of the window's project, in a `JobThread` with the window's progress bar and
Cancel, and records the labels in the window's label store as weak labels (kept apart from
the user's own, as ``rbvet weak-labels --labels`` does: the retraining dialog can then
use them). The job opens its own connection to the store (SQLite connections belong to
one thread) and writes only once every frame was read and matched: a cancelled or failed
run writes nothing. The status bar then says what was made, by source and label.

Frames are read as the project scores them (its catalogs, objects detected otherwise), each
with the reading options it was scored with (`ProjectController.frame_options`: the frame
panel's, a re-detected frame's threshold included), so the weak labels are made of the
objects the window shows. Nothing runs when there is nothing to compare: fewer than two
frames, or frames of which none overlaps another of its instrument and size (known from
their headers once read; otherwise the job finds it and says so).
"""

from __future__ import annotations


def weak_label_problem(frames):
    """Why ``frames`` (a project's `ProjectFrame` list) can give no weak labels from
    repeats, or None when they may: fewer than two frames, or, once their headers are
    read, no two frames of one field (their ``field_id``, as the project groups epochs).

    Returns
    -------
    str or None
    """
    if len(frames) < 2:
        shown = "one frame is open" if frames else "no frame is open"
        return (
            f"Weak labels compare exposures of one field: they need at least two frames that "
            f"overlap on the sky, and {shown}. Open the exposures of a field together "
            "(File › Open frames…)"
        )
    if all(f.header_read for f in frames):
        fields = [f.field_id for f in frames if f.field_id >= 0]
        if len(set(fields)) == len(fields):
            return (
                f"Weak labels compare exposures of one field, and none of these {len(frames)} "
                "frames overlaps another of its instrument and size on the sky"
            )
    return None


def start_weak_labels(window):
    """Make weak labels from the project's frames into the window's label store, as the
    window's job (progress bar, Cancel); see the module docstring.

    Returns
    -------
    JobThread or None
        None when nothing was started (the banner or the status bar says why).
    """
    from rbvet.core.learn.weak import make_weak_labels
    from rbvet.core.project import ProjectFrame

    frames = window.project.project.frames
    options = [window.project.frame_options(index) for index in range(len(frames))]
    if not frames and window.state.data is not None:  # a frame opened alone
        frames = [ProjectFrame(window.frame_path, window.catalog_path)]
        options = [window.frame_options]
    problem = weak_label_problem(frames)
    if problem:
        window.show_error(problem)
        return None
    if window.labels.store_error:
        window.show_error(f"The label store is unavailable: {window.labels.store_error}")
        return None
    if window.busy:
        window.statusBar().showMessage("Wait for the current job to end (or cancel it)", 4000)
        return None
    store_path = window.labels.store_path
    pairs = [(f.frame_path, f.catalog_path) for f in frames]

    def succeeded(made):
        window._update_store_status()  # the store's tooltip counts the weak labels
        window._job_outcome = weak_labels_message(made, store_path)

    return window.start_window_job(
        make_weak_labels(pairs, store_path, options=options),
        "weak labels",
        f"Making weak labels from {len(pairs)} frames",
        succeeded,
    )


def weak_labels_message(made, store_path):
    """The status-bar line of finished weak labels: counts by source and label, the
    frames that overlapped no other, and the store written."""
    from pathlib import Path

    text = (
        f"Weak labels from {len(made.frames)} frames ({made.objects} objects): "
        f"{made.summary()} → {Path(store_path).name}"
    )
    if made.lonely:
        text += f" · {len(made.lonely)} frames overlap no other: " + ", ".join(
            Path(name).name for name in made.lonely[:3]
        )
    return text
