"""``make soak``: the daemon under a crowd, a flood and honest players at once.

Starts ``twistd -n guessgame`` with its default limits on loopback ports,
then, from this process:

- holds ``--held`` connections (default 5,000), spread over source
  addresses 127.0.1.x so that no address passes ``--max-per-ip``;
- has ``--flooders`` of them (default 100) send garbage lines as fast as
  the daemon lets them (it reads them at ``--max-rate``);
- runs ``--honest`` players (default 50, from 127.0.2.x) that play the
  game for ``--duration`` seconds: guess, wait for the reply, think, and
  reconnect after a win.

Prints the honest players' reply times (p50, p99, max), the daemon's peak
memory and what happened to the crowd, and exits 1 if any honest player saw
an error: a reply that is not in PROTOCOL.md, a refusal, a lost connection,
or no reply within ``--reply-timeout`` seconds.  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Any

from twisted.internet import defer, endpoints, protocol, task, utils
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

RANGE = (1, 30)
PROMPT = "Pick a number between 1-30"
REPLY = re.compile(
    r"Too low! Pick a number between 1-30|Too high! Pick a number between 1-30"
    r"|Correct! The number was (\d+)\. You won in (\d+) guess(es)?!"
)
ROUND_OVER = re.compile(r"\*\*\* \S+ won the round with \d+\. A new number between 1-30")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=5000, help="connections held open")
    parser.add_argument("--flooders", type=int, default=100, help="held connections that flood")
    parser.add_argument("--honest", type=int, default=50, help="honest players")
    parser.add_argument("--duration", type=float, default=60, help="seconds of play")
    parser.add_argument("--think", type=float, default=1.0, help="honest think time, seconds")
    parser.add_argument("--reply-timeout", type=float, default=10, help="seconds")
    parser.add_argument("--port", type=int, default=4500, help="player port (admin: +1)")
    parser.add_argument(
        "--only-honest",
        action="store_true",
        help="internal: run just the honest players and print their results as JSON",
    )
    return parser.parse_args(argv)


# The daemon.


def start_daemon(port: int, log: str) -> subprocess.Popen[bytes]:
    """Start the daemon with its default limits; return once it listens."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    process = subprocess.Popen(
        [
            twistd,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "guessgame",
            f"--player=tcp:{port}:interface=127.0.0.1",
            f"--admin=tcp:{port + 1}:interface=127.0.0.1",
            "--web=off",
        ],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
        if os.path.exists(log):
            with open(log, encoding="utf-8") as f:
                if "admin port listening" in f.read():
                    return process
    process.kill()
    raise SystemExit(f"the daemon did not start; see {log}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


# Clients.


class Lines(LineReceiver):
    """A client that hands each received line to a waiter."""

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.waiter: defer.Deferred[str] | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.gone = False

    def lineReceived(self, line: bytes) -> None:
        """Queue the line, or give it to the waiter."""
        text = line.decode("utf-8", "replace")
        if self.waiter is not None:
            d, self.waiter = self.waiter, None
            d.callback(text)
        else:
            self.lines.append(text)

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """Fail a waiter; fire `lost`."""
        self.gone = True
        if self.waiter is not None:
            d, self.waiter = self.waiter, None
            d.errback(ConnectionError("connection closed"))
        self.lost.callback(None)

    def next_line(self, timeout: float, clock: Any) -> defer.Deferred[str]:
        """The next line, within ``timeout`` seconds."""
        if self.lines:
            return defer.succeed(self.lines.popleft())
        if self.gone:
            return defer.fail(ConnectionError("connection closed"))
        d: defer.Deferred[str] = defer.Deferred()
        self.waiter = d
        return d.addTimeout(timeout, clock)


def garbage_block(rng: random.Random, size: int = 1 << 16) -> bytes:
    """Lines of random bytes (no IAC, so no Ctrl-C; a '#' first, so never a command)."""
    alphabet = bytes(b for b in range(255) if b != 0x0A)
    out = bytearray()
    while len(out) < size:
        out += b"#" + bytes(rng.choices(alphabet, k=rng.randint(0, 120))) + b"\r\n"
    return bytes(out)


@implementer(IPushProducer)
class Held(protocol.Protocol):
    """A held connection: reads and drops everything; may flood garbage."""

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        self.paused = False
        self.flood: task.LoopingCall | None = None
        self.open = False

    def connectionMade(self) -> None:
        """Count it."""
        self.open = True
        self.stats["held_open"] += 1

    def dataReceived(self, data: bytes) -> None:
        """Drop what the daemon sends; a flooder counts its replies."""
        self.stats["held_bytes"] += len(data)
        if self.flood is not None:
            self.stats["flood_lines"] += data.count(b"\n")

    def start_flood(self, block: bytes, clock: Any) -> None:
        """Write garbage whenever the transport has room."""
        self.block = block
        self.offset = 0
        self.transport.registerProducer(self, True)
        self.flood = task.LoopingCall(self._write)
        self.flood.clock = clock
        self.flood.start(0.01, now=True)

    def _write(self) -> None:
        if self.paused or not self.open:
            return
        chunk = self.block[self.offset : self.offset + 8192]
        self.offset = (self.offset + 8192) % len(self.block)
        self.stats["flood_bytes"] += len(chunk)
        self.transport.write(chunk)

    def pauseProducing(self) -> None:
        """The daemon is not reading: wait."""
        self.paused = True

    def resumeProducing(self) -> None:
        """Room again."""
        self.paused = False

    def stopProducing(self) -> None:
        """Gone."""
        self.paused = True

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """Count it."""
        if self.flood is not None and self.flood.running:
            self.flood.stop()
        if self.open:
            self.open = False
            self.stats["held_open"] -= 1
            self.stats["held_lost"] += 1


class Honest:
    """One honest player: plays until the end, reconnecting after each win."""

    def __init__(self, index: int, port: int, args: argparse.Namespace, clock: Any) -> None:
        self.source = f"127.0.2.{index + 1}"
        self.port = port
        self.args = args
        self.clock = clock
        self.times: list[float] = []
        self.errors: list[str] = []
        self.wins = 0
        self.rng = random.Random(index)

    def error(self, text: str) -> None:
        """Record an error this player saw."""
        self.errors.append(text)

    @defer.inlineCallbacks
    def play(self, until: float) -> Any:
        """Play games until ``until`` (monotonic seconds)."""
        while time.monotonic() < until and not self.errors:
            try:
                yield self.game(until)
            except Exception as e:
                self.error(f"{self.source}: {type(e).__name__}: {e}")

    @defer.inlineCallbacks
    def game(self, until: float) -> Any:
        """One connection: greeting, guesses until a win or the end."""
        endpoint = endpoints.TCP4ClientEndpoint(
            self.clock, "127.0.0.1", self.port, timeout=10, bindAddress=(self.source, 0)
        )
        client = yield endpoints.connectProtocol(endpoint, Lines())
        timeout = self.args.reply_timeout
        first = yield client.next_line(timeout, self.clock)
        second = yield client.next_line(timeout, self.clock)
        if [first, second] != ["You are now connected to the server!", PROMPT]:
            self.error(f"{self.source}: greeting {first!r} {second!r}")
            client.transport.abortConnection()
            return
        lo, hi = RANGE
        while time.monotonic() < until:
            yield task.deferLater(self.clock, self.rng.uniform(0.5, 1.5) * self.args.think)
            guess = self.rng.randint(lo, hi) if lo <= hi else self.rng.randint(*RANGE)
            sent = time.monotonic()
            client.sendLine(str(guess).encode())
            while True:
                line = yield client.next_line(timeout, self.clock)
                if not line.startswith("*** "):
                    break
                if ROUND_OVER.match(line):
                    lo, hi = RANGE
                elif not line.startswith("*** Message from the administrator"):
                    self.error(f"{self.source}: notice {line!r}")
                    client.transport.abortConnection()
                    return
            self.times.append(time.monotonic() - sent)
            found = REPLY.fullmatch(line)
            if found is None:
                self.error(f"{self.source}: reply {line!r} to {guess}")
                client.transport.abortConnection()
                return
            if line.startswith("Too low"):
                lo = guess + 1
            elif line.startswith("Too high"):
                hi = guess - 1
            else:
                self.wins += 1
                yield client.lost.addTimeout(timeout, self.clock)
                return
        client.transport.loseConnection()
        yield client.lost


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@defer.inlineCallbacks
def soak(reactor: Any, args: argparse.Namespace, daemon: subprocess.Popen[bytes]) -> Any:
    """Run the crowd, the flood and the honest players; return the exit status."""
    stats = dict.fromkeys(
        ("held_open", "held_lost", "held_bytes", "held_failed", "flood_bytes", "flood_lines"), 0
    )
    held: list[Held] = []
    started = time.monotonic()
    for start in range(0, args.held, 250):
        batch = []
        for n in range(start, min(start + 250, args.held)):
            source = f"127.0.1.{n // 20 + 1}"
            endpoint = endpoints.TCP4ClientEndpoint(
                reactor, "127.0.0.1", args.port, timeout=30, bindAddress=(source, 0)
            )
            proto = Held(stats)
            held.append(proto)
            batch.append(endpoints.connectProtocol(endpoint, proto))
        results = yield defer.DeferredList(batch, consumeErrors=True)
        stats["held_failed"] += sum(1 for ok, _ in results if not ok)
    print(
        f"held {stats['held_open']} connections in {time.monotonic() - started:.1f} s "
        f"({stats['held_failed']} failed); daemon RSS "
        f"{memory_kib(daemon.pid)['VmRSS'] / 1024:.1f} MiB",
        flush=True,
    )
    rng = random.Random(7)
    block = garbage_block(rng)
    flooders = [h for h in held if h.open][: args.flooders]
    for h in flooders:
        h.start_flood(block, reactor)

    peak_rss = 0

    def sample() -> None:
        nonlocal peak_rss
        peak_rss = max(peak_rss, memory_kib(daemon.pid)["VmRSS"])

    sampler = task.LoopingCall(sample)
    sampler.clock = reactor
    sampler.start(1.0)
    began = time.monotonic()
    cpu_before = cpu_seconds(daemon.pid), time.process_time()
    flood_lines_before = stats["flood_lines"]
    # The honest players run in a process of their own, so their reply
    # times are the daemon's and not this crowd's event loop.
    out, err, code = yield utils.getProcessOutputAndValue(
        sys.executable,
        [
            __file__,
            "--only-honest",
            f"--honest={args.honest}",
            f"--duration={args.duration}",
            f"--think={args.think}",
            f"--reply-timeout={args.reply_timeout}",
            f"--port={args.port}",
        ],
        env=dict(os.environ),
        reactor=reactor,
    )
    if code != 0:
        print(err.decode(errors="replace"))
    results = json.loads(out) if code == 0 else {"times": [], "errors": ["honest players died"]}
    sampler.stop()
    sample()

    flood_bytes = stats["flood_bytes"]
    flood_lines = stats["flood_lines"] - flood_lines_before
    elapsed = time.monotonic() - began
    daemon_cpu = cpu_seconds(daemon.pid) - cpu_before[0]
    own_cpu = time.process_time() - cpu_before[1]
    for h in held:
        if h.open:
            h.transport.abortConnection()
    times: list[float] = results["times"]
    errors: list[str] = results["errors"]
    memory = memory_kib(daemon.pid)
    print(
        f"honest players: {args.honest}, replies: {len(times)}, wins: "
        f"{results.get('wins', 0)}, errors: {len(errors)}"
    )
    if times:
        print(
            f"honest reply time: p50 {percentile(times, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(times, 0.99) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
        )
    per_flooder = flood_lines / max(1, len(flooders)) / elapsed
    print(
        f"flooders: {len(flooders)} wrote {flood_bytes / 1e6:.0f} MB of garbage into their "
        f"sockets; the daemon answered {flood_lines} lines ({per_flooder:.0f} a second each)"
    )
    print(f"held connections lost during the run: {stats['held_lost']}")
    print(
        f"CPU over the {elapsed:.0f} s: daemon {daemon_cpu:.1f} s, "
        f"this load generator {own_cpu:.1f} s"
    )
    print(
        f"daemon memory: peak {memory['VmHWM'] / 1024:.1f} MiB "
        f"(sampled peak RSS {peak_rss / 1024:.1f} MiB, now {memory['VmRSS'] / 1024:.1f} MiB)"
    )
    for text in errors[:20]:
        print("ERROR", text)
    ok = not errors and daemon.poll() is None and times
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


@defer.inlineCallbacks
def honest_only(reactor: Any, args: argparse.Namespace) -> Any:
    """Play as the honest players for the duration; print their results as JSON."""
    until = time.monotonic() + args.duration
    players = [Honest(i, args.port, args, reactor) for i in range(args.honest)]
    yield defer.gatherResults([p.play(until) for p in players], consumeErrors=True)
    results = {
        "times": [t for p in players for t in p.times],
        "errors": [e for p in players for e in p.errors],
        "wins": sum(p.wins for p in players),
    }
    sys.stdout.write(json.dumps(results))


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when no honest player saw an error."""
    args = parse_args(argv)
    if args.only_honest:
        task.react(lambda reactor: honest_only(reactor, args))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = args.held + args.honest + 100
    if hard < need:
        raise SystemExit(f"the open-file limit {hard} is below the {need} this soak needs")
    with tempfile.TemporaryDirectory(prefix="guessgame-soak-") as tmp:
        log = os.path.join(tmp, "twistd.log")
        daemon = start_daemon(args.port, log)
        outcome: list[int] = []

        def run(reactor: Any) -> defer.Deferred[None]:
            return soak(reactor, args, daemon).addCallback(outcome.append)

        status = 1
        try:
            task.react(run)
        except SystemExit:
            status = outcome[0] if outcome else 1
        finally:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            with open(log, encoding="utf-8") as f:
                tracebacks = f.read().count("Traceback")
            if tracebacks:
                print(f"the daemon logged {tracebacks} tracebacks")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
