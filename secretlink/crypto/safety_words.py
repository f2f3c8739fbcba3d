"""Safety words: a fingerprint of a public key that two people can compare aloud.

    digest = SHA-256("secretlink/v1/safety-words" || 0x00 || public_key)
    words  = the first 88 bits of digest, big-endian, as eight 11-bit indexes into the
             BIP39 English word list (2048 words)

88 bits: a server that wanted to swap in a key of its own with the same words would
need about 2^88 key generations. The list is English in every interface language, so
that two people using different languages still say the same words. crypto/SPEC.md
section 4.5 is the normative text.
"""

import hashlib
from functools import cache

from mnemonic import Mnemonic

from secretlink.crypto.keys import check_public_key

PURPOSE = b"secretlink/v1/safety-words"
WORD_COUNT = 8
BITS_PER_WORD = 11


@cache
def _wordlist() -> tuple[str, ...]:
    words = tuple(Mnemonic("english").wordlist)
    # The list is part of the format: another list would give other words.
    assert len(words) == 1 << BITS_PER_WORD and words[0] == "abandon" and words[-1] == "zoo"
    return words


def safety_words(public_key: bytes) -> list[str]:
    """The eight words of a public key (section 4.5); the key must pass section 4.2."""
    check_public_key(public_key)
    digest = hashlib.sha256(PURPOSE + b"\x00" + public_key).digest()
    bits = int.from_bytes(digest[:11], "big")  # 88 bits
    words = _wordlist()
    return [
        words[(bits >> (BITS_PER_WORD * (WORD_COUNT - 1 - i))) & 0x7FF] for i in range(WORD_COUNT)
    ]


def format_safety_words(public_key: bytes) -> str:
    return " ".join(safety_words(public_key))
