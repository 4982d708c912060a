"""``twistd guessgame``: the command-line options and the service tree.

`Options` reads and checks the command line; `makeService` builds one
`Game` and two listeners (players and administrator) that share it.
"""

from __future__ import annotations

import ipaddress
import math
import random
import re
import signal
from types import FrameType
from typing import Any

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from guessgame import pgstore
from guessgame.admin import AdminFactory
from guessgame.game import MODES, Game, parse_range
from guessgame.limits import Limits, raise_open_file_limit
from guessgame.lines import format_address
from guessgame.player import PlayerFactory
from guessgame.sqlstore import StoreError, open_store
from guessgame.store import MemoryStore, Store

__all__ = ["FileLimit", "Listener", "Options", "is_local_endpoint", "makeService", "open_database"]

log = Logger()

#: File descriptors kept for what is not a player: listeners, the
#: administrator, the database, the log.
RESERVED_FILES = 32

#: The listen backlog given to TCP player endpoints that name none: room
#: for thousands of players connecting at once (Twisted's default is 50).
PLAYER_BACKLOG = 4096


class Options(usage.Options):
    """The options of ``twistd guessgame``."""

    synopsis = "[options]"
    longdesc = (
        "A multiplayer number-guessing game.  Players connect with telnet or "
        "nc to the player endpoint; an operator runs the game from the admin "
        "endpoint.  Endpoints are Twisted endpoint strings, so tcp6:, ssl: "
        "and systemd: work as well as tcp:."
    )

    optParameters: list[list[Any]] = [
        [
            "player",
            None,
            "tcp:4000",
            "Endpoint the players connect to (TCP endpoints without a backlog "
            f"get backlog={PLAYER_BACKLOG}).",
        ],
        ["admin", None, "tcp:4001:interface=127.0.0.1", "Endpoint the administrator connects to."],
        ["range", None, "1-30", "The secret is a whole number in LO-HI (0 <= LO < HI)."],
        [
            "mode",
            None,
            "shared",
            "shared: everyone guesses one secret, the first to find it wins the "
            "round; solo: every player has a secret of its own.",
        ],
        ["admin-token", None, None, "Token the administrator must give: 'Admin-Greetings TOKEN'."],
        [
            "admin-token-file",
            None,
            None,
            "Read the admin token from this file (keeps it out of ps).",
        ],
        [
            "max-line",
            None,
            "512",
            "Longest line accepted, in bytes; longer lines close the connection.",
        ],
        [
            "classic-wait",
            None,
            "0.1",
            "Seconds a new player connection waits for the classic 'Hello' of the "
            "original coursework clients before it is greeted (0: no classic dialect).",
        ],
        [
            "db",
            None,
            "guessgame.sqlite3",
            "SQLite file that keeps the leaderboard, counters and ids across "
            "restarts (:memory: keeps nothing), or a PostgreSQL URI "
            "(postgresql://USER@HOST/DBNAME): daemons on one PostgreSQL database "
            "play one game.",
        ],
        [
            "max-admins",
            None,
            "1",
            "How many administrators may be connected at once (0: no limit).",
        ],
        [
            "max-players",
            None,
            "10000",
            "How many players may be connected at once; more are told the server "
            "is full (0: no limit).",
        ],
        [
            "max-per-ip",
            None,
            "20",
            "How many player connections one IP address may hold (0: no limit).",
        ],
        [
            "idle-timeout",
            None,
            "600",
            "Close a player connection that sends no complete line for this many "
            "seconds, after a warning (0: never).",
        ],
        [
            "max-rate",
            None,
            "100",
            "Lines a second one player connection may send, in bursts of up to as "
            "many; beyond it the daemon reads that connection more slowly (0: no limit).",
        ],
        [
            "max-output",
            None,
            "65536",
            "Close a player connection with more than this many bytes waiting to "
            "be sent (a player that stopped reading).",
        ],
    ]

    def postOptions(self) -> None:
        """Check every value and combination; raise `UsageError` on a bad one."""
        try:
            self["lo"], self["hi"] = parse_range(self["range"])
        except ValueError as e:
            raise usage.UsageError(f"--range: {e}") from None
        if self["mode"] not in MODES:
            raise usage.UsageError(f"--mode must be shared or solo, not {self['mode']!r}")
        self["max-line"] = _whole_number("max-line", self["max-line"], minimum=16)
        self["max-admins"] = _whole_number("max-admins", self["max-admins"], minimum=0)
        self["classic-wait"] = _seconds("classic-wait", self["classic-wait"])
        for name in ("max-players", "max-per-ip", "max-rate"):
            self[name] = _whole_number(name, self[name], minimum=0)
        self["max-output"] = _whole_number("max-output", self["max-output"], minimum=1024)
        self["idle-timeout"] = _seconds("idle-timeout", self["idle-timeout"])
        self["token"] = self._read_token()
        if not self["db"]:
            raise usage.UsageError("--db needs a file name (or :memory: to keep nothing)")
        for name in ("player", "admin"):
            _check_endpoint(name, self[name])
        if self["token"] is None and not is_local_endpoint(self["admin"]):
            raise usage.UsageError(
                f"--admin {self['admin']!r} is not a loopback endpoint (only tcp: or "
                "tcp6: with interface=127.x.x.x or ::1, and unix:, count as local); "
                "set --admin-token or --admin-token-file before opening the admin "
                "port to the network"
            )

    def limits(self) -> Limits:
        """The player port's limits, from the checked options."""
        return Limits(
            max_players=self["max-players"],
            max_per_ip=self["max-per-ip"],
            idle_timeout=self["idle-timeout"],
            max_rate=self["max-rate"],
            max_output=self["max-output"],
        )

    def _read_token(self) -> str | None:
        token, path = self["admin-token"], self["admin-token-file"]
        if token is not None and path is not None:
            raise usage.UsageError("give --admin-token or --admin-token-file, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as e:
                raise usage.UsageError(
                    f"--admin-token-file: cannot read {path}: {e.strerror}"
                ) from None
            except UnicodeDecodeError:
                raise usage.UsageError(f"--admin-token-file: {path} is not UTF-8 text") from None
            if not token:
                raise usage.UsageError(f"--admin-token-file: {path} is empty")
        if token is not None and (not token or token != token.strip()):
            raise usage.UsageError("--admin-token must not be empty or start or end with a space")
        return token


def _whole_number(name: str, text: str, *, minimum: int) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise usage.UsageError(
            f"--{name} must be a whole number of at least {minimum}, not {text!r}"
        )
    return int(text)


def _seconds(name: str, text: str) -> float:
    number = re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text, re.ASCII)
    if number is None or not math.isfinite(float(text)):
        raise usage.UsageError(
            f"--{name} must be a number of seconds, 0 or more (like 0.1), not {text!r}"
        )
    return float(text)


