"""The player port's factory: `PlayerFactory`.

One factory serves every player connection of the daemon, over TCP and
over the web port's WebSocket: it holds the port's limits and counts, and
the dialects every `PlayerConnection` may speak.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress

from guessgame.game import Game
from guessgame.player.classic import ClassicDialect
from guessgame.player.connection import PlayerConnection
from guessgame.player.modern import ModernDialect
from guessgame.wire.limits import ConnectionCounter, Limits

__all__ = ["PlayerFactory"]


class PlayerFactory(protocol.Factory[protocol.Protocol]):
    """Builds a `PlayerConnection` per connection, all sharing one `Game`.

    With ``classic_wait`` above 0 each connection first waits that many
    seconds at most for the classic ``Hello`` to learn its dialect.
    """

    noisy = False

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
        self.modern = ModernDialect(game.lo, game.hi)
        self.classic = ClassicDialect()
        self.lo, self.hi = game.lo, game.hi
        #: The most digits a guess in range can have (leading zeros aside).
        self.guess_digits = len(str(game.hi))

    def buildProtocol(self, addr: IAddress | None) -> PlayerConnection:
        """A connection for one new player (detecting its dialect when classic is on)."""
        return PlayerConnection(self)

    def modern_connection(self) -> PlayerConnection:
        """A connection that speaks the modern dialect from the start (the WebSocket)."""
        return PlayerConnection(self, detect=False)


def _ignore(result: str) -> None:
    """Count nothing (no metrics)."""
