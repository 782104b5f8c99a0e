"""The window's vetting project: many frames scored one after another, shown one at a time.

`ProjectController` is a thin Qt adapter over `rbvet.core.project.VettingProject`. It scores
the project's frames in the background, one `JobThread` at a time, with the window's own
classify job (`rbvet.gui.jobs.classify_frame`): the current frame first, then the others in
order. The first frame is shown as soon as it is ready; the others wait in the project
(their counts fill the frames dock) until the user goes to them. A frame whose data were
dropped to bound memory is scored again when it becomes current.

The window shows one frame at a time through its `VettingState`, so the label store, the
grid, the panels and every menu work on a project's frame exactly as on a single frame.

Nothing slow runs on the GUI thread: the frames' headers (footprints, fields) are read by a
job of their own while the first frame is scored, and the selected object's epochs are
cut by another (`cut_epochs`), so the window stays responsive with many frames.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from rbvet.core.errors import RbvetError
from rbvet.core.project import VettingProject, frames_from_arguments
from rbvet.gui.jobs import classify_frame
from rbvet.gui.workers import STOP_TIMEOUT_MS, JobThread


class ProjectController(QObject):
    """Scores and shows the frames of a `VettingProject` in a `MainWindow`.

    Parameters
    ----------
    window : rbvet.gui.main_window.MainWindow

    Attributes
    ----------
    project : VettingProject
    job : JobThread or None
        The frame being scored, if any.
    job_index : int
        Index of that frame, -1 when none.

    Signals
    -------
    framesChanged()
        Frames were added (the dock rebuilds its rows).
    frameChanged(int)
        A frame's state or counts changed.
    currentChanged(int)
        Another frame is current (shown, or waiting to be scored).
    progressed(str, int, int)
        Scoring progress: message, frames scored, frames in the project.
    idle()
        Nothing is being scored any more (all done, cancelled or failed).
    fieldsChanged()
        Headers were read: the fields (epochs) are known, and the notes said.
    """

    framesChanged = pyqtSignal()
    frameChanged = pyqtSignal(int)
    currentChanged = pyqtSignal(int)
    progressed = pyqtSignal(str, int, int)
    idle = pyqtSignal()
    fieldsChanged = pyqtSignal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.project = VettingProject()
        self.job = None
        self.job_index = -1
        self._threshold = None  # the model's threshold, given with the first frame shown
        self._stopped = False
        self._pending_object = None  # (frame, object) to select once that frame is shown
        self._show_when_scored = None  # the frame retried alone, shown once it is scored
        self._stopping = None  # the job shutdown stopped, for finish_shutdown
        self.epoch_job = None  # cutting the selected object's epochs (`cut_epochs`)
        self._header_jobs = []  # reading the headers of frames just added
        self.project.frame_changed.connect(self.frameChanged.emit)
        self.project.frames_added.connect(self.framesChanged.emit)
        self.project.current_changed.connect(self.currentChanged.emit)
        self.project.fields_changed.connect(self.fieldsChanged.emit)
        self._models = {}  # frame index -> the model its data were scored with
        self._options = {}  # frame index -> the FrameOptions it was last read with
        window.state.labelsChanged.connect(self._on_labels_changed)
        window.state.dataChanged.connect(self._adopt_window_data)

    # ------------------------------------------------------------------ opening

    def open_paths(self, paths=(), list_file=None):
        """Add frames named by paths, folders and a list file (`frames_from_arguments`).

        Returns
        -------
        bool
            False when the arguments name no usable frame (the banner says why).
        """
        try:
            pairs = frames_from_arguments(paths, list_file)
        except RbvetError as error:
            self.window.show_error(str(error))
            return False
        self.open_frames(pairs)
        return True

    def open_frames(self, pairs):
        """Add (frame, catalog) pairs, go to the first new one and score in the background.

        Returns
        -------
        list of int
            Indices of the frames added (frames already in the project are skipped).
        """
        added = self.project.add_frames(pairs, read_headers=False)
        if added:
            self._read_headers(added)
            self._stopped = False
            self.go_to(added[0])
        return added

    def _read_headers(self, indices):
        """Read the headers of frames ``indices`` in a job; fields and notes follow."""
        thread = JobThread(self.project.header_job(indices), name="project:headers", parent=self)
        thread.succeeded.connect(lambda headers: self._on_headers(indices, headers))
        thread.failed.connect(self.window.show_error)
        thread.finished.connect(lambda: self._header_jobs.remove(thread))
        self._header_jobs.append(thread)
        thread.start()

    def _on_headers(self, indices, headers):
        self.project.set_headers(indices, headers)
        if self.project.notes:
            self.window.statusBar().showMessage(" · ".join(self.project.notes), 10000)

    def cut_epochs(self, object_index, size):
        """Cut object ``object_index``'s surroundings in every epoch of the current frame's
        field in a job (`VettingProject.epoch_stamps_job`); the one running before is
        cancelled.

        Returns
        -------
        JobThread
            Its ``succeeded`` gives the list of `EpochStamp`.
        """
        self.stop_epochs()
        job = self.project.epoch_stamps_job(object_index, size)
        self.epoch_job = JobThread(job, name="project:epochs", parent=self)
        self.epoch_job.start()
        return self.epoch_job

    def stop_epochs(self):
        """Cancel cutting epochs, without waiting (a late result goes to no one)."""
        job, self.epoch_job = self.epoch_job, None
        if job is not None:
            job.stop(timeout_ms=0)

    # ------------------------------------------------------------------ navigation

    @property
    def current(self):
        return self.project.current

    def next_frame(self):
        """Show the next frame (Ctrl+PgDown)."""
        if len(self.project):
            self.go_to(self.project.current + 1)

    def previous_frame(self):
        """Show the previous frame (Ctrl+PgUp)."""
        if len(self.project):
            self.go_to(self.project.current - 1)

    def go_to(self, index):
        """Make frame ``index`` current and show it, or score it first when needed."""
        if not len(self.project):
            return
        if index != self._show_when_scored:
            self._show_when_scored = None  # the user went elsewhere: no switching later
        changed = index != self.project.current
        index = self.project.go_to(index)
        data = self.project.data(index)
        if data is not None and self._models.get(index) != self.window.model_path:
            self.project.drop(index)  # scored with another model: scored again
            data = None
        if data is not None:
            if data is not self.window.state.data:
                self._show(index, data)
        else:
            self._stopped = False
            if self.job is not None and self.job_index != index:
                # Scoring another frame while the user waits for this one: it gives way.
                self._stop_job()
            self.window.statusBar().showMessage(
                f"Scoring {self.project.frames[index].name}…", 3000
            )
            self._score_next()
        if not changed:
            self.currentChanged.emit(index)

    def show_object(self, index, object_index):
        """Go to frame ``index`` and select object ``object_index`` there (once it is
        shown, when the frame must be scored first)."""
        self._pending_object = (index, int(object_index))
        self.go_to(index)
        self._select_pending()

    def _select_pending(self):
        pending = self._pending_object
        if pending is None or pending[0] != self.project.current:
            return
        data = self.window.state.data
        if data is not None and data is self.project.data(pending[0]):
            self._pending_object = None
            self.window.state.select(pending[1])

    def frame_options(self, index):
        """The `FrameOptions` frame ``index`` is read with, by the project and by the weak
        labels made from it: those it was last read with (what the frame panel showed for
        it, re-detected or not, even once its data were dropped); a frame never read takes
        the window's, less what belongs to one file (`FrameOptions.for_another_frame`), as
        File › Open reads a new frame."""
        options = self._options.get(index)
        return self.window.frame_options.for_another_frame() if options is None else options

    def set_done(self, index, done=True):
        """Mark frame ``index`` vetted (or not)."""
        self.project.set_done(index, done)

    def retry(self, indices=None):
        """Score failed frames again (all of them by default): their headers are read
        again and they are scored in turn like frames never reached, so one whose file
        is back joins its field's epochs (`VettingProject.retry`).

        Returns
        -------
        list of int
            The frames retried (none when no frame of ``indices`` had failed).
        """
        retried = self.project.retry(indices)
        if not retried:
            return retried
        self._read_headers(retried)
        self._stopped = False
        names = ", ".join(self.project.frames[i].name for i in retried[:3])
        more = " …" if len(retried) > 3 else ""
        self.window.statusBar().showMessage(f"Retrying {names}{more}", 4000)
        if self.project.current in retried:
            self.window.error_banner.hide()  # its failure is being retried
        self._score_next()
        return retried

    def retry_and_show(self, index):
        """Retry failed frame ``index`` (`retry`) and switch the window to it once it is
        scored, unless the user went to another frame meanwhile; if it fails again, the
        status bar says so.

        Returns
        -------
        bool
            Whether it was retried (False when it had not failed).
        """
        retried = self.retry([index])
        if retried:
            self._show_when_scored = index
        return bool(retried)

    def mark_assessed(self, data):
        """Mark the project's frame of ``data`` (a `VettingData`) assessed by
        injection-recovery; nothing when that frame is not in the project.

        Returns
        -------
        int
            The frame's index, -1 when it is not in the project.
        """
        path = data.frame_path
        for index, frame in enumerate(self.project.frames):
            if frame.frame_path == path:
                self.project.set_assessed(index)
                return index
        return -1

    # ------------------------------------------------------------------ scoring

    @property
    def busy(self):
        return self.job is not None

    def cancel(self):
        """Stop scoring (the frame being scored waits again); going to a frame that has
        not been scored starts again."""
        self._stopped = True
        self._stop_job()
        self.idle.emit()

    def _stop_job(self):
        job, index = self.job, self.job_index
        self.job, self.job_index = None, -1
        if job is not None:
            job.stop(timeout_ms=0)  # cancelled, and detached if still running: not waited
            self.project.cancel_scoring(index)

    def _score_next(self):
        if self.job is not None or self._stopped:
            return
        index = self.project.next_to_score()
        if index is None:
            self.idle.emit()
            return
        frame = self.project.frames[index]
        model_path = self.window.model_path
        job = classify_frame(
            frame.frame_path, frame.catalog_path, model_path, self.frame_options(index)
        )
        thread = JobThread(job, name=f"project:{frame.name}", parent=self)

        def mine(slot):
            """Only while this thread is the controller's job (later signals dropped)."""
            return lambda *args: slot(*args) if self.job is thread else None

        thread.progressed.connect(mine(lambda progress: self._on_progress(index, progress)))
        thread.succeeded.connect(mine(lambda result: self._on_scored(index, result, model_path)))
        thread.failed.connect(mine(lambda message: self._on_failed(index, message)))
        thread.cancelled.connect(mine(lambda: self._on_cancelled(index)))
        self.job, self.job_index = thread, index
        self.project.set_scoring(index)
        self._report(f"Scoring {frame.name}")
        thread.start()

    def _report(self, message):
        scored = sum(f.objects is not None for f in self.project.frames)
        self.progressed.emit(message, scored, len(self.project))

    def _on_progress(self, index, progress):
        name = self.project.frames[index].name
        fraction = progress.fraction
        detail = f" {fraction:.0%}" if fraction is not None else ""
        self._report(f"{name}: {progress.message}{detail}")

    def _finish_job(self):
        self.job, self.job_index = None, -1

    def _on_scored(self, index, result, model_path):
        self._finish_job()
        self._models[index] = model_path
        data, threshold = result
        self._options[index] = data.reading.options
        if self._threshold is None:
            self._threshold = threshold
        data.labels[:] = self.window.state.session.stored_labels(data)  # counts in the dock
        self.project.attach(index, data)
        if index == self._show_when_scored:
            self._show_when_scored = None
            self.go_to(index)  # shows it: its data are attached
        elif index == self.project.current:
            self._show(index, data)
        self._report(f"Scored {self.project.frames[index].name}")
        self._score_next()

    def _on_failed(self, index, message):
        self._finish_job()
        self.project.fail(index, message)
        if index == self._show_when_scored:
            self._show_when_scored = None
            frame = self.project.frames[index]
            reason = message.removeprefix(f"{frame.frame_path}: ")  # its name says which
            self.window.statusBar().showMessage(f"{frame.name} failed again: {reason}", 10000)
        if index == self.project.current:
            self.window.show_error(message)
            self.window.failed.emit(message)
        self._score_next()

    def _on_cancelled(self, index):
        self._finish_job()
        self.project.cancel_scoring(index)

    def _show(self, index, data):
        """Show frame ``index``'s data in the window (its stored labels restored)."""
        frame = self.project.frames[index]
        window = self.window
        first = window.state.data is None
        window.frame_path, window.catalog_path = frame.frame_path, frame.catalog_path
        if data.reading is not None:  # what the window reads this frame with from now on
            window.frame_options = data.reading.options
        window.show_data(data, self._threshold if first else None)
        self.project.labels_changed(index, data.labels)
        window.statusBar().showMessage(
            f"Frame {index + 1} of {len(self.project)}: {Path(frame.frame_path).name}", 4000
        )
        window.classified.emit()
        self._select_pending()

    def _adopt_window_data(self):
        """The window scored the current frame itself (another catalog, detection, a new
        model): those data become the project's for that frame."""
        data, index = self.window.state.data, self.project.current
        if data is None or index < 0 or data is self.project.data(index):
            return
        frame = self.project.frames[index]
        if data.frame_path != frame.frame_path:
            return  # another frame opened on its own, outside the project
        frame.catalog_path = data.catalog_path
        self._models[index] = self.window.model_path
        if data.reading is not None:
            self._options[index] = data.reading.options
        self.project.attach(index, data)

    def _on_labels_changed(self, _indices):
        index = self.project.current
        data = self.window.state.data
        if index >= 0 and data is not None and data is self.project.data(index):
            self.project.labels_changed(index, data.labels)

    def shutdown(self):
        """Stop scoring without waiting (the window is closing); `finish_shutdown` then
        waits a bounded time."""
        self._stopped = True
        self.stop_epochs()
        for thread in list(self._header_jobs):
            thread.stop(timeout_ms=0)
        if self.job is not None:
            self._stopping = self.job
            self.job.cancel()
            self.project.cancel_scoring(self.job_index)
            self.job, self.job_index = None, -1

    def finish_shutdown(self, timeout_ms=STOP_TIMEOUT_MS):
        """Wait up to ``timeout_ms`` for the job `shutdown` stopped (`JobThread.stop`:
        one still running then is detached)."""
        job, self._stopping = self._stopping, None
        if job is not None:
            job.stop(timeout_ms)
