"""One typed registry of every setting, read from SECRETLINK_* environment variables.

Each setting is one field of `Settings` with its type, default and a sentence of
documentation; `Settings.from_env()` reads and validates them all at start-up, so a
bad value stops the service with a clear message instead of failing later.
`python -m secretlink.settings` prints the table in docs/SETTINGS.md.
"""

import contextlib
import importlib.util
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from secretlink.crypto.origin import InvalidOriginError, canonical_origin, url_rest

# The largest v1 envelope (see crypto/SPEC.md); repeated here to keep this module light.
V1_MAX_ENVELOPE = 65586
V1_MIN_ENVELOPE = 306
# Attachments (issue 11): the largest file an operator may allow.
MAX_ATTACHMENT_FILE_BYTES = 1 << 30
BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


# ---- parsers: each raises ValueError with a sentence for the operator ----


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(f"must be a whole number of at least {minimum}")
        return value

    return parse


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _origin(text: str) -> str:
    try:
        origin = canonical_origin(text)
        rest = url_rest(text)
    except InvalidOriginError as exc:
        raise ValueError(
            f"must be an http:// or https:// URL such as https://secretlink.example ({exc})"
        ) from None
    if rest not in ("", "/"):
        raise ValueError("must be an origin only (secretlink is served from the root of a host)")
    return origin


# A v3 onion name: 56 base32 characters (the service's key, a checksum and a version).
ONION_V3_NAME = re.compile(r"[a-z2-7]{56}\.onion")


def _onion_origin(text: str) -> str:
    origin = _origin(text)
    parts = urlsplit(origin)
    # Tor itself authenticates and encrypts an onion connection, and tor hands it to
    # the onion listener as plain HTTP: an https:// onion origin would be a third
    # layer that nothing here serves.
    if parts.scheme != "http" or not ONION_V3_NAME.fullmatch(parts.hostname or ""):
        raise ValueError(
            "must be http:// and a v3 onion name (56 letters a-z and digits 2-7, then "
            ".onion), e.g. the name in the HiddenServiceDir's hostname file"
        )
    return origin


def _listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT of a listener; an IPv6 address in brackets."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8081 (an IPv6 address in brackets)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("must be HOST:PORT; close the IPv6 address's bracket: [::1]:8081")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("must be HOST:PORT with an IPv6 address in brackets, e.g. [::1]:8081")
    return host, int(port)


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _rate_limit(text: str) -> str:
    # Imported here, not at the top: the CLI reads settings too (the Argon2 cost of
    # new key files) and should not load the rate-limit library at every start.
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError:
        raise ValueError("must be limits such as '10/minute;100/hour'") from None
    return text.strip()


def _redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text.strip()


