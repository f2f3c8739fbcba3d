"""Quotas: how much one inbox, and the whole instance, may hold.

An inbox takes at most SECRETLINK_INBOX_MAX_MESSAGES messages and
SECRETLINK_INBOX_MAX_BYTES envelope bytes; the instance at most
SECRETLINK_STORAGE_BUDGET_BYTES envelope bytes in all (0 switches a cap off). A
sender past a cap gets 409 `inbox_full` or 507 `instance_full`; nothing stored is
ever removed to make room, and the owner's message list says the inbox is full.

The counters live in the database (inboxes.message_count and .stored_bytes, the one
row of instance_usage) and change in the transaction that inserts or deletes the
messages, so they are exact. The decision to store is made inside the group
commit's transaction (`QuotaGate.admit`), with the counters locked: on SQLite the
writer holds the database's write lock, on PostgreSQL `SELECT ... FOR UPDATE` rows.
Concurrent senders therefore cannot overshoot a cap at all; the check made before
the proof of work is spent (`Quotas.refusal` on `Usage`) only spares a sender's
puzzle when the inbox is plainly full.

Locks are always taken in one order, so that writers and deleters never wait on each
other in a cycle: message rows, then inbox rows (sorted by key), then the instance row.
"""

from dataclasses import dataclass

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Dialect

from secretlink.group_commit import STORED, UNKNOWN_INBOX

# Outcomes of one message in a batch, besides the group commit's own.
INBOX_FULL = "inbox_full"
INSTANCE_FULL = "instance_full"

# The smallest v1 envelope (crypto/SPEC.md): an inbox that cannot take one is full.
SMALLEST_ENVELOPE = 306


@dataclass(frozen=True)
class Quotas:
    """The caps; 0 means no cap."""

    inbox_messages: int = 0
    inbox_bytes: int = 0
    instance_bytes: int = 0

    @classmethod
    def from_settings(cls, settings) -> "Quotas":
        return cls(
            inbox_messages=settings.inbox_max_messages,
            inbox_bytes=settings.inbox_max_bytes,
            instance_bytes=settings.storage_budget_bytes,
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
        else:
            self.status = 507
            self.message = "this server is full: it takes no messages until space is freed"
        super().__init__(self.message)
        self.code = reason


def check(quotas: Quotas, usage: Usage, size: int) -> None:
    """Raise QuotaExceeded if a message of `size` bytes does not fit now."""
    reason = quotas.refusal(usage, size)
    if reason is not None:
        raise QuotaExceeded(reason)


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


class _Compiled:
    """A statement compiled once for the driver, run on a raw DB-API cursor."""

    def __init__(self, statement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = tuple(compiled.positiontup or ())
        self.constants = dict(compiled.params)  # literals such as the instance row's id

    def parameters(self, **values):
        values = {**self.constants, **values}
        return tuple(values[name] for name in self.order) if self.positional else values


class QuotaGate:
    """Decides, inside the group commit's transaction, which messages of a batch fit.

    `admit` locks the counters of the batch's inboxes (sorted) and of the instance,
    takes the messages in their order while they fit, adds what it took to the
    counters, and returns each message's outcome; the caller inserts exactly the
    messages marked STORED in the same transaction.
    """

    def __init__(self, dialect: Dialect, inboxes: Table, instance: Table, quotas: Quotas):
        self.quotas = quotas
        self._inbox = _Compiled(
            select(inboxes.c.message_count, inboxes.c.stored_bytes)
            .where(inboxes.c.public_key == bindparam("inbox"))
            .with_for_update(),
            dialect,
        )
        self._instance = _Compiled(
            select(instance.c.stored_bytes).where(instance.c.id == 1).with_for_update(), dialect
        )
        self._add_to_inbox = _Compiled(
            update(inboxes)
            .where(inboxes.c.public_key == bindparam("inbox"))
            .values(
                message_count=inboxes.c.message_count + bindparam("added_count"),
                stored_bytes=inboxes.c.stored_bytes + bindparam("added_bytes"),
            ),
            dialect,
        )
        self._add_to_instance = _Compiled(
            update(instance)
            .where(instance.c.id == 1)
            .values(stored_bytes=instance.c.stored_bytes + bindparam("added_bytes")),
            dialect,
        )

    def admit(self, cursor, rows: list[dict]) -> list[str]:
        counts: dict[str, list[int]] = {}  # inbox -> [messages, bytes, added, added bytes]
        for key in sorted({row["inbox_key"] for row in rows}):
            cursor.execute(self._inbox.sql, self._inbox.parameters(inbox=key))
            found = cursor.fetchone()
            if found is not None:
                counts[key] = [found[0], found[1], 0, 0]
        cursor.execute(self._instance.sql, self._instance.parameters())
        (instance_bytes,) = cursor.fetchone()
        outcomes = []
        added_bytes = 0
        for row in rows:
            inbox = counts.get(row["inbox_key"])
            if inbox is None:
                outcomes.append(UNKNOWN_INBOX)
                continue
            size = len(row["envelope"])
            reason = self.quotas.refusal(Usage(inbox[0], inbox[1], instance_bytes), size)
            if reason is not None:
                outcomes.append(reason)
                continue
            inbox[0] += 1
            inbox[1] += size
            inbox[2] += 1
            inbox[3] += size
            instance_bytes += size
            added_bytes += size
            outcomes.append(STORED)
        changed = [
            self._add_to_inbox.parameters(inbox=key, added_count=c[2], added_bytes=c[3])
            for key, c in counts.items()
            if c[2]
        ]
        if changed:
            cursor.executemany(self._add_to_inbox.sql, changed)
        if added_bytes:
            cursor.execute(
                self._add_to_instance.sql, self._add_to_instance.parameters(added_bytes=added_bytes)
            )
        return outcomes
