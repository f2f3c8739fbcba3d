"""What a copy of the database shows: no time finer than the documented minute.

docs/THREAT-MODEL.md ("What a database copy shows") promises that nothing stored
places a message or a sign-in finer than the minute. This test does what the
server does (sign-ins, inbox creation, messages, each behind its proof of work),
then reads every table of the database and checks every column against STORED
below. A table or column that is not listed there fails the test: whoever adds
one (files, queues, ...) must say here what it stores and how coarse it is, and
extend `exercise` so that the new rows exist when the tables are read.
"""

import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import TEST_ORIGIN, creation_proof, get_token, register
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from secretlink.client.http import parse_link
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.attachments import encrypt_blob, new_attachment
from secretlink.crypto.envelope import Message
from secretlink.crypto.pow import solve
from secretlink.settings import Settings
from secretlink.store.inbox_settings import InboxSettingsStore
from secretlink.store.storage import utcnow


def as_time(value: object) -> datetime:
    """A stored time as the database hands it over (SQLite: text; PostgreSQL: a datetime)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def minute(value: object) -> bool:
    moment = as_time(value)
    return moment.second == 0 and moment.microsecond == 0


def day(value: object) -> bool:
    moment = as_time(value)
    return minute(moment) and moment.hour == 0 and moment.minute == 0


def anything(_value: object) -> bool:
    return True


# table -> column -> (check every value must pass, what the column reveals). The
# "what" is the documentation; the check is what holds it to its word.
STORED: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "inboxes": {
        "public_key": (anything, "the inbox's key (it is in the inbox's link)"),
        "prompt": (anything, "the owner's prompt, shown to every sender"),
        "created_on": (day, "the day the inbox was created"),
        "message_count": (anything, "how many messages it holds now (its quota's counter)"),
        "stored_bytes": (anything, "the envelope bytes it holds now (its quota's counter)"),
    },
    "instance_usage": {
        "id": (anything, "always 1: the one row"),
        "stored_bytes": (anything, "the envelope bytes the instance holds now"),
    },
    "messages": {
        "seq": (
            anything,
            "one counter for the instance: which message arrived first, never when",
        ),
        "id": (anything, "random"),
        "inbox_key": (anything, "the inbox"),
        "received_at": (minute, "the minute of arrival"),
        "envelope": (anything, "ciphertext"),
    },
    "inbox_settings": {
        "inbox_key": (anything, "the inbox"),
        "paused": (anything, "whether its owner paused it"),
        "retention_days": (anything, "the owner's retention: 1, 7, 30, 90 or none"),
        "hourly_cap": (anything, "the owner's cap on messages per hour, or none"),
        "accepts_replies": (anything, "the owner's choice"),
        "accepts_attachments": (anything, "the owner's choice"),
        "moved_to": (anything, "the key a rotation moved it to: links two inboxes"),
        "disabled": (anything, "whether the operator disabled it"),
        "disabled_reason": (anything, "the operator's note"),
        "disabled_on": (lambda v: v is None or day(v), "the day the operator disabled it"),
    },
    "notify_targets": {
        "inbox_key": (anything, "an inbox whose owner wants notifications"),
        "sealed": (anything, "where and how, sealed with a key the database does not hold"),
    },
    "notify_due": {
        "inbox_key": (anything, "an inbox waiting for its notification"),
        "due_at": (minute, "the minute it is due: a random while after a message came"),
        "claimed": (anything, "whether a sender holds it now"),
    },
    "blobs": {
        "id": (anything, "random, chosen by the sender"),
        "inbox_key": (anything, "the inbox"),
        "length": (anything, "the padded blob length: its file's size to within 12 %"),
        "complete": (anything, "whether the whole blob arrived"),
        "message_id": (anything, "the message that lists it (none while uploading)"),
        "started_at": (minute, "the minute its upload started"),
    },
    "used_nonces": {
        "nonce": (anything, "a hash of a spent challenge or puzzle nonce, random-looking"),
        "expires_at": (minute, "rounded up to the minute: a sign-in or send some minutes before"),
    },
}
# What an object store holds of a blob (SECRETLINK_BLOB_STORE=s3://...), as the store
# lists and describes it. Its times are its own: the server cannot coarsen them.
OBJECT_STORE: dict[str, str] = {
    "Key": "`<prefix>/<inbox key>/<blob id>`: the inbox and the random blob id",
    "Size": "the padded blob length, as in the blobs table",
    "LastModified": "the store's own clock, to the second or finer: when the upload completed",
    "ETag": "a hash of the object's bytes (ciphertext)",
    "ChecksumAlgorithm": "the store's checksum of the bytes (ciphertext)",
    "ChecksumType": "the store's checksum of the bytes (ciphertext)",
    "StorageClass": "the store's class for the object",
    "ContentType": "always application/octet-stream (asked with the object)",
    "Metadata": "none (asked with the object)",
}
SCHEMA_TABLES = {"alembic_version"}  # Alembic's own bookkeeping: one revision string
# A clock time, in any text a column holds (SQLite stores datetimes as text).
CLOCK_IN_TEXT = re.compile(r"\d{2}:\d{2}:(\d{2})(?:\.(\d+))?")
SENDS, SIGN_INS = 6, 3


@pytest.fixture
def app(tmp_path, database_url, make_app):
    # The proof-of-work gate on, cheaply: spent puzzles are among what is stored.
    settings = Settings(
        data_dir=tmp_path / "data",
        base_url=TEST_ORIGIN,
        database_url=database_url,
        pow_difficulty=2,
        rate_limits_enabled=False,
    )
    return make_app(settings)


def exercise(app) -> None:
    """Everything that stores something: extend this with each new kind of row."""
    client = app.test_client()
    keypair = generate_keypair()
    owner = bearer(register(client, keypair, prompt="hello"))
    for _ in range(SIGN_INS):
        get_token(client, keypair)
    # An inbox created with its puzzle, then deleted: it leaves a spent nonce only.
    gone = generate_keypair()
    token = get_token(client, gone)
    url = f"/api/v1/inboxes/{gone.public_key_text}"
    assert (
        client.put(url, json=creation_proof(client, gone), headers=bearer(token)).status_code == 201
    )
    assert client.delete(url, headers=bearer(token)).status_code == 204
    for number in range(SENDS):
        base = f"/api/v1/inboxes/{keypair.public_key_text}"
        puzzle = client.post(f"{base}/puzzle").get_json()
        body = {
            "ciphertext": b64encode(seal(f"message {number}", keypair.public_key)),
            "puzzle": puzzle["puzzle"],
            "solution": solve(puzzle["puzzle"], puzzle["difficulty"]),
        }
        assert client.post(f"{base}/messages", json=body).status_code == 201
        if number == 0:
            # Notifications on after the first message: the next ones mark the inbox due.
            hook = {"webhook": "https://ntfy.example/topic", "max_delay_minutes": 15}
            assert client.put(f"{base}/notifications", json=hook, headers=owner).status_code == 200
    exercise_attachments(client, keypair, owner)
    # Settings changed, the link rotated, and the new inbox disabled by the operator.
    token = get_token(client, keypair)
    changes = {"paused": True, "retention_days": 7, "hourly_cap": 5}
    assert client.patch(f"{base}/settings", json=changes, headers=bearer(token)).status_code == 200
    moved = generate_keypair()
    rotation = {"new_public_key": moved.public_key_text, "new_token": register(client, moved)}
    assert client.post(f"{base}/rotate", json=rotation, headers=bearer(token)).status_code == 200
    store = InboxSettingsStore(app.extensions["secretlink.storage"].engine)
    assert store.disable(moved.public_key_text, "a reason")


def exercise_attachments(client, keypair, owner: dict) -> None:
    """A file sent with a message, and an upload left half-way: rows and files."""
    base = f"/api/v1/inboxes/{keypair.public_key_text}"
    on = {"accepts_attachments": True}
    assert client.patch(f"{base}/settings", json=on, headers=owner).status_code == 200
    entry = new_attachment("a.txt", "text/plain", 3000)
    blob = b"".join(encrypt_blob(entry, [os.urandom(3000)]))
    for data in (blob, blob[:1000]):
        blob_id = b64encode(os.urandom(16) if data is not blob else entry.blob_id)
        length = entry.padded_length
        puzzle = client.post(f"{base}/uploads/puzzle", json={"length": length}).get_json()
        body = {"blob_id": blob_id, "length": length, **solved(puzzle)}
        started = client.post(f"{base}/uploads", json=body)
        assert started.status_code == 201, started.get_json()
        headers = {
            **bearer(started.get_json()["upload"]),
            "Upload-Offset": "0",
            "Content-Type": "application/octet-stream",
        }
        assert (
            client.patch(f"{base}/uploads/{blob_id}", data=data, headers=headers).status_code == 200
        )
    envelope = seal(Message("a file", attachments=(entry,)), keypair.public_key)
    puzzle = client.post(f"{base}/puzzle").get_json()
    body = {"ciphertext": b64encode(envelope), "attachments": [b64encode(entry.blob_id)]}
    assert client.post(f"{base}/messages", json={**body, **solved(puzzle)}).status_code == 201


def solved(puzzle: dict) -> dict:
    return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}


def assert_file_times_coarse(data_dir: Path, at_least: int = 4) -> None:
    """The blobs' files and folders: modified on a whole minute. (Access and change
    times are the file system's: every read sets the one, every write the other, and
    no program can set a change time. docs/THREAT-MODEL.md says so, and how to mount.)"""
    folder = data_dir / "blobs"
    paths = [folder, *folder.rglob("*")]
    assert len(paths) >= at_least, "exercise() stores no blob file: extend it"
    for path in paths:
        assert path.stat().st_mtime % 60 == 0, f"{path}: modified {path.stat().st_mtime}"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def read_tables(app) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table's columns and rows, in the order the database returns them unasked."""
    return read_engine_tables(app.extensions["secretlink.storage"].engine)


