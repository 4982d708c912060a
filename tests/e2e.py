"""End-to-end harness: ``twistd -n guessgame`` as a subprocess on free ports.

`Daemon` starts the real daemon, learns the ports it bound from its log,
and always kills it; `Line` is a blocking line socket with timeouts, for
tests that play the daemon as a user would.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LISTENING = re.compile(rb"(player|admin) port listening on ([\d.]+|\[[0-9a-f:]+\]):(\d+)")


def twistd() -> str:
    """The twistd script installed beside this Python."""
    path = Path(sys.executable).with_name("twistd")
    assert path.exists(), f"twistd is not installed beside {sys.executable}"
    return str(path)


class Daemon:
    """A running ``twistd -n guessgame``; use as a context manager."""

    def __init__(self, *args: str, cwd: str | Path | None = None, timeout: float = 20) -> None:
        self.args = [
            twistd(),
            "--nodaemon",
            "--pidfile=",
            "--logfile=-",
            "guessgame",
            "--player",
            "tcp:0:interface=127.0.0.1",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            *args,
        ]
        # The working directory holds the default --db file: a fresh one
        # per daemon unless the test names it.
        self._own_cwd = cwd is None
        self.cwd = cwd if cwd is not None else tempfile.mkdtemp(prefix="guessgame-e2e-")
        self.timeout = timeout
        self.ports: dict[str, int] = {}
        self.output = b""
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> None:
        """Start the daemon and wait until both ports listen."""
        self.ports = {}
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.timeout
        while len(self.ports) < 2:
            chunk = self._read(deadline)
            if not chunk:
                raise AssertionError(f"daemon exited before listening:\n{self.output.decode()}")
            for role, _host, port in LISTENING.findall(self.output):
                self.ports[role.decode()] = int(port)

    def _read(self, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"daemon output timed out:\n{self.output.decode()}")
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        self.output += chunk
        return chunk

    def wait(self, timeout: float = 20) -> int:
        """Wait for the process to exit, collecting its output; return its status."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """Kill the daemon if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._own_cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)


class Line:
    """A blocking line-oriented socket with a timeout on every read."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, text: str) -> None:
        """Send one line."""
        self.sock.sendall(text.encode() + b"\r\n")

    def line(self) -> str:
        """The next line (without CRLF); raises on timeout or close."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def closed(self) -> bool:
        """Whether the server closed the connection (after any unread data)."""
        return self.buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def play_to_win(player: Line, lo: int = 1, hi: int = 30) -> tuple[int, int, str]:
    """Binary-search the secret; return (secret, guesses, the Correct! line)."""
    guesses = 0
    while True:
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
