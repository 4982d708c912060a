"""The event log: ``--event-log PATH``, one JSON object a line per game event.

An observer of the game that appends each event as it happens, with its
``time`` (UTC, ISO 8601 with ``Z``), its ``event`` name and its fields by
name.  Each line is one ``write()`` to a file opened for appending, with
nothing buffered in the process and no ``fsync``: the reactor waits on the
disk no longer than that write takes, and a crash loses nothing already
logged.  SIGHUP reopens the file, so that logrotate can move it away.
"""

from __future__ import annotations

import json
import os
import signal
import time
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from guessgame.events import (
    Event,
    Joined,
    Kicked,
    Left,
    NewRound,
    Renamed,
    RoundStarted,
    Said,
    Won,
)
from guessgame.game import Game

__all__ = ["EventLog", "event_record", "format_time", "open_event_log", "reopen_on_sighup"]

log = Logger()


def format_time(seconds: float) -> str:
    """A moment as ``2026-11-26T12:04:31.250Z`` (UTC, milliseconds)."""
    whole = int(seconds)
    millis = min(999, round((seconds - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def event_record(event: Event) -> dict[str, Any]:
    """The ``event`` name and the fields of one game event, by name."""
    if isinstance(event, Joined):
        return {"event": "join", "id": event.id, "name": event.name, "address": event.address}
    if isinstance(event, Left):
        return {"event": "leave", "id": event.id, "name": event.name, "reason": event.reason}
    if isinstance(event, Won):
        return {
            "event": "win",
            "id": event.id,
            "name": event.name,
            "number": event.number,
            "guesses": event.guesses,
        }
    if isinstance(event, RoundStarted):
        return {"event": "round", "round": event.round, "range": f"{event.lo}-{event.hi}"}
    if isinstance(event, Renamed):
        return {"event": "name", "id": event.id, "old": event.old, "new": event.new}
    if isinstance(event, Kicked):
        return {"event": "kick", "id": event.id, "name": event.name}
    if isinstance(event, Said):
        return {"event": "say", "text": event.text}
    if isinstance(event, NewRound):
        return {"event": "newround", "round": event.round, "range": f"{event.lo}-{event.hi}"}
    raise TypeError(f"not a game event: {event!r}")


def open_event_log(path: str) -> int:
    """Open ``path`` for appending (created readable by owner and group only)."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


class EventLog(Service):
    """Appends every game event to ``path`` while running; see the module docstring.

    A file that cannot be opened at start stops the daemon (`OSError`); a
    write that fails later (a full disk) is logged once and play goes on.
    """

    name = "event-log"

    def __init__(self, game: Game, path: str, clock: IReactorTime) -> None:
        self.game = game
        self.path = path
        self.clock = clock
        self._fd: int | None = None
        self._failing = False

    def startService(self) -> None:
        """Open the file and start watching the game."""
        self._fd = self._open()
        super().startService()
        self.game.add_observer(self)
        log.info("event log appending to {path}", path=os.path.abspath(self.path))

    def stopService(self) -> None:
        """Stop watching and close the file."""
        super().stopService()
        self.game.remove_observer(self)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        return open_event_log(self.path)

    def reopen(self) -> None:
        """Close the file and open ``path`` again (after logrotate moved it)."""
        if self._fd is None:
            return
        try:
            fd = self._open()
        except OSError as e:
            log.error(
                "event log {path}: cannot reopen ({reason}); still writing to the old file",
                path=self.path,
                reason=e.strerror,
            )
            return
        os.close(self._fd)
        self._fd = fd
        self._failing = False
        log.info("event log {path} reopened", path=self.path)

    # GameObserver.

    def game_event(self, event: Event) -> None:
        """Append one line for ``event``."""
        if self._fd is None:
            return
        record = {"time": format_time(self.clock.seconds()), **event_record(event)}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._write(line.encode("utf-8"))

    def close(self) -> defer.Deferred[None]:
        """The game is stopping: every line is written already."""
        return defer.succeed(None)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            # O_APPEND writes of a regular file are whole unless the disk is
            # full, which the next write reports.
            written = os.write(self._fd, data)
            if written < len(data):
                os.write(self._fd, data[written:])
        except OSError as e:
            if not self._failing:
                self._failing = True
                log.error(
                    "event log {path}: cannot write ({reason}); events are lost until it can",
                    path=self.path,
                    reason=e.strerror,
                )
            return
        if self._failing:
            self._failing = False
            log.info("event log {path}: writing again", path=self.path)


def reopen_on_sighup(reactor: Any, event_log: EventLog) -> None:
    """Make SIGHUP reopen ``event_log``'s file, as logrotate expects.

    The handler only asks the reactor to reopen, so the file is never
    touched in the middle of another write.
    """

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(event_log.reopen)

    reactor.callWhenRunning(signal.signal, signal.SIGHUP, on_sighup)
