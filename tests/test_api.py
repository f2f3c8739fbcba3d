"""The JSON API: the happy path, and every class of bad input answered with a 4xx."""

import pytest
from conftest import bearer

from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope, seal
from secretlink.crypto.envelope import MAX_ENVELOPE, MAX_TEXT_BYTES
from secretlink.storage import MessageRow

LOW_ORDER_KEY = b64encode(bytes(32))


def messages_url(keypair) -> str:
    return f"/api/v1/inboxes/{keypair.public_key_text}/messages"


def post_envelope(client, keypair, envelope: bytes):
    return client.post(messages_url(keypair), json={"ciphertext": b64encode(envelope)})


def count_rows(app) -> int:
    storage = app.extensions["secretlink.storage"]
    with storage._session() as session:
        return session.query(MessageRow).count()


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code
    assert body["error"]


def test_send_then_read_round_trip(client, inbox):
    keypair, token = inbox
    response = post_envelope(client, keypair, seal("hello", keypair.public_key))
    assert response.status_code == 201
    message_id = response.get_json()["id"]
    listed = client.get(messages_url(keypair), headers=bearer(token)).get_json()
    assert [m["id"] for m in listed["messages"]] == [message_id]
    envelope = b64decode(listed["messages"][0]["ciphertext"])
    assert open_envelope(envelope, keypair.secret_key).text == "hello"
    assert listed["next"] is None


def test_message_ids_are_random_not_counters(client, inbox):
    keypair, _ = inbox
    ids = [
        post_envelope(client, keypair, seal(str(i), keypair.public_key)).get_json()["id"]
        for i in range(3)
    ]
    assert len(set(ids)) == 3
    assert all(len(i) >= 22 and not i.isdigit() for i in ids)


def test_arrival_time_is_kept_to_the_minute(client, inbox):
    keypair, token = inbox
    post_envelope(client, keypair, seal("t", keypair.public_key))
    received = client.get(messages_url(keypair), headers=bearer(token)).get_json()
    assert received["messages"][0]["received_at"].endswith("Z")
    assert len(received["messages"][0]["received_at"]) == len("2026-01-01T00:00Z")


def test_list_is_newest_first_and_pages_with_a_cursor(client, inbox):
    keypair, token = inbox
    ids = [
        post_envelope(client, keypair, seal(str(i), keypair.public_key)).get_json()["id"]
        for i in range(5)
    ]
    first = client.get(messages_url(keypair) + "?limit=2", headers=bearer(token)).get_json()
    assert [m["id"] for m in first["messages"]] == ids[::-1][:2]
    second = client.get(
        messages_url(keypair) + f"?limit=2&before={first['next']}", headers=bearer(token)
    ).get_json()
    assert [m["id"] for m in second["messages"]] == ids[::-1][2:4]
    third = client.get(
        messages_url(keypair) + f"?limit=2&before={second['next']}", headers=bearer(token)
    ).get_json()
    assert [m["id"] for m in third["messages"]] == ids[:1]
    assert third["next"] is None


@pytest.mark.parametrize("query", ["?limit=0", "?limit=51", "?limit=abc"])
def test_bad_limit(client, inbox, query):
    keypair, token = inbox
    assert_error(client.get(messages_url(keypair) + query, headers=bearer(token)), 400, "bad_limit")


def test_unknown_cursor(client, inbox):
    keypair, token = inbox
    assert_error(
        client.get(messages_url(keypair) + "?before=nope", headers=bearer(token)), 400, "bad_cursor"
    )


def test_delete_message(client, inbox):
    keypair, token = inbox
    message_id = post_envelope(client, keypair, seal("x", keypair.public_key)).get_json()["id"]
    url = f"{messages_url(keypair)}/{message_id}"
    assert client.delete(url, headers=bearer(token)).status_code == 204
    assert_error(client.delete(url, headers=bearer(token)), 404, "unknown_message")
    assert client.get(messages_url(keypair), headers=bearer(token)).get_json()["messages"] == []


def test_public_inbox_info_and_prompt_update(client, inbox):
    keypair, token = inbox
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    assert client.get(url).get_json()["prompt"] == ""
    response = client.put(url, json={"prompt": "  Tell me  "}, headers=bearer(token))
    assert response.status_code == 200
    info = client.get(url).get_json()
    assert info["prompt"] == "Tell me"
    assert info["link"] == f"http://localhost/to/{keypair.public_key_text}"


def test_prompt_too_long(client, keypair):
    from conftest import get_token

    token = get_token(client, keypair)
    response = client.put(
        f"/api/v1/inboxes/{keypair.public_key_text}",
        json={"prompt": "p" * 501},
        headers=bearer(token),
    )
    assert_error(response, 400, "prompt_too_long")
    assert client.get(f"/api/v1/inboxes/{keypair.public_key_text}").status_code == 404


def test_delete_inbox_removes_its_messages(client, inbox, app):
    keypair, token = inbox
    post_envelope(client, keypair, seal("x", keypair.public_key))
    assert (
        client.delete(
            f"/api/v1/inboxes/{keypair.public_key_text}", headers=bearer(token)
        ).status_code
        == 204
    )
    assert count_rows(app) == 0
    assert_error(
        post_envelope(client, keypair, seal("y", keypair.public_key)), 404, "unknown_inbox"
    )


