"""``python -m bench.top``: what ``top`` costs on a large leaderboard, before and after.

Two measurements, each side by side for two versions of the code: "before"
is a git revision (``--before``, default ``main``) exported to a temporary
directory, "after" is this working tree.

1. In process: the first 5, 10 and 1,000 of a board of ``--entries``
   (default 10^6) names, and one win's update of the board.  The old code
   kept a dict and took the top with ``heapq.nsmallest`` over all of it;
   the new one keeps a `guessgame.leaderboard.Leaderboard`.
2. On the wire: ``twistd -n guessgame`` of each version on a database of
   ``--entries`` names (default limits, so ``--max-rate 100``).  A player
   sends one line every 20 ms and times each reply, first alone, then while
   another connection sends ``top`` as fast as the daemon reads it.  The
   daemon's CPU is sampled from ``/proc``.

It prints one table per part and stops every process it started.  Nothing
here is a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.task import Clock

from bench.run import ROOT, Processes, cpu_percent, listening_port, read_sample
from guessgame.leaderboard import Leaderboard
from guessgame.store.base import LeaderboardEntry
from guessgame.store.sqlite import open_store

__all__ = ["board_costs", "main", "seed_database", "wire_costs"]

#: One line every this many seconds from the player being timed.
PACE = 0.02


def _entries(count: int) -> list[tuple[str, int, int, float]]:
    """``count`` distinct names with wins and best spread like a real board's."""
    rng = random.Random(7)
    return [
        (f"n{i}", 1 + int(rng.paretovariate(1.5)), rng.randint(1, 8), 0.0) for i in range(count)
    ]


def _time(action: Callable[[], object], budget: float = 1.0) -> float:
    """Seconds one call of ``action`` takes: the best of a few batches within ``budget``."""
    once = timeit.timeit(action, number=1)
    number = max(1, int(budget / 5 / max(once, 1e-7)))
    return min(timeit.repeat(action, number=number, repeat=5)) / number


