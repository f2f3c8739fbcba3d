"""Write crypto/vectors/attachments.json: the attachments field and blobs (SPEC 5.10, 5.11).

    python crypto/generate_attachment_vectors.py          # rewrite the file (also: make vectors)
    python crypto/generate_attachment_vectors.py --check  # exit 1 if it differs from a fresh run

Blobs are built here from the primitives (cryptography's AESGCM, HKDF and AES-CTR),
fields byte by byte, and the envelopes that carry a field with generate_vectors.py's
libsodium sealing, not through secretlink.crypto.attachments or .envelope, so the
vectors check those modules instead of repeating them; every case is then confirmed
against them.
Blob ids and file keys come from seeded labels (SPEC 11.3), never from randomness.
"""

import hashlib
import json
import sys
from base64 import urlsafe_b64decode, urlsafe_b64encode
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secretlink.crypto import attachments as impl
from secretlink.crypto import envelope as envelope_impl
from secretlink.crypto import errors

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_vectors import RECIPIENT_PK, RECIPIENT_SK, canonical_pad, field, seal_raw

OUT = Path(__file__).resolve().parent / "vectors" / "attachments.json"
CHUNK = 65536
# Blobs up to this length are stored whole; longer ones by SHA-256 and chunk tags,
# except one two-chunk blob (stored whole, so that multi-chunk decryption is checked
# against bytes no implementation under test produced).
FULL_BLOB_LIMIT = 8192


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


def seeded(label: str) -> bytes:
    return hashlib.blake2b(b"secretlink/v1/test-vectors/" + label.encode(), digest_size=32).digest()


def pattern(seed: str, size: int) -> bytes:
    """SPEC 11.1: SHA-256(seed || u64be(j)) for j = 0, 1, ..., cut to `size` bytes."""
    blocks = (size + 31) // 32
    data = b"".join(
        hashlib.sha256(seed.encode() + j.to_bytes(8, "big")).digest() for j in range(blocks)
    )
    return data[:size]


def padme(length: int) -> int:
    exponent = length.bit_length() - 1
    mask = (1 << (exponent - exponent.bit_length())) - 1
    return (length + mask) & ~mask


def derive(file_key: bytes, blob_id: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=blob_id, info=info).derive(file_key)


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]


def seal_chunks(file_key, blob_id, pieces, flags=None, ad=None) -> list[bytes]:
    aead = AESGCM(derive(file_key, blob_id, b"secretlink/v1/attachment-stream"))
    flags = flags or [i == len(pieces) - 1 for i in range(len(pieces))]
    return [
        aead.encrypt(
            i.to_bytes(11, "big") + bytes([flags[i]]), piece, blob_id if ad is None else ad
        )
        for i, piece in enumerate(pieces)
    ]


def padding(file_key: bytes, blob_id: bytes, length: int) -> bytes:
    key = derive(file_key, blob_id, b"secretlink/v1/attachment-padding")
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(length))


class File:
    """A file of a vector: its entry and its blob, built from the primitives."""

    def __init__(self, label: str, name: str, media_type: str, size: int, text: str = "") -> None:
        self.label, self.name, self.media_type, self.size = label, name, media_type, size
        self.blob_id = seeded("blob/" + label)[:16]
        self.file_key = seeded("file key/" + label)
        self.text = text
        self.plaintext = text.encode() if text else pattern(label, size)
        assert len(self.plaintext) == size
        self.sealed = seal_chunks(self.file_key, self.blob_id, chunks_of(self.plaintext))
        ciphertext = b"".join(self.sealed)
        self.padded = padme(len(ciphertext))
        self.blob = ciphertext + padding(self.file_key, self.blob_id, self.padded - len(ciphertext))

    def entry(self, **changes) -> dict:
        entry = {
            "blob_id": b64(self.blob_id),
            "file_key": b64(self.file_key),
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "chunk_size": CHUNK,
            "padded_length": self.padded,
        }
        entry.update(changes)
        return entry

    def entry_bytes(self, **changes) -> bytes:
        return entry_bytes(self.entry(**changes))


