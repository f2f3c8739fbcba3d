"""The `secretlink` command: run the service, make keys, send, and read an inbox.

Failures print one line on stderr and exit with status 1 (2 for a usage mistake).
"""

import os
import re
import sys
from dataclasses import fields, replace
from pathlib import Path

import click

from secretlink.client import conversation_cli
from secretlink.client import proxy as proxies
from secretlink.client.http import ClientError, InboxClient, normalize_server, parse_link
from secretlink.client.http import send as send_message
from secretlink.client.protected_keys import key as key_commands
from secretlink.client.protected_keys import (
    key_file_option,
    passphrase_fd_option,
    protect_new_key,
    read_key_file,
)
from secretlink.client.qr import terminal_lines
from secretlink.client.termsafe import Terminal, body, dumps_json, field
from secretlink.crypto import SecretlinkCryptoError, generate_keypair
from secretlink.crypto.envelope import MAX_TEXT_BYTES
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file
from secretlink.settings import Settings, SettingsError

# An error message can quote a server; more than this is cut rather than flooding stderr.
MAX_ERROR_CHARS = 500


class Failure(click.ClickException):
    """A one-line failure; whatever it quotes (a server's error text, a path, an id)
    is shown with its control characters escaped, never obeyed by the terminal."""

    def format_message(self) -> str:
        shown = field(self.message)
        return shown if len(shown) <= MAX_ERROR_CHARS else shown[: MAX_ERROR_CHARS - 1] + "…"


def fail(message: str) -> None:
    raise Failure(message)


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
            raise Failure(str(exc)) from None
        except RuntimeError as exc:
            from secretlink.store.migrate import MigrationError

            if isinstance(exc, MigrationError):
                raise Failure(str(exc)) from None
            raise
        except Exception as exc:
            # Only a command that loaded SQLAlchemy can fail with one of its errors.
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
                message = database_failure(exc, ctx.meta.get(DATABASE_URL))
                raise Failure(message) from None
            raise


def default_of(name: str) -> object:
    """A setting's default, so that the options' help cannot drift from it."""
    return next(item.default for item in fields(Settings) if item.name == name)


@click.group(cls=ClientErrorsAsClickErrors)
@click.version_option(package_name="secretlink")
@click.option(
    "--proxy",
    metavar="URL",
    help="Reach servers through this proxy, e.g. socks5h://127.0.0.1:9050 (Tor's SOCKS "
    "port; needed for onion links) [default: ALL_PROXY, HTTPS_PROXY, HTTP_PROXY].",
)
def main(proxy: str | None) -> None:
    """End-to-end encrypted anonymous message links."""
    proxies.use(proxy)


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
    """Run the service with granian (configured by SECRETLINK_* variables)."""
    from secretlink.ops import tls
    from secretlink.ops.server import serve as run_server
    from secretlink.web.assets import MissingAssetError, check_installed
    from secretlink.web.origin import refuse_unsafe_serving

    try:
        check_installed()  # once, here: a broken install must not crash-loop the workers
    except MissingAssetError as exc:
        fail(str(exc))
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
        # Before the server starts, whose workers would otherwise fail one after another.
        tls.check_pair(settings.tls_cert, settings.tls_key)
    using_database(settings.with_data_dir(default_instance_path()))
    check_blob_store(settings)
    run_server(settings)


def check_blob_store(settings: Settings) -> None:
    """An object store for the blobs must take a write before the workers start."""
    from secretlink.store.blob_backends import DIRECTORY, StorageUnavailable, backend_for

    if settings.blob_store == DIRECTORY:
        return
    backend = backend_for(settings.blob_store, Path("."), settings.s3_endpoint_url)
    try:
        backend.check()
    except StorageUnavailable as exc:
        fail(f"SECRETLINK_BLOB_STORE: {exc}")


@main.group()
def db() -> None:
    """Database maintenance."""


