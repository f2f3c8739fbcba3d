"""Rate limits: 429 with Retry-After, per client / inbox / instance, shared through Redis,
and never keyed by a readable address."""

import asyncio
import inspect
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import TEST_ORIGIN
from limits.storage import MemoryStorage, storage_from_string

from secretlink import create_app
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.settings import Settings
from secretlink.web import api, limits
from secretlink.web.limits import ROTATE_SECONDS, RULES, RotatingKey, client_key, network_of


def make_app(tmp_path, **limits):
    settings = Settings(
        data_dir=tmp_path / "data",
        base_url="http://localhost",
        secret_key="k" * 40,
        pow_difficulty=0,
        **limits,
    )
    return create_app(settings)


def registered_inbox(app):
    from conftest import register

    keypair = generate_keypair()
    register(app.test_client(), keypair)
    return keypair


def send(client, keypair, address="192.0.2.1"):
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal("x", keypair.public_key))},
        environ_base={"REMOTE_ADDR": address},
    )


def test_client_limit_answers_429_with_retry_after(tmp_path):
    app = make_app(tmp_path, rate_limit_client="3/minute")
    keypair, client = registered_inbox(app), app.test_client()
    assert [send(client, keypair).status_code for _ in range(3)] == [201, 201, 201]
    refused = send(client, keypair)
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    # Another client is not affected.
    assert send(client, keypair, address="198.51.100.7").status_code == 201


def test_ipv6_clients_are_grouped_by_64(tmp_path):
    app = make_app(tmp_path, rate_limit_client="2/minute")
    keypair, client = registered_inbox(app), app.test_client()
    assert send(client, keypair, "2001:db8:1:2::1").status_code == 201
    assert send(client, keypair, "2001:db8:1:2:ffff::9").status_code == 201
    assert send(client, keypair, "2001:db8:1:2::77").status_code == 429
    assert send(client, keypair, "2001:db8:1:3::1").status_code == 201


def test_inbox_limit_counts_all_senders(tmp_path):
    app = make_app(tmp_path, rate_limit_inbox="3/minute")
    keypair, other, client = registered_inbox(app), registered_inbox(app), app.test_client()
    codes = [send(client, keypair, f"192.0.2.{i}").status_code for i in range(4)]
    assert codes == [201, 201, 201, 429]
    assert send(client, other, "192.0.2.99").status_code == 201


def test_instance_limit(tmp_path):
    app = make_app(tmp_path, rate_limit_global="2/minute")
    first, second, client = registered_inbox(app), registered_inbox(app), app.test_client()
    assert send(client, first, "192.0.2.1").status_code == 201
    assert send(client, second, "192.0.2.2").status_code == 201
    assert send(client, first, "192.0.2.3").status_code == 429


