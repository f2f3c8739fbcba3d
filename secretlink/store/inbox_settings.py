"""Inbox settings: what an inbox's owner (and, for disabling, the operator) has chosen.

One row per inbox in `inbox_settings`, made the first time something is changed; an
inbox without a row has the defaults. The row goes with its inbox (ON DELETE CASCADE).

- paused: senders are refused (403 `inbox_paused`) until the owner resumes.
- retention_days: 1, 7, 30 or 90 days, or None for the instance's default
  (SECRETLINK_RETENTION_DAYS). The purge keeps the shorter of the two: an owner can
  shorten how long the server keeps their messages, never lengthen it past what the
  operator allows.
- hourly_cap: at most this many messages stored in the last hour (None: no cap of the
  owner's own; the instance's rate limits still hold). The hour is the current minute
  and the 59 before it, counted from the messages the inbox holds (arrival times are
  kept to the minute), so a message the owner deleted no longer counts.
- accepts_replies, accepts_attachments: what senders are offered. Attachments do not
  exist yet: the flag is kept and shown to senders, and takes effect when they land.
- moved_to: set when the owner rotated the link; senders are refused (403
  `inbox_moved`) and told only that the inbox moved on, never where.
- disabled, disabled_reason: set by the operator (`secretlink admin inbox disable`);
  senders are refused (403 `inbox_disabled`) with a neutral notice. The reason is the
  operator's note, shown to the owner, never to senders. The owner cannot delete a
  disabled inbox (deleting drops this row, and registering the key again would make
  a fresh, open inbox) nor rotate away from it; the operator can delete it.

Nothing here reads or changes a message's content.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    false,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from secretlink.store.raw_sql import Compiled
from secretlink.store.storage import (
    Base,
    InboxRow,
    MessageRow,
    _delete_inbox,
    _release,
    coarse,
    utcnow,
)

RETENTION_CHOICES = (1, 7, 30, 90)
# A cap above what the default rate limits let through in an hour would mean nothing.
MAX_HOURLY_CAP = 10_000

# Sender-visible states, in the order they win when several hold at once.
OPEN = "open"
PAUSED = "paused"
MOVED = "moved"
DISABLED = "disabled"


class InboxSettingsRow(Base):
    __tablename__ = "inbox_settings"

    inbox_key: Mapped[str] = mapped_column(
        String(43), ForeignKey("inboxes.public_key", ondelete="CASCADE"), primary_key=True
    )
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    retention_days: Mapped[int | None] = mapped_column(Integer)
    hourly_cap: Mapped[int | None] = mapped_column(Integer)
    accepts_replies: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    accepts_attachments: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # No foreign key: the new inbox may be deleted later, and the old one has still
    # moved on. Nobody but the owner ever sees this value.
    moved_to: Mapped[str | None] = mapped_column(String(43))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # The day the operator disabled it (coarse, like every stored time).
    disabled_on: Mapped[datetime | None] = mapped_column(DateTime)


# Every setting, as InboxSettings and the row name them.
SETTINGS_FIELDS = (
    "paused",
    "retention_days",
    "hourly_cap",
    "accepts_replies",
    "accepts_attachments",
    "moved_to",
    "disabled",
    "disabled_reason",
    "disabled_on",
)
SETTINGS_QUERY = (
    select(
        InboxRow.public_key,
        InboxSettingsRow.inbox_key,
        *(getattr(InboxSettingsRow, name) for name in SETTINGS_FIELDS),
    )
    .outerjoin(InboxSettingsRow, InboxSettingsRow.inbox_key == InboxRow.public_key)
    .where(InboxRow.public_key == bindparam("inbox"))
)

# What the owner may change with PATCH; the rest is set by rotation or the operator.
OWNER_FIELDS = ("paused", "retention_days", "hourly_cap", "accepts_replies", "accepts_attachments")


@dataclass(frozen=True)
class InboxSettings:
    paused: bool = False
    retention_days: int | None = None
    hourly_cap: int | None = None
    accepts_replies: bool = True
    accepts_attachments: bool = False
    moved_to: str | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    disabled_on: datetime | None = field(default=None, compare=False)

    @property
    def status(self) -> str:
        """What senders are told: the operator's decision first, then the owner's."""
        if self.disabled:
            return DISABLED
        if self.moved_to:
            return MOVED
        if self.paused:
            return PAUSED
        return OPEN


@dataclass(frozen=True)
class DisabledInbox:
    public_key: str
    reason: str
    disabled_on: datetime | None


def _from_row(row: InboxSettingsRow | None) -> InboxSettings:
    if row is None:
        return InboxSettings()
    return InboxSettings(**{name: getattr(row, name) for name in SETTINGS_FIELDS})


# Outcomes of an owner's deletion.
DELETED = "deleted"
NO_INBOX = "no_inbox"
DISABLED_KEPT = "disabled_kept"
NOT_DISABLED = "not_disabled"

# Outcomes of a rotation that did not happen.
ROTATED = "rotated"
NO_OLD_INBOX = "no_old_inbox"
NO_NEW_INBOX = "no_new_inbox"
OLD_DISABLED = "old_disabled"
ALREADY_MOVED = "already_moved"
NEW_NOT_OPEN = "new_not_open"


# A message refused because its inbox took its owner's hourly cap of messages already.
HOURLY_CAP_REACHED = "hourly_cap_reached"
# The statement that reads what decides whether an inbox takes messages now.
SENDING_QUERY = select(
    InboxSettingsRow.paused,
    InboxSettingsRow.moved_to,
    InboxSettingsRow.disabled,
    InboxSettingsRow.hourly_cap,
).where(InboxSettingsRow.inbox_key == bindparam("inbox"))
# The inbox's messages of the last hour: how many, and the minute the oldest arrived.
LAST_HOUR_QUERY = select(func.count(), func.min(MessageRow.received_at)).where(
    MessageRow.inbox_key == bindparam("inbox"), MessageRow.received_at >= bindparam("since")
)


def hour_start() -> datetime:
    """Where the hour an hourly cap counts starts: this minute and the 59 before."""
    return coarse(utcnow()) - timedelta(minutes=59)


class SendingGate:
    """Which messages of a batch their inboxes take now, decided inside the transaction
    that stores them (secretlink.store.storage runs it in the group commit's writer).

    An inbox that is paused, has moved on or was disabled takes none; one with an
    hourly cap takes what fits under it, counted exactly (the messages of the last
    hour, then those of the batch). A sender's request thus makes no database call
    for these checks: the writer makes one per inbox of the batch, and a second for
    an inbox with a cap (docs/PERFORMANCE.md, "P1"). An inbox that does not exist
    passes here; the quotas, next, find it missing.
    """

    def __init__(self, dialect: Dialect):
        self._settings = Compiled(SENDING_QUERY, dialect)
        self._last_hour = Compiled(LAST_HOUR_QUERY, dialect)

    def refusals(self, cursor, rows: list[dict]) -> list[str | None]:
        """For each row, in order: None if its inbox takes it, or why not (its status,
        or HOURLY_CAP_REACHED)."""
        since = hour_start()
        inboxes = {}  # inbox -> [status, room under the cap or None]
        for key in dict.fromkeys(row["inbox_key"] for row in rows):
            cursor.execute(self._settings.sql, self._settings.parameters(inbox=key))
            found = cursor.fetchone()
            settings = InboxSettings()
            if found is not None:
                paused, moved_to, disabled, cap = found
                settings = InboxSettings(
                    paused=bool(paused), moved_to=moved_to, disabled=bool(disabled), hourly_cap=cap
                )
            room = None
            if settings.status == OPEN and settings.hourly_cap is not None:
                parameters = self._last_hour.parameters(inbox=key, since=since)
                cursor.execute(self._last_hour.sql, parameters)
                room = settings.hourly_cap - cursor.fetchone()[0]
            inboxes[key] = [settings.status, room]
        refusals: list[str | None] = []
        for row in rows:
            state = inboxes[row["inbox_key"]]
            if state[0] != OPEN:
                refusals.append(state[0])
            elif state[1] is not None and state[1] <= 0:
                refusals.append(HOURLY_CAP_REACHED)
            else:
                if state[1] is not None:
                    state[1] -= 1
                refusals.append(None)
        return refusals


class InboxSettingsStore:
    """Reads and changes inbox settings; every method is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    # ---- reading ----

    def get(self, public_key: str) -> InboxSettings | None:
        """The inbox's settings, or None if there is no such inbox.

        Read on every message sent (refuse_closed), so with one plain query rather
        than through an ORM session, which cost a fifth of the submission path's
        Python time (docs/PERFORMANCE.md, "P1")."""
        with self.engine.connect() as connection:
            found = connection.execute(SETTINGS_QUERY, {"inbox": public_key}).first()
        if found is None:
            return None
        if found.inbox_key is None:  # no row: the defaults
            return InboxSettings()
        return InboxSettings(**{name: getattr(found, name) for name in SETTINGS_FIELDS})

    def last_hour(self, public_key: str) -> tuple[int, datetime | None]:
        """Messages this inbox holds that arrived in this minute or the 59 before, and
        the minute the oldest of them arrived (None if there are none)."""
        with self.engine.connect() as connection:
            parameters = {"inbox": public_key, "since": hour_start()}
            count, oldest = connection.execute(LAST_HOUR_QUERY, parameters).one()
            return count, oldest

    # ---- the owner's changes ----

    def update(self, public_key: str, changes: dict) -> InboxSettings | None:
        """Apply the owner's changes (names from OWNER_FIELDS); None if no such inbox."""
        unknown = set(changes) - set(OWNER_FIELDS)
        if unknown:
            raise ValueError(f"not an owner's setting: {sorted(unknown)}")
        with self._session.begin() as session:
            row = self._row_for_update(session, public_key)
            if row is None:
                return None
            for name, value in changes.items():
                setattr(row, name, value)
            return _from_row(row)

    def rotate(self, old_key: str, new_key: str) -> str:
        """Mark `old_key` as moved to `new_key`; one of the outcomes above.

        The new inbox must exist already (the owner made it with the usual PUT), so a
        rotation that stops half-way leaves at worst a new inbox nobody uses yet, never
        an old one moved to nothing. Repeating a done rotation is harmless. The new
        inbox takes the old one's preferences (retention, cap, replies, attachments)
        if it has none of its own yet, so rotating does not undo them (the API copies
        the notification targets the same way: secretlink/notify/targets.py).
        """
        with self._session.begin() as session:
            # Both rows locked in key order, so that two rotations between the same
            # inboxes in opposite directions wait for each other instead of deadlocking.
            rows = {key: self._row_for_update(session, key) for key in sorted((old_key, new_key))}
            old, new = rows[old_key], rows[new_key]
            if new is None:
                return NO_NEW_INBOX
            if old is None:
                return NO_OLD_INBOX
            if old.disabled:
                return OLD_DISABLED
            if old.moved_to:
                return ROTATED if old.moved_to == new_key else ALREADY_MOVED
            if new.disabled or new.moved_to:
                return NEW_NOT_OPEN
            if _from_row(new) == InboxSettings():
                for name in OWNER_FIELDS:
                    if name != "paused":
                        setattr(new, name, getattr(old, name))
            old.moved_to = new_key
            return ROTATED

    def delete_by_owner(self, public_key: str) -> str:
        """Delete the inbox for its owner: DELETED, NO_INBOX, or DISABLED_KEPT when the
        operator disabled it (the row that says so would go with it).

        The settings row is made and locked first, in the same transaction, so an
        operator's disabling that lands at the same moment is either seen here or
        waits until the inbox is gone.
        """
        with self._session.begin() as session:
            row = self._row_for_update(session, public_key)
            if row is None:
                return NO_INBOX
            if row.disabled:
                return DISABLED_KEPT
            return DELETED if _delete_inbox(session, public_key) else NO_INBOX

    def delete_all_messages(self, public_key: str) -> int | None:
        """Delete every message of the inbox; how many, or None if there is no such inbox."""
        with self._session.begin() as session:
            return _delete_messages(session, MessageRow.inbox_key == public_key, public_key)

    # ---- the operator's ----

    def disable(self, public_key: str, reason: str) -> bool:
        """Disable the inbox with the operator's reason; False if there is no such inbox."""
        with self._session.begin() as session:
            row = self._row_for_update(session, public_key)
            if row is None:
                return False
            row.disabled = True
            row.disabled_reason = reason
            row.disabled_on = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
            return True

    def enable(self, public_key: str) -> bool | None:
        """Lift the operator's disabling: True if it was disabled, False if not,
        None if there is no such inbox."""
        with self._session.begin() as session:
            row = self._row_for_update(session, public_key)
            if row is None:
                return None
            was = row.disabled
            row.disabled = False
            row.disabled_reason = None
            row.disabled_on = None
            return was

    def delete_disabled(self, public_key: str) -> str:
        """The operator deletes a disabled inbox with its messages: DELETED, NO_INBOX,
        or NOT_DISABLED (deleting an open inbox is its owner's decision, not the
        operator's). Its key can then be registered again, as a new, empty inbox."""
        with self._session.begin() as session:
            row = self._row_for_update(session, public_key)
            if row is None:
                return NO_INBOX
            if not row.disabled:
                return NOT_DISABLED
            return DELETED if _delete_inbox(session, public_key) else NO_INBOX

    def list_disabled(self) -> list[DisabledInbox]:
        with self._session() as session:
            rows = session.scalars(
                select(InboxSettingsRow)
                .where(InboxSettingsRow.disabled.is_(True))
                .order_by(InboxSettingsRow.inbox_key)
            )
            return [
                DisabledInbox(r.inbox_key, r.disabled_reason or "", r.disabled_on) for r in rows
            ]

    # ---- retention ----

    def purge_by_inbox_retention(self, instance_days: int) -> int:
        """Delete messages past their inbox's own retention; how many.

        Only retentions shorter than the instance's (0: keeps forever) matter here:
        the instance's own purge takes everything older than its retention anyway.
        """
        now = utcnow()
        deleted = 0
        for days in RETENTION_CHOICES:
            if instance_days and days >= instance_days:
                continue
            owners = select(InboxSettingsRow.inbox_key).where(
                InboxSettingsRow.retention_days == days
            )
            with self._session.begin() as session:
                deleted += _delete_messages(
                    session,
                    MessageRow.inbox_key.in_(owners)
                    & (MessageRow.received_at < now - timedelta(days=days)),
                )
        return deleted

    # ---- helpers ----

    def _row_for_update(self, session: Session, public_key: str) -> InboxSettingsRow | None:
        """The inbox's settings row, made with the defaults if it has none; None if
        there is no such inbox. The row is locked until the transaction ends."""
        if session.get(InboxRow, public_key) is None:
            return None
        # Two first changes at once must not both insert: the loser's insert does nothing.
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(InboxSettingsRow).values(inbox_key=public_key).on_conflict_do_nothing()
        )
        return session.scalars(
            select(InboxSettingsRow)
            .where(InboxSettingsRow.inbox_key == public_key)
            .with_for_update()
        ).one()


def _delete_messages(session: Session, where, public_key: str | None = None) -> int | None:
    """Delete the messages matching `where` and take them off the quota counters.

    With `public_key`, None is returned when that inbox does not exist.
    """
    deleted = session.execute(
        delete(MessageRow)
        .where(where)
        .returning(MessageRow.inbox_key, func.length(MessageRow.envelope))
    ).all()
    if public_key is not None and not deleted:
        return None if session.get(InboxRow, public_key) is None else 0
    freed: dict[str, tuple[int, int]] = {}
    for inbox, size in deleted:
        count, total = freed.get(inbox, (0, 0))
        freed[inbox] = (count + 1, total + size)
    _release(session, freed)
    return len(deleted)
