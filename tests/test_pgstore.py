"""The PostgreSQL store: one game shared by several daemons (here, several stores).

Each test gets a new database on the session's PostgreSQL server; two
`Game` services on two stores of one database stand for two daemons.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg2.extensions
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from guessgame.events import RoundStarted, Won
from guessgame.game import Game
from guessgame.store import postgres as pgstore
from guessgame.store.base import LeaderboardEntry
from guessgame.store.postgres import PostgresStore, StoreError, describe_dsn, open_store
from tests.common import FakeLink, FakeObserver, secret_of, store_service

#: Bound on waiting for news from the other store, in seconds.
NEWS_WAIT = 10.0


def query(server: Any, uri: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the database of ``uri`` with a connection of the test's own."""
    conn = server.connect(uri.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


class Daemons:
    """Games on stores of one database, as daemons would run them; all stopped after."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.games: list[Game] = []

    def start(self, seed: int = 1, mode: str = "shared", **kwargs: Any) -> Game:
        """A started Game on a new store of the database (the real reactor)."""
        store = open_store(self.uri, reactor, mode=mode, **kwargs)
        game = Game(reactor, random.Random(seed), mode=mode, store=store, keeper=store)
        game.setServiceParent(store_service(store, reactor))
        self.games.append(game)
        return game

    def stop_all(self) -> None:
        """Stop every game that still runs."""
        for game in self.games:
            if game.parent.running:
                pytest_twisted.blockon(game.parent.stopService())


@pytest.fixture
def daemons(pg_uri: str) -> Iterator[Daemons]:
    """Start games on one database; they are stopped after the test."""
    started = Daemons(pg_uri)
    yield started
    started.stop_all()


def store_of(game: Game) -> PostgresStore:
    """The game's PostgreSQL store."""
    assert isinstance(game.store, PostgresStore)
    return game.store


@defer.inlineCallbacks
def settled(*games: Game) -> Any:
    """Wait until every write the games' stores asked for is done."""
    for game in games:
        store = store_of(game)
        yield store.flush()
        while store._busy is not None:
            yield store._busy


@defer.inlineCallbacks
def listening(*games: Game) -> Any:
    """Wait until each store's notification connection is up."""
    for game in games:
        store = store_of(game)
        for _ in range(int(NEWS_WAIT / 0.05)):
            if store._notifications is not None:
                break
            yield deferLater(0.05)
        assert store._notifications is not None, "the notification connection never opened"


def deferLater(seconds: float) -> defer.Deferred[None]:
    """A Deferred that fires after ``seconds`` on the real reactor."""
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


def until(condition: Any, what: str) -> defer.Deferred[None]:
    """Fire once ``condition()`` is true; fail after `NEWS_WAIT` seconds."""

    @defer.inlineCallbacks
    def wait() -> Any:
        for _ in range(int(NEWS_WAIT / 0.02)):
            if condition():
                return
            yield deferLater(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    return wait()


# Start-up.


def test_new_database_gets_the_schema(daemons: Daemons, postgres_server: Any) -> None:
    """A new database gets the current schema and an empty game."""
    game = daemons.start()
    assert game.leaderboard() == []
    assert game.stats()["wins"] == 0
    assert query(postgres_server, daemons.uri, "SELECT version FROM guessgame_schema") == [(1,)]


def test_unreachable_server_is_one_line() -> None:
    """A server that cannot be reached is a StoreError of one line naming it."""
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://nobody@127.0.0.1:1/game", reactor)
    text = str(caught.value)
    assert text.startswith("cannot connect to PostgreSQL database game on 127.0.0.1:1: ")
    assert "\n" not in text


def test_dsn_described_without_password() -> None:
    """Logs and errors name the database and host, never the password."""
    where = describe_dsn("postgresql://ann:s3cret@db.example:6543/game")
    assert where == "game on db.example:6543"


def test_foreign_tables_refused(pg_uri: str, postgres_server: Any) -> None:
    """A database with a table of our names but not ours is refused, untouched."""
    conn = postgres_server.connect(pg_uri.rsplit("/", 1)[1])
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE leaderboard (who TEXT)")
    conn.close()
    with pytest.raises(StoreError) as caught:
        open_store(pg_uri, reactor)
    assert str(caught.value).startswith("not a guessgame database: game")
    assert query(postgres_server, pg_uri, "SELECT count(*) FROM leaderboard") == [(0,)]


@pytest_twisted.inlineCallbacks
def test_other_range_refused_while_daemons_run(daemons: Daemons) -> Any:
    """A daemon with another range cannot join a game that daemons are playing."""
    first = daemons.start()
    yield listening(first)
    with pytest.raises(StoreError) as caught:
        open_store(daemons.uri, reactor, lo=1, hi=100)
    assert str(caught.value).endswith(
        "is played with --range 1-30 --mode shared by running daemons: start this one with the same"
    )


# Two daemons, one game.


@pytest_twisted.inlineCallbacks
def test_joining_daemon_plays_the_current_round(daemons: Daemons) -> Any:
    """A daemon that starts while another plays joins its round, secret and number."""
    first = daemons.start(seed=1)
    yield settled(first)
    second = daemons.start(seed=2)
    assert second.round == first.round
    assert secret_of(second) == secret_of(first)


@pytest_twisted.inlineCallbacks
def test_win_on_one_ends_the_round_on_the_other(daemons: Daemons) -> Any:
    """A win on A: B's players get the notice, B's admin EVENT win and round, B's top."""
    a = daemons.start(seed=1)
    yield settled(a)
    b = daemons.start(seed=2)
    yield listening(a, b)
    watcher = FakeObserver()
    b.add_observer(watcher)
    bob = b.join(FakeLink(), "127.0.0.1:2")
    ann = a.join(FakeLink(), "127.0.0.1:1")
    a.rename(ann, "Ann")
    old = a.round
    watcher.events.clear()
    outcome = a.guess(ann, secret_of(a))
    assert isinstance(outcome, tuple)
    yield outcome.saved
    yield until(lambda: b.round == old + 1, "B to hear of the win")
    assert bob.link.notices == [  # type: ignore[attr-defined]
        f"*** Ann won the round with {outcome.number}. A new number between 1-30 has been picked."
    ]
    assert secret_of(b) == secret_of(a)
    assert watcher.events == [
        Won(ann.id, "Ann", outcome.number, 1),
        RoundStarted(old + 1, 1, 30),
    ]
    assert [(e.name, e.wins) for e in b.leaderboard()] == [("Ann", 1)]
    assert b.stats()["wins"] == a.stats()["wins"] == 1
    assert ann.id != bob.id


@pytest_twisted.inlineCallbacks
def test_two_winners_of_one_round_both_win_and_it_ends_once(
    daemons: Daemons, postgres_server: Any
) -> Any:
    """Winners on A and B before either hears of the other: two wins, one new round."""
    a = daemons.start(seed=1)
    yield settled(a)
    b = daemons.start(seed=2)
    yield listening(a, b)
    old = a.round
    ann = a.join(FakeLink(), "127.0.0.1:1")
    a.rename(ann, "Ann")
    bob = b.join(FakeLink(), "127.0.0.1:2")
    b.rename(bob, "Bob")
    secret = secret_of(a)
    # The same reactor turn: neither daemon has heard of the other's win.
    first = a.guess(ann, secret)
    second = b.guess(bob, secret)
    assert isinstance(first, tuple) and isinstance(second, tuple)
    yield defer.gatherResults([first.saved, second.saved])
    yield settled(a, b)
    yield until(lambda: secret_of(a) == secret_of(b), "A and B to agree on the round")
    assert a.round == b.round == old + 1
    rows = query(postgres_server, daemons.uri, "SELECT number, secret FROM round")
    assert rows == [(old + 1, secret_of(a))]
    assert query(postgres_server, daemons.uri, "SELECT wins FROM counters") == [(2,)]
    for game in (a, b):
        yield until(
            lambda game=game: (
                sorted((e.name, e.wins) for e in game.leaderboard()) == [("Ann", 1), ("Bob", 1)]
            ),
            "both winners on the leaderboard",
        )
    yield until(lambda: a.stats()["wins"] == b.stats()["wins"] == 2, "wins to agree")


@pytest_twisted.inlineCallbacks
def test_wins_of_one_name_add_up_across_daemons(daemons: Daemons, postgres_server: Any) -> Any:
    """Ann wins on A, then on B: the one leaderboard says 2 wins and her best."""
    a = daemons.start(seed=1)
    yield settled(a)
    b = daemons.start(seed=2)
    yield listening(a, b)
    for game, guesses in ((a, 3), (b, 1)):
        ann = game.join(FakeLink(), "127.0.0.1:1")
        game.rename(ann, "Ann")
        secret = secret_of(game)
        wrong = 1 if secret != 1 else 2
        for _ in range(guesses - 1):
            game.guess(ann, wrong)
        outcome = game.guess(ann, secret)
        assert isinstance(outcome, tuple)
        yield outcome.saved
        game.leave(ann, "won")
    rows = query(postgres_server, daemons.uri, "SELECT name, wins, best FROM leaderboard")
    assert rows == [("Ann", 2, 1)]
    yield until(lambda: [(e.wins, e.best) for e in a.leaderboard()] == [(2, 1)], "A's board")


@pytest_twisted.inlineCallbacks
def test_newround_on_one_is_a_newround_on_the_other(daemons: Daemons) -> Any:
    """The administrator's newround on A starts the round on B with its notice."""
    a = daemons.start(seed=1)
    yield settled(a)
    b = daemons.start(seed=2)
    yield listening(a, b)
    bob = b.join(FakeLink(), "127.0.0.1:2")
    number = a.new_round()
    yield until(lambda: b.round == number, "B to hear of the new round")
    assert bob.link.notices == [  # type: ignore[attr-defined]
        "*** The administrator started a new round. Pick a number between 1-30"
    ]


@pytest_twisted.inlineCallbacks
def test_ids_unique_across_daemons_and_blocks(daemons: Daemons, postgres_server: Any) -> Any:
    """Interleaved joins on two daemons past several id blocks never share an id."""
    open_store(daemons.uri, reactor)  # the schema, with its block of 10,000 ids
    conn = postgres_server.connect(daemons.uri.rsplit("/", 1)[1])
    with conn.cursor() as cur:
        # Blocks of 10 from here on, after the first block.
        cur.execute("ALTER SEQUENCE player_ids INCREMENT BY 10 RESTART WITH 10001")
    conn.close()
    a = daemons.start(seed=1)
    b = daemons.start(seed=2)
    c = daemons.start(seed=3)
    ids: list[int] = []
    for _ in range(60):
        for game in (a, b, c):
            ids.append(game.join(FakeLink(), "127.0.0.1:1").id)
        # Let block fetches come back, as between joins in a real daemon.
        yield settled(a, b, c)
    assert len(set(ids)) == len(ids)
    assert min(ids) > 0


@pytest_twisted.inlineCallbacks
def test_counters_add_up_across_daemons(daemons: Daemons, postgres_server: Any) -> Any:
    """Guesses on A and on B both count in the one set of counters."""
    a = daemons.start(seed=1)
    b = daemons.start(seed=2)
    for game, count in ((a, 3), (b, 4)):
        player = game.join(FakeLink(), "127.0.0.1:1")
        wrong = 1 if secret_of(game) != 1 else 2
        for _ in range(count):
            game.guess(player, wrong)
    yield settled(a, b)
    assert query(postgres_server, daemons.uri, "SELECT guesses FROM counters") == [(7,)]
    yield settled(a)
    assert a.stats()["guesses"] == 7
    assert b.stats()["guesses"] == 7


@pytest_twisted.inlineCallbacks
def test_state_survives_restart(daemons: Daemons) -> Any:
    """Stop and start: the leaderboard, counters and round go on; ids are new."""
    a = daemons.start(seed=1)
    ann = a.join(FakeLink(), "127.0.0.1:1")
    a.rename(ann, "Ann")
    outcome = a.guess(ann, secret_of(a))
    assert isinstance(outcome, tuple)
    yield outcome.saved
    yield a.parent.stopService()
    again = daemons.start(seed=5)
    assert [(e.name, e.wins, e.best) for e in again.leaderboard()] == [("Ann", 1, 1)]
    assert again.stats()["wins"] == 1
    assert again.stats()["guesses"] == 1
    assert again.round == a.round
    assert again.join(FakeLink(), "127.0.0.1:1").id > ann.id


@pytest_twisted.inlineCallbacks
def test_burst_of_wins_all_committed(daemons: Daemons, postgres_server: Any) -> Any:
    """Many wins at once each fire, and every one is in the database when they have."""
    a = daemons.start()
    store = store_of(a)
    saved = [store.record_win(LeaderboardEntry(f"p{i}", 1, 3, 1000.0)) for i in range(50)]
    yield defer.gatherResults(saved)
    assert query(postgres_server, daemons.uri, "SELECT count(*) FROM leaderboard") == [(50,)]


@pytest_twisted.inlineCallbacks
def test_wins_of_one_name_in_one_transaction_add_up(daemons: Daemons, postgres_server: Any) -> Any:
    """Two wins of one name in the same transaction count twice, with the better best."""
    a = daemons.start()
    store = store_of(a)
    saved = [
        store.record_win(LeaderboardEntry("Ann", 1, 5, 1000.0)),
        store.record_win(LeaderboardEntry("ann", 2, 3, 1001.0)),
    ]
    yield defer.gatherResults(saved)
    rows = query(postgres_server, daemons.uri, "SELECT name, wins, best, last_win FROM leaderboard")
    assert rows == [("ann", 2, 3, 1001.0)]


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


@pytest_twisted.inlineCallbacks
def test_outage_logs_each_win_once(
    daemons: Daemons, postgres_server: Any, errors: list[dict[str, Any]]
) -> Any:
    """While writes fail, each win is logged once, not at every retry; all land after."""
    a = daemons.start()
    store = store_of(a)
    yield settled(a)
    assert store._pool is not None
    yield store._pool.runOperation("SET SESSION default_transaction_read_only = on")
    yield store.record_win(LeaderboardEntry("Ann", 1, 4, 1000.0))
    assert len(errors) == 1
    yield store.flush()
    yield store.flush()
    assert len(errors) == 1
    yield store.record_win(LeaderboardEntry("Bob", 1, 2, 1001.0))
    assert len(errors) == 2
    assert "Bob best=2" in formatEvent(errors[1])
    assert "Ann" not in formatEvent(errors[1])
    assert store.failing
    yield store._pool.runOperation("SET SESSION default_transaction_read_only = off")
    yield store.flush()
    assert not store.failing
    rows = query(postgres_server, daemons.uri, "SELECT name FROM leaderboard ORDER BY name")
    assert rows == [("Ann",), ("Bob",)]


# The --db option.


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_db_uri_makes_a_postgres_game(pg_uri: str, scheme: str) -> None:
    """--db postgresql:// or postgres:// gives the Game a PostgreSQL store as its keeper."""
    from twisted.internet.task import Clock

    from guessgame.tap import Options, makeService

    options = Options()
    options.parseOptions(["--db", pg_uri.replace("postgresql://", f"{scheme}://", 1)])
    top = makeService(options, reactor=Clock())
    game = top.getServiceNamed("store").getServiceNamed("game")
    assert isinstance(game, Game)
    assert isinstance(game.store, PostgresStore)
    assert game.keeper is game.store


def test_unreachable_db_ends_with_one_line() -> None:
    """A --db PostgreSQL that cannot be reached exits (status 1) with one guessgame: line."""
    from twisted.internet.task import Clock

    from guessgame.tap import open_database

    with pytest.raises(SystemExit) as caught:
        open_database("postgresql://guessgame@127.0.0.1:1/game", Clock())
    message = str(caught.value.code)
    assert message.startswith(
        "guessgame: cannot connect to PostgreSQL database game on 127.0.0.1:1: "
    )
    assert "\n" not in message


@pytest_twisted.inlineCallbacks
def test_stuck_write_gives_up_and_is_written_later(
    daemons: Daemons, postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A win whose write waits on a lock fails after the timeout, then is written."""
    monkeypatch.setattr(pgstore, "STATEMENT_TIMEOUT", 0.5)
    a = daemons.start()
    yield settled(a)
    blocker = postgres_server.connect(daemons.uri.rsplit("/", 1)[1])
    blocker.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE")
    ann = a.join(FakeLink(), "127.0.0.1:1")
    a.rename(ann, "Ann")
    outcome = a.guess(ann, secret_of(a))
    assert isinstance(outcome, tuple)
    yield outcome.saved
    assert a.stats()["store"] == "failing"
    blocker.rollback()
    blocker.close()
    yield settled(a)
    assert a.stats()["store"] == "ok"
    rows = query(postgres_server, daemons.uri, "SELECT name, wins FROM leaderboard")
    assert rows == [("Ann", 1)]


@pytest.mark.parametrize(
    "payload",
    [
        "hello",
        "5",
        "{}",
        '{"origin": "x", "version": 1}',
        '{"origin": "x", "version": 0, "wins": 0, "guesses": 0, "won": [1]}',
        '{"origin": "x", "version": 0, "wins": 0, "guesses": 0, "round": [1, 2]}',
    ],
)
@pytest_twisted.inlineCallbacks
def test_foreign_notification_is_ignored(
    daemons: Daemons, postgres_server: Any, payload: str
) -> Any:
    """A notification on our channel that is not ours is logged and skipped; news still flow."""
    a = daemons.start(seed=1)
    yield settled(a)
    b = daemons.start(seed=2)
    yield listening(a, b)
    conn = postgres_server.connect(daemons.uri.rsplit("/", 1)[1])
    with conn.cursor() as cur:
        cur.execute("SELECT pg_notify('guessgame', %s)", (payload,))
    conn.close()
    number = a.new_round()
    yield until(lambda: b.round == number, "B to hear of the new round")
    assert store_of(b)._notifications is not None
