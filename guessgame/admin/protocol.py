"""The admin port: `AdminProtocol` and `AdminFactory`.

After the ``Admin-Greetings`` handshake an administrator sends commands,
each answered by data lines and exactly one ``OK``/``ERR`` line, and
receives the game's events as ``EVENT`` lines between replies.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.admin.classic import HELLO_TEXT, ClassicAdmin
from guessgame.events import Event, Joined, Left, Renamed, RoundStarted, Won, plural
from guessgame.game import Game
from guessgame.wire.limits import OutputCap
from guessgame.wire.lines import GuardedLineReceiver, format_address

__all__ = ["AdminFactory", "AdminProtocol", "format_event", "format_time"]

log = Logger()

HANDSHAKE = "admin-greetings"

#: Seconds a new connection has to complete its handshake.
HANDSHAKE_TIMEOUT = 10.0
#: How many connections may wait for their handshake at once; one more is
#: closed at once.  With the delay below, this bounds how fast anyone can
#: try tokens: 16 a second, from everywhere together.
MAX_PENDING = 16
#: Seconds between a wrong token and its ``ERR bad token``.
BAD_TOKEN_DELAY = 1.0
#: Seconds a connection closed before its handshake may take to accept its
#: last line before it is aborted.
REFUSAL_GRACE = 5.0

#: ``top`` lists this many without K, and at most this many with one.
TOP_DEFAULT = 10
TOP_MOST = 1000


def format_event(event: Event) -> str | None:
    """The ``EVENT`` line for one game event; None for those admins are not sent."""
    if isinstance(event, Joined):
        return f"EVENT join {event.id} {event.name} {event.address}"
    if isinstance(event, Left):
        return f"EVENT leave {event.id} {event.name} {event.reason}"
    if isinstance(event, Won):
        return f"EVENT win {event.id} {event.name} {event.number} {event.guesses}"
    if isinstance(event, RoundStarted):
        return f"EVENT round {event.round} {event.lo}-{event.hi}"
    if isinstance(event, Renamed):
        return f"EVENT name {event.id} {event.old} {event.new}"
    return None


def format_time(seconds: float) -> str:
    """A moment as ``2026-11-26T12:04:31Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


HELP = (
    "who                list the players: PLAYER ID NICK HOST:PORT G CONNECTED",
    "count              how many players are connected",
    "stats              counters: players rounds wins guesses uptime ...",
    "kick ID            remove player ID",
    "say TEXT           send TEXT to every player",
    "newround           start a new round with a new secret",
    "top [K]            the first K of the leaderboard (default 10, K 1-1000)",
    "help               this list",
    "quit               close this connection",
)


