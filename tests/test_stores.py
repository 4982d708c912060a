"""The Store contract, held by both durable stores: SQLite and PostgreSQL.

Each test runs once per store kind.  A `Kit` opens the kind's store on a
new database, reads what it holds with a connection of the test's own,
and can make its writes fail and work again.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock

from guessgame.game import Game
from guessgame.player.factory import PlayerFactory
from guessgame.store import postgres as pgstore
from guessgame.store import sqlite as sqlstore
from guessgame.store.base import LeaderboardEntry
from tests.common import FakeLink, connect, secret_of, store_service


class Kit:
    """One kind of store on one new database."""

    kind = ""

    def __init__(self) -> None:
        self.opened: list[Any] = []

    def open(self, clock: Clock | None = None, **kwargs: Any) -> Any:
        """Open the store as the daemon's start does (not yet writing)."""
        raise NotImplementedError

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` with a connection of the test's own."""
        raise NotImplementedError

    def counters(self) -> tuple[int, int]:
        """wins, guesses as the database holds them."""
        return tuple(self.query("SELECT wins, guesses FROM counters")[0])  # type: ignore[return-value]

    def break_writes(self, store: Any) -> defer.Deferred[None]:
        """Make the store's writes fail from now on."""
        raise NotImplementedError

    def mend_writes(self, store: Any) -> defer.Deferred[None]:
        """Let the store's writes succeed again."""
        raise NotImplementedError

    def game(self, store: Any, clock: Any = None, seed: int = 1) -> Game:
        """A started Game on ``store``."""
        game = Game(
            clock if clock is not None else Clock(),
            random.Random(seed),
            store=store,
            keeper=store if isinstance(store, pgstore.PostgresStore) else None,
        )
        game.setServiceParent(store_service(store, store.clock))
        return game

    @defer.inlineCallbacks
    def settled(self, store: Any) -> Any:
        """Wait until every write the store started is done."""
        while store._busy is not None or getattr(store, "_scheduled", None) is not None:
            if store._busy is not None:
                yield store._busy
            else:
                yield task.deferLater(reactor, 0, lambda: None)


class SQLiteKit(Kit):
    """The SQLite store on a new file."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def open(self, clock: Clock | None = None, **kwargs: Any) -> Any:
        """Open the file."""
        store = sqlstore.open_store(str(self.path), clock if clock is not None else Clock())
        self.opened.append(store)
        return store

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the file."""
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def break_writes(self, store: Any) -> defer.Deferred[None]:
        """query_only on the store's one connection."""
        d: defer.Deferred[None] = store._pool.runOperation("PRAGMA query_only = ON")
        return d

    def mend_writes(self, store: Any) -> defer.Deferred[None]:
        """query_only off again."""
        d: defer.Deferred[None] = store._pool.runOperation("PRAGMA query_only = OFF")
        return d


class PostgresKit(Kit):
    """The PostgreSQL store on a new database of the test server."""

    kind = "postgres"

    def __init__(self, server: Any, uri: str) -> None:
        super().__init__()
        self.server = server
        self.uri = uri

    def open(self, clock: Clock | None = None, **kwargs: Any) -> Any:
        """Connect and migrate; the counters flush on ``clock``."""
        store = pgstore.open_store(self.uri, clock if clock is not None else Clock(), **kwargs)
        self.opened.append(store)
        return store

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the database."""
        conn = self.server.connect(self.uri.rsplit("/", 1)[1])
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def break_writes(self, store: Any) -> defer.Deferred[None]:
        """Every transaction of the store's connection read-only."""
        d: defer.Deferred[None] = store._pool.runOperation(
            "SET SESSION default_transaction_read_only = on"
        )
        return d

    def mend_writes(self, store: Any) -> defer.Deferred[None]:
        """Writable transactions again."""
        d: defer.Deferred[None] = store._pool.runOperation(
            "SET SESSION default_transaction_read_only = off"
        )
        return d


@pytest.fixture(params=["sqlite", "postgres"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    """Each kind of durable store on a new database; every store opened is closed after."""
    made: Kit
    if request.param == "sqlite":
        made = SQLiteKit(tmp_path / "game.sqlite3")
    else:
        server = request.getfixturevalue("postgres_server")
        made = PostgresKit(server, server.new_database())
    yield made
    for store in made.opened:
        pytest_twisted.blockon(store.close())


def play_win(game: Game, name: str, misses: int = 0) -> Any:
    """A new player called ``name`` misses ``misses`` times, then wins; the Win."""
    player = game.join(FakeLink(), "127.0.0.1:1")
    game.rename(player, name)
    secret = secret_of(game)
    wrong = 1 if secret != 1 else 2
    for _ in range(misses):
        game.guess(player, wrong)
    outcome = game.guess(player, secret)
    game.leave(player, "won")
    return outcome


def test_new_database_is_an_empty_game(kit: Kit) -> None:
    """A new database loads as no leaderboard and zero counters."""
    snapshot = kit.open().load()
    assert snapshot.leaderboard == []
    assert (snapshot.counters.wins, snapshot.counters.guesses) == (0, 0)


@pytest_twisted.inlineCallbacks
def test_win_is_committed_before_it_fires(kit: Kit) -> Any:
    """When the win's Deferred fires, its entry and the counters are in the database."""
    store = kit.open()
    game = kit.game(store)
    outcome = play_win(game, "Ann", misses=3)
    yield outcome.saved
    assert kit.query("SELECT name, wins, best FROM leaderboard") == [("Ann", 1, 4)]
    assert kit.counters() == (1, 4)
    assert not store.failing


@pytest_twisted.inlineCallbacks
def test_counters_flushed_on_the_clock(kit: Kit) -> Any:
    """Guesses reach the database at the next flush, not before."""
    clock = Clock()
    store = kit.open(clock)
    game = kit.game(store, clock)
    yield kit.settled(store)
    player = game.join(FakeLink(), "127.0.0.1:1")
    wrong = 1 if secret_of(game) != 1 else 2
    for _ in range(7):
        game.guess(player, wrong)
    yield kit.settled(store)
    assert kit.counters()[1] == 0
    clock.advance(store.flush_interval)
    yield kit.settled(store)
    assert kit.counters()[1] == 7


@pytest_twisted.inlineCallbacks
def test_game_survives_close_and_reopen(kit: Kit) -> Any:
    """A clean stop keeps leaderboard and counters; the next start goes on, new ids."""
    store = kit.open()
    game = kit.game(store)
    outcome = play_win(game, "Ann", misses=1)
    yield outcome.saved
    last = game.join(FakeLink(), "127.0.0.1:1").id
    rounds = game.round
    yield game.parent.stopService()
    again = kit.game(kit.open())
    assert [(e.name, e.wins, e.best) for e in again.leaderboard()] == [("Ann", 1, 2)]
    assert again.stats()["wins"] == 1
    assert again.stats()["guesses"] == 2
    assert again.round >= rounds
    assert again.join(FakeLink(), "127.0.0.1:1").id > last
    yield again.parent.stopService()


@pytest_twisted.inlineCallbacks
def test_ids_never_reused_after_a_crash(kit: Kit) -> Any:
    """Opened again without a close (as after kill -9), ids start after every id used."""
    store = kit.open()
    game = kit.game(store)
    ids = [game.join(FakeLink(), "127.0.0.1:1").id for _ in range(30)]
    yield kit.settled(store)
    again = kit.game(kit.open())
    assert again.join(FakeLink(), "127.0.0.1:1").id > max(ids)


@pytest_twisted.inlineCallbacks
def test_failing_writes_do_not_stop_the_game(kit: Kit) -> Any:
    """A win whose write fails still gets Correct!, stats says failing, then all is written."""
    clock = Clock()
    store = kit.open(clock)
    game = kit.game(store, clock)
    yield kit.settled(store)
    yield kit.break_writes(store)
    peer = connect(PlayerFactory(game))
    peer.read()
    peer.send(b"name Ann\n")
    secret = secret_of(game)
    peer.proto.dataReceived(f"{secret}\n".encode())
    yield kit.settled(store)
    assert peer.read() == [f"Correct! The number was {secret}. You won in 1 guess!"]
    assert game.stats()["store"] == "failing"
    assert kit.query("SELECT count(*) FROM leaderboard") == [(0,)]
    # Play goes on while nothing can be written.
    other = connect(PlayerFactory(game))
    assert other.send(b"help\n")[-1].startswith("Guess the secret")
    assert game.stats()["unsaved"] == 1
    yield kit.mend_writes(store)
    # Each store tries again by itself within a flush interval.
    clock.advance(store.flush_interval)
    yield kit.settled(store)
    assert game.stats()["store"] == "ok"
    assert game.stats()["unsaved"] == 0
    assert kit.query("SELECT name, wins, best FROM leaderboard") == [("Ann", 1, 1)]
    assert kit.counters() == (1, 1)


@pytest_twisted.inlineCallbacks
def test_burst_of_wins_all_committed(kit: Kit) -> Any:
    """Many wins at once each fire, and every one is in the database when they have."""
    store = kit.open()
    kit.game(store)
    saved = [store.record_win(LeaderboardEntry(f"p{i}", 1, 3, 1000.0)) for i in range(50)]
    yield defer.gatherResults(saved)
    assert kit.query("SELECT count(*) FROM leaderboard") == [(50,)]


def test_migration_keeps_data(kit: Kit) -> None:
    """A database at an older schema version is brought up to date, rows kept."""
    kit.open()
    kit_module = sqlstore if kit.kind == "sqlite" else pgstore
    newer = (*kit_module.MIGRATIONS, ("ALTER TABLE leaderboard ADD COLUMN country TEXT",))
    if isinstance(kit, SQLiteKit):
        conn = sqlite3.connect(kit.path)
        conn.execute("INSERT INTO leaderboard VALUES ('ann', 'Ann', 3, 2, 100.0)")
        conn.commit()
        conn.close()
        store = sqlstore.open_store(str(kit.path), Clock(), migrations=newer)
    else:
        assert isinstance(kit, PostgresKit)
        conn = kit.server.connect(kit.uri.rsplit("/", 1)[1])
        with conn.cursor() as cur:
            cur.execute("INSERT INTO leaderboard VALUES ('ann', 'Ann', 3, 2, 100.0)")
        conn.close()
        store = pgstore.open_store(kit.uri, reactor, migrations=newer)
    kit.opened.append(store)
    assert kit.query("SELECT name, wins, best, country FROM leaderboard") == [("Ann", 3, 2, None)]
    assert store.load().leaderboard == [LeaderboardEntry("Ann", 3, 2, 100.0)]


def test_newer_schema_refused(kit: Kit) -> None:
    """A database from a newer schema version is refused, not downgraded."""
    kit.open()
    module: Any = sqlstore if kit.kind == "sqlite" else pgstore
    known = len(module.MIGRATIONS)
    if isinstance(kit, SQLiteKit):
        conn = sqlite3.connect(kit.path)
        conn.execute(f"PRAGMA user_version = {known + 1}")
        conn.commit()
        conn.close()
        where = str(kit.path)
    else:
        assert isinstance(kit, PostgresKit)
        conn = kit.server.connect(kit.uri.rsplit("/", 1)[1])
        with conn.cursor() as cur:
            cur.execute("UPDATE guessgame_schema SET version = %s", (known + 1,))
        conn.close()
        where = pgstore.describe_dsn(kit.uri)
    with pytest.raises(module.StoreError) as caught:
        kit.open()
    assert str(caught.value) == (
        f"database {where} is from a newer guessgame "
        f"(schema version {known + 1}; this one knows up to {known})"
    )
