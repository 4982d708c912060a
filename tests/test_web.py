"""The web port's HTTP side: paths, statuses, headers, JSON shapes and the event stream.

Unit tests for the pieces (the ``limit`` argument, origins, URLs, the
event hub's pace on a Clock); loopback tests against a real site on
127.0.0.1 port 0, sharing a `Game` and a player port with TCP players.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import address, defer, task
from twisted.internet.task import Clock

from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.store.base import MemoryStore
from guessgame.web.events import EventHub, render_event
from guessgame.web.play import same_origin
from guessgame.web.site import make_site, page_url, parse_limit
from guessgame.wire.limits import Limits
from tests.common import FakeLink, listen, make_game, open_client, secret_of
from tests.webclient import get, open_events, reactor

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


# Unit: the pieces.


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, 10),
        ([b"1"], 1),
        ([b"10"], 10),
        ([b"1000"], 1000),
        ([b"0010"], 10),
        ([b"0"], None),
        ([b"1001"], None),
        ([b""], None),
        ([b"abc"], None),
        ([b"-1"], None),
        ([b"+5"], None),
        ([b"5.0"], None),
        ([b" 5"], None),
        ([b"1e3"], None),
        ([b"9" * 500], None),
        ([b"5", b"6"], None),
        (["\u0663".encode()], None),
    ],
)
def test_parse_limit(values: list[bytes] | None, expected: int | None) -> None:
    """limit is a whole number 1-1000 in ASCII digits, 10 when absent, else refused."""
    assert parse_limit(values) == expected


@pytest.mark.parametrize(
    ("origin", "host", "secure", "expected"),
    [
        ("http://127.0.0.1:4002", "127.0.0.1:4002", False, True),
        ("http://LOCALHOST:4002", "localhost:4002", False, True),
        ("http://example.org", "example.org", False, True),
        ("http://example.org:80", "example.org", False, True),
        ("https://example.org", "example.org", True, True),
        ("https://example.org", "example.org:443", True, True),
        ("http://[::1]:4002", "[::1]:4002", False, True),
        ("http://127.0.0.1:4003", "127.0.0.1:4002", False, False),
        ("http://evil.example:4002", "127.0.0.1:4002", False, False),
        ("http://example.org.evil.example", "example.org", False, False),
        ("null", "127.0.0.1:4002", False, False),
        ("", "127.0.0.1:4002", False, False),
        ("file://", "127.0.0.1:4002", False, False),
        ("http://127.0.0.1:99999", "127.0.0.1:4002", False, False),
        ("http://127.0.0.1:4002", "", False, False),
        ("https://example.org", "example.org", False, False),
    ],
)
def test_same_origin(origin: str, host: str, secure: bool, expected: bool) -> None:
    """An Origin matches only when it names the request's Host, host and port."""
    assert same_origin(origin, host, secure) is expected


@pytest.mark.parametrize(
    ("host", "secure", "expected"),
    [
        (address.IPv4Address("TCP", "0.0.0.0", 4002), False, "http://127.0.0.1:4002/"),
        (address.IPv4Address("TCP", "127.0.0.1", 8080), False, "http://127.0.0.1:8080/"),
        (address.IPv4Address("TCP", "192.0.2.7", 443), True, "https://192.0.2.7:443/"),
        (address.IPv6Address("TCP", "::", 4002), False, "http://[::1]:4002/"),
        (address.IPv6Address("TCP", "::1", 4002), True, "https://[::1]:4002/"),
    ],
)
def test_page_url(host: Any, secure: bool, expected: str) -> None:
    """The start-up log's URL is one a person can open (wildcards become loopback)."""
    assert page_url(host, secure) == expected


def test_render_event() -> None:
    """An event is one data: line of compact JSON and a blank line."""
    assert render_event({"type": "players", "count": 2}) == (
        b'data: {"type":"players","count":2}\n\n'
    )


class FakeChannel:
    """What the hub uses of an HTTP channel: its transport."""

    def __init__(self) -> None:
        self.transport = self
        self.bufferSize = 0
        self.aborted = False

    def abortConnection(self) -> None:
        """Record the abort."""
        self.aborted = True


