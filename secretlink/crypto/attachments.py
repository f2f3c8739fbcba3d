"""Attachments: the payload field that lists a message's files, and each file's blob.

Normative text: crypto/SPEC.md sections 5.10 (the field, tag 0x03) and 5.11 (the blob).

    field value = u8 count || entry * count
    entry       = blob_id (16) || file_key (32) || u8 len || name || u8 len || media_type
                  || u64be size || u32be chunk_size (65536) || u64be padded_length
    blob        = chunk_0 || ... || chunk_{n-1} || padding        (n = max(1, ceil(size / 64 KiB)))
    chunk_i     = AES-256-GCM(K, nonce = u88be(i) || final flag, ad = blob_id, plaintext_i)
    padding     = AES-256-CTR keystream under K_pad, up to Padmé(len(chunks))

Both directions stream: the encryptor and decryptor hold at most one chunk, so a file of
any size is handled in constant memory. The decryptor releases each chunk once its tag
verifies; a caller MUST discard what it got if `finish()` (or any call) raises.
"""

import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secretlink.crypto.errors import DecryptError, PaddingError, PayloadError, SizeError

TAG_ATTACHMENTS = 0x03
CHUNK_SIZE = 65536
GCM_TAG_BYTES = 16
BLOB_ID_BYTES = 16
FILE_KEY_BYTES = 32
MAX_FILES = 32
MAX_NAME_BYTES = 255
MAX_MEDIA_TYPE_BYTES = 255
MAX_TOTAL_SIZE = 1 << 40  # 1 TiB: per file and per message, far above any deployment
STREAM_PURPOSE = b"secretlink/v1/attachment-stream"
PADDING_PURPOSE = b"secretlink/v1/attachment-padding"
DEFAULT_MEDIA_TYPE = "application/octet-stream"

# blob id, file key, the name's length byte, the media type's length byte, size,
# chunk size, padded length.
_FIXED_ENTRY_BYTES = BLOB_ID_BYTES + FILE_KEY_BYTES + 1 + 1 + 8 + 4 + 8
# RFC 6838 section 4.2 restricted-name characters, lower case only (one spelling).
_MEDIA_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_MEDIA_REST = _MEDIA_FIRST | frozenset("!#$&-^_.+")
_MAX_MEDIA_PART = 127


# ---- sizes ----


def padme(length: int) -> int:
    """Padmé (Nikitin et al., PETS 2019): round `length` up so that only its top
    bits vary; the overhead is at most 12 % and the rounded length leaks
    O(log log length) bits. Defined for length >= 2 (a blob has at least 16 bytes)."""
    if length < 2:
        raise ValueError("Padmé is defined for lengths of 2 or more")
    exponent = length.bit_length() - 1  # floor(log2(length))
    significant = exponent.bit_length()  # floor(log2(exponent)) + 1
    mask = (1 << (exponent - significant)) - 1
    return (length + mask) & ~mask


