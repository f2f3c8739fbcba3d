"""Where a complete attachment blob's bytes live: a folder of the data directory, or a
bucket of an S3-compatible object store (SECRETLINK_BLOB_STORE).

secretlink/store/blobs.py keeps the bookkeeping (rows, quotas) and the uploads under
way, which are always `.part` files in `<data dir>/blobs/<inbox key>/`: S3 has no
append. When an upload's last byte arrives, `store` makes the whole part the blob:
the folder renames it into place; S3 copies it to `<prefix>/<inbox key>/<blob id>`
with boto3's managed upload (read from the file in parts, constant memory). Reading
is by `open`, a binary file object that can seek (a Range resumes a download): the
S3 one streams the object in pieces, never holding it whole.

Neither backend imports Flask or SQLAlchemy. Every failure of the object store
(unreachable, refused, misconfigured) is raised as StorageUnavailable, whose message
names the bucket and the reason, never a credential.
"""

import contextlib
import io
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("secretlink.store.blob_backends")

DIRECTORY = "directory"
PART_SUFFIX = ".part"
# What the names under an S3 prefix must look like to be taken for ours: an inbox key
# (43 characters of base64url) and a blob id (22). Anything else is left alone.
INBOX_NAME = re.compile(r"[A-Za-z0-9_-]{43}")
BLOB_NAME = re.compile(r"[A-Za-z0-9_-]{22}")
# S3 bucket names (the rules every S3-compatible server accepts) and prefix segments.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# boto3's managed upload: parts of 8 MiB, two at a time, from 16 MiB on; so copying a
# blob to the bucket holds at most about 16 MiB in memory whatever its size.
MULTIPART_THRESHOLD = 16 << 20
MULTIPART_PART = 8 << 20
UPLOAD_CONCURRENCY = 2
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
# botocore's retries of a failed request (connection refused, 5xx, throttling): a few,
# so an unreachable store answers in seconds, not minutes.
S3_RETRIES = {"max_attempts": 3, "mode": "standard"}


class StorageUnavailable(OSError):
    """The object store could not be reached or refused a request. An OSError, as a
    failed read of a local file would be; its message is safe to log and to show to
    an operator (bucket, endpoint and the store's own reason, no credential)."""


# ---- file times (docs/THREAT-MODEL.md): no stored time finer than the minute ----


