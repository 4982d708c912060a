"""The web port's site: the page, its static files, ``/play`` and the JSON API.

`make_site` builds a `twisted.web.server.Site` over one `Game` and the
player port's `PlayerFactory` (so WebSocket players count against the
same limits as TCP players).  Every response carries
``X-Content-Type-Options: nosniff`` and a Content-Security-Policy that
allows only the page's own origin; every path not listed in PROTOCOL.md
(and the page's own static files) is a 404.  Public answers show names,
never addresses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from twisted.internet import address
from twisted.internet.interfaces import IAddress
from twisted.web import pages, server
from twisted.web.resource import IResource, Resource

from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.web.events import EventHub
from guessgame.web.play import PlayResource
from guessgame.web.wsplayer import WebPlayers

__all__ = ["SECURITY_HEADERS", "WebRequest", "WebSite", "make_site", "page_url", "parse_limit"]

#: Headers on every response of the web port.
SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"Referrer-Policy": b"no-referrer",
}

#: The page's files, served under /static/, and their types.
STATIC_TYPES = {
    "app.js": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}

LIMIT_DEFAULT = 10
LIMIT_MAX = 1000


class WebRequest(server.Request):
    """A request whose every answer, errors included, carries the security headers."""

    def process(self) -> None:
        """Set the security headers, then find and render the resource."""
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()


class Node(Resource):
    """A resource whose unknown children are a 404, and other methods than GET a 405."""

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        """Any path not put here is not found."""
        return NOT_FOUND

    def render(self, request: server.Request) -> bytes | int:
        """GET (and HEAD) where there is a page; 404 where there is none; else 405."""
        if getattr(self, "render_GET", None) is None:
            body: bytes = NOT_FOUND.render(request)
            return body
        if request.method in (b"GET", b"HEAD"):
            result: bytes | int = self.render_GET(request)  # type: ignore[attr-defined]
            return result
        return method_not_allowed(request)


#: What every unknown path gets.
NOT_FOUND = pages.notFound("Not found", "There is nothing at this address.")


def method_not_allowed(request: server.Request) -> bytes:
    """A 405 for a method other than GET or HEAD."""
    request.setHeader(b"Allow", b"GET, HEAD")
    page = pages.errorPage(405, "Method not allowed", "Only GET is served here.")
    body: bytes = page.render(request)  # type: ignore[assignment]
    return body


def _static_bytes(name: str) -> bytes:
    return resources.files("guessgame.web").joinpath("static", name).read_bytes()


def json_body(request: server.Request, value: Any) -> bytes:
    """``value`` as a JSON response body, not to be cached."""
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


class Fixed(Node):
    """A fixed body of a given type; any child path is a 404."""

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: server.Request) -> bytes:
        """The body."""
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.body


class StatsResource(Node):
    """``/api/stats``: the game's counters, range and mode."""

    def __init__(self, game: Game) -> None:
        super().__init__()
        self.game = game

    def render_GET(self, request: server.Request) -> bytes:
        """The counters as one JSON object."""
        game = self.game
        stats = game.stats()
        return json_body(
            request,
            {
                "players": stats["players"],
                "rounds": stats["rounds"],
                "wins": stats["wins"],
                "guesses": stats["guesses"],
                "range": game.range_text,
                "mode": game.mode,
            },
        )


def parse_limit(values: list[bytes] | None) -> int | None:
    """The ``limit`` query argument as a whole number 1-1000 (10 when absent), or None if bad."""
    if values is None:
        return LIMIT_DEFAULT
    if len(values) != 1:
        return None
    text = values[0]
    digits = text.lstrip(b"0")
    if not text.isdigit() or len(digits) > len(str(LIMIT_MAX)):
        return None  # ASCII digits only, and never a huge number fed to int()
    limit = int(text)
    return limit if 1 <= limit <= LIMIT_MAX else None


