"""The protected key file (SPEC section 6a): a key file, or a bundle of several, under
a passphrase.

    {"format": "secretlink-protected-key", "version": 1,
     "kdf": "argon2id", "memory_kib": 65536, "passes": 3, "salt": "<16 bytes>",
     "cipher": "xchacha20poly1305-ietf", "nonce": "<24 bytes>",
     "ciphertext": "<the key file or bundle, sealed>"}

The passphrase goes through Argon2id (RFC 9106, version 0x13, one lane) to a 32-byte
key, which seals the contents with XChaCha20-Poly1305 (IETF); every header value is in
the associated data, so none can be changed without the file failing to open. The
header is checked in full before any work: a file cannot make a reader spend more than
MAX_MEMORY_KIB and MAX_PASSES on it.
"""

import json
import struct
import unicodedata
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id
import nacl.utils

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.errors import (
    EncodingError,
    KeyFileError,
    PassphraseError,
    ProtectedKeyError,
)
from secretlink.crypto.keyfile import (
    KEY_FILE_FORMAT,
    KeyFile,
    dump_key_file,
    key_file_from_document,
    load_key_file,
    parse_strict_json,
)

PROTECTED_FORMAT = "secretlink-protected-key"
PROTECTED_VERSION = 1
BUNDLE_FORMAT = "secretlink-key-bundle"
BUNDLE_VERSION = 1
KDF = "argon2id"
CIPHER = "xchacha20poly1305-ietf"
PURPOSE = b"secretlink/v1/protected-key"
ARGON2_VERSION = 0x13
LANES = 1
SALT_BYTES = 16
NONCE_BYTES = 24
TAG_BYTES = 16
KEY_BYTES = 32

# What a reader accepts: below, a stolen file is too cheap to guess at (19 MiB and 2
# passes is OWASP's floor for Argon2id); above, a file could make the reader's device
# spend minutes and a gibibyte before the passphrase is even tried.
MIN_MEMORY_KIB = 19456
MAX_MEMORY_KIB = 1024 * 1024
MIN_PASSES = 2
MAX_PASSES = 16
DEFAULT_MEMORY_KIB = 64 * 1024
DEFAULT_PASSES = 3

MAX_FILE_BYTES = 1024 * 1024
MAX_PASSPHRASE_BYTES = 1024
# A writer's rule, not a reader's: a short passphrase is guessed whatever the cost.
MIN_PASSPHRASE_CHARS = 10

WHAT = "a secretlink protected key file"


@dataclass(frozen=True)
class Cost:
    """Argon2id's memory (KiB) and passes, within what readers accept."""

    memory_kib: int = DEFAULT_MEMORY_KIB
    passes: int = DEFAULT_PASSES

    def __post_init__(self) -> None:
        if not MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB:
            raise ProtectedKeyError(
                f"Argon2id memory must be from {MIN_MEMORY_KIB} to {MAX_MEMORY_KIB} KiB, "
                f"not {self.memory_kib}"
            )
        if not MIN_PASSES <= self.passes <= MAX_PASSES:
            raise ProtectedKeyError(
                f"Argon2id passes must be from {MIN_PASSES} to {MAX_PASSES}, not {self.passes}"
            )


@dataclass(frozen=True)
class Header:
    """A protected file's members, checked (steps 1 to 11 of section 6a), not yet opened."""

    cost: Cost
    salt: bytes
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class BundledInbox:
    key_file: KeyFile
    # The browser's per-inbox state (section 6a.3): known members checked, others as given.
    state: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KeyBundle:
    inboxes: tuple[BundledInbox, ...]
    # The browser's state that belongs to no one inbox (section 6a.3), checked likewise.
    device: dict = field(default_factory=dict)


def associated_data(cost: Cost, salt: bytes, nonce: bytes) -> bytes:
    """Every header value, in a fixed layout: changing any of them fails the tag."""
    fixed = struct.pack(
        ">IIIII", PROTECTED_VERSION, ARGON2_VERSION, LANES, cost.memory_kib, cost.passes
    )
    return PURPOSE + b"\x00" + fixed + salt + nonce


