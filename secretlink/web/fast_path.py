"""Sending a message without Flask's request cycle: the common request, answered whole.

A message is the one request that arrives in floods, and Flask's request cycle
around it (the request context, the URL adapter, the session, every before- and
after-request hook, the response object) cost as much CPU as the message's own checks
and its storage together; so did handing each request to a thread and waiting there
for the commit (docs/PERFORMANCE.md, "The message fast path"). This module answers
`POST /api/v1/inboxes/<key>/messages` itself when the request is the common kind: a
Host that names one of the instance's own origins (not the onion origin, whose
answers differ), no onion circuit header, a JSON object body with its length
declared. It runs the endpoint's own steps (`secretlink.web.api.messages`: the
checks, the store, the counting, in the app's context), so the checks and their
order are the view's; what it does itself is the rest of what the request cycle
would have done for this route, and no more:

- the Host check, as an exact match against the origins' canonical Host values;
- the sender's own rate limit, counted in Flask-Limiter's counter for the route
  (`limits.ClientBudget`), and its headers;
- the answer: JSON, the security headers (secretlink/web/security.py), no-store.

Two ways in. As WSGI middleware (`MessageFastPath.__call__`, for every WSGI server
and the tests' client), in the thread that runs the app. And from `secretlink serve`'s
body layer (`answer_on_loop`, called by secretlink/ops/asgi.py), on the event loop:
the checks run there, the message waits for its commit without holding a thread, and
only a refusal's lookups go to a thread. The event loop takes a message only when
nothing on the accepted path waits for the network: without Redis (whose limits and
load counters are network calls), and without attachments (their blobs are files and
rows read first).

Every other request (another Host spelling, a body that is not a JSON object, any
other route or method) goes to Flask unchanged, before anything is counted, and the
route's Flask view answers it with the same steps. tests/test_fast_path.py sends the
same requests every way and compares the answers.
"""

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from io import BytesIO

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

from secretlink.web.api import messages
from secretlink.web.api.common import inbox_key
from secretlink.web.errors import ApiError
from secretlink.web.limits import ClientBudget, hashed_client, network_of
from secretlink.web.onion import CIRCUIT_HEADER
from secretlink.web.origin import host_values
from secretlink.web.security import HEADERS

ROUTE = re.compile(r"/api/v1/inboxes/([^/]+)/messages")
CIRCUIT_KEY = "HTTP_" + CIRCUIT_HEADER.upper().replace("-", "_")
INTERNAL_ERROR = {"error": "the server failed; nothing was stored", "code": "internal_error"}
# As Flask-Limiter's refusal reads through the app's error handler (errors.py).
CLIENT_LIMITED = {"error": "too many requests; wait a little and try again", "code": "rate_limited"}

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
# Runs a function in a worker thread: (function, *args) -> awaitable of its result.
InThread = Callable[..., Awaitable]


@dataclass
class Reply:
    """One answer, whole: the status line, the headers, the body."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Outcome:
    status: int
    payload: dict
    retry_after: int | None = None

    @classmethod
    def of(cls, error: ApiError) -> "Outcome":
        """As the app's error handlers answer it (errors.py, limits.py, api/settings.py)."""
        payload = {**error.extra, "error": error.message, "code": error.code}
        return cls(error.status, payload, getattr(error, "retry_after", None))


