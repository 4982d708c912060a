"""``guessgame-admin``: the administrator's client.

With a COMMAND (``who``, ``count``, ``stats``, ``kick 7``, ``say hello``,
``newround``, ``top 5``) it does the handshake, runs the command, prints
the reply in a readable form (or as JSON with ``--json``) and exits 0 on
``OK``, 1 on ``ERR``.  Without one it is a console: the player table, then
every ``EVENT`` as it happens, in words and with the local time, and a
prompt for commands.
"""

from __future__ import annotations

import calendar
import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from guessgame.clients.common import (
    EXIT_ERROR,
    EXIT_OK,
    ClientError,
    ClientOptions,
    Console,
    before_shutdown,
    connect,
    error_line,
    open_console,
    print_line,
    run_main,
)
from guessgame.events import plural
from guessgame.wire.lines import Transport

__all__ = [
    "AdminClient",
    "Options",
    "PlayerRow",
    "Reply",
    "describe_event",
    "format_duration",
    "format_help",
    "format_reply",
    "format_since",
    "format_table",
    "main",
    "parse_event",
    "parse_player",
    "parse_stats",
    "reply_json",
]

PROGRAM = "guessgame-admin"
TOKEN_VARIABLE = "GUESSGAME_ADMIN_TOKEN"

#: The admin port's commands, for Tab completion.
COMMANDS = ("who", "count", "stats", "kick", "say", "newround", "top", "help", "quit")

#: Seconds to wait for the server's ``OK bye``.
GOODBYE_TIMEOUT = 3.0

#: Seconds to wait for the answer to ``Admin-Greetings``: the daemon answers
#: within its own 10 s handshake timeout, so silence means another server.
HANDSHAKE_TIMEOUT = 15.0


# Reading the server's lines.


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply: its data lines and its ``OK``/``ERR`` line."""

    ok: bool
    text: str
    lines: list[str] = field(default_factory=list)


def parse_status(line: str) -> tuple[bool, str] | None:
    """``(ok, text)`` for an ``OK``/``ERR`` line, None for any other line."""
    word, _, text = line.partition(" ")
    if word in ("OK", "ERR"):
        return word == "OK", text
    return None


@dataclass(frozen=True, slots=True)
class PlayerRow:
    """One ``PLAYER ID NICK HOST:PORT G CONNECTED`` line."""

    id: int
    name: str
    address: str
    guesses: int
    connected: str


def parse_player(line: str) -> PlayerRow | None:
    """The `PlayerRow` of a ``PLAYER`` line, or None if it is not one."""
    fields = line.split(" ")
    if len(fields) != 6 or fields[0] != "PLAYER":
        return None
    _, pid, name, address, guesses, connected = fields
    if not (pid.isdigit() and guesses.isdigit()):
        return None
    return PlayerRow(int(pid), name, address, int(guesses), connected)


def parse_top(line: str) -> dict[str, Any] | None:
    """A ``TOP RANK NICK WINS BEST`` line as a dict, or None."""
    fields = line.split(" ")
    if len(fields) != 5 or fields[0] != "TOP" or not all(f.isdigit() for f in fields[3:]):
        return None
    return {
        "rank": int(fields[1]) if fields[1].isdigit() else fields[1],
        "name": fields[2],
        "wins": int(fields[3]),
        "best": int(fields[4]),
    }


def parse_stats(text: str) -> dict[str, int | str]:
    """The ``key=value`` fields of a ``stats`` reply; whole numbers as ints."""
    stats: dict[str, int | str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if sep:
            stats[key] = int(value) if value.isdigit() else value
    return stats


def parse_event(line: str) -> dict[str, Any]:
    """An ``EVENT`` line as a dict with an ``event`` key and its fields."""
    fields = line.split(" ")[1:]
    kind, rest = (fields[0], fields[1:]) if fields else ("", [])
    names = {
        "join": ("id", "name", "address"),
        "leave": ("id", "name", "reason"),
        "win": ("id", "name", "number", "guesses"),
        "round": ("round", "range"),
        "name": ("id", "old", "new"),
    }.get(kind)
    if names is None or len(rest) != len(names):
        return {"event": kind, "text": " ".join(rest)}
    event: dict[str, Any] = {"event": kind}
    for key, value in zip(names, rest, strict=True):
        numeric = key in ("id", "number", "guesses", "round") and value.isdigit()
        event[key] = int(value) if numeric else value
    return event


#: How each ``EVENT leave`` reason reads.
LEAVE_WORDS = {
    "quit": "left",
    "won": "left after winning",
    "kicked": "was kicked",
    "idle": "was disconnected for being idle",
    "closed": "closed the connection",
    "shutdown": "was disconnected by the shutdown",
    "error": "was disconnected after an error",
}


def describe_event(event: dict[str, Any]) -> str:
    """An event in words: ``player 7 (alice) joined from 127.0.0.1:53312``."""
    kind = event["event"]
    who = f"player {event.get('id')} ({event.get('name')})"
    if kind == "join":
        return f"{who} joined from {event['address']}"
    if kind == "leave":
        reason = event["reason"]
        return f"{who} {LEAVE_WORDS.get(reason, f'left ({reason})')}"
    if kind == "win":
        return f"{who} won with {event['number']} in {plural(event['guesses'], 'guess')}"
    if kind == "round":
        return f"round {event['round']} started: a number between {event['range']}"
    if kind == "name":
        return f"player {event['id']} ({event['old']}) is now known as {event['new']}"
    return f"{kind} {event.get('text', '')}".strip()


# Formatting replies.


def format_since(stamp: str, now: float | None = None) -> str:
    """A ``2026-11-26T12:04:31Z`` moment in local time: ``12:04:31`` today, else with the date."""
    try:
        seconds = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return stamp
    moment = time.localtime(seconds)
    today = time.localtime(time.time() if now is None else now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S", moment)


def format_duration(seconds: int) -> str:
    """``3725`` as ``1h 2m 5s``."""
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{seconds}s")
    return " ".join(parts)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> list[str]:
    """Rows in aligned columns under ``headers``; columns in ``right`` align right."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return lines


