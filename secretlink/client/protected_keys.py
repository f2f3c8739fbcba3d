"""Key files on disk for the CLI, plain or passphrase-protected (SPEC sections 6, 6a).

`read_key_file` is the one place the commands load a `--key-file`: a protected file
asks for its passphrase (a prompt, or `--passphrase-fd N`; never an argument, which
`ps` and shell history would show). `secretlink key protect|unprotect` convert files.
"""

import os
import tempfile
from dataclasses import dataclass, field
from getpass import getpass
from pathlib import Path

import click

from secretlink.client.termsafe import field as shown
from secretlink.crypto.errors import PassphraseError, SecretlinkCryptoError
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file
from secretlink.crypto.protected_keyfile import (
    MAX_FILE_BYTES,
    MAX_PASSPHRASE_BYTES,
    Cost,
    KeyBundle,
    check_new_passphrase,
    is_protected,
    load_protected,
    open_header,
    parse_contents,
    protect_key_file,
    read_header,
)
from secretlink.settings import Settings, env_name

FD_NOTE = "secretlink.passphrase_fd"  # where the click context notes --passphrase-fd
LOADED_NOTE = "secretlink.key_files"  # and the key files the command has read
PROTECTION_NOTE = "secretlink.key_protection"  # and how the protected ones were protected
WRITER_COST_SETTINGS = ("key_backup_memory_kib", "key_backup_passes")


class Unusable(click.ClickException):
    """One line on stderr; a quoted path is shown with its control characters escaped."""

    def format_message(self) -> str:
        return shown(self.message)


def writer_cost() -> Cost:
    """The Argon2id cost new files get: SECRETLINK_KEY_BACKUP_MEMORY_KIB and _PASSES
    (the defaults, 64 MiB and 3 passes, unless set; tests set the minimum)."""
    names = [env_name(name) for name in WRITER_COST_SETTINGS]
    settings = Settings.from_env({name: os.environ[name] for name in names if name in os.environ})
    return Cost(settings.key_backup_memory_kib, settings.key_backup_passes)


