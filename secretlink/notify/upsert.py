"""INSERT ... ON CONFLICT for the two databases secretlink runs on."""

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement


def insert_or(
    connection: Connection,
    table: Table,
    values: dict,
    update: tuple[str, ...] = (),
    where: ColumnElement[bool] | None = None,
):
    """Insert a row; on a primary-key conflict update the columns in `update` (only if
    the existing row matches `where`, when given), or do nothing."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values)
    keys = [column.name for column in table.primary_key.columns]
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: statement.excluded[name] for name in update},
            where=where,
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    return connection.execute(statement)
