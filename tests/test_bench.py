"""The benchmark's own parts: arguments, statistics, the player logic, the report.

No timing is asserted anywhere: the figures depend on the machine.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from bench import flood, loadgen, profiles, run, wins
from bench.ceiling import CeilingFactory
from bench.top import Timed, seed_database
from guessgame.player.factory import PlayerFactory
from guessgame.store.sqlite import open_store
from tests.common import connect, make_game

ROOT = Path(__file__).resolve().parent.parent


# Load generator: arguments.


def test_loadgen_defaults() -> None:
    """Only --port is required; the rest has sensible defaults."""
    config = loadgen.parse_args(["--port", "4400"])
    assert (config.host, config.port, config.players) == ("127.0.0.1", 4400, 1000)
    assert (config.lo, config.hi, config.endless, config.sources) == (1, 30, False, 1)
    assert config.duration == config.ramp + config.settle + config.window


def test_loadgen_range_rate_and_sources() -> None:
    """--range is read as LO-HI, and 10000 players spread over two source addresses."""
    config = loadgen.parse_args(
        ["--port", "1", "--players", "10000", "--rate", "2000", "--range", "1-1000000000"]
    )
    assert (config.lo, config.hi) == (1, 1_000_000_000)
    assert config.ramp == 5.0
    assert config.sources == 2


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--port", "0"],
        ["--port", "70000"],
        ["--port", "1", "--players", "0"],
        ["--port", "1", "--rate", "-5"],
        ["--port", "1", "--window", "nan"],
        ["--port", "1", "--settle", "-1"],
        ["--port", "1", "--range", "30-1"],
        ["--port", "1", "--range", "one-two"],
        ["--port", "1", "--sources", "300"],
    ],
)
def test_loadgen_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong command line ends with a usage error, not a traceback."""
    with pytest.raises(SystemExit) as exc:
        loadgen.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "interval", "offered"),
    [([], 0.0, None), (["--interval", "0.05"], 0.05, 20000.0), (["--interval", "0"], 0.0, None)],
)
def test_loadgen_interval(argv: list[str], interval: float, offered: float | None) -> None:
    """--interval sets a fixed offered load of N/interval guesses a second; 0 is flat out."""
    config = loadgen.parse_args(["--port", "1", *argv])
    assert (config.interval, config.offered_per_s) == (interval, offered)


@pytest.mark.parametrize("value", ["-0.05", "nan", "inf", "x"])
def test_loadgen_rejects_a_bad_interval(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A negative, infinite or non-numeric --interval is a usage error."""
    with pytest.raises(SystemExit) as exc:
        loadgen.parse_args(["--port", "1", "--interval", value])
    assert exc.value.code == 2
    assert "--interval" in capsys.readouterr().err


def test_source_addresses() -> None:
    """One source is the kernel's choice; more are 127.0.0.2 onwards."""
    assert loadgen.source_addresses(1) == [None]
    assert loadgen.source_addresses(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


# Statistics.


def test_percentile_nearest_rank() -> None:
    """Percentiles are nearest-rank over sorted values."""
    values = [float(i) for i in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile(values, 0.1) == 1.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([1.0, 2.0, 3.0], 50) == 2.0


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], 0), ([1.0], 101)])
def test_percentile_rejects(values: list[float], q: float) -> None:
    """No values, or a percentile outside (0, 100], is an error."""
    with pytest.raises(ValueError):
        loadgen.percentile(values, q)


def test_summarise_in_milliseconds() -> None:
    """A summary sorts the durations and gives milliseconds."""
    summary = loadgen.summarise([0.003, 0.001, 0.002, 0.004])
    assert summary == {
        "count": 4,
        "mean": 2.5,
        "p50": 2.0,
        "p90": 4.0,
        "p99": 4.0,
        "max": 4.0,
    }


def test_summarise_nothing() -> None:
    """An empty summary has a zero count and no figures."""
    assert loadgen.summarise([]) == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
    }


# Load generator: one player's logic, on a fake transport.


