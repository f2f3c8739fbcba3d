"""Property-based tests (Hypothesis): decoders fail only with their typed errors.

Whatever bytes or text arrive, the crypto package either returns a well-formed
result or raises one of its own exceptions (SecretlinkCryptoError and subclasses),
and the API answers a client's mistake with a 4xx, never a 5xx.
"""

import json
import random
import string
from urllib.parse import quote

import pytest
from conftest import register
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from nacl.bindings import crypto_box_seal, crypto_scalarmult_base, sodium_pad

from secretlink import create_app
from secretlink.crypto import (
    EncodingError,
    InvalidKeyError,
    KeyFileError,
    Message,
    PaddingError,
    PayloadError,
    SecretlinkCryptoError,
    SizeError,
    b64decode,
    b64encode,
    decode_public_key,
    generate_keypair,
    keyfile,
    open_envelope,
    seal,
)
from secretlink.crypto.envelope import (
    BUCKETS,
    ENVELOPE_LENGTHS,
    MAX_PADDED,
    MAX_TEXT_BYTES,
    OVERHEAD,
    bucket_for,
    pad,
    unpad,
)
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file
from secretlink.settings import Settings
from secretlink.store.storage import MessageRow

# No example database: it would leave a .hypothesis/ folder in the checkout.
PROPERTY = hypothesis_settings(max_examples=300, deadline=None, database=None)
FEWER = hypothesis_settings(max_examples=100, deadline=None, database=None)
SLOW_PROPERTY = hypothesis_settings(PROPERTY, suppress_health_check=[HealthCheck.too_slow])

B64_ALPHABET = string.ascii_letters + string.digits + "-_"
KEYPAIR = generate_keypair()
OTHER = generate_keypair()
SMALL_ENVELOPE_LENGTHS = sorted(ENVELOPE_LENGTHS)[:3]  # 306, 562, 1074 bytes

# ---- strategies ----

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Text without lone surrogates, i.e. anything UTF-8 can carry.
utf8_text = st.text(alphabet=st.characters(codec="utf-8"))


@st.composite
def long_bytes(draw, min_size: int, max_size: int) -> bytes:
    """Bytes of any length up to max_size: Hypothesis draws the head, a seed the rest.

    Hypothesis itself only draws a few kilobytes per example; the v1 formats go to 64 KiB.
    """
    length = draw(st.integers(min_size, max_size))
    head = draw(st.binary(max_size=min(length, 64)))
    seed = draw(st.integers(0, 2**32 - 1))
    return head + random.Random(seed).randbytes(length - len(head))


@st.composite
def envelope_shaped(draw) -> bytes:
    """Bytes that pass the cheap shape checks (version 1, an allowed length)."""
    length = draw(st.sampled_from(sorted(ENVELOPE_LENGTHS)))
    if length in SMALL_ENVELOPE_LENGTHS and draw(st.booleans()):
        rest = draw(st.binary(min_size=length - 1, max_size=length - 1))
    else:
        rest = draw(long_bytes(length - 1, length - 1))
    return b"\x01" + rest


def field_bytes(tag: int, value: bytes, declared: int | None = None) -> bytes:
    length = len(value) if declared is None else declared
    return bytes([tag]) + length.to_bytes(4, "big") + value


@st.composite
def well_formed_fields(draw) -> list[tuple[int, bytes]]:
    """Fields with strictly increasing tags and exact lengths; tag 1 holds UTF-8 text."""
    tags = sorted(draw(st.sets(st.integers(1, 255), max_size=4)))
    fields = []
    for tag in tags:
        if tag == 0x01:
            fields.append((tag, draw(utf8_text).encode("utf-8")))
        else:
            fields.append((tag, draw(st.binary(max_size=64))))
    return fields


ANY = "any outcome but an untyped exception"
ERROR = "a typed error"


