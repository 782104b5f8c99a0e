"""Start-up on Linux: without a display or Qt's libraries the window says why, in one line."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rbvet.gui import display
from rbvet.gui.display import debian_package, display_problem, qt_platforms

ROOT = Path(__file__).resolve().parents[1]
NO_DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")


def _without_display():
    return {k: v for k, v in os.environ.items() if k not in NO_DISPLAY_VARIABLES}


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "main.py"],
        [sys.executable, "-m", "rbvet.cli", "gui"],
    ],
    ids=["main.py", "rbvet gui"],
)
def test_without_a_display_the_window_exits_2_with_one_line(command):
    result = subprocess.run(
        command, cwd=ROOT, env=_without_display(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DISPLAY" in lines[0]
    assert "QT_QPA_PLATFORM=offscreen" in lines[0]
    assert "rbvet classify" in lines[0]


def test_the_check_runs_before_qt_is_imported():
    # Qt aborts the process when it finds no display, so the check must come first.
    code = (
        "import sys\n"
        "from rbvet.gui.app import main\n"
        "status = main([])\n"
        "print(status, 'PyQt6.QtWidgets' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_without_display(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["2", "False"], result.stderr


@pytest.fixture
def x_server(monkeypatch, tmp_path):
    """A socket listening where the X server of DISPLAY=:5 would; yields that DISPLAY."""
    monkeypatch.setattr(display, "X11_SOCKET_DIR", str(tmp_path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(tmp_path / "X5"))
        server.listen()
        yield ":5"


def test_x_server_answers_only_where_one_listens(x_server):
    assert display.x_server_answers(x_server)
    assert display.x_server_answers("unix:5.0")
    assert not display.x_server_answers(":6")


def test_x_server_over_tcp():
    with socket.socket() as server:
        for number in range(80, 200):  # a free display number above those ssh forwards to
            try:
                server.bind(("127.0.0.1", display.X11_TCP_PORT + number))
                break
            except OSError:
                continue
        else:
            pytest.fail("no free port for a fake X server")
        server.listen()
        assert display.x_server_answers(f"127.0.0.1:{number}.0")
    assert not display.x_server_answers(f"127.0.0.1:{number}")


def test_a_display_without_an_x_server_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(display, "X11_SOCKET_DIR", str(tmp_path))
    message = display_problem({"DISPLAY": ":6"}, resolver=lambda plugin: [])
    assert "no X server answers at DISPLAY=:6" in message
    assert "QT_QPA_PLATFORM=offscreen" in message


def test_a_missing_library_is_named_with_its_debian_package(x_server):
    seen = []

    def resolver(plugin):
        seen.append(plugin)
        return ["libxcb-fake-thing.so.7", "libxkbcommon-x11.so.0"]

    message = display_problem({"DISPLAY": x_server}, resolver=resolver)
    assert seen and seen[0].name == "libqxcb.so"
    assert "libxcb-fake-thing.so.7" in message
    assert "apt-get install libxcb-fake-thing7 libxkbcommon-x11-0" in message
    assert "QT_QPA_PLATFORM=offscreen" in message
    assert "\n" not in message


def test_offscreen_needs_no_display():
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None


def test_a_display_with_all_libraries_passes(x_server):
    assert display_problem({"DISPLAY": x_server}, resolver=lambda plugin: []) is None


def test_without_a_display_the_libraries_are_not_the_complaint():
    message = display_problem({}, resolver=lambda plugin: ["libxcb-icccm.so.4"])
    assert "DISPLAY and WAYLAND_DISPLAY are unset" in message
    assert "libxcb-icccm" not in message


@pytest.mark.parametrize(
    ("environ", "platforms"),
    [
        ({"QT_QPA_PLATFORM": "offscreen"}, ["offscreen"]),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, ["wayland", "xcb"]),
        ({"QT_QPA_PLATFORM": "xcb:nomitshm", "WAYLAND_DISPLAY": "wayland-0"}, ["xcb"]),
        ({"DISPLAY": ":0"}, ["xcb"]),
        ({"WAYLAND_DISPLAY": "wayland-0"}, ["wayland"]),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, ["xcb"]),
        (
            {"DISPLAY": ":0", "WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland"},
            ["wayland", "xcb"],
        ),
    ],
)
def test_qt_platforms_in_the_order_qt_tries_them(environ, platforms):
    assert qt_platforms(environ) == platforms


def _missing_for(plugin_name):
    """A resolver for which only the plugin ``libq<plugin_name>.so`` lacks a library."""
    return lambda plugin: ["libwayland-client.so.0"] if plugin.name == plugin_name else []


def test_a_fallback_platform_that_can_start_is_enough(x_server):
    wayland_session = {"DISPLAY": x_server, "WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland"}
    assert display_problem(wayland_session, resolver=_missing_for("libqwayland.so")) is None
    message = display_problem(
        {**wayland_session, "QT_QPA_PLATFORM": "wayland"}, resolver=_missing_for("libqwayland.so")
    )
    assert "libwayland-client.so.0" in message
    assert "apt-get install libwayland-client0" in message


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-render-util.so.0", "libxcb-render-util0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libGL.so.1", "libgl1"),
        ("libEGL.so.1", "libegl1"),
        ("libdbus-1.so.3", "libdbus-1-3"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
        ("libpng16.so.16", "libpng16-16"),
    ],
)
def test_debian_package_of_a_soname(soname, package):
    assert debian_package(soname) == package


def test_unresolved_libraries_reads_ldd(monkeypatch, tmp_path):
    ldd_output = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007fa8)\n"
        "\tlibxcb-icccm.so.4 => not found\n"
        "\tlibxcb-keysyms.so.1 => not found\n"
        "\tlibxcb-icccm.so.4 => not found\n"
    )

    def fake_run(command, **kwargs):
        assert command[0] == "ldd"
        return subprocess.CompletedProcess(command, 0, stdout=ldd_output, stderr="")

    monkeypatch.setattr(display.subprocess, "run", fake_run)
    missing = display.unresolved_libraries(tmp_path / "libqxcb.so")
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_without_ldd_qt_has_the_last_word(monkeypatch, tmp_path):
    def no_ldd(command, **kwargs):
        raise FileNotFoundError(command[0])

    monkeypatch.setattr(display.subprocess, "run", no_ldd)
    assert display.unresolved_libraries(tmp_path / "libqxcb.so") == []
