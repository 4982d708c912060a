"""guessgame-play: its parsing without sockets, then the program against a daemon."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from guessgame.clients.play import (
    GOODBYE_TIMEOUT,
    BinarySearch,
    Input,
    Options,
    PlayerClient,
    announces_range,
    check_input,
    ending_of,
    parse_range,
    restarts_round,
)
from guessgame.events import Left
from guessgame.player.connection import PlayerConnection
from tests.clients import (
    TLS_FAILURES,
    Daemon,
    Spawner,
    TLSListeners,
    daemon,
    make_certificate,
    make_command,
    run,
    spawn,
    start_daemon,
    tls_failure,
    tls_listen,
    trust_roots,
)
from tests.common import FakeObserver, listen, open_client

__all__ = ["daemon", "spawn", "tls_listen"]  # fixtures

GREETING = ["You are now connected to the server!", "Pick a number between 1-30"]


# Parsing and deciding, without sockets.


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Pick a number between 1-30", (1, 30)),
        ("Too low! Pick a number between 0-100", (0, 100)),
        ("*** bob won the round with 7. A new number between 5-9 has been picked.", (5, 9)),
        ("Guess the secret whole number between 1-30. Commands: ...", (1, 30)),
        ("You are now connected to the server!", None),
        ("Pick a number between 9-3", None),
    ],
)
def test_parse_range(line: str, expected: tuple[int, int] | None) -> None:
    """The range is read from any line that announces one, and only a sane one."""
    assert parse_range(line) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15", Input.GUESS),
        ("1", Input.GUESS),
        ("30", Input.GUESS),
        ("007", Input.GUESS),
        (" 12 ", Input.GUESS),
        ("0", Input.INVALID),
        ("31", Input.INVALID),
        ("-5", Input.INVALID),
        ("+5", Input.INVALID),
        ("3.0", Input.INVALID),
        ("1_0", Input.INVALID),
        ("0x1f", Input.INVALID),
        ("١٢", Input.INVALID),
        ("", Input.INVALID),
        ("abc", Input.INVALID),
        ("9" * 500, Input.INVALID),
        ("help", Input.COMMAND),
        ("TOP", Input.COMMAND),
        ("name alice", Input.COMMAND),
        ("quit", Input.QUIT),
        ("Exit", Input.QUIT),
        ("name " + "x" * 600, Input.INVALID),
    ],
)
def test_check_input(text: str, expected: Input) -> None:
    """Only whole numbers in range and the commands are sent to the server."""
    assert check_input(text, 1, 30) is expected


@pytest.mark.parametrize(
    ("line", "status", "message"),
    [
        ("Correct! The number was 7. You won in 3 guesses!", 0, ""),
        ("Goodbye!", 0, ""),
        (
            "*** You have been removed by the administrator. Goodbye!",
            1,
            "removed from the game at h:1 by the administrator",
        ),
        ("*** The server is shutting down. Goodbye!", 1, "the server at h:1 is shutting down"),
        ("*** Idle for too long. Goodbye!", 1, "disconnected from h:1 for being idle"),
        (
            "*** The server is full. Try again later.",
            1,
            "the server at h:1 is full; try again later",
        ),
        (
            "*** Too many connections from your address. Try again later.",
            1,
            "too many connections from this address to h:1; try again later",
        ),
        ("*** Line too long. Goodbye!", 1, "h:1 closed the connection: line too long"),
    ],
)
def test_endings(line: str, status: int, message: str) -> None:
    """Each closing line of the protocol maps to its exit status and message."""
    ending = ending_of(line)
    assert ending is not None
    assert (ending.status, ending.describe("h:1")) == (status, message)


@pytest.mark.parametrize(
    "line",
    [
        "Too low! Pick a number between 1-30",
        "*** Message from the administrator: Correct! Goodbye!",
        "*** No input for a while: say something within 30 seconds to stay.",
        "*** bob won the round with 7. A new number between 1-30 has been picked.",
    ],
)
def test_lines_that_do_not_end_the_game(line: str) -> None:
    """Replies and notices that do not close the connection are no ending."""
    assert ending_of(line) is None


def test_announces_range() -> None:
    """Only the server's own lines set the range, never the administrator's message."""
    assert announces_range("Too low! Pick a number between 1-30")
    assert announces_range("*** bob won the round with 7. A new number between 1-30 has been")
    assert not announces_range("*** Message from the administrator: Pick a number between 1-1000")


def test_restarts_round() -> None:
    """Round notices restart the search; other notices and replies do not."""
    assert restarts_round("*** bob won the round with 7. A new number between 1-30 has been picked")
    assert restarts_round("*** The administrator started a new round. Pick a number between 1-30")
    assert not restarts_round("*** Message from the administrator: won the round")
    assert not restarts_round("Too low! Pick a number between 1-30")


def search_for(secret: int, lo: int, hi: int) -> list[int]:
    """The guesses `BinarySearch` makes to find ``secret``."""
    search = BinarySearch(lo, hi)
    guesses = []
    while len(guesses) < 100:
        guess = search.guess()
        guesses.append(guess)
        if guess == secret:
            break
        reply = "Too low! ..." if guess < secret else "Too high! ..."
        search.answer(guess, reply)
    return guesses


@pytest.mark.parametrize(("lo", "hi", "most"), [(1, 30, 5), (0, 1, 2), (1, 1000, 10)])
def test_binary_search_finds_every_secret(lo: int, hi: int, most: int) -> None:
    """Every secret of the range is found within ceil(log2(size)) guesses."""
    for secret in range(lo, hi + 1):
        guesses = search_for(secret, lo, hi)
        assert guesses[-1] == secret
        assert len(guesses) <= most


def test_binary_search_starts_over() -> None:
    """After a reset, or when replies contradict, the search starts from the middle."""
    search = BinarySearch(1, 30)
    search.answer(15, "Too low! ...")
    search.answer(23, "Too high! ...")
    assert search.guess() == 19
    search.reset(1, 30)
    assert search.guess() == 15
    search.answer(15, "Too low! ...")
    search.answer(16, "Too high! ...")
    assert search.guess() == 15


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "abc"], "--port must be a TCP port number (1-65535), not 'abc'"),
        (["--port", "70000"], "--port must be a TCP port number (1-65535), not '70000'"),
        (["--games", "3"], "--games needs --auto"),
        (["--auto", "--games", "0"], "--games must be a whole number of at least 1, not '0'"),
        (["--connect", "tcp:h:1", "--port", "4000"], "give --connect or --host/--port, not both"),
        (["extra"], "unexpected argument: extra"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    """Bad command lines are refused with a message saying what is wrong."""
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError) as caught:
        Options().parseOptions(argv)
    assert str(caught.value) == message


# The program against a daemon.


@pytest.fixture
def server_lines(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every line the in-process daemon's player port receives, in order."""
    received: list[str | None] = []
    original = PlayerConnection.lineReceived

    def spy(self: PlayerConnection, line: bytes) -> None:
        received.append(line.rstrip(b"\r").decode("utf-8", "replace").strip(" \t"))
        original(self, line)

    monkeypatch.setattr(PlayerConnection, "lineReceived", spy)
    return received