def default_instance_path() -> Path:
    # Imported late: the client commands should not pay for loading the web app.
    from secretlink.web.app import default_instance_path as instance_path

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
        from secretlink.store.migrate import require_current

        require_current(settings.database_url)
    return settings


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the latest version."""
    from secretlink.store.migrate import current_revision, head_revision, upgrade

    settings = resolved_settings()
    before = current_revision(settings.database_url)
    if before == head_revision():
        click.echo(f"database already at {before}; nothing to do", err=True)
        return
    upgrade(settings.database_url)
    click.echo(f"database at {head_revision()} (was {before or 'empty'})", err=True)


@main.command()
def purge() -> None:
    """Delete messages older than SECRETLINK_RETENTION_DAYS or their inbox's own
    retention, and spent challenges."""
    from secretlink.store import retention
    from secretlink.store.blob_backends import StorageUnavailable

    settings = existing_database()
    try:
        result = retention.purge_for(settings)
    except StorageUnavailable as exc:
        fail(f"the rows are purged, but not the attachments' objects: {exc}")
    click.echo(
        f"deleted {result.messages} old messages and {result.nonces} spent challenges"
        + (f", {result.abandoned_uploads} abandoned uploads" if result.abandoned_uploads else ""),
        err=True,
    )


@main.command()
@click.option("--once", is_flag=True, help="Send what is due now, then stop (cron, tests).")
def notify(once: bool) -> None:
    """Send due notifications ("new message", never more) to owners' devices and webhooks.

    `secretlink serve` does this in each worker already; run it on its own when the
    web workers should not make outgoing connections, or from cron with --once.
    """
    import signal
    import threading

    from secretlink.notify import worker
    from secretlink.ops import logs

    settings = existing_database()
    if not settings.notifications_enabled:
        fail("notifications are off on this instance (SECRETLINK_NOTIFICATIONS_ENABLED)")
    logs.configure(settings.log_level)
    notifications, engine = worker.open_notifications(settings)
    try:
        if once:
            done = worker.run_once(notifications)
            click.echo(
                f"{done.delivered} notifications sent, {done.failed} could not be delivered",
                err=True,
            )
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        worker.run_forever(notifications, stop)
    finally:
        engine.dispose()


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Copy the SQLite database to PATH, consistently, while the service runs."""
    from secretlink.store.backup import BackupError, backup_sqlite

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
@click.option(
    "--passphrase",
    "protected",
    is_flag=True,
    help="Protect the key file with a passphrase (asked twice, or read from --passphrase-fd).",
)
@passphrase_fd_option
def keygen(key_file: str, server: str | None, protected: bool) -> None:
    """Make a new inbox key pair; print the public key."""
    keypair = generate_keypair()
    text = dump_key_file(KeyFile(keypair, normalize_server(server) if server else None))
    try:
        load_key_file(text)  # a server no key-file reader would take back is refused now
    except SecretlinkCryptoError as exc:
        fail(f"cannot use --server {server}: {exc}")
    if protected:
        if os.path.lexists(key_file):  # before asking for a passphrase in vain
            fail(f"{key_file} already exists; refusing to overwrite a key")
        text = protect_new_key(load_key_file(text))
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{key_file} already exists; refusing to overwrite a key")
    except OSError as exc:
        fail(f"cannot create {key_file}: {exc.strerror}")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(keypair.public_key_text)


