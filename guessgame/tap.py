"""``twistd guessgame``: the command-line options and the service tree.

`Options` reads and checks the command line; `makeService` builds one
`Game` and two listeners (players and administrator) that share it, under
a `Daemon` whose stop no client can hold, and an `Announcement` that says
at start what runs and how to join.  `StopSignals` makes SIGTERM and
SIGINT a clean stop, and a second one an immediate exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import random
import re
import signal
import socket
import sys
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFDSet,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from guessgame import __version__, pgstore
from guessgame.admin import AdminFactory
from guessgame.game import MODES, Game, parse_range, plural
from guessgame.hangup import pending_resets
from guessgame.limits import Limits, raise_open_file_limit
from guessgame.lines import format_address
from guessgame.ops.eventlog import EventLog, open_event_log, reopen_on_sighup
from guessgame.ops.metrics import ConnectionCounts, Metrics, MetricsSite
from guessgame.ops.systemd import ReadyNotifier, socket_is_local
from guessgame.ops.tls import load_ca, mutual_tls_endpoint
from guessgame.player import PlayerFactory
from guessgame.sqlstore import StoreError, open_store
from guessgame.store import MemoryStore, Store
from guessgame.web.site import make_site, page_url

__all__ = [
    "Announcement",
    "Daemon",
    "FileLimit",
    "Listener",
    "Options",
    "StopSignals",
    "describe_database",
    "how_to_connect",
    "is_local_endpoint",
    "listening_address",
    "makeService",
    "open_database",
]

log = Logger()

#: File descriptors kept for what is not a player: listeners, the
#: administrator, the database, the log.
RESERVED_FILES = 32

#: Seconds into a stop after which a connection still open is aborted.
STOP_GRACE = 5.0

#: Seconds a stop waits at most, once every connection is closed, for the
#: resets that make nc exit (`guessgame.hangup`); then the process exits.
RESET_WAIT = 1.0

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

    It listens in ``privilegedStartService``, as Twisted's own servers do,
    so that a port that cannot be opened stops the daemon before anything
    else has started: one log line naming the endpoint and the reason, and
    exit status 1.
    """

    port: IListeningPort | None = None

    def __init__(
        self,
        role: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        reactor: Any,
    ) -> None:
        self.role = role
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.reactor = reactor
        #: The port bound, kept after it stops listening: its connections
        #: may outlive it, and the stop's deadline looks for them.
        self.bound: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Listen (before privileges are shed, and before any service starts)."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """Listen, unless ``privilegedStartService`` did."""
        super().startService()
        if self.port is None:
            self._listen()

    def _listen(self) -> None:
        failures: list[Failure] = []
        d = self.endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            error = failures[0].value
            socket_error = getattr(error, "socketError", None)
            reason = getattr(socket_error, "strerror", None) or str(error)
            log.critical(
                "cannot open the {role} port {endpoint}: {reason}",
                role=self.role,
                endpoint=self.description,
                reason=reason,
            )
            raise SystemExit(1)

    def _listening(self, port: IListeningPort) -> None:
        self.port = self.bound = port
        if self.role == "web":
            secure = self.description.split(":", 1)[0].strip().lower() == "ssl"
            log.info(
                "{role} port listening on {address}: the game page is at {url}",
                role=self.role,
                address=listening_address(port.getHost()),
                url=page_url(port.getHost(), secure),
            )
            return
        log.info(
            "{role} port listening on {address}",
            role=self.role,
            address=listening_address(port.getHost()),
        )

    def stopService(self) -> Any:
        """Stop listening; connections already made stay up."""
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None

    def abort_connections(self) -> int:
        """Abort every connection this port accepted that is still open; how many.

        They are found where the reactor keeps them, whatever protocol owns
        them now (a TLS layer, a dialect handed over): the same set that
        the reactor itself disconnects at the end of a shutdown.
        """
        if self.bound is None or not IReactorFDSet.providedBy(self.reactor):
            return 0
        found = {*self.reactor.getReaders(), *self.reactor.getWriters()}
        mine: list[Any] = [fd for fd in found if getattr(fd, "server", None) is self.bound]
        for connection in mine:
            connection.abortConnection()
        return len(mine)


class Daemon(service.MultiService):
    """The daemon's service tree, whose stop is bounded in time.

    When the stop begins, players are told and every connection is asked
    to close; one still open `STOP_GRACE` seconds later (a client that
    stopped reading) is aborted, so that no client can hold the stop.
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor

    def stopService(self) -> defer.Deferred[None]:
        """Stop every service; abort the connections left after `STOP_GRACE`.

        Then wait, `RESET_WAIT` at most, for the closed connections' resets
        (`guessgame.hangup`), so that a player's nc exits with the daemon.
        """
        deadline = self.reactor.callLater(STOP_GRACE, self._abort_the_rest)
        d: defer.Deferred[None] = defer.maybeDeferred(super().stopService)

        def stopped(result: object) -> object:
            if deadline.active():
                deadline.cancel()
            return result

        d.addBoth(stopped)
        return d.addBoth(self._after_resets)

    def _after_resets(self, result: object) -> defer.Deferred[None]:
        """``result``, once the pending resets went out or `RESET_WAIT` passed."""
        done: defer.Deferred[None] = defer.Deferred()

        def fire(_: object) -> None:
            if done.called:
                return
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)

        bound = self.reactor.callLater(RESET_WAIT, fire, None)
        pending_resets().addBoth(fire).addBoth(lambda _: bound.cancel() if bound.active() else None)
        return done

    def _abort_the_rest(self) -> None:
        aborted = sum(child.abort_connections() for child in self if isinstance(child, Listener))
        if aborted:
            log.warn(
                "{count} still open {grace:g} seconds into the stop: aborted",
                count=plural(aborted, "connection"),
                grace=STOP_GRACE,
            )


