"""Inbox settings: the owner's (pause, retention, hourly cap, replies, attachments),
deleting every message, rotating the link; and the gate that turns senders away from
an inbox that is paused, moved on, disabled by the operator, or past its owner's cap.

Everything but the gate needs the inbox's token. Senders learn only what the public
inbox view shows (`sender_view`): whether the inbox takes messages and what it offers,
never its retention, cap, new key or the operator's reason. docs/API.md, section
"Inbox settings", documents the endpoints and errors.
"""

import math
from datetime import datetime, timedelta

from flask import Blueprint, current_app, jsonify

from secretlink.store.blobs import UPLOAD_CHUNK_BYTES
from secretlink.store.inbox_settings import (
    ALREADY_MOVED,
    DISABLED,
    HOURLY_CAP_REACHED,
    MAX_HOURLY_CAP,
    MOVED,
    NEW_NOT_OPEN,
    NO_NEW_INBOX,
    NO_OLD_INBOX,
    OLD_DISABLED,
    OPEN,
    OWNER_FIELDS,
    PAUSED,
    RETENTION_CHOICES,
    InboxSettings,
    InboxSettingsStore,
)
from secretlink.store.storage import utcnow
from secretlink.web.api.common import (
    PREFIX,
    authenticator,
    blob_store,
    inbox_key,
    json_body,
    require_owner,
    storage,
    string_field,
)
from secretlink.web.errors import ApiError
from secretlink.web.origin import link_for

bp = Blueprint("settings", __name__, url_prefix=PREFIX)

# Members the owner sees but cannot set: rotation and the operator set them.
READ_ONLY = frozenset(
    {"status", "moved_to", "disabled", "disabled_reason", "instance_retention_days"}
)

# What senders are told, in plain and neutral words. A disabled inbox is "not
# available": senders are not told that, or why, the operator stepped in.
NOTICES = {
    PAUSED: "This inbox is not taking messages right now. Its owner has paused it; "
    "try again later.",
    MOVED: "This inbox has moved on: its owner no longer takes messages at this link.",
    DISABLED: "This inbox is not available.",
}
REFUSAL_CODES = {PAUSED: "inbox_paused", MOVED: "inbox_moved", DISABLED: "inbox_disabled"}


def settings_store() -> InboxSettingsStore:
    extensions = current_app.extensions
    if "secretlink.inbox_settings" not in extensions:
        extensions["secretlink.inbox_settings"] = InboxSettingsStore(storage().engine)
    return extensions["secretlink.inbox_settings"]


def _unknown_inbox() -> ApiError:
    return ApiError(404, "unknown_inbox", "no inbox with this key on this server")


def require_settings(public_key: str) -> InboxSettings:
    found = settings_store().get(public_key)
    if found is None:
        raise _unknown_inbox()
    return found


# ---- what senders see, and the gate in front of sending ----


def sender_view(found: InboxSettings) -> dict:
    """The members the public inbox view adds: nothing a sender does not need."""
    status = found.status
    return {
        "status": status,
        "notice": NOTICES.get(status),
        "accepts_replies": found.accepts_replies,
        "accepts_attachments": found.accepts_attachments,
    }


def refuse_closed(public_key: str, *, sending: bool = False) -> None:
    """403 if the inbox takes no messages now; with `sending`, 429 past the owner's cap.

    Called before any puzzle is issued or taken, so a refused sender keeps their work.
    A message is checked again, exactly, where it is stored (SendingGate); a message
    refused for another reason is answered with this first, as docs/API.md orders
    the refusals.
    """
    found = require_settings(public_key)
    if found.status != OPEN:
        raise ApiError(403, REFUSAL_CODES[found.status], NOTICES[found.status])
    cap = found.hourly_cap if sending else None
    if cap is not None:
        count, oldest = settings_store().last_hour(public_key)
        if count >= cap:
            raise HourlyCapReached(oldest)


def sending_refusal(public_key: str, reason: str) -> ApiError:
    """The answer to a message its inbox did not take where it was to be stored
    (secretlink.store.inbox_settings.SendingGate): the same as refuse_closed's."""
    if reason == HOURLY_CAP_REACHED:
        return HourlyCapReached(settings_store().last_hour(public_key)[1])
    return ApiError(403, REFUSAL_CODES[reason], NOTICES[reason])


# Retry-After is rounded up to this: exact, it would tell a stranger the minute the
# inbox's oldest message of the hour arrived.
RETRY_STEP_SECONDS = 900


class HourlyCapReached(ApiError):
    """429 `hourly_cap_reached`, with Retry-After: when the oldest message counted
    leaves the hour (the earliest a message can fit again), rounded up to a quarter
    of an hour."""

    def __init__(self, oldest: datetime | None):
        super().__init__(
            429,
            HOURLY_CAP_REACHED,
            "this inbox takes only a limited number of messages per hour, and that "
            "many came in the last hour; try again later",
        )
        leaves = (oldest or utcnow()) + timedelta(hours=1)
        exact = max(1, math.ceil((leaves - utcnow()).total_seconds()))
        self.retry_after = math.ceil(exact / RETRY_STEP_SECONDS) * RETRY_STEP_SECONDS


@bp.app_errorhandler(HourlyCapReached)
def hourly_cap_answer(error: HourlyCapReached):
    response = jsonify(error=error.message, code=error.code)
    response.status_code = error.status
    response.headers["Retry-After"] = str(error.retry_after)
    return response


# ---- the owner's view and changes ----


def instance_retention() -> int | None:
    return current_app.config["SECRETLINK"].retention_days or None


