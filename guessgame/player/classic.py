"""The classic dialect of the original coursework clients on the player port.

Player port: a new connection waits up to ``--classic-wait`` seconds for
its first line (`guessgame.player.connection`); ``Hello`` makes it speak the
`ClassicDialect` (``Greetings``, ``Ready``, ``Far``/``Close``/``Correct``);
anything else, or nothing, the modern one, which greets and then reads
what arrived as ordinary input.

The classic administrator lives with the admin port (`guessgame.admin.classic`).

The original clients compare the whole result of one ``recv()`` with the
expected reply, so every classic reply is one CRLF-terminated line written
in one ``write`` call, and a classic connection never gets a notice.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

from guessgame.events import Notice, Win
from guessgame.player.connection import PlayerConnection

__all__ = [
    "ClassicDialect",
    "parse_classic_guess",
]

log = Logger()

GREETINGS = b"Greetings\r\n"
READY = b"Ready\r\n"
FAR = b"Far\r\n"
CLOSE = b"Close\r\n"
CORRECT = b"Correct\r\n"

#: The three accepted guess forms: ``My Guess is: N`` (case and spaces
#: free), ``Guess: N`` and a bare ``N``.
_GUESS = re.compile(r"(?:my\s*guess\s*is\s*:|guess\s*:)?\s*(.*)", re.IGNORECASE | re.DOTALL)


def parse_classic_guess(text: str, hi: int) -> int | None:
    """The whole number a classic guess line names, or None.

    Numbers outside the range are returned too (as long as they could lie
    within 2 of ``hi``), so the caller can answer ``Close`` for them.
    """
    match = _GUESS.fullmatch(text)
    number = match.group(1).strip() if match else ""
    if not (number.isascii() and number.isdigit()):
        return None
    digits = number.lstrip("0") or "0"
    if len(digits) > len(str(hi + 2)):
        return None  # far out of range, and never fed to int()
    return int(digits)


class ClassicDialect:
    """A classic player: one line in, one single-write reply out.

    ``Hello`` gets ``Greetings`` and ``Game`` gets ``Ready`` (both without
    regard to case, and as often as they are sent); every other line is a
    guess: ``Correct`` (then close), ``Close`` (1 or 2 away) or ``Far``
    (anything else, a non-number included).  Only whole numbers in the
    range count as guesses for the game.  It plays a secret of its own,
    is shown no notices, and where a modern player would get a goodbye
    notice (a limit, a kick, shutdown) it is just closed.
    """

    own_secret = True
    shows_notices = False
    answers_digits = False

    def greet(self, conn: PlayerConnection) -> None:
        """Nothing until the client's ``Hello``, which is its first line."""
        log.info("player {id} speaks the classic dialect", id=conn.player.id)

    def render(self, notice: Notice) -> bytes | None:
        """Nothing: the classic clients would take a notice for a reply."""
        return None

    def line(self, conn: PlayerConnection, text: str | None) -> None:
        """Answer one line with exactly one reply, in one write."""
        word = text.lower() if text is not None else ""
        if word == "hello":
            conn.transport.write(GREETINGS)
        elif word == "game":
            conn.transport.write(READY)
        else:
            self._guess(conn, text or "")

    def guess(self, conn: PlayerConnection, number: int) -> None:
        """Never called: a classic digit line takes the full path (see `line`)."""
        self._guess(conn, str(number))

    def _guess(self, conn: PlayerConnection, text: str) -> None:
        game = conn.game
        number = parse_classic_guess(text, game.hi)
        secret = conn.player.secret
        if number is None:
            conn.transport.write(FAR)
        elif not game.in_range(number):
            # Not a valid guess for the game, but still a distance away.
            conn.transport.write(CLOSE if abs(number - secret) <= 2 else FAR)
        else:
            outcome = game.guess(conn.player, number)
            if isinstance(outcome, Win):
                conn.won(outcome, CORRECT)
            else:
                conn.transport.write(CLOSE if abs(number - secret) <= 2 else FAR)
