"""The JSON API, /api/v1. docs/API.md documents every endpoint and error."""

import re
from importlib.resources import files

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from secretlink import quotas
from secretlink.auth import Authenticator
from secretlink.crypto import (
    EncodingError,
    InvalidKeyError,
    SizeError,
    VersionError,
    b64decode,
    b64encode,
    decode_public_key,
    validate_envelope_shape,
)
from secretlink.crypto.envelope import MAX_ENVELOPE
from secretlink.crypto.keys import check_public_key
from secretlink.errors import ApiError, require_text
from secretlink.limits import budgets
from secretlink.origin import link_for, request_origin
from secretlink.pow import CREATE_INBOX, ProofOfWork
from secretlink.storage import Storage, received_at_text

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PROMPT_CHARS = 500
# Message ids are random base64url; anything else names no message (and must not
# reach the database: PostgreSQL refuses NUL characters with an error).
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# ASCII digits only: int() alone would take " 5 ", Arabic-Indic digits and "1_0".
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
# Unpadded base64url of the largest v1 envelope.
MAX_CIPHERTEXT_CHARS = (MAX_ENVELOPE * 4 + 2) // 3


def storage() -> Storage:
    return current_app.extensions["secretlink.storage"]


def authenticator() -> Authenticator:
    return current_app.extensions["secretlink.auth"]


