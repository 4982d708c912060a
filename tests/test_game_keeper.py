"""The Game's seam for several daemons: what it tells its RoundKeeper, what it hears back.

No database here: a fake keeper records what the game tells it, and the
tests play the other daemons by calling `Game.news`.
"""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from guessgame.events import RoundStarted, Won
from guessgame.game import Game
from guessgame.store.base import LeaderboardEntry, MemoryStore, SharedRound
from tests.common import FakeLink, FakeObserver, secret_of

WON_NOTICE = "*** {} won the round with {}. A new number between 1-30 has been picked."
ADMIN_NOTICE = "*** The administrator started a new round. Pick a number between 1-30"


class FakeKeeper:
    """A `RoundKeeper` that records what the game tells it."""

    def __init__(self, current: SharedRound | None = None) -> None:
        self.current = current
        self.game: Game | None = None
        self.won_events: list[Won] = []
        self.started: list[SharedRound] = []

    def attach(self, game: Game) -> SharedRound | None:
        """Remember the game; the round to join."""
        self.game = game
        return self.current

    def won(self, event: Won) -> None:
        """Record a win."""
        self.won_events.append(event)

    def round_started(self, shared: SharedRound) -> None:
        """Record a round start."""
        self.started.append(shared)


def keeper_game(keeper: FakeKeeper, mode: str = "shared") -> Game:
    """A started Game with ``keeper``."""
    game = Game(Clock(), random.Random(3), mode=mode, store=MemoryStore(), keeper=keeper)
    game.startService()
    return game


def test_start_joins_the_keepers_round() -> None:
    """A game whose keeper has a round plays it: its number and secret, nothing started."""
    keeper = FakeKeeper(SharedRound(41, 17))
    game = keeper_game(keeper)
    assert keeper.game is game
    assert (game.round, secret_of(game)) == (41, 17)
    assert keeper.started == []


def test_start_without_a_round_starts_one() -> None:
    """With no round to join, the game starts one and tells the keeper."""
    keeper = FakeKeeper()
    game = keeper_game(keeper)
    assert keeper.started == [SharedRound(1, secret_of(game))]


def test_local_win_tells_the_keeper() -> None:
    """A win here: the keeper hears the win, then the next round with who ended the last."""
    keeper = FakeKeeper(SharedRound(5, 9))
    game = keeper_game(keeper)
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.rename(player, "Ann")
    game.guess(player, 9)
    assert keeper.won_events == [Won(player.id, "Ann", 9, 1)]
    assert keeper.started == [SharedRound(6, secret_of(game), "Ann", 9, False)]


def test_newround_tells_the_keeper() -> None:
    """The administrator's newround reaches the keeper as such."""
    keeper = FakeKeeper(SharedRound(5, 9))
    game = keeper_game(keeper)
    game.new_round()
    assert keeper.started == [SharedRound(6, secret_of(game), None, 0, True)]


def test_news_of_a_win_elsewhere() -> None:
    """A newer round won elsewhere: players get the notice and G 0, admins the events."""
    game = keeper_game(FakeKeeper(SharedRound(5, 9)))
    watcher = FakeObserver()
    game.add_observer(watcher)
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.guess(player, 1)
    watcher.events.clear()
    won = Won(20001, "Bob", 9, 3)
    game.news(won=won, entry=LeaderboardEntry("Bob", 4, 2, 1000.0))
    game.news(shared=SharedRound(6, 12, "Bob", 9))
    assert (game.round, secret_of(game)) == (6, 12)
    assert player.link.notices == [WON_NOTICE.format("Bob", 9)]  # type: ignore[attr-defined]
    assert player.guesses == 0
    assert watcher.events == [won, RoundStarted(6, 1, 30)]
    assert [(e.name, e.wins, e.best) for e in game.leaderboard()] == [("Bob", 4, 2)]


def test_news_of_a_newround_elsewhere() -> None:
    """A newround elsewhere: the administrator's notice, new secrets for own-secret players."""
    game = keeper_game(FakeKeeper(SharedRound(5, 9)), mode="solo")
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.guess(player, 1 if player.secret != 1 else 2)
    game.news(shared=SharedRound(6, 12, by_admin=True))
    assert game.round == 6
    assert player.link.notices == [ADMIN_NOTICE]  # type: ignore[attr-defined]
    assert player.guesses == 0


def test_news_of_the_same_round_changes_the_secret_alone() -> None:
    """Two daemons ended a round at once and the other's round stands: no second notice."""
    game = keeper_game(FakeKeeper(SharedRound(5, 9)))
    watcher = FakeObserver()
    game.add_observer(watcher)
    player = game.join(FakeLink(), "127.0.0.1:1")
    winner = game.join(FakeLink(), "127.0.0.1:2")
    game.guess(winner, 9)
    notices = list(player.link.notices)  # type: ignore[attr-defined]
    watcher.events.clear()
    game.news(shared=SharedRound(6, 23, "Bob", 9))
    assert (game.round, secret_of(game)) == (6, 23)
    assert player.link.notices == notices  # type: ignore[attr-defined]
    assert watcher.events == []


@pytest.mark.parametrize("number", [3, 4])
def test_news_of_an_older_round_is_ignored(number: int) -> None:
    """A round older than this one (a late notification) changes nothing."""
    game = keeper_game(FakeKeeper(SharedRound(5, 9)))
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.news(shared=SharedRound(number, 1, "Bob", 1))
    assert (game.round, secret_of(game)) == (5, 9)
    assert player.link.notices == []  # type: ignore[attr-defined]