class AdminProtocol(GuardedLineReceiver):
    """One administrator's connection; see the module docstring."""

    factory: AdminFactory

    def __init__(self, factory: AdminFactory) -> None:
        super().__init__(factory.max_line)
        self.factory = factory
        self.game = factory.game
        self.authenticated = False
        #: Set when the first line was the classic ``Hello``.
        self.classic: ClassicAdmin | None = None
        self._first_line = True
        self._closed: list[defer.Deferred[None]] = []
        #: The handshake deadline, then the delayed refusal of a wrong token,
        #: then the abort of a refused connection that does not go.
        self._timer: IDelayedCall | None = None
        #: The output cap, once connected with ``max_output`` set.
        self._cap: OutputCap | None = None
        self._dropped = False
        self._commands: dict[str, Callable[[str], None]] = {
            "who": self.do_who,
            "count": self.do_count,
            "stats": self.do_stats,
            "kick": self.do_kick,
            "say": self.do_say,
            "newround": self.do_newround,
            "top": self.do_top,
            "help": self.do_help,
            "quit": self.do_quit,
        }

    @property
    def peer(self) -> str:
        """The administrator's ``HOST:PORT``."""
        return format_address(self.transport.getPeer())

    def connectionMade(self) -> None:
        """Turn on TCP keepalive and the output cap.

        Keepalive frees the slot of an administrator that vanished; the
        output cap, from the first byte (before the handshake too), drops
        one that stopped reading (see `output_exceeded`).
        """
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(1)
        if self.factory.max_output:
            self._cap = OutputCap.attach(
                self.transport, self.factory.max_output, self.output_exceeded
            )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Stop receiving events and free the administrator slot."""
        self._handshake_over()
        if self.authenticated:
            self.authenticated = False
            self.factory.admins.discard(self)
            self.game.remove_observer(self)
            log.info("administrator {peer} left", peer=self.peer)
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)

    def output_exceeded(self) -> None:
        """The administrator stopped reading: log it and drop it at once.

        Nothing more is queued for it: no event, and no answer to the lines
        it sent before the drop.
        """
        if self._dropped:
            return
        self._dropped = True
        log.warn(
            "administrator {peer} stopped reading: over {limit} bytes unsent, closing",
            peer=self.peer,
            limit=self.factory.max_output,
        )
        self.game.remove_observer(self)
        # Neither the lines already buffered nor any input handed on after
        # the abort (TLS may still deliver what it decrypted) is answered.
        self._buffer = b""
        self.hold("dropped")
        self.transport.abortConnection()

    def write_reply(self, data: bytes) -> None:
        """Write one reply of many lines (``who``, ``top``) in one piece.

        The output cap counts what waits beyond the largest such reply: a
        ``who`` of thousands of players is not a peer that stopped reading.
        """
        if self._cap is not None:
            self._cap.make_room(len(data))
        self.transport.write(data)

    # GameObserver.

    def game_event(self, event: Event) -> None:
        """Push one ``EVENT`` line."""
        line = format_event(event)
        if line is not None:
            self.send_line(line)

    def close(self) -> defer.Deferred[None]:
        """Flush and close; fire once closed."""
        d: defer.Deferred[None] = defer.Deferred()
        self._closed.append(d)
        self.transport.loseConnection()
        return d

    # Lines.

    def text_received(self, text: str | None) -> None:
        """Answer one line: the handshake first, then commands."""
        if self.classic is not None:
            self.classic.text_received(text)
            return
        first_line, self._first_line = self._first_line, False
        if first_line and text == HELLO_TEXT:
            self.classic = ClassicAdmin(self, self.factory.token)
            self.classic.hello()
            return
        if text is None:
            self.send_line(
                "ERR invalid UTF-8" if self.authenticated else "ERR send Admin-Greetings first"
            )
            return
        word, _, argument = text.partition(" ")
        command = word.lower()
        argument = argument.strip()
        if not self.authenticated:
            self._handshake(command, argument)
            return
        handler = self._commands.get(command)
        if handler is None:
            self.send_line(f"ERR unknown command: {word}" if word else "ERR empty line")
        else:
            handler(argument)

    # The handshake: a deadline, a place among those waiting, a slow "no".

    def await_handshake(self) -> None:
        """Start the handshake deadline; the factory counts this connection as waiting."""
        self._timer = self.factory.clock.callLater(HANDSHAKE_TIMEOUT, self._handshake_timed_out)

    def _handshake_over(self) -> None:
        """No longer waiting for the handshake: stop the timer, free the place."""
        self.factory.pending.discard(self)
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self.transport.disconnecting:
            # Refused already (another administrator, a long line) and its
            # last line still not taken: no second answer, just go.
            self.transport.abortConnection()
            return
        log.info("administrator {peer}: no handshake in time, closing", peer=self.peer)
        self._refuse_before_handshake("ERR handshake timeout")

    def _refuse_before_handshake(self, text: str) -> None:
        """Send ``text`` and close; abort a peer that does not take it in time.

        The connection keeps its place among those waiting until it is gone.
        """
        self._refuse(text)
        self._timer = self.factory.clock.callLater(REFUSAL_GRACE, self.transport.abortConnection)

    def _bad_token(self) -> None:
        """Answer a wrong token after a delay, reading nothing meanwhile."""
        log.warn("administrator {peer}: bad token", peer=self.peer)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.hold("bad token")
        self._buffer = b""
        self._timer = self.factory.clock.callLater(
            BAD_TOKEN_DELAY, self._refuse_before_handshake, "ERR bad token"
        )

    def _handshake(self, command: str, token: str) -> None:
        if command != HANDSHAKE:
            self.send_line("ERR send Admin-Greetings first")
            return
        expected = self.factory.token
        if expected is not None and not hmac.compare_digest(
            token.encode("utf-8"), expected.encode("utf-8")
        ):
            self.factory.count_connection("refused")
            self._bad_token()
            return
        if 0 < self.factory.max_admins <= len(self.factory.admins):
            self.factory.count_connection("refused")
            self._refuse("ERR another administrator is connected")
            return
        self.factory.count_connection("accepted")
        self._handshake_over()
        self.authenticated = True
        self.factory.admins.add(self)
        self.game.add_observer(self)
        log.info("administrator {peer} connected", peer=self.peer)
        self.send_line(f"OK Admin-Greetings, {plural(len(self.game.players), 'player')} online")

    def _refuse(self, text: str) -> None:
        # The last line is this answer: no event may follow it.
        self.game.remove_observer(self)
        self.send_line(text)
        self._buffer = b""
        self.transport.loseConnection()

    # Commands.

    def do_who(self, argument: str) -> None:
        """``who``: a PLAYER line each, in join order."""
        players = list(self.game.players.values())
        lines = [
            f"PLAYER {p.id} {p.name} {p.address} {p.guesses} {format_time(p.connected)}"
            for p in players
        ]
        lines.append(f"OK {plural(len(players), 'player')}")
        self.write_reply("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def do_count(self, argument: str) -> None:
        """``count``."""
        self.send_line(f"OK {plural(len(self.game.players), 'player')}")

    def do_stats(self, argument: str) -> None:
        """``stats``: the counters as key=value fields."""
        fields = " ".join(f"{key}={value}" for key, value in self.game.stats().items())
        self.send_line(f"OK {fields}")

    def do_kick(self, argument: str) -> None:
        """``kick ID``."""
        if not argument:
            self.send_line("ERR usage: kick ID")
            return
        pid = (
            int(argument)
            if argument.isascii() and argument.isdigit() and len(argument) < 20
            else None
        )
        if pid is None or not self.game.kick(pid):
            self.send_line(f"ERR no player {argument}")
            return
        log.info("administrator {peer} kicked player {id}", peer=self.peer, id=pid)
        self.send_line(f"OK kicked {pid}")

    def do_say(self, argument: str) -> None:
        """``say TEXT``."""
        if not argument:
            self.send_line("ERR usage: say TEXT")
            return
        count = self.game.say(argument)
        log.info(
            "administrator {peer} said to {reached}: {text}",
            peer=self.peer,
            reached=plural(count, "player"),
            count=count,
            text=argument,
        )
        self.send_line(f"OK sent to {plural(count, 'player')}")

    def do_newround(self, argument: str) -> None:
        """``newround``."""
        number = self.game.new_round()
        log.info("administrator {peer} started round {round}", peer=self.peer, round=number)
        self.send_line(f"OK round {number} started")

    def do_top(self, argument: str) -> None:
        """``top [K]``: the leaderboard's first K lines."""
        limit = TOP_DEFAULT
        if argument:
            valid = argument.isascii() and argument.isdigit() and len(argument) <= 10
            limit = int(argument) if valid else 0
            if not 1 <= limit <= TOP_MOST:
                self.send_line(f"ERR usage: top [K], K a whole number 1-{TOP_MOST}")
                return
        board = self.game.leaderboard(limit)
        lines = [
            f"TOP {rank} {entry.name} {entry.wins} {entry.best}"
            for rank, entry in enumerate(board, start=1)
        ]
        lines.append(f"OK {plural(len(board), 'player')}")
        self.write_reply("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def do_help(self, argument: str) -> None:
        """``help``: one line a command."""
        self.transport.write("".join(line + "\r\n" for line in (*HELP, "OK")).encode("utf-8"))

    def do_quit(self, argument: str) -> None:
        """``quit``."""
        self._refuse("OK bye")

    # Refusals.

    def refuse_long_line(self) -> None:
        """``ERR line too long`` and close."""
        self._refuse("ERR line too long")

    def interrupted(self) -> None:
        """Telnet Ctrl-C: the same as ``quit``."""
        self._refuse("OK bye")


class AdminFactory(protocol.Factory[AdminProtocol]):
    """Builds an `AdminProtocol` per connection, all sharing one `Game`."""

    noisy = False
    protocol = AdminProtocol

    def __init__(
        self,
        game: Game,
        *,
        token: str | None = None,
        max_admins: int = 1,
        max_line: int = 512,
        count_connection: Callable[[str], None] | None = None,
        max_output: int = 0,
    ) -> None:
        self.game = game
        self.clock = game.clock
        #: Told ``"accepted"`` or ``"refused"`` for each handshake (the metrics).
        self.count_connection = count_connection or _ignore
        self.token = token
        self.max_admins = max_admins
        self.max_line = max_line
        #: Bytes an administrator may leave unsent before it is dropped (0: no cap).
        self.max_output = max_output
        self.admins: set[AdminProtocol] = set()
        #: Connections waiting for their handshake (at most `MAX_PENDING`).
        self.pending: set[AdminProtocol] = set()

    def buildProtocol(self, addr: IAddress | None) -> AdminProtocol | None:
        """A protocol for one administrator connection, with its handshake deadline.

        None, which closes the connection at once without a word, when
        `MAX_PENDING` connections already wait for their handshake.
        """
        if len(self.pending) >= MAX_PENDING:
            return None
        admin = AdminProtocol(self)
        self.pending.add(admin)
        admin.await_handshake()
        return admin

    def stopFactory(self) -> None:
        """The port stopped listening (the daemon stops): close those not yet admitted.

        Administrators past the handshake are closed by the game, as observers.
        """
        for admin in list(self.pending):
            if admin.transport is not None:
                admin.transport.loseConnection()


def _ignore(result: str) -> None:
    """Count nothing (no metrics)."""
