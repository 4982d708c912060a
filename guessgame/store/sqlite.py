"""The durable `Store`: the leaderboard and counters in an SQLite file.

`open_store` runs once at start, before the reactor: it opens the file,
checks that it is a guessgame database (``PRAGMA application_id``) of a
schema version this code knows (``PRAGMA user_version``), creates or
migrates the schema, loads the leaderboard and counters, and reserves a
block of player ids.  Any problem there is a `StoreError` whose message
says what and where.

From then on `SQLiteStore` writes through one
`twisted.enterprise.adbapi.ConnectionPool` connection in WAL mode, so the
reactor thread never waits on the disk:

- a win is one transaction (the leaderboard entry and the counters) with
  ``synchronous=FULL``, and `SQLiteStore.record_win` fires once it is
  committed;
- the counters, which change on every guess, are written every
  `FLUSH_INTERVAL` seconds and at close, so a crash can cost at most that
  much of the guess counter;
- player ids are reserved `ID_BLOCK` at a time, ahead of use, so a restart
  after a crash starts after every id handed out; a new round number is
  written at once.

A write that fails never stops the game: `SQLiteStore.failing` is true
until a write succeeds, what is not written stays in memory, and a retry
with a growing delay writes it.  An outage is logged once as it starts and
once as it ends; a stop during one logs every win it could not write.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, TypeGuard

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from guessgame.store.base import NAME_PATTERN, Counters, LeaderboardEntry, Snapshot

__all__ = [
    "APPLICATION_ID",
    "FLUSH_INTERVAL",
    "ID_BLOCK",
    "MIGRATIONS",
    "RETRY_FIRST",
    "RETRY_MAX",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "StoreError",
    "open_store",
]

log = Logger()

#: ``PRAGMA application_id`` of a guessgame database ("GgDb").
APPLICATION_ID = 0x47674462

#: How often the counters are written, in seconds.
FLUSH_INTERVAL = 2.0

#: The first retry after a failed write, in seconds; each next one waits
#: twice as long, up to `RETRY_MAX`.
RETRY_FIRST = 1.0
RETRY_MAX = 60

#: How many player ids are reserved at a time.  The next block is asked for
#: when half of this one is used, so ids stay safe unless thousands of
#: players join within the time of one commit.
ID_BLOCK = 10_000

#: The schema, one tuple of statements per version: ``MIGRATIONS[n]`` takes
#: a database from ``user_version`` n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE leaderboard (
            name_key TEXT PRIMARY KEY,  -- the name lower-cased: one entry a name
            name TEXT NOT NULL,
            wins INTEGER NOT NULL,
            best INTEGER NOT NULL,
            last_win REAL NOT NULL
        )""",
        """CREATE TABLE counters (
            only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
            rounds INTEGER NOT NULL,
            wins INTEGER NOT NULL,
            guesses INTEGER NOT NULL,
            last_id INTEGER NOT NULL,
            id_mark INTEGER NOT NULL  -- ids up to here may have been handed out
        )""",
        "INSERT INTO counters VALUES (1, 0, 0, 0, 0, 0)",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)

_SAVE_COUNTERS = (
    "UPDATE counters SET rounds = ?, wins = ?, guesses = ?, last_id = ?, id_mark = ?"
    " WHERE only_row = 1"
)
_SAVE_ENTRY = (
    "INSERT INTO leaderboard (name_key, name, wins, best, last_win) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (name_key) DO UPDATE SET"
    " name = excluded.name, wins = excluded.wins, best = excluded.best,"
    " last_win = excluded.last_win"
)

#: What one write carries: rounds, wins, guesses, last_id, id_mark.
_Row = tuple[int, int, int, int, int]


class StoreError(Exception):
    """The database cannot be used; the message says what and where."""


