"""Attachment blobs in an S3 bucket (SECRETLINK_BLOB_STORE=s3://...), against moto's
S3-compatible server on loopback: what only this backend does. Every shared
attachment test runs on it too (tests/test_attachments_api.py, test_cli_attachments.py).

On SQLite only: the backend never touches the database.
"""

import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner
from conftest import bearer, database_for, register
from test_attachments_api import (
    MAX_FILE,
    accept_attachments,
    accepting_inbox,
    append,
    assert_error,
    blob_files,
    blob_of,
    download,
    purge_now,
    send,
    sent_message,
    small_attachments,
    started_upload,
    uploads_url,
)

from secretlink.client.cli import main
from secretlink.crypto import b64encode
from secretlink.crypto.attachments import decrypt_blob, new_attachment
from secretlink.store import blob_backends
from secretlink.store.blob_backends import S3Backend, backend_for
from secretlink.store.blobs import blob_directory


@pytest.fixture
def database_url(request, tmp_path):
    with database_for("sqlite", request, tmp_path) as url:
        yield url


@pytest.fixture
def settings(settings, s3_store):
    return small_attachments(settings, **s3_store)


@pytest.fixture
def inbox(client, keypair):
    return accepting_inbox(client, keypair)


@pytest.fixture
def fail_fast(monkeypatch) -> None:
    """One attempt per request: a store that is down answers at once (not after the
    retries' pauses), so the tests stay quick."""
    monkeypatch.setattr(blob_backends, "S3_RETRIES", {"max_attempts": 1, "mode": "standard"})


def backend(settings) -> S3Backend:
    found = backend_for(
        settings.blob_store, blob_directory(settings.data_dir), settings.s3_endpoint_url
    )
    assert isinstance(found, S3Backend)
    return found


def objects(settings) -> dict[str, bytes]:
    """Every object in the test's bucket, by key (the bucket is the test's own)."""
    store = backend(settings)
    bucket = store.location.bucket
    found = {}
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = store.client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            found[item["Key"]] = body.read()
    return found


