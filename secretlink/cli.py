"""The `secretlink` command: run the service, make keys, send, and read an inbox.

Failures print one line on stderr and exit with status 1 (2 for a usage mistake).
"""

import json
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import click

from secretlink.client import ClientError, InboxClient, normalize_server, parse_link
from secretlink.client import send as send_message
from secretlink.crypto import SecretlinkCryptoError, b64decode, generate_keypair, open_envelope
from secretlink.crypto.envelope import MAX_TEXT_BYTES
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file
from secretlink.settings import Settings, SettingsError


def fail(message: str) -> None:
    raise click.ClickException(message)


def read_key_file(path: str) -> KeyFile:
    try:
        return load_key_file(Path(path).read_bytes())
    except FileNotFoundError:
        fail(f"key file {path} does not exist (make one with: secretlink keygen --key-file {path})")
    except OSError as exc:
        fail(f"cannot read key file {path}: {exc.strerror}")
    except SecretlinkCryptoError as exc:
        fail(f"key file {path}: {exc}")
    raise AssertionError("unreachable")


def inbox_client(server: str | None, key_file: str) -> InboxClient:
    loaded = read_key_file(key_file)
    server = server or loaded.server
    if not server:
        fail("say which server holds the inbox: --server https://HOST")
    try:
        return InboxClient(server, loaded.keypair)
    except ClientError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


DATABASE_URL = "secretlink.database_url"  # the click context's note of the database in use


def using_database(settings: Settings) -> Settings:
    """Note which database the command uses, for the message if it fails."""
    click.get_current_context().meta[DATABASE_URL] = settings.database_url
    return settings


def database_failure(exc: Exception, database_url: str | None) -> str:
    """One line about a failed database operation, without the URL's password."""
    from sqlalchemy.engine import make_url

    reason = str(getattr(exc, "orig", None) or exc).strip()
    reason = reason.splitlines()[0].strip() if reason else type(exc).__name__
    where = "the database"
    if database_url:
        url = make_url(database_url)
        if url.password:
            reason = reason.replace(str(url.password), "***")
        where = f"the database {url.render_as_string(hide_password=True)}"
    return (
        f"cannot use {where}: {reason} (check SECRETLINK_DATABASE_URL and that the "
        "database is reachable)"
    )