@st.composite
def inner_plaintexts(draw) -> tuple[bytes, object]:
    """What goes inside the sealed box, and what opening it must give: a Message, ERROR or ANY.

    Anything from arbitrary bytes to canonical payloads with damage in one place.
    """
    kind = draw(st.sampled_from(["arbitrary", "bucket-sized", "padded", "fields"]))
    if kind == "arbitrary":
        return draw(st.binary(max_size=600)), ANY
    if kind == "bucket-sized":
        bucket = draw(st.sampled_from(BUCKETS[:2]))
        version = draw(st.sampled_from([1, 0, 2, 255]))
        return bytes([version]) + draw(st.binary(min_size=bucket, max_size=bucket)), ANY
    if kind == "padded":
        payload = draw(st.binary(max_size=300))
        canonical = bucket_for(len(payload))
        bucket = draw(st.sampled_from([b for b in BUCKETS[:3] if b >= canonical]))
        return b"\x01" + sodium_pad(payload, bucket), ANY if bucket == canonical else ERROR
    fields = draw(well_formed_fields())
    payload = b"".join(field_bytes(tag, value) for tag, value in fields)
    tags = [tag for tag, _ in fields]
    expected = ERROR
    if 0x01 in tags and all(tag == 0x01 or tag >= 0x80 for tag in tags):
        expected = Message(dict(fields)[0x01].decode("utf-8"))
    damage = draw(st.sampled_from(["none", "length", "truncate", "version", "repeated tag"]))
    if damage == "length" and fields:
        # A wrong length may still parse, e.g. into ignorable fields: any typed outcome.
        tag, value = fields[0]
        declared = draw(st.integers(0, 2**32 - 1).filter(lambda n: n != len(value)))
        payload = field_bytes(tag, value, declared) + payload[5 + len(value) :]
        expected = ANY
    elif damage == "truncate" and payload:
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
        expected = ANY
    elif damage == "repeated tag" and fields:
        payload += field_bytes(fields[-1][0], b"")
        expected = ERROR
    version = 1
    if damage == "version":
        version = draw(st.sampled_from([0, 2, 255]))
        expected = ERROR
    return bytes([version]) + pad(payload), expected


# ---- canonical base64url ----


@PROPERTY
@given(
    st.text()
    | st.text(alphabet=B64_ALPHABET)
    | st.binary(max_size=80).map(b64encode)
    | st.binary(max_size=80).map(lambda data: b64encode(data) + "=")
)
@example("")
@example("A")  # impossible length
@example("AB")  # unused bits set: the canonical spelling is "AA"
@example("AA==")
@example("+/")
def test_b64decode_round_trips_or_raises_encoding_error(text):
    try:
        data = b64decode(text)
    except EncodingError:
        return
    assert isinstance(data, bytes)
    assert b64encode(data) == text


@PROPERTY
@given(st.binary(max_size=200))
def test_b64encode_then_decode_is_identity(data):
    assert b64decode(b64encode(data)) == data


@FEWER
@given(st.none() | st.binary() | st.integers() | st.lists(st.text()) | st.floats())
def test_b64decode_refuses_non_text_with_encoding_error(value):
    with pytest.raises(EncodingError):
        b64decode(value)


# ---- public keys ----

_P = 2**255 - 19
_A = 486662


def has_small_order(u: int) -> bool:
    """[8]P is the identity (Z = 0), by x-only doubling on Curve25519 or its twist.

    Written out here so the test does not ask libsodium the question it checks.
    """
    x, z = u % _P, 1
    for _ in range(3):
        x, z = (x * x - z * z) ** 2 % _P, 4 * x * z * (x * x + _A * x * z + z * z) % _P
    return z == 0


# libsodium's list of small-order points with u below p (crypto_scalarmult/curve25519).
SMALL_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    (_P - 1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
]


def test_the_small_order_oracle_agrees_with_libsodiums_list():
    assert all(has_small_order(int.from_bytes(p, "little")) for p in SMALL_ORDER_POINTS)
    assert not has_small_order(int.from_bytes(KEYPAIR.public_key, "little"))
    assert not has_small_order(9)  # the base point


@PROPERTY
@given(
    st.text()
    | st.text(alphabet=B64_ALPHABET, min_size=43, max_size=43)
    | st.binary(min_size=31, max_size=33).map(b64encode)
)
def test_decode_public_key_returns_32_bytes_or_raises_invalid_key_error(text):
    try:
        key = decode_public_key(text)
    except InvalidKeyError:
        return
    assert isinstance(key, bytes)
    assert len(key) == 32
    assert b64encode(key) == text


@PROPERTY
@given(st.binary(min_size=32, max_size=32))
@example(bytes(31) + b"\x80")  # only the top bit
@example(_P.to_bytes(32, "little"))  # p itself, a second spelling of 0
@example((_P + 1).to_bytes(32, "little"))
@example(crypto_scalarmult_base(bytes(32)))
def test_decode_public_key_accepts_exactly_canonical_keys_of_large_order(raw):
    for point in SMALL_ORDER_POINTS:  # Hypothesis rarely draws these by chance
        assert_key_verdict(point)
    assert_key_verdict(raw)


def assert_key_verdict(raw: bytes) -> None:
    u = int.from_bytes(raw, "little")
    acceptable = u < _P and not has_small_order(u)
    try:
        key = decode_public_key(b64encode(raw))
    except InvalidKeyError:
        assert not acceptable, f"refused a good key {raw.hex()}"
        return
    assert acceptable, f"accepted a bad key {raw.hex()}"
    assert key == raw


@FEWER
@given(st.none() | st.binary() | st.integers())
def test_decode_public_key_refuses_non_text_with_invalid_key_error(value):
    with pytest.raises(InvalidKeyError):
        decode_public_key(value)


