"""The event log: JSON Lines of every game event, and SIGHUP reopening the file."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from guessgame.admin.protocol import AdminFactory
from guessgame.events import Kicked, NewRound, Said
from guessgame.game import Game
from guessgame.ops.eventlog import EventLog, format_time
from guessgame.player.factory import PlayerFactory
from tests.common import FakeLink, FakeObserver, connect, make_game, secret_of
from tests.e2e import WAIT, Daemon, play_to_win

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's lines, each parsed as one JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


def without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with their ``time`` checked and dropped."""
    for record in records:
        assert TIME.fullmatch(record.pop("time")), record
    return records


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1795695871.25, "2026-11-26T12:24:31.250Z"),
        (59.9999, "1970-01-01T00:00:59.999Z"),
    ],
)
def test_format_time(seconds: float, text: str) -> None:
    """Times are UTC ISO 8601 with milliseconds and a Z."""
    assert format_time(seconds) == text


def test_scripted_game_is_logged_line_by_line(tmp_path: Path) -> None:
    """Every kind of event of a scripted game comes back from the file, fields by name."""
    clock = Clock()
    clock.advance(1795695871.5)
    path = tmp_path / "events.jsonl"
    game = Game(clock, random.Random(3))
    log = EventLog(game, str(path), clock)
    log.startService()
    game.startService()
    alice = game.join(FakeLink(), "127.0.0.1:5000")
    bob = game.join(FakeLink(), "[::1]:5001")
    game.rename(alice, "alice")
    game.say('hello "all" ünï')
    secret = secret_of(game)
    assert game.guess(alice, secret).number == secret  # type: ignore[union-attr]
    game.leave(alice, "won")
    game.new_round()
    game.kick(bob.id)
    log.stopService()
    records = read_log(path)
    assert {r["time"] for r in records} == {"2026-11-26T12:24:31.500Z"}
    assert without_time(records) == [
        {"event": "round", "round": 1, "range": "1-30"},
        {"event": "join", "id": 1, "name": "player1", "address": "127.0.0.1:5000"},
        {"event": "join", "id": 2, "name": "player2", "address": "[::1]:5001"},
        {"event": "name", "id": 1, "old": "player1", "new": "alice"},
        {"event": "say", "text": 'hello "all" ünï'},
        {"event": "win", "id": 1, "name": "alice", "number": secret, "guesses": 1},
        {"event": "round", "round": 2, "range": "1-30"},
        {"event": "leave", "id": 1, "name": "alice", "reason": "won"},
        {"event": "round", "round": 3, "range": "1-30"},
        {"event": "newround", "round": 3, "range": "1-30"},
        {"event": "kick", "id": 2, "name": "player2"},
        {"event": "leave", "id": 2, "name": "player2", "reason": "kicked"},
    ]


def test_log_is_appended_not_truncated(tmp_path: Path) -> None:
    """A restart appends to what the file already holds."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"old"}\n', encoding="utf-8")
    game = make_game()
    log = EventLog(game, str(path), Clock())
    log.startService()
    game.join(FakeLink(), "127.0.0.1:1")
    log.stopService()
    records = read_log(path)
    assert records[0] == {"event": "old"}
    assert records[1]["event"] == "join"


def test_reopen_writes_to_a_new_file_after_a_move(tmp_path: Path) -> None:
    """After the file was moved away, reopen starts a new file at the path."""
    path = tmp_path / "events.jsonl"
    moved = tmp_path / "events.jsonl.1"
    game = make_game()
    log = EventLog(game, str(path), Clock())
    log.startService()
    game.join(FakeLink(), "127.0.0.1:1")
    path.rename(moved)
    game.join(FakeLink(), "127.0.0.1:2")
    log.reopen()
    game.join(FakeLink(), "127.0.0.1:3")
    log.stopService()
    assert [r["address"] for r in read_log(moved)] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert [r["address"] for r in read_log(path)] == ["127.0.0.1:3"]


def test_a_failing_write_is_logged_once_and_play_goes_on() -> None:
    """A write that fails (a full disk) logs one error; the game is untouched."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here to stand for a full disk")
    errors: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.error:
            errors.append(formatEvent(event))

    game = make_game()
    log = EventLog(game, "/dev/full", Clock())
    log.startService()
    globalLogPublisher.addObserver(observer)
    try:
        game.join(FakeLink(), "127.0.0.1:1")
        game.join(FakeLink(), "127.0.0.1:2")
    finally:
        globalLogPublisher.removeObserver(observer)
        log.stopService()
    assert len(game.players) == 2
    assert len(errors) == 1
    assert errors[0].startswith("event log /dev/full: cannot write (No space left on device)")


def test_after_stop_nothing_is_written(tmp_path: Path) -> None:
    """A stopped log neither watches the game nor keeps the file open."""
    path = tmp_path / "events.jsonl"
    game = make_game()
    log = EventLog(game, str(path), Clock())
    log.startService()
    log.stopService()
    game.join(FakeLink(), "127.0.0.1:1")
    assert read_log(path) == []


def test_admin_actions_are_events_but_no_event_lines() -> None:
    """kick, say and newround reach observers, and the admin port shows none of them."""
    game = make_game()
    observer = FakeObserver()
    game.add_observer(observer)
    admin = connect(AdminFactory(game))
    admin.send(b"Admin-Greetings\r\n")
    player = connect(PlayerFactory(game))
    player.read()
    assert admin.read() == ["EVENT join 1 player1 127.0.0.1:50000"]
    assert admin.send(b"say hi\r\n") == ["OK sent to 1 player"]
    assert admin.send(b"newround\r\n") == ["EVENT round 2 1-30", "OK round 2 started"]
    assert admin.send(b"kick 1\r\n") == ["EVENT leave 1 player1 kicked", "OK kicked 1"]
    assert [e for e in observer.events if isinstance(e, Said | NewRound | Kicked)] == [
        Said("hi"),
        NewRound(2, 1, 30),
        Kicked(1, "player1"),
    ]


# End to end: SIGHUP to twistd.


def wait_for(predicate: Any, what: str) -> None:
    """Poll ``predicate`` (a file the daemon writes) for up to WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sighup_reopens_the_log_after_logrotate_moved_it(tmp_path: Path) -> None:
    """twistd keeps running on SIGHUP, writes new events to a new file, and logs its stop."""
    path = tmp_path / "events.jsonl"
    moved = tmp_path / "events.jsonl.1"
    with Daemon("--event-log", str(path), "--db", ":memory:") as daemon:
        player = daemon.player()
        player.send("name carol")
        assert player.line() == "You are now known as carol."
        path.rename(moved)
        daemon.signal(signal.SIGHUP)
        wait_for(path.exists, "the log to be reopened")
        secret, guesses, _ = play_to_win(player)
        wait_for(lambda: "leave" in path.read_text(encoding="utf-8"), "the leave event")
        daemon.player()
        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    old = [r["event"] for r in read_log(moved)]
    assert old == ["round", "join", "name"]
    new = without_time(read_log(path))
    assert new[:3] == [
        {"event": "win", "id": 1, "name": "carol", "number": secret, "guesses": guesses},
        {"event": "round", "round": 2, "range": "1-30"},
        {"event": "leave", "id": 1, "name": "carol", "reason": "won"},
    ]
    # The player still there at the stop leaves in the log too.
    assert new[3]["event"] == "join"
    assert new[4:] == [{"event": "leave", "id": 2, "name": "player2", "reason": "shutdown"}]
