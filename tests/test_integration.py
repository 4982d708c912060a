"""Integration tests: the whole service tree on real loopback ports."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService

from guessgame.tap import Options, makeService
from tests.common import LineClient, open_client


@pytest.fixture
def daemon() -> Iterator[MultiService]:
    """The daemon's service tree, running on free loopback ports."""
    from twisted.internet import reactor

    options = Options()
    options.parseOptions(
        [
            "--player",
            "tcp:0:interface=127.0.0.1",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            "--web",
            "off",
        ]
    )
    top = makeService(options, reactor=reactor)
    top.getServiceNamed("store").getServiceNamed("game").rng = random.Random(7)
    top.startService()
    yield top
    if top.running:
        pytest_twisted.blockon(top.stopService())


def port_of(top: MultiService, role: str) -> int:
    """The port a listener actually bound."""
    return int(top.getServiceNamed(role).port.getHost().port)


@pytest_twisted.inlineCallbacks
def read_lines(client: LineClient, count: int) -> Any:
    """The next ``count`` lines from ``client``."""
    lines = []
    for _ in range(count):
        lines.append((yield client.next_line()))
    return lines


@pytest_twisted.inlineCallbacks
def test_shared_round_over_real_sockets(daemon: MultiService) -> Any:
    """Two players and an admin: a round is won, the loser told, the admin sees it all."""
    game = daemon.getServiceNamed("store").getServiceNamed("game")
    admin = yield open_client(port_of(daemon, "admin"))
    admin.send("Admin-Greetings")
    assert (yield admin.next_line()) == "OK Admin-Greetings, 0 players online"

    alice = yield open_client(port_of(daemon, "player"))
    bob = yield open_client(port_of(daemon, "player"))
    for client in (alice, bob):
        assert (yield read_lines(client, 2)) == [
            "You are now connected to the server!",
            "Pick a number between 1-30",
        ]
    alice_port = alice.transport.getHost().port
    bob_port = bob.transport.getHost().port
    assert (yield read_lines(admin, 2)) == [
        f"EVENT join 1 player1 127.0.0.1:{alice_port}",
        f"EVENT join 2 player2 127.0.0.1:{bob_port}",
    ]

    alice.send("name alice")
    assert (yield alice.next_line()) == "You are now known as alice."
    assert (yield admin.next_line()) == "EVENT name 1 player1 alice"

    admin.send("who")
    who = yield read_lines(admin, 3)
    assert [line.rsplit(" ", 1)[0] for line in who[:2]] == [
        f"PLAYER 1 alice 127.0.0.1:{alice_port} 0",
        f"PLAYER 2 player2 127.0.0.1:{bob_port} 0",
    ]
    assert who[2] == "OK 2 players"

    secret = game._secret
    bob.send(str(secret % 30 + 1))
    assert (yield bob.next_line()).startswith(("Too low!", "Too high!"))
    alice.send(str(secret))
    assert (yield alice.next_line()) == f"Correct! The number was {secret}. You won in 1 guess!"
    yield alice.lost
    assert (yield bob.next_line()) == (
        f"*** alice won the round with {secret}. A new number between 1-30 has been picked."
    )
    assert (yield read_lines(admin, 3)) == [
        f"EVENT win 1 alice {secret} 1",
        "EVENT round 2 1-30",
        "EVENT leave 1 alice won",
    ]
    admin.send("count")
    assert (yield admin.next_line()) == "OK 1 player"

    bob.send("quit")
    assert (yield bob.next_line()) == "Goodbye!"
    yield bob.lost
    assert (yield admin.next_line()) == "EVENT leave 2 player2 quit"
    yield admin.close()


@pytest_twisted.inlineCallbacks
def test_stopping_tells_players_and_admin(daemon: MultiService) -> Any:
    """Stopping the service tree sends the shutdown notice and leave ... shutdown."""
    admin = yield open_client(port_of(daemon, "admin"))
    admin.send("Admin-Greetings")
    yield admin.next_line()
    player = yield open_client(port_of(daemon, "player"))
    yield read_lines(player, 2)
    yield admin.next_line()
    yield daemon.stopService()
    assert (yield player.next_line()) == "*** The server is shutting down. Goodbye!"
    assert (yield admin.next_line()) == "EVENT leave 1 player1 shutdown"
    yield player.lost
    yield admin.lost
