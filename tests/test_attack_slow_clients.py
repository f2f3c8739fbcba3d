"""Slow and malformed clients against the real `secretlink serve` on loopback (issue 8).

Connections stalled in their headers, in their bodies, and in the TLS handshake, each
kind alone and all together, must not keep /healthz or an honest sender (puzzle,
solve, post) from an answer within a second, and the server must close them by the
timeouts docs/DEPLOY.md states. The counts are at least four times the worker
capacity (2 workers x 8 threads = 16 requests at once). The timeouts come from test
settings (shorter than the defaults); the TLS handshake deadline is granian's own,
fixed at 10 s.

Malformed chunked framing and unknown transfer codings on every POST and PUT
endpoint get a 4xx (or 501) answer, never a 5xx and never a traceback in the log.
"""

import contextlib
import json
import resource
import selectors
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from test_serve import Served, serving

from secretlink.client.http import Api, InboxClient, Link, send
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import solve
from secretlink.ops.server import TLS_HANDSHAKE_SECONDS

WORKERS, THREADS = 2, 8
STALLED = 256  # connections stalled in headers, and again in bodies
STALLED_HANDSHAKES = 64
assert STALLED_HANDSHAKES >= 4 * WORKERS * THREADS

HEADER_TIMEOUT = 5  # seconds; the default is 10
BODY_MIN_RATE = 1024  # bytes per second
ANSWER_WITHIN = 1.0  # seconds, for /healthz and for a whole honest send
SLACK = 3.0  # for closing: the machine is shared and the check polls
POW_BITS = 8  # a real, cheap proof of work for the honest sender

ENV = {
    "SECRETLINK_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "SECRETLINK_BODY_MIN_RATE": str(BODY_MIN_RATE),
    "SECRETLINK_POW_DIFFICULTY": str(POW_BITS),
    "SECRETLINK_WORKERS": str(WORKERS),
    "SECRETLINK_THREADS": str(THREADS),
}
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


def setup_module() -> None:
    # Up to ~600 sockets open at once in this process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@dataclass
class Target:
    served: Served
    inbox: Link
    tls: ssl.SSLContext | None = None

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.served.url)
        return parts.hostname, parts.port

    @property
    def host(self) -> str:
        """The Host header of an honest request: the server's own origin (its list)."""
        return urlsplit(self.served.url).netloc

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=10)
        if self.tls:
            sock = self.tls.wrap_socket(sock, server_hostname="localhost")
        return sock


def target_for(served: Served, tls: ssl.SSLContext | None = None) -> Target:
    keypair = generate_keypair()
    InboxClient(served.url, keypair).register("")
    return Target(served, Link(served.url, keypair.public_key), tls)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[Target]:
    with serving(tmp_path_factory.mktemp("plain"), env=ENV) as served:
        yield target_for(served)


