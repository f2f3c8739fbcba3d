"""The notifier's keys: the instance's VAPID key pair for Web Push (RFC 8292) and the
key that seals notification targets in the database.

The sealing key is derived from the instance's secret key, so that every worker and
machine of one instance shares it without another file to copy, and a copy of the
database alone (a backup, a dump) does not reveal where an owner is notified.
"""

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

AT_REST_PURPOSE = b"secretlink/v1/notify-targets-at-rest"
SEALED_VERSION = b"\x01"
NONCE_BYTES = 12
VAPID_KEY_FILE = "vapid_private_key"
# The order of P-256's base point: a private scalar is from 1 to this less one.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class SealError(ValueError):
    """A sealed target cannot be opened: another secret key sealed it, or it was altered."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url, strictly: anything else raises ValueError."""
    if "=" in text or not text.isascii():
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if b64url(data) != text:  # stray bits in the last character
        raise ValueError("not canonical base64url")
    return data


class Sealer:
    """Seals a target's JSON for the database: version byte, random nonce, ChaCha20-Poly1305.

    The inbox key is the associated data, so a sealed row moved to another inbox
    does not open.
    """

    def __init__(self, secret_key: str):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AT_REST_PURPOSE).derive(
            secret_key.encode("utf-8")
        )
        self._aead = ChaCha20Poly1305(key)

    def seal(self, inbox_key: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return SEALED_VERSION + nonce + self._aead.encrypt(nonce, plaintext, _aad(inbox_key))

    def open(self, inbox_key: str, sealed: bytes) -> bytes:
        if sealed[:1] != SEALED_VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SealError("not a sealed notification target of this version")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, _aad(inbox_key))
        except InvalidTag:
            raise SealError("the sealed target does not open with this instance's key") from None


def _aad(inbox_key: str) -> bytes:
    return SEALED_VERSION + inbox_key.encode("ascii")


# ---- VAPID ----


def vapid_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The key from its raw form (32 bytes, base64url); ValueError if it is not one."""
    raw = b64url_decode(text)
    scalar = int.from_bytes(raw, "big")
    if len(raw) != 32 or not 0 < scalar < P256_ORDER:
        raise ValueError("must be a P-256 private key: 32 bytes, from 1 to the curve order less 1")
    return ec.derive_private_key(scalar, ec.SECP256R1())


def raw_private_key(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The application server key a page subscribes with: the uncompressed point, base64url."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def load_or_create_vapid_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """Read `<data dir>/vapid_private_key`, or create it once (mode 0600).

    As with the secret key, it is written to a private temporary file and linked into
    place, so concurrent starts agree on one key and nobody reads half a file.
    """
    path = data_dir / VAPID_KEY_FILE
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".vapid_private_key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(raw_private_key(ec.generate_private_key(ec.SECP256R1())) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    try:
        return vapid_private_key(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path} holds no usable VAPID key; delete it to make a new one") from None
