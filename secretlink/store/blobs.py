"""Attachment blobs: the encrypted files of messages (crypto/SPEC.md 5.11).

The server never sees a file, only its blob: ciphertext padded to a Padmé length, under
a random id the sender chose. While its upload is under way a blob is the file
`<data dir>/blobs/<inbox key>/<blob id>.part`; when its last byte arrives it is handed
to the blob backend (secretlink/store/blob_backends.py, SECRETLINK_BLOB_STORE): by
default renamed to `<blob id>` in the same folder, or copied to an S3-compatible
bucket and the part removed. Either way a complete name never holds a partial blob,
and the row says complete only once the backend holds it whole. The `blobs` table
knows each one: its inbox, exact length, whether it is complete, the message that
lists it (none until that message is sent) and the minute its upload started. No
time stored here is finer than the minute, file times included: every write sets
the file's (and its folder's) times back to the start of the current minute. (An
object store keeps its own times: docs/THREAT-MODEL.md.)

If the backend cannot take a blob (an object store unreachable), the append that
brought its last byte is refused with BlobError 503 and the whole part stays: asking
for the upload's state, or appending nothing at its end, tries again (`finish`).

A blob goes with its message: the row by the database's ON DELETE CASCADE (whatever
deleted the message: the owner, delete-all, retention, deleting the inbox), the bytes
by `sweep`, which the API calls after the owner's deletions and the purge calls for
every inbox. An upload that is not sent with a message within the upload lifetime
(SECRETLINK_ATTACHMENT_UPLOAD_TTL) is abandoned: the purge deletes its row and file.
So no orphan outlives that lifetime plus one purge interval (plus however long an
object store stays unreachable: each purge tries again).

Quotas: a blob counts, with its full length, from the moment its upload starts (the
reservation), against its inbox's attachment cap and the instance's storage budget,
until it is deleted. The counts are sums over this table, taken with the inbox's and
the instance's quota rows locked, so concurrent reservations cannot pass a cap.
"""

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

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
from secretlink.store.blob_backends import (
    PART_SUFFIX,
    BlobBackend,
    DirectoryBackend,
    StorageUnavailable,
    backend_for,
    coarsen,
    remove_inbox_folder,
    unlink,
)
from secretlink.store.quotas import INBOX_FULL, INSTANCE_FULL, QuotaExceeded, Quotas
from secretlink.store.spent_nonces import Spend
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


def blob_directory(data_dir: Path) -> Path:
    """Where an instance keeps its blobs (and its uploads under way, whatever the
    backend): one folder per inbox, in its data directory."""
    return Path(data_dir) / "blobs"


# The columns a Blob is made of, in its fields' order.
_BLOB_FIELDS = (BlobRow.id, BlobRow.inbox_key, BlobRow.length, BlobRow.complete, BlobRow.message_id)

STORE_FAILED = (
    "the server cannot store files right now: try again later; what arrived is kept, and "
    "asking for the upload's state then stores it"
)
READ_FAILED = "the server cannot read its files right now: try again later"


