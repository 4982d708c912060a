"""``/play``: the WebSocket handshake in front of the WebSocket player.

`PlayResource` refuses a handshake whose ``Origin`` names another host
than the request's ``Host`` (403), answers a plain request that is no
handshake (426) or another method than GET (405), and otherwise lets
Twisted's `WebSocketResource` upgrade the connection to a `WebPlayer`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.web import pages, server
from twisted.web.websocket import WebSocketResource

from guessgame.web.wsplayer import WebPlayers

__all__ = ["PlayResource", "same_origin"]


def same_origin(origin: str, host: str, secure: bool) -> bool:
    """Whether the ``Origin`` header names the request's ``Host`` (host and port)."""
    try:
        url = urlsplit(origin)
        served = urlsplit("//" + host)
        if url.scheme not in ("http", "https") or not url.hostname or not served.hostname:
            return False
        origin_port = url.port or (443 if url.scheme == "https" else 80)
        host_port = served.port or (443 if secure else 80)
    except ValueError:
        return False
    return (url.hostname, origin_port) == (served.hostname, host_port)


class PlayResource(WebSocketResource):
    """``/play``: the WebSocket handshake, refused for a foreign ``Origin``."""

    def __init__(self, players: WebPlayers) -> None:
        self._players = players
        super().__init__(players)

    def render(self, request: server.Request) -> bytes | int:
        """GET only: any other method is a 405."""
        if request.method == b"GET":
            return self.render_GET(request)
        request.setHeader(b"Allow", b"GET")
        page = pages.errorPage(405, "Method not allowed", "/play is a WebSocket.")
        body: bytes = page.render(request)  # type: ignore[assignment]
        return body

    def render_GET(self, request: server.Request) -> bytes | int:
        """Check the origin and that this is a WebSocket handshake, then upgrade."""
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host") or b""
        if origin is not None and not same_origin(
            origin.decode("latin-1"), host.decode("latin-1"), request.isSecure()
        ):
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"This page may only be played from its own site.\n"
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"Upgrade", b"websocket")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"/play is a WebSocket: open the page at / to play.\n"
        self._players.last = None
        result = super().render_GET(request)
        player = self._players.last
        if player is not None:
            # Count the raw bytes Twisted gathers into messages.
            channel: Any = request.channel
            channel.dataReceived = player.counting(channel.dataReceived)
        return result