def entry_bytes(entry: dict) -> bytes:
    """The entry's bytes (SPEC 5.10); `name` and `media_type` may be given as raw bytes,
    and `name_length` may override the name's length byte."""

    def raw(value):
        return value if isinstance(value, bytes) else value.encode("utf-8")

    name, media_type = raw(entry["name"]), raw(entry["media_type"])
    return (
        unb64(entry["blob_id"])
        + unb64(entry["file_key"])
        + bytes([entry.get("name_length", len(name))])
        + name
        + bytes([len(media_type)])
        + media_type
        + entry["size"].to_bytes(8, "big")
        + entry["chunk_size"].to_bytes(4, "big")
        + entry["padded_length"].to_bytes(8, "big")
    )


def unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---- the files ----

FOX = "The quick brown fox jumps over the lazy dog.\n"
HELLO = File("worked example", "hello.txt", "text/plain", len(FOX), text=FOX)
EMPTY = File("empty file", "empty", "application/octet-stream", 0)
SHORT = File("one short chunk", "notes.txt", "text/plain", 1000)
SMALL = File("3000 bytes", "photo.jpg", "image/jpeg", 3000)
SMALL_TWIN = File("another 3000 bytes", "scan.png", "image/png", 3000)
ONE_CHUNK = File("exactly one chunk", "one-chunk.bin", "application/octet-stream", CHUNK)
TWO_SHORT = File("two chunks, the last of one byte", "report.pdf", "application/pdf", CHUNK + 1)
TWO_CHUNKS = File("exactly two chunks", "two-chunks.bin", "application/octet-stream", 2 * CHUNK)
THREE = File("three chunks, the last short", "archive.tar.gz", "application/gzip", 150000)
OTHER_TWO = File("other two chunks", "other.bin", "application/octet-stream", 2 * CHUNK)


def field_value(*entries: bytes, count: int | None = None) -> bytes:
    return bytes([len(entries) if count is None else count]) + b"".join(entries)


# ---- cases ----


def field_ok(desc: str, files: list[File], entries: list[dict] | None = None) -> dict:
    entries = entries or [f.entry() for f in files]
    return {
        "desc": desc,
        "kind": "field",
        "value": b64(field_value(*(entry_bytes(e) for e in entries))),
        "files": entries,
        "expect": "ok",
    }


def field_bad(desc: str, value: bytes) -> dict:
    return {"desc": desc, "kind": "field", "value": b64(value), "expect": "PayloadError"}


def encode_bad(desc: str, entries: list[dict]) -> dict:
    return {"desc": desc, "kind": "encode", "files": entries, "expect": "PayloadError"}


def tag_list(sealed: list[bytes]) -> list[str]:
    return [b64(chunk[-16:]) for chunk in sealed]


def stream_ok(desc: str, file: File, whole: bool = False) -> dict:
    case = {
        "desc": desc,
        "kind": "stream",
        "attachment": file.entry(),
        "plaintext": {"seed": file.label, "size": file.size},
        "plaintext_sha256": hashlib.sha256(file.plaintext).hexdigest(),
        "blob_length": len(file.blob),
        "blob_sha256": hashlib.sha256(file.blob).hexdigest(),
        "chunk_tags": tag_list(file.sealed),
        "expect": "ok",
    }
    if file.text:
        case["plaintext"] = {"text": file.text}
    if whole or len(file.blob) <= FULL_BLOB_LIMIT:
        case["blob"] = {"bytes": b64(file.blob)}
    else:
        case["blob"] = {"encrypt": True}
    return case


def stream_bad(desc: str, entry: dict, blob: dict, expect: str) -> dict:
    return {"desc": desc, "kind": "stream", "attachment": entry, "blob": blob, "expect": expect}


def full(data: bytes) -> dict:
    return {"bytes": b64(data)}


def edited(source: File, *edits: dict) -> dict:
    return {"from": source.label, "edits": list(edits)}


