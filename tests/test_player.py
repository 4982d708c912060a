"""Unit tests of the player port over a StringTransport: the PROTOCOL.md table."""

from __future__ import annotations

import pytest

from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.player.modern import ModernDialect, parse_guess
from guessgame.wire.limits import Limits
from tests.common import Peer, connect, make_game, secret_of

PROMPT = "Pick a number between 1-30"
GREETING = ["You are now connected to the server!", PROMPT]


def game_with_secret(secret: int = 17, **kwargs: object) -> Game:
    """A started game whose shared secret is ``secret`` (found by seed)."""
    for seed in range(1000):
        game = make_game(seed=seed, **kwargs)  # type: ignore[arg-type]
        if secret_of(game) == secret:
            return game
    raise AssertionError("no seed gives that secret")


def player(game: Game, **kwargs: object) -> Peer:
    """A connected player with the greeting already read."""
    peer = connect(PlayerFactory(game, **kwargs))  # type: ignore[arg-type]
    assert peer.read() == GREETING
    return peer


def test_greeting() -> None:
    """On connect the server sends the two greeting lines, CRLF-terminated."""
    peer = connect(PlayerFactory(make_game()))
    assert peer.transport.value() == (
        b"You are now connected to the server!\r\nPick a number between 1-30\r\n"
    )


# One row per line of the player table in PROTOCOL.md (secret 17).
PLAYER_TABLE: list[tuple[str, str, str, bool]] = [
    ("below the secret", "5", "Too low! Pick a number between 1-30", True),
    ("above the secret", "29", "Too high! Pick a number between 1-30", True),
    ("the secret", "17", "Correct! The number was 17. You won in 1 guess!", False),
    ("the secret, leading zeros", "0017", "Correct! The number was 17. You won in 1 guess!", False),
    ("empty", "", PROMPT, True),
    ("spaces only", "   ", PROMPT, True),
    ("letters", "abc", PROMPT, True),
    ("zero", "0", PROMPT, True),
    ("above the range", "31", PROMPT, True),
    ("negative", "-5", PROMPT, True),
    ("decimal", "3.0", PROMPT, True),
    ("plus sign", "+5", PROMPT, True),
    ("underscore", "1_0", PROMPT, True),
    ("hex", "0x1f", PROMPT, True),
    ("arabic-indic digits", "\u0661\u0667", PROMPT, True),
    ("fullwidth digits", "\uff11\uff17", PROMPT, True),
    ("superscript digit", "²", PROMPT, True),
    ("500 digits", "9" * 500, PROMPT, True),
    (
        "500 digits of leading zeros",
        "0" * 498 + "17",
        "Correct! The number was 17. You won in 1 guess!",
        False,
    ),
    ("two numbers", "5 6", PROMPT, True),
    ("quit", "quit", "Goodbye!", False),
    ("exit", "exit", "Goodbye!", False),
    ("quit in capitals", "QUIT", "Goodbye!", False),
    ("name", "name alice", "You are now known as alice.", True),
    ("name reserved", "name player3", "That name is taken.", True),
    ("name invalid", "name al ice", "A name is 1-16 letters, digits, _ or -.", True),
    ("name too long", "name " + "a" * 17, "A name is 1-16 letters, digits, _ or -.", True),
    ("name missing", "name", "A name is 1-16 letters, digits, _ or -.", True),
    ("top, nobody won", "top", "No winners yet.", True),
    ("top in capitals", "TOP", "No winners yet.", True),
]


@pytest.mark.parametrize(
    ("sent", "reply", "stays_open"),
    [row[1:] for row in PLAYER_TABLE],
    ids=[row[0] for row in PLAYER_TABLE],
)
def test_player_table(sent: str, reply: str, stays_open: bool) -> None:
    """Each line of the player table gets exactly its one reply."""
    peer = player(game_with_secret(17))
    assert peer.send(sent.encode() + b"\r\n") == [reply]
    assert peer.closed is not stays_open


def test_help_lists_the_commands() -> None:
    """help is one line beginning with the rules and naming every command."""
    peer = player(make_game())
    [line] = peer.send(b"help\n")
    assert line.startswith("Guess the secret whole number between 1-30.")
    for command in ("name", "top", "help", "quit", "exit"):
        assert command in line


def test_name_taken_by_another_player() -> None:
    """A name held by another connected player, in any case, is taken."""
    game = make_game()
    first = player(game)
    second = player(game)
    assert first.send(b"name Alice\n") == ["You are now known as Alice."]
    assert second.send(b"name ALICE\n") == ["That name is taken."]


