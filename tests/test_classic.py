"""The classic dialect: detection, classic player and classic admin, unit level.

Classic clients compare the whole result of one ``recv()``, so these tests
check every ``write`` call on its own, with `RecordingTransport`.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage

from guessgame.admin.protocol import AdminFactory
from guessgame.daemon import Listener
from guessgame.events import Joined, Left, Won
from guessgame.game import Game, Player
from guessgame.player.classic import ClassicDialect
from guessgame.player.connection import PlayerConnection
from guessgame.player.factory import PlayerFactory
from guessgame.player.modern import ModernDialect
from guessgame.store.base import LeaderboardEntry, MemoryStore
from guessgame.tap import Options, makeService
from guessgame.wire.limits import Limits
from tests.common import FakeObserver, listen, make_game, open_client
from tests.e2e import Daemon

GREETING = b"You are now connected to the server!\r\nPick a number between 1-30\r\n"
WAIT = 0.1


class RecordingTransport(StringTransport):
    """A StringTransport that keeps every write() call apart."""

    def __init__(self, peer: Any) -> None:
        super().__init__(peerAddress=peer)
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Record one write."""
        self.writes.append(data)
        super().write(data)

    def take(self) -> list[bytes]:
        """Return the writes made since the last call."""
        writes, self.writes = self.writes, []
        return writes


class Conn:
    """A protocol on a RecordingTransport."""

    def __init__(self, proto: Any, transport: RecordingTransport) -> None:
        self.proto = proto
        self.transport = transport

    def send(self, data: bytes) -> list[bytes]:
        """Feed ``data``; return the writes it caused."""
        self.proto.dataReceived(data)
        return self.transport.take()

    @property
    def closed(self) -> bool:
        """Whether the server asked to close."""
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The connection is gone."""
        self.proto.connectionLost(protocol.connectionDone)


def open_conn(factory: protocol.Factory[Any], addr: Any = None) -> Conn:
    """Connect a protocol from ``factory`` to a RecordingTransport."""
    addr = addr if addr is not None else IPv4Address("TCP", "127.0.0.1", 50000)
    proto = factory.buildProtocol(addr)
    transport = RecordingTransport(addr)
    proto.makeConnection(transport)
    return Conn(proto, transport)


def classic_player(game: Game, port: int = 50000) -> tuple[Conn, Player]:
    """A connection that said Hello and Game; return it and its Player."""
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT), IPv4Address("TCP", "127.0.0.1", port))
    assert conn.send(b"Hello\r\n") == [b"Greetings\r\n"]
    assert conn.send(b"Game\r\n") == [b"Ready\r\n"]
    player = list(game.players.values())[-1]
    return conn, player


# The classic player.


def test_classic_transcript_one_write_a_reply() -> None:
    """Hello, Game, a far, a close and the right guess: one exact write each, then close."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(b"Hello\r\n") == [b"Greetings\r\n"]
    assert conn.send(b"Game\r\n") == [b"Ready\r\n"]
    (player,) = game.players.values()
    player.secret = 17
    assert conn.send(b"My Guess is: 5\r\n") == [b"Far\r\n"]
    assert conn.send(b"My Guess is: 16\r\n") == [b"Close\r\n"]
    assert not conn.closed
    assert conn.send(b"My Guess is: 17\r\n") == [b"Correct\r\n"]
    assert conn.closed


@pytest.mark.parametrize(
    ("guess", "reply"),
    [
        (11, b"Far\r\n"),
        (12, b"Far\r\n"),
        (13, b"Close\r\n"),
        (14, b"Close\r\n"),
        (15, b"Correct\r\n"),
        (16, b"Close\r\n"),
        (17, b"Close\r\n"),
        (18, b"Far\r\n"),
        (1, b"Far\r\n"),
        (30, b"Far\r\n"),
    ],
)
def test_far_close_correct_around_the_secret(guess: int, reply: bytes) -> None:
    """With secret 15: 0 away is Correct, 1 or 2 away Close, more Far."""
    game = make_game()
    conn, player = classic_player(game)
    player.secret = 15
    assert conn.send(f"My Guess is: {guess}\r\n".encode()) == [reply]
    assert conn.closed == (reply == b"Correct\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"   ",
        b"abc",
        b"quit",
        b"help",
        b"My Guess is:",
        b"My Guess is: x",
        b"My Guess is: 15.0",
        b"15.0",
        b"-15",
        b"+15",
        b"1_5",
        b"0xf",
        b"1 5",
        "\u0661\u0665".encode(),  # Arabic-Indic digits 15
        b"\xc3\x28",  # not UTF-8
        b"9" * 500,
        b"My Guess is 15",
        b"Guess is: 15",
    ],
)
def test_non_numbers_are_far_and_not_counted(line: bytes) -> None:
    """Anything that is not one of the accepted number forms is Far and no guess."""
    game = make_game()
    conn, player = classic_player(game)
    player.secret = 15
    assert conn.send(line + b"\r\n") == [b"Far\r\n"]
    assert player.guesses == 0
    assert game.stats()["guesses"] == 0
    assert not conn.closed


