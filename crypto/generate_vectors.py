#!/usr/bin/env python3
"""Write the known-answer vectors in crypto/vectors/ (deterministic: same output every run).

    python crypto/generate_vectors.py          # rewrite the files
    python crypto/generate_vectors.py --check  # exit 1 if the files differ from a fresh run

Envelopes are built here byte by byte from libsodium primitives (PyNaCl), not through
secretlink's own seal(), so the vectors check the implementations rather than
repeat them. Every valid envelope is confirmed with libsodium's crypto_box_seal_open.
"""

import argparse
import base64
import json
import re
import sys
from pathlib import Path

from nacl.bindings import (
    crypto_box,
    crypto_box_seal_open,
    crypto_generichash_blake2b_salt_personal,
    crypto_scalarmult_base,
    sodium_pad,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from secretlink.crypto import proof  # noqa: E402  (for the MAC answers only)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def blake2b(data: bytes, size: int = 32, key: bytes = b"") -> bytes:
    return crypto_generichash_blake2b_salt_personal(data, digest_size=size, key=key)


def seeded(label: str) -> bytes:
    """32 fixed bytes per label, so every run writes the same vectors."""
    return blake2b(b"secretlink/v1/test-vectors/" + label.encode())


def field(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + len(value).to_bytes(4, "big") + value


def text_payload(text: str) -> bytes:
    return field(0x01, text.encode())


def canonical_pad(payload: bytes) -> bytes:
    bucket = next(b for b in (256 << i for i in range(9)) if len(payload) < b)
    return sodium_pad(payload, bucket)


def seal_raw(inner: bytes, recipient_pk: bytes, label: str, outer_version: int = 1) -> bytes:
    """crypto_box_seal with a fixed ephemeral key, prefixed with the outer version byte."""
    esk = seeded("ephemeral/" + label)
    epk = crypto_scalarmult_base(esk)
    nonce = blake2b(epk + recipient_pk, size=24)
    return bytes([outer_version]) + epk + crypto_box(inner, nonce, recipient_pk, esk)


RECIPIENT_SK = seeded("recipient")
RECIPIENT_PK = crypto_scalarmult_base(RECIPIENT_SK)
OTHER_SK = seeded("someone-else")


def valid(desc: str, text: str, payload: bytes | None = None) -> dict:
    payload = text_payload(text) if payload is None else payload
    inner = b"\x01" + canonical_pad(payload)
    envelope = seal_raw(inner, RECIPIENT_PK, desc)
    assert crypto_box_seal_open(envelope[1:], RECIPIENT_PK, RECIPIENT_SK) == inner
    return {
        "desc": desc,
        "secret_key": b64(RECIPIENT_SK),
        "envelope": b64(envelope),
        "expect": "ok",
        "text": text,
    }


def invalid(desc: str, expect: str, envelope: bytes, secret_key: bytes = RECIPIENT_SK) -> dict:
    return {
        "desc": desc,
        "secret_key": b64(secret_key),
        "envelope": b64(envelope),
        "expect": expect,
    }


def sealed_inner(desc: str, inner: bytes) -> bytes:
    return seal_raw(inner, RECIPIENT_PK, desc)


def envelope_cases() -> list[dict]:
    good = seal_raw(b"\x01" + canonical_pad(text_payload("hello")), RECIPIENT_PK, "base")
    flip = lambda data, index: data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]  # noqa: E731
    low_order = bytes(32)
    cases = [
        valid("short ASCII text", "hello"),
        valid("empty text", ""),
        valid(
            "multi-byte UTF-8, emoji and right-to-left text", "grüße ✉️ 🔐 \u05e9\u05dc\u05d5\u05dd"
        ),
        valid("text with NUL and control characters", "a\x00b\x01\n\tc"),
        valid("payload of 255 bytes fills the 256-byte bucket exactly", "x" * 250),
        valid("payload of 256 bytes moves to the 512-byte bucket", "x" * 251),
        valid("largest text v1 allows (65530 bytes, 65536-byte bucket)", "m" * 65530),
        valid(
            "unknown optional field (tag 0x80) after the text is ignored",
            "with an extra field",
            text_payload("with an extra field") + field(0x80, b"later feature"),
        ),
        # Texts a reader must return exactly as sent: no character dropped, replaced or
        # normalized (a decoder that strips a leading byte-order mark fails the first).
        valid("text starting with a byte-order mark (U+FEFF is kept)", "\ufeffhello"),
        valid("text that is one byte-order mark", "\ufeff"),
        valid("two byte-order marks, then text", "\ufeff\ufeffx"),
        valid("text that is one NUL", "\x00"),
        valid("NUL inside and at both ends", "\x00a\x00b\x00"),
        valid("lone combining mark, not normalized", "\u0301"),
        valid("decomposed and composed e-acute stay as sent", "e\u0301 \u00e9"),
        valid("line and paragraph separators, CR LF", "a\u2028b\u2029c\r\nd\re"),
        valid(
            "noncharacters, U+FFFD and the largest scalar value",
            "\ufffe\uffff\ufffd\U0010ffff\U0001fffe",
        ),
        valid("bidirectional controls", "\u202eabc\u202c\u2066d\u2069\u200f"),
        valid(
            "largest text v1 allows in 4-byte characters (16382 of them and 2 ASCII)",
            "\U0001f510" * 16382 + "ab",
        ),
        {
            "desc": "base64url with padding is not canonical",
            "secret_key": b64(RECIPIENT_SK),
            "envelope": b64(good) + "==",
            "expect": "EncodingError",
        },
        {
            "desc": "standard base64 alphabet (+ /) is refused",
            "secret_key": b64(RECIPIENT_SK),
            "envelope": b64(good).replace("-", "+").replace("_", "/") + "+/",
            "expect": "EncodingError",
        },
        invalid("empty envelope", "SizeError", b""),
        # The order of section 5.7: one case for each pair of neighbouring checks that
        # an input can break together, so that doing them in another order is caught.
        {
            "desc": "padded base64url and a 31-byte secret key (step 0 before step 1)",
            "secret_key": b64(RECIPIENT_SK[:31]),
            "envelope": b64(good) + "==",
            "expect": "EncodingError",
        },
        invalid("secret key of 31 bytes", "DecryptError", good, secret_key=RECIPIENT_SK[:31]),
        invalid("secret key of 33 bytes", "DecryptError", good, secret_key=RECIPIENT_SK + b"\x00"),
        invalid(
            "secret key of 31 bytes and an empty envelope (step 1 before step 2)",
            "DecryptError",
            b"",
            secret_key=RECIPIENT_SK[:31],
        ),
        invalid(
            "secret key of 31 bytes and outer version 2 (step 1 before step 3)",
            "DecryptError",
            b"\x02" + good[1:],
            secret_key=RECIPIENT_SK[:31],
        ),
        invalid(
            "outer version 2 and a wrong length (step 3 before step 4)",
            "VersionError",
            b"\x02" + good[1:-1],
        ),
        invalid("outer version 2 and nothing else (step 3 before step 4)", "VersionError", b"\x02"),
        invalid(
            "wrong length and a low-order ephemeral key (step 4 before step 5)",
            "SizeError",
            (good[:1] + low_order + good[33:])[:-1],
        ),
        invalid(
            "low-order ephemeral key and another secret key (step 5 before step 6)",
            "InvalidKeyError",
            good[:1] + low_order + good[33:],
            secret_key=OTHER_SK,
        ),
        invalid(
            "sealed version 2 and padding without marker (step 7 before step 8)",
            "VersionError",
            sealed_inner("inner version no marker", b"\x02" + text_payload("hi").ljust(256, b"\0")),
        ),
        invalid(
            "padded to a larger bucket and an unknown critical field (step 8 before step 9)",
            "PaddingError",
            sealed_inner(
                "big bucket critical",
                b"\x01" + sodium_pad(text_payload("hi") + field(0x7F, b"x"), 512),
            ),
        ),
        invalid("unknown outer version 2", "VersionError", b"\x02" + good[1:]),
        invalid("outer version 0", "VersionError", b"\x00" + good[1:]),
        invalid(
            "sealed version 2 inside an outer version 1",
            "VersionError",
            sealed_inner("inner version", b"\x02" + canonical_pad(text_payload("hi"))),
        ),
        invalid("truncated by one byte", "SizeError", good[:-1]),
        invalid("one extra byte", "SizeError", good + b"\x00"),
        invalid("only the version and ephemeral key", "SizeError", good[:33]),
        invalid("ciphertext byte flipped", "DecryptError", flip(good, len(good) - 1)),
        invalid("Poly1305 tag byte flipped", "DecryptError", flip(good, 33)),
        invalid("ephemeral public key bit flipped", "DecryptError", flip(good, 5)),
        invalid("sealed to another key", "DecryptError", good, secret_key=OTHER_SK),
        invalid(
            "all-zero (low-order) ephemeral key",
            "InvalidKeyError",
            good[:1] + low_order + good[33:],
        ),
        invalid(
            "ephemeral key with the top bit set (non-canonical)",
            "InvalidKeyError",
            good[:32] + bytes([good[32] | 0x80]) + good[33:],
        ),
        invalid(
            "padding without the 0x80 marker",
            "PaddingError",
            sealed_inner("no marker", b"\x01" + text_payload("hi").ljust(256, b"\x00")),
        ),
        invalid(
            "non-zero byte after the padding marker",
            "PaddingError",
            sealed_inner(
                "dirty pad", b"\x01" + (text_payload("hi") + b"\x80\x01").ljust(256, b"\x00")
            ),
        ),
        invalid(
            "padded to a larger bucket than needed",
            "PaddingError",
            sealed_inner("big bucket", b"\x01" + sodium_pad(text_payload("hi"), 512)),
        ),
        invalid(
            "unknown critical field 0x7f",
            "PayloadError",
            sealed_inner(
                "critical", b"\x01" + canonical_pad(text_payload("hi") + field(0x7F, b"x"))
            ),
        ),
        invalid(
            "text is not valid UTF-8",
            "PayloadError",
            sealed_inner("utf8", b"\x01" + canonical_pad(field(0x01, b"\xff\xfe"))),
        ),
        invalid(
            "UTF-8 encoded surrogate half",
            "PayloadError",
            sealed_inner("surrogate", b"\x01" + canonical_pad(field(0x01, b"\xed\xa0\x80"))),
        ),
        invalid(
            "field length runs past the payload",
            "PayloadError",
            sealed_inner("overrun", b"\x01" + canonical_pad(b"\x01\x00\x00\x00\x09abc")),
        ),
        invalid(
            "text field twice (tags not increasing)",
            "PayloadError",
            sealed_inner("twice", b"\x01" + canonical_pad(text_payload("a") + text_payload("b"))),
        ),
        invalid(
            "no text field, only an optional one",
            "PayloadError",
            sealed_inner("no text", b"\x01" + canonical_pad(field(0x81, b"x"))),
        ),
        invalid(
            "truncated field header",
            "PayloadError",
            sealed_inner("short header", b"\x01" + canonical_pad(text_payload("a") + b"\x81\x00")),
        ),
        invalid(
            "reserved tag 0x00",
            "PayloadError",
            sealed_inner("tag zero", b"\x01" + canonical_pad(field(0x00, b"") + text_payload("a"))),
        ),
    ]
    return cases


def seal_cases() -> list[dict]:
    """Writer direction (section 5.6): what seal() must make of a text, or refuse."""
    pk = b64(RECIPIENT_PK)

    def case(desc: str, text: str, expect: str, public_key: str = pk) -> dict:
        out = {"desc": desc, "public_key": public_key, "text": text, "expect": expect}
        if expect == "ok":
            size = len(text_payload(text))
            bucket = next(b for b in (256 << i for i in range(9)) if size < b)
            out |= {"secret_key": b64(RECIPIENT_SK), "envelope_length": 50 + bucket}
        return out

    emoji = "\U0001f510"  # 4 bytes in UTF-8, 2 units in UTF-16
    return [
        case("short ASCII text", "hello", "ok"),
        case("empty text", "", "ok"),
        case("text starting with a byte-order mark", "\ufeffhello", "ok"),
        case("NUL, controls, U+2028 and a lone combining mark", "\x00\x1b[2J\u2028\u0301", "ok"),
        case("250 bytes of text: 256-byte bucket", "x" * 250, "ok"),
        case("251 bytes of text: 512-byte bucket", "x" * 251, "ok"),
        case("65530 bytes of text: the largest", "m" * 65530, "ok"),
        case("65530 bytes in 4-byte characters", emoji * 16382 + "ab", "ok"),
        case("65531 bytes of text: one too many", "m" * 65531, "SizeError"),
        # 32766 characters, 65532 bytes: a writer that counts characters lets it pass.
        case("65532 bytes in 2-byte characters", "\u00e9" * 32766, "SizeError"),
        # 32766 UTF-16 units, 65532 bytes: one that counts UTF-16 units lets it pass.
        case("65532 bytes in 4-byte characters", emoji * 16383, "SizeError"),
        case("lone high surrogate", "bad \ud800 text", "PayloadError"),
        case("lone low surrogate at the end", "bad text \udfff", "PayloadError"),
        case("surrogates in the wrong order", "\udc00\ud800", "PayloadError"),
        # The order of section 5.6: key, then encoding, then size.
        case(
            "lone surrogate in a text over the limit (step 2 before step 3)",
            "\ud800" + "m" * 65531,
            "PayloadError",
        ),
        case("low-order public key", "hello", "InvalidKeyError", b64(bytes(32))),
        case(
            "low-order public key and a lone surrogate (step 1 before step 2)",
            "\ud800",
            "InvalidKeyError",
            b64(bytes(32)),
        ),
        case(
            "public key with the top bit set",
            "hello",
            "InvalidKeyError",
            b64(RECIPIENT_PK[:31] + bytes([RECIPIENT_PK[31] | 0x80])),
        ),
    ]


def public_key_cases() -> list[dict]:
    p = 2**255 - 19
    le = lambda n: n.to_bytes(32, "little")  # noqa: E731
    low_order_points = {
        "zero (order 2)": le(0),
        "one (order 4)": le(1),
        "order 8 point (e0eb7a7c...)": bytes.fromhex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
        ),
        "order 8 point (5f9c95bc...)": bytes.fromhex(
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
        ),
        "p - 1 (order 4, on the twist)": le(p - 1),
    }
    cases = [{"desc": "a normal public key", "text": b64(RECIPIENT_PK), "expect": "ok"}]
    for name, point in low_order_points.items():
        cases.append(
            {"desc": f"low-order point: {name}", "text": b64(point), "expect": "InvalidKeyError"}
        )
    cases += [
        {
            "desc": "p (non-canonical encoding of 0)",
            "text": b64(le(p)),
            "expect": "InvalidKeyError",
        },
        {
            "desc": "p + 1 (non-canonical encoding of 1)",
            "text": b64(le(p + 1)),
            "expect": "InvalidKeyError",
        },
        {
            "desc": "top bit set on a valid key",
            "text": b64(RECIPIENT_PK[:31] + bytes([RECIPIENT_PK[31] | 0x80])),
            "expect": "InvalidKeyError",
        },
        {"desc": "31 bytes", "text": b64(RECIPIENT_PK[:31]), "expect": "InvalidKeyError"},
        {"desc": "33 bytes", "text": b64(RECIPIENT_PK + b"\x00"), "expect": "InvalidKeyError"},
        {
            "desc": "with base64 padding",
            "text": b64(RECIPIENT_PK) + "=",
            "expect": "InvalidKeyError",
        },
        {
            "desc": "standard alphabet character",
            "text": "+" + b64(RECIPIENT_PK)[1:],
            "expect": "InvalidKeyError",
        },
        # 43 characters carry 258 bits: the last character's two low bits are unused.
        {
            "desc": "non-zero unused bits in the last character",
            "text": b64(RECIPIENT_PK)[:-1] + "B",
            "expect": "InvalidKeyError",
        },
        {"desc": "empty", "text": "", "expect": "InvalidKeyError"},
    ]
    return cases


