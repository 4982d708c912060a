"""guessgame-admin: its parsing and formatting without sockets, then the program."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.usage import UsageError

from guessgame.clients.admin import (
    GOODBYE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    AdminClient,
    Options,
    PlayerRow,
    Reply,
    describe_event,
    format_duration,
    format_reply,
    format_since,
    format_table,
    handshake,
    parse_event,
    parse_player,
    parse_stats,
    reply_json,
)
from guessgame.clients.common import ClientError
from tests.clients import (
    TLS_FAILURES,
    Daemon,
    Spawner,
    TLSListeners,
    daemon,
    make_command,
    run,
    spawn,
    start_daemon,
    tls_failure,
    tls_listen,
)
from tests.common import listen, open_client

__all__ = ["daemon", "spawn", "tls_listen"]  # fixtures


# Parsing and formatting, without sockets.


def test_parse_player() -> None:
    """A PLAYER line gives its six fields; anything else gives None."""
    assert parse_player("PLAYER 7 alice 127.0.0.1:53312 3 2026-11-26T12:04:31Z") == PlayerRow(
        7, "alice", "127.0.0.1:53312", 3, "2026-11-26T12:04:31Z"
    )
    assert parse_player("PLAYER 8 bob [::1]:4 0 2026-11-26T12:04:31Z") is not None
    assert parse_player("PLAYER x alice 127.0.0.1:1 3 2026-11-26T12:04:31Z") is None
    assert parse_player("TOP 1 alice 3 4") is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("EVENT join 7 alice 127.0.0.1:53312", "player 7 (alice) joined from 127.0.0.1:53312"),
        ("EVENT leave 7 alice quit", "player 7 (alice) left"),
        ("EVENT leave 7 alice won", "player 7 (alice) left after winning"),
        ("EVENT leave 7 alice kicked", "player 7 (alice) was kicked"),
        ("EVENT leave 7 alice idle", "player 7 (alice) was disconnected for being idle"),
        ("EVENT leave 7 alice closed", "player 7 (alice) closed the connection"),
        ("EVENT leave 7 alice shutdown", "player 7 (alice) was disconnected by the shutdown"),
        ("EVENT leave 7 alice error", "player 7 (alice) was disconnected after an error"),
        ("EVENT leave 7 alice lunch", "player 7 (alice) left (lunch)"),
        ("EVENT win 7 alice 17 1", "player 7 (alice) won with 17 in 1 guess"),
        ("EVENT win 7 alice 17 4", "player 7 (alice) won with 17 in 4 guesses"),
        ("EVENT round 5 1-30", "round 5 started: a number between 1-30"),
        ("EVENT name 7 player7 alice", "player 7 (player7) is now known as alice"),
        ("EVENT party 1 2 3", "party 1 2 3"),
    ],
)
def test_describe_event(line: str, words: str) -> None:
    """Every event of the protocol reads as a sentence."""
    assert describe_event(parse_event(line)) == words


def test_parse_event_fields() -> None:
    """Event fields are named, numbers as ints."""
    assert parse_event("EVENT win 7 alice 17 4") == {
        "event": "win",
        "id": 7,
        "name": "alice",
        "number": 17,
        "guesses": 4,
    }
    assert parse_event("EVENT round 5 1-30") == {"event": "round", "round": 5, "range": "1-30"}


def test_parse_stats() -> None:
    """key=value fields; whole numbers become ints."""
    assert parse_stats("players=2 rounds=5 uptime=61 mode=shared range=1-30") == {
        "players": 2,
        "rounds": 5,
        "uptime": 61,
        "mode": "shared",
        "range": "1-30",
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (61, "1m 1s"), (3725, "1h 2m 5s"), (90000, "1d 1h 0m 0s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    """Uptime reads in days, hours, minutes and seconds."""
    assert format_duration(seconds) == text


def test_format_since() -> None:
    """Today's moments show the local time only; older ones the date too."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    assert format_since(stamp, now) == time.strftime("%H:%M:%S", time.localtime(now))
    old = now - 3 * 86400
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(old))
    assert format_since(stamp, now) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(old))
    assert format_since("yesterday", now) == "yesterday"


def test_format_table() -> None:
    """Columns line up; the chosen columns align right."""
    assert format_table(("ID", "NAME"), [(7, "alice"), (12, "bo")], right=(0,)) == [
        "ID  NAME",
        " 7  alice",
        "12  bo",
    ]


