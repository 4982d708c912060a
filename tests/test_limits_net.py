"""The player port's limits over real loopback connections, and a real telnet.

In-process listeners on port 0 for the connection limits, the idle timeout
and connection churn; a ``twistd -n guessgame`` subprocess where the
daemon's own memory is measured; Debian's ``telnet`` in a pseudo-terminal.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, task
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated

from guessgame.admin.protocol import AdminFactory
from guessgame.events import Left
from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.player.modern import IDLE_GOODBYE, SERVER_FULL, TOO_MANY_FROM_ADDRESS
from guessgame.wire.limits import CLOSE_GRACE, Limits
from tests.clients import make_certificate
from tests.common import FakeObserver, LineClient, listen, make_game, open_client, secret_of
from tests.e2e import WAIT, Daemon

GREETING = ["You are now connected to the server!", "Pick a number between 1-30"]


def reactor() -> Any:
    """The running reactor."""
    from twisted.internet import reactor

    return reactor


@defer.inlineCallbacks
def open_from(port: int, source: str) -> Any:
    """Connect a LineClient to 127.0.0.1:``port`` from the address ``source``."""
    endpoint = endpoints.TCP4ClientEndpoint(
        reactor(), "127.0.0.1", port, timeout=5, bindAddress=(source, 0)
    )
    client = yield endpoints.connectProtocol(endpoint, LineClient())
    return client


@defer.inlineCallbacks
def greeted(client: LineClient) -> Any:
    """Read the two greeting lines."""
    lines = [(yield client.next_line()), (yield client.next_line())]
    return lines


@defer.inlineCallbacks
def refused_with(client: LineClient) -> Any:
    """Read the one line a refused client gets, and wait for the close."""
    line = yield client.next_line()
    yield client.lost.addTimeout(5, reactor())
    return line


def left(game: Game) -> defer.Deferred[Any]:
    """Fires with the next player that leaves ``game``."""
    d: defer.Deferred[Any] = defer.Deferred()

    class Watcher:
        def game_event(self, event: Any) -> None:
            if isinstance(event, Left) and not d.called:
                game.remove_observer(self)
                d.callback(event)

        def close(self) -> defer.Deferred[None]:
            return defer.succeed(None)

    game.add_observer(Watcher())
    return d.addTimeout(5, reactor())


@pytest_twisted.inlineCallbacks
def test_per_address_and_total_limits() -> Iterator[Any]:
    """Past --max-per-ip from one address, and past --max-players in all, a client is refused."""
    game = make_game()
    factory = PlayerFactory(game, limits=Limits(max_per_ip=2, max_players=5))
    port = yield listen(factory)
    number = port.getHost().port
    clients: list[LineClient] = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"):
            client = yield open_from(number, source)
            clients.append(client)
            assert (yield greeted(client)) == GREETING
        third = yield open_from(number, "127.0.0.1")
        assert (yield refused_with(third)) == TOO_MANY_FROM_ADDRESS
        fifth = yield open_from(number, "127.0.0.3")
        clients.append(fifth)
        assert (yield greeted(fifth)) == GREETING
        sixth = yield open_from(number, "127.0.0.4")
        assert (yield refused_with(sixth)) == SERVER_FULL
        assert len(game.players) == 5
        gone = left(game)
        yield clients.pop(0).close()
        yield gone  # the server has seen the close and freed the slot
        again = yield open_from(number, "127.0.0.3")
        clients.append(again)
        assert (yield greeted(again)) == GREETING
    finally:
        for client in clients:
            yield client.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_idle_timeout_over_loopback() -> Iterator[Any]:
    """A silent client is warned at half a short timeout, then told goodbye and closed."""
    game = Game(reactor(), lo=1, hi=30)
    game.startService()
    # With every other limit on too: closing must work with the output cap's
    # producer registered on the transport.
    factory = PlayerFactory(
        game, limits=Limits(idle_timeout=0.6, max_rate=100, max_output=65536, max_per_ip=20)
    )
    port = yield listen(factory)
    try:
        client = yield open_client(port.getHost().port)
        started = time.monotonic()
        assert (yield greeted(client)) == GREETING
        client.transport.write(b"hel")  # part of a line is not input
        warning = yield client.next_line()
        assert warning == "*** No input for a while: say something within 1 second to stay."
        assert (yield client.next_line()) == IDLE_GOODBYE
        yield client.lost.addTimeout(5, reactor())
        assert 0.5 < time.monotonic() - started < 3
        assert game.players == {}
    finally:
        yield port.stopListening()
        yield game.stopService()


@pytest_twisted.inlineCallbacks
def test_flood_is_slowed_not_dropped() -> Iterator[Any]:
    """A flood over TCP is read at --max-rate: every line is answered, later."""
    game = Game(reactor(), lo=1, hi=30)
    game.startService()
    port = yield listen(PlayerFactory(game, limits=Limits(max_rate=200, max_output=1 << 20)))
    try:
        client = yield open_client(port.getHost().port)
        assert (yield greeted(client)) == GREETING
        started = time.monotonic()
        client.transport.write(b"flood\n" * 500)
        for _ in range(500):
            assert (yield client.next_line()) == "Pick a number between 1-30"
        elapsed = time.monotonic() - started
        # A burst of 200, then 300 more at 200 a second.
        assert 1.2 < elapsed < 5
        yield client.close()
    finally:
        yield port.stopListening()
        yield game.stopService()


@pytest_twisted.inlineCallbacks
def test_player_dropped_by_the_output_cap_plays_no_more() -> Iterator[Any]:
    """Over TCP, lines a dropped player sent before the drop are never handled."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    port = yield listen(PlayerFactory(game, limits=Limits(max_output=1024)))
    try:
        client = yield open_client(port.getHost().port)
        assert (yield greeted(client)) == GREETING
        secret = str(secret_of(game)).encode()
        client.transport.write(b"help\n" * 40 + secret + b"\n" + b"name ghost\n")
        yield client.lost.addTimeout(5, reactor())
        yield task.deferLater(reactor(), 0.1, lambda: None)
        kinds = [type(event).__name__ for event in observer.events]
        assert kinds == ["Joined", "Left"]
        assert [event.reason for event in observer.events if isinstance(event, Left)] == ["error"]
        assert game.players == {}
    finally:
        yield port.stopListening()