def base64_cases() -> list[dict]:
    rows = [
        ("empty", "", "ok", b""),
        ("one byte", "_w", "ok", b"\xff"),
        ("two bytes", "-_8", "ok", b"\xfb\xff"),
        ("three bytes", "AAEC", "ok", b"\x00\x01\x02"),
        ("padding is refused", "_w==", "EncodingError", None),
        ("standard alphabet + is refused", "+w", "EncodingError", None),
        ("standard alphabet / is refused", "/w", "EncodingError", None),
        ("white space is refused", "AA EC", "EncodingError", None),
        ("trailing newline is refused", "AAEC\n", "EncodingError", None),
        ("impossible length (5 characters)", "AAECA", "EncodingError", None),
        ("non-zero unused bits (_x for 0xff)", "_x", "EncodingError", None),
        ("non-zero unused bits (-_9)", "-_9", "EncodingError", None),
        ("non-ASCII character", "AAE\u00e9", "EncodingError", None),
    ]
    return [
        {"desc": d, "text": t, "expect": e, **({"bytes": b.hex()} if b is not None else {})}
        for d, t, e, b in rows
    ]


def key_file_cases() -> list[dict]:
    sk, pk = b64(RECIPIENT_SK), b64(RECIPIENT_PK)
    other_pk = b64(crypto_scalarmult_base(OTHER_SK))
    doc = lambda **fields: json.dumps(  # noqa: E731
        {"format": "secretlink-key", "version": 1, "public_key": pk, "secret_key": sk} | fields
    )
    return [
        {
            "desc": "minimal key file",
            "text": doc(),
            "expect": "ok",
            "public_key": pk,
            "server": None,
        },
        {
            "desc": "with server",
            "text": doc(server="https://secretlink.example"),
            "expect": "ok",
            "public_key": pk,
            "server": "https://secretlink.example",
        },
        {
            "desc": "unknown members are ignored",
            "text": doc(comment="mine"),
            "expect": "ok",
            "public_key": pk,
            "server": None,
        },
        {
            "desc": "public key of another secret key",
            "text": doc(public_key=other_pk),
            "expect": "KeyFileError",
        },
        {"desc": "wrong format name", "text": doc(format="age"), "expect": "KeyFileError"},
        {"desc": "version 2", "text": doc(version=2), "expect": "KeyFileError"},
        {"desc": "version as a string", "text": doc(version="1"), "expect": "KeyFileError"},
        {"desc": "version as a boolean", "text": doc(version=True), "expect": "KeyFileError"},
        {
            "desc": "secret key of 31 bytes",
            "text": doc(secret_key=b64(RECIPIENT_SK[:31])),
            "expect": "KeyFileError",
        },
        {
            "desc": "secret key in padded base64",
            "text": doc(secret_key=sk + "="),
            "expect": "KeyFileError",
        },
        {
            "desc": "missing secret key",
            "text": json.dumps({"format": "secretlink-key", "version": 1, "public_key": pk}),
            "expect": "KeyFileError",
        },
        {"desc": "server is not a string", "text": doc(server=5), "expect": "KeyFileError"},
        {"desc": "not JSON", "text": "-----BEGIN PRIVATE KEY-----", "expect": "KeyFileError"},
        {"desc": "a JSON array", "text": "[]", "expect": "KeyFileError"},
        *strict_json_key_file_cases(doc, pk),
        *server_key_file_cases(doc, pk),
        *size_key_file_cases(doc, pk),
        *conversation_key_file_cases(doc, pk),
    ]


