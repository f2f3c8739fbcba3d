"""Canonical unpadded base64url, the only text encoding of bytes in secretlink.

Canonical means: alphabet A-Z a-z 0-9 - _, no '=' padding, no white space, and the
unused low bits of the last character are zero. Exactly one string encodes a given
byte string, so keys in links and ciphertexts compare as text.
"""

import base64
import binascii

from secretlink.crypto.errors import EncodingError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# base64url's two letters of its own, mapped onto standard base64's for the decoder.
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The bits of the last character that carry no data, by the text's length mod 4.
_UNUSED_BITS = {2: 0b1111, 3: 0b11}


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; raise EncodingError for anything else."""
    # After the mapping below only standard base64 is left, and binascii's strict mode
    # refuses everything else (white space included). What the mapping would hide,
    # standard base64's own '+' and '/' and any '=', is refused first. These checks
    # are scans in C: a ciphertext is up to 87 KiB of text.
    if not isinstance(text, str) or not text.isascii() or "+" in text or "/" in text or "=" in text:
        raise EncodingError("not unpadded base64url (allowed: A-Z a-z 0-9 - _)")
    if len(text) % 4 == 1:
        raise EncodingError("impossible base64url length")
    padded = text.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(text) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise EncodingError("not unpadded base64url (allowed: A-Z a-z 0-9 - _)") from None
    # A last character with non-zero unused bits decodes to the same bytes as its
    # canonical sibling: only the one with zeros there is accepted.
    unused = _UNUSED_BITS.get(len(text) % 4, 0)
    if unused and _ALPHABET.index(text[-1]) & unused:
        raise EncodingError("non-canonical base64url (unused bits are not zero)")
    return data