class FakeTransport:
    """Records what a player writes and whether it aborted."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        """Record a write."""
        self.written.append(data)

    def abort(self) -> None:
        """Record the abort."""
        self.aborted = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop that is never run: timers are only registered."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_player(
    loop: asyncio.AbstractEventLoop, *args: str
) -> tuple[loadgen.LoadGenerator, loadgen.Player, FakeTransport, list[int]]:
    """A generator, one player connected to a fake transport, and its reconnections."""
    config = loadgen.parse_args(["--port", "1", "--players", "2", *args])
    gen = loadgen.LoadGenerator(config, loop, io.StringIO())
    reconnects: list[int] = []
    gen.connect = reconnects.append  # type: ignore[method-assign]
    player = loadgen.Player(gen, 1, 0.0)
    transport = FakeTransport()
    player.connection_made(transport)  # type: ignore[arg-type]
    gen.measuring = True
    return gen, player, transport, reconnects


def feed(player: loadgen.Player, data: bytes) -> None:
    """Hand ``data`` to the player, then send what it queued (as the loop would)."""
    player.data_received(data)
    player.gen.flush()


GREETING = b"You are now connected to the server!\r\nPick a number between 1-30\r\n"


def test_player_guesses_the_middle_after_the_prompt(loop: asyncio.AbstractEventLoop) -> None:
    """After the greeting and the prompt the first guess is the middle of the range."""
    gen, player, transport, _ = make_player(loop)
    feed(player, GREETING[:10])
    assert transport.written == []
    feed(player, GREETING[10:])
    assert transport.written == [b"15\n"]
    assert len(gen.prompt_times) == 1


def test_guesses_wait_for_the_flush(loop: asyncio.AbstractEventLoop) -> None:
    """Guesses go out together after the reads; a player gone by then sends nothing."""
    gen, player, transport, _ = make_player(loop)
    player.data_received(GREETING)
    assert transport.written == []
    gen.flush()
    assert transport.written == [b"15\n"]
    player.data_received(b"Too low! Pick a number between 1-30\r\n")
    player.connection_lost(None)
    gen.flush()
    assert transport.written == [b"15\n"]


def test_ws_frame_is_a_masked_text_frame() -> None:
    """A guess goes out as one masked text frame with an all-zero mask."""
    assert loadgen.ws_frame(b"15") == b"\x81\x82\x00\x00\x00\x0015"


def server_frame(text: bytes) -> bytes:
    """An unmasked server text frame."""
    if len(text) < 126:
        return b"\x81" + bytes((len(text),)) + text
    return b"\x81\x7e" + len(text).to_bytes(2, "big") + text


def test_websocket_player_handshakes_and_reads_frames(loop: asyncio.AbstractEventLoop) -> None:
    """A WebSocket player sends the handshake, then reads each text frame as a line."""
    config = loadgen.parse_args(["--port", "1", "--players", "2", "--websocket"])
    assert config.websocket
    gen = loadgen.LoadGenerator(config, loop, io.StringIO())
    player = loadgen.WsPlayer(gen, 1, 0.0)
    transport = FakeTransport()
    player.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written == [loadgen.WS_HANDSHAKE]
    answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    frames = server_frame(b"You are now connected to the server!") + server_frame(
        b"Pick a number between 1-30"
    )
    data = answer + frames
    for cut in (10, len(answer) + 1, len(answer) + 40):
        player.data_received(data[:cut])
        data = data[cut:]
    player.data_received(data)
    gen.flush()
    assert transport.written[-1] == loadgen.ws_frame(b"15")
    player.data_received(server_frame(b"Too low! Pick a number between 1-30"))
    gen.flush()
    assert transport.written[-1] == loadgen.ws_frame(b"23")
    assert gen.errors == {}


def test_websocket_player_refused_is_an_error(loop: asyncio.AbstractEventLoop) -> None:
    """A handshake answered with anything but 101 is counted and the player aborts."""
    config = loadgen.parse_args(["--port", "1", "--players", "2", "--websocket"])
    gen = loadgen.LoadGenerator(config, loop, io.StringIO())
    player = loadgen.WsPlayer(gen, 1, 0.0)
    transport = FakeTransport()
    player.connection_made(transport)  # type: ignore[arg-type]
    player.data_received(b"HTTP/1.1 403 Forbidden\r\n\r\nno")
    assert gen.errors == {"refused": 1} and transport.aborted


def test_player_binary_search(loop: asyncio.AbstractEventLoop) -> None:
    """Too low and too high narrow the search; every reply is timed."""
    gen, player, transport, _ = make_player(loop)
    feed(player, GREETING)
    feed(player, b"Too low! Pick a number between 1-30\r\n")
    feed(player, b"Too high! Pick a number between 1-30\r\n")
    assert transport.written == [b"15\n", b"23\n", b"19\n"]
    assert len(gen.latencies) == 2
    assert gen.errors == {}


def test_fixed_interval_holds_the_next_guess(loop: asyncio.AbstractEventLoop) -> None:
    """With --interval a quick reply's next guess waits for its timer, then goes out."""
    gen, player, transport, _ = make_player(loop, "--interval", "30")
    feed(player, GREETING)
    assert transport.written == [b"15\n"]  # the first guess goes out on the prompt
    feed(player, b"Too low! Pick a number between 1-30\r\n")
    assert transport.written == [b"15\n"]  # the next one waits for the interval
    assert player.outstanding
    timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert len(timers) == 1
    assert 29 < timers[0].when() - loop.time() <= 30
    timers[0]._run()
    gen.flush()
    assert transport.written == [b"15\n", b"23\n"]
    assert len(gen.latencies) == 1


def test_fixed_interval_keeps_to_its_grid(loop: asyncio.AbstractEventLoop) -> None:
    """A guess sent late by a busy loop does not push the next one back: the grid holds."""
    _, player, _, _ = make_player(loop, "--interval", "30")
    feed(player, GREETING)
    first = player.due
    assert first is not None
    feed(player, b"Too low! Pick a number between 1-30\r\n")
    assert player.due == first + 30
    (timer,) = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    timer._run()
    player.gen.flush()  # sent now, whenever its timer ran
    feed(player, b"Too low! Pick a number between 1-30\r\n")
    assert player.due == first + 60


