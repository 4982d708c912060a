"""The limit options of ``twistd guessgame`` and the admin endpoint check."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python import usage

from guessgame.admin.protocol import AdminFactory
from guessgame.daemon import FileLimit
from guessgame.player.factory import PlayerFactory
from guessgame.tap import Options, is_local_endpoint, makeService
from guessgame.wire.limits import Limits


def parse(*args: str) -> Options:
    """Parse a command line."""
    options = Options()
    options.parseOptions(list(args))
    return options


def test_limit_defaults() -> None:
    """The defaults of the issue: 10000 players, 20 per address, 600 s, 100 lines/s, 64 KiB."""
    assert parse().limits() == Limits(
        max_players=10000, max_per_ip=20, idle_timeout=600, max_rate=100, max_output=65536
    )


def test_limit_options_are_read() -> None:
    """Each limit option reaches the Limits, 0 included."""
    options = parse(
        "--max-players=0",
        "--max-per-ip=3",
        "--idle-timeout=2.5",
        "--max-rate=0",
        "--max-output=4096",
    )
    assert options.limits() == Limits(
        max_players=0, max_per_ip=3, idle_timeout=2.5, max_rate=0, max_output=4096
    )


def test_help_describes_every_limit() -> None:
    """--help names every limit option with a help text."""
    text = str(Options())
    for name in ("max-line", "max-players", "max-per-ip", "idle-timeout", "max-rate", "max-output"):
        assert f"--{name}=" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-players=-1"], "--max-players must be a whole number of at least 0, not '-1'"),
        (["--max-per-ip=x"], "--max-per-ip must be a whole number of at least 0, not 'x'"),
        (["--max-rate=1.5"], "--max-rate must be a whole number of at least 0, not '1.5'"),
        (["--max-output=100"], "--max-output must be a whole number of at least 1024, not '100'"),
        (
            ["--idle-timeout=-5"],
            "--idle-timeout must be a number of seconds, 0 or more (like 0.1), not '-5'",
        ),
        (
            ["--idle-timeout=nan"],
            "--idle-timeout must be a number of seconds, 0 or more (like 0.1), not 'nan'",
        ),
    ],
)
def test_bad_limit_values(args: list[str], message: str) -> None:
    """A bad limit value is a UsageError that names the option."""
    with pytest.raises(usage.UsageError) as e:
        parse(*args)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("description", "local"),
    [
        ("tcp:4001:interface=127.0.0.1", True),
        ("tcp:4001:interface=127.1.2.3", True),
        ("tcp:4001:127.0.0.1", True),
        ("tcp6:4001:interface=\\:\\:1", True),
        ("unix:/run/guessgame/admin.sock", True),
        ("tcp:4001", False),
        ("tcp:4001:interface=0.0.0.0", False),
        ("tcp:4001:interface=10.0.0.1", False),
        ("tcp:4001:interface=localhost", False),
        ("tcp6:4001:interface=\\:\\:", False),
        ("tcp6:4001:interface=\\:\\:ffff\\:127.0.0.1", False),
        ("ssl:4001:interface=127.0.0.1:privateKey=k.pem", False),
        ("systemd:domain=INET:index=0", False),
    ],
)
def test_is_local_endpoint(description: str, local: bool) -> None:
    """Only loopback tcp/tcp6 interfaces and unix: sockets count as local."""
    assert is_local_endpoint(description) is local


def test_public_admin_without_token_is_refused() -> None:
    """An admin endpoint open to the network needs a token."""
    with pytest.raises(usage.UsageError) as e:
        parse("--admin=tcp:4001")
    assert str(e.value) == (
        "--admin 'tcp:4001' is not a loopback endpoint (only tcp: or tcp6: with "
        "interface=127.x.x.x or ::1, and unix:, count as local); set --admin-token "
        "or --admin-token-file before opening the admin port to the network"
    )


def test_public_admin_with_token_is_accepted() -> None:
    """With a token the admin port may listen anywhere."""
    assert parse("--admin=tcp:4001", "--admin-token=s3cret")["token"] == "s3cret"


def test_make_service_gives_the_player_port_its_limits() -> None:
    """The player factory makeService builds carries the options' limits."""
    options = parse("--player=tcp:0:interface=127.0.0.1", "--max-per-ip=7", "--max-rate=5")
    top = makeService(options, reactor=Clock())
    factory = top.getServiceNamed("player").factory
    assert isinstance(factory, PlayerFactory)
    assert factory.limits == options.limits()
    assert factory.limits.max_per_ip == 7


@pytest.mark.parametrize(("args", "cap"), [([], 65536), (["--max-output=4096"], 4096)])
def test_make_service_gives_the_admin_port_the_output_cap(args: list[str], cap: int) -> None:
    """The admin factory makeService builds carries --max-output too."""
    top = makeService(parse("--player=tcp:0:interface=127.0.0.1", *args), reactor=Clock())
    factory = top.getServiceNamed("admin").factory
    assert isinstance(factory, AdminFactory)
    assert factory.max_output == cap


def _warnings(max_players: int) -> list[str]:
    from twisted.logger import formatEvent

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        FileLimit(max_players).startService()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    return [formatEvent(e) for e in seen if "open-file limit" in formatEvent(e)]


def test_file_limit_warns_when_players_do_not_fit() -> None:
    """More players than file descriptors gives a warning in the log."""
    assert any("--max-players 100000000" in text for text in _warnings(100_000_000))


def test_file_limit_is_quiet_when_players_fit() -> None:
    """A player limit well under the open-file limit logs no warning."""
    assert _warnings(10) == []
