"""Canonical unpadded base64url, the only text encoding of bytes in secretlink.

Canonical means: alphabet A-Z a-z 0-9 - _, no '=' padding, no white space, and the
unused low bits of the last character are zero. Exactly one string encodes a given
byte string, so keys in links and ciphertexts compare as text.
"""

import base64
import re

from secretlink.crypto.errors import EncodingError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; raise EncodingError for anything else."""
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text):
        raise EncodingError("not unpadded base64url (allowed: A-Z a-z 0-9 - _)")
    if len(text) % 4 == 1:
        raise EncodingError("impossible base64url length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # A last character with non-zero unused bits decodes to the same bytes as its
    # canonical sibling; re-encoding catches it.
    if b64encode(data) != text:
        raise EncodingError("non-canonical base64url (unused bits are not zero)")
    return data
