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


class AuthError(SecretlinkCryptoError):
    """A proof of possession does not verify."""


class InvalidOriginError(SecretlinkCryptoError):
    """A URL or Host has no origin this specification accepts (section 7.5)."""
