"""``guessgame-play``: the player client.

Connects to the player port, shows the server's lines as they come and
sends the player's lines, checking each one first: anything that is not a
whole number in the range the server announced, nor a command (``help``,
``name``, ``top``, ``quit``, ``exit``), is answered here with the server's
own ``Pick a number between LO-HI``.  With ``--auto`` it plays by itself
with a binary search.  Exit status: 0 after a win or a goodbye, 1 when the
connection fails or the server ends it, 2 for a usage error.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from guessgame.clients.common import (
    EXIT_ERROR,
    EXIT_OK,
    ClientOptions,
    Console,
    before_shutdown,
    connect,
    error_line,
    open_console,
    print_line,
    run_main,
)
from guessgame.events import plural
from guessgame.player.modern import parse_guess
from guessgame.wire.lines import Transport

__all__ = [
    "BinarySearch",
    "Ending",
    "Input",
    "Options",
    "PlayerClient",
    "check_input",
    "ending_of",
    "main",
    "parse_range",
]

PROGRAM = "guessgame-play"

#: "between LO-HI" in the greeting, in replies and in round notices.
RANGE_PATTERN = re.compile(r"between ([0-9]+)-([0-9]+)")
#: The notice that someone else won the shared round.
ROUND_WON = re.compile(r"\*\*\* [^ ]+ won the round with [0-9]+\. ")

#: Seconds to wait for the greeting, and for the server's goodbye.
GREETING_TIMEOUT = 10.0
GOODBYE_TIMEOUT = 3.0

#: Lines longer than this are refused here rather than by the server.
MAX_LINE = 500


def parse_range(line: str) -> tuple[int, int] | None:
    """The ``LO-HI`` a server line announces, if it announces one."""
    match = RANGE_PATTERN.search(line)
    if match is None:
        return None
    lo, hi = int(match.group(1)), int(match.group(2))
    return (lo, hi) if lo < hi else None


class Input(enum.Enum):
    """What a line the player typed is."""

    GUESS = "guess"
    COMMAND = "command"
    QUIT = "quit"
    INVALID = "invalid"


def check_input(text: str, lo: int, hi: int) -> Input:
    """Classify a line the player typed against the range ``lo``-``hi``."""
    text = text.strip()
    if len(text.encode("utf-8")) > MAX_LINE:
        return Input.INVALID
    if parse_guess(text, lo, hi) is not None:
        return Input.GUESS
    word = text.split(maxsplit=1)[0].lower() if text else ""
    if word in ("quit", "exit"):
        return Input.QUIT
    if word in ("help", "name", "top"):
        return Input.COMMAND
    return Input.INVALID


@dataclass(frozen=True, slots=True)
class Ending:
    """How a server line ends the game: exit status and what to tell the user."""

    status: int
    message: str = ""

    def describe(self, address: str) -> str:
        """The message with the server's address filled in."""
        return self.message.format(address=address)


#: Server lines (by how they begin) after which the server closes.
ENDINGS: tuple[tuple[str, Ending], ...] = (
    ("Correct! ", Ending(EXIT_OK)),
    ("Goodbye!", Ending(EXIT_OK)),
    (
        "*** You have been removed by the administrator.",
        Ending(EXIT_ERROR, "removed from the game at {address} by the administrator"),
    ),
    (
        "*** The server is shutting down.",
        Ending(EXIT_ERROR, "the server at {address} is shutting down"),
    ),
    (
        "*** Idle for too long.",
        Ending(EXIT_ERROR, "disconnected from {address} for being idle"),
    ),
    (
        "*** The server is full.",
        Ending(EXIT_ERROR, "the server at {address} is full; try again later"),
    ),
    (
        "*** Too many connections from your address.",
        Ending(EXIT_ERROR, "too many connections from this address to {address}; try again later"),
    ),
    (
        "*** Line too long.",
        Ending(EXIT_ERROR, "{address} closed the connection: line too long"),
    ),
)


def ending_of(line: str) -> Ending | None:
    """The `Ending` a server line announces, or None if the game goes on."""
    for start, ending in ENDINGS:
        if line.startswith(start):
            return ending
    return None


def announces_range(line: str) -> bool:
    """Whether the range in ``line`` is the game's: not in the administrator's words."""
    return not line.startswith("*** ") or restarts_round(line)


