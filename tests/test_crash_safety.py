"""A crash under load loses no acknowledged message, duplicates none, leaves no debris.

The real `secretlink serve` (granian main process and two workers, SQLite) takes messages
from many concurrent senders; mid-load the whole process group gets SIGKILL, as
from the OOM killer or `kill -9`: no graceful shutdown, requests cut off in the
middle. After a restart on the same data folder, every message that was answered
201 must be there exactly once, with its text, and everything stored must decrypt.

SIGKILL tests process death, not power loss: what SQLite committed is in the WAL
file (in the kernel's page cache at least) and must be recovered on the next open.
Surviving power loss is PRAGMA synchronous=FULL's job, which no test here can check.
"""

import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import requests
from test_serve import serving, wait_for_workers, wait_for_writer_ready, writer_of

from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope, seal

SENDERS = 16
PER_SENDER = 150  # a cap, so the load is bounded even if the kill comes late
KILL_AFTER_ACKS = 200  # kill once this many messages were acknowledged ...
KILL_AFTER_SECONDS = 3.0  # ... or after this long, whichever comes first


def killable_server(tmp_path: Path, *args: str):
    """`secretlink serve` in a process group of its own, so one SIGKILL hits all of it."""
    return serving(tmp_path, *args, own_process_group=True)


