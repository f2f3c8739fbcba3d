"""Files sent with a message, and saved from one (crypto/SPEC.md 5.10, 5.11; docs/API.md,
"Attachments"), for the command line.

Both directions stream in constant memory. Sending: each file is read, encrypted and
uploaded one request (at most 1 MiB) at a time; after a dropped connection the upload
asks the server how much arrived and goes on from there, encrypting the file again
up to that point (encryption is a function of the file and its entry, so the bytes
are the same). Saving: a blob is downloaded and decrypted chunk by chunk into a
temporary file beside its destination, and gets its name only when every check of
SPEC 5.11 passed: a damaged or tampered blob leaves nothing behind.

With `strip_metadata`, each JPEG photo (known by its first bytes) loses its location
and camera data first (jpeg_metadata.py): the cleaned file is what is listed,
encrypted and counted.
"""

import mimetypes
import os
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from secretlink.client.http import (
    TIMEOUT,
    Api,
    ClientError,
    InboxClient,
    Link,
    Refused,
    network_error,
    post_envelope,
    with_work,
)
from secretlink.client.jpeg_metadata import JpegError, Plan, clean_jpeg, is_jpeg, plan_pieces
from secretlink.crypto import b64encode
from secretlink.crypto.attachments import (
    MAX_FILES,
    Attachment,
    BlobDecryptor,
    BlobEncryptor,
    clean_media_type,
    clean_name,
    new_attachment,
    padded_length,
)
from secretlink.crypto.envelope import Message, seal
from secretlink.crypto.errors import SizeError

READ_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 1 << 20
# Attempts at one piece after a dropped connection or a server error, before giving up.
RETRIES = 3
RETRY_PAUSE_SECONDS = 1.0
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{kind}{n}" for kind in ("COM", "LPT") for n in range(1, 10)]
)


# ---- progress on standard error ----


class Progress:
    """`name: 42% (1.2 of 2.9 MiB), 3 s left` on one line of standard error, redrawn at
    most ten times a second; nothing when standard error is not a terminal."""

    def __init__(self, label: str, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.total = total
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.drawn < 0.1 and done < self.total):
            return
        self.drawn = now
        share = done / self.total if self.total else 1.0
        elapsed = now - self.started
        left = f", {int(elapsed / share - elapsed) + 1} s left" if 0 < share < 1 else ""
        mib = f"{done / (1 << 20):.1f} of {self.total / (1 << 20):.1f} MiB"
        self.stream.write(f"\r\x1b[K{self.label}: {int(share * 100)}% ({mib}){left}")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()


# ---- sending ----


@dataclass(frozen=True)
class Outgoing:
    path: Path
    entry: Attachment
    plan: Plan | None = None  # what is left of a JPEG without its metadata


def cleaning_plan(path: Path, size: int) -> Plan | None:
    """The plan that removes a JPEG's metadata, or None for a file that is no JPEG."""
    with path.open("rb") as handle:
        if not is_jpeg(handle):
            return None
        try:
            return clean_jpeg(handle, size)
        except JpegError as exc:
            raise ClientError(
                f"{path} looks like a JPEG photo but is damaged ({exc}), so its location "
                "and camera data cannot be removed; leave out --strip-metadata to send it "
                "as it is. Nothing was sent"
            ) from None


def prepare(paths: list[Path], strip_metadata: bool = False) -> list[Outgoing]:
    """An entry for each file: its name (the last component, made valid), media type
    and size (of the file without its metadata, for a JPEG with `strip_metadata`), with
    a fresh blob id and key (SPEC 5.10, writers)."""
    if len(paths) > MAX_FILES:
        raise ClientError(f"a message carries at most {MAX_FILES} files")
    prepared = []
    for path in paths:
        try:
            if not path.is_file():
                raise ClientError(f"{path} is not a file")
            size = path.stat().st_size
            plan = cleaning_plan(path, size) if strip_metadata else None
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}") from None
        guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # os.fsdecode keeps undecodable bytes as lone surrogates: clean_name replaces them.
        name = clean_name(os.fsdecode(path.name))
        size = plan.size if plan else size
        entry = new_attachment(name, clean_media_type(guessed), size)
        prepared.append(Outgoing(path, entry, plan))
    return prepared


