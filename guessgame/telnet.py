"""Telnet negotiation filter: IAC sequences are negotiation, never input.

`TelnetFilter` sits between the transport and the line framing.  It
refuses every option (``DO x`` -> ``WONT x``, ``WILL x`` -> ``DONT x``),
turns ``IAC IAC`` into a literal 0xFF byte, skips subnegotiation
(``IAC SB ... IAC SE``) up to a size cap, and reports Interrupt Process and
Abort Output (what Ctrl-C sends) so the caller can treat them as ``quit``.
Input without an 0xFF byte passes through untouched and uncopied.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Filtered", "TelnetFilter"]

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
SE = 240
IP = 244
AO = 245

_DATA, _IAC, _OPTION, _SB, _SB_IAC = range(5)


@dataclass(frozen=True, slots=True)
class Filtered:
    """What one chunk of input held: data, replies owed, and any interrupt."""

    data: bytes
    reply: bytes = b""
    interrupt: bool = False


class TelnetFilter:
    """Strips telnet commands from a byte stream, chunk by chunk."""

    def __init__(self, subnegotiation_cap: int = 1024) -> None:
        self._state = _DATA
        #: Whether input without an 0xFF byte passes through untouched now
        #: (outside any telnet sequence): the caller may then skip `feed`
        #: for such a chunk.  An attribute, read once a packet.
        self.passes = True
        self._verb = 0
        self._sb_left = 0
        self._cap = subnegotiation_cap

    def _refusal(self, option: int) -> bytes:
        """The answer to ``DO``/``WILL`` ``option``: no (``DONT``/``WONT`` need none)."""
        if self._verb == DO:
            return bytes((IAC, WONT, option))
        if self._verb == WILL:
            return bytes((IAC, DONT, option))
        return b""

    def feed(self, chunk: bytes) -> list[Filtered]:  # noqa: PLR0915 - one state machine
        """Filter one chunk into parts, in stream order.

        Each part's data comes before its reply, so negotiation answers
        keep their place among the line replies.  An interrupt ends the
        last part: data after it in the chunk is dropped (the session is
        over) but commands after it are still answered, with the
        interrupt.  Sequences split across chunks are handled.
        """
        if self._state == _DATA and b"\xff" not in chunk:
            return [Filtered(chunk)]
        parts: list[Filtered] = []
        data = bytearray()
        before_interrupt: bytes | None = None
        reply = bytearray()
        state = self._state
        for byte in chunk:
            if state == _DATA:
                if byte == IAC:
                    state = _IAC
                elif before_interrupt is None:
                    data.append(byte)
            elif state == _IAC:
                if byte == IAC:
                    if before_interrupt is None:
                        data.append(IAC)
                    state = _DATA
                elif byte in (DO, DONT, WILL, WONT):
                    self._verb = byte
                    state = _OPTION
                elif byte == SB:
                    self._sb_left = self._cap
                    state = _SB
                elif byte in (IP, AO):
                    # Ctrl-C: the data after it is never read, but the
                    # commands are answered (a telnet client sends DO
                    # TIMING-MARK with it and shows nothing until answered).
                    if before_interrupt is None:
                        before_interrupt = bytes(data)
                    state = _DATA
                else:
                    # NOP, AYT, GA and the rest carry nothing for a line game.
                    state = _DATA
            elif state == _OPTION:
                answer = self._refusal(byte)
                if answer and before_interrupt is not None:
                    reply += answer
                elif answer:
                    parts.append(Filtered(bytes(data), answer))
                    data.clear()
                state = _DATA
            else:  # inside subnegotiation: skipped, within the cap
                self._sb_left -= 1
                if state == _SB_IAC:
                    state = _DATA if byte == SE else _SB
                elif byte == IAC:
                    state = _SB_IAC
                if state != _DATA and self._sb_left <= 0:
                    # A runaway subnegotiation: stop skipping, read data again.
                    state = _DATA
        self._state = state
        self.passes = state == _DATA
        if before_interrupt is not None:
            parts.append(Filtered(before_interrupt, bytes(reply), interrupt=True))
        elif data or not parts:
            parts.append(Filtered(bytes(data)))
        return parts
