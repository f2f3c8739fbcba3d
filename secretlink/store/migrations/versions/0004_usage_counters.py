"""Usage counters for the quotas: messages and bytes per inbox, bytes for the instance.

The quotas (secretlink/store/quotas.py) are checked against these counters, which every
insert and delete of a message keeps in the same transaction. They start from the
messages already stored, so an upgraded instance counts what it holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "inboxes",
        sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "inboxes",
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "instance_usage",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("instance_usage_pkey")),
    )
    op.execute(
        "UPDATE inboxes SET"
        " message_count = (SELECT count(*) FROM messages"
        " WHERE messages.inbox_key = inboxes.public_key),"
        " stored_bytes = (SELECT coalesce(sum(length(envelope)), 0) FROM messages"
        " WHERE messages.inbox_key = inboxes.public_key)"
    )
    op.execute(
        "INSERT INTO instance_usage (id, stored_bytes)"
        " SELECT 1, coalesce(sum(length(envelope)), 0) FROM messages"
    )


def downgrade() -> None:
    op.drop_table("instance_usage")
    with op.batch_alter_table("inboxes") as batch:
        batch.drop_column("stored_bytes")
        batch.drop_column("message_count")
