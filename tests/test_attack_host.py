"""Issue 8, item 5, replayed against the real `secretlink serve` on loopback: the Host
header decides nothing that matters.

Before the fix a relay forwarding `Host: relay.example` had a proof made for the
relay accepted (and with the token could list, delete and re-prompt the inbox), a
malformed Host got a 200 with the link `http:///to/KEY`, and werkzeug's slash-merging
308 built its Location from the Host and answered HTML under /api/. Every server
here listens on 127.0.0.0/8 only; the refusal to start on a public address is checked
to happen before anything binds. Bounded: four short-lived servers, a few dozen
requests.
"""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from secretlink.crypto import b64decode, b64encode, generate_keypair
from secretlink.crypto.proof import prove

STARTUP_SECONDS = 30
RELAY = "relay.example"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


@dataclass
class Server:
    address: str
    port: int
    log: Path

    def send(
        self, method: str, path: str, host: bytes | str, body: dict | None = None, token=""
    ) -> Answer:
        """One request with exactly this Host, written byte for byte (no client library
        would send the malformed ones)."""
        payload = json.dumps(body).encode() if body is not None else b""
        host_bytes = host.encode() if isinstance(host, str) else host
        lines = [
            f"{method} {path} HTTP/1.1".encode(),
            b"Host: " + host_bytes,
            b"Connection: close",
            f"Content-Length: {len(payload)}".encode(),
        ]
        if body is not None:
            lines.append(b"Content-Type: application/json")
        if token:
            lines.append(f"Authorization: Bearer {token}".encode())
        with socket.create_connection((self.address, self.port), timeout=10) as connection:
            connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        head, _, content = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Answer(int(status_line.split()[1]), headers, content)


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def serve_command(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "secretlink.client.cli", "serve", "--port", str(port), *args]


def server_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SECRETLINK_")
    }
    return {
        **environment,
        "SECRETLINK_DATA_DIR": str(tmp_path / "data"),
        "SECRETLINK_RATE_LIMITS_ENABLED": "false",
        "SECRETLINK_POW_DIFFICULTY": "0",
        "SECRETLINK_WORKERS": "1",
        "SECRETLINK_THREADS": "4",
        **env,
    }