@pytest.mark.parametrize(
    "line",
    [
        b"My Guess is: 15",
        b"My Guess is:15",
        b"my guess is: 15",
        b"MY GUESS IS: 15",
        b"My  Guess  is :  15",
        b"MyGuessIs:15",
        b"  My Guess is: 15  ",
        b"My Guess is: 015",
        b"Guess: 15",
        b"guess:15",
        b"15",
        b"0015",
    ],
)
def test_accepted_guess_forms(line: bytes) -> None:
    """My Guess is: N (any case and spacing), Guess: N and a bare N all guess N."""
    game = make_game()
    conn, player = classic_player(game)
    player.secret = 15
    assert conn.send(line + b"\n") == [b"Correct\r\n"]


@pytest.mark.parametrize(
    ("secret", "guess", "reply"),
    [(30, 31, b"Close\r\n"), (30, 32, b"Close\r\n"), (30, 33, b"Far\r\n"), (1, 0, b"Close\r\n")],
)
def test_numbers_out_of_range_are_close_or_far_and_not_counted(
    secret: int, guess: int, reply: bytes
) -> None:
    """A number outside LO-HI is answered by its distance but is no valid guess."""
    game = make_game()
    conn, player = classic_player(game)
    player.secret = secret
    assert conn.send(f"{guess}\n".encode()) == [reply]
    assert player.guesses == 0


def test_valid_guesses_are_counted_for_the_win() -> None:
    """Only in-range numbers count: the EVENT win reports 3 guesses after 3 valid ones."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    conn, player = classic_player(game)
    player.secret = 15
    for line in (b"1", b"abc", b"99", b"14", b"15"):
        conn.send(line + b"\n")
    (won,) = [e for e in observer.events if isinstance(e, Won)]
    assert won == Won(player.id, player.name, 15, 3)
    assert Left(player.id, player.name, "won") in observer.events
    assert game.stats()["guesses"] == 3


def test_hello_and_game_again_and_any_case() -> None:
    """A second Hello gets Greetings again, and game in any case gets Ready."""
    game = make_game()
    conn, _ = classic_player(game)
    assert conn.send(b"Hello\r\n") == [b"Greetings\r\n"]
    assert conn.send(b"hello\r\n") == [b"Greetings\r\n"]
    assert conn.send(b"GAME\r\n") == [b"Ready\r\n"]


def test_several_lines_in_one_packet_get_one_write_each() -> None:
    """Hello, Game and a guess in one packet: three writes, in order."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    writes = conn.send(b"Hello\r\nGame\r\nMy Guess is: 99\r\n")
    assert writes == [b"Greetings\r\n", b"Ready\r\n", b"Far\r\n"]


def test_own_secret_whatever_the_mode() -> None:
    """In shared mode a classic player still gets a secret of its own, drawn from LO-HI."""
    game = make_game(mode="shared", lo=5, hi=9)
    _, player = classic_player(game)
    assert player.own_secret
    assert 5 <= player.secret <= 9


