"""Request-body limits against a real `secretlink serve`, over raw sockets.

The server's body layer (secretlink/ops/asgi.py) counts a chunked body as it arrives and
refuses it past the limit; a plain WSGI server would hand it to Werkzeug, whose stream
stops at the limit *without raising* (the app checks for that too). These tests check
that such a body is refused with 413, not cut and stored, that one at the limit is
taken, and that a declared Content-Length over the limit is refused from the header
alone.
"""

import contextlib
import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest
from test_serve import serving

from secretlink.client.http import InboxClient
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.web.app import MAX_REQUEST_BYTES

TIMEOUT = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("body-limits")) as server:
        yield server


@pytest.fixture
def owner(served) -> InboxClient:
    owner = InboxClient(served.url, generate_keypair())
    owner.register("")
    return owner


def connect(served) -> socket.socket:
    address = urlsplit(served.url)
    return socket.create_connection((address.hostname, address.port), timeout=TIMEOUT)


def request_head(owner: InboxClient, framing: str) -> bytes:
    return (
        f"POST /api/v1/inboxes/{owner.keypair.public_key_text}/messages HTTP/1.1\r\n"
        # The server answers only for its own origin, port included.
        f"Host: {urlsplit(owner.api.server).netloc}\r\n"
        "Content-Type: application/json\r\n"
        f"{framing}\r\n"
        "\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def padded_message(owner: InboxClient, size: int) -> bytes:
    """A valid message as JSON, padded with white space (still valid JSON) to `size`
    bytes: cut anywhere after the object, it would still parse as a good message."""
    body = json.dumps({"ciphertext": b64encode(seal("x", owner.keypair.public_key))}).encode()
    return body + b" " * (size - len(body))


def send_chunked(owner: InboxClient, sock: socket.socket, body: bytes, chunk: int = 8192):
    sock.sendall(request_head(owner, "Transfer-Encoding: chunked"))
    # A server that refuses the body may answer and close before it has all of it.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for start in range(0, len(body), chunk):
            part = body[start : start + chunk]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")


def stored(owner: InboxClient) -> int:
    return len(list(owner.messages()))


def test_huge_content_length_is_refused_before_the_body_is_sent(served, owner):
    with connect(served) as sock:
        sock.sendall(request_head(owner, f"Content-Length: {10 * 1024**3}"))
        # Not one byte of the body: the answer must come from the header alone.
        status, body = read_answer(sock)
    assert status == 413
    assert body == {"code": "too_large", "error": "request body is too large"}
    assert stored(owner) == 0


def test_oversized_chunked_body_is_413_and_nothing_is_stored(served, owner):
    with connect(served) as sock:
        send_chunked(owner, sock, padded_message(owner, 200_000))
        status, body = read_answer(sock)
    assert status == 413
    assert body == {"code": "too_large", "error": "request body is too large"}
    assert stored(owner) == 0


def test_chunked_body_at_the_limit_is_taken(served, owner):
    with connect(served) as sock:
        send_chunked(owner, sock, padded_message(owner, MAX_REQUEST_BYTES))
        status, body = read_answer(sock)
    assert status == 201, body
    assert [m.id for m in owner.messages()] == [body["id"]]
