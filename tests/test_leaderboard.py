"""The leaderboard: who enters it, its order, and what ``top`` costs as it grows."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from guessgame.events import Win
from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.store.base import LeaderboardEntry, MemoryStore
from guessgame.wire.limits import Limits
from tests.common import FakeLink, connect, make_game, secret_of


def calls_during(action: Callable[[], object]) -> int:
    """How many Python and C function calls ``action`` makes: its work, counted."""
    count = 0

    def profiler(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return count


def game_with_board(size: int, clock: Clock | None = None) -> Game:
    """A started game whose store already holds ``size`` leaderboard entries."""
    store = MemoryStore()
    for i in range(size):
        store.record_win(LeaderboardEntry(f"n{i}", 1 + i % 7, 1 + i % 5, 0.0))
    return make_game(store=store, clock=clock)


def win_as(game: Game, name: str | None) -> Win:
    """A new player (named ``name``, or left with its default name) wins at once."""
    player = game.join(FakeLink(), "127.0.0.1:1")
    if name is not None:
        game.rename(player, name)
    outcome = game.guess(player, secret_of(game, player))
    assert isinstance(outcome, Win)
    game.leave(player, "won")
    return outcome


# Who enters the board.


def test_default_name_win_adds_no_entry() -> None:
    """A win under a default name counts in stats but adds no leaderboard entry."""
    game = make_game()
    outcome = win_as(game, None)
    assert outcome.saved.called
    assert game.stats()["wins"] == 1
    assert game.leaderboard() == []
    assert game.leaderboard(5) == []


def test_default_name_win_on_the_player_port() -> None:
    """On the wire: Correct! for the default name, then top still says nobody won."""
    game = make_game()
    winner = connect(PlayerFactory(game))
    winner.read()
    secret = secret_of(game)
    assert winner.send(f"{secret}\n".encode()) == [
        f"Correct! The number was {secret}. You won in 1 guess!"
    ]
    other = connect(PlayerFactory(game))
    other.read()
    assert other.send(b"top\n") == ["No winners yet."]


def test_chosen_name_win_enters_the_board() -> None:
    """A chosen name's win is on the board, and its next win updates the same entry."""
    game = make_game()
    win_as(game, "Ann")
    win_as(game, None)
    win_as(game, "ann")
    assert [(e.name, e.wins) for e in game.leaderboard()] == [("ann", 2)]
    assert game.stats()["wins"] == 3


# Order.


def test_equal_standing_orders_by_name_without_case() -> None:
    """Equal wins and best: names in alphabetical order, capitals or not."""
    game = make_game()
    for name in ("bob", "Carl", "alice", "Bea"):
        win_as(game, name)
    assert [e.name for e in game.leaderboard()] == ["alice", "Bea", "bob", "Carl"]
    assert [e.name for e in game.leaderboard(2)] == ["alice", "Bea"]


wins_and_guesses = st.lists(
    st.tuples(st.sampled_from(["a", "B", "c", "D", "e"]), st.integers(1, 6)),
    max_size=40,
)


@given(wins_and_guesses)
def test_board_is_always_in_rank_order(wins: list[tuple[str, int]]) -> None:
    """After any wins, the board is most wins, then best, then name, one entry a name."""
    game = make_game(mode="solo", hi=10**6)
    expected: dict[str, tuple[str, int, int]] = {}
    for name, guesses in wins:
        player = game.join(FakeLink(), "127.0.0.1:1")
        game.rename(player, name)
        for _ in range(guesses - 1):
            game.guess(player, player.secret % 10**6 + 1)
        assert isinstance(game.guess(player, player.secret), Win)
        game.leave(player, "won")
        _, count, best = expected.get(name.lower(), (name, 0, guesses))
        expected[name.lower()] = (name, count + 1, min(best, guesses))
    ordered = sorted(expected.values(), key=lambda e: (-e[1], e[2], e[0].lower()))
    assert [(e.name, e.wins, e.best) for e in game.leaderboard()] == ordered
    for k in (1, 3, 1000):
        assert [(e.name, e.wins, e.best) for e in game.leaderboard(k)] == ordered[:k]


# Cost: counted in calls, not timed.


@pytest.mark.parametrize("k", [5, 10, 1000])
def test_top_does_not_scan_the_board(k: int) -> None:
    """The first K cost the same work on a board of 2,000 entries as of 50,000."""
    small, large = game_with_board(2_000), game_with_board(50_000)
    assert len(small.leaderboard(k)) == len(large.leaderboard(k)) == k
    assert calls_during(lambda: large.leaderboard(k)) == calls_during(lambda: small.leaderboard(k))


def test_win_update_does_not_scan_the_board() -> None:
    """A win on a board of 50,000 entries costs about what it costs on one of 2,000."""
    small, large = game_with_board(2_000), game_with_board(50_000)
    # Warm up both: a name's first win and its later ones take different paths.
    for game in (small, large):
        win_as(game, "zed")
    small_cost = calls_during(lambda: win_as(small, "zed"))
    large_cost = calls_during(lambda: win_as(large, "zed"))
    assert large_cost <= small_cost + 20


# The rate limit holds for lines that cost time.


class SlowTopGame(Game):
    """A game whose leaderboard takes ``cost`` seconds of the clock to read."""

    cost = 0.0

    def leaderboard(self, limit: int | None = None) -> list[LeaderboardEntry]:
        """The board, after the clock moved on by ``cost``, as a slow read would."""
        assert isinstance(self.clock, Clock)
        self.clock.rightNow += self.cost
        return super().leaderboard(limit)


@pytest.mark.parametrize("cost", [0.0, 0.05, 0.3])
def test_top_loop_is_throttled_to_max_rate(cost: float) -> None:
    """A client sending top in a loop gets at most --max-rate answers a second."""
    clock = Clock()
    game = SlowTopGame(clock)
    game.cost = cost
    game.startService()
    rate = 10
    peer = connect(PlayerFactory(game, limits=Limits(max_rate=rate)))
    peer.read()
    answered = len(peer.send(b"top\n" * 1000))
    seconds = 10
    for _ in range(seconds * 100):
        clock.advance(0.01)
        answered += len(peer.read())
    # A burst of `rate`, then `rate` a second of the clock (which the slow
    # lines moved on too), however long each line takes.
    elapsed = clock.seconds()
    assert answered <= rate + rate * elapsed
    fastest = rate * elapsed if not cost else min(rate * elapsed, elapsed / cost)
    assert answered >= min(1000, 0.8 * fastest)
