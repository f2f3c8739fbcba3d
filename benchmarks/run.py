"""Run the performance goals of docs/PERFORMANCE.md and print one line per goal.

    python -m benchmarks.run            # all goals
    python -m benchmarks.run P1 P3      # some of them

Every figure is a ratio against a baseline measured in the same run on the same
machine; the raw numbers behind each ratio are printed under its line. The load
stays on loopback and is bounded (the whole run takes a quarter of an hour or so on
2 cores, P6's uploads of up to 1 GiB about 9 minutes of it). P6 lives in
benchmarks/attachments.py.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.attachments import p6_attachments
from benchmarks.common import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    Result,
    instance,
    json_post_script,
    new_inbox,
    spread,
    wrk_rate,
)
from benchmarks.throughput import p1_throughput
from secretlink.client.http import InboxClient
from secretlink.crypto import b64encode, seal
from secretlink.crypto.envelope import MAX_TEXT_BYTES
from secretlink.store.storage import Storage, coarse, utcnow

__all__ = ["GOALS", "Result", "main"]


def message_body(keypair, text: str = "a short anonymous message") -> str:
    return json.dumps({"ciphertext": b64encode(seal(text, keypair.public_key))})


def wrk(url: str, body: str, seconds: int, connections: int) -> dict:
    """wrk POSTing the same JSON body: requests/s, non-2xx answers, requests."""
    return wrk_rate(url, json_post_script(body), [], seconds, connections)


# ---- P2: paging ----


def fill(storage: Storage, public_key: str, count: int, envelope: bytes) -> None:
    """Insert `count` messages quickly, straight into the database, with the inbox's
    and the instance's usage counters (secretlink/store/quotas.py) to match."""
    from sqlalchemy import insert, update

    from secretlink.store.storage import InboxRow, InstanceUsageRow, MessageRow

    received = coarse(utcnow())
    with storage.engine.begin() as connection:
        for start in range(0, count, 10_000):
            connection.execute(
                insert(MessageRow),
                [
                    {
                        "id": f"{public_key[:8]}{i:014d}",
                        "inbox_key": public_key,
                        "received_at": received,
                        "envelope": envelope,
                    }
                    for i in range(start, min(count, start + 10_000))
                ],
            )
        added = count * len(envelope)
        connection.execute(
            update(InboxRow)
            .where(InboxRow.public_key == public_key)
            .values(
                message_count=InboxRow.message_count + count,
                stored_bytes=InboxRow.stored_bytes + added,
            )
        )
        connection.execute(
            update(InstanceUsageRow).values(stored_bytes=InstanceUsageRow.stored_bytes + added)
        )


def timings(action: Callable[[], object], repeat: int) -> list[float]:
    """Seconds each of `repeat` runs of `action` took."""
    taken = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        taken.append(time.perf_counter() - start)
    return taken


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    return statistics.median(timings(action, repeat))


P2_ROUNDS = 3
P2_REQUESTS = 70


def p2_paging(work: Path) -> Result:
    with instance(work / "p2") as server:
        small, large = new_inbox(server.url), new_inbox(server.url)
        storage = Storage.from_url(f"sqlite:///{work / 'p2' / 'secretlink.sqlite3'}")
        envelope = seal("page me", small.public_key)
        fill(storage, small.public_key_text, 100, envelope)
        fill(storage, large.public_key_text, 100_000, envelope)
        storage.engine.dispose()

        def page_timer(keypair, middle: bool):
            client = InboxClient(server.url, keypair)
            token = client.token()
            url = f"{server.url}{client.base}/messages"
            params = {}
            if middle:  # a cursor half-way down the inbox
                count = 100 if keypair is small else 100_000
                params["before"] = f"{keypair.public_key_text[:8]}{count // 2:014d}"
            session = requests.Session()
            headers = {"Authorization": f"Bearer {token}"}

            def fetch():
                response = session.get(url, params=params, headers=headers, timeout=10)
                assert response.ok and len(response.json()["messages"]) == 50

            fetch()
            return fetch

        fetchers = {
            (name, middle): page_timer(keypair, middle)
            for name, keypair in (("100", small), ("100000", large))
            for middle in (False, True)
        }
        # Rounds that take turns, so a drift of the machine spreads over all four.
        rounds: dict[tuple[str, bool], list[float]] = {key: [] for key in fetchers}
        for _ in range(P2_ROUNDS):
            for key, fetch in fetchers.items():
                rounds[key].append(median_seconds(fetch, P2_REQUESTS) * 1000)
    figures = {key: statistics.median(values) for key, values in rounds.items()}
    ratio = max(figures[("100000", m)] / figures[("100", m)] for m in (False, True))
    return Result(
        "P2",
        "paging",
        ratio,
        "<=",
        1.5,
        [
            f"first page of 50 (each round the median of {P2_REQUESTS} requests): "
            f"{spread(rounds[('100000', False)], ' ms', 2)} with 100,000 messages, "
            f"{spread(rounds[('100', False)], ' ms', 2)} with 100",
            f"page from the middle: {spread(rounds[('100000', True)], ' ms', 2)} vs "
            f"{spread(rounds[('100', True)], ' ms', 2)}",
        ],
    )


