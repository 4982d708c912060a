"""The modern dialect of the player port: every line it reads and every text it sends.

The modern player, over TCP (telnet, nc, ``guessgame-play``) or a
WebSocket, sends a guess or a command a line and gets one reply a line,
with notices (`guessgame.events.Notice`) between replies.  `ModernDialect`
answers each line through the `Game`; `PlayerTexts` holds the texts of one
range, the usual replies already encoded; `render_notice` turns a notice
value into its line, once per value however many players it goes to.
This module is where a line of PROTOCOL.md's player port is found.
"""

from __future__ import annotations

import functools

from guessgame.events import (
    Goodbye,
    GuessResult,
    IdleWarning,
    Message,
    NameResult,
    Notice,
    RoundOver,
    RoundRestarted,
    Win,
    plural,
)
from guessgame.player.connection import PlayerConnection
from guessgame.store.base import LeaderboardEntry
from guessgame.wire.lines import encode_line

__all__ = [
    "GOODBYES",
    "GREETING",
    "IDLE_GOODBYE",
    "NAME_RULE",
    "SERVER_FULL",
    "SHUTTING_DOWN",
    "TOO_MANY_FROM_ADDRESS",
    "ModernDialect",
    "PlayerTexts",
    "parse_guess",
    "render_notice",
]

GREETING = "You are now connected to the server!"
NAME_RULE = "A name is 1-16 letters, digits, _ or -."
NAME_TAKEN = "That name is taken."
NO_WINNERS = "No winners yet."

SHUTTING_DOWN = "*** The server is shutting down. Goodbye!"
KICKED = "*** You have been removed by the administrator. Goodbye!"
LINE_TOO_LONG = "*** Line too long. Goodbye!"
IDLE_GOODBYE = "*** Idle for too long. Goodbye!"
#: ``{seconds}`` is the count with its word: ``1 second``, ``30 seconds``.
IDLE_WARNING = "*** No input for a while: say something within {seconds} to stay."
SERVER_FULL = "*** The server is full. Try again later."
TOO_MANY_FROM_ADDRESS = "*** Too many connections from your address. Try again later."

#: The last line of a connection closed for each reason.
GOODBYES = {
    Goodbye.KICKED: KICKED,
    Goodbye.SHUTDOWN: SHUTTING_DOWN,
    Goodbye.QUIT: "Goodbye!",
    Goodbye.LINE_TOO_LONG: LINE_TOO_LONG,
    Goodbye.IDLE: IDLE_GOODBYE,
    Goodbye.SERVER_FULL: SERVER_FULL,
    Goodbye.ADDRESS_FULL: TOO_MANY_FROM_ADDRESS,
}


def notice_text(notice: Notice) -> str:
    """The words of one notice."""
    if isinstance(notice, Goodbye):
        return GOODBYES[notice]
    if isinstance(notice, RoundOver):
        return (
            f"*** {notice.winner} won the round with {notice.number}. "
            f"A new number between {notice.lo}-{notice.hi} has been picked."
        )
    if isinstance(notice, RoundRestarted):
        return (
            "*** The administrator started a new round. "
            f"Pick a number between {notice.lo}-{notice.hi}"
        )
    if isinstance(notice, Message):
        return f"*** Message from the administrator: {notice.text}"
    if isinstance(notice, IdleWarning):
        return IDLE_WARNING.format(seconds=plural(notice.seconds, "second"))
    raise TypeError(f"not a notice: {notice!r}")


@functools.lru_cache(maxsize=4096)
def render_notice(notice: Notice) -> bytes:
    """One notice as its line; a notice sent to thousands is rendered once."""
    return encode_line(notice_text(notice))


