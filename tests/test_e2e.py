"""End-to-end: ``twistd -n guessgame`` as a subprocess, played over sockets."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from guessgame import __version__
from tests.e2e import WAIT, Daemon, Line, daemon_command, play_to_win


def test_play_win_who_and_sigterm() -> None:
    """A real daemon: a win, who on the admin port, and a clean SIGTERM shutdown."""
    with Daemon() as daemon:
        admin = daemon.admin()
        winner = daemon.player()
        assert admin.line().startswith("EVENT join 1 player1 127.0.0.1:")
        stayer = daemon.player()
        assert admin.line().startswith("EVENT join 2 player2 127.0.0.1:")

        admin.send("who")
        stayer_port = stayer.sock.getsockname()[1]
        assert re.fullmatch(r"PLAYER 1 player1 127\.0\.0\.1:\d+ 0 \S+Z", admin.line())
        assert re.fullmatch(
            rf"PLAYER 2 player2 127\.0\.0\.1:{stayer_port} 0 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            admin.line(),
        )
        assert admin.line() == "OK 2 players"

        secret, guesses, reply = play_to_win(winner)
        counted = "1 guess" if guesses == 1 else f"{guesses} guesses"
        assert reply == f"Correct! The number was {secret}. You won in {counted}!"
        assert winner.closed()
        assert admin.line() == f"EVENT win 1 player1 {secret} {guesses}"
        assert stayer.line().startswith(f"*** player1 won the round with {secret}.")

        daemon.signal(signal.SIGTERM)
        assert stayer.line() == "*** The server is shutting down. Goodbye!"
        assert [admin.line() for _ in range(3)] == [
            "EVENT round 2 1-30",
            "EVENT leave 1 player1 won",
            "EVENT leave 2 player2 shutdown",
        ]
        assert daemon.wait() == 0


def test_sigint_stops_cleanly_with_status_0() -> None:
    """SIGINT (Ctrl-C) is an orderly stop like SIGTERM: players told, exit status 0."""
    with Daemon() as daemon:
        player = daemon.player()
        daemon.signal(signal.SIGINT)
        assert player.line() == "*** The server is shutting down. Goodbye!"
        assert daemon.wait() == 0


def stalled_admin(daemon: Daemon, player: Line) -> Line:
    """An administrator that asks for much and reads nothing: its replies pile up.

    Its last command is a ``say`` that ``player`` waits for, so the daemon
    has read every command before this returns.
    """
    admin = daemon.admin()
    admin.sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(2_000):
            # Ten help replies, 7 KB, for every 60 bytes sent: 14 MB in all,
            # more than the kernel's buffers hold.
            admin.sock.send(b"help\r\n" * 10)
    admin.sock.settimeout(WAIT)
    admin.send("say all read")
    assert player.line() == "*** Message from the administrator: all read"
    return admin


def test_stop_is_bounded_by_a_client_that_never_reads() -> None:
    """A stalled administrator is aborted 5 s into the stop; players still get the notice."""
    with Daemon("--max-output", "1000000000") as daemon:
        player = daemon.player()
        stalled_admin(daemon, player)
        daemon.signal(signal.SIGTERM)
        assert player.line() == "*** The server is shutting down. Goodbye!"
        assert daemon.wait() == 0
        log = "".join(daemon.log)
        assert "1 connection still open 5 seconds into the stop: aborted" in log


def test_second_signal_exits_at_once() -> None:
    """A second SIGTERM or SIGINT during the stop ends the daemon at once."""
    with Daemon("--max-output", "1000000000") as daemon:
        stalled_admin(daemon, daemon.player())
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_log("left: shutdown")  # the stop has begun
        daemon.signal(signal.SIGINT)
        assert daemon.wait() == 1
        log = "".join(daemon.log)
        assert "received SIGINT during the stop: exiting at once" in log
        assert "aborted" not in log and "ReactorNotRunning" not in log


def test_port_in_use_is_one_line_and_status_1(tmp_path: Path) -> None:
    """A player port that cannot be opened: one line naming it and why, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        result = subprocess.run(
            daemon_command("--player", endpoint, "--db", ":memory:"),
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    [line] = [text for text in output.splitlines() if endpoint in text]
    assert line.endswith(f"cannot open the player port {endpoint}: Address already in use")


def test_start_up_log_says_what_runs_and_how_to_connect() -> None:
    """Once: version, range and mode, the database's absolute path, and the nc command."""
    with Daemon("--range", "5-50", "--mode", "solo") as daemon:
        port = daemon.ports["player"]
        daemon.player()  # the daemon has logged all it says at start
        log = [line.split("] ", 1)[-1].rstrip("\n") for line in daemon.log]
        database = daemon.cwd.resolve() / "guessgame.sqlite3"
        assert (
            log.count(f"guessgame {__version__}: range 5-50, mode solo, database {database}") == 1
        )
        assert log.count(f"players connect with: nc 127.0.0.1 {port}") == 1


def run_twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``twistd -n guessgame ARGS`` run to its end (bounded), output captured."""
    return subprocess.run(
        daemon_command(*args),
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--range", "5"], "--range: range must be two whole numbers LO-HI, like 1-30, not '5'"),
        (["--bogus"], "option --bogus not recognized"),
    ],
)
def test_bad_option_is_one_line_first(tmp_path: Path, args: list[str], error: str) -> None:
    """A bad option: the error first and alone on its line, no usage text, status 1."""
    result = run_twistd(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"twistd guessgame: {error}"
    assert len(lines) <= 2 and "--max-players" not in result.stderr


def test_help_keeps_the_full_usage(tmp_path: Path) -> None:
    """--help still lists every option."""
    result = run_twistd("--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--player", "--admin", "--range", "--mode", "--db", "--max-players"):
        assert option in result.stdout


ROOT = Path(__file__).resolve().parents[1]


def test_ctrl_c_on_make_run_looks_clean() -> None:
    """Ctrl-C on ``make run`` (a real terminal): the daemon stops in order, make says nothing."""
    if shutil.which("make") is None or not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("needs make and the repository's .venv")
    # The quotes make make run the recipe through a shell, as ARGS often do.
    # Every port is one of its own: a `make run` of the reader's may hold the defaults.
    args = (
        "--player tcp:0:interface=127.0.0.1 --admin tcp:0:interface=127.0.0.1"
        " --web tcp:0:interface=127.0.0.1 --db ':memory:'"
    )
    # -o: never reinstall here, whatever changed since the last install.
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"ARGS={args}"]
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.chdir(ROOT)
        # A fresh make, not a sub-make of `make test ARGS=...`.
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        }
        os.execvpe("make", command, environment)
    output = b""
    try:
        while b"players connect with" not in output:
            chunk = read_terminal(terminal)
            if chunk == b"":
                raise AssertionError("make run ended before it listened:\n" + output.decode())
            output += chunk
        os.write(terminal, b"\x03")  # what Ctrl-C sends
        while (chunk := read_terminal(terminal)) != b"":
            output += chunk
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)  # make; the daemon gets SIGHUP from its terminal
            os.waitpid(pid, 0)
        os.close(terminal)
    text = output.decode("utf-8", "replace")
    assert "received SIGINT, shutting down" in text
    assert "Server Shut Down." in text
    assert "make: ***" not in text, text


def read_terminal(terminal: int) -> bytes:
    """What the terminal shows next (b"" once closed), within the end-to-end bound."""
    ready, _, _ = select.select([terminal], [], [], WAIT)
    if not ready:
        raise AssertionError("the terminal stayed silent")
    try:
        return os.read(terminal, 65536)
    except OSError:  # EIO: every process on the terminal is gone
        return b""


def test_seventeenth_connection_waiting_for_its_handshake_is_closed_at_once() -> None:
    """With 16 admin connections waiting for their handshake, one more is closed without a word."""
    with Daemon("--admin-token", "s3cret", "--max-admins", "0") as daemon:
        waiting = [daemon.connect("admin") for _ in range(16)]
        for client in waiting:
            assert client.command("hello?") == ["ERR send Admin-Greetings first"]
        one_more = daemon.connect("admin")
        assert one_more.closed()
        waiting[0].send("Admin-Greetings s3cret")
        assert waiting[0].line() == "OK Admin-Greetings, 0 players online"
        assert daemon.connect("admin").command("hello?") == ["ERR send Admin-Greetings first"]