def test_fixed_interval_sends_a_late_reply_s_guess_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A reply that comes after the interval has passed gets its next guess at once."""
    _, player, transport, _ = make_player(loop, "--interval", "0.05")
    feed(player, GREETING)
    assert player.due is not None
    player.due -= 1.0  # the reply comes a second after the guess
    feed(player, b"Too low! Pick a number between 1-30\r\n")
    assert transport.written == [b"15\n", b"23\n"]
    assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


def test_round_notice_restarts_the_search(loop: asyncio.AbstractEventLoop) -> None:
    """A round notice is no reply: the search restarts and the owed reply still counts."""
    gen, player, transport, _ = make_player(loop)
    feed(player, GREETING)
    feed(player, b"Too low! Pick a number between 1-30\r\n")  # 16-30, guessed 23
    feed(
        player, b"*** player9 won the round with 20. A new number between 1-30 has been picked.\r\n"
    )
    assert transport.written == [b"15\n", b"23\n"]  # still one guess outstanding
    feed(player, b"Too high! Pick a number between 1-30\r\n")  # new round: 1-22
    assert transport.written[-1] == b"11\n"
    assert (gen.notices, len(gen.latencies), gen.errors) == (1, 2, {})


def test_win_reconnects_when_the_server_closes(loop: asyncio.AbstractEventLoop) -> None:
    """Correct! is a timed reply and a win; the close that follows is no error."""
    gen, player, _, reconnects = make_player(loop)
    feed(player, GREETING)
    feed(player, b"Correct! The number was 15. You won in 1 guess!\r\n")
    player.connection_lost(None)
    assert (gen.wins, len(gen.latencies), gen.errors, reconnects) == (1, 1, {}, [1])


@pytest.mark.parametrize(("exc", "kind"), [(None, "closed"), (ConnectionResetError(), "reset")])
def test_lost_connection_is_an_error(
    loop: asyncio.AbstractEventLoop, exc: Exception | None, kind: str
) -> None:
    """A connection lost before a win counts as an error of its kind."""
    gen, player, _, _ = make_player(loop)
    feed(player, GREETING)
    player.connection_lost(exc)
    assert gen.errors == {kind: 1}


def test_unexpected_line_is_an_error(loop: asyncio.AbstractEventLoop) -> None:
    """A line that is neither a reply nor a notice counts, and the player drops out."""
    gen, player, transport, _ = make_player(loop)
    feed(player, GREETING)
    feed(player, b"Pick a number between 1-30\r\nToo low! Pick a number between 1-30\r\n")
    assert gen.errors == {"unexpected": 1}
    assert gen.examples == ["Pick a number between 1-30"]
    assert transport.aborted
    assert transport.written == [b"15\n"]


def test_greeting_must_come_first(loop: asyncio.AbstractEventLoop) -> None:
    """A prompt without the greeting before it is unexpected."""
    gen, player, _, _ = make_player(loop)
    feed(player, b"Pick a number between 1-30\r\n")
    assert gen.errors == {"unexpected": 1}


@pytest.mark.parametrize(("endless", "errors"), [(True, {}), (False, {"inconsistent": 1})])
def test_search_running_out(
    loop: asyncio.AbstractEventLoop, endless: bool, errors: dict[str, int]
) -> None:
    """Against the ceiling (--endless) a search that runs out starts over quietly."""
    gen, player, transport, _ = make_player(loop, *(["--endless"] if endless else []))
    feed(player, GREETING)
    for _ in range(5):  # 15, 23, 27, 29, 30: every one too low
        feed(player, b"Too low! Pick a number between 1-30\r\n")
    assert transport.written[-1] == b"15\n"
    assert gen.errors == errors


def test_timeout(loop: asyncio.AbstractEventLoop) -> None:
    """A reply owed for longer than --reply-timeout is a timeout error."""
    gen, player, transport, _ = make_player(loop, "--reply-timeout", "5")
    gen.players[1] = player
    feed(player, GREETING)
    gen._tick()
    assert gen.errors == {}
    player.since -= 6
    gen._tick()
    assert gen.errors == {"timeout": 1}
    assert transport.aborted
    assert "playing" in gen.out.getvalue()


def test_result(loop: asyncio.AbstractEventLoop) -> None:
    """The result has the rate over the window and the error total."""
    gen, _, _, _ = make_player(loop)
    gen.latencies = [0.001] * 50
    gen.window_start, gen.window_end = 100.0, 110.0
    gen.errors = {"refused": 2, "timeout": 1}
    result = gen.result()
    assert result["guesses_per_s"] == 5.0
    assert result["errors"] == 3
    assert (result["interval_s"], result["offered_per_s"]) == (0.0, None)
    assert result["reply_ms"]["p99"] == 1.0
    json.dumps(result)


# The ceiling.


def test_ceiling_sends_the_daemons_bytes() -> None:
    """The ceiling's greeting and reply are byte for byte the daemon's."""
    game = make_game(lo=1, hi=1_000_000_000)
    daemon = connect(PlayerFactory(game))
    ceiling = connect(CeilingFactory(1, 1_000_000_000))
    assert ceiling.transport.value() == daemon.transport.value()
    ceiling.transport.clear()
    assert ceiling.send(b"5\n7\r\n") == ["Too low! Pick a number between 1-1000000000"] * 2
    assert PlayerFactory(game).modern.texts.too_low_line == CeilingFactory(1, 1000000000).reply


# The driver.


def test_driver_arguments() -> None:
    """The driver defaults to the full matrix with 10 s windows."""
    ns = run.parse_args([])
    assert (ns.quick, ns.window, ns.settle, ns.no_pin) == (False, 10.0, 2.0, False)
    assert run.parse_args(["--quick", "--window", "3"]).window == 3.0
    with pytest.raises(SystemExit):
        run.parse_args(["--window", "0"])


def test_matrix() -> None:
    """Pairs are ceiling, limits-off and default daemon; then PostgreSQL, default wait, web."""
    quick = run.matrix(quick=True)
    assert [(r.label, r.players, r.range_text) for r in quick] == [
        ("ceiling", 1000, "1-1000000000"),
        ("daemon", 1000, "1-1000000000"),
        ("daemon, defaults", 1000, "1-1000000000"),
        ("daemon, postgres", 1000, "1-1000000000"),
        ("daemon, TCP+WebSocket", 1000, "1-1000000000"),
    ]
    full = run.matrix(quick=False)
    assert len(full) == 15
    assert [r.players for r in full[:12:3]] == [100, 1000, 10000, 1000]
    assert all(
        (a.server, b.server, b.options, c.server, c.options)
        == ("ceiling", "daemon", "fast", "daemon", "default")
        for a, b, c in zip(*[iter(full[:12])] * 3, strict=True)
    )
    assert [(r.players, r.range_text) for r in full if r.store == "postgres"] == [
        (1000, "1-1000000000")
    ]
    assert full[-2].default_wait and full[-2].range_text == "1-30"
    assert full[-2].options == "fast"
    assert not any(r.interval for r in full)
    assert (full[-1].server, full[-1].players, full[-1].range_text) == (
        "web",
        1000,
        "1-1000000000",
    )
    chosen = run.matrix(quick=False, pairs=[(50, (1, 30))])
    assert [(r.label, r.players, r.range_text) for r in chosen] == [
        ("ceiling", 50, "1-30"),
        ("daemon", 50, "1-30"),
        ("daemon, defaults", 50, "1-30"),
    ]


def test_fixed_load_rows() -> None:
    """Rounds of alternating pairs, ceiling then daemon, the variants taking turns."""
    rows = run.fixed_load_rows(rounds=2)
    assert [r.label for r in rows] == [
        "ceiling",
        "daemon, defaults",
        "ceiling",
        "daemon",
        "ceiling",
        "daemon, defaults",
        "ceiling",
        "daemon",
    ]
    assert {(r.players, r.range_text, r.interval) for r in rows} == {(1000, "1-1000000000", 0.05)}
    one = run.fixed_load_rows(rounds=3, variants=["fast"], players=10, span=(1, 30), interval=1)
    assert [(r.server, r.options, r.players, r.range_text, r.interval) for r in one] == [
        ("ceiling", "fast", 10, "1-30", 1),
        ("daemon", "fast", 10, "1-30", 1),
    ] * 3


def test_row_slugs_tell_the_rows_apart() -> None:
    """Logs and profiles are named per row: server, options, N and range."""
    rows = [
        run.Row("ceiling", 1000, 1, 30),
        run.Row("daemon", 1000, 1, 30),
        run.Row("daemon", 1000, 1, 30, options="default"),
        run.Row("daemon", 1000, 1, 30, default_wait=True),
    ]
    assert [r.slug for r in rows] == [
        "ceiling-1000-1-30",
        "daemon-1000-1-30",
        "daemon-defaults-1000-1-30",
        "daemon-default-wait-1000-1-30",
    ]


def test_fixed_load_arguments() -> None:
    """--fixed-load defaults to 3 rounds of both variants at 50 ms; bad values are refused."""
    ns = run.parse_args(["--fixed-load"])
    assert (ns.fixed_load, ns.interval, ns.rounds, ns.variant) == (True, 0.05, 3, [])
    ns = run.parse_args(["--fixed-load", "--variant", "default", "--rounds", "1"])
    assert (ns.variant, ns.rounds) == (["default"], 1)
    for bad in (
        ["--rounds", "0"],
        ["--variant", "other"],
        ["--interval", "0"],
        ["--profile-rate", "0"],
        ["--fixed-load", "--pair", "10:1-30", "--pair", "20:1-30"],
    ):
        with pytest.raises(SystemExit):
            run.parse_args(bad)


def test_metrics_rows() -> None:
    """--metrics follows each daemon row with the same row serving metrics."""
    assert run.parse_args(["--quick", "--metrics"]).metrics
    rows = run.matrix(quick=True, metrics=True)
    assert [(r.server, r.metrics, r.label) for r in rows] == [
        ("ceiling", False, "ceiling"),
        ("daemon", False, "daemon"),
        ("daemon", True, "daemon, metrics on"),
        ("daemon", False, "daemon, defaults"),
        ("daemon", False, "daemon, postgres"),
        ("web", False, "daemon, TCP+WebSocket"),
    ]
    command = run.server_command(rows[2], [], pin=False)
    assert command[-2:] == ["--metrics", "tcp:0:interface=127.0.0.1"]
    assert "--metrics" not in run.server_command(rows[1], [], pin=False)


def test_metrics_cost_ratio() -> None:
    """The metrics row's CPU per guess is compared with the same row's, metrics off."""
    common = {"players": 1000, "range": "1-30", "guesses_per_s": 1.0, "reply_p99_ms": 1.0}
    results: list[dict[str, Any]] = [
        {**common, "server": "ceiling", "server_us_per_guess": 10.0},
        {**common, "server": "daemon", "server_us_per_guess": 20.0, "metrics": False},
        {**common, "server": "daemon", "server_us_per_guess": 20.5, "metrics": True},
    ]
    run.pair_ratios(results)
    assert results[2]["metrics_cost_ratio"] == 1.025
    assert "metrics_cost_ratio" not in results[1]


def test_metrics_cost_ratio_is_against_the_limits_off_row() -> None:
    """The defaults row, run after the metrics row, is not its metrics-off baseline."""
    common = {"players": 1000, "range": "1-30", "guesses_per_s": 1.0, "reply_p99_ms": 1.0}
    results: list[dict[str, Any]] = [
        {**common, "server": "ceiling", "server_us_per_guess": 10.0},
        {**common, "server": "daemon", "server_us_per_guess": 20.0, "metrics": False},
        {**common, "server": "daemon", "server_us_per_guess": 20.5, "metrics": True},
        {**common, "server": "daemon", "server_us_per_guess": 30.0, "daemon_options": "default"},
    ]
    run.pair_ratios(results)
    assert results[2]["metrics_cost_ratio"] == 1.025


def test_pair_option() -> None:
    """--pair N:LO-HI picks the pairs to run; a malformed one is a usage error."""
    ns = run.parse_args(["--pair", "1000:1-30", "--pair", "10:5-9"])
    assert ns.pair == [(1000, (1, 30)), (10, (5, 9))]
    for bad in ("1000", "x:1-30", "0:1-30", "10:30-1"):
        with pytest.raises(SystemExit):
            run.parse_args(["--pair", bad])


HELP = """Usage: twistd [options] guessgame [options]
Options:
      --admin=             Endpoint the administrator connects to.
      --max-players=       At most this many players (0: no limit). [default: 10000]
      --classic-wait=      Seconds to wait for a classic Hello. [default: 0.1]
      --max-line=          Longest line accepted.