def wrong_guess(game: Any) -> tuple[int, str]:
    """A valid guess that misses the shared secret, and the reply it gets."""
    secret = int(game._secret)
    if secret > game.lo:
        return game.lo, "Too low! Pick a number between 1-30"
    return game.hi, "Too high! Pick a number between 1-30"


@pytest_twisted.inlineCallbacks
def test_keyboard_play_to_a_win(
    daemon: Daemon, spawn: Spawner, server_lines: list[str | None]
) -> Any:
    """At a terminal: bad input is answered locally, a miss by the server, the secret wins."""
    game = daemon.game
    player = spawn("pclient", "--port", str(daemon.player_port), pty=True)
    yield player.expect(r"Pick a number between 1-30\n> ")
    player.type("abc\r")
    yield player.expect(r"abc\nPick a number between 1-30\n> ")
    assert server_lines == []  # answered here, never sent
    number, reply = wrong_guess(game)
    player.type(f"{number}\r")
    yield player.expect(reply)
    secret = int(game._secret)
    player.type(f"{secret}\r")
    yield player.expect(f"Correct! The number was {secret}. You won in 2 guesses!")
    assert (yield player.finish()) == 0
    assert server_lines == [str(number), str(secret)]


@pytest_twisted.inlineCallbacks
def test_notice_while_typing_gets_its_own_line(daemon: Daemon, spawn: Spawner) -> Any:
    """A notice arriving mid-line is printed above it; the typed text is kept and sent."""
    player = spawn("pclient", "--port", str(daemon.player_port), pty=True)
    yield player.expect(r"Pick a number between 1-30\n> ")
    player.type("1")
    yield player.expect("1")
    daemon.game.say("hello all")
    yield player.expect(r"\*\*\* Message from the administrator: hello all\n> 1")
    player.type("0\r")  # the line is now "10"
    yield player.expect(r"Too (low|high)! Pick a number between 1-30|Correct!")
    assert daemon.game.stats()["guesses"] == 1