def conversation_key_file_cases(doc, pk: str) -> list[dict]:
    """Section 6, rules 10 to 12: a reply key file's `conversation` member. A reader
    that does not know conversations ignores the member (`older_reader`)."""
    inbox = b64(crypto_scalarmult_base(OTHER_SK))
    cid = b64(seeded("conversation id")[:16])
    site = "https://secretlink.example"
    ok = {"with": inbox, "id": cid}
    cases = [
        {
            "desc": "conversation: a reply key file",
            "text": doc(server=site, conversation=ok),
            "expect": "ok",
            "public_key": pk,
            "server": site,
            "conversation": ok,
        },
        {
            "desc": "conversation: without a server",
            "text": doc(conversation=ok),
            "expect": "ok",
            "public_key": pk,
            "server": None,
            "conversation": ok,
        },
    ]
    refused = [
        ("null", None),
        ("a string", cid),
        ("an empty object", {}),
        ("no id", {"with": inbox}),
        ("no with", {"id": cid}),
        ("a third member", ok | {"name": "x"}),
        ("with is not a key text", {"with": inbox[:42], "id": cid}),
        ("with is a low-order key", {"with": "A" * 43, "id": cid}),
        ("with is the file's own key", {"with": pk, "id": cid}),
        ("id of 15 bytes", {"with": inbox, "id": b64(seeded("conversation id")[:15])}),
        ("id in padded base64", {"with": inbox, "id": cid + "=="}),
        ("id is a number", {"with": inbox, "id": 16}),
    ]
    cases += [
        {
            "desc": f"conversation: {desc}",
            "text": doc(server=site, conversation=member),
            "expect": "KeyFileError",
            # What a reader without conversations returns: the key and server alone.
            "older_reader": "ok",
            "public_key": pk,
            "server": site,
        }
        for desc, member in refused
    ]
    return cases


