"""End to end: ``twistd -n guessgame --db postgresql://...`` daemons playing one game.

Every test runs real daemons as subprocesses on free loopback ports
against a new database of the session's PostgreSQL server, and plays
them over raw TCP as nc would.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e import WAIT, Daemon, Line, daemon_command, play_to_win


def stats_of(admin: Line) -> dict[str, str]:
    """The admin's ``stats`` reply as a dict."""
    reply = admin.command("stats")
    assert reply[-1].startswith("OK players="), reply
    return dict(field.split("=", 1) for field in reply[-1].split()[1:])


def ids_in(who: list[str]) -> list[int]:
    """The player ids of a ``who`` reply."""
    return [int(line.split()[1]) for line in who if line.startswith("PLAYER ")]


def eventually(check: Callable[[], Any], what: str, wait: float = WAIT) -> Any:
    """Ask ``check`` again (every 0.1 s) until it returns a true value; fail after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def next_event(admin: Line, kind: str) -> str:
    """The next ``EVENT kind`` line pushed to ``admin``, skipping other lines."""
    while True:
        line = admin.line()
        if line.startswith(f"EVENT {kind} "):
            return line


def test_win_on_one_daemon_ends_the_round_on_the_other(pg_uri: str) -> None:
    """A win on A: B's nc player gets the notice, both admins the events, top and stats agree."""
    with Daemon("--db", pg_uri) as a, Daemon("--db", pg_uri) as b:
        admin_a, admin_b = a.admin(), b.admin()
        watcher = b.player()
        winner = a.player()
        (winner_id,) = ids_in(admin_a.command("who"))
        (watcher_id,) = ids_in(admin_b.command("who"))
        assert winner_id != watcher_id
        winner.send("name Ann")
        assert winner.line() == "You are now known as Ann."
        secret, guesses, reply = play_to_win(winner)
        assert reply.startswith(f"Correct! The number was {secret}. You won in {guesses} ")
        assert watcher.line() == (
            f"*** Ann won the round with {secret}. A new number between 1-30 has been picked."
        )
        for admin in (admin_a, admin_b):
            assert next_event(admin, "win") == f"EVENT win {winner_id} Ann {secret} {guesses}"
            assert next_event(admin, "round").endswith(" 1-30")
        # The watcher plays on in the new round, on B.
        watcher.send("help")
        assert watcher.line().startswith("Guess the secret whole number between 1-30.")
        top = [f"TOP 1 Ann 1 {guesses}", "OK 1 player"]
        assert admin_a.command("top") == top
        assert admin_b.command("top") == top

        def agree() -> bool:
            one, other = stats_of(admin_a), stats_of(admin_b)
            keys = ("rounds", "wins", "guesses", "store")
            return all(one[k] == other[k] for k in keys) and one["guesses"] == str(guesses)

        eventually(agree, "stats to agree on both daemons")
        stats = stats_of(admin_b)
        assert (stats["wins"], stats["store"], stats["players"]) == ("1", "ok", "1")
        assert stats_of(admin_a)["players"] == "0"


def test_two_players_race_for_one_secret(pg_uri: str) -> None:
    """Players on A and B send the same guesses in lockstep: every Correct! counts, one round."""
    with Daemon("--db", pg_uri) as a, Daemon("--db", pg_uri) as b:
        admin_a, admin_b = a.admin(), b.admin()
        rounds_before = int(stats_of(admin_a)["rounds"])
        ann, bob = a.player(), b.player()
        ann.send("name Ann")
        bob.send("name Bob")
        assert ann.line() == "You are now known as Ann."
        assert bob.line() == "You are now known as Bob."
        lo, hi = 1, 30
        correct = 0
        rounds_won = 0
        while not correct:
            guess = (lo + hi) // 2
            # Both guesses leave before either reply is read.
            ann.send(str(guess))
            bob.send(str(guess))
            replies = []
            for player in (ann, bob):
                # Whoever hears of the other's win first has its guess scored
                # in the new round, after the notice.
                heard, reply = False, player.line()
                while reply.startswith("*** "):
                    heard, reply = True, player.line()
                replies.append(reply)
                if reply.startswith("Correct!"):
                    correct += 1
                    # Both winners of one round end it once; a later win ends the next.
                    rounds_won = max(rounds_won, 2 if heard else 1)
            if not correct:
                assert replies[0].split("!")[0] == replies[1].split("!")[0], replies
                if replies[0].startswith("Too low!"):
                    lo = guess + 1
                else:
                    hi = guess - 1

        def agree() -> bool:
            one, other = stats_of(admin_a), stats_of(admin_b)
            return (
                (one["wins"], one["rounds"])
                == (other["wins"], other["rounds"])
                == (
                    str(correct),
                    str(rounds_before + rounds_won),
                )
            )

        eventually(agree, "both daemons to count the wins and the rounds")
        # The other's leaderboard entry comes with its notification, a moment later.
        top_a = eventually(
            lambda: (top := admin_a.command("top")) == admin_b.command("top") and top,
            "both daemons to show the same leaderboard",
        )
        assert top_a[-1] == f"OK {correct} player" + ("s" if correct > 1 else "")


