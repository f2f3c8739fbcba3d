"""The proof-of-work gate: solved puzzles pass once; everything else is refused."""

import json
import secrets
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TEST_ORIGIN, bearer, get_token, register
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import insert

from secretlink import create_app
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import leading_zero_bits, meets, pow_hash, solve
from secretlink.settings import Settings
from secretlink.store.storage import MessageRow, coarse, utcnow
from secretlink.web.pow import (
    CREATE_EXTRA_BITS,
    FRESH_SECONDS,
    INBOX_CALM,
    INSTANCE_CALM,
    MAX_EXTRA_BITS,
    MESSAGE,
    PUZZLE_TTL,
    UPLOAD,
    WINDOW,
    upload_extra_bits,
)

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


def store_directly(app, keypair, count: int) -> None:
    """`count` messages stored for this inbox this minute, as accepted ones are."""
    rows = [
        {
            "id": secrets.token_urlsafe(16),
            "inbox_key": keypair.public_key_text,
            "received_at": coarse(utcnow()),
            "envelope": b"sealed",
        }
        for _ in range(count)
    ]
    with app.extensions["secretlink.storage"].engine.begin() as connection:
        connection.execute(insert(MessageRow), rows)


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


def test_expired_puzzle_is_refused(gated):
    app, client, keypair = gated
    puzzle = puzzle_for(client, keypair)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    later = time.time() + 601
    app.extensions["secretlink.pow"].clock = lambda: later
    refused(post(client, keypair, puzzle=puzzle["puzzle"], solution=solution), "puzzle_expired")