def strict_json_key_file_cases(doc, pk: str) -> list[dict]:
    """Section 6, rule 2: what counts as JSON (RFC 8259 strictly, and one BOM)."""
    ok = {"expect": "ok", "public_key": pk, "server": None}
    return [
        {"desc": "starts with a byte-order mark (skipped)", "text": "\ufeff" + doc()} | ok,
        {"desc": "two byte-order marks", "text": "\ufeff\ufeff" + doc(), "expect": "KeyFileError"},
        {
            "desc": "version written 1.0 (the number 1)",
            "text": doc().replace('"version": 1,', '"version": 1.0,'),
        }
        | ok,
        {
            "desc": "version written 1e0 (the number 1)",
            "text": doc().replace('"version": 1,', '"version": 1e0,'),
        }
        | ok,
        {"desc": "version 1.5", "text": doc(version=1.5), "expect": "KeyFileError"},
        {
            "desc": "NaN in an unknown member (not JSON)",
            "text": doc().replace("{", '{"comment": NaN, ', 1),
            "expect": "KeyFileError",
        },
        {
            "desc": "Infinity as the version (not JSON)",
            "text": doc().replace('"version": 1,', '"version": Infinity,'),
            "expect": "KeyFileError",
        },
        {
            "desc": "public_key twice with the same value",
            "text": doc().replace("{", f'{{"public_key": "{pk}", ', 1),
            "expect": "KeyFileError",
        },
        {
            "desc": "server twice",
            "text": doc(server="https://secretlink.example").replace(
                "{", '{"server": "https://evil.example", ', 1
            ),
            "expect": "KeyFileError",
        },
        {
            "desc": "a name repeated with an escape (public\\u005fkey)",
            "text": doc().replace("{", f'{{"public\\u005fkey": "{pk}", ', 1),
            "expect": "KeyFileError",
        },
        {
            "desc": "a name repeated inside an unknown member's object",
            "text": doc().replace("{", '{"extra": {"a": 1, "a": 2}, ', 1),
            "expect": "KeyFileError",
        },
        {
            "desc": "equal names in different objects are fine",
            "text": doc().replace("{", '{"extra": [{"a": 1}, {"a": 2}], "a": 3, ', 1),
        }
        | ok,
        {"desc": "a lone surrogate escape in an unknown member", "text": doc(comment="\ud800")}
        | ok,
        # Section 6: nesting of at most 32 (the file's object is level 1); brackets
        # inside strings do not count.
        {
            "desc": "an unknown member nested 32 deep in all",
            "text": doc().replace("{", '{"deep": ' + "[" * 31 + "]" * 31 + ", ", 1),
        }
        | ok,
        {
            "desc": "brackets inside a string are not nesting",
            "text": doc(comment="[" * 40 + "{" * 40),
        }
        | ok,
        {
            "desc": "an unknown member nested 33 deep in all",
            "text": doc().replace("{", '{"deep": ' + "[" * 32 + "]" * 32 + ", ", 1),
            "expect": "KeyFileError",
        },
        {
            "desc": "an unknown member nested 1,900 deep (fits in 4096 bytes)",
            "text": doc().replace("{", '{"deep": ' + "[" * 1900 + "]" * 1900 + ", ", 1),
            "expect": "KeyFileError",
        },
    ]


