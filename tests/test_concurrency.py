"""Many senders at once against the real server, with the rate limits on.

64 threads, each with its own connection, post to one inbox of `secretlink serve`
(two granian workers) whose per-inbox limit is far below what they send. Every
answer must be a 201 or a 429 with Retry-After: never a 5xx, never a dropped
connection; and the inbox must hold exactly the messages that were answered 201.
"""

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
from conftest import fresh_postgres_schema
from test_serve import serving

from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope, seal

SENDERS = 64
PER_SENDER = 6  # 384 requests in all
WORKERS = 2
INBOX_LIMIT = 100  # per minute; without Redis each worker counts in its own memory


@dataclass
class Answers:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter = field(default_factory=Counter)
    created: dict[str, str] = field(default_factory=dict)  # id -> text
    without_retry_after: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def send_some(index: int, url: str, public_key: bytes, answers: Answers) -> None:
    with requests.Session() as session:
        for number in range(PER_SENDER):
            text = f"sender {index:02d} message {number}"
            body = {"ciphertext": b64encode(seal(text, public_key))}
            try:
                response = session.post(url, json=body, timeout=30)
                message_id = response.json()["id"] if response.status_code == 201 else None
            except (requests.RequestException, ValueError) as exc:
                with answers.lock:
                    answers.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with answers.lock:
                answers.statuses[response.status_code] += 1
                if message_id is not None:
                    answers.created[message_id] = text
                if response.status_code == 429:
                    retry_after = response.headers.get("Retry-After", "")
                    if not (retry_after.isdigit() and int(retry_after) > 0):
                        answers.without_retry_after.append(index)


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_concurrent_senders_get_201_or_429_and_every_201_is_stored(tmp_path, request, database):
    env = {
        "SECRETLINK_RATE_LIMITS_ENABLED": "true",
        "SECRETLINK_RATE_LIMIT_INBOX": f"{INBOX_LIMIT}/minute",
        # Every sender is 127.0.0.1: the per-client limit would otherwise decide.
        "SECRETLINK_RATE_LIMIT_CLIENT": "100000/minute",
        "SECRETLINK_RATE_LIMIT_GLOBAL": "100000/minute",
        "SECRETLINK_WORKERS": str(WORKERS),
    }
    if database == "postgresql":
        with fresh_postgres_schema(request.getfixturevalue("postgres_admin")) as url:
            run_load(tmp_path, {**env, "SECRETLINK_DATABASE_URL": url})
    else:
        run_load(tmp_path, env)


def run_load(tmp_path, env: dict) -> None:
    keypair = generate_keypair()
    answers = Answers()
    with serving(tmp_path, env=env) as served:
        owner = InboxClient(served.url, keypair)
        owner.register("")
        url = f"{served.url}/api/v1/inboxes/{keypair.public_key_text}/messages"
        senders = [
            threading.Thread(target=send_some, args=(i, url, keypair.public_key, answers))
            for i in range(SENDERS)
        ]
        started = time.time()
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=120)
            assert not sender.is_alive(), "a sender hung"
        ended = time.time()
        stored = list(owner.messages())

    print(
        f"\nconcurrency: {SENDERS * PER_SENDER} requests from {SENDERS} senders: "
        f"{dict(sorted(answers.statuses.items()))}, {len(answers.errors)} connection errors; "
        f"{len(stored)} stored"
    )
    assert not answers.errors, answers.errors[:5]
    assert set(answers.statuses) <= {201, 429}, answers.statuses
    assert sum(answers.statuses.values()) == SENDERS * PER_SENDER
    assert not answers.without_retry_after, "429 answers without a usable Retry-After"
    # The limit held (each worker counts on its own) and was reached. A worker counts
    # the messages it is still accepting against the window, so none overshoots it,
    # however many of its senders wait for their commit at once (on the event loop,
    # up to all 32 of its connections). And the window is a sliding-window counter
    # (docs/DEPLOY.md, section 6.2): once a clock minute ends, the last one's count
    # weighs less with every second, so a run that crosses into a new minute gets
    # that share of the limit back.
    allowance = INBOX_LIMIT + regained(started, ended, INBOX_LIMIT, 60)
    assert 0 < answers.statuses[201] <= WORKERS * allowance
    assert answers.statuses[429] > 0
    # Exactly the acknowledged messages are stored, each once, with its text.
    assert len(stored) == answers.statuses[201]
    assert sorted(m.id for m in stored) == sorted(answers.created)
    for message in stored:
        text = open_envelope(b64decode(message.ciphertext), keypair.secret_key).text
        assert text == answers.created[message.id]


def regained(started: float, ended: float, limit: int, window: int) -> int:
    """How much of a sliding-window counter's limit comes back between two moments:
    none within one clock window; after a window's start, the older count's weight
    falls by 1/window a second."""
    boundary = math.floor(ended / window) * window
    if boundary <= started:
        return 0
    return math.ceil(limit * (ended - boundary) / window)
