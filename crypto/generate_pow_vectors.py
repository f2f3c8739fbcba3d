"""Write crypto/vectors/pow.json: known answers for the proof of work (SPEC section 7a).

    python crypto/generate_pow_vectors.py          # rewrite crypto/vectors/pow.json
    python crypto/generate_pow_vectors.py --check  # exit 1 if the file differs from a fresh run

The smallest counters are found by brute force over the hash written out here from
PyNaCl's BLAKE2b, not through secretlink's own solver, so the vectors check it.
"""

import json
import sys
from pathlib import Path

from nacl.encoding import RawEncoder
from nacl.hash import blake2b

OUT = Path(__file__).resolve().parent / "vectors" / "pow.json"
PURPOSE = b"secretlink/v1/pow\x00"
MAX_COUNTER = 2**53
# A puzzle as a server issues it (itsdangerous's signed JSON); any string will do.
SERVER_SHAPED = (
    "eyJwayI6IkFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUEiLCJuIjoi"
    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQSIsImQiOjE0LCJleHAiOjE3OTUwMDAwMDB9.aP1c7g.AAAA"
)


def digest(puzzle: bytes, counter: int) -> bytes:
    return blake2b(
        PURPOSE + puzzle + counter.to_bytes(8, "big"), digest_size=32, encoder=RawEncoder
    )


def zero_bits(value: bytes) -> int:
    number = int.from_bytes(value, "big")
    return 256 - number.bit_length()


def smallest(puzzle: bytes, difficulty: int) -> int:
    counter = 0
    while zero_bits(digest(puzzle, counter)) < difficulty:
        counter += 1
    return counter


def solve_case(desc: str, puzzle: str, difficulty: int) -> dict:
    data = puzzle.encode("utf-8")
    counter = smallest(data, difficulty)
    return {
        "desc": desc,
        "puzzle": puzzle,
        "puzzle_hex": data.hex(),
        "difficulty": difficulty,
        "counter": counter,
        "hash": digest(data, counter).hex(),
        "expect": "ok",
    }


def refused_case(desc: str, puzzle: str, difficulty: int, counter: int) -> dict:
    data = puzzle.encode("utf-8")
    assert counter >= MAX_COUNTER or zero_bits(digest(data, counter)) < difficulty
    return {
        "desc": desc,
        "puzzle": puzzle,
        "puzzle_hex": data.hex(),
        "difficulty": difficulty,
        "counter": counter,
        "expect": "not_a_solution",
    }


def build() -> dict:
    below = smallest(b"puzzle text", 12) - 1
    cases = [
        solve_case("difficulty 0: every counter solves, the smallest is 0", "puzzle text", 0),
        solve_case("1 bit", "puzzle text", 1),
        solve_case("8 bits", "puzzle text", 8),
        solve_case("12 bits", "puzzle text", 12),
        solve_case("16 bits", "puzzle text", 16),
        solve_case("empty puzzle, 8 bits", "", 8),
        solve_case(
            "non-ASCII puzzle: its UTF-8 bytes are hashed (2-, 3- and 4-byte sequences)",
            "Zürich · 東京 · 🔑",
            10,
        ),
        solve_case("non-ASCII puzzle at difficulty 0", "é", 0),
        solve_case("a puzzle shaped like a server's, at the default 14 bits", SERVER_SHAPED, 14),
        refused_case(
            "one below the smallest counter does not solve 12 bits", "puzzle text", 12, below
        ),
        refused_case("2^53 is out of range even at difficulty 0", "puzzle text", 0, MAX_COUNTER),
    ]
    return {
        "spec": "secretlink v1, crypto/SPEC.md section 7a",
        "about": (
            "ok: counter is the smallest c (0 <= c < 2^53) whose BLAKE2b-256("
            "'secretlink/v1/pow' || 0x00 || puzzle's UTF-8 bytes (puzzle_hex) || c as 8 "
            "bytes big-endian) has at least `difficulty` leading zero bits; hash is that "
            "digest. not_a_solution: counter MUST NOT be accepted at that difficulty."
        ),
        "cases": cases,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{OUT} differs from a fresh run; run {sys.argv[0]}\n")
            sys.exit(1)
        return
    OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
