"""One player's connection, whatever dialect it speaks: the parts it is made of.

`PlayerConnection` is the protocol of every player connection, over TCP
or a WebSocket.  It is the `GuardedLineReceiver` of the line layer
(framing, line editing, the telnet filter, the line length limit) and
owns the rest as parts, each set up once when the connection begins:

- the limits of the player port (`guessgame.wire.limits`): the connection
  counter that admits it, the idle timer, the rate bucket, the output cap;
- its dialect (a `Dialect`: modern or classic), which answers lines and
  renders notices, and which it learns while ``detecting`` (the classic
  clients' first ``Hello``, within ``--classic-wait`` seconds);
- its place in the `Game` (a `Player`): it is the `PlayerLink` the game
  reaches the player through.

A line travels: ``dataReceived`` (the line layer frames it) ->
`lineReceived` (a token spent where there is a rate limit; a plain guess
answered at once where the dialect allows) -> the line layer's decoding
-> ``Dialect.line``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.events import Goodbye, IdleWarning, Notice, Win
from guessgame.game import Game, Player
from guessgame.wire.limits import (
    ConnectionCounter,
    IdleTimer,
    Limits,
    OutputCap,
    RateBucket,
    close_after_flush,
)
from guessgame.wire.lines import GuardedLineReceiver, format_address

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Dialect", "PlayerConnection", "PlayerPort", "is_hello"]

log = Logger()

#: The first line that makes a connection classic, exactly as the original
#: clients spell it (surrounding white space and a CR are ignored).
HELLO = b"Hello"

#: A first line this long without a line end cannot be ``Hello``: stop
#: waiting and let the modern dialect apply its own line limit.
_LONGEST_HELLO_PREFIX = 64


def is_hello(line: bytes) -> bool:
    """Whether one line (without its LF) is the classic ``Hello``."""
    return line.strip() == HELLO


def _could_become_hello(partial: bytes) -> bool:
    """Whether bytes with no line end yet can still be the start of ``Hello``."""
    if len(partial) > _LONGEST_HELLO_PREFIX:
        return False
    word = partial.lstrip()
    if len(word) <= len(HELLO):
        return HELLO.startswith(word)
    return word.startswith(HELLO) and not word[len(HELLO) :].strip()


class Dialect(Protocol):
    """A way to play on the player port: what a line means, how a notice reads.

    One dialect object serves every connection that speaks it.
    """

    #: Whether a player of this dialect plays a secret of its own whatever the mode.
    own_secret: bool
    #: Whether notices (goodbyes included) are shown at all.
    shows_notices: bool
    #: Whether a plain line of digits in range may skip decoding (see `guess`).
    answers_digits: bool

    def greet(self, conn: PlayerConnection) -> None:
        """Send what a new player of this dialect sees first."""

    def line(self, conn: PlayerConnection, text: str | None) -> None:
        """Answer one line: stripped text, or None for invalid UTF-8."""

    def guess(self, conn: PlayerConnection, number: int) -> None:
        """Answer a whole number in range (only where ``answers_digits``)."""

    def render(self, notice: Notice) -> bytes | None:
        """``notice`` as this dialect shows it; None where it shows none."""


class PlayerPort(Protocol):
    """What a connection reads of the player port (its factory)."""

    game: Game
    max_line: int
    limits: Limits
    connections: ConnectionCounter
    classic_wait: float
    lo: int
    hi: int
    #: The most digits a guess in range can have (leading zeros aside).
    guess_digits: int
    count_connection: Callable[[str], None]

    @property
    def modern(self) -> Dialect:
        """The modern dialect."""

    @property
    def classic(self) -> Dialect:
        """The classic dialect."""


class PlayerConnection(GuardedLineReceiver):
    """One player's connection; see the module docstring."""

    player: Player

    def __init__(self, port: PlayerPort, *, detect: bool | None = None) -> None:
        """A connection of ``port``; ``detect`` (default: ``--classic-wait`` above 0)."""
        game = port.game
        super().__init__(port.max_line, game.clock)
        self.port = port
        self.game = game
        self.clock = game.clock
        self.limits = limits = port.limits
        #: Until the dialect is known: what arrived so far (None once known).
        self._detecting: bytes | None = (
            b"" if (port.classic_wait > 0 if detect is None else detect) else None
        )
        self.dialect: Dialect = port.modern
        # The plain-guess path, chosen with the dialect.
        self._digits = 0
        self._lo, self._hi = port.lo, port.hi
        #: The rate limit's bucket; None where there is none (the flag of `lineReceived`).
        self._rate: RateBucket | None = RateBucket(limits) if limits.max_rate else None
        self._idle: IdleTimer | None = None
        self._timer: IDelayedCall | None = None  # the dialect wait, then the close's linger
        self._leave_reason = "closed"
        self._closed: list[defer.Deferred[None]] = []
        self._gone = False
        self._admitted = False
        self._peer: IAddress | None = None

    # Connection life cycle.

    def connectionMade(self) -> None:
        """Wait for the dialect, or begin at once as a modern player."""
        if self._detecting is not None:
            self._timer = self.clock.callLater(self.port.classic_wait, self._wait_over)
            return
        self._begin(self.port.modern)

    def _begin(self, dialect: Dialect) -> None:
        """Join the game and greet, or refuse: server full, address full, or stopping."""
        self.dialect = dialect
        self._digits = self.port.guess_digits if dialect.answers_digits else 0
        self._peer = peer = self.transport.getPeer()
        refusal: Goodbye | None
        if not self.game.running:
            # Accepted as the server stops (after a dialect wait, say).
            refusal = Goodbye.SHUTDOWN
        else:
            refusal = self.port.connections.admit(peer)
            self.port.count_connection("accepted" if refusal is None else "refused")
        if refusal is not None:
            self._gone = True
            self._show(refusal)
            self.finish()
            return
        self._admitted = True
        self.player = self.game.join(self, format_address(peer), own_secret=dialect.own_secret)
        dialect.greet(self)
        self._start_limits()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Leave the game (if still in it) and fire anyone waiting on close()."""
        self._gone = True
        self._detecting = None
        self._stop_limits()
        if not self._admitted:
            return
        self._admitted = False
        self.port.connections.release(self._peer)
        self.game.leave(self.player, self._leave_reason)
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)

    # Dialect detection: the first state of a connection where classic is on.

    def dataReceived(self, data: bytes) -> None:
        """Frame lines; while the dialect is unknown, hold input until it is."""
        if self._detecting is None:
            GuardedLineReceiver.dataReceived(self, data)
            return
        self._detecting += data
        end = self._detecting.find(b"\n")
        if end >= 0:
            self._dialect_known(classic=is_hello(self._detecting[:end]))
        elif not _could_become_hello(self._detecting):
            self._dialect_known(classic=False)

    def _wait_over(self) -> None:
        self._timer = None
        self._dialect_known(classic=False)

    def _dialect_known(self, *, classic: bool) -> None:
        """Begin in the dialect found, then read what arrived while waiting."""
        buffered, self._detecting = self._detecting or b"", None
        self._cancel_timer()
        self._begin(self.port.classic if classic else self.port.modern)
        if buffered and not self.transport.disconnecting:
            GuardedLineReceiver.dataReceived(self, buffered)

    def readConnectionLost(self) -> None:
        """The peer's input ended: what arrived can no longer become Hello."""
        if self._detecting is not None:
            self._dialect_known(classic=False)
        super().readConnectionLost()

    # Per line: keep this cheap.

    def lineReceived(self, line: bytes) -> None:
        """Spend a rate token; answer a plain guess at once; else decode and pass on.

        Most lines are a guess alone ("15"), and ``bytes.isdigit`` is true
        for ASCII digits only, as a whole number must be: such a line needs
        no decoding, stripping or command parsing.
        """
        rate = self._rate
        if rate is not None:
            ahead = rate.spend(self.clock.seconds())
            if ahead:
                self._throttle(ahead)
        digits = line[:-1] if line[-1:] == b"\r" else line
        if digits.isdigit() and len(digits) <= self._digits:
            number = int(digits)
            if self._lo <= number <= self._hi:
                self.dialect.guess(self, number)
                return
        GuardedLineReceiver.lineReceived(self, line)

    def text_received(self, text: str | None) -> None:
        """One decoded line: the dialect's to answer."""
        self.dialect.line(self, text)

    # PlayerLink: how the game reaches this connection.

    def notice(self, notice: Notice) -> bool:
        """Show a notice between replies where the dialect shows them; whether it does."""
        if not self._gone:
            self._show(notice)
        return self.dialect.shows_notices

    def close(self) -> defer.Deferred[None]:
        """Flush and close; fire once the connection is gone."""
        d: defer.Deferred[None] = defer.Deferred()
        if self._gone:
            d.callback(None)
        else:
            self._closed.append(d)
            self.finish()
        return d

    def _show(self, notice: Notice) -> None:
        data = self.dialect.render(notice)
        if data is not None:
            self.transport.write(data)

    # A win.

    def won(self, outcome: Win, answer: bytes) -> None:
        """The round is over for this player: answer once the win is saved, then close.

        Nothing more is read meanwhile, so no line is answered after it.
        """
        self.hold("won")
        self.game.leave(self.player, "won")
        self._leave_reason = "won"

        def answer_and_close(_: object) -> None:
            if not self._gone:
                self.transport.write(answer)
                self.finish()

        outcome.saved.addBoth(answer_and_close)

    # Ways out.

    def say_goodbye(self, goodbye: Goodbye, reason: str) -> None:
        """Show ``goodbye`` (where notices show) and close, leaving for ``reason``.

        A player whose win is being saved is already on its way out: its
        last line is the win's answer, whatever else happens meanwhile.
        """
        if self._gone or self._leave_reason == "won":
            return
        self._leave_reason = reason
        self._show(goodbye)
        self.finish()

    def refuse_long_line(self) -> None:
        """A line over ``--max-line``: its goodbye, and close."""
        self.say_goodbye(Goodbye.LINE_TOO_LONG, "error")

    def interrupted(self) -> None:
        """Telnet Ctrl-C: the same as ``quit``."""
        self.say_goodbye(Goodbye.QUIT, "quit")

    def finish(self) -> None:
        """Close once what was sent is flushed; abort a peer that will not take it."""
        linger = close_after_flush(self.transport, self.clock, self._timer)
        self._timer = linger

    # The limits.

    def _start_limits(self) -> None:
        limits = self.limits
        now = self.clock.seconds()
        self.last_line = now
        if self._rate is not None:
            self._rate.full_at = now
        if limits.idle_timeout > 0:
            self._idle = IdleTimer(
                self.clock, limits, self._last_line, self._idle_warning, self._idle_expired
            )
        if limits.max_output:
            OutputCap.attach(self.transport, limits.max_output, self._output_exceeded)

    def _stop_limits(self) -> None:
        self._cancel_timer()
        if self._idle is not None:
            self._idle.stop()
            self._idle = None
        if self._rate is not None:
            self._rate.stop()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _last_line(self) -> float:
        return self.last_line

    def _throttle(self, ahead: float) -> None:
        rate = self._rate
        assert rate is not None
        if rate.call is None:
            self.hold("rate")
            rate.call = self.clock.callLater(rate.delay(ahead), self._unthrottle)

    def _unthrottle(self) -> None:
        assert self._rate is not None
        self._rate.call = None
        self.release("rate")

    def _idle_warning(self, seconds: int) -> None:
        self.notice(IdleWarning(seconds))

    def _idle_expired(self) -> None:
        self.say_goodbye(Goodbye.IDLE, "idle")

    def _output_exceeded(self) -> None:
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
        self.drop()
