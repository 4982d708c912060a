"""The WebSocket player: the player port's own connection, over messages.

This is the only place the web port touches the player connection, and
all it uses of it: a modern `PlayerConnection` built by the shared
`PlayerFactory` (``max_line`` read from it), then ``makeConnection``, ``dataReceived``,
``connectionLost`` and ``refuse_long_line``, over a transport with
``write``, ``loseConnection``, ``abortConnection``, ``getPeer``,
``pauseProducing``/``resumeProducing``, ``registerProducer`` and
``bufferSize``.

A `WebPlayer` (Twisted's `WebSocketProtocol`) builds the modern
`PlayerConnection` and connects it to a `MessageTransport`, which turns
every line the connection writes into one text message; each message
from the browser is fed to it as one line.  So the greeting, replies,
notices, closing rules and every limit (players and per-address counts
shared with TCP players, line length, rate, idle, unsent output) are the
player port's, unchanged.  What is the WebSocket's own: a binary message
closes with code 1003, and the bytes of one unfinished message are
bounded before they reach the line layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.websocket import WebSocketTransport

from guessgame.player.connection import PlayerConnection
from guessgame.player.factory import PlayerFactory
from guessgame.wire.limits import carrier_of

__all__ = ["MessageTransport", "WebPlayer", "WebPlayers"]

#: WebSocket close codes.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003


class MessageTransport:
    """What a `PlayerConnection` sees as its transport: lines out become messages.

    Reading is paused and resumed on the TCP connection under the
    WebSocket, and the output cap watches that connection's send buffer.
    """

    def __init__(self, ws: WebSocketTransport, request: server.Request) -> None:
        self._ws = ws
        self._request = request
        self._tcp: Any = request.channel.transport
        self._pending = b""
        self._closing = False

    @property
    def disconnecting(self) -> bool:
        """Whether the connection is closing (ours or the browser's close)."""
        return self._closing or bool(self._tcp.disconnecting)

    @property
    def bufferSize(self) -> int:
        """Unsent bytes above which the connection's producer is paused.

        Kept on the transport that holds them: TCP, below any TLS.
        """
        return int(carrier_of(self._tcp).bufferSize)

    @bufferSize.setter
    def bufferSize(self, size: int) -> None:
        carrier_of(self._tcp).bufferSize = size

    def write(self, data: bytes) -> None:
        """Send each whole CRLF-terminated line in ``data`` as one text message."""
        if self.disconnecting:
            return
        *lines, self._pending = (self._pending + data).split(b"\r\n")
        for line in lines:
            self._ws.sendTextMessage(line.decode("utf-8"))

    def loseConnection(self, code: int = CLOSE_NORMAL) -> None:
        """Close the WebSocket (once) after what was sent."""
        if self.disconnecting:
            return
        self._closing = True
        self._ws.loseConnection(code)

    def abortConnection(self) -> None:
        """Drop the connection at once."""
        self._closing = True
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        """The browser's address."""
        peer: IAddress = self._tcp.getPeer()
        return peer

    def getHost(self) -> IAddress:
        """The address the web port listens on."""
        host: IAddress = self._tcp.getHost()
        return host

    def pauseProducing(self) -> None:
        """Stop reading from the browser."""
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from the browser again."""
        self._tcp.resumeProducing()

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """Watch the send buffer: ``producer`` is paused when it is over ``bufferSize``."""
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """Stop watching the send buffer."""
        self._request.unregisterProducer()


class WebPlayer:
    """One WebSocket on ``/play``: the player port's protocol over messages."""

    def __init__(self, factory: PlayerFactory, request: server.Request) -> None:
        self.factory = factory
        self.request = request
        self.connection: PlayerConnection | None = None
        self._ws: WebSocketTransport | None = None
        self._transport: MessageTransport | None = None
        #: Messages received, and bytes received since the last whole one.
        self._messages = 0
        self._unframed = 0
        # A message of max_line bytes in one frame, with room for framing.
        self._max_unframed = 2 * factory.max_line + 64

    # WebSocketProtocol.

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """Keep the WebSocket; nothing may be sent before the handshake's answer."""
        self._ws = transport

    def negotiationFinished(self) -> None:
        """Join the game as a modern player (no classic detection)."""
        assert self._ws is not None
        self._transport = MessageTransport(self._ws, self.request)
        self.connection = self.factory.modern_connection()
        self.connection.makeConnection(self._transport)

    def textMessageReceived(self, message: str) -> None:
        """One message is one line, whatever it holds.

        A line end inside it would make it two; as a CR it stays one line
        (a CR last is the line end's, any other makes the line invalid).
        """
        self._messages += 1
        if self.connection is not None:
            data = message.encode("utf-8").replace(b"\n", b"\r")
            self.connection.dataReceived(data + b"\n")

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """A binary message: close with 1003."""
        self._messages += 1
        if self._transport is not None:
            self._transport.loseConnection(CLOSE_UNSUPPORTED_DATA)

    def pongReceived(self, payload: bytes) -> None:
        """Pongs carry nothing for the game."""

    def connectionLost(self, reason: Failure) -> None:
        """Leave the game."""
        if self.connection is not None:
            self.connection.connectionLost(reason)

    # Raw bytes, before they become messages.

    def counting(self, deliver: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """Wrap the WebSocket's byte input to bound a message still being gathered.

        Bytes that complete no message add up; past about twice
        ``--max-line`` the line is too long.  The line layer refuses a long
        line once it has it; this keeps a huge message from being gathered
        whole first.  (A read that completes a message starts the count
        again, so the bound is loose by one read at most.)
        """

        def received(data: bytes) -> None:
            messages = self._messages
            deliver(data)
            if self._messages != messages:
                self._unframed = 0
                return
            self._unframed += len(data)
            connection = self.connection
            if (
                self._unframed > self._max_unframed
                and connection is not None
                and not connection.transport.disconnecting
            ):
                connection.refuse_long_line()

        return received


class WebPlayers:
    """The `WebSocketServerFactory` of ``/play``: a `WebPlayer` per handshake."""

    def __init__(self, factory: PlayerFactory) -> None:
        self.factory = factory
        self.last: WebPlayer | None = None

    def buildProtocol(self, request: server.Request) -> WebPlayer:
        """A `WebPlayer` for one accepted handshake."""
        self.last = WebPlayer(self.factory, request)
        return self.last