def chunk_count(size: int) -> int:
    """An empty file is one empty final chunk; otherwise ceil(size / 64 KiB)."""
    return max(1, -(-size // CHUNK_SIZE))


def ciphertext_length(size: int) -> int:
    return size + GCM_TAG_BYTES * chunk_count(size)


def padded_length(size: int) -> int:
    return padme(ciphertext_length(size))


# ---- names and media types ----


def _name_problem(name: str) -> str | None:
    """Why a reader must refuse this name (SPEC 5.10), or None."""
    if name in ("", ".", ".."):
        return "a file name must not be empty, '.' or '..'"
    for char in name:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return "a file name must not contain control characters"
        if char in "/\\":
            return "a file name must not contain '/' or '\\'"
        if 0xD800 <= code <= 0xDFFF:
            return "a file name must be valid Unicode (lone surrogate)"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"a file name is at most {MAX_NAME_BYTES} bytes of UTF-8"
    return None


def _media_type_problem(media_type: str) -> str | None:
    if not media_type or len(media_type) > MAX_MEDIA_TYPE_BYTES:
        return f"a media type has 1 to {MAX_MEDIA_TYPE_BYTES} characters"
    parts = media_type.split("/")
    if len(parts) != 2:
        return "a media type is type/subtype"
    for part in parts:
        if not 1 <= len(part) <= _MAX_MEDIA_PART or part[0] not in _MEDIA_FIRST:
            return "a media type part is 1 to 127 characters starting with a-z or 0-9"
        if any(char not in _MEDIA_REST for char in part):
            return "a media type has lower-case RFC 6838 name characters only"
    return None


def clean_name(name: str) -> str:
    """What a writer puts in the field for a file called `name` (SPEC 5.10, writer).

    Control characters, '/', '\\' and lone surrogates (undecodable bytes in a POSIX
    name) become '_' or U+FFFD; a name longer than 255 bytes of UTF-8 is shortened at
    a character boundary, keeping a short extension; an empty name becomes "file".
    """
    chars = []
    for char in name:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or char in "/\\":
            chars.append("_")
        elif 0xD800 <= code <= 0xDFFF:
            chars.append("\ufffd")
        else:
            chars.append(char)
    cleaned = "".join(chars)
    if cleaned in ("", ".", ".."):
        return "file" if not cleaned else "_" * len(cleaned)
    if len(cleaned.encode("utf-8")) <= MAX_NAME_BYTES:
        return cleaned
    stem, dot, extension = cleaned.rpartition(".")
    suffix = dot + extension if stem and len((dot + extension).encode("utf-8")) <= 32 else ""
    stem = cleaned[: len(cleaned) - len(suffix)]
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    shortened = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return shortened + suffix


def clean_media_type(media_type: str) -> str:
    """The field's spelling of a media type: lower case, parameters dropped, and
    application/octet-stream for anything that is not a plain RFC 6838 type."""
    candidate = media_type.split(";", 1)[0].strip()
    if not candidate.isascii():
        return DEFAULT_MEDIA_TYPE
    candidate = candidate.lower()
    return DEFAULT_MEDIA_TYPE if _media_type_problem(candidate) else candidate


# ---- the field ----


@dataclass(frozen=True)
class Attachment:
    """One entry of the attachments field: everything needed to fetch and open a blob."""

    blob_id: bytes
    # Kept out of repr(), so that a logged or printed entry does not give the file away.
    file_key: bytes = field(repr=False)
    name: str
    media_type: str
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.blob_id, bytes) or len(self.blob_id) != BLOB_ID_BYTES:
            raise PayloadError("a blob id is 16 bytes")
        if not isinstance(self.file_key, bytes) or len(self.file_key) != FILE_KEY_BYTES:
            raise PayloadError("a file key is 32 bytes")
        problem = _name_problem(self.name) if isinstance(self.name, str) else "not text"
        if problem:
            raise PayloadError(problem)
        problem = _media_type_problem(self.media_type) if isinstance(self.media_type, str) else "?"
        if problem:
            raise PayloadError(problem)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise PayloadError("a size is a whole number")
        if not 0 <= self.size <= MAX_TOTAL_SIZE:
            raise PayloadError(f"a file has at most {MAX_TOTAL_SIZE} bytes")

    @property
    def chunk_size(self) -> int:
        return CHUNK_SIZE

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size)

    @property
    def ciphertext_length(self) -> int:
        return ciphertext_length(self.size)

    @property
    def padded_length(self) -> int:
        """The exact length of the stored blob."""
        return padded_length(self.size)


def new_attachment(name: str, media_type: str, size: int) -> Attachment:
    """A fresh entry for a file about to be uploaded: random blob id and file key.

    Call it again for every upload attempt: a file key is never used for two blobs.
    `name` and `media_type` must already be valid (see clean_name, clean_media_type).
    """
    return Attachment(os.urandom(BLOB_ID_BYTES), os.urandom(FILE_KEY_BYTES), name, media_type, size)


def _check_list(files: Sequence[Attachment]) -> None:
    if not 1 <= len(files) <= MAX_FILES:
        raise PayloadError(f"an attachments field lists 1 to {MAX_FILES} files")
    if len({entry.blob_id for entry in files}) != len(files):
        raise PayloadError("two attachments name the same blob")
    if sum(entry.size for entry in files) > MAX_TOTAL_SIZE:
        raise PayloadError(f"a message's files have at most {MAX_TOTAL_SIZE} bytes in all")


