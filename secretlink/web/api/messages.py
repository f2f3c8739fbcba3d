"""Messages: a puzzle for one message, sending it, and the owner listing and deleting."""

import re

from flask import Blueprint, current_app, jsonify, request

from secretlink.crypto import (
    EncodingError,
    InvalidKeyError,
    SizeError,
    VersionError,
    b64decode,
    b64encode,
    validate_envelope_shape,
)
from secretlink.crypto.attachments import MAX_FILES
from secretlink.crypto.envelope import MAX_ENVELOPE
from secretlink.crypto.keys import check_public_key
from secretlink.store import quotas
from secretlink.store.blobs import BlobError, valid_blob_id
from secretlink.store.storage import NotTaken, PuzzleUsed, Spend, received_at_text
from secretlink.web.api.attachments import as_api_error
from secretlink.web.api.common import (
    PREFIX,
    blob_store,
    inbox_key,
    json_body,
    proof_of_work,
    require_inbox,
    require_owner,
    require_usage,
    storage,
    string_field,
)
from secretlink.web.api.settings import refuse_closed, sending_refusal
from secretlink.web.errors import ApiError
from secretlink.web.limits import MessagePlace, budgets
from secretlink.web.pow import puzzle_used

bp = Blueprint("messages", __name__, url_prefix=PREFIX)

# Message ids are random base64url; anything else names no message (and must not
# reach the database: PostgreSQL refuses NUL characters with an error).
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# ASCII digits only: int() alone would take " 5 ", Arabic-Indic digits and "1_0".
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
# Unpadded base64url of the largest v1 envelope.
MAX_CIPHERTEXT_CHARS = (MAX_ENVELOPE * 4 + 2) // 3


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


def blob_ids_field(body: dict) -> list[str]:
    """The blobs the message lists (field 0x03 names them inside the envelope; the
    server learns only how many there are and their lengths)."""
    value = body.get("attachments", [])
    if not isinstance(value, list) or not all(valid_blob_id(item) for item in value):
        raise ApiError(
            400, "bad_field", "'attachments' must be a list of blob ids (22 characters each)"
        )
    if len(value) > MAX_FILES:
        raise ApiError(400, "bad_field", f"a message lists at most {MAX_FILES} attachments")
    if len(set(value)) != len(value):
        raise ApiError(400, "bad_field", "'attachments' names a blob twice")
    return value


def check_blobs(public_key: str, blob_ids: list[str]) -> None:
    """Every listed blob is this inbox's, complete and unsent, and they fit in one message."""
    try:
        blobs = blob_store().unsent(public_key, blob_ids)
    except BlobError as refused:
        raise as_api_error(refused) from None
    limit = current_app.config["SECRETLINK"].attachment_max_message_bytes
    if sum(blob.length for blob in blobs) > limit:
        raise ApiError(
            413,
            "message_too_large",
            f"this server takes at most {limit} attachment bytes (stored) per message",
        )


@bp.post("/inboxes/<public_key>/puzzle")
def create_puzzle(public_key: str):
    """A proof-of-work puzzle for one message to this inbox."""
    inbox = require_inbox(inbox_key(public_key))
    refuse_closed(inbox.public_key)  # paused, moved on or disabled: no work for nothing
    return jsonify(proof_of_work().issue(inbox.public_key))


@bp.post("/inboxes/<public_key>/messages")
def post_message(public_key: str):
    # The common request (a JSON object, a known Host) is answered by the same
    # submit() without Flask's request cycle (secretlink/web/fast_path.py); every
    # other one comes here.
    message_id = submit(inbox_key(public_key), json_body())
    return jsonify(id=message_id), 201


def submit(public_key: str, body: dict) -> str:
    """Check and store one message for a checked inbox key; its id, or ApiError.

    Needs the app's context (its services), not a request's. The fast path's copy
    for an event loop (secretlink/web/fast_path.py) runs the same steps around an
    awaited store.
    """
    envelope, blob_ids = parsed_message(body)
    try:
        place, spend = admissible(public_key, body, blob_ids)
    except ApiError as error:
        raise refusal_first(public_key, error) from None
    with place:  # given back unless the message is stored and charged
        try:
            if blob_ids:
                # One transaction: the message, its puzzle and the links to its blobs.
                message_id = blob_store().add_message(public_key, envelope, blob_ids, spend)
            else:
                message_id = storage().add_message(public_key, envelope, spend)
        except STORAGE_REFUSALS as refused:
            raise storage_refusal(public_key, refused) from None
        return accepted(public_key, message_id, place)


def parsed_message(body: dict) -> tuple[bytes, list[str]]:
    """The envelope and the blobs the body lists, or ApiError (400, 413): what is
    wrong with the request itself, answered before anything about the inbox."""
    return envelope_from(string_field(body, "ciphertext")), blob_ids_field(body)


def admissible(
    public_key: str, body: dict, blob_ids: list[str]
) -> tuple[MessagePlace, Spend | None]:
    """The message's place in the shared budgets and its puzzle's spend if the inbox
    may be sent this message now, or ApiError. Reads no database unless a blob is
    listed (or a stale puzzle needs the current difficulty) and counts nothing: the
    caller charges the place once the message is stored, or leaves its `with`."""
    if blob_ids:
        check_blobs(public_key, blob_ids)
    # A place in the shared budgets is held, not charged, before the puzzle is verified.
    place = budgets().hold_message(public_key)
    # Verified here; spent in the transaction that stores the message, where the
    # inbox's state (paused, moved on, disabled, its hourly cap) and the quotas are
    # decided too, once per batch of messages: a message refused there keeps its
    # puzzle, and an accepted one costs its request no database call.
    try:
        return place, proof_of_work().verify(public_key, body.get("puzzle"), body.get("solution"))
    except BaseException:
        place.release()
        raise


def refusal_first(public_key: str, error: ApiError) -> ApiError:
    """The answer to a message admissible() refused: the inbox's own state if it
    refuses messages (no such inbox, paused, ...), since docs/API.md names that
    first; looked up only now, on the way out. Else `error`."""
    try:
        refuse_closed(public_key, sending=True)
    except ApiError as closed:
        return closed
    return error


# What storing a message can refuse it for, beside an unknown inbox.
STORAGE_REFUSALS = (quotas.QuotaExceeded, BlobError, PuzzleUsed, NotTaken)


def storage_refusal(public_key: str, refused: Exception) -> ApiError:
    """The answer to a message that storing refused (one of STORAGE_REFUSALS)."""
    if isinstance(refused, PuzzleUsed):
        return puzzle_used()
    if isinstance(refused, NotTaken):
        return sending_refusal(public_key, refused.reason)
    return as_api_error(refused)


def accepted(public_key: str, message_id: str | None, place: MessagePlace) -> str:
    """The stored message's id, once counted; 404 if its inbox did not exist."""
    if message_id is None:
        raise ApiError(404, "unknown_inbox", "no inbox with this key on this server")
    # Accepted: only now does the message count for its inbox and the instance.
    place.charge()
    # Only messages taken raise the difficulty: asking for puzzles costs nothing.
    proof_of_work().accepted(public_key)
    return message_id


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
    blob_store().sweep(public_key)  # the message's files: their rows went with it
    return "", 204
