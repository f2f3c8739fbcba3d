"""Bring a database to the newest schema: Alembic runs the scripts in secretlink/store/migrations.

No alembic.ini is needed: the configuration is built here, and the scripts are found
next to this module, so an installed or shiv-packed secretlink migrates its own
database. A database made before migrations existed (tables made by create_all, no
`alembic_version`) is recognised, stamped at the baseline revision and upgraded in
place, keeping its rows. Imports no Flask: the CLI and the server's master process
use it without building an app.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from secretlink.store.database import make_engine

SCRIPTS = Path(__file__).resolve().parent / "migrations"

# The revision whose tables and columns are what Base.metadata.create_all made before
# migrations existed (revision 0002 then names SQLite's unnamed constraints), and
# the tables that such a database holds.
BASELINE = "0001"
BASELINE_TABLES = frozenset({"inboxes", "messages", "used_nonces"})

# Every process migrating a PostgreSQL database takes this one advisory lock, so
# workers starting together do not all try to create the same tables.
PG_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"secretlink/v1/migrate", digest_size=8).digest(), "big", signed=True
)


class MigrationError(RuntimeError):
    """The database is in a state the migrations cannot safely start from."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, pointing at the packaged scripts.

    The connection is handed to env.py, which migrates over it instead of opening
    its own; that is how stamping and upgrading share one transaction.
    """
    config = Config()
    # Config is a ConfigParser: a % in the path would read as interpolation.
    config.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of secretlink knows."""
    head = _scripts().get_current_head()
    if head is None:
        raise MigrationError(f"no migration scripts found in {SCRIPTS}")
    return head


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it has never been migrated."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    finally:
        engine.dispose()


def upgrade(database_url: str) -> None:
    """Migrate the database at `database_url` to the newest revision."""
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine) -> None:
    """Migrate the database behind `engine` to the newest revision; safe to repeat."""
    with engine.connect() as connection:
        revision = _revision_of(connection)
        if revision == head_revision():
            return  # what almost every start finds: no lock, no Alembic environment
        _refuse_unknown(revision)
        connection.rollback()
        with _migration_transaction(connection):
            # Looked at again under the lock: another process may have migrated meanwhile.
            _stamp_if_made_before_migrations(connection)
            command.upgrade(alembic_config(connection), "head")


def _revision_of(connection: Connection) -> str | None:
    # Read directly rather than through a MigrationContext, which logs its set-up at
    # INFO: this runs at every start of every worker.
    if not inspect(connection).has_table("alembic_version"):
        return None
    revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = revisions.all()
    if len(found) > 1:
        raise MigrationError(f"the database records several revisions at once: {found}")
    return found[0] if found else None


def _refuse_unknown(revision: str | None) -> None:
    """A revision these scripts do not know was written by a newer secretlink."""
    if revision is None or revision in {script.revision for script in _scripts().walk_revisions()}:
        return
    raise MigrationError(
        f"the database is at revision {revision}, which this version of secretlink does not "
        f"know (its newest is {head_revision()}): it was upgraded by a newer secretlink; "
        "run that version again, or restore a backup taken before the upgrade"
    )


@contextmanager
def _migration_transaction(connection: Connection) -> Iterator[None]:
    """One transaction around the whole migration, held by one process at a time."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copying it and dropping the original; with
        # foreign keys on, dropping `inboxes` would first cascade-delete every message.
        # The PRAGMA is ignored inside a transaction, so it goes before BEGIN.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        # pysqlite opens a transaction only at the first INSERT, which would leave the
        # DDL before it committed on its own. IMMEDIATE takes the write lock now, so a
        # second process waits (busy_timeout) and then finds the work done.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    try:
        yield
        if sqlite:
            _check_foreign_keys(connection)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    """With the checks off during the migration, refuse to commit a broken reference."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise MigrationError(f"the migration would leave broken references: {broken[:5]}")


def _stamp_if_made_before_migrations(connection: Connection) -> None:
    if _revision_of(connection) is not None:
        return
    present = BASELINE_TABLES & set(inspect(connection).get_table_names())
    if not present:
        return  # an empty database: the migrations create everything
    if present != BASELINE_TABLES:
        raise MigrationError(
            f"the database has some of secretlink's tables ({', '.join(sorted(present))}) "
            "but not all and no migration history; it was not made by secretlink, "
            "or is damaged: restore a backup or point SECRETLINK_DATABASE_URL elsewhere"
        )
    MigrationContext.configure(connection).stamp(_scripts(), BASELINE)


def require_current(database_url: str) -> None:
    """Raise MigrationError unless the schema is exactly at this version's head."""
    revision = current_revision(database_url)
    _refuse_unknown(revision)
    if revision != head_revision():
        raise MigrationError(
            f"the database schema is at {revision or 'nothing (empty database)'}, not "
            f"{head_revision()}: run `secretlink db upgrade` (or leave SECRETLINK_AUTO_UPGRADE on)"
        )