def test_top_lists_first_five_with_counted_wins() -> None:
    """top lists the first five by wins, with '1 win' and 'N wins'."""
    game = make_game(mode="solo")
    for name, wins in [("a", 1), ("b", 2), ("c", 3), ("d", 1), ("e", 1), ("f", 1)]:
        for _ in range(wins):
            peer = player(game)
            peer.send(f"name {name}\n".encode())
            assert peer.send(f"{peer.proto.player.secret}\n".encode())[0].startswith("Correct!")
            peer.lose()
    peer = player(game)
    assert peer.send(b"top\n") == ["Top players: c 3 wins, b 2 wins, a 1 win, d 1 win, e 1 win"]


def test_guess_count_in_win_message() -> None:
    """G counts this player's valid guesses, invalid input excluded."""
    peer = player(game_with_secret(17))
    peer.send(b"1\nabc\n30\n0\n")
    assert peer.send(b"17\n") == ["Correct! The number was 17. You won in 3 guesses!"]


def test_shared_round_loser_gets_notice_and_restarts() -> None:
    """When another player wins, the rest get the round notice and G restarts."""
    game = game_with_secret(17)
    winner, loser = player(game), player(game)
    loser.send(b"1\n2\n")
    winner.send(b"name alice\n")
    winner.send(b"17\n")
    assert loser.read() == [
        "*** alice won the round with 17. A new number between 1-30 has been picked."
    ]
    new_secret = secret_of(game)
    assert loser.send(f"{new_secret}\n".encode()) == [
        f"Correct! The number was {new_secret}. You won in 1 guess!"
    ]


def test_several_lines_in_one_packet_and_one_line_over_many() -> None:
    """Framing: many lines per packet, one line split over packets, LF or CRLF."""
    peer = player(game_with_secret(17))
    assert peer.send(b"1\r\n2\nabc\r\n") == [
        "Too low! Pick a number between 1-30",
        "Too low! Pick a number between 1-30",
        PROMPT,
    ]
    assert peer.send(b"2") == []
    assert peer.send(b"9\r") == []
    assert peer.send(b"\n") == ["Too high! Pick a number between 1-30"]


def test_surrounding_white_space_is_ignored() -> None:
    """White space around a guess or command does not matter."""
    peer = player(game_with_secret(17))
    assert peer.send(b"  5 \t\r\n") == ["Too low! Pick a number between 1-30"]
    assert peer.send(b"\t name   bob  \n") == ["You are now known as bob."]


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"x" * 513 + b"\n", "*** Line too long. Goodbye!"),
        (b"x" * 513, "*** Line too long. Goodbye!"),
        (b"x" * 100_000, "*** Line too long. Goodbye!"),
    ],
    ids=["line of 513", "513 with no line end", "100000 with no line end"],
)
def test_line_too_long(data: bytes, reply: str) -> None:
    """A line over --max-line, or that many bytes unterminated, is refused and closed."""
    peer = player(make_game())
    assert peer.send(data) == [reply]
    assert peer.closed


def test_longest_allowed_line_is_answered() -> None:
    """A line of exactly --max-line bytes (CRLF or LF) is ordinary input."""
    peer = player(make_game())
    assert peer.send(b"x" * 512 + b"\r\n") == [PROMPT]
    assert peer.send(b"y" * 512 + b"\n") == [PROMPT]
    assert not peer.closed


@pytest.mark.parametrize(
    "packets",
    [
        [b"x" * 512 + b"\r", b"\n"],
        [b"x" * 512, b"\r\n"],
        [b"x" * 512, b"\r", b"\n"],
        [b"x" * 512, b"\n"],
        [b"x" * 256, b"x" * 256 + b"\r", b"\n"],
        [b"x" * 511, b"x\r\n"],
    ],
    ids=["512+CR, LF", "512, CRLF", "512, CR, LF", "512, LF", "256, 256+CR, LF", "511, x CRLF"],
)
def test_longest_line_is_a_line_however_split(packets: list[bytes]) -> None:
    """A line of exactly --max-line bytes is answered whatever the packets it came in."""
    peer = player(make_game())
    replies = [line for packet in packets for line in peer.send(packet)]
    assert replies == [PROMPT]
    assert not peer.closed


@pytest.mark.parametrize(
    ("edited", "plain"),
    [
        (b"4\x083\n", b"3\n"),
        (b"4\x7f3\n", b"3\n"),
        (b"8\x1b[D\n", b"8\n"),
        (b"\x1b[A2\x1b[B0\n", b"20\n"),
        (b"1\x1bOC5\n", b"15\n"),
        (b"25\x08\x08\x086\n", b"6\n"),
        (b"\x1b[1;2H12\r\n", b"12\r\n"),
    ],
    ids=["BS", "DEL", "left arrow", "up and down", "SS3 right", "BS past the start", "home"],
)
def test_line_editing_gives_the_edited_guess(edited: bytes, plain: bytes) -> None:
    """BS/DEL erase the character before them and escape sequences are dropped."""
    first = player(game_with_secret(17))
    second = player(game_with_secret(17))
    assert first.send(edited) == second.send(plain)


