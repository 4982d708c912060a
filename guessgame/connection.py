"""What every player connection shares, whatever dialect it speaks.

`PlayerConnection` is the `PlayerLink` the game reaches a player through:
it is admitted (or refused) by the player port's connection limits, joins
and leaves the game, takes notices, closes, waits for a win to be saved
before answering it, and answers the idle timeout, the output cap, a line
that is too long and a telnet Ctrl-C.  The dialects (`PlayerProtocol`,
`ClassicPlayerProtocol`) say only how a line is answered and what, if
anything, a notice or a goodbye looks like on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.game import SHUTTING_DOWN, Player, Win, plural
from guessgame.limits import IDLE_GOODBYE, IDLE_WARNING, LimitedLineReceiver
from guessgame.lines import format_address

if TYPE_CHECKING:
    from guessgame.player import PlayerFactory

__all__ = ["PlayerConnection"]

log = Logger()


class PlayerConnection(LimitedLineReceiver):
    """One player's connection, of any dialect; see the module docstring."""

    factory: PlayerFactory
    player: Player

    #: Whether this dialect plays a secret of its own whatever the mode.
    own_secret = False
    #: Whether this dialect shows ``*** `` notices (goodbyes included).
    takes_notices = True

    def __init__(self, factory: PlayerFactory) -> None:
        super().__init__(factory.max_line, factory.game.clock, factory.limits)
        self.factory = factory
        self.game = factory.game
        self._leave_reason = "closed"
        self._closed: list[defer.Deferred[None]] = []
        self._gone = False
        self._admitted = False
        self._peer: IAddress | None = None

    # What dialects define.

    def greet(self) -> None:
        """Send what a new player of this dialect sees first."""
        raise NotImplementedError

    # Connection life cycle.

    def connectionMade(self) -> None:
        """Join the game and greet, or refuse: server full, address full, or stopping."""
        self._peer = peer = self.transport.getPeer()
        refusal: str | None
        if not self.game.running:
            # Accepted as the server stops (after a dialect wait, say).
            refusal = SHUTTING_DOWN
        else:
            refusal = self.factory.admit(peer)
        if refusal is not None:
            self._gone = True
            if self.takes_notices:
                self.send_line(refusal)
            self.finish()
            return
        self._admitted = True
        self.player = self.game.join(self, format_address(peer), own_secret=self.own_secret)
        self.greet()
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
        """Send a notice line between replies (where the dialect shows them)."""
        if self.takes_notices and not self._gone:
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

    # A win.

    def won(self, outcome: Win, answer: Callable[[], None]) -> None:
        """The round is over for this player: answer once the win is saved, then close.

        Nothing more is read meanwhile, so no line is answered after it.
        """
        self.hold("won")
        self.game.leave(self.player, "won")
        self._leave_reason = "won"

        def answer_and_close(_: object) -> None:
            if not self._gone:
                answer()
                self.finish()

        outcome.saved.addBoth(answer_and_close)

    # Ways out.

    def say_goodbye(self, text: str, reason: str) -> None:
        """Send the goodbye ``text`` (where notices show) and close, leaving for ``reason``.

        A player whose win is being saved is already on its way out: its
        last line is ``Correct!``, whatever else happens meanwhile.
        """
        if self._gone or self._leave_reason == "won":
            return
        self._leave_reason = reason
        if self.takes_notices:
            self.send_line(text)
        self.finish()

    def refuse_long_line(self) -> None:
        """``*** Line too long. Goodbye!`` and close."""
        self.say_goodbye("*** Line too long. Goodbye!", "error")

    def interrupted(self) -> None:
        """Telnet Ctrl-C: the same as ``quit``."""
        self.say_goodbye("Goodbye!", "quit")

    def idle_warning(self, seconds: int) -> None:
        """The idle warning notice."""
        self.notice(IDLE_WARNING.format(seconds=plural(seconds, "second")))

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
        self.drop()