def board_costs(count: int) -> list[tuple[str, float, float]]:
    """(what, before µs, after µs) for top K and a win's update on ``count`` entries."""
    entries = [LeaderboardEntry(*row) for row in _entries(count)]
    by_key = {e.name.lower(): e for e in entries}
    board = Leaderboard(entries)

    def old_rank(entry: LeaderboardEntry) -> tuple[int, int, str, str]:
        return (-entry.wins, entry.best, entry.name.lower(), entry.name)

    rows = []
    for k in (5, 10, 1000):
        before = _time(lambda k=k: heapq.nsmallest(k, by_key.values(), key=old_rank), 3.0)
        after = _time(lambda k=k: board.top(k))
        rows.append((f"top {k}", before * 1e6, after * 1e6))
    winner = entries[count // 2]
    n = [winner.wins]

    def old_win() -> None:
        n[0] += 1
        by_key[winner.name.lower()] = LeaderboardEntry(winner.name, n[0], winner.best, 0.0)

    def new_win() -> None:
        n[0] += 1
        board.record(LeaderboardEntry(winner.name, n[0], winner.best, 0.0))

    rows.append(("one win's update", _time(old_win) * 1e6, _time(new_win) * 1e6))
    return rows


def seed_database(path: Path, count: int) -> None:
    """A guessgame database at ``path`` whose leaderboard holds ``count`` names."""
    open_store(str(path), Clock())
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO leaderboard VALUES (?, ?, ?, ?, ?)",
            ((name, name, wins, best, last) for name, wins, best, last in _entries(count)),
        )
        conn.execute("UPDATE counters SET wins = (SELECT sum(wins) FROM leaderboard)")
    conn.close()


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` of this repository, written under ``into``."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@dataclass
class Timed:
    """What the timed player saw and what the daemon spent."""

    sent: int | None
    replies: list[float]
    tops: int
    cpu: float | None

    def row(self) -> list[str]:
        """The table cells: replies of sent, p50, p99, max (ms), top answers, CPU %."""
        r = sorted(self.replies)
        if self.sent is None:
            return ["no greeting", "-", "-", "-", str(self.tops), f"{self.cpu}"]
        if not r:
            return [f"0/{self.sent}", "-", "-", "-", str(self.tops), f"{self.cpu}"]
        p99 = r[min(len(r) - 1, int(len(r) * 0.99))]
        return [
            f"{len(r)}/{self.sent}",
            f"{statistics.median(r) * 1e3:.1f}",
            f"{p99 * 1e3:.1f}",
            f"{r[-1] * 1e3:.1f}",
            str(self.tops),
            f"{self.cpu}",
        ]


async def _lines(reader: asyncio.StreamReader, count: int) -> None:
    for _ in range(count):
        await reader.readline()


async def _timed_player(port: int, seconds: float, out: list[float]) -> int | None:
    """Send a line every `PACE` for ``seconds``; the count sent, or None if never greeted."""
    end = time.monotonic() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # A daemon busy with someone else's lines may not greet at all.
        await asyncio.wait_for(_lines(reader, 2), seconds + 5)
    except TimeoutError:
        writer.close()
        return None
    sent = 0
    try:
        while time.monotonic() < end:
            started = time.monotonic()
            writer.write(b"x\n")
            sent += 1
            try:
                await asyncio.wait_for(reader.readline(), end + 5 - started)
            except TimeoutError:
                break
            out.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, PACE - (time.monotonic() - started)))
    finally:
        writer.close()
    return sent


async def _top_loop(port: int, stop: asyncio.Event, answers: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _lines(reader, 2)

    async def read() -> None:
        while await reader.readline():
            answers[0] += 1

    reading = asyncio.ensure_future(read())
    try:
        while not stop.is_set():
            # Keep lines waiting: the daemon reads as fast as its rate limit
            # lets it.  No drain(): a daemon that stops reading must not
            # stop this loop from seeing the stop.
            if writer.transport.get_write_buffer_size() < 2**16:
                writer.write(b"top\n" * 100)
            await asyncio.sleep(0.01)
    finally:
        reading.cancel()
        writer.transport.abort()


async def _measure(port: int, pid: int, seconds: float, loop_top: bool) -> Timed:
    stop = asyncio.Event()
    answers = [0]
    looping = asyncio.ensure_future(_top_loop(port, stop, answers)) if loop_top else None
    if looping is not None:
        await asyncio.sleep(1.0)  # let the loop reach its steady state
    samples = [read_sample(pid)]
    replies: list[float] = []
    started = time.monotonic()
    sent = await _timed_player(port, seconds, replies)
    ended = time.monotonic()
    samples.append(read_sample(pid))
    stop.set()
    if looping is not None:
        await looping
    cpu = cpu_percent([s for s in samples if s is not None], started - 1, ended + 1)
    return Timed(sent, replies, answers[0], cpu)


def wire_costs(tree: Path, db: Path, seconds: float, procs: Processes) -> list[Timed]:
    """The timed player alone, then beside a ``top`` loop, on the daemon of ``tree``."""
    log = db.with_suffix(".log")
    env_path = str(tree)
    twistd = Path(sys.executable).with_name("twistd")
    with log.open("w") as out:
        proc = procs.start(
            [
                str(twistd) if twistd.exists() else "twistd",
                "-n",
                "--pidfile=",
                "guessgame",
                "--player",
                "tcp:0:interface=127.0.0.1",
                "--admin",
                "tcp:0:interface=127.0.0.1",
                "--db",
                str(db),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tree,
            env={"PYTHONPATH": env_path, "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
        )
    try:
        deadline = time.monotonic() + 300
        port = None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            port = listening_port(log.read_text(errors="replace"))
        if port is None:
            raise RuntimeError(f"the daemon did not start:\n{log.read_text(errors='replace')}")
        return [
            asyncio.run(_measure(port, proc.pid, seconds, loop_top=False)),
            asyncio.run(_measure(port, proc.pid, seconds, loop_top=True)),
        ]
    finally:
        procs.stop(proc)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    head = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    return "\n".join([head, *lines])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: sizes, the revision to compare with, which parts."""
    parser = argparse.ArgumentParser(prog="python -m bench.top", description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="leaderboard names")
    parser.add_argument("--before", default="main", help="git revision to compare with")
    parser.add_argument("--seconds", type=float, default=5.0, help="each timed window")
    parser.add_argument("--board-only", action="store_true", help="skip the daemon part")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts and print the tables."""
    ns = parse_args(argv)
    print(f"top on a leaderboard of {ns.entries:,} names: before = {ns.before}, after = this tree")
    rows = board_costs(ns.entries)
    print(
        _table(
            ["in process", "before µs", "after µs", "before/after"],
            [(what, f"{b:.1f}", f"{a:.1f}", f"{b / a:.3g}x") for what, b, a in rows],
        )
    )
    if ns.board_only:
        return 0
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="bench-top-"))
    try:
        table: list[list[str]] = []
        for label, tree in (("before", export(ns.before, work / "before")), ("after", ROOT)):
            db = work / f"{label}.sqlite3"
            seed_database(db, ns.entries)
            alone, beside = wire_costs(tree, db, ns.seconds, procs)
            table.append([label, "alone", *alone.row()])
            table.append([label, "top loop", *beside.row()])
        print(f"a player sending one line every {PACE * 1e3:.0f} ms, for {ns.seconds:.0f} s:")
        header = ["code", "beside", "replies", "p50 ms", "p99 ms", "max ms", "tops", "CPU %"]
        print(_table(header, table))
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
