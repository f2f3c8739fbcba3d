"""The key file: how a recipient's private key leaves the browser or the CLI.

A UTF-8 JSON object, the same from both ends:

    {"format": "secretlink-key", "version": 1,
     "public_key": "<43 chars>", "secret_key": "<43 chars>",
     "server": "https://host"}          # optional: where the inbox lives

The public key is stored for the reader's convenience and must match the secret key.
A sender's reply key file (SPEC 6, "The conversation member") adds
`"conversation": {"with": "<inbox key>", "id": "<conversation id>"}`.
"""

import json
import re
from dataclasses import dataclass

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.errors import EncodingError, InvalidKeyError, KeyFileError
from secretlink.crypto.keys import KeyPair, decode_public_key, keypair_from_secret
from secretlink.crypto.origin import InvalidOriginError, canonical_origin

KEY_FILE_FORMAT = "secretlink-key"
KEY_FILE_VERSION = 1
MAX_KEY_FILE_BYTES = 4096
CONVERSATION_ID_BYTES = 16


@dataclass(frozen=True)
class ConversationRef:
    """Which conversation a reply key belongs to: the inbox key it talks to, and the id."""

    inbox_key: bytes
    conversation_id: bytes


@dataclass(frozen=True)
class KeyFile:
    keypair: KeyPair
    server: str | None = None
    conversation: ConversationRef | None = None


def dump_key_file(key_file: KeyFile) -> str:
    document = {
        "format": KEY_FILE_FORMAT,
        "version": KEY_FILE_VERSION,
        "public_key": b64encode(key_file.keypair.public_key),
        "secret_key": b64encode(key_file.keypair.secret_key),
    }
    if key_file.server:
        document["server"] = key_file.server
    if key_file.conversation:
        document["conversation"] = {
            "with": b64encode(key_file.conversation.inbox_key),
            "id": b64encode(key_file.conversation.conversation_id),
        }
    return json.dumps(document, indent=2) + "\n"


def is_origin(text: str) -> bool:
    """Whether `text` is an origin exactly as section 7.5 writes it (the key file's
    `server`): one that normalises, and to itself."""
    try:
        return canonical_origin(text) == text
    except InvalidOriginError:
        return False


class _NotStrictJson(ValueError):
    pass


def _refuse_constant(name: str) -> None:
    raise _NotStrictJson(f"{name} is not a JSON value")


def _unique_members(pairs: list[tuple[str, object]]) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _NotStrictJson("an object has two members with the same name")
    return document


# Arrays and objects nest at most this deep (the file's own object is level 1): every
# reader can follow that, where a deeper file would be valid for one JSON parser and
# too deep for another (Python's stops near 1,000 levels, JavaScript's far later).
MAX_NESTING = 32
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]')


def _nesting(text: str) -> int:
    """How deep arrays and objects nest in `text` (strings are skipped, not scanned)."""
    depth = deepest = 0
    for piece in _JSON_TOKENS.findall(text):
        if piece in ("{", "["):
            depth += 1
            deepest = max(deepest, depth)
        elif piece in ("}", "]"):
            depth -= 1
    return deepest


def parse_strict_json(
    data: bytes, error: type[Exception] = KeyFileError, what: str = "a secretlink key file"
) -> object:
    """Strict RFC 8259: no NaN or Infinity, no repeated member names, nesting at most
    MAX_NESTING deep. One UTF-8 byte-order mark is skipped, as browsers' File.text()
    does. Failures raise `error`, saying the content is not `what`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"not {what} (not UTF-8)") from None
    if _nesting(text) > MAX_NESTING:
        raise error(f"not {what} (nested over {MAX_NESTING} deep)")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_members,
        )
    except _NotStrictJson as exc:
        raise error(f"not {what} ({exc})") from None
    except ValueError:
        raise error(f"not {what} (not JSON)") from None


def load_key_file(data: bytes | str) -> KeyFile:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate then fails to decode
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError("key file is too large to be a secretlink key file")
    return key_file_from_document(parse_strict_json(data))


def key_file_from_document(document: object) -> KeyFile:
    """Rules 3 to 12 of SPEC section 6, on a parsed key file (also one inside a bundle
    of a protected key file, section 6a)."""
    if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError("not a secretlink key file (format is not secretlink-key)")
    version = document.get("version")
    # The number 1, however written (1.0 is the same JSON number); never true or "1".
    if isinstance(version, bool) or version != KEY_FILE_VERSION:
        raise KeyFileError(f"unsupported key file version {document.get('version')!r}")
    try:
        keypair = keypair_from_secret(b64decode(document.get("secret_key")))
        public_key = b64decode(document.get("public_key"))
    except (EncodingError, InvalidKeyError) as exc:
        raise KeyFileError(f"key file holds a malformed key: {exc}") from None
    if public_key != keypair.public_key:
        raise KeyFileError("key file's public key does not belong to its secret key")
    server = document.get("server")
    if server is not None and not isinstance(server, str):
        raise KeyFileError("key file's server must be a string")
    if server and not is_origin(server):
        raise KeyFileError(
            "key file's server must be an origin such as https://host or http://host:8000 "
            "(lower case, no path, no default port)"
        )
    conversation = None
    if "conversation" in document:
        conversation = _conversation(document["conversation"], keypair.public_key)
    return KeyFile(keypair, server or None, conversation)


def _conversation(member: object, own_key: bytes) -> ConversationRef:
    """Rules 10 to 12: an object of exactly `with` (the inbox key) and `id`."""
    if not isinstance(member, dict) or set(member) != {"with", "id"}:
        raise KeyFileError("key file's conversation must be an object of exactly `with` and `id`")
    try:
        inbox_key = decode_public_key(member["with"])
    except InvalidKeyError as exc:
        raise KeyFileError(f"key file's conversation is with a malformed key: {exc}") from None
    if inbox_key == own_key:
        raise KeyFileError("key file's conversation is with its own key")
    try:
        conversation_id = b64decode(member["id"])
    except EncodingError:
        raise KeyFileError("key file's conversation id is not base64url") from None
    if len(conversation_id) != CONVERSATION_ID_BYTES:
        raise KeyFileError(f"key file's conversation id is not {CONVERSATION_ID_BYTES} bytes")
    return ConversationRef(inbox_key, conversation_id)
