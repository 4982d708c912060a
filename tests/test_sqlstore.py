"""The SQLite store: start-up checks, durable wins, batched counters, failures."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage

from guessgame.admin.protocol import AdminFactory
from guessgame.player.factory import PlayerFactory
from guessgame.store import sqlite as sqlstore
from guessgame.store.base import Counters, LeaderboardEntry, MemoryStore
from guessgame.store.sqlite import (
    APPLICATION_ID,
    FLUSH_INTERVAL,
    ID_BLOCK,
    MIGRATIONS,
    SQLiteStore,
    StoreError,
    open_store,
)
from guessgame.tap import Options, open_database
from tests.common import FakeLink, connect, make_game, secret_of, store_service
from tests.e2e import WAIT, Daemon, daemon_command


def read(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Run ``query`` on the file with a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def counters_in(path: Path) -> tuple[int, ...]:
    """rounds, wins, guesses, last_id, id_mark as the file holds them."""
    rows = read(path, "SELECT rounds, wins, guesses, last_id, id_mark FROM counters")
    return tuple(rows[0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A path for a database file that does not exist yet."""
    return tmp_path / "game.sqlite3"


@pytest.fixture
def stores() -> Iterator[list[SQLiteStore]]:
    """Stores a test opened; each is closed afterwards."""
    opened: list[SQLiteStore] = []
    yield opened
    for store in opened:
        pytest_twisted.blockon(store.close())


@pytest.fixture
def errors() -> Iterator[list[dict[str, Any]]]:
    """The error-level events logged during the test."""
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.error:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def store_log() -> Iterator[list[dict[str, Any]]]:
    """The events the SQLite store logged during the test, every level."""
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == sqlstore.log.namespace:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item for each write transaction the store runs (the real one still runs)."""
    seen: list[int] = []
    save = sqlstore._save

    def counted(*args: Any) -> None:
        seen.append(1)
        save(*args)

    monkeypatch.setattr(sqlstore, "_save", counted)
    return seen


@defer.inlineCallbacks
def settled(store: SQLiteStore) -> Any:
    """Wait until every write the store started (and any they start) is done."""
    while store._busy is not None:
        yield store._busy


def running(path: Path, stores: list[SQLiteStore], clock: Clock | None = None) -> SQLiteStore:
    """Open ``path`` and start writing, as the daemon's start does."""
    clock = clock if clock is not None else Clock()
    store = open_store(str(path), clock)
    stores.append(store)
    store_service(store, clock)
    return store


# Start-up: create, migrate, reopen.


