"""The PostgreSQL store: several daemons, one game.

`open_store` runs once at start, before the reactor: it connects, creates
or migrates the schema (versioned in ``guessgame_schema``, under an
advisory lock so that daemons starting together migrate once), loads the
leaderboard, the counters and the shared round, and reserves a block of
player ids from the ``player_ids`` sequence.  Any problem there is a
`StoreError` whose message says what and where.

From then on `PostgresStore` is both the game's `Store` and its
`RoundKeeper`:

- writes go through one `twisted.enterprise.adbapi.ConnectionPool`
  connection (psycopg2, ``cp_reconnect``), one transaction at a time; what
  is asked within one reactor turn, and while a transaction runs, goes into
  the next one, so a burst of wins costs one commit;
- a win is one transaction: its leaderboard entry (``wins + 1``, so that
  wins on several daemons add up), the counters, the end of the round if
  it is still the current one (``UPDATE ... WHERE number < new``), and a
  ``NOTIFY``; `PostgresStore.record_win` fires once it is committed;
- the counters are written as increments, so each daemon adds its own
  guesses and wins to the one set; they are written every `FLUSH_INTERVAL`
  seconds, and that write also brings back what the others did;
- the other daemons' wins and rounds arrive by ``LISTEN`` on a connection
  of its own, watched by the reactor (`Notifications`), and reach the game
  through `guessgame.game.Game.news`;
- player ids come from the sequence in blocks, fetched before they run out.

A write that fails never stops the game: it is logged, `failing` is true
until a write succeeds, the wins not written are counted in `unsaved` and
written with the next flush.  A statement may take `STATEMENT_TIMEOUT`
seconds at most (a lock held elsewhere cannot hold a ``Correct!``), and a
lost connection is opened again by itself.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from twisted.enterprise import adbapi
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from guessgame.events import Won
from guessgame.store.base import Counters, LeaderboardEntry, RoundNews, SharedRound, Snapshot

__all__ = [
    "CHANNEL",
    "FLUSH_INTERVAL",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Notifications",
    "PostgresStore",
    "StoreError",
    "describe_dsn",
    "is_postgres_uri",
    "open_store",
]

log = Logger()

#: The ``LISTEN``/``NOTIFY`` channel of the daemons of one game.
CHANNEL = "guessgame"

#: How often the counters are written (and the others' news read), in seconds.
FLUSH_INTERVAL = 2.0

#: Seconds between two attempts to open the notification connection again.
RECONNECT_DELAY = 1.0

#: Seconds a connection attempt may take.
CONNECT_TIMEOUT = 5

#: Seconds a statement of the game's writes may take.
STATEMENT_TIMEOUT = 5.0

#: Advisory lock keys: the schema migration, and "a daemon plays this game".
_MIGRATE_LOCK = 0x4767_4462
_RUNNING_LOCK = 0x4767_4463

#: The schema, one tuple of statements per version: ``MIGRATIONS[n]`` takes
#: a database from version n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE leaderboard (
            name_key TEXT PRIMARY KEY,  -- the name lower-cased: one entry a name
            name TEXT NOT NULL,
            wins BIGINT NOT NULL,
            best INTEGER NOT NULL,
            last_win DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE counters (
            only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
            wins BIGINT NOT NULL,
            guesses BIGINT NOT NULL,
            version BIGINT NOT NULL  -- one more at every write: which totals are newer
        )""",
        "INSERT INTO counters VALUES (1, 0, 0, 0)",
        """CREATE TABLE round (
            only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
            number BIGINT NOT NULL,
            secret BIGINT NOT NULL,
            lo BIGINT NOT NULL,
            hi BIGINT NOT NULL,
            mode TEXT NOT NULL,
            winner TEXT,  -- who won the round before, with winning; NULL: not a win
            winning BIGINT NOT NULL,
            by_admin BOOLEAN NOT NULL
        )""",
        # Each value is the first of a block of ids (the increment).
        "CREATE SEQUENCE player_ids INCREMENT BY 10000",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)

_OUR_TABLES = ("leaderboard", "counters", "round", "player_ids")