@pytest_twisted.inlineCallbacks
def test_pipe_play(daemon: Daemon, spawn: Spawner, server_lines: list[str | None]) -> Any:
    """Through a pipe the same game prints exactly the server's and the local lines."""
    game = daemon.game
    number, reply = wrong_guess(game)
    secret = int(game._secret)
    player = yield run(
        spawn,
        "pclient",
        "--port",
        str(daemon.player_port),
        stdin=f"abc\n{number}\n31\n{secret}\n99\n",
    )
    assert player.code == 0
    assert player.stdout_lines == [
        *GREETING,
        "Pick a number between 1-30",
        reply,
        "Pick a number between 1-30",
        f"Correct! The number was {secret}. You won in 2 guesses!",
    ]
    assert player.stderr_text == ""
    assert server_lines == [str(number), str(secret)]


@pytest_twisted.inlineCallbacks
def test_pipe_commands(daemon: Daemon, spawn: Spawner) -> Any:
    """Commands go to the server, and quit ends with its goodbye and status 0."""
    player = yield run(
        spawn,
        "pclient",
        "--port",
        str(daemon.player_port),
        stdin="help\nname alice\ntop\nquit\n15\n",
    )
    assert player.code == 0
    lines = player.stdout_lines
    assert lines[:2] == GREETING
    assert lines[2].startswith("Guess the secret whole number between 1-30.")
    assert lines[3:] == ["You are now known as alice.", "No winners yet.", "Goodbye!"]
    assert daemon.game.stats()["guesses"] == 0


@pytest_twisted.inlineCallbacks
def test_end_of_input_says_goodbye(daemon: Daemon, spawn: Spawner) -> Any:
    """At end of input the client quits politely and exits 0."""
    watcher = FakeObserver()
    daemon.game.add_observer(watcher)
    player = yield run(spawn, "pclient", "--port", str(daemon.player_port))
    assert player.code == 0
    assert player.stdout_lines == [*GREETING, "Goodbye!"]
    assert [e.reason for e in watcher.events if isinstance(e, Left)] == ["quit"]


@pytest_twisted.inlineCallbacks
def test_ctrl_c_says_goodbye(daemon: Daemon, spawn: Spawner) -> Any:
    """Ctrl-C at the terminal quits politely and exits 0."""
    watcher = FakeObserver()
    daemon.game.add_observer(watcher)
    player = spawn("pclient", "--port", str(daemon.player_port), pty=True)
    yield player.expect(r"Pick a number between 1-30\n> ")
    player.type("12\x03")
    yield player.expect("Goodbye!")
    assert (yield player.finish()) == 0
    assert [e.reason for e in watcher.events if isinstance(e, Left)] == ["quit"]


