"""Conversations: authenticated messages between an inbox key and a reply key.

Every conversation message is an ordinary sealed v1 envelope, sealed to the reader's
static key, whose payload is an empty text field and a conversation field (tag 0x02):

    value = writer_public_key (32) || nonce (24) || crypto_box(inner, nonce, writer_sk -> reader_pk)
    inner = role (1) || conversation_id (16) || u32be(seq) || u32be(last_seen) || text (UTF-8)

The sealed box hides the writer from the server; the crypto_box inside proves to the
reader that the holder of the writer's secret key wrote it. The server knows both
public keys but neither secret, so it can neither read nor forge either side. Both
directions share one box key, so every box takes a fresh random nonce (counters
would collide when both sides, or two devices of one side, send their first message).

crypto/SPEC.md sections 5.8 (writing) and 5.9 (reading, the checks and their order)
are the normative text. This module does steps 1 and 3 to 5 (the envelope reader does
step 2) in `open_field`, and the steps that need memory, 6 to 10, in
`Conversation.accept`.
"""

from dataclasses import dataclass, field, replace

from nacl.bindings import crypto_box, crypto_box_open
from nacl.exceptions import CryptoError
from nacl.utils import random

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.envelope import (
    MAX_PADDED,
    MIN_CONVERSATION_FIELD,
    Message,
    open_envelope,
    seal,
)
from secretlink.crypto.errors import (
    ConversationError,
    EncodingError,
    InvalidKeyError,
    PayloadError,
    ReflectionError,
    ReplayError,
    SizeError,
    WrongConversationError,
)
from secretlink.crypto.keys import KEY_BYTES, KeyPair, check_public_key

ROLE_RECIPIENT = 0x01  # the inbox owner
ROLE_SENDER = 0x02  # the holder of the reply key
ROLE_NAMES = {ROLE_RECIPIENT: "recipient", ROLE_SENDER: "sender"}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}
CONVERSATION_ID_BYTES = 16
NONCE_BYTES = 24
MAC_BYTES = 16
INNER_HEADER = 1 + CONVERSATION_ID_BYTES + 4 + 4
MAX_SEQ = 2**32 - 1
# The padded payload's last byte is the marker; the two field headers take 10 bytes.
MAX_CONVERSATION_TEXT = MAX_PADDED - 1 - 10 - MIN_CONVERSATION_FIELD


@dataclass(frozen=True)
class ConversationMessage:
    """An authentic conversation message (steps 1 to 5 passed)."""

    writer_key: bytes
    role: int
    conversation_id: bytes
    seq: int
    last_seen: int
    text: str


@dataclass(frozen=True)
class Reading:
    """A message that passed steps 6 to 8, with what steps 9 and 10 flag."""

    message: ConversationMessage
    # Step 9: the peer's seqs skipped before this one, as (first, last); None if none.
    gap: tuple[int, int] | None = None
    # Step 10: the peer claims to have seen a message this device never sent.
    claims_unsent: bool = False
    # Step 10: the peer has not seen this device's messages after this seq (None: it has).
    unseen_after: int | None = None
    # The first message of a conversation the reader did not know (a recipient's opener).
    new_conversation: bool = False
    # The same message (same reference) read again: nothing changed.
    again: bool = False


def new_conversation_id() -> bytes:
    return random(CONVERSATION_ID_BYTES)