def test_forged_puzzle_is_refused(gated):
    _app, client, keypair = gated
    forged = URLSafeTimedSerializer("not the server's key" * 2, salt=MESSAGE.salt).dumps(
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
    busy = generate_keypair()
    register(client, busy)
    store_directly(app, busy, INSTANCE_CALM)  # accepted messages, all to another inbox
    assert puzzle_for(client, keypair)["difficulty"] == BASE_BITS + 1


def test_load_older_than_two_minutes_is_forgotten(cheap):
    app, client, keypair = cheap
    for _ in range(INBOX_CALM * 2):
        send_solved(client, keypair)
    assert puzzle_for(client, keypair)["difficulty"] == CHEAP_BITS + 2
    gate = app.extensions["secretlink.pow"]
    later = time.time() + 2 * WINDOW + 1
    gate.clock = lambda: later
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


# ---- stockpiled puzzles (SPEC 7a): the signed difficulty holds for FRESH_SECONDS ----


def stockpile(app, client, keypair, count: int, age: float) -> list[tuple[str, int]]:
    """`count` puzzles issued `age` seconds ago, each solved at its signed difficulty."""
    gate = app.extensions["secretlink.pow"]
    issued = time.time() - age
    gate.clock = lambda: issued
    try:
        puzzles = [puzzle_for(client, keypair) for _ in range(count)]
    finally:
        gate.clock = time.time
    return [(p["puzzle"], solve(p["puzzle"], p["difficulty"])) for p in puzzles]


def flood(client, keypair) -> int:
    """Accepted messages enough to reach the highest difficulty; that difficulty."""
    for _ in range(INBOX_CALM * 2 ** (MAX_EXTRA_BITS - 1)):
        send_solved(client, keypair)
    difficulty = puzzle_for(client, keypair)["difficulty"]
    assert difficulty == CHEAP_BITS + MAX_EXTRA_BITS
    return difficulty


def test_stockpiled_puzzles_are_stale_once_the_difficulty_rose(cheap):
    app, client, keypair = cheap
    stockpiled = stockpile(app, client, keypair, 8, age=FRESH_SECONDS + 60)
    risen = flood(client, keypair)
    before = stored(app)
    stale = 0
    for puzzle, solution in stockpiled:
        response = post(client, keypair, puzzle=puzzle, solution=solution)
        if meets(puzzle, solution, risen):  # by luck (1 in 16) it meets the new difficulty
            assert response.status_code == 201
            continue
        refused(response, "pow_stale")
        stale += 1
        fresh = response.get_json()["puzzle"]
        assert fresh["difficulty"] == risen
        # The sender re-solves the fresh puzzle and the same message goes through.
        solution = solve(fresh["puzzle"], fresh["difficulty"])
        assert post(client, keypair, puzzle=fresh["puzzle"], solution=solution).status_code == 201
    assert stale >= 4  # 8 puzzles that each miss by luck with odds of 15 in 16
    assert stored(app) == before + len(stockpiled)


def test_stale_puzzle_is_not_spent(cheap):
    """Refused as stale, a puzzle can still be used with a solution that meets the new bits."""
    app, client, keypair = cheap
    [(puzzle, solution)] = stockpile(app, client, keypair, 1, age=FRESH_SECONDS + 1)
    risen = flood(client, keypair)
    if not meets(puzzle, solution, risen):
        refused(post(client, keypair, puzzle=puzzle, solution=solution), "pow_stale")
    harder = solve(puzzle, risen)
    assert post(client, keypair, puzzle=puzzle, solution=harder).status_code == 201
    refused(post(client, keypair, puzzle=puzzle, solution=harder), "puzzle_used")


def test_puzzles_younger_than_the_fresh_window_keep_their_difficulty(cheap):
    """The honest sender whose page solved while they wrote is not punished for a flood."""
    app, client, keypair = cheap
    stockpiled = stockpile(app, client, keypair, 8, age=FRESH_SECONDS - 10)
    flood(client, keypair)
    for puzzle, solution in stockpiled:
        assert post(client, keypair, puzzle=puzzle, solution=solution).status_code == 201


def test_old_puzzle_passes_when_the_difficulty_did_not_rise(cheap):
    app, client, keypair = cheap
    [(puzzle, solution)] = stockpile(app, client, keypair, 1, age=PUZZLE_TTL - 5)
    assert post(client, keypair, puzzle=puzzle, solution=solution).status_code == 201


def test_stale_answer_matches_the_documented_shape(cheap):
    app, client, keypair = cheap
    stockpiled = stockpile(app, client, keypair, 8, age=FRESH_SECONDS + 1)
    risen = flood(client, keypair)
    puzzle, solution = next((p, s) for p, s in stockpiled if not meets(p, s, risen))
    answer = post(client, keypair, puzzle=puzzle, solution=solution).get_json()
    assert set(answer) == {"code", "error", "puzzle"}
    assert set(answer["puzzle"]) == {"puzzle", "difficulty", "expires_at"}


# ---- the load is shared by every worker ----


def test_two_workers_on_one_database_see_the_same_difficulty(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        base_url=TEST_ORIGIN,
        rate_limits_enabled=False,
        pow_difficulty=CHEAP_BITS,
    )
    first, second = create_app(settings), create_app(settings)
    keypair = generate_keypair()
    register(first.test_client(), keypair)
    for _ in range(INBOX_CALM * 2):
        send_solved(first.test_client(), keypair)
    assert puzzle_for(second.test_client(), keypair)["difficulty"] == CHEAP_BITS + 2


def test_two_workers_sharing_redis_see_the_same_difficulty(tmp_path, redis_url):
    settings = Settings(
        data_dir=tmp_path,
        base_url=TEST_ORIGIN,
        rate_limits_enabled=False,
        pow_difficulty=CHEAP_BITS,
        redis_url=redis_url,
    )
    first, second = create_app(settings), create_app(settings)
    keypair = generate_keypair()
    register(first.test_client(), keypair)
    for _ in range(INBOX_CALM * 2):
        send_solved(first.test_client(), keypair)
    assert puzzle_for(second.test_client(), keypair)["difficulty"] == CHEAP_BITS + 2
    # Redis holds the count: the database's messages are not what the gate reads.
    with first.extensions["secretlink.storage"].engine.begin() as connection:
        connection.execute(MessageRow.__table__.delete())
    assert puzzle_for(second.test_client(), keypair)["difficulty"] == CHEAP_BITS + 2


def test_load_counters_in_redis_expire_at_a_whole_minute(tmp_path, redis_url):
    import redis

    settings = Settings(
        data_dir=tmp_path,
        base_url=TEST_ORIGIN,
        rate_limits_enabled=False,
        pow_difficulty=CHEAP_BITS,
        redis_url=redis_url,
    )
    app = create_app(settings)
    keypair = generate_keypair()
    register(app.test_client(), keypair)
    send_solved(app.test_client(), keypair)
    server = redis.Redis.from_url(redis_url)
    [key] = server.keys(f"secretlink:pow:*:{keypair.public_key_text}")
    expires_at = server.expiretime(key)
    assert expires_at % 60 == 0


# ---- creating an inbox costs work too ----


def put_inbox(client, keypair, token, **fields):
    return client.put(
        f"/api/v1/inboxes/{keypair.public_key_text}",
        json={"prompt": "hi", **fields},
        headers=bearer(token),
    )


def creation_puzzle(client, keypair) -> dict:
    response = client.post(f"/api/v1/inboxes/{keypair.public_key_text}/creation-puzzle")
    assert response.status_code == 200
    return response.get_json()


def inbox_exists(client, keypair) -> bool:
    return client.get(f"/api/v1/inboxes/{keypair.public_key_text}").status_code == 200


def test_creating_an_inbox_needs_a_solved_creation_puzzle(gated):
    _app, client, _ = gated
    keypair = generate_keypair()
    token = get_token(client, keypair)
    refused(put_inbox(client, keypair, token), "pow_required")
    assert not inbox_exists(client, keypair)
    puzzle = creation_puzzle(client, keypair)
    assert puzzle["difficulty"] == BASE_BITS + CREATE_EXTRA_BITS
    wrong = next(c for c in range(10_000) if not meets(puzzle["puzzle"], c, puzzle["difficulty"]))
    refused(
        put_inbox(client, keypair, token, puzzle=puzzle["puzzle"], solution=wrong), "bad_solution"
    )
    assert not inbox_exists(client, keypair)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    response = put_inbox(client, keypair, token, puzzle=puzzle["puzzle"], solution=solution)
    assert response.status_code == 201
    # Changing the prompt of one's own inbox costs nothing.
    assert put_inbox(client, keypair, token, prompt="new").status_code == 200


def test_creation_puzzle_is_single_use_and_bound_to_its_key(gated):
    _app, client, _ = gated
    first, second = generate_keypair(), generate_keypair()
    puzzle = creation_puzzle(client, first)
    solution = solve(puzzle["puzzle"], puzzle["difficulty"])
    refused(
        put_inbox(
            client, second, get_token(client, second), puzzle=puzzle["puzzle"], solution=solution
        ),
        "bad_puzzle",
    )
    token = get_token(client, first)
    assert (
        put_inbox(client, first, token, puzzle=puzzle["puzzle"], solution=solution).status_code
        == 201
    )
    client.delete(f"/api/v1/inboxes/{first.public_key_text}", headers=bearer(token))
    refused(
        put_inbox(client, first, token, puzzle=puzzle["puzzle"], solution=solution), "puzzle_used"
    )


def test_message_and_creation_puzzles_are_not_interchangeable(gated):
    _app, client, keypair = gated  # registered: message puzzles can be had
    message_puzzle = puzzle_for(client, keypair)
    answer = solve(message_puzzle["puzzle"], message_puzzle["difficulty"])
    other = generate_keypair()
    refused(
        put_inbox(
            client,
            other,
            get_token(client, other),
            puzzle=message_puzzle["puzzle"],
            solution=answer,
        ),
        "bad_puzzle",
    )
    create = creation_puzzle(client, keypair)
    solution = solve(create["puzzle"], create["difficulty"])
    refused(post(client, keypair, puzzle=create["puzzle"], solution=solution), "bad_puzzle")


def test_stale_creation_puzzle_comes_back_with_a_fresh_one(tmp_path):
    """An operator who raises the setting makes old creation puzzles stale, not free."""
    app = create_app(
        Settings(
            data_dir=tmp_path, base_url=TEST_ORIGIN, rate_limits_enabled=False, pow_difficulty=2
        )
    )
    client = app.test_client()
    gate = app.extensions["secretlink.pow"]
    keypairs = [generate_keypair() for _ in range(8)]
    issued = time.time() - FRESH_SECONDS - 1
    gate.clock = lambda: issued
    puzzles = [creation_puzzle(client, k) for k in keypairs]
    gate.clock = time.time
    gate.base_difficulty = 8
    for keypair, puzzle in zip(keypairs, puzzles, strict=True):
        token = get_token(client, keypair)
        solution = solve(puzzle["puzzle"], puzzle["difficulty"])
        response = put_inbox(client, keypair, token, puzzle=puzzle["puzzle"], solution=solution)
        if meets(puzzle["puzzle"], solution, 8 + CREATE_EXTRA_BITS):
            continue
        refused(response, "pow_stale")
        fresh = response.get_json()["puzzle"]
        solution = solve(fresh["puzzle"], fresh["difficulty"])
        response = put_inbox(client, keypair, token, puzzle=fresh["puzzle"], solution=solution)
        assert response.status_code == 201


def test_gate_off_creates_inboxes_without_puzzles(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, base_url=TEST_ORIGIN, pow_difficulty=0))
    client, keypair = app.test_client(), generate_keypair()
    assert put_inbox(client, keypair, get_token(client, keypair)).status_code == 201
    assert creation_puzzle(client, keypair)["difficulty"] == 0


