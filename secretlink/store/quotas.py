"""Quotas: how much one inbox, and the whole instance, may hold.

An inbox takes at most SECRETLINK_INBOX_MAX_MESSAGES messages and
SECRETLINK_INBOX_MAX_BYTES envelope bytes; the instance at most
SECRETLINK_STORAGE_BUDGET_BYTES envelope bytes in all, and at most
SECRETLINK_MAX_INBOXES inboxes (0 switches a cap off). A sender past a cap gets 409
`inbox_full` or 507 `instance_full`, and so does the creation of an inbox past the
instance's count; nothing stored is ever removed to make room, and the owner's
message list says the inbox is full.

The counters live in the database (inboxes.message_count and .stored_bytes, the one
row of instance_usage) and change in the transaction that inserts or deletes the
messages, so they are exact. The decision to store is made inside the group
commit's transaction (`QuotaGate.admit`), with the counters locked: on SQLite the
writer holds the database's write lock, on PostgreSQL the counters' UPDATE holds
their rows until the commit.
Concurrent senders therefore cannot overshoot a cap at all; the check made before
the proof of work is spent (`Quotas.refusal` on `Usage`) only spares a sender's
puzzle when the inbox is plainly full.

Locks are always taken in one order, so that writers and deleters never wait on each
other in a cycle: message rows, then inbox rows (sorted by key), then the instance row.
"""

from dataclasses import dataclass

from sqlalchemy import Table, bindparam, update
from sqlalchemy.engine import Dialect

from secretlink.store.group_commit import STORED, UNKNOWN_INBOX
from secretlink.store.raw_sql import Compiled

# Outcomes of one message in a batch, besides the group commit's own.
INBOX_FULL = "inbox_full"
INSTANCE_FULL = "instance_full"
# A new inbox refused because the instance holds as many as it may (also 507).
NO_MORE_INBOXES = "no_more_inboxes"

# The smallest v1 envelope (crypto/SPEC.md): an inbox that cannot take one is full.
SMALLEST_ENVELOPE = 306


@dataclass(frozen=True)
class Quotas:
    """The caps; 0 means no cap."""

    inbox_messages: int = 0
    inbox_bytes: int = 0
    instance_bytes: int = 0
    instance_inboxes: int = 0
    # Attachment bytes one inbox holds (secretlink/store/blobs.py counts them).
    inbox_attachment_bytes: int = 0

    @classmethod
    def from_settings(cls, settings) -> "Quotas":
        return cls(
            inbox_messages=settings.inbox_max_messages,
            inbox_bytes=settings.inbox_max_bytes,
            instance_bytes=settings.storage_budget_bytes,
            instance_inboxes=settings.max_inboxes,
            inbox_attachment_bytes=settings.inbox_max_attachment_bytes,
        )

    def refusal(self, usage: "Usage", size: int) -> str | None:
        """Why a message of `size` bytes does not fit, or None if it does."""
        if self.inbox_messages and usage.messages + 1 > self.inbox_messages:
            return INBOX_FULL
        if self.inbox_bytes and usage.bytes + size > self.inbox_bytes:
            return INBOX_FULL
        if self.instance_bytes and usage.instance_bytes + size > self.instance_bytes:
            return INSTANCE_FULL
        return None


@dataclass(frozen=True)
class Usage:
    """What one inbox holds, and what the whole instance holds (envelope bytes)."""

    messages: int
    bytes: int
    instance_bytes: int


class QuotaExceeded(Exception):
    """A message that does not fit: 409 `inbox_full` or 507 `instance_full`.

    Not an ApiError: storage raises it, and storage (imported by the migrations)
    stays free of Flask. The API answers it with `status`, `code` and `message`.
    """

    def __init__(self, reason: str):
        if reason == INBOX_FULL:
            self.status = 409
            self.message = (
                "this inbox is full: it takes no more messages until its owner deletes some"
            )
        elif reason == NO_MORE_INBOXES:
            self.status = 507
            self.message = "this server holds as many inboxes as it may: it creates no new ones"
            reason = INSTANCE_FULL
        else:
            self.status = 507
            self.message = "this server is full: it takes no messages until space is freed"
        super().__init__(self.message)
        self.code = reason


