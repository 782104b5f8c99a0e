"""The model the user chose, remembered across restarts (per user, in the window's settings).

A model accepted after retraining (or opened with Model › Open model…) is what the user
vets with from then on; forgetting it at the next launch silently put the shipped model
back. `ModelMemory` keeps its path in the window's `QSettings` (the user's rbvet settings),
checks it at launch without loading it (`rbvet.core.model.files.check_model_file`) and, when
the file has vanished or is broken, forgets it and says so in one line, so the window
starts with the shipped model instead of failing. (A file that passes the check but still
fails to score the first frame is given up too: the window tries the shipped model then.)
Model › Revert to the shipped model forgets it on purpose.
"""

from __future__ import annotations

from pathlib import Path

from rbvet.core.errors import RbvetError

REMEMBERED_MODEL_KEY = "model/remembered"


class ModelMemory:
    """The remembered model of one user.

    Parameters
    ----------
    settings : QSettings
        Where the path is kept (the window's settings).
    """

    def __init__(self, settings):
        self.settings = settings

    @property
    def path(self):
        """The remembered model file (str), or None when the shipped model is used."""
        value = self.settings.value(REMEMBERED_MODEL_KEY)
        return str(value) if value else None

    def remember(self, path):
        """Use the model at ``path`` from the next launch on (None: the shipped model)."""
        if path is None:
            self.forget()
            return
        self.settings.setValue(REMEMBERED_MODEL_KEY, str(Path(path).resolve()))
        self.settings.sync()

    def forget(self):
        """Start with the shipped model from the next launch on."""
        self.settings.remove(REMEMBERED_MODEL_KEY)
        self.settings.sync()

    def recall(self):
        """The remembered model if it can still be used, and why not otherwise.

        Returns
        -------
        path : str or None
            The model to open; None for the shipped model.
        warning : str or None
            One line when a remembered model was given up (it is forgotten).
        """
        from rbvet.core.model.files import check_model_file

        path = self.path
        if path is None:
            return None, None
        try:
            check_model_file(path)
        except (RbvetError, OSError) as error:
            self.forget()
            return None, self.unusable_text(error)
        return path, None

    @staticmethod
    def unusable_text(problem):
        """The one line that says a remembered model was given up, and why."""
        return (
            f"The model remembered from your last session cannot be used ({problem}); "
            "using the shipped model."
        )

    def is_remembered(self, path):
        """Whether ``path`` is the remembered model."""
        remembered = self.path
        return (
            path is not None
            and remembered is not None
            and (Path(path).resolve() == Path(remembered))
        )