@pytest.fixture(scope="module")
def https(tmp_path_factory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("https")
    cert = folder / "data" / "tls" / "self-signed-cert.pem"
    with (
        pytest.MonkeyPatch.context() as patch,
        serving(folder, "--self-signed", env=ENV, scheme="https", verify=False) as served,
    ):
        patch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # for the honest sender's client
        yield target_for(served, ssl.create_default_context(cafile=cert))


# ---- the stalls ----


@dataclass
class Stalled:
    """Connections left hanging; what the server wrote to each before closing it."""

    socks: list[socket.socket] = field(default_factory=list)
    answers: dict[int, bytes] = field(default_factory=dict)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socks.append(sock)

    def closed_so_far(self) -> int:
        return sum(self._closed(sock) for sock in self.socks)

    def _closed(self, sock: socket.socket) -> bool:
        """Read what is there without blocking; True once the server closed it."""
        try:
            while data := sock.recv(65536):
                self.answers[sock.fileno()] = self.answers.get(sock.fileno(), b"") + data
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:  # reset, or a TLS connection cut without close_notify
            return True
        return True

    def wait_until_closed(self, seconds: float) -> float:
        """Seconds until the server closed every one; fails after `seconds`."""
        started = time.monotonic()
        selector = selectors.DefaultSelector()
        for sock in self.socks:
            selector.register(sock, selectors.EVENT_READ)
        open_socks = set(self.socks)
        while open_socks and time.monotonic() - started < seconds:
            for key, _ in selector.select(timeout=0.2):
                if self._closed(key.fileobj):
                    selector.unregister(key.fileobj)
                    open_socks.discard(key.fileobj)
        selector.close()
        assert not open_socks, f"{len(open_socks)} stalled connections still open"
        return time.monotonic() - started

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def stall_headers(target: Target, stalled: Stalled, count: int) -> None:
    for _ in range(count):
        sock = target.connect()
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {target.host}\r\n".encode())
        stalled.add(sock)


def stall_bodies(target: Target, stalled: Stalled, count: int) -> None:
    head = (
        f"POST /api/v1/inboxes/{target.inbox.public_key_text}/messages HTTP/1.1\r\n"
        f"Host: {target.host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    ).encode()
    for _ in range(count):
        sock = target.connect()
        sock.sendall(head)
        stalled.add(sock)


def stall_handshakes(target: Target, stalled: Stalled, count: int) -> None:
    for _ in range(count):
        sock = socket.create_connection(target.address, timeout=10)
        sock.sendall(b"\x16\x03\x01\x02\x00")  # a TLS record header; the ClientHello never comes
        stalled.add(sock)


@contextlib.contextmanager
def stalls(target: Target, headers=0, bodies=0, handshakes=0) -> Iterator[Stalled]:
    stalled = Stalled()
    try:
        stall_headers(target, stalled, headers)
        stall_bodies(target, stalled, bodies)
        stall_handshakes(target, stalled, handshakes)
        time.sleep(0.3)  # let the server take them all in
        yield stalled
    finally:
        stalled.close()


def assert_service_answers(target: Target) -> None:
    """/healthz and a whole honest send (puzzle, solve, post), each within a second."""
    for _ in range(3):
        started = time.monotonic()
        # requests verifies HTTPS with REQUESTS_CA_BUNDLE, set by the https fixture.
        response = requests.get(target.served.url + "/healthz", timeout=5)
        took = time.monotonic() - started
        assert response.status_code == 200
        assert took < ANSWER_WITHIN, f"/healthz took {took:.2f} s"
    started = time.monotonic()
    assert send(target.inbox, "an honest message")
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN, f"the honest send took {took:.2f} s"


def check_survives(target: Target, close_within: float, **counts: int) -> Stalled:
    with stalls(target, **counts) as stalled:
        assert_service_answers(target)
        assert stalled.closed_so_far() == 0, "the stalls ended before the service was tried"
        stalled.wait_until_closed(close_within)
    return stalled


def test_stalled_headers(plain):
    check_survives(plain, HEADER_TIMEOUT + SLACK, headers=STALLED)


def test_stalled_bodies_are_answered_408_and_closed(plain):
    stalled = check_survives(plain, HEADER_TIMEOUT + 1 / BODY_MIN_RATE + SLACK, bodies=STALLED)
    answers = list(stalled.answers.values())
    assert len(answers) == STALLED
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    assert b'"code": "request_timeout"' in answers[0]


def test_stalled_tls_handshakes(https):
    check_survives(https, TLS_HANDSHAKE_SECONDS + SLACK, handshakes=STALLED_HANDSHAKES)


def test_all_stalls_together_over_tls(https):
    check_survives(
        https,
        TLS_HANDSHAKE_SECONDS + SLACK,
        headers=STALLED,
        bodies=STALLED,
        handshakes=STALLED_HANDSHAKES,
    )
    assert "Traceback" not in https.served.output()


def solved_message(target: Target, text: str) -> bytes:
    """A message body as the honest sender posts it: envelope, puzzle and solution."""
    api = Api(target.served.url)
    puzzle = api.call("POST", f"/api/v1/inboxes/{target.inbox.public_key_text}/puzzle")
    envelope = seal(text, target.inbox.public_key)
    return json.dumps(
        {
            "ciphertext": b64encode(envelope),
            "puzzle": puzzle["puzzle"],
            "solution": solve(puzzle["puzzle"], int(puzzle["difficulty"])),
        }
    ).encode()


def test_a_slow_body_that_keeps_the_minimum_rate_is_taken(plain):
    """Slow but honest: the body starts late in the grace and then comes at twice the
    minimum rate, taking longer than the grace in all; the deadline grows with what
    arrived, so it is stored."""
    body = solved_message(plain, "x" * 4000)
    sock = plain.connect()
    sock.sendall(
        f"POST /api/v1/inboxes/{plain.inbox.public_key_text}/messages HTTP/1.1\r\n"
        f"Host: {plain.host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "\r\n".encode()
    )
    started = time.monotonic()
    time.sleep(HEADER_TIMEOUT - 2)
    step = BODY_MIN_RATE // 4  # every eighth of a second: twice the minimum rate
    for offset in range(0, len(body), step):
        sock.sendall(body[offset : offset + step])
        time.sleep(0.125)
    assert time.monotonic() - started > HEADER_TIMEOUT
    with sock:
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]


# ---- attachment uploads: the one route with larger bodies, under the same rate ----


def upload_head(target: Target, length: int, method: str = "PATCH", path: str = "") -> bytes:
    path = path or f"/api/v1/inboxes/{target.inbox.public_key_text}/uploads/{'A' * 22}"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Type: application/octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_stalled_upload_piece_is_answered_408_and_closed(plain):
    stalled = Stalled()
    try:
        for _ in range(4):
            sock = plain.connect()
            sock.sendall(upload_head(plain, 1 << 20) + bytes(2000))
            stalled.add(sock)
        assert_service_answers(plain)
        stalled.wait_until_closed(HEADER_TIMEOUT + 2000 / BODY_MIN_RATE + SLACK)
    finally:
        stalled.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in stalled.answers.values())