#: Each row adds its wins to its name's entry: wins on several daemons add up.
_SAVE_ENTRIES = (
    "INSERT INTO leaderboard AS l (name_key, name, wins, best, last_win) VALUES %s"
    " ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, wins = l.wins + excluded.wins,"
    " best = LEAST(l.best, excluded.best), last_win = GREATEST(l.last_win, excluded.last_win)"
    " RETURNING name, wins, best, last_win"
)
_ADD_COUNTERS = (
    "UPDATE counters SET wins = wins + %s, guesses = guesses + %s, version = version + 1"
    " WHERE only_row = 1 RETURNING version, wins, guesses"
)
_START_ROUND = (
    "INSERT INTO round AS r (only_row, number, secret, lo, hi, mode, winner, winning, by_admin)"
    " VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (only_row) DO UPDATE SET number = excluded.number,"
    " secret = excluded.secret, lo = excluded.lo, hi = excluded.hi, mode = excluded.mode,"
    " winner = excluded.winner, winning = excluded.winning, by_admin = excluded.by_admin"
    " WHERE r.number < excluded.number"
    " RETURNING number"
)
#: Wins told in one notification (each takes well under 160 bytes).
_WINS_PER_NOTIFICATION = 40

_READ_ROUND = "SELECT number, secret, lo, hi, mode, winner, winning, by_admin FROM round"


class StoreError(Exception):
    """The database cannot be used; the message says what and where."""


def is_postgres_uri(text: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than an SQLite file."""
    return text.startswith(("postgresql://", "postgres://"))


def describe_dsn(dsn: str) -> str:
    """``dsn`` as a log or an error shows it: no password."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.Error:
        return "(a connection URI that cannot be read)"
    name = parts.get("dbname", parts.get("user", ""))
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    where = host if host.startswith("/") else f"{host}:{port}"
    return f"{name} on {where}"


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


#: libpq parameters of every connection: give up on a server that does not
#: answer (the game goes on and tries again) rather than wait for TCP.
_CONNECTION = {
    "connect_timeout": CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "application_name": "guessgame",
}


def _connect(dsn: str) -> Any:
    """A new psycopg2 connection to ``dsn`` that notices a dead server."""
    return psycopg2.connect(dsn, **_CONNECTION)


def _open_writer(conn: Any) -> None:
    """Set up the pool's connection (runs in the database thread).

    A statement stuck behind a lock fails after `STATEMENT_TIMEOUT`, like a
    lost connection: wins wait in memory instead of holding up their
    ``Correct!`` and the daemon's stop.
    """
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (int(STATEMENT_TIMEOUT * 1000),))
    conn.commit()


def open_store(
    dsn: str,
    clock: IReactorTime,
    *,
    lo: int = 1,
    hi: int = 30,
    mode: str = "shared",
    migrations: Sequence[Sequence[str]] = MIGRATIONS,
    flush_interval: float = FLUSH_INTERVAL,
    reactor: Any = None,
) -> PostgresStore:
    """Connect to ``dsn``, create or migrate the schema, and load the game.

    Runs synchronously (start-up, before the reactor).  Raises `StoreError`
    when the server cannot be reached, the database holds another
    program's tables of our names, comes from a newer version, or is
    played by running daemons with another range or mode.
    """
    where = describe_dsn(dsn)
    try:
        conn = _connect(dsn)
    except psycopg2.Error as e:
        raise StoreError(
            f"cannot connect to PostgreSQL database {where}: {_first_line(e)}"
        ) from None
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                _migrate(cur, where, migrations)
                snapshot, current, version = _load(cur)
                cur.execute("SELECT nextval('player_ids')")
                (block,) = cur.fetchone()
                cur.execute(
                    "SELECT increment_by FROM pg_sequences WHERE sequencename = 'player_ids'"
                    " AND schemaname = current_schema()"
                )
                (block_size,) = cur.fetchone()
                cur.execute("SELECT pg_try_advisory_lock(%s)", (_RUNNING_LOCK,))
                (alone,) = cur.fetchone()
                if alone:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (_RUNNING_LOCK,))
    except psycopg2.Error as e:
        raise StoreError(f"cannot use PostgreSQL database {where}: {_first_line(e)}") from None
    finally:
        conn.close()
    joined: SharedRound | None = None
    if current is not None:
        number, secret, c_lo, c_hi, c_mode, winner, winning, by_admin = current
        snapshot.counters.rounds = number
        if (c_lo, c_hi, c_mode) == (lo, hi, mode):
            joined = SharedRound(number, secret, winner, winning, by_admin)
        elif not alone:
            raise StoreError(
                f"PostgreSQL database {where} is played with --range {c_lo}-{c_hi} "
                f"--mode {c_mode} by running daemons: start this one with the same"
            )
    snapshot.counters.last_id = block - 1
    return PostgresStore(
        dsn,
        snapshot,
        clock,
        version=version,
        current=joined,
        id_block=(block, block + block_size - 1),
        block_size=block_size,
        lo=lo,
        hi=hi,
        mode=mode,
        flush_interval=flush_interval,
        reactor=reactor,
    )