class Churn(protocol.Protocol):
    """A client that aborts its connection at once or after the first bytes."""

    def __init__(self, wait_for_greeting: bool) -> None:
        self.wait = wait_for_greeting
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        """Abort at once, unless waiting for the greeting."""
        if not self.wait:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Abort on the first bytes."""
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        """Done."""
        self.done.callback(None)


@pytest_twisted.inlineCallbacks
def test_500_aborted_connections_leave_no_player() -> Iterator[Any]:
    """500 connections opened and aborted leave `count` at 0 players."""
    game = make_game()
    players = yield endpoints.serverFromString(
        reactor(), "tcp:0:interface=127.0.0.1:backlog=1024"
    ).listen(PlayerFactory(game, limits=Limits(max_per_ip=0)))
    admins = yield listen(AdminFactory(game))
    admin = yield open_client(admins.getHost().port)
    try:
        admin.send("Admin-Greetings")
        assert (yield admin.next_line()) == "OK Admin-Greetings, 0 players online"
        endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", players.getHost().port)
        churn = [Churn(n % 2 == 0) for n in range(500)]
        for start in range(0, 500, 100):
            batch = churn[start : start + 100]
            yield defer.gatherResults([endpoints.connectProtocol(endpoint, c) for c in batch])
            yield defer.gatherResults([c.done for c in batch]).addTimeout(10, reactor())
        deadline = time.monotonic() + 10
        while True:
            admin.send("count")
            line = yield admin.next_line()
            while line.startswith("EVENT"):
                line = yield admin.next_line()
            if line == "OK 0 players" or time.monotonic() > deadline:
                break
            yield task.deferLater(reactor(), 0.05, lambda: None)
        assert line == "OK 0 players"
        assert game.players == {}
    finally:
        yield admin.close()
        yield players.stopListening()
        yield admins.stopListening()


# TLS: closing with the output cap's producer registered.

# Twisted's ssl: server endpoint still hands pyOpenSSL its older certificate type.
OLD_CERTIFICATE_TYPE = "ignore:Passing pyOpenSSL (X509|PKey) objects is deprecated"


class ClosingClient(LineClient):
    """A LineClient that keeps the reason its connection was lost."""

    reason: Any = None

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """Keep the reason, then fail waiters and fire `lost`."""
        self.reason = reason
        super().connectionLost(reason)


@defer.inlineCallbacks
def listen_tls(factory: protocol.Factory[Any], directory: Any) -> Any:
    """Listen with ``factory`` over TLS on a free loopback port; return the port and a client.

    The client is a function that connects a `ClosingClient` to it,
    checking the server's self-signed certificate for ``localhost``.
    """
    from twisted.internet import ssl

    key, cert = make_certificate(directory, "server")
    port = yield endpoints.serverFromString(
        reactor(), f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    ).listen(factory)
    trust = ssl.Certificate.loadPEM(Path(cert).read_bytes())

    def connect() -> defer.Deferred[Any]:
        endpoint = endpoints.SSL4ClientEndpoint(
            reactor(),
            "127.0.0.1",
            port.getHost().port,
            ssl.optionsForClientTLS("localhost", trustRoot=trust),
            timeout=5,
        )
        return endpoints.connectProtocol(endpoint, ClosingClient())

    return port, connect


@pytest.mark.filterwarnings(OLD_CERTIFICATE_TYPE)
@pytest_twisted.inlineCallbacks
def test_quit_over_tls_closes_cleanly(tmp_path: Any) -> Iterator[Any]:
    """A player's quit over TLS with the output cap on ends in a clean close, not an abort."""
    game = Game(reactor(), lo=1, hi=30)
    game.startService()
    # The greeting waits for the first line, which comes after the handshake.
    factory = PlayerFactory(game, limits=Limits(max_output=65536), classic_wait=30)
    port, connect = yield listen_tls(factory, tmp_path)
    try:
        client = yield connect()
        gone = left(game)
        client.send("quit")
        assert (yield greeted(client)) == GREETING
        assert (yield client.next_line()) == "Goodbye!"
        # Bounded beyond the close grace, after which a close is an abort.
        yield client.lost.addTimeout(CLOSE_GRACE + 10, reactor())
        client.reason.trap(ConnectionDone)
        assert (yield gone).reason == "quit"
    finally:
        yield port.stopListening()
        yield game.stopService()


