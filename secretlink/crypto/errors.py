"""Typed errors. Every failure in this package raises one of these, never a bool.

The class names are part of the spec: the vector files name them in `expect`, and
crypto/secretlink.js throws errors with the same `name`.
"""


class SecretlinkCryptoError(Exception):
    """Base class of every error this package raises."""


class EncodingError(SecretlinkCryptoError):
    """Input is not canonical unpadded base64url (or not the expected text form)."""


class InvalidKeyError(SecretlinkCryptoError):
    """A key has the wrong length, a non-canonical encoding, or low order."""


class VersionError(SecretlinkCryptoError):
    """Unknown envelope version, or the sealed version does not match the outer one."""


class SizeError(SecretlinkCryptoError):
    """A message or envelope is larger than v1 allows, or not of an allowed length."""


class DecryptError(SecretlinkCryptoError):
    """The sealed box does not open: truncated, tampered with, or for another key."""


class PaddingError(SecretlinkCryptoError):
    """The padding inside the sealed box is malformed or not the canonical bucket."""


class PayloadError(SecretlinkCryptoError):
    """The payload fields are malformed, or the text is not valid UTF-8."""


class KeyFileError(SecretlinkCryptoError):
    """A key file is not a valid secretlink v1 key file."""


class ProtectedKeyError(SecretlinkCryptoError):
    """A protected key file is malformed, or its costs are out of bounds (section 6a)."""


class PassphraseError(SecretlinkCryptoError):
    """A protected key file does not open: wrong passphrase, or the file was altered."""


class AuthError(SecretlinkCryptoError):
    """A proof of possession does not verify."""


class InvalidOriginError(SecretlinkCryptoError):
    """A URL or Host has no origin this specification accepts (section 7.5)."""


class ReplyLinkError(SecretlinkCryptoError):
    """A reply link is not <origin>/reply#<secret>.<inbox key>.<conversation id> (4.6)."""


class ConversationError(SecretlinkCryptoError):
    """A conversation box does not open: forged (by someone without either secret key)
    or tampered with (section 5.9, step 4)."""


class ReflectionError(ConversationError):
    """A conversation message carries the reader's own role: one of the reader's own
    messages sent back to it (section 5.9, step 6)."""


class WrongConversationError(ConversationError):
    """A conversation message belongs to another conversation or another peer key
    (section 5.9, step 7)."""


class ReplayError(ConversationError):
    """A conversation message repeats a sequence number already read (section 5.9, step 8)."""