def owner_json(found: InboxSettings) -> dict:
    return {
        "status": found.status,
        "paused": found.paused,
        "retention_days": found.retention_days,
        "instance_retention_days": instance_retention(),
        "hourly_cap": found.hourly_cap,
        "accepts_replies": found.accepts_replies,
        "accepts_attachments": found.accepts_attachments,
        "moved_to": found.moved_to,
        "disabled": found.disabled,
        "disabled_reason": found.disabled_reason,
    }


def _bad(name: str, wanted: str) -> ApiError:
    return ApiError(400, "bad_setting", f"'{name}' must be {wanted}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validated_changes(body: dict) -> dict:
    """The owner's changes, each checked; 400 naming the first member that is wrong."""
    for name in body:
        if name in READ_ONLY:
            raise ApiError(
                400, "read_only_setting", f"'{name}' cannot be changed with this request"
            )
        if name not in OWNER_FIELDS:
            raise ApiError(
                400,
                "unknown_setting",
                f"'{name}' is not an inbox setting (known: {', '.join(OWNER_FIELDS)})",
            )
    changes = {}
    for name in ("paused", "accepts_replies", "accepts_attachments"):
        if name in body:
            if not isinstance(body[name], bool):
                raise _bad(name, "true or false")
            changes[name] = body[name]
    if "retention_days" in body:
        days = body["retention_days"]
        if days is not None and not (_is_int(days) and days in RETENTION_CHOICES):
            choices = ", ".join(map(str, RETENTION_CHOICES))
            raise _bad("retention_days", f"one of {choices}, or null for the server's default")
        limit = instance_retention()
        if days is not None and limit is not None and days > limit:
            raise ApiError(
                400,
                "retention_too_long",
                f"this server keeps messages at most {limit} days; choose {limit} or fewer",
            )
        changes["retention_days"] = days
    if "hourly_cap" in body:
        cap = body["hourly_cap"]
        if cap is not None and not (_is_int(cap) and 1 <= cap <= MAX_HOURLY_CAP):
            raise _bad("hourly_cap", f"a whole number from 1 to {MAX_HOURLY_CAP}, or null")
        changes["hourly_cap"] = cap
    return changes


@bp.get("/inboxes/<public_key>/settings")
def show_settings(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "read")
    return jsonify(owner_json(require_settings(public_key)))


@bp.patch("/inboxes/<public_key>/settings")
def change_settings(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    changes = validated_changes(json_body())
    found = settings_store().update(public_key, changes)
    if found is None:
        raise _unknown_inbox()
    return jsonify(owner_json(found))


@bp.delete("/inboxes/<public_key>/messages")
def delete_all_messages(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    deleted = settings_store().delete_all_messages(public_key)
    if deleted is None:
        raise _unknown_inbox()
    blob_store().sweep(public_key)  # the messages' files: their rows went with them
    return jsonify(deleted=deleted)


# ---- rotation ----


def _new_inbox_token(new_key: str, token: str) -> None:
    """The new inbox's token must verify too: rotation proves both keys."""
    try:
        authenticator().check_token(f"Bearer {token}", new_key)
    except ApiError as refused:
        raise ApiError(
            refused.status, f"new_{refused.code}", f"new_token: {refused.message}"
        ) from None


ROTATION_REFUSALS = {
    NO_OLD_INBOX: (404, "unknown_inbox", "no inbox with this key on this server"),
    NO_NEW_INBOX: (
        404,
        "unknown_new_inbox",
        "the new inbox does not exist: create it (PUT) before rotating to it",
    ),
    OLD_DISABLED: (403, "inbox_disabled", "this inbox was disabled by the operator"),
    ALREADY_MOVED: (409, "already_moved", "this inbox has already moved on to another key"),
    NEW_NOT_OPEN: (
        409,
        "new_inbox_not_open",
        "the new inbox has moved on or is disabled: rotate to a fresh one",
    ),
}


@bp.post("/inboxes/<public_key>/rotate")
def rotate(public_key: str):
    """Mark this inbox moved on to a new one the same owner already created."""
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    body = json_body()
    unknown = set(body) - {"new_public_key", "new_token"}
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown member: {sorted(unknown)[0]!r}")
    try:
        new_key = inbox_key(string_field(body, "new_public_key"))
    except ApiError as refused:
        raise ApiError(400, refused.code, f"new_public_key: {refused.message}") from None
    if new_key == public_key:
        raise ApiError(400, "same_key", "the new key must differ from this inbox's key")
    _new_inbox_token(new_key, string_field(body, "new_token"))
    outcome = settings_store().rotate(public_key, new_key)
    if outcome in ROTATION_REFUSALS:
        status, code, message = ROTATION_REFUSALS[outcome]
        raise ApiError(status, code, message)
    # After the move, so a refused rotation copies nothing; repeating a rotation that
    # stopped here copies them then.
    current_app.extensions["secretlink.notify"].targets.copy(public_key, new_key)
    return jsonify(public_key=public_key, moved_to=new_key, new_link=link_for(new_key))


def public_inbox_extra(public_key: str) -> dict:
    """The sender-visible state the public inbox view adds (404 if no such inbox); for an
    inbox that takes attachments, the server's limits, so a sender can refuse a file
    before uploading anything."""
    view = sender_view(require_settings(public_key))
    if view["accepts_attachments"]:
        settings = current_app.config["SECRETLINK"]
        view["attachment_limits"] = {
            "max_file_bytes": settings.attachment_max_file_bytes,
            "max_message_bytes": settings.attachment_max_message_bytes,
            "chunk_bytes": UPLOAD_CHUNK_BYTES,
        }
    return view
