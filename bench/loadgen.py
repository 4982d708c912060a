"""A closed-loop load generator for the player port.

N players connect at a given rate, wait for the greeting and the prompt,
and play by binary search with exactly one guess outstanding, timing every
reply.  A player that wins (``Correct!``, then the server closes) connects
again at once.  ``*** `` lines are notices, never replies; the round notice
restarts the search.  Every kind of error is counted (refused, reset,
closed, unexpected line, timeout), and the player connects again after a
pause.  After the ramp-up and a settling time comes one measured window;
then the generator closes everything, prints one JSON object on stdout and
exits.  It always stops by itself: a hard alarm ends it if anything hangs.

``--endless`` is for the ceiling, whose every answer is ``Too low!``: when
the search runs out, it starts over instead of counting an error.

``--interval SECONDS`` offers a fixed load instead of playing flat out: a
player's guesses are due that far apart, on a fixed grid from its first
(a guess whose reply comes after the next one was due goes out at once and
starts the grid again), so N players offer N/SECONDS guesses a second and
the server's CPU per guess can be compared at the same rate.  The result
then names the offered rate beside the achieved one.

``--websocket`` plays the same game over the web port's ``/play``: one
WebSocket text message a line each way, framed here by hand (a fixed
handshake, masked client frames, unmasked server frames) so that the
generator stays cheap next to the server.

Run: ``python -m bench.loadgen --port 4000 --players 1000 --range 1-1000000000``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guessgame.game import parse_range

__all__ = [
    "Config",
    "LoadGenerator",
    "WsPlayer",
    "main",
    "parse_args",
    "percentile",
    "raise_file_limit",
    "source_addresses",
    "summarise",
    "ws_frame",
]

GREETING = b"You are now connected to the server!"
NOTICE = b"*** "
CORRECT = b"Correct! "
ROUND_NOTICE_END = b" has been picked."

#: Players per loopback source address before another one is used: keeps
#: well inside the ephemeral port range of one address.
PLAYERS_PER_SOURCE = 5000

# Player states.
CONNECTING, GREETED, PLAYING, WON, CLOSED = range(5)


@dataclass(frozen=True)
class Config:
    """What one load generator run does."""

    host: str
    port: int
    players: int
    rate: float
    settle: float
    window: float
    lo: int
    hi: int
    endless: bool
    reply_timeout: float
    retry_delay: float
    sources: int
    websocket: bool = False
    #: Seconds from one guess to the next of the same player; 0: flat out.
    interval: float = 0.0

    @property
    def offered_per_s(self) -> float | None:
        """Guesses a second the players offer at a fixed ``interval``; None flat out."""
        return self.players / self.interval if self.interval else None

    @property
    def ramp(self) -> float:
        """Seconds from the first connection to the last."""
        return self.players / self.rate

    @property
    def duration(self) -> float:
        """Seconds from start to the end of the measured window."""
        return self.ramp + self.settle + self.window


def _positive(kind: type[int] | type[float]) -> Any:
    def convert(text: str) -> int | float:
        value = kind(text)
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _range(text: str) -> tuple[int, int]:
    try:
        return parse_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Read the command line into a `Config`; exit with a usage message when it is wrong."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (loopback)")
    parser.add_argument("--port", type=int, required=True, help="player port")
    parser.add_argument("--players", type=_positive(int), default=1000, help="N players")
    parser.add_argument("--rate", type=_positive(float), default=2000.0, help="connections/s")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the ramp")
    parser.add_argument("--window", type=_positive(float), default=10.0, help="measured seconds")
    parser.add_argument("--range", type=_range, default=(1, 30), help="LO-HI of the server")
    parser.add_argument(
        "--endless", action="store_true", help="restart the search when it runs out (ceiling)"
    )
    parser.add_argument(
        "--websocket", action="store_true", help="play over the web port's /play WebSocket"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds from one guess of a player to its next (0: flat out, one "
        "guess outstanding and the next sent on the reply)",
    )
    parser.add_argument("--reply-timeout", type=_positive(float), default=10.0)
    parser.add_argument("--retry-delay", type=_positive(float), default=0.5)
    parser.add_argument(
        "--sources",
        type=int,
        default=0,
        help="loopback source addresses 127.0.0.2.. to spread over (0: one per "
        f"{PLAYERS_PER_SOURCE} players, 1: the kernel's choice)",
    )
    ns = parser.parse_args(argv)
    if ns.settle < 0:
        parser.error("--settle must not be negative")
    if not 0 < ns.port < 65536:
        parser.error("--port must be 1-65535")
    if ns.sources < 0 or ns.sources > 250:
        parser.error("--sources must be 0-250")
    if not 0 <= ns.interval < math.inf:
        parser.error("--interval must be 0 or a positive number of seconds")
    sources = ns.sources or math.ceil(ns.players / PLAYERS_PER_SOURCE)
    lo, hi = ns.range
    return Config(
        host=ns.host,
        port=ns.port,
        players=ns.players,
        rate=ns.rate,
        settle=ns.settle,
        window=ns.window,
        lo=lo,
        hi=hi,
        endless=ns.endless,
        reply_timeout=ns.reply_timeout,
        retry_delay=ns.retry_delay,
        sources=sources,
        interval=ns.interval,
        websocket=ns.websocket,
    )


def source_addresses(count: int) -> list[str | None]:
    """Local addresses to bind to: None (the kernel's choice) or 127.0.0.2 onwards."""
    if count <= 1:
        return [None]
    return [f"127.0.0.{2 + i}" for i in range(count)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted values."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarise(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, p50, p90, p99 and max of durations, in milliseconds."""
    if not seconds:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(seconds)
    ms = 1000.0
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered) * ms, 3),
        "p50": round(percentile(ordered, 50) * ms, 3),
        "p90": round(percentile(ordered, 90) * ms, 3),
        "p99": round(percentile(ordered, 99) * ms, 3),
        "max": round(ordered[-1] * ms, 3),
    }


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Player(asyncio.Protocol):
    """One simulated player: a binary search over the server's range."""

    def __init__(self, gen: LoadGenerator, slot: int, started: float) -> None:
        self.gen = gen
        self.slot = slot
        self.started = started
        self.since = started  # when the current wait (greeting, reply, close) began
        self.state = CONNECTING
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.lo = gen.config.lo
        self.hi = gen.config.hi
        self.guess = 0
        self.outstanding = False
        self.due: float | None = None  # when the last guess was due, at a fixed interval

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the greeting."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Split into lines and handle each."""
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\r\n")
        self.buffer = lines.pop()
        for line in lines:
            if self.state == CLOSED:
                return
            self.line_received(line)

    def connection_lost(self, exc: Exception | None) -> None:
        """A win closes as expected; anything else is an error."""
        state, self.state = self.state, CLOSED
        gen = self.gen
        if gen.stopping or state == CLOSED:
            return
        if state == WON:
            gen.connect(self.slot)
            return
        if isinstance(exc, ConnectionResetError):
            gen.error("reset")
        else:
            gen.error("closed")
        gen.connect_later(self.slot)

    # The game.

    def line_received(self, line: bytes) -> None:
        """One line from the server: a notice, a reply, or the greeting."""
        gen = self.gen
        if line.startswith(NOTICE):
            gen.notices += 1
            if line.endswith(ROUND_NOTICE_END):
                # A new round: restart the search.  A reply still owed is
                # for a guess the server scores against the new secret.
                self.lo, self.hi = gen.config.lo, gen.config.hi
            return
        if self.outstanding:
            now = time.perf_counter()
            if line == gen.too_low:
                self.lo = self.guess + 1
            elif line == gen.too_high:
                self.hi = self.guess - 1
            elif line.startswith(CORRECT):
                self.outstanding = False
                gen.reply(now - self.since)
                gen.wins += 1
                self.state = WON
                self.since = now
                return
            else:
                self.fail("unexpected", line)
                return
            self.outstanding = False
            gen.reply(now - self.since)
            self.play()
        elif self.state == CONNECTING and line == GREETING:
            self.state = GREETED
        elif self.state == GREETED and line == gen.prompt:
            self.state = PLAYING
            gen.prompted(time.perf_counter() - self.started)
            self.play()
        else:
            self.fail("unexpected", line)

    def play(self) -> None:
        """Send the next guess of the binary search."""
        if self.lo > self.hi:
            if not self.gen.config.endless:
                self.gen.error("inconsistent")
            self.lo, self.hi = self.gen.config.lo, self.gen.config.hi
        self.guess = (self.lo + self.hi) // 2
        self.outstanding = True
        gen = self.gen
        interval = gen.config.interval
        if interval:
            # Keep to the grid of due times, so that a late wake-up of this
            # loop does not stretch the interval; only a reply that comes
            # after the next guess was due starts the grid again from now.
            now = time.perf_counter()
            due = now if self.due is None else self.due + interval
            if due > now:
                self.due = due
                gen.loop.call_later(due - now, gen.send_soon, self)
                return
            self.due = now
        gen.send_soon(self)

    def fail(self, kind: str, line: bytes | None = None) -> None:
        """Count an error, drop the connection and connect again later."""
        self.gen.error(kind, line)
        self.state = CLOSED
        if self.transport is not None:
            self.transport.abort()
        self.gen.connect_later(self.slot)

    def send_guess(self) -> None:
        """Write the current guess as a line."""
        assert self.transport is not None
        self.transport.write(b"%d\n" % self.guess)

    def waiting_since(self) -> float | None:
        """When the current wait began, or None when nothing is owed."""
        if self.state == PLAYING and not self.outstanding:
            return None
        return self.since if self.state != CLOSED else None