class SlowStore(MemoryStore):
    """A MemoryStore whose wins are saved only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[defer.Deferred[None]] = []

    def record_win(self, entry: LeaderboardEntry) -> defer.Deferred[None]:
        """Keep the save pending."""
        super().record_win(entry)
        d: defer.Deferred[None] = defer.Deferred()
        self.pending.append(d)
        return d


def test_correct_only_once_the_win_is_saved() -> None:
    """Correct goes out (and the connection closes) only after the win is durable."""
    store = SlowStore()
    game = make_game(store=store)
    conn, player = classic_player(game)
    player.secret = 15
    assert conn.send(b"15\n") == []
    assert not conn.closed
    store.pending[0].callback(None)
    assert conn.transport.take() == [b"Correct\r\n"]
    assert conn.closed


def test_no_notices_and_kick_closes_silently() -> None:
    """say, newround and kick send a classic player nothing; kick closes it."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    conn, player = classic_player(game)
    assert game.say("hello all") == 0  # sent to nobody: classic clients get no notices
    game.new_round()
    assert conn.transport.take() == []
    assert game.kick(player.id)
    assert conn.transport.take() == []
    assert conn.closed
    conn.lose()
    assert Left(player.id, player.name, "kicked") in observer.events
    assert player.id not in game.players


def test_shutdown_closes_silently() -> None:
    """Stopping the game closes a classic player without the shutdown notice."""
    game = make_game()
    conn, _ = classic_player(game)
    game.stopService()
    assert conn.transport.take() == []
    assert conn.closed


def test_long_line_closes_silently() -> None:
    """A line over the limit closes a classic connection without a word."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    conn, player = classic_player(game)
    assert conn.send(b"9" * 600) == []
    assert conn.closed
    conn.lose()
    assert Left(player.id, player.name, "error") in observer.events


def test_classic_player_is_a_player_for_the_admin() -> None:
    """EVENT join, who and stats show a classic player like any other."""
    game = make_game()
    admin = open_conn(AdminFactory(game))
    assert admin.send(b"Admin-Greetings\r\n") == [b"OK Admin-Greetings, 0 players online\r\n"]
    _, player = classic_player(game, port=50123)
    assert f"EVENT join {player.id} player{player.id} 127.0.0.1:50123\r\n".encode() in (
        admin.transport.take()
    )
    who = b"".join(admin.send(b"who\r\n")).decode()
    assert who.startswith(f"PLAYER {player.id} player{player.id} 127.0.0.1:50123 0 ")
    assert who.endswith("OK 1 player\r\n")
    assert b"".join(admin.send(b"stats\r\n")).startswith(b"OK players=1 ")


# Detection on the player port.


def test_hello_before_the_wait_ends_is_classic() -> None:
    """Hello within the wait: Greetings in one write, never our greeting."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    game.clock.advance(0.05)
    assert conn.send(b"Hello\r\n") == [b"Greetings\r\n"]
    assert isinstance(conn.proto.dialect, ClassicDialect)
    game.clock.advance(1)
    assert conn.transport.take() == []
    assert conn.send(b"Game\r\n") == [b"Ready\r\n"]
    assert not game.clock.getDelayedCalls()


def test_guess_before_the_wait_ends_gets_greeting_then_reply() -> None:
    """A first guess sent at once gets the greeting and then its reply, in that order."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    writes = conn.send(b"quit\r\n")
    assert b"".join(writes) == GREETING + b"Goodbye!\r\n"
    assert writes[0] == GREETING
    assert conn.closed


def test_nothing_gets_the_greeting_at_the_end_of_the_wait() -> None:
    """A silent connection is greeted at 100 ms, not before, and joins only then."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    game.clock.advance(0.0999)
    assert conn.transport.take() == []
    assert not game.players
    game.clock.advance(0.0001)
    assert conn.transport.take() == [GREETING]
    assert len(game.players) == 1
    assert conn.send(b"0\n") == [b"Pick a number between 1-30\r\n"]


def test_hello_split_over_packets_is_classic() -> None:
    """Hello arriving a byte or two at a time is still recognised."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    for part in (b" H", b"el", b"l", b"o ", b"\r"):
        assert conn.send(part) == []
    assert conn.send(b"\n") == [b"Greetings\r\n"]


def test_modern_first_line_split_over_packets() -> None:
    """A first number split over packets: greeting as soon as it cannot be Hello, then the reply."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(b"1") == [GREETING]
    reply = conn.send(b"00\r\n")
    assert reply == [b"Pick a number between 1-30\r\n"]