"""


def test_supported_options() -> None:
    """Options the daemon lists are passed; the others are named as skipped."""
    passed, skipped = run.supported_options(HELP, run.FAST_OPTIONS)
    assert passed == ["--max-players", "0", "--classic-wait", "0"]
    assert skipped == ["--max-per-ip", "--max-rate"]


def test_default_options_row_command() -> None:
    """The defaults row gets only the default options: limits and the wait stay on."""
    defaults, skipped = run.supported_options(HELP + "      --max-per-ip=\n", run.DEFAULT_OPTIONS)
    assert (defaults, skipped) == (["--max-per-ip", "0"], [])
    fast = ["--max-players", "0", "--classic-wait", "0"]
    row = run.Row("daemon", 1000, 1, 30, options="default")
    command = run.server_command(row, fast, pin=False, defaults=defaults)
    assert command[-4:] == ["--range", "1-30", "--max-per-ip", "0"]
    assert "--max-players" not in command and "--classic-wait" not in command
    limits_off = run.server_command(run.Row("daemon", 1000, 1, 30), fast, False, defaults=defaults)
    assert limits_off[-4:] == fast


def test_profiler_command_rate() -> None:
    """py-spy samples at the rate asked, for whole seconds, in the raw format."""
    command = run.profiler_command(42, 10.5, Path("/tmp/p.txt"), rate=1000)
    assert command[1:] == [
        "record",
        "--pid",
        "42",
        "--duration",
        "10",
        "--rate",
        "1000",
        "--format",
        "raw",
        "--output",
        "/tmp/p.txt",
    ]


def test_server_commands() -> None:
    """The daemon gets the fast options, except the wait in the default-wait row."""
    fast = ["--max-players", "0", "--classic-wait", "0"]
    daemon = run.server_command(run.Row("daemon", 100, 1, 30), fast, pin=True)
    assert daemon[:3] == ["taskset", "-c", "0"]
    assert daemon[-6:] == ["--range", "1-30", "--max-players", "0", "--classic-wait", "0"]
    assert "-n" in daemon and "--pidfile=" in daemon
    waiting = run.server_command(run.Row("daemon", 100, 1, 30, default_wait=True), fast, False)
    assert waiting[-4:] == ["--range", "1-30", "--max-players", "0"]
    ceiling = run.server_command(run.Row("ceiling", 100, 1, 30), fast, pin=False)
    assert ceiling[1:3] == ["-m", "bench.ceiling"] and "--max-players" not in ceiling
    uri = "postgresql://postgres@127.0.0.1:5432/bench"
    pg = run.server_command(run.Row("daemon", 100, 1, 30, store="postgres"), fast, False, uri)
    assert pg[-2:] == ["--db", uri]


def test_wins_table() -> None:
    """The wins table has a row per wave size and a column per store."""
    results = [
        {"store": "sqlite", "winners": 1, "wins_per_s": 500.0, "wave_ms_p50": 0.7},
        {"store": "postgres", "winners": 1, "wins_per_s": 150.0, "wave_ms_p50": 6.3},
        {"store": "sqlite", "winners": 100, "wins_per_s": 4000.0, "wave_ms_p50": 25.0},
    ]
    lines = wins.format_table(results).splitlines()
    assert lines[0].split("  ")[0] == "winners at once"
    assert lines[2].split() == ["1", "500", "(0.7)", "150", "(6.3)"]
    assert lines[3].split() == ["100", "4000", "(25.0)", "-"]


def test_web_row_turns_the_web_port_on() -> None:
    """Only the web row listens on a web port; the other daemon rows keep it off."""
    fast = ["--max-players", "0", "--web", "off"]
    daemon = run.server_command(run.Row("daemon", 100, 1, 30), fast, pin=False)
    assert daemon[-2:] == ["--web", "off"]
    web = run.server_command(run.Row("web", 100, 1, 30), fast, pin=False)
    assert web[-4:] == ["--max-players", "0", "--web", "tcp:0:interface=127.0.0.1"]
    assert "off" not in web
    assert run.Row("web", 100, 1, 30).label == "daemon, TCP+WebSocket"
    log = "web port listening on 127.0.0.1:4402: the game page is at http://127.0.0.1:4402/\n"
    assert run.listening_port(log, run.WEB_LISTENING) == 4402
    assert run.listening_port(log) is None


def test_web_costs_split_cpu_by_kind() -> None:
    """A TCP guess costs what it did in the daemon row; the rest is the WebSocket guesses'."""
    results = [
        {"server": "daemon", "players": 1000, "range": "1-30", "server_us_per_guess": 40.0},
        {
            "server": "web",
            "players": 1000,
            "range": "1-30",
            "server_cpu_percent": 100.0,
            "tcp_guesses_per_s": 10000.0,
            "ws_guesses_per_s": 5000.0,
            "tcp_reply_p99_ms": 5.0,
            "ws_reply_p99_ms": 9.0,
        },
    ]
    (line,) = run.web_costs(results)
    # 1 s of CPU a second: 10000 x 40 us for TCP, the other 0.6 s over 5000 WebSocket guesses.
    assert results[1]["ws_us_per_guess"] == 120.0
    assert results[1]["ws_cost_ratio"] == 3.0
    assert "WebSocket 120.0 us (3.0x a TCP guess)" in line