@pytest_twisted.inlineCallbacks
def test_ctrl_d_says_goodbye(daemon: Daemon, spawn: Spawner) -> Any:
    """Ctrl-D on an empty line at the terminal quits politely and exits 0."""
    player = spawn("pclient", "--port", str(daemon.player_port), pty=True)
    yield player.expect(r"Pick a number between 1-30\n> ")
    player.type("\x04")
    yield player.expect("Goodbye!")
    assert (yield player.finish()) == 0


@pytest_twisted.inlineCallbacks
def test_auto_wins(daemon: Daemon, spawn: Spawner) -> Any:
    """--auto finds the secret by itself, printing each guess and reply."""
    secret = int(daemon.game._secret)
    player = yield run(spawn, "pclient", "--port", str(daemon.player_port), "--auto")
    assert player.code == 0
    lines = player.stdout_lines
    assert lines[:2] == GREETING
    guesses = lines[2::2]
    replies = lines[3::2]
    assert guesses[0] == "> 15"
    assert all(g.startswith("> ") for g in guesses)
    assert replies[-1] == f"Correct! The number was {secret}. You won in {len(guesses)} " + (
        "guess!" if len(guesses) == 1 else "guesses!"
    )
    assert len(guesses) <= 5
    assert daemon.game.stats()["wins"] == 1


@pytest_twisted.inlineCallbacks
def test_auto_games_with_name(daemon: Daemon, spawn: Spawner) -> Any:
    """--auto --games 3 wins three games in a row, under the name given."""
    player = yield run(
        spawn,
        "pclient",
        "--port",
        str(daemon.player_port),
        "--auto",
        "--games",
        "3",
        "--name",
        "robot",
    )
    assert player.code == 0
    assert sum(line.startswith("Correct!") for line in player.stdout_lines) == 3
    assert player.stdout_lines.count("You are now known as robot.") == 3
    assert [(e.name, e.wins) for e in daemon.game.leaderboard()] == [("robot", 3)]


@pytest_twisted.inlineCallbacks
def test_auto_starts_over_when_someone_else_wins(daemon: Daemon, spawn: Spawner) -> Any:
    """In shared mode another player's win restarts the search, which then wins the new round."""
    game = daemon.game
    # Guesses 0.8 s apart: the rival wins between two of them, never during one.
    player = spawn("pclient", "--port", str(daemon.player_port), "--auto", "--delay", "0.8")
    yield player.expect(r"> 15\nToo (low|high)! Pick a number between 1-30\n")
    rival = yield open_client(daemon.player_port)
    yield rival.next_line()
    yield rival.next_line()
    rival.send(str(game._secret))
    assert (yield rival.next_line()).startswith("Correct!")
    # Then the search starts from the middle again, not where the old round left off.
    yield player.expect(r"\*\*\* player2 won the round with \d+\. A new number [^\n]*\n> 15\n")
    secret = int(game._secret)
    yield player.expect(f"Correct! The number was {secret}.")
    assert (yield player.finish()) == 0
    assert game.stats()["wins"] == 2


# Errors: one line on standard error, exit status 1 (2 for usage).


@pytest_twisted.inlineCallbacks
def test_connection_refused(spawn: Spawner) -> Any:
    """A port nobody listens on: a clear line and status 1."""
    from twisted.internet.protocol import Factory

    port = yield listen(Factory())
    number = port.getHost().port
    yield port.stopListening()
    player = yield run(spawn, "pclient", "--port", str(number))
    assert player.code == 1
    assert player.stderr_text == (
        f"guessgame-play: cannot connect to 127.0.0.1:{number}: "
        "connection refused (is the server running?)\n"
    )
    assert player.out == b""


@pytest_twisted.inlineCallbacks
def test_unknown_host(spawn: Spawner) -> Any:
    """A host name that does not resolve: a clear line and status 1."""
    player = yield run(spawn, "pclient", "--host", "no-such-host.invalid")
    assert player.code == 1
    assert player.stderr_text == (
        "guessgame-play: cannot connect to no-such-host.invalid:4000: unknown host\n"
    )