def _remember_fd(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    if value is not None:
        ctx.meta[FD_NOTE] = value


passphrase_fd_option = click.option(
    "--passphrase-fd",
    type=click.IntRange(0),
    expose_value=False,
    callback=_remember_fd,
    metavar="N",
    help="Read a protected key file's passphrase from file descriptor N (its first line) "
    "instead of asking.",
)


def key_file_option(help_text: str):
    """`--key-file` and, for a protected one, `--passphrase-fd`: every command that loads
    a key file takes both, so that a script can hand over the passphrase to any of them."""

    def decorate(command):
        command = passphrase_fd_option(command)
        return click.option(
            "--key-file", required=True, type=click.Path(dir_okay=False), help=help_text
        )(command)

    return decorate


def _from_fd(fd: int) -> str:
    try:
        with open(fd, "rb", closefd=False) as handle:
            line = handle.readline(MAX_PASSPHRASE_BYTES + 3)
    except OSError as exc:
        raise Unusable(
            f"cannot read a passphrase from file descriptor {fd}: {exc.strerror}"
        ) from None
    for ending in (b"\r\n", b"\n"):
        if line.endswith(ending):
            line = line[: -len(ending)]
            break
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise Unusable(f"the passphrase from file descriptor {fd} is not UTF-8 text") from None


def ask_passphrase(prompt: str) -> str:
    fd = click.get_current_context().meta.get(FD_NOTE)
    return _from_fd(fd) if fd is not None else getpass(prompt)


def new_passphrase() -> str:
    """A passphrase for a new file: from --passphrase-fd, or typed twice."""
    fd = click.get_current_context().meta.get(FD_NOTE)
    if fd is not None:
        passphrase = _from_fd(fd)
    else:
        click.echo(
            "Choose a passphrase: at least 10 characters; several unrelated words are "
            "easy to remember and hard to guess. Nobody can recover a forgotten one.",
            err=True,
        )
        passphrase = getpass("New passphrase: ")
        if getpass("The same passphrase again: ") != passphrase:
            raise Unusable("the two passphrases differ; nothing was written")
    try:
        check_new_passphrase(passphrase)
    except SecretlinkCryptoError as exc:
        raise Unusable(f"{exc}; nothing was written") from None
    return passphrase


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)  # more is refused, however large
    except FileNotFoundError:
        raise Unusable(
            f"key file {path} does not exist (make one with: secretlink keygen --key-file {path})"
        ) from None
    except OSError as exc:
        raise Unusable(f"cannot read key file {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Protection:
    """How a protected key file this command opened was protected, so that a key file
    made to replace it (`inbox rotate`) can be protected as well."""

    passphrase: str = field(repr=False)
    cost: Cost


def _open_protected(path: str, data: bytes) -> KeyFile | KeyBundle:
    try:
        header = read_header(data)  # a malformed file is refused before any prompt
        passphrase = ask_passphrase(f"Passphrase for {path}: ")
        opened = parse_contents(open_header(header, passphrase))
    except SecretlinkCryptoError as exc:
        raise Unusable(f"key file {path}: {exc}") from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta.setdefault(PROTECTION_NOTE, {})[path] = Protection(passphrase, header.cost)
    return opened


def protection_of(path: str) -> Protection | None:
    """The passphrase and cost of `path` if this command opened it as a protected file."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(PROTECTION_NOTE, {}).get(path) if ctx else None


def _one_inbox(path: str, bundle: KeyBundle, wanted: str | None) -> KeyFile:
    keys = [entry.key_file for entry in bundle.inboxes]
    chosen = [key for key in keys if wanted and key.keypair.public_key_text.startswith(wanted)]
    if len(keys) == 1 and not wanted:
        return keys[0]
    if len(chosen) == 1:
        return chosen[0]
    listed = ", ".join(
        f"{key.keypair.public_key_text[:12]}… ({key.server or 'no server'})" for key in keys
    )
    reason = "none" if wanted and not chosen else "more than one" if wanted else "several"
    raise Unusable(
        f"key file {path} is a backup of {len(keys)} inboxes ({listed}) and {reason} "
        "match; take one out with: secretlink key unprotect FILE --inbox KEY --out NEW-FILE"
    )


def read_key_file(path: str, inbox: str | None = None) -> KeyFile:
    """A key file, plain or protected (a backup of one inbox, or `inbox` of several).

    Read once per command: a command that needs the key twice asks for the passphrase
    (or reads --passphrase-fd) once."""
    ctx = click.get_current_context(silent=True)
    loaded = ctx.meta.setdefault(LOADED_NOTE, {}) if ctx else {}
    if (path, inbox) not in loaded:
        loaded[path, inbox] = _load(path, inbox)
    return loaded[path, inbox]


def _load(path: str, inbox: str | None) -> KeyFile:
    data = _read_bytes(path)
    if not is_protected(data):
        try:
            return load_key_file(data)
        except SecretlinkCryptoError as exc:
            raise Unusable(f"key file {path}: {exc}") from None
    opened = _open_protected(path, data)
    return opened if isinstance(opened, KeyFile) else _one_inbox(path, opened, inbox)


def write_private(path: str, text: str, replace: bool = False) -> None:
    """Write `text` readable by its owner only: a new file (refusing to overwrite), or
    with `replace`, in place of `path` in one step (a crash leaves the old file whole)."""
    if not replace:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise Unusable(f"{path} already exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise Unusable(f"cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".secretlink-key.")  # mode 0600
    except OSError as exc:
        raise Unusable(f"cannot write next to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@click.group()
def key() -> None:
    """Protect a key file with a passphrase, or take the protection off."""


out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write the result to this new file instead of replacing FILE.",
)


@key.command("protect")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@out_option
@passphrase_fd_option
def protect(path: str, out: str | None) -> None:
    """Encrypt the plain key file FILE under a passphrase (Argon2id, XChaCha20-Poly1305).

    Without --out, FILE is replaced. Every command reads the protected file as it did
    the plain one, asking for the passphrase.
    """
    data = _read_bytes(path)
    if is_protected(data):
        raise Unusable(f"key file {path} is protected already")
    try:
        key_file = load_key_file(data)
    except SecretlinkCryptoError as exc:
        raise Unusable(f"key file {path}: {exc}") from None
    text = protect_key_file(key_file, new_passphrase(), writer_cost())
    write_private(out or path, text, replace=out is None)
    click.echo(f"{out or path} is protected by the passphrase", err=True)


@key.command("unprotect")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@out_option
@click.option(
    "--inbox",
    metavar="KEY",
    help="For a backup of several inboxes: the public key (or its start) of the one to take out.",
)
@passphrase_fd_option
def unprotect(path: str, out: str | None, inbox: str | None) -> None:
    """Write the plain key file held in the protected FILE (or, from a backup of
    several inboxes, the one chosen by --inbox). Without --out, FILE is replaced,
    unless it is a backup of several inboxes."""
    data = _read_bytes(path)
    if not is_protected(data):
        raise Unusable(f"key file {path} is not passphrase-protected")
    opened = _open_protected(path, data)
    if isinstance(opened, KeyBundle) and len(opened.inboxes) > 1 and out is None:
        raise Unusable(
            f"{path} is a backup of {len(opened.inboxes)} inboxes: say where the one you "
            "take out goes with --out NEW-FILE (the backup is kept)"
        )
    key_file = opened if isinstance(opened, KeyFile) else _one_inbox(path, opened, inbox)
    write_private(out or path, dump_key_file(key_file), replace=out is None)
    click.echo(
        f"{out or path} now holds the key unprotected: anyone who can read it can read "
        "the inbox's messages",
        err=True,
    )


def protect_new_key(key_file: KeyFile) -> str:
    """`secretlink keygen --passphrase`: the new key's protected file."""
    return protect_key_file(key_file, new_passphrase(), writer_cost())


def protect_like(key_file: KeyFile, protection: Protection) -> str:
    """A successor key file protected as its predecessor was: the same passphrase, and
    per parameter the higher of the predecessor's cost and what `key protect` would use
    (never weaker than either: a backup whose cost a server lowered is not copied)."""
    configured = writer_cost()
    cost = Cost(
        max(protection.cost.memory_kib, configured.memory_kib),
        max(protection.cost.passes, configured.passes),
    )
    try:
        return protect_key_file(key_file, protection.passphrase, cost)
    except SecretlinkCryptoError as exc:
        raise Unusable(
            f"cannot protect the new key file with the old one's passphrase: {exc}; "
            "nothing was changed"
        ) from None


def read_successor_key_file(path: str, protection: Protection | None) -> KeyFile:
    """A key file written by an earlier run of this command for the one it read with
    `protection`: opened with that passphrase (already asked for, or read from
    --passphrase-fd), else read as any key file."""
    data = _read_bytes(path)
    if protection is not None and is_protected(data):
        try:
            opened = load_protected(data, protection.passphrase)
        except PassphraseError:
            opened = None  # protected otherwise: its own passphrase is asked for
        except SecretlinkCryptoError as exc:
            raise Unusable(f"key file {path}: {exc}") from None
        if isinstance(opened, KeyFile):
            return opened
    return read_key_file(path)
