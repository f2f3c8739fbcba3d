"""The v1 envelope: a libsodium sealed box around a versioned, padded payload.

    envelope  = 0x01 || crypto_box_seal(inner, recipient_pk)
    inner     = 0x01 || sodium_pad(payload, bucket)
    payload   = field* ;  field = tag (1 byte) || length (4 bytes, big-endian) || value

The version byte is repeated inside the box so that it is authenticated; the
padding bucket is the smallest power of two from 256 to 65536 bytes that fits, so
the envelope length reveals only the bucket. crypto/SPEC.md is the normative text.
"""

from dataclasses import dataclass

from nacl.bindings import (
    crypto_box_seal,
    crypto_box_seal_open,
    crypto_box_SEALBYTES,
    crypto_scalarmult_base,
    sodium_pad,
    sodium_unpad,
)
from nacl.exceptions import CryptoError

from secretlink.crypto.attachments import (
    TAG_ATTACHMENTS,
    Attachment,
    decode_attachments,
    encode_attachments,
)
from secretlink.crypto.errors import (
    DecryptError,
    PaddingError,
    PayloadError,
    SizeError,
    VersionError,
)
from secretlink.crypto.keys import KEY_BYTES, check_public_key

VERSION = 1
BUCKETS = tuple(256 << i for i in range(9))  # 256, 512, ... 65536
MAX_PADDED = BUCKETS[-1]
FIELD_HEADER = 5
TAG_TEXT = 0x01
TAG_CONVERSATION = 0x02  # section 5.8: a crypto_box between an inbox key and a reply key
# writer key, box nonce, Poly1305 tag, and the 25-byte header of the boxed plaintext
MIN_CONVERSATION_FIELD = 32 + 24 + 16 + 25
KNOWN_CRITICAL = frozenset({TAG_TEXT, TAG_CONVERSATION, TAG_ATTACHMENTS})
# One byte of the padding is always the 0x80 marker; one field header precedes the text.
MAX_TEXT_BYTES = MAX_PADDED - 1 - FIELD_HEADER
OVERHEAD = 1 + crypto_box_SEALBYTES + 1  # outer version, sealed-box overhead, inner version
ENVELOPE_LENGTHS = frozenset(OVERHEAD + bucket for bucket in BUCKETS)
MAX_ENVELOPE = OVERHEAD + MAX_PADDED


@dataclass(frozen=True)
class Message:
    """What a v1 envelope carries: a text, or (section 5.8) an empty text and the value
    of a conversation field, which secretlink.crypto.conversation opens; and (section
    5.10) the entries of the message's files, empty when it has none."""

    text: str
    conversation: bytes | None = None
    attachments: tuple[Attachment, ...] = ()


def bucket_for(payload_length: int) -> int:
    """The canonical padded size: the smallest bucket with room for the 0x80 marker."""
    for bucket in BUCKETS:
        if payload_length < bucket:
            return bucket
    raise SizeError(f"payload of {payload_length} bytes exceeds the v1 maximum")


