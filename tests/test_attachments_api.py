"""Attachments through the API (docs/API.md, "Attachments"): uploading blobs, sending a
message that lists them, the owner downloading them, and every way they go away.

Runs on SQLite and PostgreSQL with the blobs in the data directory, and on SQLite with
the blobs in an S3 bucket (moto's S3-compatible server on loopback): the blob backend
never touches the database, so S3 on PostgreSQL would test nothing more. Sizes are
small: the test settings allow files of 200 000 bytes, so a test never moves more than
a few hundred KiB.
"""

import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    bearer,
    blob_store_settings,
    database_for,
    get_token,
    register,
    stored_blob_names,
)
from sqlalchemy import update

from secretlink.crypto import b64decode, b64encode, generate_keypair
from secretlink.crypto.attachments import (
    CHUNK_SIZE,
    Attachment,
    decrypt_blob,
    encrypt_blob,
    new_attachment,
    padded_length,
)
from secretlink.crypto.envelope import Message, open_envelope, seal
from secretlink.store.blobs import UPLOAD_CHUNK_BYTES, BlobRow
from secretlink.store.retention import purge_for
from secretlink.store.storage import MessageRow, utcnow

MAX_FILE = 200_000


@pytest.fixture(
    params=[
        pytest.param(("sqlite", "directory"), id="sqlite"),
        pytest.param(("postgresql", "directory"), id="postgresql", marks=pytest.mark.postgresql),
        pytest.param(("sqlite", "s3"), id="sqlite-s3"),
    ]
)
def stores(request) -> tuple[str, str]:
    """(database, blob store) of this run of a test."""
    return request.param


@pytest.fixture
def database_url(stores, request, tmp_path):
    with database_for(stores[0], request, tmp_path) as url:
        yield url


def small_attachments(settings, **more):
    """The tests' small attachment limits (and `more` settings)."""
    return replace(
        settings,
        attachment_max_file_bytes=MAX_FILE,
        attachment_max_message_bytes=3 * padded_length(MAX_FILE),
        inbox_max_attachment_bytes=4 * padded_length(MAX_FILE),
        **more,
    )


@pytest.fixture
def settings(settings, stores, request):
    return small_attachments(settings, **blob_store_settings(stores[1], request))


def accepting_inbox(client, keypair):
    """A registered inbox that takes attachments, and a live token for it."""
    token = register(client, keypair)
    accept_attachments(client, keypair, token)
    return keypair, token


@pytest.fixture
def inbox(client, keypair):
    return accepting_inbox(client, keypair)


def accept_attachments(client, keypair, token, accepts: bool = True) -> None:
    answer = client.patch(
        f"/api/v1/inboxes/{keypair.public_key_text}/settings",
        json={"accepts_attachments": accepts},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.get_json()


def uploads_url(keypair) -> str:
    return f"/api/v1/inboxes/{keypair.public_key_text}/uploads"


def start(client, keypair, blob_id: str, length: int):
    return client.post(uploads_url(keypair), json={"blob_id": blob_id, "length": length})


def append(client, keypair, blob_id: str, capability: str, offset: int, data: bytes):
    return client.patch(
        f"{uploads_url(keypair)}/{blob_id}",
        data=data,
        headers={
            **bearer(capability),
            "Upload-Offset": str(offset),
            "Content-Type": "application/octet-stream",
        },
    )


def blob_of(entry: Attachment, data: bytes) -> bytes:
    return b"".join(encrypt_blob(entry, [data]))


def upload(client, keypair, entry: Attachment, data: bytes, piece: int = 50_000) -> str:
    """Encrypt and upload one file in pieces; the blob id in the API's spelling."""
    blob_id = b64encode(entry.blob_id)
    started = start(client, keypair, blob_id, entry.padded_length)
    assert started.status_code == 201, started.get_json()
    capability = started.get_json()["upload"]
    blob = blob_of(entry, data)
    for offset in range(0, len(blob), piece):
        answer = append(client, keypair, blob_id, capability, offset, blob[offset : offset + piece])
        assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"received": len(blob), "length": len(blob), "complete": True}
    return blob_id