def test_proof_of_possession_is_limited_per_client(tmp_path):
    app = make_app(tmp_path, rate_limit_auth="2/minute")
    client = app.test_client()
    body = {"public_key": generate_keypair().public_key_text}
    codes = [client.post("/api/v1/auth/challenge", json=body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_limits_can_be_switched_off(tmp_path):
    app = make_app(tmp_path, rate_limit_client="1/minute", rate_limits_enabled=False)
    keypair, client = registered_inbox(app), app.test_client()
    assert {send(client, keypair).status_code for _ in range(3)} == {201}


def original_view(endpoint: str):
    blueprint, view = endpoint.split(".", 1)
    return getattr(getattr(api, blueprint), view)


def test_switched_off_limits_leave_the_views_unwrapped(tmp_path):
    """Off means off: no limiter wrapper or hook runs, and no rate-limit header is sent."""
    off = make_app(tmp_path / "off", rate_limit_client="1/minute", rate_limits_enabled=False)
    assert {endpoint: off.view_functions[endpoint] for endpoint in RULES} == {
        endpoint: original_view(endpoint) for endpoint in RULES
    }
    assert "secretlink.limiter" not in off.extensions
    keypair, client = registered_inbox(off), off.test_client()
    answers = [send(client, keypair) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert not [name for a in answers for name, _ in a.headers if "ratelimit" in name.lower()]

    on = make_app(tmp_path / "on", rate_limit_client="1/minute")
    assert all(on.view_functions[endpoint] is not original_view(endpoint) for endpoint in RULES)
    keypair, client = registered_inbox(on), on.test_client()
    first, second = send(client, keypair), send(client, keypair)
    assert first.status_code == 201 and first.headers["X-RateLimit-Limit"] == "1"
    assert second.status_code == 429


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("not an address", "unknown"),
    ],
)
def test_network_of(address, network):
    assert network_of(address) == network


def test_limiter_keys_do_not_contain_addresses(tmp_path):
    app = make_app(tmp_path)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.77"}):
        from secretlink.web.limits import client_key

        key = client_key()
    assert "203.0.113.77" not in key and "203" not in key.split(":")[1][:3] + "x"
    assert key.startswith("client:") and len(key) == len("client:") + 32


def test_rotating_key_is_stable_within_a_period_and_random_across_instances():
    one, two = RotatingKey(None), RotatingKey(None)
    assert one.current() == one.current()
    assert one.current() != two.current()


@pytest.fixture
def clock(monkeypatch):
    """The time secretlink.web.limits sees (only it: the limiter's counters keep real time),
    set to the first second of a period."""
    fake = SimpleNamespace(now=float(480_000 * ROTATE_SECONDS))
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


def key_for(app, address: str) -> str:
    with app.test_request_context(environ_base={"REMOTE_ADDR": address}):
        return client_key()


def test_client_key_changes_at_each_period_boundary_and_only_then(tmp_path, clock):
    app = make_app(tmp_path, rate_limit_client="2/minute")
    keypair, client = registered_inbox(app), app.test_client()
    first = key_for(app, "192.0.2.1")
    assert [send(client, keypair).status_code for _ in range(3)] == [201, 201, 429]

    clock.now += ROTATE_SECONDS - 1  # last second of the same period
    assert key_for(app, "192.0.2.1") == first
    assert send(client, keypair).status_code == 429  # still the same client

    clock.now += 1  # first second of the next period
    second = key_for(app, "192.0.2.1")
    assert second != first
    assert key_for(app, "192.0.2.2") not in (first, second)
    # The old key's counters are out of reach: the client starts afresh (the
    # documented "up to twice an hourly limit around a rotation").
    assert send(client, keypair).status_code == 201

    clock.now += ROTATE_SECONDS - 1
    assert key_for(app, "192.0.2.1") == second
    clock.now += 1
    assert key_for(app, "192.0.2.1") not in (first, second)


# ---- junk cannot spend shared budgets: only accepted messages and verified owners count ----

JUNK_BODIES = [
    {},  # no ciphertext
    {"ciphertext": "not base64!"},
    {"ciphertext": b64encode(b"\x02" + bytes(305))},  # unsupported version
]


def post_junk(client, public_key_text: str, address: str, body: dict):
    return client.post(
        f"/api/v1/inboxes/{public_key_text}/messages",
        json=body,
        environ_base={"REMOTE_ADDR": address},
    )


def test_junk_to_an_inbox_does_not_spend_its_budget(tmp_path):
    """The replay of issue 8: a burst of empty posts from many addresses used to fill
    the inbox's window, and every honest send then got 429 for the minute."""
    app = make_app(tmp_path, rate_limit_inbox="3/minute")
    keypair, client = registered_inbox(app), app.test_client()
    for number in range(30):
        body = JUNK_BODIES[number % len(JUNK_BODIES)]
        answer = post_junk(client, keypair.public_key_text, f"192.0.2.{number % 10}", body)
        assert answer.status_code == 400
    honest = [send(client, keypair, f"198.51.100.{n}").status_code for n in range(4)]
    assert honest == [201, 201, 201, 429]


def test_junk_to_made_up_inboxes_does_not_spend_the_instance_budget(tmp_path):
    app = make_app(tmp_path, rate_limit_global="3/minute")
    keypair, client = registered_inbox(app), app.test_client()
    message = {"ciphertext": b64encode(seal("x", keypair.public_key))}
    for number in range(40):
        made_up = generate_keypair().public_key_text if number % 2 else "x" * 43
        answer = post_junk(client, made_up, f"192.0.2.{number % 20}", message)
        assert answer.status_code in (400, 404)
    honest = [send(client, keypair, f"198.51.100.{n}").status_code for n in range(4)]
    assert honest == [201, 201, 201, 429]


def test_made_up_inbox_paths_leave_no_counters(tmp_path):
    """A limit's key is an inbox that passed every check, never text from the URL."""
    app = make_app(tmp_path)
    keypair, client = registered_inbox(app), app.test_client()
    made_up = generate_keypair().public_key_text
    message = {"ciphertext": b64encode(seal("x", keypair.public_key))}
    assert post_junk(client, made_up, "192.0.2.1", message).status_code == 404
    assert post_junk(client, "made-up", "192.0.2.1", message).status_code == 400
    assert send(client, keypair).status_code == 201
    storage = app.extensions["secretlink.limiter"].storage
    keys = list(storage.storage)  # the sliding windows' counters
    assert [key for key in keys if "inbox:" in key]  # the real inbox is counted
    assert not [key for key in keys if made_up in key or "made-up" in key]


def test_junk_costs_its_sender_own_budget_only(tmp_path):
    app = make_app(tmp_path, rate_limit_client="3/minute", rate_limit_inbox="3/minute")
    keypair, client = registered_inbox(app), app.test_client()
    junk = [post_junk(client, keypair.public_key_text, "192.0.2.66", {}) for _ in range(4)]
    assert [answer.status_code for answer in junk] == [400, 400, 400, 429]
    assert send(client, keypair, "192.0.2.66").status_code == 429  # its own budget is spent
    assert send(client, keypair, "198.51.100.1").status_code == 201  # nobody else's


def test_a_full_inbox_window_answers_429_with_retry_after(tmp_path):
    app = make_app(tmp_path, rate_limit_inbox="1/minute")
    keypair, client = registered_inbox(app), app.test_client()
    assert send(client, keypair, "192.0.2.1").status_code == 201
    refused = send(client, keypair, "192.0.2.2")
    assert refused.status_code == 429
    assert refused.get_json() == {
        "code": "rate_limited",
        "error": refused.get_json()["error"],
    }
    assert "this inbox received too many messages in the last minute" in refused.get_json()["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_a_refusal_by_the_inbox_budget_leaves_the_puzzle_unspent(tmp_path):
    from sqlalchemy import func, select

    from secretlink.crypto.pow import solve
    from secretlink.store.storage import UsedNonceRow

    settings = Settings(
        data_dir=tmp_path / "data",
        base_url=TEST_ORIGIN,
        secret_key="k" * 40,
        pow_difficulty=1,
        rate_limit_inbox="1/minute",
    )
    app = create_app(settings)
    keypair, client = registered_inbox(app), app.test_client()
    url = f"/api/v1/inboxes/{keypair.public_key_text}"

    def solved_send():
        puzzle = client.post(url + "/puzzle").get_json()
        body = {
            "ciphertext": b64encode(seal("x", keypair.public_key)),
            "puzzle": puzzle["puzzle"],
            "solution": solve(puzzle["puzzle"], puzzle["difficulty"]),
        }
        return client.post(url + "/messages", json=body)

    def spent() -> int:
        engine = app.extensions["secretlink.storage"].engine
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(UsedNonceRow))

    assert solved_send().status_code == 201
    before = spent()
    assert solved_send().status_code == 429
    assert spent() == before  # the refused message's puzzle is still good


def owner_get(client, keypair, token, address="192.0.2.1"):
    return client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_owner_reads_are_limited_per_inbox_after_the_token_verifies(tmp_path):
    from conftest import get_token

    app = make_app(tmp_path, rate_limit_owner_read="2/minute")
    keypair, client = registered_inbox(app), app.test_client()
    other = registered_inbox(app)
    other_token = get_token(client, other)
    # Strangers: no token, a forged one, another inbox's. None of it counts.
    for _ in range(10):
        assert owner_get(client, keypair, "forged", "203.0.113.9").status_code == 401
        assert owner_get(client, keypair, other_token, "203.0.113.9").status_code == 403
    token = get_token(client, keypair)
    answers = [owner_get(client, keypair, token) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].get_json()["code"] == "rate_limited"
    assert int(answers[2].headers["Retry-After"]) > 0
    # Per inbox: the other owner still reads.
    assert owner_get(client, other, other_token).status_code == 200


def test_owner_writes_are_limited_per_inbox(tmp_path):
    from conftest import get_token

    app = make_app(tmp_path, rate_limit_owner_write="3/minute")
    keypair, client = registered_inbox(app), app.test_client()  # its PUT counts once
    token = get_token(client, keypair)
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(5):  # strangers
        assert client.delete(url, headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.put(url, json={"prompt": "a"}, headers=headers).status_code == 200
    assert client.delete(url + "/messages/nope", headers=headers).status_code == 404
    refused = client.delete(url, headers=headers)
    assert refused.status_code == 429
    assert client.get(url).status_code == 200  # not deleted


# ---- Redis: several workers (here: apps) share counters and the hashing key ----


def test_two_workers_share_limits_and_client_key_through_redis(tmp_path, redis_url):
    settings = Settings(
        data_dir=tmp_path / "shared",
        base_url="http://localhost",
        secret_key="k" * 40,
        redis_url=redis_url,
        rate_limit_client="3/minute",
        pow_difficulty=0,
    )
    first, second = create_app(settings), create_app(replace(settings))
    keypair = registered_inbox(first)
    assert RotatingKey(redis_url).current() == RotatingKey(redis_url).current()
    codes = [
        send(first.test_client(), keypair).status_code,
        send(second.test_client(), keypair).status_code,
        send(first.test_client(), keypair).status_code,
        send(second.test_client(), keypair).status_code,
    ]
    assert codes == [201, 201, 201, 429]


def test_each_period_gets_a_new_key_stored_under_its_own_name_in_redis(redis_url, clock):
    import redis

    store = redis.Redis.from_url(redis_url)
    period = int(clock.now) // ROTATE_SECONDS
    one, two = RotatingKey(redis_url), RotatingKey(redis_url)
    first = one.current()
    assert store.get(f"secretlink:client-key:{period}") == first
    assert 0 < store.ttl(f"secretlink:client-key:{period}") <= 2 * ROTATE_SECONDS

    clock.now += ROTATE_SECONDS - 1
    assert one.current() == first == two.current()
    assert not store.exists(f"secretlink:client-key:{period + 1}")

    clock.now += 1
    second = two.current()  # the other worker asks first this time
    assert second != first
    assert store.get(f"secretlink:client-key:{period + 1}") == second
    assert one.current() == second  # and the first worker follows
    # The old key stays until it expires, for workers whose clock lags a little.
    assert store.get(f"secretlink:client-key:{period}") == first


def test_two_workers_share_the_inbox_budget_through_redis(tmp_path, redis_url):
    settings = Settings(
        data_dir=tmp_path / "shared",
        base_url=TEST_ORIGIN,
        secret_key="k" * 40,
        redis_url=redis_url,
        rate_limit_inbox="2/minute",
        pow_difficulty=0,
    )
    first, second = create_app(settings), create_app(replace(settings))
    keypair = registered_inbox(first)
    for app in (first, second):  # junk on both workers counts nowhere
        for body in JUNK_BODIES:
            assert (
                post_junk(app.test_client(), keypair.public_key_text, "192.0.2.9", body).status_code
                == 400
            )
    codes = [
        send(first.test_client(), keypair, "192.0.2.1").status_code,
        send(second.test_client(), keypair, "192.0.2.2").status_code,
        send(first.test_client(), keypair, "192.0.2.3").status_code,
    ]
    assert codes == [201, 201, 429]


class SoonResetting:
    """A limits strategy whose window frees up 0.05 s from now, as a sliding window
    does just after a busy minute ends (its reset is then a fraction of a second)."""

    def __init__(self, now: float):
        self.now = now

    def get_window_stats(self, item, *identifiers):
        from limits.util import WindowStats

        return WindowStats(self.now + 0.05, 0)


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.6, 0.97])
def test_a_refused_sender_is_never_told_to_retry_after_0_seconds(monkeypatch, fraction):
    now = 1_000_000.0 + fraction
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: now))
    budget = limits.ClientBudget(SoonResetting(now), "100/minute", "send-client")
    item = budget._items[0]
    refused_here = dict(budget.headers("client", item, None))  # its own limit broke
    refused_by_inbox = dict(budget.headers("client", None, 1))  # the inbox budget's 429
    assert int(refused_here["Retry-After"]) >= 1
    assert int(refused_by_inbox["Retry-After"]) >= 1


