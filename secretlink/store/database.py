"""How secretlink connects to its database: SQLite by default, PostgreSQL when shared.

Kept apart from storage.py so that both storage and the migrations (secretlink.store.migrate)
open connections the same way without importing each other.
"""

import contextlib
import os
import sqlite3
import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

BUSY_TIMEOUT_SECONDS = 5


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout waits out short locks; WAL lets readers and the writer proceed
    # together; synchronous=FULL makes an acknowledged message survive power loss.
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted messages are overwritten with zeros instead of lingering in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (it stays so), waiting out others doing the same.

    When several processes open a new file at once, SQLite answers all but one with
    "database is locked" at once, without waiting: two connections wanting the
    exclusive lock the switch needs would otherwise deadlock. So the wait is ours.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# A PostgreSQL host that drops packets would otherwise hold a command or a worker
# for the operating system's TCP timeout (minutes) before the error appears.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10


def is_sqlite_file(database_url: str | URL) -> bool:
    """SQLite in a file: one writer at a time across processes, which the group commit's
    file lock and the writer process (secretlink.ops.writer) are for. In-memory SQLite
    lives in one process; PostgreSQL takes concurrent writers itself."""
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    connect_args = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
    # hide_parameters keeps inbox keys and envelopes out of error messages and logs.
    engine = create_engine(url, hide_parameters=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        _create_private(engine.url.database)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_private(path: str | None) -> None:
    """Create a new SQLite file readable by its owner only, whatever the umask.

    SQLite gives the -wal and -shm files beside it the database file's permissions,
    so they are private too. An existing file is left as its owner made it.
    """
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