# ---- envelopes ----


@PROPERTY
@given(
    envelope=st.binary(max_size=400) | envelope_shaped(),
    secret_key=st.just(KEYPAIR.secret_key) | st.binary(max_size=40),
)
@example(envelope=b"", secret_key=KEYPAIR.secret_key)
@example(envelope=b"\x01" + bytes(305), secret_key=KEYPAIR.secret_key)  # low-order key
def test_open_envelope_raises_only_typed_errors(envelope, secret_key):
    try:
        message = open_envelope(envelope, secret_key)
    except SecretlinkCryptoError:
        return
    raise AssertionError(f"random bytes opened as {message!r}")


@SLOW_PROPERTY
@given(inner=inner_plaintexts(), outer_version=st.sampled_from([1, 1, 1, 0, 2]))
def test_sealed_inner_payloads_decode_or_raise_typed_errors(inner, outer_version):
    """The box opens, so every check after decryption sees arbitrary content."""
    plaintext, expected = inner
    envelope = bytes([outer_version]) + crypto_box_seal(plaintext, KEYPAIR.public_key)
    if outer_version != 1:
        expected = ERROR
    try:
        message = open_envelope(envelope, KEYPAIR.secret_key)
    except SecretlinkCryptoError as error:
        assert expected in (ANY, ERROR), f"refused a good envelope: {error!r}"
        return
    assert isinstance(message, Message)
    assert expected is ANY or message == expected, f"opened as {message!r}, not {expected!r}"


@PROPERTY
@given(text=utf8_text)
@example(text="")
@example(text="\x00")
@example(text="é" * 200)
def test_seal_open_round_trips_any_text(text):
    envelope = seal(text, KEYPAIR.public_key)
    assert len(envelope) in ENVELOPE_LENGTHS
    assert len(envelope) == OVERHEAD + bucket_for(5 + len(text.encode("utf-8")))
    assert open_envelope(envelope, KEYPAIR.secret_key) == Message(text)
    with pytest.raises(SecretlinkCryptoError):
        open_envelope(envelope, OTHER.secret_key)


@FEWER
@given(size=st.integers(0, MAX_TEXT_BYTES + 16))
@example(size=MAX_TEXT_BYTES)
@example(size=MAX_TEXT_BYTES + 1)
@example(size=250)  # 5 + 250 = 255: the last size of the first bucket
@example(size=251)
def test_text_sizes_up_to_the_limit_fill_the_smallest_bucket(size):
    text = "x" * size
    if size > MAX_TEXT_BYTES:
        with pytest.raises(SizeError):
            seal(text, KEYPAIR.public_key)
        return
    envelope = seal(text, KEYPAIR.public_key)
    assert len(envelope) == OVERHEAD + min(b for b in BUCKETS if b > size + 5)
    assert open_envelope(envelope, KEYPAIR.secret_key).text == text


@FEWER
@given(text=st.text(), surrogate=st.characters(categories=["Cs"]))
def test_seal_refuses_lone_surrogates_with_payload_error(text, surrogate):
    with pytest.raises(PayloadError):
        seal(text + surrogate, KEYPAIR.public_key)


# ---- padding ----


@PROPERTY
@given(st.binary(max_size=600) | long_bytes(0, MAX_PADDED - 1))
@example(b"")
@example(bytes(255))
@example(bytes(MAX_PADDED - 1))
def test_unpad_inverts_pad(payload):
    padded = pad(payload)
    assert len(padded) == bucket_for(len(payload))
    assert len(padded) in BUCKETS
    assert unpad(padded) == payload


@FEWER
@given(long_bytes(MAX_PADDED, MAX_PADDED + 300))
def test_pad_refuses_payloads_beyond_the_largest_bucket(payload):
    with pytest.raises(SizeError):
        pad(payload)


@PROPERTY
@given(
    st.binary(max_size=600)
    | st.sampled_from(BUCKETS[:2]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    | st.tuples(st.binary(max_size=300), st.sampled_from(BUCKETS[:3])).map(
        lambda pair: pair[0] + b"\x80" + bytes(max(0, pair[1] - len(pair[0]) - 1))
    )
)
def test_unpad_accepts_only_canonical_padding(padded):
    try:
        payload = unpad(padded)
    except PaddingError:
        return
    assert pad(payload) == padded


# ---- key files ----


@PROPERTY
@given(
    st.text(max_size=300)
    | st.binary(max_size=300)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {
            "format": st.just("secretlink-key") | json_values,
            "version": st.sampled_from([1, 1.0, True, "1", 2, 0]) | json_values,
            "public_key": st.just(KEYPAIR.public_key_text)
            | st.just(OTHER.public_key_text)
            | json_values,
            "secret_key": st.just(b64encode(KEYPAIR.secret_key))
            | st.binary(max_size=40).map(b64encode)
            | json_values,
        },
        optional={"server": st.none() | json_values},
    ).map(json.dumps)
)
def test_load_key_file_raises_only_key_file_error(data):
    try:
        key_file = load_key_file(data)
    except KeyFileError:
        return
    keypair = key_file.keypair
    assert crypto_scalarmult_base(keypair.secret_key) == keypair.public_key
    assert key_file.server is None or isinstance(key_file.server, str)


