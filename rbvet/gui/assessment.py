"""Model › Assess this frame: injection-recovery on the shown frame, as a background job.

The job (`assess_shown_frame`) runs `rbvet.core.inject.assess.assess_loaded` on the frame,
objects and FWHM already shown, with the window's model, and keeps the result beside the
label store (`keep_assessment`) only once it has finished: a cancelled assessment writes
nothing. When it ends the threshold panel draws the injected FNR/FPR curves; a frame
opened later with the same model gets its kept curves back (`show_kept_assessment`).
Either way, a project's frame is then marked assessed (the frames dock's column).

The finished assessment, with its pictures of the injected objects, is also kept by the
session (`VettingSession.set_assessment`): the grid's filter box then offers "injected
objects" (`rbvet.gui.grid.GridPanel`), and while they are shown the Object dock shows the
selected injected object (`add_injected_detail`). The status bar names the caveats (a
frame too crowded for every injection, a fallback PSF).
"""

from __future__ import annotations

from PyQt6.QtWidgets import QStackedWidget

from rbvet.core.jobs import Progress


def assess_shown_frame(data, model_path, store_path, settings=None):
    """Assess the frame of ``data`` with the model at ``model_path`` and keep the result.

    A job (`rbvet.core.jobs`): yields `Progress`, returns the `Assessment`.
    """
    from rbvet.core.inject.assess import assess_loaded, keep_assessment
    from rbvet.core.model.cache import cached_model

    yield Progress(message="Loading the model")
    model = cached_model(model_path)
    assessment = yield from assess_loaded(
        data.frame, data.table, data.fwhm, model, settings=settings, keep_stamps=True
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

    def succeeded(assessment):
        window.state.session.set_assessment(assessment)
        if window.state.data is data:
            window.threshold_panel.show_injected(assessment.summary)
        window.project.mark_assessed(data)
        window._job_outcome = assessment_message(assessment)  # said once the job has ended

    return window.start_window_job(
        assess_shown_frame(data, window.model_path, store_path, settings),
        "assess",
        "Assessing this frame",
        succeeded,
    )


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


def assessment_message(assessment):
    """The status-bar line of a finished assessment: its figures, its caveats (a crowded
    frame, a fallback PSF), and where to see the injected objects."""
    parts = [assessment.describe().splitlines()[1].strip(), *assessment.caveats()]
    if assessment.stamps is not None and len(assessment.stamps):
        parts.append("Show › injected objects: what was measured")
    return " · ".join(parts)


def add_injected_detail(window):
    """Let the Object dock show the selected injected object while the grid shows them.

    The dock holds the frame's `DetailPanel` and a second one over the grid's injected
    state, one at a time, following `VettingSession.showing_injected`.

    Returns
    -------
    DetailPanel
        The injected objects' panel.
    """
    from rbvet.gui.detail import DetailPanel

    grid = window.grid
    detail = DetailPanel(grid.injected_state)
    detail.set_grid_order(grid.injected_proxy)
    dock = window.docks["Object"]
    pages = QStackedWidget()
    pages.addWidget(dock.widget())
    pages.addWidget(detail)
    dock.setWidget(pages)

    def follow():
        showing = window.state.session.showing_injected
        pages.setCurrentWidget(detail if showing else window.detail)

    window.state.injectedChanged.connect(follow)
    return detail
