"""The player port: `PlayerProtocol` and `PlayerFactory`.

One line in, one reply out.  The protocol turns lines into calls on the
`Game` and outcomes into the exact texts of PROTOCOL.md; the game reaches
the connection back through the `PlayerLink` methods `notice` and `close`.
The factory counts connections against the player port's `Limits`; the
protocol answers a limit with its notice.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress

from guessgame.classic import DialectDetector
from guessgame.connection import PlayerConnection
from guessgame.game import Game, GuessResult, NameResult, plural
from guessgame.limits import ConnectionCounter, Limits
from guessgame.lines import encode_line

__all__ = ["PlayerFactory", "PlayerProtocol", "parse_guess"]

GREETING = "You are now connected to the server!"
NAME_RULE = "A name is 1-16 letters, digits, _ or -."


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


class PlayerProtocol(PlayerConnection):
    """One modern player's connection; see the module docstring."""

    def greet(self) -> None:
        """The two greeting lines."""
        self.transport.write(self.factory.greeting)

    # Lines.

    def text_received(self, text: str | None) -> None:
        """Answer one line with exactly one reply."""
        if text is None:
            self.send_line(self.factory.prompt)
            return
        number = parse_guess(text, self.game.lo, self.game.hi)
        if number is not None:
            self._guess(number)
            return
        command, _, argument = text.partition(" ")
        command = command.lower()
        if command in ("quit", "exit"):
            self.say_goodbye("Goodbye!", "quit")
        elif command == "help":
            self.send_line(self.factory.help_text)
        elif command == "name":
            self._rename(argument.strip())
        elif command == "top":
            self.send_line(self._top())
        else:
            self.send_line(self.factory.prompt)

    def lineReceived(self, line: bytes) -> None:
        """Answer a plain guess at once; hand any other line to the full path.

        Most lines are a guess alone ("15"), and ``bytes.isdigit`` is true
        for ASCII digits only, as a whole number must be: such a line needs
        no decoding, stripping or command parsing.
        """
        digits = line[:-1] if line[-1:] == b"\r" else line
        factory = self.factory
        if digits.isdigit() and len(digits) <= factory.guess_digits:
            number = int(digits)
            if factory.lo <= number <= factory.hi:
                self._guess(number)
                return
        super().lineReceived(line)

    def _guess(self, number: int) -> None:
        outcome = self.game.guess(self.player, number)
        if outcome is GuessResult.LOW:
            self.transport.write(self.factory.too_low_line)
        elif outcome is GuessResult.HIGH:
            self.transport.write(self.factory.too_high_line)
        else:
            reply = (
                f"Correct! The number was {outcome.number}. "
                f"You won in {plural(outcome.guesses, 'guess')}!"
            )
            self.won(outcome, lambda: self.send_line(reply))

    def _rename(self, name: str) -> None:
        result = self.game.rename(self.player, name)
        if result is NameResult.OK:
            self.send_line(f"You are now known as {self.player.name}.")
        elif result is NameResult.TAKEN:
            self.send_line("That name is taken.")
        else:
            self.send_line(NAME_RULE)

    def _top(self) -> str:
        board = self.game.leaderboard(5)
        if not board:
            return "No winners yet."
        return "Top players: " + ", ".join(
            f"{entry.name} {plural(entry.wins, 'win')}" for entry in board
        )


class PlayerFactory(protocol.Factory[protocol.Protocol]):
    """Builds a `PlayerProtocol` per connection, all sharing one `Game`.

    With ``classic_wait`` above 0 each connection starts as a
    `DialectDetector`, which waits that many seconds at most for the
    classic ``Hello`` before handing over to a `PlayerProtocol`.
    """

    noisy = False
    protocol = PlayerProtocol

    def __init__(
        self,
        game: Game,
        *,
        max_line: int = 512,
        limits: Limits | None = None,
        classic_wait: float = 0.0,
        count_connection: Callable[[str], None] | None = None,
    ) -> None:
        self.game = game
        #: Told ``"accepted"`` or ``"refused"`` for each connection (the metrics).
        self.count_connection = count_connection or _ignore
        self.max_line = max_line
        self.limits = limits if limits is not None else Limits()
        self.connections = ConnectionCounter(self.limits)
        self.classic_wait = classic_wait
        self.prompt = f"Pick a number between {game.range_text}"
        self.greeting = f"{GREETING}\r\n{self.prompt}\r\n".encode()
        self.too_low = f"Too low! {self.prompt}"
        self.too_high = f"Too high! {self.prompt}"
        # The two usual replies, encoded once for every player.
        self.too_low_line = encode_line(self.too_low)
        self.too_high_line = encode_line(self.too_high)
        #: The most digits a guess in range can have (leading zeros aside).
        self.guess_digits = len(str(game.hi))
        self.lo, self.hi = game.lo, game.hi
        self.help_text = (
            f"Guess the secret whole number between {game.range_text}. "
            "Commands: name NICK (choose your name), top (best players), "
            "help (this text), quit or exit (leave)."
        )

    def buildProtocol(self, addr: IAddress | None) -> PlayerProtocol | DialectDetector:
        """A protocol for one new player: the detector when classic is on."""
        if self.classic_wait > 0:
            return DialectDetector(self, PlayerProtocol, self.classic_wait)
        return PlayerProtocol(self)

    def admit(self, addr: IAddress | None) -> str | None:
        """Count a new connection, or return the notice that refuses it."""
        refusal = self.connections.admit(addr)
        self.count_connection("accepted" if refusal is None else "refused")
        return refusal

    def release(self, addr: IAddress | None) -> None:
        """Forget a connection that `admit` let in."""
        self.connections.release(addr)


def _ignore(result: str) -> None:
    """Count nothing (no metrics)."""