def apply_edits(blob: bytes, edits: list[dict], blobs: dict[str, bytes]) -> bytes:
    """SPEC 11.1: the edits a mutated blob is described by, applied in order."""
    data = bytearray(blob)
    for edit in edits:
        op = edit["op"]
        if op == "truncate":
            del data[edit["length"] :]
        elif op == "remove":
            del data[edit["start"] : edit["start"] + edit["length"]]
        elif op == "swap":
            a, b, n = edit["a"], edit["b"], edit["length"]
            data[a : a + n], data[b : b + n] = data[b : b + n], data[a : a + n]
        elif op == "splice":
            other = blobs[edit["from"]]
            s, n, at = edit["start"], edit["length"], edit["at"]
            data[at : at + n] = other[s : s + n]
        elif op == "append":
            data += unb64(edit["bytes"])
        elif op == "xor":
            data[edit["at"]] ^= edit["value"]
        else:
            raise ValueError(op)
    return bytes(data)


def sealed(label: str, payload: bytes) -> bytes:
    """An envelope around `payload`, built from libsodium primitives (SPEC 11.3 keys)."""
    return seal_raw(b"\x01" + canonical_pad(payload), RECIPIENT_PK, "attachments/" + label)


def envelope_ok(desc: str, text: str, files: list[File], extra: bytes = b"") -> dict:
    value = field_value(*(f.entry_bytes() for f in files))
    payload = field(0x01, text.encode()) + field(0x03, value) + extra
    return {
        "desc": desc,
        "kind": "envelope",
        "secret_key": b64(RECIPIENT_SK),
        "envelope": b64(sealed(desc, payload)),
        "text": text,
        "files": [f.entry() for f in files],
        "expect": "ok",
    }


def envelope_bad(desc: str, payload: bytes) -> dict:
    return {
        "desc": desc,
        "kind": "envelope",
        "secret_key": b64(RECIPIENT_SK),
        "envelope": b64(sealed(desc, payload)),
        "expect": "PayloadError",
    }


def envelope_cases() -> list[dict]:
    """Sealed messages that carry field 0x03 (SPEC 5.2, 5.7 step 9, 5.10)."""
    one = field_value(HELLO.entry_bytes())
    text = field(0x01, b"see the attached file")
    # Long enough to pass the envelope reader's own length check (SPEC 5.9, step 1).
    conversation = field(0x02, bytes(32 + 24 + 16 + 25))
    many = [File(f"file {i}", f"file-{i}.txt", "text/plain", i) for i in range(32)]
    return [
        envelope_ok("a message with one file: the worked example's", "see the attached file",
                    [HELLO]),
        envelope_ok("an empty text with three files, one of them empty", "",
                    [SHORT, EMPTY, SMALL]),
        envelope_ok("a message with 32 files", "32 files", many),
        envelope_ok("attachments followed by an optional field, which is ignored", "hi",
                    [SHORT], extra=field(0x80, b"ignored")),
        envelope_bad("attachments field before the text field", field(0x03, one) + text),
        envelope_bad("attachments field twice", text + field(0x03, one) + field(0x03, one)),
        envelope_bad("attachments field without a text field", field(0x03, one)),
        envelope_bad("attachments field with an empty value", text + field(0x03, b"")),
        envelope_bad("attachments field with count 0", text + field(0x03, b"\x00")),
        envelope_bad(
            "attachments field whose entry names a path",
            text + field(0x03, field_value(HELLO.entry_bytes(name=b"../secret"))),
        ),
        envelope_bad("attachments field with a byte after its entry",
                     text + field(0x03, one + b"\x00")),
        envelope_bad("attachments field cut inside its entry", text + field(0x03, one[:-1])),
        envelope_bad(
            "attachments beside a conversation field",
            field(0x01, b"") + conversation + field(0x03, one),
        ),
        envelope_bad(
            "attachments field and an unknown critical field 0x04",
            text + field(0x03, one) + field(0x04, b""),
        ),
    ]  # fmt: skip