# ---- P3: CLI read ----

P3_ROUNDS = 3

MINIMAL_READER = r"""
import json, sys, requests
from nacl.public import PrivateKey, SealedBox
server, inbox, token, secret = sys.argv[1:5]
box = SealedBox(PrivateKey(bytes.fromhex(secret)))
session = requests.Session()
headers = {"Authorization": "Bearer " + token}
out, before = [], None
while True:
    page = session.get(f"{server}/api/v1/inboxes/{inbox}/messages", headers=headers,
                       params={"before": before} if before else None, timeout=30).json()
    for m in page["messages"]:
        import base64
        env = base64.urlsafe_b64decode(m["ciphertext"] + "==")
        out.append({"id": m["id"], "received_at": m["received_at"], "text": box.decrypt(env[1:])})
    before = page["next"]
    if not before:
        break
print(len(out))
"""


def p3_cli_read(work: Path) -> Result:
    from secretlink.crypto.keyfile import KeyFile, dump_key_file

    with instance(work / "p3") as server:
        keypair = new_inbox(server.url)
        storage = Storage.from_url(f"sqlite:///{work / 'p3' / 'secretlink.sqlite3'}")
        from sqlalchemy import insert

        from secretlink.store.storage import MessageRow

        with storage.engine.begin() as connection:
            connection.execute(
                insert(MessageRow),
                [
                    {
                        "id": f"m{i:021d}",
                        "inbox_key": keypair.public_key_text,
                        "received_at": coarse(utcnow()),
                        "envelope": seal(f"message number {i}", keypair.public_key),
                    }
                    for i in range(10_000)
                ],
            )
        storage.engine.dispose()
        key_file = work / "p3.key"
        key_file.write_text(dump_key_file(KeyFile(keypair, server.url)))
        script = work / "minimal_reader.py"
        script.write_text(MINIMAL_READER)
        cli = [
            str(Path(sys.executable).parent / "secretlink"),
            "inbox",
            "read",
            "--key-file",
            str(key_file),
            "--json",
        ]

        def run_cli():
            out = subprocess.run(cli, capture_output=True, check=True).stdout
            assert len(json.loads(out)) == 10_000

        def run_minimal():
            token = InboxClient(server.url, keypair).token()  # given, not timed below
            args = [
                sys.executable,
                str(script),
                server.url,
                keypair.public_key_text,
                token,
                keypair.secret_key.hex(),
            ]
            start = time.perf_counter()
            out = subprocess.run(args, capture_output=True, check=True).stdout
            assert out.strip() == b"10000"
            return time.perf_counter() - start

        run_cli()
        cli_times, minimal_times = [], []
        for _ in range(P3_ROUNDS):  # taking turns, as P2's rounds
            cli_times += timings(run_cli, 1)
            minimal_times.append(run_minimal())
    return Result(
        "P3",
        "CLI read",
        statistics.median(cli_times) / statistics.median(minimal_times),
        "<=",
        1.2,
        [
            f"secretlink inbox read --json, 10,000 messages: {spread(cli_times, ' s', 2)}",
            f"minimal requests + PyNaCl script, same pages and token: "
            f"{spread(minimal_times, ' s', 2)}",
        ],
    )


# ---- P4: sender page ----


P4_WARM_UP = 2
P4_ROUNDS = 60

# An idle callback, or at most a second's wait on a page that never goes idle.
IDLE = "() => new Promise((idle) => requestIdleCallback(idle, {timeout: 1000}))"

