"""The player port: `PlayerProtocol` and `PlayerFactory`.

One line in, one reply out.  The protocol turns lines into calls on the
`Game` and outcomes into the exact texts of PROTOCOL.md; the game reaches
the connection back through the `PlayerLink` methods `notice` and `close`.
The factory counts connections against the player port's `Limits`; the
protocol answers a limit with its notice.
"""

from __future__ import annotations

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.classic import DialectDetector
from guessgame.game import Game, GuessResult, NameResult, Player, plural
from guessgame.limits import (
    IDLE_GOODBYE,
    IDLE_WARNING,
    ConnectionCounter,
    LimitedLineReceiver,
    Limits,
)
from guessgame.lines import format_address

__all__ = ["PlayerFactory", "PlayerProtocol", "parse_guess"]

log = Logger()

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


class PlayerProtocol(LimitedLineReceiver):
    """One player's connection; see the module docstring."""

    factory: PlayerFactory
    player: Player

    def __init__(self, factory: PlayerFactory) -> None:
        super().__init__(factory.max_line, factory.game.clock, factory.limits)
        self.factory = factory
        self.game = factory.game
        self._leave_reason = "closed"
        self._closed: list[defer.Deferred[None]] = []
        self._gone = False
        self._admitted = False
        self._peer: IAddress | None = None

    # Connection life cycle.

    def connectionMade(self) -> None:
        """Join the game and greet the player, or refuse when a limit is reached."""
        self._peer = peer = self.transport.getPeer()
        refusal = self.factory.admit(peer)
        if refusal is not None:
            self._gone = True
            self.send_line(refusal)
            self.finish()
            return
        self._admitted = True
        self.player = self.game.join(self, format_address(peer))
        self.transport.write(f"{GREETING}\r\n{self.factory.prompt}\r\n".encode())
        self.start_limits()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Leave the game (if still in it) and fire anyone waiting on close()."""
        self._gone = True
        self.stop_limits()
        if not self._admitted:
            return
        self._admitted = False
        self.factory.release(self._peer)
        self.game.leave(self.player, self._leave_reason)
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)

    # PlayerLink: how the game reaches this connection.

    def notice(self, text: str) -> None:
        """Send a notice line between replies."""
        if not self._gone:
            self.send_line(text)

    def close(self) -> defer.Deferred[None]:
        """Flush and close; fire once the connection is gone."""
        d: defer.Deferred[None] = defer.Deferred()
        if self._gone:
            d.callback(None)
        else:
            self._closed.append(d)
            self.finish()
        return d

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

    def _guess(self, number: int) -> None:
        outcome = self.game.guess(self.player, number)
        if outcome.result is GuessResult.LOW:
            self.send_line(self.factory.too_low)
        elif outcome.result is GuessResult.HIGH:
            self.send_line(self.factory.too_high)
        else:
            # The round is over for this player.  Read nothing more, and
            # answer only once the win is saved.
            self.hold("won")
            self.game.leave(self.player, "won")
            self._leave_reason = "won"
            reply = (
                f"Correct! The number was {outcome.number}. "
                f"You won in {plural(outcome.guesses, 'guess')}!"
            )
            assert outcome.saved is not None
            outcome.saved.addBoth(lambda _: self.say_goodbye(reply, "won"))

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

    # Ways out.

    def say_goodbye(self, text: str, reason: str) -> None:
        """Send ``text`` and close, leaving the game for ``reason``."""
        if self._gone:
            return
        self._leave_reason = reason
        self.send_line(text)
        self.finish()

    def refuse_long_line(self) -> None:
        """``*** Line too long. Goodbye!`` and close."""
        self.say_goodbye("*** Line too long. Goodbye!", "error")

    def interrupted(self) -> None:
        """Telnet Ctrl-C: the same as ``quit``."""
        self.say_goodbye("Goodbye!", "quit")

    # Limits.

    def idle_warning(self, seconds: int) -> None:
        """The idle warning notice."""
        self.notice(IDLE_WARNING.format(seconds=seconds))

    def idle_expired(self) -> None:
        """``*** Idle for too long. Goodbye!`` and close."""
        self.say_goodbye(IDLE_GOODBYE, "idle")

    def output_exceeded(self) -> None:
        """The player stopped reading: drop it at once, with reason ``error``."""
        if self._gone:
            return
        log.info(
            "player {id} stopped reading: over {limit} bytes unsent, closing",
            id=self.player.id,
            limit=self.limits.max_output,
        )
        self._gone = True  # nothing more is queued for it
        self._leave_reason = "error"
        self.game.leave(self.player, "error")
        self.transport.abortConnection()


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
    ) -> None:
        self.game = game
        self.max_line = max_line
        self.limits = limits if limits is not None else Limits()
        self.connections = ConnectionCounter(self.limits)
        self.classic_wait = classic_wait
        self.prompt = f"Pick a number between {game.range_text}"
        self.too_low = f"Too low! {self.prompt}"
        self.too_high = f"Too high! {self.prompt}"
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
        return self.connections.admit(addr)

    def release(self, addr: IAddress | None) -> None:
        """Forget a connection that `admit` let in."""
        self.connections.release(addr)