def command_word(command: str) -> str:
    """The command's first word, lower case."""
    return command.split(maxsplit=1)[0].lower() if command.strip() else ""


#: What each command does, in the words of this client (the server's
#: ``help`` describes its wire format).
COMMAND_HELP = {
    "who": ("who", "the players online: id, name, address, guesses and since when"),
    "count": ("count", "how many players are online"),
    "stats": ("stats", "the game's counters: players, rounds, wins, guesses, uptime, ..."),
    "kick": ("kick ID", "remove player ID from the game"),
    "say": ("say TEXT", "send TEXT to every player"),
    "newround": ("newround", "start a new round with a new secret"),
    "top": ("top [K]", "the first K of the leaderboard (default 10)"),
    "help": ("help", "this list"),
    "quit": ("quit", "leave (Ctrl-D and Ctrl-C too)"),
}


def format_help(lines: Sequence[str]) -> list[str]:
    """The server's ``help`` lines in words; a command this client does not know as sent."""
    known = [COMMAND_HELP.get(command_word(line)) for line in lines]
    width = max((len(entry[0]) for entry in known if entry is not None), default=0)
    return [
        line if entry is None else f"{entry[0].ljust(width)}  {entry[1]}"
        for line, entry in zip(lines, known, strict=True)
    ]


