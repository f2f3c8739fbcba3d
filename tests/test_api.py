"""The JSON API: the happy path, and every class of bad input answered with a 4xx."""

import io
import json
from dataclasses import replace

import pytest
from conftest import bearer, challenge_and_proof, get_token, register

from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope, seal
from secretlink.crypto.envelope import MAX_ENVELOPE, MAX_TEXT_BYTES
from secretlink.store.storage import MessageRow
from secretlink.web.app import MAX_REQUEST_BYTES

LOW_ORDER_KEY = b64encode(bytes(32))
TOP_BIT_KEY = b64encode(bytes(31) + b"\x80")
P_ITSELF_KEY = b64encode(b"\xed" + b"\xff" * 30 + b"\x7f")  # 2^255 - 19, not reduced


def non_canonical_key() -> str:
    """A valid key's text with its last character moved on: unused bits set."""
    text = generate_keypair().public_key_text
    return text[:-1] + chr(ord(text[-1]) + 1)


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


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=51",
        "?limit=-1",
        "?limit=abc",
        "?limit=1.5",
        "?limit=",
        # int() would take each of these as 5 or 10: only ASCII digits are a number here.
        "?limit=%205%20",  # " 5 "
        "?limit=%D9%A5",  # U+0665, ARABIC-INDIC DIGIT FIVE
        "?limit=1_0",
        "?limit=%2B5",  # "+5"
        "?limit=5%0A",  # "5\n"
    ],
)
def test_bad_limit(client, inbox, query):
    keypair, token = inbox
    assert_error(client.get(messages_url(keypair) + query, headers=bearer(token)), 400, "bad_limit")


def test_unknown_cursor(client, inbox):
    keypair, token = inbox
    assert_error(
        client.get(messages_url(keypair) + "?before=nope", headers=bearer(token)), 400, "bad_cursor"
    )
    # An empty cursor means none.
    assert client.get(messages_url(keypair) + "?before=", headers=bearer(token)).status_code == 200


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
    # The token stays valid until it expires; the inbox is gone for every endpoint.
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    assert_error(client.get(url), 404, "unknown_inbox")
    assert_error(client.delete(url, headers=bearer(token)), 404, "unknown_inbox")
    assert_error(client.get(messages_url(keypair), headers=bearer(token)), 404, "unknown_inbox")


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
        (non_canonical_key(), "bad_public_key"),
        (TOP_BIT_KEY, "bad_public_key"),
        (P_ITSELF_KEY, "bad_public_key"),
    ],
    ids=["short", "too long", "low order", "bad alphabet", "non-canonical", "top bit", "p"],
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
        "space": text[:10] + " " + text[11:],
        "non-ASCII letter": text[:10] + "é" + text[11:],
        "impossible length": text[:-1],  # 749 characters: length mod 4 is 1
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "padded base64",
        "standard alphabet",
        "non-canonical last character",
        "not text",
        "space",
        "non-ASCII letter",
        "impossible length",
    ],
)
def test_bad_base64(client, inbox, app, how):
    keypair, _ = inbox
    ciphertext = _mangle(seal("x" * 300, keypair.public_key), how)
    response = client.post(messages_url(keypair), json={"ciphertext": ciphertext})
    assert_error(response, 400, "bad_ciphertext")
    assert count_rows(app) == 0


@pytest.mark.parametrize(
    "key", ["abc", "A" * 44, LOW_ORDER_KEY], ids=["short", "long", "low order"]
)
def test_bad_public_key_in_a_body(client, key):
    response = client.post("/api/v1/auth/challenge", json={"public_key": key})
    assert_error(response, 400, "bad_public_key")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: b"\x02" + e[1:], "unsupported_version"),
        (lambda e: b"\x00" + e[1:], "unsupported_version"),
        (lambda e: e[:-1], "bad_envelope_length"),
        (lambda e: e[:33], "bad_envelope_length"),
        (lambda e: e + b"\x00", "bad_envelope_length"),
        (lambda e: b"", "bad_envelope_length"),
        (lambda e: e[:1] + bytes(32) + e[33:], "bad_envelope"),
        (lambda e: e[:32] + bytes([e[32] | 0x80]) + e[33:], "bad_envelope"),
    ],
    ids=[
        "version 2",
        "version 0",
        "truncated",
        "only version and key",
        "one byte extra",
        "empty",
        "low-order ephemeral key",
        "ephemeral key top bit",
    ],
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


def test_envelope_over_this_servers_limit_is_413(settings, make_app):
    app = make_app(replace(settings, max_envelope_bytes=1074))
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    response = post_envelope(client, keypair, seal("x" * 1100, keypair.public_key))
    assert_error(response, 413, "too_large")
    assert response.get_json()["error"] == "this server accepts envelopes of at most 1074 bytes"
    assert post_envelope(client, keypair, seal("x" * 900, keypair.public_key)).status_code == 201
    assert count_rows(app) == 1


