"""Can the window open here? Asked before Qt is imported, so this module imports no Qt.

Qt aborts the whole process (a core dump, no Python traceback) when its platform plugin finds
no display or cannot load its shared libraries, with a message that names neither the missing
Debian package nor the headless way to run. `display_problem` looks first, in a few tens of
milliseconds, and says what is wrong in one line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

HEADLESS_HINT = (
    "to run without a display: QT_QPA_PLATFORM=offscreen with --screenshot PNG, "
    "or rbvet classify FRAME"
)

# Debian names a library package after the library's soname (libxcb-icccm.so.4 ->
# libxcb-icccm4); these are the exceptions among the libraries Qt's plugins load.
_DEBIAN_EXCEPTIONS = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
    "libgcc_s.so.1": "libgcc-s1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libGLdispatch.so.0": "libglvnd0",
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
}
_LDD_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_X_DISPLAY = re.compile(r"^(?P<host>[^:/]*):(?P<number>\d+)(?:\.\d+)?$")
X11_SOCKET_DIR = "/tmp/.X11-unix"
"""Where a local X server listens, as ``X<display number>`` (also in the abstract namespace)."""
X11_TCP_PORT = 6000


def debian_package(soname):
    """The Debian/Ubuntu package that ships a shared library, from its soname.

    Parameters
    ----------
    soname : str
        For example ``"libxcb-icccm.so.4"``.

    Returns
    -------
    str
        For example ``"libxcb-icccm4"``; a name ending in a digit takes a hyphen before the
        version (``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0``), as Debian policy says.
    """
    if soname in _DEBIAN_EXCEPTIONS:
        return _DEBIAN_EXCEPTIONS[soname]
    stem, _, version = soname.partition(".so.")
    if not version:
        return stem.lower()
    version = version.split(".")[0]
    separator = "-" if stem[-1:].isdigit() else ""
    return f"{stem.lower()}{separator}{version}"


def qt_platforms(environ):
    """The Qt platform plugins the window would try, in order (``xcb``, ``wayland``, ...).

    ``QT_QPA_PLATFORM`` may hold a ``;``-separated list of fallbacks, each with ``:``-options.
    Unset, Qt 6 tries Wayland first in a Wayland session, then X11 (xcb).
    """
    requested = [
        entry.split(":")[0].strip() for entry in environ.get("QT_QPA_PLATFORM", "").split(";")
    ]
    if any(requested):
        return [name for name in requested if name]
    if environ.get("WAYLAND_DISPLAY") and not environ.get("DISPLAY"):
        return ["wayland"]
    if environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland":
        return ["wayland", "xcb"]
    return ["xcb"]


def platform_plugin(platform, environ):
    """Path of the platform plugin's shared library, or None if it is not where PyQt6 keeps it."""
    folders = [environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")]
    spec = importlib.util.find_spec("PyQt6")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        pyqt = Path(next(iter(spec.submodule_search_locations)))
        folders.append(str(pyqt / "Qt6" / "plugins" / "platforms"))
    for folder in filter(None, folders):
        plugin = Path(folder) / f"libq{platform}.so"
        if plugin.is_file():
            return plugin
    return None


def x_server_answers(display, timeout=0.5):
    """Whether an X server listens at ``display`` (``":0"``, ``"localhost:10.0"``).

    Connects the way libxcb does (the local socket, abstract then in `X11_SOCKET_DIR`; TCP
    port 6000 + N for a host) and closes at once. Only a refused or absent socket counts as
    no: a form it does not parse, a timeout or a permission error say True and leave it to Qt.
    """
    match = _X_DISPLAY.match(display)
    if match is None:
        return True
    host, number = match["host"], int(match["number"])
    if host not in ("", "unix"):
        try:
            socket.create_connection((host, X11_TCP_PORT + number), timeout=timeout).close()
        except (ConnectionRefusedError, socket.gaierror):
            return False
        except OSError:
            return True
        return True
    path = f"{X11_SOCKET_DIR}/X{number}"
    for address in ("\0" + path, path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            unix.settimeout(timeout)
            try:
                unix.connect(address)
            except (ConnectionRefusedError, FileNotFoundError):
                continue
            except OSError:
                return True
            return True
    return False


def unresolved_libraries(library):
    """Sonames that ``library`` needs, directly or not, and the dynamic loader cannot find.

    Asks ``ldd`` (about 30 ms for Qt's xcb plugin); an empty list when ``ldd`` is absent or
    fails, so that Qt itself has the last word.
    """
    try:
        result = subprocess.run(
            ["ldd", str(library)], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_LDD_NOT_FOUND.findall(result.stdout)))


def display_problem(environ=None, resolver=unresolved_libraries):
    """Why the window cannot open here, in one line, or None when it can (as far as we see).

    Parameters
    ----------
    environ : mapping, optional
        The environment [``os.environ``].
    resolver : callable, optional
        ``resolver(path)`` lists the sonames the shared library at ``path`` cannot load
        [`unresolved_libraries`].

    Returns
    -------
    str or None
        What is missing and how to install it, or how to run without a display; when Qt
        has fallbacks, the problem of the first, and None if any of them can start.
    """
    if not sys.platform.startswith("linux"):
        return None  # Qt's plugins on macOS and Windows need no display variables
    environ = os.environ if environ is None else environ
    if importlib.util.find_spec("PyQt6") is None:
        return "the window needs PyQt6: pip install PyQt6"
    first = None
    for name in qt_platforms(environ):  # stop at the first that can start: ldd costs time
        problem = _platform_problem(name, environ, resolver)
        if problem is None:
            return None
        first = first or problem
    return first


def _platform_problem(platform, environ, resolver):
    """Why Qt's ``platform`` plugin cannot start here, or None."""
    display = environ.get("DISPLAY")
    if platform.startswith(("xcb", "wayland")) and not (display or environ.get("WAYLAND_DISPLAY")):
        return (
            "cannot open the window: no display (DISPLAY and WAYLAND_DISPLAY are unset); "
            + HEADLESS_HINT
        )
    if platform.startswith("xcb") and not display:
        return "cannot open the window: Qt's xcb plugin needs DISPLAY; " + HEADLESS_HINT
    if platform.startswith("xcb") and not x_server_answers(display):
        return (
            f"cannot open the window: no X server answers at DISPLAY={display}; " + HEADLESS_HINT
        )
    plugin = platform_plugin(platform, environ)
    missing = resolver(plugin) if plugin is not None else []
    if missing:
        packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
        return (
            f"cannot open the window: Qt's {platform} plugin needs {', '.join(missing)}: "
            f"install them with `sudo apt-get install {packages}` (Debian/Ubuntu); "
            + HEADLESS_HINT
        )
    return None