def _split_endpoint(description: str) -> list[str]:
    """Split an endpoint string at its colons, honouring backslash escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def is_local_endpoint(description: str) -> bool:
    """Whether only this machine can reach ``description``.

    ``unix:`` endpoints are local, and ``tcp:``/``tcp6:`` endpoints whose
    interface is in 127.0.0.0/8 or is ``::1``; anything else (no interface,
    a host name, TLS, systemd sockets) is not.
    """
    kind, *args = _split_endpoint(description)
    kind = kind.strip().lower()
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6"):
        return False
    named = dict(arg.split("=", 1) for arg in args if "=" in arg)
    positional = [arg for arg in args if "=" not in arg]
    interface = named.get("interface", positional[1] if len(positional) > 1 else "")
    try:
        ip = ipaddress.ip_address(interface.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in ipaddress.IPv4Network("127.0.0.0/8")
    return ip == ipaddress.IPv6Address("::1")


def _check_endpoint(name: str, description: str) -> None:
    from twisted.internet import reactor

    try:
        endpoints.serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(
            f"--{name}: {description!r} is not an endpoint string "
            f"(like tcp:4000 or tcp:4001:interface=127.0.0.1): {e}"
        ) from None


def player_endpoint(description: str) -> str:
    """``description`` with a large listen backlog when it is TCP without one."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6") and "backlog=" not in description:
        return f"{description}:backlog={PLAYER_BACKLOG}"
    return description


