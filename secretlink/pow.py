"""The proof-of-work gate in front of message submission.

The server hands out signed, expiring puzzles bound to one inbox; a message is taken
only with a solved, unused puzzle. The difficulty rises when an inbox or the whole
instance is asked for many puzzles in the last minute, so a flood costs the flooder
ever more work, while a sender who solves one puzzle still gets through: an inbox
cannot simply be silenced. Spent puzzles are recorded in the database with the
challenge nonces, so a solution is good once on every worker.
"""

import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from secretlink.crypto import EncodingError, b64decode, b64encode
from secretlink.crypto.pow import meets
from secretlink.errors import ApiError
from secretlink.storage import Storage

PUZZLE_SALT = "secretlink/v1/pow-puzzle"
PUZZLE_TTL = 600  # slow devices without a JIT need minutes at high difficulty
WINDOW = 60
# Each doubling of puzzles asked for within a minute beyond these adds a bit.
INBOX_CALM = 16
INSTANCE_CALM = 256
MAX_EXTRA_BITS = 4


class LoadMeter:
    """Puzzles issued in the last minute, per inbox and in all (this worker's view)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: deque[tuple[float, str]] = deque()
        self._per_inbox: dict[str, int] = {}

    def record(self, public_key: str) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            while self._events and self._events[0][0] < now - WINDOW:
                _, old = self._events.popleft()
                self._per_inbox[old] -= 1
                if not self._per_inbox[old]:
                    del self._per_inbox[old]
            self._events.append((now, public_key))
            self._per_inbox[public_key] = self._per_inbox.get(public_key, 0) + 1
            return self._per_inbox[public_key], len(self._events)


def extra_bits(recent: int, calm: int) -> int:
    return min(MAX_EXTRA_BITS, (recent // calm).bit_length())


class ProofOfWork:
    def __init__(self, secret_key: str, storage: Storage, base_difficulty: int):
        self._puzzles = URLSafeTimedSerializer(secret_key, salt=PUZZLE_SALT)
        self._storage = storage
        self._meter = LoadMeter()
        self.base_difficulty = base_difficulty

    @property
    def enabled(self) -> bool:
        return self.base_difficulty > 0

    def issue(self, public_key: str) -> dict:
        difficulty = 0
        if self.enabled:
            per_inbox, overall = self._meter.record(public_key)
            difficulty = self.base_difficulty + max(
                extra_bits(per_inbox, INBOX_CALM), extra_bits(overall, INSTANCE_CALM)
            )
        expires_at = int(time.time()) + PUZZLE_TTL
        puzzle = self._puzzles.dumps(
            {
                "pk": public_key,
                "n": b64encode(secrets.token_bytes(16)),
                "d": difficulty,
                "exp": expires_at,
            }
        )
        return {"puzzle": puzzle, "difficulty": difficulty, "expires_at": expires_at}

    def check(self, public_key: str, puzzle: object, solution: object) -> None:
        """Raise ApiError unless `solution` solves an unused puzzle for this inbox."""
        if not self.enabled:
            return
        if puzzle is None or solution is None:
            raise ApiError(
                400,
                "pow_required",
                "ask for a puzzle (POST .../puzzle) and send it with its solution",
            )
        if (
            not isinstance(puzzle, str)
            or isinstance(solution, bool)
            or not isinstance(solution, int)
        ):
            raise ApiError(400, "bad_field", "'puzzle' must be a string, 'solution' an integer")
        try:
            claims = self._puzzles.loads(puzzle, max_age=PUZZLE_TTL)
            nonce = b64decode(claims["n"])
        except SignatureExpired:
            raise ApiError(400, "puzzle_expired", "the puzzle expired; ask for a new one") from None
        except (BadSignature, EncodingError, KeyError, TypeError):
            raise ApiError(400, "bad_puzzle", "the puzzle was not issued by this server") from None
        if claims["pk"] != public_key:
            raise ApiError(400, "bad_puzzle", "the puzzle was issued for another inbox")
        if not meets(puzzle, solution, claims["d"]):
            raise ApiError(400, "bad_solution", "the solution does not solve the puzzle")
        expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        if not self._storage.use_nonce(b"pow:" + nonce, expires):
            raise ApiError(400, "puzzle_used", "the puzzle was used already; ask for a new one")
