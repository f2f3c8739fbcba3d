"""The due queue: which inboxes wait for a notification, and from which minute.

Storing a message marks its inbox due at a random minute within the owner's longest
delay; later messages before it is claimed change nothing (they share the one
notification), so the time a notification arrives says little about when any
message did. A sender claims a due row by moving its minute forward by a lease and
marking it claimed: only one claim can succeed (PostgreSQL: SELECT ... FOR UPDATE
SKIP LOCKED; SQLite: an UPDATE that matches only the minute it saw), and if the
sender dies the row is due again when the lease ends. Delivered rows are deleted.

A message that arrives while a sender holds the row may come after the sender read
the targets or sent: it re-arms the row (a new random minute, no longer claimed), and
the sender's `done` then leaves it, so that message gets a notification of its own.
"""

import secrets
from datetime import datetime, timedelta
from functools import cached_property

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Engine

from secretlink.notify.tables import NotifyDueRow
from secretlink.notify.upsert import upsert
from secretlink.store.raw_sql import Compiled
from secretlink.store.storage import coarse, utcnow

CLAIM_BATCH = 10


def due_minute(now: datetime, max_delay_minutes: int) -> datetime:
    """A random moment within the delay, kept to the minute (rounded down)."""
    delay = secrets.randbelow(max_delay_minutes * 60 + 1)
    return coarse(now + timedelta(seconds=delay))


class DueQueue:
    def __init__(self, engine: Engine):
        self.engine = engine

    @cached_property
    def _mark(self) -> Compiled:
        """mark_due_in's statement, run by the writer for every batch: compiled once."""
        table = NotifyDueRow.__table__
        marked = {
            "inbox_key": bindparam("inbox"),
            "due_at": bindparam("due_at", type_=table.c.due_at.type),
            "claimed": False,
        }
        statement = upsert(
            self.engine.dialect, table, marked, update=("due_at", "claimed"), where=table.c.claimed
        )
        return Compiled(statement, self.engine.dialect)

    def mark_due_in(self, cursor, inbox_key: str, due_at: datetime) -> None:
        """Mark the inbox due at `due_at`, unless it is already waiting (batching), in the
        transaction that stores its message, on that transaction's DB-API cursor
        (Notifications.mark_due_in): the message and its mark commit together.

        A row a sender holds is not waiting: the notification being sent may have
        left before this message came, so the row is re-armed for `due_at`.
        """
        cursor.execute(self._mark.sql, self._mark.parameters(inbox=inbox_key, due_at=due_at))

    def claim(self, lease_minutes: int, now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Claim up to CLAIM_BATCH due inboxes: [(inbox key, lease minute)].

        The lease minute is what `done` needs to delete the row: a row claimed again
        by another sender after a lease ran out is then not deleted by the first.
        """
        now = now or utcnow()
        lease = coarse(now) + timedelta(minutes=lease_minutes)
        due = (
            select(NotifyDueRow.inbox_key, NotifyDueRow.due_at)
            .where(NotifyDueRow.due_at <= now)
            .order_by(NotifyDueRow.due_at)
            .limit(CLAIM_BATCH)
        )
        if self.engine.dialect.name == "postgresql":
            return [(key, lease) for key in self._claim_locked(due, lease)]
        return [(key, lease) for key in self._claim_compare(due, lease)]

    def _claim_locked(self, due, lease: datetime) -> list[str]:
        # Rows another sender holds locked are skipped, not waited for.
        with self.engine.begin() as connection:
            keys = list(
                connection.scalars(
                    due.with_only_columns(NotifyDueRow.inbox_key).with_for_update(skip_locked=True)
                )
            )
            if keys:
                connection.execute(
                    update(NotifyDueRow)
                    .where(NotifyDueRow.inbox_key.in_(keys))
                    .values(due_at=lease, claimed=True)
                )
        return keys

    def _claim_compare(self, due, lease: datetime) -> list[str]:
        # SQLite has one writer at a time: each UPDATE changes the row only if it still
        # has the minute read, so of two senders that read the same row, one wins.
        with self.engine.connect() as connection:
            seen = connection.execute(due).all()
        claimed = []
        with self.engine.begin() as connection:
            for key, due_at in seen:
                changed = connection.execute(
                    update(NotifyDueRow)
                    .where(NotifyDueRow.inbox_key == key, NotifyDueRow.due_at == due_at)
                    .values(due_at=lease, claimed=True)
                ).rowcount
                if changed == 1:
                    claimed.append(key)
        return claimed

    def done(self, inbox_key: str, lease: datetime) -> None:
        """Delete a claimed row (delivered, or given up on), if it is still ours: not
        claimed again by another sender, and not re-armed by a message meanwhile (its
        new minute could equal the lease, hence the flag)."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(NotifyDueRow).where(
                    NotifyDueRow.inbox_key == inbox_key,
                    NotifyDueRow.due_at == lease,
                    NotifyDueRow.claimed.is_(True),
                )
            )

    def pending(self) -> dict[str, datetime]:
        """Every waiting inbox and the minute it is due."""
        query = select(NotifyDueRow.inbox_key, NotifyDueRow.due_at)
        with self.engine.connect() as connection:
            return {key: due_at for key, due_at in connection.execute(query)}