# The goal's baseline: the same press of Send on the same page, with the same text in
# the box, answered by the least any page could do between a press and an answer:
# post a ready-made body of the same size to the trivial endpoint, read its JSON, and
# say so on the status line as the page does. A listener armed for one submit event
# takes it before send.js sees it. So both sides pay the same press (a click's
# handling costs Chromium a few ms on two cores, whatever the page then does) and the
# same upload, and the ratio is what the page's own work adds to them: the seal, the
# message's checks and its durable commit.
# Both baselines' POST: the body of `size` bytes is built before any timing starts;
# post() sends it to the trivial endpoint and reads the JSON answer.
POST_TO_ECHO = """
    const body = JSON.stringify({ciphertext: "A".repeat(size - 18)});
    const post = () => fetch("/bench/echo", {method: "POST", body,
        headers: {"Content-Type": "application/json"}}).then((r) => r.json());
"""
ARM_ECHO = (
    """(size) => {"""
    + POST_TO_ECHO
    + """
    window.answeredAt = null;
    window.addEventListener("submit", async (event) => {
        event.stopImmediatePropagation();
        event.preventDefault();
        await post();
        window.answeredAt = performance.now();
        document.querySelector("#status").dataset.kind = "success";
    }, {capture: true, once: true});
}"""
)
# Both sides are timed from the same moment by the same clock: the submit event, as
# a listener registered before any other records it (the page's own measure,
# `secretlink:send`, starts a little later, after its checks of the text).
PRESSED_AT = """() => window.addEventListener("submit", () => {
    window.pressedAt = performance.now();
}, {capture: true})"""
ECHO_TIME = "() => window.answeredAt - window.pressedAt"
SEND_TIME = """() => {
    const send = performance.getEntriesByName("secretlink:send").pop();
    return send.startTime + send.duration - window.pressedAt;
}"""

# Reported beside the goal, as its earlier baseline: a fetch POST of `size` bytes to
# the trivial endpoint with no press at all, timed in the idle page.
PLAIN_POST = (
    """async (size) => {"""
    + POST_TO_ECHO
    + """
    const start = performance.now();
    await post();
    return performance.now() - start;
}"""
)


def click_send(page) -> None:
    """The goal's press: Playwright's click on Send right after its fill, then the
    status line's success."""
    page.evaluate("() => document.querySelector('#status').removeAttribute('data-kind')")
    page.click("#send")
    page.wait_for_selector("#status[data-kind=success]")


def submit_in_page(page) -> None:
    """Reported beside the goal: no input events at all. From an idle page, the form's
    requestSubmit() (the submit event a click on Send fires), the status line's
    success awaited in the page."""
    page.evaluate(IDLE)
    page.evaluate(
        """() => new Promise((resolve, reject) => {
            const status = document.querySelector('#status');
            status.removeAttribute('data-kind');
            const watch = new MutationObserver(() => {
                const kind = status.dataset.kind;
                if (kind !== 'success' && kind !== 'error') return;
                watch.disconnect();
                if (kind === 'error') reject(new Error(status.textContent));
                else resolve();
            });
            watch.observe(status, {attributes: true, attributeFilter: ['data-kind']});
            setTimeout(() => reject(new Error('no answer in 30 s')), 30000);
            document.querySelector('#send-form').requestSubmit();
        })"""
    )


@dataclass
class P4Rounds:
    """One way of pressing Send, measured in rounds taking turns (ms each)."""

    sends: list[float]
    pressed_echoes: list[float]  # the goal's baseline: the same press, the trivial POST
    plain_posts: list[float]  # the earlier baseline: no press, from the idle page

    def ratio(self, baseline: list[float]) -> float:
        return statistics.median(self.sends) / statistics.median(baseline)

    def figure(self, baseline: list[float]) -> str:
        return f"{spread(self.sends, ' ms', 1)} vs {spread(baseline, ' ms', 1)}"


def p4_rounds(page, text: str, body_size: int, press, rounds: int = P4_ROUNDS) -> P4Rounds:
    """Send times, pressed-echo times and plain POST times, taking turns, after
    unmeasured warm-up rounds (the goal is about a warmed-up page). Each press starts
    from the page as the last round left it once idle: the last send's work ahead (a
    puzzle fetched, a seal prepared) finished, as it would while a person writes."""
    sends, echoes, posts = [], [], []
    for _ in range(P4_WARM_UP + rounds):
        page.fill("#message", text)
        press(page)
        sends.append(page.evaluate(SEND_TIME))
        page.evaluate(IDLE)
        page.evaluate(ARM_ECHO, body_size)
        page.fill("#message", text)
        press(page)
        echoes.append(page.evaluate(ECHO_TIME))
        page.evaluate(IDLE)
        posts.append(page.evaluate(PLAIN_POST, body_size))
    return P4Rounds(sends[P4_WARM_UP:], echoes[P4_WARM_UP:], posts[P4_WARM_UP:])