# ---- known answers (crypto/vectors/pow.json), shared with crypto/tests/pow.test.mjs ----

POW_VECTORS = json.loads((ROOT / "crypto" / "vectors" / "pow.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", POW_VECTORS["cases"], ids=lambda case: case["desc"])
def test_pow_vectors(case):
    assert case["puzzle"].encode("utf-8").hex() == case["puzzle_hex"]
    if case["expect"] == "ok":
        assert solve(case["puzzle"], case["difficulty"]) == case["counter"]
        assert pow_hash(case["puzzle"], case["counter"]).hex() == case["hash"]
    else:
        assert case["expect"] == "not_a_solution"
        assert not meets(case["puzzle"], case["counter"], case["difficulty"])


def test_pow_vectors_match_their_generator():
    result = subprocess.run(
        [sys.executable, str(ROOT / "crypto" / "generate_pow_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_javascript_vectors_pass():
    result = subprocess.run(
        ["node", "--test", "crypto/tests/pow.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_server_difficulty_never_exceeds_what_clients_solve():
    """The setting's cap plus the most load can add stays within the clients' refusal."""
    from secretlink.client.http import MAX_POW_BITS
    from secretlink.settings import SettingsError

    highest = Settings.from_env({"SECRETLINK_POW_DIFFICULTY": "24"}).pow_difficulty
    with pytest.raises(SettingsError):
        Settings.from_env({"SECRETLINK_POW_DIFFICULTY": "25"})
    assert highest + MAX_EXTRA_BITS <= MAX_POW_BITS
    assert highest + CREATE_EXTRA_BITS <= MAX_POW_BITS


# ---- the CLI's client re-solves a stale puzzle, and solves creation puzzles ----


def stale_first(gate, purpose, monkeypatch) -> None:
    """The gate hands out, once, a puzzle issued 200 s ago whose solution misses the
    difficulty in force (raised by the operator meanwhile): a stockpiled puzzle."""
    issue = gate.issue

    def stale_then_real(public_key, purpose_asked=MESSAGE):
        monkeypatch.setattr(gate, "issue", issue)
        if purpose_asked is not purpose:
            return issue(public_key, purpose_asked)
        issued = time.time() - 200
        gate.clock = lambda: issued
        try:
            while True:
                puzzle = issue(public_key, purpose)
                solution = solve(puzzle["puzzle"], puzzle["difficulty"])
                if not meets(puzzle["puzzle"], solution, puzzle["difficulty"] + 4):
                    break
        finally:
            gate.clock = time.time
        gate.base_difficulty += 4
        return puzzle

    monkeypatch.setattr(gate, "issue", stale_then_real)


def count_solves(monkeypatch) -> list[dict]:
    """The puzzles the client solves, from now on."""
    from secretlink.client import http as client

    seen = []
    original = client.solved

    def counting(puzzle):
        seen.append(puzzle)
        return original(puzzle)

    monkeypatch.setattr(client, "solved", counting)
    return seen


def test_cli_send_solves_again_on_pow_stale(live_server, monkeypatch):
    from secretlink.client.http import InboxClient, parse_link
    from secretlink.client.http import send as send_text

    keypair = generate_keypair()
    link = InboxClient(live_server.url, keypair).register("")["link"]
    gate = live_server.app.extensions["secretlink.pow"]
    stale_first(gate, MESSAGE, monkeypatch)
    solved = count_solves(monkeypatch)
    send_text(parse_link(link), "kept across the retry")
    assert len(solved) == 2  # the stale puzzle, then the fresh one from the refusal
    [message] = InboxClient(live_server.url, keypair).messages()
    assert stored(live_server.app) == 1
    assert message.ciphertext


def test_cli_inbox_create_solves_the_creation_puzzle_even_when_stale(live_server, monkeypatch):
    from secretlink.client.http import InboxClient
    from secretlink.web.pow import CREATE_INBOX

    gate = live_server.app.extensions["secretlink.pow"]
    stale_first(gate, CREATE_INBOX, monkeypatch)
    keypair = generate_keypair()
    client = InboxClient(live_server.url, keypair)
    solved = count_solves(monkeypatch)
    assert client.register("first")["prompt"] == "first"
    assert len(solved) == 2
    assert client.register("second")["prompt"] == "second"  # an update: no work


def test_cli_refuses_an_unreasonable_puzzle():
    from secretlink.client.http import ClientError, solved

    with pytest.raises(ClientError, match="unreasonable"):
        solved({"puzzle": "p", "difficulty": 29})
    for malformed in (None, [], {"puzzle": 5, "difficulty": 1}, {"puzzle": "p", "difficulty": "1"}):
        with pytest.raises(ClientError, match="malformed"):
            solved(malformed)


def test_unreachable_redis_falls_back_to_the_database_count(tmp_path, caplog):
    """The load is not worth refusing messages for: without Redis, the database counts."""
    closed = free_port()
    settings = Settings(
        data_dir=tmp_path,
        base_url=TEST_ORIGIN,
        rate_limits_enabled=False,
        pow_difficulty=CHEAP_BITS,
        redis_url=f"redis://127.0.0.1:{closed}/0",
    )
    app = create_app(settings)
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    for _ in range(INBOX_CALM * 2):
        send_solved(client, keypair)
    assert puzzle_for(client, keypair)["difficulty"] == CHEAP_BITS + 2
    assert "read from the database, not Redis" in caplog.text


def free_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- uploads (SPEC 7a): the work grows with the blob's length ----


@pytest.mark.parametrize(
    ("length", "extra"),
    [
        (16, 0),
        (1 << 20, 0),
        ((1 << 20) + 1, 1),
        (2 << 20, 1),
        ((2 << 20) + 1, 2),
        (4 << 20, 2),
        ((4 << 20) + 1, 3),
        (8 << 20, 3),
        ((8 << 20) + 1, 4),
        (1 << 30, 4),
    ],
)
def test_upload_extra_bits_are_ceil_log2_of_mebibytes_up_to_four(length, extra):
    assert upload_extra_bits(length) == extra


def test_upload_puzzles_grow_with_the_length_and_never_pass_28_bits(tmp_path):
    app, _, keypair = gated_app(tmp_path, BASE_BITS)
    gate = app.extensions["secretlink.pow"]
    assert gate.difficulty(keypair.public_key_text, UPLOAD, 1000) == BASE_BITS
    assert gate.difficulty(keypair.public_key_text, UPLOAD, 100 << 20) == BASE_BITS + 4
    gate.base_difficulty = 24  # the setting's cap
    assert gate.difficulty(keypair.public_key_text, UPLOAD, 1 << 30) == 28


def test_an_upload_puzzle_is_for_one_length_and_uploads_only(tmp_path):
    _, client, keypair = gated_app(tmp_path, CHEAP_BITS)
    token = get_token(client, keypair)
    base = f"/api/v1/inboxes/{keypair.public_key_text}"
    on = {"accepts_attachments": True}
    assert client.patch(f"{base}/settings", json=on, headers=bearer(token)).status_code == 200
    puzzle = client.post(f"{base}/uploads/puzzle", json={"length": 16}).get_json()
    fields = {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}
    other_length = {"blob_id": b64encode(secrets.token_bytes(16)), "length": 64, **fields}
    refused(client.post(f"{base}/uploads", json=other_length), "bad_puzzle")
    # Nor does it carry a message, or a message puzzle start an upload.
    refused(post(client, keypair, **fields), "bad_puzzle")
    message_puzzle = puzzle_for(client, keypair)
    solved = solve(message_puzzle["puzzle"], message_puzzle["difficulty"])
    upload = {"blob_id": b64encode(secrets.token_bytes(16)), "length": 16}
    body = {**upload, "puzzle": message_puzzle["puzzle"], "solution": solved}
    refused(client.post(f"{base}/uploads", json=body), "bad_puzzle")
    started = client.post(f"{base}/uploads", json={**upload, "length": 16, **fields})
    assert started.status_code == 201, started.get_json()
