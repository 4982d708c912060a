"""Unit tests of the player port's limits, on a Clock and StringTransports."""

from __future__ import annotations

import resource
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from guessgame.admin.protocol import AdminFactory
from guessgame.events import Goodbye, Left
from guessgame.player.factory import PlayerFactory
from guessgame.player.modern import SERVER_FULL, TOO_MANY_FROM_ADDRESS, notice_text
from guessgame.wire.limits import CLOSE_GRACE, ConnectionCounter, Limits, raise_open_file_limit
from tests.common import FakeObserver, Peer, connect, make_game

PROMPT = "Pick a number between 1-30"
GREETING = ["You are now connected to the server!", PROMPT]


def refusal_text(refusal: Goodbye | None) -> str | None:
    """The notice a modern player reads for the counter's refusal (None: admitted)."""
    return None if refusal is None else notice_text(refusal)


def v4(host: str, port: int = 1) -> IPv4Address:
    """An IPv4 peer address."""
    return IPv4Address("TCP", host, port)


# Counting connections.


def test_counter_refuses_past_the_total() -> None:
    """max-players refuses the connection after the limit with the full notice."""
    counter = ConnectionCounter(Limits(max_players=2))
    assert counter.admit(v4("10.0.0.1")) is None
    assert counter.admit(v4("10.0.0.2")) is None
    assert refusal_text(counter.admit(v4("10.0.0.3"))) == SERVER_FULL
    counter.release(v4("10.0.0.1"))
    assert counter.admit(v4("10.0.0.3")) is None
    assert counter.total == 2


def test_counter_refuses_past_the_per_address_limit() -> None:
    """max-per-ip refuses a third from one address, not from another one."""
    counter = ConnectionCounter(Limits(max_per_ip=2))
    assert counter.admit(v4("10.0.0.1", 1)) is None
    assert counter.admit(v4("10.0.0.1", 2)) is None
    assert refusal_text(counter.admit(v4("10.0.0.1", 3))) == TOO_MANY_FROM_ADDRESS
    assert counter.admit(v4("10.0.0.2", 1)) is None
    assert counter.admit(IPv6Address("TCP", "::1", 1)) is None
    counter.release(v4("10.0.0.1", 2))
    assert counter.admit(v4("10.0.0.1", 4)) is None
    assert counter.per_host == {"10.0.0.1": 2, "10.0.0.2": 1, "::1": 1}


def test_counter_forgets_an_address_with_no_connection_left() -> None:
    """per_host does not keep one entry per address ever seen."""
    counter = ConnectionCounter(Limits(max_per_ip=5))
    for n in range(100):
        addr = v4(f"10.0.{n}.1")
        assert counter.admit(addr) is None
        counter.release(addr)
    assert counter.per_host == {}
    assert counter.total == 0


def test_counter_does_not_count_unix_peers_per_address() -> None:
    """UNIX-socket peers have no IP address: only the total applies."""
    counter = ConnectionCounter(Limits(max_per_ip=1, max_players=3))
    for _ in range(3):
        assert counter.admit(UNIXAddress(None)) is None
    assert refusal_text(counter.admit(UNIXAddress(None))) == SERVER_FULL


def test_zero_means_no_limit() -> None:
    """With max-players and max-per-ip 0 nothing is refused."""
    counter = ConnectionCounter(Limits())
    assert all(counter.admit(v4("10.0.0.1", n)) is None for n in range(1000))


def test_player_port_refuses_with_notice_and_close() -> None:
    """A refused player gets only the notice, is closed, and never joins the game."""
    game = make_game()
    factory = PlayerFactory(game, limits=Limits(max_per_ip=2, max_players=3))
    first = connect(factory, "10.0.0.1", 1)
    connect(factory, "10.0.0.1", 2)
    third = connect(factory, "10.0.0.1", 3)
    assert third.read() == [TOO_MANY_FROM_ADDRESS]
    assert third.closed
    assert third.send(b"help\n") == []
    assert len(game.players) == 2
    third.lose()
    assert len(game.players) == 2
    connect(factory, "10.0.0.2", 1)
    full = connect(factory, "10.0.0.3", 1)
    assert full.read() == [SERVER_FULL]
    assert full.closed
    first.lose()
    again = connect(factory, "10.0.0.1", 4)
    assert again.read() == GREETING
    assert factory.connections.total == 3


def aborted(peer: Peer) -> bool:
    """Whether the protocol aborted its StringTransport."""
    return bool(getattr(peer.transport, "disconnected", False))


# Idle timeout.