class LeaderboardResource(Node):
    """``/api/leaderboard?limit=K``: the first K of the leaderboard."""

    def __init__(self, game: Game) -> None:
        super().__init__()
        self.game = game

    def render_GET(self, request: server.Request) -> bytes:
        """The board as a JSON array, best first; a bad K is a 400."""
        args = request.args or {}
        limit = parse_limit(args.get(b"limit"))
        if limit is None:
            request.setResponseCode(400)
            return json_body(request, {"error": f"limit must be a whole number 1-{LIMIT_MAX}"})
        board = self.game.leaderboard(limit)
        return json_body(
            request,
            [
                {"rank": rank, "name": entry.name, "wins": entry.wins, "best": entry.best}
                for rank, entry in enumerate(board, start=1)
            ],
        )


class EventsResource(Node):
    """``/api/events``: Server-Sent Events, bounded in number and in unsent bytes."""

    def __init__(self, hub: EventHub, count_connection: Callable[[str], None]) -> None:
        super().__init__()
        self.hub = hub
        self.count_connection = count_connection

    def render_GET(self, request: server.Request) -> bytes | int:
        """Open a stream, or 503 when there are as many as allowed."""
        if request.method == b"HEAD":
            # Only the headers: a stream would keep a HEAD waiting for ever.
            request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
            return b""
        if self.hub.full():
            self.count_connection("refused")
            request.setResponseCode(503)
            return json_body(request, {"error": "too many event streams; try again later"})
        self.hub.subscribe(request)
        return server.NOT_DONE_YET


def make_root(
    game: Game, players: PlayerFactory, hub: EventHub, count_connection: Callable[[str], None]
) -> Node:
    """The resource tree of the web port."""
    root = Node()
    root.putChild(b"", Fixed(_static_bytes("index.html"), b"text/html; charset=utf-8"))
    static = Node()
    for name, content_type in STATIC_TYPES.items():
        static.putChild(name.encode(), Fixed(_static_bytes(name), content_type))
    root.putChild(b"static", static)
    root.putChild(b"play", PlayResource(WebPlayers(players)))
    api = Node()
    api.putChild(b"stats", StatsResource(game))
    api.putChild(b"leaderboard", LeaderboardResource(game))
    api.putChild(b"events", EventsResource(hub, count_connection))
    root.putChild(b"api", api)
    return root


class WebSite(server.Site):
    """The web port's `Site`: counts the connections it accepts (the metrics)."""

    def __init__(self, resource: Resource, count_connection: Callable[[str], None]) -> None:
        super().__init__(resource)
        self.count_connection = count_connection

    def buildProtocol(self, addr: Any) -> Any:
        """An HTTP channel for one more connection, counted as accepted."""
        self.count_connection("accepted")
        return super().buildProtocol(addr)


def _ignore(result: str) -> None:
    """Count nothing."""


def make_site(
    game: Game, players: PlayerFactory, count_connection: Callable[[str], None] | None = None
) -> server.Site:
    """The web port's `Site`, sharing ``game`` and the player port's limits.

    ``count_connection`` is told ``"accepted"`` for each connection to the
    web port and ``"refused"`` for each event stream turned away.  A
    WebSocket player is a player: the player port's factory counts it.
    """
    limits = players.limits
    count = count_connection or _ignore
    hub = EventHub(game, max_streams=limits.max_players, max_output=limits.max_output)
    site = WebSite(make_root(game, players, hub, count), count)
    site.requestFactory = WebRequest
    site.displayTracebacks = False
    site.noisy = False
    # Quiet: one access-log line for every page view and event would drown the game log.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def page_url(host: IAddress, secure: bool) -> str:
    """The URL a person on this machine opens for a listening address.

    A wildcard address (0.0.0.0, ::) becomes the loopback one.
    """
    scheme = "https" if secure else "http"
    if isinstance(host, address.IPv6Address):
        name = "::1" if host.host in ("::", "") else host.host
        return f"{scheme}://[{name}]:{host.port}/"
    if isinstance(host, address.IPv4Address):
        name = "127.0.0.1" if host.host in ("0.0.0.0", "") else host.host
        return f"{scheme}://{name}:{host.port}/"
    return f"{scheme}://(unix socket)/"
