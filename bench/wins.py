"""Wins committed per second with many winners at once: SQLite beside PostgreSQL.

In one process, a `Game` in solo mode on each durable store: W players
guess their secrets in the same reactor turn, so W wins wait for their
commit at once (a ``Correct!`` goes out only after it); the next wave
starts when all W have fired.  For each store and W the driver reports
wins committed per second and the time from a wave's wins to its last
commit.  The PostgreSQL server is the throwaway one of the tests
(`tests.pg`), unless ``--postgres URI`` names one.

Run: ``python -m bench.wins`` (``--seconds`` per cell, ``--waves`` W,...).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from guessgame.events import Notice, Win
from guessgame.game import Game
from guessgame.store import postgres as pgstore
from guessgame.store import sqlite as sqlstore

__all__ = ["format_table", "main", "parse_args"]


class _Link:
    """A player link that drops what it is sent."""

    def notice(self, notice: Notice) -> bool:
        """Drop the notice: shown to nobody."""
        return False

    def close(self) -> defer.Deferred[None]:
        """Nothing to close."""
        return defer.succeed(None)


@defer.inlineCallbacks
def measure(game: Game, winners: int, seconds: float) -> Any:
    """Run waves of ``winners`` simultaneous wins for about ``seconds``."""
    players = [game.join(_Link(), "127.0.0.1:1") for _ in range(winners)]
    for n, player in enumerate(players):
        game.rename(player, f"w{winners}x{n}")
    wins = 0
    waves: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        wave = time.perf_counter()
        saved = []
        for player in players:
            outcome = game.guess(player, player.secret)
            assert isinstance(outcome, Win)
            saved.append(outcome.saved)
        yield defer.gatherResults(saved)
        waves.append(time.perf_counter() - wave)
        wins += winners
    elapsed = time.perf_counter() - started
    return {
        "winners": winners,
        "wins": wins,
        "wins_per_s": round(wins / elapsed, 1),
        "wave_ms_p50": round(1000 * statistics.median(waves), 2),
        "wave_ms_max": round(1000 * max(waves), 2),
    }


@defer.inlineCallbacks
def run(reactor: Any, ns: argparse.Namespace) -> Any:
    """Every store and wave size; the results as dicts."""
    from twisted.internet import reactor as global_reactor

    results: list[dict[str, Any]] = []
    server = None
    uri = ns.postgres or None
    if ns.postgres is None:
        from tests.pg import PostgresServer, unavailable

        why = unavailable()
        if why is None:
            server = PostgresServer(durable=True)
            uri = server.new_database()
        else:
            print(f"no PostgreSQL: {why}", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="guessgame-wins-") as tmp:
            stores: list[tuple[str, Any]] = [("sqlite", None), ("postgres", uri)]
            for kind, where in stores:
                if kind == "postgres" and where is None:
                    continue
                for winners in ns.waves:
                    if kind == "sqlite":
                        path = str(Path(tmp) / f"wins-{winners}.sqlite3")
                        store: Any = sqlstore.open_store(path, global_reactor)
                    else:
                        store = pgstore.open_store(where, global_reactor, mode="solo")
                    game = Game(
                        global_reactor,
                        random.Random(1),
                        mode="solo",
                        store=store,
                        keeper=store if kind == "postgres" else None,
                    )
                    game.startService()
                    result = yield measure(game, winners, ns.seconds)
                    yield game.stopService()
                    result["store"] = kind
                    results.append(result)
                    print(
                        f"  {kind:8} {winners:5} at once: {result['wins_per_s']:9.1f} wins/s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if server is not None:
            server.destroy()
    return results


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Wins/s per wave size, one column per store."""
    sizes = sorted({r["winners"] for r in results})
    kinds = [k for k in ("sqlite", "postgres") if any(r["store"] == k for r in results)]
    cell = {(r["store"], r["winners"]): r for r in results}
    head = ["winners at once"] + [f"{k} wins/s (wave p50 ms)" for k in kinds]
    rows = [head]
    for size in sizes:
        row = [str(size)]
        for kind in kinds:
            r = cell.get((kind, size))
            row.append("-" if r is None else f"{r['wins_per_s']:.0f} ({r['wave_ms_p50']:.1f})")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.wins", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument(
        "--waves", type=int, nargs="+", default=[1, 10, 100, 1000], help="winners at once"
    )
    parser.add_argument(
        "--postgres",
        default=None,
        help="a PostgreSQL URI to use (a new, empty database); empty: SQLite alone",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON lines")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table, write the JSON lines; exits."""
    ns = parse_args(argv)

    @defer.inlineCallbacks
    def go(reactor: Any) -> Any:
        results = yield run(reactor, ns)
        print(format_table(results), flush=True)
        if ns.output is not None:
            with ns.output.open("w", encoding="utf-8") as f:
                for r in results:
                    f.write(json.dumps(r, sort_keys=True) + "\n")

    task.react(go)


if __name__ == "__main__":
    main()