def send(client, keypair, text: str, files: tuple[Attachment, ...], blob_ids: list[str]):
    envelope = seal(Message(text, attachments=files), keypair.public_key)
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(envelope), "attachments": blob_ids},
    )


def download(client, keypair, token, blob_id: str, **headers):
    return client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/blobs/{blob_id}",
        headers={**bearer(token), **headers},
    )


def listed(client, keypair, token) -> list[dict]:
    answer = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    )
    return answer.get_json()["messages"]


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code and body["error"]
    return body


def blob_files(app, keypair) -> list[str]:
    """The inbox's partial uploads and blobs, wherever the app keeps them."""
    return stored_blob_names(app.config["SECRETLINK"], keypair.public_key_text)


def sent_message(client, keypair, sizes=(0, 2 * CHUNK_SIZE)):
    """Upload files of these sizes and send them with a text; (files, data, message id)."""
    files = tuple(
        new_attachment(f"file-{i}.bin", "application/octet-stream", size)
        for i, size in enumerate(sizes)
    )
    data = [os.urandom(size) for size in sizes]
    blob_ids = [upload(client, keypair, f, d) for f, d in zip(files, data, strict=True)]
    answer = send(client, keypair, "two files", files, blob_ids)
    assert answer.status_code == 201, answer.get_json()
    return files, data, answer.get_json()["id"]


# ---- the whole way ----


def test_files_sent_with_a_message_come_back_byte_for_byte(client, inbox):
    keypair, token = inbox
    files, data, _ = sent_message(client, keypair)
    [message] = listed(client, keypair, token)
    opened = open_envelope(b64decode(message["ciphertext"]), keypair.secret_key, attachments=True)
    assert opened.text == "two files" and opened.attachments == files
    for entry, plaintext in zip(opened.attachments, data, strict=True):
        answer = download(client, keypair, token, b64encode(entry.blob_id))
        assert answer.status_code == 200
        # Never something a browser would render: a download of opaque bytes.
        assert answer.mimetype == "application/octet-stream"
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert answer.headers["Cache-Control"] == "no-store"
        assert b"".join(decrypt_blob(entry, [answer.get_data()])) == plaintext


def test_a_download_can_be_resumed_with_a_range(client, inbox):
    keypair, token = inbox
    files, _, _ = sent_message(client, keypair, sizes=(3000,))
    blob_id = b64encode(files[0].blob_id)
    whole = download(client, keypair, token, blob_id).get_data()
    part = download(client, keypair, token, blob_id, Range="bytes=1000-")
    assert part.status_code == 206
    assert part.get_data() == whole[1000:]
    outside = download(client, keypair, token, blob_id, Range=f"bytes={len(whole)}-")
    assert_error(outside, 416, "bad_range")


def test_only_the_owner_downloads(client, inbox):
    keypair, token = inbox
    files, _, _ = sent_message(client, keypair, sizes=(10,))
    blob_id = b64encode(files[0].blob_id)
    assert download(client, keypair, token, blob_id).status_code == 200
    assert download(client, keypair, "not-a-token", blob_id).status_code == 401
    other = generate_keypair()
    other_token = register(client, other)
    assert_error(download(client, other, other_token, blob_id), 404, "unknown_blob")


def test_a_blob_not_yet_sent_is_not_downloadable(client, inbox):
    keypair, token = inbox
    entry = new_attachment("a.txt", "text/plain", 10)
    blob_id = upload(client, keypair, entry, os.urandom(10))
    assert_error(download(client, keypair, token, blob_id), 404, "unknown_blob")


# ---- starting an upload ----


