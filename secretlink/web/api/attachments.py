"""Attachments: uploading a message's encrypted files, and the owner downloading them.

A sender uploads each file's blob (crypto/SPEC.md 5.11) before sending the message
that lists it: a puzzle whose difficulty grows with the blob's length, the start of
the upload (which reserves the quota and returns a per-upload capability), then the
blob in requests of at most 1 MiB at explicit offsets; a GET on the upload tells how
much arrived, so a dropped connection resumes where it stopped. The message then names
its blobs (secretlink/web/api/messages.py). The owner downloads a blob with the inbox's
token. docs/API.md, section "Attachments", documents the endpoints and errors.
"""

from collections.abc import Iterator

from flask import Blueprint, current_app, jsonify, request, send_file
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from secretlink.crypto.attachments import padded_length
from secretlink.store import quotas
from secretlink.store.blobs import (
    PIECE_BYTES,
    UPLOAD_CHUNK_BYTES,
    Blob,
    BlobError,
    valid_blob_id,
    valid_blob_length,
)
from secretlink.web.api.common import (
    PREFIX,
    blob_store,
    inbox_key,
    json_body,
    proof_of_work,
    require_owner,
    require_usage,
)
from secretlink.web.api.settings import refuse_closed, require_settings
from secretlink.web.errors import ApiError
from secretlink.web.pow import UPLOAD

bp = Blueprint("attachments", __name__, url_prefix=PREFIX)

CAPABILITY_SALT = "secretlink/v1/upload-capability"
# The request header that says where an appended piece starts (as in the tus protocol).
OFFSET_HEADER = "Upload-Offset"


def as_api_error(error: BlobError | quotas.QuotaExceeded) -> ApiError:
    extra = {"received": error.received} if getattr(error, "received", None) is not None else None
    return ApiError(error.status, error.code, error.message, extra=extra)


# ---- checks shared by the puzzle and the start ----


def max_blob_bytes() -> int:
    """The longest blob taken: that of a file of exactly the largest size allowed."""
    return padded_length(current_app.config["SECRETLINK"].attachment_max_file_bytes)


def require_accepting(public_key: str) -> None:
    """403 unless the inbox takes messages now and its owner turned attachments on."""
    refuse_closed(public_key)
    if not require_settings(public_key).accepts_attachments:
        raise ApiError(
            403,
            "attachments_not_accepted",
            "this inbox does not take attachments: send the message without files",
        )


def length_field(body: dict) -> int:
    length = body.get("length")
    if not valid_blob_length(length):
        raise ApiError(
            400,
            "bad_length",
            "'length' must be a blob's exact padded length (crypto/SPEC.md 5.11)",
        )
    limit = current_app.config["SECRETLINK"].attachment_max_file_bytes
    if length > max_blob_bytes():
        raise ApiError(413, "file_too_large", f"this server takes files of at most {limit} bytes")
    return length


def blob_id_field(body: dict) -> str:
    blob_id = body.get("blob_id")
    if not valid_blob_id(blob_id):
        raise ApiError(
            400, "bad_blob_id", "'blob_id' must be 16 random bytes in base64url (22 characters)"
        )
    return blob_id


# ---- the sender's side ----


@bp.post("/inboxes/<public_key>/uploads/puzzle")
def upload_puzzle(public_key: str):
    """A proof-of-work puzzle for one upload of `length` bytes."""
    public_key = inbox_key(public_key)
    length = length_field(json_body())
    require_usage(public_key)
    require_accepting(public_key)
    return jsonify(proof_of_work().issue(public_key, UPLOAD, length))


@bp.post("/inboxes/<public_key>/uploads")
def start_upload(public_key: str):
    """Reserve the quota for one blob and hand out the capability to upload it."""
    public_key = inbox_key(public_key)
    body = json_body()
    blob_id = blob_id_field(body)
    length = length_field(body)
    require_usage(public_key)
    require_accepting(public_key)
    proof_of_work().check(public_key, body.get("puzzle"), body.get("solution"), UPLOAD, length)
    try:
        blob_store().reserve(public_key, blob_id, length)
    except (BlobError, quotas.QuotaExceeded) as refused:
        raise as_api_error(refused) from None
    settings = current_app.config["SECRETLINK"]
    capability = serializer().dumps({"pk": public_key, "b": blob_id, "len": length})
    return (
        jsonify(
            blob_id=blob_id,
            length=length,
            upload=capability,
            expires_in=settings.attachment_upload_ttl,
            chunk_bytes=UPLOAD_CHUNK_BYTES,
        ),
        201,
    )


def serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CAPABILITY_SALT)


