"""Prometheus metrics: ``GET /metrics`` on the ``--metrics`` endpoint.

The game's counters are read when Prometheus scrapes (`GameCollector`), so
a guess costs nothing more with metrics on.  What must be measured as it
happens are two histograms: how long a win takes to be committed, and how
late a timer that should fire every 0.1 s fires (the reactor's lag).  The
page is rendered in the reactor thread by a small `twisted.web` resource,
not in the WSGI thread pool of ``prometheus_client.twisted``, so a scrape
sees the game's state as one consistent moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web import http, resource, server
from twisted.web.server import Request

from guessgame.events import Event, Won
from guessgame.game import Game

__all__ = [
    "LAG_INTERVAL",
    "PORTS",
    "RESULTS",
    "ConnectionCounts",
    "GameCollector",
    "Metrics",
    "MetricsSite",
]

#: The ``port`` label of ``guessgame_connections_total``.
PORTS = ("player", "admin", "web")
#: The ``result`` label of ``guessgame_connections_total``.
RESULTS = ("accepted", "refused")

#: Seconds between the ticks whose lateness is the reactor's lag.
LAG_INTERVAL = 0.1

#: Histogram buckets, in seconds: a commit takes a millisecond or so on
#: SQLite, a lagging reactor is felt from about 10 ms.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WIN_SAVE_BUCKETS = (0.0005, *LAG_BUCKETS)


class ConnectionCounts:
    """Connections each port accepted or refused, for ``guessgame_connections_total``.

    Every port counts its own: ``counts.count("web", "accepted")``, or a
    callable bound to one port from `for_port`.  Plain integers, read at
    scrape time; they exist whether or not metrics are served.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {(p, r): 0 for p in PORTS for r in RESULTS}

    def count(self, port: str, result: str) -> None:
        """One more connection on ``port`` (`PORTS`) with ``result`` (`RESULTS`)."""
        self.counts[port, result] += 1

    def for_port(self, port: str) -> Callable[[str], None]:
        """``count`` with the port filled in: call it with ``"accepted"`` or ``"refused"``."""
        if port not in PORTS:
            raise ValueError(f"port must be one of {', '.join(PORTS)}, not {port!r}")
        return partial(self.count, port)


class GameCollector:
    """Reads the game's gauges and counters when Prometheus scrapes.

    The counters are the game's all-time ones (those of the admin's
    ``stats``): they carry on across restarts where the daemon keeps a
    database.
    """

    def __init__(
        self, game: Game, admins: Callable[[], int], connections: ConnectionCounts
    ) -> None:
        self.game = game
        self.admins = admins
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        """The game's metrics as they stand now."""
        stats = self.game.stats()
        yield GaugeMetricFamily(
            "guessgame_players", "Players connected.", value=int(stats["players"])
        )
        yield GaugeMetricFamily(
            "guessgame_admins", "Administrators connected.", value=self.admins()
        )
        for key, text in (
            ("guesses", "Valid guesses made."),
            ("wins", "Rounds won."),
            ("rounds", "Rounds started."),
        ):
            yield CounterMetricFamily(f"guessgame_{key}", text, value=int(stats[key]))
        connections = CounterMetricFamily(
            "guessgame_connections",
            "Connections each port accepted or refused.",
            labels=("port", "result"),
        )
        for (port, result), count in self.connections.counts.items():
            connections.add_metric((port, result), count)
        yield connections
        yield GaugeMetricFamily(
            "guessgame_store_up",
            "1 while the store takes writes, 0 while it is failing.",
            value=0 if stats.get("store") == "failing" else 1,
        )


class Metrics(Service):
    """The registry behind ``/metrics`` and what feeds it.

    The game's collector, the two histograms, the client library's process
    and Python collectors, and the lag timer.  While running it watches
    the game for wins, to time their commit.
    """

    name = "metrics-registry"

    def __init__(
        self,
        game: Game,
        clock: IReactorTime,
        *,
        admins: Callable[[], int],
        connections: ConnectionCounts,
        interval: float = LAG_INTERVAL,
    ) -> None:
        self.game = game
        self.clock = clock
        self.interval = interval
        self.registry = CollectorRegistry()
        self.registry.register(GameCollector(game, admins, connections))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.win_save = Histogram(
            "guessgame_win_save_seconds",
            "Seconds from a win to its commit in the store.",
            registry=self.registry,
            buckets=WIN_SAVE_BUCKETS,
        )
        self.reactor_lag = Histogram(
            "guessgame_reactor_lag_seconds",
            f"How late a timer that should fire every {interval} s fires.",
            registry=self.registry,
            buckets=LAG_BUCKETS,
        )
        self._tick_call: IDelayedCall | None = None
        self._due = 0.0

    def startService(self) -> None:
        """Watch the game and start the lag timer."""
        super().startService()
        self.game.add_observer(self)
        self._schedule()

    def stopService(self) -> None:
        """Stop watching and stop the timer."""
        super().stopService()
        self.game.remove_observer(self)
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._tick_call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self.reactor_lag.observe(max(0.0, self.clock.seconds() - self._due))
        self._schedule()

    # GameObserver.

    def game_event(self, event: Event) -> None:
        """Time a win from now until the store has it."""
        if isinstance(event, Won) and event.saved is not None:
            started = self.clock.seconds()

            def saved(result: Any) -> Any:
                self.win_save.observe(max(0.0, self.clock.seconds() - started))
                return result

            event.saved.addBoth(saved)

    def close(self) -> defer.Deferred[None]:
        """The game is stopping: nothing to flush."""
        return defer.succeed(None)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for an ``Accept`` header: the body and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class MetricsPage(resource.Resource):
    """``GET /metrics``, rendered in the reactor thread."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """The metrics, in the format the scraper asked for."""
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found: the metrics are at /metrics\n"
        accept = request.getHeader(b"accept")
        body, content_type = self.metrics.render(accept.decode("latin-1") if accept else None)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class NotFound(resource.Resource):
    """Every other path: 404 with a hint."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        """404, pointing at ``/metrics``."""
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found: the metrics are at /metrics\n"


class MetricsSite(server.Site):
    """The HTTP site of the ``--metrics`` endpoint: ``/metrics`` and nothing else.

    Scrapes are not logged: one every few seconds would drown the log.
    """

    noisy = False

    def __init__(self, metrics: Metrics) -> None:
        root = _Root(metrics)
        super().__init__(root)

    def log(self, request: http.Request) -> None:
        """Keep scrapes out of the log."""


class _Root(resource.Resource):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.page = MetricsPage(metrics)
        self.missing = NotFound()

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return self.page if path == b"metrics" else self.missing

    def render_GET(self, request: Request) -> bytes:
        return self.missing.render_GET(request)
