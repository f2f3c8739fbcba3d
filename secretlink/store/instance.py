"""The instance's storage, wired as every process that stores messages needs it.

The app (secretlink.web.app) and the writer process (secretlink.ops.writer) both open
it here; without Flask, so that the writer starts sooner and smaller.
"""

from secretlink.notify.service import Notifications
from secretlink.settings import Settings
from secretlink.store.inbox_settings import SendingGate
from secretlink.store.quotas import Quotas
from secretlink.store.storage import Storage


def open_storage(settings: Settings) -> tuple[Storage, Notifications]:
    """The instance's storage and notifier, with the checks made where messages are
    stored."""
    storage = Storage.from_url(settings.database_url, Quotas.from_settings(settings))
    notifier = Notifications.from_settings(settings, storage.engine)
    # Decided where messages are stored, in the writer's transaction, not in each
    # sender's request: whether the inbox takes messages now, and who to tell.
    storage.add_check(SendingGate(storage.engine.dialect).refusals)
    if notifier.enabled:
        storage.on_stored(notifier.mark_due_in)
    return storage, notifier
