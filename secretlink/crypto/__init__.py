"""The secretlink envelope format, key files and proof of possession.

Everything here is plain Python on top of PyNaCl: no Flask, no SQLAlchemy, so the
same code serves the server, the CLI and the vector generator. crypto/SPEC.md is
the normative description; this package and crypto/secretlink.js implement it.
"""

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.envelope import Message, open_envelope, seal, validate_envelope_shape
from secretlink.crypto.errors import (
    AuthError,
    ConversationError,
    DecryptError,
    EncodingError,
    InvalidKeyError,
    InvalidOriginError,
    KeyFileError,
    PaddingError,
    PayloadError,
    ReflectionError,
    ReplayError,
    ReplyLinkError,
    SecretlinkCryptoError,
    SizeError,
    VersionError,
    WrongConversationError,
)
from secretlink.crypto.keys import KeyPair, decode_public_key, generate_keypair

__all__ = [
    "AuthError",
    "ConversationError",
    "DecryptError",
    "EncodingError",
    "InvalidKeyError",
    "InvalidOriginError",
    "KeyFileError",
    "KeyPair",
    "Message",
    "PaddingError",
    "PayloadError",
    "ReflectionError",
    "ReplayError",
    "ReplyLinkError",
    "SecretlinkCryptoError",
    "SizeError",
    "VersionError",
    "WrongConversationError",
    "b64decode",
    "b64encode",
    "decode_public_key",
    "generate_keypair",
    "open_envelope",
    "seal",
    "validate_envelope_shape",
]
