"""One writer for a SQLite instance's messages, in a process of its own.

Each worker process used to commit its own messages (secretlink.store.group_commit),
so every driver call of its writer thread waited for the GIL behind the worker's
request handling, and the workers' writers took turns at SQLite's one write lock
(docs/PERFORMANCE.md, "P1: what the write costs"). Here the workers hand their
messages over a Unix socket to one process that does nothing else: it reads what
every worker sent while it was committing, settles all of it in one transaction
(the same GroupCommit.settle, with the same checks, quotas and notifications), and
answers each message's outcome. A worker answers 201 only on that answer, which comes
after the commit.

The writer can end (a crash, the OOM killer) with messages in flight. Its transaction
either committed or not, and after the connection ends it never writes again; so the
worker settles those messages itself, through its own group commit, marked resent: a
message already stored is reported stored, not stored twice. While the writer cannot
be reached (starting, restarting) the workers commit their own messages as before, so
an instance keeps taking messages.

The wire, between processes of one instance only (a socket in a folder only the
service's user can open), big-endian:

    message: length of the fields (u32), sequence number (u64), then six fields, each
             a u32 length and its bytes: id, inbox key, arrival (ISO 8601), envelope,
             the spend's key and its expiry (ISO 8601), both empty for no spend
    answer:  length of the outcome (u32), the message's sequence number (u64), the
             outcome in ASCII: one of group_commit's or the checks' outcomes, or "!"
             when the transaction failed
"""

import asyncio
import contextlib
import logging
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from datetime import datetime

from secretlink.store.group_commit import MAX_BATCH, GroupCommit
from secretlink.store.spent_nonces import Spend

log = logging.getLogger(__name__)

HEADER = struct.Struct("!IQ")
FIELD = struct.Struct("!I")
FIELDS = 6
# No message frame is larger: the largest request body (secretlink.web.app) decoded.
MAX_FRAME = 1 << 20
FAILED = "!"
# After the writer could not be reached, workers commit their own messages for this
# long before they try it again.
RECONNECT_SECONDS = 0.5
READ_BYTES = 1 << 20

Settle = Callable[[list[dict]], list[str | BaseException]]


class WriterError(Exception):
    """The writer process could not commit the message (its log says why)."""


class FrameError(ValueError):
    """Bytes on the writer's socket that are not a frame of this wire format."""


# ---- the wire ----


def encode_message(sequence: int, row: dict) -> bytes:
    spend: Spend | None = row["spend"]
    fields = (
        row["id"].encode("ascii"),
        row["inbox_key"].encode("ascii"),
        row["received_at"].isoformat().encode("ascii"),
        row["envelope"],
        spend.key if spend else b"",
        spend.expires_at.isoformat().encode("ascii") if spend else b"",
    )
    body = b"".join(FIELD.pack(len(value)) + value for value in fields)
    return HEADER.pack(len(body), sequence) + body


def decode_message(body: bytes) -> dict:
    """A message row from a frame's fields; FrameError if they are not six well-formed ones."""
    fields = []
    offset = 0
    try:
        for _ in range(FIELDS):
            (length,) = FIELD.unpack_from(body, offset)
            offset += FIELD.size
            if offset + length > len(body):
                raise FrameError("a field runs past its frame")
            fields.append(body[offset : offset + length])
            offset += length
        if offset != len(body):
            raise FrameError("bytes after the last field")
        message_id, inbox_key, received_at, envelope, spend_key, spend_expiry = fields
        spend = None
        if spend_key:
            spend = Spend(spend_key, datetime.fromisoformat(spend_expiry.decode("ascii")))
        return {
            "id": message_id.decode("ascii"),
            "inbox_key": inbox_key.decode("ascii"),
            "received_at": datetime.fromisoformat(received_at.decode("ascii")),
            "envelope": envelope,
            "spend": spend,
        }
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError(str(exc)) from exc


def encode_answer(sequence: int, outcome: str) -> bytes:
    text = outcome.encode("ascii")
    return HEADER.pack(len(text), sequence) + text