def idle_peer(timeout: float, clock: Clock | None = None) -> tuple[Peer, Clock, FakeObserver]:
    """A greeted player with ``timeout`` seconds of idle timeout, and an observer."""
    clock = clock if clock is not None else Clock()
    game = make_game(clock=clock)
    observer = FakeObserver()
    game.add_observer(observer)
    peer = connect(PlayerFactory(game, limits=Limits(idle_timeout=timeout)))
    assert peer.read() == GREETING
    return peer, clock, observer


def warning(seconds: int) -> str:
    """The idle warning notice."""
    return f"*** No input for a while: say something within {seconds} seconds to stay."


def test_idle_warns_a_minute_before_and_closes() -> None:
    """With 600 s: the warning at 540 s, the goodbye at 600 s, leave reason idle."""
    peer, clock, observer = idle_peer(600)
    clock.advance(539)
    assert peer.read() == []
    clock.advance(1)
    assert peer.read() == [warning(60)]
    clock.advance(59)
    assert peer.read() == []
    assert not peer.closed
    clock.advance(1)
    assert peer.read() == ["*** Idle for too long. Goodbye!"]
    assert peer.closed
    peer.lose()
    assert [e.reason for e in observer.events if isinstance(e, Left)] == ["idle"]


def test_idle_short_timeout_warns_at_half() -> None:
    """A timeout under two minutes warns at half of it."""
    peer, clock, _ = idle_peer(60)
    clock.advance(29.9)
    assert peer.read() == []
    clock.advance(0.1)
    assert peer.read() == [warning(30)]
    clock.advance(30)
    assert peer.read() == ["*** Idle for too long. Goodbye!"]


@pytest.mark.parametrize(
    ("timeout", "warned"),
    [
        (2, "*** No input for a while: say something within 1 second to stay."),
        (4, "*** No input for a while: say something within 2 seconds to stay."),
    ],
)
def test_idle_warning_counts_its_seconds(timeout: float, warned: str) -> None:
    """The warning's seconds agree with their number: 1 second, 2 seconds."""
    peer, clock, _ = idle_peer(timeout)
    clock.advance(timeout / 2)
    assert peer.read() == [warned]


def test_complete_line_resets_idle_but_partial_does_not() -> None:
    """Only a complete line counts as input; a partial line is still idle."""
    peer, clock, _ = idle_peer(600)
    clock.advance(500)
    assert peer.send(b"hello\n") == [PROMPT]
    clock.advance(539)
    assert peer.read() == []
    assert peer.send(b"hel") == []
    clock.advance(1)
    assert peer.read() == [warning(60)]
    clock.advance(60)
    assert peer.closed


@pytest.mark.parametrize(
    "packet",
    [
        b"\xff\xfa\x18\n\xff\xf0",
        b"\xff\xfa\x18x\xff\xf0\n",
        b"\xff\xf1\n",
    ],
    ids=["LF inside a subnegotiation", "LF completing a line", "LF after a command"],
)
def test_only_a_complete_line_resets_idle(packet: bytes) -> None:
    """An LF inside a telnet command is no line: the idle timer goes on."""
    peer, clock, _ = idle_peer(600)
    clock.advance(500)
    answered = peer.send(packet)
    clock.advance(40)
    if answered:  # a line arrived at 500 s: no warning until 1040 s
        assert peer.read() == []
    else:
        assert peer.read() == [warning(60)]


def test_line_after_warning_keeps_the_player() -> None:
    """A line after the warning cancels the close; a new silence warns again."""
    peer, clock, _ = idle_peer(600)
    clock.advance(540)
    assert peer.read() == [warning(60)]
    clock.advance(30)
    assert peer.send(b"top\n") == ["No winners yet."]
    clock.advance(500)
    assert not peer.closed
    assert peer.read() == []
    clock.advance(40)
    assert peer.read() == [warning(60)]


def test_idle_off_leaves_no_timer() -> None:
    """--idle-timeout 0 schedules nothing."""
    clock = Clock()
    game = make_game(clock=clock)
    connect(PlayerFactory(game, limits=Limits(idle_timeout=0)))
    assert clock.getDelayedCalls() == []


def test_lost_connection_cancels_timers() -> None:
    """A connection that is gone leaves no timer behind."""
    peer, clock, _ = idle_peer(600)
    peer.lose()
    assert clock.getDelayedCalls() == []


def test_idle_goodbye_to_a_peer_that_never_reads_is_aborted() -> None:
    """A closed connection that will not flush is aborted after the grace time."""
    peer, clock, _ = idle_peer(60)
    clock.advance(60)
    assert peer.closed and not aborted(peer)
    clock.advance(CLOSE_GRACE)
    assert aborted(peer)


