"""`secretlink serve` as a real process: gunicorn workers, logs, SIGTERM, HTTPS."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from secretlink.client import InboxClient, parse_link
from secretlink.client import send as send_message
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


def workers_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(worker) for worker in found.stdout.split()]


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
            [sys.executable, "-m", "secretlink.cli", "serve", "--port", str(port), *args],
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


def test_serves_with_workers_and_logs_no_client_details(tmp_path):
    with serving(tmp_path, "--workers", "2", env={"SECRETLINK_LOG_LEVEL": "DEBUG"}) as served:
        keypair = generate_keypair()
        InboxClient(served.url, keypair).register("")
        port = int(served.url.rsplit(":", 1)[1])
        body = json.dumps({"ciphertext": b64encode(seal("hi", keypair.public_key))})
        for path, payload in [
            (f"/api/v1/inboxes/{keypair.public_key_text}/messages", body),
            ("/api/v1/inboxes/short/messages", "{}"),
            (f"/to/{keypair.public_key_text}", None),
        ]:
            # From another loopback address, with a proxy header and a marked user agent.
            connection = http.client.HTTPConnection(
                "127.0.0.1", port, source_address=("127.0.0.2", 0)
            )
            connection.request(
                "POST" if payload else "GET",
                path,
                body=payload,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "UA-SENTINEL-7731",
                    "X-Forwarded-For": "203.0.113.99",
                },
            )
            assert connection.getresponse().status in (200, 201, 400)
            connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, source_address=("127.0.0.2", 0))
        connection.request("GET", "/x", headers={"Content-Length": "nonsense"})
        connection.getresponse()
        connection.close()
        assert len(wait_for_workers(served.process, 2)) == 2
    output = served.output()
    assert "Booting worker" in output  # the log is there, and at DEBUG
    assert "purge: 0 old messages" in output  # each worker runs the retention purge
    for secret in ("127.0.0.2", "203.0.113.99", "UA-SENTINEL", keypair.public_key_text):
        assert secret not in output


def test_sigterm_keeps_every_acknowledged_message(tmp_path):
    keypair = generate_keypair()
    with serving(tmp_path) as served:
        link = parse_link(InboxClient(served.url, keypair).register("")["link"])
        sent = [send_message(link, f"message {i}") for i in range(20)]
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=40) == 0
    assert "Shutting down" in served.output() or "Handling signal: term" in served.output()
    with serving(tmp_path) as again:
        stored = list(InboxClient(again.url, keypair).messages())
        assert sorted(m.id for m in stored) == sorted(sent)
        texts = {open_envelope(b64decode(m.ciphertext), keypair.secret_key).text for m in stored}
        assert texts == {f"message {i}" for i in range(20)}


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
        [sys.executable, "-m", "secretlink.cli", "serve"],
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


def test_postgres_and_redis_serve_two_workers_with_shared_limits(tmp_path, postgres_admin):
    """The scale-out configuration: PostgreSQL for data, Redis for the limits."""
    from conftest import fresh_postgres_schema
    from test_limits import REDIS_URL, require_redis

    require_redis()
    with fresh_postgres_schema(postgres_admin) as database_url:
        env = {
            "SECRETLINK_DATABASE_URL": database_url,
            "SECRETLINK_REDIS_URL": REDIS_URL,
            "SECRETLINK_RATE_LIMITS_ENABLED": "true",
            "SECRETLINK_RATE_LIMIT_CLIENT": "6/minute",
            "SECRETLINK_WORKERS": "2",
        }
        with serving(tmp_path, env=env) as served:
            assert len(wait_for_workers(served.process, 2)) == 2
            keypair = generate_keypair()
            owner = InboxClient(served.url, keypair)
            owner.register("")
            url = f"{served.url}/api/v1/inboxes/{keypair.public_key_text}/messages"
            codes = []
            for _ in range(10):
                # A new connection each time, so both workers take requests.
                body = {"ciphertext": b64encode(seal("x", keypair.public_key))}
                codes.append(
                    requests.post(
                        url, json=body, timeout=10, headers={"Connection": "close"}
                    ).status_code
                )
            assert codes == [201] * 6 + [429] * 4
            assert len(list(owner.messages())) == 6