def test_invalid_utf8_is_invalid_input() -> None:
    """Bytes that are not UTF-8 get the prompt, never an error."""
    peer = player(make_game())
    assert peer.send(b"\xc3\x28\n") == [PROMPT]
    assert peer.send(b"name \xe9\n") == [PROMPT]


def test_telnet_negotiation_is_refused_and_not_input() -> None:
    """DO/WILL are refused with WONT/DONT and produce no reply line."""
    peer = player(game_with_secret(17))
    peer.proto.dataReceived(b"\xff\xfd\x01\xff\xfb\x03")
    assert peer.transport.value() == b"\xff\xfc\x01\xff\xfe\x03"
    peer.transport.clear()
    assert peer.send(b"5\n") == ["Too low! Pick a number between 1-30"]


def test_telnet_interrupt_acts_as_quit() -> None:
    """Telnet Interrupt Process (Ctrl-C) is quit."""
    peer = player(make_game())
    assert peer.send(b"\xff\xf4") == ["Goodbye!"]
    assert peer.closed


def test_notices_after_close_are_not_written() -> None:
    """A connection already gone receives nothing more."""
    game = make_game()
    peer = player(game)
    peer.lose()
    assert game.players == {}
    peer.proto.notice("*** late")
    assert peer.read() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17", 17),
        ("017", 17),
        ("1", 1),
        ("30", 30),
        ("0", None),
        ("31", None),
        ("", None),
        ("1e1", None),
        ("9" * 5000, None),
        ("0" * 5000 + "3", 3),
    ],
)
def test_parse_guess(text: str, expected: int | None) -> None:
    """parse_guess accepts ASCII whole numbers in range, however long, else None."""
    assert parse_guess(text, 1, 30) == expected


@pytest.mark.parametrize(
    "data",
    [b"\x1f5\n", b"\x0b5\n", b"\x0c5\n", b"\xc2\xa05\n", b"5\xc2\x85\n", b"\x005\n"],
    ids=["unit separator", "vertical tab", "form feed", "no-break space", "NEL", "NUL"],
)
def test_control_characters_around_a_guess_are_not_white_space(data: bytes) -> None:
    """Only spaces and tabs are stripped: a guess wrapped in control characters is not one."""
    peer = player(game_with_secret(17))
    assert peer.send(data) == [PROMPT]
    assert peer.proto.player.guesses == 0


def test_a_cr_split_from_its_lf_does_not_count_against_the_limit() -> None:
    """A 511-byte line whose CRLF is split between packets is answered like the whole."""
    peer = player(make_game())
    assert peer.send(b"x" * 511 + b"\r") == []
    assert peer.send(b"\n") == [PROMPT]
    assert not peer.closed


def test_a_win_being_saved_is_answered_correct_even_after_ctrl_c() -> None:
    """Ctrl-C while the win is saved: the last line is still Correct!, never Goodbye!."""
    from twisted.internet import defer

    from guessgame.store.base import MemoryStore

    class SlowStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.pending: defer.Deferred[None] = defer.Deferred()

        def record_win(self, entry: object) -> defer.Deferred[None]:  # type: ignore[override]
            return self.pending

    store = SlowStore()
    peer = player(game_with_secret(17, store=store))
    assert peer.send(b"17\n\xff\xf4") == []
    store.pending.callback(None)
    assert peer.read() == ["Correct! The number was 17. You won in 1 guess!"]
    assert peer.closed


def test_a_connection_accepted_as_the_server_stops_is_told_and_closed() -> None:
    """A player connecting after the game stopped gets the shutdown notice, and no join."""
    game = make_game()
    game.stopService()
    peer = connect(PlayerFactory(game))
    assert peer.read() == ["*** The server is shutting down. Goodbye!"]
    assert peer.closed
    assert game.players == {}


@pytest.mark.parametrize("max_rate", [0, 100])
def test_a_plain_guess_takes_the_fast_path_with_or_without_a_rate_limit(
    monkeypatch: pytest.MonkeyPatch, max_rate: int
) -> None:
    """A line of digits in range is answered without decoding, with --max-rate on or off."""
    decoded: list[str | None] = []
    monkeypatch.setattr(ModernDialect, "line", lambda self, conn, text: decoded.append(text))
    game = make_game()
    peer = connect(PlayerFactory(game, limits=Limits(max_rate=max_rate)))
    peer.read()
    secret = secret_of(game)
    wrong = 1 if secret != 1 else 2
    assert peer.send(f"{wrong}\r\n".encode())[0].startswith(("Too low!", "Too high!"))
    assert decoded == []
    assert peer.send(b"help\n") == []
    assert decoded == ["help"]
