"""Alembic's environment for secretlink, driven by secretlink.migrate (no alembic.ini).

secretlink.migrate passes in an open connection, already inside the transaction it
has locked, so stamping, every revision and the version bump commit together or not
at all.
"""

from alembic import context

from secretlink.storage import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "secretlink migrations run over a live connection: use secretlink.migrate "
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