def field(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + len(value).to_bytes(4, "big") + value


def encode_payload(message: Message) -> bytes:
    try:
        text = message.text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("text is not encodable as UTF-8 (lone surrogate)") from None
    if message.conversation is not None:
        if text:
            raise PayloadError("a conversation message has an empty text field")
        if message.attachments:
            raise PayloadError("a conversation message carries no attachments field")
        payload = field(TAG_TEXT, b"") + field(TAG_CONVERSATION, message.conversation)
        if len(payload) >= MAX_PADDED:
            raise SizeError("conversation message exceeds the v1 maximum")
        return payload
    if not message.attachments:
        if len(text) > MAX_TEXT_BYTES:
            raise SizeError(f"message is {len(text)} bytes; the limit is {MAX_TEXT_BYTES}")
        return field(TAG_TEXT, text)
    payload = field(TAG_TEXT, text) + field(
        TAG_ATTACHMENTS, encode_attachments(tuple(message.attachments))
    )
    if len(payload) >= MAX_PADDED:
        # The file list shares the payload with the text (section 5.10).
        raise SizeError(
            f"text and file list take {len(payload) + 1} bytes; the limit is {MAX_PADDED}"
        )
    return payload


def decode_payload(payload: bytes) -> Message:
    fields: dict[int, bytes] = {}
    offset = 0
    last_tag = 0
    while offset < len(payload):
        if len(payload) - offset < FIELD_HEADER:
            raise PayloadError("truncated field header")
        tag = payload[offset]
        length = int.from_bytes(payload[offset + 1 : offset + FIELD_HEADER], "big")
        offset += FIELD_HEADER
        if tag <= last_tag:
            raise PayloadError("field tags must be strictly increasing and non-zero")
        if length > len(payload) - offset:
            raise PayloadError("field length runs past the end of the payload")
        fields[tag] = payload[offset : offset + length]
        offset += length
        last_tag = tag
    # Tags below 0x80 are critical: a reader that does not know one must refuse the
    # message rather than show part of it. Tags from 0x80 up may be ignored.
    unknown_critical = [tag for tag in fields if tag < 0x80 and tag not in KNOWN_CRITICAL]
    if unknown_critical:
        raise PayloadError(
            f"unknown critical field 0x{unknown_critical[0]:02x}: "
            "a newer secretlink is needed to read this message"
        )
    if TAG_TEXT not in fields:
        raise PayloadError("payload has no text field")
    conversation = fields.get(TAG_CONVERSATION)
    if conversation is not None:
        # Section 5.9, steps 1 and 2: the rest is secretlink.crypto.conversation's.
        if len(conversation) < MIN_CONVERSATION_FIELD:
            raise PayloadError("conversation field is truncated")
        if fields[TAG_TEXT]:
            # Unauthenticated text must never be shown beside authenticated text.
            raise PayloadError("a conversation message has text outside its box")
    try:
        text = fields[TAG_TEXT].decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("text is not valid UTF-8") from None
    attachments: tuple[Attachment, ...] = ()
    if TAG_ATTACHMENTS in fields:
        if conversation is not None:
            # The file list would sit outside the conversation's box, unauthenticated
            # by the peer: v1 conversations carry no files (section 5.10).
            raise PayloadError("a conversation message carries no attachments field")
        attachments = decode_attachments(fields[TAG_ATTACHMENTS])
    return Message(text, conversation, attachments)


def pad(payload: bytes) -> bytes:
    return sodium_pad(payload, bucket_for(len(payload)))


def unpad(padded: bytes) -> bytes:
    if len(padded) not in BUCKETS:
        raise PaddingError(f"padded length {len(padded)} is not a v1 bucket")
    try:
        payload = sodium_unpad(padded, len(padded))
    except (ValueError, CryptoError):
        raise PaddingError("malformed padding (no 0x80 marker followed by zeros)") from None
    if bucket_for(len(payload)) != len(padded):
        raise PaddingError("padding is longer than the smallest bucket that fits")
    return payload


def validate_envelope_shape(envelope: bytes) -> None:
    """Checks anyone can make without the secret key: version and allowed length.

    The server runs this on every submission, so that what it stores is at least
    shaped like a v1 envelope.
    """
    if not envelope:
        raise SizeError("envelope is empty")
    if envelope[0] != VERSION:
        raise VersionError(f"unknown envelope version {envelope[0]}")
    if len(envelope) not in ENVELOPE_LENGTHS:
        raise SizeError(f"envelope length {len(envelope)} is not a v1 size")


def seal(message: Message | str, public_key: bytes) -> bytes:
    """Encrypt a message to a recipient's public key. Anyone may call this."""
    if isinstance(message, str):
        message = Message(message)
    check_public_key(public_key)
    inner = bytes([VERSION]) + pad(encode_payload(message))
    return bytes([VERSION]) + crypto_box_seal(inner, public_key)


def open_envelope(
    envelope: bytes,
    secret_key: bytes,
    public_key: bytes | None = None,
    *,
    conversations: bool = False,
    attachments: bool = False,
) -> Message:
    """Decrypt and check an envelope with the recipient's secret key.

    `public_key` may be given to spare recomputing it for every message of a batch.
    A caller that passes `conversations=True` gets a conversation field back in
    `Message.conversation` (and must open it with secretlink.crypto.conversation); any
    other caller gets a PayloadError for such a message, as an older reader would,
    rather than its empty text. Likewise only a caller that passes `attachments=True`
    (and so shows or saves the files of `Message.attachments`) gets a message with
    files; any other caller gets a PayloadError rather than the text without its files.
    """
    if len(secret_key) != KEY_BYTES:
        raise DecryptError("secret key must be 32 bytes")
    validate_envelope_shape(envelope)
    # libsodium refuses a low-order ephemeral key inside seal_open as well; checking
    # first gives the same typed error in every implementation.
    check_public_key(envelope[1 : 1 + KEY_BYTES])
    try:
        recipient = public_key or crypto_scalarmult_base(secret_key)
        inner = crypto_box_seal_open(envelope[1:], recipient, secret_key)
    except CryptoError:
        raise DecryptError(
            "envelope does not open with this key (tampered or not for it)"
        ) from None
    if inner[0] != envelope[0]:
        raise VersionError("sealed version does not match the envelope version")
    message = decode_payload(unpad(inner[1:]))
    if message.conversation is not None and not conversations:
        raise PayloadError(
            "this message is part of a conversation (field 0x02), which this reader does not open"
        )
    if message.attachments and not attachments:
        raise PayloadError(
            "this message has attached files (field 0x03), which this reader does not open"
        )
    return message