# Rate limit.


def rate_peer(rate: int) -> tuple[Peer, Clock]:
    """A greeted player limited to ``rate`` lines a second."""
    clock = Clock()
    peer = connect(PlayerFactory(make_game(clock=clock), limits=Limits(max_rate=rate)))
    peer.read()
    return peer, clock


def test_rate_limit_allows_a_burst_then_pauses_reading() -> None:
    """Beyond the burst the transport is paused; nothing is dropped."""
    peer, clock = rate_peer(10)
    assert len(peer.send(b"x\n" * 25)) == 10
    assert peer.transport.producerState == "paused"
    clock.advance(0.1)
    assert peer.read() == []
    replies = 10
    for _ in range(40):
        clock.advance(0.05)
        replies += len(peer.read())
    assert replies == 25
    assert peer.transport.producerState == "producing"


def test_rate_limited_lines_are_answered_after_a_half_close() -> None:
    """A flood that ends in a half-close still gets every reply, then the close."""
    peer, clock = rate_peer(10)
    assert len(peer.send(b"x\n" * 25)) == 10
    peer.proto.readConnectionLost()
    assert not peer.closed
    replies = 10
    for _ in range(40):
        clock.advance(0.05)
        replies += len(peer.read())
    assert replies == 25
    assert peer.closed


def test_rate_limit_holds_the_average() -> None:
    """A flood gets no more than the rate (plus the burst) over time."""
    peer, clock = rate_peer(100)
    replies = len(peer.send(b"x\n" * 1000))
    assert replies == 100
    for _ in range(300):
        clock.advance(0.01)
        replies += len(peer.read())
    # Three seconds at 100 a second after a burst of 100.
    assert 370 <= replies <= 400


def test_rate_limit_lets_a_steady_sender_through() -> None:
    """Lines at the allowed rate are never held."""
    peer, clock = rate_peer(10)
    for _ in range(100):
        assert peer.send(b"x\n") == [PROMPT]
        clock.advance(0.1)
    assert peer.transport.producerState == "producing"


def test_no_rate_limit_never_pauses() -> None:
    """--max-rate 0: any flood is answered at once."""
    peer, _ = rate_peer(0)
    assert len(peer.send(b"x\n" * 5000)) == 5000
    assert peer.transport.producerState == "producing"


def test_rate_resume_does_not_undo_a_win_hold() -> None:
    """Reading stays paused while a win is saved, even when the rate timer fires."""
    peer, _ = rate_peer(10)
    peer.proto.hold("won")
    peer.proto.hold("rate")
    peer.proto.release("rate")
    assert peer.transport.producerState == "paused"
    peer.proto.release("won")
    assert peer.transport.producerState == "producing"


# Output cap.


class CappedTransport(StringTransport):
    """A StringTransport that pauses its producer past ``bufferSize``, as TCP does."""

    bufferSize = 2**16

    def write(self, data: bytes) -> None:
        """Queue and, like `FileDescriptor.write`, pause the producer when full."""
        super().write(data)
        if self.producer is not None and self.streaming and len(self.value()) > self.bufferSize:
            self.producer.pauseProducing()


def capped_peer(limit: int) -> tuple[Peer, Any]:
    """A greeted player over a `CappedTransport`, with an output cap of ``limit``."""
    game = make_game()
    factory = PlayerFactory(game, limits=Limits(max_output=limit))
    addr = v4("10.0.0.1")
    proto = factory.buildProtocol(addr)
    transport = CappedTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return Peer(proto, transport), game


def test_output_cap_drops_a_player_that_stopped_reading() -> None:
    """Past max-output unsent bytes the player is aborted, reason error."""
    peer, game = capped_peer(1000)
    observer = FakeObserver()
    game.add_observer(observer)
    assert peer.transport.bufferSize == 1000
    for _ in range(20):
        game.say("x" * 100)
    assert aborted(peer)
    assert len(peer.transport.value()) < 1000 + 200
    assert game.players == {}
    assert [e.reason for e in observer.events if isinstance(e, Left)] == ["error"]
    peer.lose()
    assert [e.reason for e in observer.events if isinstance(e, Left)] == ["error"]


class TcpLikeTransport(CappedTransport):
    """A `CappedTransport` whose abort, like TCP's, does not set ``disconnecting``."""

    keepalive: int | None = None

    def setTcpKeepAlive(self, enabled: int) -> None:
        """Record the keepalive setting."""
        self.keepalive = enabled

    def abortConnection(self) -> None:
        """Mark the transport aborted, and nothing else."""
        self.disconnected = True


