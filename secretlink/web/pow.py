"""The proof-of-work gate in front of message submission and inbox creation.

The server hands out signed, expiring puzzles bound to one inbox and one purpose
(a message to it, or its creation); each is taken once, with a solution. The
difficulty of message puzzles rises with the messages *accepted* for an inbox, and
for the whole instance, in the last minute, so a flood costs the flooder ever more
work. Asking for puzzles is free and moves nothing: otherwise anyone could make
sending harder for everyone at no cost.

The load is shared by every worker and machine: it is read from the messages the
database holds (or, with SECRETLINK_REDIS_URL, from per-minute counters in Redis).
A puzzle keeps the difficulty it was issued with for FRESH_SECONDS (120 s): time
for a sender to write while the page solves, and for a device without a JIT to
finish. A solution older than that must meet the difficulty in force when it
arrives, or it is refused as `pow_stale` with a fresh puzzle: puzzles collected
before a flood cannot be spent cheaply during it (crypto/SPEC.md section 7a).

Behind the gate the rate limits still hold, so during a heavy, paid-for flood an
honest sender can get 429 there. Spent puzzles are recorded in the database with
the challenge nonces, so a solution is good once on every worker; a message's
puzzle is recorded in the transaction that stores the message (verify(), then
secretlink.store.spent_nonces), the others at once (check()).
"""

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer

from secretlink.crypto import EncodingError, b64decode, b64encode
from secretlink.crypto.pow import meets
from secretlink.store.spent_nonces import Spend
from secretlink.store.storage import Storage, spend_of
from secretlink.web.errors import ApiError, require_text

log = logging.getLogger(__name__)

PUZZLE_TTL = 600  # slow devices without a JIT need minutes at high difficulty
FRESH_SECONDS = 120  # a puzzle younger than this keeps its signed difficulty
WINDOW = 60
# Messages accepted within a minute at which the first extra bit starts; each doubling
# beyond adds one more. The inbox's maximum (4 x 2^3 = 32) comes below the default
# per-inbox rate limit (60/minute), so a flood pays the most before the limit bites.
INBOX_CALM = 4
INSTANCE_CALM = 256
MAX_EXTRA_BITS = 4
# Creating an inbox costs four times a message's work at the base difficulty.
CREATE_EXTRA_BITS = 2


@dataclass(frozen=True)
class Purpose:
    """One kind of work: its own signing salt, nonce space and error wording."""

    salt: str
    nonce_prefix: bytes
    what: str  # "a message to this inbox", for error sentences


MESSAGE = Purpose("secretlink/v1/pow-puzzle", b"pow:", "a message")
CREATE_INBOX = Purpose("secretlink/v1/pow-create-inbox", b"pow-create:", "creating this inbox")
# An attachment upload (crypto/SPEC.md 7a): its puzzle is bound to the blob's length too.
UPLOAD = Purpose("secretlink/v1/pow-upload", b"pow-upload:", "an upload")
# What clients accept at most (SPEC 7a); an upload puzzle never asks more.
CLIENT_CAP_BITS = 28
MIB = 1 << 20