def check_limits(view: object, files: list[Outgoing]) -> None:
    """Refuse before any upload: an inbox that takes no files, a file or a message over
    the server's limits (from the public inbox view)."""
    if not isinstance(view, dict) or view.get("accepts_attachments") is not True:
        raise ClientError(
            "this inbox does not take attachments (its owner has not turned them on); "
            "nothing was sent"
        )
    limits = view.get("attachment_limits")
    try:
        max_file = int(limits["max_file_bytes"])
        max_message = int(limits["max_message_bytes"])
    except (KeyError, TypeError, ValueError):
        raise ClientError(
            "the server sent no attachment limits; is it a secretlink server?"
        ) from None
    for item in files:
        if item.entry.padded_length > padded_length(max_file):
            raise ClientError(
                f"{item.path} has {item.entry.size} bytes; this server takes files of at "
                f"most {max_file} bytes. Nothing was sent"
            )
    stored = sum(item.entry.padded_length for item in files)
    if stored > max_message:
        raise ClientError(
            f"the files take {stored} bytes encrypted; this server takes at most "
            f"{max_message} per message. Nothing was sent"
        )


def blob_pieces(item: Outgoing, skip: int = 0) -> Iterator[bytes]:
    """The file's blob, in pieces, from byte `skip` on; the file is read as it goes."""
    encryptor = BlobEncryptor(item.entry)

    def whole() -> Iterator[bytes]:
        try:
            with item.path.open("rb") as handle:
                pieces = (
                    plan_pieces(handle, item.plan)
                    if item.plan
                    else iter(lambda: handle.read(READ_BYTES), b"")
                )
                for piece in pieces:
                    yield encryptor.update(piece)
            yield from encryptor.finish()
        except OSError as exc:
            raise ClientError(f"cannot read {item.path}: {exc.strerror}") from None
        except (SizeError, JpegError):
            # The entry (with the size) is sealed already: a file that changed cannot go.
            raise ClientError(
                f"{item.path} changed while it was being sent (it no longer has "
                f"{item.entry.size} bytes); nothing was sent"
            ) from None

    for piece in whole():
        if skip >= len(piece):
            skip -= len(piece)
            continue
        yield piece[skip:]
        skip = 0