def test_format_who() -> None:
    """The who reply is a table: id, name, address, guesses, connected since; then the count."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    reply = Reply(
        True,
        "2 players",
        [
            f"PLAYER 7 alice 127.0.0.1:53312 3 {stamp}",
            f"PLAYER 12 player12 [::1]:4 10 {stamp}",
        ],
    )
    since = time.strftime("%H:%M:%S", time.localtime(now))
    assert format_reply("who", reply, now) == [
        "ID  NAME      ADDRESS          GUESSES  CONNECTED",
        f" 7  alice     127.0.0.1:53312        3  {since}",
        f"12  player12  [::1]:4               10  {since}",
        "2 players",
    ]
    assert format_reply("who", Reply(True, "0 players")) == ["No players online."]


def test_format_other_replies() -> None:
    """The top reply is a table, stats key-value lines, the rest their text."""
    top = Reply(True, "2 players", ["TOP 1 alice 5 3", "TOP 2 bob 1 7"])
    assert format_reply("top 5", top) == [
        "RANK  NAME   WINS  BEST",
        "   1  alice     5     3",
        "   2  bob       1     7",
    ]
    assert format_reply("top", Reply(True, "0 players")) == ["No winners yet."]
    stats = Reply(True, "players=2 uptime=61 mode=shared")
    assert format_reply("stats", stats) == ["players  2", "uptime   1m 1s", "mode     shared"]
    assert format_reply("kick 7", Reply(True, "kicked 7")) == ["kicked 7"]


def test_format_help() -> None:
    """help lists the commands in words, not in the wire format; unknown ones pass as sent."""
    from guessgame.admin.protocol import HELP

    lines = format_reply("help", Reply(True, "", [*HELP, "frob X     a newer command"]))
    assert lines[0].split() == [
        "who",
        "the",
        "players",
        "online:",
        "id,",
        "name,",
        "address,",
        "guesses",
        "and",
        "since",
        "when",
    ]
    assert not any("PLAYER ID" in line or "HOST:PORT" in line for line in lines)
    assert [line.split()[0] for line in lines] == [
        "who",
        "count",
        "stats",
        "kick",
        "say",
        "newround",
        "top",
        "help",
        "quit",
        "frob",
    ]
    assert lines[-1] == "frob X     a newer command"


def test_reply_json() -> None:
    """--json gives the fields of who, stats and top, and errors as such."""
    who = Reply(True, "1 player", ["PLAYER 7 alice 127.0.0.1:1 3 2026-11-26T12:04:31Z"])
    assert reply_json("who", who) == {
        "command": "who",
        "ok": True,
        "reply": "1 player",
        "players": [
            {
                "id": 7,
                "name": "alice",
                "address": "127.0.0.1:1",
                "guesses": 3,
                "connected": "2026-11-26T12:04:31Z",
            }
        ],
    }
    assert reply_json("stats", Reply(True, "players=1 mode=solo"))["stats"] == {
        "players": 1,
        "mode": "solo",
    }
    assert reply_json("count", Reply(True, "3 players"))["count"] == 3
    assert reply_json("say hi", Reply(True, "sent to 1 player"))["sent"] == 1
    assert reply_json("newround", Reply(True, "round 4 started"))["round"] == 4
    assert reply_json("kick 7", Reply(True, "kicked 7"))["kicked"] == 7
    assert reply_json("top", Reply(True, "1 player", ["TOP 1 alice 5 3"]))["top"] == [
        {"rank": 1, "name": "alice", "wins": 5, "best": 3}
    ]
    assert reply_json("kick 9", Reply(False, "no player 9")) == {
        "command": "kick 9",
        "ok": False,
        "error": "no player 9",
    }


def test_admin_client_sorts_lines() -> None:
    """Events go to the event handler at once; data lines belong to the next OK/ERR."""
    events: list[str] = []
    client = AdminClient(events.append)
    client.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4001)))
    replies: list[Reply] = []
    client.command("who").addCallback(replies.append)
    client.command("kick 9").addCallback(replies.append)
    assert client.transport.value() == b"who\nkick 9\n"  # type: ignore[attr-defined]
    client.dataReceived(b"EVENT join 1 player1 127.0.0.1:5\r\nPLAYER 1 player1 127.0.0.1:5 ")
    assert events == ["EVENT join 1 player1 127.0.0.1:5"]
    assert replies == []
    client.dataReceived(b"0 2026-11-26T12:04:31Z\r\nOK 1 player\r\nEVENT round 2 1-30\r\n")
    client.dataReceived(b"ERR no player 9\r\n")
    assert replies == [
        Reply(True, "1 player", ["PLAYER 1 player1 127.0.0.1:5 0 2026-11-26T12:04:31Z"]),
        Reply(False, "no player 9", []),
    ]
    assert events[1] == "EVENT round 2 1-30"


def test_admin_client_fails_pending_commands_when_lost() -> None:
    """A command waiting for its reply fails when the connection goes."""
    client = AdminClient(lambda line: None)
    client.makeConnection(StringTransport())
    failures: list[Any] = []
    client.command("who").addErrback(failures.append)
    client.connectionLost()
    assert len(failures) == 1
    assert client.lost.called


def test_quit_from_a_server_that_never_closes() -> None:
    """quit with no close from the server: aborted after a while, and whoever waits is told."""
    from twisted.internet.task import Clock

    clock = Clock()
    client = AdminClient(lambda line: None)
    transport = StringTransport()
    client.makeConnection(transport)
    results: list[object] = []
    client.lost.addBoth(results.append)  # as the console waits for it
    client.quit(clock)
    client.dataReceived(b"OK bye\r\n")
    clock.advance(GOODBYE_TIMEOUT)
    assert transport.disconnecting
    client.connectionLost()
    assert results == [None]


def start_handshake(clock: Clock) -> tuple[StringTransport, AdminClient, list[Any]]:
    """An admin client on a StringTransport, its handshake begun; what the handshake gave."""
    client = AdminClient(lambda line: None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    client.makeConnection(transport)
    options = Options()
    options.parseOptions(["--port", "4000", "who"])
    outcome: list[Any] = []
    defer.ensureDeferred(handshake(client, options, clock)).addBoth(outcome.append)
    return transport, client, outcome


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (b"You are now connected to the server!\r\n", "'You are now connected to the server!'"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "'HTTP/1.1 400 Bad Request'"),
    ],
)
def test_handshake_answered_by_another_server(said: bytes, shown: str) -> None:
    """A first line that is not OK or ERR: not an admin port, said at once, and closed."""
    transport, client, outcome = start_handshake(Clock())
    assert transport.value() == b"Admin-Greetings\n"
    client.dataReceived(said)
    assert transport.disconnecting
    client.connectionLost()
    (failure,) = outcome
    assert failure.check(ClientError)
    assert str(failure.value) == (
        f"127.0.0.1:4000 is not a guessgame admin port: it answered {shown}"
    )


def test_handshake_never_answered() -> None:
    """No answer to Admin-Greetings: a clear error after HANDSHAKE_TIMEOUT, not a wait forever."""
    clock = Clock()
    transport, client, outcome = start_handshake(clock)
    clock.advance(HANDSHAKE_TIMEOUT - 0.5)
    assert outcome == []
    clock.advance(0.5)
    assert transport.disconnecting
    client.connectionLost()
    (failure,) = outcome
    assert failure.check(ClientError)
    assert str(failure.value) == (
        "no answer from 127.0.0.1:4000 to Admin-Greetings: is it a guessgame admin port?"
    )


@pytest.mark.parametrize(
    ("argv", "env", "token"),
    [
        ([], {}, None),
        (["--token", "s3cret"], {}, "s3cret"),
        ([], {"GUESSGAME_ADMIN_TOKEN": "fromenv"}, "fromenv"),
        (["--token", "s3cret"], {"GUESSGAME_ADMIN_TOKEN": "fromenv"}, "s3cret"),
    ],
)
def test_token_sources(
    argv: list[str], env: dict[str, str], token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token comes from --token, else from GUESSGAME_ADMIN_TOKEN."""
    monkeypatch.delenv("GUESSGAME_ADMIN_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = Options()
    options.parseOptions(argv)
    assert options["token"] == token


def test_token_file(tmp_path: Any) -> None:
    """--token-file reads the token, without its line end; an empty file is an error."""
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    options = Options()
    options.parseOptions(["--token-file", str(path)])
    assert options["token"] == "s3cret"
    path.write_text("")
    with pytest.raises(UsageError, match="is empty"):
        Options().parseOptions(["--token-file", str(path)])
    with pytest.raises(UsageError, match="give --token or --token-file, not both"):
        Options().parseOptions(["--token", "x", "--token-file", str(path)])


@pytest.mark.parametrize(("module", "port"), [("admin", "4001"), ("play", "4000")])
def test_connect_example_names_the_client_port(module: str, port: str) -> None:
    """The --connect example in --help uses the port this client talks to."""
    import importlib

    options = importlib.import_module(f"guessgame.clients.{module}").Options()
    text = str(options)
    assert f"port={port}" in text
    assert f":{port}" in text.split("--connect=", 1)[1].split("--help", 1)[0]
    other = "4000" if port == "4001" else "4001"
    assert other not in text


def test_command_words() -> None:
    """The arguments after the options make up the command."""
    options = Options()
    options.parseOptions(["--port", "4001", "say", "hello", "all"])
    assert options["command"] == "say hello all"
    assert options["port"] == 4001


# One-shot commands against a daemon.


def admin_args(daemon: Daemon, *args: str) -> list[str]:
    """guessgame-admin's arguments for ``daemon`` and a command."""
    return ["--port", str(daemon.admin_port), *args]


@pytest_twisted.inlineCallbacks
def join_players(daemon: Daemon, count: int) -> Any:
    """``count`` connected players, greeted."""
    players = []
    for _ in range(count):
        player = yield open_client(daemon.player_port)
        yield player.next_line()
        yield player.next_line()
        players.append(player)
    return players


@pytest_twisted.inlineCallbacks
def test_who(daemon: Daemon, spawn: Spawner) -> Any:
    """The who command prints an aligned table of the players, then their count."""
    players = yield join_players(daemon, 2)
    players[0].send("name alice")
    yield players[0].next_line()
    players[1].send("30" if daemon.game._secret != 30 else "1")
    yield players[1].next_line()
    admin = yield run(spawn, "aclient", *admin_args(daemon, "who"))
    assert admin.code == 0
    lines = admin.stdout_lines
    assert lines[0].split() == ["ID", "NAME", "ADDRESS", "GUESSES", "CONNECTED"]
    assert re.fullmatch(r" 1  alice    127\.0\.0\.1:\d+ +0  \d\d:\d\d:\d\d", lines[1])
    assert re.fullmatch(r" 2  player2  127\.0\.0\.1:\d+ +1  \d\d:\d\d:\d\d", lines[2])
    column = lines[0].index("ADDRESS")
    assert lines[1].index("127.0.0.1") == lines[2].index("127.0.0.1") == column
    assert lines[3:] == ["2 players"]
    assert admin.stderr_text == ""
    for player in players:
        yield player.close()


@pytest_twisted.inlineCallbacks
def test_simple_commands(daemon: Daemon, spawn: Spawner) -> Any:
    """count, newround, say, stats and top print their replies readably and exit 0."""
    (player,) = yield join_players(daemon, 1)
    outputs = {}
    for command in (["count"], ["newround"], ["say", "hello", "all"], ["stats"], ["top", "5"]):
        admin = yield run(spawn, "aclient", *admin_args(daemon, *command))
        assert (admin.code, admin.stderr_text) == (0, "")
        outputs[command[0]] = admin.stdout_lines
    assert outputs["count"] == ["1 player"]
    assert outputs["newround"] == ["round 2 started"]
    assert outputs["say"] == ["sent to 1 player"]
    assert outputs["stats"][:4] == ["players  1", "rounds   2", "wins     0", "guesses  0"]
    assert re.fullmatch(r"uptime   \d+s", outputs["stats"][4])
    assert outputs["top"] == ["No winners yet."]
    assert (yield player.next_line()).startswith("*** The administrator started a new round.")
    assert (yield player.next_line()) == "*** Message from the administrator: hello all"
    yield player.close()


@pytest_twisted.inlineCallbacks
def test_kick(daemon: Daemon, spawn: Spawner) -> Any:
    """Kick ID removes the player and exits 0; an unknown ID exits 1 with the server's words."""
    (player,) = yield join_players(daemon, 1)
    admin = yield run(spawn, "aclient", *admin_args(daemon, "kick", "1"))
    assert (admin.code, admin.stdout_lines, admin.stderr_text) == (0, ["kicked 1"], "")
    assert (yield player.next_line()) == "*** You have been removed by the administrator. Goodbye!"
    yield player.lost
    admin = yield run(spawn, "aclient", *admin_args(daemon, "kick", "1"))
    assert (admin.code, admin.out, admin.stderr_text) == (1, b"", "guessgame-admin: no player 1\n")


@pytest_twisted.inlineCallbacks
def test_unknown_command(daemon: Daemon, spawn: Spawner) -> Any:
    """A command the server does not know exits 1 with its message."""
    admin = yield run(spawn, "aclient", *admin_args(daemon, "frob"))
    assert (admin.code, admin.stderr_text) == (1, "guessgame-admin: unknown command: frob\n")


@pytest_twisted.inlineCallbacks
def test_json(daemon: Daemon, spawn: Spawner) -> Any:
    """--json prints one JSON object, errors included."""
    yield join_players(daemon, 1)
    admin = yield run(spawn, "aclient", *admin_args(daemon, "--json", "who"))
    result = json.loads(admin.text)
    assert admin.code == 0
    assert [p["name"] for p in result["players"]] == ["player1"]
    admin = yield run(spawn, "aclient", *admin_args(daemon, "--json", "stats"))
    assert json.loads(admin.text)["stats"]["players"] == 1
    admin = yield run(spawn, "aclient", *admin_args(daemon, "--json", "kick", "9"))
    assert admin.code == 1
    assert json.loads(admin.text) == {"command": "kick 9", "ok": False, "error": "no player 9"}


@pytest_twisted.inlineCallbacks
def test_token(spawn: Spawner, tmp_path: Any) -> Any:
    """The right token from --token, the environment or a file works; a wrong one exits 1."""
    running = start_daemon("--admin-token", "s3cret")
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    try:
        args = ["--port", str(running.admin_port)]
        right = yield run(spawn, "aclient", *args, "--token", "s3cret", "count")
        from_env = yield run(
            spawn, "aclient", *args, "count", env={"GUESSGAME_ADMIN_TOKEN": "s3cret"}
        )
        from_file = yield run(spawn, "aclient", *args, "--token-file", str(path), "count")
        wrong = yield run(spawn, "aclient", *args, "--token", "guess", "count")
        missing = yield run(spawn, "aclient", *args, "count")
    finally:
        yield running.stop()
    for admin in (right, from_env, from_file):
        assert (admin.code, admin.stdout_lines) == (0, ["0 players"])
    refusal = (
        f"guessgame-admin: the server at 127.0.0.1:{running.admin_port} "
        "refused the handshake: bad token\n"
    )
    for admin in (wrong, missing):
        assert (admin.code, admin.out, admin.stderr_text) == (1, b"", refusal)


@pytest_twisted.inlineCallbacks
def test_another_admin(daemon: Daemon, spawn: Spawner) -> Any:
    """While another administrator is connected: a clear line and status 1."""
    other = yield open_client(daemon.admin_port)
    other.send("Admin-Greetings")
    assert (yield other.next_line()).startswith("OK")
    admin = yield run(spawn, "aclient", *admin_args(daemon, "count"))
    assert admin.code == 1
    assert admin.stderr_text == (
        f"guessgame-admin: the server at 127.0.0.1:{daemon.admin_port} "
        "refused the handshake: another administrator is connected "
        "(the daemon allows one at a time unless started with --max-admins N)\n"
    )
    yield other.close()


@pytest.mark.parametrize("case", sorted(TLS_FAILURES))
@pytest_twisted.inlineCallbacks
def test_tls_check_fails(spawn: Spawner, tls_listen: TLSListeners, tmp_path: Any, case: str) -> Any:
    """A certificate that fails the check: one line, status 1, and the token is never sent."""
    key, cert, roots = tls_failure(tmp_path, case)
    listener = yield tls_listen(key, cert)
    address = f"tls:localhost:{listener.number}:trustRoots={roots}"
    admin = yield run(spawn, "aclient", "--connect", address, "--token", "s3cret", "count")
    assert (admin.code, admin.out, admin.stderr_text) == (
        1,
        b"",
        f"guessgame-admin: cannot connect to {address}: {TLS_FAILURES[case]}\n",
    )
    assert listener.received == b""


@pytest_twisted.inlineCallbacks
def test_make_admin(daemon: Daemon, spawn: Spawner) -> Any:
    """make admin runs guessgame-admin from .venv with ARGS, as the README shows."""
    admin = spawn.program(make_command("admin", f"--port {daemon.admin_port} count"))
    admin.close_stdin()
    assert (yield admin.finish()) == 0
    assert (admin.stdout_lines, admin.stderr_text) == (["0 players"], "")


@pytest_twisted.inlineCallbacks
def test_admin_connection_refused(spawn: Spawner) -> Any:
    """A port nobody listens on: a clear line and status 1."""
    from twisted.internet.protocol import Factory

    port = yield listen(Factory())
    number = port.getHost().port
    yield port.stopListening()
    admin = yield run(spawn, "aclient", "--port", str(number), "who")
    assert admin.code == 1
    assert admin.stderr_text == (
        f"guessgame-admin: cannot connect to 127.0.0.1:{number}: "
        "connection refused (is the server running?)\n"
    )


@pytest_twisted.inlineCallbacks
def test_admin_pointed_at_the_player_port(daemon: Daemon, spawn: Spawner) -> Any:
    """guessgame-admin --port PLAYER-PORT: one clear line and status 1, not a wait."""
    admin = yield run(spawn, "aclient", "--port", str(daemon.player_port), "who")
    assert admin.code == 1
    assert admin.stderr_text == (
        f"guessgame-admin: 127.0.0.1:{daemon.player_port} is not a guessgame admin port: "
        "it answered 'You are now connected to the server!'\n"
    )


@pytest_twisted.inlineCallbacks
def test_admin_usage_error(spawn: Spawner) -> Any:
    """Both --token and --token-file: the message and status 2."""
    admin = yield run(spawn, "aclient", "--token", "a", "--token-file", "b", "who")
    assert admin.code == 2
    assert admin.stderr_text.splitlines()[0] == (
        "guessgame-admin: give --token or --token-file, not both"
    )


# The console.

EVENT_TIME = r"\d\d:\d\d:\d\d  "


@pytest_twisted.inlineCallbacks
def test_console_shows_join_while_idle(daemon: Daemon, spawn: Spawner) -> Any:
    """At a terminal: the player table, then a join as it happens, then quit exits 0."""
    yield join_players(daemon, 1)
    admin = spawn("aclient", *admin_args(daemon), pty=True)
    yield admin.expect(r"Connected to 127\.0\.0\.1:\d+, 1 player online\.")
    yield admin.expect(r"ID  NAME +ADDRESS +GUESSES  CONNECTED\n 1  player1 ")
    yield admin.expect(r"1 player\nadmin> ")
    newcomer = yield open_client(daemon.player_port)
    yield admin.expect(EVENT_TIME + r"player 2 \(player2\) joined from 127\.0\.0\.1:\d+\nadmin> ")
    admin.type("count\r")
    yield admin.expect(r"2 players\nadmin> ")
    admin.type("quit\r")
    assert (yield admin.finish()) == 0
    yield newcomer.close()


@pytest_twisted.inlineCallbacks
def test_console_ctrl_c(daemon: Daemon, spawn: Spawner) -> Any:
    """Ctrl-C at the console's prompt says goodbye to the server and exits 0."""
    admin = spawn("aclient", *admin_args(daemon), pty=True)
    yield admin.expect(r"No players online\.\nadmin> ")
    admin.type("who\x03")
    assert (yield admin.finish()) == 0


@pytest_twisted.inlineCallbacks
def test_console_through_a_pipe(daemon: Daemon, spawn: Spawner) -> Any:
    """From a pipe: commands run in order, errors are shown, end of input exits 0."""
    admin = yield run(spawn, "aclient", *admin_args(daemon), stdin="count\nkick 9\n\nnewround\n")
    assert admin.code == 0
    lines = admin.stdout_lines
    assert lines[:2] == [
        f"Connected to 127.0.0.1:{daemon.admin_port}, 0 players online. "
        "Type help for the commands, quit to leave.",
        "No players online.",
    ]
    events = [line for line in lines if re.match(EVENT_TIME, line)]
    assert len(events) == 1
    assert re.fullmatch(EVENT_TIME + "round 2 started: a number between 1-30", events[0])
    lines.remove(events[0])
    assert lines[2:] == ["0 players", "error: no player 9", "round 2 started"]


@pytest_twisted.inlineCallbacks
def test_console_json_events(daemon: Daemon, spawn: Spawner) -> Any:
    """With --json the console prints replies and events as JSON lines."""
    admin = spawn("aclient", *admin_args(daemon, "--json"))
    yield admin.expect(r'"players": \[\]\}\n')
    player = yield open_client(daemon.player_port)
    match = yield admin.expect(r"\{.*\"event\": \"join\".*\}\n")
    event = json.loads(match.group(0))
    assert (event["id"], event["name"]) == (1, "player1")
    admin.close_stdin()
    assert (yield admin.finish()) == 0
    yield player.close()


@pytest_twisted.inlineCallbacks
def test_console_server_gone(daemon: Daemon, spawn: Spawner) -> Any:
    """The daemon stops under the console: a clear line and status 1."""
    admin = spawn("aclient", *admin_args(daemon))
    yield admin.expect("No players online.")
    yield daemon.stop()
    assert (yield admin.finish()) == 1
    assert admin.stderr_text == (
        f"guessgame-admin: lost the connection to 127.0.0.1:{daemon.admin_port}\n"
    )
