"""Hostile input against both line protocols: a table of cases and a property.

Every row of the table is raw bytes a client might send, the exact bytes
the server must answer, and whether the connection stays open.  The
property test feeds any byte stream split at any points and checks that
the answers never depend on the split.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guessgame.admin.protocol import AdminFactory
from guessgame.player.factory import PlayerFactory
from tests.common import connect, make_game

PROMPT = "Pick a number between 1-30"
LONG = "*** Line too long. Goodbye!"
NAME_RULE = "A name is 1-16 letters, digits, _ or -."
IAC = b"\xff"


def lines(*texts: str) -> bytes:
    """The wire form of server lines."""
    return b"".join(text.encode("utf-8") + b"\r\n" for text in texts)


# (id, input, expected output, stays open).  The seeded game's secret is
# never among the numbers sent, so no row wins.
PLAYER_ROWS: list[tuple[str, bytes, bytes, bool]] = [
    ("empty line", b"\n", lines(PROMPT), True),
    ("empty crlf line", b"\r\n", lines(PROMPT), True),
    ("only spaces and tabs", b" \t \t\r\n", lines(PROMPT), True),
    ("letters", b"hello\n", lines(PROMPT), True),
    ("invalid utf-8 pair", b"\xc3\x28\n", lines(PROMPT), True),
    ("lone continuation bytes", b"\x80\x81\x82\n", lines(PROMPT), True),
    ("utf-8 surrogate", b"\xed\xa0\x80\n", lines(PROMPT), True),
    ("overlong utf-8 slash", b"\xc0\xaf\n", lines(PROMPT), True),
    ("truncated utf-8", b"\xe2\x82\n", lines(PROMPT), True),
    ("NUL byte", b"\x00\n", lines(PROMPT), True),
    ("digit then NUL", b"5\x00\n", lines(PROMPT), True),
    ("escape sequence", b"\x1b[A\x1b[2J\n", lines(PROMPT), True),
    ("bell backspace delete", b"\x07\x08\x7f\n", lines(PROMPT), True),
    ("lone CR inside a line", b"5\r6\n", lines(PROMPT), True),
    ("CR only, no LF", b"5\r", b"", True),
    ("two CRs then LF", b"\r\r\n", lines(PROMPT), True),
    ("mixed line ends", b"a\nb\r\nc\n", lines(PROMPT, PROMPT, PROMPT), True),
    ("zero", b"0\n", lines(PROMPT), True),
    ("above the range", b"31\n", lines(PROMPT), True),
    ("negative", b"-5\n", lines(PROMPT), True),
    ("plus sign", b"+5\n", lines(PROMPT), True),
    ("decimal", b"3.0\n", lines(PROMPT), True),
    ("underscore digits", b"1_0\n", lines(PROMPT), True),
    ("hexadecimal", b"0x1f\n", lines(PROMPT), True),
    ("exponent", b"1e1\n", lines(PROMPT), True),
    ("two numbers", b"5 6\n", lines(PROMPT), True),
    ("arabic-indic digit", "٣\n".encode(), lines(PROMPT), True),
    ("fullwidth digit", "\uff15\n".encode(), lines(PROMPT), True),
    ("superscript two", "²\n".encode(), lines(PROMPT), True),
    ("500 digits", b"9" * 500 + b"\n", lines(PROMPT), True),
    ("500 zeros", b"0" * 500 + b"\n", lines(PROMPT), True),
    ("byte order mark", b"\xef\xbb\xbf5\n", lines(PROMPT), True),
    ("right-to-left override", "\u202e5\n".encode(), lines(PROMPT), True),
    ("format string", b"%s%n%x%p\n", lines(PROMPT), True),
    ("sql", b"'; DROP TABLE players; --\n", lines(PROMPT), True),
    ("name with NUL", b"name bob\x00\n", lines(NAME_RULE), True),
    ("name too long", b"name " + b"a" * 17 + b"\n", lines(NAME_RULE), True),
    ("name invalid utf-8", b"name \xc3\x28\n", lines(PROMPT), True),
    ("reserved name", b"name PLAYER7\n", lines("That name is taken."), True),
    ("line of exactly max-line", b"x" * 512 + b"\n", lines(PROMPT), True),
    ("max-line plus CRLF", b"x" * 512 + b"\r\n", lines(PROMPT), True),
    ("line over max-line", b"x" * 513 + b"\n", lines(LONG), False),
    ("max-line bytes, no line end", b"x" * 512, b"", True),
    ("max-line bytes and CR, no LF", b"x" * 512 + b"\r", b"", True),
    ("max-line plus one, no line end", b"x" * 513, lines(LONG), False),
    ("max-line plus one and CR", b"x" * 513 + b"\r", lines(LONG), False),
    ("just under max-line, no end", b"x" * 511, b"", True),
    ("long line then more lines", b"x" * 600 + b"\nhelp\n", lines(LONG), False),
    ("quit then more", b"quit\nhelp\n", lines("Goodbye!"), False),
    ("exit with spaces", b"  ExIt  \r\n", lines("Goodbye!"), False),
    ("telnet DO echo", IAC + b"\xfd\x01hi\n", IAC + b"\xfc\x01" + lines(PROMPT), True),
    ("telnet WILL naws", IAC + b"\xfb\x1f\n", IAC + b"\xfe\x1f" + lines(PROMPT), True),
    ("telnet DONT and WONT", IAC + b"\xfe\x01" + IAC + b"\xfc\x03\n", lines(PROMPT), True),
    (
        "a run of negotiations",
        IAC + b"\xfd\x01" + IAC + b"\xfc\x03" + IAC + b"\xfb\x1f" + IAC + b"\xfd\xff\n",
        IAC + b"\xfc\x01" + IAC + b"\xfe\x1f" + IAC + b"\xfc\xff" + lines(PROMPT),
        True,
    ),
    (
        "a run of DO only",
        IAC + b"\xfd\x01" + IAC + b"\xfd\x03" + IAC + b"\xfd\xfd\n",
        IAC + b"\xfc\x01" + IAC + b"\xfc\x03" + IAC + b"\xfc\xfd" + lines(PROMPT),
        True,
    ),
    (
        "DO flood, no line end",
        (IAC + b"\xfd\x01") * 300,
        (IAC + b"\xfc\x01") * 171 + lines(LONG),
        False,
    ),
    ("IAC IAC is a 0xFF byte", IAC + IAC + b"\n", lines(PROMPT), True),
    ("telnet NOP and AYT", IAC + b"\xf1" + IAC + b"\xf6x\n", lines(PROMPT), True),
    (
        "subnegotiation skipped",
        IAC + b"\xfa\x18\x00xterm" + IAC + b"\xf0hello\n",
        lines(PROMPT),
        True,
    ),
    ("endless subnegotiation", IAC + b"\xfa\x18" + b"a" * 1100 + b"\n", lines(LONG), False),
    ("subnegotiation of max-line", IAC + b"\xfa\x18" + b"a" * 507 + IAC + b"\xf0", b"", True),
    (
        "subnegotiation over max-line",
        IAC + b"\xfa\x18" + b"a" * 508 + IAC + b"\xf0",
        lines(LONG),
        False,
    ),
    ("NOP flood, no line end", (IAC + b"\xf1") * 300, lines(LONG), False),
    ("NOP flood stops the parse", (IAC + b"\xf1") * 300 + IAC + b"\xfd\x01", lines(LONG), False),
    (
        "commands and text over max-line",
        (IAC + b"\xf1") * 10 + b"x" * 493 + b"\n",
        lines(LONG),
        False,
    ),
    (
        "commands and text of max-line",
        (IAC + b"\xf1") * 10 + b"x" * 492 + b"\n",
        lines(PROMPT),
        True,
    ),
    (
        "commands after a line count anew",
        b"x" * 500 + b"\n" + (IAC + b"\xf1") * 200,
        lines(PROMPT),
        True,
    ),
    ("backspace erases", b"topx\x08\n", lines("No winners yet."), True),
    ("delete erases", b"tox\x7fp\n", lines("No winners yet."), True),
    ("backspace at line start", b"\x08\x7ftop\n", lines("No winners yet."), True),
    (
        "backspace erases a utf-8 character",
        "top\u00e9\x08\n".encode(),
        lines("No winners yet."),
        True,
    ),
    ("backspace erases only its line", b"a\n\x08top\n", lines(PROMPT, "No winners yet."), True),
    ("arrow key dropped", b"t\x1b[Dop\n", lines("No winners yet."), True),
    ("escape with parameters dropped", b"\x1b[1;5Ctop\x1b[2J\n", lines("No winners yet."), True),
    ("SS3 arrow dropped", b"\x1bOAtop\x1bOB\n", lines("No winners yet."), True),
    ("telnet IP", b"5" + IAC + b"\xf4", lines("Goodbye!"), False),
    ("telnet AO", IAC + b"\xf5", lines("Goodbye!"), False),
    ("telnet IP drops what follows", IAC + b"\xf4help\n", lines("Goodbye!"), False),
    (
        "telnet IP with DO timing-mark",
        IAC + b"\xf4" + IAC + b"\xfd\x06x\n",
        IAC + b"\xfc\x06" + lines("Goodbye!"),
        False,
    ),
    ("lines before telnet IP", b"a\n" + IAC + b"\xf4", lines(PROMPT, "Goodbye!"), False),
    (
        "negotiation then a paste of lines",
        IAC + b"\xfd\x01" + b"a\n" * 50 + b"top\n",
        IAC + b"\xfc\x01" + lines(*[PROMPT] * 50, "No winners yet."),
        True,
    ),
    (
        "DO in the middle keeps its place",
        b"a\n" + IAC + b"\xfd\x18b\n",
        lines(PROMPT) + IAC + b"\xfc\x18" + lines(PROMPT),
        True,
    ),
]


@pytest.mark.parametrize(
    ("data", "expected", "stays_open"),
    [pytest.param(data, expected, open_, id=name) for name, data, expected, open_ in PLAYER_ROWS],
)
def test_player_hostile_input(data: bytes, expected: bytes, stays_open: bool) -> None:
    """A hostile player line gets exactly its expected answer, and no traceback."""
    peer = connect(PlayerFactory(make_game(seed=1)))
    peer.read()
    peer.proto.dataReceived(data)
    out = peer.transport.value()
    assert out == expected
    assert peer.closed is not stays_open
    assert b"Traceback" not in out


ADMIN_ROWS: list[tuple[str, bytes, bytes, bool]] = [
    ("invalid utf-8", b"\xc3\x28\n", lines("ERR send Admin-Greetings first"), True),
    ("command before handshake", b"who\n", lines("ERR send Admin-Greetings first"), True),
    ("NUL before handshake", b"\x00\n", lines("ERR send Admin-Greetings first"), True),
    ("line too long", b"x" * 513 + b"\n", lines("ERR line too long"), False),
    ("no line end", b"x" * 513, lines("ERR line too long"), False),
    ("max-line, no line end", b"x" * 512, b"", True),
    ("NOP flood", (IAC + b"\xf1") * 300, lines("ERR line too long"), False),
    ("endless subnegotiation", IAC + b"\xfa\x18" + b"a" * 600, lines("ERR line too long"), False),
    ("backspace erases", b"x\x08who\x1b[A\n", lines("ERR send Admin-Greetings first"), True),
    (
        "edited handshake",
        b"Admin-Greetingz\x08s\x1bOD\n",
        lines("OK Admin-Greetings, 0 players online"),
        True,
    ),
    ("telnet IP", IAC + b"\xf4", lines("OK bye"), False),
    (
        "telnet DO",
        IAC + b"\xfd\x03who\n",
        IAC + b"\xfc\x03" + lines("ERR send Admin-Greetings first"),
        True,
    ),
]


@pytest.mark.parametrize(
    ("data", "expected", "stays_open"),
    [pytest.param(data, expected, open_, id=name) for name, data, expected, open_ in ADMIN_ROWS],
)
def test_admin_hostile_input(data: bytes, expected: bytes, stays_open: bool) -> None:
    """A hostile admin line gets exactly its expected answer, and no traceback."""
    peer = connect(AdminFactory(make_game()))
    peer.proto.dataReceived(data)
    assert peer.transport.value() == expected
    assert peer.closed is not stays_open


# The property.  A line is refused when it is longer than max-line (telnet
# commands included, its line end not), or when more than max-line bytes
# arrive with no line end (a CR last may begin a CRLF): the answer never
# depends on how the bytes are split into packets (PROTOCOL.md, Framing).

MAX_LINE = 16
TELNET_ANSWER = re.compile(rb"\xff[\xfc\xfe].", re.DOTALL)


def _run(data: bytes, cuts: list[int]) -> tuple[bytes, bool]:
    """Feed ``data`` to a fresh player cut at ``cuts``; return replies and closed.

    Telnet negotiation answers are left out of the replies: after Ctrl-C
    the commands in the same packet are still answered, and those in a
    later packet are not (the connection is closing).
    """
    game = make_game(seed=3)
    peer = connect(PlayerFactory(game, max_line=MAX_LINE))
    peer.transport.clear()
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut > start:
            peer.proto.dataReceived(data[start:cut])
            start = cut
    return TELNET_ANSWER.sub(b"", peer.transport.value()), bool(peer.closed)


# Pieces that make telnet sequences, line ends, commands and lines near
# max-line likely, mixed with arbitrary bytes.
PIECES = [
    b"\n",
    b"\r\n",
    b"\r",
    b"\xff",
    b"\xff\xff",
    b"\xff\xfd",
    b"\xff\xfb",
    b"\xff\xfa",
    b"\xff\xf0",
    b"\xff\xf4",
    b"\xff\xf5",
    b"\xff\xf1",
    b"\xff\xfd\x01",
    b"\xff\xfc\x03",
    b"\x08",
    b"\x7f",
    b"\x1b[D",
    b"\x1bOA",
    b"5",
    b"quit",
    b"help",
    b"name x",
    b"top",
    b"x" * (MAX_LINE - 2),
    b"x" * (MAX_LINE - 1),
    b"x" * MAX_LINE,
    b"x" * (MAX_LINE + 1),
]

stream_pieces = st.lists(st.one_of(st.binary(max_size=24), st.sampled_from(PIECES)), max_size=20)


def _stream_and_cuts(data: Any, pieces: list[bytes]) -> tuple[bytes, list[int]]:
    """Join ``pieces``; cut at random points and often at the pieces' edges."""
    stream = b"".join(pieces)
    edges = [0]
    for piece in pieces:
        edges.append(edges[-1] + len(piece))
    cuts = data.draw(
        st.lists(st.one_of(st.sampled_from(edges), st.integers(0, len(stream))), max_size=12)
    )
    return stream, cuts


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_bytes_any_split_same_answer(data: Any) -> None:
    """Any byte stream gives the same output and end state whatever the packet split."""
    pieces = data.draw(stream_pieces)
    stream, cuts = _stream_and_cuts(data, pieces)
    whole = _run(stream, [])
    assert _run(stream, cuts) == whole
    assert b"Traceback" not in whole[0]


def _safe_line(line: bytes) -> bool:
    text = line.decode("utf-8", "replace").strip().lower()
    return text.split(" ")[0] not in ("quit", "exit") and not text.isdigit()


ordinary_lines = st.lists(
    st.tuples(
        st.binary(max_size=MAX_LINE - 2)
        .map(lambda b: b.replace(b"\n", b"").replace(b"\xff", b""))
        .filter(_safe_line),
        st.sampled_from([b"\n", b"\r\n"]),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_one_reply_per_complete_line(data: Any) -> None:
    """Every complete line gets exactly one reply line, however it is split."""
    pairs = data.draw(ordinary_lines)
    tail = data.draw(st.binary(max_size=MAX_LINE - 2).map(lambda b: b.replace(b"\n", b"")))
    tail = tail.replace(b"\xff", b"")
    stream = b"".join(line + end for line, end in pairs) + tail
    out, closed = _run(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    assert not closed
    assert out.count(b"\r\n") == len(pairs)
