"""Deleting what the instance no longer keeps: old messages and spent challenges."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from secretlink.storage import MessageRow, Storage, UsedNonceRow, utcnow


@dataclass(frozen=True)
class PurgeResult:
    messages: int
    nonces: int


def purge(database_url: str, retention_days: int) -> PurgeResult:
    """Delete messages older than `retention_days` (0 keeps them) and expired nonces."""
    storage = Storage.from_url(database_url)
    try:
        now = utcnow()
        with storage.engine.begin() as connection:
            messages = 0
            if retention_days:
                cutoff = now - timedelta(days=retention_days)
                messages = connection.execute(
                    delete(MessageRow).where(MessageRow.received_at < cutoff)
                ).rowcount
            nonces = connection.execute(
                delete(UsedNonceRow).where(UsedNonceRow.expires_at < now)
            ).rowcount
        return PurgeResult(messages, nonces)
    finally:
        storage.engine.dispose()