def test_oversized_body_is_refused_by_its_length(client, inbox, app):
    keypair, _ = inbox
    body = b'{"ciphertext": "' + b"A" * 200_000 + b'"}'
    response = client.post(messages_url(keypair), data=body, content_type="application/json")
    assert_error(response, 413, "too_large")
    assert count_rows(app) == 0


def padded_message(keypair, size: int) -> bytes:
    """A valid message as JSON, padded with white space (still valid JSON) to `size` bytes."""
    body = json.dumps({"ciphertext": b64encode(seal("x", keypair.public_key))}).encode()
    return body + b" " * (size - len(body))


def post_chunked(client, keypair, body: bytes):
    """A body without Content-Length, as gunicorn hands over a chunked request: it marks
    the input as terminated by the server, and Werkzeug then limits the stream itself."""
    return client.post(
        messages_url(keypair),
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_oversized_chunked_body_is_413_not_cut_and_stored(client, inbox, app):
    # Werkzeug's limited stream stops at the limit without raising: cut there, this
    # body would still be a complete, valid message.
    keypair, _ = inbox
    response = post_chunked(client, keypair, padded_message(keypair, 200_000))
    assert_error(response, 413, "too_large")
    assert_error(
        post_chunked(client, keypair, padded_message(keypair, MAX_REQUEST_BYTES + 1)),
        413,
        "too_large",
    )
    assert count_rows(app) == 0


def test_chunked_body_up_to_the_limit_is_taken(client, inbox, app):
    keypair, _ = inbox
    assert post_chunked(client, keypair, padded_message(keypair, 1000)).status_code == 201
    exactly = post_chunked(client, keypair, padded_message(keypair, MAX_REQUEST_BYTES))
    assert exactly.status_code == 201, exactly.get_json()
    assert count_rows(app) == 2


def test_body_exactly_at_the_limit_is_taken_with_its_length(client, inbox):
    keypair, _ = inbox
    body = padded_message(keypair, MAX_REQUEST_BYTES)
    response = client.post(messages_url(keypair), data=body, content_type="application/json")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": "ciphertext=AA", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ({"data": "{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": "{}"}, 415, "unsupported_media_type"),
        (
            {"data": "x" * (MAX_REQUEST_BYTES + 1), "content_type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_json"),
        ({"data": b'{"ciphertext": "\xff"}', "content_type": "application/json"}, 400, "bad_json"),
        ({"json": ["a list"]}, 400, "bad_json"),
        ({"data": "null", "content_type": "application/json"}, 400, "bad_json"),
        ({"data": "", "content_type": "application/json"}, 400, "bad_json"),
        ({"json": {}}, 400, "bad_field"),
        ({"json": {"ciphertext": 5}}, 400, "bad_field"),
        ({"json": {"ciphertext": None}}, 400, "bad_field"),
        ({"json": {"ciphertext": ["AA"]}}, 400, "bad_field"),
        ({"data": '{"ciphertext": NaN}', "content_type": "application/json"}, 400, "bad_field"),
    ],
    ids=[
        "form body",
        "text/plain",
        "no content type",
        "too large and not JSON",
        "broken JSON",
        "not UTF-8",
        "JSON list",
        "null",
        "empty body",
        "missing field",
        "number",
        "null member",
        "list member",
        "NaN",
    ],
)
def test_malformed_bodies(client, inbox, app, kwargs, status, code):
    keypair, _ = inbox
    assert_error(client.post(messages_url(keypair), **kwargs), status, code)
    assert count_rows(app) == 0


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/auth/challenge", {"public_key": 5}),
        ("/api/v1/auth/token", {"proof": "AA"}),
        ("/api/v1/auth/token", {"challenge": 5, "proof": "AA"}),
        ("/api/v1/auth/token", {"challenge": "x"}),
        ("/api/v1/auth/token", {"challenge": "x", "proof": 5}),
        ("inbox", {"prompt": 5}),
        ("inbox", {"prompt": ["x"]}),
    ],
    ids=[
        "public_key number",
        "challenge missing",
        "challenge number",
        "proof missing",
        "proof number",
        "prompt number",
        "prompt list",
    ],
)
def test_missing_or_wrong_typed_members(client, inbox, url, body):
    keypair, token = inbox
    if url == "inbox":
        url = f"/api/v1/inboxes/{keypair.public_key_text}"
        response = client.put(url, json=body, headers=bearer(token))
    else:
        response = client.post(url, json=body)
    assert_error(response, 400, "bad_field")


def test_missing_or_null_prompt_means_empty(client, inbox):
    keypair, token = inbox
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    client.put(url, json={"prompt": "first"}, headers=bearer(token))
    for body in ({}, {"prompt": None}):
        assert client.put(url, json=body, headers=bearer(token)).get_json()["prompt"] == ""


