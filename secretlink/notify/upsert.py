"""INSERT ... ON CONFLICT for the two databases secretlink runs on."""

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import ColumnElement


def upsert(
    dialect: Dialect,
    table: Table,
    values: dict,
    update: tuple[str, ...] = (),
    where: ColumnElement[bool] | None = None,
):
    """The statement that inserts a row; on a primary-key conflict it updates the
    columns in `update` (only if the existing row matches `where`, when given), or
    does nothing. `values` may hold bind parameters, for a statement compiled once."""
    module = postgresql if dialect.name == "postgresql" else sqlite
    statement = module.insert(table).values(**values)
    keys = [column.name for column in table.primary_key.columns]
    if update:
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: statement.excluded[name] for name in update},
            where=where,
        )
    return statement.on_conflict_do_nothing(index_elements=keys)


def insert_or(connection: Connection, table: Table, values: dict, **options):
    """upsert() (its `update` and `where` as keywords), run on `connection`."""
    return connection.execute(upsert(connection.dialect, table, values, **options))
