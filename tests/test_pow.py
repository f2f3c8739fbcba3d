"""The proof-of-work gate: solved puzzles pass once; everything else is refused."""

import json
import subprocess
import time

import pytest
from conftest import ROOT, register
from itsdangerous import URLSafeTimedSerializer

from secretlink import create_app
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import leading_zero_bits, meets, pow_hash, solve
from secretlink.pow import INBOX_CALM, MAX_EXTRA_BITS, PUZZLE_SALT
from secretlink.settings import Settings
from secretlink.storage import MessageRow

BASE_BITS = 10


@pytest.fixture
def gated(tmp_path):
    app = create_app(
        Settings(data_dir=tmp_path, rate_limits_enabled=False, pow_difficulty=BASE_BITS)
    )
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    return app, client, keypair


def puzzle_for(client, keypair) -> dict:
    response = client.post(f"/api/v1/inboxes/{keypair.public_key_text}/puzzle")
    assert response.status_code == 200
    return response.get_json()


def post(client, keypair, **fields):
    body = {"ciphertext": b64encode(seal("hello", keypair.public_key)), **fields}
    return client.post(f"/api/v1/inboxes/{keypair.public_key_text}/messages", json=body)


def stored(app) -> int:
    with app.extensions["secretlink.storage"].engine.connect() as connection:
        return len(connection.execute(MessageRow.__table__.select()).fetchall())


def refused(response, code: str) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == code


def test_solution_has_the_leading_zero_bits():
    solution = solve("some puzzle", 12)
    assert leading_zero_bits(pow_hash("some puzzle", solution)) >= 12
    assert meets("some puzzle", solution, 12)
    assert all(not meets("some puzzle", smaller, 12) for smaller in range(solution))


def test_javascript_solver_agrees_with_python():
    script = (
        "import { solve } from './webui/src/pow.js';"
        "console.log(JSON.stringify([8, 12].map((d) => solve('puzzle text', d))));"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [solve("puzzle text", 8), solve("puzzle text", 12)]


def test_solved_puzzle_is_accepted_once(gated):
    app, client, keypair = gated
    puzzle = puzzle_for(client, keypair)
    assert puzzle["difficulty"] == BASE_BITS
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    assert post(client, keypair, puzzle=puzzle["puzzle"], solution=solution).status_code == 201
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=solution), "puzzle_used")
    assert stored(app) == 1


def test_missing_puzzle_is_refused(gated):
    app, client, keypair = gated
    refused(post(client, keypair), "pow_required")
    assert stored(app) == 0


def test_unsolved_puzzle_is_refused(gated):
    app, client, keypair = gated
    puzzle = puzzle_for(client, keypair)
    wrong = next(c for c in range(10_000) if not meets(puzzle["puzzle"], c, BASE_BITS))
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=wrong), "bad_solution")
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution="7"), "bad_field")
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=-1), "bad_solution")
    assert stored(app) == 0


def test_expired_puzzle_is_refused(gated, monkeypatch):
    _app, client, keypair = gated
    puzzle = puzzle_for(client, keypair)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    later = time.time() + 601
    monkeypatch.setattr(time, "time", lambda: later)
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=solution), "puzzle_expired")


def test_forged_puzzle_is_refused(gated):
    _app, client, keypair = gated
    forged = URLSafeTimedSerializer("not the server's key" * 2, salt=PUZZLE_SALT).dumps(
        {"pk": keypair.public_key_text, "n": "AAAAAAAAAAAAAAAAAAAAAA", "d": 0, "exp": 2**40}
    )
    refused(post(client, keypair, puzzle=forged, solution=0), "bad_puzzle")


def test_puzzle_for_another_inbox_is_refused(gated):
    _app, client, keypair = gated
    other = generate_keypair()
    register(client, other)
    puzzle = puzzle_for(client, other)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=solution), "bad_puzzle")


def test_no_puzzle_for_an_unknown_inbox(gated):
    _, client, _ = gated
    response = client.post(f"/api/v1/inboxes/{generate_keypair().public_key_text}/puzzle")
    assert response.status_code == 404


def test_difficulty_rises_for_a_flooded_inbox_only(gated):
    _, client, keypair = gated
    quiet = generate_keypair()
    register(client, quiet)
    difficulties = [puzzle_for(client, keypair)["difficulty"] for _ in range(INBOX_CALM * 20)]
    assert difficulties[0] == BASE_BITS
    assert difficulties[-1] == BASE_BITS + MAX_EXTRA_BITS
    assert difficulties == sorted(difficulties)
    assert puzzle_for(client, quiet)["difficulty"] == BASE_BITS + 1  # instance-wide load


def test_gate_off_takes_messages_without_puzzles(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, pow_difficulty=0))
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    assert post(client, keypair).status_code == 201
    assert puzzle_for(client, keypair)["difficulty"] == 0