def test_a_whole_mib_reaches_the_upload_route_only(plain):
    piece = bytes(1 << 20)
    with plain.connect() as sock:
        sock.sendall(upload_head(plain, len(piece)) + piece)
        answer = sock.recv(65536)
    # Past the body limit: the app itself answers (the request carries no capability).
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert b"capability_required" in answer
    with plain.connect() as sock:
        sock.sendall(upload_head(plain, (1 << 20) + 1))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    # Every other route keeps the small limit.
    messages = f"/api/v1/inboxes/{plain.inbox.public_key_text}/messages"
    with plain.connect() as sock:
        sock.sendall(upload_head(plain, len(piece), "POST", messages))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]


# ---- malformed framing: 4xx (or 501), never 5xx, never a traceback ----

REFUSAL_LINE = "request refused before the app:"
FRAMING_CODES = {"bad_framing", "unsupported_transfer_coding", "too_large"}
# (name, headers and body after the request line and Host, what must come back)
BAD_FRAMING = {
    "chunk size zz": (b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    "chunk size -2": (b"Transfer-Encoding: chunked\r\n\r\n-2\r\nabc\r\n0\r\n\r\n", 400),
    # The parser ignores chunk extensions up to 16 KiB in all (hyper's limit): one of
    # 9,000 bytes reaches the endpoint, which answers as it would without it ...
    "chunk extension of 9,000 bytes": (
        b"Transfer-Encoding: chunked\r\n\r\n3;" + b"x" * 9000 + b"\r\nabc\r\n0\r\n\r\n",
        None,
    ),
    # ... and more is refused.
    "chunk extension over 16 KiB": (
        b"Transfer-Encoding: chunked\r\n\r\n3;" + b"x" * 17_000 + b"\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk data without its CRLF": (
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        400,
    ),
    "unknown coding before chunked": (
        b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        501,
    ),
}
# Refused by the HTTP parser itself, before any code of ours: a bare 400 without a
# body (nothing for a browser to render) on a closed connection.
REFUSED_BY_THE_PARSER = {
    "unknown coding alone": b"Transfer-Encoding: gzip\r\n\r\nabc",
    "chunked not last": b"Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
}


def post_and_put_paths(target: Target) -> list[tuple[str, str]]:
    """Every POST and PUT endpoint the API documents, with real path parameters."""
    spec = json.loads((Path(__file__).parent.parent / "secretlink/openapi.json").read_text())
    found = []
    for path, operations in spec["paths"].items():
        for method in ("post", "put"):
            if method in operations:
                real = path.replace("{public_key}", target.inbox.public_key_text)
                found.append((method.upper(), real))
    assert len(found) >= 5
    return found


def exchange(target: Target, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; status, headers, body."""
    with target.connect() as sock:
        sock.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                received += data
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def framed(target: Target, method: str, path: str, rest: bytes) -> bytes:
    # Connection: close, so that each answer ends where the server closes.
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host}\r\nConnection: close\r\n"
    return head.encode() + rest


@pytest.mark.parametrize("case", list(BAD_FRAMING))
def test_malformed_framing_is_a_json_4xx_or_501_on_every_endpoint(plain, case):
    rest, expected = BAD_FRAMING[case]
    refusals_before = plain.served.output().count(REFUSAL_LINE)
    paths = post_and_put_paths(plain)
    for method, path in paths:
        status, headers, body = exchange(plain, framed(plain, method, path, rest))
        if expected is None:
            assert status < 500, (method, path, status)
        else:
            assert status == expected, (method, path, status, body)
        assert headers["content-type"] == "application/json", (method, path)
        # The framing itself is what is refused, not the Host (which is the server's own).
        assert expected is None or json.loads(body)["code"] in FRAMING_CODES, (method, path, body)
        for name in SECURITY_HEADERS:
            assert name in headers, (name, method, path)
    log = plain.served.output()
    assert "Traceback" not in log
    assert "ERROR" not in log
    if expected is not None:  # one log line per refusal, no more
        assert log.count(REFUSAL_LINE) - refusals_before == len(paths)


@pytest.mark.parametrize("case", list(REFUSED_BY_THE_PARSER))
def test_framing_the_parser_refuses_is_a_bare_400(plain, case):
    for method, path in post_and_put_paths(plain):
        status, headers, body = exchange(
            plain, framed(plain, method, path, REFUSED_BY_THE_PARSER[case])
        )
        assert status == 400, (method, path, status)
        assert body == b""
        assert headers.get("connection") == "close"
    assert "Traceback" not in plain.served.output()


def test_no_server_version_banner(plain):
    response = requests.get(plain.served.url + "/healthz", timeout=5)
    assert not any(char.isdigit() for char in response.headers.get("Server", ""))
    status, headers, _ = exchange(plain, framed(plain, "GET", "/healthz", b"\r\n"))
    assert status == 200
    assert not any(char.isdigit() for char in headers.get("server", ""))