class BlobStore:
    """The blobs table, the uploads under way in `directory`, and the complete blobs in
    `backend` (by default the same folder); every database method is one transaction."""

    def __init__(self, storage: Storage, directory: Path, backend: BlobBackend | None = None):
        self.storage = storage
        self.engine: Engine = storage.engine
        self.directory = directory
        self.backend: BlobBackend = backend or DirectoryBackend(directory)

    @classmethod
    def for_settings(cls, storage: Storage, settings) -> "BlobStore":
        """The blob store an instance's settings (secretlink.settings.Settings) describe."""
        directory = blob_directory(settings.data_dir)
        backend = backend_for(settings.blob_store, directory, settings.s3_endpoint_url)
        return cls(storage, directory, backend)

    @property
    def quotas(self) -> Quotas:
        return self.storage.quotas

    # ---- uploads under way ----

    def _inbox_dir(self, public_key: str, create: bool = False) -> Path:
        folder = self.directory / public_key
        if create and not folder.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            coarsen(self.directory)
            coarsen(folder)
        return folder

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
        """How many bytes of the blob the server holds (BlobError 503 if that takes an
        object store that cannot be reached)."""
        with contextlib.suppress(FileNotFoundError):
            return self._part(blob).stat().st_size
        # No partial file: not begun, or stored (the part is removed after that).
        try:
            return blob.length if self.backend.exists(blob.inbox_key, blob.id) else 0
        except StorageUnavailable:
            raise BlobError(503, "storage_unavailable", READ_FAILED) from None

    def progress(self, blob: Blob) -> tuple[int, bool]:
        """(bytes received, complete). An upload whose bytes all arrived but that the
        backend does not hold yet (it failed at the last byte) is handed to it now."""
        if blob.complete:
            return blob.length, True
        received = self.received(blob)
        if received == blob.length:
            return received, self.finish(blob)
        return received, False

    # ---- appending ----

    def append(self, blob: Blob, offset: int, pieces: Iterable[bytes]) -> int:
        """Write the pieces at `offset`, which must be the length received so far;
        return the new length. The last byte completes the blob: the backend takes it
        (BlobError 503 if it cannot; the part stays, and appending nothing at its end
        tries again).

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
            current = self.get(blob.inbox_key, blob.id)
            if current is None or current.complete:
                # Completed or deleted by another request meanwhile: the partial file
                # this request may have made anew goes.
                unlink(part)
                if current is None:
                    raise BlobError(404, "unknown_blob", "this upload was deleted")
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
                coarsen(part)
                coarsen(part.parent)  # its entry may be new
            if received == blob.length:
                self._complete(blob, part)
        return received

    def finish(self, blob: Blob) -> bool:
        """Hand a whole upload that is not recorded complete to the backend; whether
        the blob is complete now. BlobError 503 if the backend cannot take it."""
        part = self._part(blob)
        try:
            descriptor = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            # Stored, and the process stopped before the row said so (or it is done).
            current = self.get(blob.inbox_key, blob.id)
            if current is None or current.complete:
                return current is not None
            if self.received(blob) != blob.length:
                return False
            self._mark_complete(blob)
            return True
        with os.fdopen(descriptor, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            current = self.get(blob.inbox_key, blob.id)
            if current is None or current.complete:
                return current is not None
            if not part.exists() or os.fstat(handle.fileno()).st_size != blob.length:
                return False
            self._complete(blob, part)
            return True

    def _complete(self, blob: Blob, part: Path) -> None:
        """With the part's lock held: the backend takes the whole part, then the row
        says complete, then the part goes (a crash in between leaves a part that the
        sweep removes, or a stored blob that `finish` records)."""
        try:
            self.backend.store(blob.inbox_key, blob.id, part)
        except StorageUnavailable:
            raise BlobError(503, "storage_unavailable", STORE_FAILED) from None
        self._mark_complete(blob)
        unlink(part)  # the object store has its copy (a folder renamed it already)
        with contextlib.suppress(FileNotFoundError):
            coarsen(part.parent)

    def _mark_complete(self, blob: Blob) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(BlobRow).where(BlobRow.id == blob.id).values(complete=True))

    # ---- the owner downloading ----

    def open(self, blob: Blob) -> tuple[BinaryIO, int]:
        """A complete blob's bytes, seekable, and how many are kept; FileNotFoundError
        if they are gone, BlobError 503 if the object store cannot be reached."""
        try:
            return self.backend.open(blob.inbox_key, blob.id)
        except StorageUnavailable:
            raise BlobError(503, "storage_unavailable", READ_FAILED) from None

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

    def add_message(
        self, public_key: str, envelope: bytes, blob_ids: list[str], spend: Spend | None = None
    ) -> str | None:
        """Store the message, spend its puzzle and link its blobs to it in one
        transaction; its id, or None if the inbox does not exist. Raises QuotaExceeded
        and PuzzleUsed like Storage.add_message, and BlobError 409 if a blob was taken
        or deleted since `unsent` looked."""
        with self.engine.begin() as connection:
            message_id = self.storage.insert_message(connection, public_key, envelope, spend)
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
        """Delete the inbox's blobs that no row claims any more (their message or upload
        was deleted), and partial files of complete blobs; how many. If the object
        store cannot be reached, what it holds waits for the next purge (logged)."""
        try:
            return self._sweep(public_key)
        except StorageUnavailable:
            return 0  # logged by the backend; the purge tries again

    def _sweep(self, public_key: str) -> int:
        folder = self._inbox_dir(public_key)
        try:
            parts = [e.name for e in os.scandir(folder) if e.name.endswith(PART_SUFFIX)]
        except FileNotFoundError:
            parts = []
        stored = self.backend.names(public_key)
        # Listed first, then read: a blob made after the listing is not looked at, and
        # every one listed had its row inserted before it was made.
        with self.engine.connect() as connection:
            rows = dict(
                connection.execute(
                    select(BlobRow.id, BlobRow.complete).where(BlobRow.inbox_key == public_key)
                ).all()
            )
        # A partial file is stale without a row (the default) or once its blob is complete.
        stale_parts = [name for name in parts if rows.get(name.removesuffix(PART_SUFFIX), True)]
        for name in stale_parts:
            unlink(folder / name)
        if stale_parts:
            with contextlib.suppress(FileNotFoundError):
                coarsen(folder)
        unclaimed = [blob_id for blob_id in stored if blob_id not in rows]
        if unclaimed:
            self.backend.remove(public_key, unclaimed)
        return len(stale_parts) + len(unclaimed)

    def delete_inbox_files(self, public_key: str) -> bool:
        """Remove a deleted inbox's uploads and blobs (its rows went with the inbox);
        False if the object store could not be reached (the next purge tries again)."""
        remove_inbox_folder(self.directory, public_key)
        try:
            self.backend.remove_inbox(public_key)
        except StorageUnavailable:
            return False
        return True

    def purge(self, upload_ttl: int) -> int:
        """Delete uploads not sent with a message within `upload_ttl` seconds (rows and
        files), and every blob no row claims; how many blobs were abandoned. Raises
        StorageUnavailable if the object store cannot be reached (after the rows)."""
        cutoff = utcnow() - timedelta(seconds=upload_ttl)
        with self.engine.begin() as connection:
            abandoned = connection.execute(
                delete(BlobRow)
                .where(BlobRow.message_id.is_(None), BlobRow.started_at < cutoff)
                .returning(BlobRow.id)
            ).all()
            inboxes = set(connection.scalars(select(InboxRow.public_key)))
        try:
            folders = [entry.name for entry in os.scandir(self.directory) if entry.is_dir()]
        except FileNotFoundError:
            folders = []
        for name in sorted(set(folders) | set(self.backend.inboxes())):
            if name in inboxes:
                self._sweep(name)
            else:  # an inbox deleted without its blobs
                remove_inbox_folder(self.directory, name)
                self.backend.remove_inbox(name)
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
