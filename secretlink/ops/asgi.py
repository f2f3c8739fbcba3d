"""The app as `secretlink serve` runs it: whole request bodies first, then a thread.

Granian (hyper and rustls, in Rust) parses HTTP and TLS and holds every open
connection as a cheap async task; it closes a connection whose headers are not
complete within the header timeout. The Flask app is WSGI, which reads the body
from inside a worker thread: a client that sends its headers and then its body at
a trickle would hold that thread for as long as it liked. So this layer reads the
whole body on the event loop first, with a deadline that grows with every byte
received (`header_timeout` + bytes so far / `body_min_rate`), and only a request
whose body has fully arrived gets a thread (a pool of `threads` threads).
A body that is too slow is answered 408, one that is too large 413, one whose
framing is broken (bad chunk sizes, chunk data without its CRLF) 400, and one sent
with a transfer coding other than chunked 501: always JSON with the security
headers, and the connection is closed.
"""

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from a2wsgi.wsgi import build_environ

from secretlink.web.security import HEADERS

log = logging.getLogger("secretlink.ops.server")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Given a request's WSGI environ and a way to run a function in a worker thread, its
# whole answer (an object with `status`, `headers` and `body`), or None to pass it on.
OnLoop = Callable[[dict, Callable[..., Awaitable]], Awaitable[Any]]


# The one route whose bodies are larger than a message: a piece of an attachment upload.
UPLOAD_PATH = re.compile(r"/api/v1/inboxes/[^/]+/uploads/[^/]+")
# Answers up to this size are handed over whole; longer ones (an attachment's blob)
# are streamed piece by piece, so a worker's memory does not grow with a file.
WHOLE_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class BodyPolicy:
    """How much of a body is accepted, and how fast it must arrive."""

    max_bytes: int
    min_rate: int  # bytes per second, averaged from the end of the headers
    grace_seconds: float  # allowance before the rate applies (the header timeout)
    # The most a piece of an upload may carry (PATCH on an upload); 0: as max_bytes.
    upload_max_bytes: int = 0

    def limit_for(self, scope: "Scope") -> int:
        """The largest body this request may have: an upload's piece, or max_bytes."""
        path = scope.get("path", "")
        if self.upload_max_bytes and scope.get("method") == "PATCH" and UPLOAD_PATH.fullmatch(path):
            return self.upload_max_bytes
        return self.max_bytes

    def deadline(self, started: float, received: int) -> float:
        """The moment by which more of the body must have arrived."""
        return started + self.grace_seconds + received / self.min_rate


