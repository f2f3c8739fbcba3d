"""Conversations (crypto/SPEC.md 4.5, 4.6, 5.8, 5.9) against the shared vector files,
and the properties a user relies on: each side reads the other, nobody else can write."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secretlink import crypto
from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope
from secretlink.crypto.conversation import (
    ROLE_RECIPIENT,
    ROLE_SENDER,
    ROLES_BY_NAME,
    Conversation,
    ConversationMessage,
    accept_message,
    conversation_field,
    new_conversation_id,
    open_any,
    seal_conversation,
)
from secretlink.crypto.envelope import Message, seal
from secretlink.crypto.keyfile import ConversationRef, KeyFile, dump_key_file, load_key_file
from secretlink.crypto.keys import keypair_from_secret
from secretlink.crypto.reply_link import build_reply_link, parse_reply_link
from secretlink.crypto.safety_words import format_safety_words, safety_words

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "crypto" / "vectors"


def cases(name: str, check: str | None = None) -> list[dict]:
    found = json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"]
    return [case for case in found if check is None or case["check"] == check]


def ids(found: list[dict]) -> list[str]:
    return [case["desc"] for case in found]


def raises_exactly(name: str):
    """The vector names one class; a subclass of it is another answer (ReplayError is
    a ConversationError, but a replay must not be reported as a forgery)."""
    error_class = getattr(crypto, name)
    assert issubclass(error_class, crypto.SecretlinkCryptoError)

    class Exactly:
        def __enter__(self):
            self.context = pytest.raises(error_class)
            self.info = self.context.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.context.__exit__(*exc)
            assert type(self.info.value) is error_class, repr(self.info.value)
            return handled

    return Exactly()


def book_of(case: dict, own_role: int) -> dict[bytes, Conversation]:
    book = {}
    for item in case["conversations"]:
        peer = b64decode(item["peer"])
        book[peer] = Conversation(
            own_role,
            peer,
            b64decode(item["id"]),
            next_seq=item["next_seq"],
            seen={seq: f"earlier #{seq}" for seq in item["seen"]},
        )
    return book


READ = cases("conversation.json", "read")
WRITE = cases("conversation.json", "write")


@pytest.mark.parametrize("case", READ, ids=ids(READ))
def test_conversation_read_vectors(case):
    own_role = ROLES_BY_NAME[case["reader"]]
    book = book_of(case, own_role)

    def run():
        message = open_any(b64decode(case["envelope"]), b64decode(case["secret_key"]))
        assert isinstance(message, ConversationMessage)
        return accept_message(book, message, own_role, reference="this message")

    if case["expect"] != "ok":
        with raises_exactly(case["expect"]):
            run()
        return
    reading = run()
    message = reading.message
    assert b64encode(message.writer_key) == case["writer_key"]
    assert message.role == case["role"]
    assert b64encode(message.conversation_id) == case["conversation_id"]
    assert (message.seq, message.last_seen, message.text) == (
        case["seq"],
        case["last_seen"],
        case["text"],
    )
    flags = case["flags"]
    assert reading.gap == (tuple(flags["gap"]) if flags["gap"] else None)
    assert reading.claims_unsent == flags["claims_unsent"]
    assert reading.unseen_after == flags["unseen_after"]
    assert reading.new_conversation == flags["new_conversation"]
    # Read once more under the same reference (the inbox listed again): the same
    # message, no replay; under another reference (stored twice): a replay.
    assert accept_message(book, message, own_role, reference="this message").again
    with pytest.raises(crypto.ReplayError):
        accept_message(book, message, own_role, reference="a copy")


@pytest.mark.parametrize("case", WRITE, ids=ids(WRITE))
def test_conversation_write_vectors(case):
    def run():
        return conversation_field(
            case["text"],
            writer=keypair_from_secret(b64decode(case["writer_secret_key"])),
            reader_key=b64decode(case["reader_key"]),
            role=case["role"],
            conversation_id=b64decode(case["conversation_id"]),
            seq=case["seq"],
            last_seen=case["last_seen"],
            nonce=b64decode(case["nonce"]),
        )

    if case["expect"] == "ok":
        assert b64encode(run()) == case["field"]
    else:
        with raises_exactly(case["expect"]):
            run()


SAFETY = cases("safety_words.json")


@pytest.mark.parametrize("case", SAFETY, ids=ids(SAFETY))
def test_safety_word_vectors(case):
    key = b64decode(case["public_key"])
    if case["expect"] == "ok":
        assert format_safety_words(key) == case["words"]
        assert len(safety_words(key)) == 8
    else:
        with raises_exactly(case["expect"]):
            safety_words(key)


LINKS = cases("reply_link.json")


@pytest.mark.parametrize("case", LINKS, ids=ids(LINKS))
def test_reply_link_vectors(case):
    if case["expect"] != "ok":
        with raises_exactly(case["expect"]):
            parse_reply_link(case["link"])
        return
    link = parse_reply_link(case["link"])
    assert link.origin == case["origin"]
    assert b64encode(link.reply_keypair.public_key) == case["reply_public_key"]
    assert b64encode(link.inbox_key) == case["inbox_key"]
    assert b64encode(link.conversation_id) == case["conversation_id"]
    rebuilt = build_reply_link(
        link.origin, link.reply_keypair.secret_key, link.inbox_key, link.conversation_id
    )
    assert (rebuilt == case["link"]) == case["canonical"]
    assert parse_reply_link(rebuilt) == link


def test_conversation_vector_files_match_their_generator():
    result = subprocess.run(
        [sys.executable, str(ROOT / "crypto" / "generate_conversation_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_whole_conversation_both_ways():
    inbox, reply = generate_keypair(), generate_keypair()
    cid = new_conversation_id()
    sender = Conversation(ROLE_SENDER, inbox.public_key, cid)
    recipient_book: dict[bytes, Conversation] = {}

    def send(side: Conversation, writer, reader_key, text):
        seq, last_seen = side.next_header()
        envelope = seal_conversation(
            text,
            writer=writer,
            reader_key=reader_key,
            role=side.own_role,
            conversation_id=cid,
            seq=seq,
            last_seen=last_seen,
        )
        side.sent()
        return envelope

    opener = send(sender, reply, inbox.public_key, "hello, can you answer?")
    first = accept_message(recipient_book, open_any(opener, inbox.secret_key), ROLE_RECIPIENT, "m1")
    assert first.new_conversation and first.message.text == "hello, can you answer?"
    recipient = recipient_book[reply.public_key]
    for number, text in enumerate(["yes", "and again"], start=1):
        answer = send(recipient, inbox, reply.public_key, text)
        reading = accept_message(
            {inbox.public_key: sender}, open_any(answer, reply.secret_key), ROLE_SENDER, text
        )
        assert (reading.message.text, reading.message.seq, reading.message.last_seen) == (
            text,
            number,
            1,
        )
        assert reading.gap is None and not reading.claims_unsent
    again = send(sender, reply, inbox.public_key, "thanks")
    reading = accept_message(recipient_book, open_any(again, inbox.secret_key), ROLE_RECIPIENT)
    assert (reading.message.seq, reading.message.last_seen) == (2, 2)
    assert Conversation.from_dict(recipient.to_dict()) == recipient


def test_a_plain_reader_refuses_a_conversation_message_and_plain_messages_still_open():
    inbox, reply = generate_keypair(), generate_keypair()
    envelope = seal_conversation(
        "hi",
        writer=reply,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=new_conversation_id(),
        seq=1,
        last_seen=0,
    )
    with pytest.raises(crypto.PayloadError, match="conversation"):
        open_envelope(envelope, inbox.secret_key)
    assert open_any(seal("plain", inbox.public_key), inbox.secret_key) == Message("plain")


def test_a_server_that_knows_the_reply_key_cannot_forge_an_opener():
    inbox, reply, server = generate_keypair(), generate_keypair(), generate_keypair()
    value = conversation_field(
        "send your answers to me",
        writer=server,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=new_conversation_id(),
        seq=1,
        last_seen=0,
    )
    forged = seal(Message("", reply.public_key + value[32:]), inbox.public_key)
    with raises_exactly("ConversationError"):
        open_any(forged, inbox.secret_key)


def test_two_boxes_of_the_same_header_never_share_a_nonce():
    inbox, reply = generate_keypair(), generate_keypair()
    args = dict(
        writer=reply,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=bytes(16),
        seq=1,
        last_seen=0,
    )
    assert conversation_field("a", **args)[32:56] != conversation_field("a", **args)[32:56]


def test_reply_key_file_round_trip():
    reply = generate_keypair()
    ref = ConversationRef(generate_keypair().public_key, new_conversation_id())
    text = dump_key_file(KeyFile(reply, "https://secretlink.example", ref))
    assert load_key_file(text) == KeyFile(reply, "https://secretlink.example", ref)


def test_saved_state_that_is_damaged_is_refused():
    with pytest.raises(crypto.PayloadError):
        Conversation.from_dict({"role": "sender", "peer": "x"})


def test_the_worked_examples_in_the_spec_are_the_vectors():
    spec = (ROOT / "crypto" / "SPEC.md").read_text(encoding="utf-8")
    opener = next(case for case in WRITE if case["desc"] == "write: the opener")
    assert f"b64(value) = {opener['field']}\n" in spec
    words = next(case for case in SAFETY if case["desc"].startswith("the recipient's inbox key"))
    assert f"words   = {words['words']}\n" in spec
    assert f"digest  = {words['digest']}\n" in spec
    assert f"    {LINKS[0]['link']}\n" in spec


def test_an_unknown_critical_field_says_a_newer_secretlink_is_needed():
    found = json.loads((VECTORS / "envelope.json").read_text(encoding="utf-8"))["cases"]
    case = next(case for case in found if case["desc"] == "unknown critical field 0x7f")
    with pytest.raises(crypto.PayloadError, match="a newer secretlink is needed"):
        open_envelope(b64decode(case["envelope"]), b64decode(case["secret_key"]))
