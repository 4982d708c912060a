"""Line handling shared by both ports: framing, limits, telnet, UTF-8.

`GuardedLineReceiver` is a `LineReceiver` that accepts LF or CRLF, filters
telnet negotiation, refuses a line longer than ``max_line`` (telnet
commands included, its line end not) or more than that many bytes with no
line end, applies a terminal's line editing (`edit_line`), and hands each
line on as text with surrounding white space removed, or ``None`` when the
bytes are not valid UTF-8.  Subclasses say what a refused line, an
interrupt and a line of text mean; `GuardedLineReceiver.drop` aborts a
connection so that nothing it sent is handled any more.
"""

from __future__ import annotations

import functools
import re
from typing import Protocol

from twisted.internet import address
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from guessgame.wire.telnet import Filtered, TelnetFilter

__all__ = ["GuardedLineReceiver", "Transport", "edit_line", "encode_line", "format_address"]


class Transport(Protocol):
    """What the protocols use of a TCP transport (or a StringTransport)."""

    disconnecting: bool

    def write(self, data: bytes) -> None:
        """Queue bytes for sending."""

    def loseConnection(self) -> None:
        """Close once everything queued is sent."""

    def abortConnection(self) -> None:
        """Close at once, dropping what is queued."""

    def getPeer(self) -> IAddress:
        """The remote address."""

    def pauseProducing(self) -> None:
        """Stop reading."""

    def resumeProducing(self) -> None:
        """Read again."""


@functools.lru_cache(maxsize=4096)
def encode_line(text: str) -> bytes:
    """Encode one outgoing line; a notice sent to thousands is encoded once."""
    return text.encode("utf-8") + b"\r\n"


def format_address(addr: IAddress) -> str:
    """``HOST:PORT`` of a peer, with IPv6 hosts in brackets."""
    if isinstance(addr, address.IPv6Address):
        return f"[{addr.host}]:{addr.port}"
    if isinstance(addr, address.IPv4Address):
        return f"{addr.host}:{addr.port}"
    return "unix:0"


#: An ANSI escape sequence: ``ESC [`` parameters, intermediates and a final
#: byte (CSI), or ``ESC O`` and one byte (SS3): what arrow and function keys send.
_ESCAPE = re.compile(rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|O.)", re.DOTALL)


#: What erases the character before it: BS and DEL.
_ERASER = re.compile(rb"[\x08\x7f]")


def edit_line(line: bytes) -> bytes:
    """Apply a terminal's line editing to one line (PROTOCOL.md, Framing).

    ANSI escape sequences are dropped; then each BS (0x08) or DEL (0x7F)
    erases the character before it in the line (a whole UTF-8 sequence),
    or nothing at the start of the line.
    """
    line = _ESCAPE.sub(b"", line)
    if b"\x08" not in line and b"\x7f" not in line:
        return line
    # One step per eraser, not per byte: a flood of such lines stays cheap.
    first, *rest = _ERASER.split(line)
    out = bytearray(first)
    for piece in rest:
        if out:
            start = len(out) - 1
            # Back over up to three UTF-8 continuation bytes to their lead.
            while start > 0 and len(out) - start < 4 and 0x80 <= out[start] <= 0xBF:
                start -= 1
            if out[start] < 0xC0:
                start = len(out) - 1  # no lead byte: erase one byte
            del out[start:]
        out += piece
    return bytes(out)


#: The holds of a connection that reads: one shared empty set for all.
_NO_HOLDS: frozenset[str] = frozenset()