def take_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The whole frames at the start of `buffer`, removed from it: (sequence, body)."""
    frames = []
    offset = 0
    while len(buffer) - offset >= HEADER.size:
        length, sequence = HEADER.unpack_from(buffer, offset)
        if length > MAX_FRAME:
            raise FrameError(f"a frame of {length} bytes")
        end = offset + HEADER.size + length
        if end > len(buffer):
            break
        frames.append((sequence, bytes(buffer[offset + HEADER.size : end])))
        offset = end
    del buffer[:offset]
    return frames


# ---- the writer's side ----


class _Worker:
    """One worker's connection to the writer, and the bytes it sent that are not yet a frame."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.buffer = bytearray()


class WriterServer:
    """Reads messages from the workers, settles them in batches, answers each.

    Single-threaded on purpose: while one batch commits, the next one gathers in the
    sockets' buffers, and nothing else in the process wants the GIL."""

    def __init__(self, settle: Settle, listener: socket.socket, stop_when_readable=None):
        self._settle = settle
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._workers: dict[socket.socket, _Worker] = {}
        self._stop_at: float | None = None
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, self._accept)
        # stop() wakes the loop through this pair, from a signal handler or a thread.
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, self._woken)
        if stop_when_readable is not None:
            # The main process's end of a pipe: readable (EOF) once that process is gone.
            self._selector.register(stop_when_readable, selectors.EVENT_READ, self._orphaned)

    def stop(self, grace_seconds: float) -> None:
        """End once no worker is connected any more, or after `grace_seconds` (workers
        that are stopping finish their requests first)."""
        deadline = time.monotonic() + grace_seconds
        if self._stop_at is None or deadline < self._stop_at:
            self._stop_at = deadline
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_out.send(b"\0")

    def serve(self) -> None:
        try:
            while not self._finished():
                batch: list[tuple[_Worker, int, dict]] = []
                for key, _events in self._selector.select(timeout=1.0):
                    key.data(key.fileobj, batch)
                for start in range(0, len(batch), MAX_BATCH):
                    self._commit(batch[start : start + MAX_BATCH])
        finally:
            for worker in list(self._workers.values()):
                self._drop(worker)
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()

    def _finished(self) -> bool:
        if self._stop_at is None:
            return False
        return not self._workers or time.monotonic() >= self._stop_at

    def _accept(self, listener: socket.socket, _batch) -> None:
        with contextlib.suppress(BlockingIOError):
            connection, _ = listener.accept()
            connection.setblocking(True)  # read only when ready; answers sent whole
            worker = _Worker(connection)
            self._workers[connection] = worker
            self._selector.register(connection, selectors.EVENT_READ, self._read)

    def _woken(self, wake: socket.socket, _batch) -> None:
        wake.recv(4096)

    def _orphaned(self, pipe, _batch) -> None:
        self._selector.unregister(pipe)
        self.stop(0.0)

    def _read(self, connection: socket.socket, batch: list) -> None:
        worker = self._workers[connection]
        try:
            data = connection.recv(READ_BYTES)
        except OSError:
            data = b""
        if not data:
            self._drop(worker)
            return
        worker.buffer += data
        try:
            # All of this read's messages, or none: a worker whose connection is
            # dropped settles everything it sent itself, so none of it may be written.
            batch.extend(
                (worker, sequence, decode_message(body))
                for sequence, body in take_frames(worker.buffer)
            )
        except FrameError as exc:
            log.error("message writer: dropped a worker's connection: %s", exc)
            batch[:] = [entry for entry in batch if entry[0] is not worker]
            self._drop(worker)

    def _commit(self, batch: list[tuple[_Worker, int, dict]]) -> None:
        # A worker dropped since its messages were read settles them itself (see
        # WriterClient): none of them may be written here after that.
        batch = [entry for entry in batch if entry[0].connection in self._workers]
        if not batch:
            return
        settled = self._settle([row for _, _, row in batch])
        answers: dict[_Worker, list[bytes]] = {}
        for (worker, sequence, _), outcome in zip(batch, settled, strict=True):
            text = FAILED if isinstance(outcome, BaseException) else outcome
            answers.setdefault(worker, []).append(encode_answer(sequence, text))
        for worker, frames in answers.items():
            try:
                worker.connection.sendall(b"".join(frames))
            except OSError:
                self._drop(worker)  # the worker is gone; nobody waits for these answers

    def _drop(self, worker: _Worker) -> None:
        if self._workers.pop(worker.connection, None) is not None:
            self._selector.unregister(worker.connection)
            worker.connection.close()


