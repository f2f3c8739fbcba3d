"""Proof of possession: showing the server you hold an inbox's secret key.

The server never asks the client to decrypt anything (it could pass a stored
message off as a challenge). Instead it sends a fresh nonce and an ephemeral X25519
key E; the client answers with a keyed BLAKE2b MAC under a key only the holders of
X25519(sk, E) = X25519(e, pk) can derive, over a transcript that binds the purpose,
the inbox key, E, the nonce, the expiry and the server's origin.
"""

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base, sodium_memcmp
from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b

from secretlink.crypto.b64 import b64decode
from secretlink.crypto.errors import AuthError, EncodingError, InvalidKeyError
from secretlink.crypto.keys import KEY_BYTES, check_public_key, decode_public_key
from secretlink.crypto.origin import MAX_ORIGIN_LENGTH

AUTH_PURPOSE = b"secretlink/v1/auth"
AUTH_KEY_PURPOSE = b"secretlink/v1/auth-key"
EPHEMERAL_PURPOSE = b"secretlink/v1/auth-ephemeral"
NONCE_BYTES = 32
MAC_BYTES = 32
# Expiry times are whole seconds that a JSON number holds exactly in every language
# (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_EXPIRES_AT = 2**53 - 1


def _blake2b(data: bytes, key: bytes) -> bytes:
    return blake2b(data, digest_size=32, key=key, encoder=RawEncoder)


def transcript(
    public_key: bytes, server_key: bytes, nonce: bytes, expires_at: int, origin: str
) -> bytes:
    """The exact bytes the MAC covers; fixed-length fields, then the length-prefixed origin."""
    if not (origin.isascii() and origin.isprintable()) or len(origin) > MAX_ORIGIN_LENGTH:
        raise AuthError(
            f"origin must be printable ASCII of at most {MAX_ORIGIN_LENGTH} characters "
            "(section 7.5)"
        )
    if len(nonce) != NONCE_BYTES:
        raise AuthError(f"nonce must be {NONCE_BYTES} bytes")
    if len(public_key) != KEY_BYTES or len(server_key) != KEY_BYTES:
        raise AuthError(f"keys in the transcript must be {KEY_BYTES} bytes")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise AuthError("expiry must be a whole number of seconds")
    if not 0 <= expires_at <= MAX_EXPIRES_AT:
        raise AuthError(f"expiry must be a whole number of seconds from 0 to {MAX_EXPIRES_AT}")
    origin_bytes = origin.encode("ascii")
    return b"".join(
        [
            AUTH_PURPOSE,
            b"\x00",
            public_key,
            server_key,
            nonce,
            expires_at.to_bytes(8, "big"),
            len(origin_bytes).to_bytes(2, "big"),
            origin_bytes,
        ]
    )


def _mac(shared: bytes, message: bytes) -> bytes:
    mac_key = _blake2b(AUTH_KEY_PURPOSE, key=shared)
    return _blake2b(message, key=mac_key)


def prove(
    secret_key: bytes, server_key: bytes, nonce: bytes, expires_at: int, origin: str
) -> bytes:
    """The client's answer to a challenge."""
    check_public_key(server_key)
    if len(secret_key) != KEY_BYTES:
        raise AuthError(f"secret key must be {KEY_BYTES} bytes")
    shared = crypto_scalarmult(secret_key, server_key)
    public_key = crypto_scalarmult_base(secret_key)
    return _mac(shared, transcript(public_key, server_key, nonce, expires_at, origin))


def parse_expires_at(value: object) -> int:
    """A challenge's `expires_at` as JSON gave it: a number with a whole value (1e9 and
    1000000000.0 are the number 1000000000, as in JavaScript), never a string or a bool."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthError("the challenge's expires_at is not a whole number of seconds")
    if not 0 <= value <= MAX_EXPIRES_AT:
        raise AuthError(f"the challenge's expires_at is not between 0 and {MAX_EXPIRES_AT}")
    return value


def prove_challenge(secret_key: bytes, challenge: dict, origin: str) -> bytes:
    """The answer to a challenge as the server sent it (its JSON members, section 7.3).

    `server_key` must be a public-key text (InvalidKeyError); `nonce` canonical
    base64url (AuthError; its length is checked with the transcript); `expires_at` a
    whole number (AuthError).
    """
    if not isinstance(challenge, dict):
        raise AuthError("the challenge is not a JSON object")
    server_key = decode_public_key(challenge.get("server_key"))
    try:
        nonce = b64decode(challenge.get("nonce"))
    except EncodingError:
        raise AuthError("the challenge's nonce is not canonical base64url") from None
    expires_at = parse_expires_at(challenge.get("expires_at"))
    return prove(secret_key, server_key, nonce, expires_at, origin)


def derive_ephemeral(master_key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """The server's ephemeral keypair (e, E) for a nonce, derived instead of stored."""
    secret = _blake2b(EPHEMERAL_PURPOSE + nonce, key=master_key)
    return secret, crypto_scalarmult_base(secret)


def verify(
    ephemeral_secret: bytes,
    public_key: bytes,
    nonce: bytes,
    expires_at: int,
    origin: str,
    mac: bytes,
) -> None:
    """Raise AuthError unless `mac` proves possession of the secret key of `public_key`."""
    if len(mac) != MAC_BYTES:
        raise AuthError(f"proof must be {MAC_BYTES} bytes")
    try:
        check_public_key(public_key)
        shared = crypto_scalarmult(ephemeral_secret, public_key)
    except (InvalidKeyError, CryptoError):
        raise AuthError("inbox key is not a valid public key") from None
    server_key = crypto_scalarmult_base(ephemeral_secret)
    expected = _mac(shared, transcript(public_key, server_key, nonce, expires_at, origin))
    if not sodium_memcmp(expected, mac):
        raise AuthError("proof of possession does not verify")
