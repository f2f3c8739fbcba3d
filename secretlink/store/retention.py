"""Deleting what the instance no longer keeps: old messages and spent challenges.

Messages go after the instance's retention (SECRETLINK_RETENTION_DAYS, 0 keeps them)
or after their inbox's own, shorter one (secretlink/store/inbox_settings.py), so the
purge runs even on an instance that keeps messages forever.
"""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete

from secretlink.store.blob_backends import BlobBackend, backend_for
from secretlink.store.blobs import BlobStore, blob_directory
from secretlink.store.inbox_settings import InboxSettingsStore
from secretlink.store.storage import Storage, UsedNonceRow, utcnow


@dataclass(frozen=True)
class PurgeResult:
    messages: int
    nonces: int
    abandoned_uploads: int = 0


def purge_for(settings) -> PurgeResult:
    """The purge an instance runs, from its settings (secretlink.settings.Settings)."""
    directory = blob_directory(settings.data_dir) if settings.data_dir else None
    blobs = None
    if directory is not None:
        blobs = backend_for(settings.blob_store, directory, settings.s3_endpoint_url)
    return purge(
        settings.database_url,
        settings.retention_days,
        directory,
        settings.attachment_upload_ttl,
        blobs,
    )


def purge(
    database_url: str,
    retention_days: int,
    blob_dir: Path | None = None,
    upload_ttl: int = 3600,
    blob_backend: BlobBackend | None = None,
) -> PurgeResult:
    """Delete messages older than `retention_days` (0 keeps them) or than their inbox's
    own retention, and expired nonces; with `blob_dir`, the blobs of deleted messages
    and the uploads not sent within `upload_ttl` seconds (secretlink/store/blobs.py),
    kept in `blob_backend` (by default in `blob_dir` too). Raises StorageUnavailable
    (after deleting the rows) if an object store cannot be reached."""
    storage = Storage.from_url(database_url)
    try:
        now = utcnow()
        messages = 0
        if retention_days:
            # Through storage: the quotas' usage counters go down with the rows.
            messages = storage.purge_messages(now - timedelta(days=retention_days))
        messages += InboxSettingsStore(storage.engine).purge_by_inbox_retention(retention_days)
        with storage.engine.begin() as connection:
            nonces = connection.execute(
                delete(UsedNonceRow).where(UsedNonceRow.expires_at < now)
            ).rowcount
        abandoned = 0
        if blob_dir:
            abandoned = BlobStore(storage, blob_dir, blob_backend).purge(upload_ttl)
        return PurgeResult(messages, nonces, abandoned)
    finally:
        storage.engine.dispose()