def passphrase_bytes(passphrase: str) -> bytes:
    """NFC, then UTF-8: the same passphrase typed on another system gives the same bytes."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_key(passphrase: bytes, salt: bytes, cost: Cost) -> bytes:
    # libsodium's Argon2id is version 0x13 with one lane; memlimit is in bytes.
    return nacl.pwhash.argon2id.kdf(
        KEY_BYTES, passphrase, salt, opslimit=cost.passes, memlimit=cost.memory_kib * 1024
    )


# ---- writing ----


def check_new_passphrase(passphrase: str) -> bytes:
    """A writer's checks (section 6a.4); returns the passphrase's bytes."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ProtectedKeyError("the passphrase is empty")
    try:
        encoded = passphrase_bytes(passphrase)
    except UnicodeEncodeError:
        raise ProtectedKeyError("the passphrase is not valid Unicode text") from None
    if len(unicodedata.normalize("NFC", passphrase)) < MIN_PASSPHRASE_CHARS:
        raise ProtectedKeyError(
            f"the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters "
            "(several unrelated words are easy to remember and hard to guess)"
        )
    if len(encoded) > MAX_PASSPHRASE_BYTES:
        raise ProtectedKeyError(f"the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes")
    return encoded


def protect(contents: bytes, passphrase: str, cost: Cost | None = None) -> str:
    """The protected file (its text) of `contents`, a key file or a bundle."""
    cost = cost or Cost()
    secret = check_new_passphrase(passphrase)
    salt = nacl.utils.random(SALT_BYTES)
    nonce = nacl.utils.random(NONCE_BYTES)
    key = derive_key(secret, salt, cost)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        contents, associated_data(cost, salt, nonce), nonce, key
    )
    document = {
        "format": PROTECTED_FORMAT,
        "version": PROTECTED_VERSION,
        "kdf": KDF,
        "memory_kib": cost.memory_kib,
        "passes": cost.passes,
        "salt": b64encode(salt),
        "cipher": CIPHER,
        "nonce": b64encode(nonce),
        "ciphertext": b64encode(ciphertext),
    }
    text = json.dumps(document, indent=2) + "\n"
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise ProtectedKeyError(f"the protected file would be larger than {MAX_FILE_BYTES} bytes")
    return text


def protect_key_file(key_file: KeyFile, passphrase: str, cost: Cost | None = None) -> str:
    return protect(dump_key_file(key_file).encode("utf-8"), passphrase, cost)


# ---- reading ----


def _as_bytes(data: bytes | str) -> bytes:
    # A lone surrogate in a text then fails to decode, as in load_key_file.
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data


def is_protected(data: bytes | str) -> bool:
    """Whether `data` says it is a protected file (it may still be a malformed one)."""
    data = _as_bytes(data)
    if len(data) > MAX_FILE_BYTES:
        return False
    try:
        document = parse_strict_json(data, ProtectedKeyError, WHAT)
    except ProtectedKeyError:
        return False
    return isinstance(document, dict) and document.get("format") == PROTECTED_FORMAT