def test_dropped_player_handles_nothing_it_sent() -> None:
    """After the output cap drops a player, its buffered lines are not handled."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    factory = PlayerFactory(game, limits=Limits(max_output=1000))
    addr = v4("10.0.0.1")
    proto = factory.buildProtocol(addr)
    transport = TcpLikeTransport(peerAddress=addr)
    proto.makeConnection(transport)
    secret = str(game._secret).encode()
    proto.dataReceived(b"help\n" * 20 + b"name ghost\n" + secret + b"\n")
    assert transport.disconnected
    assert game.players == {}
    assert b"Correct!" not in transport.value()
    assert b"ghost" not in transport.value()
    kinds = [type(event).__name__ for event in observer.events]
    assert kinds == ["Joined", "Left"]
    proto.dataReceived(b"help\n" + secret + b"\n")
    assert [type(event).__name__ for event in observer.events] == ["Joined", "Left"]
    proto.connectionLost()


def test_held_player_dropped_handles_nothing_on_release() -> None:
    """A player dropped while rate-held never has its held lines handled."""
    clock = Clock()
    game = make_game(clock=clock)
    factory = PlayerFactory(game, limits=Limits(max_output=1000, max_rate=2))
    addr = v4("10.0.0.1")
    proto = factory.buildProtocol(addr)
    transport = TcpLikeTransport(peerAddress=addr)
    proto.makeConnection(transport)
    proto.dataReceived(b"1\n1\n" + b"name ghost\n" * 3)
    assert transport.producerState == "paused"
    for _ in range(20):
        game.say("x" * 100)
    assert transport.disconnected
    before = transport.value()
    clock.advance(10)
    assert transport.value() == before
    proto.connectionLost()


def test_telnet_parse_stops_while_held() -> None:
    """A held connection leaves the rest of a packet unparsed until it reads again."""
    peer, clock = rate_peer(2)
    flood = (b"\xff\xf1" * 50 + b"\n") * 10 + b"\xff\xfd\x01"
    assert peer.send(flood) == [PROMPT, PROMPT]
    assert peer.transport.producerState == "paused"
    for _ in range(100):
        clock.advance(0.1)
    assert peer.transport.value() == (PROMPT.encode() + b"\r\n") * 8 + b"\xff\xfc\x01"


@pytest.mark.parametrize(
    "tail",
    [b"\xff\xf1", b"x\xff\xfa\x18", b"\xff", b"\xff\xfd"],
    ids=["command", "inside a subnegotiation", "half a command", "half a negotiation"],
)
def test_held_lines_are_answered_when_a_command_is_pending(tail: bytes) -> None:
    """Lines held by the rate limit are answered on release, a telnet command after them."""
    peer, clock = rate_peer(2)
    assert peer.send(b"a\nb\nc\nd\n" + tail) == [PROMPT, PROMPT]
    for _ in range(30):
        clock.advance(0.1)
    assert peer.read() == [PROMPT, PROMPT]


def test_output_under_the_cap_is_kept() -> None:
    """A player with fewer unsent bytes than the cap stays."""
    peer, game = capped_peer(4000)
    for _ in range(20):
        game.say("x" * 100)
    assert not aborted(peer)
    assert len(game.players) == 1


def capped_admin(limit: int, game: Any = None) -> tuple[Peer, AdminFactory]:
    """An administrator, before its handshake, over a `TcpLikeTransport` capped at ``limit``."""
    factory = AdminFactory(game if game is not None else make_game(), max_output=limit)
    addr = v4("127.0.0.1", 40001)
    proto = factory.buildProtocol(addr)
    transport = TcpLikeTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return Peer(proto, transport), factory


@pytest.fixture
def log_lines() -> Any:
    """The text of every event logged while the test runs."""
    from twisted.logger import formatEvent, globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield lambda: [formatEvent(e) for e in seen]
    globalLogPublisher.removeObserver(seen.append)


DROPPED_ADMIN = "administrator 127.0.0.1:40001 stopped reading: over 1024 bytes unsent, closing"


def test_admin_gets_keepalive_and_the_output_cap() -> None:
    """Admin connections turn on TCP keepalive and the output cap from the start."""
    peer, _ = capped_admin(4096)
    assert peer.transport.keepalive == 1
    assert peer.transport.producer is not None
    assert peer.transport.bufferSize == 4096


def test_admin_that_stopped_reading_is_dropped_and_logged(log_lines: Any) -> None:
    """Past max-output unsent bytes an administrator is aborted, logged, and answered no more."""
    game = make_game()
    peer, factory = capped_admin(1024, game)
    peer.proto.dataReceived(b"Admin-Greetings\r\n")
    # Each help reply is about 700 bytes: the second one goes over the cap,
    # and the lines still buffered behind it get no answer.
    peer.proto.dataReceived(b"help\r\n" * 10)
    assert aborted(peer)
    assert len(peer.transport.value()) < 3 * 800
    assert DROPPED_ADMIN in log_lines()
    written = len(peer.transport.value())
    game.new_round()  # an event: not queued for a dropped administrator
    # Input handed on after the abort (TLS may deliver what it had decrypted)
    # is not answered either.
    peer.proto.dataReceived(b"count\r\n")
    assert len(peer.transport.value()) == written
    peer.lose()
    assert factory.admins == set()


def test_admin_flooding_before_its_handshake_is_dropped(log_lines: Any) -> None:
    """An unread flood of ERR replies before the handshake is capped like any other output."""
    peer, factory = capped_admin(1024)
    peer.proto.dataReceived(b"x\r\n" * 1000)
    assert aborted(peer)
    first = b"ERR send Admin-Greetings first\r\n"
    assert peer.transport.value() == first * (1024 // len(first) + 1)
    assert DROPPED_ADMIN in log_lines()
    peer.lose()
    assert factory.admins == set()


def test_admin_under_the_cap_stays() -> None:
    """An administrator with fewer unsent bytes than the cap stays."""
    peer, factory = capped_admin(4096)
    peer.proto.dataReceived(b"Admin-Greetings\r\n" + b"count\r\n" * 100)
    assert not aborted(peer)
    assert factory.admins == {peer.proto}


def test_who_longer_than_the_cap_reaches_the_admin_whole() -> None:
    """One who reply larger than max-output is sent whole, not taken for a stopped reader."""
    game = make_game()
    players = PlayerFactory(game)
    for n in range(100):
        connect(players, port=30000 + n)
    peer, _ = capped_admin(1024, game)
    peer.send(b"Admin-Greetings\r\n")
    lines = peer.send(b"who\r\n")
    assert len(lines) == 101 and lines[-1] == "OK 100 players"
    assert len("".join(lines)) > 4 * 1024
    assert not aborted(peer)
    # The cap is max-output beyond that reply: unread output past it is dropped.
    peer.proto.dataReceived(b"help\r\n" * 20)
    assert aborted(peer)


def test_classic_who_longer_than_the_cap_reaches_the_admin_whole() -> None:
    """A classic Who listing larger than max-output is sent whole, then the close."""
    game = make_game()
    players = PlayerFactory(game)
    for n in range(100):
        connect(players, port=30000 + n)
    peer, _ = capped_admin(1024, game)
    assert peer.send(b"Hello\r\n") == ["Admin-Greetings"]
    lines = peer.send(b"Who\r\n")
    assert lines == [f"127.0.0.1 {30000 + n}" for n in range(100)]
    assert peer.closed and not aborted(peer)


# The open-file limit.


def test_raise_open_file_limit_reaches_the_hard_limit() -> None:
    """The soft RLIMIT_NOFILE is raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip(f"hard open-file limit {hard} cannot be tested here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard - 1, hard))
    try:
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, hard - 1), hard))


