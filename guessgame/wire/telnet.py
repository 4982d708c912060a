"""Telnet negotiation filter: IAC sequences are negotiation, never input.

`TelnetFilter` sits between the transport and the line framing.  It
refuses every option (``DO x`` -> ``WONT x``, ``WILL x`` -> ``DONT x``),
turns ``IAC IAC`` into a literal 0xFF byte, skips subnegotiation
(``IAC SB ... IAC SE``), and reports Interrupt Process and Abort Output
(what Ctrl-C sends) so the caller can treat them as ``quit``.

Telnet commands count towards the line they arrive in (PROTOCOL.md,
Framing): the filter counts every byte of the current line, commands
included, and stops at the first byte that makes the line too long, so a
flood of commands costs no more than one line's worth of parsing.
Input without an 0xFF byte passes through untouched and uncopied.
"""

from __future__ import annotations

import re
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
LF = 10
CR = 13

_DATA, _IAC, _OPTION, _SB, _SB_IAC = range(5)

#: A run of two-byte commands that carry nothing for a line game (NOP, AYT,
#: GA, a stray SE and the like; not IP, AO, SB or an option verb): skipped
#: in one step, so a flood of them is not parsed byte by byte.
_NOOP_RUN = re.compile(rb"(?:\xff[\xf0-\xf3\xf6-\xf9])+")
#: A run of option negotiations (``IAC DO|DONT|WILL|WONT option``), answered
#: in one step.
_OPTION_RUN = re.compile(rb"(?:\xff[\xfb-\xfe][\x00-\xff])+")
#: The refusal of each verb that needs one: DO -> WONT, WILL -> DONT.
_REFUSALS = {DO: WONT, WILL: DONT}
_REFUSAL_VERBS = bytes.maketrans(b"\xfd\xfb", b"\xfc\xfe")


def _refuse_all(run: bytes) -> bytes:
    """The answers to a run of option negotiations, in order."""
    verbs = run[1::3]
    if WONT in verbs or DONT in verbs:
        # Some need no answer: build the answers one by one (rare).
        return b"".join(
            bytes((IAC, _REFUSALS[verb], option))
            for verb, option in zip(verbs, run[2::3], strict=True)
            if verb in _REFUSALS
        )
    answers = bytearray(run)
    answers[1::3] = verbs.translate(_REFUSAL_VERBS)
    return bytes(answers)


@dataclass(frozen=True, slots=True)
class Filtered:
    """What one chunk of input held: data, replies owed, any interrupt, a line too long."""

    data: bytes
    reply: bytes = b""
    interrupt: bool = False
    too_long: bool = False


class TelnetFilter:
    """Strips telnet commands from a byte stream, chunk by chunk, counting lines."""

    def __init__(self, max_line: int) -> None:
        self._state = _DATA
        #: Whether input without an 0xFF byte may skip `feed` now: outside
        #: any telnet sequence, with no command in the line so far (so the
        #: caller's own count of the line's data is its whole length).
        self.passes = True
        #: Raw bytes not parsed yet (the caller stopped reading midway).
        self.unparsed = b""
        self._verb = 0
        self._max = max_line
        # The current line so far: its length in bytes, commands
        # included, and whether its last data byte is a CR.
        self._line = 0
        self._cr = False

    def resync(self, buffered: bytes) -> None:
        """Take up counting after data that skipped `feed` (``passes`` was true).

        ``buffered`` is the caller's line buffer: what follows its last LF
        is the current line, all data.
        """
        line = len(buffered) - buffered.rfind(b"\n") - 1
        self._line = line
        self._cr = line > 0 and buffered[-1] == CR

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
        interrupt.  A line longer than ``max_line`` (commands included,
        its line end not) ends the last part with ``too_long``: its data
        is left out and nothing after it is parsed.  Sequences split
        across chunks are handled.
        """
        # Data and the replies owed after it, in order; answers with no data
        # between them share one part (a flood of DO costs one write).
        parts: list[tuple[bytes, bytearray]] = []
        data = bytearray()
        before_interrupt: bytes | None = None
        reply = bytearray()

        def owe(answer: bytes) -> None:
            """Queue answers after the data so far (after an interrupt: with it)."""
            if not answer:
                return
            if before_interrupt is not None:
                reply.extend(answer)
            elif data or not parts:
                parts.append((bytes(data), bytearray(answer)))
                data.clear()
            else:
                parts[-1][1].extend(answer)

        state = self._state
        limit = self._max
        line = self._line
        cr = self._cr
        commands = not self.passes
        too_long = False
        i = 0
        n = len(chunk)
        while i < n:
            if state == _DATA:
                j = chunk.find(b"\xff", i)
                if j < 0:
                    j = n
                if j > i:
                    first = chunk.find(b"\n", i, j)
                    if first < 0:
                        line += j - i
                        cr = chunk[j - 1] == CR
                    else:
                        ended = line + first - i
                        if (first > i and chunk[first - 1] == CR) or (first == i and cr):
                            ended -= 1
                        if ended > limit and before_interrupt is None:
                            too_long = True
                            break
                        last = chunk.rfind(b"\n", first, j)
                        line = j - last - 1
                        cr = line > 0 and chunk[j - 1] == CR
                        commands = False
                    if before_interrupt is None:
                        data += chunk[i:j]
                i = j
                if i < n:
                    commands = True
                    run = _NOOP_RUN.match(chunk, i)
                    if run is None:
                        run = _OPTION_RUN.match(chunk, i)
                        if run is not None:
                            owe(_refuse_all(chunk[i : run.end()]))
                    if run is not None:
                        line += run.end() - i
                        i = run.end()
                    else:
                        state = _IAC
                        line += 1
                        i += 1
            else:
                byte = chunk[i]
                i += 1
                line += 1
                if state == _IAC:
                    if byte == IAC:
                        if before_interrupt is None:
                            data.append(IAC)
                        cr = False
                        state = _DATA
                    elif byte in (DO, DONT, WILL, WONT):
                        self._verb = byte
                        state = _OPTION
                    elif byte == SB:
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
                    owe(self._refusal(byte))
                    state = _DATA
                elif state == _SB_IAC:
                    state = _DATA if byte == SE else _SB
                elif byte == IAC:
                    state = _SB_IAC
            if line - cr > limit and before_interrupt is None:
                too_long = True
                break
        self._state = state
        self._line = line
        self._cr = cr
        self.passes = state == _DATA and not commands
        filtered = [Filtered(part, bytes(answers)) for part, answers in parts]
        if before_interrupt is not None:
            filtered.append(Filtered(before_interrupt, bytes(reply), interrupt=True))
        elif too_long:
            filtered.append(Filtered(bytes(data), too_long=True))
        elif data or not filtered:
            filtered.append(Filtered(bytes(data)))
        return filtered
