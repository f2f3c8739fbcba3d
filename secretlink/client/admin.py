"""`secretlink admin`: the operator's side of abuse, run on the server's own machine.

It works on the configured database directly (SECRETLINK_DATA_DIR or
SECRETLINK_DATABASE_URL, like `purge` and `backup`), not through the API, and never
reads a message: it changes only an inbox's disabled flag and the operator's note,
or deletes a disabled inbox. Senders to a disabled inbox see "This inbox is not
available." and nothing else; its owner still reads and deletes what arrived before,
and sees the reason given here, but cannot delete the inbox itself (that would lift
the disabling): only the operator can.
"""

import click

from secretlink.client.termsafe import field
from secretlink.crypto import InvalidKeyError, decode_public_key

# The reason is the operator's note to the owner: a sentence, not a file.
MAX_REASON_CHARS = 500


def fail(message: str) -> None:
    # Imported here: cli.py imports this module when it loads.
    from secretlink.client.cli import fail as cli_fail

    cli_fail(message)


@click.group()
def admin() -> None:
    """Operator commands, on this instance's database."""


@admin.group("inbox")
def admin_inbox() -> None:
    """Disable, enable and delete inboxes (senders to a disabled one see a neutral notice)."""


def inbox_key(text: str) -> str:
    """The inbox key from KEY or a whole link (…/to/KEY)."""
    key = text.strip().rstrip("/").rsplit("/", 1)[-1]
    try:
        decode_public_key(key)
    except InvalidKeyError as exc:
        fail(f"{text!r} is not an inbox key or link: {exc}")
    return key


def store():
    # Late imports: the client's commands do not load SQLAlchemy for the operator's.
    from secretlink.client.cli import existing_database
    from secretlink.store.database import make_engine
    from secretlink.store.inbox_settings import InboxSettingsStore

    return InboxSettingsStore(make_engine(existing_database().database_url))


def with_store(action):
    settings_store = store()
    try:
        return action(settings_store)
    finally:
        settings_store.engine.dispose()


# A key may start with "-": it must be read as the argument, not as an option.
KEY_ARGUMENT = {"ignore_unknown_options": True}


@admin_inbox.command("disable", context_settings=KEY_ARGUMENT)
@click.argument("key")
@click.option("--reason", required=True, help="Why (shown to the inbox's owner, never to senders).")
def disable(key: str, reason: str) -> None:
    """Refuse every message to the inbox KEY (a key or its link)."""
    key = inbox_key(key)
    reason = reason.strip()
    if not reason:
        fail("give a reason: --reason TEXT")
    if len(reason) > MAX_REASON_CHARS or "\x00" in reason or not reason.isprintable():
        fail(f"the reason must be one line of at most {MAX_REASON_CHARS} printable characters")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        fail("the reason must be valid text (this one has bytes that are not UTF-8)")
    if not with_store(lambda s: s.disable(key, reason)):
        fail(f"no inbox {key} in this database")
    click.echo(f"disabled {key}: senders now see a neutral notice", err=True)


@admin_inbox.command("enable", context_settings=KEY_ARGUMENT)
@click.argument("key")
def enable(key: str) -> None:
    """Take messages for the inbox KEY again."""
    key = inbox_key(key)
    was = with_store(lambda s: s.enable(key))
    if was is None:
        fail(f"no inbox {key} in this database")
    click.echo(f"enabled {key}" if was else f"{key} was not disabled; nothing changed", err=True)


@admin_inbox.command("delete", context_settings=KEY_ARGUMENT)
@click.argument("key")
@click.option("--yes", is_flag=True, help="Confirm: the inbox and its messages go for good.")
def delete(key: str, yes: bool) -> None:
    """Delete the disabled inbox KEY and its messages (never reading one).

    Only a disabled inbox: an open one is its owner's to delete. Afterwards the key
    is unknown here, so its owner may register it again as a new, open inbox; to keep
    the link refused, leave the inbox disabled instead.
    """
    from secretlink.client.cli import existing_database
    from secretlink.store.blob_backends import StorageUnavailable, backend_for
    from secretlink.store.blobs import blob_directory, remove_inbox_folder
    from secretlink.store.inbox_settings import NO_INBOX, NOT_DISABLED

    key = inbox_key(key)
    if not yes:
        fail("this deletes the inbox and its messages for good: add --yes to confirm")
    outcome = with_store(lambda s: s.delete_disabled(key))
    if outcome == NO_INBOX:
        fail(f"no inbox {key} in this database")
    if outcome == NOT_DISABLED:
        fail(f"{key} is not disabled: an open inbox is its owner's to delete")
    # Its attachments: uploads under way, and the blobs wherever they are kept.
    settings = existing_database()
    directory = blob_directory(settings.data_dir)
    remove_inbox_folder(directory, key)
    try:
        backend_for(settings.blob_store, directory, settings.s3_endpoint_url).remove_inbox(key)
    except StorageUnavailable as exc:
        fail(
            f"deleted {key} and its messages, but not yet its attachments ({exc}); "
            "the next purge deletes them"
        )
    click.echo(f"deleted {key} and its messages; its owner may register the key again", err=True)


@admin_inbox.command("list-disabled")
def list_disabled() -> None:
    """The disabled inboxes: key, day disabled, reason (one per line, tab-separated)."""
    found = with_store(lambda s: s.list_disabled())
    for inbox in found:
        day = inbox.disabled_on.strftime("%Y-%m-%d") if inbox.disabled_on else "-"
        click.echo(f"{inbox.public_key}\t{day}\t{field(inbox.reason)}")
    click.echo(f"{len(found)} disabled inbox(es)", err=True)
