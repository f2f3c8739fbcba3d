"""Python envelope behaviour beyond the vectors: limits, padding sizes, isolation."""

import itertools
import subprocess
import sys

import pytest

from secretlink.crypto import (
    DecryptError,
    InvalidKeyError,
    Message,
    PayloadError,
    SizeError,
    generate_keypair,
    open_envelope,
    seal,
)
from secretlink.crypto.envelope import BUCKETS, MAX_TEXT_BYTES, OVERHEAD, bucket_for


@pytest.mark.parametrize("length", [0, 1, 250, 251, 4000, MAX_TEXT_BYTES])
def test_round_trip_and_length_shows_only_the_bucket(length):
    keypair = generate_keypair()
    envelope = seal("a" * length, keypair.public_key)
    assert len(envelope) == OVERHEAD + bucket_for(length + 5)
    assert open_envelope(envelope, keypair.secret_key) == Message("a" * length)


def test_texts_of_similar_length_give_equal_envelope_lengths():
    keypair = generate_keypair()
    lengths = {len(seal("x" * n, keypair.public_key)) for n in range(300, 500)}
    assert lengths == {OVERHEAD + 512}


def test_bucket_list_is_powers_of_two_up_to_64k():
    assert BUCKETS[0] == 256 and BUCKETS[-1] == 65536
    assert all(b == 2 * a for a, b in itertools.pairwise(BUCKETS))


def test_one_byte_over_the_limit_is_refused():
    with pytest.raises(SizeError):
        seal("a" * (MAX_TEXT_BYTES + 1), generate_keypair().public_key)


def test_lone_surrogate_is_refused():
    with pytest.raises(PayloadError):
        seal("bad \ud800", generate_keypair().public_key)


def test_sealing_to_a_low_order_key_is_refused():
    with pytest.raises(InvalidKeyError):
        seal("hi", bytes(32))


def test_wrong_secret_key_length_is_a_typed_error():
    envelope = seal("hi", generate_keypair().public_key)
    with pytest.raises(DecryptError):
        open_envelope(envelope, b"short")


def test_crypto_package_imports_neither_flask_nor_sqlalchemy():
    code = (
        "import sys, secretlink.crypto, secretlink.crypto.keyfile, secretlink.crypto.proof;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'werkzeug')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_low_order_list_is_what_libsodium_refuses():
    """Every listed point makes X25519 output all zeros, which libsodium refuses; and the
    list equals libsodium's blocklist once its non-canonical entries are set aside."""
    from nacl.bindings import crypto_scalarmult
    from nacl.exceptions import CryptoError

    from secretlink.crypto.keys import LOW_ORDER_POINTS

    for point in LOW_ORDER_POINTS:
        for _ in range(8):
            with pytest.raises(CryptoError):
                crypto_scalarmult(generate_keypair().secret_key, point)
    p = 2**255 - 19
    libsodium_blocklist = [
        0,
        1,
        p - 1,
        p,
        p + 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    ]
    canonical = {(u % p).to_bytes(32, "little") for u in libsodium_blocklist}
    assert canonical == LOW_ORDER_POINTS


def test_random_public_keys_pass_the_check():
    from secretlink.crypto.keys import check_public_key

    for _ in range(200):
        check_public_key(generate_keypair().public_key)
