"""Unit tests of the admin port over a StringTransport: the PROTOCOL.md table."""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from guessgame.admin.protocol import AdminFactory
from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from tests.common import Peer, connect, make_game, secret_of


def admin(game: Game, token: str | None = None, **kwargs: object) -> Peer:
    """An administrator past the handshake."""
    peer = connect(AdminFactory(game, token=token, **kwargs))  # type: ignore[arg-type]
    greeting = "Admin-Greetings" + (f" {token}" if token else "")
    [reply] = peer.send(greeting.encode() + b"\r\n")
    assert reply.startswith("OK Admin-Greetings")
    return peer


def connect_protocol(proto: Any, port: int) -> Peer:
    """Connect an already built protocol to a StringTransport from ``port``."""
    addr = IPv4Address("TCP", "127.0.0.1", port)
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return Peer(proto, transport)


def players(game: Game, count: int) -> list[Peer]:
    """``count`` connected players, greeting read."""
    factory = PlayerFactory(game)
    peers = [connect(factory, port=40000 + i) for i in range(count)]
    for peer in peers:
        peer.read()
    return peers


# One row per line of the admin table in PROTOCOL.md, on a game with two
# players (ids 1 and 2); the handshake rows start from a fresh connection.
ADMIN_TABLE: list[tuple[str, str, list[str], bool]] = [
    ("handshake", "Admin-Greetings", ["OK Admin-Greetings, 2 players online"], True),
    ("count", "count", ["OK 2 players"], True),
    ("kick", "kick 1", ["OK kicked 1"], True),
    ("kick unknown", "kick 99", ["ERR no player 99"], True),
    ("kick not a number", "kick bob", ["ERR no player bob"], True),
    ("say", "say hello all", ["OK sent to 2 players"], True),
    ("newround", "newround", ["OK round 2 started"], True),
    ("top, empty", "top", ["OK 0 players"], True),
    ("quit", "quit", ["OK bye"], False),
    ("unknown", "dance now", ["ERR unknown command: dance"], True),
    ("commands in capitals", "COUNT", ["OK 2 players"], True),
]


@pytest.mark.parametrize(
    ("sent", "replies", "stays_open"),
    [row[1:] for row in ADMIN_TABLE],
    ids=[row[0] for row in ADMIN_TABLE],
)
def test_admin_table(sent: str, replies: list[str], stays_open: bool) -> None:
    """Each admin command gets exactly its reply, ending in one OK/ERR line."""
    game = make_game()
    players(game, 2)
    if sent == "Admin-Greetings":
        peer = connect(AdminFactory(game))
    else:
        peer = admin(game)
    lines = [line for line in peer.send(sent.encode() + b"\n") if not line.startswith("EVENT ")]
    assert lines == replies
    assert peer.closed is not stays_open


def test_before_handshake_commands_are_refused() -> None:
    """Anything before Admin-Greetings gets 'ERR send Admin-Greetings first'."""
    peer = connect(AdminFactory(make_game()))
    assert peer.send(b"who\n") == ["ERR send Admin-Greetings first"]
    assert peer.send(b"\n") == ["ERR send Admin-Greetings first"]
    assert not peer.closed
    assert peer.send(b"Admin-Greetings\n") == ["OK Admin-Greetings, 0 players online"]


@pytest.mark.parametrize(
    ("greeting", "reply", "stays_open"),
    [
        ("Admin-Greetings s3cret", "OK Admin-Greetings, 0 players online", True),
        ("Admin-Greetings wrong", "ERR bad token", False),
        ("Admin-Greetings", "ERR bad token", False),
        ("Admin-Greetings s3cret2", "ERR bad token", False),
    ],
)
def test_token(greeting: str, reply: str, stays_open: bool) -> None:
    """With a token set, only the right token passes; others are closed (after 1 s)."""
    clock = Clock()
    peer = connect(AdminFactory(make_game(clock=clock), token="s3cret"))
    replies = peer.send(greeting.encode() + b"\n")
    clock.advance(1)
    assert replies + peer.read() == [reply]
    assert peer.closed is not stays_open