@implementer(IHalfCloseableProtocol)
class GuardedLineReceiver(LineReceiver):
    """A `LineReceiver` that no input can make misbehave."""

    delimiter = b"\n"
    transport: Transport  # type: ignore[assignment]

    def __init__(self, max_line: int, clock: IReactorTime | None = None) -> None:
        # Every attribute a connection will ever have is set here, in one
        # order, so that all instances share one dict layout (thousands of
        # connections, each a few hundred bytes smaller); that includes the
        # state Protocol and LineReceiver would otherwise add later.
        self.connected = 0
        self.transport = None  # type: ignore[assignment]
        self._buffer = b""
        self._busyReceiving = False
        self.paused = False
        self.max_line = max_line
        #: When the last packet that completed a line arrived, by ``clock``
        #: (kept only with a clock: the idle timeout reads it).
        self.last_line = 0.0
        self._now = clock.seconds if clock is not None else None
        # One byte of slack for the CR of a CRLF line end; the length of
        # the text itself is checked in lineReceived.
        self.MAX_LENGTH = max_line + 1
        # Made on the first 0xFF byte: most clients never negotiate, and
        # thousands of idle connections should cost as little as they can.
        self._telnet: TelnetFilter | None = None
        self._holds = _NO_HOLDS
        self._input_ended = False

    # What subclasses define.

    def text_received(self, text: str | None) -> None:
        """Handle one line: stripped text, or None for invalid UTF-8."""
        raise NotImplementedError

    def refuse_long_line(self) -> None:
        """Answer a line that is too long, and close."""
        raise NotImplementedError

    def interrupted(self) -> None:
        """The telnet client sent Interrupt Process or Abort Output."""
        raise NotImplementedError

    # Sending.

    def send_line(self, text: str) -> None:
        """Send one line of text, CRLF-terminated."""
        self.transport.write(encode_line(text))

    # Reading.

    def hold(self, why: str) -> None:
        """Stop reading (and handling buffered lines) until ``why`` is released.

        Several reasons can hold a connection at once (a rate limit, a win
        being saved); reading resumes when the last is released.
        """
        if not self._holds:
            self.pauseProducing()
        self._holds |= {why}

    def release(self, why: str) -> None:
        """Drop one reason to hold; read again when none is left."""
        self._holds -= {why}
        if not self._holds and self.paused and not self.transport.disconnecting:
            self.resumeProducing()
            if self._input_ended and not self.paused and not self.transport.disconnecting:
                # The peer half-closed while lines waited: all are answered now.
                self.transport.loseConnection()

    def drop(self) -> None:
        """Abort the connection: nothing it sent that is not handled yet will be.

        An abort, unlike a close, does not mark a TCP transport as
        disconnecting, and the lines already buffered would still be
        handled; a hold that is never released stops them.
        """
        self.hold("dropped")
        self._buffer = b""
        if self._telnet is not None:
            self._telnet.unparsed = b""
        self.transport.abortConnection()

    # Framing.

    def dataReceived(self, data: bytes) -> None:
        """Filter telnet commands, frame lines, and enforce the line limit."""
        if self.transport.disconnecting:
            return  # closing: what arrives now gets no answer
        telnet = self._telnet
        if (telnet is None or telnet.passes) and b"\xff" not in data:
            # Plain data, the usual case: no telnet sequence to take apart,
            # and every LF in it ends a line.
            if self._now is not None and b"\n" in data:
                self.last_line = self._now()
            LineReceiver.dataReceived(self, data)
            if len(self._buffer) > self.max_line and not self.transport.disconnecting:
                self._check_unterminated()
            return
        if telnet is None:
            telnet = self._telnet = TelnetFilter(self.max_line)
        self._filter(telnet, data)

    def _filter(self, telnet: TelnetFilter, data: bytes) -> None:
        """Parse ``data`` through the telnet filter one line at a time.

        Each step parses one line's worth of bytes at most, and parsing
        stops while the connection is held (a rate limit, a win being
        saved): the rest waits, unparsed, until reading resumes.  So the
        work one packet costs is bounded by the lines it may have handled,
        however large the packet.
        """
        if telnet.unparsed:
            data = telnet.unparsed + data
            telnet.unparsed = b""
        elif not data:
            # Reading resumes with nothing left unparsed: answer held lines.
            LineReceiver.dataReceived(self, b"")
            return
        step = self.max_line + 2
        start = 0
        size = len(data)
        while start < size:
            if self.paused or self.transport.disconnecting:
                if self.paused and not self.transport.disconnecting:
                    telnet.unparsed = data[start:]
                    telnet.passes = False
                return
            if telnet.passes and data.find(b"\xff", start) < 0:
                # Back to plain data (a paste after one negotiation, say).
                self.dataReceived(data[start:])
                return
            end = data.find(b"\n", start, start + step)
            stop = end + 1 if end >= 0 else min(size, start + step)
            if telnet.passes:
                telnet.resync(self._buffer)
            if self._filter_step(telnet.feed(data[start:stop])):
                return
            start = stop

    def _filter_step(self, parts: list[Filtered]) -> bool:
        """Hand filtered parts on; whether the connection is done reading."""
        for part in parts:
            if self._now is not None and b"\n" in part.data:
                self.last_line = self._now()
            LineReceiver.dataReceived(self, part.data)
            if self.transport.disconnecting:
                return True
            if part.too_long:
                self.lineLengthExceeded(b"")
                return True
            if len(self._buffer) > self.max_line and self._check_unterminated():
                return True
            if part.reply:
                self.transport.write(part.reply)
            if part.interrupt:
                self.interrupted()
                return True
        return False

    def _check_unterminated(self) -> bool:
        """Refuse more than ``max_line`` bytes with no line end; whether it did."""
        buffered = self._buffer
        unterminated = len(buffered) - buffered.rfind(b"\n") - 1
        # A CR last may be the first half of a CRLF line end.
        unterminated -= buffered.endswith(b"\r")
        if unterminated > self.max_line:
            self.lineLengthExceeded(buffered)
            return True
        return False

    def lineReceived(self, line: bytes) -> None:
        """Decode, edit and strip one line, then pass it on."""
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            self.lineLengthExceeded(line)
            return
        if b"\x1b" in line or b"\x08" in line or b"\x7f" in line:
            line = edit_line(line)
        try:
            # Spaces and tabs around a line are ignored; other control
            # characters are input (and make it invalid), not white space.
            text: str | None = line.decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            text = None
        self.text_received(text)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the line once; drop whatever else is buffered."""
        self._buffer = b""
        if not self.transport.disconnecting:
            self.refuse_long_line()

    # Half-close: ``printf '5\n' | nc host 4000`` sends its lines, then
    # shuts its side.  Answer what arrived before closing, instead of
    # letting the end of input drop the answers still queued.

    def readConnectionLost(self) -> None:
        """The peer sent all it will: answer what is buffered, flush, then close.

        Lines held back (a rate limit, a win being saved) are answered when
        the hold is released, and the connection closes after them.
        """
        self._input_ended = True
        if not self.paused:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our side can no longer send: close."""
        self.transport.loseConnection()
