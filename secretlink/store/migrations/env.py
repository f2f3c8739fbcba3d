"""Alembic's environment for secretlink, driven by secretlink.store.migrate (no alembic.ini).

secretlink.store.migrate passes in an open connection, already inside the transaction it
has locked, so stamping, every revision and the version bump commit together or not
at all.
"""

from alembic import context

from secretlink.store import inbox_settings  # noqa: F401 (its table is in Base.metadata)
from secretlink.store.storage import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "secretlink migrations run over a live connection: use secretlink.store.migrate "
            "or `secretlink db upgrade` (offline --sql mode is not supported)"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters little in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
