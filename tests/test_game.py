"""Unit tests of the Game service: rounds, names, counters, leaderboard, events."""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from guessgame.events import (
    GuessResult,
    Joined,
    Left,
    NameResult,
    Renamed,
    RoundStarted,
    Win,
    Won,
    plural,
)
from guessgame.game import Game, parse_range
from guessgame.store.base import LeaderboardEntry
from tests.common import FakeLink, FakeObserver, make_game, secret_of


def test_plural_agrees_with_count() -> None:
    """Counted words agree with their number, guess included."""
    assert [plural(1, "win"), plural(2, "win"), plural(1, "guess"), plural(0, "guess")] == [
        "1 win",
        "2 wins",
        "1 guess",
        "0 guesses",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1-30", (1, 30)), ("0-1", (0, 1)), ("007-10", (7, 10)), ("1-1000000000", (1, 10**9))],
)
def test_parse_range_accepts(text: str, expected: tuple[int, int]) -> None:
    """Well-formed ranges parse to (LO, HI)."""
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    "text", ["30-1", "5-5", "a-b", "1-", "-5", "1:30", "", "-1-5", "1-3-5", "\u0661-\u0663"]
)
def test_parse_range_refuses(text: str) -> None:
    """Anything but LO-HI with 0 <= LO < HI is refused with a reason."""
    with pytest.raises(ValueError, match="range"):
        parse_range(text)


def test_guess_low_high_correct() -> None:
    """Guesses below, above and at the secret get LOW, HIGH and a Win."""
    game = make_game(lo=1, hi=1000)
    player = game.join(FakeLink(), "127.0.0.1:1")
    secret = secret_of(game)
    assert 1 < secret < 1000, "the seed must give an interior secret"
    assert game.guess(player, secret - 1) is GuessResult.LOW
    assert game.guess(player, secret + 1) is GuessResult.HIGH
    outcome = game.guess(player, secret)
    assert isinstance(outcome, Win)
    assert (outcome.number, outcome.guesses) == (secret, 3)
    assert outcome.saved.called


def test_shared_win_starts_new_round_and_notifies_others() -> None:
    """In shared mode a win picks a new secret and tells every other player."""
    game = make_game(seed=3)
    winner_link, other_link = FakeLink(), FakeLink()
    winner = game.join(winner_link, "127.0.0.1:1")
    other = game.join(other_link, "127.0.0.1:2")
    game.rename(winner, "alice")
    secret = secret_of(game)
    wrong = secret % 30 + 1
    game.guess(other, wrong)
    assert other.guesses == 1
    round_before = game.round
    game.guess(winner, secret)
    assert game.round == round_before + 1
    assert other.guesses == 0
    assert other_link.notices == [
        f"*** alice won the round with {secret}. A new number between 1-30 has been picked."
    ]
    assert winner_link.notices == []


def test_solo_mode_gives_each_player_its_own_secret_and_no_notices() -> None:
    """In solo mode each player has a secret; a win notifies nobody."""
    game = make_game(mode="solo", lo=1, hi=10**9, seed=5)
    a_link, b_link = FakeLink(), FakeLink()
    a = game.join(a_link, "127.0.0.1:1")
    b = game.join(b_link, "127.0.0.1:2")
    assert a.secret != b.secret
    round_before = game.round
    assert game.guess(a, a.secret).__class__ is Win
    assert game.round == round_before
    assert b_link.notices == []
    assert game.guess(b, b.secret).__class__ is Win


def test_new_round_resets_guesses_and_notifies() -> None:
    """newround counts up, resets everyone's G, and sends its notice."""
    game = make_game(mode="solo", seed=9)
    link = FakeLink()
    player = game.join(link, "127.0.0.1:1")
    game.guess(player, 1 if player.secret != 1 else 2)
    number = game.new_round()
    assert number == game.round
    assert player.guesses == 0
    assert link.notices == ["*** The administrator started a new round. Pick a number between 1-30"]


def test_ids_are_never_reused() -> None:
    """Player ids count up and a leaving player's id is not handed out again."""
    game = make_game()
    first = game.join(FakeLink(), "127.0.0.1:1")
    game.leave(first, "quit")
    second = game.join(FakeLink(), "127.0.0.1:2")
    assert (first.id, second.id) == (1, 2)
    assert second.name == "player2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alice", NameResult.OK),
        ("A_b-9", NameResult.OK),
        ("x" * 16, NameResult.OK),
        ("x" * 17, NameResult.INVALID),
        ("", NameResult.INVALID),
        ("two words", NameResult.INVALID),
        ("josé", NameResult.INVALID),
        ("a.b", NameResult.INVALID),
        ("player7", NameResult.TAKEN),
        ("PLAYER12", NameResult.TAKEN),
        ("BOB", NameResult.TAKEN),
        ("bob", NameResult.TAKEN),
        ("players", NameResult.OK),
        ("player", NameResult.OK),
    ],
)
def test_rename_rules(name: str, expected: NameResult) -> None:
    """Names are 1-16 of [A-Za-z0-9_-], unique without case, player<N> reserved."""
    game = make_game()
    other = game.join(FakeLink(), "127.0.0.1:1")
    assert game.rename(other, "Bob") is NameResult.OK
    player = game.join(FakeLink(), "127.0.0.1:2")
    assert game.rename(player, name) is expected


def test_rename_to_own_name_in_other_case_is_allowed() -> None:
    """A player may change the case of its own name."""
    game = make_game()
    player = game.join(FakeLink(), "127.0.0.1:1")
    assert game.rename(player, "alice") is NameResult.OK
    assert game.rename(player, "Alice") is NameResult.OK
    assert player.name == "Alice"


