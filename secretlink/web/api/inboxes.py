"""Inboxes: create one (proof of work), change its prompt, show it, delete it."""

from flask import Blueprint, jsonify

from secretlink.store import quotas
from secretlink.store.inbox_settings import DISABLED_KEPT, NO_INBOX
from secretlink.web.api.common import (
    PREFIX,
    blob_store,
    inbox_key,
    json_body,
    proof_of_work,
    require_inbox,
    require_owner,
    storage,
    string_field,
)
from secretlink.web.api.settings import public_inbox_extra, settings_store
from secretlink.web.errors import ApiError
from secretlink.web.origin import link_for
from secretlink.web.pow import CREATE_INBOX

bp = Blueprint("inboxes", __name__, url_prefix=PREFIX)

MAX_PROMPT_CHARS = 500


def inbox_json(public_key: str, prompt: str) -> dict:
    return {"public_key": public_key, "prompt": prompt, "link": link_for(public_key)}


@bp.post("/inboxes/<public_key>/creation-puzzle")
def create_inbox_puzzle(public_key: str):
    """A proof-of-work puzzle for creating this inbox (no token needed to ask)."""
    return jsonify(proof_of_work().issue(inbox_key(public_key), CREATE_INBOX))


@bp.put("/inboxes/<public_key>")
def save_inbox(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    body = json_body()
    prompt = string_field(body, "prompt", required=False).strip()
    if "\x00" in prompt:  # PostgreSQL text cannot hold NUL
        raise ApiError(400, "bad_field", "'prompt' must not contain NUL characters")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(
            400, "prompt_too_long", f"prompt is limited to {MAX_PROMPT_CHARS} characters"
        )
    if storage().get_inbox(public_key) is None:
        # Creating costs work, so nobody fills the instance with inboxes for free;
        # changing the prompt of one's own inbox does not.
        proof_of_work().check(public_key, body.get("puzzle"), body.get("solution"), CREATE_INBOX)
    try:
        created = storage().save_inbox(public_key, prompt)
    except quotas.QuotaExceeded as full:  # the instance holds as many inboxes as it may
        raise ApiError(full.status, full.code, full.message) from None
    return jsonify(inbox_json(public_key, prompt)), 201 if created else 200


@bp.get("/inboxes/<public_key>")
def show_inbox(public_key: str):
    inbox = require_inbox(inbox_key(public_key))
    state = public_inbox_extra(inbox.public_key)  # what senders need: docs/API.md
    prompt = "" if state["status"] == "disabled" else inbox.prompt  # an operator hid it
    return jsonify({**inbox_json(inbox.public_key, prompt), **state})


@bp.delete("/inboxes/<public_key>")
def delete_inbox(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    outcome = settings_store().delete_by_owner(public_key)
    if outcome == NO_INBOX:
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    if outcome == DISABLED_KEPT:
        # Deleting and registering the key again would lift the operator's decision.
        raise ApiError(
            403,
            "inbox_disabled",
            "this inbox was disabled by the operator, so its owner cannot delete it; "
            "its messages can still be deleted, and the operator can delete the inbox",
        )
    blob_store().delete_inbox_files(public_key)  # its attachments' rows went with it
    return "", 204