class ClientErrorsAsClickErrors(click.Group):
    """Turn the client's, settings' and database errors into one-line failures, never
    tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ClientError, SettingsError, SecretlinkCryptoError) as exc:
            raise click.ClickException(str(exc)) from None
        except RuntimeError as exc:
            from secretlink.migrate import MigrationError

            if isinstance(exc, MigrationError):
                raise click.ClickException(str(exc)) from None
            raise
        except Exception as exc:
            # Only a command that loaded SQLAlchemy can fail with one of its errors.
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
                message = database_failure(exc, ctx.meta.get(DATABASE_URL))
                raise click.ClickException(message) from None
            raise


def default_of(name: str) -> object:
    """A setting's default, so that the options' help cannot drift from it."""
    return next(item.default for item in fields(Settings) if item.name == name)


@click.group(cls=ClientErrorsAsClickErrors)
@click.version_option(package_name="secretlink")
def main() -> None:
    """End-to-end encrypted anonymous message links."""


@main.command()
@click.option(
    "--host", help=f"Address to listen on [SECRETLINK_HOST, default {default_of('host')}]."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help=f"Port [SECRETLINK_PORT, default {default_of('port')}].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help=f"Worker processes [SECRETLINK_WORKERS, default {default_of('workers')}].",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    help=f"Threads per worker [SECRETLINK_THREADS, default {default_of('threads')}].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data folder [SECRETLINK_DATA_DIR].",
)
@click.option(
    "--tls-cert",
    # Checked with the settings (one line naming the setting), not as a usage error.
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve HTTPS with this PEM certificate [SECRETLINK_TLS_CERT].",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key for --tls-cert [SECRETLINK_TLS_KEY].",
)
@click.option(
    "--self-signed",
    is_flag=True,
    help="Serve HTTPS with a self-signed certificate for SECRETLINK_TLS_HOSTNAMES, "
    "made once and kept in the data folder.",
)
@click.option(
    "--trust-host-header",
    is_flag=True,
    default=None,
    help="Without SECRETLINK_BASE_URL, take the origin from each request's Host, even on "
    "a public address: only behind a proxy that pins the Host "
    "[SECRETLINK_TRUST_HOST_HEADER].",
)
def serve(self_signed: bool, **overrides) -> None:
    """Run the service with gunicorn (configured by SECRETLINK_* variables)."""
    from secretlink import tls
    from secretlink.origin import refuse_unsafe_serving
    from secretlink.server import serve as run_server

    given = {name: value for name, value in overrides.items() if value is not None}
    settings = replace(Settings.from_env(), **given).validated()
    # Before anything is created or bound: a public address needs a known origin.
    refuse_unsafe_serving(settings)
    if self_signed:
        if settings.tls_cert:
            fail("--self-signed and a certificate of your own exclude each other")
        settings = settings.with_data_dir(default_instance_path())
        cert, key = tls.self_signed(settings.data_dir, settings.tls_hostnames)
        settings = replace(settings, tls_cert=cert, tls_key=key)
    elif settings.tls_cert and settings.tls_key:
        # Before gunicorn, whose workers would otherwise fail one after another.
        tls.check_pair(settings.tls_cert, settings.tls_key)
    using_database(settings.with_data_dir(default_instance_path()))
    run_server(settings)


@main.group()
def db() -> None:
    """Database maintenance."""


def default_instance_path() -> Path:
    # Imported late: the client commands should not pay for loading the web app.
    from secretlink.app import default_instance_path as instance_path

    return instance_path()


def resolved_settings() -> Settings:
    return using_database(Settings.from_env().with_data_dir(default_instance_path()))


def existing_database(check_schema: bool = True) -> Settings:
    """Settings of an instance that has run before; maintenance creates nothing."""
    settings = Settings.from_env()
    data_dir = settings.data_dir or default_instance_path()
    if settings.database_url is None and not (data_dir / "secretlink.sqlite3").is_file():
        fail(
            f"no secretlink database in {data_dir}; set SECRETLINK_DATA_DIR or "
            "SECRETLINK_DATABASE_URL to the instance's"
        )
    settings = using_database(settings.with_data_dir(data_dir))
    if check_schema:
        from secretlink.migrate import require_current

        require_current(settings.database_url)
    return settings


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the latest version."""
    from secretlink.migrate import current_revision, head_revision, upgrade

    settings = resolved_settings()
    before = current_revision(settings.database_url)
    if before == head_revision():
        click.echo(f"database already at {before}; nothing to do", err=True)
        return
    upgrade(settings.database_url)
    click.echo(f"database at {head_revision()} (was {before or 'empty'})", err=True)


