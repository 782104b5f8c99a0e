"""Files in and out: input files checked before they are opened, outputs written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from pathlib import Path

from rbvet.core.errors import RbvetError, RbvetWriteError

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_input_file(path, what="file"):
    """Refuse a path that cannot be read as a whole file, with the real reason.

    Reading a FIFO or a device would block for ever (or never end), and a symbolic link
    loop or a permission problem should not read as "no such file".

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file should be ("FITS file", "catalog", ...), for the message.

    Raises
    ------
    RbvetError
        The path does not exist, is a link loop, cannot be accessed, or is not a regular
        file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RbvetError("symbolic link loop (the link points back to itself)", path) from None
        if error.errno == errno.ENOENT:
            dangling = os.path.islink(path)
            problem = "broken symbolic link (its target does not exist)" if dangling else None
            raise RbvetError(problem or "no such file", path) from None
        raise RbvetError(f"cannot access ({error.strerror or error})", path) from None
    for is_kind, kind in _FILE_KINDS:
        if is_kind(mode):
            raise RbvetError(f"is {kind}, not a {what}", path)
    if not stat.S_ISREG(mode):
        raise RbvetError(f"is not a regular file, not a {what}", path)
    if not os.access(path, os.R_OK):
        raise RbvetError("cannot be read (permission denied)", path)


def atomic_write(path, write, suffix=None):
    """Call ``write(temporary_path)`` and rename the finished file onto ``path``.

    The temporary file lives in the same directory (so the rename is atomic) and ends
    like ``path`` (or ``suffix``), because writers such as Keras and astropy pick the
    format from the name. It is removed if ``write`` fails.

    Raises
    ------
    RbvetWriteError
        The file could not be written (a full or read-only disk, no permission); the
        message names ``path`` and the reason.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(temporary))
        os.replace(temporary, path)
    except OSError as error:
        raise RbvetWriteError(f"cannot write ({error.strerror or error})", path) from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def json_default(value):
    """``json.dumps`` fallback for numpy scalars and arrays (anything else as text)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
