"""``make bench``: the daemon against the bare Twisted ceiling, row by row.

For each row of the matrix the driver starts the server (the ceiling of
`bench.ceiling`, or ``twistd -n guessgame``) as a subprocess on a free
loopback port, pinned to one CPU when ``taskset`` exists, then the load
generator of `bench.loadgen` pinned to the other.  While the load runs it
samples the server's CPU time and resident memory from ``/proc``.  It kills
everything it started, also on Ctrl-C and errors, then prints one table and
writes one JSON line per row (``bench/results.jsonl``).

The daemon runs with its defaults except the limits and the classic
dialect's greeting wait, which are turned off where this daemon has those
options (``twistd guessgame --help`` says); one more row keeps the default
wait and reports the connect-to-prompt time, and every pair gains a row of
the daemon at its default options (limits on, the classic wait of 0.1 s),
all but ``--max-per-ip``, since the whole load comes from one address.

``--fixed-load`` runs another table: instead of flat out, each of N=1000
players sends one guess every 50 ms (``--interval``), about 20,000 guesses
a second, which both servers carry with CPU to spare, and the figure
compared is the server's CPU time per guess.  The rows run in alternating
pairs (ceiling, daemon, ceiling, daemon...), ``--rounds`` of them for each
daemon variant (defaults, limits off); each daemon row is compared with the
ceiling just before it and the median of its pairs is the figure.  A row
whose achieved rate falls short of the offered one is marked saturated.

The ``web`` row runs N WebSocket players on the web port's ``/play``
beside N TCP players on the player port, one load generator each, against
one daemon.  Its CPU per guess is split by kind: a TCP guess costs what
it cost in the daemon row with the same N and range, and the rest of the
CPU time, over the WebSocket guesses, is the cost of a WebSocket guess.
Other rows run with the web port off (where the daemon has one).

Run: ``python -m bench.run`` (the full matrix), ``python -m bench.run --quick``
or ``python -m bench.run --fixed-load``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import raise_file_limit
from guessgame.game import parse_range

__all__ = [
    "DEFAULT_OPTIONS",
    "FAST_OPTIONS",
    "FIXED_LOAD_TARGETS",
    "Row",
    "Sample",
    "cpu_percent",
    "fixed_load_rows",
    "fixed_load_summary",
    "format_fixed_load",
    "format_table",
    "kb_per_connection",
    "limited_by",
    "listening_port",
    "main",
    "matrix",
    "pair_in_order",
    "pair_ratios",
    "parse_args",
    "parse_proc_stat",
    "parse_rss_kb",
    "saturated",
    "summarise_profile",
    "supported_options",
    "us_per_guess",
]

WIDE = (1, 1_000_000_000)
NARROW = (1, 30)

#: Options that take the daemon's limits and greeting wait out of the way,
#: passed only where ``twistd guessgame --help`` lists them.
FAST_OPTIONS: list[tuple[str, str]] = [
    ("--max-players", "0"),
    ("--max-per-ip", "0"),
    ("--max-rate", "0"),
    ("--classic-wait", "0"),
]
#: The option the extra row leaves at its default.
WAIT_OPTION = "--classic-wait"
#: The daemon as people run it, but for the one limit a load generator on a
#: single address would hit: the ``daemon, defaults`` rows.
DEFAULT_OPTIONS: list[tuple[str, str]] = [("--max-per-ip", "0")]
#: The daemon's limit on lines a second per connection, when left at its default.
DEFAULT_MAX_RATE = 100

#: The fixed offered load: players, seconds between one player's guesses, rounds.
FIXED_PLAYERS = 1000
FIXED_INTERVAL = 0.05
FIXED_ROUNDS = 3
#: Below this share of the offered rate a row is saturated.
SATURATION = 0.97
#: At most this many times the ceiling's CPU per guess at the fixed load, by
#: the daemon's options (``default``: defaults, ``fast``: limits off).
FIXED_LOAD_TARGETS: dict[str, float] = {"default": 1 / 0.85, "fast": 1 / 0.90}

LISTENING = re.compile(r"player port listening on (?:\[[^\]]*\]|[^\s:]+):(\d+)")
WEB_LISTENING = re.compile(r"web port listening on (?:\[[^\]]*\]|[^\s:]+):(\d+)")
#: The web port: off in every row but the web row, which listens here.
WEB_OFF = ("--web", "off")
WEB_ON = ["--web", "tcp:0:interface=127.0.0.1"]
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """One row of the matrix: which server, how many players, which range."""

    server: str  # "ceiling", "daemon", or "web" (the daemon with WebSocket players too)
    players: int
    lo: int
    hi: int
    default_wait: bool = False
    #: The daemon's options: ``fast`` (limits off) or ``default`` (`DEFAULT_OPTIONS`).
    options: str = "fast"
    #: Seconds between one player's guesses at a fixed offered load; 0: flat out.
    interval: float = 0.0
    #: The daemon serves Prometheus metrics (``--metrics``) during the row.
    metrics: bool = False
    #: The daemon's --db: "sqlite" (the default file) or "postgres".
    store: str = "sqlite"

    @property
    def range_text(self) -> str:
        """``LO-HI``."""
        return f"{self.lo}-{self.hi}"

    @property
    def label(self) -> str:
        """The row's name in the table."""
        if self.server == "web":
            return "daemon, TCP+WebSocket"
        if self.metrics:
            return "daemon, metrics on"
        if self.store == "postgres":
            return "daemon, postgres"
        if self.server == "daemon" and self.options == "default":
            return "daemon, defaults"
        return "daemon, default wait" if self.default_wait else self.server

    @property
    def slug(self) -> str:
        """The row in a file name: server, options, N and range."""
        name = self.label.replace(", ", "-").replace(" ", "-")
        return f"{name}-{self.players}-{self.range_text}"


