"""The shared test harness: fakes, string-transport helpers, a line client.

Unit tests build protocols with `connect` over a `StringTransport`;
integration tests listen on ``tcp:0:interface=127.0.0.1`` with `listen`
and talk through `LineClient`, whose `LineClient.next_line` waits on a
Deferred (bounded by a timeout) instead of sleeping.
"""

from __future__ import annotations

import random
import weakref
from collections import deque
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver

from guessgame.events import Event, Notice
from guessgame.game import Game
from guessgame.player.modern import notice_text
from guessgame.store.base import MemoryStore, Store, StoreService


class FakeLink:
    """A `PlayerLink` that records notices, as a modern player reads them, and its close."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.closed = False

    def notice(self, notice: Notice) -> bool:
        """Record a notice in the modern dialect's words; shown."""
        self.notices.append(notice_text(notice))
        return True

    def close(self) -> defer.Deferred[None]:
        """Record the close."""
        self.closed = True
        return defer.succeed(None)


class FakeObserver:
    """A `GameObserver` that records events."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def game_event(self, event: Event) -> None:
        """Record an event."""
        self.events.append(event)

    def close(self) -> defer.Deferred[None]:
        """Record the close."""
        self.closed = True
        return defer.succeed(None)


#: The started StoreService of each store a test started (`store_service`).
_services: weakref.WeakKeyDictionary[Any, StoreService] = weakref.WeakKeyDictionary()


def store_service(store: Any, clock: Any) -> StoreService:
    """The started `StoreService` of ``store`` (opened and flushing), made on first ask."""
    service = _services.get(store)
    if service is None:
        service = _services[store] = StoreService(store, clock)
        service.startService()
    return service


def make_game(
    *,
    seed: int = 1,
    lo: int = 1,
    hi: int = 30,
    mode: str = "shared",
    store: Store | None = None,
    clock: Clock | None = None,
) -> Game:
    """A started Game on a Clock with a seeded Random, under its store's started service."""
    clock = clock if clock is not None else Clock()
    game = Game(
        clock,
        random.Random(seed),
        lo=lo,
        hi=hi,
        mode=mode,
        store=store if store is not None else MemoryStore(),
    )
    service = store_service(game.store, clock)
    if "game" in service.namedServices:
        # A test that tries several games on one store keeps the last.
        service.removeService(service.getServiceNamed("game"))
    game.setServiceParent(service)
    return game


def secret_of(game: Game, player: Any = None) -> int:
    """The secret ``player`` (or the shared round) is guessing."""
    if player is not None and player.own_secret:
        return int(player.secret)
    return int(game._secret)


class Peer:
    """A protocol on a StringTransport, and what it wrote."""

    def __init__(self, proto: Any, transport: StringTransport) -> None:
        self.proto = proto
        self.transport = transport

    def send(self, data: bytes) -> list[str]:
        """Feed ``data`` and return the lines written since the last read."""
        self.proto.dataReceived(data)
        return self.read()

    def read(self) -> list[str]:
        """The complete lines written since the last read (CRLF checked)."""
        raw = self.transport.value()
        self.transport.clear()
        if not raw:
            return []
        assert raw.endswith(b"\r\n"), raw
        return raw.decode("utf-8").split("\r\n")[:-1]

    @property
    def closed(self) -> bool:
        """Whether the protocol asked to close the connection."""
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """Tell the protocol the connection is gone (as the reactor would)."""
        self.proto.connectionLost(protocol.connectionDone)


def connect(factory: protocol.Factory[Any], host: str = "127.0.0.1", port: int = 50000) -> Peer:
    """Build a protocol from ``factory`` and connect it to a StringTransport."""
    addr = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return Peer(proto, transport)


# Integration: real sockets on loopback.


class LineClient(LineReceiver):
    """A test client that queues the lines it receives."""

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.waiting: deque[defer.Deferred[str]] = deque()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Hand the line to a waiter or queue it."""
        text = line.decode("utf-8")
        if self.waiting:
            self.waiting.popleft().callback(text)
        else:
            self.lines.append(text)

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """Fail whoever waits for a line that will never come."""
        while self.waiting:
            self.waiting.popleft().errback(ConnectionError("connection closed"))
        if not self.lost.called:
            self.lost.callback(None)

    def next_line(self, timeout: float = 5.0) -> defer.Deferred[str]:
        """The next line received, within ``timeout`` seconds."""
        from twisted.internet import reactor

        if self.lines:
            return defer.succeed(self.lines.popleft())
        d: defer.Deferred[str] = defer.Deferred()
        self.waiting.append(d)
        d.addTimeout(timeout, reactor)
        return d

    def send(self, text: str) -> None:
        """Send one line."""
        self.sendLine(text.encode("utf-8"))

    def close(self) -> defer.Deferred[None]:
        """Close and wait until closed."""
        if self.transport is not None:
            self.transport.loseConnection()
        return self.lost


@defer.inlineCallbacks
def open_client(port: int, host: str = "127.0.0.1") -> Any:
    """Connect a LineClient to ``host:port``."""
    from twisted.internet import reactor

    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=5)
    client = yield endpoints.connectProtocol(endpoint, LineClient())
    return client


@defer.inlineCallbacks
def listen(factory: protocol.Factory[Any]) -> Any:
    """Listen with ``factory`` on a free loopback port; return the port."""
    from twisted.internet import reactor

    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port: IListeningPort = yield endpoint.listen(factory)
    return port
