"""Attachment blobs: the encrypted files of messages (crypto/SPEC.md 5.11), on disk.

The server never sees a file, only its blob: ciphertext padded to a Padmé length, under
a random id the sender chose. A blob's bytes live in `<data dir>/blobs/<inbox key>/`:
as `<blob id>.part` while the upload is under way, renamed to `<blob id>` in the same
folder once its last byte arrived, so a complete name never holds a partial blob. The
`blobs` table knows each one: its inbox, exact length, whether it is complete, the
message that lists it (none until that message is sent) and the minute its upload
started. No stored time is finer than the minute, file times included: every write
sets the file's (and its folder's) times back to the start of the current minute.

A blob goes with its message: the row by the database's ON DELETE CASCADE (whatever
deleted the message: the owner, delete-all, retention, deleting the inbox), the file
by `sweep`, which the API calls after the owner's deletions and the purge calls for
every inbox. An upload that is not sent with a message within the upload lifetime
(SECRETLINK_ATTACHMENT_UPLOAD_TTL) is abandoned: the purge deletes its row and file.
So no orphan outlives that lifetime plus one purge interval.

Quotas: a blob counts, with its full length, from the moment its upload starts (the
reservation), against its inbox's attachment cap and the instance's storage budget,
until it is deleted. The counts are sums over this table, taken with the inbox's and
the instance's quota rows locked, so concurrent reservations cannot pass a cap.
"""

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    String,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from secretlink.crypto import EncodingError, b64decode
from secretlink.crypto.attachments import padme
from secretlink.store.quotas import INBOX_FULL, INSTANCE_FULL, QuotaExceeded, Quotas
from secretlink.store.storage import (
    Base,
    InboxRow,
    InstanceUsageRow,
    Storage,
    coarse,
    utcnow,
)

BLOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# The smallest blob: an empty file is one 16-byte tag (SPEC 5.11).
MIN_BLOB_BYTES = 16
# The most one request appends, and the pieces a request body is read in.
UPLOAD_CHUNK_BYTES = 1 << 20
PIECE_BYTES = 64 * 1024
PART_SUFFIX = ".part"


class BlobRow(Base):
    __tablename__ = "blobs"

    id: Mapped[str] = mapped_column(String(22), primary_key=True)
    inbox_key: Mapped[str] = mapped_column(
        String(43), ForeignKey("inboxes.public_key", ondelete="CASCADE"), index=True
    )
    length: Mapped[int] = mapped_column(BigInteger)
    complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    message_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(DateTime, index=True)


@dataclass(frozen=True)
class Blob:
    id: str
    inbox_key: str
    length: int
    complete: bool
    message_id: str | None


