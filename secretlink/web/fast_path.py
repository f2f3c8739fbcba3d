"""Sending a message without Flask's request cycle: the common request, answered whole.

A message is the one request that arrives in floods, and Flask's request cycle
around it (the request context, the URL adapter, the session, every before- and
after-request hook, the response object) cost as much CPU as the message's own checks
and its storage together (docs/PERFORMANCE.md, "The message fast path"). This WSGI
layer answers `POST /api/v1/inboxes/<key>/messages` itself when the request is the
common kind: a Host that names one of the instance's own origins (not the onion
origin, whose answers differ), no onion circuit header, a JSON object body with its
length declared. It runs the endpoint's own code (`messages.submit`, in the app's
context), so the checks and their order are the view's; what it does itself is the
rest of what the request cycle would have done for this route, and no more:

- the Host check, as an exact match against the origins' canonical Host values;
- the sender's own rate limit, counted in Flask-Limiter's counter for the route
  (`limits.ClientBudget`), and its headers;
- the answer: JSON, the security headers (secretlink/web/security.py), no-store.

Every other request (another Host spelling, a body that is not a JSON object, any
other route or method) goes to Flask unchanged, before anything is counted, and the
route's Flask view answers it by the same `submit`. tests/test_fast_path.py sends the
same requests both ways and compares the answers.
"""

import json
import re
from collections.abc import Callable, Iterable
from io import BytesIO

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from secretlink.web.api.common import inbox_key
from secretlink.web.api.messages import submit
from secretlink.web.errors import ApiError
from secretlink.web.limits import ClientBudget, hashed_client, network_of
from secretlink.web.onion import CIRCUIT_HEADER
from secretlink.web.origin import host_values
from secretlink.web.security import HEADERS

ROUTE = re.compile(r"/api/v1/inboxes/([^/]+)/messages")
CIRCUIT_KEY = "HTTP_" + CIRCUIT_HEADER.upper().replace("-", "_")
INTERNAL_ERROR = {"error": "the server failed; nothing was stored", "code": "internal_error"}

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class MessageFastPath:
    """WSGI middleware in front of the Flask app (and inside ProxyFix, so the address,
    scheme and Host it sees are the ones the app would)."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp):
        self.app = app
        self.flask_wsgi = flask_wsgi
        onion = app.extensions["secretlink.onion_origin"]
        origins = app.extensions["secretlink.origins"]
        self.hosts = host_values(tuple(o for o in origins if str(o) != onion))
        self.max_bytes: int = app.config["MAX_CONTENT_LENGTH"]
        self.static_headers = [
            *HEADERS.items(),
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = self.route(environ)
        if match is None:
            return self.flask_wsgi(environ, start_response)
        body = self.read_body(environ)
        try:
            fields = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict):
            # Flask answers it (415, 413, 400 bad_json...): hand over the body read.
            if body is not None:
                environ["wsgi.input"] = BytesIO(body)
            return self.flask_wsgi(environ, start_response)
        return self.answer(environ, start_response, match.group(1), fields)

    def route(self, environ: dict) -> re.Match | None:
        """The path's match if this request is one the fast path answers, else None."""
        if environ.get("REQUEST_METHOD") != "POST" or CIRCUIT_KEY in environ:
            return None
        if environ.get("HTTP_HOST") not in self.hosts:
            return None
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        return ROUTE.fullmatch(environ.get("PATH_INFO", ""))

    def read_body(self, environ: dict) -> bytes | None:
        """The whole body if its length is declared and within the app's limit."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= self.max_bytes:
            return None
        return environ["wsgi.input"].read(length)

    def answer(
        self, environ: dict, start_response: Callable, key_text: str, fields: dict
    ) -> Iterable[bytes]:
        budget: ClientBudget | None = self.app.extensions.get("secretlink.send_budget")
        client = broken = None
        if budget is not None:
            rotating = self.app.extensions["secretlink.client_key"]
            client = hashed_client(rotating, network_of(environ.get("REMOTE_ADDR") or ""))
            broken = budget.charge(client)
        retry_after = None
        if broken is not None:
            # As Flask-Limiter's refusal reads through the app's error handler.
            status = 429
            payload = {"error": "too many requests; wait a little and try again"}
            payload["code"] = "rate_limited"
        else:
            status, payload, retry_after = self.run_submit(key_text, fields)
        headers = list(self.static_headers)
        if environ.get("wsgi.url_scheme") == "https":
            headers.append(("Strict-Transport-Security", "max-age=63072000"))
        if budget is not None:
            headers += budget.headers(client, broken, retry_after)
        elif retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        data = self.app.json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        headers.append(("Content-Length", str(len(data))))
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
        return [data]

    def run_submit(self, key_text: str, fields: dict) -> tuple[int, dict, int | None]:
        """(status, JSON members, Retry-After or None): the view's answer, or its error
        handlers' (secretlink/web/errors.py, limits.py, api/settings.py)."""
        with self.app.app_context():
            try:
                message_id = submit(inbox_key(key_text), fields)
            except ApiError as error:
                payload = {**error.extra, "error": error.message, "code": error.code}
                return error.status, payload, getattr(error, "retry_after", None)
            except Exception:
                self.app.logger.exception("internal error")
                return 500, dict(INTERNAL_ERROR), None
        return 201, {"id": message_id}, None


def install(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI callable (before ProxyFix wraps it)."""
    app.wsgi_app = MessageFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