def restarts_round(line: str) -> bool:
    """Whether a notice means a new secret: someone won, or the administrator said so."""
    return ROUND_WON.match(line) is not None or line.startswith(
        "*** The administrator started a new round."
    )


class BinarySearch:
    """Guesses that halve the candidates after every ``Too low!``/``Too high!``."""

    def __init__(self, lo: int, hi: int) -> None:
        self.reset(lo, hi)

    def reset(self, lo: int, hi: int) -> None:
        """Start again over ``lo``-``hi``."""
        self.range = (lo, hi)
        self.lo, self.hi = lo, hi

    def guess(self) -> int:
        """The middle of what is left."""
        if self.lo > self.hi:  # the secret changed under us: start over
            self.lo, self.hi = self.range
        return (self.lo + self.hi) // 2

    def answer(self, number: int, reply: str) -> None:
        """Narrow the candidates by the server's reply to ``number``."""
        if reply.startswith("Too low!"):
            self.lo = max(self.lo, number + 1)
        elif reply.startswith("Too high!"):
            self.hi = min(self.hi, number - 1)


class Options(ClientOptions):
    """The command line of ``guessgame-play``."""

    synopsis = (
        "Usage: guessgame-play [--host HOST] [--port PORT | --connect ENDPOINT] "
        "[--name NICK] [--auto [--games N]]"
    )
    longdesc = "Play guessgame: guess the server's secret number."
    default_port = 4000

    optFlags: list[list[Any]] = [
        ["auto", None, "Play by itself with a binary search, showing each guess."],
    ]
    optParameters: list[list[Any]] = [
        ["name", None, None, "Choose this name once connected."],
        ["games", None, "1", "With --auto: how many games to play in a row."],
        ["delay", None, "0", "With --auto: seconds to wait before each guess."],
    ]

    def postOptions(self) -> None:
        """Check --games and --delay as well as where to connect."""
        super().postOptions()
        games = self["games"]
        if not (games.isascii() and games.isdigit()) or int(games) < 1:
            raise usage.UsageError(f"--games must be a whole number of at least 1, not {games!r}")
        self["games"] = int(games)
        if self["games"] > 1 and not self["auto"]:
            raise usage.UsageError("--games needs --auto")
        try:
            self["delay"] = float(self["delay"])
        except ValueError:
            self["delay"] = -1.0
        if not 0 <= self["delay"] <= 3600:
            raise usage.UsageError("--delay must be a number of seconds from 0 to 3600")

    def parseArgs(self, *args: str) -> None:
        """No arguments besides the options."""
        if args:
            raise usage.UsageError(f"unexpected argument: {args[0]}")


