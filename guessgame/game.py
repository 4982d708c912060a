"""The Game service: players, rounds, secrets, names, counters and leaderboard.

`Game` owns every piece of game state and speaks in domain values (player
ids, numbers, outcomes).  It knows nothing of bytes or transports: each
connected player is reached through a `PlayerLink` (send a notice, close),
and administrators watch through observers that receive `Event` values.
The clock and the random source come in from outside, so tests drive the
game with a `task.Clock` and a seeded `random.Random`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Protocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from guessgame.events import (
    Event,
    Goodbye,
    GuessOutcome,
    GuessResult,
    Joined,
    Kicked,
    Left,
    Message,
    NameResult,
    NewRound,
    Notice,
    Renamed,
    RoundOver,
    RoundRestarted,
    RoundStarted,
    Said,
    Win,
    Won,
    plural,
)
from guessgame.leaderboard import Leaderboard
from guessgame.store.base import (
    NAME_PATTERN,
    Counters,
    LeaderboardEntry,
    MemoryStore,
    RoundKeeper,
    SharedRound,
    Store,
)

__all__ = [
    "MODES",
    "Game",
    "GameObserver",
    "Player",
    "PlayerLink",
    "parse_range",
]

log = Logger()

#: Names of this form are the defaults (``player7``) and cannot be chosen.
DEFAULT_NAME_PATTERN = re.compile(r"player[0-9]+", re.IGNORECASE)

MODES = ("shared", "solo")


def parse_range(text: str) -> tuple[int, int]:
    """Parse ``LO-HI`` into two integers with ``0 <= LO < HI``.

    Raises `ValueError` with a message a user can act on.
    """
    lo_text, sep, hi_text = text.partition("-")
    if (
        not sep
        or not lo_text.isdigit()
        or not hi_text.isdigit()
        or not (lo_text.isascii() and hi_text.isascii())
    ):
        raise ValueError(f"range must be two whole numbers LO-HI, like 1-30, not {text!r}")
    lo, hi = int(lo_text), int(hi_text)
    if lo >= hi:
        raise ValueError(f"range LO-HI needs LO below HI, got {text!r}")
    return lo, hi


class PlayerLink(Protocol):
    """How the game reaches one connected player (a protocol, or a fake)."""

    def notice(self, notice: Notice) -> bool:
        """Tell the player ``notice`` between replies; whether its dialect shows notices."""

    def close(self) -> defer.Deferred[None]:
        """Flush what was sent and close; the Deferred fires once closed."""


class GameObserver(Protocol):
    """Something that watches the game: an administrator's connection."""

    def game_event(self, event: Event) -> None:
        """Receive one event as it happens."""

    def close(self) -> defer.Deferred[None]:
        """The game is stopping: flush and close; fire once closed."""


@dataclass(eq=False, slots=True)
class Player:
    """One connected player, as the game sees it."""

    id: int
    name: str
    address: str
    link: PlayerLink
    connected: float
    own_secret: bool
    secret: int = 0
    guesses: int = 0