@pytest.mark.filterwarnings(OLD_CERTIFICATE_TYPE)
@pytest_twisted.inlineCallbacks
def test_admin_quit_over_tls_closes_cleanly(tmp_path: Any) -> Iterator[Any]:
    """An administrator's quit over TLS with the output cap on ends in a clean close."""
    game = make_game()
    port, connect = yield listen_tls(AdminFactory(game, max_output=65536), tmp_path)
    try:
        client = yield connect()
        client.send("Admin-Greetings")
        assert (yield client.next_line()) == "OK Admin-Greetings, 0 players online"
        client.send("quit")
        assert (yield client.next_line()) == "OK bye"
        # An administrator has no close grace: a held close would never end.
        yield client.lost.addTimeout(CLOSE_GRACE + 10, reactor())
        client.reason.trap(ConnectionDone)
    finally:
        yield port.stopListening()


@pytest.mark.filterwarnings(OLD_CERTIFICATE_TYPE)
@pytest_twisted.inlineCallbacks
def test_player_greeted_before_the_tls_handshake_stays(tmp_path: Any) -> Iterator[Any]:
    """Output queued while the TLS handshake is under way is not a peer that stopped reading."""
    game = Game(reactor(), lo=1, hi=30)
    game.startService()
    # No dialect wait: the greeting is written as the connection opens,
    # before the handshake can be over.
    factory = PlayerFactory(game, limits=Limits(max_output=65536), classic_wait=0)
    port, connect = yield listen_tls(factory, tmp_path)
    try:
        client = yield connect()
        assert (yield greeted(client)) == GREETING
        client.send("help")
        assert (yield client.next_line()).startswith("Guess the secret whole number")
        assert len(game.players) == 1
        yield client.close()
    finally:
        yield port.stopListening()
        yield game.stopService()