def p4_sender_page(work: Path) -> Result:
    from playwright.sync_api import sync_playwright

    with instance(work / "p4") as server, sync_playwright() as playwright:
        keypair = new_inbox(server.url)
        link = f"{server.url}/to/{keypair.public_key_text}"
        text = "m" * MAX_TEXT_BYTES
        body_size = len(message_body(keypair, text))
        rounds = {}
        for label, flags in (("JIT", []), ("jitless", ["--js-flags=--jitless"])):
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS + flags
            )
            page = browser.new_page()
            page.goto(link)
            page.evaluate(PRESSED_AT)
            if label == "JIT":
                transferred = page.evaluate(
                    "() => performance.getEntries().filter(e => 'transferSize' in e)"
                    ".reduce((sum, e) => sum + e.transferSize, 0)"
                )
                rounds["click"] = p4_rounds(page, text, body_size, click_send)
                rounds["submit"] = p4_rounds(page, text, body_size, submit_in_page, 30)
            else:
                rounds["jitless"] = p4_rounds(page, text, body_size, click_send, 15)
            browser.close()

    click, submit, jitless = rounds["click"], rounds["submit"], rounds["jitless"]
    size_ok = transferred <= 200 * 1024
    result = Result(
        "P4",
        "sender page",
        click.ratio(click.pressed_echoes),
        "<=",
        1.5,
        [
            f"transfer for the sender page: {transferred / 1024:.1f} KiB (goal <= 200 KiB): "
            f"{'PASS' if size_ok else 'FAIL'}",
            f"Send to 201 for the largest message ({MAX_TEXT_BYTES} bytes of text, "
            f"{body_size} bytes posted; with JIT, after {P4_WARM_UP} warm-up rounds), clicked, "
            f"against the same click posting {body_size} ready-made bytes to the trivial "
            f"endpoint: {click.figure(click.pressed_echoes)}",
            f"the same sends against a plain POST from the idle page, no press (the goal's "
            f"earlier baseline): {click.figure(click.plain_posts)} (ratio "
            f"{click.ratio(click.plain_posts):.2f}, reported)",
            f"the form submitted by the idle page itself, no input events, both sides: "
            f"{submit.figure(submit.pressed_echoes)} (ratio "
            f"{submit.ratio(submit.pressed_echoes):.2f}, reported)",
            f"--jitless, clicked, both sides: {jitless.figure(jitless.pressed_echoes)} (ratio "
            f"{jitless.ratio(jitless.pressed_echoes):.2f}, reported, not a goal)",
        ],
    )
    if not size_ok:
        result.ratio = float("inf")
    return result


# ---- P5: memory ----


def p5_memory(work: Path) -> Result:
    with instance(work / "p5") as server:
        keypair = new_inbox(server.url)
        body = message_body(keypair)
        url = f"{server.url}/api/v1/inboxes/{keypair.public_key_text}/messages"
        first = wrk(url, body, seconds=2, connections=8)
        sent = first["total"]
        assert sent >= 1_000 and first["non_2xx"] == 0, first
        after_first = server.rss_kib()
        while sent < 100_000:
            run = wrk(url, body, seconds=20, connections=32)
            assert run["non_2xx"] == 0, run
            sent += run["total"]
        after_all = server.rss_kib()
    return Result(
        "P5",
        "memory",
        after_all / after_first,
        "<=",
        1.1,
        [
            f"server RSS (master + workers + writer) after {first['total']:,} submissions: "
            f"{after_first / 1024:.1f} MiB",
            f"after {sent:,} submissions: {after_all / 1024:.1f} MiB",
        ],
    )


GOALS = {
    "P1": p1_throughput,
    "P2": p2_paging,
    "P3": p3_cli_read,
    "P4": p4_sender_page,
    "P5": p5_memory,
    "P6": p6_attachments,
}

# The goals whose load comes from wrk; the others run without it.
NEEDS_WRK = {"P1", "P5"}


def main() -> int:
    wanted = [goal.upper() for goal in sys.argv[1:]] or list(GOALS)
    if NEEDS_WRK & set(wanted) and shutil.which("wrk") is None:
        print("wrk is missing: install Debian's 'wrk' package (make bench does)", file=sys.stderr)
        return 2
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; SQLite, and "
        "the checks (limits, puzzles, quota caps) off but in P1"
    )
    failed = 0
    with tempfile.TemporaryDirectory(prefix="secretlink-bench-") as work:
        for goal in wanted:
            result = GOALS[goal](Path(work))
            print(result.report(), flush=True)
            failed += not result.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