def is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@dataclass
class Ledger:
    """What each sender was told. A text is posted once (no retries), so it is its key."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict[str, str] = field(default_factory=dict)  # text -> id from the 201
    failed: dict[str, str] = field(default_factory=dict)  # text -> what went wrong
    refused: dict[str, int] = field(default_factory=dict)  # text -> unexpected status

    def count_acknowledged(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def send_until_cut_off(index: int, url: str, public_key: bytes, ledger: Ledger) -> None:
    """Post unique messages until a request fails (the server died) or the cap is reached."""
    with requests.Session() as session:  # its own connection; requests does not retry
        for number in range(PER_SENDER):
            text = f"sender {index:02d} message {number:03d}"
            body = {"ciphertext": b64encode(seal(text, public_key))}
            try:
                response = session.post(url, json=body, timeout=30)
                status = response.status_code
                message_id = response.json()["id"] if status == 201 else None
            except (requests.RequestException, ValueError) as exc:
                with ledger.lock:
                    ledger.failed[text] = type(exc).__name__
                return
            with ledger.lock:
                if message_id is not None:
                    ledger.acknowledged[text] = message_id
                else:
                    ledger.refused[text] = status


def start_senders(server_url: str, keypair, ledger: Ledger) -> list[threading.Thread]:
    """SENDERS concurrent senders to the inbox; returns once the load is well under way
    (KILL_AFTER_ACKS acknowledged, or KILL_AFTER_SECONDS passed)."""
    url = f"{server_url}/api/v1/inboxes/{keypair.public_key_text}/messages"
    senders = [
        threading.Thread(
            target=send_until_cut_off, args=(i, url, keypair.public_key, ledger), daemon=True
        )
        for i in range(SENDERS)
    ]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + KILL_AFTER_SECONDS
    while ledger.count_acknowledged() < KILL_AFTER_ACKS and time.monotonic() < deadline:
        time.sleep(0.01)
    return senders


def wait_until_acknowledgements_stop(ledger: Ledger, quiet_seconds: float = 0.3) -> None:
    """Until no message has been acknowledged for `quiet_seconds` (at most 10 s)."""
    deadline = time.monotonic() + 10
    seen = ledger.count_acknowledged()
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = ledger.count_acknowledged()
        if now == seen:
            return
        seen = now


def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path):
    keypair = generate_keypair()
    ledger = Ledger()
    with killable_server(tmp_path, "--workers", "2") as served:
        InboxClient(served.url, keypair).register("")
        workers = wait_for_workers(served.process, 2)
        assert len(workers) == 2
        senders = start_senders(served.url, keypair, ledger)
        # Master and workers at once (one signal to the group), mid-load.
        os.killpg(served.process.pid, signal.SIGKILL)
        assert served.process.wait(timeout=10) == -signal.SIGKILL
        for sender in senders:
            sender.join(timeout=60)
            assert not sender.is_alive(), "a sender hung after the server died"
        for worker in workers:
            deadline = time.monotonic() + 10
            while not is_gone(worker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert is_gone(worker), f"worker {worker} survived SIGKILL"

    acknowledged = ledger.acknowledged
    sent = set(acknowledged) | set(ledger.failed) | set(ledger.refused)
    assert not ledger.refused, f"answers other than 201 before the kill: {ledger.refused}"
    assert len(acknowledged) > 0, "nothing was acknowledged before the kill"
    assert ledger.failed, "no request was cut off: the kill did not happen under load"

    with killable_server(tmp_path, "--workers", "2") as again:
        stored = list(InboxClient(again.url, keypair).messages())
    texts_by_id = {
        m.id: open_envelope(b64decode(m.ciphertext), keypair.secret_key).text for m in stored
    }

    stored_ids = Counter(m.id for m in stored)
    stored_texts = Counter(texts_by_id.values())
    lost = {text for text, message_id in acknowledged.items() if message_id not in texts_by_id}
    wrong = {
        text
        for text, message_id in acknowledged.items()
        if message_id in texts_by_id and texts_by_id[message_id] != text
    }
    # Committed but cut off before the 201 reached the sender: allowed, but only once.
    unacknowledged_kept = set(stored_texts) - set(acknowledged)
    print(
        f"\ncrash safety: {len(sent)} sent by {SENDERS} senders, {len(acknowledged)} "
        f"acknowledged (201), {len(ledger.failed)} cut off by SIGKILL; after restart "
        f"{len(stored)} stored: {len(acknowledged) - len(lost)} of the acknowledged, "
        f"{len(unacknowledged_kept)} committed but unacknowledged, {len(lost)} lost, "
        f"{sum(n - 1 for n in stored_ids.values())} duplicated ids"
    )
    assert not lost, f"acknowledged messages lost: {sorted(lost)[:5]}"
    assert not wrong, f"acknowledged ids hold another text: {sorted(wrong)[:5]}"
    assert all(n == 1 for n in stored_ids.values()), "an id is listed twice"
    assert all(n == 1 for n in stored_texts.values()), "a message is stored twice"
    assert unacknowledged_kept <= set(ledger.failed), "stored a message nobody sent"

    database = tmp_path / "data" / "secretlink.sqlite3"
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_message_writer_killed_under_load_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL to the writer process alone, mid-load: the workers settle what they had
    sent it (each message once, whether or not its transaction had committed), commit
    their own messages until a new writer is up, and no sender sees an error."""
    keypair = generate_keypair()
    ledger = Ledger()
    room = {"SECRETLINK_INBOX_MAX_MESSAGES": str(SENDERS * PER_SENDER)}
    with serving(tmp_path, "--workers", "2", env=room) as served:
        InboxClient(served.url, keypair).register("")
        assert len(wait_for_workers(served.process, 2)) == 2
        writer = writer_of(served.process.pid)
        assert writer is not None, "no message writer process on SQLite"
        wait_for_writer_ready(served.log_path)
        senders = start_senders(served.url, keypair, ledger)
        # Stopped first, so that it dies holding messages: the workers keep sending it
        # theirs and wait for answers. (Killed at a random moment, it sometimes held
        # none: the test's own sender threads are slower than the server.)
        os.kill(writer, signal.SIGSTOP)
        wait_until_acknowledgements_stop(ledger)
        os.kill(writer, signal.SIGKILL)
        killed_at = ledger.count_acknowledged()
        for sender in senders:
            sender.join(timeout=60)
            assert not sender.is_alive(), "a sender hung after the writer died"
        restarted = writer_of(served.process.pid)
        stored = list(InboxClient(served.url, keypair).messages())
        output = served.output()

    assert not ledger.failed and not ledger.refused, (ledger.failed, ledger.refused)
    assert len(ledger.acknowledged) == SENDERS * PER_SENDER
    assert killed_at < SENDERS * PER_SENDER, "the writer was killed after the load"
    assert restarted is not None and restarted != writer, "the writer was not started again"
    assert "the message writer ended" in output
    assert "messages in flight; this worker settles them" in output, "killed with none in flight"
    texts_by_id = {
        m.id: open_envelope(b64decode(m.ciphertext), keypair.secret_key).text for m in stored
    }
    assert len(texts_by_id) == len(stored), "an id is listed twice"
    assert {texts_by_id.get(i) for i in ledger.acknowledged.values()} == set(ledger.acknowledged)
    assert len(stored) == len(ledger.acknowledged), "a message is stored twice"