def minute_now() -> float:
    return float(int(time.time()) // 60 * 60)


def coarsen(path: Path) -> None:
    """Set a file's or folder's times to the start of this minute."""
    moment = minute_now()
    os.utime(path, (moment, moment))


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_inbox_folder(directory: Path, public_key: str) -> None:
    """Remove an inbox's folder of blobs and uploads under way."""
    folder = directory / public_key
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            coarsen(directory)


class BlobBackend(Protocol):
    """Where complete blobs are kept, by inbox key and blob id."""

    def store(self, inbox_key: str, blob_id: str, part: Path) -> None:
        """Make the whole upload in `part` the blob (the part may be left behind)."""

    def exists(self, inbox_key: str, blob_id: str) -> bool: ...

    def open(self, inbox_key: str, blob_id: str) -> tuple[BinaryIO, int]:
        """The blob's bytes, seekable, and how many there are (as kept, which a
        damaged store may make differ from the row's length); FileNotFoundError if
        there is no such blob."""

    def names(self, inbox_key: str) -> list[str]:
        """The ids of the blobs kept for this inbox."""

    def remove(self, inbox_key: str, blob_ids: Iterable[str]) -> None: ...

    def inboxes(self) -> list[str]:
        """The inbox keys that have blobs kept here."""

    def remove_inbox(self, inbox_key: str) -> None: ...

    def check(self) -> None:
        """Raise StorageUnavailable unless blobs can be written and deleted."""

    def describe(self) -> str: ...


# ---- the data directory (the default) ----


class DirectoryBackend:
    """Complete blobs beside their uploads, as `<directory>/<inbox key>/<blob id>`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, inbox_key: str, blob_id: str) -> Path:
        return self.directory / inbox_key / blob_id

    def store(self, inbox_key: str, blob_id: str, part: Path) -> None:
        final = self.path(inbox_key, blob_id)
        os.replace(part, final)
        folder = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename survives a crash before the row says complete
        finally:
            os.close(folder)
        coarsen(final.parent)

    def exists(self, inbox_key: str, blob_id: str) -> bool:
        return self.path(inbox_key, blob_id).is_file()

    def open(self, inbox_key: str, blob_id: str) -> tuple[BinaryIO, int]:
        stored = self.path(inbox_key, blob_id).open("rb")
        return stored, os.fstat(stored.fileno()).st_size

    def names(self, inbox_key: str) -> list[str]:
        try:
            entries = list(os.scandir(self.directory / inbox_key))
        except FileNotFoundError:
            return []
        return [entry.name for entry in entries if not entry.name.endswith(PART_SUFFIX)]

    def remove(self, inbox_key: str, blob_ids: Iterable[str]) -> None:
        removed = False
        for blob_id in blob_ids:
            unlink(self.path(inbox_key, blob_id))
            removed = True
        if removed:
            with contextlib.suppress(FileNotFoundError):
                coarsen(self.directory / inbox_key)

    def inboxes(self) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(self.directory) if entry.is_dir()]
        except FileNotFoundError:
            return []

    def remove_inbox(self, inbox_key: str) -> None:
        remove_inbox_folder(self.directory, inbox_key)

    def check(self) -> None:
        """Nothing to reach: the folder is made with the first upload."""

    def describe(self) -> str:
        return str(self.directory)


# ---- an S3-compatible object store ----


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without slashes at either end; "" for the bucket's root

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(text: str) -> S3Location:
    """`s3://bucket` or `s3://bucket/prefix`; ValueError with a sentence otherwise."""
    parts = urlsplit(text.strip())
    if parts.scheme != "s3" or parts.query or parts.fragment:
        raise ValueError("must be `directory` or an s3://bucket/prefix URL")
    if not BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise ValueError(
            "names no valid bucket: 3 to 63 lower-case letters, digits, dots and hyphens, "
            "e.g. s3://secretlink-blobs/prod"
        )
    prefix = parts.path.strip("/")
    segments = prefix.split("/") if prefix else []
    if any(not PREFIX_SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise ValueError(
            "has a prefix secretlink does not take: segments of letters, digits, '.', '_' "
            "and '-' separated by single slashes"
        )
    return S3Location(parts.netloc, prefix)


def describe_failure(exc: BaseException) -> str:
    """The reason an S3 request failed, in one line, from botocore's own message."""
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    if error.get("Code"):
        return f"{error.get('Code')}: {error.get('Message') or 'refused'}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class S3Backend:
    """Complete blobs as objects `<prefix>/<inbox key>/<blob id>` of one bucket."""

    def __init__(self, location: S3Location, endpoint_url: str | None = None, client: Any = None):
        self.location = location
        self.endpoint_url = endpoint_url
        self.base = f"{location.prefix}/" if location.prefix else ""
        self.client = client if client is not None else make_client(endpoint_url)

    def key(self, inbox_key: str, blob_id: str) -> str:
        return f"{self.base}{inbox_key}/{blob_id}"

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"{self.location.url}{where}"

    def unavailable(self, doing: str, exc: BaseException) -> StorageUnavailable:
        failure = StorageUnavailable(f"{doing} {self.describe()} failed: {describe_failure(exc)}")
        log.warning("object store: %s", failure)
        return failure

    def store(self, inbox_key: str, blob_id: str, part: Path) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_PART,
            max_concurrency=UPLOAD_CONCURRENCY,
        )
        try:
            self.client.upload_file(
                str(part),
                self.location.bucket,
                self.key(inbox_key, blob_id),
                ExtraArgs={"ContentType": "application/octet-stream"},
                Config=config,
            )
        except Exception as exc:  # botocore's and s3transfer's errors have no common base
            raise self.unavailable("writing to", exc) from None

    def exists(self, inbox_key: str, blob_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.key(inbox_key, blob_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.unavailable("reading", exc) from None
        except Exception as exc:
            raise self.unavailable("reading", exc) from None
        return True

    def open(self, inbox_key: str, blob_id: str) -> tuple[BinaryIO, int]:
        stored = S3Reader(self, self.key(inbox_key, blob_id))
        return stored, stored.length

    def get(self, key: str, start: int) -> dict:
        """GetObject from byte `start` on; FileNotFoundError for a missing object."""
        from botocore.exceptions import ClientError

        arguments = {"Bucket": self.location.bucket, "Key": key}
        if start:
            arguments["Range"] = f"bytes={start}-"
        try:
            return self.client.get_object(**arguments)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(key) from None
            raise self.unavailable("reading", exc) from None
        except Exception as exc:
            raise self.unavailable("reading", exc) from None

    def _list(self, prefix: str, delimiter: bool = False) -> list[dict]:
        arguments = {"Bucket": self.location.bucket, "Prefix": prefix}
        if delimiter:
            arguments["Delimiter"] = "/"
        try:
            return list(self.client.get_paginator("list_objects_v2").paginate(**arguments))
        except Exception as exc:
            raise self.unavailable("listing", exc) from None

    def names(self, inbox_key: str) -> list[str]:
        prefix = f"{self.base}{inbox_key}/"
        found = []
        for page in self._list(prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if BLOB_NAME.fullmatch(name):
                    found.append(name)
        return found

    def remove(self, inbox_key: str, blob_ids: Iterable[str]) -> None:
        keys = [{"Key": self.key(inbox_key, blob_id)} for blob_id in blob_ids]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as exc:
                raise self.unavailable("deleting from", exc) from None
            if answer.get("Errors"):
                first = answer["Errors"][0]
                reason = f"{first.get('Code')}: {first.get('Message')} ({first.get('Key')})"
                raise self.unavailable("deleting from", RuntimeError(reason))

    def inboxes(self) -> list[str]:
        found = []
        for page in self._list(self.base, delimiter=True):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.base) :].rstrip("/")
                if INBOX_NAME.fullmatch(name):
                    found.append(name)
        return found

    def remove_inbox(self, inbox_key: str) -> None:
        self.remove(inbox_key, self.names(inbox_key))

    def check(self) -> None:
        """Write, read back and delete a probe object beside the inboxes' prefixes."""
        key = f"{self.base}.secretlink-check-{secrets.token_hex(8)}"
        bucket = self.location.bucket
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=b"secretlink")
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            with contextlib.closing(body):
                body.read()
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise StorageUnavailable(
                f"cannot write to {self.describe()}: {describe_failure(exc)}"
            ) from None


