"""The writer process: its wire format, and messages settled through it exactly once.

The writer runs here in a thread of the test process with the real WriterServer on a
real Unix socket; the workers' side is a second Storage on the same SQLite file, as
each worker has. tests/test_crash_safety.py kills the real process under load.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secretlink.store import writer_process
from secretlink.store.database import is_sqlite_file
from secretlink.store.group_commit import MAX_BATCH
from secretlink.store.quotas import QuotaExceeded, Quotas
from secretlink.store.storage import PuzzleUsed, Storage, new_message_row, spend_of
from secretlink.store.writer_process import (
    FrameError,
    WriterServer,
    decode_message,
    encode_answer,
    encode_message,
    listen,
    take_frames,
)

INBOX = "k" * 43
SOON = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=5)


class WriterDied(Exception):
    """Ends the writer's serve() as a crash would: connections closed, no answers."""


def database(tmp_path: Path, quotas: Quotas | None = None) -> Storage:
    storage = Storage.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}", quotas)
    storage.create_schema()
    return storage


class RunningWriter:
    """A WriterServer in a thread, settling with `settle` (the storage's, or a wrapper)."""

    def __init__(self, path: str, settle):
        self.server = WriterServer(settle, listen(path))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.serve()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.server.stop(0.0)
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def socket_path(tmp_path) -> str:
    return str(tmp_path / "writer.sock")


def stored_ids(storage: Storage) -> list[str]:
    return [message.id for message in storage.list_messages(INBOX, 10_000)]


# ---- the wire ----


def test_a_message_crosses_the_wire_unchanged():
    row = new_message_row(INBOX, b"\x00sealed\xff" * 100, spend_of(b"n" * 16, SOON))
    [(sequence, body)] = take_frames(bytearray(encode_message(7, row)))
    assert sequence == 7
    assert decode_message(body) == row
    no_spend = new_message_row(INBOX, b"x", None)
    [(_, body)] = take_frames(bytearray(encode_message(8, no_spend)))
    assert decode_message(body) == no_spend


def test_frames_are_taken_whole_and_a_partial_one_waits():
    first = encode_message(1, new_message_row(INBOX, b"a", None))
    second = encode_answer(2, "stored")
    buffer = bytearray(first + second[:-3])
    assert [sequence for sequence, _ in take_frames(buffer)] == [1]
    assert buffer == second[:-3]
    buffer += second[-3:]
    assert take_frames(buffer) == [(2, b"stored")]
    assert buffer == b""


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda body: body[:-1], id="truncated-field"),
        pytest.param(lambda body: body + b"\x00", id="bytes-after-the-fields"),
        pytest.param(lambda body: body[: -(4 + len(SOON.isoformat()))], id="five-fields"),
        pytest.param(lambda body: body.replace(b"kkk", b"k\xffk", 1), id="not-ascii"),
        pytest.param(lambda body: body.replace(b":", b"?", 1), id="not-a-date"),
    ],
)
def test_a_malformed_message_is_refused(mangle):
    row = {**new_message_row(INBOX, b"abc", spend_of(b"n" * 16, SOON)), "id": "i" * 22}
    frame = encode_message(1, row)
    [(_, body)] = take_frames(bytearray(frame))
    with pytest.raises(FrameError):
        decode_message(mangle(body))


def test_a_frame_longer_than_any_message_is_refused():
    buffer = bytearray(writer_process.HEADER.pack(writer_process.MAX_FRAME + 1, 1))
    with pytest.raises(FrameError):
        take_frames(buffer)