def read_engine_tables(engine) -> dict[str, tuple[list[str], list[tuple]]]:
    tables = {}
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            result = connection.execute(text(f'SELECT * FROM "{table}"'))
            tables[table] = (list(result.keys()), [tuple(row) for row in result])
    return tables


def test_every_stored_value_is_no_finer_than_documented(app):
    exercise(app)
    assert_no_finer_than_documented(read_tables(app))
    assert_file_times_coarse(Path(app.config["SECRETLINK"].data_dir))


def test_an_object_store_holds_no_more_than_documented(tmp_path, make_app, s3_store):
    """With the blobs in a bucket: the database and the data directory as above (the
    directory keeps only uploads under way), and each object as OBJECT_STORE says."""
    from secretlink.store.blob_backends import make_client, parse_s3_url

    app = make_app(
        Settings(
            data_dir=tmp_path / "data",
            base_url=TEST_ORIGIN,
            database_url=f"sqlite:///{tmp_path / 'secretlink.sqlite3'}",
            pow_difficulty=2,
            rate_limits_enabled=False,
            **s3_store,
        )
    )
    exercise(app)
    tables = read_tables(app)
    assert_no_finer_than_documented(tables)
    # The folders and the partial file of the upload left half-way.
    assert_file_times_coarse(Path(app.config["SECRETLINK"].data_dir), at_least=3)
    columns, rows = tables["blobs"]
    complete = {
        f"blobs/{row['inbox_key']}/{row['id']}": row["length"]
        for row in (dict(zip(columns, values, strict=True)) for values in rows)
        if row["complete"]
    }
    bucket = parse_s3_url(s3_store["blob_store"]).bucket
    client = make_client(s3_store["s3_endpoint_url"])
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listed) == len(complete) == 1  # the sent file; the half-way one is not there
    for item in listed:
        assert set(item) <= set(OBJECT_STORE), "the listing shows more: document it"
        assert item["Size"] == complete[item["Key"]]
        head = client.head_object(Bucket=bucket, Key=item["Key"])
        assert head["ContentType"] == "application/octet-stream"
        assert head["Metadata"] == {}


