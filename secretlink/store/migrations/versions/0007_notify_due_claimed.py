"""notify_due.claimed: whether a sender holds the row (its minute is then a lease).

A message that arrives while a sender holds its inbox's row clears the flag and sets
a new due minute, so the sender's `done` leaves the row for the new message's
notification (secretlink/notify/queue.py). Rows that exist when this runs count as
not held: a sender working on one right then leaves it in place, and it is sent
again when its lease ends, once more rather than not at all.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The one place this revision's number is written (renumber here, and the file name).
revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notify_due",
        sa.Column("claimed", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("notify_due") as batch:
        batch.drop_column("claimed")
