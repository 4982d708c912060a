"""Test clients for the web port: HTTP requests, an event stream, a WebSocket.

`get` makes one HTTP request over a real connection and returns status,
headers and body; `EventClient` reads ``/api/events`` as a browser's
EventSource would; `WsClient` is a minimal WebSocket client on wsproto
(the library under Twisted's own WebSocket support) that can send what a
browser can and a hostile client would (binary messages, any ``Origin``),
and sees the close code.  Every wait is a Deferred with a timeout.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.web.client import Agent
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

#: Bound on every wait, in seconds.
WAIT = 5.0


def reactor() -> Any:
    """The running reactor."""
    from twisted.internet import reactor

    return reactor


class Response:
    """An HTTP response: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class _RawHTTP(protocol.Protocol):
    """Sends one request and keeps every byte of the answer until the close."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        """Send the request."""
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        """Keep the bytes."""
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        """The whole answer is in."""
        self.done.callback(self.data)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


@defer.inlineCallbacks
def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
    """One HTTP/1.1 request to 127.0.0.1:``port`` (``Connection: close``); a `Response`."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    raw = _RawHTTP(("\r\n".join(lines) + "\r\n\r\n").encode())
    endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", port, timeout=WAIT)
    yield endpoints.connectProtocol(endpoint, raw)
    data = yield raw.done.addTimeout(WAIT, reactor())
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Response(int(status_line.split()[1]), found, body)


class EventReader(protocol.Protocol):
    """Reads a Server-Sent Events body into a queue of parsed ``data:`` objects."""

    def __init__(self) -> None:
        self.buffer = b""
        self.raw = b""
        self.events: deque[Any] = deque()
        self.waiting: deque[defer.Deferred[Any]] = deque()
        self.done: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Split the stream at blank lines; queue each event's JSON."""
        self.raw += data
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    if self.waiting:
                        self.waiting.popleft().callback(event)
                    else:
                        self.events.append(event)

    def connectionLost(self, reason: Any = None) -> None:
        """The stream ended."""
        while self.waiting:
            self.waiting.popleft().errback(ConnectionError("stream ended"))
        if not self.done.called:
            self.done.callback(None)

    def next_event(self, timeout: float = WAIT) -> defer.Deferred[Any]:
        """The next event, within ``timeout`` seconds."""
        if self.events:
            return defer.succeed(self.events.popleft())
        d: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append(d)
        return d.addTimeout(timeout, reactor())


@defer.inlineCallbacks
def open_events(port: int) -> Any:
    """Open ``/api/events``; (response, `EventReader`) once the headers are in."""
    agent = Agent(reactor(), connectTimeout=WAIT)
    d = agent.request(b"GET", f"http://127.0.0.1:{port}/api/events".encode())
    response = yield d.addTimeout(WAIT, reactor())
    reader = EventReader()
    response.deliverBody(reader)
    return response, reader


class WsClient(protocol.Protocol):
    """A minimal WebSocket client: queues text messages, records the close code."""

    def __init__(self, host: str, path: str = "/play", origin: str | None = None) -> None:
        self.host = host
        self.path = path
        self.origin = origin
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted: defer.Deferred[None] = defer.Deferred()
        self.rejected_status: int | None = None
        self.messages: deque[str] = deque()
        self.waiting: deque[defer.Deferred[str]] = deque()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.close_code: int | None = None
        self._text = ""

    def connectionMade(self) -> None:
        """Send the opening handshake."""
        extra = [(b"origin", self.origin.encode())] if self.origin is not None else []
        self.transport.write(self.ws.send(Request(self.host, self.path, extra_headers=extra)))

    def dataReceived(self, data: bytes) -> None:
        """Handle what wsproto makes of the bytes."""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted.callback(None)
            elif isinstance(event, RejectConnection):
                self.rejected_status = event.status_code
                if not self.accepted.called:
                    self.accepted.errback(ConnectionError(f"rejected: {event.status_code}"))
            elif isinstance(event, RejectData):
                pass
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    text, self._text = self._text, ""
                    if self.waiting:
                        self.waiting.popleft().callback(text)
                    else:
                        self.messages.append(text)
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                self.transport.write(self.ws.send(event.response()))
                self.transport.loseConnection()
            elif isinstance(event, Ping):
                self.transport.write(self.ws.send(event.response()))

    def connectionLost(self, reason: Any = None) -> None:
        """Fail waiters; fire `lost`."""
        if not self.accepted.called:
            self.accepted.errback(ConnectionError("closed before the handshake"))
        while self.waiting:
            self.waiting.popleft().errback(ConnectionError("connection closed"))
        if not self.lost.called:
            self.lost.callback(None)

    def send(self, text: str) -> None:
        """Send one text message."""
        self.transport.write(self.ws.send(TextMessage(text)))

    def send_part(self, text: str) -> None:
        """Send the start of a text message that is never finished."""
        self.transport.write(self.ws.send(TextMessage(text, message_finished=False)))

    def send_bytes(self, data: bytes) -> None:
        """Send one binary message."""
        self.transport.write(self.ws.send(BytesMessage(data)))

    def next_message(self, timeout: float = WAIT) -> defer.Deferred[str]:
        """The next text message, within ``timeout`` seconds."""
        if self.messages:
            return defer.succeed(self.messages.popleft())
        d: defer.Deferred[str] = defer.Deferred()
        self.waiting.append(d)
        return d.addTimeout(timeout, reactor())

    def close(self) -> defer.Deferred[None]:
        """Close the TCP connection; wait until closed."""
        if self.transport is not None and self.transport.connected:
            self.transport.loseConnection()
        return self.lost


@defer.inlineCallbacks
def open_ws(
    port: int,
    *,
    origin: str | None = None,
    host: str | None = None,
    source: str | None = None,
    accept: bool = True,
) -> Any:
    """A `WsClient` on 127.0.0.1:``port``/play, once accepted (unless ``accept`` is false)."""
    endpoint = endpoints.TCP4ClientEndpoint(
        reactor(),
        "127.0.0.1",
        port,
        timeout=WAIT,
        bindAddress=(source, 0) if source is not None else None,
    )
    client = WsClient(host or f"127.0.0.1:{port}", origin=origin)
    yield endpoints.connectProtocol(endpoint, client)
    if accept:
        yield client.accepted.addTimeout(WAIT, reactor())
    return client