class Game(Service):
    """The one game every connection plays; see the module docstring."""

    name = "game"

    def __init__(
        self,
        clock: IReactorTime,
        rng: random.Random | None = None,
        *,
        lo: int = 1,
        hi: int = 30,
        mode: str = "shared",
        store: Store | None = None,
        keeper: RoundKeeper | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be shared or solo, not {mode!r}")
        if not 0 <= lo < hi:
            raise ValueError(f"range needs 0 <= LO < HI, got {lo}-{hi}")
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.lo = lo
        self.hi = hi
        self.mode = mode
        self.store: Store = store if store is not None else MemoryStore()
        #: Shares rounds and wins with the other daemons of one game (PostgreSQL).
        self.keeper = keeper
        self.players: dict[int, Player] = {}
        self._names: dict[str, Player] = {}
        self._observers: list[GameObserver] = []
        self._counters = Counters()
        self._leaderboard = Leaderboard()
        self._secret = 0
        self._started_at = clock.seconds()
        self._stopping = False
        #: The range as ``stats`` shows it.
        self.range_text = f"{lo}-{hi}"

    # Service life cycle.

    def startService(self) -> None:
        """Load what the store kept, then open the first round."""
        super().startService()
        self._started_at = self.clock.seconds()
        snapshot = self.store.load()
        self._counters = snapshot.counters
        self._leaderboard = Leaderboard(snapshot.leaderboard)
        self._stopping = False
        current = self.keeper.attach(self) if self.keeper is not None else None
        if current is None:
            self._new_round()
        else:
            self._counters.rounds, self._secret = current.number, current.secret

    def stopService(self) -> defer.Deferred[None]:
        """Tell every player the server is going and close everyone (the store closes after)."""
        super().stopService()
        self._stopping = True
        closing: list[defer.Deferred[None]] = []
        for player in list(self.players.values()):
            player.link.notice(Goodbye.SHUTDOWN)
            self.leave(player, "shutdown")
            closing.append(player.link.close())
        for observer in list(self._observers):
            closing.append(observer.close())
        done: defer.Deferred[None] = defer.Deferred()
        # The store closes after: the StoreService this game runs under.
        defer.DeferredList(closing, consumeErrors=True).addBoth(lambda _: done.callback(None))
        return done

    # Observers.

    def add_observer(self, observer: GameObserver) -> None:
        """Start pushing events to ``observer``."""
        self._observers.append(observer)

    def remove_observer(self, observer: GameObserver) -> None:
        """Stop pushing events to ``observer``; unknown observers are ignored."""
        if observer in self._observers:
            self._observers.remove(observer)

    def _emit(self, event: Event) -> None:
        for observer in list(self._observers):
            observer.game_event(event)

    # Players.

    def join(self, link: PlayerLink, address: str, *, own_secret: bool = False) -> Player:
        """Register a new player and return it.

        ``own_secret`` gives the player a secret of its own whatever the
        mode (solo players, classic clients).
        """
        self._counters.last_id += 1
        pid = self._counters.last_id
        self.store.sequences_advanced()
        player = Player(
            id=pid,
            name=f"player{pid}",
            address=address,
            link=link,
            connected=self.clock.seconds(),
            own_secret=own_secret or self.mode == "solo",
        )
        if player.own_secret:
            player.secret = self._draw()
        self.players[pid] = player
        self._names[player.name.lower()] = player
        log.info("player {id} joined from {address}", id=pid, address=address)
        self._emit(Joined(pid, player.name, address))
        return player

    def leave(self, player: Player, reason: str) -> None:
        """Forget ``player``; a player already gone is ignored."""
        if self.players.pop(player.id, None) is None:
            return
        self._names.pop(player.name.lower(), None)
        log.info(
            "player {id} ({name}) left: {reason}", id=player.id, name=player.name, reason=reason
        )
        self._emit(Left(player.id, player.name, reason))

    def rename(self, player: Player, name: str) -> NameResult:
        """Give ``player`` the name ``name`` if it is valid and free."""
        if NAME_PATTERN.fullmatch(name) is None:
            return NameResult.INVALID
        key = name.lower()
        holder = self._names.get(key)
        if DEFAULT_NAME_PATTERN.fullmatch(name) or (holder is not None and holder is not player):
            return NameResult.TAKEN
        old = player.name
        if old == name:
            return NameResult.OK
        del self._names[old.lower()]
        self._names[key] = player
        player.name = name
        self._emit(Renamed(player.id, old, name))
        return NameResult.OK

    def kick(self, pid: int) -> bool:
        """Remove player ``pid`` with the administrator's notice."""
        player = self.players.get(pid)
        if player is None:
            return False
        player.link.notice(Goodbye.KICKED)
        self._emit(Kicked(player.id, player.name))
        self.leave(player, "kicked")
        player.link.close()
        return True

    def say(self, text: str) -> int:
        """Send the administrator's message to every player; return how many got it."""
        notice = Message(text)
        self._emit(Said(text))
        reached = 0
        for player in list(self.players.values()):
            reached += player.link.notice(notice)
        return reached

    # Rounds and guesses.

    def _draw(self) -> int:
        return self.rng.randint(self.lo, self.hi)

    def _new_round(
        self, winner: str | None = None, winning: int = 0, *, by_admin: bool = False
    ) -> int:
        self._counters.rounds += 1
        self.store.sequences_advanced()
        self._secret = self._draw()
        if self.keeper is not None:
            self.keeper.round_started(
                SharedRound(self._counters.rounds, self._secret, winner, winning, by_admin)
            )
        self._emit(RoundStarted(self._counters.rounds, self.lo, self.hi))
        return self._counters.rounds

    def new_round(self) -> int:
        """The administrator's ``newround``: fresh secrets for every player."""
        number = self._new_round(by_admin=True)
        self._emit(NewRound(number, self.lo, self.hi))
        self._announce_new_round()
        return number

    def _announce_new_round(self) -> None:
        notice = RoundRestarted(self.lo, self.hi)
        for player in list(self.players.values()):
            player.guesses = 0
            if player.own_secret:
                player.secret = self._draw()
            player.link.notice(notice)

    @property
    def round(self) -> int:
        """The current round number."""
        return self._counters.rounds

    def in_range(self, number: int) -> bool:
        """Whether ``number`` is a valid guess."""
        return self.lo <= number <= self.hi

    def guess(self, player: Player, number: int) -> GuessOutcome:
        """Score a guess already known to be in range."""
        player.guesses += 1
        self._counters.guesses += 1
        secret = player.secret if player.own_secret else self._secret
        if number < secret:
            return GuessResult.LOW
        if number > secret:
            return GuessResult.HIGH
        return self._win(player, number)

    def _win(self, player: Player, number: int) -> Win:
        guesses = player.guesses
        self._counters.wins += 1
        entry: LeaderboardEntry | None = None
        # Only chosen names enter the leaderboard: default names come and go
        # with every connection and would grow it without bound.
        if DEFAULT_NAME_PATTERN.fullmatch(player.name) is None:
            now = self.clock.seconds()
            entry = self._leaderboard.get(player.name)
            if entry is None:
                entry = LeaderboardEntry(player.name, 1, guesses, now)
            else:
                entry = LeaderboardEntry(player.name, entry.wins + 1, min(entry.best, guesses), now)
            self._leaderboard.record(entry)
        saved = self.store.record_win(entry)
        log.info(
            "player {id} ({name}) won with {number} in {counted}",
            id=player.id,
            name=player.name,
            number=number,
            guesses=guesses,
            counted=plural(guesses, "guess"),
        )
        won = Won(player.id, player.name, number, guesses, saved)
        if self.keeper is not None:
            self.keeper.won(won)
        self._emit(won)
        # The winner is done: it no longer takes part in rounds or notices.
        player.guesses = 0
        if not player.own_secret:
            self._end_shared_round(player, player.name, number)
        return Win(number, guesses, saved)

    def _end_shared_round(self, winner: Player | None, name: str, number: int) -> None:
        # No winner here: the round was won on another daemon, which started the next.
        if winner is not None:
            self._new_round(name, number)
        notice = RoundOver(name, number, self.lo, self.hi)
        for player in list(self.players.values()):
            if player is winner or player.own_secret:
                continue
            player.guesses = 0
            player.link.notice(notice)

    # What the other daemons of one game did, as the round keeper tells it.

    def news(
        self,
        *,
        won: Won | None = None,
        entry: LeaderboardEntry | None = None,
        shared: SharedRound | None = None,
    ) -> None:
        """Take in a win elsewhere, a leaderboard entry as saved, or the shared round.

        A round older than this one is ignored; this round with another
        secret (two daemons ended the last one at once, and the other's new
        round stands) changes the secret alone; a newer round starts here
        with the notice its players would have had on that daemon.
        """
        if won is not None:
            self._emit(won)
        if entry is not None:
            self._leaderboard.record(entry)
        if shared is None or shared.number < self._counters.rounds:
            return
        newer = shared.number > self._counters.rounds
        self._counters.rounds, self._secret = shared.number, shared.secret
        if not newer:
            return
        self._emit(RoundStarted(shared.number, self.lo, self.hi))
        if shared.by_admin:
            self._announce_new_round()
        elif shared.winner is not None:
            self._end_shared_round(None, shared.winner, shared.winning)

    # What the administrator and the ``top`` command read.

    def leaderboard(self, limit: int | None = None) -> list[LeaderboardEntry]:
        """The leaderboard's first ``limit`` entries (all without one).

        Most wins first, then best, then name; the first K cost the same
        however large the board is.
        """
        if limit is None:
            return list(self._leaderboard)
        return self._leaderboard.top(limit)

    def stats(self) -> dict[str, int | str]:
        """Counters for the administrator's ``stats``, in their wire order."""
        return {
            "players": len(self.players),
            "rounds": self._counters.rounds,
            "wins": self._counters.wins,
            "guesses": self._counters.guesses,
            "uptime": int(self.clock.seconds() - self._started_at),
            "mode": self.mode,
            "range": self.range_text,
            "store": "failing" if self.store.failing else "ok",
            "unsaved": self.store.unsaved,
        }
