"""End-to-end: ``twistd -n guessgame`` as a subprocess, played over sockets."""

from __future__ import annotations

import re
import signal

from tests.e2e import Daemon, play_to_win


def test_play_win_who_and_sigterm() -> None:
    """A real daemon: a win, who on the admin port, and a clean SIGTERM shutdown."""
    with Daemon() as daemon:
        admin = daemon.admin()
        winner = daemon.player()
        assert admin.line().startswith("EVENT join 1 player1 127.0.0.1:")
        stayer = daemon.player()
        assert admin.line().startswith("EVENT join 2 player2 127.0.0.1:")

        admin.send("who")
        stayer_port = stayer.sock.getsockname()[1]
        assert re.fullmatch(r"PLAYER 1 player1 127\.0\.0\.1:\d+ 0 \S+Z", admin.line())
        assert re.fullmatch(
            rf"PLAYER 2 player2 127\.0\.0\.1:{stayer_port} 0 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            admin.line(),
        )
        assert admin.line() == "OK 2 players"

        secret, guesses, reply = play_to_win(winner)
        counted = "1 guess" if guesses == 1 else f"{guesses} guesses"
        assert reply == f"Correct! The number was {secret}. You won in {counted}!"
        assert winner.closed()
        assert admin.line() == f"EVENT win 1 player1 {secret} {guesses}"
        assert stayer.line().startswith(f"*** player1 won the round with {secret}.")

        daemon.signal(signal.SIGTERM)
        assert stayer.line() == "*** The server is shutting down. Goodbye!"
        assert [admin.line() for _ in range(3)] == [
            "EVENT round 2 1-30",
            "EVENT leave 1 player1 won",
            "EVENT leave 2 player2 shutdown",
        ]
        assert daemon.wait() == 0