class FakeRequest:
    """What the hub uses of a `twisted.web.server.Request`, recording what it wrote."""

    def __init__(self) -> None:
        self.channel = FakeChannel()
        self.headers: dict[str, str] = {}
        self.written = b""
        self.producer: Any = None
        self.finished = False
        self._finish: defer.Deferred[None] = defer.Deferred()

    def setHeader(self, name: str, value: str) -> None:
        """Record a header."""
        self.headers[name] = value

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Record the producer."""
        self.producer = producer

    def unregisterProducer(self) -> None:
        """Forget the producer."""
        self.producer = None

    def write(self, data: bytes) -> None:
        """Record bytes."""
        self.written += data

    def notifyFinish(self) -> defer.Deferred[None]:
        """Fires when the stream ends."""
        return self._finish

    def finish(self) -> None:
        """Record the end."""
        self.finished = True

    def events(self) -> list[Any]:
        """The data: objects written so far, and forget them."""
        found = [
            json.loads(line[6:]) for line in self.written.split(b"\n") if line.startswith(b"data: ")
        ]
        self.written = b""
        return found


def test_players_events_come_at_most_once_a_second() -> None:
    """Joins and leaves in a burst make one players event now and one a second later."""
    clock = Clock()
    game = make_game(clock=clock)
    hub = EventHub(game)
    request = FakeRequest()
    hub.subscribe(request)  # type: ignore[arg-type]
    assert request.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert request.events() == []
    first = game.join(FakeLink(), "127.0.0.1:1")
    assert request.events() == [{"type": "players", "count": 1}]
    for port in range(2, 6):
        game.join(FakeLink(), f"127.0.0.1:{port}")
    game.leave(first, "quit")
    clock.advance(0.99)
    assert request.events() == []
    clock.advance(0.01)
    assert request.events() == [{"type": "players", "count": 4}]
    clock.advance(5)
    assert request.events() == []


def test_quiet_streams_get_a_keepalive_comment() -> None:
    """Every 30 seconds each stream gets a comment line, and no timer runs without streams."""
    clock = Clock()
    game = make_game(clock=clock)
    hub = EventHub(game)
    request = FakeRequest()
    hub.subscribe(request)  # type: ignore[arg-type]
    request.written = b""
    clock.advance(29.9)
    assert request.written == b""
    clock.advance(0.1)
    assert request.written == b": keep-alive\n\n"
    request._finish.callback(None)
    assert hub.streams == [] and clock.getDelayedCalls() == []


def test_round_and_win_events_name_no_address() -> None:
    """A win gives win then round events with the exact fields, and no address."""
    game = make_game()
    hub = EventHub(game)
    request = FakeRequest()
    hub.subscribe(request)  # type: ignore[arg-type]
    player = game.join(FakeLink(), "192.0.2.9:5555")
    game.rename(player, "alice")
    request.events()
    secret = secret_of(game)
    game.guess(player, secret)
    raw = request.written
    assert b"192.0.2.9" not in raw
    assert request.events() == [
        {"type": "win", "name": "alice", "number": secret, "guesses": 1},
        {"type": "round", "round": 2, "range": "1-30"},
    ]


def test_stream_that_stops_reading_is_aborted() -> None:
    """The output cap pausing the stream drops it: aborted and no longer written to."""
    game = make_game()
    hub = EventHub(game, max_output=4096)
    request = FakeRequest()
    stream = hub.subscribe(request)  # type: ignore[arg-type]
    assert request.channel.bufferSize == 4096
    request.producer.pauseProducing()
    assert request.channel.aborted
    assert hub.streams == [] and not stream.open
    game.new_round()
    assert request.events() == []


def test_streams_end_when_the_game_stops() -> None:
    """Stopping the game finishes every event stream."""
    game = make_game()
    hub = EventHub(game, max_output=4096)
    request = FakeRequest()
    hub.subscribe(request)  # type: ignore[arg-type]
    game.stopService()
    assert request.finished and hub.streams == []


# Loopback: a real site.


class Served:
    """A web port and a player port on loopback, sharing one game."""

    def __init__(self, game: Game, players: PlayerFactory, web: Any, tcp: Any) -> None:
        self.game = game
        self.players = players
        self.web_port = web
        self.tcp_port = tcp
        self.web = web.getHost().port
        self.tcp = tcp.getHost().port

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop the game (closing every connection) and both listeners."""
        yield self.game.stopService()
        yield self.web_port.stopListening()
        yield self.tcp_port.stopListening()


@defer.inlineCallbacks
def serve(
    limits: Limits | None = None,
    max_line: int = 512,
    seed: int = 7,
    classic_wait: float = 0.0,
    count_connection: Any = None,
) -> Any:
    """Start a game on the real reactor with a player port and a web port."""
    game = Game(reactor(), random.Random(seed), lo=1, hi=30, store=MemoryStore())
    game.startService()
    players = PlayerFactory(
        game, max_line=max_line, limits=limits or Limits(), classic_wait=classic_wait
    )
    web = yield listen(make_site(game, players, count_connection=count_connection))
    tcp = yield listen(players)
    return Served(game, players, web, tcp)