def _migrate(cur: Any, where: str, migrations: Sequence[Sequence[str]]) -> None:
    cur.execute("SELECT to_regclass('guessgame_schema') IS NOT NULL")
    (ours,) = cur.fetchone()
    if not ours:
        cur.execute(
            "SELECT count(*) FROM pg_class WHERE relname = ANY(%s)"
            " AND relnamespace = current_schema()::regnamespace",
            (list(_OUR_TABLES),),
        )
        if cur.fetchone()[0]:
            raise StoreError(
                f"not a guessgame database: {where} (it has tables of our names, "
                "but no guessgame_schema)"
            )
        cur.execute(
            "CREATE TABLE guessgame_schema ("
            " only_row INTEGER PRIMARY KEY CHECK (only_row = 1), version INTEGER NOT NULL)"
        )
        cur.execute("INSERT INTO guessgame_schema VALUES (1, 0)")
    cur.execute("SELECT version FROM guessgame_schema")
    (version,) = cur.fetchone()
    if version > len(migrations):
        raise StoreError(
            f"database {where} is from a newer guessgame "
            f"(schema version {version}; this one knows up to {len(migrations)})"
        )
    for number in range(version, len(migrations)):
        for statement in migrations[number]:
            cur.execute(statement)
        cur.execute("UPDATE guessgame_schema SET version = %s", (number + 1,))


def _load(cur: Any) -> tuple[Snapshot, tuple[Any, ...] | None, int]:
    cur.execute("SELECT wins, guesses, version FROM counters WHERE only_row = 1")
    wins, guesses, version = cur.fetchone()
    cur.execute("SELECT name, wins, best, last_win FROM leaderboard")
    entries = [LeaderboardEntry(*row) for row in cur.fetchall()]
    cur.execute(_READ_ROUND)
    current = cur.fetchone()
    counters = Counters(rounds=0, wins=wins, guesses=guesses)
    return Snapshot(counters, entries), current, version


class _Connection(adbapi.Connection):
    """A pool connection whose failed rollback drops it quietly.

    adbapi logs a lost connection as an error with a traceback at every
    failed transaction; here that is an outage the store reports itself.
    The next transaction opens a new connection.
    """

    def rollback(self) -> None:
        try:
            assert self._connection is not None
            self._connection.rollback()
            return
        except psycopg2.Error:
            pass
        self._pool.disconnect(self._connection)


