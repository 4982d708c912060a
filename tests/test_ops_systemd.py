"""systemd: readiness on $NOTIFY_SOCKET, socket activation for real, the unit files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from guessgame.ops.systemd import ReadyNotifier, notify, socket_is_local
from tests.e2e import WAIT, Line

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, and its NOTIFY_SOCKET name."""
    name = f"@guessgame-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(WAIT)
    yield sock, name
    sock.close()


def test_notify_sends_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    """notify sends the state as one datagram to the socket NOTIFY_SOCKET names."""
    sock, name = notify_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": name})
    assert sock.recv(4096) == b"READY=1"


def test_notify_without_systemd_sends_nothing() -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
    assert notify("READY=1", {}) is False


def test_notify_to_a_missing_socket_warns() -> None:
    """A socket nobody listens on is a warning in the log, never an exception."""
    warnings: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.warn:
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        sent = notify("READY=1", {"NOTIFY_SOCKET": "@guessgame-nobody-" + uuid.uuid4().hex})
    finally:
        globalLogPublisher.removeObserver(observer)
    assert sent is False
    assert len(warnings) == 1
    assert warnings[0].startswith("could not tell systemd READY=1 on @guessgame-nobody-")


def test_ready_once_running_stopping_at_stop(notify_socket: tuple[socket.socket, str]) -> None:
    """READY=1 goes out when the reactor runs, STOPPING=1 when the service stops."""
    sock, name = notify_socket
    sock.setblocking(False)
    reactor = MemoryReactor()
    notifier = ReadyNotifier(reactor, {"NOTIFY_SOCKET": name})
    notifier.startService()
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    reactor.run()
    assert sock.recv(4096) == b"READY=1"
    notifier.stopService()
    assert sock.recv(4096) == b"STOPPING=1"


# Socket activation: twistd started as systemd would start it.


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free loopback port, as a socket unit would hold it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.mark.parametrize(
    ("family", "host", "local"),
    [
        (socket.AF_INET, "127.0.0.1", True),
        (socket.AF_INET, "0.0.0.0", False),
        (socket.AF_INET6, "::1", True),
        (socket.AF_INET6, "::", False),
    ],
)
def test_socket_locality(family: socket.AddressFamily, host: str, local: bool) -> None:
    """A passed-in socket bound to loopback is local; one on every interface is not."""
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
    except OSError as e:
        pytest.skip(f"cannot bind {host} here: {e}")
    with sock:
        sock.listen(1)
        assert socket_is_local(sock.fileno()) is local
        assert sock.getsockname()  # still open: only a duplicate was closed


def test_unix_socket_is_local(tmp_path: Path) -> None:
    """A Unix socket is reachable from this machine only."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "s"))
        sock.listen(1)
        assert socket_is_local(sock.fileno())


def test_socket_activation_and_readiness(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """twistd takes the sockets passed in by name, says READY=1, and STOPPING=1 at SIGTERM."""
    sock, name = notify_socket
    player, admin = listening_socket(), listening_socket()
    twistd = Path(sys.executable).with_name("twistd")
    command = [
        sys.executable, str(ROOT / "tests" / "listen_exec.py"),
        str(player.fileno()), str(admin.fileno()), "--",
        str(twistd), "--nodaemon", "--pidfile=", "--logfile=-", "guessgame",
        "--player", "systemd:domain=INET:name=player",
        "--admin", "systemd:domain=INET:name=admin",
        "--web", "off",
        "--db", str(tmp_path / "game.sqlite3"),
    ]  # fmt: skip
    env = dict(os.environ, LISTEN_FDNAMES="player:admin", NOTIFY_SOCKET=name)
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        pass_fds=(player.fileno(), admin.fileno()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    clients: list[Line] = []
    try:
        try:
            ready = sock.recv(4096)
        except TimeoutError:
            proc.kill()
            raise AssertionError(
                "no READY=1:\n" + proc.communicate(timeout=WAIT)[0].decode()
            ) from None
        assert ready == b"READY=1"
        # Our copies go: from now on only the daemon holds the sockets.
        player_port, admin_port = player.getsockname()[1], admin.getsockname()[1]
        player.close()
        admin.close()
        alice = Line(player_port)
        clients.append(alice)
        assert alice.line() == "You are now connected to the server!"
        operator = Line(admin_port)
        clients.append(operator)
        operator.send("Admin-Greetings")
        assert operator.line() == "OK Admin-Greetings, 1 player online"
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096) == b"STOPPING=1"
        assert proc.wait(WAIT) == 0
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        assert proc.stdout is not None
        proc.stdout.close()
        player.close()
        admin.close()


# The unit files.


UNIT_FILES = (
    "guessgame.service",
    "guessgame-player.socket",
    "guessgame-admin.socket",
    "guessgame-web.socket",
)


def unit_settings(name: str) -> dict[str, list[str]]:
    """A unit file's settings: key -> values, every section together."""
    settings: dict[str, list[str]] = {}
    text = (UNITS / name).read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("role", ["player", "admin", "web"])
def test_one_socket_unit_per_name(role: str) -> None:
    """Each socket unit names its sockets for the daemon's systemd:...:name=ROLE endpoint."""
    settings = unit_settings(f"guessgame-{role}.socket")
    assert settings["FileDescriptorName"] == [role]
    assert settings["Service"] == ["guessgame.service"]
    assert settings["ListenStream"]
    service = unit_settings("guessgame.service")
    assert f"systemd:domain=INET:name={role}" in service["ExecStart"][0]
    assert f"guessgame-{role}.socket" in service["Sockets"][0].split()


def test_service_is_notify_confined_and_keeps_its_state() -> None:
    """The service waits for READY=1, runs as its own user, confined, with a StateDirectory."""
    settings = unit_settings("guessgame.service")
    assert settings["Type"] == ["notify"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["User"] == ["guessgame"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["StateDirectory"] == ["guessgame"]
    assert "--db %S/guessgame/guessgame.sqlite3" in settings["ExecStart"][0]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong in the unit files."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify checks that ExecStart's program exists: point it at this twistd.
    twistd = Path(sys.executable).with_name("twistd")
    for name in UNIT_FILES:
        text = (UNITS / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/opt/guessgame/bin/twistd", str(twistd)))
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNIT_FILES)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=False,
    )
    if result.returncode != 0 and "Failed to connect" in result.stderr + result.stdout:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    ours = [
        line
        for line in (result.stderr + result.stdout).splitlines()
        if any(name in line for name in UNIT_FILES)
    ]
    assert result.returncode == 0 and ours == [], result.stderr + result.stdout
