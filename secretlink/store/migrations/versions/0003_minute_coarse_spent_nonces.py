"""Spent nonces tell no second and no order; messages get an index for the load count.

Spent nonces were stored as they came (the raw nonce, in insertion order) with their
expiry to the second, and a puzzle's expiry minus ten minutes is the second its
message was being sent. From here on a spent nonce is stored as a hash, with its
expiry rounded up to the minute (later, never earlier: a purge must not re-enable a
replay), and on SQLite in a WITHOUT ROWID table, whose rows sit in the order of
their random key instead of a rowid that counts insertions. The rows already there
are converted the same way. The table is rebuilt on PostgreSQL too, so that no row
keeps its old place.

The new index on messages (received_at, inbox_key) lets the proof-of-work gate
count the last two minutes of arrivals, for one inbox and for all, from the
database that every worker shares.

Downgrading keeps the hashed keys (a hash cannot be undone): nonces spent before
the downgrade could be used once more until they expire, ten minutes at most.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# storage.SPENT_NONCE_PURPOSE as it was when this revision was written.
SPENT_NONCE_PURPOSE = b"secretlink/v1/spent-nonce\x00"


def _hashed(nonce: bytes) -> bytes:
    return blake2b(SPENT_NONCE_PURPOSE + nonce, digest_size=32, encoder=RawEncoder)


def _minute_up(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _nonce_table(*, rowid: bool) -> None:
    op.create_table(
        "used_nonces",
        sa.Column("nonce", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("used_nonces_pkey")),
        sqlite_with_rowid=rowid,
    )
    op.create_index(op.f("ix_used_nonces_expires_at"), "used_nonces", ["expires_at"])


def _rebuild_nonces(*, rowid: bool, convert: bool) -> None:
    bind = op.get_bind()
    old = sa.table(
        "used_nonces", sa.column("nonce", sa.LargeBinary), sa.column("expires_at", sa.DateTime)
    )
    rows = bind.execute(sa.select(old.c.nonce, old.c.expires_at)).all()
    op.drop_index(op.f("ix_used_nonces_expires_at"), table_name="used_nonces")
    op.drop_table("used_nonces")
    _nonce_table(rowid=rowid)
    if not rows:
        return
    if convert:
        # Sorted by the new key: the rebuilt table keeps no trace of the old order.
        rows = sorted((_hashed(bytes(nonce)), _minute_up(expires)) for nonce, expires in rows)
    else:
        rows = [(bytes(nonce), expires) for nonce, expires in rows]
    new = sa.table(
        "used_nonces", sa.column("nonce", sa.LargeBinary), sa.column("expires_at", sa.DateTime)
    )
    bind.execute(sa.insert(new), [{"nonce": n, "expires_at": e} for n, e in rows])


def upgrade() -> None:
    _rebuild_nonces(rowid=False, convert=True)
    op.create_index("ix_messages_received_at_inbox_key", "messages", ["received_at", "inbox_key"])


def downgrade() -> None:
    op.drop_index("ix_messages_received_at_inbox_key", table_name="messages")
    _rebuild_nonces(rowid=True, convert=False)
