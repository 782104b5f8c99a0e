"""Import labels that already exist (a truth or vetting column of a catalog) into a store.

Earlier vetting work, or a simulation's truth, becomes labels the window shows, retraining
uses and `rbvet review` can check. The objects are stored exactly as the window stores
them: the frame is scored, shown in a `rbvet.core.session.VettingSession` (which matches
the catalog rows to the frame's stored objects) and labeled through it, with origin
``import``. Objects the window could not label (no usable stamp) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbvet.core.errors import RbvetError
from rbvet.core.learn.evaluate import _catalog_column, truth_labels
from rbvet.core.learn.labels import BOGUS, REAL, UNLABELED, default_annotator


@dataclass
class ImportResult:
    """What `import_labels` did.

    Attributes
    ----------
    real, bogus : int
        Objects given that label now (their label changed).
    unchanged : int
        Objects whose label in the store was already the imported one (if another
        annotator gave it, this annotator's confirming label is recorded too).
    unlabeled : int
        Catalog rows whose value means "no label" (blank, masked, -1, NaN).
    unscorable : int
        Labeled rows without a usable stamp (off the frame, masked ...): not imported.
    frame_id : int or None
        The frame's id in the store.
    """

    real: int
    bogus: int
    unchanged: int
    unlabeled: int
    unscorable: int
    frame_id: int | None

    @property
    def imported(self):
        return self.real + self.bogus

    @property
    def skipped(self):
        return self.unlabeled + self.unscorable


def import_labels(
    frame, table, fwhm, column, store_path, model, annotator=None, frame_path=None, source=None
):
    """Read the labels of catalog column ``column`` into the label store at ``store_path``.

    A job (`rbvet.core.jobs`): yields `Progress` while the objects are scored (the score
    each object had is kept with its label, as the window keeps it).

    Parameters
    ----------
    frame : rbvet.core.io.frame.Frame
    table : astropy.table.Table
        The catalog, with 0-based ``x`` and ``y`` (as `open_frame_and_catalog` gives it).
    fwhm : float
    column : str
        Truth or vetting column: 1/0, true/false, real/bogus in any case (see
        `rbvet.core.learn.evaluate.truth_labels`); blank, masked, -1 or NaN are skipped.
    store_path : str or Path or None
        The label store (created if missing); the user's default when None.
    model : rbvet.core.model.RealBogusModel
        Scores the objects and decides which can be labeled.
    annotator : str, optional
        Recorded as who gave the labels; `default_annotator()` when None.
    frame_path : str, optional
        The frame's file, kept in the store.
    source : str, optional
        The catalog's file name, for error messages.

    Returns
    -------
    ImportResult

    Raises
    ------
    RbvetError
        The column is missing or holds no recognisable label; the store cannot be written.
    """
    from rbvet.core.classify import score_objects
    from rbvet.core.cutouts.atlas import empty_atlas
    from rbvet.core.session import VettingData, VettingSession

    try:
        labels = truth_labels(_catalog_column(table, column, "label"), column)
    except RbvetError as error:
        raise RbvetError(error.problem, source) from None
    x = np.asarray(table["x"], np.float64)
    y = np.asarray(table["y"], np.float64)
    scores, reasons = yield from score_objects(frame, x, y, model, fwhm)
    data = VettingData.from_scores(
        frame,
        table,
        scores,
        reasons,
        empty_atlas(0, model.params.target_size),  # no tiles are shown
        fwhm=fwhm,
        params=model.params,
        model_name=model.name,
        frame_path=frame_path,
    )
    session = VettingSession(store_path)
    errors = []
    session.error.connect(errors.append)
    if not session.open_store(create=True):
        raise RbvetError(errors[-1] if errors else "cannot open the label store")
    try:
        session.show(data)
        before = data.labels.copy()
        own = _own_labels(session, annotator or default_annotator())
        scorable = np.isfinite(scores)
        # Every label of this annotator is recorded, also where someone else gave the same
        # one (agreement counts it), unless it is already theirs.
        new = scorable & (labels >= 0) & (own != labels)
        for value in (REAL, BOGUS):
            rows = np.flatnonzero(new & (labels == value))
            recorded = len(rows) == 0 or session.label(
                rows, value, origin="import", annotator=annotator, confirm=True
            )
            if not recorded:
                raise RbvetError(errors[-1] if errors else "cannot write the label store")
        changed = new & (before != labels)
        return ImportResult(
            real=int(np.count_nonzero(changed & (labels == REAL))),
            bogus=int(np.count_nonzero(changed & (labels == BOGUS))),
            unchanged=int(np.count_nonzero(scorable & (labels >= 0) & ~changed)),
            unlabeled=int(np.count_nonzero(labels < 0)),
            unscorable=int(np.count_nonzero((labels >= 0) & ~scorable)),
            frame_id=session.frame_id,
        )
    finally:
        session.close_store()


def _own_labels(session, annotator):
    """Labels (N,) in force by ``annotator`` on the session's frame rows (-1 where none)."""
    from rbvet.core.learn.labels import match_positions
    from rbvet.core.session import MATCH_TOLERANCE

    data = session.data
    own = np.full(len(data), UNLABELED, np.int8)
    store = session.store
    if store is None or session.frame_id is None:
        return own
    _, names, labels, x, y = store.annotator_labels(session.frame_id)
    mine = names == annotator
    match = match_positions(x[mine], y[mine], data.x, data.y, tolerance=MATCH_TOLERANCE)
    found = match >= 0
    own[match[found]] = labels[mine][found]
    return own