@pytest.mark.parametrize(
    ("text", "port"),
    [
        (
            "2026-11-26T10:09:06+0000 [guessgame.tap#info] player port listening on "
            "127.0.0.1:45905\n",
            45905,
        ),
        ("player port listening on [::1]:4400\n", 4400),
        ("admin port listening on 127.0.0.1:4401\n", None),
        ("", None),
    ],
)
def test_listening_port(text: str, port: int | None) -> None:
    """The player port is read from the log line the daemon and the ceiling print."""
    assert run.listening_port(text) == port


def test_parse_proc() -> None:
    """CPU ticks are utime + stime; RSS is VmRSS in KB."""
    stat = "1234 (twistd (x) y) S 1 1234 1234 0 -1 4194560 9000 0 0 0 250 50 0 0 20 0 1 0\n"
    assert run.parse_proc_stat(stat) == 300
    assert run.parse_rss_kb("Name:\ttwistd\nVmRSS:\t   35196 kB\nThreads: 1\n") == 35196
    with pytest.raises(ValueError):
        run.parse_rss_kb("Name:\tzombie\n")


def test_cpu_percent() -> None:
    """CPU % is the ticks used between the samples nearest the window's ends."""
    samples = [run.Sample(at, ticks, 1000) for at, ticks in [(0, 0), (1, 50), (3, 150), (9, 999)]]
    assert run.cpu_percent(samples, 0.5, 3.5, tick=100) == 50.0
    assert run.cpu_percent(samples, 0.5, 1.5, tick=100) is None


def test_memory_and_cost() -> None:
    """KB per connection is the growth over idle shared out; never negative."""
    assert run.kb_per_connection(45_000, 35_000, 1000) == 10.0
    assert run.kb_per_connection(30_000, 35_000, 1000) == 0.0
    assert run.us_per_guess(50.0, 25_000) == 20.0
    assert run.us_per_guess(None, 25_000) is None