class PlayerClient(LineReceiver):
    """One game on the player port, fed by the player's console or by `BinarySearch`."""

    delimiter = b"\n"
    MAX_LENGTH = 65536
    transport: Transport  # type: ignore[assignment]

    def __init__(
        self,
        reactor: Any,
        address: str,
        console: Console | None,
        *,
        name: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.console = console
        self.name = name
        self.delay = delay
        self.range: tuple[int, int] | None = None
        self.search: BinarySearch | None = None
        self.ending: Ending | None = None
        self.quitting = False
        self.awaiting: str | None = None  # the line whose reply is due
        self.guesses = 0
        #: Fires with the exit status once the connection is gone.
        self.finished: defer.Deferred[int] = defer.Deferred()
        self._greeting_timer: Any = None
        self._goodbye_timer: Any = None
        self.gone = False

    # Output.

    def show(self, text: str) -> None:
        """Show one line to the player."""
        if self.console is not None:
            self.console.show(text)
        else:
            print_line(text)

    def send(self, text: str) -> None:
        """Send one line; its reply is due next."""
        self.awaiting = text
        self.sendLine(text.encode("utf-8"))

    # The connection.

    def connectionMade(self) -> None:
        """Wait (not forever) for the greeting."""
        self._greeting_timer = self.reactor.callLater(GREETING_TIMEOUT, self._no_greeting)

    def _no_greeting(self) -> None:
        self._greeting_timer = None
        self.ending = Ending(EXIT_ERROR, "no greeting from {address}: is it a guessgame server?")
        self.transport.abortConnection()

    def lineReceived(self, line: bytes) -> None:
        """Show a server line, then act on it."""
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.show(text)
        announced = parse_range(text) if announces_range(text) else None
        if announced is not None:
            self.range = announced
        ending = ending_of(text)
        if ending is not None:
            self.ending = ending
            self._expect_close()
            return
        if text.startswith("*** "):
            if self.search is not None and restarts_round(text) and self.range is not None:
                self.search.reset(*self.range)
            return
        if self.awaiting is not None:
            asked, self.awaiting = self.awaiting, None
            if self.search is not None and asked.isdigit():
                self.search.answer(int(asked), text)
            self.next_line()
        elif self._greeting_timer is not None and announced is not None:
            self._greeting_timer.cancel()
            self._greeting_timer = None
            if self.console is None:
                self.search = BinarySearch(*announced)
            if self.name is not None:
                self.send(f"name {self.name}")
            else:
                self.next_line()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A server that sends such lines is not ours."""
        self.ending = Ending(EXIT_ERROR, "{address} sent a line far too long")
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Work out the exit status and say what happened."""
        self.gone = True
        for name in ("_greeting_timer", "_goodbye_timer"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()
        ending = self.ending
        if ending is None:
            if self.quitting:
                ending = Ending(EXIT_OK)
            elif self.range is None:
                ending = Ending(EXIT_ERROR, "{address} closed the connection")
            else:
                ending = Ending(EXIT_ERROR, "lost the connection to {address}")
        if ending.message:
            if self.console is not None:
                self.console.close()  # the message goes below the line being typed
            error_line(PROGRAM, ending.describe(self.address))
        if not self.finished.called:
            self.finished.callback(ending.status)

    # Input.

    def next_line(self) -> None:
        """Ask the player (or the search) for the next line to send."""
        if self.ending is not None or self.quitting:
            return
        if self.console is None:
            if self.delay:
                self.reactor.callLater(self.delay, self._auto_guess)
            else:
                self._auto_guess()
        else:
            self.console.read_line().addCallback(self._typed)

    def _auto_guess(self) -> None:
        if self.search is None or self.ending is not None or self.quitting or self.gone:
            return
        number = str(self.search.guess())
        self.guesses += 1
        self.show(f"> {number}")
        self.send(number)

    def _typed(self, line: str | None) -> None:
        if self.ending is not None or self.quitting or self.gone:
            return
        if line is None:
            self.leave()
            return
        assert self.range is not None
        kind = check_input(line, *self.range)
        if kind is Input.INVALID:
            self.show(f"Pick a number between {self.range[0]}-{self.range[1]}")
            self.next_line()
            return
        if kind is Input.QUIT:
            self.quitting = True
            self._expect_close()
        self.send(line.strip())

    def leave(self) -> defer.Deferred[int]:
        """Say goodbye (end of input, Ctrl-C); fire `finished` once closed."""
        if not self.gone and self.ending is None and not self.quitting:
            self.quitting = True
            if self.console is not None:
                # Leave the line being typed as it is; what follows goes below it.
                self.console.close()
            self.sendLine(b"quit")
            self._expect_close()
        return self.finished

    def _expect_close(self) -> None:
        """The server closes next; give it a while, then close ourselves."""
        # Not a timeout on `finished`: cancelling it would fail whoever waits on it.
        if self._goodbye_timer is None and not self.gone:
            self._goodbye_timer = self.reactor.callLater(GOODBYE_TIMEOUT, self._gone_anyway)

    def _gone_anyway(self) -> None:
        """The server did not close after our goodbye: close it ourselves."""
        self._goodbye_timer = None
        self.transport.abortConnection()


async def play(reactor: Any, options: Options) -> int:
    """Play ``--games`` games (one unless ``--auto``); the exit status."""
    auto = bool(options["auto"])
    console = None if auto else open_console(reactor, "> ", ("help", "name", "top", "quit"))
    try:
        for game in range(options["games"]):
            client = await connect(
                reactor,
                options,
                lambda: PlayerClient(
                    reactor,
                    options.address,
                    console,
                    name=options["name"],
                    delay=options["delay"],
                ),
            )
            withdraw = before_shutdown(reactor, client.leave)
            try:
                status = await client.finished
            finally:
                withdraw()
            if status != EXIT_OK or client.quitting:
                return status
            if auto and options["games"] > 1:
                client.show(f"Game {game + 1} won in {plural(client.guesses, 'guess')}.")
    finally:
        if console is not None:
            console.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """The ``guessgame-play`` console script."""
    run_main(PROGRAM, Options(), argv, play)


if __name__ == "__main__":
    main()
