"""`secretlink serve` as a real process: granian workers, logs, SIGTERM, HTTPS."""

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope, seal

STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, **kwargs) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log_path.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=2, **kwargs).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"server did not become healthy:\n{log_path.read_text()}")


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


def is_writer(pid: int) -> bool:
    try:
        return b"secretlink.ops.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (its other child is the message writer)."""
    return [child for child in children_of(pid) if not is_writer(child)]


def wait_for_writer_ready(log_path: Path) -> None:
    """Until the server's log says its message writer is ready (it starts beside the
    workers; until then they commit their own messages)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if "message writer ready" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the message writer did not start: {log_path.read_text()}")


def writer_of(pid: int) -> int | None:
    """The server's message writer process (SQLite only), once it has started."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        writers = [child for child in children_of(pid) if is_writer(child)]
        if writers:
            return writers[0]
        time.sleep(0.05)
    return None


def wait_for_workers(process: subprocess.Popen, count: int) -> list[int]:
    """The worker processes, once `count` have booted: the first healthy answer
    comes from whichever worker booted first, while the others may still be forking."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while len(workers := workers_of(process.pid)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return workers


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def serving(
    tmp_path: Path,
    *args: str,
    env: dict | None = None,
    scheme: str = "http",
    verify=True,
    own_process_group: bool = False,
) -> Iterator[Served]:
    """`secretlink serve` as a subprocess; with `own_process_group`, one killpg hits all."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    environment = {
        **os.environ,
        "SECRETLINK_DATA_DIR": str(tmp_path / "data"),
        "SECRETLINK_RATE_LIMITS_ENABLED": "false",
        # Load tests post envelopes directly; the gate is tested in test_pow.py.
        "SECRETLINK_POW_DIFFICULTY": "0",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "secretlink.client.cli", "serve", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=own_process_group,
        )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path, verify=verify)
        yield Served(url, process, log_path)
    finally:
        stop(process)


# What a client gives away about itself; none of it may reach the log.
CLIENT_ADDRESS = "127.0.0.2"
FORWARDED_FOR = "203.0.113.99"
USER_AGENT = "UA-SENTINEL-7731"


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


