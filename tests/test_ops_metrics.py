"""Metrics: the collectors on a Clock, and ``GET /metrics`` on real loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, protocol
from twisted.internet.task import Clock

from guessgame.admin.protocol import AdminFactory
from guessgame.ops.metrics import ConnectionCounts, Metrics
from guessgame.player.factory import PlayerFactory
from guessgame.store.base import LeaderboardEntry, MemoryStore
from guessgame.tap import Options, makeService
from guessgame.wire.limits import Limits
from tests.common import FakeLink, LineClient, connect, make_game, open_client, secret_of

#: Every metric PROTOCOL.md names, as the samples that must be exposed.
GAME_SAMPLES = (
    "guessgame_players",
    "guessgame_admins",
    "guessgame_guesses_total",
    "guessgame_wins_total",
    "guessgame_rounds_total",
    "guessgame_connections_total",
    "guessgame_store_up",
    "guessgame_win_save_seconds_bucket",
    "guessgame_win_save_seconds_count",
    "guessgame_win_save_seconds_sum",
    "guessgame_reactor_lag_seconds_bucket",
    "guessgame_reactor_lag_seconds_count",
    "guessgame_reactor_lag_seconds_sum",
)
#: What the client library's process and Python collectors expose.
LIBRARY_SAMPLES = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_info",
    "python_gc_collections_total",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value."""
    return scraped[name, tuple(sorted(labels.items()))]


def scrape(metrics: Metrics) -> dict[Any, float]:
    """The metrics as Prometheus would read them (text format)."""
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    return samples(body.decode("utf-8"))


class SlowStore(MemoryStore):
    """A store whose wins are durable when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[defer.Deferred[None]] = []

    def record_win(self, entry: LeaderboardEntry) -> defer.Deferred[None]:
        """Keep the win pending."""
        d: defer.Deferred[None] = defer.Deferred()
        self.pending.append(d)
        return d


def test_every_metric_is_exposed_with_its_labels() -> None:
    """The exposition holds every metric PROTOCOL.md names, and the library's collectors."""
    game = make_game()
    metrics = Metrics(game, Clock(), admins=lambda: 0, connections=ConnectionCounts())
    scraped = scrape(metrics)
    names = {name for name, _ in scraped}
    for name in GAME_SAMPLES + LIBRARY_SAMPLES:
        assert name in names, name
    labels = {
        dict(lb)["port"] + "/" + dict(lb)["result"]
        for n, lb in scraped
        if n == "guessgame_connections_total"
    }
    assert labels == {
        f"{p}/{r}" for p in ("player", "admin", "web") for r in ("accepted", "refused")
    }


def test_game_values_are_read_at_scrape_time() -> None:
    """Players, admins, guesses, wins, rounds and the store's health are the game's own."""
    store = MemoryStore()
    game = make_game(store=store)
    admins = [1, 2]
    metrics = Metrics(game, Clock(), admins=lambda: len(admins), connections=ConnectionCounts())
    before = scrape(metrics)
    assert value(before, "guessgame_players") == 0
    assert value(before, "guessgame_rounds_total") == 1
    alice = game.join(FakeLink(), "127.0.0.1:1")
    game.join(FakeLink(), "127.0.0.1:2")
    secret = secret_of(game)
    game.guess(alice, secret + 1 if secret < 30 else secret - 1)
    game.guess(alice, secret)
    store.failing = True  # type: ignore[misc]
    after = scrape(metrics)
    assert value(after, "guessgame_players") == 2
    assert value(after, "guessgame_admins") == 2
    assert value(after, "guessgame_guesses_total") == 2
    assert value(after, "guessgame_wins_total") == 1
    assert value(after, "guessgame_rounds_total") == 2
    assert value(after, "guessgame_store_up") == 0
    assert value(before, "guessgame_store_up") == 1


