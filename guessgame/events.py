"""What the game says, as values: events, outcomes and notices.

Nothing here is text on a wire.  The `Game` pushes `Event` values to its
observers (the admin port, the web page, the event log, the metrics),
answers a guess or a rename with an outcome, and tells each player's
connection what happened with a `Notice`.  Every way to play renders
these values in its own words (``guessgame/player/modern.py`` for the
modern dialect and the WebSocket, ``guessgame/player/classic.py`` for the
classic one, which shows no notices at all).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from twisted.internet import defer

__all__ = [
    "LEAVE_REASONS",
    "Event",
    "Goodbye",
    "GuessOutcome",
    "GuessResult",
    "IdleWarning",
    "Joined",
    "Kicked",
    "Left",
    "Message",
    "NameResult",
    "NewRound",
    "Notice",
    "Renamed",
    "RoundOver",
    "RoundRestarted",
    "RoundStarted",
    "Said",
    "Win",
    "Won",
    "plural",
]

#: Why a player left, as the ``EVENT leave`` line spells it.
LEAVE_REASONS = ("quit", "won", "kicked", "idle", "closed", "shutdown", "error")


def plural(count: int, word: str) -> str:
    """Return ``count`` with ``word`` agreeing with it: ``1 win``, ``2 wins``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}es" if word.endswith("s") else f"{count} {word}s"


# Events pushed to observers (the administrators, the page, the log).


@dataclass(frozen=True, slots=True)
class Joined:
    """A player connected."""

    id: int
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Left:
    """A player is gone; ``reason`` is one of `LEAVE_REASONS`."""

    id: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Won:
    """A player guessed its secret ``number`` in ``guesses`` guesses.

    ``saved`` is the win's `Win.saved`: it fires once the store has the
    win (observers may time it; they must pass its result on).
    """

    id: int
    name: str
    number: int
    guesses: int
    saved: defer.Deferred[None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RoundStarted:
    """Round number ``round`` began with a secret in ``lo``-``hi``."""

    round: int
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Renamed:
    """A player changed its name."""

    id: int
    old: str
    new: str


# What the administrator did, for observers that keep a record (the
# event log); the admin port's EVENT lines leave them out.


@dataclass(frozen=True, slots=True)
class Kicked:
    """The administrator removed a player (its `Left` follows)."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Said:
    """The administrator sent ``text`` to every player."""

    text: str


@dataclass(frozen=True, slots=True)
class NewRound:
    """The administrator started round ``round`` (its `RoundStarted` came first)."""

    round: int
    lo: int
    hi: int


Event = Joined | Left | Won | RoundStarted | Renamed | Kicked | Said | NewRound


# Outcomes: the game's answer to a player's guess or rename.


class GuessResult(enum.Enum):
    """A valid guess that missed: below or above the secret."""

    LOW = "low"
    HIGH = "high"


class Win(NamedTuple):
    """A valid guess that found the secret.

    ``guesses`` counts this round's valid guesses, the winning one
    included.  ``saved`` fires once the win is durable: the player is told
    it won only then.
    """

    number: int
    guesses: int
    saved: defer.Deferred[None]


#: The answer to a valid guess.  A miss is one of two constants, so the
#: usual answer costs no allocation.
GuessOutcome = GuessResult | Win


class NameResult(enum.Enum):
    """The answer to ``name NICK``."""

    OK = "ok"
    TAKEN = "taken"
    INVALID = "invalid"


# Notices: what a player is told between replies.  The same value goes to
# every player it concerns; a dialect renders it once (values are hashable).


@dataclass(frozen=True, slots=True)
class RoundOver:
    """``winner`` won the shared round with ``number``; the new secret is in ``lo``-``hi``."""

    winner: str
    number: int
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class RoundRestarted:
    """The administrator started a new round in ``lo``-``hi``."""

    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Message:
    """The administrator's message ``text`` to every player."""

    text: str


@dataclass(frozen=True, slots=True)
class IdleWarning:
    """No input for a while: the connection closes in ``seconds`` unless a line comes."""

    seconds: int


class Goodbye(enum.Enum):
    """Why a player's connection is closed (or refused) now: its last notice."""

    #: The administrator removed the player (``kick``).
    KICKED = "kicked"
    #: The daemon stops.
    SHUTDOWN = "shutdown"
    #: The player asked to go (``quit``, ``exit``, a telnet Ctrl-C).
    QUIT = "quit"
    #: A line over ``--max-line``.
    LINE_TOO_LONG = "line too long"
    #: No line for ``--idle-timeout`` seconds.
    IDLE = "idle"
    #: Refused at connect: ``--max-players`` are connected.
    SERVER_FULL = "server full"
    #: Refused at connect: ``--max-per-ip`` connections from this address.
    ADDRESS_FULL = "address full"


Notice = RoundOver | RoundRestarted | Message | IdleWarning | Goodbye
