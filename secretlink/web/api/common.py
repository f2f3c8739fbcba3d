"""What every /api/v1 blueprint shares: the services it calls, reading the JSON body,
and the checks on an inbox key and its owner's token."""

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from secretlink.crypto import InvalidKeyError, decode_public_key
from secretlink.store import quotas
from secretlink.store.blobs import BlobStore
from secretlink.store.storage import Storage
from secretlink.web.auth import Authenticator
from secretlink.web.errors import ApiError, require_text
from secretlink.web.limits import budgets
from secretlink.web.pow import ProofOfWork

PREFIX = "/api/v1"


def storage() -> Storage:
    return current_app.extensions["secretlink.storage"]


def blob_store() -> BlobStore:
    """The attachment blobs: uploads in `<data dir>/blobs`, complete blobs where
    SECRETLINK_BLOB_STORE says (secretlink/store/blobs.py)."""
    extensions = current_app.extensions
    if "secretlink.blobs" not in extensions:
        settings = current_app.config["SECRETLINK"]
        extensions["secretlink.blobs"] = BlobStore.for_settings(storage(), settings)
    return extensions["secretlink.blobs"]


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


def proof_of_work() -> ProofOfWork:
    return current_app.extensions["secretlink.pow"]
