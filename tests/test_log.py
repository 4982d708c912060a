"""What the daemon's log says: wins, the administrator's actions, a failed store close."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from guessgame.admin.protocol import AdminFactory
from guessgame.store.base import MemoryStore
from tests.common import FakeLink, connect, make_game, secret_of


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted during the test."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict[str, Any]]) -> list[str]:
    """The log events as the log file shows them."""
    return [formatEvent(event) for event in events]


@pytest.mark.parametrize(("guesses", "counted"), [(1, "1 guess"), (3, "3 guesses")])
def test_win_log_counts_guesses(logged: list[dict[str, Any]], guesses: int, counted: str) -> None:
    """The win's log line agrees with its number: 'in 1 guess', 'in 3 guesses'."""
    game = make_game(lo=1, hi=1000)
    player = game.join(FakeLink(), "127.0.0.1:1")
    secret = secret_of(game)
    for _ in range(guesses - 1):
        game.guess(player, secret + 1 if secret < 1000 else secret - 1)
    game.guess(player, secret)
    wins = [text for text in texts(logged) if " won with " in text]
    assert wins == [f"player 1 (player1) won with {secret} in {counted}"]


def admin(game: Any) -> Any:
    """An administrator past the handshake."""
    peer = connect(AdminFactory(game))
    peer.send(b"Admin-Greetings\r\n")
    return peer


def test_say_is_logged(logged: list[dict[str, Any]]) -> None:
    """The administrator's say is logged with its text and reach, as a kick is."""
    game = make_game()
    game.join(FakeLink(), "127.0.0.1:1")
    admin(game).send(b"say hello all\r\n")
    assert "administrator 127.0.0.1:50000 said to 1 player: hello all" in texts(logged)


def test_newround_is_logged(logged: list[dict[str, Any]]) -> None:
    """The administrator's newround is logged with the round it started."""
    game = make_game()
    admin(game).send(b"newround\r\n")
    assert "administrator 127.0.0.1:50000 started round 2" in texts(logged)


class FailingClose(MemoryStore):
    """A store whose close fails, as a full disk would make it."""

    def close(self) -> defer.Deferred[None]:
        """Fail."""
        return defer.fail(OSError(28, "No space left on device"))


def test_failing_store_close_is_logged(logged: list[dict[str, Any]]) -> None:
    """A store.close() that fails at stop is logged with its reason; the stop still ends."""
    game = make_game(store=FailingClose())
    done: list[object] = []
    game.parent.stopService().addBoth(done.append)
    assert done == [None]
    errors = [e for e in logged if e.get("log_level") == LogLevel.error]
    assert [formatEvent(e) for e in errors] == [
        "the database did not close cleanly: [Errno 28] No space left on device"
    ]
