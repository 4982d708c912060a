"""netcat-openbsd at a terminal: it exits by itself when the server closes, last line shown.

``nc`` reads the terminal and the socket.  When the server only closes
its side (a FIN), nc shows the end of input and keeps waiting for the
terminal, so the player sat there and their next line went to the shell.
A reset after the FIN, once nc has the data, makes nc exit.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from typing import Any

import pytest
import pytest_twisted

from tests import e2e
from tests.clients import Daemon, Spawner, daemon, spawn

__all__ = ["daemon", "spawn"]  # fixtures


def openbsd_nc() -> str | None:
    """The path of netcat-openbsd's ``nc``, if that is the ``nc`` installed."""
    path = shutil.which("nc")
    if path is None:
        return None
    return path if is_openbsd_nc(path) else None


def is_openbsd_nc(path: str) -> bool:
    """Whether the ``nc`` at ``path`` is netcat-openbsd (its usage says so)."""
    try:
        usage = subprocess.run([path, "-h"], check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "OpenBSD" in usage.stdout + usage.stderr


NC = openbsd_nc()

pytestmark = pytest.mark.skipif(
    NC is None,
    reason="nc is missing or not netcat-openbsd (make test installs it where it can)",
)


@pytest.mark.parametrize("ending", ["quit", "win", "kick"])
@pytest_twisted.inlineCallbacks
def test_nc_exits_when_the_server_closes(daemon: Daemon, spawn: Spawner, ending: str) -> Any:
    """nc at a terminal shows the server's last line and exits by itself."""
    assert NC is not None
    nc = spawn.program([NC, "127.0.0.1", str(daemon.player_port)], pty=True)
    yield nc.expect("Pick a number between 1-30\n")
    (player,) = daemon.game.players.values()
    if ending == "quit":
        nc.type("quit\r")
        last = "Goodbye!"
    elif ending == "win":
        secret = int(daemon.game._secret)
        nc.type(f"{secret}\r")
        last = f"Correct! The number was {secret}. You won in 1 guess!"
    else:
        daemon.game.kick(player.id)
        last = "*** You have been removed by the administrator. Goodbye!"
    code = yield nc.finish(timeout=10)
    assert (code, nc.stdout_lines[-1]) == (0, last)


@pytest_twisted.inlineCallbacks
def test_nc_exits_when_the_daemon_stops(spawn: Spawner) -> Any:
    """nc at a terminal shows the shutdown notice and exits when twistd stops on SIGTERM."""
    assert NC is not None
    with e2e.Daemon("--db", ":memory:", "--web", "off") as running:
        nc = spawn.program([NC, "127.0.0.1", str(running.ports["player"])], pty=True)
        yield nc.expect("Pick a number between 1-30\n")
        running.signal(signal.SIGTERM)
        code = yield nc.finish(timeout=10)
        assert (code, nc.stdout_lines[-1]) == (0, "*** The server is shutting down. Goodbye!")
        assert running.wait() == 0
