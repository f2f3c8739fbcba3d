"""X25519 keys: generation, and the checks every public key must pass."""

from dataclasses import dataclass

from nacl.bindings import crypto_scalarmult_base
from nacl.utils import random

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.errors import EncodingError, InvalidKeyError

KEY_BYTES = 32
KEY_TEXT_LENGTH = 43  # unpadded base64url of 32 bytes

# 2^255 - 19, the field prime; a canonical u-coordinate is below it.
_P = 2**255 - 19
# The canonical u-coordinates of every point of order 1, 2, 4 or 8 on Curve25519 and
# its twist: libsodium's small-order blocklist less its non-canonical entries, which
# the checks above already refuse. A clamped scalar (a multiple of 8) sends each of
# these to the all-zero output libsodium rejects; a test checks that, and that this
# list is the whole of libsodium's.
LOW_ORDER_POINTS = frozenset(
    (n % _P).to_bytes(32, "little")
    for n in (
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    )
)


@dataclass(frozen=True)
class KeyPair:
    secret_key: bytes
    public_key: bytes

    @property
    def public_key_text(self) -> str:
        return b64encode(self.public_key)


def generate_keypair() -> KeyPair:
    secret_key = random(KEY_BYTES)
    return KeyPair(secret_key, crypto_scalarmult_base(secret_key))


def keypair_from_secret(secret_key: bytes) -> KeyPair:
    if len(secret_key) != KEY_BYTES:
        raise InvalidKeyError(f"secret key must be {KEY_BYTES} bytes, got {len(secret_key)}")
    return KeyPair(secret_key, crypto_scalarmult_base(secret_key))


def check_public_key(public_key: bytes) -> bytes:
    """Return the key if it is a canonical X25519 public key of large order."""
    if len(public_key) != KEY_BYTES:
        raise InvalidKeyError(f"public key must be {KEY_BYTES} bytes, got {len(public_key)}")
    u = int.from_bytes(public_key, "little")
    if u >> 255:
        raise InvalidKeyError("public key has its top bit set (non-canonical)")
    if u >= _P:
        raise InvalidKeyError("public key is not reduced modulo 2^255-19 (non-canonical)")
    # A set lookup instead of a scalar multiplication: this runs on every submission.
    if public_key in LOW_ORDER_POINTS:
        raise InvalidKeyError("public key has low order")
    return public_key


def decode_public_key(text: str) -> bytes:
    """Parse a public key as it appears in links and the API."""
    if not isinstance(text, str) or len(text) != KEY_TEXT_LENGTH:
        raise InvalidKeyError(f"public key must be {KEY_TEXT_LENGTH} base64url characters")
    try:
        raw = b64decode(text)
    except EncodingError as exc:
        raise InvalidKeyError(f"public key: {exc}") from None
    return check_public_key(raw)
