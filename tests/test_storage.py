"""Storage on SQLite and PostgreSQL: paging, ownership, single use, whole transactions."""

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from secretlink.crypto import generate_keypair
from secretlink.store.quotas import QuotaExceeded, Quotas, Usage
from secretlink.store.spent_nonces import Spend
from secretlink.store.storage import (
    MessageRow,
    PuzzleUsed,
    Storage,
    UsedNonceRow,
    expiry,
    spend_of,
    spent_nonce_key,
    utcnow,
)


@pytest.fixture
def storage(database_url) -> Iterator[Storage]:
    storage = Storage.from_url(database_url)
    storage.create_schema()
    yield storage
    storage.engine.dispose()


def new_inbox(storage: Storage) -> str:
    public_key = generate_keypair().public_key_text
    assert storage.save_inbox(public_key, "")
    return public_key


def add(storage: Storage, public_key: str, envelope: bytes = b"sealed") -> str:
    message_id = storage.add_message(public_key, envelope)
    assert message_id is not None
    return message_id


def listed_ids(storage: Storage, public_key: str, limit: int = 50, before: str | None = None):
    page = storage.list_messages(public_key, limit, before)
    return None if page is None else [message.id for message in page]


def count(storage: Storage, model) -> int:
    with storage.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


def test_saving_an_inbox_again_updates_its_prompt(storage):
    public_key = generate_keypair().public_key_text
    assert storage.save_inbox(public_key, "first") is True
    assert storage.save_inbox(public_key, "second") is False
    assert storage.get_inbox(public_key).prompt == "second"


def test_pages_run_newest_first_and_stay_within_the_inbox(storage):
    mine, other = new_inbox(storage), new_inbox(storage)
    ids = []
    for i in range(5):
        ids.append(add(storage, mine, bytes([i])))
        add(storage, other)  # interleaved, so a page must skip rows of another inbox
    newest_first = ids[::-1]
    assert listed_ids(storage, mine, 2) == newest_first[0:2]
    assert listed_ids(storage, mine, 2, before=newest_first[1]) == newest_first[2:4]
    assert listed_ids(storage, mine, 2, before=newest_first[3]) == newest_first[4:]
    assert listed_ids(storage, mine, 2, before=newest_first[4]) == []
    assert [m.envelope for m in storage.list_messages(mine, 50)] == [
        bytes([i]) for i in (4, 3, 2, 1, 0)
    ]


def test_a_cursor_must_name_a_message_of_the_same_inbox(storage):
    mine, other = new_inbox(storage), new_inbox(storage)
    add(storage, mine)
    theirs = add(storage, other)
    assert listed_ids(storage, mine, before=theirs) is None
    assert listed_ids(storage, mine, before="no-such-message") is None


def test_a_message_is_deleted_only_through_its_own_inbox(storage):
    mine, other = new_inbox(storage), new_inbox(storage)
    message_id = add(storage, mine)
    assert storage.delete_message(other, message_id) is False
    assert listed_ids(storage, mine) == [message_id]
    assert storage.delete_message(mine, message_id) is True
    assert storage.delete_message(mine, message_id) is False
    assert listed_ids(storage, mine) == []


def test_no_message_is_stored_for_an_unknown_inbox(storage):
    assert storage.add_message(generate_keypair().public_key_text, b"sealed") is None
    assert count(storage, MessageRow) == 0


def test_a_nonce_is_spent_once(storage):
    nonce = secrets.token_bytes(32)
    assert storage.use_nonce(nonce, expiry(60)) is True
    assert storage.use_nonce(nonce, expiry(60)) is False
    assert storage.use_nonce(secrets.token_bytes(32), expiry(60)) is True