#: The opening handshake of every WebSocket player (the key need not vary).
WS_HANDSHAKE = (
    b"GET /play HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def ws_frame(payload: bytes) -> bytes:
    """One masked client text frame holding ``payload`` (under 126 bytes).

    The all-zero mask leaves the payload as it is: valid framing, and no
    cost here (a browser must pick unpredictable masks; a load generator
    need not).
    """
    return b"\x81" + bytes((0x80 | len(payload),)) + b"\x00\x00\x00\x00" + payload


class WsPlayer(Player):
    """A `Player` over the web port's WebSocket: one text message a line."""

    def __init__(self, gen: LoadGenerator, slot: int, started: float) -> None:
        super().__init__(gen, slot, started)
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the opening handshake, then wait for the greeting."""
        super().connection_made(transport)
        self.transport.write(WS_HANDSHAKE)  # type: ignore[union-attr]

    def send_guess(self) -> None:
        """Write the current guess as one text message."""
        assert self.transport is not None
        self.transport.write(ws_frame(b"%d" % self.guess))

    def data_received(self, data: bytes) -> None:
        """The handshake's answer, then server frames: each text frame is a line."""
        data = self.buffer + data
        if not self.upgraded:
            head, sep, data = data.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.fail("refused", head.split(b"\r\n", 1)[0])
                return
            self.upgraded = True
        view = memoryview(data)
        at = 0
        while len(view) - at >= 2:
            opcode, size = view[at] & 0x0F, view[at + 1] & 0x7F
            start = at + 2
            if size == 126:
                if len(view) - at < 4:
                    break
                size, start = int.from_bytes(view[at + 2 : at + 4], "big"), at + 4
            elif size == 127:
                if len(view) - at < 10:
                    break
                size, start = int.from_bytes(view[at + 2 : at + 10], "big"), at + 10
            if len(view) - start < size:
                break
            payload = bytes(view[start : start + size])
            at = start + size
            if self.state == CLOSED:
                return
            if opcode == 0x1:
                self.line_received(payload)
        self.buffer = bytes(view[at:])


class LoadGenerator:
    """Runs the players through ramp-up, settling and the measured window."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, out: Any = None) -> None:
        self.config = config
        self.loop = loop
        self.out = out if out is not None else sys.stderr
        range_text = f"{config.lo}-{config.hi}".encode()
        self.prompt = b"Pick a number between " + range_text
        self.too_low = b"Too low! " + self.prompt
        self.too_high = b"Too high! " + self.prompt
        self.sources = source_addresses(config.sources)
        self.players: list[Player | None] = [None] * config.players
        self.measuring = False
        self.stopping = False
        self.latencies: list[float] = []
        self.prompt_times: list[float] = []
        self.replies = 0
        self.wins = 0
        self.notices = 0
        self.errors: dict[str, int] = {}
        self.examples: list[str] = []
        self.window_start = 0.0
        self.window_end = 0.0
        self.cpu_start = 0.0
        self.playing_at_start = 0
        self.cpu_used = 0.0
        self.done: asyncio.Future[None] = loop.create_future()
        self._started = loop.time()
        self._last_replies = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: list[Player] = []

    # Counting.

    def reply(self, seconds: float) -> None:
        """Record one reply time."""
        self.replies += 1
        if self.measuring:
            self.latencies.append(seconds)

    def prompted(self, seconds: float) -> None:
        """Record one connect-to-prompt time."""
        self.prompt_times.append(seconds)

    def error(self, kind: str, line: bytes | None = None) -> None:
        """Count one error of ``kind``; keep a few unexpected lines to show."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if line is not None and len(self.examples) < 5:
            self.examples.append(line[:120].decode("utf-8", "replace"))

    def send_soon(self, player: Player) -> None:
        """Queue the player's guess; the queue goes out at once after this loop iteration."""
        self._outbox.append(player)
        if len(self._outbox) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every queued guess, timing each from its send.

        Sending a loop iteration's guesses together, rather than one by one
        between reads, lets a fast server find several lines ready at once
        instead of waking up for each; otherwise the generator pays for a
        wake-up per guess and becomes the bottleneck against the ceiling.
        """
        outbox, self._outbox = self._outbox, []
        perf_counter = time.perf_counter
        for player in outbox:
            if player.state == CLOSED or player.transport is None:
                continue
            player.since = perf_counter()
            player.send_guess()

    # Connections.

    def connect(self, slot: int) -> None:
        """Start connecting player ``slot``."""
        if self.stopping:
            return
        started = time.perf_counter()
        player = (WsPlayer if self.config.websocket else Player)(self, slot, started)
        self.players[slot] = player
        task = self.loop.create_task(self._connect(player))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connect_later(self, slot: int) -> None:
        """Connect player ``slot`` again after the retry delay."""
        if not self.stopping:
            self.loop.call_later(self.config.retry_delay, self.connect, slot)

    async def _connect(self, player: Player) -> None:
        config = self.config
        source = self.sources[player.slot % len(self.sources)]
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: player,
                    config.host,
                    config.port,
                    local_addr=(source, 0) if source else None,
                ),
                config.reply_timeout,
            )
        except ConnectionRefusedError:
            self._connect_failed(player, "refused")
        except TimeoutError:
            self._connect_failed(player, "timeout")
        except OSError as e:
            self._connect_failed(player, errno.errorcode.get(e.errno or 0, "connect").lower())

    def _connect_failed(self, player: Player, kind: str) -> None:
        player.state = CLOSED
        if not self.stopping:
            self.error(kind)
            self.connect_later(player.slot)

    # The timeline.

    def start(self) -> None:
        """Schedule the ramp, the window, the stop, and the once-a-second tick."""
        config = self.config
        now = self.loop.time()
        for slot in range(config.players):
            self.loop.call_at(now + slot / config.rate, self.connect, slot)
        window_start = now + config.ramp + config.settle
        self.loop.call_at(window_start, self._begin_window)
        self.loop.call_at(window_start + config.window, self._end_window)
        self._started = now
        self.loop.call_at(now + 1, self._tick)

    def _begin_window(self) -> None:
        self.window_start = time.monotonic()
        self.cpu_start = _cpu_seconds()
        self.playing_at_start = self.playing()
        self.measuring = True
        self.progress("measuring")

    def _end_window(self) -> None:
        self.measuring = False
        self.window_end = time.monotonic()
        self.cpu_used = _cpu_seconds() - self.cpu_start
        self.stopping = True
        for player in self.players:
            if player is not None and player.transport is not None:
                player.state = CLOSED
                player.transport.abort()
        self.done.set_result(None)

    def playing(self) -> int:
        """How many players are connected and past the prompt."""
        return sum(1 for p in self.players if p is not None and p.state in (PLAYING, WON))

    def _tick(self) -> None:
        if self.stopping:
            return
        now = time.perf_counter()
        limit = self.config.reply_timeout
        for player in self.players:
            if player is None:
                continue
            since = player.waiting_since()
            if since is not None and now - since > limit:
                player.fail("timeout")
        phase = "measuring" if self.measuring else "ramp/settle"
        self.progress(phase)
        self.loop.call_later(1.0, self._tick)

    def progress(self, phase: str) -> None:
        """One line of progress on stderr."""
        replies = self.replies - self._last_replies
        self._last_replies = self.replies
        elapsed = self.loop.time() - self._started
        errors = sum(self.errors.values())
        print(
            f"  loadgen {elapsed:5.1f}s {phase:<11} {self.playing():>6}/{self.config.players} "
            f"playing {replies:>7} replies/s {errors:>5} errors",
            file=self.out,
            flush=True,
        )

    def result(self) -> dict[str, Any]:
        """What the run measured, as one JSON-ready dict."""
        config = self.config
        window = self.window_end - self.window_start
        replies = self.summary_replies()
        return {
            "players": config.players,
            "range": f"{config.lo}-{config.hi}",
            "endless": config.endless,
            "interval_s": config.interval,
            "offered_per_s": config.offered_per_s,
            "window_s": round(window, 3),
            "guesses": replies["count"],
            "guesses_per_s": round(len(self.latencies) / window, 1) if window > 0 else 0.0,
            "reply_ms": replies,
            "prompt_ms": summarise(self.prompt_times),
            "wins": self.wins,
            "notices": self.notices,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(sorted(self.errors.items())),
            "unexpected_lines": self.examples,
            "playing_at_window_start": self.playing_at_start,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "loadgen_cpu_percent": round(100 * self.cpu_used / window, 1) if window > 0 else 0.0,
        }

    def summary_replies(self) -> dict[str, float | int | None]:
        """The reply times of the window, summarised."""
        return summarise(self.latencies)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run(config: Config, out: Any = None) -> dict[str, Any]:
    """Run one load generator to the end of its window; return its result."""
    loop = asyncio.get_running_loop()
    gen = LoadGenerator(config, loop, out)
    gen.start()
    await gen.done
    # Let the aborted transports finish closing before the loop goes.
    await asyncio.sleep(0.1)
    return gen.result()


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line: the result goes to stdout as one JSON line."""
    config = parse_args(argv)
    raise_file_limit()
    # The last resort that makes "stops by itself" hold whatever happens.
    signal.alarm(int(config.duration + 30))
    result = asyncio.run(run(config))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