def request_from_another_client(
    served: Served, method: str, path: str, body: str | None = None, headers: dict | None = None
) -> int:
    """One request from another loopback address, with a proxy header and a marked
    user agent; the answer's status."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port_of(served), source_address=(CLIENT_ADDRESS, 0), timeout=10
    )
    try:
        connection.request(
            method,
            path,
            body=body,
            headers=headers
            or {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Forwarded-For": FORWARDED_FOR,
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def assert_no_client_details(output: str, *more: str) -> None:
    for secret in (CLIENT_ADDRESS, FORWARDED_FOR, USER_AGENT, "UA-SENTINEL", *more):
        assert secret not in output, f"{secret!r} is in the log"


def test_serves_with_workers_and_logs_no_client_details(tmp_path):
    with serving(tmp_path, "--workers", "2", env={"SECRETLINK_LOG_LEVEL": "DEBUG"}) as served:
        keypair = generate_keypair()
        InboxClient(served.url, keypair).register("")
        body = json.dumps({"ciphertext": b64encode(seal("hi", keypair.public_key))})
        for method, path, payload in [
            ("POST", f"/api/v1/inboxes/{keypair.public_key_text}/messages", body),
            ("POST", "/api/v1/inboxes/short/messages", "{}"),
            ("GET", f"/to/{keypair.public_key_text}", None),
        ]:
            status = request_from_another_client(served, method, path, payload)
            assert status in (200, 201, 400)
        request_from_another_client(served, "GET", "/x", headers={"Content-Length": "nonsense"})
        assert len(wait_for_workers(served.process, 2)) == 2
    output = served.output()
    assert "Spawning worker-2" in output  # the server's log is there ...
    assert " DEBUG " in output  # ... and at DEBUG
    assert "purge: 0 old messages" in output  # each worker runs the retention purge
    assert_no_client_details(output, keypair.public_key_text)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_rate_limit_refusals_log_no_client_details(tmp_path, level):
    """Flask-Limiter logs each refusal with the limiter key; at INFO not even the
    hashed client id may reach the log, at DEBUG no address, user agent or inbox key."""
    env = {
        "SECRETLINK_LOG_LEVEL": level,
        "SECRETLINK_RATE_LIMITS_ENABLED": "true",
        "SECRETLINK_RATE_LIMIT_CLIENT": "2/minute",
        "SECRETLINK_POW_DIFFICULTY": "0",
    }
    keypair = generate_keypair()
    # One worker: without Redis each worker counts for itself.
    with serving(tmp_path, "--workers", "1", env=env) as served:
        InboxClient(served.url, keypair).register("")
        path = f"/api/v1/inboxes/{keypair.public_key_text}/messages"
        codes = [
            request_from_another_client(
                served,
                "POST",
                path,
                json.dumps({"ciphertext": b64encode(seal("hi", keypair.public_key))}),
            )
            for _ in range(4)
        ]
        assert codes == [201, 201, 429, 429]
    output = served.output()
    assert_no_client_details(output, keypair.public_key_text)
    if level == "DEBUG":
        # The operator asked for detail: the refusal is logged, with the hash only.
        assert "exceeded at endpoint: send-client" in output
    else:
        assert "exceeded at endpoint" not in output
        assert "client:" not in output


SIGTERM_SENDERS = 8
SIGTERM_PER_SENDER = 100  # a cap, so the load is bounded even if the signal comes late
SIGTERM_AFTER_ACKS = 60  # signal once this many messages were acknowledged ...
SIGTERM_AFTER_SECONDS = 3.0  # ... or after this long, whichever comes first


@dataclass
class Attempt:
    text: str
    started: float
    finished: float
    status: int | None  # None: no answer (connection refused or cut)
    message_id: str | None


def send_until_refused(
    index: int, url: str, public_key: bytes, attempts: list[Attempt], lock: threading.Lock
) -> None:
    """Post unique messages, without retries, until one gets no answer or the cap is hit."""
    with requests.Session() as session:
        for number in range(SIGTERM_PER_SENDER):
            text = f"sender {index} message {number}"
            body = {"ciphertext": b64encode(seal(text, public_key))}
            started = time.monotonic()
            try:
                response = session.post(url, json=body, timeout=30)
                status, message_id = response.status_code, None
                if status == 201:
                    message_id = response.json()["id"]
            except (requests.RequestException, ValueError):
                status = message_id = None
            with lock:
                attempts.append(Attempt(text, started, time.monotonic(), status, message_id))
            if status is None:
                return


def test_sigterm_keeps_every_acknowledged_message(tmp_path):
    """SIGTERM while concurrent senders have requests in flight: the server exits 0,
    and every message answered 201 is there after a restart, once, with its text."""
    keypair = generate_keypair()
    attempts: list[Attempt] = []
    lock = threading.Lock()
    with serving(tmp_path, "--workers", "2") as served:
        InboxClient(served.url, keypair).register("")
        assert len(wait_for_workers(served.process, 2)) == 2
        url = f"{served.url}/api/v1/inboxes/{keypair.public_key_text}/messages"
        senders = [
            threading.Thread(
                target=send_until_refused,
                args=(i, url, keypair.public_key, attempts, lock),
                daemon=True,
            )
            for i in range(SIGTERM_SENDERS)
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + SIGTERM_AFTER_SECONDS
        while time.monotonic() < deadline:
            with lock:
                if sum(a.status == 201 for a in attempts) >= SIGTERM_AFTER_ACKS:
                    break
            time.sleep(0.01)
        writer = writer_of(served.process.pid)
        assert writer is not None, "no message writer process on SQLite"
        writer_socket = Path(
            os.fsdecode(Path(f"/proc/{writer}/cmdline").read_bytes().split(b"\0")[-2])
        )
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=40) == 0
        # The writer ended after the workers and was waited for; its socket is gone.
        assert not Path(f"/proc/{writer}").exists()
        assert not writer_socket.parent.exists()
        for sender in senders:
            sender.join(timeout=60)
            assert not sender.is_alive(), "a sender hung after the server stopped"
    output = served.output()
    assert "Shutting down" in output or "Handling signal: term" in output

    assert {a.status for a in attempts} <= {201, None}, "answers other than 201"
    acknowledged = {a.text: a.message_id for a in attempts if a.status == 201}
    in_flight = [a for a in attempts if a.started < signalled < a.finished]
    print(
        f"\nsigterm: {len(attempts)} sent, {len(acknowledged)} acknowledged, "
        f"{len(in_flight)} in flight at the signal "
        f"({sum(a.status == 201 for a in in_flight)} of them acknowledged)"
    )
    assert in_flight, "no request was in flight at SIGTERM"
    assert any(a.status == 201 for a in in_flight), "no request in flight was finished"

    with serving(tmp_path) as again:
        stored = list(InboxClient(again.url, keypair).messages())
    texts = {m.id: open_envelope(b64decode(m.ciphertext), keypair.secret_key).text for m in stored}
    lost = {text for text, message_id in acknowledged.items() if texts.get(message_id) != text}
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:3]}"
    assert len(texts) == len(stored) == len(set(texts.values())), "a message is stored twice"
    assert set(texts.values()) <= {a.text for a in attempts}, "stored a message nobody sent"


def test_self_signed_https_with_hsts(tmp_path):
    cert = tmp_path / "data" / "tls" / "self-signed-cert.pem"
    with serving(tmp_path, "--self-signed", scheme="https", verify=False) as served:
        response = requests.get(served.url + "/", verify=str(cert), timeout=5)
        assert response.status_code == 200
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        first = cert.read_bytes()
    with serving(tmp_path, "--self-signed", scheme="https", verify=str(cert)):
        assert cert.read_bytes() == first  # reused, not remade


def test_plain_http_sends_no_hsts(tmp_path):
    with serving(tmp_path) as served:
        assert "Strict-Transport-Security" not in requests.get(served.url + "/", timeout=5).headers


def test_bad_setting_stops_start_up_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "secretlink.client.cli", "serve"],
        env={**os.environ, "SECRETLINK_WORKERS": "many"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "SECRETLINK_WORKERS='many' is not valid" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("proxied", [False, True])
def test_proxy_headers_are_trusted_only_when_configured(tmp_path, proxied):
    env = {"SECRETLINK_TRUSTED_PROXY_HOPS": "1"} if proxied else {}
    with serving(tmp_path, env=env) as served:
        response = requests.get(served.url + "/", timeout=5, headers={"X-Forwarded-Proto": "https"})
        assert ("Strict-Transport-Security" in response.headers) is proxied


def test_two_servers_on_postgres_and_redis_share_limits(tmp_path, postgres_admin, redis_url):
    """The scale-out configuration: two instances (here two `secretlink serve`
    processes, each with two workers) on one PostgreSQL schema, one Redis and one
    secret key. Requests alternate between them, so without shared counters each
    would accept six."""
    from conftest import fresh_postgres_schema

    with fresh_postgres_schema(postgres_admin) as database_url:
        env = {
            "SECRETLINK_DATABASE_URL": database_url,
            "SECRETLINK_REDIS_URL": redis_url,
            "SECRETLINK_SECRET_KEY": secrets.token_urlsafe(32),
            "SECRETLINK_RATE_LIMITS_ENABLED": "true",
            "SECRETLINK_RATE_LIMIT_CLIENT": "6/minute",
            "SECRETLINK_WORKERS": "2",
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        # One after the other: the first one to start upgrades the schema.
        with serving(tmp_path / "a", env=env) as first, serving(tmp_path / "b", env=env) as second:
            keypair = generate_keypair()
            InboxClient(first.url, keypair).register("")
            path = f"/api/v1/inboxes/{keypair.public_key_text}/messages"
            answers = []
            for number in range(10):
                served = (first, second)[number % 2]
                body = {"ciphertext": b64encode(seal(f"x{number}", keypair.public_key))}
                response = requests.post(
                    served.url + path, json=body, timeout=10, headers={"Connection": "close"}
                )
                answers.append((served.url, response.status_code))
            assert [code for _, code in answers] == [201] * 6 + [429] * 4
            # Each server both accepted and refused: the count is the instances' sum.
            for served in (first, second):
                assert {code for url, code in answers if url == served.url} == {201, 429}
            # Both see every message, whichever took it.
            for served in (first, second):
                assert len(list(InboxClient(served.url, keypair).messages())) == 6
