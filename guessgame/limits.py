"""The player port's limits: how many connections, how idle, how fast, how much unsent.

These are pieces any line protocol on the player port can use, whatever it
says when a limit hits it:

- `Limits`: the configured values (0 turns a limit off).
- `ConnectionCounter`: the total and per-address counts behind
  ``--max-players`` and ``--max-per-ip``; ``admit`` answers with the notice
  that refuses a connection, or None.
- `LimitedLineReceiver`: a `GuardedLineReceiver` with the idle timeout, the
  line rate limit and the output cap.  Subclasses decide what a warning,
  an idle close and an output overflow look like on the wire.
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

from guessgame.hangup import reset_after_close
from guessgame.lines import GuardedLineReceiver

__all__ = [
    "IDLE_GOODBYE",
    "IDLE_WARNING",
    "SERVER_FULL",
    "TOO_MANY_FROM_ADDRESS",
    "ConnectionCounter",
    "LimitedLineReceiver",
    "Limits",
    "OutputCap",
    "carrier_of",
    "raise_open_file_limit",
]

log = Logger()

SERVER_FULL = "*** The server is full. Try again later."
TOO_MANY_FROM_ADDRESS = "*** Too many connections from your address. Try again later."
#: ``{seconds}`` is the count with its word: ``1 second``, ``30 seconds``.
IDLE_WARNING = "*** No input for a while: say something within {seconds} to stay."
IDLE_GOODBYE = "*** Idle for too long. Goodbye!"

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

    def admit(self, addr: IAddress | None) -> str | None:
        """Count a new connection from ``addr``, or return the notice refusing it.

        A refused connection is not counted; an admitted one must be
        given back with `release` when it closes.
        """
        limits = self.limits
        if limits.max_players and self.total >= limits.max_players:
            return SERVER_FULL
        host = host_of(addr)
        if host is not None:
            count = self.per_host.get(host, 0)
            if limits.max_per_ip and count >= limits.max_per_ip:
                return TOO_MANY_FROM_ADDRESS
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


class LimitedLineReceiver(GuardedLineReceiver):
    """A `GuardedLineReceiver` with the idle timeout, rate limit and output cap.

    Call `start_limits` once the connection is admitted, `stop_limits` in
    ``connectionLost``, and close with `finish`.  Subclasses implement
    `idle_warning`, `idle_expired` and `output_exceeded`.
    """

    def __init__(self, max_line: int, clock: IReactorTime, limits: Limits) -> None:
        # With a clock, the line layer notes when each line arrives
        # (``last_line``), at no extra call per packet.
        super().__init__(max_line, clock)
        self.clock = clock
        self.limits = limits
        self._idle_call: IDelayedCall | None = None
        self._warned_for: float | None = None
        #: When the rate limit's token bucket would be full again.
        self._full_at = 0.0
        self._rate_call: IDelayedCall | None = None
        if limits.max_rate:
            # Only a connection with a rate limit pays for it, line by line.
            self.lineReceived = self._rate_limited_line  # type: ignore[method-assign]
        self._linger: IDelayedCall | None = None

    # What subclasses define.

    def idle_warning(self, seconds: int) -> None:
        """No line for a while: the connection closes in ``seconds``."""
        raise NotImplementedError

    def idle_expired(self) -> None:
        """No line for the whole idle timeout: close."""
        raise NotImplementedError

    def output_exceeded(self) -> None:
        """More than ``max_output`` bytes wait unsent: the peer stopped reading."""
        raise NotImplementedError

    # Life cycle.

    def start_limits(self) -> None:
        """Start the idle timer and the output cap."""
        now = self.clock.seconds()
        self.last_line = now
        self._full_at = now
        limits = self.limits
        if limits.idle_timeout > 0:
            self._idle_call = self.clock.callLater(limits.idle_warning_after, self._check_idle)
        if limits.max_output:
            OutputCap.attach(self.transport, limits.max_output, self.output_exceeded)

    def stop_limits(self) -> None:
        """Cancel every timer; the connection is gone."""
        for name in ("_idle_call", "_rate_call", "_linger"):
            call = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.active():
                call.cancel()

    def finish(self) -> None:
        """Close once what was sent is flushed; abort a peer that will not take it.

        A TCP close ends in a reset once the peer has it all, so that nc exits.
        """
        self.transport.loseConnection()
        if self._linger is None:
            self._linger = self.clock.callLater(CLOSE_GRACE, self.transport.abortConnection)
            reset_after_close(self.transport, CLOSE_GRACE)

    # Per line: keep this cheap.

    def _rate_limited_line(self, line: bytes) -> None:
        """``lineReceived`` when there is a rate limit: spend a token first."""
        now = self.clock.seconds()
        limits = self.limits
        full_at = self._full_at
        full_at = (full_at if full_at > now else now) + limits.rate_interval
        self._full_at = full_at
        if full_at - now > limits.rate_empty_ahead:
            self._throttle(full_at - now)
        GuardedLineReceiver.lineReceived(self, line)

    # Rate limit.

    def _throttle(self, ahead: float) -> None:
        if self._rate_call is not None:
            return
        self.hold("rate")
        delay = ahead - 1.0 + self.limits.rate_refill
        self._rate_call = self.clock.callLater(delay, self._unthrottle)

    def _unthrottle(self) -> None:
        self._rate_call = None
        self.release("rate")

    # Idle timeout.

    def _check_idle(self) -> None:
        self._idle_call = None
        now = self.clock.seconds()
        timeout = self.limits.idle_timeout
        last = self.last_line
        idle = now - last
        if idle >= timeout - _EPSILON:
            self.idle_expired()
            return
        warn_after = self.limits.idle_warning_after
        if idle >= warn_after - _EPSILON:
            if self._warned_for != last:
                self._warned_for = last
                self.idle_warning(max(1, round(timeout - idle)))
            due = last + timeout
        else:
            due = last + warn_after
        self._idle_call = self.clock.callLater(max(0.0, due - now), self._check_idle)


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