@pytest_twisted.inlineCallbacks
def test_usage_error_exits_2(spawn: Spawner) -> Any:
    """A bad option: the message, a hint, and status 2."""
    player = yield run(spawn, "pclient", "--port", "abc")
    assert player.code == 2
    assert player.stderr_text.splitlines() == [
        "guessgame-play: --port must be a TCP port number (1-65535), not 'abc'",
        "Try 'guessgame-play --help' for more information.",
    ]


@defer.inlineCallbacks
def connected_player(daemon: Daemon, spawn: Spawner) -> Any:
    """A player client waiting for input from an open pipe, and its game Player."""
    player = spawn("pclient", "--port", str(daemon.player_port))
    yield player.expect("Pick a number between 1-30")
    (joined,) = daemon.game.players.values()
    return player, joined


@pytest_twisted.inlineCallbacks
def test_kicked(daemon: Daemon, spawn: Spawner) -> Any:
    """Removed by the administrator: the notice, a clear line, status 1."""
    player, joined = yield connected_player(daemon, spawn)
    daemon.game.kick(joined.id)
    assert (yield player.finish()) == 1
    assert player.stdout_lines[-1] == "*** You have been removed by the administrator. Goodbye!"
    assert player.stderr_text == (
        f"guessgame-play: removed from the game at 127.0.0.1:{daemon.player_port} "
        "by the administrator\n"
    )


@pytest_twisted.inlineCallbacks
def test_server_shutting_down(daemon: Daemon, spawn: Spawner) -> Any:
    """The daemon stops: the notice, a clear line, status 1."""
    player, _ = yield connected_player(daemon, spawn)
    yield daemon.stop()
    assert (yield player.finish()) == 1
    assert player.stdout_lines[-1] == "*** The server is shutting down. Goodbye!"
    assert player.stderr_text == (
        f"guessgame-play: the server at 127.0.0.1:{daemon.player_port} is shutting down\n"
    )


@pytest_twisted.inlineCallbacks
def test_server_gone(daemon: Daemon, spawn: Spawner) -> Any:
    """The connection drops without a word: a clear line, status 1."""
    player, joined = yield connected_player(daemon, spawn)
    joined.link.transport.abortConnection()
    assert (yield player.finish()) == 1
    assert player.stderr_text == (
        f"guessgame-play: lost the connection to 127.0.0.1:{daemon.player_port}\n"
    )


@pytest_twisted.inlineCallbacks
def test_connect_endpoint(spawn: Spawner) -> Any:
    """--connect takes a client endpoint string."""
    running = start_daemon()
    try:
        player = yield run(
            spawn,
            "pclient",
            "--connect",
            f"tcp:host=127.0.0.1:port={running.player_port}",
            stdin="quit\n",
        )
    finally:
        yield running.stop()
    assert player.code == 0
    assert player.stdout_lines == [*GREETING, "Goodbye!"]


