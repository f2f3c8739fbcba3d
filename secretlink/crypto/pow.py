"""Proof of work: the hash puzzle a sender solves before the server takes a message.

A solution to puzzle P at difficulty d is a counter c (0 <= c < 2^53) such that

    BLAKE2b-256("secretlink/v1/pow" || 0x00 || P || c as 8 bytes big-endian)

starts with d zero bits. P is the UTF-8 encoding of the puzzle string exactly as the
server issued it (server puzzles are ASCII; crypto/vectors/pow.json also has
non-ASCII ones). Finding one takes about 2^d hashes; checking one takes one.
"""

import hashlib

POW_PURPOSE = b"secretlink/v1/pow\x00"
MAX_COUNTER = 2**53  # exactly representable in JSON numbers and JavaScript


def pow_hash(puzzle: str, counter: int) -> bytes:
    # hashlib's BLAKE2b is libsodium's generichash (the vectors check both), without
    # a call through cffi: the server hashes once per message, a solver 2^d times.
    data = POW_PURPOSE + puzzle.encode("utf-8") + counter.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=32).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def meets(puzzle: str, counter: int, difficulty: int) -> bool:
    if not 0 <= counter < MAX_COUNTER:
        return False
    return leading_zero_bits(pow_hash(puzzle, counter)) >= difficulty


def solve(puzzle: str, difficulty: int) -> int:
    """The smallest counter that solves the puzzle (about 2^difficulty hashes)."""
    counter = 0
    while not meets(puzzle, counter, difficulty):
        counter += 1
    return counter