def test_an_inbox_takes_attachments_only_when_its_owner_says_so(client, keypair):
    token = register(client, keypair)
    entry = new_attachment("a.txt", "text/plain", 10)
    body = {"length": entry.padded_length}
    puzzle = client.post(f"{uploads_url(keypair)}/puzzle", json=body)
    assert_error(puzzle, 403, "attachments_not_accepted")
    started = start(client, keypair, b64encode(entry.blob_id), entry.padded_length)
    assert_error(started, 403, "attachments_not_accepted")
    accept_attachments(client, keypair, token)
    assert client.get(f"/api/v1/inboxes/{keypair.public_key_text}").get_json()[
        "accepts_attachments"
    ]
    assert start(client, keypair, b64encode(entry.blob_id), entry.padded_length).status_code == 201


def test_a_file_over_the_limit_is_refused_before_any_work(client, inbox):
    keypair, _ = inbox
    fits, too_big = padded_length(MAX_FILE), padded_length(MAX_FILE + 30_000)
    assert client.post(f"{uploads_url(keypair)}/puzzle", json={"length": fits}).status_code == 200
    answer = client.post(f"{uploads_url(keypair)}/puzzle", json={"length": too_big})
    body = assert_error(answer, 413, "file_too_large")
    assert str(MAX_FILE) in body["error"]
    assert_error(start(client, keypair, b64encode(os.urandom(16)), too_big), 413, "file_too_large")


@pytest.mark.parametrize(
    ("blob_id", "length", "code"),
    [
        ("short", 16, "bad_blob_id"),
        ("A" * 21 + "B", 16, "bad_blob_id"),  # 22 characters that are not canonical
        ("A" * 22, 17, "bad_length"),  # not a Padmé length
        ("A" * 22, 15, "bad_length"),  # shorter than any blob
        ("A" * 22, "16", "bad_length"),
        ("A" * 22, True, "bad_length"),
    ],
)
def test_malformed_uploads_are_refused(client, inbox, blob_id, length, code):
    keypair, _ = inbox
    assert_error(start(client, keypair, blob_id, length), 400, code)


def test_a_blob_id_in_use_is_refused(client, inbox):
    keypair, _ = inbox
    blob_id = b64encode(os.urandom(16))
    assert start(client, keypair, blob_id, 16).status_code == 201
    assert_error(start(client, keypair, blob_id, 16), 409, "blob_id_taken")


def test_uploads_count_against_the_inbox_s_attachment_quota(client, inbox):
    keypair, _ = inbox
    most = padded_length(MAX_FILE)
    for _ in range(4):
        assert start(client, keypair, b64encode(os.urandom(16)), most).status_code == 201
    body = assert_error(start(client, keypair, b64encode(os.urandom(16)), 16), 409, "inbox_full")
    assert "full" in body["error"]


def test_uploads_count_against_the_instance_budget(make_app, settings, keypair):
    budget = 2 * padded_length(MAX_FILE)
    client = make_app(replace(settings, storage_budget_bytes=budget)).test_client()
    accept_attachments(client, keypair, register(client, keypair))
    most = padded_length(MAX_FILE)
    for _ in range(2):
        assert start(client, keypair, b64encode(os.urandom(16)), most).status_code == 201
    assert_error(start(client, keypair, b64encode(os.urandom(16)), most), 507, "instance_full")


# ---- appending ----


def started_upload(client, keypair, length: int = 3072) -> tuple[str, str]:
    blob_id = b64encode(os.urandom(16))
    answer = start(client, keypair, blob_id, length)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["chunk_bytes"] == UPLOAD_CHUNK_BYTES
    return blob_id, answer.get_json()["upload"]


def test_an_interrupted_upload_resumes_where_the_server_stopped(client, inbox, app):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair)
    assert append(client, keypair, blob_id, capability, 0, b"x" * 1000).status_code == 200
    state = client.get(f"{uploads_url(keypair)}/{blob_id}", headers=bearer(capability))
    assert state.get_json() == {"received": 1000, "length": 3072, "complete": False}
    assert state.headers["Upload-Offset"] == "1000"
    # The same piece sent again (its answer was lost) is refused with where to go on.
    again = append(client, keypair, blob_id, capability, 0, b"x" * 1000)
    assert assert_error(again, 409, "offset_mismatch")["received"] == 1000
    assert blob_files(app, keypair) == [blob_id + ".part"]
    done = append(client, keypair, blob_id, capability, 1000, b"y" * 2072)
    assert done.get_json()["complete"] is True
    # Complete: renamed into place, no partial file left.
    assert blob_files(app, keypair) == [blob_id]
    assert_error(append(client, keypair, blob_id, capability, 3072, b"z"), 409, "upload_complete")


