"""``twistd guessgame``: the command-line options and the service tree.

`Options` reads and checks the command line; `makeService` builds the
service tree, which reads as a table of contents: one `Game`, and the
listeners that share it (players, administrator, the web page, the
metrics), each a `Listener` (Twisted's `StreamServerEndpointService`),
under a `Daemon` whose stop no client can hold, and an `Announcement`
that says at start what runs and how to join (those parts are in
`guessgame.daemon`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import re
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.interfaces import (
    IAddress,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage

from guessgame.admin.protocol import AdminFactory
from guessgame.daemon import Announcement, Daemon, FileLimit, Listener, StopSignals
from guessgame.game import MODES, Game, parse_range
from guessgame.ops.eventlog import EventLog, open_event_log, reopen_on_sighup
from guessgame.ops.metrics import ConnectionCounts, Metrics, MetricsSite
from guessgame.ops.systemd import ReadyNotifier, socket_is_local
from guessgame.ops.tls import load_ca, mutual_tls_endpoint
from guessgame.player.factory import PlayerFactory
from guessgame.store import postgres as pgstore
from guessgame.store.base import MemoryStore, Store, StoreService
from guessgame.store.sqlite import StoreError, open_store
from guessgame.web.site import make_site, page_url
from guessgame.wire.limits import Limits

__all__ = [
    "Options",
    "is_local_endpoint",
    "listen",
    "makeService",
    "open_database",
    "player_endpoint",
]

log = Logger()

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
        [
            "web",
            None,
            "tcp:4002",
            "Endpoint of the web page, its JSON API and play in a browser "
            "(ssl: for HTTPS; off: no web port).",
        ],
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
            "Close a player or admin connection with more than this many bytes "
            "waiting to be sent (a client that stopped reading).",
        ],
        [
            "metrics",
            None,
            None,
            "Endpoint serving Prometheus metrics at /metrics, like "
            "tcp:9400:interface=127.0.0.1 (default: off).",
        ],
        [
            "event-log",
            None,
            None,
            "Append every game event to this file as JSON Lines; SIGHUP reopens it.",
        ],
        [
            "admin-ca",
            None,
            None,
            "With an ssl: admin endpoint, admit only administrators whose client "
            "certificate this PEM CA signed (mutual TLS; may listen beyond loopback "
            "without a token).",
        ],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse and check ``options``; under twistd, a mistake is one line on stderr.

        twistd prints its whole usage, some 50 lines, before the error,
        which then scrolls by unseen.  A plugin cannot change what twistd
        prints, but it can end the program itself: the error, alone on the
        first line, a pointer to ``--help``, and exit status 1.  Used on its
        own (in tests), it raises `UsageError` as any `usage.Options` does.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            raise SystemExit(
                f"twistd guessgame: {e}\n(twistd guessgame --help lists the options)"
            ) from None

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
        if self["web"] != "off":
            _check_endpoint("web", self["web"])
        self._check_ops()
        if (
            self["token"] is None
            and not is_local_endpoint(self["admin"])
            and self["admin-ca"] is None
        ):
            raise usage.UsageError(
                f"--admin {self['admin']!r} is not a loopback endpoint (only tcp: or "
                "tcp6: with interface=127.x.x.x or ::1, and unix:, count as local); "
                "set --admin-token or --admin-token-file before opening the admin "
                "port to the network"
            )

    def _check_ops(self) -> None:
        """Check --metrics, --event-log and --admin-ca."""
        if self["metrics"] == "off":
            self["metrics"] = None
        if self["metrics"] is not None:
            _check_endpoint("metrics", self["metrics"])
        path = self["event-log"]
        if path is not None:
            try:
                os.close(open_event_log(path))
            except OSError as e:
                raise usage.UsageError(
                    f"--event-log: cannot append to {path}: {e.strerror}"
                ) from None
        if self["admin-ca"] is not None:
            if _split_endpoint(self["admin"])[0].strip().lower() != "ssl":
                raise usage.UsageError(
                    f"--admin-ca needs an ssl: admin endpoint (like ssl:4001:"
                    f"privateKey=key.pem:certKey=cert.pem), not {self['admin']!r}"
                )
            try:
                load_ca(self["admin-ca"])
            except ValueError as e:
                raise usage.UsageError(f"--admin-ca: {e}") from None

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

    ``unix:`` endpoints are local, ``tcp:``/``tcp6:`` endpoints whose
    interface is in 127.0.0.0/8 or is ``::1``, and ``systemd:...:name=NAME``
    sockets that systemd bound to such an address; anything else (no
    interface, a host name, TLS) is not.
    """
    kind, *args = _split_endpoint(description)
    kind = kind.strip().lower()
    if kind == "unix":
        return True
    named = dict(arg.split("=", 1) for arg in args if "=" in arg)
    if kind == "systemd":
        from twisted.internet import reactor

        try:
            adopted = endpoints.serverFromString(reactor, description)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return False
        return socket_is_local(adopted.fileno)
    if kind not in ("tcp", "tcp6"):
        return False
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


