"""Everything the server keeps, and the only module that reads or writes its rows.

What is stored: inboxes (public key, optional prompt, creation day), messages
(random id, inbox, arrival time rounded down to the minute, envelope bytes), and
spent single-use nonces (challenges, puzzles) until they expire. No IP addresses,
no user agents, no plaintext. Every method is one transaction: it commits whole or
not at all.

No stored value is finer than the minute (docs/THREAT-MODEL.md): arrival times are
rounded down, and a spent nonce's expiry is rounded *up* to the minute, so that a
purge never forgets a nonce while its puzzle or challenge could still be used. A
spent nonce is stored as a hash, in a table kept in the hash's order (SQLite:
WITHOUT ROWID), so neither its key nor its place says when it was spent or links
it to a message.
The models here describe the tables; the migrations in secretlink/store/migrations make them.
"""

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from secretlink.store import migrate
from secretlink.store.database import make_engine
from secretlink.store.group_commit import COLUMNS as MESSAGE_COLUMNS
from secretlink.store.group_commit import STORED, UNKNOWN_INBOX, GroupCommit
from secretlink.store.quotas import (
    INBOX_FULL,
    INSTANCE_FULL,
    NO_MORE_INBOXES,
    QuotaExceeded,
    QuotaGate,
    Quotas,
    Usage,
)
from secretlink.store.spent_nonces import Spend, SpendGate
from secretlink.store.writer_process import WriterClient

log = logging.getLogger(__name__)

