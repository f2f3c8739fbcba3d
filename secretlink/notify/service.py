"""The notifier of one instance: its settings, keys, targets and queue, in one object
that the API and the sender share."""

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine

from secretlink.notify import keys
from secretlink.notify.delivery import Sender
from secretlink.notify.queue import CLAIM_BATCH, DueQueue, due_minute
from secretlink.notify.targets import TargetStore
from secretlink.settings import Settings
from secretlink.store.storage import utcnow


@dataclass
class Notifications:
    settings: Settings
    engine: Engine
    vapid_key: ec.EllipticCurvePrivateKey
    targets: TargetStore
    queue: DueQueue

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> "Notifications":
        """`settings` with its data folder filled in (Settings.with_data_dir)."""
        if settings.vapid_private_key:
            vapid_key = keys.vapid_private_key(settings.vapid_private_key)
        else:
            assert settings.data_dir is not None
            vapid_key = keys.load_or_create_vapid_key(settings.data_dir)
        assert settings.secret_key is not None
        return cls(
            settings,
            engine,
            vapid_key,
            TargetStore(engine, keys.Sealer(settings.secret_key)),
            DueQueue(engine),
        )

    @property
    def enabled(self) -> bool:
        return self.settings.notifications_enabled

    @property
    def allow_local(self) -> bool:
        return self.settings.notify_allow_local_targets

    @property
    def vapid_public_key(self) -> str:
        return keys.public_key_text(self.vapid_key)

    def mark_due_in(self, cursor, inbox_keys: list[str], now: datetime | None = None) -> None:
        """Mark due each of `inbox_keys` whose owner wants notifications, in the
        transaction that stores their messages (Storage.on_stored, on the writer's
        DB-API cursor): a message and its notification's due mark commit together,
        with one fsync, and a sender with a 201 knows the notification is on its way.
        Cheap: one lookup by primary key per inbox, and one upsert when wanted."""
        now = now or utcnow()
        for inbox_key in inbox_keys:
            targets = self.targets.get_in(cursor, inbox_key)
            if targets is not None:
                due_at = due_minute(now, targets.max_delay_minutes)
                self.queue.mark_due_in(cursor, inbox_key, due_at)

    def sender(self) -> Sender:
        settings = self.settings
        return Sender(
            vapid_key=self.vapid_key,
            contact=settings.push_contact or settings.base_url,
            timeout=settings.notify_timeout,
            attempts=settings.notify_attempts,
            backoff=settings.notify_backoff,
            allow_local=settings.notify_allow_local_targets,
        )

    def lease_minutes(self) -> int:
        """Longer than the sender can take for one claimed batch (all attempts failing
        slowly), so no row is claimed twice while it is being worked on."""
        settings = self.settings
        per_target = settings.notify_attempts * settings.notify_timeout * 2 + (
            settings.notify_backoff * 2**settings.notify_attempts
        )
        return 1 + (2 * per_target * CLAIM_BATCH) // 60 + 1
