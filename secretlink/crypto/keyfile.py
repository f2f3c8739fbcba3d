"""The key file: how a recipient's private key leaves the browser or the CLI.

A UTF-8 JSON object, the same from both ends:

    {"format": "secretlink-key", "version": 1,
     "public_key": "<43 chars>", "secret_key": "<43 chars>",
     "server": "https://host"}          # optional: where the inbox lives

The public key is stored for the reader's convenience and must match the secret key.
"""

import json
from dataclasses import dataclass

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.errors import EncodingError, InvalidKeyError, KeyFileError
from secretlink.crypto.keys import KeyPair, keypair_from_secret

KEY_FILE_FORMAT = "secretlink-key"
KEY_FILE_VERSION = 1
MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True)
class KeyFile:
    keypair: KeyPair
    server: str | None = None


def dump_key_file(key_file: KeyFile) -> str:
    document = {
        "format": KEY_FILE_FORMAT,
        "version": KEY_FILE_VERSION,
        "public_key": b64encode(key_file.keypair.public_key),
        "secret_key": b64encode(key_file.keypair.secret_key),
    }
    if key_file.server:
        document["server"] = key_file.server
    return json.dumps(document, indent=2) + "\n"


def load_key_file(data: bytes | str) -> KeyFile:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError("key file is too large to be a secretlink key file")
    try:
        # A byte-order mark is tolerated, as browsers' File.text() drops it too.
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: deeply nested JSON fits in a few kilobytes.
        raise KeyFileError("not a secretlink key file (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError("not a secretlink key file (format is not secretlink-key)")
    version = document.get("version")
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
    return KeyFile(keypair, server or None)