def result(server: str, players: int, gps: float, p99: float, **extra: Any) -> dict[str, Any]:
    """A driver result with the fields the report reads."""
    return {
        "server": server,
        "label": server,
        "players": players,
        "range": "1-30",
        "guesses_per_s": gps,
        "reply_p50_ms": p99 / 2,
        "reply_p99_ms": p99,
        "prompt_p50_ms": 1.0,
        "prompt_p99_ms": 2.0,
        "peak_rss_kb": 40960,
        "kb_per_connection": 2.5,
        "server_cpu_percent": 99.0,
        "server_us_per_guess": 19.8,
        "loadgen_cpu_percent": 60.0,
        "errors": 0,
        **extra,
    }


def test_pair_ratios() -> None:
    """A daemon row is compared with the ceiling row of the same N only."""
    rows = [
        result("ceiling", 100, 10_000, 4.0, server_us_per_guess=12.0),
        result("daemon", 100, 9_000, 5.0, server_us_per_guess=15.0),
        result("ceiling", 1000, 20_000, 4.0),
        result("daemon", 10, 9_000, 5.0),
        result("daemon", 100, 9_000, 5.0, default_wait=True),
    ]
    run.pair_ratios(rows)
    assert (rows[1]["ratio"], rows[1]["p99_ratio"], rows[1]["cost_ratio"]) == (0.9, 1.25, 0.8)
    assert not {"ratio", "p99_ratio", "cost_ratio"} & (rows[0].keys() | rows[3].keys())
    assert "ratio" not in rows[4]


@pytest.mark.parametrize(
    ("options", "gps", "by"),
    [
        ("default", 9_500.0, "rate limit"),
        ("default", 8_900.0, "server"),
        ("fast", 9_500.0, "server"),
    ],
)
def test_limited_by_the_rate_limit(options: str, gps: float, by: str) -> None:
    """A defaults row at 90% of 100 lines/s a player was paced by the daemon's --max-rate."""
    row = result("daemon", 100, gps, 1.0, daemon_options=options)
    assert run.limited_by(row) == by


def test_format_table_marks_rate_limited_rows() -> None:
    """A row the rate limit paced gets a plus and the table its footnote."""
    row = result("daemon", 100, 10_000, 4.0, daemon_options="default")
    lines = run.format_table([row]).splitlines()
    assert lines[2].split()[3] == "10000+"
    assert lines[-1] == run.RATE_FOOTNOTE


@pytest.mark.parametrize(
    ("server", "load", "by"),
    [
        (99.0, 50.0, "server"),
        (95.0, 99.0, "server"),
        (70.0, 90.0, "loadgen"),
        (70.0, 60.0, "unclear"),
        (None, None, "unclear"),
    ],
)
def test_limited_by(server: float | None, load: float | None, by: str) -> None:
    """A busy server set the pace; an idle server with a busy generator did not."""
    row = result("ceiling", 10, 1.0, 1.0, server_cpu_percent=server, loadgen_cpu_percent=load)
    assert run.limited_by(row) == by


def test_format_table() -> None:
    """One header, a rule, one aligned line a row; missing figures show as -."""
    rows = [result("ceiling", 1000, 20_000, 4.0), result("daemon", 1000, 18_000, 4.4)]
    run.pair_ratios(rows)
    rows[1]["server_cpu_percent"] = None
    lines = run.format_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:3] == ["server", "N", "range"]
    assert set(lines[1]) == {"-", " "}
    assert len({len(line) for line in lines[:2]}) == 1
    assert lines[2].split()[:4] == ["ceiling", "1000", "1-30", "20000"]
    assert lines[2].split()[-3:] == ["-", "-", "-"]
    assert lines[3].split()[-3:] == ["0.90x", "1.10x", "1.00x"]
    assert " - " in lines[3]


def test_format_table_marks_loadgen_bound_rows() -> None:
    """A row the load generator limited gets a star and the table a footnote."""
    row = result("ceiling", 100, 20_000, 4.0, server_cpu_percent=60.0, loadgen_cpu_percent=95.0)
    lines = run.format_table([row]).splitlines()
    assert lines[2].split()[3] == "20000*"
    assert lines[-1] == run.FOOTNOTE


def fixed(server: str, gps: float, us: float | None, options: str = "fast") -> dict[str, Any]:
    """A fixed-load driver result: 20,000 guesses a second offered."""
    label = "daemon, defaults" if options == "default" else server
    return result(
        server,
        1000,
        gps,
        1.0,
        label=label,
        daemon_options=options if server == "daemon" else None,
        offered_per_s=20_000.0,
        server_us_per_guess=us,
    )


@pytest.mark.parametrize(
    ("gps", "offered", "is_saturated"),
    [(19_990.0, 20_000.0, False), (19_400.0, 20_000.0, False), (19_300.0, 20_000.0, True)],
)
def test_saturated(gps: float, offered: float, is_saturated: bool) -> None:
    """A row that carried under 97% of the offered load is saturated."""
    row = result("ceiling", 1000, gps, 1.0, offered_per_s=offered)
    assert run.saturated(row) is is_saturated


def test_flat_out_rows_are_never_saturated() -> None:
    """A flat-out row offers no fixed rate, so it cannot fall short of one."""
    assert not run.saturated(result("ceiling", 1000, 10.0, 1.0, offered_per_s=None))
    assert not run.saturated(result("ceiling", 1000, 10.0, 1.0))


def test_pair_in_order() -> None:
    """Each daemon row is compared with the ceiling run just before it, not another."""
    rows = [
        fixed("daemon", 20_000, 30.0),  # no ceiling before it
        fixed("ceiling", 20_000, 20.0),
        fixed("daemon", 20_000, 26.0, "default"),
        fixed("ceiling", 20_000, 25.0),
        fixed("daemon", 20_000, 30.0),
        fixed("daemon", 20_000, 99.0),  # its ceiling is taken
    ]
    run.pair_in_order(rows)
    assert [r.get("pair") for r in rows] == [None, 1, 1, 2, 2, None]
    assert (rows[2]["cpu_ratio"], rows[2]["cost_ratio"]) == (1.3, 0.769)
    assert (rows[4]["cpu_ratio"], rows[4]["cost_ratio"]) == (1.2, 0.833)
    assert "cpu_ratio" not in rows[0] and "cpu_ratio" not in rows[5]