@contextmanager
def serving(
    tmp_path: Path, *args: str, address: str = "127.0.0.1", env: dict | None = None
) -> Iterator[Server]:
    port = free_port(address)
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            serve_command(port, "--host", address, *args),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=server_env(tmp_path, env or {}),
        )
    server = Server(address, port, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
            try:
                if server.send("GET", "/healthz", "health.check").status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def link_through(server: Server, host: str, keypair, token: Answer) -> str:
    """Save the inbox through `host` with that sign-in; the link the server answers."""
    put = server.send(
        "PUT",
        f"/api/v1/inboxes/{keypair.public_key_text}",
        host,
        {"prompt": ""},
        token=token.json()["token"],
    )
    assert put.status in (200, 201), put.body
    return put.json()["link"]


def token_for(server: Server, host: str, keypair, origin: str) -> Answer:
    """Prove possession through `host`, with a proof made for `origin`."""
    challenge = server.send(
        "POST", "/api/v1/auth/challenge", host, {"public_key": keypair.public_key_text}
    )
    if challenge.status != 200:
        return challenge
    data = challenge.json()
    mac = prove(
        keypair.secret_key,
        b64decode(data["server_key"]),
        b64decode(data["nonce"]),
        data["expires_at"],
        origin,
    )
    answer = {"challenge": data["challenge"], "proof": b64encode(mac)}
    return server.send("POST", "/api/v1/auth/token", host, answer)


def assert_refused(answer: Answer, code: str) -> dict:
    body = answer.json()
    assert (answer.status, body["code"]) == (400, code), body
    # The security headers are on this answer too.
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    return body


MALFORMED_HOSTS = [
    b"a b",
    b"x:abc",
    b"x:0",
    b"x:99999",
    b"x:",
    "caf\u00e9.example".encode(),
    b"\xff.example",
    b"user@127.0.0.1",
    b"127.0.0.1%2e",
    b"[::1",
    b"a\\b",
    b"",
]


def test_loopback_default_refuses_a_relays_host_and_malformed_hosts(tmp_path):
    """No SECRETLINK_BASE_URL, bound to 127.0.0.1: the list is that address (and
    localhost) on the port served."""
    with serving(tmp_path) as server:
        keypair = generate_keypair()
        own = f"127.0.0.1:{server.port}"
        # The relay's attack: a challenge asked for under its Host is refused outright,
        # with a reason that tells an operator what to set.
        for method, path in [
            ("POST", "/api/v1/auth/challenge"),
            ("GET", "/"),
            ("GET", f"/to/{keypair.public_key_text}"),
            ("GET", f"/api/v1/inboxes/{keypair.public_key_text}/messages"),
        ]:
            body = assert_refused(server.send(method, path, RELAY), "host_not_allowed")
            assert "SECRETLINK_BASE_URL" in body["error"]
            assert f"http://127.0.0.1:{server.port}" in body["error"]
        # A same-host proxy that forwards to the port but sends its own port is refused.
        assert_refused(server.send("GET", "/", "127.0.0.1"), "host_not_allowed")
        # A proof made for the relay's origin, relayed with the real Host: refused.
        relayed = token_for(server, own, keypair, f"http://{RELAY}")
        assert (relayed.status, relayed.json()["code"]) == (401, "bad_proof")
        # Both names of the bind work, each with its own origin in the link.
        for name in ("127.0.0.1", "localhost", "LOCALHOST"):
            host = f"{name}:{server.port}"
            token = token_for(server, host, keypair, f"http://{name.lower()}:{server.port}")
            assert token.status == 200, token.body
            link = link_through(server, host, keypair, token)
            assert link == f"http://{name.lower()}:{server.port}/to/{keypair.public_key_text}"
        # Malformed Hosts: 400 JSON, never a 200 with a link like http:///to/KEY.
        token = token_for(server, own, keypair, f"http://{own}").json()["token"]
        for host in MALFORMED_HOSTS:
            answer = server.send(
                "PUT",
                f"/api/v1/inboxes/{keypair.public_key_text}",
                host,
                {"prompt": "x"},
                token=token,
            )
            assert answer.status == 400, (host, answer)
            assert answer.json()["code"] in ("bad_host", "bad_request"), (host, answer.body)
        # Slashes are not merged by a redirect built from the Host: 404 JSON under /api/.
        for path in ("/api/v1//auth/challenge", "/api//v1/auth/challenge", "/api/v1/auth//x"):
            answer = server.send("POST", path, own, {"public_key": keypair.public_key_text})
            assert answer.status == 404, (path, answer)
            assert "location" not in answer.headers
            assert answer.json()["code"] == "not_found"
        # (A leading `//` is the HTTP server's to read; whatever it makes of it, the
        # answer is JSON and no redirect.)
        answer = server.send("POST", "//api/v1/auth/challenge", own, {"public_key": "x"})
        assert answer.status < 300 or answer.status >= 400, answer
        assert "location" not in answer.headers
        answer.json()
    assert "Traceback" not in server.log.read_text()


def test_base_url_and_onion_origin_on_another_loopback_address(tmp_path):
    """127.0.0.2 is loopback too; with origins configured only they are answered, and
    each request's link and proof use the origin its Host names."""
    onion = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion"
    env = {
        "SECRETLINK_BASE_URL": "https://FAß.Example:443/",  # UTS 46: xn--fa-hia, not fass
        "SECRETLINK_ONION_URL": f"http://{onion}",
    }
    with serving(tmp_path, address="127.0.0.2", env=env) as server:
        keypair = generate_keypair()
        for host in (RELAY, f"127.0.0.2:{server.port}", "xn--fa-hia.example:8443", "fass.example"):
            body = assert_refused(
                server.send("POST", "/api/v1/auth/challenge", host, {}), "host_not_allowed"
            )
            assert "SECRETLINK_BASE_URL" in body["error"]
            assert onion not in body["error"]  # the onion name is not handed to strangers
        for host, origin in [
            ("xn--fa-hia.example", "https://xn--fa-hia.example"),
            ("XN--FA-HIA.Example:443", "https://xn--fa-hia.example"),
            (onion, f"http://{onion}"),
        ]:
            assert token_for(server, host, keypair, f"http://{RELAY}").status == 401
            token = token_for(server, host, keypair, origin)
            assert token.status == 200, token.body
            assert link_through(server, host, keypair, token) == (
                f"{origin}/to/{keypair.public_key_text}"
            )


def test_trust_host_header_takes_the_origin_from_a_well_formed_host(tmp_path):
    with serving(tmp_path, "--trust-host-header") as server:
        keypair = generate_keypair()
        token = token_for(server, f"{RELAY}:8080", keypair, f"http://{RELAY}:8080")
        assert token.status == 200, token.body
        put = server.send(
            "PUT",
            f"/api/v1/inboxes/{keypair.public_key_text}",
            f"{RELAY}:8080",
            {"prompt": ""},
            token=token.json()["token"],
        )
        assert put.json()["link"] == f"http://{RELAY}:8080/to/{keypair.public_key_text}"
        assert_refused(server.send("GET", "/", b"a b"), "bad_host")
    assert "--trust-host-header" in server.log.read_text()  # the operator is warned


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.1", "secretlink.example"])
def test_serve_refuses_a_non_loopback_bind_without_an_origin_before_binding(tmp_path, address):
    """The refusal comes from the settings, before the data folder, the database or a
    socket exists: nothing ever listens on a public address in this test."""
    started = time.monotonic()
    result = subprocess.run(
        serve_command(free_port("127.0.0.1"), "--host", address),
        env=server_env(tmp_path, {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SECRETLINK_BASE_URL" in lines[0] and "--trust-host-header" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was prepared
    assert time.monotonic() - started < 20
