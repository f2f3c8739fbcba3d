"""Deleting what the instance no longer keeps: old messages and spent challenges."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from secretlink.storage import Storage, UsedNonceRow, utcnow


@dataclass(frozen=True)
class PurgeResult:
    messages: int
    nonces: int


def purge(database_url: str, retention_days: int) -> PurgeResult:
    """Delete messages older than `retention_days` (0 keeps them) and expired nonces."""
    storage = Storage.from_url(database_url)
    try:
        now = utcnow()
        messages = 0
        if retention_days:
            # Through storage: the quotas' usage counters go down with the rows.
            messages = storage.purge_messages(now - timedelta(days=retention_days))
        with storage.engine.begin() as connection:
            nonces = connection.execute(
                delete(UsedNonceRow).where(UsedNonceRow.expires_at < now)
            ).rowcount
        return PurgeResult(messages, nonces)
    finally:
        storage.engine.dispose()