def read_body() -> bytes:
    """The request body, or 413 if it is larger than the app's limit, however it is framed.

    With a Content-Length the header decides, before a byte is read. Without one
    (chunked transfer encoding) Werkzeug's limited stream stops at the limit without
    raising, which would cut the body silently: so read at most one byte more than
    the limit, and refuse the body if that byte came.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is None:
        return request.get_data(cache=True)
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    request.max_content_length = limit + 1  # before the stream is first opened
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def json_body() -> dict:
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    read_body()  # cached: get_json() parses these bytes
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # deeply nested JSON: silent=True only covers ValueError
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    return data


def string_field(data: dict, name: str, *, required: bool = True, default: str = "") -> str:
    value = data.get(name)
    if value is None and not required:
        return default
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"'{name}' must be a string")
    return require_text(name, value)


def inbox_key(public_key: str) -> str:
    """Validate a public key from the URL or body; the canonical text is the key."""
    try:
        decode_public_key(public_key)
    except InvalidKeyError as exc:
        raise ApiError(400, "bad_public_key", str(exc)) from None
    return public_key


def require_token(public_key: str) -> None:
    authenticator().check_token(request.headers.get("Authorization"), public_key)


def require_owner(public_key: str, kind: str) -> None:
    """The token must verify; only then does the request count, on this inbox's budget
    for owners (`kind` "read" or "write"), so strangers cannot spend it."""
    require_token(public_key)
    budgets().charge_owner(public_key, kind)


def require_usage(public_key: str) -> quotas.Usage:
    """What the inbox holds against its quota; 404 if there is no such inbox."""
    usage = storage().usage(public_key)
    if usage is None:
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    return usage


def require_inbox(public_key: str):
    inbox = storage().get_inbox(public_key)
    if inbox is None:
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    return inbox


# ---- proof of possession ----


@bp.post("/auth/challenge")
def create_challenge():
    public_key = inbox_key(string_field(json_body(), "public_key"))
    return jsonify(authenticator().issue_challenge(public_key))


@bp.post("/auth/token")
def create_token():
    data = json_body()
    public_key, token = authenticator().answer_challenge(
        string_field(data, "challenge"), string_field(data, "proof"), request_origin()
    )
    return jsonify(token=token, public_key=public_key, expires_in=authenticator().token_ttl)


# ---- inboxes ----


def inbox_json(public_key: str, prompt: str) -> dict:
    return {"public_key": public_key, "prompt": prompt, "link": link_for(public_key)}


def proof_of_work() -> ProofOfWork:
    return current_app.extensions["secretlink.pow"]


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
    return jsonify(inbox_json(inbox.public_key, inbox.prompt))


@bp.delete("/inboxes/<public_key>")
def delete_inbox(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    if not storage().delete_inbox(public_key):
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    return "", 204


# ---- messages ----


def envelope_from(ciphertext: str) -> bytes:
    if len(ciphertext) > MAX_CIPHERTEXT_CHARS:
        raise ApiError(413, "too_large", "ciphertext is larger than the largest v1 envelope")
    try:
        envelope = b64decode(ciphertext)
        validate_envelope_shape(envelope)
        check_public_key(envelope[1:33])
    except EncodingError as exc:
        raise ApiError(400, "bad_ciphertext", f"ciphertext: {exc}") from None
    except VersionError as exc:
        raise ApiError(400, "unsupported_version", str(exc)) from None
    except SizeError as exc:
        raise ApiError(400, "bad_envelope_length", str(exc)) from None
    except InvalidKeyError as exc:
        raise ApiError(400, "bad_envelope", f"envelope's ephemeral key: {exc}") from None
    limit = current_app.config["SECRETLINK"].max_envelope_bytes
    if len(envelope) > limit:
        raise ApiError(413, "too_large", f"this server accepts envelopes of at most {limit} bytes")
    return envelope


@bp.post("/inboxes/<public_key>/puzzle")
def create_puzzle(public_key: str):
    """A proof-of-work puzzle for one message to this inbox."""
    inbox = require_inbox(inbox_key(public_key))
    return jsonify(proof_of_work().issue(inbox.public_key))


@bp.post("/inboxes/<public_key>/messages")
def post_message(public_key: str):
    public_key = inbox_key(public_key)
    body = json_body()
    envelope = envelope_from(string_field(body, "ciphertext"))
    usage = require_usage(public_key)
    # The shared budgets and the quotas are looked at, not spent, before the puzzle
    # is: a sender refused here keeps the puzzle for a later try. The quotas are
    # enforced again, exactly, where the message is stored.
    budgets().check_message(public_key)
    try:
        quotas.check(storage().quotas, usage, len(envelope))
        proof_of_work().check(public_key, body.get("puzzle"), body.get("solution"))
        message_id = storage().add_message(public_key, envelope)
    except quotas.QuotaExceeded as full:
        raise ApiError(full.status, full.code, full.message) from None
    if message_id is None:
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    # Accepted: only now does the message count for its inbox and the instance.
    budgets().charge_message(public_key)
    # Only messages taken raise the difficulty: asking for puzzles costs nothing.
    proof_of_work().accepted(public_key)
    return jsonify(id=message_id), 201


@bp.get("/inboxes/<public_key>/messages")
def list_messages(public_key: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "read")
    usage = require_usage(public_key)
    page_size = current_app.config["SECRETLINK"].page_size
    limit_text = request.args.get("limit", str(page_size))
    if not WHOLE_NUMBER.fullmatch(limit_text):
        raise ApiError(400, "bad_limit", "limit must be a whole number (ASCII digits only)")
    limit = int(limit_text)
    if not 1 <= limit <= page_size:
        raise ApiError(400, "bad_limit", f"limit must be from 1 to {page_size}")
    before = request.args.get("before") or None
    if before is not None and not MESSAGE_ID.fullmatch(before):
        raise ApiError(400, "bad_cursor", "'before' names no message of this inbox")
    messages = storage().list_messages(public_key, limit, before)
    if messages is None:
        raise ApiError(400, "bad_cursor", "'before' names no message of this inbox")
    return jsonify(
        messages=[
            {
                "id": m.id,
                "received_at": received_at_text(m.received_at),
                "ciphertext": b64encode(m.envelope),
            }
            for m in messages
        ],
        next=messages[-1].id if len(messages) == limit else None,
        usage=quotas.usage_json(storage().quotas, usage),
    )


@bp.delete("/inboxes/<public_key>/messages/<message_id>")
def delete_message(public_key: str, message_id: str):
    public_key = inbox_key(public_key)
    require_owner(public_key, "write")
    if not MESSAGE_ID.fullmatch(message_id) or not storage().delete_message(public_key, message_id):
        raise ApiError(404, "unknown_message", "no such message in this inbox")
    return "", 204


# ---- the API's own description ----


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of this API (secretlink/openapi.json, served as it is)."""
    document = files("secretlink").joinpath("openapi.json").read_bytes()
    return current_app.response_class(document, mimetype="application/json")