def build() -> dict:
    c = CHUNK + 16
    fixed_ok = [
        field_ok("one file", [SHORT]),
        field_ok("several files in one field", [SHORT, EMPTY, SMALL, THREE]),
        field_ok("the worked example (SPEC 5.12): the field", [HELLO]),
    ]
    long_name = "é" * 127 + "x"  # 255 bytes
    maxed = File("largest entry", long_name, "a" * 127 + "/" + "b" * 127, 7)
    fixed_ok.append(field_ok("a 255-byte name and a 255-byte media type", [maxed]))
    allowed = [
        ("a name with spaces, a leading dot and right-to-left text", ".שלום world.txt"),
        ("a name with a bidi override (escaped on display, not refused)", "invoice\u202efdp.exe"),
        ("a name with ':' '*' '?' and 'CON' (the saving reader's business)", "CON:*?.txt"),
        ("a name that is three dots", "..."),
    ]
    for desc, name in allowed:
        fixed_ok.append(field_ok(desc, [SHORT], [SHORT.entry(name=name)]))
    media_ok = "application/vnd.oasis.opendocument.text+zip"
    fixed_ok.append(
        field_ok("a media type with . and +", [SHORT], [SHORT.entry(media_type=media_ok)])
    )
    many = [File(f"file {i}", f"file-{i}.txt", "text/plain", i) for i in range(32)]
    fixed_ok.append(field_ok("32 files, the most allowed", many))
    big = File("a terabyte", "huge.bin", "application/octet-stream", 0)
    big_entry = big.entry(size=1 << 40, padded_length=padme((1 << 40) + 16 * (1 << 24)))
    fixed_ok.append(field_ok("a file of 2^40 bytes, the most allowed", [big], [big_entry]))

    one = SHORT.entry_bytes()
    good = field_value(one)
    bad_fields = [
        field_bad("an empty value", b""),
        field_bad("count 0", field_value(count=0)),
        field_bad(
            "count 33 with 33 entries",
            field_value(
                *(File(f"file {i}", "f", "text/plain", 0).entry_bytes() for i in range(33))
            ),
        ),
        field_bad("count 2 with one entry", field_value(one, count=2)),
        field_bad("a byte after the last entry", good + b"\x00"),
        field_bad("cut inside the file key", good[:30]),
        field_bad("cut inside the padded length", good[:-1]),
        field_bad("a name length of 0", field_value(SHORT.entry_bytes(name=b""))),
        field_bad(
            "a name length running past the end",
            field_value(entry_bytes(SHORT.entry(name_length=255))),
        ),
        field_bad("a name that is not UTF-8", field_value(SHORT.entry_bytes(name=b"a\xffb"))),
        field_bad(
            "a name with an encoded surrogate",
            field_value(SHORT.entry_bytes(name=b"a\xed\xa0\x80")),
        ),
        field_bad(
            "a media type that is not ASCII",
            field_value(SHORT.entry_bytes(media_type="text/pl\u00e4in".encode())),
        ),
        field_bad(
            "size 2^40 + 1",
            field_value(
                SHORT.entry_bytes(
                    size=(1 << 40) + 1, padded_length=padme((1 << 40) + 1 + 16 * ((1 << 24) + 1))
                )
            ),
        ),
        field_bad("size 2^64 - 1", field_value(SHORT.entry_bytes(size=(1 << 64) - 1))),
        field_bad("chunk size 65535", field_value(SHORT.entry_bytes(chunk_size=65535))),
        field_bad("chunk size 131072", field_value(SHORT.entry_bytes(chunk_size=131072))),
        field_bad("chunk size 0", field_value(SHORT.entry_bytes(chunk_size=0))),
        field_bad(
            "padded length one more than Padmé",
            field_value(SHORT.entry_bytes(padded_length=SHORT.padded + 1)),
        ),
        field_bad(
            "padded length one less than Padmé",
            field_value(SHORT.entry_bytes(padded_length=SHORT.padded - 1)),
        ),
        field_bad(
            "padded length equal to the unpadded ciphertext length",
            field_value(SHORT.entry_bytes(padded_length=SHORT.size + 16)),
        ),
        field_bad("padded length 0", field_value(SHORT.entry_bytes(padded_length=0))),
        field_bad(
            "the same blob id twice",
            field_value(one, SMALL.entry_bytes(blob_id=SHORT.entry()["blob_id"])),
        ),
        field_bad(
            "two files of 2^39 + 1 bytes: more than 2^40 in all",
            field_value(
                *(
                    File(f"half {i}", "half.bin", "application/octet-stream", 0).entry_bytes(
                        size=(1 << 39) + 1,
                        padded_length=padme((1 << 39) + 1 + 16 * ((1 << 23) + 1)),
                    )
                    for i in range(2)
                )
            ),
        ),
    ]
    bad_names = [
        ("empty", ""), (".", "."), ("..", ".."), ("a NUL", "a\x00b"), ("a line feed", "a\nb"),
        ("a tab", "a\tb"), ("ESC", "\x1b[31mred"), ("DEL", "a\x7f"), ("U+0085 (C1 control)",
        "a\u0085b"), ("U+009B (C1 CSI)", "a\u009b"), ("a slash", "a/b"), ("a leading slash",
        "/etc/passwd"), ("a backslash", "a\\b"), ("a path up", "../secret"),
        ("256 bytes", "é" * 128),
    ]  # fmt: skip
    encode_cases = []
    for desc, name in bad_names:
        if len(name.encode()) > 255:  # the length byte cannot say it: writers only
            encode_cases.append(
                encode_bad(f"writer refuses name: {desc}", [SHORT.entry(name=name)])
            )
            continue
        bad_fields.append(
            field_bad(f"name: {desc}", field_value(SHORT.entry_bytes(name=name.encode())))
        )
        encode_cases.append(encode_bad(f"writer refuses name: {desc}", [SHORT.entry(name=name)]))
    encode_cases.append(
        encode_bad("writer refuses name: a lone surrogate", [SHORT.entry(name="a\ud800")])
    )
    bad_types = [
        ("empty", ""), ("no slash", "text"), ("two slashes", "text/plain/x"),
        ("upper case", "Text/Plain"), ("a parameter", "text/plain;charset=utf-8"),
        ("a space", "text/ plain"), ("an empty subtype", "text/"), ("a leading +", "+a/b"),
        ("a 128-character type", "a" * 128 + "/b"), ("a wildcard", "*/*"),
    ]  # fmt: skip
    for desc, media_type in bad_types:
        bad_fields.append(
            field_bad(
                f"media type: {desc}",
                field_value(SHORT.entry_bytes(media_type=media_type.encode())),
            )
        )
        encode_cases.append(
            encode_bad(f"writer refuses media type: {desc}", [SHORT.entry(media_type=media_type)])
        )
    encode_cases += [
        encode_bad("writer refuses no files", []),
        encode_bad(
            "writer refuses 33 files",
            [File(f"file {i}", "f", "text/plain", 0).entry() for i in range(33)],
        ),
        encode_bad("writer refuses a 15-byte blob id", [SHORT.entry(blob_id=b64(bytes(15)))]),
        encode_bad("writer refuses a 31-byte file key", [SHORT.entry(file_key=b64(bytes(31)))]),
        encode_bad("writer refuses a negative size", [SHORT.entry(size=-1)]),
        encode_bad(
            "writer refuses the same blob id twice",
            [SHORT.entry(), SMALL.entry(blob_id=SHORT.entry()["blob_id"])],
        ),
    ]

    streams = [
        stream_ok("empty file: one empty final chunk", EMPTY),
        stream_ok("one short chunk", SHORT),
        stream_ok("3000 bytes", SMALL),
        stream_ok("another 3000 bytes (another file of the same message)", SMALL_TWIN),
        stream_ok("exactly one chunk: the full chunk is final", ONE_CHUNK),
        stream_ok("two chunks, the last of one byte", TWO_SHORT, whole=True),
        stream_ok("an exact multiple of the chunk size: no empty trailing chunk", TWO_CHUNKS),
        stream_ok("multi-chunk with a short last chunk", THREE),
        stream_ok("another two-chunk file", OTHER_TWO),
        stream_ok("the worked example (SPEC 5.12): the blob", HELLO),
    ]
    pad_start = len(SMALL.blob) - (SMALL.padded - (SMALL.size + 16))
    flag0 = seal_chunks(SMALL.file_key, SMALL.blob_id, [SMALL.plaintext], flags=[0])[0]
    empty_flag0 = seal_chunks(EMPTY.file_key, EMPTY.blob_id, [b""], flags=[0])[0]
    extra = seal_chunks(SMALL.file_key, SMALL.blob_id, [SMALL.plaintext, b""], flags=[1, 1])
    two_pad = SMALL.blob[pad_start + 16 :]
    three_last = THREE.size - 2 * CHUNK + 16
    other_id = seeded("blob/another message")[:16]
    moved = seal_chunks(SMALL.file_key, other_id, [SMALL.plaintext])[0]
    moved_blob = moved + padding(SMALL.file_key, other_id, SMALL.padded - len(moved))
    wrong_ad = seal_chunks(SMALL.file_key, SMALL.blob_id, [SMALL.plaintext], ad=other_id)[0]
    bad_streams = [
        stream_bad(
            "truncated: the last chunk and the padding dropped",
            THREE.entry(),
            edited(THREE, {"op": "truncate", "length": 2 * c}),
            "SizeError",
        ),
        stream_bad(
            "truncated: the last chunk cut out, the padding kept",
            THREE.entry(),
            edited(THREE, {"op": "remove", "start": 2 * c, "length": three_last}),
            "SizeError",
        ),
        stream_bad(
            "truncated: the padding's last byte dropped",
            SMALL.entry(),
            edited(SMALL, {"op": "truncate", "length": SMALL.padded - 1}),
            "SizeError",
        ),
        stream_bad(
            "truncated: the padding dropped",
            SMALL.entry(),
            edited(SMALL, {"op": "truncate", "length": pad_start}),
            "SizeError",
        ),
        stream_bad(
            "truncated: nothing at all",
            SMALL.entry(),
            edited(SMALL, {"op": "truncate", "length": 0}),
            "SizeError",
        ),
        stream_bad(
            "reordered: chunks 0 and 1 swapped",
            TWO_CHUNKS.entry(),
            edited(TWO_CHUNKS, {"op": "swap", "a": 0, "b": c, "length": c}),
            "DecryptError",
        ),
        stream_bad(
            "swapped between files: chunk 0 of another file spliced in",
            TWO_CHUNKS.entry(),
            edited(
                TWO_CHUNKS,
                {"op": "splice", "from": OTHER_TWO.label, "start": 0, "length": c, "at": 0},
            ),
            "DecryptError",
        ),
        stream_bad(
            "swapped between files: the blob of another file of the message",
            SMALL.entry(),
            edited(SMALL_TWIN),
            "DecryptError",
        ),
        stream_bad(
            "final flag missing: the only chunk flagged 0x00",
            SMALL.entry(),
            full(flag0 + SMALL.blob[pad_start:]),
            "DecryptError",
        ),
        stream_bad(
            "final flag missing: an empty file's chunk flagged 0x00",
            EMPTY.entry(),
            full(empty_flag0),
            "DecryptError",
        ),
        stream_bad(
            "extended after final: a further chunk in place of the padding",
            SMALL.entry(),
            full(extra[0] + extra[1] + two_pad),
            "PaddingError",
        ),
        stream_bad(
            "extended after final: a further chunk after the padding",
            SMALL.entry(),
            edited(SMALL, {"op": "append", "bytes": b64(extra[1])}),
            "SizeError",
        ),
        stream_bad(
            "extended: one byte after the padding",
            SMALL.entry(),
            edited(SMALL, {"op": "append", "bytes": "AA"}),
            "SizeError",
        ),
        stream_bad(
            "blob from another message: same file key, another blob id",
            SMALL.entry(),
            full(moved_blob),
            "DecryptError",
        ),
        stream_bad(
            "blob from another message: the entry names another blob id",
            SMALL.entry(blob_id=b64(other_id)),
            edited(SMALL),
            "DecryptError",
        ),
        stream_bad(
            "blob from another message: another file key",
            SMALL.entry(file_key=b64(seeded("file key/another message"))),
            edited(SMALL),
            "DecryptError",
        ),
        stream_bad(
            "associated data: another blob id in the AD only",
            SMALL.entry(),
            full(wrong_ad + SMALL.blob[pad_start:]),
            "DecryptError",
        ),
        stream_bad(
            "a flipped ciphertext bit",
            SMALL.entry(),
            edited(SMALL, {"op": "xor", "at": 5, "value": 1}),
            "DecryptError",
        ),
        stream_bad(
            "a flipped tag bit",
            SMALL.entry(),
            edited(SMALL, {"op": "xor", "at": pad_start - 1, "value": 128}),
            "DecryptError",
        ),
        stream_bad(
            "a flipped bit in the second chunk",
            THREE.entry(),
            edited(THREE, {"op": "xor", "at": c + 100, "value": 4}),
            "DecryptError",
        ),
        stream_bad(
            "wrong padding: one padding bit flipped",
            SMALL.entry(),
            edited(SMALL, {"op": "xor", "at": SMALL.padded - 1, "value": 1}),
            "PaddingError",
        ),
        stream_bad(
            "wrong padding: zeros instead of the keystream",
            SMALL.entry(),
            full(SMALL.blob[:pad_start] + bytes(SMALL.padded - pad_start)),
            "PaddingError",
        ),
        stream_bad(
            "wrong padding: the keystream of another blob id",
            SMALL.entry(),
            full(
                SMALL.blob[:pad_start] + padding(SMALL.file_key, other_id, SMALL.padded - pad_start)
            ),
            "PaddingError",
        ),
        stream_bad(
            "wrong padding length: padded to the next Padmé step",
            SMALL.entry(),
            full(
                SMALL.blob
                + padding(SMALL.file_key, SMALL.blob_id, SMALL.padded - pad_start + 128)[
                    SMALL.padded - pad_start :
                ]
            ),
            "SizeError",
        ),
        stream_bad(
            "order: a bad chunk before a long blob (chunk first)",
            SMALL.entry(),
            edited(SMALL, {"op": "xor", "at": 0, "value": 1}, {"op": "append", "bytes": "AA"}),
            "DecryptError",
        ),
        stream_bad(
            "order: bad padding before a long blob (padding first)",
            SMALL.entry(),
            edited(
                SMALL,
                {"op": "xor", "at": SMALL.padded - 1, "value": 1},
                {"op": "append", "bytes": "AA"},
            ),
            "PaddingError",
        ),
        stream_bad(
            "order: bad padding in a short blob (padding first)",
            SMALL.entry(),
            edited(
                SMALL,
                {"op": "xor", "at": pad_start, "value": 1},
                {"op": "truncate", "length": SMALL.padded - 1},
            ),
            "PaddingError",
        ),
    ]
    encrypt_cases = [
        {"desc": "encrypt: one byte more than the entry's size", "kind": "encrypt",
         "attachment": SHORT.entry(), "plaintext": {"seed": SHORT.label, "size": 1001},
         "expect": "SizeError"},
        {"desc": "encrypt: one byte less than the entry's size", "kind": "encrypt",
         "attachment": SHORT.entry(), "plaintext": {"seed": SHORT.label, "size": 999},
         "expect": "SizeError"},
    ]  # fmt: skip
    return {
        "spec": "secretlink v1, crypto/SPEC.md",
        "about": (
            "Attachments (SPEC 5.10, 5.11; file format in SPEC 11.1). kind field: decode "
            "`value`; for ok, the entries MUST equal `files` and encoding `files` MUST give "
            "`value`. kind encode: encoding `files` MUST raise `expect`. kind stream: "
            "decrypt the blob with `attachment`; for ok the plaintext is "
            "`plaintext` and encrypting it MUST give a blob of `blob_length` bytes with "
            "SHA-256 `blob_sha256`. kind encrypt: encrypting `plaintext` under "
            "`attachment` MUST raise `expect`. kind envelope: open `envelope` with "
            "`secret_key` as a reader that implements attachments; for ok the text is "
            "`text` and the entries `files`, and a reader without attachments MUST refuse "
            "it with PayloadError."
        ),
        "cases": fixed_ok
        + bad_fields
        + encode_cases
        + streams
        + bad_streams
        + encrypt_cases
        + envelope_cases(),
    }


