"""Quotas through the API: a full inbox or instance refuses senders with a clear JSON
error, keeps what it holds, and tells its owner; on SQLite and PostgreSQL."""

from dataclasses import replace

import pytest
from conftest import bearer, creation_proof, get_token, register

from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import solve


def post(client, keypair, **extra):
    body = {"ciphertext": b64encode(seal("hello", keypair.public_key)), **extra}
    return client.post(f"/api/v1/inboxes/{keypair.public_key_text}/messages", json=body)


def listing(client, keypair, token) -> dict:
    answer = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    )
    assert answer.status_code == 200
    return answer.get_json()


@pytest.fixture
def small_app(settings, make_app):
    return make_app(replace(settings, inbox_max_messages=2, storage_budget_bytes=3 * 306))


def test_a_full_inbox_answers_409_and_its_owner_sees_it(small_app):
    client, keypair = small_app.test_client(), generate_keypair()
    token = register(client, keypair)
    assert listing(client, keypair, token)["usage"] == {
        "messages": 0,
        "bytes": 0,
        "max_messages": 2,
        "max_bytes": 16 * 1024 * 1024,
        "full": False,
        "instance_full": False,
    }
    assert [post(client, keypair).status_code for _ in range(2)] == [201, 201]
    refused = post(client, keypair)
    assert refused.status_code == 409
    assert refused.get_json() == {
        "code": "inbox_full",
        "error": "this inbox is full: it takes no more messages until its owner deletes some",
    }
    page = listing(client, keypair, token)
    assert len(page["messages"]) == 2  # nothing lost
    assert page["usage"]["full"] is True
    assert (page["usage"]["messages"], page["usage"]["bytes"]) == (2, 612)
    # The owner makes room; senders get in again.
    message_id = page["messages"][0]["id"]
    url = f"/api/v1/inboxes/{keypair.public_key_text}/messages/{message_id}"
    assert client.delete(url, headers=bearer(token)).status_code == 204
    assert listing(client, keypair, token)["usage"]["full"] is False
    assert post(client, keypair).status_code == 201


def test_a_full_instance_answers_507_to_every_sender(small_app):
    client = small_app.test_client()
    first, second = generate_keypair(), generate_keypair()
    register(client, first)
    token = register(client, second)
    assert [post(client, first).status_code for _ in range(2)] == [201, 201]
    assert post(client, second).status_code == 201
    refused = post(client, second)  # the inbox has room, the instance has none
    assert refused.status_code == 507
    assert refused.get_json()["code"] == "instance_full"
    usage = listing(client, second, token)["usage"]
    assert (usage["full"], usage["instance_full"]) == (True, True)


def test_no_inbox_is_created_past_the_instance_s_count(settings, make_app):
    """Inboxes are not in the storage budget: their number is capped instead, so that
    a flood of created inboxes cannot grow the database without bound either."""
    app = make_app(replace(settings, max_inboxes=2))
    client, kept = app.test_client(), [generate_keypair(), generate_keypair()]
    tokens = [register(client, keypair) for keypair in kept]
    extra = generate_keypair()
    refused = client.put(
        f"/api/v1/inboxes/{extra.public_key_text}",
        json={"prompt": "one too many", **creation_proof(client, extra)},
        headers=bearer(get_token(client, extra)),
    )
    assert refused.status_code == 507
    assert refused.get_json() == {
        "code": "instance_full",
        "error": "this server holds as many inboxes as it may: it creates no new ones",
    }
    assert client.get(f"/api/v1/inboxes/{extra.public_key_text}").status_code == 404
    # The inboxes there are untouched: their owners still change them, senders still send.
    url = f"/api/v1/inboxes/{kept[0].public_key_text}"
    changed = client.put(url, json={"prompt": "still mine"}, headers=bearer(tokens[0]))
    assert changed.status_code == 200
    assert post(client, kept[1]).status_code == 201
    # Deleting one makes room for a new one.
    assert client.delete(url, headers=bearer(tokens[0])).status_code == 204
    register(client, extra)


def test_caps_set_to_zero_are_off(settings, make_app):
    app = make_app(
        replace(settings, inbox_max_messages=0, inbox_max_bytes=0, storage_budget_bytes=0)
    )
    client, keypair = app.test_client(), generate_keypair()
    token = register(client, keypair)
    assert post(client, keypair).status_code == 201
    usage = listing(client, keypair, token)["usage"]
    assert (usage["max_messages"], usage["max_bytes"], usage["full"]) == (None, None, False)


def test_a_sender_refused_as_full_keeps_the_puzzle(settings, make_app):
    """The quota is looked at before the puzzle is spent: the sender can use it once
    the owner has made room."""
    app = make_app(replace(settings, inbox_max_messages=1, pow_difficulty=1))
    client, keypair = app.test_client(), generate_keypair()
    token = register(client, keypair)
    url = f"/api/v1/inboxes/{keypair.public_key_text}"

    def solved() -> dict:
        puzzle = client.post(url + "/puzzle").get_json()
        return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], 1)}

    assert post(client, keypair, **solved()).status_code == 201
    kept = solved()
    assert post(client, keypair, **kept).status_code == 409
    [message] = listing(client, keypair, token)["messages"]
    client.delete(f"{url}/messages/{message['id']}", headers=bearer(token))
    assert post(client, keypair, **kept).status_code == 201


def test_another_owners_token_does_not_read_usage(small_app):
    client, keypair, other = small_app.test_client(), generate_keypair(), generate_keypair()
    register(client, keypair)
    register(client, other)
    answer = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        headers=bearer(get_token(client, other)),
    )
    assert answer.status_code == 403