def _hostnames(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError("must list at least one host name")
    return names


def _header_timeout(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 60:
        raise ValueError("must be from 1 to 60 seconds")
    return value


def _pow_bits(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 24:
        raise ValueError("must be from 0 (off) to 24 bits")
    return value


def _fresh_seconds(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 120:
        # Longer would let stockpiled puzzles dodge the risen difficulty for longer.
        raise ValueError("must be from 1 to 120 seconds (it may shorten the rule, not lengthen it)")
    return value


def _backup_memory(text: str) -> int:
    from secretlink.crypto.protected_keyfile import MAX_MEMORY_KIB, MIN_MEMORY_KIB

    value = int(text)
    if not MIN_MEMORY_KIB <= value <= MAX_MEMORY_KIB:
        raise ValueError(
            f"must be from {MIN_MEMORY_KIB} to {MAX_MEMORY_KIB} KiB (what readers accept)"
        )
    return value


def _backup_passes(text: str) -> int:
    from secretlink.crypto.protected_keyfile import MAX_PASSES, MIN_PASSES

    value = int(text)
    if not MIN_PASSES <= value <= MAX_PASSES:
        raise ValueError(f"must be from {MIN_PASSES} to {MAX_PASSES} (what readers accept)")
    return value


def _envelope_limit(text: str) -> int:
    value = int(text)
    if not V1_MIN_ENVELOPE <= value <= V1_MAX_ENVELOPE:
        raise ValueError(f"must be from {V1_MIN_ENVELOPE} to {V1_MAX_ENVELOPE} bytes")
    return value


def _attachment_file_limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_ATTACHMENT_FILE_BYTES:
        raise ValueError(f"must be from 1 to {MAX_ATTACHMENT_FILE_BYTES} bytes (1 GiB)")
    return value


def _upload_ttl(text: str) -> int:
    value = int(text)
    if not 60 <= value <= 86400:
        raise ValueError("must be from 60 seconds to 86400 (a day)")
    return value


def _blob_store(text: str) -> str:
    from secretlink.store.blob_backends import DIRECTORY, parse_s3_url

    value = text.strip()
    if value == DIRECTORY:
        return value
    location = parse_s3_url(value)  # ValueError with a sentence
    if importlib.util.find_spec("boto3") is None:
        raise ValueError(
            "an s3:// store needs boto3, which is not installed: pip install 'secretlink[s3]'"
        )
    return location.url


def _endpoint_url(text: str) -> str:
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://s3.example:9000")
    if parts.username is not None or parts.password is not None or parts.query:
        raise ValueError(
            "must hold no credentials or query: give the keys in AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or boto3's other usual places)"
        )
    return value


def _notify_timeout(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 60:
        raise ValueError("must be from 1 to 60 seconds")
    return value


def _notify_attempts(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10:
        raise ValueError("must be from 1 to 10")
    return value


def _push_contact(text: str) -> str:
    value = text.strip()
    if not (value.startswith("mailto:") or value.startswith("https://")) or len(value) > 200:
        raise ValueError("must be a mailto: or https: URL (at most 200 characters)")
    return value


def _vapid_private_key(text: str) -> str:
    from secretlink.notify.keys import vapid_private_key

    value = text.strip()
    if len(value) != 43 or not set(value) <= BASE64URL:
        raise ValueError("must be 32 bytes in unpadded base64url (43 characters)")
    vapid_private_key(value)  # ValueError if it is no P-256 private key
    return value


def _database_url(text: str) -> str:
    """A URL SQLAlchemy can parse, for SQLite or PostgreSQL, whose driver is installed.

    The messages never repeat the password. Imported here, not at the top: the client
    commands read no database settings and should not pay for loading SQLAlchemy.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError(
            "not a database URL such as postgresql+psycopg://user@host/db or "
            "sqlite:////path/to/secretlink.sqlite3"
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"{shown} is neither SQLite nor PostgreSQL, the databases supported")
    try:
        url.get_dialect().import_dbapi()
    except ArgumentError:
        raise ValueError(f"{shown} names a database driver SQLAlchemy does not know") from None
    except ImportError as exc:
        raise ValueError(
            f"the driver of {shown} is not installed ({exc}); use postgresql+psycopg://"
        ) from None
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"{shown} has a port out of range")
    return text.strip()


def setting(
    default: Any,
    parse: Callable[[str], Any],
    doc: str,
    shown_default: str = "",
    secret: bool = False,
):
    """A Settings field: its parser and documentation travel with it.

    A `secret` setting's value is never repeated in an error message.
    """
    metadata = {"parse": parse, "doc": doc, "shown": shown_default, "secret": secret}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    data_dir: Path | None = setting(
        None,
        Path,
        "Folder for the SQLite database, the generated secret key and certificates.",
        "Flask's instance folder (`instance/` in a checkout); `./secretlink-data` for the zipapp",
    )
    database_url: str | None = setting(
        None,
        _database_url,
        "SQLAlchemy database URL, SQLite or PostgreSQL, e.g. `postgresql+psycopg://user@host/db`.",
        "`sqlite:///<data dir>/secretlink.sqlite3`",
        secret=True,  # it may hold a password
    )
    secret_key: str | None = setting(
        None,
        str,
        "Signs challenges and access tokens (at least 32 characters). Every worker and "
        "machine of one instance must share it.",
        "generated once into `<data dir>/secret_key` (mode 0600)",
        secret=True,
    )
    base_url: str | None = setting(
        None,
        _origin,
        "Public origin, e.g. `https://secretlink.example`: links and proofs of possession "
        "use it, and a request whose Host is not on the origin list (this, the onion "
        "origin, or else the loopback bind address) is refused with 400. Required by "
        "`secretlink serve` on a non-loopback address.",
        "none: on a loopback bind, the bind address itself",
    )
    onion_url: str | None = setting(
        None,
        _onion_origin,
        "The second entry of the origin list: the instance as a Tor onion service, "
        "`http://` and a v3 name (56 characters, then `.onion`). Requests with its Host "
        "are answered for it (links and proofs use it, no HSTS); pages on the public "
        "origin send `Onion-Location` pointing to it.",
        "none",
    )
    onion_listen: tuple[str, int] | None = setting(
        None,
        _listen_address,
        "HOST:PORT of a second listener for tor's `HiddenServicePort`, e.g. "
        "`127.0.0.1:8081`. Every connection on it must start with a PROXY protocol "
        "header (tor's `HiddenServiceExportCircuitID haproxy`) and is refused without "
        "one; its source address, tor's circuit id, is the client for the rate limits.",
        "none",
    )
    trust_host_header: bool = setting(
        False,
        _bool,
        "With no origin set, accept any well-formed Host and take the origin from it, "
        "even on a public address (`serve --trust-host-header`). Then a relay can pass "
        "its own name as Host and have proofs made for it accepted: use only behind a "
        "proxy that sends one fixed Host.",
    )
    host: str = setting("127.0.0.1", str, "Address `secretlink serve` listens on.")
    port: int = setting(8000, _int_at_least(1), "Port `secretlink serve` listens on.")
    workers: int = setting(2, _int_at_least(1), "Worker processes of `secretlink serve`.")
    threads: int = setting(
        8,
        _int_at_least(1),
        "Threads per worker process (more threads let concurrent messages share a commit).",
    )
    header_timeout: int = setting(
        10,
        _header_timeout,
        "Seconds a client has to send a request's headers (from 1 to 60), and the grace "
        "before `SECRETLINK_BODY_MIN_RATE` applies to its body; an idle connection is "
        "closed after as long. Headers are at most 16 KiB: the least rate an honest "
        "client needs is 16 KiB / this (1.6 KiB/s at 10 s).",
    )
    body_min_rate: int = setting(
        1024,
        _int_at_least(1),
        "Bytes per second a request body must average after the header timeout's grace: "
        "a body must be complete within header timeout + its size / this rate, or the "
        "request is answered 408 and the connection closed. The largest message (88 KiB) "
        "may take 10 + 86 s at the defaults.",
    )
    trusted_proxy_hops: int = setting(
        0,
        _int_at_least(0),
        "Number of reverse proxies in front whose X-Forwarded-For/-Proto/-Host headers "
        "are trusted. 0 trusts none.",
    )
    tls_cert: Path | None = setting(
        None, Path, "PEM certificate (chain) for serving HTTPS directly.", "none (plain HTTP)"
    )
    tls_key: Path | None = setting(None, Path, "PEM private key for `SECRETLINK_TLS_CERT`.", "none")
    tls_hostnames: tuple[str, ...] = setting(
        ("localhost", "127.0.0.1"),
        _hostnames,
        "Comma-separated names and addresses a `--self-signed` certificate is made for.",
        "`localhost,127.0.0.1`",
    )
    auto_upgrade: bool = setting(
        True, _bool, "Upgrade the database schema to the latest migration when serving starts."
    )
    max_envelope_bytes: int = setting(
        V1_MAX_ENVELOPE,
        _envelope_limit,
        "Largest envelope accepted, in bytes (306 to 65586); lower it to refuse long messages.",
    )
    attachment_max_file_bytes: int = setting(
        25 * 1024 * 1024,
        _attachment_file_limit,
        "Largest attached file, in bytes before encryption (1 to 1073741824, 1 GiB). The "
        "server sees only encrypted, padded blobs: it takes any blob no longer than that "
        "of a file of exactly this size (up to 12 % more). Inboxes take attachments only "
        "if their owner turned them on.",
        "`26214400` (25 MiB)",
    )
    attachment_max_message_bytes: int = setting(
        100 * 1024 * 1024,
        _int_at_least(1),
        "Most attachment bytes one message carries, counted as stored (encrypted and "
        "padded) blob bytes; at least the blob of the largest file.",
        "`104857600` (100 MiB)",
    )
    attachment_upload_ttl: int = setting(
        3600,
        _upload_ttl,
        "Seconds an upload may take, from its start to the message that lists it (60 to "
        "86400): its capability expires then, and a blob not sent with a message by then "
        "is abandoned and deleted by the next purge.",
    )
    inbox_max_attachment_bytes: int = setting(
        256 * 1024 * 1024,
        _int_at_least(0),
        "Most attachment bytes (stored blobs and uploads under way) one inbox holds; an "
        "upload past it is refused (409 `inbox_full`). 0: no cap.",
        "`268435456` (256 MiB)",
    )
    blob_store: str = setting(
        "directory",
        _blob_store,
        "Where complete attachment blobs are kept: `directory` (in `<data dir>/blobs/`) or "
        "an S3-compatible bucket as `s3://bucket/prefix` (needs `pip install "
        "'secretlink[s3]'`; credentials and region from boto3's usual `AWS_*` variables "
        "or files, never logged). Uploads under way stay in `<data dir>/blobs/` either "
        "way. `secretlink serve` checks at start that it can write there.",
    )
    s3_endpoint_url: str | None = setting(
        None,
        _endpoint_url,
        "The S3 API's URL for a server other than AWS (MinIO, Garage, Ceph, ...), e.g. "
        "`https://s3.example:9000`; the bucket goes in the path. Only with an `s3://` "
        "`SECRETLINK_BLOB_STORE`.",
        "none (AWS S3)",
        secret=True,  # a mistaken value may carry keys: never repeated in an error
    )
    retention_days: int = setting(
        90,
        _int_at_least(0),
        "Messages older than this many days are deleted. 0 keeps messages until the "
        "recipient deletes them. An inbox's owner may choose a shorter retention of its "
        "own (1, 7, 30 or 90 days), which the same purge enforces.",
    )
    purge_interval: int = setting(
        3600, _int_at_least(60), "Seconds between the purges `secretlink serve` runs."
    )
    notifications_enabled: bool = setting(
        True,
        _bool,
        "Let inbox owners register a Web Push subscription or a webhook that is told "
        '"new message" (never what it says); `secretlink serve` then runs the sender in '
        "each worker, and `secretlink notify` can run it on its own.",
    )
    notify_interval: int = setting(
        30,
        _int_at_least(1),
        "Seconds between the notification sender's looks at the queue of due inboxes.",
    )
    notify_timeout: int = setting(
        10,
        _notify_timeout,
        "Seconds one delivery attempt (to a push service or webhook) may take (1 to 60).",
    )
    notify_attempts: int = setting(
        3,
        _notify_attempts,
        "Attempts per notification (1 to 10) before it is dropped; a timeout, a refused "
        "connection or an answer 5xx, 408 or 429 is tried again.",
    )
    notify_backoff: int = setting(
        2,
        _int_at_least(0),
        "Seconds before the second attempt; each further one waits twice as long.",
    )
    notify_allow_local_targets: bool = setting(
        False,
        _bool,
        "Allow webhooks and push endpoints on loopback, private, link-local and other "
        "non-global addresses, and plain http:// URLs. Off, the sender connects only to "
        "globally routable addresses over https://. For tests and closed networks.",
    )
    push_contact: str | None = setting(
        None,
        _push_contact,
        "The VAPID `sub` claim push services may use to reach the operator: a mailto: "
        "or https: URL.",
        "`SECRETLINK_BASE_URL` when set, else none",
    )
    vapid_private_key: str | None = setting(
        None,
        _vapid_private_key,
        "The instance's VAPID key for Web Push (the raw P-256 private key, base64url, as "
        "`web-push generate-vapid-keys` prints it). Machines of one instance must share it.",
        "generated once into `<data dir>/vapid_private_key` (mode 0600)",
        secret=True,
    )
    pow_difficulty: int = setting(
        14,
        _pow_bits,
        "Proof-of-work bits a sender's browser must find per message (0 turns the gate "
        "off, at most 24); up to 4 more under load, and 2 more to create an inbox. 14 "
        "takes well under a second with a JIT and about 2 s without.",
    )
    pow_fresh_seconds: int = setting(
        120,
        _fresh_seconds,
        "Seconds a proof-of-work puzzle keeps the difficulty it was issued with (1 to "
        "120); an older solution must meet the difficulty in force when it arrives. "
        "Lower values only make stockpiled puzzles go stale sooner (tests use that).",
    )
    redis_url: str | None = setting(
        None,
        _redis_url,
        "Redis URL for rate-limit and proof-of-work load state shared by all workers and machines.",
        "none (limits are counted in each worker's memory; the proof-of-work load in the database)",
        secret=True,  # it may hold a password
    )
    rate_limits_enabled: bool = setting(True, _bool, "Enforce the rate limits below.")
    rate_limit_client: str = setting(
        "20/minute;200/hour",
        _rate_limit,
        "Messages one client (keyed hash of its address) may send, counted for every "
        "attempt, accepted or not (puzzles are counted apart, with the same limit).",
    )
    rate_limit_inbox: str = setting(
        "60/minute;1000/hour",
        _rate_limit,
        "Messages one inbox may receive, counted only for messages accepted.",
    )
    rate_limit_global: str = setting(
        "1200/minute",
        _rate_limit,
        "Messages the whole instance accepts, counted only for messages accepted.",
    )
    rate_limit_owner_read: str = setting(
        "60/minute;600/hour",
        _rate_limit,
        "Message-list requests per inbox, counted once the owner's token verifies.",
    )
    rate_limit_owner_write: str = setting(
        "120/minute;2000/hour",
        _rate_limit,
        "Inbox saves and deletions, message deletions per inbox, counted once the "
        "owner's token verifies.",
    )
    rate_limit_auth: str = setting(
        "30/minute", _rate_limit, "Proof-of-possession requests per client."
    )
    inbox_max_messages: int = setting(
        1000,
        _int_at_least(0),
        "Most messages one inbox holds; senders to a full inbox are refused (409 "
        "`inbox_full`) until its owner deletes some. 0: no cap.",
    )
    inbox_max_bytes: int = setting(
        16 * 1024 * 1024,
        _int_at_least(0),
        "Most envelope bytes one inbox holds (16 MiB: 256 of the largest messages, or "
        "the message cap of small ones). 0: no cap.",
        "`16777216` (16 MiB)",
    )
    storage_budget_bytes: int = setting(
        1024 * 1024 * 1024,
        _int_at_least(0),
        "Most envelope and attachment bytes the whole instance holds; beyond it every "
        "sender is refused (507 `instance_full`), and so is an upload that would pass it. "
        "The database file is larger by about 200 bytes a message. 0: no cap.",
        "`1073741824` (1 GiB)",
    )
    max_inboxes: int = setting(
        100_000,
        _int_at_least(0),
        "Most inboxes the instance holds; beyond it creating one is refused (507 "
        "`instance_full`), so that inboxes, which the storage budget does not count, "
        "cannot grow the database without bound (about 2.5 KiB each at most). 0: no cap.",
    )
    token_ttl: int = setting(600, _int_at_least(1), "Seconds an inbox access token stays valid.")
    challenge_ttl: int = setting(
        60, _int_at_least(1), "Seconds a proof-of-possession challenge stays valid (at most 60)."
    )
    key_backup_memory_kib: int = setting(
        64 * 1024,
        _backup_memory,
        "Argon2id memory in KiB that new passphrase-protected key files get (the inbox "
        "page's backups, `secretlink keygen --passphrase`, `secretlink key protect`): "
        "from 19456 to 1048576. Files are read whatever their cost within those bounds. "
        "Only tests lower it (to 19456); raising it slows every backup on slow devices.",
        "`65536` (64 MiB)",
    )
    key_backup_passes: int = setting(
        3,
        _backup_passes,
        "Argon2id passes that new passphrase-protected key files get (2 to 16).",
    )
    page_size: int = setting(50, _int_at_least(1), "Most messages in one page of the list.")
    log_level: str = setting("INFO", _log_level, "Log level: DEBUG, INFO, WARNING or ERROR.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            raw = environ.get(env_name(item.name))
            if raw is None or raw == "":
                continue
            try:
                values[item.name] = item.metadata["parse"](raw)
            except ValueError as exc:
                shown = "" if item.metadata["secret"] else f"={raw!r}"
                raise SettingsError(f"{env_name(item.name)}{shown} is not valid: {exc}") from None
        return cls(**values).validated()

    def validated(self) -> "Settings":
        if self.attachment_max_message_bytes < padme_length(self.attachment_max_file_bytes):
            raise SettingsError(
                "SECRETLINK_ATTACHMENT_MAX_MESSAGE_BYTES must be at least the stored size of "
                f"the largest file ({padme_length(self.attachment_max_file_bytes)} bytes for "
                "SECRETLINK_ATTACHMENT_MAX_FILE_BYTES)"
            )
        if self.challenge_ttl > 60:
            raise SettingsError("SECRETLINK_CHALLENGE_TTL must be at most 60 seconds")
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise SettingsError("SECRETLINK_SECRET_KEY must be at least 32 characters")
        if self.onion_listen is not None and self.onion_url is None:
            raise SettingsError(
                "SECRETLINK_ONION_LISTEN needs SECRETLINK_ONION_URL (the onion name that "
                "requests on it carry as Host)"
            )
        if self.s3_endpoint_url is not None and not self.blob_store.startswith("s3://"):
            raise SettingsError(
                "SECRETLINK_S3_ENDPOINT_URL is set but SECRETLINK_BLOB_STORE is not an "
                "s3:// URL: set both, or neither"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("SECRETLINK_TLS_CERT and SECRETLINK_TLS_KEY go together")
        for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not path.is_file():
                option = "--" + name.replace("_", "-")
                raise SettingsError(f"{env_name(name)} ({option}): there is no file {path}")
        return self

    def with_data_dir(self, default: Path) -> "Settings":
        """Fill in the defaults that depend on the data folder, creating it if needed."""
        data_dir = Path(self.data_dir or default_data_dir(default)).resolve()
        database_url = self.database_url or f"sqlite:///{data_dir / 'secretlink.sqlite3'}"
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            # A folder that already existed (made by hand, a package or an older
            # release) is tightened too: it holds the secret key and the database.
            if data_dir.stat().st_mode & 0o077:
                data_dir.chmod(0o700)
            secret_key = self.secret_key or load_or_create_secret_key(data_dir / "secret_key")
        except OSError as exc:
            raise SettingsError(
                f"SECRETLINK_DATA_DIR: cannot use {exc.filename or data_dir} as the data "
                f"folder: {exc.strerror}"
            ) from None
        return replace(self, data_dir=data_dir, database_url=database_url, secret_key=secret_key)


def padme_length(size: int) -> int:
    """The blob length of a file of `size` bytes (crypto/SPEC.md 5.11)."""
    from secretlink.crypto.attachments import padded_length

    return padded_length(size)


def env_name(name: str) -> str:
    return "SECRETLINK_" + name.upper()


def default_data_dir(instance_path: Path) -> Path:
    """Flask's instance folder, except inside a zipapp, whose files live in a cache."""
    if sys.argv and sys.argv[0].endswith(".pyz"):
        return Path.cwd() / "secretlink-data"
    return instance_path


def load_or_create_secret_key(path: Path) -> str:
    """Read the generated key, or create it once; concurrent starts agree on one key.

    The key is written to a private temporary file and then hard-linked into place,
    which fails if another process got there first: nobody ever reads a half-written
    key file.
    """
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise SettingsError(f"{path} holds no usable secret key; delete it to make a new one")
    return key


def markdown_table() -> str:
    """The settings table of docs/SETTINGS.md, generated from the fields above."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for item in fields(Settings):
        default = item.metadata["shown"] or f"`{item.default}`"
        rows.append(f"| `{env_name(item.name)}` | {default} | {item.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def settings_document() -> str:
    return (
        "# Settings\n\n"
        "<!-- Generated by `python -m secretlink.settings`; do not edit by hand. -->\n\n"
        "Every setting is an environment variable. A bad value stops start-up with a "
        "message naming the variable.\n\n" + markdown_table()
    )


if __name__ == "__main__":
    sys.stdout.write(settings_document())