class FileLimit(service.Service):
    """At start, raises the open-file limit and warns when players may not fit."""

    def __init__(self, max_players: int) -> None:
        self.max_players = max_players

    def startService(self) -> None:
        """Raise the soft limit to the hard one; warn if --max-players is above it."""
        super().startService()
        soft = raise_open_file_limit()
        room = soft - RESERVED_FILES
        if self.max_players == 0 or self.max_players > room:
            log.warn(
                "--max-players {wanted} is above the {room} players the open-file "
                "limit ({limit}) allows; raise it (ulimit -n) or lower --max-players",
                wanted=self.max_players or "0 (no limit)",
                room=room,
                limit=soft,
            )


class Listener(service.Service):
    """Listens on an endpoint while running and logs the address bound.

    Like `twisted.application.strports.service`, a port that cannot be
    bound raises at start-up, so ``twistd`` fails instead of running deaf.
    """

    port: IListeningPort | None = None

    def __init__(
        self, role: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory
    ) -> None:
        self.role = role
        self.endpoint = endpoint
        self.factory = factory

    def startService(self) -> None:
        """Start listening; raise at once if the endpoint refuses."""
        super().startService()
        failures: list[Failure] = []
        d = self.endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        log.info(
            "{role} port listening on {address}",
            role=self.role,
            address=format_address(port.getHost()),
        )

    def stopService(self) -> Any:
        """Stop listening; connections already made stay up."""
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def exit_cleanly_on_sigterm(reactor: Any) -> None:
    """Make SIGTERM an orderly shutdown that exits with status 0.

    twistd re-raises a terminating signal after shutting down, so the exit
    status would say "killed"; SIGTERM is how operators and service managers
    ask a daemon to stop, and a clean stop should read as success.
    """

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGTERM, shutting down")
        reactor.callFromThread(reactor.stop)

    # After startup, so that this replaces the reactor's own handler.
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, on_sigterm)


def open_database(
    path: str, reactor: Any, *, lo: int = 1, hi: int = 30, mode: str = "shared"
) -> Store:
    """The store for ``--db PATH``, opened and loaded now.

    ``PATH`` is an SQLite file, ``:memory:``, or a PostgreSQL URI, whose
    game plays ``lo``-``hi`` in ``mode``.  A database that cannot be used
    ends the program with one line that says what and where (exit status
    1): it is not a usage mistake, so no usage text, and not a bug, so no
    traceback.
    """
    if path == ":memory:":
        return MemoryStore()
    if pgstore.is_postgres_uri(path):
        try:
            return pgstore.open_store(path, reactor, lo=lo, hi=hi, mode=mode)
        except pgstore.StoreError as e:
            raise SystemExit(f"guessgame: {e}") from None
    try:
        # The flush timer runs on ``reactor`` (a test may pass a Clock); the
        # database thread reports back through the global reactor.
        return open_store(path, reactor)
    except StoreError as e:
        raise SystemExit(f"guessgame: {e}") from None


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    """Build the daemon: one `Game`, a player listener and an admin listener.

    ``reactor`` is for tests; twistd passes none and gets the global reactor
    with SIGTERM made a clean exit.
    """
    if reactor is None:
        from twisted.internet import reactor

        exit_cleanly_on_sigterm(reactor)
    top = service.MultiService()
    FileLimit(options["max-players"]).setServiceParent(top)
    store = open_database(
        options["db"], reactor, lo=options["lo"], hi=options["hi"], mode=options["mode"]
    )
    game = Game(
        reactor,
        random.SystemRandom(),
        lo=options["lo"],
        hi=options["hi"],
        mode=options["mode"],
        store=store,
        # Daemons on one PostgreSQL database share their rounds through it.
        keeper=store if isinstance(store, pgstore.PostgresStore) else None,
    )
    game.setServiceParent(top)
    players = PlayerFactory(
        game,
        max_line=options["max-line"],
        limits=options.limits(),
        classic_wait=options["classic-wait"],
    )
    admins = AdminFactory(
        game,
        token=options["token"],
        max_admins=options["max-admins"],
        max_line=options["max-line"],
    )
    for role, description, factory in (
        ("player", player_endpoint(options["player"]), players),
        ("admin", options["admin"], admins),
    ):
        endpoint = endpoints.serverFromString(reactor, description)
        listener = Listener(role, endpoint, factory)
        listener.setName(role)
        listener.setServiceParent(top)
    return top
