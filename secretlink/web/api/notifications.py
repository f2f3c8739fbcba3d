"""Notifications: the owner shows, sets and removes where "new message" is sent.

The notifier itself is secretlink.notify; this blueprint checks the owner's token
and the body. The message path does not call it: storage has the notifier mark the
inboxes that got messages due, in the transaction that stores them (create_app wires
Storage.on_stored).
"""

from flask import Blueprint, current_app, jsonify

from secretlink.notify.service import Notifications
from secretlink.notify.targets import (
    DEFAULT_DELAY_MINUTES,
    DEFAULT_TEXT,
    MAX_DELAY_MINUTES,
    MAX_TEXT_CHARS,
    TargetError,
    Targets,
    updated,
)
from secretlink.web.api.common import PREFIX, inbox_key, json_body, require_inbox, require_owner
from secretlink.web.errors import ApiError

bp = Blueprint("notifications", __name__, url_prefix=PREFIX)


def notifications() -> Notifications:
    return current_app.extensions["secretlink.notify"]


def settings_json(targets: Targets | None) -> dict:
    service = notifications()
    shown = targets or Targets()
    return {
        "enabled": targets is not None,
        "text": shown.text,
        "max_delay_minutes": shown.max_delay_minutes,
        "push": shown.push.info() if shown.push else None,
        "webhook": shown.webhook,
        "vapid_public_key": service.vapid_public_key,
        "limits": {
            "max_text_chars": MAX_TEXT_CHARS,
            "max_delay_minutes": MAX_DELAY_MINUTES,
            "default_text": DEFAULT_TEXT,
            "default_delay_minutes": DEFAULT_DELAY_MINUTES,
        },
    }


def _owner(public_key: str, kind: str) -> str:
    public_key = inbox_key(public_key)
    require_owner(public_key, kind)
    if not notifications().enabled:
        raise ApiError(404, "notifications_off", "this server does not send notifications")
    require_inbox(public_key)
    return public_key


@bp.get("/inboxes/<public_key>/notifications")
def show_notifications(public_key: str):
    public_key = _owner(public_key, "read")
    return jsonify(settings_json(notifications().targets.get(public_key)))


@bp.put("/inboxes/<public_key>/notifications")
def save_notifications(public_key: str):
    public_key = _owner(public_key, "write")
    body = json_body()
    service = notifications()
    try:
        targets = updated(service.targets.get(public_key), body, service.allow_local)
    except TargetError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    service.targets.put(public_key, targets)
    return jsonify(settings_json(targets))


@bp.delete("/inboxes/<public_key>/notifications")
def delete_notifications(public_key: str):
    public_key = _owner(public_key, "write")
    notifications().targets.delete(public_key)
    return "", 204