@implementer(IReadDescriptor)
class Notifications:
    """The ``LISTEN`` connection, watched by the reactor.

    Each notification on `CHANNEL` goes to ``deliver`` as text; when the
    connection breaks, ``lost`` is called once.  The reactor watches a
    duplicate of the socket, since psycopg2 closes its own at an error,
    before the reader can be removed.
    """

    def __init__(self, conn: Any, deliver: Any, lost: Any) -> None:
        self.conn = conn
        self._deliver = deliver
        self._lost = lost
        self._fileno = os.dup(conn.fileno())

    def close(self) -> None:
        """Close the connection and the watched socket (once no longer watched)."""
        try:
            self.conn.close()
        except psycopg2.Error:
            pass
        if self._fileno >= 0:
            os.close(self._fileno)
            self._fileno = -1

    def fileno(self) -> int:
        """The connection's socket."""
        return int(self._fileno)

    def logPrefix(self) -> str:
        """How the reactor names this in its log."""
        return "guessgame-notifications"

    def doRead(self) -> None:
        """Read what the server sent and hand on each notification."""
        try:
            self.conn.poll()
        except psycopg2.Error as e:
            self._lost(_first_line(e))
            return
        while self.conn.notifies:
            self._deliver(self.conn.notifies.pop(0).payload)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the socket."""
        self._lost(reason.getErrorMessage())


def _listening_connection(dsn: str) -> Any:
    """Open the notification connection (runs in a thread)."""
    conn = _connect(dsn)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {CHANNEL}")
        # Held while this daemon runs: a daemon that starts alone may change the range.
        cur.execute("SELECT pg_advisory_lock_shared(%s)", (_RUNNING_LOCK,))
    return conn


@dataclass
class _Batch:
    """What one transaction carries."""

    wins: int = 0
    guesses: int = 0
    entries: list[LeaderboardEntry] = field(default_factory=list)
    won: list[Won] = field(default_factory=list)
    round: SharedRound | None = None
    #: How many wins it saves (some have no leaderboard entry).
    recorded: int = 0
    #: How many of its wins, and of ``entries``, a failed write already logged.
    logged_wins: int = 0
    logged: int = 0


@dataclass
class _Result:
    """What one transaction found: the totals, the saved entries, the round."""

    version: int
    wins: int
    guesses: int
    entries: dict[str, LeaderboardEntry]
    current: SharedRound | None


class PostgresStore:
    """A `Store` and `RoundKeeper` kept in PostgreSQL; build it with `open_store`."""

    def __init__(
        self,
        dsn: str,
        snapshot: Snapshot,
        clock: IReactorTime,
        *,
        version: int,
        current: SharedRound | None,
        id_block: tuple[int, int],
        block_size: int,
        lo: int,
        hi: int,
        mode: str,
        flush_interval: float = FLUSH_INTERVAL,
        reactor: Any = None,
    ) -> None:
        self.dsn = dsn
        self.where = describe_dsn(dsn)
        self.clock = clock
        self.flush_interval = flush_interval
        self.origin = uuid.uuid4().hex
        self.game: RoundNews | None = None
        self._reactor = reactor
        self._snapshot = snapshot
        self._counters = snapshot.counters
        self._current = current
        self._lo, self._hi, self._mode = lo, hi, mode
        self._write_failing = False
        self._pool: adbapi.ConnectionPool | None = None
        # Player ids: the block in use, and the next one once fetched.
        self._block_end = id_block[1]
        self._block_size = block_size
        self._next_block: int | None = None
        self._fetching_block = False
        self._warned_ids = False
        # The totals the counters were last brought to, and their version.
        self._version = version
        self._base_wins = snapshot.counters.wins
        self._base_guesses = snapshot.counters.guesses
        # Newer totals heard while a transaction of ours ran.
        self._heard: tuple[int, int, int] | None = None
        # What the next transaction carries, and who waits for it.
        self._batch = _Batch()
        self._pending_wins = 0
        self._waiting: list[defer.Deferred[None]] = []
        self._busy: defer.Deferred[None] | None = None
        self._scheduled: Any = None
        # The notification connection.
        self._notifications: Notifications | None = None
        self._listen_ok = True
        self._reconnecting: Any = None
        self._closing = False

    # The Store interface.

    @property
    def failing(self) -> bool:
        """Whether the last write failed or the notifications are cut off."""
        return self._write_failing or not self._listen_ok

    @property
    def unsaved(self) -> int:
        """How many wins are not committed yet (``stats`` shows ``unsaved=N``)."""
        return self._pending_wins

    def open(self) -> None:
        """Start writing and listening (`StoreService` does, before the game)."""
        if self._pool is None and not self._closing:
            kwargs: dict[str, Any] = {}
            if self._reactor is not None:
                kwargs["cp_reactor"] = self._reactor
            self._pool = adbapi.ConnectionPool(
                "psycopg2",
                self.dsn,
                cp_min=1,
                cp_max=1,
                cp_reconnect=True,
                cp_openfun=_open_writer,
                **_CONNECTION,
                **kwargs,
            )
            self._pool.connectionFactory = _Connection
            self._listen()

    def load(self) -> Snapshot:
        """Return what `open_store` loaded."""
        return self._snapshot

    def sequences_advanced(self) -> None:
        """Move to the next id block at the end of this one; fetch it at half."""
        counters = self._counters
        if counters.last_id >= self._block_end:
            if self._next_block is not None:
                counters.last_id = self._next_block - 1
                self._block_end = self._next_block + self._block_size - 1
                self._next_block = None
                self._warned_ids = False
            elif not self._warned_ids:
                self._warned_ids = True
                log.warn(
                    "player ids beyond {end} are not reserved in {where} yet: "
                    "another daemon may hand out the same",
                    end=self._block_end,
                    where=self.where,
                )
        if self._next_block is None and counters.last_id >= self._block_end - self._block_size // 2:
            self._fetch_block()

    def record_win(self, entry: LeaderboardEntry | None) -> defer.Deferred[None]:
        """Commit a win: one more for ``entry``'s name (None: a default name, counters only).

        Fires once committed, or once the write failed (the win is then
        kept to write again); never fails.
        """
        if entry is not None:
            self._batch.entries.append(entry)
        self._batch.recorded += 1
        self._pending_wins += 1
        return self._ask()

    def flush(self) -> defer.Deferred[None]:
        """Write the counters and read what the others did; fire when done, never fail."""
        return self._ask()

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Write what is pending, stop listening, close the connections."""
        self._closing = True
        if self._reconnecting is not None and self._reconnecting.active():
            self._reconnecting.cancel()
        self._reconnecting = None
        self._stop_listening()
        if self._pool is None:
            return
        yield self._ask(now=True)
        while self._busy is not None:
            yield self._busy
        pool, self._pool = self._pool, None
        pool.close()

    # The RoundKeeper interface.

    def attach(self, game: RoundNews) -> SharedRound | None:
        """Tell ``game`` the others' news from now on; the round it should join."""
        self.game = game
        return self._current

    def won(self, event: Won) -> None:
        """Announce ``event`` with its win's transaction."""
        self._batch.won.append(event)

    def round_started(self, shared: SharedRound) -> None:
        """End the round before in the database, if it is still the current one."""
        self._batch.round = shared
        self._current = shared
        self._ask()

    # Writing.

    def _reactor_(self) -> Any:
        if self._reactor is not None:
            return self._reactor
        from twisted.internet import reactor

        return reactor

    def _ask(self, now: bool = False) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if self._pool is None:
            d.callback(None)
            return d
        self._waiting.append(d)
        # What else this reactor turn asks for goes into the same transaction.
        if now:
            self._next()
        elif self._scheduled is None:
            self._scheduled = self._reactor_().callLater(0, self._next)
        return d

    def _next(self) -> None:
        """Start the next transaction with all that waits, unless one runs."""
        if self._scheduled is not None:
            if self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
        if self._busy is not None or self._pool is None or not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        batch, self._batch = self._batch, _Batch()
        counters = self._counters
        batch.wins = counters.wins - self._base_wins
        batch.guesses = counters.guesses - self._base_guesses
        busy = self._busy = self._pool.runInteraction(
            _save, batch, self.origin, (self._lo, self._hi, self._mode)
        )
        busy.addCallbacks(self._written, self._write_failed, (batch,), None, (batch,))

        def done(result: Failure | None) -> None:
            if isinstance(result, Failure):
                log.failure("store bookkeeping failed", result)
            self._busy = None
            for d in waiting:
                d.callback(None)
            self._next()

        busy.addBoth(done)

    def _written(self, result: _Result, batch: _Batch) -> None:
        if self._write_failing:
            log.info("PostgreSQL database {where} is written again", where=self.where)
        self._write_failing = False
        self._pending_wins -= batch.recorded
        if result.version > self._version:
            self._take_totals(
                result.version,
                result.wins,
                result.guesses,
                in_flight=(batch.wins, batch.guesses),
            )
        else:
            # Newer totals already applied could not include this write.
            self._base_wins += batch.wins
            self._base_guesses += batch.guesses
        self._apply_heard()
        if self.game is not None:
            for entry in result.entries.values():
                self.game.news(entry=entry)
            if result.current is not None:
                self._current = result.current
                self.game.news(shared=result.current)

    def _write_failed(self, failure: Failure, batch: _Batch) -> None:
        # Nothing of it was written: it goes with the next transaction.
        pending = self._batch
        pending.entries[:0] = batch.entries
        pending.won[:0] = batch.won
        pending.logged = len(batch.entries)
        pending.logged_wins = batch.recorded
        pending.recorded += batch.recorded
        if pending.round is None:
            pending.round = batch.round
        self._apply_heard()
        was_failing, self._write_failing = self._write_failing, True
        # Each win is logged once; the rest once an outage.
        if batch.recorded > batch.logged_wins or not was_failing:
            log.error(
                "cannot write to PostgreSQL database {where}: {error}; kept to write again: "
                "{wins} new wins, {guesses} new guesses; leaderboard {entries}",
                where=self.where,
                error=_first_line(failure.value),
                wins=batch.wins,
                guesses=batch.guesses,
                entries=_describe(batch.entries[batch.logged :]),
            )

    def _take_totals(
        self, version: int, wins: int, guesses: int, in_flight: tuple[int, int] = (0, 0)
    ) -> None:
        """Bring the counters to newer totals, keeping what is not written yet."""
        counters = self._counters
        counters.wins += wins - (self._base_wins + in_flight[0])
        counters.guesses += guesses - (self._base_guesses + in_flight[1])
        self._base_wins, self._base_guesses, self._version = wins, guesses, version

    def _apply_heard(self) -> None:
        heard, self._heard = self._heard, None
        if heard is not None and heard[0] > self._version:
            self._take_totals(*heard)

    def _fetch_block(self) -> None:
        if self._fetching_block or self._pool is None:
            return
        self._fetching_block = True
        d = self._pool.runQuery("SELECT nextval('player_ids')")

        def fetched(rows: list[tuple[int]]) -> None:
            self._next_block = rows[0][0]

        def failed(failure: Failure) -> None:
            log.warn(
                "cannot reserve player ids in {where}: {error}; trying again at the next join",
                where=self.where,
                error=_first_line(failure.value),
            )

        def done(_: object) -> None:
            self._fetching_block = False

        d.addCallbacks(fetched, failed).addBoth(done)

    # Listening.

    def _listen(self) -> None:
        self._reconnecting = None
        if self._closing or self._pool is None:
            return
        reactor = self._reactor_()
        d = threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), _listening_connection, self.dsn
        )
        d.addCallbacks(self._listening, self._listen_failed)

    def _listening(self, conn: Any) -> None:
        if self._closing or self._pool is None:
            conn.close()
            return
        if not self._listen_ok:
            log.info("listening for the other daemons on {where} again", where=self.where)
        self._listen_ok = True
        self._notifications = Notifications(conn, self._heard_news, self._lost)
        self._reactor_().addReader(self._notifications)
        # What happened while nobody listened comes with the totals and the round.
        self.flush()

    def _listen_failed(self, failure: Failure) -> None:
        if self._closing:
            return
        if self._listen_ok:
            log.warn(
                "cannot listen for the other daemons on {where}: {error}; trying again",
                where=self.where,
                error=_first_line(failure.value),
            )
        self._listen_ok = False
        self._reconnecting = self.clock.callLater(RECONNECT_DELAY, self._listen)

    def _lost(self, why: str) -> None:
        if self._notifications is None:
            return
        log.warn(
            "lost the notification connection to {where}: {why}; reconnecting",
            where=self.where,
            why=why,
        )
        self._stop_listening()
        self._listen_ok = False
        if not self._closing:
            self._reconnecting = self.clock.callLater(RECONNECT_DELAY, self._listen)

    def _stop_listening(self) -> None:
        notifications, self._notifications = self._notifications, None
        if notifications is not None:
            self._reactor_().removeReader(notifications)
            notifications.close()

    def _heard_news(self, payload: str) -> None:
        """One notification from another daemon (our own are skipped)."""
        try:
            news = _read_news(payload)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            log.warn("ignored a notification that is not ours: {payload!r}", payload=payload)
            return
        if news.origin == self.origin:
            return
        version = news.totals[0]
        if version > self._version:
            if self._busy is not None:
                if self._heard is None or version > self._heard[0]:
                    self._heard = news.totals
            else:
                self._take_totals(*news.totals)
        if news.round is not None:
            self._current = news.round
        if self.game is None:
            return
        for won, entry in news.wins:
            self.game.news(won=won, entry=entry)
        if news.round is not None:
            self.game.news(shared=news.round)