def matrix(
    quick: bool, pairs: Sequence[tuple[int, tuple[int, int]]] = (), metrics: bool = False
) -> list[Row]:
    """The rows to run: each daemon row right after its ceiling row, then the web row.

    After the pairs, the N=1000 wide daemon on the PostgreSQL store.
    ``pairs`` (N, (LO, HI)) replace the matrix when given; with ``metrics``
    each daemon row is followed by the same row with metrics on.
    """
    chosen = list(pairs)
    if not chosen:
        chosen = (
            [(1000, WIDE)] if quick else [(100, WIDE), (1000, WIDE), (10000, WIDE), (1000, NARROW)]
        )
    rows: list[Row] = []
    for n, (lo, hi) in chosen:
        rows.append(Row("ceiling", n, lo, hi))
        rows.append(Row("daemon", n, lo, hi))
        if metrics:
            rows.append(Row("daemon", n, lo, hi, metrics=True))
        rows.append(Row("daemon", n, lo, hi, options="default"))
    if not pairs and (1000, WIDE) in chosen:
        rows.append(Row("daemon", 1000, *WIDE, store="postgres"))
    if not quick and not pairs:
        rows.append(Row("daemon", 1000, *NARROW, default_wait=True))
    if not pairs:
        rows.append(Row("web", 1000, *WIDE))
    return rows


def fixed_load_rows(
    rounds: int = FIXED_ROUNDS,
    variants: Sequence[str] = ("default", "fast"),
    players: int = FIXED_PLAYERS,
    span: tuple[int, int] = WIDE,
    interval: float = FIXED_INTERVAL,
) -> list[Row]:
    """The fixed-load rows: alternating pairs, ceiling then daemon, round by round.

    Each round has one pair per daemon variant, so that the variants take
    turns and a slow spell of the machine spreads over all of them.
    """
    lo, hi = span
    rows: list[Row] = []
    for _ in range(rounds):
        for options in variants:
            rows.append(Row("ceiling", players, lo, hi, interval=interval))
            rows.append(Row("daemon", players, lo, hi, options=options, interval=interval))
    return rows


def _pair(text: str) -> tuple[int, tuple[int, int]]:
    players, sep, range_text = text.partition(":")
    try:
        if not sep or not players.isdigit() or int(players) < 1:
            raise ValueError(f"give N:LO-HI, like 1000:1-30, not {text!r}")
        return int(players), parse_range(range_text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the driver's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="the N=1000 pair only")
    parser.add_argument("--window", type=_positive_float, default=10.0, help="measured seconds")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the ramp-up")
    parser.add_argument("--rate", type=_positive_float, default=2000.0, help="connections/s")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results.jsonl", help="JSON lines"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--postgres",
        default=None,
        metavar="URI",
        help="PostgreSQL server for the postgres rows, as a URI of its postgres database "
        "(a database is created per row); default: a throwaway server of the tests' harness",
    )
    parser.add_argument(
        "--wins-seconds",
        type=float,
        default=None,
        help="seconds per cell of the wins-per-second table (default 3, quick 1; 0: skip it)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample each server with py-spy during its window (pip install py-spy); "
        "the profiled rows run slower",
    )
    parser.add_argument(
        "--profile-rate",
        type=_positive_float,
        default=200.0,
        help="py-spy samples a second with --profile",
    )
    parser.add_argument(
        "--fixed-load",
        action="store_true",
        help="the fixed offered load table instead of the matrix: CPU per guess, alternating pairs",
    )
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=FIXED_INTERVAL,
        help="with --fixed-load: seconds between one player's guesses",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=FIXED_ROUNDS,
        help="with --fixed-load: pairs for each daemon variant",
    )
    parser.add_argument(
        "--variant",
        choices=sorted(FIXED_LOAD_TARGETS),
        action="append",
        default=[],
        help="with --fixed-load: only this daemon variant (repeatable; "
        "default: both, 'default' and 'fast' = limits off)",
    )
    parser.add_argument(
        "--pair",
        type=_pair,
        action="append",
        default=[],
        metavar="N:LO-HI",
        help="run this ceiling/daemon pair instead of the matrix (repeatable)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="after each daemon row, the same row with --metrics on, and the ratio "
        "of their CPU per guess",
    )
    ns = parser.parse_args(argv)
    if ns.settle < 0:
        parser.error("--settle must not be negative")
    if ns.rounds < 1:
        parser.error("--rounds must be at least 1")
    if ns.fixed_load and len(ns.pair) > 1:
        parser.error("--fixed-load takes at most one --pair N:LO-HI")
    return ns


