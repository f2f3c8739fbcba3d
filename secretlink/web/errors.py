"""Errors the server answers with: JSON for the API, a plain page for browsers.

A client's mistake is always a 4xx that says what is wrong; internal failures are
a 500 that says nothing about the inside.
"""

from flask import Flask, jsonify, render_template, request
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException

# Messages for the HTTP errors werkzeug raises before our code runs.
_HTTP_MESSAGES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not accept that method"),
    413: ("too_large", "request body is too large"),
    429: ("rate_limited", "too many requests; wait a little and try again"),
}

# What an error page says, in the page's language: its title and sentence by HTTP
# status (the API's JSON errors stay English, stable for programs).
_PAGE_MESSAGES = {
    400: (lazy_gettext("Bad request"), lazy_gettext("This request could not be understood.")),
    404: (lazy_gettext("Not found"), lazy_gettext("There is no page here.")),
    405: (
        lazy_gettext("Method not allowed"),
        lazy_gettext("This page does not accept that kind of request."),
    ),
    413: (lazy_gettext("Too large"), lazy_gettext("The request was too large.")),
    429: (
        lazy_gettext("Too many requests"),
        lazy_gettext("Too many requests; wait a little and try again."),
    ),
    500: (lazy_gettext("Server error"), lazy_gettext("Something went wrong on the server.")),
}


def _page_message(status: int) -> tuple[str, str]:
    title, message = _PAGE_MESSAGES.get(status, _PAGE_MESSAGES[400 if status < 500 else 500])
    return str(title), str(message)


class ApiError(Exception):
    """A client-visible failure: HTTP status, a stable code, and a sentence for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict | None = None,
        page_title: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}  # more members of the JSON answer (say, a fresh puzzle)
        # A page's own error (pages.py) has a translated title and message; any other
        # error reaching a page is said by its status.
        self.page_title = page_title


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
        if error.page_title:
            return _page_error(error.status, error.page_title, error.message)
        return _page_error(error.status, *_page_message(error.status))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("http_error", error.description or ""))
        if _wants_json():
            return _json_error(status, code, message)
        return _page_error(status, *_page_message(status))

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        app.logger.exception("internal error")
        if _wants_json():
            return _json_error(500, "internal_error", "the server failed; nothing was stored")
        return _page_error(500, *_page_message(500))