def require_capability(public_key: str, blob_id: str) -> Blob:
    """The upload the request's capability names; 401 for a bad or expired one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "capability_required", "send the upload's capability as 'Authorization: Bearer'"
        )
    ttl = current_app.config["SECRETLINK"].attachment_upload_ttl
    try:
        claims = serializer().loads(token.strip(), max_age=ttl)
    except SignatureExpired:
        raise ApiError(
            401,
            "upload_expired",
            "this upload's time is over: start the upload again with a new blob id and key",
        ) from None
    except (BadSignature, UnicodeError):
        raise ApiError(401, "bad_capability", "not a capability this server issued") from None
    if not isinstance(claims, dict) or claims.get("pk") != public_key or claims.get("b") != blob_id:
        raise ApiError(403, "wrong_upload", "the capability is for another upload")
    blob = blob_store().get(public_key, blob_id)
    if blob is None:
        raise ApiError(
            404, "unknown_blob", "no such upload (it was abandoned and deleted, or never started)"
        )
    return blob


def upload_state(blob: Blob) -> dict:
    """Where the upload stands. One whose bytes all arrived but whose storing failed
    (503, object store unreachable) is stored now: asking again finishes it."""
    try:
        received, complete = blob_store().progress(blob)
    except BlobError as refused:
        raise as_api_error(refused) from None
    return {"received": received, "length": blob.length, "complete": complete}


@bp.get("/inboxes/<public_key>/uploads/<blob_id>")
def show_upload(public_key: str, blob_id: str):
    """How much of the upload arrived: where a resumed upload goes on."""
    blob = require_capability(inbox_key(public_key), blob_id)
    state = upload_state(blob)
    response = jsonify(state)
    response.headers[OFFSET_HEADER] = str(state["received"])
    return response


def offset_header() -> int:
    text = request.headers.get(OFFSET_HEADER, "")
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        raise ApiError(
            400, "bad_offset", f"send the piece's position as '{OFFSET_HEADER}', a whole number"
        )
    return int(text)


def body_pieces() -> Iterator[bytes]:
    """The request body in pieces, never more than UPLOAD_CHUNK_BYTES in all (else 413)."""
    declared = request.content_length
    if declared is not None and declared > UPLOAD_CHUNK_BYTES:
        raise ApiError(
            413, "chunk_too_large", f"send at most {UPLOAD_CHUNK_BYTES} bytes per request"
        )
    request.max_content_length = UPLOAD_CHUNK_BYTES + 1  # before the stream is opened
    stream = request.stream
    total = 0
    while piece := stream.read(PIECE_BYTES):
        total += len(piece)
        if total > UPLOAD_CHUNK_BYTES:
            raise ApiError(
                413, "chunk_too_large", f"send at most {UPLOAD_CHUNK_BYTES} bytes per request"
            )
        yield piece


@bp.patch("/inboxes/<public_key>/uploads/<blob_id>")
def append_upload(public_key: str, blob_id: str):
    """Append the body at the offset the header names (the length received so far)."""
    blob = require_capability(inbox_key(public_key), blob_id)
    if request.mimetype != "application/octet-stream":
        raise ApiError(415, "unsupported_media_type", "send the piece as application/octet-stream")
    offset = offset_header()
    try:
        received = blob_store().append(blob, offset, body_pieces())
    except BlobError as refused:
        raise as_api_error(refused) from None
    response = jsonify(received=received, length=blob.length, complete=received == blob.length)
    response.headers[OFFSET_HEADER] = str(received)
    return response


# ---- the owner's side ----


@bp.get("/inboxes/<public_key>/blobs/<blob_id>")
def download_blob(public_key: str, blob_id: str):
    """A blob of a message the inbox holds, streamed from where it is kept (its file or
    its object, never read whole into memory); a Range is honoured."""
    public_key = inbox_key(public_key)
    require_owner(public_key, "read")
    blob = blob_store().get(public_key, blob_id) if valid_blob_id(blob_id) else None
    if blob is None or blob.message_id is None or not blob.complete:
        raise ApiError(404, "unknown_blob", "no such attachment in this inbox")
    try:
        stored, size = blob_store().open(blob)
    except FileNotFoundError:
        raise ApiError(404, "unknown_blob", "no such attachment in this inbox") from None
    except BlobError as refused:
        raise as_api_error(refused) from None
    response = send_file(
        stored,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"{blob.id}.blob",
        conditional=False,
        etag=False,
    )
    # What is kept, byte for byte: a damaged store's short blob is sent whole and
    # short, for the recipient's device to refuse, never cut off mid-answer.
    response.content_length = size
    # No validators (a file time would say when the blob arrived): never a 304, but
    # a Range is honoured, so an interrupted download resumes.
    response.last_modified = None
    response.headers["Cache-Control"] = "no-store"
    try:
        response.make_conditional(request.environ, accept_ranges=True, complete_length=size)
    except RequestedRangeNotSatisfiable:
        response.close()
        raise ApiError(
            416, "bad_range", f"the range is not within the blob's {size} bytes"
        ) from None
    return response