@pytest.mark.filterwarnings(OLD_CERTIFICATE_TYPE)
@pytest_twisted.inlineCallbacks
def test_output_cap_holds_over_tls(tmp_path: Any) -> Iterator[Any]:
    """Over TLS a player with more than max-output bytes unsent is dropped, reason error."""
    game = Game(reactor(), lo=1, hi=30)
    game.startService()
    factory = PlayerFactory(game, limits=Limits(max_output=4096), classic_wait=30)
    port, connect = yield listen_tls(factory, tmp_path)
    try:
        client = yield connect()
        client.send("help")
        assert (yield greeted(client)) == GREETING
        assert (yield client.next_line()).startswith("Guess the secret whole number")
        gone = left(game)
        # Written in one turn of the reactor: all of it is unsent at once,
        # more than the cap and less than the transport's default buffer.
        for n in range(16):
            game.say(f"{n:02d} " + "m" * 1000)
        assert (yield gone).reason == "error"
        yield client.lost.addTimeout(5, reactor())
    finally:
        yield port.stopListening()
        yield game.stopService()


# The daemon as a subprocess: its memory while a player stops reading.


def _memory_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_never_reading_player_is_dropped_and_memory_stays_flat(tmp_path: Any) -> None:
    """A player that never reads is closed (reason error) and the daemon's memory stays flat."""
    with Daemon("--max-line=2048", "--max-output=65536", cwd=tmp_path) as daemon:
        player_port, admin_port = daemon.ports["player"], daemon.ports["admin"]
        lazy = socket.socket()
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect(("127.0.0.1", player_port))
        admin = socket.create_connection(("127.0.0.1", admin_port), timeout=10)
        reader = admin.makefile("rb")
        admin.sendall(b"Admin-Greetings\r\n")
        assert reader.readline().startswith(b"OK Admin-Greetings, ")
        before = _memory_kib(daemon.proc.pid, "VmRSS")
        sent = 0
        left = None
        # Up to 32 MB of notices, each one different (a notice sent to many
        # is encoded once and shared); each batch is answered.
        while sent < 16000 and left is None:
            admin.sendall(
                b"".join(b"say %06d " % (sent + n) + b"m" * 1990 + b"\r\n" for n in range(100))
            )
            sent += 100
            replies = 0
            while replies < 100:
                line = reader.readline()
                if line.startswith(b"EVENT leave"):
                    left = line
                elif line.startswith(b"OK sent to"):
                    replies += 1
                else:
                    assert line.startswith(b"EVENT"), line
        assert left is not None and left.rstrip().endswith(b" error"), left
        grown = _memory_kib(daemon.proc.pid, "VmHWM") - before
        assert grown < 16 * 1024, f"daemon memory grew by {grown} KiB"
        admin.sendall(b"count\r\n")
        assert reader.readline() == b"OK 0 players\r\n"
        lazy.close()
        admin.close()


def closed_by_server(sock: socket.socket, most: int) -> bool:
    """Read until the server closes ``sock``; False if ``most`` bytes come first."""
    received = 0
    try:
        while received < most:
            chunk = sock.recv(65536)
            if not chunk:
                return True
            received += len(chunk)
    except ConnectionResetError:
        return True
    return False