def requests_of(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The pieces regrouped into request bodies of `size` bytes (the last shorter)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def upload(api: Api, base: str, item: Outgoing, progress: Progress) -> str:
    """Upload one file's blob; its id (base64url)."""
    entry = item.entry
    blob_id = b64encode(entry.blob_id)
    length = entry.padded_length
    started = with_work(
        lambda fields: api.call(
            "POST", f"{base}/uploads", json={"blob_id": blob_id, "length": length, **fields}
        ),
        api.call("POST", f"{base}/uploads/puzzle", json={"length": length}),
    )
    capability = started.get("upload") if isinstance(started, dict) else None
    chunk = started.get("chunk_bytes") if isinstance(started, dict) else None
    if not isinstance(capability, str) or not isinstance(chunk, int) or chunk < 1:
        raise ClientError("the server answered the upload's start unlike a secretlink server")
    chunk = min(chunk, MAX_REQUEST_BYTES)
    url = f"{base}/uploads/{blob_id}"
    sent, failures = 0, 0
    bodies = requests_of(blob_pieces(item), chunk)
    while sent < length:
        body = next(bodies)
        try:
            answer = api.call(
                "PATCH",
                url,
                data=body,
                token=capability,
                headers={"Upload-Offset": str(sent), "Content-Type": "application/octet-stream"},
            )
            sent = int(answer["received"])
        except (ClientError, KeyError, TypeError, ValueError) as exc:
            failures += 1
            if failures > RETRIES or (isinstance(exc, Refused) and not resumable(exc)):
                raise
            time.sleep(RETRY_PAUSE_SECONDS)
            # Where the server is: the dropped request may have arrived, or half of it.
            sent = int(api.call("GET", url, token=capability)["received"])
            bodies = requests_of(blob_pieces(item, skip=sent), chunk)
        progress.update(sent)
    return blob_id


def resumable(refused: Refused) -> bool:
    """A refusal that asking where the upload stands can mend."""
    return refused.status >= 500 or refused.code == "offset_mismatch"


def send_files(
    link: Link,
    text: str,
    paths: list[Path],
    progress: Callable[[str, int], Progress] = Progress,
    strip_metadata: bool = False,
) -> str:
    """Upload the files, then send `text` with their entries; the message's id.

    Everything that can be checked is checked before the first byte is uploaded: the
    files exist, the inbox takes attachments, no file or the whole is over the limits.
    """
    files = prepare(paths, strip_metadata)
    api = Api(link.server)
    base = f"/api/v1/inboxes/{link.public_key_text}"
    check_limits(api.call("GET", base), files)
    # Sealed before uploading: a text too long for the envelope is refused now.
    try:
        entries = tuple(item.entry for item in files)
        envelope = seal(Message(text, attachments=entries), link.public_key)
    except SizeError:
        raise ClientError(
            "the text and the list of files do not fit in one message; shorten the text. "
            "Nothing was sent"
        ) from None
    blob_ids = []
    for item in files:
        bar = progress(item.entry.name, item.entry.padded_length)
        blob_ids.append(upload(api, base, item, bar))
        bar.finish()
    return post_envelope(link, envelope, blob_ids)


# ---- saving ----


def local_name(name: str, windows: bool | None = None) -> str:
    """A name the field allows (SPEC 5.10), made safe to create here: format and
    separator characters (bidirectional controls, zero-width spaces) become '_', so the
    saved name reads as what it is; a leading '.' or '-' becomes '_' (no hidden file, no
    name a command takes for an option); on Windows also its reserved characters,
    trailing dots and spaces, and device names."""
    windows = os.name == "nt" if windows is None else windows
    chars = []
    for char in name:
        unsafe = unicodedata.category(char) in ("Cf", "Zl", "Zp")
        chars.append("_" if unsafe or (windows and char in '<>:"|?*') else char)
    safe = "".join(chars)
    if windows:
        safe = safe.rstrip(" .") or "file"
        if safe.split(".")[0].upper() in WINDOWS_RESERVED:
            safe = "_" + safe
    if safe[0] in ".-":
        safe = "_" + safe[1:]
    return safe.encode("utf-8")[:255].decode("utf-8", "ignore")


def unique_names(name: str) -> Iterator[str]:
    """`name`, then `stem-1.ext`, `stem-2.ext`, ...: never an existing file's name."""
    yield name
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    for number in range(1, 10_000):
        yield f"{stem}-{number}{dot}{extension}"


def place(temporary: Path, directory: Path, name: str) -> Path:
    """Give the finished file its name without ever replacing a file: a hard link that
    fails if the name exists (or, where links are not allowed, an exclusive create
    that the file then replaces)."""
    for candidate in (directory / option for option in unique_names(name)):
        try:
            os.link(temporary, candidate)
        except FileExistsError:
            continue
        except OSError:
            try:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                continue
            os.replace(temporary, candidate)
            return candidate
        os.unlink(temporary)
        return candidate
    raise ClientError(f"too many files named like {name} in {directory}")


def save(client: InboxClient, entry: Attachment, directory: Path) -> Path:
    """Download, check and decrypt one attachment into `directory`; where it went.

    Raises a SecretlinkCryptoError if the blob is damaged or tampered with (nothing is
    left behind then), ClientError if it cannot be fetched or written.
    """
    url = f"{client.api.server}{client.base}/blobs/{b64encode(entry.blob_id)}"
    try:
        response = client.api.http.get(
            url, headers={"Authorization": f"Bearer {client.token()}"}, stream=True, timeout=TIMEOUT
        )
    except requests.RequestException as exc:
        raise network_error(exc, client.api.server) from None
    with response:
        if response.status_code == 404:
            raise ClientError("the server no longer holds this file")
        if not response.ok:
            raise ClientError(f"the server refused the download ({response.status_code})")
        return write_checked(response, entry, directory)


def write_checked(response: requests.Response, entry: Attachment, directory: Path) -> Path:
    decryptor = BlobDecryptor(entry)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) != entry.padded_length:
        # SPEC 5.11: a length known in advance is checked before reading.
        raise SizeError(f"the blob has {declared} bytes, not {entry.padded_length}")
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=directory, prefix=".secretlink-", suffix=".part"
        )
    except OSError as exc:
        raise ClientError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as out:
            try:
                for piece in response.iter_content(READ_BYTES):
                    out.write(decryptor.update(piece))
            except requests.RequestException as exc:
                raise ClientError(f"the download broke off: {type(exc).__name__}") from None
            decryptor.finish()
            out.flush()
            os.fsync(out.fileno())
        return place(Path(temporary), directory, local_name(entry.name))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