def listen(path: str) -> socket.socket:
    """The writer's socket at `path` (a stale one from a writer that died is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    return listener


# ---- the workers' side ----


class _Connection(asyncio.Protocol):
    """A worker's connection to the writer: messages out, their outcomes back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, local: GroupCommit):
        self.loop = loop  # the event loop it was opened on, and serves
        self._local = local
        self._transport: asyncio.Transport | None = None
        self._sequence = 0
        self._waiting: dict[int, tuple[dict, asyncio.Future]] = {}
        self._outbox: list[bytes] = []
        self._buffer = bytearray()
        self._settling: set[asyncio.Task] = set()  # held, or the loop may drop them
        self.closed = False

    def connection_made(self, transport) -> None:
        self._transport = transport

    def send(self, row: dict) -> asyncio.Future:
        self._sequence += 1
        future = self.loop.create_future()
        self._waiting[self._sequence] = (row, future)
        if not self._outbox:
            # Everything sent in one turn of the event loop goes out in one write.
            self.loop.call_soon(self._flush)
        self._outbox.append(encode_message(self._sequence, row))
        return future

    def _flush(self) -> None:
        if self._outbox and not self.closed:
            self._transport.write(b"".join(self._outbox))
        self._outbox.clear()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            frames = take_frames(self._buffer)
        except FrameError as exc:
            log.error("message writer: an answer that is not a frame: %s", exc)
            self._transport.abort()  # connection_lost settles what is waiting
            return
        for sequence, outcome in frames:
            _row, future = self._waiting.pop(sequence, (None, None))
            if future is None or future.done():
                continue
            if outcome == FAILED.encode():
                future.set_exception(WriterError("the message writer could not commit"))
            else:
                future.set_result(outcome.decode("ascii"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._outbox.clear()
        waiting, self._waiting = self._waiting, {}
        if waiting:
            log.warning(
                "message writer: connection lost with %d messages in flight; "
                "this worker settles them",
                len(waiting),
            )
        for row, future in waiting.values():
            task = self.loop.create_task(self._settle_here(row, future))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle_here(self, row: dict, future: asyncio.Future) -> None:
        try:
            outcome = await self._local.insert_async(row, resent=True)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(outcome)


class WriterClient:
    """A worker's way to the writer process, and to the worker's own group commit
    while the writer cannot be reached."""

    def __init__(self, path: str, local: GroupCommit):
        self._path = path
        self._local = local
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task | None = None
        self._retry_at = 0.0
        self._unreachable = False  # logged once per time it cannot be reached

    async def insert_async(self, row: dict) -> str:
        """GroupCommit.insert_async's contract: the outcome once settled; cancelling
        the caller does not take the message back."""
        connection = await self._connected()
        if connection is None:
            return await self._local.insert_async(row)
        return await asyncio.shield(connection.send(row))

    async def _connected(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is not None and not connection.closed and connection.loop is loop:
            return connection
        if loop.time() < self._retry_at:
            return None
        if self._connecting is None or self._connecting.get_loop() is not loop:
            self._connecting = loop.create_task(self._connect(loop))
        return await asyncio.shield(self._connecting)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        try:
            _, connection = await loop.create_unix_connection(
                lambda: _Connection(loop, self._local), self._path
            )
        except OSError as exc:
            if not self._unreachable:
                # Expected while it starts or restarts (the server logs why it ended).
                log.info("message writer not reachable (%s); this worker commits", exc)
                self._unreachable = True
            self._retry_at = loop.time() + RECONNECT_SECONDS
            connection = None
        else:
            if self._unreachable:
                log.info("message writer reachable again")
                self._unreachable = False
        self._connection = connection
        self._connecting = None
        return connection