def open_store(
    path: str,
    clock: IReactorTime,
    *,
    migrations: Sequence[Sequence[str]] = MIGRATIONS,
    flush_interval: float = FLUSH_INTERVAL,
    reactor: Any = None,
) -> SQLiteStore:
    """Open, check, create or migrate the database at ``path`` and load it.

    Runs synchronously (start-up, before the reactor).  Raises `StoreError`
    when the file cannot be opened or written, is not a guessgame database,
    or comes from a newer version.  ``clock`` drives the periodic flush;
    ``reactor`` (default: the global one) runs the database thread.
    """
    where = os.path.abspath(path)
    if os.path.isdir(path):
        raise StoreError(f"cannot open database {where}: it is a directory")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open database {where}: {e}") from None
    try:
        _check(conn, where, len(migrations))
        # WAL lives in the file: set before the first write, outside a transaction.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot use WAL journal mode for database {where} (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, len(migrations)):
            for statement in migrations[number]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        snapshot, id_mark = _load(conn, where)
        # A crash may have handed out any id up to the saved mark: start
        # after it, and reserve the first block before any id is used.
        counters = snapshot.counters
        counters.last_id = max(counters.last_id, id_mark)
        id_mark = counters.last_id + ID_BLOCK
        conn.execute(_SAVE_COUNTERS, (*_counter_values(counters), id_mark))
        conn.execute("COMMIT")
        inode = _inode(path)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot use database {where}: {e}") from None
    except OSError as e:
        raise StoreError(f"cannot use database {where}: {e.strerror}") from None
    finally:
        conn.close()
    # The absolute path: logs say where, and a later chdir changes nothing.
    return SQLiteStore(
        where,
        snapshot,
        clock,
        id_mark=id_mark,
        inode=inode,
        flush_interval=flush_interval,
        reactor=reactor,
    )


def _check(conn: sqlite3.Connection, where: str, known: int) -> None:
    """Raise `StoreError` unless ``conn`` is a guessgame database we can read."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError):
            raise StoreError(f"cannot open database {where}: {e}") from None
        raise StoreError(f"not a guessgame database: {where} ({e})") from None
    fresh = app_id == 0 and version == 0 and tables == 0
    if app_id != APPLICATION_ID and not fresh:
        raise StoreError(f"not a guessgame database: {where}")
    if version > known:
        raise StoreError(
            f"database {where} is from a newer guessgame "
            f"(schema version {version}; this one knows up to {known})"
        )


def _load(conn: sqlite3.Connection, where: str) -> tuple[Snapshot, int]:
    """Read the counters and the leaderboard, refusing any value the schema does not allow.

    SQLite keeps whatever value it is given in any column, so a file
    changed by hand or by another program can hold text where a count
    belongs: that is refused here, by name, rather than failing later in
    the middle of a game.
    """
    rows = conn.execute(
        "SELECT only_row, rounds, wins, guesses, last_id, id_mark FROM counters"
    ).fetchall()
    if not rows or (len(rows) == 1 and rows[0][0] != 1):
        raise _damaged(where, "the counters row is missing")
    if len(rows) > 1:
        raise _damaged(where, f"the counters table holds {len(rows)} rows, not 1")
    values = rows[0][1:]
    for column, value in zip(_COUNTER_COLUMNS, values, strict=True):
        if not _is_count(value, 0):
            raise _damaged(where, f"counters: {column} is {value!r}, not a whole number >= 0")
    rounds, wins, guesses, last_id, id_mark = values
    entries = [
        _entry(where, row)
        for row in conn.execute("SELECT name_key, name, wins, best, last_win FROM leaderboard")
    ]
    return Snapshot(Counters(rounds, wins, guesses, last_id), entries), id_mark


_COUNTER_COLUMNS = ("rounds", "wins", "guesses", "last_id", "id_mark")


def _is_count(value: object, least: int) -> TypeGuard[int]:
    # SQLite gives back int, float, str, bytes or None: an int is a whole number.
    return isinstance(value, int) and value >= least


def _entry(where: str, row: tuple[object, ...]) -> LeaderboardEntry:
    """One leaderboard row as an entry, or `StoreError` saying what is wrong with it."""
    key, name, wins, best, last_win = row
    what = f"leaderboard entry {key!r}"
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise _damaged(where, f"{what}: name {name!r} is not 1-16 letters, digits, _ or -")
    if key != name.lower():
        raise _damaged(where, f"{what}: name_key is not the name {name!r} in lower case")
    if not _is_count(wins, 1):
        raise _damaged(where, f"{what}: wins is {wins!r}, not a whole number >= 1")
    if not _is_count(best, 1):
        raise _damaged(where, f"{what}: best is {best!r}, not a whole number >= 1")
    if not isinstance(last_win, (int, float)) or not math.isfinite(last_win):
        raise _damaged(where, f"{what}: last_win is {last_win!r}, not a time")
    return LeaderboardEntry(name, wins, best, float(last_win))


def _damaged(where: str, what: str) -> StoreError:
    return StoreError(f"damaged guessgame database: {where} ({what})")


def _counter_values(counters: Counters) -> tuple[int, int, int, int]:
    return counters.rounds, counters.wins, counters.guesses, counters.last_id


def _inode(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _open_connection(conn: sqlite3.Connection) -> None:
    """Set up the pool's one connection (runs in the database thread)."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")


