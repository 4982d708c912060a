"""The classic dialect of the original coursework clients, on both ports.

Player port: `DialectDetector` holds a new connection's greeting for up to
``--classic-wait`` seconds.  A first line ``Hello`` hands the connection to
`ClassicPlayerProtocol` (``Greetings``, ``Ready``, ``Far``/``Close``/
``Correct``); anything else, or nothing, hands it to the modern
`PlayerProtocol`, which greets and then reads what arrived as ordinary input.

Admin port: a first line ``Hello`` makes the connection a `ClassicAdmin`
(``Admin-Greetings``, then ``Who`` lists ``IP PORT`` lines and closes).

The original clients compare the whole result of one ``recv()`` with the
expected reply, so every classic reply is one CRLF-terminated line written
in one ``write`` call, and a classic connection never gets a notice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from guessgame.connection import PlayerConnection
from guessgame.game import Win
from guessgame.lines import Transport

if TYPE_CHECKING:
    from guessgame.admin import AdminProtocol
    from guessgame.player import PlayerFactory

__all__ = [
    "ClassicAdmin",
    "ClassicPlayerProtocol",
    "DialectDetector",
    "is_hello",
    "parse_classic_guess",
]

log = Logger()

#: The first line that makes a connection classic, exactly as the original
#: clients spell it (surrounding white space and a CR are ignored).
HELLO_TEXT = "Hello"
HELLO = HELLO_TEXT.encode("ascii")

GREETINGS = b"Greetings\r\n"
READY = b"Ready\r\n"
FAR = b"Far\r\n"
CLOSE = b"Close\r\n"
CORRECT = b"Correct\r\n"
ADMIN_GREETINGS = b"Admin-Greetings\r\n"

#: A first line this long without a line end cannot be ``Hello``: stop
#: waiting and let the modern protocol apply its own line limit.
_LONGEST_HELLO_PREFIX = 64

#: The three accepted guess forms: ``My Guess is: N`` (case and spaces
#: free), ``Guess: N`` and a bare ``N``.
_GUESS = re.compile(r"(?:my\s*guess\s*is\s*:|guess\s*:)?\s*(.*)", re.IGNORECASE | re.DOTALL)


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


@implementer(IHalfCloseableProtocol)
class DialectDetector(protocol.Protocol):
    """Holds a new player connection until its dialect is known.

    Input is buffered until the first line is complete, until it can no
    longer become ``Hello``, or until the wait is over.  Then the
    connection is handed to the protocol of its dialect, which is connected
    to the same transport and fed what was buffered.  Where the transport
    dispatches through a ``protocol`` (TCP) or ``wrappedProtocol`` (TLS)
    attribute, that attribute is pointed at the new protocol so later input
    goes straight to it; otherwise this object forwards.
    """

    def __init__(
        self,
        factory: PlayerFactory,
        modern: Callable[[PlayerFactory], IProtocol],
        wait: float,
    ) -> None:
        self.factory = factory
        self._modern = modern
        self._wait = wait
        self._buffer = b""
        self._timer: IDelayedCall | None = None
        self._next: IProtocol | None = None

    def connectionMade(self) -> None:
        """Start the wait for a first line."""
        self._timer = self.factory.game.clock.callLater(self._wait, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        """Buffer input until the dialect is known; then forward."""
        if self._next is not None:
            self._next.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end >= 0:
            self._hand_off(classic=is_hello(self._buffer[:end]))
        elif not _could_become_hello(self._buffer):
            self._hand_off(classic=False)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Pass the loss on, or, still waiting, just stop the wait."""
        if self._next is not None:
            self._next.connectionLost(reason)
            return
        self._stop_timer()
        self._buffer = b""

    def readConnectionLost(self) -> None:
        """The peer's input ended: what arrived can no longer become Hello."""
        if self._next is None:
            self._hand_off(classic=False)
        successor = IHalfCloseableProtocol(self._next, None)
        if successor is not None:
            successor.readConnectionLost()
        elif self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our side can no longer send: close."""
        if self.transport is not None:
            self.transport.loseConnection()

    def _timed_out(self) -> None:
        self._timer = None
        self._hand_off(classic=False)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            timer, self._timer = self._timer, None
            if timer.active():
                timer.cancel()

    def _hand_off(self, *, classic: bool) -> None:
        self._stop_timer()
        transport = self.transport
        assert transport is not None
        successor: IProtocol = (
            ClassicPlayerProtocol(self.factory) if classic else self._modern(self.factory)
        )
        self._next = successor
        for attribute in ("protocol", "wrappedProtocol"):
            if getattr(transport, attribute, None) is self:
                setattr(transport, attribute, successor)
        buffered, self._buffer = self._buffer, b""
        successor.makeConnection(transport)
        if buffered and not getattr(transport, "disconnecting", False):
            successor.dataReceived(buffered)


class ClassicPlayerProtocol(PlayerConnection):
    """A classic player: one line in, one single-write reply out.

    ``Hello`` gets ``Greetings`` and ``Game`` gets ``Ready`` (both without
    regard to case, and as often as they are sent); every other line is a
    guess: ``Correct`` (then close), ``Close`` (1 or 2 away) or ``Far``
    (anything else, a non-number included).  Only whole numbers in the
    range count as guesses for the game.  It plays a secret of its own,
    gets no notices, and where a modern player would get a goodbye notice
    (a limit, a kick, shutdown) it is just closed.
    """

    own_secret = True
    takes_notices = False

    def greet(self) -> None:
        """Nothing until the client's ``Hello``, which is its first line."""
        log.info("player {id} speaks the classic dialect", id=self.player.id)

    def text_received(self, text: str | None) -> None:
        """Answer one line with exactly one reply, in one write."""
        word = text.lower() if text is not None else ""
        if word == "hello":
            self.reply(GREETINGS)
        elif word == "game":
            self.reply(READY)
        else:
            self._guess(text or "")

    def _guess(self, text: str) -> None:
        number = parse_classic_guess(text, self.game.hi)
        if number is None:
            self.reply(FAR)
        elif not self.game.in_range(number):
            # Not a valid guess for the game, but still a distance away.
            self.reply(CLOSE if abs(number - self.player.secret) <= 2 else FAR)
        else:
            secret = self.player.secret
            outcome = self.game.guess(self.player, number)
            if isinstance(outcome, Win):
                self.won(outcome, lambda: self.reply(CORRECT))
            else:
                self.reply(CLOSE if abs(number - secret) <= 2 else FAR)

    def reply(self, data: bytes) -> None:
        """Send one classic reply, a whole line, in one write."""
        self.transport.write(data)


