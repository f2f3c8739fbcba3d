"""Group commit: concurrent message inserts share one transaction and one fsync.

Every submitted message must be durable before it is acknowledged (SQLite runs with
synchronous=FULL), and the fsync at each commit is most of what an insert costs.
One writer thread per process takes everything that queued up while the previous
commit ran, inserts it in a single transaction, and only then wakes the requests
waiting on it, which answer 201. Under load one fsync acknowledges many messages;
alone, a message waits for nothing but its own commit. A single writer per process
also spares SQLite's write lock the contention of many threads.
"""

import logging
import queue
import threading
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass
class _Pending:
    row: dict
    done: threading.Event = field(default_factory=threading.Event)
    stored: bool = False
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, engine: Engine, messages, inboxes):
        self._engine = engine
        self._messages = messages  # the messages Table
        self._inboxes = inboxes  # the inboxes Table
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def insert(self, row: dict) -> bool:
        """Store one message row; True once committed, False if its inbox does not exist."""
        pending = _Pending(row)
        self._ensure_writer()
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.stored

    def _ensure_writer(self) -> None:
        # Started on first use, so that it lives in the process that serves (gunicorn
        # forks workers; threads do not survive a fork).
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._write(batch)
        except IntegrityError:
            # A message for an unknown (or just deleted) inbox in the batch: settle
            # each message on its own rather than fail them all.
            for pending in batch:
                try:
                    self._write([pending])
                except BaseException as exc:
                    pending.error = exc
        except BaseException as exc:
            log.warning("group commit of %d messages failed: %s", len(batch), type(exc).__name__)
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done.set()

    def _write(self, batch: list[_Pending]) -> None:
        """Insert the batch in one transaction.

        A batch of many relies on the foreign key to refuse an unknown inbox (the
        IntegrityError sends it back one by one); a single message looks its inbox up
        first, so that a wrong link is a clean "no".
        """
        with self._engine.connect() as connection:
            self._begin(connection)
            if len(batch) == 1 and not self._inbox_exists(connection, batch[0]):
                connection.rollback()
                return
            connection.execute(insert(self._messages), [pending.row for pending in batch])
            connection.commit()
        for pending in batch:
            pending.stored = True

    def _inbox_exists(self, connection: Connection, pending: _Pending) -> bool:
        column = self._inboxes.c.public_key
        found = connection.scalar(select(column).where(column == pending.row["inbox_key"]))
        return found is not None

    @staticmethod
    def _begin(connection: Connection) -> None:
        if connection.dialect.name == "sqlite":
            # Take the write lock before reading, so the read and the insert see one
            # snapshot and another process's commit cannot invalidate it midway.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
