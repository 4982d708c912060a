"""End-to-end harness: ``twistd -n guessgame`` as a subprocess on free ports.

`Daemon` starts the real daemon, learns the ports it bound from its log
and always stops it; `Line` is a blocking line socket with a timeout on
every read, for tests that play the daemon as a user would.
"""

from __future__ import annotations

import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: Bound on every wait of the end-to-end tests, in seconds.
WAIT = 20.0

LISTENING = re.compile(r"(player|admin|web) port listening on 127\.0\.0\.1:(\d+)")


def daemon_command(*args: str) -> list[str]:
    """``twistd -n guessgame`` on free loopback ports, then ``args``."""
    twistd = Path(sys.executable).with_name("twistd")
    assert twistd.exists(), f"twistd is not installed beside {sys.executable}"
    return [
        str(twistd), "--nodaemon", "--pidfile=", "--logfile=-", "guessgame",
        "--player", "tcp:0:interface=127.0.0.1",
        "--admin", "tcp:0:interface=127.0.0.1",
        "--web", "tcp:0:interface=127.0.0.1",
        *args,
    ]  # fmt: skip


def roles(args: tuple[str, ...]) -> set[str]:
    """The ports a daemon started with ``args`` opens (the web port unless --web off)."""
    web = "tcp:0"
    for index, arg in enumerate(args[:-1]):
        if arg == "--web":
            web = args[index + 1]
    return {"player", "admin"} if web == "off" else {"player", "admin", "web"}


class Line:
    """A blocking line-oriented client socket with a timeout on every read."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = WAIT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, text: str) -> None:
        """Send one line."""
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def line(self) -> str:
        """The next line (without its CRLF); raises on timeout or close."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8")

    def command(self, text: str) -> list[str]:
        """An admin command's reply lines up to OK/ERR, pushed events left out."""
        self.send(text)
        lines: list[str] = []
        while not lines or not lines[-1].startswith(("OK", "ERR")):
            line = self.line()
            if not line.startswith("EVENT "):
                lines.append(line)
        return lines

    def closed(self) -> bool:
        """Whether the server closed the connection, with nothing left unread."""
        return self.buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Daemon:
    """A running ``twistd -n guessgame``; a context manager that always stops it.

    ``cwd`` holds the default ``--db`` file: a fresh temporary folder
    unless the test names one.
    """

    def __init__(self, *args: str, cwd: str | Path | None = None) -> None:
        self._own_cwd = cwd is None
        self.cwd = Path(cwd) if cwd is not None else Path(tempfile.mkdtemp(prefix="guessgame-"))
        self.log: list[str] = []
        self._log_grew = threading.Condition()
        self.clients: list[Line] = []
        self.ports: dict[str, int] = {}
        self.proc = subprocess.Popen(
            daemon_command(*args),
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        try:
            while set(self.ports) != roles(args):
                line = lines.get(timeout=WAIT)
                assert line is not None, "twistd exited:\n" + "".join(self.log)
                found = LISTENING.search(line)
                if found:
                    self.ports[found.group(1)] = int(found.group(2))
        except BaseException:
            self.stop()
            raise

    def _read(self, lines: queue.Queue[str | None]) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode("utf-8", "replace")
            with self._log_grew:
                self.log.append(text)
                self._log_grew.notify_all()
            lines.put(text)
        lines.put(None)

    def wait_for_log(self, text: str) -> str:
        """The first log line that contains ``text``, waiting for it (bounded)."""

        def found() -> str | None:
            return next((line for line in self.log if text in line), None)

        with self._log_grew:
            if not self._log_grew.wait_for(lambda: found() is not None, WAIT):
                raise AssertionError(f"no {text!r} in the log:\n" + "".join(self.log))
        return found() or ""

    def connect(self, role: str) -> Line:
        """A connection to the ``player``, ``admin`` or ``web`` port, closed with the daemon."""
        client = Line(self.ports[role])
        self.clients.append(client)
        return client

    def player(self) -> Line:
        """A player past the greeting."""
        client = self.connect("player")
        assert client.line() == "You are now connected to the server!"
        assert client.line().startswith("Pick a number between ")
        return client

    def admin(self) -> Line:
        """An administrator past the handshake."""
        client = self.connect("admin")
        client.send("Admin-Greetings")
        assert client.line().startswith("OK Admin-Greetings")
        return client

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the daemon."""
        self.proc.send_signal(signum)

    def wait(self) -> int:
        """Wait for the daemon to exit; its exit status."""
        return self.proc.wait(WAIT)

    def kill(self) -> None:
        """``kill -9``: no chance to write anything more."""
        self.proc.kill()
        self.proc.wait(WAIT)

    def stop(self) -> None:
        """Stop as an operator would (SIGTERM), and let go of everything."""
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        self._reader.join(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._own_cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def play_to_win(player: Line, lo: int = 1, hi: int = 30) -> tuple[int, int, str]:
    """Binary-search the secret; return (secret, guesses, the Correct! line)."""
    guesses = 0
    while lo <= hi:
        guess = (lo + hi) // 2
        player.send(str(guess))
        guesses += 1
        reply = player.line()
        if reply.startswith("Too low!"):
            lo = guess + 1
        elif reply.startswith("Too high!"):
            hi = guess - 1
        else:
            return guess, guesses, reply
    raise AssertionError("the binary search ran out of numbers")