def classic_address(address: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) as the classic ``IP PORT``, v6 unbracketed."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return f"{host} {port}"


class ClassicAdmin:
    """A classic administrator on the admin port, after its first ``Hello``.

    It never authenticates, counts against no limit and gets no events:
    ``Who`` answers with an ``IP PORT`` line a player, all in one write,
    and closes; ``Hello`` is greeted again; anything else is an unknown
    command.  With an admin token set, ``Hello`` is refused.
    """

    def __init__(self, admin: AdminProtocol) -> None:
        self.admin = admin

    @property
    def transport(self) -> Transport:
        """The administrator's transport."""
        return self.admin.transport

    def hello(self) -> None:
        """Answer the first ``Hello``: greet, or refuse when a token is set."""
        if self.admin.factory.token is not None:
            log.warn("classic administrator {peer}: refused, a token is set", peer=self.admin.peer)
            self.transport.write(b"ERR bad token\r\n")
            self.transport.loseConnection()
            return
        log.info("classic administrator {peer} connected", peer=self.admin.peer)
        self.transport.write(ADMIN_GREETINGS)

    def text_received(self, text: str | None) -> None:
        """Answer one line after ``Hello``."""
        if text is None:
            self.transport.write(b"ERR invalid UTF-8\r\n")
            return
        command = text.lower()
        if command == "who":
            players = self.admin.game.players.values()
            listing = "".join(f"{classic_address(p.address)}\r\n" for p in players)
            if listing:
                self.admin.write_reply(listing.encode("utf-8"))
            self.transport.loseConnection()
        elif command == "hello":
            self.transport.write(ADMIN_GREETINGS)
        else:
            word = text.partition(" ")[0]
            reply = f"ERR unknown command: {word}" if word else "ERR empty line"
            self.transport.write(reply.encode("utf-8") + b"\r\n")
