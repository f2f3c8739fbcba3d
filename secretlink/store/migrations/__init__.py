"""Alembic migrations: the only thing that creates or changes secretlink's tables.

They run through `secretlink.store.migrate` (at start-up, or with `secretlink db upgrade`);
env.py expects the connection that module hands over. To add a revision, change the
models in secretlink/store/storage.py, then let Alembic compare them with a database at head:

    from alembic import command
    from secretlink.store import migrate
    from secretlink.store.database import make_engine

    url = "sqlite:////tmp/scratch.sqlite3"
    migrate.upgrade(url)
    with make_engine(url).connect() as connection:
        command.revision(
            migrate.alembic_config(connection), "what changed", autogenerate=True, rev_id="0003"
        )

with rev_id one more than the newest file in versions/, then read the new file
before committing it: autogenerate misses renames and server-side defaults. A
revision must not import the models (copy what it needs): it has to do the same
thing forever, whatever the models become.
"""