def server_key_file_cases(doc, pk: str) -> list[dict]:
    """Section 6, rule 9: `server` is an origin as section 7.5 writes it, or absent."""
    cases = [
        {"desc": "server null means none", "text": doc(server=None), "server": None},
        {"desc": "empty server means none", "text": doc(server=""), "server": None},
    ]
    for origin in ("http://127.0.0.1:8000", "https://[2001:db8::1]", "http://xn--fa-hia.example"):
        cases.append({"desc": f"server {origin}", "text": doc(server=origin), "server": origin})
    cases = [c | {"expect": "ok", "public_key": pk} for c in cases]
    for desc, server in [
        ("with a path", "https://secretlink.example/inbox"),
        ("with a trailing slash", "https://secretlink.example/"),
        ("with a query", "https://secretlink.example?x=1"),
        ("with a fragment", "https://secretlink.example#x"),
        ("with user information", "https://user@secretlink.example"),
        ("with an upper-case host", "https://Secretlink.example"),
        ("with an upper-case scheme", "HTTPS://secretlink.example"),
        ("with the default port", "https://secretlink.example:443"),
        ("with port 0", "http://secretlink.example:0"),
        ("with port 65536", "http://secretlink.example:65536"),
        ("with a non-ASCII host", "https://fa\u00df.example"),
        ("with an underscore in the host", "https://secret_link.example"),
        ("with a trailing dot", "https://secretlink.example."),
        ("with a 64-byte label", "https://" + "a" * 64 + ".example"),
        ("not http or https", "ftp://secretlink.example"),
        ("not a URL", "secretlink.example"),
    ]:
        cases.append(
            {"desc": f"server {desc}", "text": doc(server=server), "expect": "KeyFileError"}
        )
    return cases


