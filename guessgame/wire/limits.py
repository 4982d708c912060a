"""The player port's limits: how many connections, how idle, how fast, how much unsent.

These are parts a connection owns, whatever it says when a limit hits it:

- `Limits`: the configured values (0 turns a limit off).
- `ConnectionCounter`: the total and per-address counts behind
  ``--max-players`` and ``--max-per-ip``; ``admit`` answers with the
  `Goodbye` that refuses a connection, or None.
- `RateBucket`: the line rate limit, `IdleTimer`: the idle timeout, and
  `close_after_flush`: a close that no peer can hold.
- `OutputCap`: the push producer behind the output cap (which the admin
  port uses too).

The per-line cost is kept small on purpose: the idle timeout notes the
time of each packet that completes a line and one timer per connection
looks at it when it fires, and the rate limit, only where there is one, is
a clock read and one comparison a line (a token bucket kept as the time it
would be full again) unless the connection is over its budget.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import address
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from zope.interface import implementer

from guessgame.events import Goodbye
from guessgame.wire.hangup import reset_after_close

__all__ = [
    "CLOSE_GRACE",
    "ConnectionCounter",
    "IdleTimer",
    "Limits",
    "OutputCap",
    "RateBucket",
    "carrier_of",
    "close_after_flush",
    "raise_open_file_limit",
]

log = Logger()

#: How long a connection we close may take to accept its last bytes before
#: it is aborted: a peer that stopped reading must not hold its slot.
CLOSE_GRACE = 10.0

# Clock slack when comparing a timer's firing time with a deadline.
_EPSILON = 1e-3


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits of the player port; 0 turns one off."""

    max_players: int = 0
    max_per_ip: int = 0
    idle_timeout: float = 0
    max_rate: int = 0
    max_output: int = 0
    # The rate limit as a token bucket of ``max_rate`` tokens refilled at
    # ``max_rate`` a second, kept per connection as the time the bucket
    # would be full again; reading resumes once a quarter is back.  These
    # follow from ``max_rate`` and are worked out once, not per connection.
    rate_interval: float = field(init=False)
    rate_empty_ahead: float = field(init=False)
    rate_refill: float = field(init=False)

    def __post_init__(self) -> None:
        rate = self.max_rate
        interval = 1.0 / rate if rate else 0.0
        object.__setattr__(self, "rate_interval", interval)
        object.__setattr__(self, "rate_empty_ahead", 1.0 - interval / 2)
        object.__setattr__(self, "rate_refill", max(1.0, rate / 4) * interval)

    @property
    def idle_warning_after(self) -> float:
        """Seconds of silence before the warning.

        A minute before the close, or half the timeout when that is shorter
        than two minutes.
        """
        timeout = self.idle_timeout
        return timeout - 60 if timeout >= 120 else timeout / 2


def host_of(addr: IAddress | None) -> str | None:
    """The IP address that per-address limits count, or None (UNIX sockets)."""
    if isinstance(addr, (address.IPv4Address, address.IPv6Address)):
        return addr.host
    return None