def test_only_sqlite_in_a_file_gets_a_writer_process():
    assert is_sqlite_file("sqlite:////var/lib/secretlink/secretlink.sqlite3")
    assert not is_sqlite_file("sqlite://")
    assert not is_sqlite_file("sqlite:///:memory:")
    assert not is_sqlite_file("postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ---- messages through the writer ----


def test_messages_from_an_event_loop_are_stored_by_the_writer(tmp_path, socket_path):
    writer_storage = database(tmp_path, Quotas(inbox_messages=30))
    writer_storage.save_inbox(INBOX, "")
    settled_there: list[int] = []

    def settle(rows):
        settled_there.append(len(rows))
        return writer_storage.settle_messages(rows)

    writer = RunningWriter(socket_path, settle)
    worker = database(tmp_path, Quotas(inbox_messages=30))
    worker.use_writer_process(socket_path)
    spend = spend_of(b"p" * 16, SOON)

    async def send():
        ids = await asyncio.gather(
            *(worker.add_message_async(INBOX, f"m{i}".encode()) for i in range(25))
        )
        unknown = await worker.add_message_async("u" * 43, b"nobody")
        paid = await worker.add_message_async(INBOX, b"paid", spend)
        with pytest.raises(PuzzleUsed):
            await worker.add_message_async(INBOX, b"paid again", spend)
        more = [await worker.add_message_async(INBOX, b"more") for _ in range(4)]
        with pytest.raises(QuotaExceeded):
            await worker.add_message_async(INBOX, b"one too many")
        return ids, unknown, paid, more

    try:
        ids, unknown, paid, more = asyncio.run(send())
    finally:
        writer.stop()
    assert writer.error is None
    assert unknown is None
    assert sorted(stored_ids(worker)) == sorted([*ids, paid, *more])
    assert sum(settled_there) == 33  # every message went through the writer
    assert len(settled_there) < 33  # ... and concurrent ones shared transactions


@pytest.mark.parametrize("dies", ["after_commit", "before_commit"])
def test_messages_in_flight_when_the_writer_dies_are_stored_once(tmp_path, socket_path, dies):
    writer_storage = database(tmp_path)
    writer_storage.save_inbox(INBOX, "")

    def settle_then_die(rows):
        if dies == "after_commit":
            writer_storage.settle_messages(rows)
        raise WriterDied

    writer = RunningWriter(socket_path, settle_then_die)
    worker = database(tmp_path)
    worker.use_writer_process(socket_path)

    async def send():
        # Each paid with its own puzzle: a message committed before the writer died
        # must not come back as "puzzle used" when its worker settles it again.
        return await asyncio.gather(
            *(
                worker.add_message_async(INBOX, b"m", spend_of(bytes([i]) * 16, SOON))
                for i in range(10)
            )
        )

    ids = asyncio.run(send())
    writer.thread.join(timeout=10)
    assert isinstance(writer.error, WriterDied)
    assert None not in ids
    assert sorted(stored_ids(worker)) == sorted(ids)


def test_without_a_writer_the_worker_commits_its_own_messages(tmp_path, socket_path):
    worker = database(tmp_path)
    worker.save_inbox(INBOX, "")
    worker.use_writer_process(socket_path)  # nothing listens there

    async def send():
        return [await worker.add_message_async(INBOX, b"m") for _ in range(3)]

    ids = asyncio.run(send())
    assert sorted(stored_ids(worker)) == sorted(ids)


def test_a_connection_sending_garbage_is_dropped_and_the_others_served(tmp_path, socket_path):
    writer_storage = database(tmp_path)
    writer_storage.save_inbox(INBOX, "")
    writer = RunningWriter(socket_path, writer_storage.settle_messages)
    try:
        with socket.socket(socket.AF_UNIX) as garbage:
            garbage.connect(socket_path)
            valid = encode_message(1, new_message_row(INBOX, b"valid first", None))
            garbage.sendall(valid + writer_process.HEADER.pack(3, 2) + b"bad")
            garbage.settimeout(10)
            assert garbage.recv(100) == b""  # dropped, nothing answered
        worker = database(tmp_path)
        worker.use_writer_process(socket_path)

        async def send():
            return await worker.add_message_async(INBOX, b"m")

        message_id = asyncio.run(send())
    finally:
        writer.stop()
    # The garbled read was refused whole: its valid message was not stored either
    # (the worker that sent it settles everything itself once its connection is gone).
    assert stored_ids(worker) == [message_id]


def test_messages_of_a_worker_dropped_before_their_commit_are_not_written(socket_path):
    """A worker's read can hold more than one batch. If answering the first batch
    finds the worker gone, it settles the rest itself (WriterClient), so the writer
    must not write them too."""
    settled: list[list[dict]] = []

    def settle(rows: list[dict]) -> list[str]:
        settled.append(rows)
        return ["stored"] * len(rows)

    listener = listen(socket_path)
    with socket.socket(socket.AF_UNIX) as worker:
        worker.connect(socket_path)
        rows = [new_message_row(INBOX, b"m", None) for _ in range(MAX_BATCH + 1)]
        worker.sendall(b"".join(encode_message(n, row) for n, row in enumerate(rows, 1)))
    # Sent and gone before the writer reads: its one read holds two batches.
    server = WriterServer(settle, listener)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not settled and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # time for a wrong second commit
    finally:
        server.stop(0.0)
        thread.join(timeout=10)
    assert [len(batch) for batch in settled] == [MAX_BATCH]
    assert [row["id"] for row in settled[0]] == [row["id"] for row in rows[:MAX_BATCH]]


def test_without_a_folder_for_its_socket_the_server_runs_without_a_writer(
    monkeypatch, tmp_path, caplog
):
    from secretlink.ops import server, writer
    from secretlink.settings import Settings

    def no_folder(**_kwargs):
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(writer.tempfile, "mkdtemp", no_folder)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert server.start_writer(settings) is None
    assert "no message writer process" in caplog.text


def test_the_writer_opens_the_storage_without_flask(tmp_path):
    """The writer process imports its code and wires the instance's storage without the
    web app: it starts sooner and smaller (docs/PERFORMANCE.md, "What the writer costs")."""
    code = (
        "import sys\n"
        "from secretlink.ops import writer\n"
        "from secretlink.store import writer_process\n"  # what the writer's main() runs
        "from pathlib import Path\n"
        "from secretlink.settings import Settings\n"
        "from secretlink.store.instance import open_storage\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "settings = Settings(data_dir=folder).with_data_dir(folder)\n"
        "storage, _ = open_storage(settings)\n"
        "storage.create_schema()\n"
        "assert 'flask' not in sys.modules, 'flask was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_server_removes_the_socket_folders_of_servers_killed_outright(tmp_path, monkeypatch):
    """SIGKILL leaves a server no time to remove its writer's socket folder; the next
    server's writer removes the folders named after processes that no longer run,
    and only those, and names its own after its process."""
    from secretlink.ops import writer
    from secretlink.settings import Settings

    monkeypatch.setattr(writer.tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = tmp_path / f"{writer.FOLDER_PREFIX}{ended.pid}-abc123"
    running = tmp_path / f"{writer.FOLDER_PREFIX}{os.getppid()}-def456"
    unnamed = tmp_path / f"{writer.FOLDER_PREFIX}not-a-pid"
    other = tmp_path / "something-else"
    for folder in (stale, running, unnamed, other):
        folder.mkdir()
    (stale / "writer.sock").touch()
    process = writer.WriterProcess(Settings(data_dir=tmp_path))  # not started
    try:
        own = Path(process.socket_path).parent
        assert own.parent == tmp_path and own.name.startswith(
            f"{writer.FOLDER_PREFIX}{os.getpid()}-"
        )
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            [running.name, unnamed.name, other.name, own.name]
        )
    finally:
        process.stop()
    assert not own.exists()
