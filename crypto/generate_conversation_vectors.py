#!/usr/bin/env python3
"""Write the conversation vectors: conversation.json, safety_words.json, reply_link.json.

    python crypto/generate_conversation_vectors.py          # rewrite the files
    python crypto/generate_conversation_vectors.py --check  # exit 1 if they differ from a fresh run

Deterministic, with the fixed keys of crypto/SPEC.md section 11.3. Like
generate_vectors.py, everything is built here byte by byte from libsodium primitives
(PyNaCl's crypto_box, sodium_pad, SHA-256 from hashlib) and the BIP39 list of the
`mnemonic` package, not through secretlink's own conversation code, so the vectors
check the implementations instead of repeating them.
"""

import hashlib
import json
import sys
from pathlib import Path

from mnemonic import Mnemonic
from nacl.bindings import crypto_box, crypto_box_open, crypto_scalarmult_base

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_vectors import (
    RECIPIENT_PK,
    RECIPIENT_SK,
    b64,
    canonical_pad,
    field,
    seal_raw,
    seeded,
    write_or_check,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
SPEC = "secretlink v1, crypto/SPEC.md"

# Section 11.3: the recipient's inbox key is `recipient`; the sender's reply key and the
# keys of the "another ..." cases have labels of their own.
INBOX_SK, INBOX_PK = RECIPIENT_SK, RECIPIENT_PK
REPLY_SK = seeded("reply")
REPLY_PK = crypto_scalarmult_base(REPLY_SK)
OTHER_REPLY_SK = seeded("reply/another")
OTHER_REPLY_PK = crypto_scalarmult_base(OTHER_REPLY_SK)
OTHER_INBOX_SK = seeded("someone-else")
OTHER_INBOX_PK = crypto_scalarmult_base(OTHER_INBOX_SK)
CONVERSATION_ID = seeded("conversation id")[:16]
OTHER_CONVERSATION_ID = seeded("conversation id/another")[:16]
RECIPIENT, SENDER = 0x01, 0x02
LOW_ORDER = bytes(32)
MAX_TEXT = 65536 - 1 - 10 - 97  # section 5.8


def box_nonce(label: str) -> bytes:
    return seeded("box nonce/" + label)[:24]


def inner(role: int, seq: int, last_seen: int, text: bytes, cid: bytes = CONVERSATION_ID) -> bytes:
    return bytes([role]) + cid + seq.to_bytes(4, "big") + last_seen.to_bytes(4, "big") + text


def box_value(
    label: str, plain: bytes, writer_sk: bytes, reader_pk: bytes, writer_pk=None
) -> bytes:
    """writer_pk || nonce || crypto_box(plain); `writer_pk` may be set to a key other than
    the writer's own (forgery and reflection cases)."""
    nonce = box_nonce(label)
    writer_pk = crypto_scalarmult_base(writer_sk) if writer_pk is None else writer_pk
    return writer_pk + nonce + crypto_box(plain, nonce, reader_pk, writer_sk)


def envelope(label: str, value: bytes, reader_pk: bytes, text: bytes = b"", extra=b"") -> bytes:
    payload = field(0x01, text) + field(0x02, value) + extra
    return seal_raw(b"\x01" + canonical_pad(payload), reader_pk, "conversation/" + label)


def state(peer: bytes, next_seq: int, seen: list[int], cid: bytes = CONVERSATION_ID) -> dict:
    return {"peer": b64(peer), "id": b64(cid), "next_seq": next_seq, "seen": seen}


# What each reader knows before the case, as section 5.9 describes it.
SENDER_FRESH = [state(INBOX_PK, 2, [])]  # the opener (seq 1) sent, nothing read yet
SENDER_AFTER_ONE = [state(INBOX_PK, 3, [1])]  # sent 1 and 2, read the recipient's 1
RECIPIENT_AFTER_OPENER = [state(REPLY_PK, 2, [1])]  # read the opener, answered once


def case(desc, reader, envelope_bytes, expect, conversations, **answer) -> dict:
    reader_sk = INBOX_SK if reader == "recipient" else REPLY_SK
    result = {
        "desc": desc,
        "check": "read",
        "reader": reader,
        "secret_key": b64(reader_sk),
        "conversations": conversations,
        "envelope": b64(envelope_bytes),
        "expect": expect,
    }
    return result | answer


def ok(desc, reader, label, role, seq, last_seen, text, conversations, flags=None, **kw) -> dict:
    """A valid message: written by the other side, sealed to the reader."""
    if reader == "recipient":
        writer_sk, reader_pk, writer_pk = REPLY_SK, INBOX_PK, REPLY_PK
    else:
        writer_sk, reader_pk, writer_pk = INBOX_SK, REPLY_PK, INBOX_PK
    cid = kw.pop("cid", CONVERSATION_ID)
    value = box_value(label, inner(role, seq, last_seen, text.encode(), cid), writer_sk, reader_pk)
    # Confirm with libsodium that the reader opens the box.
    reader_sk = INBOX_SK if reader == "recipient" else REPLY_SK
    assert crypto_box_open(value[56:], value[32:56], writer_pk, reader_sk)
    return case(
        desc,
        reader,
        envelope(label, value, reader_pk, extra=kw.pop("extra", b"")),
        "ok",
        conversations,
        writer_key=b64(writer_pk),
        role=role,
        conversation_id=b64(cid),
        seq=seq,
        last_seen=last_seen,
        text=text,
        flags={
            "gap": None,
            "claims_unsent": False,
            "unseen_after": None,
            "new_conversation": False,
        }
        | (flags or {}),
    )


def read_cases() -> list[dict]:
    cases = [
        ok(
            "the opener: a new conversation for the recipient",
            "recipient",
            "opener",
            SENDER,
            1,
            0,
            "Can we talk? Reply here.",
            [],
            {"new_conversation": True},
        ),
        ok(
            "the recipient's first reply, read by the sender",
            "sender",
            "reply 1",
            RECIPIENT,
            1,
            1,
            "Yes. What happened?",
            SENDER_FRESH,
        ),
        ok(
            "the sender's second message",
            "recipient",
            "sender 2",
            SENDER,
            2,
            1,
            "It started last week. \u00e9\u00e8 \u05e9\u05dc\u05d5\u05dd \U0001f510",
            RECIPIENT_AFTER_OPENER,
        ),
        ok(
            "the recipient's second reply",
            "sender",
            "reply 2",
            RECIPIENT,
            2,
            2,
            "\ufeffThanks: a leading U+FEFF stays",
            SENDER_AFTER_ONE,
        ),
        ok(
            "an empty text",
            "sender",
            "empty",
            RECIPIENT,
            2,
            2,
            "",
            SENDER_AFTER_ONE,
        ),
        ok(
            "gap: seq 4 after 1 and 2 is shown, 3 is missing",
            "recipient",
            "gap",
            SENDER,
            4,
            1,
            "four",
            [state(REPLY_PK, 2, [1, 2])],
            {"gap": [3, 3]},
        ),
        ok(
            "a late message fills a gap without a flag",
            "recipient",
            "late",
            SENDER,
            2,
            1,
            "two, late",
            [state(REPLY_PK, 2, [1, 3])],
        ),
        ok(
            "an opener read after its later messages were lost: new, with a gap",
            "recipient",
            "opener gap",
            SENDER,
            3,
            0,
            "third",
            [],
            {"new_conversation": True, "gap": [1, 2]},
        ),
        ok(
            "the other side has not seen this side's messages after #1",
            "sender",
            "unseen",
            RECIPIENT,
            2,
            1,
            "still there?",
            [state(INBOX_PK, 4, [1])],
            {"unseen_after": 1},
        ),
        ok(
            "the other side claims a message this device never sent",
            "sender",
            "claims",
            RECIPIENT,
            2,
            5,
            "from another device",
            [state(INBOX_PK, 3, [1])],
            {"claims_unsent": True},
        ),
        ok(
            "an unknown optional field after the conversation field is ignored",
            "sender",
            "optional",
            RECIPIENT,
            2,
            2,
            "ok",
            SENDER_AFTER_ONE,
            extra=field(0x80, b"ignore me"),
        ),
        ok(
            f"the largest text ({MAX_TEXT} bytes) fills the 65536 bucket",
            "recipient",
            "largest",
            SENDER,
            2,
            1,
            "x" * MAX_TEXT,
            RECIPIENT_AFTER_OPENER,
        ),
        ok(
            "the highest seq and last_seen (2^32 - 1)",
            "recipient",
            "highest",
            SENDER,
            2**32 - 1,
            2**32 - 1,
            "last",
            RECIPIENT_AFTER_OPENER,
            {"gap": [2, 2**32 - 2], "claims_unsent": True},
        ),
    ]
    return cases + invalid_read_cases()


def bad(desc, reader, expect, value, conversations, text=b"", extra=b"") -> dict:
    reader_pk = INBOX_PK if reader == "recipient" else REPLY_PK
    return case(desc, reader, envelope(desc, value, reader_pk, text, extra), expect, conversations)


def from_sender(label, role=SENDER, seq=2, last_seen=1, text=b"hi", cid=CONVERSATION_ID, **kw):
    return box_value(label, inner(role, seq, last_seen, text, cid), REPLY_SK, INBOX_PK, **kw)


def from_recipient(label, role=RECIPIENT, seq=2, last_seen=2, text=b"hi", cid=CONVERSATION_ID):
    return box_value(label, inner(role, seq, last_seen, text, cid), INBOX_SK, REPLY_PK)


def flip(value: bytes, index: int) -> bytes:
    return value[:index] + bytes([value[index] ^ 1]) + value[index + 1 :]


def invalid_read_cases() -> list[dict]:
    after = RECIPIENT_AFTER_OPENER
    good = from_sender("base")
    # A box the recipient wrote for the reply key, turned around: its key agreement is
    # symmetric, so with the reply key in the writer slot it opens for the recipient.
    reflected = box_value("reflected", inner(RECIPIENT, 2, 1, b"hi"), INBOX_SK, REPLY_PK)
    reflected_to_recipient = REPLY_PK + reflected[32:]
    reflected_to_sender = box_value("reflected s", inner(SENDER, 3, 1, b"hi"), REPLY_SK, INBOX_PK)
    reflected_to_sender = INBOX_PK + reflected_to_sender[32:]
    # Someone who knows only the reply public key (the server) boxes with a key of its own.
    forger_sk = seeded("forger")
    forged = box_value("forged", inner(SENDER, 1, 0, b"trust me"), forger_sk, INBOX_PK, REPLY_PK)
    return [
        bad("truncated field (96 bytes)", "recipient", "PayloadError", good[:96], after),
        bad("text beside the field is not empty", "recipient", "PayloadError", good, after, b"x"),
        bad(
            "low-order writer key (an all-zero reply key)",
            "recipient",
            "InvalidKeyError",
            LOW_ORDER + good[32:],
            after,
        ),
        bad(
            "writer key with the top bit set",
            "recipient",
            "InvalidKeyError",
            good[:31] + bytes([good[31] | 0x80]) + good[32:],
            after,
        ),
        bad("flipped bit in the box", "recipient", "ConversationError", flip(good, 90), after),
        bad(
            "flipped bit in the Poly1305 tag",
            "recipient",
            "ConversationError",
            flip(good, 60),
            after,
        ),
        bad("flipped bit in the nonce", "recipient", "ConversationError", flip(good, 40), after),
        bad(
            "forged opener: boxed without the reply secret key",
            "recipient",
            "ConversationError",
            forged,
            [],
        ),
        bad(
            "another valid writer key in the writer slot",
            "recipient",
            "ConversationError",
            OTHER_REPLY_PK + good[32:],
            after,
        ),
        bad(
            "non-UTF-8 text", "recipient", "PayloadError", from_sender("utf8", text=b"\xff"), after
        ),
        bad(
            "encoded surrogate half in the text",
            "recipient",
            "PayloadError",
            from_sender("surrogate", text=b"\xed\xa0\x80"),
            after,
        ),
        bad("role 0x03", "recipient", "PayloadError", from_sender("role 3", role=3), after),
        bad("role 0x00", "recipient", "PayloadError", from_sender("role 0", role=0), after),
        bad(
            "reflection: the recipient's own role",
            "recipient",
            "ReflectionError",
            reflected_to_recipient,
            after,
        ),
        bad(
            "reflection: the sender's own role",
            "sender",
            "ReflectionError",
            reflected_to_sender,
            SENDER_AFTER_ONE,
        ),
        bad(
            "wrong conversation: another id from a known reply key",
            "recipient",
            "WrongConversationError",
            from_sender("other id", cid=OTHER_CONVERSATION_ID),
            after,
        ),
        bad(
            "wrong conversation: another id for the sender",
            "sender",
            "WrongConversationError",
            from_recipient("other id s", cid=OTHER_CONVERSATION_ID),
            SENDER_AFTER_ONE,
        ),
        bad(
            "wrong conversation: another inbox key writes to the reply key",
            "sender",
            "WrongConversationError",
            box_value("other inbox", inner(RECIPIENT, 2, 2, b"hi"), OTHER_INBOX_SK, REPLY_PK),
            SENDER_AFTER_ONE,
        ),
        bad("replay: seq 1 again", "recipient", "ReplayError", from_sender("replay", seq=1), after),
        bad(
            "replay: the sender reads the recipient's seq 1 again",
            "sender",
            "ReplayError",
            from_recipient("replay s", seq=1, last_seen=1),
            SENDER_AFTER_ONE,
        ),
        bad("seq 0", "recipient", "PayloadError", from_sender("seq 0", seq=0), after),
        # Order cases: the first failing step decides the class (section 5.9).
        bad(
            "truncated field and text beside it (step 1 before step 2)",
            "recipient",
            "PayloadError",
            good[:50],
            after,
            b"x",
        ),
        bad(
            "low-order writer key and text beside it (step 2 before step 3)",
            "recipient",
            "PayloadError",
            LOW_ORDER + good[32:],
            after,
            b"x",
        ),
        bad(
            "low-order writer key and a flipped box (step 3 before step 4)",
            "recipient",
            "InvalidKeyError",
            LOW_ORDER + flip(good, 90)[32:],
            after,
        ),
        bad(
            "invalid UTF-8 in a reflected message (step 5 before step 6)",
            "recipient",
            "PayloadError",
            REPLY_PK
            + box_value("utf8 own", inner(RECIPIENT, 2, 1, b"\xff"), INBOX_SK, REPLY_PK)[32:],
            after,
        ),
        bad(
            "reflection with another conversation id (step 6 before step 7)",
            "recipient",
            "ReflectionError",
            REPLY_PK
            + box_value(
                "refl other",
                inner(RECIPIENT, 2, 1, b"hi", OTHER_CONVERSATION_ID),
                INBOX_SK,
                REPLY_PK,
            )[32:],
            after,
        ),
        bad(
            "another conversation id and a seen seq (step 7 before step 8)",
            "recipient",
            "WrongConversationError",
            from_sender("other replay", seq=1, cid=OTHER_CONVERSATION_ID),
            after,
        ),
        bad(
            "an unknown critical field 0x7f beside the conversation field",
            "recipient",
            "PayloadError",
            good,
            after,
            extra=field(0x7F, b"x"),
        ),
    ]


def write_cases() -> list[dict]:
    """Writer direction (section 5.8): with the given nonce, the field value is fixed."""
    rows = [
        ("the opener", REPLY_SK, INBOX_PK, SENDER, 1, 0, "Can we talk? Reply here.", "ok"),
        ("a reply", INBOX_SK, REPLY_PK, RECIPIENT, 1, 1, "Yes. What happened?", "ok"),
        ("an empty text", INBOX_SK, REPLY_PK, RECIPIENT, 2, 1, "", "ok"),
        ("the largest text", REPLY_SK, INBOX_PK, SENDER, 2, 1, "x" * MAX_TEXT, "ok"),
        (
            "one byte over the largest text",
            REPLY_SK,
            INBOX_PK,
            SENDER,
            2,
            1,
            "x" * (MAX_TEXT + 1),
            "SizeError",
        ),
        ("a lone surrogate", REPLY_SK, INBOX_PK, SENDER, 2, 1, "a\ud800", "PayloadError"),
        ("seq 0", REPLY_SK, INBOX_PK, SENDER, 0, 1, "hi", "PayloadError"),
        ("seq 2^32", REPLY_SK, INBOX_PK, SENDER, 2**32, 1, "hi", "PayloadError"),
        ("role 0x03", REPLY_SK, INBOX_PK, 3, 1, 0, "hi", "PayloadError"),
        ("a low-order reader key", REPLY_SK, LOW_ORDER, SENDER, 1, 0, "hi", "InvalidKeyError"),
        (
            "the reader's key is the writer's",
            REPLY_SK,
            REPLY_PK,
            SENDER,
            1,
            0,
            "hi",
            "InvalidKeyError",
        ),
    ]
    cases = []
    for desc, writer_sk, reader_pk, role, seq, last_seen, text, expect in rows:
        entry = {
            "desc": "write: " + desc,
            "check": "write",
            "writer_secret_key": b64(writer_sk),
            "reader_key": b64(reader_pk),
            "role": role,
            "conversation_id": b64(CONVERSATION_ID),
            "seq": seq,
            "last_seen": last_seen,
            "text": text,
            "nonce": b64(box_nonce("write/" + desc)),
            "expect": expect,
        }
        if expect == "ok":
            plain = inner(role, seq, last_seen, text.encode())
            entry["field"] = b64(box_value("write/" + desc, plain, writer_sk, reader_pk))
        cases.append(entry)
    return cases


def conversation_cases() -> list[dict]:
    return read_cases() + write_cases()


WORDS = Mnemonic("english").wordlist


def words_of(public_key: bytes) -> tuple[str, str]:
    digest = hashlib.sha256(b"secretlink/v1/safety-words\x00" + public_key).digest()
    bits = int.from_bytes(digest[:11], "big")
    indexes = [(bits >> (11 * (7 - i))) & 0x7FF for i in range(8)]
    return digest.hex(), " ".join(WORDS[i] for i in indexes)


def safety_word_cases() -> list[dict]:
    keys = [
        ("the recipient's inbox key (section 12.1)", INBOX_PK),
        ("the sender's reply key", REPLY_PK),
        ("another key", OTHER_INBOX_PK),
        ("the key 0x09 (the base point)", bytes([9]) + bytes(31)),
        (
            "the largest canonical key below the low-order p - 1",
            (2**255 - 21).to_bytes(32, "little"),
        ),
    ]
    cases = []
    for desc, key in keys:
        digest, words = words_of(key)
        cases.append(
            {"desc": desc, "public_key": b64(key), "expect": "ok", "digest": digest, "words": words}
        )
    refused = [
        ("a low-order key (all zero)", LOW_ORDER),
        ("a key with its top bit set", INBOX_PK[:31] + bytes([INBOX_PK[31] | 0x80])),
        ("a key of 31 bytes", INBOX_PK[:31]),
    ]
    cases += [{"desc": d, "public_key": b64(k), "expect": "InvalidKeyError"} for d, k in refused]
    return cases


def reply_link_cases() -> list[dict]:
    site = "https://secretlink.example"
    secret, inbox, cid = b64(REPLY_SK), b64(INBOX_PK), b64(CONVERSATION_ID)
    fragment = f"{secret}.{inbox}.{cid}"
    link = f"{site}/reply#{fragment}"
    answer = {
        "reply_public_key": b64(REPLY_PK),
        "inbox_key": inbox,
        "conversation_id": cid,
    }
    ok = [
        ("a reply link", link, site, True),
        ("a port", f"http://127.0.0.1:8000/reply#{fragment}", "http://127.0.0.1:8000", True),
        (
            "upper case and the default port",
            f"HTTPS://SecretLink.Example:443/reply#{fragment}",
            site,
            False,
        ),
        ("a query is ignored", f"{site}/reply?from=mail#{fragment}", site, False),
    ]
    cases = [
        {"desc": d, "link": text, "expect": "ok", "origin": origin, "canonical": canonical} | answer
        for d, text, origin, canonical in ok
    ]
    low = b64(LOW_ORDER)
    refused = [
        ("another path", f"{site}/to/{inbox}#{fragment}", "ReplyLinkError"),
        ("a path prefix", f"{site}/x/reply#{fragment}", "ReplyLinkError"),
        ("a trailing slash", f"{site}/reply/#{fragment}", "ReplyLinkError"),
        ("no fragment", f"{site}/reply", "ReplyLinkError"),
        ("two parts", f"{site}/reply#{secret}.{inbox}", "ReplyLinkError"),
        ("four parts", f"{site}/reply#{fragment}.{cid}", "ReplyLinkError"),
        ("padded base64", f"{site}/reply#{secret}=.{inbox}.{cid}", "ReplyLinkError"),
        (
            "standard base64 alphabet",
            f"{site}/reply#{secret}.{inbox}.{cid[:-1]}+",
            "ReplyLinkError",
        ),
        (
            "a 31-byte secret key",
            f"{site}/reply#{b64(REPLY_SK[:31])}.{inbox}.{cid}",
            "ReplyLinkError",
        ),
        (
            "a 33-byte inbox key",
            f"{site}/reply#{secret}.{b64(INBOX_PK + b'x')}.{cid}",
            "ReplyLinkError",
        ),
        (
            "a 15-byte conversation id",
            f"{site}/reply#{secret}.{inbox}.{b64(CONVERSATION_ID[:15])}",
            "ReplyLinkError",
        ),
        (
            "the inbox key is the reply key",
            f"{site}/reply#{secret}.{b64(REPLY_PK)}.{cid}",
            "ReplyLinkError",
        ),
        ("a low-order inbox key", f"{site}/reply#{secret}.{low}.{cid}", "InvalidKeyError"),
        ("another scheme", f"ftp://secretlink.example/reply#{fragment}", "InvalidOriginError"),
        (
            "user information",
            f"https://me@secretlink.example/reply#{fragment}",
            "InvalidOriginError",
        ),
    ]
    cases += [{"desc": d, "link": text, "expect": e} for d, text, e in refused]
    return cases


FILES = {
    "conversation.json": (
        "Conversations (sections 5.8, 5.9). `check: read`: open `envelope` with `secret_key` "
        "as `reader` (recipient or sender) that knows `conversations` (peer key, id, its "
        "own next seq, the peer's seqs it has seen); `ok` gives the message and its `flags`. "
        "`check: write`: the conversation field for these inputs and `nonce` is `field`.",
        conversation_cases,
    ),
    "safety_words.json": (
        "Safety words (section 4.5): `words` for `public_key`, `digest` the SHA-256 (hex).",
        safety_word_cases,
    ),
    "reply_link.json": (
        "Reply links (section 4.6): `ok` gives `origin`, the reply key pair's public key, "
        "the inbox key and the conversation id; `canonical` links are what a writer builds.",
        reply_link_cases,
    ),
}


def render(name: str) -> str:
    about, build = FILES[name]
    document = {"spec": SPEC, "about": about, "cases": build()}
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    return text.replace("\ud800", "\\ud800")


def main() -> int:
    return write_or_check(__doc__, FILES, render)


if __name__ == "__main__":
    sys.exit(main())