def format_reply(command: str, reply: Reply, now: float | None = None) -> list[str]:
    """The readable form of the reply to ``command`` (an ``OK`` one)."""
    word = command_word(command)
    if word == "who":
        players = [row for row in map(parse_player, reply.lines) if row is not None]
        if not players:
            return ["No players online."]
        table = format_table(
            ("ID", "NAME", "ADDRESS", "GUESSES", "CONNECTED"),
            [(p.id, p.name, p.address, p.guesses, format_since(p.connected, now)) for p in players],
            right=(0, 3),
        )
        return [*table, reply.text]
    if word == "top":
        entries = [entry for entry in map(parse_top, reply.lines) if entry is not None]
        if not entries:
            return ["No winners yet."]
        return format_table(
            ("RANK", "NAME", "WINS", "BEST"),
            [(e["rank"], e["name"], e["wins"], e["best"]) for e in entries],
            right=(0, 2, 3),
        )
    if word == "stats":
        stats = parse_stats(reply.text)
        if isinstance(stats.get("uptime"), int):
            stats["uptime"] = format_duration(int(stats["uptime"]))
        return format_table(("", ""), list(stats.items()))[1:]
    if word == "help":
        return format_help(reply.lines)
    return [*reply.lines, reply.text] if reply.text else list(reply.lines)


#: Replies that carry one number: its JSON key and which word of the reply it is.
REPLY_NUMBERS = {
    "count": ("count", 0),  # OK 3 players
    "say": ("sent", 2),  # OK sent to 3 players
    "newround": ("round", 1),  # OK round 4 started
    "kick": ("kicked", 1),  # OK kicked 7
}


def reply_json(command: str, reply: Reply) -> dict[str, Any]:
    """The reply to ``command`` as a JSON-ready dict."""
    result: dict[str, Any] = {"command": command, "ok": reply.ok}
    result["reply" if reply.ok else "error"] = reply.text
    word = command_word(command)
    if reply.ok and word == "who":
        rows = [row for row in map(parse_player, reply.lines) if row is not None]
        result["players"] = [
            {
                "id": p.id,
                "name": p.name,
                "address": p.address,
                "guesses": p.guesses,
                "connected": p.connected,
            }
            for p in rows
        ]
    elif reply.ok and word == "top":
        result["top"] = [entry for entry in map(parse_top, reply.lines) if entry is not None]
    elif reply.ok and word == "stats":
        result["stats"] = parse_stats(reply.text)
    elif reply.ok and word in REPLY_NUMBERS:
        # The number in the reply, by name: "OK 3 players" -> "count": 3.
        key, position = REPLY_NUMBERS[word]
        words = reply.text.split()
        if len(words) > position and words[position].isdigit():
            result[key] = int(words[position])
    elif reply.lines:
        result["lines"] = reply.lines
    return result


# The connection.


