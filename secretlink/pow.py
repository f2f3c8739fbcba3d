"""The proof-of-work gate in front of message submission.

The server hands out signed, expiring puzzles bound to one inbox; a message is taken
only with a solved, unused puzzle. The difficulty rises with the messages *accepted*
for an inbox, and for the whole instance, in the last minute, so a flood costs the
flooder ever more work. Asking for puzzles is free and moves nothing: otherwise
anyone could make sending harder for everyone at no cost. The count is each worker
process's own (in memory, never shared through Redis). Behind the gate the per-inbox
rate limit still holds, so during a heavy, paid-for flood an honest sender can get
429 there. Spent puzzles are recorded in the database with the challenge nonces, so
a solution is good once on every worker.
"""

import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from secretlink.crypto import EncodingError, b64decode, b64encode
from secretlink.crypto.pow import meets
from secretlink.errors import ApiError, require_text
from secretlink.storage import Storage

PUZZLE_SALT = "secretlink/v1/pow-puzzle"
PUZZLE_TTL = 600  # slow devices without a JIT need minutes at high difficulty
WINDOW = 60
# Messages accepted within a minute at which the first extra bit starts; each doubling
# beyond adds one more. The inbox's maximum (4 x 2^3 = 32) comes below the default
# per-inbox rate limit (60/minute), so a flood pays the most before the limit bites.
INBOX_CALM = 4
INSTANCE_CALM = 256
MAX_EXTRA_BITS = 4


class LoadMeter:
    """Messages accepted in the last minute, per inbox and in all (this worker's view)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: deque[tuple[float, str]] = deque()
        self._per_inbox: dict[str, int] = {}

    def _forget_before(self, moment: float) -> None:
        while self._events and self._events[0][0] < moment:
            _, old = self._events.popleft()
            self._per_inbox[old] -= 1
            if not self._per_inbox[old]:
                del self._per_inbox[old]

    def record(self, public_key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - WINDOW)
            self._events.append((now, public_key))
            self._per_inbox[public_key] = self._per_inbox.get(public_key, 0) + 1

    def counts(self, public_key: str) -> tuple[int, int]:
        """(accepted for this inbox, accepted in all) within the last minute."""
        with self._lock:
            self._forget_before(time.monotonic() - WINDOW)
            return self._per_inbox.get(public_key, 0), len(self._events)


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

    def difficulty(self, public_key: str) -> int:
        """Bits a puzzle for this inbox needs now: the base, plus more under load."""
        if not self.enabled:
            return 0
        per_inbox, overall = self._meter.counts(public_key)
        return self.base_difficulty + max(
            extra_bits(per_inbox, INBOX_CALM), extra_bits(overall, INSTANCE_CALM)
        )

    def accepted(self, public_key: str) -> None:
        """Count a message stored for this inbox: the load that raises the difficulty."""
        if self.enabled:
            self._meter.record(public_key)

    def issue(self, public_key: str) -> dict:
        difficulty = self.difficulty(public_key)
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
        require_text("puzzle", puzzle)  # before itsdangerous, which cannot encode a surrogate
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