@pytest.mark.parametrize(
    ("partial", "greeted"),
    [
        (b"H", False),
        (b"  Hell", False),
        (b"Hello", False),
        (b"Hello \t\r", False),
        (b"h", True),
        (b"Hex", True),
        (b"Hello!", True),
        (b"Hello x", True),
        (b"5", True),
    ],
)
def test_partial_first_line_waits_only_while_it_can_become_hello(
    partial: bytes, greeted: bool
) -> None:
    """Without a line end the wait goes on only while the bytes can still be Hello."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(partial) == ([GREETING] if greeted else [])


def test_partial_hello_when_the_wait_ends_is_modern() -> None:
    """Part of a Hello at the end of the wait: greeted, and the line is ordinary input."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(b"Hel") == []
    game.clock.advance(WAIT)
    assert conn.transport.take() == [GREETING]
    assert conn.send(b"lo\r\n") == [b"Pick a number between 1-30\r\n"]


@pytest.mark.parametrize(
    "first", [b"hello\n", b"HELLO\n", b"Hello there\n", b"\nHello\n", b"Hello!\n", b"Hallo\n"]
)
def test_other_first_lines_are_modern(first: bytes) -> None:
    """Only Hello, spelt so, is classic: other first lines get the greeting and a reply."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    writes = conn.send(first)
    assert writes[0] == GREETING
    assert b"".join(writes[1:]).startswith(b"Pick a number between 1-30\r\n")


@pytest.mark.parametrize("first", [b"Hello\n", b"Hello\r\n", b"  Hello \t\r\n", b"\tHello\n"])
def test_hello_with_white_space_and_line_ends(first: bytes) -> None:
    """Surrounding white space, a CR or none, do not matter to Hello."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(first) == [b"Greetings\r\n"]


def test_telnet_negotiation_first_is_modern() -> None:
    """A telnet client's negotiation cannot start a Hello: greeted at once, option refused."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    writes = conn.send(b"\xff\xfd\x01")
    assert writes == [GREETING, b"\xff\xfc\x01"]


def test_long_white_space_stops_the_wait() -> None:
    """White space beyond any Hello's length ends the wait: the modern limits apply."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(b" " * 64) == []
    assert conn.send(b" ") == [GREETING]


def test_classic_wait_zero_is_the_modern_protocol_at_once() -> None:
    """With --classic-wait 0 there is no detector and no wait; Hello is ordinary input."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=0))
    assert isinstance(conn.proto.dialect, ModernDialect)
    assert conn.transport.take() == [GREETING]
    assert not game.clock.getDelayedCalls()
    assert conn.send(b"Hello\r\n") == [b"Pick a number between 1-30\r\n"]


def test_the_factory_default_is_no_wait() -> None:
    """A PlayerFactory built without classic_wait greets at once (the daemon passes 0.1)."""
    connection = PlayerFactory(make_game()).buildProtocol(None)
    assert connection._detecting is None
    assert isinstance(connection.dialect, ModernDialect)


def test_disconnect_during_the_wait_leaves_nothing_behind() -> None:
    """A peer gone during the wait: timer cancelled, no join, no event, nothing written."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    conn.send(b"Hel")
    conn.lose()
    assert not game.clock.getDelayedCalls()
    game.clock.advance(1)
    assert conn.transport.take() == []
    assert not game.players
    assert not [e for e in observer.events if isinstance(e, (Joined, Left))]


