"""Consistent copies of a SQLite database, taken while the service runs.

SQLite's online backup API copies page by page under a read transaction, so the
copy is a consistent snapshot even while workers write. PostgreSQL has pg_dump.
"""

import sqlite3
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
    source_path = Path(url.database)
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}")
    if destination.exists():
        raise BackupError(f"{destination} already exists; refusing to overwrite it")
    partial = destination.with_name(destination.name + ".partial")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    # Only a complete copy gets the requested name.
    partial.replace(destination)
    destination.chmod(0o600)
