"""Proof of possession and access tokens: only the key holder gets in, once per challenge."""

import time
from dataclasses import replace

import pytest
from conftest import bearer, get_token, register
from itsdangerous import URLSafeTimedSerializer

from secretlink import create_app
from secretlink.crypto import b64decode, b64encode, generate_keypair, seal
from secretlink.crypto.proof import prove
from secretlink.settings import Settings
from secretlink.web.auth import CHALLENGE_SALT


def challenge_for(client, keypair) -> dict:
    response = client.post("/api/v1/auth/challenge", json={"public_key": keypair.public_key_text})
    assert response.status_code == 200
    return response.get_json()


def answer(client, challenge: dict, secret_key: bytes, origin: str = "http://localhost"):
    mac = prove(
        secret_key,
        b64decode(challenge["server_key"]),
        b64decode(challenge["nonce"]),
        challenge["expires_at"],
        origin,
    )
    return client.post(
        "/api/v1/auth/token", json={"challenge": challenge["challenge"], "proof": b64encode(mac)}
    )


def assert_refused(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["code"] == code


@pytest.fixture
def later(monkeypatch):
    """Move the clock forward for itsdangerous and the challenge expiry check."""

    def advance(seconds: int):
        now = time.time() + seconds
        monkeypatch.setattr(time, "time", lambda: now)

    return advance


def test_challenge_has_the_fields_a_client_needs(client, keypair):
    challenge = challenge_for(client, keypair)
    assert len(b64decode(challenge["nonce"])) == 32
    assert len(b64decode(challenge["server_key"])) == 32
    assert 0 < challenge["expires_at"] - time.time() <= 60


def test_each_challenge_has_its_own_nonce_and_server_key(client, keypair):
    first, second = challenge_for(client, keypair), challenge_for(client, keypair)
    assert first["nonce"] != second["nonce"]
    assert first["server_key"] != second["server_key"]


def test_right_key_gets_a_token(client, keypair):
    response = answer(client, challenge_for(client, keypair), keypair.secret_key)
    assert response.status_code == 200
    assert response.get_json()["public_key"] == keypair.public_key_text


def test_wrong_key_is_refused(client, keypair):
    response = answer(client, challenge_for(client, keypair), generate_keypair().secret_key)
    assert_refused(response, 401, "bad_proof")


def test_answer_bound_to_another_origin_is_refused(client, keypair):
    response = answer(
        client, challenge_for(client, keypair), keypair.secret_key, origin="https://relay.example"
    )
    assert_refused(response, 401, "bad_proof")


def test_replayed_answer_is_refused(client, keypair):
    challenge = challenge_for(client, keypair)
    assert answer(client, challenge, keypair.secret_key).status_code == 200
    assert_refused(answer(client, challenge, keypair.secret_key), 401, "challenge_used")


def test_replay_fails_on_another_worker_sharing_the_database(settings, make_app, keypair):
    shared = replace(settings, secret_key="s" * 40)
    first, second = make_app(shared).test_client(), make_app(shared).test_client()
    challenge = challenge_for(first, keypair)
    assert answer(first, challenge, keypair.secret_key).status_code == 200
    assert_refused(answer(second, challenge, keypair.secret_key), 401, "challenge_used")


def test_a_wrong_answer_spends_the_challenge(client, keypair):
    challenge = challenge_for(client, keypair)
    assert_refused(answer(client, challenge, generate_keypair().secret_key), 401, "bad_proof")
    assert_refused(answer(client, challenge, keypair.secret_key), 401, "challenge_used")


def test_expired_challenge_is_refused(client, keypair, later):
    challenge = challenge_for(client, keypair)
    later(61)
    assert_refused(answer(client, challenge, keypair.secret_key), 401, "challenge_expired")


def test_forged_challenge_is_refused(client, keypair):
    challenge = challenge_for(client, keypair)
    forged = URLSafeTimedSerializer("another server's key" * 2, salt=CHALLENGE_SALT).dumps(
        {"pk": keypair.public_key_text, "n": challenge["nonce"], "exp": challenge["expires_at"]}
    )
    assert_refused(
        answer(client, challenge | {"challenge": forged}, keypair.secret_key), 401, "bad_challenge"
    )


def test_malformed_proof_is_400(client, keypair):
    challenge = challenge_for(client, keypair)
    response = client.post(
        "/api/v1/auth/token", json={"challenge": challenge["challenge"], "proof": "not base64!"}
    )
    assert_refused(response, 400, "bad_proof")


def test_challenge_for_a_low_order_key_is_refused(client):
    response = client.post("/api/v1/auth/challenge", json={"public_key": b64encode(bytes(32))})
    assert_refused(response, 400, "bad_public_key")


# ---- tokens ----


def protected_requests(keypair):
    base = f"/api/v1/inboxes/{keypair.public_key_text}"
    return [
        ("put", base, {"prompt": "taken over"}),
        ("delete", base, None),
        ("get", f"{base}/messages", None),
        ("delete", f"{base}/messages/some-id", None),
        ("get", f"{base}/settings", None),
        ("patch", f"{base}/settings", {"paused": True}),
        ("delete", f"{base}/messages", None),
        ("post", f"{base}/rotate", {"new_public_key": base[-43:], "new_token": "x"}),
    ]


def test_every_protected_endpoint_needs_a_token(client, inbox):
    keypair, _ = inbox
    for method, url, body in protected_requests(keypair):
        assert_refused(getattr(client, method)(url, json=body), 401, "token_required")
        response = getattr(client, method)(url, json=body, headers={"Authorization": "Basic x"})
        assert_refused(response, 401, "token_required")


def test_another_inboxs_token_is_refused_everywhere(client, inbox):
    keypair, _ = inbox
    other = generate_keypair()
    other_token = register(client, other)
    for method, url, body in protected_requests(keypair):
        response = getattr(client, method)(url, json=body, headers=bearer(other_token))
        assert_refused(response, 403, "wrong_inbox")


def test_another_inboxs_token_cannot_delete_its_messages(client, inbox):
    keypair, token = inbox
    message_id = client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal("x", keypair.public_key))},
    ).get_json()["id"]
    other_token = register(client, generate_keypair())
    url = f"/api/v1/inboxes/{keypair.public_key_text}/messages/{message_id}"
    assert_refused(client.delete(url, headers=bearer(other_token)), 403, "wrong_inbox")
    listed = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    ).get_json()
    assert [m["id"] for m in listed["messages"]] == [message_id]


def test_expired_token_is_refused(client, inbox, later):
    keypair, token = inbox
    later(601)
    response = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    )
    assert_refused(response, 401, "token_expired")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_tampered_token_is_refused(client, inbox):
    keypair, token = inbox
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(tampered)
    )
    assert_refused(response, 401, "bad_token")


def test_token_signed_for_another_purpose_is_refused(client, app, inbox):
    """A challenge is signed by the same server key, but with its own salt."""
    keypair, _ = inbox
    wrong_purpose = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=CHALLENGE_SALT).dumps(
        {"pk": keypair.public_key_text}
    )
    response = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(wrong_purpose)
    )
    assert_refused(response, 401, "bad_token")


def test_token_from_another_server_is_refused(tmp_path, keypair):
    one = create_app(Settings(data_dir=tmp_path / "one", base_url="http://localhost")).test_client()
    two = create_app(Settings(data_dir=tmp_path / "two", base_url="http://localhost")).test_client()
    register(two, keypair)
    token_from_one = get_token(one, keypair)
    response = two.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token_from_one)
    )
    assert_refused(response, 401, "bad_token")
