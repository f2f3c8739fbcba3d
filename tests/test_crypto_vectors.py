"""The Python implementation against the shared vector files in crypto/vectors/."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secretlink import crypto
from secretlink.crypto import b64decode, b64encode, decode_public_key, open_envelope, seal
from secretlink.crypto.keyfile import load_key_file
from secretlink.crypto.origin import MAX_ORIGIN_LENGTH, canonical_origin
from secretlink.crypto.proof import prove, prove_challenge, transcript, verify

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "crypto" / "vectors"


def cases(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"]


def ids(name: str) -> list[str]:
    return [case["desc"] for case in cases(name)]


def expect_error(case: dict):
    """pytest.raises for the class the vector names, which must be one of ours."""
    error_class = getattr(crypto, case["expect"])
    assert issubclass(error_class, crypto.SecretlinkCryptoError)
    return pytest.raises(error_class)


@pytest.mark.parametrize("case", cases("envelope.json"), ids=ids("envelope.json"))
def test_envelope_vectors(case):
    def run():
        return open_envelope(b64decode(case["envelope"]), b64decode(case["secret_key"]))

    if case["expect"] == "ok":
        assert run().text == case["text"]
    else:
        with expect_error(case):
            run()


@pytest.mark.parametrize("case", cases("seal.json"), ids=ids("seal.json"))
def test_seal_vectors(case):
    def run():
        return seal(case["text"], b64decode(case["public_key"]))

    if case["expect"] == "ok":
        envelope = run()
        assert len(envelope) == case["envelope_length"]
        assert open_envelope(envelope, b64decode(case["secret_key"])).text == case["text"]
    else:
        with expect_error(case):
            run()


@pytest.mark.parametrize("case", cases("public_key.json"), ids=ids("public_key.json"))
def test_public_key_vectors(case):
    if case["expect"] == "ok":
        assert b64encode(decode_public_key(case["text"])) == case["text"]
    else:
        with expect_error(case):
            decode_public_key(case["text"])


@pytest.mark.parametrize("case", cases("base64.json"), ids=ids("base64.json"))
def test_base64_vectors(case):
    if case["expect"] == "ok":
        assert b64decode(case["text"]).hex() == case["bytes"]
    else:
        with expect_error(case):
            b64decode(case["text"])


@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "bytes"])
@pytest.mark.parametrize("case", cases("key_file.json"), ids=ids("key_file.json"))
def test_key_file_vectors(case, as_bytes):
    content = case["text"].encode() if as_bytes else case["text"]
    if case["expect"] == "ok":
        key_file = load_key_file(content)
        assert key_file.keypair.public_key_text == case["public_key"]
        assert key_file.server == case["server"]
        conversation = key_file.conversation
        expected = case.get("conversation")
        if expected is None:
            assert conversation is None
        else:
            assert b64encode(conversation.inbox_key) == expected["with"]
            assert b64encode(conversation.conversation_id) == expected["id"]
    else:
        with expect_error(case):
            load_key_file(content)


def auth_cases(check: str) -> list[dict]:
    return [case for case in cases("auth.json") if case.get("check", "both") == check]


@pytest.mark.parametrize("case", auth_cases("both"), ids=[c["desc"] for c in auth_cases("both")])
def test_auth_vectors(case):
    def field(name):
        return b64decode(case[name])

    if case["expect"] == "ok":
        mac = prove(
            field("secret_key"),
            field("server_key"),
            field("nonce"),
            case["expires_at"],
            case["origin"],
        )
        assert b64encode(mac) == case["mac"]
        built = transcript(
            field("public_key"),
            field("server_key"),
            field("nonce"),
            case["expires_at"],
            case["origin"],
        )
        assert b64encode(built) == case["transcript"]
    public_key = b64decode(case.get("verify_public_key", case["public_key"]))

    def run():
        verify(
            field("server_secret"),
            public_key,
            field("nonce"),
            case.get("verify_expires_at", case["expires_at"]),
            case.get("verify_origin", case["origin"]),
            field("mac"),
        )

    if case["expect"] == "ok":
        run()
    else:
        with expect_error(case):
            run()


@pytest.mark.parametrize("case", auth_cases("prove"), ids=[c["desc"] for c in auth_cases("prove")])
def test_challenge_vectors(case):
    """The client's side: answer the challenge's JSON members as the server sent them."""
    challenge = {name: case[name] for name in ("server_key", "nonce", "expires_at")}

    def run():
        return prove_challenge(b64decode(case["secret_key"]), challenge, case["origin"])

    if case["expect"] == "ok":
        assert b64encode(run()) == case["mac"]
    else:
        with expect_error(case):
            run()


def test_vector_files_match_their_generator():
    result = subprocess.run(
        [sys.executable, str(ROOT / "crypto" / "generate_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_vector_file_case_has_a_description_and_expectation():
    for path in VECTORS.glob("*.json"):
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            assert case["desc"] and case["expect"], (path.name, case)


@pytest.mark.parametrize("case", cases("link.json"), ids=ids("link.json"))
def test_link_vectors(case):
    """The CLI's sender side (`secretlink send LINK`) reads links as section 4.4 says."""
    from secretlink.client.http import ClientError, parse_link

    if case["expect"] == "ok":
        link = parse_link(case["link"])
        assert (link.server, link.public_key_text) == (case["origin"], case["public_key"])
        return
    with pytest.raises(ClientError) as refused:
        parse_link(case["link"])
    if case["expect"] == "InvalidKeyError":  # rule 4: the key itself, named as such
        assert "key in this link is damaged" in str(refused.value)
        with expect_error(case):
            decode_public_key(case["link"].rsplit("/", 1)[1])
    else:
        assert case["expect"] == "refused"


@pytest.mark.parametrize("case", cases("origin.json"), ids=ids("origin.json"))
def test_origin_vectors(case):
    if case["expect"] != "ok":
        with expect_error(case):
            canonical_origin(case["url"])
        return
    assert canonical_origin(case["url"]) == case["origin"]
    assert canonical_origin(case["origin"]) == case["origin"]  # idempotent
    transcript(bytes(32), bytes(32), bytes(32), 0, case["origin"])  # a valid transcript origin


def test_the_longest_origin_is_the_transcript_limit():
    longest = max((c["origin"] for c in cases("origin.json") if c["expect"] == "ok"), key=len)
    assert len(longest) == MAX_ORIGIN_LENGTH == 267
    with pytest.raises(crypto.AuthError):
        transcript(bytes(32), bytes(32), bytes(32), 0, longest + "0")
