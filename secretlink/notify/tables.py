"""The notifier's two tables, on the storage's metadata (the migrations make them).

notify_targets: per inbox, one sealed blob (keys.Sealer) holding the neutral text,
the longest delay, the push subscription and the webhook URL; nothing in clear but
the inbox key. notify_due: per inbox waiting for its notification, the minute it is
due and whether a sender holds it; nothing more (no count, no message, no time of
arrival). Both go with their
inbox (ON DELETE CASCADE).
"""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from secretlink.store.storage import Base


class NotifyTargetRow(Base):
    __tablename__ = "notify_targets"

    inbox_key: Mapped[str] = mapped_column(
        String(43), ForeignKey("inboxes.public_key", ondelete="CASCADE"), primary_key=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class NotifyDueRow(Base):
    __tablename__ = "notify_due"

    inbox_key: Mapped[str] = mapped_column(
        String(43), ForeignKey("inboxes.public_key", ondelete="CASCADE"), primary_key=True
    )
    due_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # A sender claimed the row: `due_at` is then its lease's end (queue.py).
    claimed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
