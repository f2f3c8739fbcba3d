"""`secretlink inbox settings | delete-all | rotate`: an inbox's settings from the
command line, as the inbox page's settings panel has them (docs/API.md section 4.10).

Added to the `inbox` group by secretlink/client/cli.py; the helpers of that module
(reading key files, one-line failures) are imported when a command runs, because
cli.py imports this module while it loads.
"""

import os

import click

from secretlink.client.protected_keys import (
    Protection,
    key_file_option,
    protect_like,
    protection_of,
    read_successor_key_file,
    write_private,
)
from secretlink.client.termsafe import field
from secretlink.crypto import generate_keypair
from secretlink.crypto.keyfile import KeyFile, dump_key_file
from secretlink.crypto.keys import KeyPair
from secretlink.crypto.protected_keyfile import MAX_FILE_BYTES, is_protected

RETENTION_CHOICES = ("1", "7", "30", "90", "default")
SHOWN = (
    "status",
    "paused",
    "retention_days",
    "instance_retention_days",
    "hourly_cap",
    "accepts_replies",
    "accepts_attachments",
    "moved_to",
    "disabled_reason",
)

server_option = click.option("--server", help="Server URL (default: the key file's server).")
key_option = key_file_option("The inbox's private key file (plain or passphrase-protected).")


def owner(server: str | None, key_file: str):
    from secretlink.client.cli import inbox_client

    return inbox_client(server, key_file)


def fail(message: str) -> None:
    from secretlink.client.cli import fail as cli_fail

    cli_fail(message)


def parse_cap(text: str) -> int | None:
    if text == "none":
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 10_000:
        fail("--hourly-cap must be a whole number from 1 to 10000, or 'none'")
    return int(text)


def shown(value: object) -> str:
    if value is None:
        return "-"
    return str(value).lower() if isinstance(value, bool) else field(value)


@click.command("settings")
@server_option
@key_option
@click.option("--pause/--resume", default=None, help="Turn senders away for now, or again not.")
@click.option(
    "--retention",
    type=click.Choice(RETENTION_CHOICES),
    help="Days the server keeps messages, or 'default' for the server's own.",
)
@click.option("--hourly-cap", metavar="N|none", help="At most N messages an hour; 'none' lifts it.")
@click.option("--replies/--no-replies", default=None, help="Whether replies are accepted.")
@click.option(
    "--attachments/--no-attachments",
    default=None,
    help="Whether senders may attach files (encrypted, like the text).",
)
def settings(
    server: str | None,
    key_file: str,
    pause: bool | None,
    retention: str | None,
    hourly_cap: str | None,
    replies: bool | None,
    attachments: bool | None,
) -> None:
    """Show the inbox's settings, after changing those given."""
    changes: dict = {}
    if pause is not None:
        changes["paused"] = pause
    if retention is not None:
        changes["retention_days"] = None if retention == "default" else int(retention)
    if hourly_cap is not None:
        changes["hourly_cap"] = parse_cap(hourly_cap)
    if replies is not None:
        changes["accepts_replies"] = replies
    if attachments is not None:
        changes["accepts_attachments"] = attachments
    client = owner(server, key_file)
    path = f"{client.base}/settings"
    token = client.token()
    found = (
        client.api.call("PATCH", path, json=changes, token=token)
        if changes
        else client.api.call("GET", path, token=token)
    )
    if not isinstance(found, dict):
        fail("the server answered the settings request with something that is not settings")
    for name in SHOWN:
        click.echo(f"{name}: {shown(found.get(name))}")


@click.command("delete-all")
@server_option
@key_option
@click.option("--yes", is_flag=True, help="Confirm: every message is deleted for good.")
def delete_all(server: str | None, key_file: str, yes: bool) -> None:
    """Delete every message of the inbox (the inbox stays)."""
    if not yes:
        fail("this deletes every message of the inbox for good: add --yes to confirm")
    client = owner(server, key_file)
    answer = client.api.call("DELETE", f"{client.base}/messages", token=client.token())
    deleted = answer.get("deleted") if isinstance(answer, dict) else None
    click.echo(f"deleted {shown(deleted)} messages", err=True)


@click.command("rotate")
@server_option
@key_option
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to keep the new key; an existing one from an interrupted rotation is reused.",
)
def rotate(server: str | None, key_file: str, new_key_file: str) -> None:
    """Move the inbox on to a new key and link; print the new link.

    The new key is written first, then registered (with the same prompt), then the
    old inbox is marked moved on: its link then tells senders only that. Interrupted,
    run the same command again: it reuses the new key file. Keep the old key file to
    read the old inbox's messages.
    """
    from secretlink.client.http import InboxClient

    old = owner(server, key_file)
    protection = protection_of(key_file)  # a protected old key: so is the new one
    # Refused before a key is made or an inbox created for nothing.
    state = old.api.call("GET", f"{old.base}/settings", token=old.token())
    state = state if isinstance(state, dict) else {}
    if state.get("disabled"):
        fail("the operator disabled this inbox: it cannot be rotated")
    moved_to = state.get("moved_to")
    if moved_to and not os.path.exists(new_key_file):
        fail(f"this inbox already moved on to {moved_to}; it is not rotated again")
    new_keypair = new_key(new_key_file, old.api.server, protection)
    if new_keypair.public_key == old.keypair.public_key:
        fail("--new-key-file holds the same key as --key-file")
    info = old.api.call("GET", old.base)
    prompt = info.get("prompt", "") if isinstance(info, dict) else ""
    new = InboxClient(old.api.server, new_keypair)
    link = new.register(prompt if isinstance(prompt, str) else "")["link"]
    body = {"new_public_key": new.keypair.public_key_text, "new_token": new.token()}
    old.api.call("POST", f"{old.base}/rotate", json=body, token=old.token())
    click.echo(field(link))
    click.echo(
        "the old link now says the inbox moved on; its settings and notifications "
        f"carry over; {where(new_key_file)}",
        err=True,
    )


def new_key(path: str, server: str, protection: Protection | None) -> KeyPair:
    """The key pair in `path`, made and written there (mode 0600) if it does not exist,
    protected like the old key file when that was protected."""
    if os.path.exists(path):
        # A rotation that stopped half-way.
        return read_successor_key_file(path, protection).keypair
    keypair = generate_keypair()
    key_file = KeyFile(keypair, server)
    text = dump_key_file(key_file) if protection is None else protect_like(key_file, protection)
    write_private(path, text)
    return keypair


def where(path: str) -> str:
    """Where the new key went, and whether a passphrase guards it."""
    with open(path, "rb") as handle:
        protected = is_protected(handle.read(MAX_FILE_BYTES + 1))
    guarded = ", protected by a passphrase" if protected else ""
    return f"the new key file is {field(path)}{guarded}"


COMMANDS = (settings, delete_all, rotate)
