"""Alembic owns the schema: new and pre-migration databases reach head, on both databases."""

import shutil
import subprocess
import sys
import threading
from datetime import datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    text,
)

from secretlink.store import (
    inbox_settings,  # noqa: F401 (its table is in Base.metadata)
    migrate,
)
from secretlink.store.database import make_engine
from secretlink.store.migrate import MigrationError, current_revision, head_revision, upgrade
from secretlink.store.storage import Base, Storage

APP_TABLES = {"inboxes", "messages", "used_nonces", "instance_usage", "inbox_settings"}
APP_TABLES |= {"notify_targets", "notify_due"}  # secretlink/notify
APP_TABLES |= {"blobs"}  # secretlink/store/blobs.py

# The tables exactly as secretlink made them with create_all before migrations
# existed: the same columns, and no naming convention (so unnamed constraints on
# SQLite, PostgreSQL's own names there). Frozen here, unlike the models.
LEGACY = MetaData()
Table(
    "inboxes",
    LEGACY,
    Column("public_key", String(43), primary_key=True),
    Column("prompt", Text, nullable=False),
    Column("created_on", DateTime, nullable=False),
)
Table(
    "messages",
    LEGACY,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), unique=True, nullable=False),
    Column(
        "inbox_key",
        String(43),
        ForeignKey("inboxes.public_key", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("received_at", DateTime, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Index("ix_messages_inbox_seq", "inbox_key", "seq"),
)
Table(
    "used_nonces",
    LEGACY,
    Column("nonce", LargeBinary(32), primary_key=True),
    Column("expires_at", DateTime, nullable=False, index=True),
)

KEY = "k" * 43


def table_names(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def schema_differences(database_url: str) -> list:
    """What Alembic's autogenerate would change to make the database match the models."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def model_names() -> set[str]:
    """Every constraint and index name the models give, by the naming convention."""
    names = set()
    for table in Base.metadata.sorted_tables:
        names |= {str(constraint.name) for constraint in table.constraints}
        names |= {str(index.name) for index in table.indexes}
    return names


def reflected_names(database_url: str) -> set[str | None]:
    """The same names as the database reports them (None for an unnamed constraint)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            names = set()
            for table in APP_TABLES:
                names.add(inspector.get_pk_constraint(table)["name"])
                names |= {key["name"] for key in inspector.get_foreign_keys(table)}
                names |= {unique["name"] for unique in inspector.get_unique_constraints(table)}
                names |= {
                    index["name"]
                    for index in inspector.get_indexes(table)
                    if "duplicates_constraint" not in index  # PostgreSQL's unique index
                }
            return names
    finally:
        engine.dispose()


def cascades(database_url: str) -> list[str | None]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            keys = inspect(connection).get_foreign_keys("messages")
            return [key["options"].get("ondelete") for key in keys]
    finally:
        engine.dispose()


def make_legacy_database(database_url: str) -> None:
    """A database as the old create_all left it, with one row in each table."""
    engine = make_engine(database_url)
    try:
        LEGACY.create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                insert(LEGACY.tables["inboxes"]),
                {"public_key": KEY, "prompt": "old", "created_on": datetime(2025, 1, 1)},
            )
            connection.execute(
                insert(LEGACY.tables["messages"]),
                {
                    "id": "old-message",
                    "inbox_key": KEY,
                    "received_at": datetime(2025, 1, 2, 3, 4),
                    "envelope": b"sealed",
                },
            )
            connection.execute(
                insert(LEGACY.tables["used_nonces"]),
                {"nonce": bytes(32), "expires_at": datetime(2999, 1, 1)},
            )
    finally:
        engine.dispose()


def test_there_is_one_head():
    """Two revisions with the same parent (say, from two branches) must be merged first."""
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert heads == [head_revision()]


def test_empty_database_reaches_head_matching_the_models(database_url):
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert table_names(database_url) == APP_TABLES | {"alembic_version"}
    assert schema_differences(database_url) == []
    assert reflected_names(database_url) == model_names()


def test_upgrading_twice_changes_nothing(database_url):
    upgrade(database_url)
    storage = Storage.from_url(database_url)
    try:
        storage.save_inbox(KEY, "kept")
        upgrade(database_url)
        assert storage.get_inbox(KEY).prompt == "kept"
    finally:
        storage.engine.dispose()
    assert current_revision(database_url) == head_revision()
    assert schema_differences(database_url) == []


def test_database_made_before_migrations_is_upgraded_in_place(database_url):
    make_legacy_database(database_url)
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert schema_differences(database_url) == []
    assert reflected_names(database_url) == model_names()
    assert cascades(database_url) == ["CASCADE"]
    storage = Storage.from_url(database_url)
    try:
        assert storage.get_inbox(KEY).prompt == "old"
        [message] = storage.list_messages(KEY, 10)
        assert (message.id, message.envelope) == ("old-message", b"sealed")
        assert storage.use_nonce(bytes(32), datetime(2999, 1, 1)) is False
        assert storage.add_message(KEY, b"new") is not None
    finally:
        storage.engine.dispose()


def test_partly_made_database_is_refused_and_left_alone(database_url):
    engine = make_engine(database_url)
    try:
        LEGACY.tables["inboxes"].create(engine)
    finally:
        engine.dispose()
    with pytest.raises(MigrationError, match="some of secretlink's tables"):
        upgrade(database_url)
    assert table_names(database_url) == {"inboxes"}


def test_database_from_a_newer_secretlink_is_refused_untouched(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(MigrationError, match="revision 9999, which this version"):
        upgrade(database_url)
    assert current_revision(database_url) == "9999"


@pytest.fixture
def broken_head(tmp_path, monkeypatch):
    """The real scripts plus a revision that creates a table and then fails."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_broken.py").write_text(
        "import sqlalchemy as sa\n"
        "from alembic import op\n"
        f"revision = '9999'\ndown_revision = {head_revision()!r}\n"
        "branch_labels = depends_on = None\n"
        "def upgrade():\n"
        "    op.create_table('half_done', sa.Column('x', sa.Integer))\n"
        "    raise RuntimeError('revision 9999 fails')\n"
    )
    monkeypatch.setattr(migrate, "SCRIPTS", scripts)
    migrate._scripts.cache_clear()
    yield
    migrate._scripts.cache_clear()


@pytest.mark.usefixtures("broken_head")
def test_a_failed_migration_leaves_the_database_as_it_was(database_url):
    """Every revision runs in one transaction: the earlier ones are undone too."""
    with pytest.raises(RuntimeError, match="9999 fails"):
        upgrade(database_url)
    assert table_names(database_url) == set()


def test_workers_starting_together_migrate_once(database_url):
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            upgrade(database_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert current_revision(database_url) == head_revision()


def test_downgrade_to_base_removes_the_tables_and_upgrade_restores_them(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            command.downgrade(migrate.alembic_config(connection), "base")
            connection.commit()
    finally:
        engine.dispose()
    assert table_names(database_url) == {"alembic_version"}
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert schema_differences(database_url) == []


def test_storage_migrates_through_its_own_engine():
    """An in-memory SQLite database exists only on the engine that made it."""
    storage = Storage.from_url("sqlite://")
    storage.create_schema()
    assert storage.save_inbox(KEY, "") is True
    with storage.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_migrating_imports_no_flask(tmp_path):
    code = (
        "import sys\n"
        "from secretlink.store import migrate\n"
        f"migrate.upgrade('sqlite:///{tmp_path / 'db.sqlite3'}')\n"
        "assert 'flask' not in sys.modules, 'flask was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
