"""Where the game's lasting state lives: the leaderboard and the counters.

The `Game` reaches its storage through the small `Store` interface below.
`MemoryStore` keeps nothing beyond the process and serves unit tests and
throwaway games; a durable store implements the same interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.events import Won

__all__ = [
    "NAME_PATTERN",
    "Counters",
    "FlushTimer",
    "LeaderboardEntry",
    "MemoryStore",
    "RoundKeeper",
    "RoundNews",
    "SharedRound",
    "Snapshot",
    "Store",
    "StoreService",
]

log = Logger()

#: A player name, what ``name NICK`` accepts and what a leaderboard entry holds.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    """One name's standing: wins, best (fewest guesses in a win), last win."""

    name: str
    wins: int
    best: int
    last_win: float


@dataclass(slots=True)
class Counters:
    """The all-time counters of ``stats`` and the id and round sequences.

    The game owns this object and updates it in place on every guess; a
    store that loaded it may read it whenever it writes.
    """

    rounds: int = 0
    wins: int = 0
    guesses: int = 0
    last_id: int = 0


@dataclass(slots=True)
class Snapshot:
    """What a store holds when the game starts."""

    counters: Counters = field(default_factory=Counters)
    leaderboard: list[LeaderboardEntry] = field(default_factory=list)


class Store(Protocol):
    """The game's storage seam."""

    @property
    def failing(self) -> bool:
        """Whether the last write failed (``stats`` shows ``store=failing``)."""

    @property
    def unsaved(self) -> int:
        """How many wins are not written yet (``stats`` shows ``unsaved=N``).

        Zero but for a moment while writes succeed; while they fail, the
        wins the store keeps in memory until it can write them.
        """

    def load(self) -> Snapshot:
        """Return the saved state; the game keeps and updates its counters."""

    def sequences_advanced(self) -> None:
        """The game took a new player id or round number.

        A durable store makes sure that a restart, even after a crash,
        starts after them: ids and round numbers are never reused.
        """

    def record_win(self, entry: LeaderboardEntry | None) -> defer.Deferred[None]:
        """Save a win: ``entry`` and the counters; fire once durable, never fail.

        ``entry`` is None for a win under a default name, which is not on
        the leaderboard: only the counters change.
        """

    def open(self) -> None:
        """Start writing: open the connections (before the game starts)."""

    def flush(self) -> defer.Deferred[None]:
        """Write what changed since the last write; fire when done, never fail."""

    def close(self) -> defer.Deferred[None]:
        """Write what is pending and let go of resources."""


class MemoryStore:
    """A `Store` that keeps everything in memory and nothing across runs."""

    failing = False
    unsaved = 0

    def __init__(self) -> None:
        self._counters = Counters()
        self._board: dict[str, LeaderboardEntry] = {}

    def load(self) -> Snapshot:
        """Return the state so far (empty in a new process)."""
        return Snapshot(self._counters, list(self._board.values()))

    def open(self) -> None:
        """Nothing to open."""

    def flush(self) -> defer.Deferred[None]:
        """Nothing to write."""
        return defer.succeed(None)

    def sequences_advanced(self) -> None:
        """Nothing outlives the process, so nothing to reserve."""

    def record_win(self, entry: LeaderboardEntry | None) -> defer.Deferred[None]:
        """Remember ``entry``; already durable as far as memory goes."""
        if entry is not None:
            self._board[entry.name.lower()] = entry
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        """Nothing to write."""
        return defer.succeed(None)


# The store in the service tree.


class FlushTimer(Service):
    """Call ``flush`` every ``interval`` seconds on ``clock``, the first one interval in.

    Not twisted's `TimerService`: that one calls at once on start, and a
    store has nothing to write before the game has run.
    """

    name = "flush"

    def __init__(self, flush: Callable[[], object], interval: float, clock: IReactorTime) -> None:
        self._loop = task.LoopingCall(flush)
        self._loop.clock = clock
        self.interval = interval

    def startService(self) -> None:
        """Start calling ``flush``."""
        super().startService()
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        """Stop calling ``flush``."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()


class StoreService(MultiService):
    """A store as a `Service`: open before its children start, closed after they stop.

    Its children are the store's `FlushTimer` (if it writes periodically)
    and the `Game` on it, so the store is open and loaded before the first
    round and a stopping game still saves its last wins (and tells its
    players) before the store closes.
    """

    name = "store"

    def __init__(self, store: Any, clock: IReactorTime) -> None:
        super().__init__()
        self.store = store
        interval = getattr(store, "flush_interval", None)
        if interval is not None:
            FlushTimer(store.flush, interval, clock).setServiceParent(self)

    def startService(self) -> None:
        """Open the store, then start the children (the timer, the game)."""
        self.store.open()
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        """Stop the children (the game first tells its players), then close the store."""
        d: defer.Deferred[Any] = defer.maybeDeferred(super().stopService)
        d.addCallback(lambda _: self.store.close())
        d.addErrback(_closing_failed)
        return d


def _closing_failed(failure: Failure) -> None:
    # What the store could not write is lost: say so where the operator
    # looks, in one line.
    log.error("the database did not close cleanly: {error}", error=failure.getErrorMessage())


# The seam of a store that several daemons share (PostgreSQL): their rounds.


@dataclass(frozen=True, slots=True)
class SharedRound:
    """A round as the daemons of one game share it (see `RoundKeeper`).

    ``winner`` won the round before with ``winning``; with no winner the
    round was started by an administrator (``by_admin``) or by a start.
    """

    number: int
    secret: int
    winner: str | None = None
    winning: int = 0
    by_admin: bool = False


class RoundNews(Protocol):
    """What a `RoundKeeper` tells the game (`guessgame.game.Game.news`)."""

    def news(
        self,
        *,
        won: Won | None = None,
        entry: LeaderboardEntry | None = None,
        shared: SharedRound | None = None,
    ) -> None:
        """Take in a win elsewhere, a leaderboard entry as saved, or the shared round."""


class RoundKeeper(Protocol):
    """Shares this game's rounds and wins with the other daemons of one game.

    The keeper tells the game what the others did through `Game.news`.
    """

    def attach(self, game: RoundNews) -> SharedRound | None:
        """Tell ``game`` the others' news from now on; the round to join, or None."""

    def won(self, event: Won) -> None:
        """A player of this daemon won (the win goes with its `Store.record_win`)."""

    def round_started(self, shared: SharedRound) -> None:
        """Round ``shared.number`` started here: it ends the one before if still current."""
