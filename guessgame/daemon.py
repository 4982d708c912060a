"""The daemon's own services: its stop, its listeners, what it says at start.

`Daemon` is the top of the service tree, whose stop no client can hold;
`Listener` is Twisted's endpoint service that says what it bound or, in
one line, why not; `FileLimit` raises the open-file limit; `Announcement`
says at start what runs and how to join; `StopSignals` makes SIGTERM and
SIGINT a clean stop, and a second one an immediate exit.  `guessgame.tap`
puts them together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
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
from twisted.python.failure import Failure
from zope.interface import implementer

from guessgame import __version__
from guessgame.events import plural
from guessgame.game import Game
from guessgame.wire.hangup import pending_resets
from guessgame.wire.limits import raise_open_file_limit
from guessgame.wire.lines import format_address

__all__ = [
    "RESET_WAIT",
    "STOP_GRACE",
    "Announcement",
    "Daemon",
    "FileLimit",
    "Listener",
    "StopSignals",
    "describe_database",
    "how_to_connect",
    "listening_address",
]

log = Logger()

#: File descriptors kept for what is not a player: listeners, the
#: administrator, the database, the log.
RESERVED_FILES = 32

#: Seconds into a stop after which a connection still open is aborted.
STOP_GRACE = 5.0

#: Seconds a stop waits at most, once every connection is closed, for the
#: resets that make nc exit (`guessgame.wire.hangup`); then the process exits.
RESET_WAIT = 1.0


class FileLimit(service.Service):
    """At start, raises the open-file limit and warns when players may not fit."""

    name = "file-limit"

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


@implementer(IStreamServerEndpoint)
class _Reported:
    """An endpoint whose listen reports its outcome to its `Listener` first."""

    def __init__(self, endpoint: IStreamServerEndpoint, listener: Listener) -> None:
        self.endpoint = endpoint
        self.listener = listener

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """Listen; the listener hears of the port or of the failure before anyone else."""
        d: defer.Deferred[IListeningPort] = self.endpoint.listen(factory)
        return d.addCallbacks(self.listener.listening, self.listener.cannot_listen)


class Listener(StreamServerEndpointService):
    """Twisted's endpoint service that says what it bound, or in one line why not.

    It listens in ``privilegedStartService``, as Twisted's own servers do,
    so that a port that cannot be opened stops the daemon before anything
    else has started: one log line naming the endpoint and the reason, and
    exit status 1 (`strports.service` semantics, without the traceback).
    A failure that comes later (an endpoint that listens asynchronously) is
    the same one line, instead of the traceback Twisted would log.
    """

    _raiseSynchronously = True

    def __init__(
        self,
        role: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        reactor: Any,
        *,
        where: Callable[[IAddress], str] | None = None,
    ) -> None:
        super().__init__(_Reported(endpoint, self), factory)
        self.role = role
        self.description = description
        self.reactor = reactor
        self._where = where
        #: The port while it listens.
        self.port: IListeningPort | None = None
        #: The port bound, kept after it stops listening: its connections
        #: may outlive it, and the stop's deadline looks for them.
        self.bound: IListeningPort | None = None
        self._starting = False

    def privilegedStartService(self) -> None:
        """Listen (before privileges are shed, and before any service starts)."""
        self._starting = True
        try:
            super().privilegedStartService()
        except Exception:
            # Said in one line by cannot_listen already.
            raise SystemExit(1) from None
        finally:
            self._starting = False

    def listening(self, port: IListeningPort) -> IListeningPort:
        """The port is bound: keep it and say where."""
        self.port = self.bound = port
        address = listening_address(port.getHost())
        if self._where is not None:
            log.info(
                "{role} port listening on {address}: {where}",
                role=self.role,
                address=address,
                where=self._where(port.getHost()),
            )
        else:
            log.info("{role} port listening on {address}", role=self.role, address=address)
        return port

    def cannot_listen(self, failure: Failure) -> Any:
        """The port could not be opened: one line that names the endpoint and the reason."""
        if failure.check(defer.CancelledError):
            return failure
        error = failure.value
        socket_error = getattr(error, "socketError", None)
        reason = getattr(socket_error, "strerror", None) or str(error)
        log.critical(
            "cannot open the {role} port {endpoint}: {reason}",
            role=self.role,
            endpoint=self.description,
            reason=reason,
        )
        # At start, the failure goes on so that the start fails; later, it is told.
        return failure if self._starting else None

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening; connections already made stay up."""
        self.port = None
        d: defer.Deferred[None] = super().stopService()
        return d

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
        (`guessgame.wire.hangup`), so that a player's nc exits with the daemon.
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

    name = "announcement"

    def __init__(self, game: Game, database: str, player: Listener, reactor: Any) -> None:
        self.game = game
        self.database = database
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
        game = self.game
        log.info(
            "guessgame {version}: range {range}, mode {mode}, database {database}",
            version=__version__,
            range=f"{game.lo}-{game.hi}",
            mode=game.mode,
            database=describe_database(self.database),
        )
        if self.player.port is not None:
            log.info(
                "{how}",
                how=how_to_connect(
                    self.player.description, self.player.port.getHost(), socket.gethostname()
                ),
            )