def test_flask_limiters_retry_after_is_at_least_a_second_on_a_429(tmp_path, monkeypatch):
    from conftest import get_token
    from flask_limiter import Limiter

    # Flask-Limiter writes int(reset - now), which is 0 when the reset is under a
    # second away (after a busy minute): here it writes 0 every time.
    original = Limiter._Limiter__inject_headers

    def truncating(self, response):
        response = original(self, response)
        response.headers["Retry-After"] = "0"
        return response

    monkeypatch.setattr(Limiter, "_Limiter__inject_headers", truncating)
    app = make_app(tmp_path, rate_limit_owner_read="1/minute")
    keypair, client = registered_inbox(app), app.test_client()
    token = get_token(client, keypair)
    assert owner_get(client, keypair, token).headers["Retry-After"] == "0"  # a 200: as is
    refused = owner_get(client, keypair, token)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"


def pause_the_first_thread_to_start_an_expiry_timer():
    """A trace function that holds the first thread at limits' MemoryStorage line that
    starts its new expiry timer, for 50 ms: the interleaving in which another thread
    makes a timer of its own meanwhile (a preempted thread, under load, does the same)."""
    schedule = MemoryStorage._MemoryStorage__schedule_expiry
    lines, first = inspect.getsourcelines(schedule)
    start_line = first + next(n for n, line in enumerate(lines) if ".start()" in line)
    held = threading.Event()

    def in_schedule(frame, event, arg):
        if event == "line" and frame.f_lineno == start_line and not held.is_set():
            held.set()
            time.sleep(0.05)
        return in_schedule

    def tracer(frame, event, arg):
        return in_schedule if frame.f_code is schedule.__code__ else None

    return tracer