def closed_endpoint() -> str:
    """A loopback address where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_blob_reaches_the_bucket_only_whole(client, inbox, settings):
    keypair, _ = inbox
    entry = new_attachment("a.bin", "application/octet-stream", 100_000)
    blob = blob_of(entry, os.urandom(100_000))
    blob_id, capability = started_upload(client, keypair, length=len(blob))
    half = len(blob) // 2
    assert append(client, keypair, blob_id, capability, 0, blob[:half]).status_code == 200
    # Under way: a partial file in the data directory, nothing in the bucket.
    assert objects(settings) == {}
    assert blob_files(client.application, keypair) == [blob_id + ".part"]
    done = append(client, keypair, blob_id, capability, half, blob[half:])
    assert done.get_json()["complete"] is True
    key = f"blobs/{keypair.public_key_text}/{blob_id}"
    assert objects(settings) == {key: blob}
    # The partial file went; the object says nothing but its bytes.
    folder = blob_directory(settings.data_dir) / keypair.public_key_text
    assert os.listdir(folder) == []
    head = backend(settings).client.head_object(Bucket=backend(settings).location.bucket, Key=key)
    assert head["ContentType"] == "application/octet-stream" and head["Metadata"] == {}


def test_a_download_streams_from_the_bucket_in_pieces(client, inbox, monkeypatch):
    keypair, token = inbox
    files, data, _ = sent_message(client, keypair, sizes=(MAX_FILE,))
    entry = files[0]
    blob_id = b64encode(entry.blob_id)
    starts = []
    fetch = S3Backend.get

    def counted(self, key: str, start: int):
        starts.append(start)
        return fetch(self, key, start)

    monkeypatch.setattr(S3Backend, "get", counted)
    url = f"/api/v1/inboxes/{keypair.public_key_text}/blobs/{blob_id}"
    answer = client.get(url, headers=bearer(token), buffered=False)
    assert answer.status_code == 200
    assert int(answer.headers["Content-Length"]) == entry.padded_length
    pieces = list(answer.response)
    answer.close()
    # Handed on as it arrives from the bucket, never read whole first.
    assert len(pieces) > 4 and max(len(piece) for piece in pieces) <= 64 * 1024
    assert b"".join(decrypt_blob(entry, pieces)) == data[0]
    assert starts == [0]
    # A resumed download asks the bucket for the rest only.
    rest = download(client, keypair, token, blob_id, Range="bytes=150000-")
    assert rest.status_code == 206
    assert rest.get_data() == b"".join(pieces)[150000:]
    assert starts[-1] == 150000


def test_an_unreachable_bucket_answers_503_and_the_upload_is_finished_later(
    make_app, settings, keypair, fail_fast
):
    # Two apps on the same data directory and database: one whose object store is
    # down, one whose store is back.
    down = make_app(replace(settings, s3_endpoint_url=closed_endpoint())).test_client()
    up = make_app(settings).test_client()
    token = register(down, keypair)
    accept_attachments(down, keypair, token)
    entries = [new_attachment(f"{n}.bin", "application/octet-stream", 5000) for n in range(2)]
    blobs = [blob_of(entry, os.urandom(5000)) for entry in entries]
    uploads = [started_upload(down, keypair, length=len(blob)) for blob in blobs]
    for (blob_id, capability), blob in zip(uploads, blobs, strict=True):
        refused = append(down, keypair, blob_id, capability, 0, blob)
        body = assert_error(refused, 503, "storage_unavailable")
        assert "later" in body["error"] and "127.0.0.1" not in body["error"]
    # Nothing half-written: no object, no complete row, each upload kept whole here.
    assert objects(settings) == {}
    assert blob_files(up.application, keypair) == sorted(b + ".part" for b, _ in uploads)
    listing = [b for b, _ in uploads]
    assert_error(send(down, keypair, "x", tuple(entries), listing), 409, "upload_incomplete")
    (first, first_capability), (second, second_capability) = uploads
    state_url = f"{uploads_url(keypair)}/{first}"
    assert_error(down.get(state_url, headers=bearer(first_capability)), 503, "storage_unavailable")

    # The store is back: asking where the upload stands stores it, and so does an
    # empty piece at its end.
    state = up.get(state_url, headers=bearer(first_capability)).get_json()
    assert state == {"received": len(blobs[0]), "length": len(blobs[0]), "complete": True}
    finished = append(up, keypair, second, second_capability, len(blobs[1]), b"")
    assert finished.status_code == 200 and finished.get_json()["complete"] is True
    assert blob_files(up.application, keypair) == sorted(listing)
    assert send(up, keypair, "two files", tuple(entries), listing).status_code == 201
    # Reading while the store is down is a 503 as well, never a 500 or a cut answer.
    assert_error(download(down, keypair, token, first), 503, "storage_unavailable")
    assert download(up, keypair, token, first).get_data() == blobs[0]


def test_a_deletion_while_the_bucket_is_down_leaves_the_objects_to_the_purge(
    make_app, settings, keypair, fail_fast
):
    up = make_app(settings).test_client()
    down = make_app(replace(settings, s3_endpoint_url=closed_endpoint())).test_client()
    token = register(up, keypair)
    accept_attachments(up, keypair, token)
    _, _, message_id = sent_message(up, keypair, sizes=(10, 20))
    # The owner's deletion succeeds; the objects wait for the store.
    url = f"/api/v1/inboxes/{keypair.public_key_text}/messages/{message_id}"
    assert down.delete(url, headers=bearer(token)).status_code == 204
    assert len(objects(settings)) == 2
    purge_now(up.application)
    assert objects(settings) == {}


def test_the_operator_s_delete_removes_the_inbox_s_objects(client, inbox, settings, monkeypatch):
    keypair, _ = inbox
    sent_message(client, keypair, sizes=(10,))
    assert len(objects(settings)) == 1
    for name, value in {
        "SECRETLINK_DATA_DIR": str(settings.data_dir),
        "SECRETLINK_DATABASE_URL": settings.database_url,
        "SECRETLINK_BLOB_STORE": settings.blob_store,
        "SECRETLINK_S3_ENDPOINT_URL": settings.s3_endpoint_url,
    }.items():
        monkeypatch.setenv(name, value)
    key = keypair.public_key_text
    runner = CliRunner()
    assert (
        runner.invoke(main, ["admin", "inbox", "disable", key, "--reason", "abuse"]).exit_code == 0
    )
    result = runner.invoke(main, ["admin", "inbox", "delete", key, "--yes"])
    assert result.exit_code == 0, result.output
    assert objects(settings) == {}


@pytest.mark.parametrize("where", ["no such bucket", "nothing listening"])
def test_serve_refuses_to_start_without_a_writable_bucket(
    tmp_path, s3_endpoint, s3_credentials, where
):
    if where == "no such bucket":
        store, endpoint, reason = "s3://secretlink-missing/blobs", s3_endpoint, "NoSuchBucket"
    else:
        store, endpoint, reason = "s3://secretlink/blobs", closed_endpoint(), "connect"
    result = subprocess.run(
        [sys.executable, "-m", "secretlink.client.cli", "serve"],
        env={
            **os.environ,
            "SECRETLINK_DATA_DIR": str(tmp_path / "data"),
            "SECRETLINK_BLOB_STORE": store,
            "SECRETLINK_S3_ENDPOINT_URL": endpoint,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: SECRETLINK_BLOB_STORE: cannot write to {store} at")
    assert reason in line
    assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in result.stderr + result.stdout
