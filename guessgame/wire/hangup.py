"""Reset a closed TCP connection once the peer has every byte, so that nc notices.

netcat-openbsd at a terminal takes the server's FIN as the end of what
the server sends, but goes on reading the terminal: the player sits at a
dead connection, and their next line goes to the shell.  A reset (RST)
makes it exit.  Sent at once, a reset would lose the last line (nc drops
what it has not read yet when the socket reports an error), so the reset
waits until the peer's system has acknowledged every byte and the FIN,
then one poll interval more for nc to read them.  Clients that read to
the end (telnet, our clients, scripts) have seen the end of input before
the reset and close as before.

The resets wait on the reactor: a daemon that stops waits (briefly) for
`pending_resets` before it exits, or its players' nc would only get the
FIN of the process's exit.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
from typing import Any, cast

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IReactorTime

__all__ = ["POLL_INTERVAL", "pending_resets", "reset_after_close"]

#: Seconds between looks at what the peer has not acknowledged yet.
POLL_INTERVAL = 0.05


#: One Deferred per reset still to go out, fired once it went (or was let go).
_pending: set[defer.Deferred[None]] = set()


def pending_resets() -> defer.Deferred[None]:
    """Fires once every reset waiting now has gone out or been let go."""
    waiting = list(_pending)
    return defer.DeferredList(waiting, consumeErrors=True).addCallback(lambda _: None)


def reset_after_close(transport: Any, give_up_after: float) -> None:
    """Once ``transport`` (closing) is closed and acknowledged, reset it.

    Only plain TCP connections, and only where the system tells how much
    is unacknowledged (Linux); elsewhere the close stays a plain FIN.
    After ``give_up_after`` seconds the reset goes out whatever is left.
    The looks run on the transport's own reactor, which drives the socket.
    """
    if not isinstance(transport, tcp.Connection):
        return
    clock = cast(IReactorTime, transport.reactor)
    try:
        # Our own descriptor keeps the socket after Twisted closes its one.
        held = socket.socket(fileno=os.dup(transport.fileno()))
    except OSError:
        return
    deadline = clock.seconds() + give_up_after
    acknowledged = False
    settled: defer.Deferred[None] = defer.Deferred()
    _pending.add(settled)

    def let_go() -> None:
        held.close()
        _pending.discard(settled)
        settled.callback(None)

    def look() -> None:
        nonlocal acknowledged
        try:
            unsent = struct.unpack("i", fcntl.ioctl(held, termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            let_go()  # cannot tell: leave the close as it was
            return
        done = bool(transport.disconnected) and unsent == 0
        if (done and acknowledged) or clock.seconds() >= deadline:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            let_go()
            return
        acknowledged = done  # reset on the next look: nc reads what it got first
        clock.callLater(POLL_INTERVAL, look)

    clock.callLater(POLL_INTERVAL, look)
