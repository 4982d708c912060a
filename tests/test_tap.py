"""Unit tests of the command line (Options) and the service tree (makeService)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage

from guessgame.admin.protocol import AdminFactory
from guessgame.daemon import Listener, describe_database, how_to_connect, listening_address
from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.tap import Options, makeService, player_endpoint
from tests.common import make_game


def parse(*argv: str) -> Options:
    """Options parsed from ``argv``."""
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults() -> None:
    """The defaults are those the issues give."""
    options = parse()
    assert (options["player"], options["admin"], options["range"], options["mode"]) == (
        "tcp:4000",
        "tcp:4001:interface=127.0.0.1",
        "1-30",
        "shared",
    )
    assert (options["max-line"], options["max-admins"], options["token"]) == (512, 1, None)
    assert (options["lo"], options["hi"]) == (1, 30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--range", "30-1"], "--range: range LO-HI needs LO below HI, got '30-1'"),
        (["--range", "5-5"], "--range: range LO-HI needs LO below HI, got '5-5'"),
        (
            ["--range", "a-b"],
            "--range: range must be two whole numbers LO-HI, like 1-30, not 'a-b'",
        ),
        (["--mode", "party"], "--mode must be shared or solo, not 'party'"),
        (["--max-line", "abc"], "--max-line must be a whole number of at least 16, not 'abc'"),
        (["--max-line", "8"], "--max-line must be a whole number of at least 16, not '8'"),
        (["--max-admins", "-1"], "--max-admins must be a whole number of at least 0, not '-1'"),
        (
            ["--admin-token", "x", "--admin-token-file", "/dev/null"],
            "give --admin-token or --admin-token-file, not both",
        ),
        (
            ["--admin-token-file", "/nonexistent/token"],
            "--admin-token-file: cannot read /nonexistent/token: No such file or directory",
        ),
        (["--admin-token", ""], "--admin-token must not be empty or start or end with a space"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    """Each bad value is a UsageError whose text says what to fix."""
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    assert str(info.value) == message


@pytest.mark.parametrize("option", ["--player", "--admin"])
def test_endpoint_that_does_not_parse(option: str) -> None:
    """An endpoint string that does not parse is a UsageError naming the option."""
    with pytest.raises(usage.UsageError, match=f"^{option}: 'nonsense:1' is not an endpoint"):
        parse(option, "nonsense:1")


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    """The token file's contents, without the trailing newline, are the token."""
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    assert parse("--admin-token-file", str(path))["token"] == "s3cret"


def test_empty_token_file(tmp_path: Path) -> None:
    """An empty token file is refused rather than meaning 'no token'."""
    path = tmp_path / "token"
    path.write_text("\n")
    with pytest.raises(usage.UsageError, match="is empty"):
        parse("--admin-token-file", str(path))


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:4000", "tcp:4000:backlog=4096"),
        ("tcp6:4000", "tcp6:4000:backlog=4096"),
        ("tcp:4000:backlog=10", "tcp:4000:backlog=10"),
        ("unix:/tmp/g.sock", "unix:/tmp/g.sock"),
    ],
)
def test_player_backlog(description: str, expected: str) -> None:
    """TCP player endpoints get a backlog fit for thousands unless they name one."""
    assert player_endpoint(description) == expected


def test_service_tree() -> None:
    """makeService: one Game parented to the top, and two listeners sharing it."""
    options = parse(
        "--player",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
        "--range",
        "5-50",
        "--mode",
        "solo",
        "--admin-token",
        "t",
        "--max-admins",
        "3",
    )
    top = makeService(options, reactor=Clock())
    game = top.getServiceNamed("store").getServiceNamed("game")
    player = top.getServiceNamed("player")
    admin = top.getServiceNamed("admin")
    assert isinstance(game, Game)
    assert (game.lo, game.hi, game.mode) == (5, 50, "solo")
    assert isinstance(player, Listener) and isinstance(admin, Listener)
    assert isinstance(player.factory, PlayerFactory) and isinstance(admin.factory, AdminFactory)
    assert player.factory.game is game and admin.factory.game is game
    assert (admin.factory.token, admin.factory.max_admins) == ("t", 3)


@pytest.mark.parametrize(
    ("description", "address", "hint"),
    [
        (
            "tcp:4000:interface=127.0.0.1",
            IPv4Address("TCP", "127.0.0.1", 4000),
            "players connect with: nc 127.0.0.1 4000",
        ),
        (
            "tcp:4000",
            IPv4Address("TCP", "0.0.0.0", 4000),
            "the player port is open on every interface: players connect with: "
            "nc gamehost 4000 (nc 127.0.0.1 4000 on this machine)",
        ),
        (
            "tcp6:4000",
            IPv6Address("TCP", "::", 4000),
            "the player port is open on every interface: players connect with: "
            "nc gamehost 4000 (nc ::1 4000 on this machine)",
        ),
        (
            "ssl:4443:interface=10.0.0.5:privateKey=k.pem",
            IPv4Address("TCP", "10.0.0.5", 4443),
            "players connect with: openssl s_client -quiet -connect 10.0.0.5:4443",
        ),
        (
            "unix:/run/guessgame.sock",
            UNIXAddress("/run/guessgame.sock"),
            "players connect with: nc -U /run/guessgame.sock",
        ),
    ],
)
def test_how_to_connect(description: str, address: IAddress, hint: str) -> None:
    """The start-up log says how players connect, and whether every interface is open."""
    assert how_to_connect(description, address, "gamehost") == hint


@pytest.mark.parametrize(
    ("db", "shown"),
    [
        (":memory:", ":memory: (nothing is kept)"),
        ("postgresql://game:s3cret@db.example/guess", "postgresql://game:***@db.example/guess"),
    ],
)
def test_database_shown(db: str, shown: str) -> None:
    """The start-up log names the database without a password in it."""
    assert describe_database(db) == shown


def test_database_shown_with_its_absolute_path(tmp_path: Path) -> None:
    """A relative --db is shown as the absolute path of the file."""
    assert describe_database("game.sqlite3") == str(tmp_path / "game.sqlite3")


class LateEndpoint:
    """An endpoint whose listen fails only later, as an asynchronous one may."""

    def __init__(self) -> None:
        self.pending: defer.Deferred[Any] = defer.Deferred()

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        """Listen: the answer comes when the test says."""
        return self.pending


def test_a_late_listen_error_is_one_line_not_lost() -> None:
    """A port that fails after the start is reported: one critical line naming it, no traceback."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        endpoint = LateEndpoint()
        listener = Listener("web", "tcp:4002", endpoint, PlayerFactory(make_game()), Clock())
        listener.privilegedStartService()
        listener.startService()
        endpoint.pending.errback(CannotListenError("", 4002, OSError(98, "Address in use")))
    finally:
        globalLogPublisher.removeObserver(events.append)
    said = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.critical]
    assert said == ["cannot open the web port tcp:4002: Address in use"]
    assert not [e for e in events if e.get("log_failure") is not None]
    assert listener.port is None


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (IPv4Address("TCP", "0.0.0.0", 4000), "0.0.0.0:4000"),
        (IPv6Address("TCP", "::1", 4001), "[::1]:4001"),
        (UNIXAddress(b"/run/guessgame/admin.sock"), "unix:/run/guessgame/admin.sock"),
    ],
)
def test_listening_address(address: IAddress, text: str) -> None:
    """The start-up log names where a port listens, a Unix socket by its path."""
    assert listening_address(address) == text