def test_fixed_load_summary_takes_the_median_of_each_variant() -> None:
    """The median of each variant's pairs is set against its target."""
    rows = []
    for ceiling_us, default_us, fast_us in [(20.0, 26.0, 22.0), (20.0, 22.0, 22.4), (10, 12, 20)]:
        rows += [
            fixed("ceiling", 20_000, ceiling_us),
            fixed("daemon", 20_000, default_us, "default"),
            fixed("ceiling", 20_000, ceiling_us),
            fixed("daemon", 20_000, fast_us),
        ]
    run.pair_in_order(rows)
    default, fast = run.fixed_load_summary(rows)
    assert (default["label"], default["ratios"], default["median"]) == (
        "daemon, defaults",
        [1.3, 1.1, 1.2],
        1.2,
    )
    assert (default["target"], default["met"]) == (pytest.approx(1 / 0.85), False)
    assert (fast["label"], fast["ratios"], fast["median"]) == ("daemon", [1.1, 1.12, 2.0], 1.12)
    assert (fast["target"], fast["met"]) == (pytest.approx(1 / 0.90), False)
    assert default["saturated_pairs"] == fast["saturated_pairs"] == 0


def test_fixed_load_summary_leaves_saturated_pairs_out() -> None:
    """A pair where either side fell short of the offered load is counted apart."""
    rows = [
        fixed("ceiling", 20_000, 20.0),
        fixed("daemon", 20_000, 21.0),
        fixed("ceiling", 12_000, 20.0),  # saturated ceiling
        fixed("daemon", 20_000, 30.0),
        fixed("ceiling", 20_000, 20.0),
        fixed("daemon", 15_000, 40.0),  # saturated daemon
    ]
    run.pair_in_order(rows)
    (summary,) = run.fixed_load_summary(rows)
    assert (summary["ratios"], summary["median"], summary["met"]) == ([1.05], 1.05, True)
    assert summary["saturated_pairs"] == 2


def test_fixed_load_summary_with_no_usable_pair() -> None:
    """With every pair saturated there is no median and no verdict."""
    rows = [fixed("ceiling", 5_000, 20.0), fixed("daemon", 20_000, 21.0, "default")]
    run.pair_in_order(rows)
    (summary,) = run.fixed_load_summary(rows)
    assert (summary["median"], summary["met"], summary["saturated_pairs"]) == (None, None, 1)


def test_format_fixed_load() -> None:
    """A line a row, saturated rows marked, then each variant's median and verdict."""
    rows = [
        fixed("ceiling", 20_000, 20.0),
        fixed("daemon", 20_000, 23.0, "default"),
        fixed("ceiling", 20_000, 20.0),
        fixed("daemon", 15_000, 21.0),
    ]
    run.pair_in_order(rows)
    lines = run.format_fixed_load(rows).splitlines()
    assert lines[0].split()[:3] == ["pair", "server", "offered/s"]
    assert len(lines) == 2 + 4 + 1 + 2
    assert lines[3].split()[-1] == "1.15x"
    assert "15000 saturated" in lines[5]
    assert lines[-2] == (
        "daemon, defaults: median 1.15x the ceiling's CPU per guess (pairs: 1.15x); "
        "target at most 1.18x: met"
    )
    assert lines[-1] == (
        "daemon: median - the ceiling's CPU per guess (pairs: none); "
        "target at most 1.11x: no figure; 1 saturated pair(s) left out"
    )


def test_result_of_names_the_offered_load() -> None:
    """A row's result carries its daemon options and the load offered to it."""
    measured = {
        "guesses_per_s": 19_990.0,
        "reply_ms": {"p50": 0.3, "p99": 1.2},
        "prompt_ms": {"p50": 1.0, "p99": 2.0},
        "loadgen_cpu_percent": 40.0,
        "errors": 0,
        "error_kinds": {},
        "wins": 3,
        "notices": 10,
        "window_s": 10.0,
        "guesses": 199_900,
        "window_start": 1.0,
        "window_end": 11.0,
        "offered_per_s": 20_000.0,
    }
    samples = [run.Sample(0.5, 0, 1000), run.Sample(1.0, 0, 2000), run.Sample(11.0, 500, 3000)]
    row = run.Row("daemon", 1000, 1, 30, options="default", interval=0.05)
    got = run.result_of(row, measured, samples, samples[0])
    assert (got["label"], got["daemon_options"], got["interval_s"]) == (
        "daemon, defaults",
        "default",
        0.05,
    )
    assert (got["offered_per_s"], got["server_cpu_percent"]) == (20_000.0, 50.0)
    assert got["server_us_per_guess"] == 25.01  # 50% over 19,990 guesses a second
    ceiling = run.result_of(run.Row("ceiling", 1000, 1, 30), measured, samples, samples[0])
    assert ceiling["daemon_options"] is None


PROFILE = """\
run (twisted/app.py:10);doRead (twisted/internet/tcp.py:278) 6
run (twisted/app.py:10);doRead (twisted/internet/tcp.py:285);lineReceived (guessgame/player.py:90) 3
run (twisted/app.py:10);doRead (twisted/internet/tcp.py:285);lineReceived (guessgame/player.py:97) 2
run (twisted/app.py:10);lineReceived (guessgame/player.py:97);write (twisted/abstract.py:400) 4
run (twisted/app.py:10);guess (guessgame/game.py:5);__init__ (<string>:3) 5
not a stack line
"""


def test_summarise_profile() -> None:
    """Self time is added up per function; the game's share stops at Twisted frames."""
    ranked, game = run.summarise_profile(PROFILE, top=3)
    assert ranked == [
        (30.0, "doRead (twisted/internet/tcp.py)"),
        (25.0, "lineReceived (guessgame/player.py)"),
        (25.0, "__init__ (<string>)"),
    ]
    assert game == 50.0
    assert run.summarise_profile("") == ([], 0.0)