def test_expired_nonces_are_purged_by_the_next_use(storage):
    expired, fresh = secrets.token_bytes(32), secrets.token_bytes(32)
    # Expiries are kept rounded up to the minute: this one is past even so.
    assert storage.use_nonce(expired, utcnow() - timedelta(seconds=61))
    assert storage.use_nonce(fresh, expiry(60))
    with storage.engine.connect() as connection:
        assert connection.scalars(select(UsedNonceRow.nonce)).all() == [spent_nonce_key(fresh)]


def test_a_nonce_is_kept_until_the_minute_after_its_expiry(storage):
    """Rounding the expiry up, never down: a purge cannot make a live nonce usable again."""
    nonce = secrets.token_bytes(32)
    assert storage.use_nonce(nonce, utcnow() + timedelta(seconds=1))
    with storage.engine.connect() as connection:
        [kept] = connection.scalars(select(UsedNonceRow.expires_at)).all()
    assert kept.second == 0 and kept.microsecond == 0
    assert kept > utcnow()
    assert storage.use_nonce(nonce, utcnow() + timedelta(seconds=1)) is False


def test_deleting_an_inbox_removes_its_messages_only(storage):
    mine, other = new_inbox(storage), new_inbox(storage)
    add(storage, mine)
    add(storage, mine)
    kept = add(storage, other)
    assert storage.delete_inbox(mine) is True
    assert storage.get_inbox(mine) is None
    assert count(storage, MessageRow) == 1
    assert listed_ids(storage, other) == [kept]
    assert storage.delete_inbox(mine) is False