@main.command()
def purge() -> None:
    """Delete messages older than SECRETLINK_RETENTION_DAYS, and spent challenges."""
    from secretlink import retention

    settings = existing_database()
    result = retention.purge(settings.database_url, settings.retention_days)
    click.echo(
        f"deleted {result.messages} old messages and {result.nonces} spent challenges", err=True
    )


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Copy the SQLite database to PATH, consistently, while the service runs."""
    from secretlink.backup import BackupError, backup_sqlite

    try:
        # Any schema version can be copied: a backup before an upgrade is the point.
        backup_sqlite(existing_database(check_schema=False).database_url, path)
    except BackupError as exc:
        fail(str(exc))
    click.echo(f"backup written to {path}", err=True)


@main.command()
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the new private key (refuses to overwrite).",
)
@click.option("--server", help="Server the inbox will live on, remembered in the key file.")
def keygen(key_file: str, server: str | None) -> None:
    """Make a new inbox key pair; print the public key."""
    keypair = generate_keypair()
    text = dump_key_file(KeyFile(keypair, normalize_server(server) if server else None))
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{key_file} already exists; refusing to overwrite a key")
    except OSError as exc:
        fail(f"cannot create {key_file}: {exc.strerror}")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(keypair.public_key_text)


@main.command()
@click.argument("link")
@click.argument("text", required=False)
def send(link: str, text: str | None) -> None:
    """Encrypt a message to LINK and send it.

    TEXT comes from the argument or, better, from standard input: arguments show up
    in `ps` and in shell history.
    """
    target = parse_link(link)
    if text is None:
        if sys.stdin.isatty():
            click.echo("Type the message; end it with Ctrl-D.", err=True)
        text = sys.stdin.read().rstrip("\r\n")
    if not text.strip():
        fail("the message is empty; nothing was sent")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        fail(f"the message is longer than {MAX_TEXT_BYTES} bytes; nothing was sent")
    send_message(target, text)
    click.echo("sent", err=True)


@main.command()
@click.argument("url")
@click.option(
    "--link",
    metavar="LINK",
    help="A sender link on this server (https://HOST/to/KEY): check its real sender page too.",
)
def verify(url: str, link: str | None) -> None:
    """Check that the instance at URL serves this release's pages and scripts.

    Fetches /, /inbox and a sender page from URL and compares them with this
    installed copy of secretlink: each page's markup and Content-Security-Policy,
    the scripts and stylesheets it loads (no missing, extra, inline or other-origin
    ones), and every such file's bytes against the page's integrity attribute and
    against the release's file. Install the release the server runs: another
    version differs by design. Prints one line per check; exits 1 if any differs.

    A sender page exists only for a real inbox. Without --link the sender page
    checked is the error page for an unknown inbox, and the sender page's scripts
    are fetched at the URLs the release's sender page uses; with --link the real
    sender page of LINK is checked as well.

    What this cannot prove: a server can serve a targeted visitor something else
    than what it serves to this command (chosen by address, cookie, timing or the
    look of the request), and can change its pages at any time; a browser may also
    still run a copy it cached earlier. A match says only what was served to these
    requests. Senders and recipients at high risk should use this command line
    (send, inbox read), which runs no code from the server.
    """
    # Imported late: the other commands should not pay for loading the web app.
    from secretlink.verify import verify as verify_instance

    report = verify_instance(url, link)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@main.group()
def inbox() -> None:
    """Create, read and tidy an inbox you hold the key of."""


server_option = click.option("--server", help="Server URL (default: the key file's server).")
key_option = click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The inbox's private key file.",
)


@inbox.command("create")
@server_option
@key_option
@click.option("--prompt", default="", help="A line shown to senders above the message box.")
def inbox_create(server: str | None, key_file: str, prompt: str) -> None:
    """Register the inbox on the server; print its link."""
    click.echo(inbox_client(server, key_file).register(prompt)["link"])


@inbox.command("read")
@server_option
@key_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of text.")
def inbox_read(server: str | None, key_file: str, as_json: bool) -> None:
    """Fetch and decrypt the messages, newest first."""
    client = inbox_client(server, key_file)
    results = []
    for message in client.messages():
        entry = {"id": message.id, "received_at": message.received_at, "text": None}
        try:
            entry["text"] = open_envelope(
                b64decode(message.ciphertext), client.keypair.secret_key, client.keypair.public_key
            ).text
        except SecretlinkCryptoError as exc:
            entry["error"] = f"cannot decrypt: {exc}"
            click.echo(f"warning: message {message.id} cannot be decrypted: {exc}", err=True)
        results.append(entry)
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
        return
    if not results:
        click.echo("No messages.", err=True)
    for entry in results:
        click.echo(f"--- {entry['received_at']}  id {entry['id']}")
        click.echo(entry["text"] if entry["text"] is not None else f"[{entry['error']}]")
        click.echo()


@inbox.command("delete")
@server_option
@key_option
@click.argument("message_id", metavar="ID")
def inbox_delete(server: str | None, key_file: str, message_id: str) -> None:
    """Delete message ID from the inbox."""
    inbox_client(server, key_file).delete(message_id)
    click.echo("deleted", err=True)


if __name__ == "__main__":
    main()
