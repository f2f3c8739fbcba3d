"""The protected key file (SPEC section 6a) against crypto/vectors/protected_key.json,
and its writer against its reader."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secretlink.crypto import generate_keypair
from secretlink.crypto import protected_keyfile as pk
from secretlink.crypto.errors import PassphraseError, ProtectedKeyError
from secretlink.crypto.keyfile import KeyFile
from secretlink.crypto.protected_keyfile import KeyBundle

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "crypto" / "vectors" / "protected_key.json").read_text("utf-8"))
CASES = VECTORS["cases"]
ERRORS = {"ProtectedKeyError": ProtectedKeyError, "PassphraseError": PassphraseError}
# The smallest cost readers accept: what the tests write with.
SMALL = pk.Cost(pk.MIN_MEMORY_KIB, pk.MIN_PASSES)


def file_of(case: dict) -> str:
    """A case's file; `padded_to` cases get spaces before the final "}" up to that size."""
    file = case["file"]
    missing = case.get("padded_to", 0) - len(file.encode())
    return file if missing <= 0 else file[:-2] + " " * missing + "}\n"


def inboxes_of(opened) -> list[dict]:
    if isinstance(opened, KeyFile):
        return [
            {"public_key": opened.keypair.public_key_text, "server": opened.server, "state": {}}
        ]
    return [
        {
            "public_key": entry.key_file.keypair.public_key_text,
            "server": entry.key_file.server,
            "state": entry.state,
        }
        for entry in opened.inboxes
    ]


@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "bytes"])
@pytest.mark.parametrize("case", CASES, ids=[case["desc"] for case in CASES])
def test_protected_key_vectors(case, as_bytes):
    content = file_of(case).encode("utf-8") if as_bytes else file_of(case)
    if case["expect"] == "ok":
        opened = pk.load_protected(content, case["passphrase"])
        assert ("key" if isinstance(opened, KeyFile) else "bundle") == case["kind"]
        assert inboxes_of(opened) == case["inboxes"]
        assert (opened.device if isinstance(opened, KeyBundle) else {}) == case["device"]
        header = pk.read_header(content)
        ad = pk.associated_data(header.cost, header.salt, header.nonce)
        assert ad.hex() == case["associated_data"]
        secret = pk.passphrase_bytes(case["passphrase"])
        assert pk.derive_key(secret, header.salt, header.cost).hex() == case["derived_key"]
        return
    with pytest.raises(ERRORS[case["expect"]]):
        pk.load_protected(content, case["passphrase"])


@pytest.mark.parametrize("case", CASES, ids=[case["desc"] for case in CASES])
def test_the_header_is_checked_before_any_work(case, monkeypatch):
    """Steps 1 to 11 alone refuse exactly the `header` cases; Argon2id never runs for them."""

    def no_work(*args):
        raise AssertionError("Argon2id ran for a file its header should have refused")

    if case.get("stage") == "header":
        monkeypatch.setattr(pk, "derive_key", no_work)
        with pytest.raises(ProtectedKeyError):
            pk.read_header(file_of(case))
        with pytest.raises(ProtectedKeyError):
            pk.load_protected(file_of(case), case["passphrase"])
    else:
        pk.read_header(file_of(case))


def test_a_wrong_passphrase_says_so_plainly():
    case = next(case for case in CASES if case["desc"] == "a wrong passphrase")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        pk.load_protected(case["file"], case["passphrase"])


def test_vectors_match_their_generator():
    result = subprocess.run(
        [sys.executable, str(ROOT / "crypto" / "generate_protected_key_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_written_files_open_with_their_passphrase_only():
    key_file = KeyFile(generate_keypair(), "https://secretlink.example")
    text = pk.protect_key_file(key_file, "a long enough passphrase", SMALL)
    document = json.loads(text)
    assert document["memory_kib"] == pk.MIN_MEMORY_KIB and document["passes"] == pk.MIN_PASSES
    assert key_file.keypair.public_key_text not in text  # the whole key file is sealed
    assert pk.load_protected(text, "a long enough passphrase") == key_file
    with pytest.raises(PassphraseError):
        pk.load_protected(text, "a long enough passphrase!")


def test_every_file_gets_a_fresh_salt_and_nonce():
    key_file = KeyFile(generate_keypair())
    first, second = (
        json.loads(pk.protect_key_file(key_file, "a long enough passphrase", SMALL))
        for _ in range(2)
    )
    assert first["salt"] != second["salt"] and first["nonce"] != second["nonce"]


def test_the_default_cost_is_64_mib_and_3_passes():
    assert pk.Cost() == pk.Cost(65536, 3)


@pytest.mark.parametrize(
    "passphrase, reason",
    [
        ("", "empty"),
        ("short", "too short"),
        ("\ud800" * 12, "not valid Unicode"),
        ("x" * 1025, "longer"),
    ],
)
def test_writers_refuse_weak_or_broken_passphrases(passphrase, reason):
    with pytest.raises(ProtectedKeyError, match=reason):
        pk.protect_key_file(KeyFile(generate_keypair()), passphrase, SMALL)


@pytest.mark.parametrize("memory, passes", [(19455, 2), (19456, 1), (1048577, 3), (65536, 17)])
def test_writers_refuse_costs_readers_would_refuse(memory, passes):
    with pytest.raises(ProtectedKeyError):
        pk.Cost(memory, passes)