def test_wrong_admin_token_is_logged_with_the_peer_address() -> None:
    """A wrong token gets ERR bad token, a close, and a log line naming the peer."""
    from twisted.logger import formatEvent, globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        clock = Clock()
        peer = connect(AdminFactory(make_game(clock=clock), token="right"), "127.0.0.9", 40001)
        peer.send(b"Admin-Greetings wrong\r\n")
        clock.advance(1)  # the delay after a wrong token
        assert peer.read() == ["ERR bad token"]
        assert peer.closed
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert "administrator 127.0.0.9:40001: bad token" in [formatEvent(e) for e in seen]


def test_slow_sender_is_reaped_by_the_idle_timeout() -> None:
    """One byte a second never completes a line: warned, closed, its buffer never grows past it."""
    peer, clock, _ = idle_peer(60)
    largest = 0
    for _ in range(60):
        peer.proto.dataReceived(b"7")
        largest = max(largest, len(peer.proto._buffer))
        clock.advance(1)
    assert peer.read() == [warning(30), "*** Idle for too long. Goodbye!"]
    assert peer.closed
    assert largest <= 60


def test_admin_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token check goes through hmac.compare_digest."""
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr("guessgame.admin.protocol.hmac.compare_digest", compare)
    peer = connect(AdminFactory(make_game(), token="right"))
    assert peer.send(b"Admin-Greetings right\r\n") == ["OK Admin-Greetings, 0 players online"]
    assert calls == [(b"right", b"right")]