def test_disconnect_after_hand_off_reaches_the_player() -> None:
    """Loss after the hand-off reaches the chosen protocol: the player leaves as closed."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    conn, player = classic_player(game)
    conn.lose()
    assert Left(player.id, player.name, "closed") in observer.events


class DispatchingTransport(RecordingTransport):
    """Like tcp.Server: input reaches whatever ``self.protocol`` is."""

    protocol: Any = None

    def receive(self, data: bytes) -> None:
        """Deliver ``data`` as the reactor would."""
        self.protocol.dataReceived(data)


@pytest.mark.parametrize("attribute", ["protocol", "wrappedProtocol"])
def test_the_transport_keeps_its_one_protocol_which_turns_classic(attribute: str) -> None:
    """A transport dispatching through protocol/wrappedProtocol keeps the connection."""
    game = make_game()
    addr = IPv4Address("TCP", "127.0.0.1", 50000)
    connection = PlayerFactory(game, classic_wait=WAIT).buildProtocol(addr)
    transport = DispatchingTransport(addr)
    setattr(transport, attribute, connection)
    connection.makeConnection(transport)
    connection.dataReceived(b"Hello\r\n")
    successor = getattr(transport, attribute)
    assert successor is connection
    assert isinstance(successor.dialect, ClassicDialect)
    assert successor.transport is transport
    successor.dataReceived(b"Game\r\n")
    assert transport.take() == [b"Greetings\r\n", b"Ready\r\n"]


def test_wait_over_the_tcp_transport_keeps_the_connection_now_modern() -> None:
    """On the timer, a tcp.Server-like transport's protocol speaks the modern dialect."""
    game = make_game()
    addr = IPv4Address("TCP", "127.0.0.1", 50000)
    connection = PlayerFactory(game, classic_wait=WAIT).buildProtocol(addr)
    transport = DispatchingTransport(addr)
    transport.protocol = connection
    connection.makeConnection(transport)
    game.clock.advance(WAIT)
    assert transport.protocol is connection
    assert isinstance(connection.dialect, ModernDialect)
    transport.receive(b"quit\n")
    assert transport.take() == [GREETING, b"Goodbye!\r\n"]


# The classic administrator.


def players_at(game: Game, *addrs: Any) -> list[Conn]:
    """Connect a modern player from each address."""
    return [open_conn(PlayerFactory(game), addr) for addr in addrs]


def test_classic_admin_transcript() -> None:
    """Hello gets Admin-Greetings; Who one IP PORT line a player in one write, then close."""
    game = make_game()
    players_at(
        game,
        IPv4Address("TCP", "127.0.0.1", 50001),
        IPv6Address("TCP", "::1", 50002),
    )
    admin = open_conn(AdminFactory(game))
    assert admin.send(b"Hello\r\n") == [b"Admin-Greetings\r\n"]
    assert admin.send(b"Who\r\n") == [b"127.0.0.1 50001\r\n::1 50002\r\n"]
    assert admin.closed


def test_classic_admin_who_with_no_players_just_closes() -> None:
    """Who with nobody connected writes nothing and closes."""
    admin = open_conn(AdminFactory(make_game()))
    admin.send(b"Hello\r\n")
    assert admin.send(b"Who\r\n") == []
    assert admin.closed


def test_classic_admin_with_a_token_is_refused() -> None:
    """With an admin token set, a classic Hello gets ERR bad token and is closed."""
    admin = open_conn(AdminFactory(make_game(), token="s3cret"))
    assert admin.send(b"Hello\r\n") == [b"ERR bad token\r\n"]
    assert admin.closed


def test_classic_admin_is_outside_the_admin_limit_and_gets_no_events() -> None:
    """A classic admin is greeted while the one modern admin is on, and sees no events."""
    game = make_game()
    factory = AdminFactory(game, max_admins=1)
    modern = open_conn(factory)
    assert modern.send(b"Admin-Greetings\r\n") == [b"OK Admin-Greetings, 0 players online\r\n"]
    classic = open_conn(factory)
    assert classic.send(b"Hello\r\n") == [b"Admin-Greetings\r\n"]
    assert len(factory.admins) == 1
    players_at(game, IPv4Address("TCP", "127.0.0.1", 50001))
    game.new_round()
    assert classic.transport.take() == []
    assert modern.transport.take() != []
    classic.lose()
    assert len(factory.admins) == 1


def test_classic_admin_other_lines() -> None:
    """After Hello: Hello again is greeted, other lines are unknown commands."""
    admin = open_conn(AdminFactory(make_game()))
    admin.send(b"Hello\r\n")
    assert admin.send(b"Hello\r\n") == [b"Admin-Greetings\r\n"]
    assert admin.send(b"Kick 3\r\n") == [b"ERR unknown command: Kick\r\n"]
    assert admin.send(b"\xc3\x28\r\n") == [b"ERR invalid UTF-8\r\n"]
    assert not admin.closed