def _whole_number(value: object) -> int | None:
    """A JSON number without a fraction (65536, 65536.0, 6.5536e4), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _decoded(document: dict, name: str, length: int | None, at_least: int = 0) -> bytes:
    try:
        value = b64decode(document.get(name))
    except EncodingError as exc:
        raise ProtectedKeyError(f"the protected file's {name} is not base64url: {exc}") from None
    if length is not None and len(value) != length:
        raise ProtectedKeyError(f"the protected file's {name} is not {length} bytes")
    if len(value) < at_least:
        raise ProtectedKeyError(f"the protected file's {name} is shorter than {at_least} bytes")
    return value


def read_header(data: bytes | str) -> Header:
    """Steps 1 to 11 of section 6a.5: everything but the passphrase, before any work."""
    data = _as_bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ProtectedKeyError(f"the file is larger than {MAX_FILE_BYTES} bytes: {WHAT} is not")
    document = parse_strict_json(data, ProtectedKeyError, WHAT)
    if not isinstance(document, dict) or document.get("format") != PROTECTED_FORMAT:
        raise ProtectedKeyError(f"not {WHAT} (format is not {PROTECTED_FORMAT})")
    version = document.get("version")
    if isinstance(version, bool) or version != PROTECTED_VERSION:
        raise ProtectedKeyError(f"unsupported protected key file version {version!r}")
    if document.get("kdf") != KDF:
        raise ProtectedKeyError(f"the protected file's kdf is not {KDF}")
    memory = _whole_number(document.get("memory_kib"))
    if memory is None or not MIN_MEMORY_KIB <= memory <= MAX_MEMORY_KIB:
        raise ProtectedKeyError(
            f"the protected file's memory_kib must be a whole number from {MIN_MEMORY_KIB} "
            f"to {MAX_MEMORY_KIB}, not {document.get('memory_kib')!r}"
        )
    passes = _whole_number(document.get("passes"))
    if passes is None or not MIN_PASSES <= passes <= MAX_PASSES:
        raise ProtectedKeyError(
            f"the protected file's passes must be a whole number from {MIN_PASSES} to "
            f"{MAX_PASSES}, not {document.get('passes')!r}"
        )
    salt = _decoded(document, "salt", SALT_BYTES)
    if document.get("cipher") != CIPHER:
        raise ProtectedKeyError(f"the protected file's cipher is not {CIPHER}")
    nonce = _decoded(document, "nonce", NONCE_BYTES)
    ciphertext = _decoded(document, "ciphertext", None, at_least=TAG_BYTES)
    return Header(Cost(memory, passes), salt, nonce, ciphertext)


def open_header(header: Header, passphrase: str) -> bytes:
    """Steps 12 and 13: derive the key and open the contents (their bytes)."""
    wrong = PassphraseError("wrong passphrase (or the file was altered)")
    if not isinstance(passphrase, str) or not passphrase:
        raise wrong
    try:
        secret = passphrase_bytes(passphrase)
    except UnicodeEncodeError:  # no writer can have used it
        raise wrong from None
    if len(secret) > MAX_PASSPHRASE_BYTES:
        raise wrong
    key = derive_key(secret, header.salt, header.cost)
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            header.ciphertext,
            associated_data(header.cost, header.salt, header.nonce),
            header.nonce,
            key,
        )
    except nacl.exceptions.CryptoError:
        raise wrong from None


def _is_strings(item: object) -> bool:
    return isinstance(item, list) and all(isinstance(one, str) for one in item)


KNOWN_STATE = {
    "prompt": lambda item: isinstance(item, str),
    "saved_at": lambda item: isinstance(item, str),
    "read": _is_strings,
}
KNOWN_DEVICE = {"muted": _is_strings}


def _state(value: object, known: dict = KNOWN_STATE, what: str = "inbox state") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtectedKeyError(f"the backup's {what} is not a JSON object")
    # Known members of the wrong type are dropped: the key matters more than its label.
    return {name: item for name, item in value.items() if name not in known or known[name](item)}


def parse_bundle(document: dict) -> KeyBundle:
    """Section 6a.3, on the parsed contents."""
    version = document.get("version")
    if isinstance(version, bool) or version != BUNDLE_VERSION:
        raise ProtectedKeyError(f"unsupported key bundle version {version!r}")
    entries = document.get("inboxes")
    if not isinstance(entries, list) or not entries:
        raise ProtectedKeyError("the key bundle's inboxes must be a non-empty array")
    inboxes = []
    seen: set[bytes] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtectedKeyError("an inbox in the key bundle is not a JSON object")
        try:
            key_file = key_file_from_document(entry.get("key"))
        except KeyFileError as exc:
            raise ProtectedKeyError(f"an inbox in the key bundle: {exc}") from None
        if key_file.keypair.public_key in seen:
            raise ProtectedKeyError("the key bundle holds the same inbox twice")
        seen.add(key_file.keypair.public_key)
        inboxes.append(BundledInbox(key_file, _state(entry.get("state"))))
    device = _state(document.get("device"), KNOWN_DEVICE, "device state")
    return KeyBundle(tuple(inboxes), device)


def parse_contents(contents: bytes) -> KeyFile | KeyBundle:
    """Step 14: the opened contents are a key file (section 6) or a bundle."""
    document = parse_strict_json(contents, ProtectedKeyError, "a key file or key bundle")
    kind = document.get("format") if isinstance(document, dict) else None
    if kind == KEY_FILE_FORMAT:
        try:
            return load_key_file(contents)
        except KeyFileError as exc:
            raise ProtectedKeyError(f"the protected file holds a broken key file: {exc}") from None
    if kind == BUNDLE_FORMAT:
        return parse_bundle(document)
    raise ProtectedKeyError("the protected file holds neither a key file nor a key bundle")


def load_protected(data: bytes | str, passphrase: str) -> KeyFile | KeyBundle:
    """Read a protected key file with its passphrase (every step of section 6a.5)."""
    return parse_contents(open_header(read_header(data), passphrase))