def test_a_real_server_s_database_is_no_finer_than_documented(tmp_path):
    """The same check on what `secretlink serve` (granian, two workers, the group
    commit, the purge thread) wrote for real senders and owners over HTTP."""
    from test_serve import serving

    from secretlink.client.http import InboxClient, send

    # The notification senders look once at start, then not again during the test:
    # the inbox's due row must still be there to be read.
    env = {
        "SECRETLINK_POW_DIFFICULTY": "2",
        "SECRETLINK_WORKERS": "2",
        "SECRETLINK_NOTIFY_INTERVAL": "3600",
    }
    with serving(tmp_path, env=env) as served:
        owner = InboxClient(served.url, generate_keypair())
        link = parse_link(owner.register("hello")["link"])
        hook = {"webhook": "https://ntfy.example/topic", "max_delay_minutes": 15}
        owner.api.call("PUT", f"{owner.base}/notifications", json=hook, token=owner.token())
        gone = InboxClient(served.url, generate_keypair())
        gone.register("")
        gone.api.call("DELETE", gone.base, token=gone.token())
        for number in range(SENDS):
            send(link, f"message {number}")
        send_file_over_http(served.url, owner, link)
        for _ in range(SIGN_INS):
            owner._token = None  # a fresh sign-in each time
            assert len(list(owner.messages())) == SENDS + 1  # and the one with a file
        # Settings changed, and the link rotated to a new inbox.
        changes = {"paused": True, "retention_days": 7}
        owner.api.call("PATCH", f"{owner.base}/settings", json=changes, token=owner.token())
        moved = InboxClient(served.url, generate_keypair())
        moved.register("")
        rotation = {"new_public_key": moved.keypair.public_key_text, "new_token": moved.token()}
        owner.api.call("POST", f"{owner.base}/rotate", json=rotation, token=owner.token())
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'secretlink.sqlite3'}")
    try:
        assert_no_finer_than_documented(read_engine_tables(engine))
    finally:
        engine.dispose()
    assert_file_times_coarse(tmp_path / "data")