# Strings shaped like origins: most are canonical origins, some are not (an underscore,
# a long label, a default port), and those must be refused.
ORIGIN_LIKE = r"https?://([a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(:[1-9][0-9]{0,4})?"


@FEWER
@given(server=st.none() | st.text() | st.from_regex(ORIGIN_LIKE, fullmatch=True))
def test_key_files_round_trip(server):
    """Any origin round-trips; any other non-empty server is refused (SPEC 6, rule 9)."""
    text = dump_key_file(KeyFile(KEYPAIR, server))
    if server and not keyfile.is_origin(server):
        with pytest.raises(KeyFileError):
            load_key_file(text)
        return
    assert load_key_file(text) == KeyFile(KEYPAIR, server or None)


# ---- the API: a client's mistake is a 4xx, never a 5xx ----


def make_api(tmp_path):
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            base_url="http://localhost",
            rate_limits_enabled=False,
            pow_difficulty=0,
        )
    )
    client = app.test_client()
    register(client, KEYPAIR)
    return app, client


def count_messages(app) -> int:
    with app.extensions["secretlink.storage"]._session() as session:
        return session.query(MessageRow).count()


def test_posting_arbitrary_bodies_never_answers_5xx(tmp_path):
    app, client = make_api(tmp_path)
    url = f"/api/v1/inboxes/{KEYPAIR.public_key_text}/messages"
    created = []

    @PROPERTY
    @given(
        body=st.one_of(
            json_values.map(lambda value: json.dumps({"ciphertext": value})),
            st.text().map(lambda text: json.dumps({"ciphertext": text})),
            envelope_shaped().map(lambda env: json.dumps({"ciphertext": b64encode(env)})),
            st.binary(max_size=200).map(lambda raw: json.dumps({"ciphertext": b64encode(raw)})),
            json_values.map(json.dumps),
            st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
            st.binary(max_size=200),
        ),
        content_type=st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", None]
        ),
    )
    @example(body=json.dumps({"ciphertext": "A" * 100_000}), content_type="application/json")
    @example(body=b"\xff\xfe{}", content_type="application/json")
    @example(body='{"ciphertext": "\\ud800"}', content_type="application/json")
    def post(body, content_type):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(url, data=body, headers=headers)
        assert response.status_code in (201, 400, 413, 415), response.get_data(as_text=True)
        answer = response.get_json()
        if response.status_code == 201:
            created.append(answer["id"])
        else:
            assert answer["code"]
            assert answer["error"]

    try:
        post()
        # Nothing half-written: exactly the acknowledged envelopes are stored.
        assert count_messages(app) == len(created)
    finally:
        app.extensions["secretlink.storage"].engine.dispose()


def test_arbitrary_inbox_keys_in_the_path_never_answer_5xx(tmp_path):
    app, client = make_api(tmp_path)
    body = {"ciphertext": b64encode(seal("hello", KEYPAIR.public_key))}

    @FEWER
    @given(key=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\")))
    def post(key):
        response = client.post(f"/api/v1/inboxes/{quote(key, safe='')}/messages", json=body)
        assert 400 <= response.status_code < 500 or (
            response.status_code == 201 and key == KEYPAIR.public_key_text
        ), response.get_data(as_text=True)

    try:
        post()
    finally:
        app.extensions["secretlink.storage"].engine.dispose()


# ---- found while writing the properties above (deep nesting is too rare to draw) ----

DEEPLY_NESTED = "[" * 5000 + "]" * 5000


def test_load_key_file_refuses_deeply_nested_json_with_key_file_error():
    with pytest.raises(KeyFileError):
        load_key_file("[" * 2000 + "]" * 2000)


def test_deeply_nested_json_body_is_a_400_not_a_500(tmp_path):
    app, client = make_api(tmp_path)
    try:
        for path in (
            f"/api/v1/inboxes/{KEYPAIR.public_key_text}/messages",
            "/api/v1/auth/challenge",
            "/api/v1/auth/token",
        ):
            response = client.post(path, data=DEEPLY_NESTED, content_type="application/json")
            assert response.status_code == 400, (path, response.get_json())
    finally:
        app.extensions["secretlink.storage"].engine.dispose()
