"""Group commit: concurrent message inserts share one transaction and one fsync.

Every submitted message must be durable before it is acknowledged (SQLite runs with
synchronous=FULL), and the fsync at each commit is most of what an insert costs.
One writer thread per process takes everything that queued up while the previous
commit ran, inserts it in a single transaction, and only then wakes the requests
waiting on it, which answer 201. Under load one fsync acknowledges many messages;
alone, a message waits for nothing but its own commit.

The writer is on every message's path, so it does as little as it can while it
holds the database's write lock (docs/PERFORMANCE.md has the profile behind this):

- While messages keep coming it keeps one database connection of its own and runs
  one precompiled INSERT through the driver, instead of checking a connection out
  of the pool and compiling a statement for every batch.
- Every C call into the driver releases Python's GIL, and getting it back waits
  for the request threads busy in Python. Holding SQLite's write lock through
  those waits made the other worker process stand in SQLite's busy handler, which
  sleeps whole milliseconds. On SQLite the writers of all processes therefore
  queue on an flock()ed file first: the next one wakes as soon as the lock is
  released, and SQLite's own lock is never contended by message writers.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from secretlink.store.database import is_sqlite_file
from secretlink.store.raw_sql import Compiled, bind_processor

log = logging.getLogger(__name__)

MAX_BATCH = 256
# The writer gives its connection back to the pool after this long without messages:
# an idle server holds no connection open for it (PostgreSQL counts them).
IDLE_SECONDS = 1.0
COLUMNS = ("id", "inbox_key", "received_at", "envelope")
# SQLSTATE 23503, foreign_key_violation: the row names an inbox that does not exist.
FOREIGN_KEY_VIOLATION = "23503"
# A message's outcome; an admission check (secretlink.store.quotas) may give others.
STORED = "stored"
UNKNOWN_INBOX = "unknown_inbox"
# Given the writer's cursor inside its transaction and the batch's rows, the outcome of
# each row; only rows marked STORED are inserted, in the same transaction.
Admit = Callable[[object, list[dict]], list[str]]


@dataclass
class _Pending:
    row: dict
    # The row went to a writer process that ended before it answered: it may be
    # stored already, and is then only reported STORED, not admitted again.
    resent: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    # For insert_async: the event loop and the future its caller awaits instead.
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None
    outcome: str | None = None
    error: BaseException | None = None


class _Statement:
    """The INSERT for one message row, compiled once for the engine's driver."""

    def __init__(self, engine: Engine, messages: Table):
        dialect = engine.dialect
        compiled = insert(messages).compile(dialect=dialect, column_keys=list(COLUMNS))
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = tuple(compiled.positiontup or COLUMNS)
        # The column types' own conversions (e.g. datetime to SQLite's text format),
        # so rows are stored exactly as SQLAlchemy would store them.
        self.converters = {}
        for name in COLUMNS:
            convert = bind_processor(messages.c[name].type, dialect)
            if convert is not None:
                self.converters[name] = convert

    def parameters(self, row: dict):
        values = {name: self.converters.get(name, _same)(row[name]) for name in COLUMNS}
        return tuple(values[name] for name in self.order) if self.positional else values


def _same(value):
    return value


class _WriterLock:
    """An flock()ed file beside a SQLite database: one message writer at a time."""

    def __init__(self, database_path: str):
        self._path = database_path + "-writer.lock"
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without holding the GIL

    def __exit__(self, *_exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


class _NoLock:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *_exc) -> None:
        pass


def _result(pending: _Pending) -> str:
    if pending.error is not None:
        raise pending.error
    return pending.outcome


def _wake(batch: list[_Pending]) -> None:
    """Tell a batch's callers it is settled: threads each by their event, event loops
    once each for all their futures."""
    futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for pending in batch:
        if pending.waiter is None:
            pending.done.set()
        else:
            loop, future = pending.waiter
            futures.setdefault(loop, []).append(future)
    for loop, waiting in futures.items():
        # RuntimeError: the loop was closed (its worker is stopping): nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, waiting)