def test_unknown_endpoint_and_method_are_json(client, inbox):
    keypair, _ = inbox
    assert_error(client.get("/api/v1/nope"), 404, "not_found")
    assert_error(client.get(messages_url(keypair) + "/"), 404, "not_found")
    assert_error(client.patch(messages_url(keypair)), 405, "method_not_allowed")
    assert_error(
        client.post(f"/api/v1/inboxes/{keypair.public_key_text}", json={}),
        405,
        "method_not_allowed",
    )


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


# A JSON string may hold a lone surrogate ("\ud800"): valid JSON, but not text that can
# be encoded, signed or stored. Every string member is refused with 400, never a 500.
LONE_SURROGATE = ["\ud800", "ok\udfff", "\udc00\ud800"]


def surrogate_requests(keypair, token, text):
    base = f"/api/v1/inboxes/{keypair.public_key_text}"
    return {
        "prompt": ("PUT", base, {"prompt": text}, bearer(token)),
        "challenge": ("POST", "/api/v1/auth/token", {"challenge": text, "proof": "AA"}, {}),
        "proof": ("POST", "/api/v1/auth/token", {"challenge": "x", "proof": text}, {}),
        "public_key": ("POST", "/api/v1/auth/challenge", {"public_key": text}, {}),
        "ciphertext": ("POST", base + "/messages", {"ciphertext": text}, {}),
    }


@pytest.mark.parametrize("text", LONE_SURROGATE, ids=["alone", "after text", "reversed pair"])
@pytest.mark.parametrize("field", ["prompt", "challenge", "proof", "public_key", "ciphertext"])
def test_lone_surrogates_are_a_400_not_a_500(client, inbox, app, field, text):
    keypair, token = inbox
    method, url, body, headers = surrogate_requests(keypair, token, text)[field]
    data = json.dumps(body)  # ensure_ascii: the surrogate travels as a \u escape
    assert "\\u" in data
    response = client.open(
        url, method=method, data=data, content_type="application/json", headers=headers
    )
    assert_error(response, 400, "bad_field")
    assert f"'{field}'" in response.get_json()["error"]
    assert "surrogate" in response.get_json()["error"]
    assert count_rows(app) == 0
    assert client.get(f"/api/v1/inboxes/{keypair.public_key_text}").get_json()["prompt"] == ""


def test_text_beyond_ascii_is_still_taken(client, inbox):
    keypair, token = inbox
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    prompt = "Grüße, 你好 😀"  # a real pair of surrogates in JSON is one character
    response = client.put(
        url,
        data=json.dumps({"prompt": prompt}),
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 200
    assert client.get(url).get_json()["prompt"] == prompt


# ---- proof of possession: cases not in tests/test_auth.py ----


def answer(client, challenge: dict, proof: str):
    return client.post(
        "/api/v1/auth/token", json={"challenge": challenge["challenge"], "proof": proof}
    )


def test_proof_of_the_wrong_length_is_refused(client, keypair):
    challenge, proof = challenge_and_proof(client, keypair)
    assert_error(answer(client, challenge, b64encode(b64decode(proof)[:31])), 401, "bad_proof")


def test_undecodable_proof_leaves_the_challenge_usable(client, keypair):
    challenge, proof = challenge_and_proof(client, keypair)
    assert_error(answer(client, challenge, "not base64!"), 400, "bad_proof")
    assert answer(client, challenge, proof).status_code == 200


def test_a_token_is_not_a_challenge(client, inbox):
    _, token = inbox
    response = client.post("/api/v1/auth/token", json={"challenge": token, "proof": "A" * 43})
    assert_error(response, 401, "bad_challenge")


def test_with_a_base_url_a_relays_host_and_a_proof_for_the_relay_are_refused(
    settings, make_app, keypair
):
    app = make_app(replace(settings, base_url="https://secretlink.example"))
    relayed = app.test_client()  # Host: localhost, as a relay at localhost forwards it
    response = relayed.post("/api/v1/auth/challenge", json={"public_key": keypair.public_key_text})
    assert_error(response, 400, "host_not_allowed")
    assert "SECRETLINK_BASE_URL" in response.get_json()["error"]
    # Sent on with the real Host, a proof made for the relay's origin is refused.
    app.config.update(SERVER_NAME="secretlink.example", PREFERRED_URL_SCHEME="https")
    client = app.test_client()  # now Host: secretlink.example
    challenge, proof = challenge_and_proof(client, keypair, "http://localhost")
    assert_error(answer(client, challenge, proof), 401, "bad_proof")
    get_token(client, keypair, origin="https://secretlink.example")


def test_requests_refused_as_bad_input_count_toward_the_rate_limit(settings, make_app):
    app = make_app(replace(settings, rate_limits_enabled=True, rate_limit_client="2/minute"))
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    for _ in range(2):
        assert_error(post_envelope(client, keypair, b""), 400, "bad_envelope_length")
    assert_error(post_envelope(client, keypair, seal("x", keypair.public_key)), 429, "rate_limited")
    assert count_rows(app) == 0