def test_an_inbox_deletion_that_fails_midway_deletes_nothing(storage):
    """Its messages go first; if the inbox row then cannot go, they must come back."""
    mine = new_inbox(storage)
    message_id = add(storage, mine)

    def fail_on_inbox_delete(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("DELETE FROM inboxes"):
            raise RuntimeError("the database went away")

    event.listen(storage.engine, "before_cursor_execute", fail_on_inbox_delete)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            storage.delete_inbox(mine)
    finally:
        event.remove(storage.engine, "before_cursor_execute", fail_on_inbox_delete)
    assert storage.get_inbox(mine) is not None
    assert listed_ids(storage, mine) == [message_id]


def test_a_failed_insert_leaves_no_row_and_storage_keeps_working(storage, monkeypatch):
    mine = new_inbox(storage)
    monkeypatch.setattr(secrets, "token_urlsafe", lambda _n: "the-same-id-twice")
    first = add(storage, mine)
    with pytest.raises(IntegrityError):
        storage.add_message(mine, b"second")
    monkeypatch.undo()
    assert count(storage, MessageRow) == 1
    # The failed transaction was rolled back, not left open on a pooled connection.
    second = add(storage, mine)
    assert listed_ids(storage, mine) == [second, first]


def test_deleted_envelopes_do_not_linger_in_the_sqlite_file(tmp_path):
    """secure_delete: once deleted and checkpointed, the bytes are gone from the file."""
    from sqlalchemy import text

    from secretlink.store.storage import Storage

    storage = Storage.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    storage.create_schema()
    storage.save_inbox("k" * 43, "")
    marker = b"ENVELOPE-MARKER-" * 64
    message_id = storage.add_message("k" * 43, marker)

    def checkpoint():
        with storage.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    checkpoint()
    with storage.engine.connect() as connection:
        # Some SQLite builds (Debian's) default to it; the service does not rely on that.
        assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1
    assert marker[:32] in (tmp_path / "db.sqlite3").read_bytes()  # it was on disk
    assert storage.delete_message("k" * 43, message_id)
    checkpoint()
    storage.engine.dispose()
    assert marker[:32] not in (tmp_path / "db.sqlite3").read_bytes()


def test_concurrent_messages_are_committed_together_and_each_settled(storage):
    """Group commit: many writers at once, one of them to an unknown inbox. Every
    known-inbox message is stored exactly once; the stray one alone is refused."""
    import threading

    from secretlink.store.storage import MessageRow

    public_key = new_inbox(storage)
    results: dict[int, str | None] = {}
    barrier = threading.Barrier(24)

    def writer(number: int) -> None:
        barrier.wait()
        target = "u" * 43 if number == 7 else public_key
        results[number] = storage.add_message(target, f"sealed {number}".encode())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.pop(7) is None
    assert all(results.values())
    assert sorted(listed_ids(storage, public_key)) == sorted(results.values())
    assert count(storage, MessageRow) == 23


def test_messages_awaited_on_an_event_loop_share_commits_with_threads(storage):
    """add_message_async: callers on an event loop and in threads go into the same
    batches; each learns its own outcome (stored, unknown inbox, puzzle used), and the
    loop is woken once per batch rather than once per message."""
    import asyncio
    import threading

    from secretlink.store.storage import MessageRow

    public_key = new_inbox(storage)
    spend = new_spend()
    threaded: list[str | None] = []

    def in_a_thread() -> None:
        threaded.append(storage.add_message(public_key, b"from a thread"))

    async def on_the_loop() -> list:
        loop = asyncio.get_running_loop()
        wakes = 0
        original = loop.call_soon_threadsafe

        def counted(*args, **kwargs):
            nonlocal wakes
            wakes += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counted
        threads = [threading.Thread(target=in_a_thread) for _ in range(4)]
        for thread in threads:
            thread.start()
        outcomes = await asyncio.gather(
            *(storage.add_message_async(public_key, f"sealed {n}".encode()) for n in range(20)),
            storage.add_message_async("u" * 43, b"to nobody"),
            storage.add_message_async(public_key, b"pays", spend),
            storage.add_message_async(public_key, b"pays again", spend),
            return_exceptions=True,
        )
        for thread in threads:
            thread.join()
        return [outcomes, wakes]

    outcomes, wakes = asyncio.run(on_the_loop())
    *stored, unknown, paid, paid_again = outcomes
    assert all(isinstance(message_id, str) for message_id in [*stored, paid, *threaded])
    assert unknown is None
    assert isinstance(paid_again, PuzzleUsed)
    assert count(storage, MessageRow) == 25
    assert wakes < 23  # batches, not one wake per message


def new_spend() -> Spend:
    return spend_of(secrets.token_bytes(16), expiry(600))


def test_a_message_spends_its_puzzle_in_its_own_transaction(storage):
    """The puzzle goes with the message's commit: good for one message, then refused
    (the message with it is not stored), and a spend recorded alone is refused too."""
    public_key = new_inbox(storage)
    spend = new_spend()
    first = storage.add_message(public_key, b"sealed", spend)
    assert first is not None
    with pytest.raises(PuzzleUsed):
        storage.add_message(public_key, b"again", spend)
    assert listed_ids(storage, public_key) == [first]
    assert storage.spend(spend) is False
    # And the other way: a puzzle spent elsewhere first pays for no message.
    elsewhere = new_spend()
    assert storage.spend(elsewhere) is True
    with pytest.raises(PuzzleUsed):
        storage.add_message(public_key, b"late", elsewhere)
    assert count(storage, MessageRow) == 1


def test_a_message_with_files_spends_its_puzzle_in_the_callers_transaction(storage):
    """secretlink.store.blobs stores a message and links its files in one transaction:
    the puzzle is spent there too, and a refusal rolls all of it back."""
    public_key = new_inbox(storage)
    spend = new_spend()
    with storage.engine.begin() as connection:
        assert storage.insert_message(connection, public_key, b"sealed", spend) is not None
    with pytest.raises(PuzzleUsed), storage.engine.begin() as connection:
        storage.insert_message(connection, public_key, b"again", spend)
    assert count(storage, MessageRow) == 1


def test_the_writer_stores_times_in_sqlalchemys_text_format(tmp_path):
    """SQLite keeps times as text and compares them as text: the writer's own
    statements must write what SQLAlchemy writes, or a boundary minute compares
    wrong ('...:00' sorts before '...:00.000000')."""
    storage = Storage.from_url(f"sqlite:///{tmp_path / 'times.sqlite3'}")
    storage.create_schema()
    try:
        public_key = new_inbox(storage)
        storage.add_message(public_key, b"sealed", new_spend())
        assert storage.spend(new_spend())  # through the ORM, for comparison
        with storage.engine.connect() as connection:
            received = connection.exec_driver_sql("SELECT received_at FROM messages").scalars()
            expiries = connection.exec_driver_sql("SELECT expires_at FROM used_nonces").scalars()
            texts = [*received, *expiries]
        assert len(texts) == 3
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00\.000000", text) for text in texts)
    finally:
        storage.engine.dispose()


def test_markers_run_in_the_storing_transaction_and_cannot_fail_it(storage):
    """on_stored (the notifications' due marks) runs in the transaction that stores
    the messages, told their inboxes, and its writes commit with them; a marker that
    fails is logged and undone alone (a savepoint: on PostgreSQL a failed statement
    would otherwise spoil the whole transaction), and the message is stored all the
    same."""
    heard: list[list[str]] = []

    def set_prompt(cursor, inbox_keys: list[str], prompt: str) -> None:
        # Keys are base64url (no quotes): written in, since the drivers' parameter
        # styles differ.
        for key in inbox_keys:
            cursor.execute(f"UPDATE inboxes SET prompt = '{prompt}' WHERE public_key = '{key}'")

    def marks(cursor, inbox_keys: list[str]) -> None:
        heard.append(inbox_keys)
        set_prompt(cursor, inbox_keys, "marked")

    def fails(cursor, inbox_keys: list[str]) -> None:
        set_prompt(cursor, inbox_keys, "undone")
        cursor.execute("SELECT * FROM no_such_table")

    storage.on_stored(marks)
    storage.on_stored(fails)
    public_key = new_inbox(storage)
    assert storage.add_message(public_key, b"sealed") is not None
    assert heard == [[public_key]]
    assert storage.get_inbox(public_key).prompt == "marked"
    assert len(listed_ids(storage, public_key)) == 1
    assert storage.add_message("u" * 43, b"nobody's") is None  # refused: nobody marked
    assert heard == [[public_key]]


def test_concurrent_messages_with_one_puzzle_store_one(storage):
    """Twelve senders at once with the same solved puzzle (in one batch or several,
    on SQLite or PostgreSQL): exactly one message is stored."""
    import threading

    public_key = new_inbox(storage)
    spend = new_spend()
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def sender(number: int) -> None:
        barrier.wait()
        try:
            storage.add_message(public_key, f"sealed {number}".encode(), spend)
            outcomes.append("stored")
        except PuzzleUsed:
            outcomes.append("used")

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stored"] + ["used"] * 11
    assert count(storage, MessageRow) == 1


def test_a_message_refused_where_it_is_stored_keeps_its_puzzle(database_url):
    """The view looked at the quota before the inbox filled up; the writer refuses the
    message, and its puzzle is not spent: the sender can use it once there is room."""
    storage = Storage.from_url(database_url, Quotas(inbox_messages=1))
    storage.create_schema()
    try:
        public_key = new_inbox(storage)
        first = add(storage, public_key)
        spend = new_spend()
        with pytest.raises(QuotaExceeded):
            storage.add_message(public_key, b"sealed", spend)
        assert storage.delete_message(public_key, first)
        assert storage.add_message(public_key, b"sealed", spend) is not None
    finally:
        storage.engine.dispose()


@pytest.mark.postgresql
def test_messages_are_stored_again_after_the_database_dropped_the_connection(postgres_admin):
    """A PostgreSQL restart (here: this storage's sessions killed) fails at most the
    messages in flight; the next one is stored on a new connection."""
    import contextlib

    from conftest import fresh_postgres_schema
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    name = f"secretlink-test-{secrets.token_hex(4)}"
    with fresh_postgres_schema(postgres_admin) as url:
        url = make_url(url).update_query_dict({"application_name": name})
        storage = Storage.from_url(url.render_as_string(hide_password=False))
        storage.create_schema()
        try:
            mine = new_inbox(storage)
            first = add(storage, mine)
            with postgres_admin.connect() as admin:
                killed = admin.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": name},
                )
            assert killed >= 1  # the writer's own connection among them
            # One message may meet the dead connection (a 500 for its sender)...
            with contextlib.suppress(DBAPIError):
                storage.add_message(mine, b"in flight when the session died")
            # ... but the writer is not wedged: the next one is stored.
            after = add(storage, mine)
            assert {first, after} <= set(listed_ids(storage, mine))
        finally:
            storage.engine.dispose()


