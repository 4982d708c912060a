"""The classic administrator of the original coursework clients, on the admin port.

A first line ``Hello`` makes an admin connection a `ClassicAdmin`
(``Admin-Greetings``, then ``Who`` lists ``IP PORT`` lines and closes).
Like the classic player, every reply is written in one ``write`` call:
the original client compares the whole result of one ``recv()``.
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger

from guessgame.game import Game
from guessgame.wire.lines import Transport

__all__ = ["HELLO_TEXT", "AdminLine", "ClassicAdmin", "classic_address"]

log = Logger()

#: The first line that makes an admin connection classic, exactly as the
#: original client spells it (surrounding white space and a CR are ignored).
HELLO_TEXT = "Hello"

ADMIN_GREETINGS = b"Admin-Greetings\r\n"


class AdminLine(Protocol):
    """What a classic administrator uses of its admin-port connection."""

    @property
    def transport(self) -> Transport:
        """The connection's transport."""

    @property
    def peer(self) -> str:
        """The administrator's ``HOST:PORT``."""

    @property
    def game(self) -> Game:
        """The game it looks at."""

    def write_reply(self, data: bytes) -> None:
        """Write one reply of many lines in one piece."""


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

    def __init__(self, admin: AdminLine, token: str | None) -> None:
        self.admin = admin
        self.token = token

    @property
    def transport(self) -> Transport:
        """The administrator's transport."""
        return self.admin.transport

    def hello(self) -> None:
        """Answer the first ``Hello``: greet, or refuse when a token is set."""
        if self.token is not None:
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