@pytest.mark.parametrize("first", [b"hello\r\n", b"who\r\n", b"foo\r\n"])
def test_hello_that_is_not_the_first_admin_line_is_modern(first: bytes) -> None:
    """Only a first line Hello is classic; later it is an ordinary pre-handshake line."""
    admin = open_conn(AdminFactory(make_game()))
    assert admin.send(first) == [b"ERR send Admin-Greetings first\r\n"]
    assert admin.send(b"Hello\r\n") == [b"ERR send Admin-Greetings first\r\n"]


# Half-close: the end of the peer's input.


def test_end_of_input_during_the_wait_greets_then_closes() -> None:
    """Input ending during the wait (printf 'Hel' | nc): greeted, then closed."""
    game = make_game()
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    conn.send(b"Hel")
    conn.proto.readConnectionLost()
    assert conn.transport.take() == [GREETING]
    assert conn.closed
    assert not game.clock.getDelayedCalls()


@pytest.mark.parametrize(
    ("data", "writes"),
    [
        (b"Hello\r\n", [b"Greetings\r\n"]),
        (b"5\n", [GREETING, b"Too high! Pick a number between 1-30\r\n"]),
    ],
)
def test_end_of_input_after_the_hand_off_closes_after_the_answers(
    data: bytes, writes: list[bytes]
) -> None:
    """Input ending after a line: the answers stay queued and the close follows them."""
    game = make_game(seed=2)
    game._secret = 3
    conn = open_conn(PlayerFactory(game, classic_wait=WAIT))
    assert conn.send(data) == writes
    assert not conn.closed
    conn.proto.readConnectionLost()
    assert conn.closed


# The --classic-wait option.


def test_classic_wait_option_default_and_values() -> None:
    """--classic-wait defaults to 0.1 seconds and takes 0 and decimals."""
    assert parse_options()["classic-wait"] == 0.1
    assert parse_options("--classic-wait", "0")["classic-wait"] == 0.0
    assert parse_options("--classic-wait", "0.25")["classic-wait"] == 0.25
    assert parse_options("--classic-wait=2")["classic-wait"] == 2.0


@pytest.mark.parametrize("value", ["-1", "-0.1", "abc", "", "nan", "inf", "1e-1", "0x1", "9" * 400])
def test_classic_wait_option_bad_values(value: str) -> None:
    """A value that is not a finite number of seconds, 0 or more, is a usage error."""
    with pytest.raises(usage.UsageError) as e:
        parse_options("--classic-wait", value)
    assert str(e.value) == (
        f"--classic-wait must be a number of seconds, 0 or more (like 0.1), not {value!r}"
    )


@pytest.mark.parametrize(("value", "wait"), [("0.1", 0.1), ("0", 0.0)])
def test_make_service_passes_the_wait_to_the_player_factory(value: str, wait: float) -> None:
    """The daemon built by makeService gives the player factory the --classic-wait seconds."""
    top = makeService(parse_options("--classic-wait", value), reactor=Clock())
    listener = top.getServiceNamed("player")
    assert isinstance(listener, Listener)
    assert listener.factory.classic_wait == wait  # type: ignore[attr-defined]


def parse_options(*argv: str) -> Options:
    """Options parsed from ``argv``."""
    options = Options()
    options.parseOptions(list(argv))
    return options


# Integration over loopback: what the original clients do, byte for byte.