def test_an_upload_never_grows_past_its_length(client, inbox):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair, length=16)
    answer = append(client, keypair, blob_id, capability, 0, b"x" * 17)
    assert_error(answer, 400, "too_long")


def test_a_piece_over_one_mib_is_refused(client, inbox):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair, length=padded_length(MAX_FILE))
    answer = append(client, keypair, blob_id, capability, 0, bytes(UPLOAD_CHUNK_BYTES + 1))
    assert_error(answer, 413, "chunk_too_large")


def test_appending_needs_the_upload_s_own_capability(client, inbox, monkeypatch):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair)
    _, other_capability = started_upload(client, keypair)
    url = f"{uploads_url(keypair)}/{blob_id}"
    headers = {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
    assert_error(client.patch(url, data=b"x", headers=headers), 401, "capability_required")
    bad = {**headers, **bearer(capability[:-2] + "xx")}
    assert_error(client.patch(url, data=b"x", headers=bad), 401, "bad_capability")
    wrong = append(client, keypair, blob_id, other_capability, 0, b"x")
    assert_error(wrong, 403, "wrong_upload")
    # An owner's token is not a capability (each is signed for its own purpose).
    token = get_token(client, keypair)
    assert_error(append(client, keypair, blob_id, token, 0, b"x"), 401, "bad_capability")
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    assert_error(append(client, keypair, blob_id, capability, 0, b"x"), 401, "upload_expired")


@pytest.mark.parametrize("offset", ["", "-1", "1.0", "\u00b2", "9" * 16])
def test_a_bad_offset_header_is_refused(client, inbox, offset):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair)
    answer = client.patch(
        f"{uploads_url(keypair)}/{blob_id}",
        data=b"x",
        headers={
            **bearer(capability),
            "Upload-Offset": offset,
            "Content-Type": "application/octet-stream",
        },
    )
    assert_error(answer, 400, "bad_offset")


def test_a_piece_must_be_sent_as_bytes(client, inbox):
    keypair, _ = inbox
    blob_id, capability = started_upload(client, keypair)
    answer = client.patch(
        f"{uploads_url(keypair)}/{blob_id}",
        json={"data": "x"},
        headers={**bearer(capability), "Upload-Offset": "0"},
    )
    assert_error(answer, 415, "unsupported_media_type")


# ---- sending the message ----


def test_a_message_lists_only_complete_unsent_blobs_of_its_inbox(client, inbox):
    keypair, token = inbox
    entry = new_attachment("a.txt", "text/plain", 10)
    unknown = send(client, keypair, "x", (entry,), [b64encode(entry.blob_id)])
    assert_error(unknown, 404, "unknown_blob")
    blob_id, capability = started_upload(client, keypair, length=entry.padded_length)
    incomplete = send(client, keypair, "x", (entry,), [blob_id])
    assert_error(incomplete, 409, "upload_incomplete")
    append(client, keypair, blob_id, capability, 0, bytes(entry.padded_length))
    assert send(client, keypair, "x", (entry,), [blob_id]).status_code == 201
    assert_error(send(client, keypair, "x", (entry,), [blob_id]), 409, "blob_used")
    # Another inbox cannot list it either, even knowing its id.
    other = generate_keypair()
    accept_attachments(client, other, register(client, other))
    assert_error(send(client, other, "x", (entry,), [blob_id]), 404, "unknown_blob")
    assert len(listed(client, keypair, token)) == 1


@pytest.mark.parametrize(
    "value", ["abc", ["short"], ["A" * 22, "A" * 22], [b64encode(os.urandom(16))] * 1 + [7]]
)
def test_a_malformed_attachment_list_is_refused(client, inbox, value):
    keypair, _ = inbox
    envelope = seal("x", keypair.public_key)
    answer = client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(envelope), "attachments": value},
    )
    assert_error(answer, 400, "bad_field")