def test_one_administrator_at_a_time() -> None:
    """A second administrator is refused while the limit is reached, then let in."""
    game = make_game()
    factory = AdminFactory(game)
    first = connect(factory)
    first.send(b"Admin-Greetings\n")
    second = connect(factory, port=50001)
    assert second.send(b"Admin-Greetings\n") == ["ERR another administrator is connected"]
    assert second.closed
    first.lose()
    third = connect(factory, port=50002)
    assert third.send(b"Admin-Greetings\n") == ["OK Admin-Greetings, 0 players online"]


def test_who_lists_players_in_join_order() -> None:
    """who: one PLAYER line each (ID NICK HOST:PORT G CONNECTED), then OK N players."""
    clock = Clock()
    clock.advance(1795694671)  # 2026-11-26T12:04:31Z
    game = make_game(clock=clock)
    a, b = players(game, 2)
    a.send(b"name alice\n")
    b.send(f"{secret_of(game) % 30 + 1}\n".encode())
    peer = admin(game)
    assert peer.send(b"who\n") == [
        "PLAYER 1 alice 127.0.0.1:40000 0 2026-11-26T12:04:31Z",
        "PLAYER 2 player2 127.0.0.1:40001 1 2026-11-26T12:04:31Z",
        "OK 2 players",
    ]


def test_who_brackets_ipv6_hosts() -> None:
    """IPv6 peers appear as [HOST]:PORT."""
    from twisted.internet.address import IPv6Address
    from twisted.internet.testing import StringTransport

    game = make_game()
    factory = PlayerFactory(game)
    addr = IPv6Address("TCP", "::1", 53312)
    proto = factory.buildProtocol(addr)
    proto.makeConnection(StringTransport(peerAddress=addr))
    peer = admin(game)
    assert peer.send(b"who\n")[0].startswith("PLAYER 1 player1 [::1]:53312 0 ")


def test_count_with_one_player_is_singular() -> None:
    """'OK 1 player' agrees with its number."""
    game = make_game()
    players(game, 1)
    assert admin(game).send(b"count\n") == ["OK 1 player"]


def test_stats_fields() -> None:
    """stats: OK players=N rounds=R wins=W guesses=T uptime=S, then more fields."""
    game = make_game()
    (p,) = players(game, 1)
    p.send(f"{secret_of(game)}\n".encode())
    [line] = admin(game).send(b"stats\n")
    assert re.fullmatch(r"OK players=0 rounds=2 wins=1 guesses=1 uptime=0( [a-z_]+=\S+)*", line), (
        line
    )


def test_kick_sends_the_notice_and_leave_event() -> None:
    """kick removes the player with its notice; the admin sees leave ... kicked."""
    game = make_game()
    (p,) = players(game, 1)
    peer = admin(game)
    assert peer.send(b"kick 1\n") == ["EVENT leave 1 player1 kicked", "OK kicked 1"]
    assert p.read() == ["*** You have been removed by the administrator. Goodbye!"]
    assert p.closed


def test_say_reaches_players() -> None:
    """say TEXT sends the message notice to every player."""
    game = make_game()
    peers = players(game, 2)
    assert admin(game).send(b"say  hello  all \n") == ["OK sent to 2 players"]
    assert [p.read() for p in peers] == [["*** Message from the administrator: hello  all"]] * 2


def test_say_without_text_is_an_error() -> None:
    """say with nothing to say is refused with ERR."""
    assert admin(make_game()).send(b"say\n") == ["ERR usage: say TEXT"]


def test_newround_event_and_notice() -> None:
    """newround: OK round R started, EVENT round, and the notice to players."""
    game = make_game()
    (p,) = players(game, 1)
    assert admin(game).send(b"newround\n") == ["EVENT round 2 1-30", "OK round 2 started"]
    assert p.read() == ["*** The administrator started a new round. Pick a number between 1-30"]


def test_top_lines() -> None:
    """top [K]: TOP RANK NICK WINS BEST lines, then OK N players with N the lines."""
    game = make_game(mode="solo")
    for name in ["bob", "bob", "amy"]:
        (p,) = players(game, 1)
        p.send(f"name {name}\n".encode())
        p.send(f"{p.proto.player.secret}\n".encode())
        p.lose()
    peer = admin(game)
    assert peer.send(b"top\n") == ["TOP 1 bob 2 1", "TOP 2 amy 1 1", "OK 2 players"]
    assert peer.send(b"top 1\n") == ["TOP 1 bob 2 1", "OK 1 player"]
    assert peer.send(b"top x\n") == ["ERR usage: top [K], K a whole number 1-1000"]