# ---- bad input on submission: each is a 4xx and nothing is stored ----


def test_unknown_inbox(client, app):
    keypair = generate_keypair()
    assert_error(
        post_envelope(client, keypair, seal("x", keypair.public_key)), 404, "unknown_inbox"
    )
    assert count_rows(app) == 0


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("abc", "bad_public_key"),
        ("A" * 44, "bad_public_key"),
        (LOW_ORDER_KEY, "bad_public_key"),
        ("+" * 43, "bad_public_key"),
    ],
    ids=["short", "too long", "low order", "bad alphabet"],
)
def test_bad_public_key_in_url(client, key, code):
    assert_error(
        client.post(f"/api/v1/inboxes/{key}/messages", json={"ciphertext": "AA"}), 400, code
    )


def _mangle(envelope: bytes, how: str) -> str:
    # A 562-byte envelope (512 bucket) ends in a character with 4 unused bits,
    # always one of A, Q, g, w when canonical; the next character is not.
    assert len(envelope) % 3 == 1
    text = b64encode(envelope)
    return {
        "padded base64": text + "==",
        "standard alphabet": text.replace("-", "+").replace("_", "/") + "+",
        "non-canonical last character": text[:-1] + chr(ord(text[-1]) + 1),
        "not text": text[:10] + "!" + text[11:],
    }[how]


@pytest.mark.parametrize(
    "how", ["padded base64", "standard alphabet", "non-canonical last character", "not text"]
)
def test_bad_base64(client, inbox, app, how):
    keypair, _ = inbox
    ciphertext = _mangle(seal("x" * 300, keypair.public_key), how)
    response = client.post(messages_url(keypair), json={"ciphertext": ciphertext})
    assert response.status_code == 400
    assert response.get_json()["code"] in ("bad_ciphertext", "bad_envelope_length")
    assert count_rows(app) == 0


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: b"\x02" + e[1:], "unsupported_version"),
        (lambda e: e[:-1], "bad_envelope_length"),
        (lambda e: e + b"\x00", "bad_envelope_length"),
        (lambda e: b"", "bad_envelope_length"),
        (lambda e: e[:1] + bytes(32) + e[33:], "bad_envelope"),
    ],
    ids=["version 2", "truncated", "one byte extra", "empty", "low-order ephemeral key"],
)
def test_malformed_envelopes(client, inbox, app, mutate, code):
    keypair, _ = inbox
    response = post_envelope(client, keypair, mutate(seal("x", keypair.public_key)))
    assert_error(response, 400, code)
    assert count_rows(app) == 0


def test_largest_message_is_accepted(client, inbox):
    keypair, _ = inbox
    envelope = seal("m" * MAX_TEXT_BYTES, keypair.public_key)
    assert len(envelope) == MAX_ENVELOPE
    assert post_envelope(client, keypair, envelope).status_code == 201


def test_ciphertext_over_the_largest_envelope_is_413(client, inbox, app):
    keypair, _ = inbox
    too_long = "A" * ((MAX_ENVELOPE * 4 + 2) // 3 + 4)
    assert_error(
        client.post(messages_url(keypair), json={"ciphertext": too_long}), 413, "too_large"
    )
    assert count_rows(app) == 0


def test_oversized_body_is_refused_by_its_length(client, inbox):
    keypair, _ = inbox
    body = b'{"ciphertext": "' + b"A" * 200_000 + b'"}'
    response = client.post(messages_url(keypair), data=body, content_type="application/json")
    assert_error(response, 413, "too_large")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": "ciphertext=AA", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_json"),
        ({"json": ["a list"]}, 400, "bad_json"),
        ({"json": {}}, 400, "bad_field"),
        ({"json": {"ciphertext": 5}}, 400, "bad_field"),
    ],
    ids=["form body", "broken JSON", "JSON list", "missing field", "number"],
)
def test_malformed_bodies(client, inbox, kwargs, status, code):
    keypair, _ = inbox
    assert_error(client.post(messages_url(keypair), **kwargs), status, code)


def test_unknown_endpoint_and_method_are_json(client, inbox):
    keypair, _ = inbox
    assert_error(client.get("/api/v1/nope"), 404, "not_found")
    assert_error(client.patch(messages_url(keypair)), 405, "method_not_allowed")


def test_sending_needs_no_cookie_and_sets_none(client, inbox):
    keypair, _ = inbox
    response = post_envelope(client, keypair, seal("x", keypair.public_key))
    assert response.status_code == 201
    assert "Set-Cookie" not in response.headers


def test_nul_characters_are_refused_not_a_server_error(client, inbox):
    keypair, token = inbox
    base = f"/api/v1/inboxes/{keypair.public_key_text}"
    assert_error(
        client.put(base, json={"prompt": "a\x00b"}, headers=bearer(token)), 400, "bad_field"
    )
    assert_error(
        client.get(base + "/messages?before=%00", headers=bearer(token)), 400, "bad_cursor"
    )
    assert_error(
        client.delete(base + "/messages/%00", headers=bearer(token)), 404, "unknown_message"
    )