class ClassicClient:
    """A blocking client like the original pclient.py and aclient.py.

    It sends a line, then compares the result of one ``recv()`` with the
    reply it expects, exactly as those clients do.  Run it in a thread.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def ask(self, line: bytes) -> bytes:
        """Send one line and return what one recv() gives."""
        self.sock.send(line + b"\r\n")
        return self.sock.recv(1024)

    def until_closed(self) -> bytes:
        """Whatever arrives until the server closes."""
        data = b""
        while chunk := self.sock.recv(1024):
            data += chunk
        return data

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def classic_start(port: int) -> ClassicClient:
    """Connect and say Hello and Game, checking each reply."""
    client = ClassicClient(port)
    assert client.ask(b"Hello") == b"Greetings\r\n"
    assert client.ask(b"Game") == b"Ready\r\n"
    return client


def classic_play(client: ClassicClient, lo: int, hi: int) -> list[bytes]:
    """Guess LO, LO+1, ... until Correct; return every reply, then check the close."""
    replies = []
    for guess in range(lo, hi + 1):
        reply = client.ask(b"My Guess is: %d" % guess)
        replies.append(reply)
        assert reply in (b"Far\r\n", b"Close\r\n", b"Correct\r\n")
        if reply == b"Correct\r\n":
            assert client.until_closed() == b""
            break
    client.close()
    return replies


def classic_admin_who(port: int) -> bytes:
    """Hello, then Who: return what one recv() gives, and check the close."""
    client = ClassicClient(port)
    try:
        assert client.ask(b"Hello") == b"Admin-Greetings\r\n"
        listing = client.ask(b"Who")
        assert client.until_closed() == b""
        return listing
    finally:
        client.close()


@pytest.fixture
def daemon() -> Iterator[tuple[Game, int, int]]:
    """A started Game on the reactor with a player port (0.1 s wait) and an admin port."""
    from twisted.internet import reactor

    game = Game(reactor, random.Random(7))
    game.startService()
    players = pytest_twisted.blockon(listen(PlayerFactory(game, classic_wait=WAIT)))
    admins = pytest_twisted.blockon(listen(AdminFactory(game)))
    yield game, players.getHost().port, admins.getHost().port
    pytest_twisted.blockon(defer.gatherResults([players.stopListening(), admins.stopListening()]))
    pytest_twisted.blockon(game.stopService())


@pytest_twisted.inlineCallbacks
def test_classic_client_wins_while_an_admin_watches(daemon: tuple[Game, int, int]) -> Any:
    """A classic client joins (EVENT join, who), plays to Correct (EVENT win) and is closed."""
    game, player_port, admin_port = daemon
    admin = yield open_client(admin_port)
    try:
        admin.send("Admin-Greetings")
        assert (yield admin.next_line()) == "OK Admin-Greetings, 0 players online"
        client = yield threads.deferToThread(classic_start, player_port)
        local = client.sock.getsockname()[1]
        assert (yield admin.next_line()) == f"EVENT join 1 player1 127.0.0.1:{local}"
        link = game.players[1].link
        assert isinstance(link, PlayerConnection)
        assert isinstance(link.dialect, ClassicDialect)
        assert link.transport.protocol is link  # type: ignore[attr-defined]
        admin.send("who")
        assert (yield admin.next_line()).startswith(f"PLAYER 1 player1 127.0.0.1:{local} 0 ")
        assert (yield admin.next_line()) == "OK 1 player"
        replies = yield threads.deferToThread(classic_play, client, game.lo, game.hi)
        secret = len(replies)
        assert replies[-1] == b"Correct\r\n"
        assert all(
            reply == (b"Close\r\n" if secret - guess <= 2 else b"Far\r\n")
            for guess, reply in enumerate(replies[:-1], start=1)
        )
        assert (yield admin.next_line()) == f"EVENT win 1 player1 {secret} {secret}"
        assert (yield admin.next_line()) == "EVENT leave 1 player1 won"
        admin.send("count")
        assert (yield admin.next_line()) == "OK 0 players"
    finally:
        yield admin.close()


@pytest_twisted.inlineCallbacks
def test_classic_admin_lists_two_players_in_one_recv(daemon: tuple[Game, int, int]) -> Any:
    """A classic admin's Who lists both connected players, IP PORT each, in one recv()."""
    _, player_port, admin_port = daemon
    modern = yield open_client(player_port)
    assert (yield modern.next_line()) == "You are now connected to the server!"
    classic = yield threads.deferToThread(classic_start, player_port)
    try:
        listing = yield threads.deferToThread(classic_admin_who, admin_port)
        ports = (modern.transport.getHost().port, classic.sock.getsockname()[1])
        assert listing == b"127.0.0.1 %d\r\n127.0.0.1 %d\r\n" % ports
    finally:
        classic.close()
        yield modern.close()


@pytest_twisted.inlineCallbacks
def test_modern_client_sending_at_once_gets_greeting_then_reply(
    daemon: tuple[Game, int, int],
) -> Any:
    """Sending at once gets the greeting, then the reply; a silent client waits 0.1 s."""
    game, player_port, _ = daemon
    from twisted.internet import reactor

    client = yield open_client(player_port)
    try:
        client.send("help")
        assert (yield client.next_line()) == "You are now connected to the server!"
        assert (yield client.next_line()) == "Pick a number between 1-30"
        assert (yield client.next_line()).startswith("Guess the secret whole number between 1-30.")
        start = reactor.seconds()
        silent = yield open_client(player_port)
        assert (yield silent.next_line()) == "You are now connected to the server!"
        for player in game.players.values():
            assert isinstance(player.link, PlayerConnection)
            assert isinstance(player.link.dialect, ModernDialect)
            assert player.link.transport.protocol is player.link  # type: ignore[attr-defined]
        assert reactor.seconds() - start >= WAIT
        yield silent.close()
    finally:
        yield client.close()