def test_help_is_one_line_a_command_then_ok() -> None:
    """help lists every command, one a line, and ends with OK."""
    lines = admin(make_game()).send(b"help\n")
    assert lines[-1] == "OK"
    words = [line.split()[0] for line in lines[:-1]]
    assert words == ["who", "count", "stats", "kick", "say", "newround", "top", "help", "quit"]


def test_events_are_pushed_after_the_handshake() -> None:
    """join, name, win, round and leave reach the admin as EVENT lines."""
    game = make_game()
    peer = admin(game)
    (p,) = players(game, 1)
    p.send(b"name zed\n")
    secret = secret_of(game)
    p.send(f"{secret}\n".encode())
    p.lose()
    assert peer.read() == [
        "EVENT join 1 player1 127.0.0.1:40000",
        "EVENT name 1 player1 zed",
        f"EVENT win 1 zed {secret} 1",
        "EVENT round 2 1-30",
        "EVENT leave 1 zed won",
    ]


def test_no_events_before_the_handshake() -> None:
    """A connection that has not shaken hands receives no events."""
    game = make_game()
    peer = connect(AdminFactory(game))
    players(game, 1)
    assert peer.read() == []


def test_line_too_long_on_admin_port() -> None:
    """A long line on the admin port: ERR line too long, then close."""
    peer = admin(make_game())
    assert peer.send(b"say " + b"x" * 600 + b"\n") == ["ERR line too long"]
    assert peer.closed


def test_invalid_utf8_on_admin_port() -> None:
    """Invalid UTF-8 gets an ERR line and the connection stays."""
    peer = admin(make_game())
    assert peer.send(b"\xc3\x28\n") == ["ERR invalid UTF-8"]
    assert peer.send(b"count\n") == ["OK 0 players"]


def test_admin_leaving_stops_events() -> None:
    """A closed admin is no longer an observer of the game."""
    game = make_game()
    peer = admin(game)
    peer.lose()
    assert peer.proto not in game._observers


def test_nothing_follows_ok_bye() -> None:
    """After quit's 'OK bye' the administrator gets no more events."""
    game = make_game()
    peer = admin(game)
    assert peer.send(b"quit\n") == ["OK bye"]
    players(game, 1)
    assert peer.read() == []


@pytest.mark.parametrize("argument", ["0", "1001", "00", "-1", "x", "1.5", "99999999999", "5 6"])
def test_top_refuses_k_outside_1_to_1000(argument: str) -> None:
    """top K takes K 1-1000; anything else gets a line beginning ERR usage."""
    game = make_game(mode="solo")
    (p,) = players(game, 1)
    p.send(b"name amy\n")
    p.send(f"{p.proto.player.secret}\n".encode())
    [reply] = admin(game).send(f"top {argument}\n".encode())
    assert reply.startswith("ERR usage")


@pytest.mark.parametrize(("argument", "lines"), [("1", 1), ("1000", 2), ("0001", 1)])
def test_top_takes_k_from_1_to_1000(argument: str, lines: int) -> None:
    """top K with K 1-1000 lists the first K (leading zeros allowed, as for guesses)."""
    game = make_game(mode="solo")
    for name in ("amy", "bob"):
        (p,) = players(game, 1)
        p.send(f"name {name}\n".encode())
        p.send(f"{p.proto.player.secret}\n".encode())
        p.lose()
    reply = admin(game).send(f"top {argument}\n".encode())
    assert len(reply) == lines + 1 and reply[-1] == f"OK {lines} player" + "s" * (lines > 1)


def test_handshake_timeout() -> None:
    """No handshake within 10 s: ERR handshake timeout, then close."""
    clock = Clock()
    peer = connect(AdminFactory(make_game(clock=clock)))
    assert peer.send(b"who\n") == ["ERR send Admin-Greetings first"]
    clock.advance(9.9)
    assert peer.read() == [] and not peer.closed
    clock.advance(0.1)
    assert peer.read() == ["ERR handshake timeout"]
    assert peer.closed


