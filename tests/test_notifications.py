"""Notifications that carry nothing (secretlink/notify): delivered to a local RFC 8030
push endpoint and a local webhook receiver that the tests run, late, batched, once,
to checked addresses only, and kept sealed."""

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from conftest import bearer, register, serve_in_thread
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import text

from secretlink.client.cli import main
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.attachments import new_attachment
from secretlink.notify import worker
from secretlink.notify.addresses import AddressRefused, is_global, pinned_session
from secretlink.notify.queue import DueQueue
from secretlink.notify.service import Notifications
from secretlink.store.storage import coarse, utcnow

# ---- what the tests run: a push endpoint and a webhook receiver on 127.0.0.1 ----


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Receiver:
    """An HTTP server that records every request and answers from a script of
    (status, extra headers, seconds to wait first); then 201."""

    url: str
    port: int
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict, float]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self._record()

        def do_GET(self):
            self._record()

        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            me = state[0]
            headers = {name.lower(): value for name, value in self.headers.items()}
            me.requests.append(Received(self.command, self.path, headers, body))
            status, headers, wait = me.answers.pop(0) if me.answers else (201, {}, 0)
            time.sleep(wait)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (a timeout test)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    state.append(Receiver(f"http://127.0.0.1:{port}", port))
    serve_in_thread(server)
    yield state[0]
    server.shutdown()
    server.server_close()


# ---- the device: keys the test makes, and RFC 8291 decryption done here ----


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text_: str) -> bytes:
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


