"""Notifications: each inbox's sealed targets, and the queue of inboxes due a notification.

notify_targets holds one sealed blob per inbox (secretlink/notify/keys.py);
notify_due holds, per inbox waiting for its notification, only the minute it is due.
Both are deleted with their inbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The one place this revision's number is written (renumber here, and the file name).
revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notify_targets",
        sa.Column("inbox_key", sa.String(length=43), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_key"],
            ["inboxes.public_key"],
            name=op.f("notify_targets_inbox_key_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbox_key", name=op.f("notify_targets_pkey")),
    )
    op.create_table(
        "notify_due",
        sa.Column("inbox_key", sa.String(length=43), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_key"],
            ["inboxes.public_key"],
            name=op.f("notify_due_inbox_key_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbox_key", name=op.f("notify_due_pkey")),
    )
    op.create_index(op.f("ix_notify_due_due_at"), "notify_due", ["due_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notify_due_due_at"), table_name="notify_due")
    op.drop_table("notify_due")
    op.drop_table("notify_targets")
