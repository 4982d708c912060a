"""The ceiling: the fastest player port Twisted itself can serve, with no game.

A bare `LineReceiver` on the same reactor as the daemon (the default one,
epoll on Linux), listening with the daemon's backlog.  It sends the same
greeting and prompt, and answers every line with the fixed line
``Too low! Pick a number between LO-HI``: the same bytes as the game's
usual reply.  Every figure of ``make bench`` is compared with it.  It
prints ``player port listening on HOST:PORT`` once it listens, as the
daemon logs, and runs until SIGTERM or SIGINT.

Run: ``python -m bench.ceiling --player tcp:0:interface=127.0.0.1 --range 1-30``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import endpoints, protocol
from twisted.internet.interfaces import IAddress, IListeningPort, ITransport
from twisted.protocols.basic import LineReceiver

from bench.loadgen import raise_file_limit
from guessgame.game import parse_range
from guessgame.tap import player_endpoint
from guessgame.wire.lines import format_address

__all__ = ["CeilingFactory", "CeilingProtocol", "main", "parse_args"]


class CeilingProtocol(LineReceiver):
    """Greets, then answers every line with the same ``Too low!`` line."""

    delimiter = b"\n"
    transport: ITransport

    def __init__(self, factory: CeilingFactory) -> None:
        self.factory = factory

    def connectionMade(self) -> None:
        """Send the greeting and the prompt in one write, as the daemon does."""
        self.transport.write(self.factory.greeting)

    def lineReceived(self, line: bytes) -> None:
        """One line in, the fixed reply out."""
        self.transport.write(self.factory.reply)


class CeilingFactory(protocol.Factory[CeilingProtocol]):
    """Holds the two byte strings every connection sends."""

    noisy = False

    def __init__(self, lo: int, hi: int) -> None:
        prompt = f"Pick a number between {lo}-{hi}"
        self.greeting = f"You are now connected to the server!\r\n{prompt}\r\n".encode()
        self.reply = f"Too low! {prompt}\r\n".encode()

    def buildProtocol(self, addr: IAddress | None) -> CeilingProtocol:
        """A protocol for one connection."""
        return CeilingProtocol(self)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read ``--player ENDPOINT`` and ``--range LO-HI``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--player", default="tcp:0:interface=127.0.0.1", help="endpoint")
    parser.add_argument("--range", default="1-30", help="LO-HI named in the prompt")
    ns = parser.parse_args(argv)
    try:
        ns.lo, ns.hi = parse_range(ns.range)
    except ValueError as e:
        parser.error(f"--range: {e}")
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    """Listen and serve until stopped."""
    ns = parse_args(argv)
    raise_file_limit()
    from twisted.internet import reactor

    endpoint = endpoints.serverFromString(reactor, player_endpoint(ns.player))
    d = endpoint.listen(CeilingFactory(ns.lo, ns.hi))

    def listening(port: IListeningPort) -> None:
        print(f"player port listening on {format_address(port.getHost())}", flush=True)

    failures: list[Any] = []
    d.addCallbacks(listening, failures.append)
    if failures:  # a TCP endpoint listens at once, so a failure is known now
        print(f"cannot listen: {failures[0].getErrorMessage()}", file=sys.stderr, flush=True)
        return 1
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