def _settle(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _writer_lock(engine: Engine):
    if is_sqlite_file(engine.url):
        return _WriterLock(engine.url.database)
    return _NoLock()  # PostgreSQL handles concurrent inserts itself


class GroupCommit:
    def __init__(
        self,
        engine: Engine,
        messages: Table,
        admit: Admit | None = None,
        after_insert: Callable[[object, list[dict]], None] | None = None,
    ):
        self._engine = engine
        self._admit = admit
        # Given the cursor and the rows stored, once per batch, in the transaction
        # (the notifications' due marks commit with their messages).
        self._after_insert = after_insert
        self._statement = _Statement(engine, messages)
        self._stored_already = Compiled(
            select(messages.c.id).where(messages.c.id == bindparam("id")), engine.dialect
        )
        self._sqlite = engine.dialect.name == "sqlite"
        self._dbapi = engine.dialect.loaded_dbapi
        self._integrity_error = self._dbapi.IntegrityError
        self._lock = _writer_lock(engine)
        self._connection = None  # the writer thread's own; opened on first use
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def insert(self, row: dict) -> str:
        """Store one message row: STORED once committed, UNKNOWN_INBOX if its inbox does
        not exist, or the admission check's reason for refusing it."""
        pending = _Pending(row)
        self._queue.put(pending)
        self._ensure_writer()  # after the put: see _run, which ends when idle
        pending.done.wait()
        return _result(pending)

    async def insert_async(self, row: dict, resent: bool = False) -> str:
        """insert() for a caller on an event loop, which stays free while the commit
        runs: the writer wakes the loop once per batch, not a thread per message.
        Cancelling the caller does not take the row back: it is stored or refused
        like any other. `resent`: see _Pending."""
        loop = asyncio.get_running_loop()
        pending = _Pending(row, resent=resent, waiter=(loop, loop.create_future()))
        self._queue.put(pending)
        self._ensure_writer()
        await asyncio.shield(pending.waiter[1])
        return _result(pending)

    def _ensure_writer(self) -> None:
        # Started on use, so that it lives in the process that serves (the server forks
        # workers; threads do not survive a fork), and again after it ended when idle.
        # Always under the lock: a writer that is ending has checked, under the same
        # lock, that nothing was queued, so a message put before this is never left.
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                self._release()
                # Idle: end, holding nothing (an app dropped by its owner, as tests drop
                # theirs, is not kept alive with its connections by a waiting thread).
                with self._start_lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            rows = [pending.row for pending in batch]
            resent = {pending.row["id"] for pending in batch if pending.resent}
            for pending, settled in zip(batch, self.settle(rows, resent), strict=True):
                if isinstance(settled, BaseException):
                    pending.error = settled
                else:
                    pending.outcome = settled
        finally:
            _wake(batch)

    def settle(
        self, rows: list[dict], resent: AbstractSet[str] = frozenset()
    ) -> list[str | BaseException]:
        """Store what may be stored of `rows`, in one transaction when it can: each
        row's outcome, or the error that kept it from being settled. `resent`: the ids
        of rows that may be stored already (see _Pending). Called by this writer's
        thread, and by the writer process (secretlink.store.writer_process)."""
        settled: list[str | BaseException | None] = [None] * len(rows)
        try:
            try:
                settled[:] = self._write(rows, resent)
            except self._integrity_error as exc:
                if not self._names_a_missing_inbox(exc):
                    raise
                # A message for an unknown (or just deleted) inbox in the batch:
                # settle each on its own rather than fail them all.
                for i, row in enumerate(rows):
                    settled[i] = self._write_one(row, resent & {row["id"]})
        except BaseException as exc:
            log.warning("group commit of %d messages failed: %s", len(rows), type(exc).__name__)
            error = self._as_sqlalchemy_error(exc)
            settled = [error if outcome is None else outcome for outcome in settled]
        return settled

    def _write_one(self, row: dict, resent: AbstractSet[str]) -> str:
        """Insert one row; UNKNOWN_INBOX when the foreign key says its inbox does not exist."""
        try:
            [outcome] = self._write([row], resent)
        except self._integrity_error as exc:
            if not self._names_a_missing_inbox(exc):
                raise
            return UNKNOWN_INBOX
        return outcome

    def _write(self, rows: list[dict], resent: AbstractSet[str]) -> list[str]:
        """Insert the admitted rows in one transaction, or none of them; each row's outcome."""
        with self._lock:
            connection = self._open()
            try:
                cursor = connection.cursor()
                if self._sqlite:
                    # Take SQLite's write lock at once rather than upgrade to it midway.
                    cursor.execute("BEGIN IMMEDIATE")
                found = self._found(cursor, resent)
                fresh = [row for row in rows if row["id"] not in found]
                if fresh and self._admit is not None:
                    admitted = self._admit(cursor, fresh)
                else:
                    admitted = [STORED] * len(fresh)
                stored = [
                    row for row, outcome in zip(fresh, admitted, strict=True) if outcome == STORED
                ]
                if stored:
                    parameters = [self._statement.parameters(row) for row in stored]
                    cursor.executemany(self._statement.sql, parameters)
                    if self._after_insert is not None:
                        self._after_insert(cursor, stored)
                connection.commit()
                cursor.close()
            except BaseException:
                self._abandon(connection)
                raise
        if not found:
            return admitted
        decided = dict(zip((row["id"] for row in fresh), admitted, strict=True))
        return [STORED if row["id"] in found else decided[row["id"]] for row in rows]

    def _found(self, cursor, resent: AbstractSet[str]) -> set[str]:
        """Which of the resent rows' ids are stored already (rare: only after a writer
        process ended with messages in flight)."""
        found = set()
        for message_id in resent:
            cursor.execute(self._stored_already.sql, self._stored_already.parameters(id=message_id))
            if cursor.fetchone() is not None:
                found.add(message_id)
        return found

    def _open(self):
        if self._connection is None:
            # From the engine, so SQLite gets its PRAGMAs (secretlink.store.database).
            self._connection = self._engine.raw_connection()
        return self._connection

    def _release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()  # back to the engine's pool

    def _abandon(self, connection) -> None:
        """Roll back; a connection that cannot even do that is dropped and reopened later."""
        try:
            connection.rollback()
        except Exception:
            self._connection = None
            connection.invalidate()

    def _as_sqlalchemy_error(self, exc: BaseException) -> BaseException:
        """A driver error as SQLAlchemy would raise it, as every other Storage method does."""
        if not isinstance(exc, self._dbapi.Error):
            return exc
        return DBAPIError.instance(
            self._statement.sql,
            None,
            exc,
            self._dbapi.Error,
            hide_parameters=True,
            dialect=self._engine.dialect,
        )

    def _names_a_missing_inbox(self, exc: BaseException) -> bool:
        if self._sqlite:
            return "FOREIGN KEY constraint failed" in str(exc)
        return getattr(exc, "sqlstate", None) == FOREIGN_KEY_VIOLATION
