"""Readiness for systemd: ``READY=1`` and ``STOPPING=1`` on ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd starts what depends on the daemon only once
it says it is ready, and shows a stop as such.  The protocol is one
datagram a state on the Unix socket named by ``$NOTIFY_SOCKET`` (a name
starting with ``@`` is in the abstract namespace): a few lines, no package.
The sockets systemd passes in are taken by Twisted's own
``systemd:domain=INET:name=NAME`` endpoints.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["ReadyNotifier", "notify", "socket_is_local"]

log = Logger()


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (like ``READY=1``) to ``$NOTIFY_SOCKET``; whether it was sent.

    Without ``$NOTIFY_SOCKET`` (not started by systemd) nothing is sent.  A
    socket that cannot be reached is logged, never raised: readiness is
    news for the service manager, not a reason to stop.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as e:
        log.warn(
            "could not tell systemd {state} on {socket}: {reason}",
            state=state,
            socket=address.replace("\0", "@"),
            reason=e.strerror or str(e),
        )
        return False
    return True


def socket_is_local(fileno: int) -> bool:
    """Whether the listening socket ``fileno`` is reachable from this machine only.

    True for a Unix socket and for one bound to a loopback address (what a
    socket unit's ``ListenStream=127.0.0.1:4001`` makes); false otherwise.
    """
    # A duplicate, so that closing our socket object leaves the original open.
    with socket.socket(fileno=os.dup(fileno)) as sock:
        family, address = sock.family, sock.getsockname()
    if family == socket.AF_UNIX:
        return True
    if family not in (socket.AF_INET, socket.AF_INET6):
        return False
    return ipaddress.ip_address(address[0]).is_loopback


class ReadyNotifier(Service):
    """Says ``READY=1`` once the daemon runs and ``STOPPING=1`` when it stops.

    Parent it last in the service tree: services start in order, so when
    the reactor runs every port before it listens and the store is open,
    and it is the first to stop, so ``STOPPING=1`` goes out as the stop
    begins.
    """

    name = "systemd-notify"

    def __init__(self, reactor: Any, environ: Mapping[str, str] | None = None) -> None:
        self.reactor = reactor
        self.environ = environ

    def startService(self) -> None:
        """Say READY=1 as soon as the reactor runs."""
        super().startService()
        self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        if self.running and notify("READY=1", self.environ):
            log.info("told systemd the daemon is ready")

    def stopService(self) -> None:
        """Say STOPPING=1."""
        super().stopService()
        notify("STOPPING=1", self.environ)