class Refused(Exception):
    """The body will not be read to the end: answer `status` and close."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def refusal_for_broken_framing() -> Refused:
    return Refused(
        400,
        "bad_framing",
        "the request body ended early or its chunked framing is malformed",
    )


def transfer_codings(scope: Scope) -> list[str]:
    codings = []
    for name, value in scope.get("headers", ()):
        if name.lower() == b"transfer-encoding":
            codings += [part.strip().lower() for part in value.decode("latin-1").split(",")]
    return [coding for coding in codings if coding]


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            # The server has checked the header's syntax; it would not be here otherwise.
            return int(value)
    return None


async def read_body(scope: Scope, receive: Receive, policy: BodyPolicy) -> bytes:
    """The whole body, or Refused; never waits past the policy's deadline."""
    if any(coding != "chunked" for coding in transfer_codings(scope)):
        # The parser only decodes chunked; the app would get gzip (or other) bytes as
        # if they were the body. (A coding list that does not end in chunked never
        # gets here: the parser answers it 400 itself.)
        raise Refused(
            501,
            "unsupported_transfer_coding",
            "the only transfer coding accepted is chunked",
        )
    limit = policy.limit_for(scope)
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise Refused(413, "too_large", "request body is too large")
    started = time.monotonic()
    chunks: list[bytes] = []
    received = 0
    while True:
        remaining = policy.deadline(started, received) - time.monotonic()
        if remaining <= 0:
            raise Refused(
                408,
                "request_timeout",
                f"the request body arrived too slowly (at least {policy.min_rate} bytes "
                "per second are needed)",
            )
        try:
            # asyncio.timeout, not wait_for: no extra task per request.
            async with asyncio.timeout(remaining):
                message = await receive()
        except TimeoutError:
            continue  # the deadline check above answers
        if message["type"] == "http.disconnect":
            # Granian reports a body that hyper could not parse (a chunk size `zz`,
            # chunk data without its CRLF) as a disconnect: answer it, in case the
            # client is still there to read the answer.
            raise refusal_for_broken_framing()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise Refused(413, "too_large", "request body is too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def error_headers(scope: Scope, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers the app's own answers carry (secretlink.web.security), for ours too."""
    headers = {name.lower(): value for name, value in HEADERS.items()}
    headers |= {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "cache-control": "no-store",
        # The rest of the body (if any) is not read: the connection cannot be reused.
        "connection": "close",
    }
    if scope.get("scheme") == "https" and not to_onion_name(scope):
        headers["strict-transport-security"] = "max-age=63072000"
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def to_onion_name(scope: Scope) -> bool:
    """Whether the request's Host is an onion name, which gets no HSTS (secretlink/web/onion.py)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"host":
            return value.split(b":")[0].lower().endswith(b".onion")
    return False


async def answer_error(scope: Scope, send: Send, refusal: Refused) -> None:
    body = json.dumps({"error": refusal.message, "code": refusal.code}).encode()
    start = {"type": "http.response.start", "status": refusal.status}
    try:
        await send(start | {"headers": error_headers(scope, body)})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # noqa: S110 - the client left: nobody is there to answer
        pass


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands over the body read already, then waits as the server's."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def with_length(scope: Scope, length: int) -> Scope:
    """The request as the app should see it: the body is whole, so it has a length.

    Without this a chunked body would reach WSGI with no CONTENT_LENGTH, which
    Werkzeug reads as an empty body.
    """
    headers = [
        (name, value)
        for name, value in scope.get("headers", ())
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    if length or scope.get("method") not in ("GET", "HEAD", "OPTIONS", "DELETE"):
        headers.append((b"content-length", str(length).encode()))
    return scope | {"headers": headers}


class WholeBodyFirst:
    """ASGI middleware: read the whole body under the policy, then call `app`."""

    def __init__(self, app: ASGIApp, policy: BodyPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.policy)
        except Refused as refusal:
            log.info("request refused before the app: %d %s", refusal.status, refusal.code)
            await answer_error(scope, send, refusal)
            return
        await self.app(with_length(scope, len(body)), replay(body, receive), send)


class BufferedWSGI:
    """ASGI to WSGI: one hop to a worker thread per request, which runs the app to the
    end and hands back the whole answer.

    The body has fully arrived before (WholeBodyFirst), and nearly every answer of
    this app is built in memory anyway (JSON, pages, static files of a few KiB), so
    those are not streamed: a thread never waits for the event loop or for a client
    that reads slowly, and each request costs one thread hop instead of one per chunk
    (as a streaming adapter such as a2wsgi's WSGIMiddleware needs). The exception is
    an answer longer than WHOLE_ANSWER_BYTES (an attachment's blob, read from its
    file): after its first MiB it is sent one piece at a time, each read in a thread
    hop of its own, so memory stays constant and a slow reader holds no thread while
    it reads. The WSGI environ is built by a2wsgi.

    Before the hop, `on_loop` may answer the request on the event loop itself: the
    message fast path (secretlink/web/fast_path.py), whose message waits for its
    commit without a thread.
    """

    def __init__(self, wsgi_app: Callable, threads: int, on_loop: OnLoop | None = None):
        self.wsgi_app = wsgi_app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")
        self.on_loop = on_loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()  # the whole body, replayed by WholeBodyFirst
        environ = build_environ(scope, io.BytesIO(message.get("body", b"")))
        loop = asyncio.get_running_loop()
        if self.on_loop is not None and await self.answered_on_loop(environ, send):
            return
        try:
            status, headers, body, rest = await loop.run_in_executor(
                self.executor, self.run, environ
            )
        except Exception:
            # Flask answers its own errors; this is a failure outside it. Answer as the
            # app would (JSON, security headers) rather than with the server's bare 500.
            log.exception("internal error outside the app")
            failure = Refused(500, "internal_error", "the server failed; nothing was stored")
            await answer_error(scope, send, failure)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if rest is None:
            await send({"type": "http.response.body", "body": body})
            return
        await self.stream(send, body, rest)

    async def answered_on_loop(self, environ: dict, send: Send) -> bool:
        """Whether `on_loop` answered the request (the message fast path,
        secretlink/web/fast_path.py), without a thread of its own."""
        loop = asyncio.get_running_loop()

        def in_thread(function: Callable, *args) -> Awaitable:
            return loop.run_in_executor(self.executor, function, *args)

        reply = await self.on_loop(environ, in_thread)
        if reply is None:
            return False
        status = int(reply.status.split(" ", 1)[0])
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return True

    async def stream(self, send: Send, first: bytes, rest) -> None:
        """Send a long answer's pieces, each read from the app in a thread hop."""
        loop = asyncio.get_running_loop()
        try:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            while True:
                piece = await loop.run_in_executor(self.executor, next, rest, None)
                if piece is None:
                    break
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # the client left mid-answer
        finally:
            if hasattr(rest, "close"):
                await loop.run_in_executor(self.executor, rest.close)

    def run(self, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes, Any]:
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info=None):
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
            ]
            return chunks.append  # WSGI's write(), which Flask never uses

        chunks: list[bytes] = []
        iterable = self.wsgi_app(environ, start_response)
        iterator = iter(iterable)
        size = 0
        try:
            for chunk in iterator:
                chunks.append(chunk)
                size += len(chunk)
                if size > WHOLE_ANSWER_BYTES:
                    # Long: the rest is streamed (and the iterable closed) by stream().
                    return (
                        answer["status"],
                        answer["headers"],
                        b"".join(chunks),
                        _Rest(iterator, iterable),
                    )
        except BaseException:
            if hasattr(iterable, "close"):
                iterable.close()
            raise
        if hasattr(iterable, "close"):
            iterable.close()
        return answer["status"], answer["headers"], b"".join(chunks), None


class _Rest:
    """The rest of a long WSGI answer: next() pieces, close() the app's iterable."""

    def __init__(self, iterator, iterable):
        self._iterator = iterator
        self._iterable = iterable

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        if hasattr(self._iterable, "close"):
            self._iterable.close()


def wsgi_as_asgi(
    wsgi_app: Callable, threads: int, policy: BodyPolicy, on_loop: OnLoop | None = None
) -> ASGIApp:
    """The WSGI app in a pool of `threads` threads, behind WholeBodyFirst; `on_loop`
    answers the requests it takes on the event loop first."""
    return WholeBodyFirst(BufferedWSGI(wsgi_app, threads, on_loop), policy)