def test_reactor_lag_is_how_late_the_tick_fires() -> None:
    """A tick due in 0.1 s that fires 0.35 s later records 0.25 s of lag."""
    clock = Clock()
    metrics = Metrics(make_game(), clock, admins=lambda: 0, connections=ConnectionCounts())
    metrics.startService()
    clock.advance(0.1)
    clock.advance(0.35)
    scraped = scrape(metrics)
    assert value(scraped, "guessgame_reactor_lag_seconds_count") == 2
    assert value(scraped, "guessgame_reactor_lag_seconds_sum") == pytest.approx(0.25)
    assert value(scraped, "guessgame_reactor_lag_seconds_bucket", le="0.25") == 2
    assert value(scraped, "guessgame_reactor_lag_seconds_bucket", le="0.1") == 1
    metrics.stopService()
    assert clock.getDelayedCalls() == []


def test_win_save_time_runs_from_the_win_to_the_commit() -> None:
    """A win committed 0.2 s after it happened records 0.2 s; the player still gets Correct!."""
    clock = Clock()
    store = SlowStore()
    game = make_game(store=store, clock=clock)
    metrics = Metrics(game, clock, admins=lambda: 0, connections=ConnectionCounts())
    metrics.startService()
    player = connect(PlayerFactory(game))
    player.read()
    secret = secret_of(game)
    assert player.send(f"{secret}\r\n".encode()) == []
    clock.advance(0.2)
    assert value(scrape(metrics), "guessgame_win_save_seconds_count") == 0
    store.pending[0].callback(None)
    assert player.read() == [f"Correct! The number was {secret}. You won in 1 guess!"]
    scraped = scrape(metrics)
    assert value(scraped, "guessgame_win_save_seconds_count") == 1
    assert value(scraped, "guessgame_win_save_seconds_sum") == pytest.approx(0.2)
    metrics.stopService()


def test_player_port_counts_accepted_and_refused() -> None:
    """A player let in counts as accepted, one the limits turn away as refused."""
    counts = ConnectionCounts()
    factory = PlayerFactory(
        make_game(), limits=Limits(max_players=1), count_connection=counts.for_port("player")
    )
    connect(factory, port=1)
    refused = connect(factory, port=2)
    assert refused.read() == ["*** The server is full. Try again later."]
    assert counts.counts["player", "accepted"] == 1
    assert counts.counts["player", "refused"] == 1


def test_admin_port_counts_handshakes() -> None:
    """An admin let in counts as accepted; a bad token and one admin too many as refused."""
    counts = ConnectionCounts()
    factory = AdminFactory(make_game(), token="t", count_connection=counts.for_port("admin"))
    assert connect(factory).send(b"Admin-Greetings t\r\n")[0].startswith("OK")
    assert connect(factory).send(b"Admin-Greetings t\r\n") == [
        "ERR another administrator is connected"
    ]
    wrong = connect(factory)
    wrong.send(b"Admin-Greetings x\r\n")
    assert counts.counts["admin", "accepted"] == 1
    assert counts.counts["admin", "refused"] >= 1


def test_web_port_counts_through_the_same_object() -> None:
    """The web port's counter is one call; an unknown port is a mistake at once."""
    counts = ConnectionCounts()
    web = counts.for_port("web")
    web("accepted")
    web("accepted")
    counts.count("web", "refused")
    assert (counts.counts["web", "accepted"], counts.counts["web", "refused"]) == (2, 1)
    with pytest.raises(ValueError, match="port must be one of player, admin, web"):
        counts.for_port("telnet")


# Integration: the daemon's service tree and GET /metrics over HTTP.


@pytest.fixture
def daemon() -> Iterator[MultiService]:
    """The daemon with metrics on, on free loopback ports, room for one player."""
    from twisted.internet import reactor

    options = Options()
    options.parseOptions(
        [
            "--player", "tcp:0:interface=127.0.0.1",
            "--admin", "tcp:0:interface=127.0.0.1",
            "--metrics", "tcp:0:interface=127.0.0.1",
            "--web", "off",
            "--db", ":memory:",
            "--max-players", "1",
            "--classic-wait", "0",
        ]
    )  # fmt: skip
    top = makeService(options, reactor=reactor)
    top.startService()
    yield top
    if top.running:
        pytest_twisted.blockon(top.stopService())