def half_closed_exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, shut the sending side at once (as printf | nc does), read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(1024):
            received += chunk
        return received


@pytest_twisted.inlineCallbacks
def test_half_closing_clients_get_their_answers(daemon: tuple[Game, int, int]) -> Any:
    """Clients that half-close after their lines get every answer before the close."""
    _, player_port, _ = daemon
    classic = yield threads.deferToThread(half_closed_exchange, player_port, b"Hello\r\nGame\r\n")
    assert classic == b"Greetings\r\nReady\r\n"
    modern = yield threads.deferToThread(half_closed_exchange, player_port, b"0\n")
    assert modern == GREETING + b"Pick a number between 1-30\r\n"
    nothing = yield threads.deferToThread(half_closed_exchange, player_port, b"")
    assert nothing == GREETING


# End to end: twistd -n guessgame with its default options.


@pytest.fixture
def twistd_daemon() -> Iterator[tuple[int, int]]:
    """``twistd -n guessgame`` on free loopback ports, defaults otherwise; its two ports."""
    with Daemon() as daemon:
        yield daemon.ports["player"], daemon.ports["admin"]


def test_twistd_serves_classic_clients_with_default_options(
    twistd_daemon: tuple[int, int],
) -> None:
    """Against twistd -n guessgame, a classic admin lists a classic player that then wins."""
    player_port, admin_port = twistd_daemon
    client = classic_start(player_port)
    try:
        local = client.sock.getsockname()[1]
        assert classic_admin_who(admin_port) == b"127.0.0.1 %d\r\n" % local
        replies = classic_play(client, 1, 30)
        assert replies[-1] == b"Correct\r\n"
    finally:
        client.close()
    with socket.create_connection(("127.0.0.1", player_port), timeout=5) as modern:
        greeting = b""
        while not greeting.endswith(b"1-30\r\n"):
            greeting += modern.recv(1024)
        assert greeting == GREETING


# The player port's limits apply to classic players too, without a word.


@pytest.mark.parametrize(
    ("limits", "first_port"),
    [(Limits(max_players=1), 50001), (Limits(max_per_ip=1), 50001)],
    ids=["server full", "too many from the address"],
)
def test_classic_refused_by_a_connection_limit_is_closed_silently(
    limits: Limits, first_port: int
) -> None:
    """A classic client past --max-players or --max-per-ip is closed with no notice."""
    game = make_game()
    factory = PlayerFactory(game, classic_wait=WAIT, limits=limits)
    first = open_conn(factory, IPv4Address("TCP", "127.0.0.1", first_port))
    assert first.send(b"Hello\r\n") == [b"Greetings\r\n"]
    second = open_conn(factory, IPv4Address("TCP", "127.0.0.1", first_port + 1))
    assert second.send(b"Hello\r\n") == []
    assert second.closed
    assert len(game.players) == 1


def test_classic_idle_timeout_closes_silently() -> None:
    """A silent classic player gets no warning notice and is closed at the timeout."""
    clock = Clock()
    game = make_game(clock=clock)
    factory = PlayerFactory(game, classic_wait=WAIT, limits=Limits(idle_timeout=10))
    conn = open_conn(factory)
    assert conn.send(b"Hello\r\n") == [b"Greetings\r\n"]
    clock.advance(5)
    assert conn.transport.take() == []
    assert not conn.closed
    clock.advance(5)
    assert conn.transport.take() == []
    assert conn.closed
    conn.lose()
    assert game.players == {}


def test_classic_kick_closes_silently() -> None:
    """A kicked classic player is closed without the removal notice."""
    game = make_game()
    conn, player = classic_player(game)
    assert game.kick(player.id)
    assert conn.transport.take() == []
    assert conn.closed
