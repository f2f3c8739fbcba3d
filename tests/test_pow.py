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
from secretlink.pow import INBOX_CALM, INSTANCE_CALM, MAX_EXTRA_BITS, PUZZLE_SALT, WINDOW
from secretlink.settings import Settings
from secretlink.storage import MessageRow

BASE_BITS = 10
CHEAP_BITS = 2


def gated_app(tmp_path, bits: int):
    app = create_app(
        Settings(
            data_dir=tmp_path,
            base_url="http://localhost",
            rate_limits_enabled=False,
            pow_difficulty=bits,
        )
    )
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    return app, client, keypair


@pytest.fixture
def gated(tmp_path):
    return gated_app(tmp_path, BASE_BITS)


@pytest.fixture
def cheap(tmp_path):
    """A gate at 2 bits: many solved messages cost next to nothing, even at +4 bits."""
    return gated_app(tmp_path, CHEAP_BITS)


def puzzle_for(client, keypair) -> dict:
    response = client.post(f"/api/v1/inboxes/{keypair.public_key_text}/puzzle")
    assert response.status_code == 200
    return response.get_json()


def send_solved(client, keypair) -> int:
    """Ask for a puzzle, solve it, send a message with it; the puzzle's difficulty."""
    puzzle = puzzle_for(client, keypair)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    assert post(client, keypair, puzzle=puzzle["puzzle"], solution=solution).status_code == 201
    return puzzle["difficulty"]


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
    for not_an_integer in ("7", True, 1.5):
        refused(
            post(client, keypair, puzzle=puzzle["puzzle"], solution=not_an_integer), "bad_field"
        )
    refused(post(client, keypair, puzzle=5, solution=0), "bad_field")
    for out_of_range in (-1, 2**53, 2**70):
        refused(
            post(client, keypair, puzzle=puzzle["puzzle"], solution=out_of_range), "bad_solution"
        )
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


def test_difficulty_rises_for_a_flooded_inbox_only(cheap):
    app, client, keypair = cheap
    quiet = generate_keypair()
    register(client, quiet)
    flood = INBOX_CALM * 2 ** (MAX_EXTRA_BITS - 1)  # accepted messages that reach the maximum
    difficulties = [send_solved(client, keypair) for _ in range(flood + 2)]
    assert stored(app) == flood + 2
    assert difficulties[:INBOX_CALM] == [CHEAP_BITS] * INBOX_CALM
    assert difficulties[INBOX_CALM] == CHEAP_BITS + 1  # one bit more per doubling
    assert difficulties[-1] == CHEAP_BITS + MAX_EXTRA_BITS
    assert difficulties == sorted(difficulties)
    assert puzzle_for(client, quiet)["difficulty"] == CHEAP_BITS  # another inbox: no harder


def test_asking_for_puzzles_does_not_raise_the_difficulty(gated):
    """Puzzles cost nothing to ask for: they must not let anyone make sending harder."""
    _, client, keypair = gated
    quiet = generate_keypair()
    register(client, quiet)
    difficulties = {puzzle_for(client, keypair)["difficulty"] for _ in range(INSTANCE_CALM * 2)}
    assert difficulties == {BASE_BITS}
    assert puzzle_for(client, quiet)["difficulty"] == BASE_BITS


def test_refused_messages_do_not_raise_the_difficulty(cheap):
    app, client, keypair = cheap
    for _ in range(INBOX_CALM * 4):
        puzzle = puzzle_for(client, keypair)
        wrong = next(c for c in range(10_000) if not meets(puzzle["puzzle"], c, CHEAP_BITS))
        refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=wrong), "bad_solution")
        refused(post(client, keypair), "pow_required")
    assert stored(app) == 0
    assert puzzle_for(client, keypair)["difficulty"] == CHEAP_BITS


def test_instance_wide_load_raises_the_difficulty_for_every_inbox(gated):
    app, client, keypair = gated
    gate = app.extensions["secretlink.pow"]
    for _ in range(INSTANCE_CALM):  # accepted messages, each to another inbox
        gate.accepted(generate_keypair().public_key_text)
    assert puzzle_for(client, keypair)["difficulty"] == BASE_BITS + 1


def test_load_older_than_a_minute_is_forgotten(cheap, monkeypatch):
    _, client, keypair = cheap
    for _ in range(INBOX_CALM * 2):
        send_solved(client, keypair)
    assert puzzle_for(client, keypair)["difficulty"] == CHEAP_BITS + 2
    later = time.monotonic() + WINDOW + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert puzzle_for(client, keypair)["difficulty"] == CHEAP_BITS


def test_lone_surrogate_in_the_puzzle_is_a_400_not_a_500(gated):
    """'\\ud800' is valid JSON but not text: itsdangerous cannot encode it."""
    app, client, keypair = gated
    refused(post(client, keypair, puzzle="\ud800", solution=0), "bad_field")
    refused(
        post(client, keypair, puzzle=puzzle_for(client, keypair)["puzzle"] + "\udfff", solution=0),
        "bad_field",
    )
    assert stored(app) == 0


def test_gate_off_takes_messages_without_puzzles(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, base_url="http://localhost", pow_difficulty=0))
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    assert post(client, keypair).status_code == 201
    assert puzzle_for(client, keypair)["difficulty"] == 0
