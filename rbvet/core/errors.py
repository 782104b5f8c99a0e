"""The one exception type rbvet raises for problems with the user's input."""


class RbvetError(ValueError):
    """A problem with the user's input: a file, a catalog, a model or an argument.

    The message is one line that names the file (when there is one) and the problem,
    so command-line tools and the GUI can show it as it is, without a traceback.
    """

    def __init__(self, problem, path=None):
        self.problem = str(problem)
        self.path = None if path is None else str(path)
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")


class RbvetWriteError(RbvetError):
    """A file could not be written (full or read-only disk, permissions): nothing was lost
    but that file, and the caller may try another place."""


class RbvetWarning(UserWarning):
    """A warning about input that rbvet could handle but the user should know about."""


def error_message(error):
    """One line for the user: rbvet's own message, or the kind of an unexpected error."""
    if isinstance(error, RbvetError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else 'unexpected error'}"