ALL_FILES = [HELLO, EMPTY, SHORT, SMALL, SMALL_TWIN, ONE_CHUNK, TWO_SHORT, TWO_CHUNKS, THREE,
             OTHER_TWO]  # fmt: skip


def confirm(document: dict) -> None:
    """Every case against secretlink.crypto.attachments, so the file cannot be wrong
    in a way both the generator and the module agree on without the test noticing."""
    blobs = {f.label: f.blob for f in ALL_FILES}

    def entry_of(data: dict) -> impl.Attachment:
        return impl.Attachment(unb64(data["blob_id"]), unb64(data["file_key"]),
                               data["name"], data["media_type"], data["size"])  # fmt: skip

    for case in document["cases"]:
        expected = case["expect"]
        try:
            if case["kind"] == "field":
                files = impl.decode_attachments(unb64(case["value"]))
                assert impl.encode_attachments([entry_of(e) for e in case["files"]]) == (
                    unb64(case["value"])
                )
                assert len(files) == len(case["files"])
            elif case["kind"] == "encode":
                impl.encode_attachments([entry_of(e) for e in case["files"]])
            elif case["kind"] == "envelope":
                confirm_envelope(case, entry_of)
            elif case["kind"] == "stream":
                blob_spec = case["blob"]
                if "bytes" in blob_spec:
                    blob = unb64(blob_spec["bytes"])
                elif "from" in blob_spec:
                    blob = apply_edits(blobs[blob_spec["from"]], blob_spec["edits"], blobs)
                else:
                    blob = blobs[case["plaintext"]["seed"]]
                plain = b"".join(impl.decrypt_blob(entry_of(case["attachment"]), [blob]))
                if expected == "ok":
                    assert plain == plaintext_of(case["plaintext"]), case["desc"]
                    made = b"".join(impl.encrypt_blob(entry_of(case["attachment"]), [plain]))
                    assert hashlib.sha256(made).hexdigest() == case["blob_sha256"]
            else:
                data = plaintext_of(case["plaintext"])
                b"".join(impl.encrypt_blob(entry_of(case["attachment"]), [data]))
        except errors.SecretlinkCryptoError as err:
            assert type(err).__name__ == expected, (case["desc"], err)
            continue
        assert expected == "ok", case["desc"]


def confirm_envelope(case: dict, entry_of) -> None:
    envelope, key = unb64(case["envelope"]), unb64(case["secret_key"])
    message = envelope_impl.open_envelope(envelope, key, attachments=True)
    assert message.text == case["text"], case["desc"]
    assert message.attachments == tuple(entry_of(e) for e in case["files"]), case["desc"]
    try:
        envelope_impl.open_envelope(envelope, key)
    except errors.PayloadError:
        return
    raise AssertionError(f"{case['desc']}: a reader without attachments opened it")


def plaintext_of(spec: dict) -> bytes:
    return spec["text"].encode() if "text" in spec else pattern(spec["seed"], spec["size"])


def render() -> str:
    document = build()
    confirm(document)
    return json.dumps(document, indent=1) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"stale: {OUT}")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