def _uint32(value: int, name: str, lowest: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_SEQ:
        raise PayloadError(f"{name} must be a whole number from {lowest} to {MAX_SEQ}")
    return value.to_bytes(4, "big")


def conversation_field(
    text: str,
    *,
    writer: KeyPair,
    reader_key: bytes,
    role: int,
    conversation_id: bytes,
    seq: int,
    last_seen: int,
    nonce: bytes | None = None,
) -> bytes:
    """The value of a conversation field (section 5.8). `nonce` is for test vectors
    only: real messages MUST take a fresh random one."""
    check_public_key(reader_key)
    if reader_key == writer.public_key:
        raise InvalidKeyError("a conversation needs two keys: the reader's is the writer's")
    if role not in ROLE_NAMES:
        raise PayloadError("role must be 0x01 (recipient) or 0x02 (sender)")
    if len(conversation_id) != CONVERSATION_ID_BYTES:
        raise PayloadError(f"conversation id must be {CONVERSATION_ID_BYTES} bytes")
    header = (
        bytes([role])
        + conversation_id
        + _uint32(seq, "seq", 1)
        + _uint32(last_seen, "last_seen", 0)
    )
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("text is not encodable as UTF-8 (lone surrogate)") from None
    if len(body) > MAX_CONVERSATION_TEXT:
        raise SizeError(f"message is {len(body)} bytes; the limit is {MAX_CONVERSATION_TEXT}")
    nonce = random(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise PayloadError(f"box nonce must be {NONCE_BYTES} bytes")
    box = crypto_box(header + body, nonce, reader_key, writer.secret_key)
    return writer.public_key + nonce + box


def seal_conversation(
    text: str,
    *,
    writer: KeyPair,
    reader_key: bytes,
    role: int,
    conversation_id: bytes,
    seq: int,
    last_seen: int,
) -> bytes:
    """A whole conversation envelope, sealed to `reader_key` (sections 5.6 and 5.8)."""
    value = conversation_field(
        text,
        writer=writer,
        reader_key=reader_key,
        role=role,
        conversation_id=conversation_id,
        seq=seq,
        last_seen=last_seen,
    )
    return seal(Message("", value), reader_key)


def open_field(value: bytes, reader_secret_key: bytes) -> ConversationMessage:
    """Steps 1 and 3 to 5 of section 5.9 (step 2, the empty text field, is the
    envelope reader's). Raises at the first step that fails."""
    if len(value) < MIN_CONVERSATION_FIELD:
        raise PayloadError("conversation field is truncated")
    writer_key = value[:KEY_BYTES]
    check_public_key(writer_key)
    nonce = value[KEY_BYTES : KEY_BYTES + NONCE_BYTES]
    try:
        inner = crypto_box_open(
            value[KEY_BYTES + NONCE_BYTES :], nonce, writer_key, reader_secret_key
        )
    except CryptoError:
        raise ConversationError(
            "conversation message is not authentic (forged, tampered with, or not for this key)"
        ) from None
    try:
        text = inner[INNER_HEADER:].decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("text is not valid UTF-8") from None
    role = inner[0]
    if role not in ROLE_NAMES:
        raise PayloadError(f"unknown conversation role 0x{role:02x}")
    return ConversationMessage(
        writer_key=writer_key,
        role=role,
        conversation_id=inner[1 : 1 + CONVERSATION_ID_BYTES],
        seq=int.from_bytes(inner[17:21], "big"),
        last_seen=int.from_bytes(inner[21:25], "big"),
        text=text,
    )


def open_any(
    envelope: bytes,
    secret_key: bytes,
    public_key: bytes | None = None,
    *,
    attachments: bool = False,
) -> Message | ConversationMessage:
    """Open an envelope that may be a plain message or a conversation message; with
    `attachments`, a plain message may list files (the caller shows or saves them)."""
    message = open_envelope(
        envelope, secret_key, public_key, conversations=True, attachments=attachments
    )
    if message.conversation is None:
        return message
    return open_field(message.conversation, secret_key)


@dataclass
class Conversation:
    """What one side remembers about one conversation, on its own device only."""

    own_role: int
    peer_key: bytes
    conversation_id: bytes
    next_seq: int = 1  # the seq of this side's next message
    # The peer's seqs read so far, each with the reference (a message id) it was read
    # under, so that reading the same stored message again is not taken for a replay.
    seen: dict[int, str] = field(default_factory=dict)

    @property
    def highest_seen(self) -> int:
        return max(self.seen, default=0)

    @property
    def highest_sent(self) -> int:
        return self.next_seq - 1

    def accept(self, message: ConversationMessage, reference: str = "") -> Reading:
        """Steps 6 to 10 of section 5.9; on success the message is remembered."""
        if message.role == self.own_role:
            raise ReflectionError(
                "this message carries your own role: one of your messages sent back to you"
            )
        if message.writer_key != self.peer_key or message.conversation_id != self.conversation_id:
            raise WrongConversationError("this message belongs to another conversation")
        return self._accept_seq(message, reference)

    def _accept_seq(self, message: ConversationMessage, reference: str) -> Reading:
        if message.seq == 0:
            raise PayloadError("seq 0 is not a valid sequence number")
        if message.seq in self.seen:
            if reference and self.seen[message.seq] == reference:
                return Reading(message, again=True)
            raise ReplayError(f"message #{message.seq} was already read: a replay")
        highest = self.highest_seen
        gap = (highest + 1, message.seq - 1) if message.seq > highest + 1 else None
        self.seen[message.seq] = reference
        return Reading(
            message,
            gap=gap,
            claims_unsent=message.last_seen > self.highest_sent,
            unseen_after=message.last_seen if message.last_seen < self.highest_sent else None,
        )

    def next_header(self) -> tuple[int, int]:
        """(seq, last_seen) for this side's next message; call `sent()` once it is sent."""
        if self.next_seq > MAX_SEQ:
            raise SizeError("this conversation has used every sequence number")
        return self.next_seq, self.highest_seen

    def sent(self) -> None:
        self.next_seq += 1

    def to_dict(self) -> dict:
        return {
            "role": ROLE_NAMES[self.own_role],
            "peer": b64encode(self.peer_key),
            "id": b64encode(self.conversation_id),
            "next_seq": self.next_seq,
            "seen": {str(seq): ref for seq, ref in sorted(self.seen.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Conversation":
        """Read a saved state back; anything malformed is a PayloadError."""
        try:
            conversation = cls(
                own_role=ROLES_BY_NAME[data["role"]],
                peer_key=check_public_key(b64decode(data["peer"])),
                conversation_id=b64decode(data["id"]),
                next_seq=int(data["next_seq"]),
                seen={int(seq): str(ref) for seq, ref in data["seen"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, EncodingError, InvalidKeyError):
            raise PayloadError("saved conversation state is malformed") from None
        if len(conversation.conversation_id) != CONVERSATION_ID_BYTES:
            raise PayloadError("saved conversation state is malformed")
        return conversation


def accept_message(
    book: dict[bytes, Conversation],
    message: ConversationMessage,
    own_role: int,
    reference: str = "",
) -> Reading:
    """Steps 6 to 10 for a reader with every conversation of its key in `book` (by peer
    key). A recipient may meet a new reply key: its first message starts a conversation
    (step 6 has made sure it is the sender's). A sender's reply key talks to the one
    inbox key its reply link names: any other writer is another conversation."""
    if message.role == own_role:
        raise ReflectionError(
            "this message carries your own role: one of your messages sent back to you"
        )
    conversation = book.get(message.writer_key)
    if conversation is None:
        if own_role != ROLE_RECIPIENT:
            raise WrongConversationError("this message is from a key this conversation is not with")
        conversation = Conversation(ROLE_RECIPIENT, message.writer_key, message.conversation_id)
        reading = conversation.accept(message, reference)
        book[message.writer_key] = conversation
        return replace(reading, new_conversation=True)
    return conversation.accept(message, reference)