def encode_attachments(files: Sequence[Attachment]) -> bytes:
    """The value of payload field 0x03 (without the tag and length header)."""
    for entry in files:
        if not isinstance(entry, Attachment):
            raise PayloadError("an attachments field lists Attachment entries")
    _check_list(files)
    out = bytearray([len(files)])
    for entry in files:
        name = entry.name.encode("utf-8")
        media_type = entry.media_type.encode("ascii")
        out += entry.blob_id + entry.file_key
        out += bytes([len(name)]) + name + bytes([len(media_type)]) + media_type
        out += entry.size.to_bytes(8, "big") + CHUNK_SIZE.to_bytes(4, "big")
        out += entry.padded_length.to_bytes(8, "big")
    return bytes(out)


class _Reader:
    """Reads the field front to back; every shortfall is a PayloadError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int, what: str) -> bytes:
        if len(self.data) - self.offset < count:
            raise PayloadError(f"attachments field ends inside {what}")
        piece = self.data[self.offset : self.offset + count]
        self.offset += count
        return piece

    def number(self, count: int, what: str) -> int:
        return int.from_bytes(self.take(count, what), "big")


def _read_entry(reader: _Reader) -> Attachment:
    blob_id = reader.take(BLOB_ID_BYTES, "a blob id")
    file_key = reader.take(FILE_KEY_BYTES, "a file key")
    name_bytes = reader.take(reader.number(1, "a name length"), "a name")
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("a file name is not valid UTF-8") from None
    media_bytes = reader.take(reader.number(1, "a media type length"), "a media type")
    try:
        media_type = media_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise PayloadError("a media type is ASCII") from None
    size = reader.number(8, "a size")
    chunk_size = reader.number(4, "a chunk size")
    padded = reader.number(8, "a padded length")
    # The constructor applies the name, media type and size rules.
    entry = Attachment(blob_id, file_key, name, media_type, size)
    if chunk_size != CHUNK_SIZE:
        raise PayloadError(f"chunk size {chunk_size}; v1 uses {CHUNK_SIZE}")
    if padded != entry.padded_length:
        raise PayloadError("padded length is not the Padmé length of the blob")
    return entry


def decode_attachments(value: bytes) -> tuple[Attachment, ...]:
    """Parse and check the value of field 0x03 (SPEC 5.10, reader)."""
    reader = _Reader(value)
    count = reader.number(1, "the count")
    if not 1 <= count <= MAX_FILES:
        raise PayloadError(f"an attachments field lists 1 to {MAX_FILES} files, not {count}")
    files = tuple(_read_entry(reader) for _ in range(count))
    if reader.offset != len(value):
        raise PayloadError("bytes after the last attachment entry")
    _check_list(files)
    return files


# ---- the blob ----


def _derive(file_key: bytes, blob_id: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=blob_id, info=purpose).derive(file_key)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class _Padding:
    """The padding keystream, produced in order, one 64 KiB segment at a time."""

    def __init__(self, entry: Attachment) -> None:
        key = _derive(entry.file_key, entry.blob_id, PADDING_PURPOSE)
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self.remaining = entry.padded_length - entry.ciphertext_length

    def take(self, count: int) -> bytes:
        count = min(count, self.remaining)
        self.remaining -= count
        return self._stream.update(bytes(count))


class BlobEncryptor:
    """Encrypts one file into its blob, given the file's bytes in pieces of any size.

    update() returns the ciphertext of every chunk completed so far; after exactly
    `entry.size` bytes, finish() yields the padding in pieces of at most 64 KiB.
    """

    def __init__(self, entry: Attachment) -> None:
        self._entry = entry
        self._aead = AESGCM(_derive(entry.file_key, entry.blob_id, STREAM_PURPOSE))
        self._buffer = bytearray()
        self._index = 0
        self._received = 0

    def _seal(self, plaintext: bytes) -> bytes:
        final = self._index == self._entry.chunk_count - 1
        sealed = self._aead.encrypt(_nonce(self._index, final), plaintext, self._entry.blob_id)
        self._index += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        self._received += len(data)
        if self._received > self._entry.size:
            raise SizeError(f"the file has more than the {self._entry.size} bytes declared")
        # Whole chunks are sealed straight from the input (the declared size tells
        # whether one is final); only a partial chunk is kept.
        data = memoryview(bytes(self._buffer) + data if self._buffer else data)
        out = []
        offset = 0
        while len(data) - offset >= CHUNK_SIZE:
            out.append(self._seal(data[offset : offset + CHUNK_SIZE]))
            offset += CHUNK_SIZE
        self._buffer = bytearray(data[offset:])
        return b"".join(out)

    def finish(self) -> Iterator[bytes]:
        if self._received != self._entry.size:
            raise SizeError(f"the file has {self._received} bytes, not {self._entry.size}")
        if self._index < self._entry.chunk_count:  # a short (or the empty) final chunk
            yield self._seal(bytes(self._buffer))
            self._buffer.clear()
        padding = _Padding(self._entry)
        while padding.remaining:
            yield padding.take(CHUNK_SIZE)


class BlobDecryptor:
    """Checks and decrypts one blob, given its bytes in pieces of any size.

    update() returns the plaintext of every chunk whose tag verified; finish() checks
    that the blob ended exactly at its padded length. Any error means the whole file is
    void: the caller MUST discard every byte it already received.
    """

    def __init__(self, entry: Attachment) -> None:
        self._entry = entry
        self._aead = AESGCM(_derive(entry.file_key, entry.blob_id, STREAM_PURPOSE))
        self._padding = _Padding(entry)
        self._buffer = bytearray()
        self._index = 0
        self._received = 0
        self._failed = False

    def _chunk_length(self) -> int:
        last = self._entry.chunk_count - 1
        if self._index < last:
            return CHUNK_SIZE + GCM_TAG_BYTES
        return self._entry.size - last * CHUNK_SIZE + GCM_TAG_BYTES

    def _open_chunks(self, data: memoryview, out: list[bytes]) -> int:
        """Opens every chunk complete in `data`; returns how many bytes it used."""
        offset = 0
        while self._index < self._entry.chunk_count:
            length = self._chunk_length()
            if len(data) - offset < length:
                break
            final = self._index == self._entry.chunk_count - 1
            try:
                out.append(
                    self._aead.decrypt(
                        _nonce(self._index, final),
                        data[offset : offset + length],
                        self._entry.blob_id,
                    )
                )
            except InvalidTag:
                raise DecryptError(f"chunk {self._index} does not authenticate") from None
            offset += length
            self._index += 1
        return offset

    def _check_padding(self, data: memoryview, offset: int) -> int:
        """Once every chunk is open, the rest is padding: checked as it comes."""
        if self._index < self._entry.chunk_count or offset == len(data):
            return offset
        received = bytes(data[offset:])
        if not hmac.compare_digest(self._padding.take(len(received)), received):
            raise PaddingError("the blob's padding is not its padding keystream")
        return len(data)

    def update(self, data: bytes) -> bytes:
        if self._failed:
            raise DecryptError("this blob already failed")
        try:
            room = self._entry.padded_length - self._received
            inside = memoryview(data)[:room]
            self._received += len(inside)
            if self._buffer:
                inside = memoryview(bytes(self._buffer) + inside)
            out: list[bytes] = []
            offset = self._check_padding(inside, self._open_chunks(inside, out))
            # Only a partial chunk is kept.
            self._buffer = bytearray(inside[offset:])
            if len(data) > room:
                raise SizeError("the blob is longer than its entry says")
        except Exception:
            self._failed = True
            raise
        return b"".join(out)

    def finish(self) -> None:
        if self._failed:
            raise DecryptError("this blob already failed")
        if self._received != self._entry.padded_length:
            self._failed = True
            raise SizeError(
                f"the blob ends after {self._received} of {self._entry.padded_length} bytes"
            )


def encrypt_blob(entry: Attachment, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The blob of a file given as pieces (for example reads of a file object)."""
    encryptor = BlobEncryptor(entry)
    for piece in pieces:
        out = encryptor.update(piece)
        if out:
            yield out
    yield from encryptor.finish()


def decrypt_blob(entry: Attachment, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext of a blob given as pieces; raises at the first bad byte and at the
    end if the blob is short. What was yielded before an error MUST be discarded."""
    decryptor = BlobDecryptor(entry)
    for piece in pieces:
        out = decryptor.update(piece)
        if out:
            yield out
    decryptor.finish()


__all__ = [
    "CHUNK_SIZE",
    "MAX_FILES",
    "MAX_NAME_BYTES",
    "MAX_TOTAL_SIZE",
    "TAG_ATTACHMENTS",
    "Attachment",
    "BlobDecryptor",
    "BlobEncryptor",
    "chunk_count",
    "ciphertext_length",
    "clean_media_type",
    "clean_name",
    "decode_attachments",
    "decrypt_blob",
    "encode_attachments",
    "encrypt_blob",
    "new_attachment",
    "padded_length",
    "padme",
]
