"""The command line and service tree of the operations options."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.python import usage

from guessgame.daemon import Listener
from guessgame.ops.eventlog import EventLog
from guessgame.ops.metrics import Metrics, MetricsSite
from guessgame.ops.systemd import ReadyNotifier
from guessgame.tap import Options, makeService

LOCAL = (
    "--player", "tcp:0:interface=127.0.0.1",
    "--admin", "tcp:0:interface=127.0.0.1",
    "--web", "off",
)  # fmt: skip


def parse(*args: str) -> Options:
    """Options parsed from ``args``."""
    options = Options()
    options.parseOptions(list(args))
    return options


def test_operations_are_off_by_default() -> None:
    """No metrics, no event log, no client certificates unless asked for."""
    options = parse()
    assert (options["metrics"], options["event-log"], options["admin-ca"]) == (None, None, None)
    assert parse("--metrics", "off")["metrics"] is None


def test_help_describes_the_operations_options() -> None:
    """--help lists --metrics, --event-log and --admin-ca."""
    text = str(Options())
    for name in ("--metrics=", "--event-log=", "--admin-ca="):
        assert name in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "nonsense:1"], "^--metrics: 'nonsense:1' is not an endpoint string"),
        (
            ["--event-log", "/nonexistent/folder/events.jsonl"],
            "^--event-log: cannot append to /nonexistent/folder/events.jsonl: "
            "No such file or directory$",
        ),
    ],
    ids=["bad metrics endpoint", "event log folder missing"],
)
def test_bad_operations_options(args: list[str], message: str) -> None:
    """A bad --metrics or --event-log is a UsageError that says what to fix."""
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)


def test_service_tree_with_operations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event log starts before the game, metrics get a listener, the notifier comes last."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@guessgame-test-none")
    options = parse(
        *LOCAL,
        "--db", ":memory:",
        "--metrics", "tcp:0:interface=127.0.0.1",
        "--event-log", str(tmp_path / "events.jsonl"),
    )  # fmt: skip
    top = makeService(options, reactor=Clock())
    services = list(top)
    names = [s.name for s in services]
    assert names.index("event-log") < names.index("store")
    assert isinstance(top.getServiceNamed("event-log"), EventLog)
    metrics = top.getServiceNamed("metrics-registry")
    game = top.getServiceNamed("store").getServiceNamed("game")
    assert isinstance(metrics, Metrics) and metrics.game is game
    listener = top.getServiceNamed("metrics")
    assert isinstance(listener, Listener) and isinstance(listener.factory, MetricsSite)
    assert isinstance(services[-1], ReadyNotifier)


def contents(parent: MultiService) -> list[object]:
    """The names of ``parent``'s services in start order, a child's own list after it."""
    names: list[object] = []
    for child in parent:
        names.append(child.name)
        if isinstance(child, MultiService):
            names.append(contents(child))
    return names


def test_service_tree_is_the_table_of_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every long-lived part is a named service under its parent, in start order."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@guessgame-test-none")
    options = parse(
        *LOCAL,
        "--db", str(tmp_path / "game.sqlite3"),
        "--metrics", "tcp:0:interface=127.0.0.1",
        "--event-log", str(tmp_path / "events.jsonl"),
    )  # fmt: skip
    top = makeService(options, reactor=Clock())
    assert contents(top) == [
        "file-limit",
        "event-log",
        "store",
        ["flush", "game"],
        "player",
        "admin",
        "metrics-registry",
        "metrics",
        "announcement",
        "systemd-notify",
    ]


def test_service_tree_without_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default none of the operations services is in the tree."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    names = {s.name for s in makeService(parse(*LOCAL, "--db", ":memory:"), reactor=Clock())}
    assert names.isdisjoint({"event-log", "metrics-registry", "metrics", "systemd-notify"})
