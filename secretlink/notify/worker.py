"""The background sender: claims due inboxes, delivers, deletes what it handled.

It runs as `secretlink notify` (its own process; `--once` for cron and tests) and as
a thread in each worker of `secretlink serve`. Any number may run against one
database: each due inbox is claimed by exactly one (queue.py). Never called from a
request: a message's request only marks its inbox due.
"""

import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from secretlink.notify.delivery import Sender
from secretlink.notify.service import Notifications
from secretlink.settings import Settings
from secretlink.store.database import make_engine

log = logging.getLogger("secretlink.notify")


@dataclass(frozen=True)
class Round:
    claimed: int = 0
    delivered: int = 0  # inboxes whose notification reached at least one target
    failed: int = 0  # inboxes none of whose targets could be reached


def run_once(notifications: Notifications, now: datetime | None = None) -> Round:
    """Deliver every notification due by `now` (the present); returns what was done."""
    claimed = delivered = failed = 0
    sender = notifications.sender()
    while batch := notifications.queue.claim(notifications.lease_minutes(), now):
        for inbox_key, lease in batch:
            claimed += 1
            try:
                if _deliver(notifications, sender, inbox_key):
                    delivered += 1
                else:
                    failed += 1
            except Exception:
                # One inbox's surprise must not keep the others of the batch waiting.
                log.exception("a notification failed unexpectedly")
                failed += 1
            finally:
                # Delivered or given up on after its attempts: the row goes either way.
                notifications.queue.done(inbox_key, lease)
    return Round(claimed, delivered, failed)


def _deliver(notifications: Notifications, sender: Sender, inbox_key: str) -> bool:
    targets = notifications.targets.get(inbox_key)
    if targets is None:
        return False  # turned off since the message came
    outcome = sender.send(targets)
    if outcome.push_gone:
        notifications.targets.drop_push(inbox_key)
    return outcome.delivered > 0


def run_forever(notifications: Notifications, stop: threading.Event) -> None:
    interval = notifications.settings.notify_interval
    while not stop.is_set():
        try:
            done = run_once(notifications)
            if done.claimed:
                log.info(
                    "notifications: %d sent, %d could not be delivered", done.delivered, done.failed
                )
        except Exception:
            log.exception("notification round failed; will try again")
        # Spread several senders' looks over the interval.
        stop.wait(interval * random.uniform(0.8, 1.2))  # noqa: S311


def open_notifications(settings: Settings) -> tuple[Notifications, Engine]:
    engine = make_engine(settings.database_url or "")
    return Notifications.from_settings(settings, engine), engine


def start_thread(
    settings: Settings, stop: threading.Event | None = None
) -> threading.Thread | None:
    """The sender as a daemon thread of a `serve` worker, when notifications are on;
    it ends when `stop` is set (a worker's never is: it ends with the process)."""
    if not settings.notifications_enabled:
        return None
    notifications, engine = open_notifications(settings)

    def run() -> None:
        try:
            run_forever(notifications, stop or threading.Event())
        finally:
            engine.dispose()

    thread = threading.Thread(target=run, name="notify", daemon=True)
    thread.start()
    return thread