def size_key_file_cases(doc, pk: str) -> list[dict]:
    """Section 6, rule 1: at most 4096 bytes of UTF-8, counted before anything else."""

    def padded(total: int, wide: bool = False) -> str:
        """A valid key file of `total` bytes: an unknown member filled with x, or with
        the 2-byte character U+00E9 (then fewer characters than bytes)."""
        base = doc(comment="")
        room = total - len(base.encode())
        filler = "\u00e9" * (room // 2) + "x" * (room % 2) if wide else "x" * room
        text = base.replace('"comment": ""', f'"comment": "{filler}"')
        assert len(text.encode()) == total
        return text

    ok = {"expect": "ok", "public_key": pk, "server": None}
    return [
        {"desc": "exactly 4096 bytes", "text": padded(4096)} | ok,
        {"desc": "4097 bytes", "text": padded(4097), "expect": "KeyFileError"},
        # Fewer than 4096 characters, more than 4096 bytes: the limit counts bytes.
        {
            "desc": "4097 bytes in fewer than 4096 characters",
            "text": padded(4097, wide=True),
            "expect": "KeyFileError",
        },
        {
            "desc": "4096 bytes with a byte-order mark (the mark counts)",
            "text": "\ufeff" + padded(4093),
        }
        | ok,
        {
            "desc": "4097 bytes with a byte-order mark (the mark counts)",
            "text": "\ufeff" + padded(4094),
            "expect": "KeyFileError",
        },
    ]


def auth_cases() -> list[dict]:
    nonce = seeded("auth nonce")
    e = seeded("server ephemeral")
    big_e = crypto_scalarmult_base(e)
    expires_at = 1795000000
    cases = []
    for origin in ("https://secretlink.example", "http://127.0.0.1:8000"):
        mac = proof.prove(RECIPIENT_SK, big_e, nonce, expires_at, origin)
        transcript = proof.transcript(RECIPIENT_PK, big_e, nonce, expires_at, origin)
        cases.append(
            {
                "desc": f"proof for {origin}",
                "secret_key": b64(RECIPIENT_SK),
                "public_key": b64(RECIPIENT_PK),
                "server_secret": b64(e),
                "server_key": b64(big_e),
                "nonce": b64(nonce),
                "expires_at": expires_at,
                "origin": origin,
                "transcript": b64(transcript),
                "mac": b64(mac),
                "expect": "ok",
            }
        )
    base = cases[0]
    cases += [
        base
        | {
            "desc": "answer checked against another origin",
            "verify_origin": "https://evil.example",
            "expect": "AuthError",
        },
        base
        | {
            "desc": "answer checked against another expiry",
            "verify_expires_at": expires_at + 60,
            "expect": "AuthError",
        },
        base
        | {
            "desc": "answer checked for another inbox",
            "verify_public_key": b64(crypto_scalarmult_base(OTHER_SK)),
            "expect": "AuthError",
        },
        base
        | {
            "desc": "MAC with one bit flipped",
            "mac": b64(bytes([b64d(base["mac"])[0] ^ 1]) + b64d(base["mac"])[1:]),
            "expect": "AuthError",
        },
        base
        | {
            "desc": "answer checked with a nonce of 31 bytes",
            "nonce": b64(nonce[:31]),
            "expect": "AuthError",
        },
    ]
    return cases + challenge_cases(base)


def challenge_cases(base: dict) -> list[dict]:
    """`check: prove`: answering the challenge as sent (section 7.3) must be refused."""
    nonce = b64d(base["nonce"])
    prove_only = {"check": "prove", "expect": "AuthError"}
    cases = [
        ("nonce of 31 bytes", {"nonce": b64(nonce[:31])}),
        ("nonce of 33 bytes", {"nonce": b64(nonce + b"\x00")}),
        ("nonce in padded base64", {"nonce": base["nonce"] + "="}),
        ("nonce with non-zero unused bits", {"nonce": base["nonce"][:-1] + "B"}),
        ("nonce in the standard alphabet", {"nonce": "+" + base["nonce"][1:]}),
        ("secret key of 31 bytes", {"secret_key": b64(RECIPIENT_SK[:31])}),
        ("expires_at as a string", {"expires_at": str(base["expires_at"])}),
        ("expires_at with a fraction", {"expires_at": base["expires_at"] + 0.5}),
        ("expires_at negative", {"expires_at": -1}),
        ("expires_at of 2^53", {"expires_at": 2**53}),
        ("expires_at true", {"expires_at": True}),
        ("expires_at missing", {"expires_at": None}),
        ("origin with a non-ASCII character", {"origin": "https://fa\u00df.example"}),
        ("origin with a control character", {"origin": "https://a.example\n"}),
    ]
    out = [base | {"desc": f"challenge: {desc}"} | changes | prove_only for desc, changes in cases]
    out += [
        base
        | {"desc": "challenge: server key of low order", "server_key": b64(bytes(32))}
        | prove_only
        | {"expect": "InvalidKeyError"},
        base
        | {"desc": "challenge: server key of 31 bytes", "server_key": base["server_key"][:-1]}
        | prove_only
        | {"expect": "InvalidKeyError"},
        # Section 7.3's order: the server key is checked before the secret key.
        base
        | {
            "desc": "challenge: low-order server key and a 31-byte secret key",
            "server_key": b64(bytes(32)),
            "secret_key": b64(RECIPIENT_SK[:31]),
        }
        | prove_only
        | {"expect": "InvalidKeyError"},
        base
        | {
            "desc": "challenge: expires_at 1795000000.0 is the whole number 1795000000",
            "expires_at": float(base["expires_at"]),
            "check": "prove",
        },
        base
        | {
            "desc": "challenge: the largest expires_at, 2^53 - 1",
            "expires_at": 2**53 - 1,
            "mac": b64(
                proof.prove(
                    RECIPIENT_SK, b64d(base["server_key"]), nonce, 2**53 - 1, base["origin"]
                )
            ),
            "check": "prove",
        },
    ]
    return out


# The longest host: four labels, 63 + 63 + 63 + 61 letters and three dots = 253.
LONGEST_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])

