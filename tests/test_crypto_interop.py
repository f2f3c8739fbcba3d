"""Python and JavaScript implementations against each other, both directions."""

import json
import os
import random
import shutil
import subprocess

import pytest
from conftest import IN_CI, ROOT

from secretlink import crypto
from secretlink.crypto import (
    DecryptError,
    b64decode,
    b64encode,
    generate_keypair,
    open_envelope,
    seal,
)
from secretlink.crypto.envelope import MAX_TEXT_BYTES
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file
from secretlink.crypto.origin import InvalidOriginError, canonical_origin
from secretlink.crypto.proof import derive_ephemeral, prove, verify

TEXTS = [
    "hello",
    "",
    "grüße ✉️ 🔐 שלום",
    "a\x00b",
    "x" * 251,
    "é" * (MAX_TEXT_BYTES // 2),
    # Edge texts that must come out exactly as they went in, in both directions.
    "\ufeffstarts with a byte-order mark",
    "\ufeff",
    "\x00",
    "\u0301",
    "e\u0301 \u00e9",
    "a\u2028b\u2029c\r\n",
    "\u202eabc\u2066\u200f",
    "\ufffe\uffff\U0010ffff",
    "\U0001f510" * 16382 + "ab",  # the largest text, in 4-byte characters
]


def test_edge_texts_are_refused_alike():
    """Texts a writer must refuse: both implementations name the same class."""
    keypair = generate_keypair()
    texts = {
        "lone \ud800 surrogate": "PayloadError",
        "\udc00\ud800": "PayloadError",
        "m" * (MAX_TEXT_BYTES + 1): "SizeError",
        "\U0001f510" * 16383: "SizeError",
    }
    answers = js([{"op": "seal", "public_key": keypair.public_key_text, "text": t} for t in texts])
    assert [a.get("error") for a in answers] == list(texts.values())
    for text, expected in texts.items():
        with pytest.raises(getattr(crypto, expected)):
            seal(text, keypair.public_key)


def js(requests: list[dict]) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required for the interop tests")
        pytest.skip("node not installed")
    result = subprocess.run(
        [node, str(ROOT / "tests" / "js" / "interop.mjs")],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "NODE_OPTIONS": ""},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("operation", ["seal", "prepared_seal"])
def test_javascript_seals_python_opens(operation):
    keypair = generate_keypair()
    requests = [{"op": operation, "public_key": keypair.public_key_text, "text": t} for t in TEXTS]
    answers = js(requests)
    opened = [open_envelope(b64decode(a["envelope"]), keypair.secret_key).text for a in answers]
    assert opened == TEXTS


def test_python_seals_javascript_opens():
    keypair = generate_keypair()
    requests = [
        {
            "op": "open",
            "secret_key": b64encode(keypair.secret_key),
            "envelope": b64encode(seal(text, keypair.public_key)),
        }
        for text in TEXTS
    ]
    assert [a["text"] for a in js(requests)] == TEXTS


def test_both_refuse_the_other_s_envelope_for_another_key():
    keypair, other = generate_keypair(), generate_keypair()
    envelope = js([{"op": "seal", "public_key": keypair.public_key_text, "text": "hi"}])[0]
    with pytest.raises(DecryptError):
        open_envelope(b64decode(envelope["envelope"]), other.secret_key)
    answer = js(
        [
            {
                "op": "open",
                "secret_key": b64encode(other.secret_key),
                "envelope": b64encode(seal("hi", keypair.public_key)),
            }
        ]
    )
    assert answer == [{"error": "DecryptError"}]


def test_key_files_work_in_both_directions():
    made_by_js = js([{"op": "keygen"}])[0]["key_file"]
    loaded = load_key_file(made_by_js)
    assert loaded.server == "http://127.0.0.1:1"
    made_by_python = dump_key_file(KeyFile(generate_keypair(), "https://host.example"))
    answer = js([{"op": "load_key_file", "text": made_by_python}])[0]
    assert answer["public_key"] == load_key_file(made_by_python).keypair.public_key_text


def test_javascript_proof_verifies_in_python():
    keypair = generate_keypair()
    nonce = os.urandom(32)
    ephemeral_secret, server_key = derive_ephemeral(os.urandom(32), nonce)
    answer = js(
        [
            {
                "op": "prove",
                "secret_key": b64encode(keypair.secret_key),
                "server_key": b64encode(server_key),
                "nonce": b64encode(nonce),
                "expires_at": 1900000000,
                "origin": "https://host.example",
            }
        ]
    )[0]
    mac = b64decode(answer["mac"])
    assert mac == prove(keypair.secret_key, server_key, nonce, 1900000000, "https://host.example")
    verify(ephemeral_secret, keypair.public_key, nonce, 1900000000, "https://host.example", mac)


# Pieces of host names: ASCII, case, fullwidth forms, ß and final sigma (mapped
# differently by IDNA2003), a ligature, a Roman numeral, a superscript digit, soft
# hyphen and joiner, a combining mark, an Arabic letter and digit, a symbol; and, in
# half the cases, what ends or splits a host in some parser.
NAME_PIECES = [*"abXZ09-.", "\u00df", "\u00fc", "\uff21", "\u3002", "\u200d", "\u0301",
               "\u2603", "\ufb00", "\u0130", "\u03c2", "\u03a3", "\u0627", "\u00b2",
               "\u216b", "\u00ad", "\uff58\uff4e--", "xn--", "0x", "\u0661"]  # fmt: skip
SPLITTING_PIECES = [*"_:@[]%/\\ \t"]


def generated_url(generator: random.Random) -> str:
    pieces = NAME_PIECES + (SPLITTING_PIECES if generator.random() < 0.5 else [])
    return (
        generator.choice(["http://", "https://", "HTTPS://"])
        + "".join(generator.choice(pieces) for _ in range(generator.randint(1, 8)))
        + generator.choice(["", "", ":80", ":443", ":8000", ":", ":0", ":65536"])
        + generator.choice(["", "/", "/to/x?y#z"])
    )


def test_python_and_javascript_normalise_origins_alike():
    """Section 7.5 in both implementations, on 3,000 generated URLs: where both accept
    a URL they give the same origin, and JavaScript refuses nothing Python accepts
    (it is more permissive only for IDNA2008 rules the URL parser lacks, such as the
    right-to-left rule)."""
    generator = random.Random(7)
    urls = [generated_url(generator) for _ in range(3000)]
    answers = js([{"op": "canonical_origin", "url": url} for url in urls])
    python_accepts = 0
    for url, answer in zip(urls, answers, strict=True):
        try:
            origin = canonical_origin(url)
        except InvalidOriginError:
            assert answer.get("error", "InvalidOriginError") == "InvalidOriginError", answer
            continue
        python_accepts += 1
        assert answer == {"origin": origin}, url
    assert python_accepts > 250  # the generator reaches accepted names, not only errors