def usage_json(quotas: Quotas, usage: Usage) -> dict:
    """The owner's view: what the inbox holds, its caps, and whether it is full."""
    reason = quotas.refusal(usage, SMALLEST_ENVELOPE)
    return {
        "messages": usage.messages,
        "bytes": usage.bytes,
        "max_messages": quotas.inbox_messages or None,
        "max_bytes": quotas.inbox_bytes or None,
        # Whether a sender would be refused even the smallest message now, and why.
        "full": reason is not None,
        "instance_full": reason == INSTANCE_FULL,
    }


class QuotaGate:
    """Decides, inside the group commit's transaction, which messages of a batch fit.

    `admit` adds the whole batch to the counters of its inboxes (sorted) and of the
    instance with UPDATE ... RETURNING, which locks those rows (the database's write
    lock on SQLite, row locks on PostgreSQL) and gives the totals from which the
    counters before the batch follow. It then takes the messages in their order while
    they fit and, in the rare batch where some do not, takes those back off the
    counters. The caller inserts exactly the messages marked STORED in the same
    transaction. In the common case that is two statements per batch, not per message.
    """

    def __init__(self, dialect: Dialect, inboxes: Table, instance: Table, quotas: Quotas):
        self.quotas = quotas
        self._add_to_inbox = Compiled(
            update(inboxes)
            .where(inboxes.c.public_key == bindparam("inbox"))
            .values(
                message_count=inboxes.c.message_count + bindparam("added_count"),
                stored_bytes=inboxes.c.stored_bytes + bindparam("added_bytes"),
            )
            .returning(inboxes.c.message_count, inboxes.c.stored_bytes),
            dialect,
        )
        self._add_to_instance = Compiled(
            update(instance)
            .where(instance.c.id == 1)
            .values(stored_bytes=instance.c.stored_bytes + bindparam("added_bytes"))
            .returning(instance.c.stored_bytes),
            dialect,
        )

    def _add(self, cursor, statement: Compiled, **values) -> tuple | None:
        cursor.execute(statement.sql, statement.parameters(**values))
        return cursor.fetchone()

    def admit(self, cursor, rows: list[dict]) -> list[str]:
        asked: dict[str, list[int]] = {}  # inbox -> [messages, bytes] this batch brings
        for row in rows:
            totals = asked.setdefault(row["inbox_key"], [0, 0])
            totals[0] += 1
            totals[1] += len(row["envelope"])
        held: dict[str, list[int]] = {}  # inbox -> [messages, bytes] before this batch
        for key in sorted(asked):
            found = self._add(
                cursor,
                self._add_to_inbox,
                inbox=key,
                added_count=asked[key][0],
                added_bytes=asked[key][1],
            )
            if found is not None:
                held[key] = [found[0] - asked[key][0], found[1] - asked[key][1]]
        batch_bytes = sum(size for key, (_, size) in asked.items() if key in held)
        (instance_total,) = self._add(cursor, self._add_to_instance, added_bytes=batch_bytes)
        instance_bytes = instance_total - batch_bytes

        outcomes = []
        refused: dict[str, list[int]] = {}
        for row in rows:
            inbox = held.get(row["inbox_key"])
            if inbox is None:
                outcomes.append(UNKNOWN_INBOX)
                continue
            size = len(row["envelope"])
            reason = self.quotas.refusal(Usage(inbox[0], inbox[1], instance_bytes), size)
            if reason is None:
                inbox[0] += 1
                inbox[1] += size
                instance_bytes += size
                outcomes.append(STORED)
            else:
                taken_back = refused.setdefault(row["inbox_key"], [0, 0])
                taken_back[0] += 1
                taken_back[1] += size
                outcomes.append(reason)
        if refused:  # the counters were raised for the whole batch: lower them again
            for key in sorted(refused):
                self._add(
                    cursor,
                    self._add_to_inbox,
                    inbox=key,
                    added_count=-refused[key][0],
                    added_bytes=-refused[key][1],
                )
            self._add(
                cursor,
                self._add_to_instance,
                added_bytes=-sum(size for _, size in refused.values()),
            )
        return outcomes
