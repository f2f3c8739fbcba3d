"""Errors the server answers with: JSON for the API, a plain page for browsers.

A client's mistake is always a 4xx that says what is wrong; internal failures are
a 500 that says nothing about the inside.
"""

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

# Messages for the HTTP errors werkzeug raises before our code runs.
_HTTP_MESSAGES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not accept that method"),
    413: ("too_large", "request body is too large"),
    429: ("rate_limited", "too many requests; wait a little and try again"),
}


class ApiError(Exception):
    """A client-visible failure: HTTP status, a stable code, and a sentence for people."""

    def __init__(self, status: int, code: str, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}  # more members of the JSON answer (say, a fresh puzzle)


def require_text(name: str, value: str) -> str:
    """`value` if it is text that UTF-8 can encode, else 400 `bad_field`.

    JSON may carry a lone surrogate (`"\\ud800"`): valid JSON, but not text. Such a
    string cannot be encoded, so it could be neither signed, hashed nor stored.
    """
    if value.isascii():  # the common case, and O(1) for Python's compact strings
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400,
            "bad_field",
            f"'{name}' must be valid Unicode text; it holds a lone surrogate (such as \\ud800)",
        ) from None
    return value


def _wants_json() -> bool:
    # `//api/...` too: it is an API client's typo, not a browser's page.
    return request.path.lstrip("/").startswith("api/")


def _json_error(status: int, code: str, message: str, extra: dict | None = None):
    response = jsonify(**(extra or {}), error=message, code=code)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="secretlink"'
    return response


def _page_error(status: int, title: str, message: str):
    return render_template("error.html", title=title, message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        if _wants_json():
            return _json_error(error.status, error.code, error.message, error.extra)
        return _page_error(error.status, error.code.replace("_", " ").capitalize(), error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("http_error", error.description or ""))
        if _wants_json():
            return _json_error(status, code, message)
        return _page_error(
            status, error.name, message if status != 404 else "There is no page here."
        )

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        app.logger.exception("internal error")
        if _wants_json():
            return _json_error(500, "internal_error", "the server failed; nothing was stored")
        return _page_error(500, "Server error", "Something went wrong on the server.")