_session_lock = threading.Lock()
_sessions: list[Any] = []


def make_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client: credentials and region from boto3's usual environment
    variables and files; short timeouts and few retries, so that an unreachable store
    answers a request in seconds rather than minutes. Clients are thread-safe; the one
    session they come from (it keeps the loaded service model) is not, hence the lock."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries=dict(S3_RETRIES),
        # S3-compatible servers (and IP endpoints) want the bucket in the path.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    with _session_lock:
        if not _sessions:
            _sessions.append(boto3.session.Session())
        return _sessions[0].client("s3", endpoint_url=endpoint_url, config=config)


class S3Reader(io.RawIOBase):
    """An object's bytes as a seekable binary file, streamed from GetObject. Opening
    fetches from the start (so a missing object or an unreachable store is known
    before an answer starts); a seek elsewhere starts a ranged GetObject there."""

    def __init__(self, backend: S3Backend, key: str):
        super().__init__()
        self._backend = backend
        self._key = key
        self._position = 0
        answer = backend.get(key, 0)
        self._body = answer["Body"]
        self.length = int(answer["ContentLength"])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.length}
        target = bases[whence] + offset
        if target < 0:
            raise ValueError("negative seek position")
        if target != self._position:
            self._drop_body()
            self._position = target
        return target

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.length:
            return 0
        try:
            if self._body is None:
                self._body = self._backend.get(self._key, self._position)["Body"]
            data = self._body.read(len(buffer))
        except (FileNotFoundError, StorageUnavailable):
            raise
        except Exception as exc:  # the connection failed mid-object
            raise self._backend.unavailable("reading", exc) from None
        if not data:
            raise self._backend.unavailable(
                "reading", RuntimeError(f"the object ended at byte {self._position}")
            )
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _drop_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


def backend_for(blob_store: str, directory: Path, endpoint_url: str | None = None) -> BlobBackend:
    """The backend SECRETLINK_BLOB_STORE names (`directory` keeps blobs in `directory`)."""
    if blob_store == DIRECTORY:
        return DirectoryBackend(directory)
    return S3Backend(parse_s3_url(blob_store), endpoint_url)


__all__ = [
    "DIRECTORY",
    "PART_SUFFIX",
    "BlobBackend",
    "DirectoryBackend",
    "S3Backend",
    "S3Location",
    "S3Reader",
    "StorageUnavailable",
    "backend_for",
    "coarsen",
    "parse_s3_url",
    "remove_inbox_folder",
    "unlink",
]