@dataclass
class _News:
    """One notification, read."""

    origin: str
    totals: tuple[int, int, int]
    wins: list[tuple[Won, LeaderboardEntry | None]]
    round: SharedRound | None


def _read_news(payload: str) -> _News:
    """Read a notification of `_save`; raises on anything else."""
    news = json.loads(payload)
    wins = []
    for win in news.get("won", ()):
        values = win.get("entry")
        entry = None
        if values is not None:
            name, wins_, best, last_win = values
            entry = LeaderboardEntry(str(name), int(wins_), int(best), float(last_win))
        won = Won(int(win["id"]), str(win["name"]), int(win["number"]), int(win["guesses"]))
        wins.append((won, entry))
    current = news.get("round")
    shared = None
    if current is not None:
        number, secret, winner, winning, by_admin = current
        shared = SharedRound(
            int(number),
            int(secret),
            None if winner is None else str(winner),
            int(winning),
            bool(by_admin),
        )
    totals = (int(news["version"]), int(news["wins"]), int(news["guesses"]))
    return _News(str(news["origin"]), totals, wins, shared)


def _describe(entries: Sequence[LeaderboardEntry]) -> str:
    """Leaderboard entries as a log shows them."""
    return ", ".join(f"{e.name} best={e.best}" for e in entries) or "unchanged"