PATHS = [
    ("/", 200, "text/html; charset=utf-8"),
    ("/static/app.js", 200, "text/javascript; charset=utf-8"),
    ("/static/style.css", 200, "text/css; charset=utf-8"),
    ("/static/favicon.svg", 200, "image/svg+xml"),
    ("/api/stats", 200, "application/json"),
    ("/api/leaderboard", 200, "application/json"),
    ("/api/leaderboard?limit=1000", 200, "application/json"),
    ("/api/leaderboard?limit=0", 400, "application/json"),
    ("/api/leaderboard?limit=1001", 400, "application/json"),
    ("/api/leaderboard?limit=abc", 400, "application/json"),
    ("/api/leaderboard?limit=", 400, "application/json"),
    ("/api/leaderboard?limit=5&limit=6", 400, "application/json"),
    ("/play", 426, "text/plain; charset=utf-8"),
    ("/nope", 404, None),
    ("/index.html", 404, None),
    ("/api", 404, None),
    ("/api/", 404, None),
    ("/api/stats/", 404, None),
    ("/api/stats/x", 404, None),
    ("/static/", 404, None),
    ("/static/index.html", 404, None),
    ("/metrics", 404, None),
]

METHODS = [
    ("POST", "/api/stats", 405),
    ("PUT", "/", 405),
    ("DELETE", "/api/leaderboard", 405),
    ("POST", "/play", 405),
    ("POST", "/nope", 404),
    ("POST", "/api", 404),
    ("HEAD", "/api/stats", 200),
    ("HEAD", "/api/events", 200),
    ("HEAD", "/", 200),
]


@pytest.mark.parametrize(("path", "status", "content_type"), PATHS)
@pytest_twisted.inlineCallbacks
def test_paths(path: str, status: int, content_type: str | None) -> Iterator[Any]:
    """Every path answers its status and type, with nosniff and the CSP on it."""
    served = yield serve()
    try:
        response = yield get(served.web, path)
        assert response.status == status
        if content_type is not None:
            assert response.headers["content-type"] == content_type
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == CSP
    finally:
        yield served.stop()


@pytest.mark.parametrize(("method", "path", "status"), METHODS)
@pytest_twisted.inlineCallbacks
def test_methods(method: str, path: str, status: int) -> Iterator[Any]:
    """Only GET and HEAD are served; another method is a 405 where there is a page."""
    served = yield serve()
    try:
        response = yield get(served.web, path, method=method)
        assert response.status == status
        assert response.headers["x-content-type-options"] == "nosniff"
        if method == "HEAD":
            assert response.body == b""
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_page_has_the_contract_ids_and_nothing_from_elsewhere() -> Iterator[Any]:
    """The page has the ids of the contract and loads nothing from another host."""
    served = yield serve()
    try:
        page = (yield get(served.web, "/")).body.decode()
        for name in ("transcript", "line", "leaderboard", "round", "players"):
            assert f'id="{name}"' in page
        assert "http://" not in page and "https://" not in page and "//" not in page
        script = (yield get(served.web, "/static/app.js")).body.decode()
        assert "http" not in script.replace("https:", "")  # only the wss: choice
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_stats_shape_and_counts() -> Iterator[Any]:
    """/api/stats is the six fields, counting TCP players, guesses, rounds and wins."""
    served = yield serve()
    try:
        assert (yield get(served.web, "/api/stats")).json() == {
            "players": 0,
            "rounds": 1,
            "wins": 0,
            "guesses": 0,
            "range": "1-30",
            "mode": "shared",
        }
        client = yield open_client(served.tcp)
        yield client.next_line()
        yield client.next_line()
        secret = secret_of(served.game)
        wrong = 1 if secret != 1 else 2
        client.send(str(wrong))
        yield client.next_line()
        stats = (yield get(served.web, "/api/stats")).json()
        assert stats == {
            "players": 1,
            "rounds": 1,
            "wins": 0,
            "guesses": 1,
            "range": "1-30",
            "mode": "shared",
        }
        client.send(str(secret))
        assert (yield client.next_line()).startswith("Correct!")
        yield client.lost.addTimeout(5, reactor())
        stats = (yield get(served.web, "/api/stats")).json()
        assert (stats["players"], stats["rounds"], stats["wins"], stats["guesses"]) == (0, 2, 1, 2)
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_leaderboard_shape_order_and_limit() -> Iterator[Any]:
    """The board is best first, {rank,name,wins,best}, 10 by default, cut at K, no address."""
    served = yield serve()
    game = served.game
    try:
        for index in range(12):
            player = game.join(FakeLink(), f"192.0.2.{index}:4000")
            game.rename(player, f"p{index:02d}")
            for _ in range(index % 3):
                game.guess(player, game.lo - 0 if secret_of(game) != game.lo else game.hi)
            for _ in range(1 + (index == 5)):
                game.guess(player, secret_of(game))
        board = (yield get(served.web, "/api/leaderboard")).json()
        assert len(board) == 10
        assert board[0] == {"rank": 1, "name": "p05", "wins": 2, "best": 1}
        assert [row["rank"] for row in board] == list(range(1, 11))
        assert all(set(row) == {"rank", "name", "wins", "best"} for row in board)
        expected = [
            {"rank": rank, "name": entry.name, "wins": entry.wins, "best": entry.best}
            for rank, entry in enumerate(game.leaderboard(3), start=1)
        ]
        response = yield get(served.web, "/api/leaderboard?limit=3")
        assert response.json() == expected
        assert len((yield get(served.web, "/api/leaderboard?limit=1000")).json()) == 12
        assert b"192.0.2" not in response.body
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_event_stream_follows_a_tcp_game() -> Iterator[Any]:
    """/api/events gives players, win and round events as a TCP player joins and wins."""
    served = yield serve()
    try:
        response, reader = yield open_events(served.web)
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type") == [
            b"text/event-stream; charset=utf-8"
        ]
        client = yield open_client(served.tcp)
        assert (yield reader.next_event()) == {"type": "players", "count": 1}
        yield client.next_line()
        yield client.next_line()
        client.send("name bob")
        yield client.next_line()
        secret = secret_of(served.game)
        client.send(str(secret))
        assert (yield reader.next_event()) == {
            "type": "win",
            "name": "bob",
            "number": secret,
            "guesses": 1,
        }
        assert (yield reader.next_event()) == {"type": "round", "round": 2, "range": "1-30"}
        assert (yield reader.next_event()) == {"type": "players", "count": 0}
        assert b"127.0.0.1" not in reader.raw
        yield client.lost.addTimeout(5, reactor())
    finally:
        yield served.stop()
    yield reader.done.addTimeout(5, reactor())