# Constraint names are part of the schema that migrations alter, so they must not be
# left to each database. These are PostgreSQL's own defaults, which is also what a
# database made by create_all before migrations existed carries on PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0N_name)s_key",
    "fk": "%(table_name)s_%(column_0N_name)s_fkey",
    "ck": "%(table_name)s_%(column_0N_name)s_check",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InboxRow(Base):
    __tablename__ = "inboxes"

    public_key: Mapped[str] = mapped_column(String(43), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text, default="")
    created_on: Mapped[datetime] = mapped_column(DateTime)
    # What the inbox holds, kept with every insert and delete (secretlink/store/quotas.py).
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class InstanceUsageRow(Base):
    """One row (id 1): the envelope bytes the whole instance holds."""

    __tablename__ = "instance_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_inbox_seq", "inbox_key", "seq"),
        # The proof-of-work load is counted from the last two minutes of arrivals.
        Index("ix_messages_received_at_inbox_key", "received_at", "inbox_key"),
    )

    # seq is the internal order only; clients see the random id. It is one counter
    # for the instance, so it (like the rows' physical order) tells which message
    # arrived first, never when: docs/THREAT-MODEL.md, "What a database copy shows".
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    inbox_key: Mapped[str] = mapped_column(
        String(43), ForeignKey("inboxes.public_key", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(DateTime)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)


class UsedNonceRow(Base):
    __tablename__ = "used_nonces"
    # Rows live in the order of their (hashed, random) key, not of their insertion.
    __table_args__ = ({"sqlite_with_rowid": False},)

    nonce: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


USAGE_QUERY = select(
    InboxRow.message_count,
    InboxRow.stored_bytes,
    select(InstanceUsageRow.stored_bytes).where(InstanceUsageRow.id == 1).scalar_subquery(),
).where(InboxRow.public_key == bindparam("inbox"))


@dataclass(frozen=True)
class Inbox:
    public_key: str
    prompt: str


@dataclass(frozen=True)
class StoredMessage:
    id: str
    received_at: datetime
    envelope: bytes


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def coarse(moment: datetime) -> datetime:
    """Arrival times are kept to the minute: enough to sort a reading, less to correlate."""
    return moment.replace(second=0, microsecond=0)


def minute_up(moment: datetime) -> datetime:
    """`moment` rounded up to the next whole minute (unchanged if it is one)."""
    floor = coarse(moment)
    return floor if floor == moment else floor + timedelta(minutes=1)


SPENT_NONCE_PURPOSE = b"secretlink/v1/spent-nonce\x00"
# A message's outcome when its puzzle was spent already (beside group_commit's STORED
# and UNKNOWN_INBOX, and the quotas' refusals).
PUZZLE_USED = "puzzle_used"
QUOTA_REFUSALS = (INBOX_FULL, INSTANCE_FULL)


def spent_nonce_key(nonce: bytes) -> bytes:
    """What is stored for a spent nonce: a hash, the same length whatever it spent."""
    # hashlib's BLAKE2b, as libsodium's generichash (migration 0003 writes the same).
    return hashlib.blake2b(SPENT_NONCE_PURPOSE + nonce, digest_size=32).digest()


def new_message_row(public_key: str, envelope: bytes, spend: Spend | None = None) -> dict:
    """A message as stored: a random id, and only the minute it arrived; `spend`, the
    puzzle it pays with, is recorded as spent in the same transaction, not stored with it."""
    return {
        "id": secrets.token_urlsafe(16),
        "inbox_key": public_key,
        "received_at": coarse(utcnow()),
        "envelope": envelope,
        "spend": spend,
    }


def spend_of(nonce: bytes, expires_at: datetime) -> Spend:
    """How a single-use nonce valid until `expires_at` is recorded as spent."""
    return Spend(spent_nonce_key(nonce), minute_up(expires_at))


class PuzzleUsed(Exception):
    """The message's puzzle was spent already (by another message): 400 `puzzle_used`."""


class NotTaken(Exception):
    """A check added with Storage.add_check refused the message; `reason` is what the
    check gave (an inbox's status, say), for the API to answer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Given the writer's cursor inside its transaction and the batch's rows: for each row,
# None if it may be stored, or why not.
Check = Callable[[object, list[dict]], list[str | None]]
# Given the cursor of the transaction that stores messages and the inboxes they went to
# (each once, one call per batch): work that commits with them (the notifications).
Marker = Callable[[object, list[str]], None]


class Storage:
    def __init__(self, engine: Engine, quotas: Quotas | None = None):
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._gate = QuotaGate(
            engine.dialect, InboxRow.__table__, InstanceUsageRow.__table__, quotas or Quotas()
        )
        self._spends = SpendGate(engine.dialect, UsedNonceRow.__table__)
        self._checks: list[Check] = []
        self._markers: list[Marker] = []
        self._group_commit = GroupCommit(
            engine, MessageRow.__table__, admit=self._admit, after_insert=self._mark
        )
        # Where add_message_async sends messages: this process's own group commit, or
        # the instance's writer process (use_writer_process).
        self._writer: GroupCommit | WriterClient = self._group_commit

    def use_writer_process(self, socket_path: str) -> None:
        """Send messages from an event loop to the writer process listening at
        `socket_path` (secretlink.store.writer_process); this process's own group
        commit still takes them while that process cannot be reached."""
        self._writer = WriterClient(socket_path, self._group_commit)

    def settle_messages(self, rows: list[dict]) -> list[str | BaseException]:
        """Store what may be stored of message rows in one transaction, with every check
        add_message makes; each row's outcome or error (for the writer process)."""
        return self._group_commit.settle(rows)

    def add_check(self, check: Check) -> None:
        """Have `check` decide, in the transaction that stores them, which messages may
        be stored (after their puzzles, before the quotas): the app adds the inbox's
        own state (secretlink.store.inbox_settings.SendingGate)."""
        self._checks.append(check)

    def on_stored(self, marker: Marker) -> None:
        """Have `marker` run in each transaction that stores messages, told the inboxes
        they went to (the notifier marks them due: the mark commits with the messages,
        in the same fsync). A marker that fails is logged and its work undone, never
        the sender's error: the messages are stored all the same."""
        self._markers.append(marker)

    def _mark(self, cursor, rows: list[dict]) -> None:
        """The markers, inside the transaction that stores `rows`, each in a savepoint:
        a failing one (on PostgreSQL a failed statement spoils the transaction) is
        rolled back alone."""
        if not self._markers:  # notifications off: nothing to work out per batch
            return
        inbox_keys = list(dict.fromkeys(row["inbox_key"] for row in rows))
        for marker in self._markers:
            cursor.execute("SAVEPOINT stored_marks")
            try:
                marker(cursor, inbox_keys)
            except Exception:
                log.exception("marking stored messages failed; they are stored all the same")
                cursor.execute("ROLLBACK TO SAVEPOINT stored_marks")
            cursor.execute("RELEASE SAVEPOINT stored_marks")

    @property
    def quotas(self) -> Quotas:
        return self._gate.quotas

    @classmethod
    def from_url(cls, database_url: str, quotas: Quotas | None = None) -> "Storage":
        return cls(make_engine(database_url), quotas)

    def create_schema(self) -> None:
        """Bring the schema to the newest revision (the migrations own it, not the models)."""
        # The same engine, not its URL: SQLite's PRAGMAs apply, and an in-memory
        # database is the one this Storage reads.
        migrate.upgrade_engine(self.engine)

    # ---- inboxes ----

    def save_inbox(self, public_key: str, prompt: str) -> bool:
        """Create the inbox or update its prompt; True when it was created.

        Two requests creating the same inbox at once both find no row; the second
        insert then breaks the primary key. That request lost the race, not its
        inbox: it runs again and finds the row to update (the last prompt wins).
        """
        try:
            return self._create_or_update_inbox(public_key, prompt)
        except IntegrityError:
            return self._create_or_update_inbox(public_key, prompt)

    def _create_or_update_inbox(self, public_key: str, prompt: str) -> bool:
        with self._session.begin() as session:
            row = session.get(InboxRow, public_key)
            if row is not None:
                row.prompt = prompt
                return False
            cap = self.quotas.instance_inboxes
            # Counted in the creating transaction: concurrent creations can pass the
            # cap by at most the number in flight at once (documented in DEPLOY).
            if cap and session.scalar(select(func.count()).select_from(InboxRow)) >= cap:
                raise QuotaExceeded(NO_MORE_INBOXES)
            session.add(
                InboxRow(
                    public_key=public_key,
                    prompt=prompt,
                    created_on=utcnow().replace(hour=0, minute=0, second=0, microsecond=0),
                )
            )
        return True

    def get_inbox(self, public_key: str) -> Inbox | None:
        with self._session() as session:
            row = session.get(InboxRow, public_key)
            return Inbox(row.public_key, row.prompt) if row else None

    def usage(self, public_key: str) -> Usage | None:
        """What the inbox and the instance hold; None if there is no such inbox.

        Asked on every listing of an inbox's messages, so through Core, not an ORM
        session (a quarter of the time). Senders' messages are counted against the
        quotas where they are stored (QuotaGate).
        """
        with self.engine.connect() as connection:
            found = connection.execute(USAGE_QUERY, {"inbox": public_key}).first()
            return Usage(*found) if found else None

    def delete_inbox(self, public_key: str) -> bool:
        """Delete the inbox whatever its settings (the owner's path goes through
        InboxSettingsStore.delete_by_owner, which refuses a disabled one)."""
        with self._session.begin() as session:
            return _delete_inbox(session, public_key)

    # ---- messages ----

    def add_message(
        self, public_key: str, envelope: bytes, spend: Spend | None = None
    ) -> str | None:
        """Store an envelope durably, with its puzzle's `spend` recorded in the same
        transaction; return its new id, or None if the inbox does not exist.

        Concurrent calls are committed together (secretlink.store.group_commit).
        Raises QuotaExceeded when the inbox or the instance has no room for it (the
        puzzle is then not spent), PuzzleUsed when its puzzle was spent already.
        """
        row = new_message_row(public_key, envelope, spend)
        return _stored(row["id"], self._group_commit.insert(row))

    async def add_message_async(
        self, public_key: str, envelope: bytes, spend: Spend | None = None
    ) -> str | None:
        """add_message() for a caller on an event loop (secretlink/web/fast_path.py)."""
        row = new_message_row(public_key, envelope, spend)
        return _stored(row["id"], await self._writer.insert_async(row))

    def insert_message(
        self, connection, public_key: str, envelope: bytes, spend: Spend | None = None
    ) -> str | None:
        """Store an envelope inside the caller's transaction (for a message whose blobs
        are linked in the same one: secretlink.store.blobs); its id, or None if the
        inbox does not exist. Raises QuotaExceeded and PuzzleUsed as add_message does."""
        row = new_message_row(public_key, envelope, spend)
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            [outcome] = self._admit(cursor, [row])
            message_id = _stored(row["id"], outcome)
            if message_id is not None:
                columns = {name: row[name] for name in MESSAGE_COLUMNS}
                connection.execute(MessageRow.__table__.insert().values(**columns))
                self._mark(cursor, [row])
        finally:
            cursor.close()
        return message_id

    def _admit(self, cursor, rows: list[dict]) -> list[str]:
        """Inside the transaction that stores `rows`: which of them may be stored. Their
        puzzles are spent first (a puzzle spent before refuses its message); the added
        checks (the inbox's state), then the quotas, decide among the others, and a
        message refused there gets its puzzle back."""
        used = self._spends.spend(cursor, [row["spend"] for row in rows])
        outcomes: list[str | None] = [PUZZLE_USED if spent else None for spent in used]
        for check in self._checks:
            waiting = [i for i, outcome in enumerate(outcomes) if outcome is None]
            if waiting:
                refusals = check(cursor, [rows[i] for i in waiting])
                for i, refusal in zip(waiting, refusals, strict=True):
                    outcomes[i] = refusal
        waiting = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if waiting:
            decided = self._gate.admit(cursor, [rows[i] for i in waiting])
            for i, outcome in zip(waiting, decided, strict=True):
                outcomes[i] = outcome
        self._spends.unspend(
            cursor,
            [
                row["spend"]
                for row, outcome, spent in zip(rows, outcomes, used, strict=True)
                if outcome != STORED and not spent and row["spend"] is not None
            ],
        )
        return outcomes

    def list_messages(
        self, public_key: str, limit: int, before: str | None = None
    ) -> list[StoredMessage] | None:
        """Newest first, `limit` at most, older than message `before` (keyset paging).

        Returns None when `before` names no message of this inbox.
        """
        with self._session() as session:
            query = select(MessageRow).where(MessageRow.inbox_key == public_key)
            if before is not None:
                anchor = session.scalar(
                    select(MessageRow.seq).where(
                        MessageRow.id == before, MessageRow.inbox_key == public_key
                    )
                )
                if anchor is None:
                    return None
                query = query.where(MessageRow.seq < anchor)
            rows = session.scalars(query.order_by(MessageRow.seq.desc()).limit(limit))
            return [StoredMessage(r.id, r.received_at, r.envelope) for r in rows]

    def delete_message(self, public_key: str, message_id: str) -> bool:
        with self._session.begin() as session:
            size = session.scalar(
                delete(MessageRow)
                .where(MessageRow.id == message_id, MessageRow.inbox_key == public_key)
                .returning(func.length(MessageRow.envelope))
            )
            if size is None:
                return False
            _release(session, {public_key: (1, size)})
            return True

    def purge_messages(self, received_before: datetime) -> int:
        """Delete the messages that arrived before that moment; how many there were."""
        with self._session.begin() as session:
            deleted = session.execute(
                delete(MessageRow)
                .where(MessageRow.received_at < received_before)
                .returning(MessageRow.inbox_key, func.length(MessageRow.envelope))
            ).all()
            freed: dict[str, tuple[int, int]] = {}
            for inbox, size in deleted:
                count, total = freed.get(inbox, (0, 0))
                freed[inbox] = (count + 1, total + size)
            _release(session, freed)
            return len(deleted)

    def arrivals_since(self, public_key: str, since: datetime) -> dict[datetime, tuple[int, int]]:
        """Messages stored per minute from `since` on: minute -> (for this inbox, in all).

        The proof of work's load (secretlink.web.pow) is read from here, so every worker
        and machine sharing the database sees the same count, at no extra write.
        """
        for_inbox = func.sum(case((MessageRow.inbox_key == public_key, 1), else_=0))
        query = (
            select(MessageRow.received_at, for_inbox, func.count())
            .where(MessageRow.received_at >= since)
            .group_by(MessageRow.received_at)
        )
        with self.engine.connect() as connection:
            return {
                minute: (int(inbox or 0), int(total))
                for minute, inbox, total in connection.execute(query)
            }

    # ---- single-use challenges ----

    def use_nonce(self, nonce: bytes, expires_at: datetime) -> bool:
        """Record a nonce as spent until `expires_at`; False if it was spent before.

        The expiry is kept rounded up to the minute: a little longer than needed,
        never shorter, and it no longer tells the second the nonce was issued.
        """
        return self.spend(spend_of(nonce, expires_at))

    def spend(self, spend: Spend) -> bool:
        """Record a spend in a transaction of its own; False if it was spent before.
        Expired spends go in the same transaction (a message's puzzle is spent with
        the message instead, and the purge clears what expires there)."""
        try:
            with self._session.begin() as session:
                session.execute(delete(UsedNonceRow).where(UsedNonceRow.expires_at < utcnow()))
                session.add(UsedNonceRow(nonce=spend.key, expires_at=spend.expires_at))
        except IntegrityError:
            return False
        return True


def _stored(message_id: str, outcome: str) -> str | None:
    """The id of a message whose outcome is STORED; None for an unknown inbox; the
    refusal as an exception otherwise."""
    if outcome == STORED:
        return message_id
    if outcome == UNKNOWN_INBOX:
        return None
    if outcome == PUZZLE_USED:
        raise PuzzleUsed()
    if outcome in QUOTA_REFUSALS:
        raise QuotaExceeded(outcome)
    raise NotTaken(outcome)


def _delete_inbox(session, public_key: str) -> bool:
    """Delete the inbox, its messages and (by cascade) its other rows; False if none."""
    # Locks in the quotas' order: message rows, the inbox row, the instance row.
    # The inbox's counter, read as the row goes, covers every message it had.
    session.execute(delete(MessageRow).where(MessageRow.inbox_key == public_key))
    freed = session.scalar(
        delete(InboxRow).where(InboxRow.public_key == public_key).returning(InboxRow.stored_bytes)
    )
    if freed is None:
        return False
    _release_instance(session, freed)
    return True


def _release(session, freed: dict[str, tuple[int, int]]) -> None:
    """Take deleted messages off the counters: {inbox: (messages, bytes)}.

    Inboxes in key order, then the instance: the order secretlink.store.quotas locks in.
    """
    for inbox in sorted(freed):
        count, size = freed[inbox]
        session.execute(
            update(InboxRow)
            .where(InboxRow.public_key == inbox)
            .values(
                message_count=InboxRow.message_count - count,
                stored_bytes=InboxRow.stored_bytes - size,
            )
        )
    _release_instance(session, sum(size for _, size in freed.values()))


def _release_instance(session, size: int) -> None:
    if size:
        session.execute(
            update(InstanceUsageRow)
            .where(InstanceUsageRow.id == 1)
            .values(stored_bytes=InstanceUsageRow.stored_bytes - size)
        )


def received_at_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def expiry(seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


# The notifier's tables live with its code; importing them puts them on Base.metadata,
# which the migrations are checked against.
from secretlink.notify import tables as _notify_tables  # noqa: E402, F401
from secretlink.store import blobs as _blobs  # noqa: E402, F401
