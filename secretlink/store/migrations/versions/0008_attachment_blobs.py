"""Attachment blobs (secretlink/store/blobs.py): one row per encrypted file, its inbox,
exact length, whether its upload is complete, the message that lists it, and the
minute its upload started. The bytes live in files, not in the database.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("inbox_key", sa.String(length=43), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_key"],
            ["inboxes.public_key"],
            name=op.f("blobs_inbox_key_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("blobs_message_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("blobs_pkey")),
    )
    op.create_index(op.f("ix_blobs_inbox_key"), "blobs", ["inbox_key"], unique=False)
    op.create_index(op.f("ix_blobs_message_id"), "blobs", ["message_id"], unique=False)
    op.create_index(op.f("ix_blobs_started_at"), "blobs", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_blobs_started_at"), table_name="blobs")
    op.drop_index(op.f("ix_blobs_message_id"), table_name="blobs")
    op.drop_index(op.f("ix_blobs_inbox_key"), table_name="blobs")
    op.drop_table("blobs")