class AdminClient(LineReceiver):
    """The admin port: commands answered in order, events passed to ``on_event``."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    transport: Transport  # type: ignore[assignment]

    def __init__(self, on_event: Callable[[str], None]) -> None:
        self.on_event = on_event
        self._pending: deque[defer.Deferred[Reply]] = deque()
        self._lines: list[str] = []
        self.gone = False
        self._quitting = False
        self._goodbye_timer: Any = None
        #: Waiting for the answer to Admin-Greetings, before which the admin
        #: port sends nothing but that OK or ERR line.
        self.handshaking = False
        #: The first line of a peer that sent another (a player port, a web port).
        self.foreign: str | None = None
        #: Fires once the connection is gone.
        self.lost: defer.Deferred[None] = defer.Deferred()

    def command(self, text: str) -> defer.Deferred[Reply]:
        """Send one command; fires with its `Reply` (or fails if the connection goes)."""
        d: defer.Deferred[Reply] = defer.Deferred()
        if self.gone:
            d.errback(ConnectionLost())
            return d
        self._pending.append(d)
        self.sendLine(text.encode("utf-8"))
        return d

    def lineReceived(self, line: bytes) -> None:
        """Sort a line: an event, a data line, or the end of a reply."""
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.startswith("EVENT "):
            self.on_event(text)
            return
        status = parse_status(text)
        if status is None:
            if self.handshaking:
                if self.foreign is None:
                    self.foreign = text
                    self.transport.abortConnection()
                return
            self._lines.append(text)
            return
        self.handshaking = False
        reply = Reply(status[0], status[1], self._lines)
        self._lines = []
        if self._pending:
            self._pending.popleft().callback(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Not a guessgame server."""
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail the commands still waiting for a reply."""
        self.gone = True
        if self._goodbye_timer is not None and self._goodbye_timer.active():
            self._goodbye_timer.cancel()
        self._goodbye_timer = None
        pending, self._pending = self._pending, deque()
        for d in pending:
            d.errback(ConnectionLost())
        self.lost.callback(None)

    def quit(self, reactor: Any) -> defer.Deferred[None]:
        """Say ``quit`` and wait (not long) for the server to close."""
        if not self.gone and not self._quitting:
            self._quitting = True
            self.command("quit").addErrback(lambda _: None)
            # Not a timeout on `lost`: cancelling it would fail whoever waits on it.
            self._goodbye_timer = reactor.callLater(GOODBYE_TIMEOUT, self.transport.abortConnection)
        return self.lost


# The command line.


class Options(ClientOptions):
    """The command line of ``guessgame-admin``."""

    synopsis = (
        "Usage: guessgame-admin [--host HOST] [--port PORT | --connect ENDPOINT] "
        "[--token TOKEN | --token-file F] [--json] [COMMAND [ARG...]]"
    )
    longdesc = (
        "Run guessgame from its admin port: one COMMAND (who, count, stats, kick ID, "
        "say TEXT, newround, top [K], help), or, without one, a console that shows "
        f"every event as it happens.  The token may also come from ${TOKEN_VARIABLE}."
    )
    default_port = 4001

    optFlags: list[list[Any]] = [
        ["json", None, "Print machine-readable JSON instead of text."],
    ]
    optParameters: list[list[Any]] = [
        ["token", None, None, "The daemon's admin token."],
        ["token-file", None, None, "Read the admin token from this file."],
    ]

    def parseArgs(self, *args: str) -> None:
        """COMMAND [ARG...], optional."""
        self["command"] = " ".join(args)

    def postOptions(self) -> None:
        """Find the token, and check where to connect."""
        super().postOptions()
        self["token"] = self._read_token()

    def _read_token(self) -> str | None:
        token, path = self["token"], self["token-file"]
        if token is not None and path is not None:
            raise usage.UsageError("give --token or --token-file, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as e:
                raise usage.UsageError(f"--token-file: cannot read {path}: {e.strerror}") from None
            except UnicodeDecodeError:
                raise usage.UsageError(f"--token-file: {path} is not UTF-8 text") from None
            if not token:
                raise usage.UsageError(f"--token-file: {path} is empty")
        if token is None:
            token = os.environ.get(TOKEN_VARIABLE) or None
        if token is not None and (" " in token.strip() or "\n" in token):
            raise usage.UsageError("the admin token must be one word")
        return token.strip() if token is not None else None


async def handshake(client: AdminClient, options: Options, reactor: Any) -> Reply:
    """Greet the server; `ClientError` if it refuses, or is not an admin port."""
    greeting = "Admin-Greetings"
    if options["token"]:
        greeting += " " + options["token"]
    client.handshaking = True
    answer = client.command(greeting)
    timer = reactor.callLater(HANDSHAKE_TIMEOUT, client.transport.abortConnection)
    try:
        reply = await answer
    except ConnectionLost:
        if client.foreign is not None:
            raise ClientError(
                f"{options.address} is not a guessgame admin port: "
                f"it answered {client.foreign[:80]!r}"
            ) from None
        if not timer.active():
            raise ClientError(
                f"no answer from {options.address} to Admin-Greetings: "
                "is it a guessgame admin port?"
            ) from None
        raise ClientError(f"{options.address} closed the connection at the handshake") from None
    finally:
        if timer.active():
            timer.cancel()
    if not reply.ok:
        hint = ""
        if reply.text == "another administrator is connected":
            hint = " (the daemon allows one at a time unless started with --max-admins N)"
        raise ClientError(
            f"the server at {options.address} refused the handshake: {reply.text}{hint}"
        )
    return reply


async def run_command(reactor: Any, options: Options) -> int:
    """One COMMAND: print its reply; the exit status."""
    events: list[str] = []
    client = await connect(reactor, options, lambda: AdminClient(events.append))
    await handshake(client, options, reactor)
    command = options["command"]
    try:
        reply = await client.command(command)
    except ConnectionLost:
        raise ClientError(f"lost the connection to {options.address}") from None
    await client.quit(reactor)
    if options["json"]:
        print_line(json.dumps(reply_json(command, reply)))
    elif reply.ok:
        for line in format_reply(command, reply):
            print_line(line)
    if not reply.ok:
        error_line(PROGRAM, reply.text)
        return EXIT_ERROR
    return EXIT_OK


class AdminConsole:
    """The interactive console: events as they happen, commands at a prompt."""

    def __init__(self, reactor: Any, options: Options) -> None:
        self.reactor = reactor
        self.options = options
        self.json = bool(options["json"])
        self.console: Console | None = None
        self.client: AdminClient | None = None
        self.quitting = False

    def show(self, text: str) -> None:
        """Print one line, above the command being typed."""
        if self.console is not None:
            self.console.show(text)
        else:
            print_line(text)

    def show_reply(self, command: str, reply: Reply) -> None:
        """Print a reply: readable, or one JSON line."""
        if self.json:
            self.show(json.dumps(reply_json(command, reply)))
        elif reply.ok:
            for line in format_reply(command, reply):
                self.show(line)
        else:
            self.show(f"error: {reply.text}")

    def event(self, line: str) -> None:
        """Print an event with the local time."""
        event = parse_event(line)
        now = time.time()
        if self.json:
            event["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
            self.show(json.dumps(event))
        else:
            self.show(f"{time.strftime('%H:%M:%S', time.localtime(now))}  {describe_event(event)}")

    async def run(self) -> int:
        """Connect, show the players, then read commands until quit or end of input."""
        options = self.options
        self.client = client = await connect(self.reactor, options, lambda: AdminClient(self.event))
        reply = await handshake(client, options, self.reactor)
        self.console = open_console(self.reactor, "admin> ", COMMANDS)
        withdraw = before_shutdown(self.reactor, self.leave)
        try:
            if not self.json:
                online = reply.text.partition(", ")[2] or reply.text
                self.show(
                    f"Connected to {options.address}, {online}. "
                    "Type help for the commands, quit to leave."
                )
            self.ask("who")
            await client.lost
        finally:
            withdraw()
            self.console.close()
        if self.quitting:
            return EXIT_OK
        error_line(PROGRAM, f"lost the connection to {options.address}")
        return EXIT_ERROR

    def ask(self, command: str) -> None:
        """Run ``command``, show its reply, then read the next one."""
        assert self.client is not None
        self.client.command(command).addCallbacks(
            lambda reply: self._answered(command, reply), lambda _: None
        )

    def _answered(self, command: str, reply: Reply) -> None:
        self.show_reply(command, reply)
        self.read()

    def read(self) -> None:
        """Wait for the next command."""
        if self.console is not None and not self.quitting:
            self.console.read_line().addCallback(self._typed)

    def _typed(self, line: str | None) -> None:
        if self.quitting or self.client is None or self.client.gone:
            return
        command = line.strip() if line is not None else "quit"
        if not command:
            self.read()
        elif command_word(command) in ("quit", "exit"):
            self.leave()
        else:
            self.ask(command)

    def leave(self) -> defer.Deferred[None] | None:
        """Say goodbye (quit, end of input, Ctrl-C); fires once closed."""
        if self.client is None:
            return None
        if not self.quitting and not self.client.gone:
            self.quitting = True
            if self.console is not None:
                self.console.close()
        return self.client.quit(self.reactor)


async def admin(reactor: Any, options: Options) -> int:
    """Run one command, or the console; the exit status."""
    if options["command"]:
        return await run_command(reactor, options)
    return await AdminConsole(reactor, options).run()


def main(argv: list[str] | None = None) -> None:
    """The ``guessgame-admin`` console script."""
    run_main(PROGRAM, Options(), argv, admin)


if __name__ == "__main__":
    main()