def test_the_in_memory_counters_take_hits_from_many_threads_at_once():
    # limits 5.8.0's MemoryStorage checks that its expiry timer ended and starts a new
    # one without a lock: two threads could start the same timer, and the second
    # raised RuntimeError, a 500 for its request (seen on /puzzle under load).
    storage = storage_from_string(limits.MEMORY_STORAGE)
    while storage.timer.is_alive():  # the first expiry has run: the next hit starts one
        time.sleep(0.005)
    errors = []

    def hit(key: str) -> None:
        try:
            storage.acquire_sliding_window_entry(key, 1000, 60)
        except Exception as exc:  # any error is the failure
            errors.append(exc)

    threading.settrace(pause_the_first_thread_to_start_an_expiry_timer())
    try:
        threads = [threading.Thread(target=hit, args=(f"key-{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.01)  # the first is held at its timer's start by now
        for thread in threads:
            thread.join()
    finally:
        threading.settrace(None)
    assert errors == []
    assert [storage.get_sliding_window(f"key-{n}", 60)[2] for n in range(2)] == [1, 1]


# ---- messages being accepted hold their place: one process never overshoots a window ----


def test_a_held_place_counts_until_it_is_charged_or_given_back(tmp_path):
    app = make_app(tmp_path, rate_limit_inbox="3/minute")
    keypair = registered_inbox(app)
    budgets = app.extensions["secretlink.budgets"]
    key = keypair.public_key_text
    places = [budgets.hold_message(key) for _ in range(3)]
    with pytest.raises(limits.RateLimited):  # three messages are being accepted
        budgets.hold_message(key)
    with places.pop():  # refused after its check (say, the puzzle was used): room again
        pass
    places.append(budgets.hold_message(key))
    for place in places:
        place.charge()
        place.release()  # once charged, nothing more is given back
    with pytest.raises(limits.RateLimited):  # three stored: the window is full
        budgets.hold_message(key)
    assert not budgets._held  # no place is left behind


def test_messages_waiting_for_their_commit_on_the_event_loop_count_against_the_window(tmp_path):
    """The overshoot CI once saw on `secretlink serve`: on the event loop, every message
    waiting for its commit had passed the window's check, none was counted yet."""
    from test_fast_path import fast_path_of
    from werkzeug.test import EnvironBuilder

    app = make_app(tmp_path, rate_limit_inbox="3/minute")
    keypair = registered_inbox(app)
    fast = fast_path_of(app)
    assert fast.on_loop
    storage = app.extensions["secretlink.storage"]
    store = storage.add_message_async
    waiting: list = []
    gate = asyncio.Event()

    async def held_up(*args):
        waiting.append(args)
        await gate.wait()  # every message is in flight at once
        return await store(*args)

    storage.add_message_async = held_up

    async def in_thread(function, *args):
        return function(*args)

    async def post(number: int):
        environ = EnvironBuilder(
            f"/api/v1/inboxes/{keypair.public_key_text}/messages",
            method="POST",
            base_url=TEST_ORIGIN,
            json={"ciphertext": b64encode(seal("x", keypair.public_key))},
            environ_base={"REMOTE_ADDR": f"192.0.2.{number}"},
        ).get_environ()
        return await fast.answer_on_loop(environ, in_thread)

    async def ten_at_once():
        answers = asyncio.gather(*(post(number) for number in range(10)))
        while len(waiting) < 3:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # the others have been answered by now
        gate.set()
        return await answers

    answers = asyncio.run(ten_at_once())
    statuses = sorted(int(reply.status.split()[0]) for reply in answers)
    assert statuses == [201] * 3 + [429] * 7
    assert len(waiting) == 3
    assert not app.extensions["secretlink.budgets"]._held


def test_no_place_is_kept_by_a_refused_message_or_a_failing_counter_store(tmp_path):
    app = make_app(tmp_path, rate_limit_inbox="3/minute")
    keypair, client = registered_inbox(app), app.test_client()
    budgets = app.extensions["secretlink.budgets"]
    unknown = generate_keypair()
    assert send(client, unknown).status_code == 404  # checked, held, then no inbox
    storage = app.extensions["secretlink.storage"]
    storage.add_message, storage.add_message_async = None, None  # storing fails: 500
    assert send(client, keypair).status_code == 500
    assert not budgets._held

    class CountersDown:
        """A counter store that cannot be reached (Redis down)."""

        def test(self, *args, **kwargs):
            raise ConnectionError("the counters' storage is unreachable")

    down = limits.Budgets(CountersDown(), Settings())
    for _ in range(3):
        with pytest.raises(ConnectionError):
            down.hold_message(keypair.public_key_text)
    assert not down._held  # else each failure would take a place for good