def test_create_new_file(db: Path, stores: list[SQLiteStore]) -> None:
    """A missing file becomes an empty guessgame database in WAL mode."""
    snapshot = running(db, stores).load()
    assert snapshot.leaderboard == []
    assert snapshot.counters == Counters()
    assert read(db, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert read(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert read(db, "PRAGMA journal_mode") == [("wal",)]


def test_migrate_empty_file(db: Path) -> None:
    """An empty file (a valid, blank SQLite database) gets the schema."""
    db.write_bytes(b"")
    open_store(str(db), Clock())
    assert read(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert read(db, "SELECT count(*) FROM leaderboard") == [(0,)]


def test_migrate_older_version_keeps_data(db: Path, stores: list[SQLiteStore]) -> None:
    """A database at an older schema version is brought up to date, rows kept."""
    open_store(str(db), Clock())
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO leaderboard VALUES ('ann', 'Ann', 3, 2, 100.0)")
    conn.commit()
    conn.close()
    newer = (*MIGRATIONS, ("ALTER TABLE leaderboard ADD COLUMN country TEXT",))
    store = open_store(str(db), Clock(), migrations=newer)
    assert read(db, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
    assert read(db, "SELECT name, wins, best, country FROM leaderboard") == [("Ann", 3, 2, None)]
    assert store.load().leaderboard == [LeaderboardEntry("Ann", 3, 2, 100.0)]
    stores.append(store)


def test_reopen_after_crash_starts_after_reserved_ids(db: Path) -> None:
    """Without a clean close, the next start begins after the whole reserved block."""
    first = open_store(str(db), Clock())
    assert first._snapshot.counters.last_id == 0
    assert counters_in(db)[4] == ID_BLOCK
    second = open_store(str(db), Clock())
    assert second._snapshot.counters.last_id == ID_BLOCK
    assert counters_in(db)[4] == 2 * ID_BLOCK


# Start-up errors: one message that says what and where.


def test_not_a_database(db: Path) -> None:
    """A file that is not SQLite at all is refused by name."""
    db.write_text("hello, I am a text file\n" * 100)
    with pytest.raises(StoreError) as caught:
        open_store(str(db), Clock())
    assert str(caught.value) == f"not a guessgame database: {db} (file is not a database)"


def test_other_sqlite_database(db: Path) -> None:
    """Another program's SQLite database is refused and left untouched."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE mail (id INTEGER)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError) as caught:
        open_store(str(db), Clock())
    assert str(caught.value) == f"not a guessgame database: {db}"
    assert db.read_bytes() == before


def test_newer_version(db: Path) -> None:
    """A database from a newer schema version is refused, not downgraded."""
    open_store(str(db), Clock())
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as caught:
        open_store(str(db), Clock())
    assert str(caught.value) == (
        f"database {db} is from a newer guessgame "
        f"(schema version {len(MIGRATIONS) + 1}; this one knows up to {len(MIGRATIONS)})"
    )


def damage(path: Path, statements: str) -> bytes:
    """A guessgame database at ``path`` changed by ``statements``; its bytes after."""
    open_store(str(path), Clock())
    conn = sqlite3.connect(path)
    conn.executescript(statements)
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("statements", "what"),
    [
        ("DELETE FROM counters", "the counters row is missing"),
        (
            "PRAGMA ignore_check_constraints = ON; INSERT INTO counters VALUES (2, 0, 0, 0, 0, 0)",
            "the counters table holds 2 rows, not 1",
        ),
        ("UPDATE counters SET wins = 'many'", "counters: wins is 'many', not a whole number >= 0"),
        ("UPDATE counters SET guesses = -3", "counters: guesses is -3, not a whole number >= 0"),
        ("UPDATE counters SET rounds = 2.5", "counters: rounds is 2.5, not a whole number >= 0"),
        (
            "UPDATE counters SET last_id = x'00'",
            "counters: last_id is b'\\x00', not a whole number >= 0",
        ),
        ("UPDATE counters SET id_mark = -1", "counters: id_mark is -1, not a whole number >= 0"),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 'three', 2, 100.0)",
            "leaderboard entry 'ann': wins is 'three', not a whole number >= 1",
        ),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 0, 2, 100.0)",
            "leaderboard entry 'ann': wins is 0, not a whole number >= 1",
        ),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 1, 1.5, 100.0)",
            "leaderboard entry 'ann': best is 1.5, not a whole number >= 1",
        ),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 1, 2, 'noon')",
            "leaderboard entry 'ann': last_win is 'noon', not a time",
        ),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 1, 2, 9e999)",
            "leaderboard entry 'ann': last_win is inf, not a time",
        ),
        (
            "INSERT INTO leaderboard VALUES ('bob', 'Ann', 1, 2, 100.0)",
            "leaderboard entry 'bob': name_key is not the name 'Ann' in lower case",
        ),
        (
            "INSERT INTO leaderboard VALUES ('a b', 'a b', 1, 2, 100.0)",
            "leaderboard entry 'a b': name 'a b' is not 1-16 letters, digits, _ or -",
        ),
        (
            "INSERT INTO leaderboard VALUES ('', '', 1, 2, 100.0)",
            "leaderboard entry '': name '' is not 1-16 letters, digits, _ or -",
        ),
        (
            "INSERT INTO leaderboard VALUES (x'616e6e', x'616e6e', 1, 2, 100.0)",
            "leaderboard entry b'ann': name b'ann' is not 1-16 letters, digits, _ or -",
        ),
    ],
)
def test_wrong_values_are_refused(db: Path, statements: str, what: str) -> None:
    """A database that does not hold what the schema says is refused, and left as it was."""
    before = damage(db, statements)
    with pytest.raises(StoreError) as caught:
        open_store(str(db), Clock())
    assert str(caught.value) == f"damaged guessgame database: {db} ({what})"
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing/game.sqlite3", "unable to open database file"),
        (".", "it is a directory"),
    ],
)
def test_cannot_open(tmp_path: Path, where: str, reason: str) -> None:
    """A path that cannot be opened is refused with the reason."""
    path = tmp_path / where
    with pytest.raises(StoreError) as caught:
        open_store(str(path), Clock())
    assert str(caught.value) == f"cannot open database {os.path.abspath(path)}: {reason}"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_cannot_create_even_as_root() -> None:
    """A path where no file can be created (here /proc) is refused."""
    with pytest.raises(StoreError) as caught:
        open_store("/proc/guessgame.sqlite3", Clock())
    assert str(caught.value).startswith("cannot open database /proc/guessgame.sqlite3: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_file(db: Path) -> None:
    """A database file that cannot be written is refused at start."""
    open_store(str(db), Clock())
    for leftover in db.parent.glob(db.name + "-*"):
        leftover.unlink()
    db.chmod(0o444)
    with pytest.raises(StoreError) as caught:
        open_store(str(db), Clock())
    assert str(caught.value).startswith(f"cannot use database {db}: ")


# The --db option.


def test_db_option_default() -> None:
    """--db defaults to guessgame.sqlite3 in the working directory."""
    options = Options()
    options.parseOptions([])
    assert options["db"] == "guessgame.sqlite3"


def test_db_option_empty() -> None:
    """An empty --db is a usage error that says what to give."""
    with pytest.raises(usage.UsageError) as caught:
        Options().parseOptions(["--db", ""])
    assert str(caught.value) == "--db needs a file name (or :memory: to keep nothing)"


def test_memory_db_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--db :memory: plays from memory and writes no file."""
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_database(":memory:", Clock()), MemoryStore)
    assert list(tmp_path.iterdir()) == []


def test_unusable_db_ends_with_one_line(tmp_path: Path) -> None:
    """A --db that cannot be used exits (status 1) with one guessgame: line."""
    path = tmp_path / "missing" / "game.sqlite3"
    with pytest.raises(SystemExit) as caught:
        open_database(str(path), Clock())
    assert caught.value.code == (
        f"guessgame: cannot open database {path}: unable to open database file"
    )


# Run time: wins, batched counters, close, ids.


@pytest_twisted.inlineCallbacks
def test_win_is_committed_before_it_fires(db: Path, stores: list[SQLiteStore]) -> Any:
    """When record_win fires, the entry and the counters are in the file."""
    store = running(db, stores)
    counters = store._snapshot.counters
    counters.wins = 1
    counters.guesses = 4
    yield store.record_win(LeaderboardEntry("Ann", 1, 4, 1000.0))
    assert read(db, "SELECT name_key, name, wins, best, last_win FROM leaderboard") == [
        ("ann", "Ann", 1, 4, 1000.0)
    ]
    assert counters_in(db)[1:3] == (1, 4)
    assert not store.failing


@pytest_twisted.inlineCallbacks
def test_default_name_win_commits_counters_only(db: Path, stores: list[SQLiteStore]) -> Any:
    """A win under a default name: the counters are in the file when Correct! goes, no entry."""
    store = running(db, stores)
    game = make_game(store=store)
    peer = connect(PlayerFactory(game))
    peer.read()
    secret = secret_of(game)
    peer.proto.dataReceived(f"{secret}\n".encode())
    yield settled(store)
    assert peer.read() == [f"Correct! The number was {secret}. You won in 1 guess!"]
    assert counters_in(db)[1:3] == (1, 1)
    assert read(db, "SELECT count(*) FROM leaderboard") == [(0,)]


@pytest_twisted.inlineCallbacks
def test_counters_flushed_on_the_clock(db: Path, stores: list[SQLiteStore]) -> Any:
    """Guesses reach the file at the next flush, not before."""
    clock = Clock()
    store = running(db, stores, clock)
    store._snapshot.counters.guesses = 7
    clock.advance(FLUSH_INTERVAL - 0.1)
    assert store._busy is None
    assert counters_in(db)[2] == 0
    clock.advance(0.1)
    yield settled(store)
    assert counters_in(db)[2] == 7


@pytest_twisted.inlineCallbacks
def test_game_state_survives_close_and_reopen(db: Path, stores: list[SQLiteStore]) -> Any:
    """A clean stop keeps leaderboard, counters and ids; the next start goes on."""
    store = running(db, stores)
    game = make_game(store=store)
    peer = connect(PlayerFactory(game))
    peer.send(b"name Ann\n")
    secret = secret_of(game)
    wrong = 1 if secret != 1 else 2
    peer.send(f"{wrong}\n{secret}\n".encode())
    yield game.parent.stopService()
    assert counters_in(db) == (2, 1, 2, 1, 1)

    game = make_game(store=running(db, stores))
    assert [(e.name, e.wins, e.best) for e in game.leaderboard()] == [("Ann", 1, 2)]
    assert game.stats()["rounds"] == 3
    assert game.stats()["guesses"] == 2
    assert game.join(FakeLink(), "127.0.0.1:1").id == 2
    yield game.parent.stopService()


@pytest_twisted.inlineCallbacks
def test_ids_reserved_ahead_of_use(
    db: Path, stores: list[SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Ids handed out stay reserved in the file, so a crash never reuses them."""
    monkeypatch.setattr(sqlstore, "ID_BLOCK", 10)
    store = running(db, stores)
    game = make_game(store=store)
    ids = [game.join(FakeLink(), "127.0.0.1:1").id for _ in range(25)]
    yield settled(store)
    assert counters_in(db)[4] >= max(ids)
    # Start again without closing, as after kill -9.
    again = open_store(str(db), Clock())
    assert again._snapshot.counters.last_id >= max(ids)


@pytest_twisted.inlineCallbacks
def test_new_round_is_written_at_once(db: Path, stores: list[SQLiteStore]) -> Any:
    """A new round number reaches the file without waiting for the clock."""
    store = running(db, stores)
    game = make_game(store=store)
    number = game.new_round()
    yield settled(store)
    assert counters_in(db)[0] == number


# Run-time failures: the game goes on.


@pytest_twisted.inlineCallbacks
def test_failing_writes_do_not_stop_the_game(
    db: Path, stores: list[SQLiteStore], errors: list[dict[str, Any]]
) -> Any:
    """A win whose write fails still gets Correct!, stats says failing, then recovers."""
    clock = Clock()
    store = running(db, stores, clock)
    game = make_game(store=store, clock=clock)
    assert game.stats()["store"] == "ok"
    pool = store._pool
    assert pool is not None
    yield pool.runOperation("PRAGMA query_only = ON")

    peer = connect(PlayerFactory(game))
    peer.read()
    peer.send(b"name Ann\n")
    secret = secret_of(game)
    peer.proto.dataReceived(f"{secret}\n".encode())
    yield settled(store)
    assert peer.read() == [f"Correct! The number was {secret}. You won in 1 guess!"]
    assert game.stats()["store"] == "failing"
    assert read(db, "SELECT count(*) FROM leaderboard") == [(0,)]
    # The outage is logged as it starts; the win waits in memory.
    assert [formatEvent(e) for e in errors] == [
        f"cannot write to database {db}: attempt to write a readonly database; "
        "keeping what is not written in memory and retrying"
    ]
    assert game.stats()["unsaved"] == 1

    # The game keeps playing while the file cannot be written.
    other = connect(PlayerFactory(game))
    assert other.send(b"help\n")[-1].startswith("Guess the secret")
    clock.advance(FLUSH_INTERVAL)
    yield settled(store)
    assert game.stats()["store"] == "failing"
    assert len(errors) == 1

    yield pool.runOperation("PRAGMA query_only = OFF")
    clock.advance(FLUSH_INTERVAL)
    yield settled(store)
    assert game.stats()["store"] == "ok"
    assert read(db, "SELECT name, wins, best FROM leaderboard") == [("Ann", 1, 1)]
    assert counters_in(db)[1] == 1


@pytest_twisted.inlineCallbacks
def test_later_win_is_not_overwritten_by_a_retry(
    db: Path, stores: list[SQLiteStore], errors: list[dict[str, Any]]
) -> Any:
    """A win that failed and a later one of the same name: the file ends with the later."""
    clock = Clock()
    store = running(db, stores, clock)
    pool = store._pool
    assert pool is not None
    yield pool.runOperation("PRAGMA query_only = ON")
    yield store.record_win(LeaderboardEntry("Ann", 1, 5, 1000.0))
    assert store.failing
    yield pool.runOperation("PRAGMA query_only = OFF")
    yield store.record_win(LeaderboardEntry("ann", 2, 3, 1001.0))
    clock.advance(sqlstore.RETRY_FIRST)
    yield settled(store)
    assert not store.failing
    assert store.unsaved == 0
    assert read(db, "SELECT name, wins, best FROM leaderboard") == [("ann", 2, 3)]
    assert len(errors) == 1


@pytest_twisted.inlineCallbacks
def test_burst_of_wins_all_committed(db: Path, stores: list[SQLiteStore]) -> Any:
    """Many wins at once each fire, and every one is in the file when they have."""
    store = running(db, stores)
    saved = [store.record_win(LeaderboardEntry(f"p{i}", 1, 3, 1000.0)) for i in range(50)]
    yield defer.gatherResults(saved)
    assert read(db, "SELECT count(*) FROM leaderboard") == [(50,)]


@pytest_twisted.inlineCallbacks
def test_removed_file_counts_as_failing(
    db: Path, stores: list[SQLiteStore], errors: list[dict[str, Any]]
) -> Any:
    """Writes into a file that was deleted would be lost: that is a failure."""
    store = running(db, stores)
    yield store.record_win(LeaderboardEntry("Ann", 1, 3, 1000.0))
    assert not store.failing
    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    yield store.record_win(LeaderboardEntry("Ann", 2, 3, 1001.0))
    assert store.failing
    assert "the file was removed" in errors[0]["error"]


def named_win(game: Any, name: str) -> defer.Deferred[None]:
    """A player called ``name`` joins and wins; the Deferred fires with its Correct!."""
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.rename(player, name)
    outcome = game.guess(player, secret_of(game, player))
    game.leave(player, "won")
    saved: defer.Deferred[None] = outcome.saved
    return saved


@pytest_twisted.inlineCallbacks
def test_long_outage_logged_once_retried_with_backoff(
    db: Path,
    stores: list[SQLiteStore],
    store_log: list[dict[str, Any]],
    attempts: list[int],
) -> Any:
    """30 s of failing writes: one log line as it starts, few retries, one as it ends, all saved."""
    clock = Clock()
    store = running(db, stores, clock)
    game = make_game(store=store, clock=clock)
    pool = store._pool
    assert pool is not None
    yield pool.runOperation("PRAGMA query_only = ON")
    before = len(attempts)
    for i in range(30):
        yield named_win(game, f"p{i}")
        clock.advance(1.0)
        yield settled(store)
    stats = game.stats()
    assert (stats["store"], stats["unsaved"]) == ("failing", 30)
    [line] = admin_stats(game)
    assert " store=failing unsaved=30" in line
    assert [formatEvent(e) for e in store_log] == [
        f"cannot write to database {db}: attempt to write a readonly database; "
        "keeping what is not written in memory and retrying"
    ]
    # Backing off from 1 s, doubling: a handful of tries in 30 s, not one a win.
    assert len(attempts) - before <= 8

    yield pool.runOperation("PRAGMA query_only = OFF")
    for _ in range(sqlstore.RETRY_MAX):
        clock.advance(1.0)
        yield settled(store)
    stats = game.stats()
    assert (stats["store"], stats["unsaved"]) == ("ok", 0)
    assert read(db, "SELECT count(*), sum(wins) FROM leaderboard") == [(30, 30)]
    assert counters_in(db)[1] == 30
    assert len(store_log) == 2
    assert formatEvent(store_log[1]).startswith(
        f"database {db} is written again: 30 writes had waited"
    )


def admin_stats(game: Any) -> list[str]:
    """The admin's ``stats`` reply line."""
    peer = connect(AdminFactory(game))
    peer.send(b"Admin-Greetings\r\n")
    return peer.send(b"stats\n")


@pytest_twisted.inlineCallbacks
def test_stop_during_outage_logs_what_was_never_written(
    db: Path, stores: list[SQLiteStore], errors: list[dict[str, Any]]
) -> Any:
    """A stop while writes fail tries once more, then logs every unsaved win once."""
    clock = Clock()
    store = running(db, stores, clock)
    game = make_game(store=store, clock=clock)
    pool = store._pool
    assert pool is not None
    yield pool.runOperation("PRAGMA query_only = ON")
    for name in ("Ann", "Bob", "Cy"):
        yield named_win(game, name)
    yield game.parent.stopService()
    assert len(errors) == 2
    text = formatEvent(errors[1])
    assert text.startswith(f"database {db} closed with 3 writes not saved: ")
    for name in ("Ann", "Bob", "Cy"):
        assert f"{name} wins=1 best=1" in text
    assert read(db, "SELECT count(*) FROM leaderboard") == [(0,)]


@pytest_twisted.inlineCallbacks
def test_stop_after_outage_ends_writes_everything(
    db: Path, stores: list[SQLiteStore], errors: list[dict[str, Any]]
) -> Any:
    """Writes that waited are saved by the stop if the file can be written again by then."""
    clock = Clock()
    store = running(db, stores, clock)
    game = make_game(store=store, clock=clock)
    pool = store._pool
    assert pool is not None
    yield pool.runOperation("PRAGMA query_only = ON")
    for name in ("Ann", "Bob"):
        yield named_win(game, name)
    yield pool.runOperation("PRAGMA query_only = OFF")
    yield game.parent.stopService()
    assert len(errors) == 1
    assert read(db, "SELECT name FROM leaderboard ORDER BY name") == [("Ann",), ("Bob",)]


# End to end: ``twistd -n guessgame --db FILE`` in a subprocess.


def ids_in(who: list[str]) -> list[int]:
    """The player ids of a ``who`` reply."""
    return [int(line.split()[1]) for line in who if line.startswith("PLAYER ")]


def test_win_survives_kill_9(tmp_path: Path) -> None:
    """A win answered Correct! survives kill -9: top, stats and new ids after restarts."""
    db = tmp_path / "game.sqlite3"
    with Daemon("--db", str(db), cwd=tmp_path) as daemon:
        admin = daemon.admin()
        daemon.player()
        winner = daemon.player()
        ids = ids_in(admin.command("who"))
        assert len(ids) == 2
        winner.send("name Ann")
        assert winner.line() == "You are now known as Ann."
        lo, hi = 1, 30
        for _ in range(6):
            guess = (lo + hi) // 2
            winner.send(str(guess))
            reply = winner.line()
            if reply.startswith("Correct!"):
                daemon.kill()
                break
            if reply.startswith("Too low!"):
                lo = guess + 1
            else:
                assert reply.startswith("Too high!"), reply
                hi = guess - 1
        else:
            pytest.fail("binary search over 1-30 did not win in 6 guesses")
        guesses = int(reply.split(" won in ")[1].split()[0])

    with Daemon("--db", str(db), cwd=tmp_path) as daemon:
        admin = daemon.admin()
        assert admin.command("top") == [f"TOP 1 Ann 1 {guesses}", "OK 1 player"]
        stats = dict(field.split("=") for field in admin.command("stats")[0].split()[1:])
        assert stats["wins"] == "1"
        assert int(stats["rounds"]) >= 2
        assert stats["store"] == "ok"
        player = daemon.player()
        player.send("top")
        assert player.line() == "Top players: Ann 1 win"
        new_ids = ids_in(admin.command("who"))
        assert len(new_ids) == 1
        assert new_ids[0] > max(ids)
        # No win writes this id: only its reservation keeps it from reuse.
        daemon.kill()

    with Daemon("--db", str(db), cwd=tmp_path) as daemon:
        admin = daemon.admin()
        daemon.player()
        last_ids = ids_in(admin.command("who"))
        assert len(last_ids) == 1
        assert last_ids[0] > new_ids[0]
    # The clean stop wrote the counters and gave back the unused ids.
    assert counters_in(db)[1:] == (1, guesses, last_ids[0], last_ids[0])


@pytest.mark.parametrize(
    ("statements", "what"),
    [
        ("DELETE FROM counters", "the counters row is missing"),
        (
            "INSERT INTO leaderboard VALUES ('ann', 'Ann', 'three', 2, 100.0)",
            "leaderboard entry 'ann': wins is 'three', not a whole number >= 1",
        ),
    ],
)
def test_wrong_values_stop_twistd_with_one_line(tmp_path: Path, statements: str, what: str) -> None:
    """A --db holding wrong values: one line on stderr, status 1, the file untouched."""
    db = tmp_path / "game.sqlite3"
    before = damage(db, statements)
    done = subprocess.run(
        daemon_command("--db", str(db)),
        check=False,
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=WAIT,
    )
    assert done.stderr.decode() == f"guessgame: damaged guessgame database: {db} ({what})\n"
    assert done.returncode == 1
    assert db.read_bytes() == before


def test_not_a_database_stops_twistd_with_one_line(tmp_path: Path) -> None:
    """A --db file that is not a guessgame database: one line on stderr, status 1."""
    db = tmp_path / "notes.txt"
    db.write_text("shopping list\n" * 100)
    done = subprocess.run(
        daemon_command("--db", str(db)),
        check=False,
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=WAIT,
    )
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"guessgame: not a guessgame database: {db} (file is not a database)\n"
    )
    assert db.read_text() == "shopping list\n" * 100