class BlobError(Exception):
    """A request about a blob that cannot be done: `status`, `code`, `message` (and,
    for a wrong offset, `received`). Flask-free, like QuotaExceeded."""

    def __init__(self, status: int, code: str, message: str, received: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.received = received


def valid_blob_id(text: object) -> bool:
    """22 characters of canonical unpadded base64url for 16 bytes (SPEC 5.10)."""
    if not isinstance(text, str) or not BLOB_ID.fullmatch(text):
        return False
    try:
        return len(b64decode(text)) == 16
    except EncodingError:
        return False


def valid_blob_length(length: object) -> bool:
    """Whether a blob of this length can exist: a Padmé length of at least 16 bytes."""
    return (
        isinstance(length, int)
        and not isinstance(length, bool)
        and MIN_BLOB_BYTES <= length <= 1 << 42
        and padme(length) == length
    )


def _minute_now() -> float:
    return float(int(time.time()) // 60 * 60)


def _coarsen(path: Path) -> None:
    """Set a file's or folder's times to the start of this minute (docs/THREAT-MODEL.md)."""
    moment = _minute_now()
    os.utime(path, (moment, moment))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def blob_directory(data_dir: Path) -> Path:
    """Where an instance keeps its blobs: one folder per inbox, in its data directory."""
    return Path(data_dir) / "blobs"


def remove_inbox_folder(directory: Path, public_key: str) -> None:
    """Remove a deleted inbox's blob folder, by the web API or by the operator's CLI."""
    folder = directory / public_key
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _coarsen(directory)


# The columns a Blob is made of, in its fields' order.
_BLOB_FIELDS = (BlobRow.id, BlobRow.inbox_key, BlobRow.length, BlobRow.complete, BlobRow.message_id)


class BlobStore:
    """The blobs table and the files it describes; every database method is one transaction."""

    def __init__(self, storage: Storage, directory: Path):
        self.storage = storage
        self.engine: Engine = storage.engine
        self.directory = directory

    @property
    def quotas(self) -> Quotas:
        return self.storage.quotas

    # ---- paths ----

    def _inbox_dir(self, public_key: str, create: bool = False) -> Path:
        folder = self.directory / public_key
        if create and not folder.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            _coarsen(self.directory)
            _coarsen(folder)
        return folder

    def path(self, blob: Blob) -> Path:
        """Where a complete blob's bytes are."""
        return self._inbox_dir(blob.inbox_key) / blob.id

    def _part(self, blob: Blob) -> Path:
        return self._inbox_dir(blob.inbox_key) / (blob.id + PART_SUFFIX)

    # ---- starting an upload ----

    def reserve(self, public_key: str, blob_id: str, length: int) -> None:
        """Record an upload of `length` bytes and count it against the quotas at once.

        Raises QuotaExceeded (inbox or instance full), BlobError 409 if the id is taken,
        404 if there is no such inbox.
        """
        try:
            with self.engine.begin() as connection:
                self._lock_quota_rows(connection, public_key)
                refusal = self._refusal(connection, public_key, length)
                if refusal is not None:
                    raise QuotaExceeded(refusal)
                connection.execute(
                    insert(BlobRow).values(
                        id=blob_id,
                        inbox_key=public_key,
                        length=length,
                        complete=False,
                        message_id=None,
                        started_at=coarse(utcnow()),
                    )
                )
        except IntegrityError:
            raise BlobError(
                409, "blob_id_taken", "this blob id is in use: draw a new random one"
            ) from None

    def _lock_quota_rows(self, connection: Connection, public_key: str) -> None:
        """Lock the inbox's and the instance's quota rows, in the quotas' order, with a
        write that changes nothing (on SQLite it takes the write lock at once)."""
        found = connection.execute(
            update(InboxRow)
            .where(InboxRow.public_key == public_key)
            .values(stored_bytes=InboxRow.stored_bytes)
            .returning(InboxRow.public_key)
        ).first()
        if found is None:
            raise BlobError(404, "unknown_inbox", "no inbox with this key on this server")
        connection.execute(
            update(InstanceUsageRow)
            .where(InstanceUsageRow.id == 1)
            .values(stored_bytes=InstanceUsageRow.stored_bytes)
        )

    def _refusal(self, connection: Connection, public_key: str, length: int) -> str | None:
        quotas = self.quotas
        if quotas.inbox_attachment_bytes:
            held = connection.scalar(
                select(func.coalesce(func.sum(BlobRow.length), 0)).where(
                    BlobRow.inbox_key == public_key
                )
            )
            if held + length > quotas.inbox_attachment_bytes:
                return INBOX_FULL
        if quotas.instance_bytes:
            blobs = connection.scalar(select(func.coalesce(func.sum(BlobRow.length), 0)))
            envelopes = connection.scalar(
                select(InstanceUsageRow.stored_bytes).where(InstanceUsageRow.id == 1)
            )
            if (envelopes or 0) + blobs + length > quotas.instance_bytes:
                return INSTANCE_FULL
        return None

    # ---- reading the table ----

    def get(self, public_key: str, blob_id: str) -> Blob | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*_BLOB_FIELDS).where(BlobRow.id == blob_id, BlobRow.inbox_key == public_key)
            ).first()
            return Blob(*row) if row else None

    def received(self, blob: Blob) -> int:
        """How many bytes of the blob the server holds."""
        for path in (self.path(blob), self._part(blob)):
            with contextlib.suppress(FileNotFoundError):
                return path.stat().st_size
        return 0

    # ---- appending ----

    def append(self, blob: Blob, offset: int, pieces: Iterable[bytes]) -> int:
        """Write the pieces at `offset`, which must be the length received so far;
        return the new length. The last byte completes the blob (renamed into place).

        One request at a time per blob (an flock on the partial file): two clients
        resuming at once cannot interleave their bytes.
        """
        if blob.complete:
            raise BlobError(409, "upload_complete", "this upload is complete already")
        self._inbox_dir(blob.inbox_key, create=True)
        part = self._part(blob)
        descriptor = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if self.path(blob).exists():
                # Completed (renamed) by another request meanwhile: the partial file
                # this request may have made anew after that rename goes.
                _unlink(part)
                raise BlobError(409, "upload_complete", "this upload is complete already")
            if not part.exists():  # deleted meanwhile: abandoned, or its inbox went
                raise BlobError(404, "unknown_blob", "this upload was deleted")
            received = os.fstat(handle.fileno()).st_size
            if offset != received:
                raise BlobError(
                    409,
                    "offset_mismatch",
                    f"the server holds {received} bytes of this upload: send from there",
                    received=received,
                )
            handle.seek(received)
            try:
                for piece in pieces:
                    if received + len(piece) > blob.length:
                        raise BlobError(
                            400,
                            "too_long",
                            f"the upload is {blob.length} bytes; this request goes past its end",
                        )
                    handle.write(piece)
                    received += len(piece)
            finally:
                # What arrived stays (a resumed upload goes on from it), durably.
                handle.flush()
                os.fsync(handle.fileno())
                _coarsen(part)
                _coarsen(part.parent)  # its entry may be new
            if received == blob.length:
                self._complete(blob, part)
        return received

    def _complete(self, blob: Blob, part: Path) -> None:
        final = self.path(blob)
        os.replace(part, final)
        folder = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename survives a crash before the row says complete
        finally:
            os.close(folder)
        _coarsen(final.parent)
        with self.engine.begin() as connection:
            connection.execute(update(BlobRow).where(BlobRow.id == blob.id).values(complete=True))

    # ---- sending: a message that lists blobs ----

    def unsent(self, public_key: str, blob_ids: list[str]) -> list[Blob]:
        """The blobs a message is about to list: each must belong to this inbox, be
        complete and not be listed by another message; else BlobError."""
        found = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*_BLOB_FIELDS).where(
                    BlobRow.id.in_(blob_ids), BlobRow.inbox_key == public_key
                )
            )
            found = {row.id: Blob(*row) for row in rows}
        for blob_id in blob_ids:
            blob = found.get(blob_id)
            if blob is None:
                raise BlobError(
                    404,
                    "unknown_blob",
                    f"no upload {blob_id} for this inbox (never started, or abandoned and deleted)",
                )
            if blob.message_id is not None:
                raise BlobError(409, "blob_used", f"blob {blob_id} belongs to another message")
            if not blob.complete:
                raise BlobError(
                    409, "upload_incomplete", f"the upload of blob {blob_id} is not complete"
                )
        return [found[blob_id] for blob_id in blob_ids]

    def add_message(self, public_key: str, envelope: bytes, blob_ids: list[str]) -> str | None:
        """Store the message and link its blobs to it in one transaction; its id, or None
        if the inbox does not exist. Raises QuotaExceeded like Storage.add_message, and
        BlobError 409 if a blob was taken or deleted since `unsent` looked."""
        with self.engine.begin() as connection:
            message_id = self.storage.insert_message(connection, public_key, envelope)
            if message_id is None:
                return None
            linked = connection.execute(
                update(BlobRow)
                .where(
                    BlobRow.id.in_(blob_ids),
                    BlobRow.inbox_key == public_key,
                    BlobRow.complete.is_(True),
                    BlobRow.message_id.is_(None),
                )
                .values(message_id=message_id)
            ).rowcount
            if linked != len(blob_ids):
                # Rolled back whole: no message without its files.
                raise BlobError(
                    409,
                    "blob_used",
                    "a listed blob was sent with another message or deleted meanwhile",
                )
            return message_id

    # ---- deleting ----

    def sweep(self, public_key: str) -> int:
        """Delete the inbox's files that no row claims any more (their message or upload
        was deleted), and partial files of complete blobs; how many."""
        folder = self._inbox_dir(public_key)
        try:
            names = [entry.name for entry in os.scandir(folder)]
        except FileNotFoundError:
            return 0
        # Listed first, then read: a file made after the listing is not looked at, and
        # every file listed had its row inserted before it was made.
        with self.engine.connect() as connection:
            rows = dict(
                connection.execute(
                    select(BlobRow.id, BlobRow.complete).where(BlobRow.inbox_key == public_key)
                ).all()
            )
        removed = 0
        for name in names:
            blob_id = name.removesuffix(PART_SUFFIX)
            partial = name != blob_id
            if blob_id in rows and not (partial and rows[blob_id]):
                continue
            _unlink(folder / name)
            removed += 1
        if removed:
            _coarsen(folder)
        return removed

    def delete_inbox_files(self, public_key: str) -> None:
        """Remove a deleted inbox's folder (its rows went with the inbox)."""
        remove_inbox_folder(self.directory, public_key)

    def purge(self, upload_ttl: int) -> int:
        """Delete uploads not sent with a message within `upload_ttl` seconds (rows and
        files), and every file no row claims; how many blobs were abandoned."""
        cutoff = utcnow() - timedelta(seconds=upload_ttl)
        with self.engine.begin() as connection:
            abandoned = connection.execute(
                delete(BlobRow)
                .where(BlobRow.message_id.is_(None), BlobRow.started_at < cutoff)
                .returning(BlobRow.id)
            ).all()
            inboxes = set(connection.scalars(select(InboxRow.public_key)))
        if self.directory.is_dir():
            for entry in os.scandir(self.directory):
                if entry.name in inboxes:
                    self.sweep(entry.name)
                elif entry.is_dir():  # an inbox deleted without its folder
                    self.delete_inbox_files(entry.name)
        return len(abandoned)


__all__ = [
    "BLOB_ID",
    "MIN_BLOB_BYTES",
    "PIECE_BYTES",
    "UPLOAD_CHUNK_BYTES",
    "Blob",
    "BlobError",
    "BlobRow",
    "BlobStore",
    "blob_directory",
    "remove_inbox_folder",
    "valid_blob_id",
    "valid_blob_length",
]