def listen(
    top: service.MultiService,
    role: str,
    description: str,
    endpoint: IStreamServerEndpoint,
    factory: IProtocolFactory,
    *,
    reactor: Any,
    where: Callable[[IAddress], str] | None = None,
) -> Listener:
    """A `Listener` named ``role`` under ``top``."""
    listener = Listener(role, description, endpoint, factory, reactor, where=where)
    listener.setName(role)
    listener.setServiceParent(top)
    return listener


def makeService(options: Options, reactor: Any = None) -> Daemon:
    """Build the daemon: one `Game`, a player, an admin and (unless off) a web listener.

    ``reactor`` is for tests; twistd passes none and gets the global reactor
    with SIGTERM and SIGINT made a clean stop (`StopSignals`).
    """
    under_twistd = reactor is None
    if reactor is None:
        from twisted.internet import reactor

        StopSignals(reactor).install()
    top = Daemon(reactor)
    FileLimit(options["max-players"]).setServiceParent(top)
    connections = ConnectionCounts()
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
    if options["event-log"] is not None:
        # Before the game: it starts first (the first round is logged) and
        # stops last (the stop's leave events are logged).
        event_log = EventLog(game, options["event-log"], reactor)
        event_log.setServiceParent(top)
        if under_twistd:
            reopen_on_sighup(reactor, event_log)
    # The store is the game's parent: open before the first round, closed
    # once the game has stopped (players told, last wins saved).
    store_service = StoreService(store, reactor)
    store_service.setServiceParent(top)
    game.setServiceParent(store_service)
    players = PlayerFactory(
        game,
        max_line=options["max-line"],
        limits=options.limits(),
        classic_wait=options["classic-wait"],
        count_connection=connections.for_port("player"),
    )
    admins = AdminFactory(
        game,
        token=options["token"],
        max_admins=options["max-admins"],
        max_line=options["max-line"],
        max_output=options["max-output"],
        count_connection=connections.for_port("admin"),
    )
    player_port = endpoints.serverFromString(reactor, player_endpoint(options["player"]))
    listen(top, "player", options["player"], player_port, players, reactor=reactor)
    if options["admin-ca"] is not None:
        admin_port = mutual_tls_endpoint(reactor, options["admin"], options["admin-ca"])
    else:
        admin_port = endpoints.serverFromString(reactor, options["admin"])
    listen(top, "admin", options["admin"], admin_port, admins, reactor=reactor)
    if options["web"] != "off":
        site = make_site(game, players, count_connection=connections.for_port("web"))
        secure = options["web"].split(":", 1)[0].strip().lower() == "ssl"
        web_port = endpoints.serverFromString(reactor, options["web"])
        listen(
            top,
            "web",
            options["web"],
            web_port,
            site,
            reactor=reactor,
            where=lambda address: f"the game page is at {page_url(address, secure)}",
        )
    if options["metrics"] is not None:
        metrics = Metrics(game, reactor, admins=lambda: len(admins.admins), connections=connections)
        metrics.setServiceParent(top)
        metrics_port = endpoints.serverFromString(reactor, options["metrics"])
        listen(
            top, "metrics", options["metrics"], metrics_port, MetricsSite(metrics), reactor=reactor
        )
    Announcement(game, options["db"], top.getServiceNamed("player"), reactor).setServiceParent(top)
    if "NOTIFY_SOCKET" in os.environ:
        # Last: it starts once everything above listens, and stops first.
        ReadyNotifier(reactor).setServiceParent(top)
    return top
