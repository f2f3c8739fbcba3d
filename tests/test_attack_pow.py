"""Attack replay against the real `secretlink serve` on loopback: stockpiled puzzles.

Issue 8 item 3: an attacker collects cheap puzzles while the instance is calm and
spends them during a flood, after the difficulty rose. Here two `secretlink serve`
processes share one database (and, in the second run, one Redis), the first with
two workers. The puzzles a sender stockpiled before the flood are refused as
`pow_stale` once older than the fresh window, each refusal carrying a fresh puzzle
at the risen difficulty that then goes through; puzzles younger than the window
still pass at their signed difficulty; and both servers see the same difficulty.

The fresh window is shortened with SECRETLINK_POW_FRESH_SECONDS (a test setting;
the default stays 120 s), so the test waits seconds, not minutes. Bounded: 2
servers, about 130 requests, well under a minute.
"""

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests
from test_serve import serving

from secretlink.client.http import InboxClient
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import meets, solve
from secretlink.web.pow import INBOX_CALM, MAX_EXTRA_BITS

BASE_BITS = 6  # cheap to solve in the test; the mechanism is the same at 14
FRESH_SECONDS = 8
FLOOD = INBOX_CALM * 2**MAX_EXTRA_BITS * 3 // 4  # 48 accepted: +4 bits, with headroom
STOCKPILE = 24
TIMEOUT = 10


class Sender:
    """Talks to one server for one inbox, on fresh connections (so any worker answers)."""

    def __init__(self, url: str, public_key: bytes):
        self.url = url
        self.key = public_key
        self.base = f"{url}/api/v1/inboxes/{b64encode(public_key)}"

    def puzzle(self) -> dict:
        response = requests.post(f"{self.base}/puzzle", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, puzzle: str, solution: int) -> requests.Response:
        body = {
            "ciphertext": b64encode(seal("stockpiled", self.key)),
            "puzzle": puzzle,
            "solution": solution,
        }
        return requests.post(
            f"{self.base}/messages", json=body, timeout=TIMEOUT, headers={"Connection": "close"}
        )

    def send_solved(self) -> None:
        puzzle = self.puzzle()
        response = self.post(puzzle["puzzle"], solve(puzzle["puzzle"], puzzle["difficulty"]))
        assert response.status_code == 201, response.text

    def stockpile(self, count: int) -> list[tuple[str, int]]:
        puzzles = [self.puzzle() for _ in range(count)]
        assert {p["difficulty"] for p in puzzles} == {BASE_BITS}
        return [(p["puzzle"], solve(p["puzzle"], p["difficulty"])) for p in puzzles]


@pytest.fixture(params=["database", "redis"])
def two_servers(request, tmp_path) -> Iterator[tuple[str, str]]:
    """Two servers on one data folder (one SQLite database and secret key), the first
    with two workers; in the "redis" run the load is counted in Redis."""
    env = {
        "SECRETLINK_POW_DIFFICULTY": str(BASE_BITS),
        "SECRETLINK_POW_FRESH_SECONDS": str(FRESH_SECONDS),
    }
    if request.param == "redis":
        env["SECRETLINK_REDIS_URL"] = request.getfixturevalue("redis_url")
    with ExitStack() as stack:
        first = stack.enter_context(serving(tmp_path, "--workers", "2", env=env))
        second = stack.enter_context(serving(tmp_path, "--workers", "1", env=env))
        yield first.url, second.url


def test_stockpiled_puzzles_are_refused_after_a_flood_and_fresh_ones_pass(two_servers):
    first_url, second_url = two_servers
    keypair = generate_keypair()
    InboxClient(first_url, keypair).register("flooded")  # solves the creation puzzle
    first = Sender(first_url, keypair.public_key)
    second = Sender(second_url, keypair.public_key)

    # The attacker stockpiles cheap puzzles while the instance is calm ...
    old = first.stockpile(STOCKPILE)
    time.sleep(FRESH_SECONDS + 0.5)
    # ... an honest sender's page solves one while they write (still young later) ...
    young = first.stockpile(4)
    started = time.monotonic()
    # ... and accepted messages raise the difficulty, on both servers alike.
    for _ in range(FLOOD):
        first.send_solved()
    risen = first.puzzle()["difficulty"]
    assert risen >= BASE_BITS + MAX_EXTRA_BITS - 1
    assert second.puzzle()["difficulty"] == risen  # another process, the same count

    # The young puzzles keep their signed difficulty: honest senders do not suffer.
    assert time.monotonic() - started < FRESH_SECONDS, "flood too slow for this check"
    for puzzle, solution in young:
        assert first.post(puzzle, solution).status_code == 201

    # The stockpile is refused on either server, unless a solution happens to meet
    # the new difficulty too (each with odds of about 1 in 16).
    refused = 0
    for index, (puzzle, solution) in enumerate(old):
        sender = first if index % 2 else second
        response = sender.post(puzzle, solution)
        if meets(puzzle, solution, risen):
            assert response.status_code == 201
            continue
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["code"] == "pow_stale"
        fresh = answer["puzzle"]
        assert fresh["difficulty"] >= BASE_BITS + MAX_EXTRA_BITS - 1
        refused += 1
        if refused <= 4:  # the sender re-solves the fresh puzzle: it goes through
            resent = sender.post(fresh["puzzle"], solve(fresh["puzzle"], fresh["difficulty"]))
            assert resent.status_code == 201, resent.text
    assert refused >= STOCKPILE // 2
