"""Write crypto/vectors/protected_key.json: known answers for the protected key file
(SPEC section 6a).

    python crypto/generate_protected_key_vectors.py          # rewrite the file (also: make vectors)
    python crypto/generate_protected_key_vectors.py --check  # exit 1 if it differs from a fresh run

Files are built here from PyNaCl's primitives (Argon2id, XChaCha20-Poly1305 IETF), not
through secretlink's own writer, so the vectors check the readers instead of repeating
them. Salts and nonces come from fixed labels, so every run writes the same file; real
writers MUST use fresh random ones. Valid cases use the smallest cost readers accept
(19456 KiB, 2 passes) but one, which uses the writers' default (65536 KiB, 3 passes).
"""

import base64
import json
import struct
import sys
import unicodedata
from pathlib import Path

import nacl.bindings
import nacl.pwhash.argon2id
from nacl.bindings import crypto_generichash_blake2b_salt_personal, crypto_scalarmult_base

OUT = Path(__file__).resolve().parent / "vectors" / "protected_key.json"
PURPOSE = b"secretlink/v1/protected-key"
MIN_COST = (19456, 2)
DEFAULT_COST = (65536, 3)
MAX_FILE_BYTES = 1024 * 1024
PASSPHRASE = "correct horse battery staple"
SERVER = "https://secretlink.example"


def seeded(label: str, size: int = 32) -> bytes:
    """Fixed bytes per label (the labels of crypto/generate_vectors.py: the same keys)."""
    data = b"secretlink/v1/test-vectors/" + label.encode()
    return crypto_generichash_blake2b_salt_personal(data, digest_size=size)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def key_document(label: str, server: str | None) -> dict:
    secret = seeded(label)
    document = {
        "format": "secretlink-key",
        "version": 1,
        "public_key": b64(crypto_scalarmult_base(secret)),
        "secret_key": b64(secret),
    }
    if server:
        document["server"] = server
    return document


def key_text(label: str, server: str | None = SERVER) -> bytes:
    return (json.dumps(key_document(label, server), indent=2) + "\n").encode()


def associated_data(memory: int, passes: int, salt: bytes, nonce: bytes) -> bytes:
    return PURPOSE + b"\x00" + struct.pack(">IIIII", 1, 0x13, 1, memory, passes) + salt + nonce


def derive(passphrase: str, salt: bytes, memory: int, passes: int) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode()
    return nacl.pwhash.argon2id.kdf(32, secret, salt, opslimit=passes, memlimit=memory * 1024)


def sealed(
    contents: bytes, label: str, passphrase: str = PASSPHRASE, cost: tuple[int, int] = MIN_COST
) -> dict:
    """The protected file's members (in writers' order) and the values behind them."""
    memory, passes = cost
    salt = seeded(f"protected salt/{label}", 16)
    nonce = seeded(f"protected nonce/{label}", 24)
    key = derive(passphrase, salt, memory, passes)
    ad = associated_data(memory, passes, salt, nonce)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(contents, ad, nonce, key)
    document = {
        "format": "secretlink-protected-key",
        "version": 1,
        "kdf": "argon2id",
        "memory_kib": memory,
        "passes": passes,
        "salt": b64(salt),
        "cipher": "xchacha20poly1305-ietf",
        "nonce": b64(nonce),
        "ciphertext": b64(ciphertext),
    }
    return {"document": document, "key": key, "ad": ad}