def upload_extra_bits(length: int) -> int:
    """min(4, ceil(log2(length / 1 MiB))), and 0 up to 1 MiB: a larger upload costs
    more work, up to 16 times a message's for 16 MiB and beyond."""
    if length <= MIB:
        return 0
    # ceil(log2(length / MIB)) in integers: the bits of ceil(length / MIB) - 1.
    return min(MAX_EXTRA_BITS, (-(-length // MIB) - 1).bit_length())


def extra_bits(recent: int, calm: int) -> int:
    return min(MAX_EXTRA_BITS, (recent // calm).bit_length())


def minute_of(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None, second=0, microsecond=0)


def sliding_count(this_minute: int, last_minute: int, now: float) -> int:
    """Events in the last 60 s, estimated from two clock-minute counts.

    The previous minute counts for the share of it still inside the window; rounded
    up, so a burst just before a minute's turn is not forgotten at once.
    """
    elapsed = (now % WINDOW) / WINDOW
    return this_minute + math.ceil(last_minute * (1 - elapsed))


class DatabaseLoad:
    """Messages accepted, read from the messages table (stored to the minute)."""

    def __init__(self, storage: Storage):
        self._storage = storage

    def record(self, public_key: str, now: float) -> None:
        """Nothing to do: the stored message is the record."""

    def counts(self, public_key: str, now: float) -> tuple[int, int]:
        this, last = minute_of(now), minute_of(now - WINDOW)
        arrivals = self._storage.arrivals_since(public_key, last)
        inbox_now, all_now = arrivals.get(this, (0, 0))
        inbox_before, all_before = arrivals.get(last, (0, 0))
        return (
            sliding_count(inbox_now, inbox_before, now),
            sliding_count(all_now, all_before, now),
        )


class RedisLoad:
    """Messages accepted, counted per clock minute in Redis (SECRETLINK_REDIS_URL).

    The counters expire at a whole minute, so even a copy of Redis tells no second.
    If Redis cannot be reached the database's count stands in.
    """

    def __init__(self, redis_url: str, fallback: DatabaseLoad):
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self._errors = redis.RedisError
        self._fallback = fallback

    @staticmethod
    def _keys(public_key: str, minute: int) -> tuple[str, str]:
        return f"secretlink:pow:{minute}:{public_key}", f"secretlink:pow:{minute}"

    def record(self, public_key: str, now: float) -> None:
        minute = int(now) // WINDOW
        pipe = self._redis.pipeline()
        for key in self._keys(public_key, minute):
            pipe.incr(key)
            pipe.expireat(key, (minute + 3) * WINDOW)
        try:
            pipe.execute()
        except self._errors as exc:
            log.warning("proof-of-work load not counted in Redis: %s", exc)

    def counts(self, public_key: str, now: float) -> tuple[int, int]:
        minute = int(now) // WINDOW
        try:
            values = self._redis.mget(
                [*self._keys(public_key, minute), *self._keys(public_key, minute - 1)]
            )
        except self._errors as exc:
            log.warning("proof-of-work load read from the database, not Redis: %s", exc)
            return self._fallback.counts(public_key, now)
        inbox_now, all_now, inbox_before, all_before = (int(v or 0) for v in values)
        return (
            sliding_count(inbox_now, inbox_before, now),
            sliding_count(all_now, all_before, now),
        )


class ProofOfWork:
    def __init__(
        self,
        secret_key: str,
        storage: Storage,
        base_difficulty: int,
        *,
        redis_url: str | None = None,
        fresh_seconds: int = FRESH_SECONDS,
        clock: Callable[[], float] | None = None,
    ):
        self._serializers = {
            purpose: URLSafeTimedSerializer(secret_key, salt=purpose.salt)
            for purpose in (MESSAGE, CREATE_INBOX, UPLOAD)
        }
        self._storage = storage
        database_load = DatabaseLoad(storage)
        self._load = RedisLoad(redis_url, database_load) if redis_url else database_load
        self.base_difficulty = base_difficulty
        self.fresh_seconds = fresh_seconds
        # time.time looked up at each call, so a test that moves it moves this too.
        self.clock = clock or (lambda: time.time())

    @property
    def enabled(self) -> bool:
        return self.base_difficulty > 0

    def difficulty(self, public_key: str, purpose: Purpose = MESSAGE, length: int = 0) -> int:
        """Bits a puzzle for this inbox and purpose (and an upload's length) needs now."""
        if not self.enabled:
            return 0
        if purpose is CREATE_INBOX:
            return self.base_difficulty + CREATE_EXTRA_BITS
        if purpose is UPLOAD:
            return min(CLIENT_CAP_BITS, self.base_difficulty + upload_extra_bits(length))
        per_inbox, overall = self._load.counts(public_key, self.clock())
        return self.base_difficulty + max(
            extra_bits(per_inbox, INBOX_CALM), extra_bits(overall, INSTANCE_CALM)
        )

    def accepted(self, public_key: str) -> None:
        """Count a message stored for this inbox: the load that raises the difficulty."""
        if self.enabled:
            self._load.record(public_key, self.clock())

    def issue(self, public_key: str, purpose: Purpose = MESSAGE, length: int = 0) -> dict:
        difficulty = self.difficulty(public_key, purpose, length)
        now = int(self.clock())
        expires_at = now + PUZZLE_TTL
        claims = {
            "pk": public_key,
            "n": b64encode(secrets.token_bytes(16)),
            "d": difficulty,
            "exp": expires_at,
        }
        if purpose is UPLOAD:
            claims["len"] = length
        puzzle = self._serializers[purpose].dumps(claims)
        return {"puzzle": puzzle, "difficulty": difficulty, "expires_at": expires_at}

    def check(
        self,
        public_key: str,
        puzzle: object,
        solution: object,
        purpose: Purpose = MESSAGE,
        length: int = 0,
    ) -> None:
        """Raise ApiError unless `solution` solves an unused puzzle for this inbox and
        purpose (and, for an upload, this length); the puzzle is spent at once."""
        spend = self.verify(public_key, puzzle, solution, purpose, length)
        if spend is not None and not self._storage.spend(spend):
            raise puzzle_used()

    def verify(
        self,
        public_key: str,
        puzzle: object,
        solution: object,
        purpose: Purpose = MESSAGE,
        length: int = 0,
    ) -> Spend | None:
        """check() without spending: the puzzle's Spend, for the caller to record in
        the transaction that stores what it pays for (a message: its puzzle is spent
        with the message's own commit; secretlink.store.spent_nonces). None with the
        gate off. Whether it was spent before is known only when that is recorded."""
        if not self.enabled:
            return None
        if puzzle is None or solution is None:
            raise ApiError(
                400,
                "pow_required",
                f"{purpose.what} needs proof of work: ask for a puzzle and send it "
                "with its solution",
            )
        if (
            not isinstance(puzzle, str)
            or isinstance(solution, bool)
            or not isinstance(solution, int)
        ):
            raise ApiError(400, "bad_field", "'puzzle' must be a string, 'solution' an integer")
        require_text("puzzle", puzzle)  # before itsdangerous, which cannot encode a surrogate
        claims, issued_at = self._claims(puzzle, purpose)
        if claims["pk"] != public_key:
            raise ApiError(400, "bad_puzzle", "the puzzle was issued for another inbox")
        if purpose is UPLOAD and claims.get("len") != length:
            raise ApiError(
                400, "bad_puzzle", "the puzzle was issued for an upload of another length"
            )
        if not meets(puzzle, solution, claims["d"]):
            raise ApiError(400, "bad_solution", "the solution does not solve the puzzle")
        if self.clock() - issued_at > self.fresh_seconds:
            required = self.difficulty(public_key, purpose, length)
            if not meets(puzzle, solution, required):
                raise ApiError(
                    400,
                    "pow_stale",
                    f"the puzzle is older than {self.fresh_seconds} s and the difficulty "
                    f"has risen to {required} bits; solve the fresh puzzle in this answer",
                    extra={"puzzle": self.issue(public_key, purpose, length)},
                )
        expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        return spend_of(purpose.nonce_prefix + b64decode(claims["n"]), expires)

    def _claims(self, puzzle: str, purpose: Purpose) -> tuple[dict, float]:
        """The puzzle's signed claims and the Unix time it was issued.

        Times come from the signed claims and this gate's clock, not from the
        signature's own timestamp: a puzzle is issued exactly PUZZLE_TTL before it
        expires.
        """
        try:
            claims = self._serializers[purpose].loads(puzzle)
            expires_at = claims["exp"]
            b64decode(claims["n"])
            if not isinstance(expires_at, int) or not isinstance(claims["d"], int):
                raise TypeError
        except (BadSignature, EncodingError, KeyError, TypeError):
            raise ApiError(
                400, "bad_puzzle", f"the puzzle was not issued by this server for {purpose.what}"
            ) from None
        if expires_at <= self.clock():
            raise ApiError(400, "puzzle_expired", "the puzzle expired; ask for a new one")
        return claims, expires_at - PUZZLE_TTL


def puzzle_used() -> ApiError:
    return ApiError(400, "puzzle_used", "the puzzle was used already; ask for a new one")