class SQLiteStore:
    """A `Store` kept in an SQLite file; build it with `open_store`.

    One transaction at a time: what is asked for while one runs (wins, a
    flush) goes into the next, so a burst of wins costs one commit, not
    one each.

    While writes fail, the game goes on: every win not yet written stays
    in memory (`unsaved` counts them), each win is answered at once, and
    one retry at a time carries all of it, `RETRY_FIRST` seconds after the
    failure and then twice as long each time, up to `RETRY_MAX`.  An
    outage is logged once as it starts and once as it ends.
    """

    def __init__(
        self,
        path: str,
        snapshot: Snapshot,
        clock: IReactorTime,
        *,
        id_mark: int,
        inode: tuple[int, int],
        flush_interval: float = FLUSH_INTERVAL,
        reactor: Any = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.flush_interval = flush_interval
        self.failing = False
        self._reactor = reactor
        self._snapshot = snapshot
        self._counters = snapshot.counters
        self._inode = inode
        self._pool: adbapi.ConnectionPool | None = None
        # The id mark asked for, and the highest one committed.
        self._id_mark = id_mark
        self._id_mark_saved = id_mark
        self._warned_ids = False
        # The counters of the last commit.
        self._saved: _Row = (*_counter_values(self._counters), id_mark)
        # Entries not written yet, by name key (the newest of each name),
        # and how many wins are not written yet: both include what the
        # transaction running now carries, until it commits.
        self._pending: dict[str, LeaderboardEntry] = {}
        self._pending_wins = 0
        # Who waits for the next transaction to end, and whether it must
        # run even while writes fail (a retry, the last write at close).
        self._waiting: list[defer.Deferred[None]] = []
        self._forced = False
        # The transaction running now.
        self._busy: defer.Deferred[None] | None = None
        # While failing: the next retry, its delay, and when the outage began.
        self._retry: IDelayedCall | None = None
        self._retry_delay = RETRY_FIRST
        self._failing_since = 0.0

    @property
    def unsaved(self) -> int:
        """How many wins are not written yet (``stats`` shows ``unsaved=N``)."""
        return self._pending_wins

    # The Store interface.

    def open(self) -> None:
        """Start writing: open the connection pool (`StoreService` does, before the game)."""
        if self._pool is None:
            kwargs: dict[str, Any] = {}
            if self._reactor is not None:
                kwargs["cp_reactor"] = self._reactor
            self._pool = adbapi.ConnectionPool(
                "sqlite3",
                self.path,
                cp_min=1,
                cp_max=1,
                cp_openfun=_open_connection,
                check_same_thread=False,
                timeout=10,
                **kwargs,
            )

    def load(self) -> Snapshot:
        """Return what `open_store` loaded."""
        return self._snapshot

    def sequences_advanced(self) -> None:
        """Reserve the next id block when half of this one is used; save a new round."""
        counters = self._counters
        if counters.last_id > self._id_mark_saved and not self._warned_ids:
            self._warned_ids = True
            log.warn(
                "player ids beyond {mark} are not reserved in {path} yet: "
                "a crash now could reuse them",
                mark=self._id_mark_saved,
                path=self.path,
            )
        if counters.last_id > self._id_mark - ID_BLOCK // 2:
            self._id_mark = counters.last_id + ID_BLOCK
            self.flush()
        elif counters.rounds > self._saved[0]:
            self.flush()

    def record_win(self, entry: LeaderboardEntry | None) -> defer.Deferred[None]:
        """Commit ``entry`` (if any) and the counters; fire once committed, never fail.

        While writes fail, the win is kept in memory for the next retry
        and the Deferred fires at once.
        """
        if self._pool is None:
            self.failing = True
            log.error(
                "database {path} is closed: win not written: {entry}",
                path=self.path,
                entry=_describe((entry,) if entry is not None else ()),
            )
            return defer.succeed(None)
        if entry is not None:
            self._pending[entry.name.lower()] = entry
        self._pending_wins += 1
        return self._ask()

    def flush(self) -> defer.Deferred[None]:
        """Write the counters (and any win not yet written) if they changed.

        Fires once that write is done (at once while writes fail: the
        retry does it); never fails.
        """
        if self._pool is None:
            return defer.succeed(None)
        return self._ask()

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Write what is pending, give back the unused ids, close the file.

        One last try even while failing; what even that cannot write is
        logged, every entry, so that it is not lost without a trace.
        """
        if self._pool is None:
            return
        # The game has stopped: every id handed out is in last_id, and the
        # next start may continue right after it.
        self._id_mark = self._counters.last_id
        while self._busy is not None:
            yield self._busy
        self._cancel_retry()
        yield self._ask(force=True)
        self._cancel_retry()
        if self.failing:
            row = self._row()
            log.error(
                "database {path} closed with {count} writes not saved: "
                "counters rounds={rounds} wins={wins} guesses={guesses} last_id={last_id}; "
                "leaderboard {entries}",
                path=self.path,
                count=self._pending_wins,
                rounds=row[0],
                wins=row[1],
                guesses=row[2],
                last_id=row[3],
                entries=_describe(tuple(self._pending.values())),
            )
        pool, self._pool = self._pool, None
        pool.close()

    # Writing.

    def _row(self) -> _Row:
        return (*_counter_values(self._counters), self._id_mark)

    def _ask(self, *, force: bool = False) -> defer.Deferred[None]:
        if self.failing and not force:
            # The retry carries it; the game does not wait for an outage.
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        self._forced |= force
        self._next()
        return d

    def _next(self) -> None:
        """Start the next transaction with all that waits, unless one runs."""
        if self._busy is not None or self._pool is None or not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        forced, self._forced = self._forced, False
        if self.failing and not forced:
            # Asked before the failure: the retry carries it now.
            for d in waiting:
                d.callback(None)
            return
        entries = tuple(self._pending.values())
        wins = self._pending_wins
        row = self._row()
        if not entries and not wins and row == self._saved:
            for d in waiting:
                d.callback(None)
            return
        busy = self._busy = self._pool.runInteraction(_save, self.path, self._inode, row, entries)
        busy.addCallbacks(
            self._written,
            self._write_failed,
            callbackArgs=(row, entries, wins),
        )

        def done(result: Failure | None) -> None:
            # Whatever happened, the waiters fire and the next write may start.
            if isinstance(result, Failure):
                log.failure("store bookkeeping failed", result)
            self._busy = None
            for d in waiting:
                d.callback(None)
            self._next()

        busy.addBoth(done)

    def _written(
        self, _: None, row: _Row, entries: tuple[LeaderboardEntry, ...], wins: int
    ) -> None:
        self._saved = row
        self._id_mark_saved = max(self._id_mark_saved, row[4])
        if self._counters.last_id <= self._id_mark_saved:
            self._warned_ids = False
        for entry in entries:
            # A later win of the same name, asked for meanwhile, stays pending.
            key = entry.name.lower()
            if self._pending.get(key) is entry:
                del self._pending[key]
        self._pending_wins -= wins
        if self.failing:
            self.failing = False
            self._cancel_retry()
            self._retry_delay = RETRY_FIRST
            log.info(
                "database {path} is written again: {count} writes had waited "
                "({seconds:.0f} s of failing writes)",
                path=self.path,
                count=wins,
                seconds=self.clock.seconds() - self._failing_since,
            )
            if self._pending or self._pending_wins:
                # Wins that came during the retry: the next transaction.
                self.flush()

    def _write_failed(self, failure: Failure) -> None:
        # Everything the transaction carried is still pending: the retry
        # writes it.  Logged once an outage, however long it lasts.
        if not self.failing:
            self.failing = True
            self._failing_since = self.clock.seconds()
            log.error(
                "cannot write to database {path}: {error}; "
                "keeping what is not written in memory and retrying",
                path=self.path,
                error=failure.getErrorMessage(),
            )
        else:
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        if self._pool is not None and self._retry is None:
            self._retry = self.clock.callLater(self._retry_delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._ask(force=True)

    def _cancel_retry(self) -> None:
        retry, self._retry = self._retry, None
        if retry is not None and retry.active():
            retry.cancel()


def _describe(entries: tuple[LeaderboardEntry, ...]) -> str:
    """Leaderboard entries as a log shows them."""
    return (
        ", ".join(
            f"{e.name} wins={e.wins} best={e.best} last_win={e.last_win:.0f}" for e in entries
        )
        or "unchanged"
    )


def _save(
    txn: Any,
    path: str,
    inode: tuple[int, int],
    row: _Row,
    entries: tuple[LeaderboardEntry, ...],
) -> None:
    """One transaction: the entries and the counters (runs in the database thread)."""
    # SQLite goes on writing to a file that was deleted or replaced under it;
    # that write would be lost, so it counts as a failure.
    try:
        if _inode(path) != inode:
            raise StoreError("the file was replaced")
    except FileNotFoundError:
        raise StoreError("the file was removed") from None
    for entry in entries:
        txn.execute(
            _SAVE_ENTRY, (entry.name.lower(), entry.name, entry.wins, entry.best, entry.last_win)
        )
    rounds, wins, guesses, last_id, id_mark = row
    # The mark never goes down while the game runs; close lowers it to last_id.
    txn.execute(_SAVE_COUNTERS, (rounds, wins, guesses, last_id, id_mark))
