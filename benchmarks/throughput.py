"""P1: messages accepted per second, with every check a real message meets.

The server is `secretlink serve`'s stack (granian, the body layer, the app) with its
checks on: rate limits (raised so that they do not bind: the load comes from one
address), the proof-of-work gate, and the quotas (raised likewise). Every message is
committed before its 201, and carries a real single-use puzzle: before each round
the benchmark asks the server for as many puzzles as the round can use (through the
API, as a sender does), solves them (at the server's base difficulty of 1 bit, plus
whatever the load adds), and writes one request body per line; wrk's Lua script
sends each body once. A round that runs out of bodies, or gets any answer but 201,
stops the benchmark rather than count refusals as throughput.

The baseline is POST /bench/echo on the same server (a JSON body parsed and
answered, nothing stored), alternated with the message rounds. The same rounds
then run against the same app under gunicorn (the stack before the open-internet
issue): the messages per second must not be fewer there than here. Last, a figure
for self-hosters: the same rounds with PostgreSQL as the database and Redis for the
limits and the proof-of-work load.
"""

import json
import math
import os
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from benchmarks.common import Result, instance, json_post_script, new_inbox, spread, wrk_rate
from secretlink.crypto import b64encode, seal
from secretlink.crypto.pow import solve

ROUNDS = 3
SECONDS = 5
CONNECTIONS = 32
# Bodies prepared per round: the echo rate (an upper bound in practice) times the
# round's length, with room to spare.
HEADROOM = 1.3
ISSUING_THREADS = 8
UNBOUNDED = "100000000/minute"
ALL_CHECKS_ON = {
    "rate_limits_enabled": "true",
    "rate_limit_client": UNBOUNDED,
    "rate_limit_inbox": UNBOUNDED,
    "rate_limit_global": UNBOUNDED,
    "pow_difficulty": "1",
    "inbox_max_messages": "100000000",
    "inbox_max_bytes": str(1 << 40),
    "storage_budget_bytes": str(1 << 42),
}
POSTGRES_ADMIN = os.environ.get(
    "SECRETLINK_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SECRETLINK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

# Each request is the next prepared body; past the last one, a request with no body,
# which the server refuses and the round counts as a failure.
MESSAGES_SCRIPT = """
local bodies = {}
local sent = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
function request()
  sent = sent + 1
  local body = bodies[sent] or ""
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass
class Rounds:
    """Alternating rounds of one stack: echo baseline and messages."""

    echo: list[float]
    messages: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.messages) / statistics.median(self.echo)


def prepared_bodies(server: str, public_key: str, envelope: str, count: int) -> list[str]:
    """`count` message bodies, each with its own puzzle from the server, solved."""
    url = f"{server}/api/v1/inboxes/{public_key}/puzzle"
    local = threading.local()

    def one(_: int) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        answer = local.session.post(url, timeout=30)
        answer.raise_for_status()
        puzzle = answer.json()
        solution = solve(puzzle["puzzle"], puzzle["difficulty"])
        return json.dumps(
            {"ciphertext": envelope, "puzzle": puzzle["puzzle"], "solution": solution}
        )

    with ThreadPoolExecutor(ISSUING_THREADS) as pool:
        return list(pool.map(one, range(count)))


def message_round(server: str, public_key: str, envelope: str, expected_rate: float) -> float:
    count = math.ceil(expected_rate * SECONDS * HEADROOM) + 100
    bodies = prepared_bodies(server, public_key, envelope, count)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as handle:
        handle.write("\n".join(bodies) + "\n")
        handle.flush()
        run = wrk_rate(
            f"{server}/api/v1/inboxes/{public_key}/messages",
            MESSAGES_SCRIPT,
            [handle.name],
            SECONDS,
            CONNECTIONS,
        )
    if run["total"] > count:
        raise RuntimeError(f"P1 ran out of prepared messages ({count}); raise HEADROOM")
    return accepted(run, "messages")


def accepted(run: dict, what: str) -> float:
    """The round's rate, if every request was answered 2xx (P1 counts no refusals)."""
    if run["non_2xx"] or run["errors"]:
        raise RuntimeError(f"P1: {what} were refused or failed: {run}")
    return run["rate"]


def echo_round(server: str, body: str) -> float:
    run = wrk_rate(f"{server}/bench/echo", json_post_script(body), [], SECONDS, CONNECTIONS)
    return accepted(run, "the trivial POST")


def measure(data_dir: Path, server_kind: str = "granian", **env: str) -> Rounds:
    with instance(data_dir, server=server_kind, **{**ALL_CHECKS_ON, **env}) as server:
        keypair = new_inbox(server.url)
        public_key = keypair.public_key_text
        envelope = b64encode(seal("a short anonymous message", keypair.public_key))
        echo_body = json.dumps({"ciphertext": envelope})
        echo_round(server.url, echo_body)  # warm-up
        rounds = Rounds([], [])
        for _ in range(ROUNDS):
            rounds.echo.append(echo_round(server.url, echo_body))
            expected = max(rounds.echo)
            rounds.messages.append(message_round(server.url, public_key, envelope, expected))
    return rounds


@contextmanager
def postgres_database():
    """A database URL on a new, empty PostgreSQL schema, dropped afterwards."""
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    schema = f"bench_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def empty_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def p1_throughput(work: Path) -> Result:
    granian = measure(work / "p1")
    gunicorn = measure(work / "p1-gunicorn", server_kind="gunicorn")
    rate = statistics.median(granian.messages)
    against_gunicorn = rate / statistics.median(gunicorn.messages)
    result = Result(
        "P1",
        "submission throughput",
        granian.ratio,
        ">=",
        0.8,
        [
            f"messages accepted (limits, quotas and a solved single-use puzzle each, "
            f"committed before the 201; {CONNECTIONS} connections, rounds of {SECONDS} s): "
            f"{spread(granian.messages, '/s')}",
            f"trivial JSON POST on the same server: {spread(granian.echo, '/s')}",
            f"the same app under gunicorn (gthread, 2 x 8), the stack before: messages "
            f"{spread(gunicorn.messages, '/s')}, trivial POST {spread(gunicorn.echo, '/s')}; "
            f"messages here / there: {against_gunicorn:.2f} (goal >= 1.0): "
            f"{'PASS' if against_gunicorn >= 1.0 else 'FAIL'}",
            scale_out_figure(work / "p1-pg"),
        ],
    )
    if against_gunicorn < 1.0:
        result.missed.append("against gunicorn")
    return result


def scale_out_figure(data_dir: Path) -> str:
    """P1 with PostgreSQL and Redis, as a line of the report; "not measured" with the
    reason when either server is not running (a figure, not a goal)."""
    import redis

    what = "PostgreSQL for the database and Redis for the limits (a figure, not a goal)"
    try:
        empty_redis()
        with postgres_database() as database_url:
            scaled = measure(data_dir, database_url=database_url, redis_url=REDIS_URL)
        empty_redis()
    except (OperationalError, redis.exceptions.ConnectionError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"{what}: not measured ({reason})"
    return (
        f"{what}: messages {spread(scaled.messages, '/s')}, trivial POST "
        f"{spread(scaled.echo, '/s')}, ratio {scaled.ratio:.2f}"
    )