def text(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def inbox(label: str, server: str | None, state: dict) -> dict:
    document = key_document(label, server)
    return {"public_key": document["public_key"], "server": server, "state": state}


def ok(desc: str, file: str, made: dict, kind: str, inboxes: list[dict], **extra) -> dict:
    return {
        "desc": desc,
        "file": file,
        "passphrase": extra.pop("passphrase", PASSPHRASE),
        "expect": "ok",
        "kind": kind,
        "inboxes": inboxes,
        "device": extra.pop("device", {}),
        "derived_key": made["key"].hex(),
        "associated_data": made["ad"].hex(),
        **extra,
    }


def refused(desc: str, file: str, expect: str, stage: str, passphrase: str = PASSPHRASE) -> dict:
    return {"desc": desc, "file": file, "passphrase": passphrase, "expect": expect, "stage": stage}


def header(desc: str, base: dict, **changes) -> dict:
    """A header refused by steps 1 to 11: before the passphrase is used."""
    document = {**base, **changes}
    for name, value in changes.items():
        if value is None:
            del document[name]
    return refused(desc, text(document), "ProtectedKeyError", "header")


def flip(value: str, index: int) -> str:
    """`value` (base64url) with one bit of byte `index` flipped, still canonical."""
    data = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    data[index] ^= 0x01
    return b64(bytes(data))


def opened_contents(desc: str, contents: bytes, label: str) -> dict:
    """Contents that open (the passphrase is right) but are no key file or valid bundle."""
    return refused(desc, text(sealed(contents, label)["document"]), "ProtectedKeyError", "contents")


def padded(case: dict) -> str:
    """A case's file, with spaces before its final "}" up to `padded_to` bytes."""
    file = case["file"]
    missing = case.get("padded_to", 0) - len(file.encode())
    return file if missing <= 0 else file[:-2] + " " * missing + "}\n"


def bundle(entries: list[dict], version: int = 1, device: object = None) -> bytes:
    document = {"format": "secretlink-key-bundle", "version": version, "inboxes": entries}
    if device is not None:
        document = {**document, "device": device}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def build() -> dict:
    base = sealed(key_text("recipient"), "base")
    doc = base["document"]
    cases = [
        ok(
            "a key file, the smallest cost readers accept (19456 KiB, 2 passes)",
            text(doc),
            base,
            "key",
            [inbox("recipient", SERVER, {})],
        )
    ]

    accented = "Grüße, Zoë: 🔑 naïve café"
    made = sealed(key_text("someone-else", None), "nfc", accented, (19456, 3))
    cases.append(
        ok(
            "a key file without a server, 3 passes, a non-ASCII passphrase (NFC)",
            text(made["document"]),
            made,
            "key",
            [inbox("someone-else", None, {})],
            passphrase=accented,
        )
    )
    cases.append(
        ok(
            "the same file opens with the passphrase typed decomposed (NFD): readers normalise",
            text(made["document"]),
            made,
            "key",
            [inbox("someone-else", None, {})],
            passphrase=unicodedata.normalize("NFD", accented),
        )
    )

    entries = [
        {
            "key": key_document("recipient", SERVER),
            "state": {
                "prompt": "What should we fix?",
                "saved_at": "2026-12-05",
                "read": ["AAAAAAAAAAAAAAAAAAAAAA"],
                "later": [1],
            },
        },
        {
            "key": key_document("someone-else", "http://127.0.0.1:8000"),
            "state": {"prompt": 7, "saved_at": "2026-11-30", "read": [1, 2]},
            "added_later": True,
        },
    ]
    device = {"muted": ["spoilers", "the ex"], "theme": "dark"}
    made = sealed(bundle(entries, device=device), "bundle")
    cases.append(
        ok(
            "a bundle of two inboxes with their state and the device's; unknown members are "
            "kept as given (and otherwise ignored), known members of the wrong type "
            "(prompt 7, read [1, 2]) are dropped",
            text(made["document"]),
            made,
            "bundle",
            [
                inbox(
                    "recipient",
                    SERVER,
                    {
                        "prompt": "What should we fix?",
                        "saved_at": "2026-12-05",
                        "read": ["AAAAAAAAAAAAAAAAAAAAAA"],
                        "later": [1],
                    },
                ),
                inbox("someone-else", "http://127.0.0.1:8000", {"saved_at": "2026-11-30"}),
            ],
            device=device,
        )
    )
    made = sealed(bundle([{"key": key_document("recipient", None)}]), "bundle without state")
    cases.append(
        ok(
            "a bundle of one inbox without state",
            text(made["document"]),
            made,
            "bundle",
            [inbox("recipient", None, {})],
        )
    )

    made = sealed(key_text("recipient"), "default cost", cost=DEFAULT_COST)
    cases.append(
        ok(
            "the writers' default cost (65536 KiB, 3 passes)",
            text(made["document"]),
            made,
            "key",
            [inbox("recipient", SERVER, {})],
        )
    )

    written = text({**doc, "comment": "unknown members are ignored"})
    written = written.replace('"memory_kib": 19456', '"memory_kib": 1.9456e4')
    written = written.replace('"passes": 2', '"passes": 2.0')
    cases.append(
        ok(
            "costs written 1.9456e4 and 2.0 (the same JSON numbers) and an unknown member",
            written,
            base,
            "key",
            [inbox("recipient", SERVER, {})],
        )
    )
    cases.append(
        ok(
            "a byte-order mark before the file is skipped",
            "\ufeff" + text(doc),
            base,
            "key",
            [inbox("recipient", SERVER, {})],
        )
    )

    # Steps 1 to 11: refused before the passphrase is used (no Argon2id work at all).
    cases += [
        header("memory below the minimum (19455 KiB)", doc, memory_kib=19455),
        header("1 pass, below the minimum of 2", doc, passes=1),
        header("memory above the maximum (1048577 KiB)", doc, memory_kib=1048577),
        header("4 GiB of memory: refused before any work", doc, memory_kib=4194304),
        header("17 passes, above the maximum of 16", doc, passes=17),
        header("memory as a string", doc, memory_kib="19456"),
        header("memory with a fraction", doc, memory_kib=19456.5),
        header("passes true", doc, passes=True),
        header("no memory_kib", doc, memory_kib=None),
        header("a 15-byte salt", doc, salt=b64(bytes(15))),
        header("a 17-byte salt", doc, salt=b64(bytes(17))),
        header("a padded salt (bad base64)", doc, salt=doc["salt"] + "=="),
        header("a salt in the standard alphabet", doc, salt="+" + doc["salt"][1:]),
        header("a 23-byte nonce", doc, nonce=b64(bytes(23))),
        header("a 25-byte nonce", doc, nonce=b64(bytes(25))),
        header("a salt with non-zero unused bits", doc, salt=doc["salt"][:-1] + "B"),
        header(
            "a ciphertext with a line break (bad base64)",
            doc,
            ciphertext=doc["ciphertext"][:40] + "\n" + doc["ciphertext"][40:],
        ),
        header("a 15-byte ciphertext, shorter than the tag", doc, ciphertext=b64(bytes(15))),
        header("no ciphertext", doc, ciphertext=None),
        header(
            "another format: a plain key file is not a protected one", doc, format="secretlink-key"
        ),
        header("version 2", doc, version=2),
        header('version "1"', doc, version="1"),
        header("kdf argon2i", doc, kdf="argon2i"),
        header("another cipher", doc, cipher="xchacha20poly1305"),
        refused("not JSON", "secretlink-protected-key\n", "ProtectedKeyError", "header"),
        refused("a JSON array", "[" + text(doc) + "]", "ProtectedKeyError", "header"),
        refused(
            "memory_kib twice (one reader could take the small value)",
            text(doc).replace('"passes": 2', '"memory_kib": 8,\n  "passes": 2'),
            "ProtectedKeyError",
            "header",
        ),
        refused(
            "NaN as passes",
            text(doc).replace('"passes": 2', '"passes": NaN'),
            "ProtectedKeyError",
            "header",
        ),
    ]
    # Stored short: the test suites insert white space before the final "}" up to
    # `padded_to` bytes (valid JSON, so only the size is wrong).
    cases.append(
        {
            **refused(
                "a file of 1048577 bytes, one over the limit",
                text(doc),
                "ProtectedKeyError",
                "header",
            ),
            "padded_to": MAX_FILE_BYTES + 1,
        }
    )
    assert len(padded(cases[-1]).encode()) == MAX_FILE_BYTES + 1

    # Steps 12 and 13: the tag does not verify. A wrong passphrase and an altered file
    # look the same to a reader: one error.
    cases += [
        refused(
            "a wrong passphrase",
            text(doc),
            "PassphraseError",
            "open",
            "correct horse battery stapler",
        ),
        refused(
            "the passphrase in another case",
            text(doc),
            "PassphraseError",
            "open",
            PASSPHRASE.upper(),
        ),
        refused("an empty passphrase", text(doc), "PassphraseError", "open", ""),
        refused(
            "passes changed from 2 to 3 (header tampered)",
            text({**doc, "passes": 3}),
            "PassphraseError",
            "open",
        ),
        refused(
            "memory changed to 19457 KiB (header tampered)",
            text({**doc, "memory_kib": 19457}),
            "PassphraseError",
            "open",
        ),
        refused(
            "one bit of the salt flipped",
            text({**doc, "salt": flip(doc["salt"], 0)}),
            "PassphraseError",
            "open",
        ),
        refused(
            "one bit of the nonce flipped",
            text({**doc, "nonce": flip(doc["nonce"], 23)}),
            "PassphraseError",
            "open",
        ),
        refused(
            "one bit of the ciphertext flipped",
            text({**doc, "ciphertext": flip(doc["ciphertext"], 10)}),
            "PassphraseError",
            "open",
        ),
        refused(
            "one bit of the tag flipped",
            text({**doc, "ciphertext": flip(doc["ciphertext"], -1)}),
            "PassphraseError",
            "open",
        ),
    ]
    whole = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    cases.append(
        refused(
            "the ciphertext cut short by one byte",
            text({**doc, "ciphertext": b64(whole[:-1])}),
            "PassphraseError",
            "open",
        )
    )

    # Step 14: the contents open but are no key file or valid bundle.
    other = json.loads(key_text("recipient"))
    other["public_key"] = key_document("someone-else", None)["public_key"]
    cases += [
        opened_contents("contents that are not JSON", b"not json", "contents: not json"),
        opened_contents(
            "contents of another format",
            b'{"format": "secretlink-something", "version": 1}',
            "contents: other format",
        ),
        opened_contents(
            "a key file whose public key belongs to another secret key",
            json.dumps(other).encode(),
            "contents: mismatched key",
        ),
        opened_contents(
            "a bundle holding the same inbox twice",
            bundle([{"key": key_document("recipient", None)}] * 2),
            "contents: repeated inbox",
        ),
        opened_contents("a bundle with no inboxes", bundle([]), "contents: empty bundle"),
        opened_contents(
            "a bundle of version 2",
            bundle([{"key": key_document("recipient", None)}], version=2),
            "contents: bundle version 2",
        ),
        opened_contents(
            "a bundle whose key has a server with a path",
            bundle([{"key": key_document("recipient", SERVER + "/inbox")}]),
            "contents: server with a path",
        ),
        opened_contents(
            "a bundle whose device state is a list",
            bundle([{"key": key_document("recipient", None)}], device=["muted"]),
            "contents: list device state",
        ),
        opened_contents(
            "a bundle whose state is a string",
            bundle([{"key": key_document("recipient", None), "state": "read"}]),
            "contents: string state",
        ),
    ]
    return {
        "spec": "secretlink v1, crypto/SPEC.md section 6a",
        "about": (
            "Read `file` (its UTF-8 bytes are the file) as a protected key file with "
            "`passphrase`. ok: it holds a key file (kind 'key') or a bundle (kind 'bundle') "
            "of `inboxes` (public key, server or null, state after the reader's rules) and "
            "`device` (the bundle's device state after the same rules; {} for a key file); "
            "derived_key is Argon2id's output and associated_data the AEAD's associated "
            "data, both hex. Otherwise `expect` is the error class and `stage` where the "
            "reader stops: 'header' (steps 1 to 11, before any Argon2id work), 'open' "
            "(steps 12 and 13: wrong passphrase or altered file), 'contents' (step 14). "
            "A case with `padded_to` is its file with spaces inserted before the final "
            "'}' up to that many bytes."
        ),
        "cases": cases,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{OUT} differs from a fresh run; run {sys.argv[0]}\n")
            sys.exit(1)
        return
    OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