def send_file_over_http(url: str, owner, link) -> None:
    """As exercise_attachments, over HTTP: a sent file and an upload left half-way."""
    from secretlink.client.http import post_envelope

    changes = {"accepts_attachments": True}
    owner.api.call("PATCH", f"{owner.base}/settings", json=changes, token=owner.token())
    entry = new_attachment("a.txt", "text/plain", 3000)
    blob = b"".join(encrypt_blob(entry, [os.urandom(3000)]))
    api = owner.api
    base = f"/api/v1/inboxes/{link.public_key_text}"
    for blob_id, data in (
        (b64encode(entry.blob_id), blob),
        (b64encode(os.urandom(16)), blob[:1000]),
    ):
        puzzle = api.call("POST", f"{base}/uploads/puzzle", json={"length": len(blob)})
        body = {"blob_id": blob_id, "length": len(blob), **solved(puzzle)}
        started = api.call("POST", f"{base}/uploads", json=body)
        response = api.http.patch(
            f"{url}{base}/uploads/{blob_id}",
            data=data,
            headers={
                **bearer(started["upload"]),
                "Upload-Offset": "0",
                "Content-Type": "application/octet-stream",
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
    envelope = seal(Message("a file", attachments=(entry,)), link.public_key)
    post_envelope(link, envelope, [b64encode(entry.blob_id)])


def assert_no_finer_than_documented(tables: dict[str, tuple[list[str], list[tuple]]]) -> None:
    assert set(tables) - SCHEMA_TABLES == set(STORED), "list every new table in STORED"
    now = utcnow()
    for table, (columns, rows) in tables.items():
        if table in SCHEMA_TABLES:
            continue
        assert set(columns) == set(STORED[table]), f"list every new column of {table} in STORED"
        assert rows, f"exercise() stores no row in {table}: extend it"
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                check, what = STORED[table][column]
                assert check(value), f"{table}.{column} = {value!r}; documented: {what}"
                assert not looks_like_a_precise_time(value, now), f"{table}.{column} = {value!r}"


def looks_like_a_precise_time(value: object, now: datetime) -> bool:
    """A Unix time near now that is not a whole minute, or text with a clock time."""
    if isinstance(value, datetime):
        return not minute(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value - now.timestamp()) < 86_400 and value % 60 != 0
    if isinstance(value, str):
        return any(
            seconds != "00" or fraction.strip("0")
            for seconds, fraction in CLOCK_IN_TEXT.findall(value)
        )
    return False


def test_spent_nonces_are_all_kept_and_hashed(app):
    exercise(app)
    _, rows = read_tables(app)["used_nonces"]
    # Sign-ins (one challenge each: the registration's, the two creations' and the
    # later ones), two inbox creations and the messages, each spent once; then the
    # settings' sign-in and the rotation's new inbox (a sign-in and a creation); and
    # the attachments' two uploads and their message.
    assert len(rows) == (1 + 1 + SIGN_INS) + 2 + SENDS + 3 + 3
    assert {len(bytes(nonce)) for nonce, _ in rows} == {32}  # the same for every kind
    assert all(as_time(expires) > utcnow() for _, expires in rows)


# SQLite only: PostgreSQL keeps rows where they were written; what that shows is in
# docs/THREAT-MODEL.md (the order of arrivals, never their time).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_spent_nonces_are_stored_in_key_order_not_arrival_order(app, database_url):
    """The order of spent rows must not map them onto messages.seq (on SQLite, the
    table has no rowid: a plain SELECT gives them in the order of their hashed key)."""
    exercise(app)
    _, rows = read_tables(app)["used_nonces"]
    # A plain SELECT may read the expiry index: whole minutes, then the hashed key.
    order = [(as_time(expires), bytes(nonce)) for nonce, expires in rows]
    assert order == sorted(order)
    engine = app.extensions["secretlink.storage"].engine
    with engine.connect() as connection:
        # No hidden rowid counts insertions: the table is a tree of its hashed keys.
        with pytest.raises(OperationalError):
            connection.execute(text("SELECT rowid FROM used_nonces"))
        ddl = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'used_nonces'")
        ).scalar_one()
    assert "WITHOUT ROWID" in ddl.upper()