def raw_stream(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A plain socket that asks for /api/events (and may never read the answer)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def hub_of(served: Served) -> EventHub:
    """The event hub behind a served site's /api/events."""
    hub: EventHub = served.web_port.factory.resource.children[b"api"].children[b"events"].hub
    return hub


@defer.inlineCallbacks
def until(condition: Any, what: str) -> Any:
    """Let the reactor run until ``condition()`` holds (bounded: 5 seconds)."""
    for _ in range(500):
        if condition():
            return
        yield task.deferLater(reactor(), 0.01, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_twisted.inlineCallbacks
def test_event_streams_are_at_most_max_players() -> Iterator[Any]:
    """With --max-players 2, a third event stream gets 503 until one of two closes."""
    served = yield serve(Limits(max_players=2))
    hub = hub_of(served)
    socks = [raw_stream(served.web), raw_stream(served.web)]
    try:
        yield until(lambda: len(hub.streams) == 2, "two streams")
        third = yield get(served.web, "/api/events")
        assert third.status == 503
        assert third.json() == {"error": "too many event streams; try again later"}
        assert third.headers["x-content-type-options"] == "nosniff"
        socks.pop(0).close()
        yield until(lambda: len(hub.streams) == 1, "the closed stream to be forgotten")
        socks.append(raw_stream(served.web))
        yield until(lambda: len(hub.streams) == 2, "a stream in the freed place")
    finally:
        for sock in socks:
            sock.close()
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_connections_are_counted_for_the_metrics() -> Iterator[Any]:
    """A connection to the web port counts as accepted, an event stream turned away as refused."""
    counted: list[str] = []
    served = yield serve(Limits(max_players=1), count_connection=counted.append)
    hub = hub_of(served)
    sock = raw_stream(served.web)
    try:
        yield until(lambda: len(hub.streams) == 1, "the stream")
        assert counted == ["accepted"]
        assert (yield get(served.web, "/api/events")).status == 503
        assert counted == ["accepted", "accepted", "refused"]
        assert (yield get(served.web, "/")).status == 200
        assert counted == ["accepted", "accepted", "refused", "accepted"]
    finally:
        sock.close()
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_event_stream_that_stops_reading_is_dropped() -> Iterator[Any]:
    """A stream reader that stops reading is dropped once --max-output bytes wait unsent."""
    served = yield serve(Limits(max_output=4096))
    hub = hub_of(served)
    sock = raw_stream(served.web, rcvbuf=4096)
    try:
        yield until(lambda: len(hub.streams) == 1, "the stream")
        stream = hub.streams[0]
        for _ in range(400):  # bounded: a few MB of events at most
            for _ in range(500):
                served.game.new_round()
            yield task.deferLater(reactor(), 0, lambda: None)
            if not hub.streams:
                break
        assert hub.streams == []
        assert not stream.open
    finally:
        sock.close()
        yield served.stop()