def strip_one_line_ending(text: str) -> str:
    """Drop the one line ending that `echo`, a here-string or an editor puts after the
    last line; anything before it (more blank lines, trailing spaces) is the sender's."""
    for ending in ("\r\n", "\n", "\r"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


@main.command()
@click.argument("link")
@click.argument("text", required=False)
@click.option(
    "--reply",
    is_flag=True,
    help="Let the recipient answer: make a reply key and its inbox, print a private "
    "reply link (see `secretlink replies`).",
)
@click.option(
    "--key-out",
    type=click.Path(dir_okay=False),
    help="With --reply: where to write the reply key file (mode 0600; default: a file "
    "under $XDG_STATE_HOME/secretlink/reply-keys, named on stderr).",
)
@conversation_cli.keep_option
@click.option(
    "--attach",
    "attach",
    multiple=True,
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Send FILE with the message, encrypted (repeat for more files; the inbox must "
    "take attachments). Progress is shown on standard error when it is a terminal.",
)
@click.option(
    "--strip-metadata",
    is_flag=True,
    help="Remove location and camera data (Exif, XMP, IPTC, comments) from JPEG photos "
    "among the --attach files before they are encrypted; the pixels stay as they are. "
    "A damaged JPEG is then refused. Other files always go as they are.",
)
def send(
    link: str,
    text: str | None,
    reply: bool,
    key_out: str | None,
    keep_sent: bool,
    attach: tuple[Path, ...],
    strip_metadata: bool,
) -> None:
    """Encrypt a message to LINK and send it.

    TEXT comes from the argument or, better, from standard input: arguments show up
    in `ps` and in shell history.

    With --attach the files are encrypted and uploaded first, in constant memory;
    the message then lists them (their names, types, sizes and keys travel inside
    the encrypted message). The text may be empty then. Before anything is uploaded,
    the command checks that the inbox takes attachments and that no file, nor all
    of them together, is larger than the server takes. Files go byte for byte, with
    whatever metadata they carry, unless --strip-metadata is given.

    With --reply the message opens a conversation: the recipient can answer, and
    only you can read the answers, with the reply link printed on standard output or
    the reply key file. Whoever has either can read the answers and write as you.
    """
    target = parse_link(link)
    if (key_out or keep_sent) and not reply:
        raise click.UsageError("--key-out and --keep-sent go with --reply")
    if strip_metadata and not attach:
        raise click.UsageError("--strip-metadata goes with --attach")
    if attach and reply:
        raise click.UsageError(
            "--attach cannot go with --reply: conversation messages carry no files"
        )
    if reply:
        conversation_cli.send_opener(target, text, key_out, keep_sent)
        return
    if text is None:
        if sys.stdin.isatty():
            click.echo("Type the message; end it with Ctrl-D.", err=True)
        text = strip_one_line_ending(sys.stdin.read())
    if is_blank(text) and not attach:
        # The envelope could carry it (SPEC 5.2), but sending nothing is a mistake.
        fail("the message is empty or only white space; nothing was sent")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        fail(f"the message is longer than {MAX_TEXT_BYTES} bytes; nothing was sent")
    if attach:
        from secretlink.client.attachments import send_files

        send_files(target, text, list(attach), strip_metadata=strip_metadata)
        count = len(attach)
        click.echo(f"sent with {count} file{'s' if count > 1 else ''}", err=True)
        return
    send_message(target, text)
    click.echo("sent", err=True)


# What counts as white space for "the message is blank": the set JavaScript's trim()
# removes (the sender page's rule), so the page and the CLI refuse the same texts
# (SPEC 5.6). Python's str.isspace() differs: it takes U+001C-U+001F, not U+FEFF.
BLANK = re.compile("[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*")


def is_blank(text: str) -> bool:
    return BLANK.fullmatch(text) is not None


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
    from secretlink.client.verify import verify as verify_instance

    report = verify_instance(url, link)
    for line in report.lines():
        click.echo(field(line, Terminal.of(sys.stdout)))
    if not report.ok:
        sys.exit(1)


@main.group()
def inbox() -> None:
    """Create, read and tidy an inbox you hold the key of."""


server_option = click.option("--server", help="Server URL (default: the key file's server).")


key_option = key_file_option("The inbox's private key file (plain or passphrase-protected).")


@inbox.command("create")
@server_option
@key_option
@click.option("--prompt", default="", help="A line shown to senders above the message box.")
@click.option("--qr", is_flag=True, help="Also print the link as a QR code, below it.")
def inbox_create(server: str | None, key_file: str, prompt: str, qr: bool) -> None:
    """Register the inbox on the server; print its link."""
    link = inbox_client(server, key_file).register(prompt)["link"]
    click.echo(field(link))
    if qr:
        # The link register() checked is this key's own: the code says the same.
        colour = sys.stdout.isatty()
        click.echo("\n".join(terminal_lines(link, colour=colour)))


@inbox.command("read")
@server_option
@key_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (exact, terminal-safe) instead."
)
@click.option(
    "--raw",
    is_flag=True,
    help="Print each message's text exactly as sent: no escapes, no '| ' prefix. "
    "Its control sequences then act on your terminal; use only into a file or program.",
)
@click.option(
    "--save-attachments",
    "save_dir",
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
    help="Download, check and decrypt the messages' files into DIR (names made safe "
    "for this system; an existing file is never replaced: a -1, -2 ... is added).",
)
def inbox_read(
    server: str | None, key_file: str, as_json: bool, raw: bool, save_dir: Path | None
) -> None:
    """Fetch and decrypt the messages, newest first.

    Each message is a header line, `--- TIME  id ID`, then its text with every
    line starting with `| `, so that no text can pass for a header. Control
    characters (C0, DEL, C1), bidirectional controls and line separators, in the
    text and in everything the server sends, are shown as escapes such as \\x1b or
    \\u202e instead of acting on the terminal.

    On a terminal the escapes are highlighted (unless NO_COLOR is set) and long
    lines are wrapped so that every row keeps its `| `. Piped or redirected output
    is escaped and prefixed the same way, without highlighting or wrapping (page it
    with `less -S`, which does not wrap rows).

    --raw prints each text exactly as sent; --json prints exact JSON with those
    characters as \\u escapes.

    A message with files lists each under its header as `+ file NAME (SIZE bytes,
    TYPE)`, the name escaped like the text. With --save-attachments DIR each file is
    downloaded, checked and decrypted into DIR; a file that is damaged or was tampered
    with is not saved (nothing of it is left in DIR), and the command ends with
    status 1.
    """
    if as_json and raw:
        raise click.UsageError("--json and --raw exclude each other: JSON is always exact")
    if read_key_file(key_file).conversation:
        fail(f"{key_file} is a reply key file: read its conversation with secretlink replies")
    client = inbox_client(server, key_file)
    # Conversation messages are checked (SPEC 5.9) and remembered on this device.
    results, conversation_lines = conversation_cli.inbox_entries(client, client.api.server)
    for entry in results:
        if entry.get("refused"):
            click.echo(conversation_cli.warning(entry), err=True)
    full = full_inbox_warning(client.usage)
    if full:
        click.echo(full, err=True)
    failed = attachment_entries(client, results, save_dir)
    if as_json:
        click.echo(dumps_json(results))
        return
    if not results:
        click.echo("No messages.", err=True)
    terminal = Terminal.of(sys.stdout)
    for entry in conversation_cli.with_kept_texts(client, results):
        received_at = field(entry["received_at"], terminal)
        if entry.get("mine"):
            click.echo(f"--- {received_at}  {conversation_cli.kept_header(entry)}")
        else:
            click.echo(f"--- {received_at}  id {field(entry['id'], terminal)}")
        for line in conversation_cli.describe(entry, terminal):
            click.echo(line)
        for file in entry.get("attachments", ()):
            click.echo(attachment_line(file, terminal))
        if entry["text"] is None:
            pass  # describe() said why
        elif raw:
            # color=True: click would otherwise drop some escape sequences in a pipe.
            click.echo(entry["text"], color=True)
        else:
            click.echo("\n".join(body(entry["text"], terminal)))
        click.echo()
    for line in conversation_lines:
        click.echo(line)
    if failed:
        fail(f"{failed} attached file{'s' if failed > 1 else ''} could not be saved (see above)")


def attachment_entries(client, results: list[dict], save_dir: Path | None) -> int:
    """Replace each message's attachment entries with what is shown of them (no keys);
    with `save_dir`, save each file first. How many could not be saved."""
    from secretlink.client.attachments import save

    failed = 0
    unsaved = 0
    for entry in results:
        files = entry.get("attachments")
        if not files:
            continue
        shown = []
        for file in files:
            item = {"name": file.name, "media_type": file.media_type, "size": file.size}
            if save_dir is None:
                unsaved += 1
            else:
                try:
                    item["saved_as"] = str(save(client, file, save_dir))
                    click.echo(f"saved {field(file.name)} as {field(item['saved_as'])}", err=True)
                except SecretlinkCryptoError as exc:
                    failed += 1
                    item["error"] = f"damaged or tampered with: {exc}"
                except ClientError as exc:
                    failed += 1
                    item["error"] = str(exc)
                if "error" in item:
                    click.echo(
                        f"warning: {field(file.name)} of message {field(entry['id'])} "
                        f"was not saved: {field(item['error'])}",
                        err=True,
                    )
            shown.append(item)
        entry["attachments"] = shown
    if unsaved:
        plural = "s" if unsaved > 1 else ""
        click.echo(
            f"{unsaved} attached file{plural} not saved: add --save-attachments DIR", err=True
        )
    return failed


def attachment_line(file: dict, terminal: Terminal) -> str:
    """`+ file NAME (SIZE bytes, TYPE)`, and where it was saved; every part escaped."""
    line = f"+ file {field(file['name'], terminal)} ({file['size']} bytes, "
    line += f"{field(file['media_type'], terminal)})"
    if "saved_as" in file:
        line += f" saved as {field(file['saved_as'], terminal)}"
    elif "error" in file:
        line += " NOT SAVED"
    return line


def full_inbox_warning(usage: dict | None) -> str | None:
    """A sentence for the owner when senders are being refused, else None.

    The figures come from the server: shown through field(), like all it sends.
    """
    if not usage or not usage.get("full"):
        return None
    if usage.get("instance_full"):
        return "warning: this server is full: nobody can send you messages until it has room"
    held = f"{field(usage.get('messages'))} of {field(usage.get('max_messages') or 'unlimited')}"
    held += " messages"
    if usage.get("max_bytes"):
        held += f", {field(usage.get('bytes'))} of {field(usage['max_bytes'])} bytes"
    return f"warning: this inbox is full ({held}): senders are refused until you delete messages"


# Message ids are base64url and may start with "-": take such an id as the ID, not as
# an unknown option (which would fail with a usage error).
@inbox.command("delete", context_settings={"ignore_unknown_options": True})
@server_option
@key_option
@click.argument("message_id", metavar="ID")
def inbox_delete(server: str | None, key_file: str, message_id: str) -> None:
    """Delete message ID from the inbox."""
    inbox_client(server, key_file).delete(message_id)
    click.echo("deleted", err=True)


main.add_command(conversation_cli.reply)
main.add_command(conversation_cli.replies)
main.add_command(conversation_cli.fingerprint)
main.add_command(conversation_cli.block)

# The operator's commands (disable an abusive inbox) are a module of their own.
from secretlink.client.admin import admin  # noqa: E402 (it uses the helpers above)

main.add_command(admin)
# The inbox's settings, delete-all and rotate (secretlink/client/owner.py).
from secretlink.client.owner import COMMANDS as OWNER_COMMANDS  # noqa: E402

for command in OWNER_COMMANDS:
    inbox.add_command(command)

main.add_command(key_commands)

if __name__ == "__main__":
    main()