# Reading the daemon's help and log.


def supported_options(
    help_text: str, wanted: Iterable[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """Split ``wanted`` into arguments to pass and the option names the help does not list."""
    listed = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    passed: list[str] = []
    skipped: list[str] = []
    for name, value in wanted:
        if name in listed:
            passed += [name, value]
        else:
            skipped.append(name)
    return passed, skipped


def listening_port(log_text: str, pattern: re.Pattern[str] = LISTENING) -> int | None:
    """The player port from a ``player port listening on HOST:PORT`` line (or ``pattern``'s)."""
    match = pattern.search(log_text)
    return int(match.group(1)) if match else None


# /proc.


def parse_proc_stat(text: str) -> int:
    """User plus system CPU time, in clock ticks, from ``/proc/PID/stat``."""
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15


def parse_rss_kb(text: str) -> int:
    """Resident set size in KB, from ``/proc/PID/status``."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line")


@dataclass(frozen=True)
class Sample:
    """One reading of the server: when (monotonic seconds), CPU ticks, RSS in KB."""

    at: float
    ticks: int
    rss_kb: int


def read_sample(pid: int) -> Sample | None:
    """Read the server's CPU time and RSS now; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        return Sample(time.monotonic(), parse_proc_stat(stat), parse_rss_kb(status))
    except (OSError, ValueError):
        return None


def cpu_percent(
    samples: Sequence[Sample], start: float, end: float, tick: int = CLK_TCK
) -> float | None:
    """The server's CPU use in ``start``-``end``, from the samples nearest each end."""
    inside = [s for s in samples if start <= s.at <= end]
    if len(inside) < 2 or inside[-1].at <= inside[0].at:
        return None
    first, last = inside[0], inside[-1]
    return round(100 * (last.ticks - first.ticks) / tick / (last.at - first.at), 1)


def kb_per_connection(peak_kb: int, idle_kb: int, players: int) -> float:
    """Memory per connected player above the idle server, in KB."""
    return round(max(peak_kb - idle_kb, 0) / players, 2)


def us_per_guess(cpu_percent: float | None, guesses_per_s: float) -> float | None:
    """Server CPU time per reply in microseconds: the cost, whoever limited the rate."""
    if cpu_percent is None or not guesses_per_s:
        return None
    return round(cpu_percent / 100 / guesses_per_s * 1e6, 2)


# The report.


def pair_ratios(results: list[dict[str, Any]]) -> None:
    """Give each daemon result its ratios to the ceiling with the same N and range.

    ``ratio`` compares guesses per second, ``p99_ratio`` the p99 reply
    times, ``cost_ratio`` the server CPU time per guess (ceiling over
    daemon, so that 1.0 means as cheap as the ceiling): the one figure that
    holds when the load generator, not the server, set the pace.  The row
    with the default greeting wait is not compared.  A row with metrics on
    also gets ``metrics_cost_ratio``: its CPU per guess over that of the
    same row with metrics off (1.03 is 3% dearer).
    """
    ceilings = {(r["players"], r["range"]): r for r in results if r["server"] == "ceiling"}
    plain = {
        (r["players"], r["range"]): r
        for r in results
        if r["server"] == "daemon"
        and not r.get("default_wait")
        and not r.get("metrics")
        and r.get("store", "sqlite") == "sqlite"
        and r.get("daemon_options") != "default"
    }
    for r in results:
        off = plain.get((r["players"], r["range"]))
        if r.get("metrics") and off is not None:
            on_cost, off_cost = r.get("server_us_per_guess"), off.get("server_us_per_guess")
            if on_cost and off_cost:
                r["metrics_cost_ratio"] = round(on_cost / off_cost, 3)
        ceiling = ceilings.get((r["players"], r["range"]))
        if r["server"] != "daemon" or r.get("default_wait") or ceiling is None:
            continue
        if ceiling["guesses_per_s"]:
            r["ratio"] = round(r["guesses_per_s"] / ceiling["guesses_per_s"], 3)
        if r["reply_p99_ms"] and ceiling["reply_p99_ms"]:
            r["p99_ratio"] = round(r["reply_p99_ms"] / ceiling["reply_p99_ms"], 3)
        if r.get("server_us_per_guess") and ceiling.get("server_us_per_guess"):
            r["cost_ratio"] = round(ceiling["server_us_per_guess"] / r["server_us_per_guess"], 3)


def limited_by(result: dict[str, Any]) -> str:
    """What set the pace of a row: ``server``, ``loadgen``, ``rate limit`` or ``unclear``.

    A closed loop runs as fast as its slower side: a server below 90% CPU
    while the generator is above 85% was waiting for the generator.  A
    daemon at its default options reads each player at most
    `DEFAULT_MAX_RATE` lines a second: a row at 90% of that was paced by
    its own limit.
    """
    server, load = result.get("server_cpu_percent"), result.get("loadgen_cpu_percent")
    if result.get("daemon_options") == "default" and result.get("players"):
        per_player = result["guesses_per_s"] / result["players"]
        if per_player >= 0.9 * DEFAULT_MAX_RATE:
            return "rate limit"
    if server is not None and server >= 90:
        return "server"
    if load is not None and load >= 85:
        return "loadgen"
    return "unclear"


COLUMNS = [
    ("server", "label", "{}"),
    ("N", "players", "{}"),
    ("range", "range", "{}"),
    ("guesses/s", "guesses_per_s", "{:.0f}"),
    ("p50 ms", "reply_p50_ms", "{:.2f}"),
    ("p99 ms", "reply_p99_ms", "{:.2f}"),
    ("prompt p50/p99 ms", "prompt", "{}"),
    ("peak RSS MB", "peak_rss_mb", "{:.1f}"),
    ("KB/conn", "kb_per_connection", "{:.2f}"),
    ("CPU %", "server_cpu_percent", "{:.0f}"),
    ("CPU us/guess", "server_us_per_guess", "{:.1f}"),
    ("loadgen CPU %", "loadgen_cpu_percent", "{:.0f}"),
    ("errors", "errors", "{}"),
    ("x ceiling", "ratio", "{:.2f}x"),
    ("x p99", "p99_ratio", "{:.2f}x"),
    ("x cost", "cost_ratio", "{:.2f}x"),
]
FOOTNOTE = "* the load generator, not the server, set the pace of this row (server CPU < 90%)"
RATE_FOOTNOTE = (
    f"+ the daemon's own --max-rate {DEFAULT_MAX_RATE} (lines/s a player) set the pace of this row"
)


def _cell(result: dict[str, Any], key: str, fmt: str) -> str:
    if key == "prompt":
        p50, p99 = result.get("prompt_p50_ms"), result.get("prompt_p99_ms")
        return "-" if p50 is None else f"{p50:.1f}/{p99:.1f}"
    if key == "guesses_per_s":
        mark = {"loadgen": "*", "rate limit": "+"}.get(limited_by(result), "")
        return fmt.format(result[key]) + mark
    if key == "peak_rss_mb":
        value: Any = result["peak_rss_kb"] / 1024 if result.get("peak_rss_kb") else None
    else:
        value = result.get(key)
    return "-" if value is None else fmt.format(value)


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """The results as one plain-text table, columns aligned."""
    cells = [[title for title, _, _ in COLUMNS]]
    cells += [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(limited_by(r) == "loadgen" for r in results):
        lines.append(FOOTNOTE)
    if any(limited_by(r) == "rate limit" for r in results):
        lines.append(RATE_FOOTNOTE)
    return "\n".join(lines)


# The fixed offered load.


def saturated(result: dict[str, Any], share: float = SATURATION) -> bool:
    """Whether a fixed-load row carried less than ``share`` of the load offered to it."""
    offered = result.get("offered_per_s")
    return offered is not None and result["guesses_per_s"] < share * offered


def pair_in_order(results: Sequence[dict[str, Any]]) -> None:
    """Compare each daemon row with the ceiling row run just before it.

    Sets ``pair`` (1, 2, ... on both rows of a pair) and, on the daemon
    row, ``cpu_ratio``: its server CPU time per guess over the ceiling's
    (1.18x is 18% more CPU per guess), and ``cost_ratio``, the inverse, as
    in the matrix.  A daemon row with no ceiling before it is left alone.
    """
    ceiling: dict[str, Any] | None = None
    pairs = 0
    for r in results:
        if r["server"] == "ceiling":
            ceiling = r
            continue
        if ceiling is None:
            continue
        pairs += 1
        ceiling.setdefault("pair", pairs)
        r["pair"] = pairs
        mine, theirs = r.get("server_us_per_guess"), ceiling.get("server_us_per_guess")
        if mine and theirs:
            r["cpu_ratio"] = round(mine / theirs, 3)
            r["cost_ratio"] = round(theirs / mine, 3)
        ceiling = None


def fixed_load_summary(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per daemon variant: the ratios of its pairs, their median, the target, the verdict.

    Pairs where either row was saturated are left out of the median and
    counted apart: their CPU per guess is not at the offered load.
    """
    by_ceiling: dict[int, dict[str, Any]] = {
        r["pair"]: r for r in results if r["server"] == "ceiling" and "pair" in r
    }
    summary: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["server"] != "daemon" or "pair" not in r:
            continue
        options = r.get("daemon_options", "fast")
        entry = summary.setdefault(
            options,
            {
                "label": r["label"],
                "options": options,
                "ratios": [],
                "saturated_pairs": 0,
                "target": FIXED_LOAD_TARGETS.get(options),
            },
        )
        ceiling = by_ceiling.get(r["pair"])
        if saturated(r) or (ceiling is not None and saturated(ceiling)):
            entry["saturated_pairs"] += 1
        elif "cpu_ratio" in r:
            entry["ratios"].append(r["cpu_ratio"])
    for entry in summary.values():
        ratios = entry["ratios"]
        entry["median"] = round(statistics.median(ratios), 3) if ratios else None
        target = entry["target"]
        entry["met"] = (
            None if entry["median"] is None or target is None else (entry["median"] <= target)
        )
    return list(summary.values())


FIXED_COLUMNS = [
    ("pair", "pair", "{}"),
    ("server", "label", "{}"),
    ("offered/s", "offered_per_s", "{:.0f}"),
    ("guesses/s", "guesses_per_s", "{:.0f}"),
    ("p50 ms", "reply_p50_ms", "{:.2f}"),
    ("p99 ms", "reply_p99_ms", "{:.2f}"),
    ("CPU %", "server_cpu_percent", "{:.1f}"),
    ("CPU us/guess", "server_us_per_guess", "{:.2f}"),
    ("loadgen CPU %", "loadgen_cpu_percent", "{:.0f}"),
    ("errors", "errors", "{}"),
    ("x ceiling CPU/guess", "cpu_ratio", "{:.2f}x"),
]


def format_fixed_load(results: Sequence[dict[str, Any]]) -> str:
    """The fixed-load rows as a table, then each variant's median against its target."""
    cells = [[title for title, _, _ in FIXED_COLUMNS]]
    for r in results:
        row = []
        for _, key, fmt in FIXED_COLUMNS:
            value = r.get(key)
            text = "-" if value is None else fmt.format(value)
            if key == "guesses_per_s" and saturated(r):
                text += " saturated"
            row.append(text)
        cells.append(row)
    widths = [max(len(row[i]) for row in cells) for i in range(len(FIXED_COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for entry in fixed_load_summary(results):
        ratios = ", ".join(f"{x:.2f}x" for x in entry["ratios"]) or "none"
        median = "-" if entry["median"] is None else f"{entry['median']:.2f}x"
        line = f"{entry['label']}: median {median} the ceiling's CPU per guess (pairs: {ratios})"
        if entry["target"] is not None:
            verdict = {True: "met", False: "not met", None: "no figure"}[entry["met"]]
            line += f"; target at most {entry['target']:.2f}x: {verdict}"
        if entry["saturated_pairs"]:
            line += f"; {entry['saturated_pairs']} saturated pair(s) left out"
        lines.append(line)
    return "\n".join(lines)


# Running.


@dataclass
class Processes:
    """Every subprocess the driver started, so that all of them get killed."""

    running: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` in a session of its own (so Ctrl-C reaches only us)."""
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, to the process's group."""
        if proc in self.running:
            self.running.remove(proc)
        if proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        """Stop every process still running."""
        for proc in list(self.running):
            self.stop(proc)


def _pin(cpu: int, pin: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pin else []


def _twistd() -> list[str]:
    script = Path(sys.executable).with_name("twistd")
    return [str(script)] if script.exists() else ["twistd"]


def daemon_help() -> str:
    """What ``twistd guessgame --help`` prints."""
    done = subprocess.run(
        [*_twistd(), "guessgame", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    return done.stdout


def server_command(
    row: Row, fast: list[str], pin: bool, db: str | None = None, defaults: Sequence[str] = ()
) -> list[str]:
    """The command line that starts the server of ``row``.

    ``fast`` are the daemon's options for the usual rows, ``defaults`` for
    the rows at its default options; ``db`` is its --db, when not the default.
    """
    if row.server == "ceiling":
        return [
            *_pin(0, pin),
            sys.executable,
            "-m",
            "bench.ceiling",
            "--player",
            "tcp:0:interface=127.0.0.1",
            "--range",
            row.range_text,
        ]
    options = list(defaults) if row.options == "default" else list(fast)
    if row.default_wait and WAIT_OPTION in options:
        i = options.index(WAIT_OPTION)
        del options[i : i + 2]
    if row.server == "web":
        if WEB_OFF[0] in options:
            i = options.index(WEB_OFF[0])
            del options[i : i + 2]
        options += WEB_ON
    if row.metrics:
        options += ["--metrics", "tcp:0:interface=127.0.0.1"]
    return [
        *_pin(0, pin),
        *_twistd(),
        "-n",
        "--pidfile=",
        "guessgame",
        "--player",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
        "--range",
        row.range_text,
        *options,
        *(["--db", db] if db is not None else []),
    ]


def _wait_listening(
    proc: subprocess.Popen[Any],
    log: Path,
    timeout: float = 30.0,
    pattern: re.Pattern[str] = LISTENING,
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port = listening_port(log.read_text(errors="replace"), pattern)
        if port is not None:
            return port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the server did not start listening:\n{log.read_text(errors='replace')}")


def py_spy() -> str | None:
    """The py-spy next to this Python, or on PATH; None when not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profiler_command(pid: int, seconds: float, output: Path, rate: float = 200) -> list[str]:
    """py-spy sampling ``pid`` for ``seconds`` into collapsed stacks at ``output``."""
    return [
        py_spy() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        str(round(rate)),
        "--format",
        "raw",
        "--output",
        str(output),
    ]


def summarise_profile(collapsed: str, top: int = 15) -> tuple[list[tuple[float, str]], float]:
    """The functions with the most samples of their own, and guessgame's share.

    ``collapsed`` is py-spy's raw format: ``frame;frame;... COUNT`` a line,
    each frame ``function (file:line)``.  Lines of one function are added
    up.  The share counts the samples whose innermost project frame lies in
    ``guessgame/`` before any Twisted frame: the game's own cost.  Samples
    of a thread waiting on a condition (the store's idle thread pool, which
    py-spy does not always see as idle) cost no CPU and are left out.
    """
    own: dict[str, int] = {}
    total = game = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if frames[-1] in WAITING_FRAMES:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in reversed(frames):
            if "guessgame/" in frame or frame.endswith("(<string>)"):
                game += count
                break
            if "twisted/" in frame:
                break
    if not total:
        return [], 0.0
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return [(round(100 * n / total, 1), name) for name, n in ranked], round(100 * game / total, 1)


#: Innermost frames of a thread that waits, not works.
WAITING_FRAMES = frozenset({"Condition.wait (threading.py)", "wait (threading.py)"})


def show_profile(row: Row, path: Path) -> None:
    """Print the profile's top entries and keep its stacks beside the results."""
    if not path.exists():
        print("  (py-spy wrote no profile)", flush=True)
        return
    text = path.read_text(errors="replace")
    kept = ROOT / "bench" / f"profile-{row.slug}.txt"
    kept.write_text(text)
    ranked, game = summarise_profile(text)
    print(f"  profile ({kept.name}): guessgame's own code {game}% of samples; top self time:")
    for share, name in ranked:
        print(f"    {share:5.1f}%  {name}")


def run_row(
    row: Row,
    ns: argparse.Namespace,
    fast: list[str],
    procs: Processes,
    workdir: Path,
    *,
    db: str | None = None,
    defaults: Sequence[str] = (),
) -> dict[str, Any]:
    """Run one row: server up, load through its window, server down."""
    pin = not ns.no_pin
    log = workdir / f"{row.slug}-{row.default_wait}.log"
    with log.open("wb") as out:
        server = procs.start(
            server_command(row, fast, pin, db, defaults),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        port = _wait_listening(server, log)
        time.sleep(0.5)
        idle = read_sample(server.pid)
        if idle is None:
            raise RuntimeError("the server is gone before any load")

        def load_args(target: int, websocket: bool = False) -> list[str]:
            args = [
                *_pin(1, pin),
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(target),
                "--players",
                str(row.players),
                "--range",
                row.range_text,
                "--rate",
                str(ns.rate),
                "--settle",
                str(ns.settle),
                "--window",
                str(ns.window),
            ]
            if row.server == "ceiling":
                args.append("--endless")
            if websocket:
                args.append("--websocket")
            if row.interval:
                args += ["--interval", str(row.interval)]
            return args

        load = procs.start(load_args(port), stdout=subprocess.PIPE, cwd=ROOT)
        web_load: subprocess.Popen[Any] | None = None
        if row.server == "web":
            web_port = _wait_listening(server, log, pattern=WEB_LISTENING)
            web_load = procs.start(
                load_args(web_port, websocket=True), stdout=subprocess.PIPE, cwd=ROOT
            )
        profile_at = time.monotonic() + row.players / ns.rate + ns.settle
        profiler: subprocess.Popen[Any] | None = None
        samples = [idle]
        while load.poll() is None or (web_load is not None and web_load.poll() is None):
            sample = read_sample(server.pid)
            if sample is not None:
                samples.append(sample)
            if ns.profile and profiler is None and time.monotonic() >= profile_at:
                profiler = procs.start(
                    profiler_command(
                        server.pid, ns.window, workdir / "profile.txt", ns.profile_rate
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            time.sleep(0.2)
        if profiler is not None:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                pass
            procs.stop(profiler)
            show_profile(row, workdir / "profile.txt")
        assert load.stdout is not None
        output = load.stdout.read().decode()
        procs.stop(load)
        web_output = ""
        if web_load is not None:
            assert web_load.stdout is not None
            web_output = web_load.stdout.read().decode()
            procs.stop(web_load)
            if web_load.returncode != 0 or not web_output.strip():
                raise RuntimeError(
                    f"the WebSocket load generator failed (exit {web_load.returncode})"
                )
        exited = server.poll()
        if exited is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"  !! the server exited ({exited}) during the run; its log ends:", flush=True)
            print("\n".join("     " + line for line in tail), flush=True)
        if load.returncode != 0 or not output.strip():
            raise RuntimeError(f"the load generator failed (exit {load.returncode})")
        measured = json.loads(output.strip().splitlines()[-1])
    finally:
        procs.stop(server)
    if web_output:
        result = web_result_of(
            row, measured, json.loads(web_output.strip().splitlines()[-1]), samples, idle
        )
    else:
        result = result_of(row, measured, samples, idle)
    result["server_exited"] = exited
    result["profiled"] = bool(ns.profile)
    return result


def result_of(
    row: Row, measured: dict[str, Any], samples: Sequence[Sample], idle: Sample
) -> dict[str, Any]:
    """One row of the report from the load generator's output and the /proc samples."""
    peak = max(s.rss_kb for s in samples)
    cpu = cpu_percent(samples, measured["window_start"], measured["window_end"])
    row_result = {
        "server": row.server,
        "label": row.label,
        "metrics": row.metrics,
        "store": row.store,
        "players": row.players,
        "range": row.range_text,
        "default_wait": row.default_wait,
        "daemon_options": row.options if row.server == "daemon" else None,
        "interval_s": row.interval,
        "offered_per_s": measured.get("offered_per_s"),
        "guesses_per_s": measured["guesses_per_s"],
        "reply_p50_ms": measured["reply_ms"]["p50"],
        "reply_p99_ms": measured["reply_ms"]["p99"],
        "prompt_p50_ms": measured["prompt_ms"]["p50"],
        "prompt_p99_ms": measured["prompt_ms"]["p99"],
        "idle_rss_kb": idle.rss_kb,
        "peak_rss_kb": peak,
        "kb_per_connection": kb_per_connection(peak, idle.rss_kb, row.players),
        "server_cpu_percent": cpu,
        "server_us_per_guess": us_per_guess(cpu, measured["guesses_per_s"]),
        "loadgen_cpu_percent": measured["loadgen_cpu_percent"],
        "errors": measured["errors"],
        "error_kinds": measured["error_kinds"],
        "wins": measured["wins"],
        "notices": measured["notices"],
        "window_s": measured["window_s"],
        "guesses": measured["guesses"],
    }
    row_result["limited_by"] = limited_by(row_result)
    return row_result


def web_result_of(
    row: Row,
    tcp: dict[str, Any],
    ws: dict[str, Any],
    samples: Sequence[Sample],
    idle: Sample,
) -> dict[str, Any]:
    """The web row: both kinds' guesses together, and each kind's own figures."""
    start = min(tcp["window_start"], ws["window_start"])
    end = max(tcp["window_end"], ws["window_end"])
    both = dict(tcp)
    both.update(
        window_start=start,
        window_end=end,
        guesses_per_s=round(tcp["guesses_per_s"] + ws["guesses_per_s"], 1),
        guesses=tcp["guesses"] + ws["guesses"],
        errors=tcp["errors"] + ws["errors"],
        error_kinds={"tcp": tcp["error_kinds"], "websocket": ws["error_kinds"]},
        wins=tcp["wins"] + ws["wins"],
        notices=tcp["notices"] + ws["notices"],
        loadgen_cpu_percent=round(tcp["loadgen_cpu_percent"] + ws["loadgen_cpu_percent"], 1),
        reply_ms={"p50": ws["reply_ms"]["p50"], "p99": ws["reply_ms"]["p99"]},
        prompt_ms={"p50": ws["prompt_ms"]["p50"], "p99": ws["prompt_ms"]["p99"]},
    )
    result = result_of(row, both, samples, idle)
    result["kb_per_connection"] = kb_per_connection(
        result["peak_rss_kb"], idle.rss_kb, 2 * row.players
    )
    result["tcp_guesses_per_s"] = tcp["guesses_per_s"]
    result["ws_guesses_per_s"] = ws["guesses_per_s"]
    result["tcp_reply_p99_ms"] = tcp["reply_ms"]["p99"]
    result["ws_reply_p99_ms"] = ws["reply_ms"]["p99"]
    return result


def web_costs(results: list[dict[str, Any]]) -> list[str]:
    """Split each web row's CPU per guess by kind; one line of report each.

    A TCP guess is taken to cost what it cost in the daemon row with the
    same N and range; the rest of the CPU goes to the WebSocket guesses.
    """
    daemons = {
        (r["players"], r["range"]): r
        for r in results
        if r["server"] == "daemon"
        and not r.get("default_wait")
        and not r.get("metrics")
        and r.get("daemon_options") != "default"
    }
    lines = []
    for r in results:
        if r["server"] != "web":
            continue
        paired = daemons.get((r["players"], r["range"]))
        tcp_us = paired.get("server_us_per_guess") if paired else None
        cpu, ws_gps = r.get("server_cpu_percent"), r.get("ws_guesses_per_s")
        if tcp_us is not None and cpu is not None and ws_gps:
            spent = cpu / 100 * 1e6 - r["tcp_guesses_per_s"] * tcp_us
            r["tcp_us_per_guess"] = tcp_us
            r["ws_us_per_guess"] = round(max(spent, 0.0) / ws_gps, 2)
            r["ws_cost_ratio"] = round(r["ws_us_per_guess"] / tcp_us, 2)
        lines.append(
            f"web row: {r['players']} TCP + {r['players']} WebSocket players, range {r['range']}: "
            f"TCP {r['tcp_guesses_per_s']:.0f} guesses/s (p99 {r['tcp_reply_p99_ms']} ms), "
            f"WebSocket {r['ws_guesses_per_s']:.0f} guesses/s (p99 {r['ws_reply_p99_ms']} ms); "
            f"server CPU per guess: TCP {r.get('tcp_us_per_guess', '-')} us, "
            f"WebSocket {r.get('ws_us_per_guess', '-')} us "
            f"({r.get('ws_cost_ratio', '-')}x a TCP guess)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix, print the table, write the JSON lines."""
    ns = parse_args(argv)
    raise_file_limit()  # the servers inherit it
    pin = not ns.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    ns.no_pin = not pin
    if ns.profile and py_spy() is None:
        print("--profile needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    help_text = daemon_help()
    fast, skipped = supported_options(help_text, FAST_OPTIONS)
    defaults, _ = supported_options(help_text, DEFAULT_OPTIONS)
    fast += supported_options(help_text, [WEB_OFF])[0]
    # The defaults rows too: a web port changes nothing on the player port's path.
    defaults += supported_options(help_text, [WEB_OFF])[0]
    print(f"daemon options: {' '.join(fast) or '(none)'}")
    print(f"daemon, defaults: {' '.join(defaults) or '(none)'}")
    if skipped:
        print(f"skipped (this daemon has no such option yet): {' '.join(skipped)}")
    print("pinning: server on CPU 0, load generator on CPU 1" if pin else "pinning: off")
    if ns.fixed_load:
        players, span = ns.pair[0] if ns.pair else (FIXED_PLAYERS, WIDE)
        rows = fixed_load_rows(
            ns.rounds, ns.variant or ("default", "fast"), players, span, ns.interval
        )
        print(
            f"fixed load: {players} players, one guess each per {ns.interval * 1000:g} ms "
            f"= {players / ns.interval:.0f} guesses/s offered"
        )
    else:
        rows = matrix(ns.quick, ns.pair, ns.metrics)
    postgres = Postgres(ns.postgres)
    if any(r.store == "postgres" for r in rows) and not postgres.start():
        rows = [r for r in rows if r.store != "postgres"]
    procs = Processes()
    results: list[dict[str, Any]] = []
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        with tempfile.TemporaryDirectory(prefix="guessgame-bench-") as tmp:
            for n, row in enumerate(rows, 1):
                print(
                    f"[{n}/{len(rows)}] {row.label}, N={row.players}, range {row.range_text}",
                    flush=True,
                )
                db = postgres.new_database() if row.store == "postgres" else None
                result = run_row(row, ns, fast, procs, Path(tmp), db=db, defaults=defaults)
                result.update(run=started, options=fast, skipped_options=skipped, pinned=pin)
                results.append(result)
                print(
                    f"  -> {result['guesses_per_s']:.0f} guesses/s, "
                    f"p99 {result['reply_p99_ms']} ms, {result['errors']} errors",
                    flush=True,
                )
        wins_seconds = ns.wins_seconds if ns.wins_seconds is not None else (1 if ns.quick else 3)
        if wins_seconds > 0 and not ns.fixed_load:
            print("wins committed per second, many winners at once:", flush=True)
            wins_args = ["--seconds", str(wins_seconds)]
            if postgres.running:
                wins_args += ["--postgres", postgres.new_database()]
            else:
                wins_args += ["--postgres", ""]
            wins = procs.start(
                [sys.executable, "-m", "bench.wins", *wins_args],
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert wins.stdout is not None
            wins_table = wins.stdout.read().decode()
            wins.wait()
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        postgres.stop()
    print()
    if ns.fixed_load:
        pair_in_order(results)
        print(format_fixed_load(results))
        write_results(ns.output, results)
        print(f"\nJSON lines: {ns.output}")
        return 0
    pair_ratios(results)
    web_lines = web_costs(results)
    print(format_table(results))
    for line in web_lines:
        print(line)
    for r in results:
        if "metrics_cost_ratio" in r:
            print(
                f"metrics on, N={r['players']}: CPU per guess x{r['metrics_cost_ratio']:.3f} "
                "of metrics off"
            )
    if wins_seconds > 0:
        print()
        print(wins_table.rstrip())
    write_results(ns.output, results)
    print(f"\nJSON lines: {ns.output}")
    return 0


class Postgres:
    """The PostgreSQL server of the postgres rows: the one named, or a throwaway one."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self.server: Any = None
        self.running = False
        self._made = 0

    def start(self) -> bool:
        """Make sure a server runs; False (and why, printed) when none can."""
        if self.uri is not None:
            self.running = True
            return True
        from tests.pg import PostgresServer, unavailable

        why = unavailable()
        if why is not None:
            print(f"skipping the postgres rows: {why}", flush=True)
            return False
        # fsync on, as in production and as the SQLite rows commit.
        self.server = PostgresServer(durable=True)
        self.running = True
        return True

    def new_database(self) -> str:
        """A new, empty database's URI."""
        if self.server is not None:
            uri: str = self.server.new_database()
            return uri
        import psycopg2

        assert self.uri is not None
        self._made += 1
        name = f"guessgame_bench_{os.getpid()}_{self._made}"
        conn = psycopg2.connect(self.uri)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return self.uri.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        """Stop and remove a throwaway server."""
        if self.server is not None:
            self.server.destroy()
            self.server = None


def write_results(path: Path, results: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
