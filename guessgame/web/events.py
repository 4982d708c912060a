"""``/api/events``: the game's public events as a Server-Sent Events stream.

`EventHub` is one `GameObserver` for every open stream: it renders each
public event once as a ``data:`` line of JSON and writes it to every
stream.  Joins and leaves become a ``players`` event with the new count,
at most one a second.  A stream whose reader stopped reading is dropped
once ``max_output`` bytes wait unsent, and at most ``max_streams`` are
open at once.  A comment line every `KEEPALIVE` seconds keeps quiet
streams open through proxies and finds readers that are gone.  Nothing
here names a player's address.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.server import Request

from guessgame.events import Event, Joined, Left, RoundStarted, Won
from guessgame.game import Game
from guessgame.wire.limits import OutputCap, carrier_of

__all__ = ["EventHub", "render_event"]

log = Logger()

#: The shortest time between two ``players`` events, in seconds.
PLAYERS_INTERVAL = 1.0
#: Seconds between two keep-alive comments.
KEEPALIVE = 30.0


def render_event(payload: dict[str, Any]) -> bytes:
    """One Server-Sent Event: a ``data:`` line of compact JSON, then a blank line."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class EventStream:
    """One open ``/api/events`` response."""

    def __init__(self, hub: EventHub, request: Request) -> None:
        self.hub = hub
        self.request = request
        self.open = True

    def write(self, data: bytes) -> None:
        """Queue ``data``; a stream already dropped takes nothing."""
        if self.open:
            self.request.write(data)

    def overflow(self) -> None:
        """The reader stopped reading: drop it at once."""
        if self.open:
            log.info(
                "event stream stopped reading: over {limit} bytes unsent, closing",
                limit=self.hub.max_output,
            )
            self.hub.forget(self)
            transport: Any = self.request.channel.transport
            transport.abortConnection()

    def finish(self) -> None:
        """End the response (the daemon is stopping)."""
        if self.open:
            self.hub.forget(self)
            self.request.unregisterProducer()
            self.request.finish()


class EventHub:
    """Every open event stream, fed from one observer of the game."""

    def __init__(self, game: Game, *, max_streams: int = 0, max_output: int = 0) -> None:
        self.game = game
        self.max_streams = max_streams
        self.max_output = max_output
        self.streams: list[EventStream] = []
        self._players_call: IDelayedCall | None = None
        self._players_sent_at: float | None = None
        self._keepalive = task.LoopingCall(self.broadcast, b": keep-alive\n\n")
        self._keepalive.clock = game.clock

    # Streams.

    def full(self) -> bool:
        """Whether another stream would be one too many."""
        return bool(self.max_streams) and len(self.streams) >= self.max_streams

    def subscribe(self, request: Request) -> EventStream:
        """Start streaming the game's events to ``request``."""
        stream = EventStream(self, request)
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-cache")
        if self.max_output and request.channel.transport is not None:
            # On the transport that holds the unsent bytes (TCP, below any TLS).
            carrier = carrier_of(request.channel.transport)
            carrier.bufferSize = self.max_output
            request.registerProducer(OutputCap(carrier, self.max_output, stream.overflow), True)
        self.streams.append(stream)
        if len(self.streams) == 1:
            self.game.add_observer(self)
            self._keepalive.start(KEEPALIVE, now=False)
        # Sends the headers now, so the reader knows the stream is open;
        # the page reads the current state from /api/stats.
        stream.write(b"retry: 3000\n\n")
        request.notifyFinish().addBoth(lambda _: self.forget(stream))
        return stream

    def forget(self, stream: EventStream) -> None:
        """Stop writing to ``stream``."""
        if not stream.open:
            return
        stream.open = False
        self.streams.remove(stream)
        if not self.streams:
            self.game.remove_observer(self)
            self._cancel_players()
            if self._keepalive.running:
                self._keepalive.stop()

    def broadcast(self, data: bytes) -> None:
        """Write one rendered event to every stream."""
        for stream in list(self.streams):
            stream.write(data)

    # GameObserver.

    def game_event(self, event: Event) -> None:
        """Render a public event for the streams; an address never leaves here."""
        if isinstance(event, RoundStarted):
            self.broadcast(
                render_event(
                    {"type": "round", "round": event.round, "range": f"{event.lo}-{event.hi}"}
                )
            )
        elif isinstance(event, Won):
            self.broadcast(
                render_event(
                    {
                        "type": "win",
                        "name": event.name,
                        "number": event.number,
                        "guesses": event.guesses,
                    }
                )
            )
        elif isinstance(event, (Joined, Left)):
            self._players_changed()

    def close(self) -> defer.Deferred[None]:
        """The game is stopping: end every stream."""
        self._cancel_players()
        for stream in list(self.streams):
            stream.finish()
        return defer.succeed(None)

    # ``players`` at most once a second.

    def _players_changed(self) -> None:
        if self._players_call is not None:
            return  # a count is already due; it will be the latest one
        now = self.game.clock.seconds()
        sent = self._players_sent_at
        if sent is None or now - sent >= PLAYERS_INTERVAL:
            self._send_players()
        else:
            self._players_call = self.game.clock.callLater(
                sent + PLAYERS_INTERVAL - now, self._send_players
            )

    def _send_players(self) -> None:
        self._players_call = None
        self._players_sent_at = self.game.clock.seconds()
        self.broadcast(render_event({"type": "players", "count": len(self.game.players)}))

    def _cancel_players(self) -> None:
        call, self._players_call = self._players_call, None
        if call is not None and call.active():
            call.cancel()