@dataclass
class Device:
    private: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> "Device":
        return cls(ec.generate_private_key(ec.SECP256R1()), bytes(range(16)))

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def subscription(self, endpoint: str) -> dict:
        return {
            "endpoint": endpoint,
            "keys": {"p256dh": b64url(self.public), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 section 3.4 and RFC 8188 section 2: one record, aes128gcm."""
        salt, record_size, id_length = body[:16], body[16:20], body[20]
        sender_public = body[21 : 21 + id_length]
        ciphertext = body[21 + id_length :]
        assert id_length == 65 and int.from_bytes(record_size, "big") >= len(ciphertext)
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        shared = self.private.exchange(ec.ECDH(), sender)
        key_info = b"WebPush: info\x00" + self.public + sender_public
        ikm = hkdf(self.auth, shared, key_info, 32)
        cek = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        content = padded.rstrip(b"\x00")
        assert content.endswith(b"\x02"), "the last record ends with the delimiter 2"
        return content[:-1]


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def test_the_tests_own_decryption_opens_the_example_of_rfc_8291():
    """RFC 8291 appendix A, so that the delivery tests check the RFC's format, not
    merely what pywebpush happens to write."""
    private = int.from_bytes(unb64url("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"), "big")
    device = Device(
        ec.derive_private_key(private, ec.SECP256R1()), unb64url("BTBZMqHH6r4Tts7J_aSIgg")
    )
    assert b64url(device.public) == (
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    )
    body = unb64url(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocIn"
        "mYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNW"
        "QexSgSxsj_Qulcy4a-fN"
    )
    assert device.decrypt(body) == b"When I grow up, I want to be a watermelon"


def vapid_claims(authorization: str, public_key: str) -> dict:
    """Check an RFC 8292 `vapid t=JWT,k=KEY` header's signature; return its claims."""
    scheme, _, rest = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(part.split("=", 1) for part in rest.split(","))
    assert parts["k"] == public_key
    header, claims, signature = parts["t"].split(".")
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
    key.verify(  # raises InvalidSignature
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        f"{header}.{claims}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    return json.loads(unb64url(claims))


# ---- the app under test ----


@pytest.fixture
def settings(settings):
    """Local targets allowed (the receivers are on 127.0.0.1), quick retries."""
    return replace(
        settings,
        notify_allow_local_targets=True,
        notify_backoff=0,
        notify_timeout=2,
        notify_attempts=3,
        push_contact="mailto:operator@secretlink.example",
    )


def service(app) -> Notifications:
    return app.extensions["secretlink.notify"]


def notifications_url(keypair) -> str:
    return f"/api/v1/inboxes/{keypair.public_key_text}/notifications"


def configure(client, keypair, token, **body):
    response = client.put(notifications_url(keypair), json=body, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def send_message(client, keypair, words: str = "the secret words") -> str:
    response = client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal(words, keypair.public_key))},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def later(minutes: int):
    return utcnow() + timedelta(minutes=minutes)


# ---- delivery ----


def test_push_carries_exactly_the_neutral_text_signed_with_vapid(client, app, inbox, receiver):
    keypair, token = inbox
    device = Device.new()
    endpoint = f"{receiver.url}/push/device-1"
    configure(
        client,
        keypair,
        token,
        push=device.subscription(endpoint),
        max_delay_minutes=0,
        text="Something arrived",
    )
    send_message(client, keypair)
    done = worker.run_once(service(app))
    assert (done.claimed, done.delivered, done.failed) == (1, 1, 0)
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/push/device-1"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert int(request.headers["ttl"]) > 0
    assert device.decrypt(request.body) == b"Something arrived"
    claims = vapid_claims(request.headers["authorization"], service(app).vapid_public_key)
    assert claims["aud"] == receiver.url
    assert claims["sub"] == "mailto:operator@secretlink.example"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert service(app).queue.pending() == {}  # delivered rows are deleted


def test_webhook_gets_the_text_as_a_plain_post(client, app, inbox, receiver):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/topic", max_delay_minutes=0)
    send_message(client, keypair)
    assert worker.run_once(service(app)).delivered == 1
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/topic", b"New message")
    assert request.headers["content-type"] == "text/plain; charset=utf-8"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_nothing_of_the_message_inbox_or_sender_is_in_what_is_sent(client, app, inbox, receiver):
    keypair, token = inbox
    device = Device.new()
    configure(
        client,
        keypair,
        token,
        push=device.subscription(f"{receiver.url}/push"),
        webhook=f"{receiver.url}/hook",
        max_delay_minutes=0,
    )
    message_id = send_message(client, keypair, "meet me at the old mill")
    envelope_start = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    ).get_json()["messages"][0]["ciphertext"][:40]
    worker.run_once(service(app))
    assert len(receiver.requests) == 2
    hook, push = sorted(receiver.requests, key=lambda r: r.path)
    assert hook.body == b"New message" and device.decrypt(push.body) == b"New message"
    for request in receiver.requests:
        seen = request.path + json.dumps(request.headers) + request.body.decode("latin-1")
        for secret in (keypair.public_key_text, message_id, envelope_start, "old mill"):
            assert secret not in seen


def test_a_due_time_is_a_random_minute_within_the_delay_and_messages_share_it(
    client, app, inbox, receiver
):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/hook", max_delay_minutes=15)
    before = coarse(utcnow())
    for words in ("one", "two", "three"):
        send_message(client, keypair, words)
    pending = service(app).queue.pending()
    assert list(pending) == [keypair.public_key_text]  # one row for three messages
    due = pending[keypair.public_key_text]
    assert due == coarse(due) and before <= due <= before + timedelta(minutes=15)
    # Not yet due a minute before; due after: then one notification for all three.
    assert worker.run_once(service(app), now=due - timedelta(minutes=1)).claimed == 0
    assert receiver.requests == []
    assert worker.run_once(service(app), now=due + timedelta(seconds=1)).delivered == 1
    assert len(receiver.requests) == 1
    send_message(client, keypair, "four")  # a new message after it: a new notification
    assert len(service(app).queue.pending()) == 1


def test_a_message_with_files_marks_its_inbox_due_in_its_transaction(client, app, inbox, receiver):
    """The other way a message is stored (with its blobs linked, secretlink.store.blobs)
    marks its inbox due too, in the same transaction."""
    from test_attachments_api import accept_attachments, upload
    from test_attachments_api import send as send_with_files

    keypair, token = inbox
    accept_attachments(client, keypair, token)
    configure(client, keypair, token, webhook=f"{receiver.url}/hook")
    data = b"a file's bytes" * 100
    entry = new_attachment("notes.txt", "text/plain", len(data))
    blob_id = upload(client, keypair, entry, data)
    answer = send_with_files(client, keypair, "with a file", (entry,), [blob_id])
    assert answer.status_code == 201, answer.get_json()
    assert list(service(app).queue.pending()) == [keypair.public_key_text]


def test_a_push_target_with_a_delay_is_pushed_once_after_the_delay_not_before(
    client, app, inbox, receiver
):
    keypair, token = inbox
    device = Device.new()
    configure(
        client,
        keypair,
        token,
        push=device.subscription(f"{receiver.url}/push/device-1"),
        max_delay_minutes=30,
        text="Post for you",
    )
    before = coarse(utcnow())
    send_message(client, keypair, "one")
    send_message(client, keypair, "two")
    due = service(app).queue.pending()[keypair.public_key_text]
    assert before <= due <= before + timedelta(minutes=30)
    # The worker's clock is injected: a round just before the due minute pushes nothing.
    # (`before` is the due minute itself when the random delay ended in this minute.)
    for early in (before, due - timedelta(minutes=1), due - timedelta(seconds=1)):
        if early < due:
            assert worker.run_once(service(app), now=early).claimed == 0
    assert receiver.requests == []
    done = worker.run_once(service(app), now=due)
    assert (done.claimed, done.delivered, done.failed) == (1, 1, 0)
    [request] = receiver.requests  # one push for both messages
    assert request.path == "/push/device-1"
    assert device.decrypt(request.body) == b"Post for you"
    # Once: later rounds find nothing more to send.
    assert worker.run_once(service(app), now=due + timedelta(hours=2)).claimed == 0
    assert len(receiver.requests) == 1
    assert service(app).queue.pending() == {}


def test_the_due_minutes_spread_over_the_delay(app):
    from secretlink.notify.queue import due_minute

    now = utcnow()
    minutes = {due_minute(now, 15) - coarse(now) for _ in range(300)}
    assert len(minutes) > 8  # not one fixed delay
    assert all(timedelta(0) <= m <= timedelta(minutes=15) for m in minutes)


def test_a_message_arriving_while_its_inbox_is_claimed_is_notified_later(
    client, app, inbox, receiver
):
    """claim, a message, done: the row the claim held must not take the new message's
    notification with it (issue 12). Interleaved by hand, so it is deterministic."""
    keypair, token = inbox
    key = keypair.public_key_text
    configure(client, keypair, token, webhook=f"{receiver.url}/hook", max_delay_minutes=5)
    queue = service(app).queue
    send_message(client, keypair, "first")
    first_due = queue.pending()[key]
    [(claimed, lease)] = queue.claim(lease_minutes=30, now=first_due)
    assert claimed == key
    send_message(client, keypair, "second")  # while the worker delivers the first
    queue.done(key, lease)
    # Still waiting, due within the delay of the second message, not at the lease's end.
    again = queue.pending()[key]
    assert again <= coarse(utcnow()) + timedelta(minutes=5) < lease
    assert worker.run_once(service(app), now=again).delivered == 1
    assert receiver.paths() == ["/hook"]
    assert queue.pending() == {}


def test_a_claim_whose_lease_ran_out_is_not_cleared_by_its_first_worker(client, app, inbox):
    """The re-armed row may be claimed by another worker; the first one's `done` after
    that leaves the second one's claim alone, and the second one's `done` clears it."""
    keypair, token = inbox
    key = keypair.public_key_text
    configure(client, keypair, token, webhook="https://ntfy.example/t", max_delay_minutes=0)
    queue = service(app).queue
    send_message(client, keypair)
    [(_, first_lease)] = queue.claim(lease_minutes=2, now=utcnow())
    [(_, second_lease)] = queue.claim(lease_minutes=5, now=first_lease)
    queue.done(key, first_lease)
    assert queue.pending() == {key: second_lease}
    queue.done(key, second_lease)
    assert queue.pending() == {}


def test_two_workers_racing_deliver_each_inbox_once(client, app, receiver):
    keys = []
    for number in range(6):
        keypair = generate_keypair()
        token = register(client, keypair)
        configure(client, keypair, token, webhook=f"{receiver.url}/{number}", max_delay_minutes=0)
        send_message(client, keypair)
        keys.append(keypair)
    # Two senders as two processes would be: each with its own engine.
    senders = [worker.open_notifications(app.config["SECRETLINK"]) for _ in range(2)]
    start = threading.Barrier(2)
    rounds = []

    def run(notifications):
        start.wait()
        rounds.append(worker.run_once(notifications))

    threads = [threading.Thread(target=run, args=(n,)) for n, _ in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for _, engine in senders:
        engine.dispose()
    assert sorted(receiver.paths()) == [f"/{n}" for n in range(6)]
    assert sum(r.claimed for r in rounds) == 6
    assert service(app).queue.pending() == {}


def test_a_failing_target_is_tried_again_then_delivered(client, app, inbox, receiver):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/hook", max_delay_minutes=0)
    receiver.answers = [(503, {}, 0), (429, {}, 0)]
    send_message(client, keypair)
    assert worker.run_once(service(app)).delivered == 1
    assert receiver.paths() == ["/hook"] * 3


def test_attempts_are_bounded_and_then_the_notification_is_dropped(client, app, inbox, receiver):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/hook", max_delay_minutes=0)
    receiver.answers = [(500, {}, 0)] * 5
    send_message(client, keypair)
    done = worker.run_once(service(app))
    assert (done.delivered, done.failed) == (0, 1)
    assert len(receiver.requests) == 3  # notify_attempts
    assert service(app).queue.pending() == {}


def test_a_refusal_is_not_tried_again(client, app, inbox, receiver):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/hook", max_delay_minutes=0)
    receiver.answers = [(403, {}, 0)]
    send_message(client, keypair)
    assert worker.run_once(service(app)).failed == 1
    assert len(receiver.requests) == 1


def test_a_target_that_does_not_answer_in_time_is_given_up(client, make_app, settings, receiver):
    app = make_app(replace(settings, notify_timeout=1, notify_attempts=2))
    client = app.test_client()
    keypair = generate_keypair()
    token = register(client, keypair)
    configure(client, keypair, token, webhook=f"{receiver.url}/slow", max_delay_minutes=0)
    receiver.answers = [(200, {}, 3), (200, {}, 3)]
    send_message(client, keypair)
    done = worker.run_once(service(app))
    assert (done.delivered, done.failed) == (0, 1)
    assert len(receiver.requests) == 2


def test_a_push_subscription_the_service_forgot_is_removed(client, app, inbox, receiver):
    keypair, token = inbox
    device = Device.new()
    configure(
        client,
        keypair,
        token,
        push=device.subscription(f"{receiver.url}/push"),
        webhook=f"{receiver.url}/hook",
        max_delay_minutes=0,
    )
    receiver.answers = [(410, {}, 0)]  # the push request comes first
    send_message(client, keypair)
    worker.run_once(service(app))
    shown = client.get(notifications_url(keypair), headers=bearer(token)).get_json()
    assert shown["push"] is None and shown["webhook"] == f"{receiver.url}/hook"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(client, app, inbox, receiver, status):
    keypair, token = inbox
    device = Device.new()
    configure(
        client,
        keypair,
        token,
        push=device.subscription(f"{receiver.url}/push"),
        webhook=f"{receiver.url}/hook",
        max_delay_minutes=0,
    )
    elsewhere = {"Location": f"{receiver.url}/elsewhere"}
    receiver.answers = [(status, elsewhere, 0), (status, elsewhere, 0)]
    send_message(client, keypair)
    assert worker.run_once(service(app)).failed == 1
    assert sorted(receiver.paths()) == ["/hook", "/push"]


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .test resolve to what the test says; lookups are counted."""
    names: dict[str, str] = {}
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            lookups.append(host)
            if host not in names:
                raise socket.gaierror(socket.EAI_NONAME, "unknown name")
            return real(names[host], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names, lookups


def test_a_name_is_looked_up_once_and_the_checked_address_is_used(
    client, app, inbox, receiver, fake_dns
):
    names, lookups = fake_dns
    names["hook.test"] = "127.0.0.1"
    keypair, token = inbox
    configure(
        client, keypair, token, webhook=f"http://hook.test:{receiver.port}/h", max_delay_minutes=0
    )
    send_message(client, keypair)
    assert worker.run_once(service(app)).delivered == 1
    assert lookups == ["hook.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hook.test:{receiver.port}"


# ---- only globally routable addresses, unless the operator allows local ones ----


@pytest.fixture
def strict_app(make_app, settings):
    return make_app(replace(settings, notify_allow_local_targets=False))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10:8443/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hook",
        "https://100.64.0.1/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "http://ntfy.example/topic",  # plain http is for local targets only
    ],
)
def test_local_targets_are_refused_at_registration(strict_app, url):
    client = strict_app.test_client()
    keypair = generate_keypair()
    token = register(client, keypair)
    response = client.put(notifications_url(keypair), json={"webhook": url}, headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["code"] == "bad_url"
    device = Device.new()
    response = client.put(
        notifications_url(keypair), json={"push": device.subscription(url)}, headers=bearer(token)
    )
    assert response.status_code == 400 and response.get_json()["code"] == "bad_url"


@pytest.mark.parametrize("address", ["10.0.0.7", "127.0.0.1", "::1", "fe80::1", "192.168.1.1"])
def test_a_name_resolving_to_a_local_address_is_not_connected_to(
    strict_app, receiver, fake_dns, address
):
    names, lookups = fake_dns
    names["inside.test"] = address
    client = strict_app.test_client()
    keypair = generate_keypair()
    token = register(client, keypair)
    configure(client, keypair, token, webhook="https://inside.test/hook", max_delay_minutes=0)
    send_message(client, keypair)
    done = worker.run_once(service(strict_app))
    assert (done.delivered, done.failed) == (0, 1)
    assert lookups == ["inside.test"]  # refused once resolved: no retry of a refusal
    with pytest.raises(AddressRefused, match="not a globally routable"):
        pinned_session("https://inside.test/hook", allow_local=False)


def test_global_addresses_are_told_from_the_rest():
    assert is_global("93.184.216.34") and is_global("2606:2800:220:1::1")
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
    ):
        assert not is_global(address), address


# ---- the owner's API ----


def test_settings_start_empty_and_show_the_instance_key(client, app, inbox):
    keypair, token = inbox
    shown = client.get(notifications_url(keypair), headers=bearer(token)).get_json()
    assert shown["enabled"] is False and shown["push"] is None and shown["webhook"] is None
    assert shown["text"] == "New message" and shown["max_delay_minutes"] == 10
    assert len(unb64url(shown["vapid_public_key"])) == 65
    assert shown["vapid_public_key"] == service(app).vapid_public_key


def test_only_the_owner_sees_or_changes_the_settings(client, inbox):
    keypair, _token = inbox
    url = notifications_url(keypair)
    assert client.get(url).status_code == 401
    assert client.put(url, json={"webhook": "https://ntfy.example/t"}).status_code == 401
    assert client.delete(url).status_code == 401
    stranger = generate_keypair()
    other = register(client, stranger)
    assert client.get(url, headers=bearer(other)).status_code == 403


def test_partial_updates_keep_the_rest_and_delete_turns_off(client, app, inbox, receiver):
    keypair, token = inbox
    hook = f"{receiver.url}/hook"
    configure(client, keypair, token, webhook=hook, text="  Ping   from  afar ")
    shown = configure(client, keypair, token, max_delay_minutes=3)
    assert (shown["enabled"], shown["webhook"], shown["text"]) == (True, hook, "Ping from afar")
    response = client.put(notifications_url(keypair), json={"webhook": None}, headers=bearer(token))
    assert response.status_code == 400 and response.get_json()["code"] == "no_target"
    assert client.delete(notifications_url(keypair), headers=bearer(token)).status_code == 204
    assert (
        client.get(notifications_url(keypair), headers=bearer(token)).get_json()["enabled"] is False
    )
    send_message(client, keypair)
    assert service(app).queue.pending() == {}  # no targets: nothing marked due


P256DH = b64url(Device.new().public)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"webhook": "https://h.example/", "text": ""}, "bad_text"),
        ({"webhook": "https://h.example/", "text": "x" * 101}, "text_too_long"),
        ({"webhook": "https://h.example/", "text": "new\u202emessage"}, "bad_text"),
        ({"webhook": "https://h.example/", "text": 5}, "bad_field"),
        ({"webhook": "https://h.example/", "max_delay_minutes": -1}, "bad_delay"),
        ({"webhook": "https://h.example/", "max_delay_minutes": 61}, "bad_delay"),
        ({"webhook": "https://h.example/", "max_delay_minutes": True}, "bad_field"),
        ({"webhook": "https://h.example/", "max_delay_minutes": "5"}, "bad_field"),
        ({"webhook": "https://h.example/", "colour": "red"}, "bad_field"),
        ({"webhook": "ftp://h.example/"}, "bad_url"),
        ({"webhook": "https://user:pw@h.example/"}, "bad_url"),
        ({"webhook": "https://h.example/" + "a" * 2048}, "bad_url"),
        ({"webhook": "https://h.example:99999/"}, "bad_url"),
        ({"webhook": "https://bücher.example/"}, "bad_url"),
        ({"webhook": 7}, "bad_field"),
        ({}, "no_target"),
        ({"push": "https://push.example/x"}, "bad_field"),
        ({"push": {"endpoint": "https://p.example/1", "keys": {"p256dh": P256DH}}}, "bad_field"),
        (
            {
                "push": {
                    "endpoint": "https://p.example/1",
                    "keys": {"p256dh": P256DH, "auth": "AAAA"},
                }
            },
            "bad_key",
        ),
        (
            {
                "push": {
                    "endpoint": "https://p.example/1",
                    "keys": {"p256dh": P256DH, "auth": "AAAAAAAAAAAAAAAAAAAAAA=="},
                }
            },
            "bad_key",
        ),
        (
            {
                "push": {
                    "endpoint": "https://p.example/1",
                    "keys": {"p256dh": P256DH[:-2], "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
                }
            },
            "bad_key",
        ),
        (
            {
                "push": {
                    "endpoint": "https://p.example/1",
                    "keys": {"p256dh": "BA" + "A" * 85, "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
                }
            },
            "bad_key",
        ),
    ],
)
def test_bad_settings_are_refused_clearly_and_nothing_is_kept(client, app, inbox, body, code):
    keypair, token = inbox
    response = client.put(notifications_url(keypair), json=body, headers=bearer(token))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == code
    assert service(app).targets.get(keypair.public_key_text) is None


def test_a_server_without_notifications_says_so(client, make_app, settings, inbox):
    keypair, token = inbox
    off = make_app(replace(settings, notifications_enabled=False)).test_client()
    response = off.get(notifications_url(keypair), headers=bearer(token))
    assert response.status_code == 404 and response.get_json()["code"] == "notifications_off"


def test_a_notification_problem_never_fails_a_submission(client, app, inbox, monkeypatch):
    """Marking fails after it wrote its row: the message is stored all the same (201),
    and the half-done mark is undone with it (the savepoint), not committed."""
    keypair, token = inbox
    configure(client, keypair, token, webhook="https://ntfy.example/t")
    mark = DueQueue.mark_due_in

    def broken(self, cursor, inbox_key, due_at):
        mark(self, cursor, inbox_key, due_at)
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(DueQueue, "mark_due_in", broken)
    message_id = send_message(client, keypair)  # still 201
    assert service(app).queue.pending() == {}
    with service(app).engine.connect() as connection:
        stored = connection.execute(text("SELECT id FROM messages")).scalars().all()
    assert stored == [message_id]


def test_a_message_after_the_instance_key_changed_drops_targets_it_cannot_open(
    client, inbox, settings, make_app
):
    """The writer finds targets sealed under another instance key: of no use, they are
    deleted in the message's transaction, and the message is stored."""
    keypair, token = inbox
    configure(client, keypair, token, webhook="https://ntfy.example/t")
    other = make_app(replace(settings, secret_key="another-secret-key-of-enough-length-123"))
    send_message(other.test_client(), keypair)
    assert service(other).queue.pending() == {}
    with service(other).engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM notify_targets")).scalar() == 0


# ---- at rest ----


def test_targets_are_sealed_in_the_database(client, app, inbox, make_app, settings):
    keypair, token = inbox
    device = Device.new()
    configure(
        client,
        keypair,
        token,
        webhook="https://ntfy.example/secret-topic",
        push=device.subscription("https://push.example/endpoint-123"),
        text="Tea is ready",
    )
    with service(app).engine.connect() as connection:
        [row] = connection.execute(text("SELECT inbox_key, sealed FROM notify_targets")).all()
    assert row[0] == keypair.public_key_text
    raw = bytes(row[1])
    for clear in (
        b"secret-topic",
        b"ntfy.example",
        b"endpoint-123",
        b"Tea is ready",
        device.subscription("x")["keys"]["p256dh"].encode(),
    ):
        assert clear not in raw
    # Another instance key cannot open it; the row is then of no use and goes.
    other = make_app(replace(settings, secret_key="another-secret-key-of-enough-length-123"))
    assert service(other).targets.get(keypair.public_key_text) is None
    assert service(app).targets.get(keypair.public_key_text) is None


def test_targets_and_queue_go_with_the_inbox(client, app, inbox):
    keypair, token = inbox
    configure(client, keypair, token, webhook="https://ntfy.example/t", max_delay_minutes=15)
    send_message(client, keypair)
    assert service(app).queue.pending()
    response = client.delete(f"/api/v1/inboxes/{keypair.public_key_text}", headers=bearer(token))
    assert response.status_code == 204
    with service(app).engine.connect() as connection:
        for table in ("notify_targets", "notify_due"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_the_vapid_key_is_made_once_and_kept_private(app, settings, make_app):
    path = settings.data_dir / "vapid_private_key"
    assert path.stat().st_mode & 0o077 == 0
    again = make_app(settings)
    assert service(again).vapid_public_key == service(app).vapid_public_key


# ---- the command ----


def test_notify_once_sends_what_is_due(client, app, inbox, receiver, settings, monkeypatch):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/cron", max_delay_minutes=0)
    send_message(client, keypair)
    for name, value in {
        "SECRETLINK_DATA_DIR": str(settings.data_dir),
        "SECRETLINK_DATABASE_URL": settings.database_url,
        "SECRETLINK_NOTIFY_ALLOW_LOCAL_TARGETS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["notify", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 notifications sent" in result.output
    assert receiver.paths() == ["/cron"]


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_certificate(
    client, app, inbox, fake_dns, tmp_path, monkeypatch
):
    """TLS to the pinned address: the server name and the certificate check use the
    URL's name, not the address connected to."""
    import ssl

    from secretlink.notify import addresses
    from secretlink.ops.tls import self_signed

    cert, key = self_signed(tmp_path, ("hook.test",))
    names, lookups = fake_dns
    names["hook.test"] = "127.0.0.1"
    seen: dict[str, object] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["host"] = self.headers["Host"]
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def note_server_name(_socket, name, _context) -> None:
        seen.setdefault("sni", name)

    context.sni_callback = note_server_name
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve_in_thread(server)
    port = server.server_address[1]
    # The test's certificate is the one trusted (instead of the public CAs).
    original = addresses.PinnedSession.__init__

    def trusting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.verify = str(cert)

    monkeypatch.setattr(addresses.PinnedSession, "__init__", trusting)
    try:
        keypair, token = inbox
        configure(
            client, keypair, token, webhook=f"https://hook.test:{port}/t", max_delay_minutes=0
        )
        send_message(client, keypair)
        assert worker.run_once(service(app)).delivered == 1
        assert seen == {"sni": "hook.test", "host": f"hook.test:{port}", "body": b"New message"}
        assert lookups == ["hook.test"]
        # A name the certificate is not for fails the check, though the address is the same.
        names["other.test"] = "127.0.0.1"
        configure(client, keypair, token, webhook=f"https://other.test:{port}/t")
        send_message(client, keypair)
        assert worker.run_once(service(app)).failed == 1
        assert lookups == ["hook.test", "other.test"]  # not tried again: it cannot succeed
    finally:
        server.shutdown()
        server.server_close()


def test_the_sender_thread_of_serve_delivers_on_its_own(client, app, inbox, receiver):
    keypair, token = inbox
    configure(client, keypair, token, webhook=f"{receiver.url}/thread", max_delay_minutes=0)
    send_message(client, keypair)
    resolved = replace(app.config["SECRETLINK"], notify_interval=1)
    stop = threading.Event()
    thread = worker.start_thread(resolved, stop)
    assert thread is not None and thread.daemon
    try:
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert receiver.paths() == ["/thread"]
    assert worker.start_thread(replace(resolved, notifications_enabled=False)) is None


def test_a_vapid_key_given_in_the_settings_is_used_and_a_bad_one_refused(tmp_path):
    from secretlink.notify.keys import b64url as raw_b64url
    from secretlink.notify.keys import public_key_text, raw_private_key
    from secretlink.settings import Settings, SettingsError

    key = ec.generate_private_key(ec.SECP256R1())
    settings = Settings.from_env({"SECRETLINK_VAPID_PRIVATE_KEY": raw_private_key(key)})
    notifications = Notifications.from_settings(settings.with_data_dir(tmp_path), None)
    assert notifications.vapid_public_key == public_key_text(key)
    assert not (tmp_path / "vapid_private_key").exists()
    for bad in ("A" * 43, raw_b64url(b"\xff" * 32), "too-short", "A" * 42 + "="):
        with pytest.raises(SettingsError, match="SECRETLINK_VAPID_PRIVATE_KEY is not valid"):
            Settings.from_env({"SECRETLINK_VAPID_PRIVATE_KEY": bad})


# ---- rotation ----


def rotate(client, old, old_token, new, new_token):
    body = {"new_public_key": new.public_key_text, "new_token": new_token}
    return client.post(
        f"/api/v1/inboxes/{old.public_key_text}/rotate", json=body, headers=bearer(old_token)
    )


def test_rotating_carries_the_notification_targets_to_the_new_inbox(client, app, inbox, receiver):
    """Nothing in a target is bound to the inbox's keys (the push subscription is the
    device's, sealed for the database only): the new link notifies like the old one."""
    old, old_token = inbox
    device = Device.new()
    chosen = configure(
        client,
        old,
        old_token,
        push=device.subscription(f"{receiver.url}/push"),
        webhook=f"{receiver.url}/hook",
        max_delay_minutes=20,
        text="Look at the new link",
    )
    new = generate_keypair()
    new_token = register(client, new)
    assert rotate(client, old, old_token, new, new_token).status_code == 200
    carried = client.get(notifications_url(new), headers=bearer(new_token)).get_json()
    assert carried == chosen
    # Sealed for the new inbox: its row opens under its own key, not swapped bytes.
    with service(app).engine.connect() as connection:
        sealed = dict(
            connection.execute(text("SELECT inbox_key, sealed FROM notify_targets")).all()
        )
    assert set(sealed) == {old.public_key_text, new.public_key_text}
    assert sealed[old.public_key_text] != sealed[new.public_key_text]
    send_message(client, new)
    due = service(app).queue.pending()[new.public_key_text]
    assert worker.run_once(service(app), now=due).delivered == 1
    push = next(r for r in receiver.requests if r.path == "/push")
    assert device.decrypt(push.body) == b"Look at the new link"
    assert sorted(receiver.paths()) == ["/hook", "/push"]


def test_rotating_keeps_the_new_inboxs_own_targets_and_copies_nothing_when_refused(
    client, app, inbox
):
    old, old_token = inbox
    configure(client, old, old_token, webhook="https://ntfy.example/old")
    new = generate_keypair()
    new_token = register(client, new)
    configure(client, new, new_token, webhook="https://ntfy.example/new", max_delay_minutes=3)
    assert rotate(client, old, old_token, new, new_token).status_code == 200
    kept = client.get(notifications_url(new), headers=bearer(new_token)).get_json()
    assert kept["webhook"] == "https://ntfy.example/new" and kept["max_delay_minutes"] == 3
    # A rotation that is refused (the old inbox moved on already) copies nothing.
    third = generate_keypair()
    third_token = register(client, third)
    assert rotate(client, old, old_token, third, third_token).status_code == 409
    shown = client.get(notifications_url(third), headers=bearer(third_token)).get_json()
    assert shown["enabled"] is False