class MessageFastPath:
    """WSGI middleware in front of the Flask app (and inside ProxyFix, so the address,
    scheme and Host it sees are the ones the app would)."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp):
        self.app = app
        self.flask_wsgi = flask_wsgi
        settings = app.config["SECRETLINK"]
        onion = app.extensions["secretlink.onion_origin"]
        origins = app.extensions["secretlink.origins"]
        self.hosts = host_values(tuple(o for o in origins if str(o) != onion))
        self.max_bytes: int = app.config["MAX_CONTENT_LENGTH"]
        self.static_headers = [
            *HEADERS.items(),
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ]
        self.on_loop = not settings.redis_url
        # The event loop gets the environ before ProxyFix has rewritten it.
        hops = settings.trusted_proxy_hops
        self.proxy_fix = (
            ProxyFix(_environ_only, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
            if hops
            else None
        )

    # ---- as WSGI middleware ----

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        taken = self.take(environ)
        if taken is None:
            return self.flask_wsgi(environ, start_response)
        key_text, fields = taken
        client, broken = self.charge_client(environ)
        outcome = Outcome(429, dict(CLIENT_LIMITED)) if broken else self.submit(key_text, fields)
        reply = self.reply(environ, outcome, client, broken)
        start_response(reply.status, reply.headers)
        return [reply.body]

    def submit(self, key_text: str, fields: dict) -> Outcome:
        with self.app.app_context():
            try:
                return Outcome(201, {"id": messages.submit(inbox_key(key_text), fields)})
            except ApiError as error:
                return Outcome.of(error)
            except Exception:
                return self.internal_error()

    # ---- on the event loop (secretlink/ops/asgi.py) ----

    async def answer_on_loop(self, environ: dict, in_thread: InThread) -> Reply | None:
        """The answer to a message, made on the event loop; None (its body still
        unread) for any other request, which goes to the app in a thread."""
        if not self.on_loop:
            return None
        if self.proxy_fix is not None:
            # A copy: a request declined here reaches the app's own ProxyFix as it came.
            environ = self.proxy_fix(dict(environ), None)
        taken = self.take(environ)
        if taken is None or taken[1].get("attachments"):
            environ["wsgi.input"].seek(0)
            return None
        key_text, fields = taken
        client, broken = self.charge_client(environ)
        if broken:
            outcome = Outcome(429, dict(CLIENT_LIMITED))
        else:
            try:
                outcome = await self.submit_on_loop(key_text, fields, in_thread)
            except Exception:
                outcome = self.internal_error()
        return self.reply(environ, outcome, client, broken)

    async def submit_on_loop(self, key_text: str, fields: dict, in_thread: InThread) -> Outcome:
        """messages.submit's steps, the store awaited and the refusals' lookups (the
        inbox's state, its hourly cap) in a thread. The app's context is pushed only
        between awaits: the other requests on the loop run in between."""
        refused = None
        with self.app.app_context():
            try:
                public_key = inbox_key(key_text)
                envelope, _ = messages.parsed_message(fields)
            except ApiError as error:
                return Outcome.of(error)
            try:
                place, spend = messages.admissible(public_key, fields, [])
            except ApiError as error:
                refused = error
        if refused is not None:
            first = messages.refusal_first
            return Outcome.of(await in_thread(self.in_context, first, public_key, refused))
        storage = self.app.extensions["secretlink.storage"]
        with place:  # given back unless the message is stored and charged
            try:
                message_id = await storage.add_message_async(public_key, envelope, spend)
            except messages.STORAGE_REFUSALS as refused:
                return Outcome.of(
                    await in_thread(self.in_context, messages.storage_refusal, public_key, refused)
                )
            with self.app.app_context():
                try:
                    return Outcome(201, {"id": messages.accepted(public_key, message_id, place)})
                except ApiError as error:
                    return Outcome.of(error)

    def in_context(self, function: Callable, *args):
        with self.app.app_context():
            return function(*args)

    # ---- shared by both ----

    def take(self, environ: dict) -> tuple[str, dict] | None:
        """(the key as written in the path, the JSON object) if this request is one the
        fast path answers, else None, having counted and changed nothing."""
        if environ.get("REQUEST_METHOD") != "POST" or CIRCUIT_KEY in environ:
            return None
        if environ.get("HTTP_HOST") not in self.hosts:
            return None
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        match = ROUTE.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        body = self.read_body(environ)
        try:
            fields = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict):
            # The app answers it (415, 413, 400 bad_json...): give back the body read.
            if body is not None:
                environ["wsgi.input"] = BytesIO(body)
            return None
        return match.group(1), fields

    def read_body(self, environ: dict) -> bytes | None:
        """The whole body if its length is declared and within the app's limit."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= self.max_bytes:
            return None
        return environ["wsgi.input"].read(length)

    def charge_client(self, environ: dict) -> tuple[str | None, object | None]:
        """The sender's own budget, counted (Flask-Limiter counts it on entry): the
        client's key and the limit it broke, if any; (None, None) with limits off."""
        budget: ClientBudget | None = self.app.extensions.get("secretlink.send_budget")
        if budget is None:
            return None, None
        rotating = self.app.extensions["secretlink.client_key"]
        client = hashed_client(rotating, network_of(environ.get("REMOTE_ADDR") or ""))
        return client, budget.charge(client)

    def internal_error(self) -> Outcome:
        self.app.logger.exception("internal error")
        return Outcome(500, dict(INTERNAL_ERROR))

    def reply(self, environ: dict, outcome: Outcome, client, broken) -> Reply:
        headers = list(self.static_headers)
        if environ.get("wsgi.url_scheme") == "https":
            headers.append(("Strict-Transport-Security", "max-age=63072000"))
        budget: ClientBudget | None = self.app.extensions.get("secretlink.send_budget")
        if budget is not None:
            headers += budget.headers(client, broken, outcome.retry_after)
        elif outcome.retry_after is not None:
            headers.append(("Retry-After", str(outcome.retry_after)))
        body = self.app.json.dumps(outcome.payload, separators=(",", ":")).encode() + b"\n"
        headers.append(("Content-Length", str(len(body))))
        status = outcome.status
        return Reply(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers, body)


def _environ_only(environ: dict, _start_response) -> dict:
    """ProxyFix's inner app for the event loop: the environ as the app would see it."""
    return environ


def install(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI callable (before ProxyFix wraps it)."""
    fast = MessageFastPath(app, app.wsgi_app)
    app.wsgi_app = fast  # type: ignore[method-assign]
    app.extensions["secretlink.fast_path"] = fast
