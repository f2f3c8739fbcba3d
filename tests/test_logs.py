"""The address filter every log record passes through."""

import logging

import pytest

from secretlink.ops.logs import RedactAddresses, quiet_limiter_log, redact


@pytest.mark.parametrize(
    "text",
    [
        "Invalid request from ip=203.0.113.5: bad header",
        "peer 2001:db8::1 closed",
        "peer [2001:db8:aa::17]:5000",
        "forwarded for 198.51.100.23, 10.0.0.1",
    ],
)
def test_client_addresses_are_replaced(text):
    cleaned = redact(text)
    for address in ("203.0.113.5", "2001:db8::1", "2001:db8:aa::17", "198.51.100.23", "10.0.0.1"):
        assert address not in cleaned
    assert "[address]" in cleaned


def test_inbox_keys_in_paths_are_replaced():
    line = "PUT /api/v1/inboxes/M5S4Cvwy0Dn10WhGNv3PoZ7ATfDVV1tLyI1j6JxYz0A/messages"
    assert redact(line) == "PUT /api/v1/inboxes/[key]/messages"


def test_listening_addresses_and_times_survive():
    text = "Listening at: http://127.0.0.1:8000 (1234) at 12:30:45, version 1.2.3"
    assert redact(text) == text


def test_filter_rewrites_the_record_including_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "from %s", ("192.0.2.4",), None)
    RedactAddresses().filter(record)
    assert record.getMessage() == "from [address]"


@pytest.fixture
def limiter_logger():
    logger = logging.getLogger("flask-limiter")
    saved = logger.level
    yield logger
    logger.setLevel(saved)


@pytest.mark.parametrize(
    ("level", "refusals_logged", "warnings_logged"),
    [
        ("DEBUG", True, True),
        ("INFO", False, True),
        ("WARNING", False, True),
        ("ERROR", False, False),
    ],
)
def test_limiter_refusals_with_client_ids_are_logged_only_at_debug(
    limiter_logger, level, refusals_logged, warnings_logged
):
    """Flask-Limiter logs "ratelimit ... (client:<hash>) exceeded" at INFO."""
    quiet_limiter_log(level)
    assert limiter_logger.isEnabledFor(logging.INFO) is refusals_logged
    # "Rate limit storage unreachable" is a warning, and carries no client id.
    assert limiter_logger.isEnabledFor(logging.WARNING) is warnings_logged