@pytest.mark.parametrize(
    ("greet", "command"),
    [(True, b"help\r\n"), (False, b"x\r\n")],
    ids=["after-the-handshake", "before-the-handshake"],
)
def test_admin_that_never_reads_is_dropped_and_logged(
    tmp_path: Any, greet: bool, command: bytes
) -> None:
    """An administrator that floods and never reads is dropped and logged; memory stays flat."""
    with Daemon("--max-output=65536", cwd=tmp_path) as daemon:
        admin = socket.socket()
        admin.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        admin.settimeout(WAIT)
        admin.connect(("127.0.0.1", daemon.ports["admin"]))
        peer = f"127.0.0.1:{admin.getsockname()[1]}"
        if greet:
            admin.sendall(b"Admin-Greetings\r\n")
            assert admin.recv(100).startswith(b"OK Admin-Greetings, ")
        before = _memory_kib(daemon.proc.pid, "VmRSS")
        # Lines asking for 20 MB of replies (help: 700 bytes each; before
        # the handshake, an ERR line of 32 bytes a line of 3), none read.
        batch = command * (20_000_000 // 100 // (700 if greet else 32))
        try:
            for _ in range(100):
                admin.sendall(batch)
        except (BrokenPipeError, ConnectionResetError):
            pass  # dropped while sending
        # Far less than the replies: what the cap and the kernel's buffers hold.
        assert closed_by_server(admin, 4_000_000), "the administrator was never disconnected"
        grown = _memory_kib(daemon.proc.pid, "VmHWM") - before
        assert grown < 16 * 1024, f"daemon memory grew by {grown} KiB"
        admin.close()
        assert daemon.admin().command("count") == ["OK 0 players"]
    logged = f"administrator {peer} stopped reading: over 65536 bytes unsent, closing"
    assert any(logged in line for line in daemon.log), logged


# A real telnet client in a pseudo-terminal.

TELNET = shutil.which("telnet")


class Terminal(protocol.ProcessProtocol):
    """A program in a pseudo-terminal, with waits on what it prints next."""

    def __init__(self) -> None:
        self.output = b""
        self.seen = 0  # output before this offset has been matched already
        self.ended: defer.Deferred[Any] = defer.Deferred()
        self._waiting: tuple[bytes, defer.Deferred[None]] | None = None

    def outReceived(self, data: bytes) -> None:
        """Collect output and wake whoever waits for it."""
        self.output += data
        if self._waiting is not None and self._match(self._waiting[0]):
            d = self._waiting[1]
            self._waiting = None
            d.callback(None)

    def _match(self, text: bytes) -> bool:
        at = self.output.find(text, self.seen)
        if at < 0:
            return False
        self.seen = at + len(text)
        return True

    def processEnded(self, reason: Any) -> None:
        """Fire `ended` with the reason."""
        if self._waiting is not None:
            text, d = self._waiting
            self._waiting = None
            d.errback(AssertionError(f"ended before {text!r}: {self.output!r}"))
        self.ended.callback(reason.value)

    def expect(self, text: str, timeout: float = 5) -> defer.Deferred[None]:
        """Fire once ``text`` is printed after what was matched before."""
        d: defer.Deferred[None] = defer.Deferred()
        if self._match(text.encode()):
            d.callback(None)
        else:
            self._waiting = (text.encode(), d)
            d.addTimeout(timeout, reactor())
        return d

    def type(self, keys: bytes) -> None:
        """Type ``keys`` on the terminal."""
        self.transport.write(keys)


@defer.inlineCallbacks
def run_telnet(port: int) -> Any:
    """Start telnet 127.0.0.1 ``port`` in a pseudo-terminal."""
    assert TELNET is not None
    terminal = Terminal()
    reactor().spawnProcess(
        terminal,
        TELNET,
        ["telnet", "127.0.0.1", str(port)],
        env={"TERM": "dumb", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        usePTY=True,
    )
    yield terminal.expect("Pick a number between 1-30")
    return terminal


@pytest.mark.skipif(
    TELNET is None,
    reason="the telnet client is not installed (make test installs it with apt-get as root)",
)
@pytest_twisted.inlineCallbacks
def test_real_telnet_session_plays_and_ctrl_c_quits() -> Iterator[Any]:
    """Debian telnet in a pty plays a whole game, arrow keys change nothing, Ctrl-C quits."""
    game = make_game(seed=5)
    port = yield listen(PlayerFactory(game))
    number = port.getHost().port
    try:
        terminal = yield run_telnet(number)
        # An arrow key typed into the line is dropped, not a bad name.
        terminal.type(b"name t\x1b[Del\r")
        yield terminal.expect("You are now known as tel.")
        secret = secret_of(game)
        wrong = 1 if secret != 1 else 2
        terminal.type(f"{wrong}\r".encode())
        yield terminal.expect("! Pick a number between 1-30\r\n")
        terminal.type(f"{secret}\r".encode())
        yield terminal.expect(f"Correct! The number was {secret}. You won in 2 guesses!")
        yield terminal.expect("Connection closed by foreign host.")
        reason = yield terminal.ended.addTimeout(5, reactor())
        assert isinstance(reason, (ProcessDone, ProcessTerminated))
        assert b"\xff" not in terminal.output and b"Traceback" not in terminal.output

        terminal = yield run_telnet(number)
        terminal.type(b"\x03")
        yield terminal.expect("Goodbye!")
        yield terminal.expect("Connection closed by foreign host.")
        yield terminal.ended.addTimeout(5, reactor())
        assert game.players == {}
    finally:
        yield port.stopListening()