def test_ids_never_collide_under_concurrent_joins(pg_uri: str) -> None:
    """Players joining two daemons at once all get different ids."""
    per_daemon = 25
    limits = ("--max-per-ip", "0")
    with Daemon("--db", pg_uri, *limits) as a, Daemon("--db", pg_uri, *limits) as b:
        admins = [a.admin(), b.admin()]
        errors: list[BaseException] = []

        def join_many(daemon: Daemon) -> None:
            try:
                for _ in range(per_daemon):
                    daemon.player()
            except BaseException as e:  # reported by the test thread
                errors.append(e)

        threads = [threading.Thread(target=join_many, args=(d,)) for d in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not errors, errors
        ids = [i for admin in admins for i in ids_in(admin.command("who"))]
        assert len(ids) == 4 * per_daemon
        assert len(set(ids)) == len(ids)


def test_win_survives_kill_9(pg_uri: str) -> None:
    """A win answered Correct! is in the database after kill -9 and a restart."""
    with Daemon("--db", pg_uri) as daemon:
        player = daemon.player()
        player.send("name Ann")
        assert player.line() == "You are now known as Ann."
        _, guesses, reply = play_to_win(player)
        assert reply.startswith("Correct!")
        daemon.kill()
    with Daemon("--db", pg_uri) as daemon:
        admin = daemon.admin()
        assert admin.command("top") == [f"TOP 1 Ann 1 {guesses}", "OK 1 player"]
        assert stats_of(admin)["wins"] == "1"


def test_database_stopped_and_restarted_under_play(pg_uri: str, postgres_server: Any) -> None:
    """PostgreSQL goes away: play goes on, store=failing; back: ok, nothing lost, news flow."""
    with Daemon("--db", pg_uri) as a, Daemon("--db", pg_uri, "--max-admins", "2") as b:
        admin_a, admin_b = a.admin(), b.admin()
        # Polling stats drops the events pushed meanwhile: these are read here.
        events_b = b.admin()
        player = a.player()
        player.send("name Ann")
        assert player.line() == "You are now known as Ann."
        assert stats_of(admin_a)["store"] == "ok"
        postgres_server.stop()
        try:
            eventually(lambda: stats_of(admin_a)["store"] == "failing", "store=failing")
            won_with, guesses, reply = play_to_win(player)
            assert reply.startswith("Correct!")
            other = a.player()
            other.send("top")
            assert other.line() == "Top players: Ann 1 win"
        finally:
            postgres_server.start()
        for admin in (admin_a, admin_b):
            eventually(lambda admin=admin: stats_of(admin)["store"] == "ok", "store=ok again")
        # The win kept during the outage is written, and B hears of it.
        assert next_event(events_b, "win").endswith(f" Ann {won_with} {guesses}")
        assert admin_b.command("top") == [f"TOP 1 Ann 1 {guesses}", "OK 1 player"]
        # News flow again: a win on B reaches A's player.
        watcher = a.player()
        winner = b.player()
        winner.send("name Bob")
        assert winner.line() == "You are now known as Bob."
        secret, _, reply = play_to_win(winner)
        assert reply.startswith("Correct!")
        assert watcher.line() == (
            f"*** Bob won the round with {secret}. A new number between 1-30 has been picked."
        )
    with Daemon("--db", pg_uri) as daemon:
        admin = daemon.admin()
        top = admin.command("top")
        assert f"Ann 1 {guesses}" in " ".join(top)
        assert stats_of(admin)["wins"] == "2"


def test_unreachable_database_stops_twistd_with_one_line(tmp_path: Any) -> None:
    """A --db PostgreSQL that cannot be reached: one line on stderr, status 1."""
    done = subprocess.run(
        daemon_command("--db", "postgresql://guessgame@127.0.0.1:1/game"),
        check=False,
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=WAIT,
    )
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "guessgame: cannot connect to PostgreSQL database game on 127.0.0.1:1: "
    )