class StopSignals:
    """SIGTERM and SIGINT: the first stops the daemon in order, a second at once.

    twistd would re-raise the signal once stopped, so the exit status would
    say "killed"; a stop asked for is a clean one and exits with status 0.
    A second signal during the stop (an operator who will not wait) ends
    the process at once with status 1.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        #: A signal asked for the stop; the reactor has not begun it yet.
        self.requested = False
        #: The stop has begun.
        self.stopping = False

    def install(self) -> None:
        """Take over both signals once the reactor runs (it sets its own at start)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.reactor.callWhenRunning(signal.signal, signum, self.received)

    def received(self, signum: int, frame: FrameType | None) -> None:
        """Stop on the first signal; exit at once on one that comes during the stop.

        A signal sent to a whole process group (``timeout``, ``kill -INT
        -PGID``) may arrive twice before the reactor looks: until the stop
        has begun, a repeat is the same request.
        """
        name = signal.Signals(signum).name
        if self.stopping:
            log.warn("received {signal} during the stop: exiting at once", signal=name)
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()
            os._exit(1)
        if self.requested:
            return
        self.requested = True
        log.info("received {signal}, shutting down", signal=name)
        self.reactor.callFromThread(self._begin)

    def _begin(self) -> None:
        self.stopping = True
        self.reactor.stop()


def describe_database(path: str) -> str:
    """``--db`` as the start-up log shows it: where, without a password."""
    if path == ":memory:":
        return ":memory: (nothing is kept)"
    if "://" in path:
        parts = urlsplit(path)
        if parts.password is None:
            return path
        user = f"{parts.username}:" if parts.username else ":"
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
    return os.path.abspath(path)


#: Hosts a port listens on when it listens on every interface.
EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def listening_address(address: IAddress) -> str:
    """Where a port listens, for the log: ``HOST:PORT``, or ``unix:PATH``."""
    if isinstance(address, UNIXAddress):
        name = address.name
        return "unix:" + (os.fsdecode(name) if name is not None else "?")
    return format_address(address)


def how_to_connect(description: str, address: IAddress, hostname: str) -> str:
    """The start-up log's line on how players reach the port bound at ``address``.

    ``description`` is the endpoint as given (it says whether TLS is
    spoken); ``hostname`` stands for this machine where every interface
    listens.
    """
    if isinstance(address, UNIXAddress):
        name = address.name
        path = os.fsdecode(name) if name is not None else "?"
        return f"players connect with: nc -U {path}"
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return f"players connect to {address}"
    tls = description.split(":", 1)[0].strip().lower() in ("ssl", "tls")

    def command(host: str) -> str:
        if tls:
            target = f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
            return f"openssl s_client -quiet -connect {target}"
        return f"nc {host} {address.port}"

    local = EVERY_INTERFACE.get(address.host)
    if local is None:
        return f"players connect with: {command(address.host)}"
    return (
        "the player port is open on every interface: players connect with: "
        f"{command(hostname)} ({command(local)} on this machine)"
    )


class Announcement(service.Service):
    """At start, once the daemon runs, says in the log what runs and how to join."""

    def __init__(self, options: Options, player: Listener, reactor: Any) -> None:
        self.options = options
        self.player = player
        self.reactor = reactor

    def startService(self) -> None:
        """Announce once the reactor runs: players can connect from then on."""
        super().startService()
        if IReactorCore.providedBy(self.reactor):
            self.reactor.callWhenRunning(self.announce)
        else:
            self.announce()

    def announce(self) -> None:
        """Log the version, range, mode, database, and the command players use."""
        options = self.options
        log.info(
            "guessgame {version}: range {range}, mode {mode}, database {database}",
            version=__version__,
            range=f"{options['lo']}-{options['hi']}",
            mode=options["mode"],
            database=describe_database(options["db"]),
        )
        if self.player.port is not None:
            log.info(
                "{how}",
                how=how_to_connect(
                    self.player.description, self.player.port.getHost(), socket.gethostname()
                ),
            )


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
    game.setServiceParent(top)
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
    for role, description, factory in (
        ("player", player_endpoint(options["player"]), players),
        ("admin", options["admin"], admins),
    ):
        endpoint = endpoints.serverFromString(reactor, description)
        if role == "admin" and options["admin-ca"] is not None:
            endpoint = mutual_tls_endpoint(reactor, description, options["admin-ca"])
        listener = Listener(role, options[role], endpoint, factory, reactor)
        listener.setName(role)
        listener.setServiceParent(top)
    if options["web"] != "off":
        site = make_site(game, players, count_connection=connections.for_port("web"))
        endpoint = endpoints.serverFromString(reactor, options["web"])
        listener = Listener("web", options["web"], endpoint, site, reactor)
        listener.setName("web")
        listener.setServiceParent(top)
    if options["metrics"] is not None:
        metrics = Metrics(game, reactor, admins=lambda: len(admins.admins), connections=connections)
        metrics.setServiceParent(top)
        endpoint = endpoints.serverFromString(reactor, options["metrics"])
        listener = Listener("metrics", options["metrics"], endpoint, MetricsSite(metrics), reactor)
        listener.setName("metrics")
        listener.setServiceParent(top)
    Announcement(options, top.getServiceNamed("player"), reactor).setServiceParent(top)
    if "NOTIFY_SOCKET" in os.environ:
        # Last: it starts once everything above listens, and stops first.
        ReadyNotifier(reactor).setServiceParent(top)
    return top