def test_no_timeout_after_the_handshake() -> None:
    """An administrator past the handshake is never timed out."""
    clock = Clock()
    game = make_game(clock=clock)
    peer = admin(game)
    clock.advance(3600)
    assert peer.read() == [] and not peer.closed
    assert peer.send(b"count\n") == ["OK 0 players"]


def test_at_most_16_connections_wait_for_their_handshake() -> None:
    """The 17th connection waiting for its handshake is closed at once without a word."""
    factory = AdminFactory(make_game())
    waiting = [connect(factory, port=50000 + i) for i in range(16)]
    assert factory.buildProtocol(None) is None
    waiting[0].lose()
    assert factory.buildProtocol(None) is not None


def test_a_handshake_frees_its_waiting_place() -> None:
    """Connections past the handshake no longer count as waiting for it."""
    factory = AdminFactory(make_game(), max_admins=0)
    for i in range(20):
        peer = connect(factory, port=50000 + i)
        assert peer.send(b"Admin-Greetings\n") == ["OK Admin-Greetings, 0 players online"]


def test_a_timed_out_connection_frees_its_waiting_place() -> None:
    """A connection closed by the handshake timeout no longer counts as waiting."""
    clock = Clock()
    factory = AdminFactory(make_game(clock=clock))
    peers = [connect(factory, port=50000 + i) for i in range(16)]
    clock.advance(10)
    for peer in peers:
        assert peer.closed
        peer.lose()
    assert factory.buildProtocol(None) is not None


def test_wrong_token_waits_one_second() -> None:
    """After a wrong token the server waits 1 s before ERR bad token, and reads nothing more."""
    clock = Clock()
    peer = connect(AdminFactory(make_game(clock=clock), token="s3cret"))
    assert peer.send(b"Admin-Greetings wrong\nAdmin-Greetings s3cret\n") == []
    clock.advance(0.9)
    assert peer.read() == [] and not peer.closed
    assert peer.send(b"Admin-Greetings s3cret\n") == []
    clock.advance(0.1)
    assert peer.read() == ["ERR bad token"]
    assert peer.closed


def test_token_tries_are_bounded_in_rate() -> None:
    """An attacker opening connections as fast as it can tries at most 16 tokens a second."""
    clock = Clock()
    game = make_game(clock=clock)
    factory = AdminFactory(game, token="s3cret")
    tried = 0
    open_peers: list[Peer] = []
    seconds = 10
    for tick in range(seconds * 10):
        # 100 connection attempts every tenth of a second, each with a guess.
        for i in range(100):
            proto = factory.buildProtocol(None)
            if proto is None:
                continue
            peer = connect_protocol(proto, port=1024 + (tick * 100 + i) % 60000)
            peer.send(f"Admin-Greetings guess{tick}-{i}\n".encode())
            tried += 1
            open_peers.append(peer)
        clock.advance(0.1)
        for peer in [p for p in open_peers if p.closed]:
            assert peer.read() == ["ERR bad token"]
            peer.lose()
            open_peers.remove(peer)
    # 16 waiting at once, each held a second: 16 tries a second, not thousands.
    assert tried <= 16 * (seconds + 1)


def test_stop_closes_connections_waiting_for_their_handshake() -> None:
    """When the admin port stops, connections not past the handshake are closed too."""
    factory = AdminFactory(make_game())
    factory.doStart()
    waiting = connect(factory)
    admitted = admin(factory.game)
    factory.doStop()
    assert waiting.closed and not admitted.closed


def test_a_refused_connection_gets_no_second_line_at_the_deadline() -> None:
    """A connection refused before its handshake gets nothing after its refusal."""
    clock = Clock()
    game = make_game(clock=clock)
    factory = AdminFactory(game)
    first = connect(factory)
    first.send(b"Admin-Greetings\n")
    second = connect(factory, port=50001)
    assert second.send(b"Admin-Greetings\n") == ["ERR another administrator is connected"]
    clock.advance(10)
    assert second.read() == []