class ConnectionCounter:
    """Counts connections in total and per IP address, and refuses extras."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.per_host: dict[str, int] = {}

    def admit(self, addr: IAddress | None) -> Goodbye | None:
        """Count a new connection from ``addr``, or return why it is refused.

        A refused connection is not counted; an admitted one must be
        given back with `release` when it closes.
        """
        limits = self.limits
        if limits.max_players and self.total >= limits.max_players:
            return Goodbye.SERVER_FULL
        host = host_of(addr)
        if host is not None:
            count = self.per_host.get(host, 0)
            if limits.max_per_ip and count >= limits.max_per_ip:
                return Goodbye.ADDRESS_FULL
            self.per_host[host] = count + 1
        self.total += 1
        return None

    def release(self, addr: IAddress | None) -> None:
        """Forget one admitted connection from ``addr``."""
        self.total -= 1
        host = host_of(addr)
        if host is not None:
            count = self.per_host.get(host, 0) - 1
            if count > 0:
                self.per_host[host] = count
            else:
                self.per_host.pop(host, None)


def carrier_of(transport: Any) -> Any:
    """The transport that holds a connection's unsent bytes.

    Below TLS (and any other `ProtocolWrapper`) that is the TCP transport
    it wraps: what waits there is what the peer has not taken.
    """
    while isinstance(transport, ProtocolWrapper) and transport.transport is not None:
        transport = transport.transport
    return transport


@implementer(IPushProducer)
class OutputCap:
    """Stands as a transport's streaming producer to learn of unsent bytes.

    A Twisted transport calls ``pauseProducing`` on its streaming producer
    when more than its ``bufferSize`` bytes wait to be sent; nothing here
    produces, so that call means the peer stopped reading.

    Over TLS the cap stands on the TCP transport below it, not on the TLS
    layer: there ``--max-output`` counts the bytes that wait for the peer,
    output held while the handshake is under way is not taken for a peer
    that stopped reading, and ``loseConnection`` does not wait for a
    producer to be unregistered (the TLS layer holds its close until then).
    """

    def __init__(self, carrier: Any, limit: int, overflow: Callable[[], None]) -> None:
        self._carrier = carrier
        self.limit = limit
        self._overflow = overflow

    @classmethod
    def attach(cls, transport: Any, limit: int, overflow: Callable[[], None]) -> OutputCap | None:
        """Call ``overflow`` once more than ``limit`` bytes wait unsent; return the cap.

        Returns None for a transport that cannot tell (no producer support).
        """
        carrier = carrier_of(transport)
        if getattr(carrier, "registerProducer", None) is None:
            return None
        cap = cls(carrier, limit, overflow)
        carrier.bufferSize = limit
        carrier.registerProducer(cap, True)
        return cap

    def make_room(self, size: int) -> None:
        """Let one write of ``size`` bytes through whole, however large.

        From then on the cap is ``limit`` bytes beyond such a write (with a
        little more for what TLS adds to it): still a bound, as the largest
        write is.
        """
        room = self.limit + size + size // 256
        self._carrier.bufferSize = max(self._carrier.bufferSize, room)

    def pauseProducing(self) -> None:
        """The transport holds more than its buffer size: overflow."""
        self._overflow()

    def resumeProducing(self) -> None:
        """The buffer drained; nothing to do."""

    def stopProducing(self) -> None:
        """The connection is gone; nothing to do."""


class RateBucket:
    """The line rate limit of one connection: a token bucket.

    Kept as the time the bucket would be full again, so spending a token
    is a comparison and an addition; `spend` says how far ahead of the
    clock the bucket runs once past its budget, and the connection holds
    its reading for `delay` of that.
    """

    __slots__ = ("call", "empty_ahead", "full_at", "interval", "refill")

    def __init__(self, limits: Limits) -> None:
        self.interval = limits.rate_interval
        self.empty_ahead = limits.rate_empty_ahead
        self.refill = limits.rate_refill
        #: When the bucket would be full again.
        self.full_at = 0.0
        #: The timer that resumes reading, while the connection is held.
        self.call: IDelayedCall | None = None

    def spend(self, now: float) -> float:
        """Take one token at ``now``: 0.0 within budget, else how far ahead the bucket is."""
        full_at = self.full_at
        full_at = (full_at if full_at > now else now) + self.interval
        self.full_at = full_at
        ahead = full_at - now
        return ahead if ahead > self.empty_ahead else 0.0

    def delay(self, ahead: float) -> float:
        """How long to stop reading when ``ahead``: until a quarter is back."""
        return ahead - 1.0 + self.refill

    def stop(self) -> None:
        """Cancel the resume timer; the connection is gone."""
        call, self.call = self.call, None
        if call is not None and call.active():
            call.cancel()


class IdleTimer:
    """The idle timeout of one connection: a warning, then the close.

    One timer looks at the time of the last line (``last_line()``) when it
    fires, so a line costs nothing here.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits,
        last_line: Callable[[], float],
        warn: Callable[[int], None],
        expire: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.timeout = limits.idle_timeout
        self.warn_after = limits.idle_warning_after
        self._last_line = last_line
        self._warn = warn
        self._expire = expire
        self._warned_for: float | None = None
        self._call: IDelayedCall | None = clock.callLater(self.warn_after, self._check)

    def stop(self) -> None:
        """Cancel the timer."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _check(self) -> None:
        self._call = None
        now = self.clock.seconds()
        timeout = self.timeout
        last = self._last_line()
        idle = now - last
        if idle >= timeout - _EPSILON:
            self._expire()
            return
        warn_after = self.warn_after
        if idle >= warn_after - _EPSILON:
            if self._warned_for != last:
                self._warned_for = last
                self._warn(max(1, round(timeout - idle)))
            due = last + timeout
        else:
            due = last + warn_after
        self._call = self.clock.callLater(max(0.0, due - now), self._check)


def close_after_flush(
    transport: Any, clock: IReactorTime, linger: IDelayedCall | None
) -> IDelayedCall:
    """Close ``transport`` once what was sent is flushed; return the abort timer.

    A peer that will not take the last bytes is aborted after
    `CLOSE_GRACE` seconds (``linger``, once set, is kept); a TCP close ends
    in a reset once the peer has it all, so that nc exits.
    """
    transport.loseConnection()
    if linger is None:
        linger = clock.callLater(CLOSE_GRACE, transport.abortConnection)
        reset_after_close(transport, CLOSE_GRACE)
    return linger


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warn("cannot raise the open-file limit to {hard}: {error}", hard=hard, error=e)
    return soft
