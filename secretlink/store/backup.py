"""Consistent copies of a SQLite database, taken while the service runs.

SQLite's online backup API copies page by page under a read transaction, so the
copy is a consistent snapshot even while workers write. PostgreSQL has pg_dump.

The copy is written to a temporary file beside the destination, created readable
by its owner only (it holds every stored envelope), and gets the requested name
only when complete; a failed copy leaves nothing behind.
"""

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """The backup cannot be made; the message says why."""


def backup_sqlite(database_url: str, destination: Path) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise BackupError(
            f"`secretlink backup` copies SQLite databases; for {url.get_backend_name()} use its "
            "own tool (PostgreSQL: pg_dump --format=custom)"
        )
    source_path = Path(url.database).resolve()
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}")
    if destination.exists():
        raise BackupError(f"{destination} already exists; refusing to overwrite it")
    try:
        # mkstemp creates the file with mode 0600 before a byte is written.
        fd, name = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise BackupError(f"cannot write a backup to {destination}: {exc.strerror}") from None
    os.close(fd)
    partial = Path(name)
    try:
        _copy(source_path, partial)
        _publish(partial, destination)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database {source_path}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write a backup to {destination}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _copy(source_path: Path, partial: Path) -> None:
    # A URI so that the source is opened read-only; as_uri() escapes ? and # in the path.
    source = sqlite3.connect(source_path.as_uri() + "?mode=ro", uri=True)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _publish(partial: Path, destination: Path) -> None:
    """Give the complete copy its name, never replacing a file that appeared meanwhile."""
    try:
        os.link(partial, destination)
    except FileExistsError:
        raise BackupError(f"{destination} already exists; refusing to overwrite it") from None
    except OSError:
        # A file system without hard links: rename, after looking once more.
        if destination.exists():
            raise BackupError(f"{destination} already exists; refusing to overwrite it") from None
        partial.rename(destination)
