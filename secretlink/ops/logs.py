"""Logging that cannot leak who the clients are.

secretlink itself never logs addresses or user agents, and the server it runs
(granian, for `secretlink serve`) writes no access log; the tests' live server
(waitress) writes none either. As a second line of defence, every log
record passes through a filter that replaces anything shaped like an IP address
or an inbox key, so a library's debug message (a server may log a peer's address
or a request's path at DEBUG) cannot put one in the log either.

Flask-Limiter logs every refusal at INFO, as "ratelimit 2 per 1 minute
(client:<hash>) exceeded at endpoint: send-client". The hash is no address, but
it is the same for every request a client makes within the hour, so a log kept
for months would let someone link one client's refusals (and, with a copy of the
hashing key from Redis, test guessed addresses against it). Its logger
("flask-limiter") is therefore held at WARNING, or at the configured level when
that is higher, unless the operator asks for DEBUG: then the line is logged, with
the hash but, after the filter, never an address or an inbox key. Its warnings
(storage unreachable) and errors carry no client id and follow the configured level.
"""

import logging
import re

REDACTED = "[address]"
_IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"
# Full form (eight groups), or any form with "::"; clock times such as 12:30:45 are
# neither.
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?<![0-9A-Fa-f:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:)*{_H}?::(?:{_H}:)*(?:{_H})?)"
    r"(?![0-9A-Fa-f:])"
)
ADDRESS = re.compile(f"{_IPV4}|{_IPV6}")
# The addresses the service itself listens on are not client data.
KEEP = {"127.0.0.1", "0.0.0.0", "::", "::1"}  # noqa: S104


# Inbox keys (43 base64url characters) say which inbox a request was about.
INBOX_KEY = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def redact(text: str) -> str:
    text = INBOX_KEY.sub("[key]", text)
    return ADDRESS.sub(lambda m: m.group(0) if m.group(0) in KEEP else REDACTED, text)


class RedactAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# The servers' and libraries' loggers that keep handlers of their own (granian's
# "_granian" is also where its Rust side logs); they are sent through the root's.
SERVER_LOGGERS = ("_granian", "granian.access", "waitress", "flask-limiter", "werkzeug")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    """Send every logger's output through one redacting stderr handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactAddresses())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Alembic narrates every migration step at INFO; the outcome is logged by us.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    quiet_limiter_log(level)


def quiet_limiter_log(level: str) -> None:
    """Keep Flask-Limiter's per-refusal INFO lines (with a client id) out unless at DEBUG.

    A child logger's own level decides what it emits; the root's level is not
    consulted again, so the level is set here rather than left to the root's.
    """
    wanted = logging.getLevelName(level)
    wanted = wanted if isinstance(wanted, int) else logging.INFO
    quiet = logging.DEBUG if wanted <= logging.DEBUG else max(logging.WARNING, wanted)
    logging.getLogger("flask-limiter").setLevel(quiet)


_FILTERED_LOGGERS = ("werkzeug", "waitress", "_granian", "granian.access", "flask-limiter")


def install_filters() -> None:
    """Redact addresses in what the servers' own loggers write (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactAddresses) for f in logger.filters):
            logger.addFilter(RedactAddresses())
