"""secretlink.ops.asgi on its own: the body deadline, the refusals, and the WSGI hand-over.

The real server's behaviour is tested in test_attack_slow_clients.py; these drive the
ASGI layer with a scripted client, so each rule is pinned down without a network.
"""

import asyncio
import json

import pytest
from flask import Flask, request

from secretlink.ops.asgi import BodyPolicy, wsgi_as_asgi

POLICY = BodyPolicy(max_bytes=100, min_rate=1000, grace_seconds=0.3)


def echo_app() -> Flask:
    app = Flask(__name__)

    @app.post("/echo")
    def echo():
        return {"body": request.get_data(as_text=True), "length": request.content_length}

    return app


def scope(headers: dict[str, str] | None = None, method: str = "POST") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": "/echo",
        "root_path": "",
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


def run(headers: dict[str, str], parts: list[tuple[float, bytes | None]], method="POST"):
    """Serve one request whose body comes as (delay, chunk) parts; None = disconnect.
    Returns (status, headers, JSON body)."""
    app = wsgi_as_asgi(echo_app(), threads=2, policy=POLICY)
    sent: list[dict] = []
    queue = list(parts)

    async def receive() -> dict:
        if not queue:
            await asyncio.sleep(3600)  # the client sends nothing more
        delay, chunk = queue.pop(0)
        await asyncio.sleep(delay)
        if chunk is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: dict) -> None:
        sent.append(message)

    async def main():
        await asyncio.wait_for(app(scope(headers, method), receive, send), 5)

    asyncio.run(main())
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


def test_deadline_grows_with_the_bytes_received():
    policy = BodyPolicy(max_bytes=10_000, min_rate=1024, grace_seconds=10)
    assert policy.deadline(100.0, 0) == 110.0
    assert policy.deadline(100.0, 2048) == 112.0


def test_a_whole_chunked_body_reaches_the_app_with_its_length():
    status, _, body = run({"transfer-encoding": "chunked"}, [(0, b'{"a"'), (0, b": 1}")])
    assert status == 200
    assert body == {"body": '{"a": 1}', "length": 8}


def test_a_body_slower_than_the_minimum_rate_is_408():
    # 10 bytes after the 0.3 s grace allow 10 ms more; the next part comes far later.
    status, headers, body = run({"content-length": "20"}, [(0.25, b"x" * 10), (1.0, b"y" * 10)])
    assert status == 408
    assert body["code"] == "request_timeout"
    assert headers[b"connection"] == b"close"
    assert b"content-security-policy" in headers


def test_a_slow_body_that_keeps_the_rate_is_taken():
    # The first half, late in the 0.3 s grace, buys 50 ms more; the second half comes
    # 40 ms later: past the grace, within the rate.
    status, _, body = run({"content-length": "100"}, [(0.28, b"x" * 50), (0.04, b"y" * 50)])
    assert status == 200
    assert body["length"] == 100


def test_a_declared_length_over_the_limit_is_413_before_reading():
    status, _, body = run({"content-length": "101"}, [])
    assert (status, body["code"]) == (413, "too_large")


def test_a_chunked_body_over_the_limit_is_413():
    status, _, body = run({"transfer-encoding": "chunked"}, [(0, b"x" * 60), (0, b"x" * 60)])
    assert (status, body["code"]) == (413, "too_large")


def test_a_body_cut_short_is_400_bad_framing():
    status, _, body = run({"content-length": "50"}, [(0, b"x" * 10), (0, None)])
    assert (status, body["code"]) == (400, "bad_framing")


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate,chunked"])
def test_a_transfer_coding_other_than_chunked_is_501(coding):
    status, _, body = run({"transfer-encoding": coding}, [(0, b"abc")])
    assert (status, body["code"]) == (501, "unsupported_transfer_coding")


def test_over_https_the_refusal_carries_hsts():
    app = wsgi_as_asgi(echo_app(), threads=1, policy=POLICY)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    https = scope({"content-length": "1000"}) | {"scheme": "https"}
    asyncio.run(app(https, receive, send))
    assert b"strict-transport-security" in dict(sent[0]["headers"])


# ---- attachments: the one larger body, and answers streamed from files ----

UPLOAD = "/api/v1/inboxes/" + "k" * 43 + "/uploads/" + "b" * 22


def test_only_a_piece_of_an_upload_may_be_larger():
    policy = BodyPolicy(max_bytes=100, min_rate=1000, grace_seconds=0.3, upload_max_bytes=1000)
    piece = scope(method="PATCH") | {"path": UPLOAD}
    assert policy.limit_for(piece) == 1000
    # The same path with another method, and other paths, keep the small limit.
    assert policy.limit_for(piece | {"method": "POST"}) == 100
    assert policy.limit_for(piece | {"path": UPLOAD + "/x"}) == 100
    assert policy.limit_for(scope(method="PATCH")) == 100
    assert BodyPolicy(100, 1000, 0.3).limit_for(piece) == 100


def serve_answer(body_of: int, threads: int = 1) -> tuple[list[dict], list[str]]:
    """GET an answer of `body_of` bytes from a WSGI app whose body is an iterator of
    64 KiB pieces (as a file response is); the messages sent, and what the app saw."""
    seen: list[str] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def pieces():
            for offset in range(0, body_of, 65536):
                seen.append(f"piece {offset}")
                yield bytes(min(65536, body_of - offset))

        class Body:
            def __iter__(self):
                return pieces()

            def close(self):
                seen.append("closed")

        return Body()

    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asgi = wsgi_as_asgi(app, threads=threads, policy=POLICY)
    asyncio.run(asgi(scope(method="GET"), receive, send))
    return sent, seen


def test_a_short_answer_is_sent_whole():
    sent, seen = serve_answer(100_000)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert len(sent[1]["body"]) == 100_000 and seen[-1] == "closed"


def test_a_long_answer_is_streamed_in_pieces_and_closed():
    size = 3 * 1024 * 1024 + 5
    sent, seen = serve_answer(size)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == bytes(size)
    # The first MiB and a little is handed over at once; the rest piece by piece, so
    # no message holds more than that (memory does not grow with the file).
    assert max(len(m["body"]) for m in bodies) <= 1024 * 1024 + 65536
    assert len(bodies) > 30 and not bodies[-1].get("more_body")
    assert seen[-1] == "closed"
