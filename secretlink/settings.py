"""One typed registry of every setting, read from SECRETLINK_* environment variables.

Each setting is one field of `Settings` with its type, default and a sentence of
documentation; `Settings.from_env()` reads and validates them all at start-up, so a
bad value stops the service with a clear message instead of failing later.
`python -m secretlink.settings` prints the table in docs/SETTINGS.md.
"""

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many

from secretlink.crypto.origin import InvalidOriginError, canonical_origin, url_rest

# The largest v1 envelope (see crypto/SPEC.md); repeated here to keep this module light.
V1_MAX_ENVELOPE = 65586
V1_MIN_ENVELOPE = 306


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


def _onion_origin(text: str) -> str:
    origin = _origin(text)
    if not (urlsplit(origin).hostname or "").endswith(".onion"):
        raise ValueError("must be the http:// or https:// URL of a .onion name")
    return origin


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _rate_limit(text: str) -> str:
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


def _envelope_limit(text: str) -> int:
    value = int(text)
    if not V1_MIN_ENVELOPE <= value <= V1_MAX_ENVELOPE:
        raise ValueError(f"must be from {V1_MIN_ENVELOPE} to {V1_MAX_ENVELOPE} bytes")
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
        "A second origin of the same instance as a Tor onion service, e.g. "
        "`http://abc…xyz.onion`; requests with its Host are answered for that origin.",
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
    retention_days: int = setting(
        90,
        _int_at_least(0),
        "Messages older than this many days are deleted. 0 keeps messages until the "
        "recipient deletes them.",
    )
    purge_interval: int = setting(
        3600, _int_at_least(60), "Seconds between the purges `secretlink serve` runs."
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
        "Most envelope bytes the whole instance holds; beyond it every sender is refused "
        "(507 `instance_full`). The database file is larger by about 200 bytes a message. "
        "0: no cap.",
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
        if self.challenge_ttl > 60:
            raise SettingsError("SECRETLINK_CHALLENGE_TTL must be at most 60 seconds")
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise SettingsError("SECRETLINK_SECRET_KEY must be at least 32 characters")
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