def test_summarise_profile_leaves_waiting_threads_out() -> None:
    """Samples of a thread waiting on a condition count for nothing: they cost no CPU."""
    waiting = (
        "_bootstrap (threading.py:1002);work (twisted/_threads/_threadworker.py:75);"
        "Condition.wait (threading.py:327) 80\n"
    )
    assert run.summarise_profile(PROFILE + waiting, top=3) == run.summarise_profile(PROFILE, 3)
    assert run.summarise_profile(waiting) == ([], 0.0)


CEILING_STACKS = """\
run (/v/lib/python3.11/site-packages/twisted/internet/base.py:697);doRead (twisted/tcp.py:285) 6
run (twisted/internet/base.py:698);lineReceived (bench/ceiling.py:40) 2
_bootstrap (threading.py:1002);Condition.wait (threading.py:327) 50
"""
DAEMON_STACKS = """\
run (twisted/internet/base.py:697);doRead (twisted/tcp.py:285) 6
run (twisted/internet/base.py:697);doRead (twisted/tcp.py:285);guess (guessgame/game.py:9) 4
"""


def test_read_profile() -> None:
    """Stacks are counted per innermost frame and per frame anywhere, waits left out."""
    profile = profiles.read_profile(CEILING_STACKS)
    assert profile.total == 8
    assert profile.own == {
        "doRead (twisted/tcp.py)": 6,
        "lineReceived (bench/ceiling.py)": 2,
    }
    assert profile.inclusive["run (twisted/internet/base.py)"] == 8


def test_compare_profiles_in_us_per_guess() -> None:
    """Each function's share of a row's busy samples times its CPU per guess, most extra first."""
    ceiling = profiles.read_profile(CEILING_STACKS)
    daemon = profiles.read_profile(DAEMON_STACKS)
    rows = profiles.compare(ceiling, 8.0, daemon, 10.0)
    assert rows == [
        (4.0, 0.0, "guess (guessgame/game.py)"),
        (6.0, 6.0, "doRead (twisted/tcp.py)"),
        (0.0, 2.0, "lineReceived (bench/ceiling.py)"),
    ]
    assert profiles.compare(profiles.Profile(), 1.0, daemon, 1.0) == []


def test_write_results(tmp_path: Path) -> None:
    """One JSON object a line, read back as written."""
    rows = [result("ceiling", 10, 1.0, 1.0), result("daemon", 10, 1.0, 1.0)]
    path = tmp_path / "out" / "results.jsonl"
    run.write_results(path, rows)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


# End to end: the load generator against the real ceiling, briefly.


def test_loadgen_against_the_ceiling() -> None:
    """A short run against the ceiling plays without errors and stops by itself."""
    ceiling = subprocess.Popen(
        [sys.executable, "-m", "bench.ceiling", "--range", "1-30"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ceiling.stdout is not None
        port = run.listening_port(ceiling.stdout.readline())
        assert port is not None
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--players",
                "5",
                "--range",
                "1-30",
                "--endless",
                "--settle",
                "0",
                "--window",
                "0.5",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        ceiling.terminate()
        ceiling.wait(10)
        if ceiling.stdout is not None:
            ceiling.stdout.close()
    measured = json.loads(done.stdout)
    assert measured["errors"] == 0, measured
    assert measured["guesses"] > 0
    assert measured["prompt_ms"]["count"] == 5


# The top benchmark's parts.


def test_top_bench_seeds_a_database_the_daemon_accepts(tmp_path: Path) -> None:
    """The seeded leaderboard passes the start-up checks and holds every name."""
    db = tmp_path / "board.sqlite3"
    seed_database(db, 500)
    # What the daemon's start loads, without starting the writer.
    snapshot = open_store(str(db), Clock())._snapshot
    assert len(snapshot.leaderboard) == 500
    assert snapshot.counters.wins == sum(e.wins for e in snapshot.leaderboard)


def test_top_bench_row_reports_what_the_player_saw() -> None:
    """Replies out of sent, median, p99 and max in ms, top answers, CPU."""
    timed = Timed(sent=4, replies=[0.001, 0.003, 0.002], tops=7, cpu=12.5)
    assert timed.row() == ["3/4", "2.0", "3.0", "3.0", "7", "12.5"]
    assert Timed(sent=1, replies=[], tops=0, cpu=None).row()[:2] == ["0/1", "-"]
    assert Timed(sent=None, replies=[], tops=3, cpu=99.0).row() == [
        "no greeting",
        "-",
        "-",
        "-",
        "3",
        "99.0",
    ]


@pytest.mark.parametrize("kind", ["noline", "lines", "options"])
def test_flood_payload_is_telnet_commands_only(kind: str) -> None:
    """The flood is telnet commands and line ends only; its lines stay within max-line."""
    payload = flood.flood_payload(kind)
    assert 60_000 < len(payload) <= 65536
    commands = payload.replace(b"\xff\xf1", b"").replace(b"\xff\xfd\x01", b"")
    assert commands.replace(b"\n", b"") == b""
    if kind == "noline":
        assert b"\n" not in payload
    else:
        assert max(len(line) for line in payload.split(b"\n")) <= 512


def test_web_costs_take_the_limits_off_row_for_a_tcp_guess() -> None:
    """The web row runs with the limits off: its TCP guesses cost what the limits-off row's did."""
    common = {"players": 1000, "range": "1-30", "guesses_per_s": 1.0, "reply_p99_ms": 1.0}
    results: list[dict[str, Any]] = [
        {**common, "server": "daemon", "server_us_per_guess": 20.0, "daemon_options": "fast"},
        {**common, "server": "daemon", "server_us_per_guess": 30.0, "daemon_options": "default"},
        {
            **common,
            "server": "web",
            "server_cpu_percent": 50.0,
            "tcp_guesses_per_s": 10_000.0,
            "ws_guesses_per_s": 5_000.0,
            "tcp_reply_p99_ms": 1.0,
            "ws_reply_p99_ms": 2.0,
        },
    ]
    run.web_costs(results)
    assert (results[2]["tcp_us_per_guess"], results[2]["ws_us_per_guess"]) == (20.0, 60.0)