def test_a_freed_name_can_be_taken() -> None:
    """Names are unique among connected players only."""
    game = make_game()
    first = game.join(FakeLink(), "127.0.0.1:1")
    game.rename(first, "alice")
    game.leave(first, "quit")
    second = game.join(FakeLink(), "127.0.0.1:2")
    assert game.rename(second, "ALICE") is NameResult.OK


def test_leaderboard_orders_by_wins_then_best_then_name() -> None:
    """Most wins first, then fewest guesses in a win, then name."""
    game = make_game(mode="solo", hi=10**6)

    def win(name: str, guesses: int) -> None:
        player = game.join(FakeLink(), "127.0.0.1:1")
        game.rename(player, name)
        for _ in range(guesses - 1):
            game.guess(player, player.secret % 10**6 + 1)
        assert game.guess(player, player.secret).__class__ is Win
        game.leave(player, "won")

    win("carol", 5)
    win("bob", 3)
    win("bob", 9)
    win("alice", 3)
    win("dave", 3)
    board = [(e.name, e.wins, e.best) for e in game.leaderboard()]
    assert board == [("bob", 2, 3), ("alice", 1, 3), ("dave", 1, 3), ("carol", 1, 5)]
    assert [e.name for e in game.leaderboard(2)] == ["bob", "alice"]


def test_counters_in_stats() -> None:
    """stats counts players, rounds, wins, guesses and whole seconds of uptime."""
    clock = Clock()
    game = make_game(clock=clock, seed=4)
    player = game.join(FakeLink(), "127.0.0.1:1")
    secret = secret_of(game)
    game.guess(player, secret % 30 + 1)
    game.guess(player, secret)
    clock.advance(61.7)
    stats = game.stats()
    assert {k: stats[k] for k in ("players", "rounds", "wins", "guesses", "uptime")} == {
        "players": 1,
        "rounds": 2,
        "wins": 1,
        "guesses": 2,
        "uptime": 61,
    }


def test_events_reach_observers_in_order() -> None:
    """join, name, win, round and leave events reach every observer."""
    game = make_game(seed=2)
    observer = FakeObserver()
    game.add_observer(observer)
    player = game.join(FakeLink(), "127.0.0.1:9")
    game.rename(player, "zed")
    secret = secret_of(game)
    game.guess(player, secret)
    game.leave(player, "won")
    assert observer.events == [
        Joined(1, "player1", "127.0.0.1:9"),
        Renamed(1, "player1", "zed"),
        Won(1, "zed", secret, 1),
        RoundStarted(2, 1, 30),
        Left(1, "zed", "won"),
    ]


def test_leave_twice_emits_once() -> None:
    """A player that already left is ignored by a second leave."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.leave(player, "kicked")
    game.leave(player, "closed")
    assert [e for e in observer.events if isinstance(e, Left)] == [Left(1, "player1", "kicked")]


def test_kick_sends_notice_and_closes() -> None:
    """kick tells the player, closes it, and reports unknown ids."""
    game = make_game()
    link = FakeLink()
    player = game.join(link, "127.0.0.1:1")
    assert game.kick(player.id + 1) is False
    assert game.kick(player.id) is True
    assert link.notices == ["*** You have been removed by the administrator. Goodbye!"]
    assert link.closed
    assert player.id not in game.players


def test_say_reaches_every_player() -> None:
    """say sends the message notice to every player and counts them."""
    game = make_game()
    links = [FakeLink() for _ in range(3)]
    for i, link in enumerate(links):
        game.join(link, f"127.0.0.1:{i}")
    assert game.say("hello all") == 3
    assert all(link.notices == ["*** Message from the administrator: hello all"] for link in links)


def test_stop_service_notifies_and_closes_everyone() -> None:
    """Stopping the game sends the shutdown notice and a shutdown leave event."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    link = FakeLink()
    game.join(link, "127.0.0.1:1")
    d = game.stopService()
    assert d.called
    assert link.notices == ["*** The server is shutting down. Goodbye!"]
    assert link.closed and observer.closed
    assert observer.events[-1] == Left(1, "player1", "shutdown")
    assert game.players == {}


def test_store_snapshot_is_loaded_at_start() -> None:
    """Counters and leaderboard come from the store when the game starts."""

    class Preloaded:
        failing = False
        unsaved = 0

        def __init__(self) -> None:
            from guessgame.store.base import Counters, Snapshot

            self.snapshot = Snapshot(
                Counters(rounds=7, wins=3, guesses=40, last_id=99),
                [LeaderboardEntry("old", 3, 4, 0.0)],
            )

        def load(self):  # type: ignore[no-untyped-def]
            return self.snapshot

        def record_win(self, entry):  # type: ignore[no-untyped-def]
            from twisted.internet import defer

            return defer.succeed(None)

        def close(self):  # type: ignore[no-untyped-def]
            from twisted.internet import defer

            return defer.succeed(None)

        def sequences_advanced(self) -> None:
            pass

    game = Game(Clock(), random.Random(1), store=Preloaded())
    game.startService()
    assert game.round == 8
    assert game.join(FakeLink(), "127.0.0.1:1").id == 100
    assert [e.name for e in game.leaderboard()] == ["old"]
    assert game.stats()["wins"] == 3


def test_game_refuses_bad_configuration() -> None:
    """A Game cannot be built with an unknown mode or an empty range."""
    with pytest.raises(ValueError, match="mode"):
        Game(Clock(), mode="party")
    with pytest.raises(ValueError, match="range"):
        Game(Clock(), lo=5, hi=5)