# (desc, URL, expected origin or error class): written out by hand, so that the
# generator checks the Python implementation instead of copying it.
ORIGIN_CASES = [
    ("already canonical", "https://secretlink.example", "https://secretlink.example"),
    (
        "scheme and host lower-cased, default port and slash dropped",
        "HTTPS://Secretlink.Example:443/",
        "https://secretlink.example",
    ),
    ("http's default port dropped", "http://secretlink.example:80", "http://secretlink.example"),
    ("another port kept", "http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("https on port 80 keeps it", "https://secretlink.example:80", "https://secretlink.example:80"),
    (
        "path, query and fragment ignored",
        "https://secretlink.example/to/x?y#z",
        "https://secretlink.example",
    ),
    (
        "surrounding ASCII whitespace ignored",
        " \thttps://secretlink.example\n",
        "https://secretlink.example",
    ),
    (
        "UTS 46 non-transitional: \u00df stays, as xn--fa-hia (IDNA2003 would give fass)",
        "http://FA\u00df.Example:8000",
        "http://xn--fa-hia.example:8000",
    ),
    (
        "internationalized name to its xn-- form",
        "https://B\u00fccher.example",
        "https://xn--bcher-kva.example",
    ),
    ("xn-- form kept", "https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    (
        "right-to-left name",
        "https://\u0627\u0644\u0639\u0631\u0628\u064a\u0629.example",
        "https://xn--mgbcd4a2b0d2b.example",
    ),
    ("fullwidth letters mapped", "https://\uff33\uff2c.example", "https://sl.example"),
    (
        "IPv6 literal compressed and lower-cased",
        "http://[2001:DB8:0:0:0:0:0:1]:8000",
        "http://[2001:db8::1]:8000",
    ),
    ("IPv6 loopback", "http://[0:0::1]", "http://[::1]"),
    ("IPv4 dotted decimal", "http://192.0.2.1:8443", "http://192.0.2.1:8443"),
    (
        "longest host, longest port: the longest origin (267 bytes)",
        f"https://{LONGEST_HOST}:65535",
        f"https://{LONGEST_HOST}:65535",
    ),
    ("host of 254 characters", f"https://{LONGEST_HOST}d", "InvalidOriginError"),
    ("label of 64 characters", f"https://{'a' * 64}.example", "InvalidOriginError"),
    ("another scheme", "ftp://secretlink.example", "InvalidOriginError"),
    ("no scheme", "secretlink.example", "InvalidOriginError"),
    ("empty host", "https://", "InvalidOriginError"),
    ("empty host before a port", "https://:443", "InvalidOriginError"),
    ("user information", "https://user@secretlink.example", "InvalidOriginError"),
    (
        "backslash (a browser ends the host there, urlsplit does not)",
        "https://evil.example\\@secretlink.example",
        "InvalidOriginError",
    ),
    ("percent-escape in the host", "https://secretlink%2Eexample", "InvalidOriginError"),
    ("space in the host", "https://a b.example", "InvalidOriginError"),
    (
        "tab inside the host (a browser would drop it)",
        "https://secret\tlink.example",
        "InvalidOriginError",
    ),
    ("port that is not a number", "http://x.example:abc", "InvalidOriginError"),
    ("port 0", "http://x.example:0", "InvalidOriginError"),
    ("port 65536", "http://x.example:65536", "InvalidOriginError"),
    ("empty port", "http://x.example:", "InvalidOriginError"),
    ("port with a sign", "http://x.example:+80", "InvalidOriginError"),
    ("underscore", "https://a_b.example", "InvalidOriginError"),
    (
        "symbol (UTS 46 allows it, IDNA2008 does not)",
        "https://\u2603.example",
        "InvalidOriginError",
    ),
    ("label starting with a hyphen", "https://-a.example", "InvalidOriginError"),
    ("hyphens in the third and fourth place", "https://ab--c.example", "InvalidOriginError"),
    ("empty label", "https://a..example", "InvalidOriginError"),
    ("trailing dot", "https://secretlink.example.", "InvalidOriginError"),
    ("IPv4 in short form (a browser reads 127.0.0.1)", "http://127.1", "InvalidOriginError"),
    ("IPv4 in hexadecimal", "http://0x7f.0.0.1", "InvalidOriginError"),
    ("IPv4 with a leading zero", "http://127.0.0.01", "InvalidOriginError"),
    ("IPv4 octet over 255", "http://192.0.2.256", "InvalidOriginError"),
    ("name ending in a number", "http://example.123", "InvalidOriginError"),
    (
        "name mapped to a number (a browser reads \u00b2 as 2, the IPv4 address 0.0.0.2)",
        "http://\u00b2",
        "InvalidOriginError",
    ),
    (
        "fullwidth digits mapped to an IPv4 address",
        "http://\uff11.\uff12.\uff13.\uff14",
        "InvalidOriginError",
    ),
    (
        "internationalized label ending in a hyphen",
        "https://b\u00fccher-.example",
        "InvalidOriginError",
    ),
    ("label starting with a combining mark", "https://\u0301a.example", "InvalidOriginError"),
    ("IPv6 without brackets", "http://2001:db8::1", "InvalidOriginError"),
    ("IPv6 not closed", "http://[::1", "InvalidOriginError"),
    ("IPv6 with a zone", "http://[fe80::1%25eth0]", "InvalidOriginError"),
    ("something after the IPv6 literal", "http://[::1]x", "InvalidOriginError"),
    ("invalid IPv6", "http://[1:2:3:4:5:6:7:8:9]", "InvalidOriginError"),
]


def origin_cases() -> list[dict]:
    from secretlink.crypto.errors import InvalidOriginError
    from secretlink.crypto.origin import canonical_origin

    cases = []
    for desc, url, expected in ORIGIN_CASES:
        try:
            got = canonical_origin(url)
        except InvalidOriginError:
            got = "InvalidOriginError"
        assert got == expected, (desc, url, got)
        if expected == "InvalidOriginError":
            cases.append({"desc": desc, "url": url, "expect": expected})
        else:
            cases.append({"desc": desc, "url": url, "origin": expected, "expect": "ok"})
    return cases


def link_cases() -> list[dict]:
    """Section 4.4, a sender reading a link: its origin and key, or a refusal."""
    key = b64(RECIPIENT_PK)
    site = "https://secretlink.example"
    ok = [
        ("a plain link", f"https://secretlink.example/to/{key}", site),
        ("a query is ignored", f"https://secretlink.example/to/{key}?ref=chat", site),
        ("a fragment is ignored", f"https://secretlink.example/to/{key}#top", site),
        ("upper case and the default port", f"HTTPS://SecretLink.Example:443/to/{key}", site),
        ("a port", f"http://127.0.0.1:8000/to/{key}", "http://127.0.0.1:8000"),
        (
            "an internationalized host",
            f"https://fa\u00df.example/to/{key}",
            "https://xn--fa-hia.example",
        ),
    ]
    cases = [
        {"desc": desc, "link": link, "expect": "ok", "origin": origin, "public_key": key}
        for desc, link, origin in ok
    ]
    refused = [
        ("another scheme", f"ftp://secretlink.example/to/{key}"),
        ("user information", f"https://user@secretlink.example/to/{key}"),
        ("port 0", f"https://secretlink.example:0/to/{key}"),
        ("a path prefix", f"https://secretlink.example/prefix/to/{key}"),
        ("an empty first segment (//to/KEY)", f"https://secretlink.example//to/{key}"),
        ("a trailing slash", f"https://secretlink.example/to/{key}/"),
        ("a further segment", f"https://secretlink.example/to/{key}/x"),
        ("no key", "https://secretlink.example/to/"),
        ("not /to/", f"https://secretlink.example/from/{key}"),
    ]
    cases += [{"desc": d, "link": link, "expect": "refused"} for d, link in refused]
    bad_keys = [
        ("a key of 42 characters", f"https://secretlink.example/to/{key[:42]}"),
        ("an all-zero (low-order) key", "https://secretlink.example/to/" + "A" * 43),
    ]
    cases += [{"desc": d, "link": link, "expect": "InvalidKeyError"} for d, link in bad_keys]
    return cases


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


FILES = {
    "envelope.json": (
        "Decrypt direction: open `envelope` with `secret_key`; `ok` gives `text`.",
        envelope_cases,
    ),
    "seal.json": (
        "Encrypt direction: seal(text, public_key) gives an envelope of `envelope_length` "
        "bytes that opens with `secret_key` to `text`, or raises `expect`.",
        seal_cases,
    ),
    "public_key.json": ("Parse `text` as a public key (as in a link).", public_key_cases),
    "base64.json": (
        "Decode `text` as canonical unpadded base64url; `ok` gives `bytes` (hex).",
        base64_cases,
    ),
    "key_file.json": ("Load `text` as a key file.", key_file_cases),
    "auth.json": (
        "Proof of possession: prove(secret_key, server_key, nonce, expires_at, origin) "
        "== mac; verify(server_secret, verify_public_key or public_key, nonce, "
        "verify_expires_at or expires_at, verify_origin or origin, mac).",
        auth_cases,
    ),
    "link.json": (
        "Links (section 4.4), as a sender reads them: `ok` gives the `origin` to post to "
        "and the `public_key` to seal to; `refused` must be refused (rules 1 to 3), "
        "`InvalidKeyError` for a segment that is no valid key (rule 4).",
        link_cases,
    ),
    "origin.json": (
        "Origins (section 7.5): canonical_origin(url) == origin, or the error. Every "
        "`ok` origin is a valid transcript origin; one byte more than the longest is not.",
        origin_cases,
    ),
}


def render(name: str) -> str:
    about, build = FILES[name]
    document = {"spec": "secretlink v1, crypto/SPEC.md", "about": about, "cases": build()}
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    # A lone surrogate (a writer case) has no UTF-8 form: JSON writes it as an escape.
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", text)


def main() -> int:
    return write_or_check(__doc__, FILES, render)


def write_or_check(doc: str | None, names, render_file) -> int:
    """A generator's command line: write each named vector file as `render_file`
    makes it, or with --check only compare and list the files that differ. Shared by
    the generators that import this module."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    VECTORS.mkdir(exist_ok=True)
    stale = []
    for name in names:
        path = VECTORS / name
        text = render_file(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("vectors differ from a fresh run: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
