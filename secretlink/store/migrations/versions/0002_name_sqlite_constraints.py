"""Name the constraints that SQLite databases made before migrations left unnamed.

create_all gave SQLite tables unnamed primary keys, foreign keys and unique
constraints, and later revisions can only alter a constraint by its name, so every
database must carry the same names. PostgreSQL named them itself, already as the
convention does, and revision 0001 names them everywhere: such databases are left
alone. On SQLite, batch mode rebuilds each affected table (copy, drop, rename) with
the convention applied, keeping its rows, ids and indexes; secretlink.store.migrate has
turned foreign keys off for the rebuild, so dropping `inboxes` cascades to nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# storage.NAMING_CONVENTION as it was when this revision was written: a revision
# must do the same thing forever, whatever the models become.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0N_name)s_key",
    "fk": "%(table_name)s_%(column_0N_name)s_fkey",
    "ck": "%(table_name)s_%(column_0N_name)s_check",
}
TABLES = ("inboxes", "messages", "used_nonces")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    for table in TABLES:
        if _has_unnamed_constraint(inspector, table):
            # Reflection applies the convention to the unnamed constraints, and the
            # forced rebuild writes the table again with those names.
            with op.batch_alter_table(
                table, recreate="always", naming_convention=NAMING_CONVENTION
            ):
                pass


def downgrade() -> None:
    """Nothing to undo: revision 0001's schema works the same with named constraints."""


def _has_unnamed_constraint(inspector: Inspector, table: str) -> bool:
    names = [inspector.get_pk_constraint(table)["name"]]
    names += [key["name"] for key in inspector.get_foreign_keys(table)]
    names += [unique["name"] for unique in inspector.get_unique_constraints(table)]
    return None in names