def _save(txn: Any, batch: _Batch, origin: str, game: tuple[int, int, str]) -> _Result:
    """One transaction: the wins, the counters, the round, the notification."""
    # One row a name (a statement cannot change a row twice), with its count of wins.
    rows: dict[str, list[Any]] = {}
    for entry in batch.entries:
        key = entry.name.lower()
        row = rows.get(key)
        if row is None:
            rows[key] = [key, entry.name, 1, entry.best, entry.last_win]
        else:
            row[1:] = [entry.name, row[2] + 1, min(row[3], entry.best), max(row[4], entry.last_win)]
    saved: dict[str, LeaderboardEntry] = {}
    if rows:
        found = psycopg2.extras.execute_values(
            txn, _SAVE_ENTRIES, list(rows.values()), page_size=len(rows), fetch=True
        )
        for values in found:
            entry = LeaderboardEntry(*values)
            saved[entry.name.lower()] = entry
    if batch.wins or batch.guesses or batch.entries:
        txn.execute(_ADD_COUNTERS, (batch.wins, batch.guesses))
    else:
        txn.execute("SELECT version, wins, guesses FROM counters WHERE only_row = 1")
    version, wins, guesses = txn.fetchone()
    started = None
    if batch.round is not None:
        r = batch.round
        lo, hi, mode = game
        txn.execute(
            _START_ROUND, (r.number, r.secret, lo, hi, mode, r.winner, r.winning, r.by_admin)
        )
        if txn.fetchone() is not None:
            started = r
    txn.execute(_READ_ROUND)
    row = txn.fetchone()
    current = SharedRound(row[0], row[1], row[5], row[6], row[7]) if row is not None else None
    if batch.won or started is not None:
        won = [
            {
                "id": w.id,
                "name": w.name,
                "number": w.number,
                "guesses": w.guesses,
                "entry": _entry_values(saved.get(w.name.lower())),
            }
            for w in batch.won
        ]
        # Parts of a few kilobytes: a payload must stay under 8000 bytes.
        step = _WINS_PER_NOTIFICATION
        for part in [won[i : i + step] for i in range(0, len(won), step)] or [[]]:
            news: dict[str, Any] = {
                "origin": origin,
                "version": version,
                "wins": wins,
                "guesses": guesses,
                "won": part,
            }
            txn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(news)))
        if started is not None:
            news = {
                "origin": origin,
                "version": version,
                "wins": wins,
                "guesses": guesses,
                "round": [
                    started.number,
                    started.secret,
                    started.winner,
                    started.winning,
                    started.by_admin,
                ],
            }
            txn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(news)))
    return _Result(version, wins, guesses, saved, current)


def _entry_values(entry: LeaderboardEntry | None) -> list[Any] | None:
    if entry is None:
        return None
    return [entry.name, entry.wins, entry.best, entry.last_win]