# Twisted's ssl: server endpoint still hands pyOpenSSL its older certificate type.
@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL (X509|PKey) objects is deprecated")
@pytest_twisted.inlineCallbacks
def test_connect_tls(spawn: Spawner, tmp_path: Any) -> Any:
    """--connect tls:... plays over TLS, checking the server's certificate."""
    key, cert = make_certificate(tmp_path, "server")
    roots = trust_roots(tmp_path, cert)
    running = start_daemon("--player", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    try:
        port = running.player_port
        player = yield run(
            spawn,
            "pclient",
            "--connect",
            f"tls:localhost:{port}:trustRoots={roots}",
            stdin="quit\n",
        )
    finally:
        yield running.stop()
    assert (player.code, player.stderr_text) == (0, "")
    assert player.stdout_lines == [*GREETING, "Goodbye!"]


@pytest.mark.parametrize("case", sorted(TLS_FAILURES))
@pytest_twisted.inlineCallbacks
def test_tls_check_fails(spawn: Spawner, tls_listen: TLSListeners, tmp_path: Any, case: str) -> Any:
    """A certificate that fails the check: one line on stderr, status 1, nothing sent."""
    key, cert, roots = tls_failure(tmp_path, case)
    listener = yield tls_listen(key, cert)
    address = f"tls:localhost:{listener.number}:trustRoots={roots}"
    player = yield run(spawn, "pclient", "--connect", address, stdin="15\nquit\n")
    assert (player.code, player.out, player.stderr_text) == (
        1,
        b"",
        f"guessgame-play: cannot connect to {address}: {TLS_FAILURES[case]}\n",
    )
    assert listener.received == b""


@pytest_twisted.inlineCallbacks
def test_tls_goodbye_from_a_slow_server(
    spawn: Spawner, tls_listen: TLSListeners, tmp_path: Any
) -> Any:
    """End of input over TLS: the goodbye and status 0, though the server is slow to close."""
    key, cert = make_certificate(tmp_path, "server")
    listener = yield tls_listen(key, cert)
    address = f"tls:localhost:{listener.number}:trustRoots={trust_roots(tmp_path, cert)}"
    player = yield run(spawn, "pclient", "--connect", address, stdin="15\n")
    assert (player.code, player.stderr_text) == (0, "")
    assert player.stdout_lines == [*GREETING, "Too low! Pick a number between 1-30", "Goodbye!"]
    assert listener.received == b"15\nquit\n"


def test_goodbye_timeout_ends_the_game_cleanly() -> None:
    """A server that says Goodbye! but never closes: aborted after a while, status 0."""
    from twisted.internet.error import ConnectionAborted
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    clock = Clock()
    client = PlayerClient(clock, "h:1", None)
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"You are now connected to the server!\r\nPick a number between 1-30\r\n")
    results: list[object] = []
    client.finished.addBoth(results.append)  # as play() waits for it
    client.leave()
    client.dataReceived(b"Too low! Pick a number between 1-30\r\nGoodbye!\r\n")
    clock.advance(GOODBYE_TIMEOUT)
    assert transport.disconnecting
    client.connectionLost(Failure(ConnectionAborted()))
    assert results == [0]


@pytest_twisted.inlineCallbacks
def test_make_play(daemon: Daemon, spawn: Spawner) -> Any:
    """make play runs guessgame-play from .venv with ARGS, as the README shows."""
    player = spawn.program(make_command("play", f"--port {daemon.player_port}"))
    player.type("quit\n")
    player.close_stdin()
    assert (yield player.finish()) == 0
    assert (player.stdout_lines, player.stderr_text) == ([*GREETING, "Goodbye!"], "")


@pytest_twisted.inlineCallbacks
def test_readme_connect_examples(spawn: Spawner) -> Any:
    """Every --connect tcp: example in the README reaches a daemon with the default --player."""
    import re

    from tests.clients import ROOT

    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    examples = re.findall(r"--connect[ =]`*(tcp:[^` ]+)", readme)
    examples += re.findall(r"``(tcp:host=[^`]+)``", readme)
    assert examples
    running = start_daemon("--player", "tcp:0")  # the default, on a free port
    try:
        for example in sorted(set(examples)):
            endpoint = re.sub(r"port=4000", f"port={running.player_port}", example)
            player = yield run(spawn, "pclient", "--connect", endpoint, stdin="quit\n")
            assert (example, player.code, player.stderr_text) == (example, 0, "")
    finally:
        yield running.stop()


@pytest_twisted.inlineCallbacks
def test_ipv6_host(spawn: Spawner) -> Any:
    """--host ::1 reaches a daemon on IPv6 loopback, and errors name it in brackets."""
    running = start_daemon("--player", "tcp6:0:interface=\\:\\:1")
    try:
        port = running.player_port
        player = yield run(spawn, "pclient", "--host", "::1", "--port", str(port), stdin="quit\n")
    finally:
        yield running.stop()
    assert (player.code, player.stdout_lines) == (0, [*GREETING, "Goodbye!"])
    refused = yield run(spawn, "pclient", "--host", "::1", "--port", str(port))
    assert refused.stderr_text == (
        f"guessgame-play: cannot connect to [::1]:{port}: "
        "connection refused (is the server running?)\n"
    )
