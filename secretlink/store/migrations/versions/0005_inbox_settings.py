"""Inbox settings: pause, retention, hourly cap, replies and attachments, rotation, and
the operator's disabling (secretlink/store/inbox_settings.py).

One row per inbox that has changed anything; an inbox without one has the defaults,
so existing inboxes need no row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox_settings",
        sa.Column("inbox_key", sa.String(length=43), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("hourly_cap", sa.Integer(), nullable=True),
        sa.Column("accepts_replies", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("accepts_attachments", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("moved_to", sa.String(length=43), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_on", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbox_key"],
            ["inboxes.public_key"],
            name=op.f("inbox_settings_inbox_key_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbox_key", name=op.f("inbox_settings_pkey")),
    )


def downgrade() -> None:
    op.drop_table("inbox_settings")
