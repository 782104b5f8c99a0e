"""Model › Assess this frame: injection-recovery on the shown frame, as a background job.

The job (`assess_shown_frame`) runs `rbvet.core.inject.assess.assess_loaded` on the frame,
objects and FWHM already shown, with the window's model, and keeps the result beside the
label store (`keep_assessment`) only once it has finished: a cancelled assessment writes
nothing. When it ends the threshold panel draws the injected FNR/FPR curves; a frame
opened later with the same model gets its kept curves back (`show_kept_assessment`).
Either way, a project's frame is then marked assessed (the frames dock's column).
"""

from __future__ import annotations

from rbvet.core.jobs import Progress
from rbvet.gui.workers import JobThread


def assess_shown_frame(data, model_path, store_path, settings=None):
    """Assess the frame of ``data`` with the model at ``model_path`` and keep the result.

    A job (`rbvet.core.jobs`): yields `Progress`, returns the `Assessment`.
    """
    from rbvet.core.inject.assess import assess_loaded, keep_assessment
    from rbvet.core.model.cache import cached_model

    yield Progress(message="Loading the model")
    model = cached_model(model_path)
    assessment = yield from assess_loaded(
        data.frame, data.table, data.fwhm, model, settings=settings
    )
    if store_path is not None:
        keep_assessment(assessment, store_path)
    return assessment


def start_assessment(window, settings=None):
    """Run `assess_shown_frame` as the window's job, with its progress bar and Cancel.

    Returns
    -------
    JobThread or None
        None when there is no frame, or another job is running.
    """
    data = window.state.data
    if data is None:
        window.show_error("Open a frame first: the assessment injects fakes into it")
        return None
    if window.busy:
        window.statusBar().showMessage("Wait for the current job to end (or cancel it)", 4000)
        return None
    store_path = window.labels.store_path
    thread = JobThread(
        assess_shown_frame(data, window.model_path, store_path, settings),
        name="assess",
        parent=window,
    )

    def while_current(slot):
        return lambda *args: slot(*args) if window.job is thread else None

    def succeeded(assessment):
        if window.state.data is data:
            window.threshold_panel.show_injected(assessment.summary)
        window.project.mark_assessed(data)
        window.statusBar().showMessage(assessment.describe().splitlines()[1].strip(), 10000)

    thread.progressed.connect(while_current(window._on_progress))
    thread.succeeded.connect(while_current(succeeded))
    thread.failed.connect(while_current(window._on_failed))
    thread.cancelled.connect(while_current(window._on_cancelled))
    thread.finished.connect(while_current(lambda: window._set_busy(False)))
    window.job = thread
    window.error_banner.hide()
    window._set_busy(True, "Assessing this frame")
    thread.start()
    return thread


def show_kept_assessment(window):
    """Draw the kept assessment of the shown frame and model, when there is one."""
    from rbvet.core.inject.assess import load_kept_assessment

    data = window.state.data
    store_path = window.labels.store_path
    if data is None or store_path is None:
        return
    kept = load_kept_assessment(store_path, data.frame.content_hash, data.model_name)
    if kept is not None:
        window.threshold_panel.show_injected(kept.summary)
        window.project.mark_assessed(data)