def test_a_silent_postgres_host_fails_within_the_connect_timeout(monkeypatch):
    """A host that accepts the connection and never answers (or drops packets) must not
    hold a command or a worker for the operating system's TCP timeout."""
    import socket
    import threading
    import time

    from sqlalchemy.exc import OperationalError

    from secretlink.store import database

    monkeypatch.setattr(database, "POSTGRES_CONNECT_TIMEOUT_SECONDS", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        engine = database.make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/x")
        outcome: list[BaseException] = []

        def connect() -> None:
            try:
                engine.connect()
            except BaseException as exc:
                outcome.append(exc)

        # In a thread, so that a missing timeout fails this test instead of hanging it.
        attempt = threading.Thread(target=connect, daemon=True)
        started = time.monotonic()
        attempt.start()
        attempt.join(timeout=10)
        assert not attempt.is_alive(), "still connecting after 10 s"
        assert time.monotonic() - started < 10
        assert isinstance(outcome[0], OperationalError)
        engine.dispose()


def test_a_new_sqlite_database_and_its_journal_are_private(tmp_path):
    import os
    import stat

    old_umask = os.umask(0o022)
    try:
        storage = Storage.from_url(f"sqlite:///{tmp_path / 'new.sqlite3'}")
        storage.create_schema()
        new_inbox(storage)
    finally:
        os.umask(old_umask)
    try:
        for name in ("new.sqlite3", "new.sqlite3-wal", "new.sqlite3-shm"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
    finally:
        storage.engine.dispose()


def test_concurrent_creations_of_one_inbox_all_succeed(storage):
    """Requests creating the same inbox at once: one creates it, the others update it,
    none fails on the primary key (this used to be a 500 UNIQUE constraint)."""
    import threading

    public_key = generate_keypair().public_key_text
    start = threading.Barrier(8)
    results: list[object] = []

    def create(number: int) -> None:
        start.wait()
        try:
            results.append(storage.save_inbox(public_key, f"prompt {number}"))
        except Exception as exc:  # the assertion below shows what went wrong
            results.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(repr, results)) == sorted(["True"] + ["False"] * 7)
    assert storage.get_inbox(public_key).prompt.startswith("prompt ")


# ---- quotas: exact usage counters, caps that concurrent writers cannot overshoot ----


def true_usage(storage: Storage, public_key: str) -> tuple[int, int]:
    with storage.engine.connect() as connection:
        count, size = connection.execute(
            select(
                func.count(), func.coalesce(func.sum(func.length(MessageRow.envelope)), 0)
            ).where(MessageRow.inbox_key == public_key)
        ).one()
        return count, size


def instance_bytes(storage: Storage) -> int:
    with storage.engine.connect() as connection:
        return connection.scalar(
            select(func.coalesce(func.sum(func.length(MessageRow.envelope)), 0))
        )


def test_usage_counters_follow_every_insert_and_delete(storage):
    first, second = new_inbox(storage), new_inbox(storage)
    ids = [add(storage, first, bytes(300 + n)) for n in range(4)]
    add(storage, second, bytes(1000))
    assert storage.usage(first) == Usage(4, 1206, 2206)
    assert storage.delete_message(first, ids[0])
    assert not storage.delete_message(first, ids[0])  # gone already: counted once
    assert (storage.usage(first).messages, storage.usage(first).bytes) == true_usage(storage, first)
    assert storage.delete_inbox(second)
    assert storage.usage(first).instance_bytes == instance_bytes(storage) == 906
    assert storage.usage(second) is None


def test_purge_takes_purged_messages_off_the_counters(storage):
    public_key = new_inbox(storage)
    add(storage, public_key, bytes(500))
    assert storage.purge_messages(utcnow() + timedelta(minutes=2)) == 1
    assert storage.usage(public_key) == Usage(0, 0, 0)


def test_a_full_inbox_refuses_and_keeps_what_it_holds(database_url):
    storage = Storage.from_url(database_url, Quotas(inbox_messages=3, inbox_bytes=10_000))
    storage.create_schema()
    try:
        public_key, other = new_inbox(storage), new_inbox(storage)
        ids = [add(storage, public_key, bytes(400)) for _ in range(3)]
        with pytest.raises(QuotaExceeded) as refused:
            storage.add_message(public_key, bytes(400))
        assert (refused.value.status, refused.value.code) == (409, "inbox_full")
        assert listed_ids(storage, public_key) == ids[::-1]  # nothing lost
        assert storage.delete_message(public_key, ids[0])
        add(storage, public_key, bytes(400))  # room again
        # Bytes: 9,000 of 10,000 take one more of 1,000 but not of 1,001.
        add(storage, other, bytes(9000))
        add(storage, other, bytes(1000))
        with pytest.raises(QuotaExceeded):
            storage.add_message(other, bytes(1))
    finally:
        storage.engine.dispose()


def test_a_full_instance_refuses_every_inbox(database_url):
    storage = Storage.from_url(database_url, Quotas(instance_bytes=2000))
    storage.create_schema()
    try:
        first, second = new_inbox(storage), new_inbox(storage)
        add(storage, first, bytes(1500))
        add(storage, second, bytes(500))
        for public_key in (first, second):
            with pytest.raises(QuotaExceeded) as refused:
                storage.add_message(public_key, bytes(306))
            assert (refused.value.status, refused.value.code) == (507, "instance_full")
        assert storage.usage(first).instance_bytes == 2000
    finally:
        storage.engine.dispose()


def test_concurrent_writers_of_two_processes_cannot_overshoot_a_cap(database_url):
    """Two Storage objects (two engines and writer threads, as two workers have) and
    24 senders at once, for an inbox capped at 5 and an instance capped at 9 messages'
    bytes: exactly the caps are stored, every other sender is refused."""
    import threading

    quotas = Quotas(inbox_messages=5, instance_bytes=9 * 400)
    workers = [Storage.from_url(database_url, quotas) for _ in range(2)]
    workers[0].create_schema()
    try:
        capped, other = new_inbox(workers[0]), new_inbox(workers[0])
        start = threading.Barrier(24)
        outcomes: list[str] = []

        def send(number: int) -> None:
            storage = workers[number % 2]
            target = capped if number % 3 else other
            start.wait()
            try:
                storage.add_message(target, bytes(400))
                outcomes.append("stored")
            except QuotaExceeded as exc:
                outcomes.append(exc.code)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(outcomes) == 24
        assert outcomes.count("stored") == 9
        assert true_usage(workers[0], capped)[0] <= 5
        assert instance_bytes(workers[0]) == 9 * 400
        assert workers[0].usage(capped).instance_bytes == 9 * 400
        for public_key in (capped, other):
            count, size = true_usage(workers[0], public_key)
            usage = workers[1].usage(public_key)
            assert (usage.messages, usage.bytes) == (count, size)
    finally:
        for storage in workers:
            storage.engine.dispose()
