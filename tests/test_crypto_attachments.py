"""Attachments (crypto/SPEC.md 5.10, 5.11): the shared vectors, properties of the
stream around chunk boundaries, and Python against JavaScript in both directions."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import IN_CI, ROOT
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from secretlink import crypto
from secretlink.crypto import b64decode, b64encode
from secretlink.crypto.attachments import (
    CHUNK_SIZE,
    MAX_NAME_BYTES,
    Attachment,
    BlobDecryptor,
    BlobEncryptor,
    clean_media_type,
    clean_name,
    decode_attachments,
    decrypt_blob,
    encode_attachments,
    encrypt_blob,
    new_attachment,
    padme,
)
from secretlink.crypto.envelope import Message, open_envelope, seal
from secretlink.crypto.errors import DecryptError, PaddingError, PayloadError, SizeError
from secretlink.crypto.keys import generate_keypair

VECTORS = ROOT / "crypto" / "vectors" / "attachments.json"
CASES = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
PROPERTY = hypothesis_settings(max_examples=60, deadline=None, database=None)


def pattern(seed: str, size: int) -> bytes:
    """SPEC 11.1: SHA-256(seed || u64be(j)) for j = 0, 1, ..., cut to `size` bytes."""
    blocks = (size + 31) // 32
    data = b"".join(
        hashlib.sha256(seed.encode() + j.to_bytes(8, "big")).digest() for j in range(blocks)
    )
    return data[:size]


def plaintext_of(spec: dict) -> bytes:
    return spec["text"].encode() if "text" in spec else pattern(spec["seed"], spec["size"])


def entry_of(data: dict) -> Attachment:
    return Attachment(
        b64decode(data["blob_id"]),
        b64decode(data["file_key"]),
        data["name"],
        data["media_type"],
        data["size"],
    )


def pieces(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)]


def expect_error(case: dict):
    error_class = getattr(crypto, case["expect"])
    assert issubclass(error_class, crypto.SecretlinkCryptoError)
    return pytest.raises(error_class)


def valid_blob(label: str) -> bytes:
    """A valid case's blob: stored whole, or made by encrypting its plaintext and pinned
    by its SHA-256."""
    case = next(
        c
        for c in CASES
        if c["kind"] == "stream" and c["expect"] == "ok" and c["plaintext"].get("seed") == label
    )
    if "bytes" in case["blob"]:
        blob = b64decode(case["blob"]["bytes"])
    else:
        blob = b"".join(
            encrypt_blob(entry_of(case["attachment"]), [plaintext_of(case["plaintext"])])
        )
    assert hashlib.sha256(blob).hexdigest() == case["blob_sha256"]
    return blob


def apply_edits(blob: bytes, edits: list[dict]) -> bytes:
    data = bytearray(blob)
    for edit in edits:
        if edit["op"] == "truncate":
            del data[edit["length"] :]
        elif edit["op"] == "remove":
            del data[edit["start"] : edit["start"] + edit["length"]]
        elif edit["op"] == "swap":
            a, b, n = edit["a"], edit["b"], edit["length"]
            data[a : a + n], data[b : b + n] = data[b : b + n], data[a : a + n]
        elif edit["op"] == "splice":
            other = valid_blob(edit["from"])
            start, n, at = edit["start"], edit["length"], edit["at"]
            data[at : at + n] = other[start : start + n]
        elif edit["op"] == "append":
            data += b64decode(edit["bytes"])
        elif edit["op"] == "xor":
            data[edit["at"]] ^= edit["value"]
        else:
            raise AssertionError(f"unknown edit {edit['op']}")
    return bytes(data)


def blob_of(case: dict) -> bytes:
    if "bytes" in case["blob"]:
        return b64decode(case["blob"]["bytes"])
    return apply_edits(valid_blob(case["blob"]["from"]), case["blob"]["edits"])


def entry_as_json(entry: Attachment) -> dict:
    return {
        "blob_id": b64encode(entry.blob_id),
        "file_key": b64encode(entry.file_key),
        "name": entry.name,
        "media_type": entry.media_type,
        "size": entry.size,
        "chunk_size": entry.chunk_size,
        "padded_length": entry.padded_length,
    }


@pytest.mark.parametrize("case", CASES, ids=[c["desc"] for c in CASES])
def test_attachment_vectors(case):
    if case["kind"] == "field":
        value = b64decode(case["value"])
        if case["expect"] != "ok":
            with expect_error(case):
                decode_attachments(value)
            return
        files = decode_attachments(value)
        assert [entry_as_json(f) for f in files] == case["files"]
        assert encode_attachments([entry_of(e) for e in case["files"]]) == value
    elif case["kind"] == "encode":
        with expect_error(case):
            encode_attachments([entry_of(e) for e in case["files"]])
    elif case["kind"] == "envelope":
        envelope, secret_key = b64decode(case["envelope"]), b64decode(case["secret_key"])
        if case["expect"] != "ok":
            with expect_error(case):
                open_envelope(envelope, secret_key, attachments=True)
            return
        message = open_envelope(envelope, secret_key, attachments=True)
        assert message.text == case["text"]
        assert [entry_as_json(f) for f in message.attachments] == case["files"]
        # A reader that would show the text without the files must refuse the message.
        with pytest.raises(PayloadError, match="attached files"):
            open_envelope(envelope, secret_key)
    elif case["kind"] == "encrypt":
        with expect_error(case):
            b"".join(encrypt_blob(entry_of(case["attachment"]), [plaintext_of(case["plaintext"])]))
    elif case["expect"] == "ok":
        entry = entry_of(case["attachment"])
        plaintext = plaintext_of(case["plaintext"])
        assert hashlib.sha256(plaintext).hexdigest() == case["plaintext_sha256"]
        made = b"".join(encrypt_blob(entry, pieces(plaintext, 40000)))
        assert len(made) == case["blob_length"] == entry.padded_length
        assert hashlib.sha256(made).hexdigest() == case["blob_sha256"]
        tags = [
            made[i * (CHUNK_SIZE + 16) :][: CHUNK_SIZE + 16][-16:]
            for i in range(entry.chunk_count - 1)
        ]
        tags.append(made[: entry.ciphertext_length][-16:])
        assert [b64encode(t) for t in tags] == case["chunk_tags"]
        blob = b64decode(case["blob"]["bytes"]) if "bytes" in case["blob"] else made
        assert b"".join(decrypt_blob(entry, pieces(blob, 1000))) == plaintext
        assert b"".join(decrypt_blob(entry, [blob])) == plaintext
    else:
        blob = blob_of(case)
        for split in (len(blob) or 1, 777):
            with expect_error(case):
                b"".join(decrypt_blob(entry_of(case["attachment"]), pieces(blob, split)))


def test_vector_file_is_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "crypto" / "generate_attachment_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vectors_cover_what_spec_promises():
    descs = " | ".join(c["desc"] for c in CASES)
    for needle in [
        "empty file",
        "exact multiple",
        "short last chunk",
        "several files",
        "truncated",
        "reordered",
        "swapped between files",
        "final flag missing",
        "extended after final",
        "blob from another message",
        "wrong padding",
        "chunk size 65535",
        "count 33",
        "name: a slash",
        "a message with one file",
        "attachments field twice",
        "attachments beside a conversation field",
    ]:
        assert needle in descs, needle


# ---- properties ----

# Sizes on and around the chunk boundaries, plus anything up to three chunks.
BOUNDARY_SIZES = st.one_of(
    st.sampled_from([0, 1, 2, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE]),
    st.integers(0, 3 * CHUNK_SIZE + 17),
    st.builds(lambda k, d: max(0, k * CHUNK_SIZE + d), st.integers(1, 3), st.integers(-2, 2)),
)


@PROPERTY
@given(size=BOUNDARY_SIZES, piece=st.integers(1, 3 * CHUNK_SIZE), seed=st.binary(max_size=8))
def test_round_trip_at_any_size_in_any_pieces(size, piece, seed):
    entry = new_attachment("file.bin", "application/octet-stream", size)
    plaintext = pattern(seed.hex(), size)
    blob = b"".join(encrypt_blob(entry, pieces(plaintext, piece)))
    assert len(blob) == entry.padded_length == padme(size + 16 * max(1, -(-size // CHUNK_SIZE)))
    assert b"".join(decrypt_blob(entry, pieces(blob, piece))) == plaintext


@PROPERTY
@given(size=BOUNDARY_SIZES, cut=st.integers(0, 1 << 20))
def test_every_shorter_blob_is_refused(size, cut):
    entry = new_attachment("file.bin", "application/octet-stream", size)
    blob = b"".join(encrypt_blob(entry, [bytes(size)]))
    with pytest.raises(SizeError):
        b"".join(decrypt_blob(entry, [blob[: cut % len(blob)]]))


@PROPERTY
@given(
    size=st.integers(0, 2 * CHUNK_SIZE + 100),
    position=st.integers(0, 1 << 30),
    bit=st.integers(0, 7),
)
def test_every_flipped_bit_is_refused(size, position, bit):
    entry = new_attachment("file.bin", "application/octet-stream", size)
    blob = bytearray(b"".join(encrypt_blob(entry, [bytes(size)])))
    position %= len(blob)
    blob[position] ^= 1 << bit
    error = DecryptError if position < entry.ciphertext_length else PaddingError
    with pytest.raises(error):
        b"".join(decrypt_blob(entry, [bytes(blob)]))


@PROPERTY
@given(
    files=st.lists(
        st.tuples(st.text(min_size=1, max_size=300), st.text(max_size=40), st.integers(0, 1 << 40)),
        min_size=1,
        max_size=32,
    )
)
def test_cleaned_names_and_types_always_make_a_valid_field(files):
    entries = [
        new_attachment(clean_name(n), clean_media_type(t), s // len(files)) for n, t, s in files
    ]
    assert decode_attachments(encode_attachments(entries)) == tuple(entries)
    for entry in entries:
        assert 1 <= len(entry.name.encode()) <= MAX_NAME_BYTES


def test_clean_name_keeps_what_it_can():
    assert clean_name("report 2024.pdf") == "report 2024.pdf"
    assert clean_name("../a/b\\c\x00d\x9b") == ".._a_b_c_d_"
    assert clean_name("") == "file"
    assert clean_name("..") == "__"
    assert clean_name("a\udcffb") == "a\ufffdb"  # an undecodable byte of a POSIX name
    long = clean_name("é" * 300 + ".jpeg")
    assert len(long.encode()) == 255 and long.endswith("é.jpeg")
    assert clean_media_type("Text/HTML; charset=UTF-8") == "text/html"
    assert clean_media_type("") == "application/octet-stream"


def test_every_upload_attempt_gets_a_fresh_blob_id_and_key():
    first, second = (new_attachment("a", "text/plain", 1) for _ in range(2))
    assert first.blob_id != second.blob_id and first.file_key != second.file_key


def test_encryptor_refuses_more_or_fewer_bytes_than_declared():
    entry = new_attachment("a", "text/plain", 10)
    encryptor = BlobEncryptor(entry)
    with pytest.raises(SizeError):
        encryptor.update(bytes(11))
    encryptor = BlobEncryptor(entry)
    encryptor.update(bytes(9))
    with pytest.raises(SizeError):
        list(encryptor.finish())


def test_a_failed_decryptor_refuses_to_go_on():
    entry = new_attachment("a", "text/plain", 10)
    blob = bytearray(b"".join(encrypt_blob(entry, [bytes(10)])))
    blob[0] ^= 1
    decryptor = BlobDecryptor(entry)
    with pytest.raises(DecryptError):
        decryptor.update(bytes(blob))
    with pytest.raises(DecryptError):
        decryptor.finish()


def test_writer_refuses_what_readers_refuse():
    with pytest.raises(PayloadError):
        new_attachment("a/b", "text/plain", 1)
    with pytest.raises(PayloadError):
        new_attachment("a", "Text/Plain", 1)
    with pytest.raises(PayloadError):
        new_attachment("a", "text/plain", (1 << 40) + 1)


# ---- the envelope's field 0x03 ----


def test_a_sealed_message_carries_its_files():
    keypair = generate_keypair()
    files = (
        new_attachment("report.pdf", "application/pdf", 150_000),
        new_attachment("empty", "application/octet-stream", 0),
    )
    envelope = seal(Message("two files", attachments=files), keypair.public_key)
    opened = open_envelope(envelope, keypair.secret_key, attachments=True)
    assert opened == Message("two files", None, files)
    # The keys come back exactly: the blobs they were made for open with them.
    blob = b"".join(encrypt_blob(files[1], []))
    assert b"".join(decrypt_blob(opened.attachments[1], [blob])) == b""


def test_a_message_without_files_opens_for_every_reader():
    keypair = generate_keypair()
    envelope = seal("no files", keypair.public_key)
    assert open_envelope(envelope, keypair.secret_key, attachments=True).attachments == ()
    assert open_envelope(envelope, keypair.secret_key).text == "no files"


def test_text_and_file_list_share_the_largest_bucket():
    keypair = generate_keypair()
    files = tuple(new_attachment("x" * 200, "text/plain", 1) for _ in range(32))
    room = 65535 - 5 - 5 - len(encode_attachments(files))
    envelope = seal(Message("a" * room, attachments=files), keypair.public_key)
    assert len(envelope) == 65586
    with pytest.raises(SizeError):
        seal(Message("a" * (room + 1), attachments=files), keypair.public_key)


def test_a_writer_refuses_files_in_a_conversation_message():
    keypair = generate_keypair()
    files = (new_attachment("a.txt", "text/plain", 1),)
    with pytest.raises(PayloadError, match="conversation"):
        seal(Message("", bytes(97), files), keypair.public_key)


def test_a_writer_refuses_what_is_not_an_entry():
    keypair = generate_keypair()
    with pytest.raises(PayloadError):
        seal(Message("x", attachments=("not an entry",)), keypair.public_key)


# ---- Python against JavaScript ----


def js(requests: list[dict]) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required for the interop tests")
        pytest.skip("node not installed")
    result = subprocess.run(
        [node, str(ROOT / "tests" / "js" / "attachments_interop.mjs")],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "NODE_OPTIONS": ""},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


INTEROP_SIZES = [0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 150_000]


def test_python_encrypts_javascript_decrypts():
    files = [
        new_attachment(f"file {size}.bin", "application/octet-stream", size)
        for size in INTEROP_SIZES
    ]
    plaintexts = [os.urandom(entry.size) for entry in files]
    blobs = [
        b64encode(b"".join(encrypt_blob(entry, pieces(data, 5000))))
        for entry, data in zip(files, plaintexts, strict=True)
    ]
    request = {"op": "open", "field": b64encode(encode_attachments(files)), "blobs": blobs}
    answers = js([{**request, "piece": 4099}, {**request, "piece": 1 << 20}])
    for answer in answers:
        assert answer["names"] == [entry.name for entry in files]
        assert [b64decode(p) for p in answer["plaintexts"]] == plaintexts


def test_javascript_encrypts_python_decrypts():
    plaintexts = [os.urandom(size) for size in INTEROP_SIZES]
    names = ["a/b.txt", "", "Ünïcödé ✉.pdf", "x" * 300, "ok.bin", "\x1b[2J", "..", "f"]
    request = {
        "op": "send",
        "files": [
            {"name": name, "media_type": "Image/JPEG; q=1", "data": b64encode(data)}
            for name, data in zip(names, plaintexts, strict=True)
        ],
        "piece": 7001,
    }
    answer = js([request])[0]
    files = decode_attachments(b64decode(answer["field"]))
    assert [f.name for f in files] == [clean_name(name) for name in names]
    assert {f.media_type for f in files} == {"image/jpeg"}
    for entry, blob, data in zip(files, answer["blobs"], plaintexts, strict=True):
        assert b"".join(decrypt_blob(entry, pieces(b64decode(blob), 3000))) == data


def test_both_refuse_a_tampered_blob_alike():
    entry = new_attachment("a.txt", "text/plain", 3000)
    blob = bytearray(b"".join(encrypt_blob(entry, [os.urandom(3000)])))
    tampered = {
        "chunk": (bytes(blob[:5]) + bytes([blob[5] ^ 1]) + bytes(blob[6:]), DecryptError),
        "padding": (bytes(blob[:-1]) + bytes([blob[-1] ^ 1]), PaddingError),
        "short": (bytes(blob[:-1]), SizeError),
    }
    answers = js(
        [
            {"op": "decrypt", "attachment": entry_as_json(entry), "blob": b64encode(data)}
            for data, _ in tampered.values()
        ]
    )
    assert [a.get("error") for a in answers] == [e.__name__ for _, e in tampered.values()]
    for data, error in tampered.values():
        with pytest.raises(error):
            b"".join(decrypt_blob(entry, [data]))


def test_an_entry_s_repr_does_not_show_its_file_key():
    entry = new_attachment("a.txt", "text/plain", 1)
    assert repr(entry.file_key) not in repr(entry) and "file_key" not in repr(entry)