def test_a_message_over_the_attachment_limit_is_refused_and_nothing_stored(client, inbox):
    keypair, token = inbox
    files = tuple(new_attachment(f"{i}.bin", "text/plain", MAX_FILE) for i in range(4))
    blob_ids = []
    for entry in files:
        blob_id, capability = started_upload(client, keypair, length=entry.padded_length)
        append(client, keypair, blob_id, capability, 0, bytes(entry.padded_length))
        blob_ids.append(blob_id)
    assert_error(send(client, keypair, "x", files, blob_ids), 413, "message_too_large")
    assert listed(client, keypair, token) == []
    # The blobs are still free for a message that fits.
    assert send(client, keypair, "x", files[:3], blob_ids[:3]).status_code == 201


# ---- going away ----


def test_deleting_the_message_deletes_its_files_and_frees_the_quota(client, inbox, app):
    keypair, token = inbox
    files, _, message_id = sent_message(client, keypair, sizes=(MAX_FILE, MAX_FILE))
    assert len(blob_files(app, keypair)) == 2
    answer = client.delete(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages/{message_id}",
        headers=bearer(token),
    )
    assert answer.status_code == 204
    assert blob_files(app, keypair) == []
    assert_error(download(client, keypair, token, b64encode(files[0].blob_id)), 404, "unknown_blob")
    for _ in range(4):  # the inbox's whole attachment quota is free again
        most = padded_length(MAX_FILE)
        assert start(client, keypair, b64encode(os.urandom(16)), most).status_code == 201


def test_delete_all_deletes_every_file(client, inbox, app):
    keypair, token = inbox
    sent_message(client, keypair, sizes=(10,))
    sent_message(client, keypair, sizes=(20, 30))
    answer = client.delete(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    )
    assert answer.status_code == 200, answer.get_json()
    assert blob_files(app, keypair) == []


def test_deleting_the_inbox_deletes_its_folder(client, inbox, app):
    keypair, token = inbox
    sent_message(client, keypair, sizes=(10,))
    started_upload(client, keypair)
    answer = client.delete(f"/api/v1/inboxes/{keypair.public_key_text}", headers=bearer(token))
    assert answer.status_code == 204
    folder = Path(app.config["SECRETLINK"].data_dir) / "blobs" / keypair.public_key_text
    assert not folder.exists()
    assert blob_files(app, keypair) == []


def purge_now(app):
    return purge_for(app.config["SECRETLINK"])


def test_retention_deletes_the_files_of_the_messages_it_deletes(client, inbox, app):
    keypair, _ = inbox
    sent_message(client, keypair, sizes=(10,))
    engine = app.extensions["secretlink.storage"].engine
    with engine.begin() as connection:
        connection.execute(update(MessageRow).values(received_at=utcnow() - timedelta(days=91)))
    assert purge_now(app).messages == 1
    assert blob_files(app, keypair) == []


def test_an_abandoned_upload_is_deleted_after_its_time(client, inbox, app):
    keypair, _ = inbox
    old_id, capability = started_upload(client, keypair)
    append(client, keypair, old_id, capability, 0, b"x" * 100)
    fresh_id, _ = started_upload(client, keypair)
    files, _, _ = sent_message(client, keypair, sizes=(10,))
    engine = app.extensions["secretlink.storage"].engine
    long_ago = utcnow() - timedelta(seconds=3601 + 60)
    with engine.begin() as connection:
        connection.execute(update(BlobRow).values(started_at=long_ago))
    assert purge_now(app).abandoned_uploads == 2  # the old one and the fresh one's row
    # A blob sent with its message stays, whatever its age.
    assert blob_files(app, keypair) == [b64encode(files[0].blob_id)]
    state = client.get(f"{uploads_url(keypair)}/{old_id}", headers=bearer(capability))
    assert_error(state, 404, "unknown_blob")
    assert fresh_id not in blob_files(app, keypair)