class PlayerTexts:
    """The modern dialect's replies for one range ``lo``-``hi``."""

    def __init__(self, lo: int, hi: int) -> None:
        self.prompt = f"Pick a number between {lo}-{hi}"
        self.prompt_line = encode_line(self.prompt)
        self.greeting = f"{GREETING}\r\n{self.prompt}\r\n".encode()
        # The two usual replies, encoded once for every player.
        self.too_low_line = encode_line(f"Too low! {self.prompt}")
        self.too_high_line = encode_line(f"Too high! {self.prompt}")
        self.help_line = encode_line(
            f"Guess the secret whole number between {lo}-{hi}. "
            "Commands: name NICK (choose your name), top (best players), "
            "help (this text), quit or exit (leave)."
        )
        self.name_taken_line = encode_line(NAME_TAKEN)
        self.name_rule_line = encode_line(NAME_RULE)

    @staticmethod
    def correct(outcome: Win) -> bytes:
        """The answer to the winning guess."""
        return encode_line(
            f"Correct! The number was {outcome.number}. "
            f"You won in {plural(outcome.guesses, 'guess')}!"
        )

    @staticmethod
    def renamed(name: str) -> bytes:
        """The answer to a rename that took."""
        return encode_line(f"You are now known as {name}.")

    @staticmethod
    def top(board: list[LeaderboardEntry]) -> bytes:
        """The answer to ``top``: the first five of the leaderboard."""
        if not board:
            return encode_line(NO_WINNERS)
        return encode_line(
            "Top players: "
            + ", ".join(f"{entry.name} {plural(entry.wins, 'win')}" for entry in board)
        )


def parse_guess(text: str, lo: int, hi: int) -> int | None:
    """The whole number ``text`` names if it lies in ``lo``-``hi``, else None.

    A whole number is ASCII digits only; leading zeros are allowed.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(hi)):
        return None  # far out of range, and never fed to int()
    number = int(digits)
    return number if lo <= number <= hi else None


class ModernDialect:
    """The modern dialect: one line in, one reply out, notices between.

    One instance serves every modern connection of a range (it keeps no
    per-connection state); `PlayerConnection` answers a plain guess
    through `guess` without decoding the line.
    """

    own_secret = False
    shows_notices = True
    #: Plain digit lines may skip decoding: `guess` answers them.
    answers_digits = True

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.texts = PlayerTexts(lo, hi)

    def greet(self, conn: PlayerConnection) -> None:
        """The two greeting lines."""
        conn.transport.write(self.texts.greeting)

    def render(self, notice: Notice) -> bytes | None:
        """A notice as its line."""
        return render_notice(notice)

    def line(self, conn: PlayerConnection, text: str | None) -> None:
        """Answer one line with exactly one reply."""
        texts = self.texts
        if text is None:
            conn.transport.write(texts.prompt_line)
            return
        number = parse_guess(text, self.lo, self.hi)
        if number is not None:
            self.guess(conn, number)
            return
        command, _, argument = text.partition(" ")
        command = command.lower()
        if command in ("quit", "exit"):
            conn.say_goodbye(Goodbye.QUIT, "quit")
        elif command == "help":
            conn.transport.write(texts.help_line)
        elif command == "name":
            self._rename(conn, argument.strip())
        elif command == "top":
            conn.transport.write(texts.top(conn.game.leaderboard(5)))
        else:
            conn.transport.write(texts.prompt_line)

    def guess(self, conn: PlayerConnection, number: int) -> None:
        """Answer a guess in range."""
        outcome = conn.game.guess(conn.player, number)
        if outcome is GuessResult.LOW:
            conn.transport.write(self.texts.too_low_line)
        elif outcome is GuessResult.HIGH:
            conn.transport.write(self.texts.too_high_line)
        else:
            conn.won(outcome, self.texts.correct(outcome))

    def _rename(self, conn: PlayerConnection, name: str) -> None:
        result = conn.game.rename(conn.player, name)
        if result is NameResult.OK:
            conn.transport.write(self.texts.renamed(conn.player.name))
        elif result is NameResult.TAKEN:
            conn.transport.write(self.texts.name_taken_line)
        else:
            conn.transport.write(self.texts.name_rule_line)
