"""Initial schema: inboxes, messages and spent challenge nonces.

This is also the schema that Base.metadata.create_all made before migrations
existed, so secretlink.store.migrate stamps such a database at this revision.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inboxes",
        sa.Column("public_key", sa.String(length=43), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("created_on", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("public_key", name=op.f("inboxes_pkey")),
    )
    op.create_table(
        "messages",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("inbox_key", sa.String(length=43), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_key"],
            ["inboxes.public_key"],
            name=op.f("messages_inbox_key_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("messages_pkey")),
        sa.UniqueConstraint("id", name=op.f("messages_id_key")),
    )
    op.create_index("ix_messages_inbox_seq", "messages", ["inbox_key", "seq"])
    op.create_table(
        "used_nonces",
        sa.Column("nonce", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("used_nonces_pkey")),
    )
    op.create_index(op.f("ix_used_nonces_expires_at"), "used_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_used_nonces_expires_at"), table_name="used_nonces")
    op.drop_table("used_nonces")
    op.drop_index("ix_messages_inbox_seq", table_name="messages")
    op.drop_table("messages")
    op.drop_table("inboxes")