def port_of(top: MultiService, role: str) -> int:
    """The port a listener bound."""
    return int(top.getServiceNamed(role).port.getHost().port)


class HTTPGet(protocol.Protocol):
    """One HTTP/1.0 GET: sends the request, collects the answer until the server closes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        """Send the request."""
        self.transport.write(f"GET {self.path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        """Keep the answer."""
        self.data += data

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """The whole answer is in."""
        self.done.callback(self.data)


@pytest_twisted.inlineCallbacks
def get(top: MultiService, path: str) -> Any:
    """GET ``path`` from the metrics port: (status, content type, body text)."""
    from twisted.internet import reactor

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(top, "metrics"), 5)
    client = yield endpoints.connectProtocol(endpoint, HTTPGet(path))
    answer = yield client.done.addTimeout(10, reactor)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers["content-type"], body.decode("utf-8")


@pytest_twisted.inlineCallbacks
def play_to_win(client: LineClient) -> Any:
    """Binary-search the secret over a real connection; the number of guesses."""
    lo, hi, guesses = 1, 30, 0
    while True:
        guess = (lo + hi) // 2
        client.send(str(guess))
        guesses += 1
        reply = yield client.next_line()
        if reply.startswith("Too low"):
            lo = guess + 1
        elif reply.startswith("Too high"):
            hi = guess - 1
        else:
            assert reply.startswith("Correct!"), reply
            return guesses


@pytest_twisted.inlineCallbacks
def test_metrics_over_http_move_after_a_guess_a_win_and_a_refusal(daemon: MultiService) -> Any:
    """GET /metrics parses, and its counters move after guesses, a win and a refusal."""
    status, content_type, text = yield get(daemon, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    before = samples(text)
    for name in GAME_SAMPLES + LIBRARY_SAMPLES:
        assert any(n == name for n, _ in before), name

    player = yield open_client(port_of(daemon, "player"))
    yield player.next_line()
    yield player.next_line()
    refused = yield open_client(port_of(daemon, "player"))
    assert (yield refused.next_line()) == "*** The server is full. Try again later."
    yield refused.lost
    scraped = samples((yield get(daemon, "/metrics"))[2])
    assert value(scraped, "guessgame_players") == 1
    guesses = yield play_to_win(player)
    yield player.lost
    admin = yield open_client(port_of(daemon, "admin"))
    admin.send("Admin-Greetings")
    assert (yield admin.next_line()).startswith("OK Admin-Greetings")

    after = samples((yield get(daemon, "/metrics"))[2])
    assert (
        value(after, "guessgame_guesses_total")
        == value(before, "guessgame_guesses_total") + guesses
    )
    assert value(after, "guessgame_wins_total") == value(before, "guessgame_wins_total") + 1
    assert value(after, "guessgame_rounds_total") == value(before, "guessgame_rounds_total") + 1
    assert value(after, "guessgame_win_save_seconds_count") == 1
    assert value(after, "guessgame_players") == 0
    assert value(after, "guessgame_admins") == 1
    for port, result, count in (
        ("player", "accepted", 1),
        ("player", "refused", 1),
        ("admin", "accepted", 1),
        ("web", "accepted", 0),
    ):
        assert value(after, "guessgame_connections_total", port=port, result=result) == count
    yield admin.close()


@pytest_twisted.inlineCallbacks
def test_other_paths_are_not_found(daemon: MultiService) -> Any:
    """Only /metrics answers; / and anything else are 404."""
    for path in ("/", "/metric", "/metrics/extra"):
        status, _, text = yield get(daemon, path)
        assert (status, text) == (404, "Not found: the metrics are at /metrics\n")


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    """A scraper that accepts OpenMetrics gets it; any other gets the text format."""
    metrics = Metrics(make_game(), Clock(), admins=lambda: 0, connections=ConnectionCounts())
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"guessgame_wins_total 0.0" in body
    _, plain = metrics.render("text/html")
    assert plain.startswith("text/plain; version=0.0.4")
