"""P6: sending a file from the sender page, against uploading its bytes unencrypted.

The server is the benchmark instance (benchmarks/bench_server.py) with the attachment
limits raised to what an operator may allow (1 GiB per file, no cap per inbox), and
one inbox that takes attachments. Chromium is Debian's, with the flags of the other
goals. Every upload runs in a fresh browser context (so a fresh renderer process):

- encrypted: the sender page's own flow. Message text, the file chosen in "Files
  (optional)", Send; the time is the page's User Timing measure `secretlink:send`
  (from Send to the 201 of the message that lists the file: upload puzzle and start,
  reading, AES-GCM, every request of the blob, then the message itself).
- baseline, in the same browser: the same number of bytes (the blob's padded length:
  the file's bytes, then zeros) PATCHed unencrypted to the same chunk endpoint, in
  requests of the same size, by a `fetch` loop in the same page whose bodies are the
  file's slices (`File.slice`), as a page uploads a file it does not encrypt. The
  upload is reserved beforehand through the same API calls (puzzle, start), from
  Python, and not timed: the baseline is the bytes going through the endpoint.
- the same loop with the slices read into memory and sent as `Uint8Array` bodies, as
  the page sent its encrypted pieces until it sent Blobs: reported, to show what that
  kind of body costs by itself (docs/PERFORMANCE.md, "P6").
- memory: VmHWM (peak resident memory) of the renderer processes, reset through
  /proc/<pid>/clear_refs just before each upload; the same for the server's
  processes (master, workers and the message writer), summed.

The 1 GiB upload goes through the page too (with a JIT), once.
"""

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from benchmarks.common import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    Instance,
    Result,
    instance,
    new_inbox,
    spread,
    status_kib,
)
from secretlink.client.http import Api, InboxClient, with_work
from secretlink.crypto import b64encode
from secretlink.crypto.attachments import BLOB_ID_BYTES, padded_length

MIB = 1 << 20
SMALL = 10 * MIB
LARGE = 100 * MIB
HUGE = 1 << 30  # the largest file an operator may allow (SECRETLINK_ATTACHMENT_MAX_FILE_BYTES)
ROUNDS = 3
JITLESS_ROUNDS = 1
# Goals: the page's peak at LARGE against SMALL; the server's at LARGE and HUGE against
# SMALL (P5's tolerance for "does not grow").
PAGE_MEMORY_GOAL = 1.2
SERVER_MEMORY_GOAL = 1.1
SERVER_SETTINGS = {
    "attachment_max_file_bytes": str(HUGE),
    "attachment_max_message_bytes": str(2 * HUGE),
    "inbox_max_attachment_bytes": "0",
}
# How long one upload may take before the run gives up (1 GiB on a loaded machine).
UPLOAD_TIMEOUT_MS = 30 * 60 * 1000

# The baseline's request loop. `fromFile`: each body is a Blob of the file's slice (and,
# past the file's end, zeros): how a page uploads a file's bytes as they are. Otherwise
# each body is a Uint8Array read into memory first, as the sender page sent its
# encrypted pieces before it sent Blobs (reported: what that kind of body costs).
PLAIN_UPLOAD = """async ({ url, capability, length, chunk, fromFile }) => {
  const file = document.querySelector("#p6-file").files[0];
  const start = performance.now();
  let sent = 0;
  while (sent < length) {
    const end = Math.min(sent + chunk, length);
    const piece = file.slice(sent, Math.min(end, file.size));
    let body;
    if (fromFile) {
      body = new Blob([piece, new Uint8Array(Math.max(0, end - Math.max(sent, file.size)))]);
    } else {
      body = new Uint8Array(end - sent);
      body.set(new Uint8Array(await piece.arrayBuffer()));
    }
    const response = await fetch(url, {
      method: "PATCH",
      headers: {
        "Content-Type": "application/octet-stream",
        Authorization: `Bearer ${capability}`,
        "Upload-Offset": String(sent),
      },
      body,
      credentials: "omit",
      cache: "no-store",
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(`PATCH at ${sent}: ${response.status} ${answer.code}`);
    sent = answer.received;
  }
  return performance.now() - start;
}"""

ADD_FILE_INPUT = """() => {
  const input = document.createElement("input");
  input.type = "file";
  input.id = "p6-file";
  input.hidden = true;
  document.body.append(input);
}"""


@dataclass
class Upload:
    ms: float
    page_kib: int  # peak resident memory of the renderers (the largest one)
    server_kib: int  # peak resident memory of the server's processes, summed


class Bench:
    """One Chromium and the instance it uploads to."""

    def __init__(self, browser: Browser, server: Instance, link: str, public_key: str):
        self.browser = browser
        self.server = server
        self.link = link
        self.public_key = public_key
        self.cdp = browser.new_browser_cdp_session()

    def renderers(self) -> list[int]:
        processes = self.cdp.send("SystemInfo.getProcessInfo")["processInfo"]
        return [process["id"] for process in processes if process["type"] == "renderer"]

    def fresh_page(self) -> Page:
        page = self.browser.new_context().new_page()
        page.goto(self.link)
        expect(page.get_by_label("Files (optional)")).to_be_attached()
        return page

    def measured(self, page: Page, upload) -> Upload:
        renderers, servers = self.renderers(), self.server.pids()
        reset_peaks(renderers + servers)
        ms = upload(page)
        page_kib = max(peak_kib(pid) for pid in renderers)
        server_kib = sum(peak_kib(pid) for pid in servers)
        page.context.close()
        return Upload(ms, page_kib, server_kib)

    def encrypted(self, path: Path) -> Upload:
        def send(page: Page) -> float:
            page.get_by_label("Message").fill("P6: a file from the sender page")
            page.get_by_label("Files (optional)").set_input_files(str(path))
            page.get_by_role("button", name="Send").click()
            status = page.locator("#status[data-kind=success], #status[data-kind=error]")
            status.wait_for(timeout=UPLOAD_TIMEOUT_MS)
            if status.get_attribute("data-kind") != "success":
                raise RuntimeError(f"the sender page failed: {status.text_content()}")
            return page.evaluate(
                "() => performance.getEntriesByName('secretlink:send').pop().duration"
            )

        return self.measured(self.fresh_page(), send)

    def plain(self, path: Path, from_file: bool = True) -> Upload:
        length = padded_length(path.stat().st_size)
        blob_id, capability, chunk = reserve(self.server.url, self.public_key, length)

        def upload(page: Page) -> float:
            page.evaluate(ADD_FILE_INPUT)
            page.locator("#p6-file").set_input_files(str(path))
            return page.evaluate(
                PLAIN_UPLOAD,
                {
                    "url": f"/api/v1/inboxes/{self.public_key}/uploads/{blob_id}",
                    "capability": capability,
                    "length": length,
                    "chunk": chunk,
                    "fromFile": from_file,
                },
            )

        return self.measured(self.fresh_page(), upload)


def reserve(server: str, public_key: str, length: int) -> tuple[str, str, int]:
    """Start an upload of `length` bytes as the page does (puzzle, then start): the blob
    id, the upload's capability and the request size (at most 1 MiB, as the page)."""
    api = Api(server)
    base = f"/api/v1/inboxes/{public_key}"
    blob_id = b64encode(os.urandom(BLOB_ID_BYTES))
    started = with_work(
        lambda fields: api.call(
            "POST", f"{base}/uploads", json={"blob_id": blob_id, "length": length, **fields}
        ),
        api.call("POST", f"{base}/uploads/puzzle", json={"length": length}),
    )
    return blob_id, started["upload"], min(started["chunk_bytes"], MIB)


def reset_peaks(pids: list[int]) -> None:
    """Set each process's VmHWM back to its VmRSS (proc(5), clear_refs "5")."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except FileNotFoundError:  # a spare renderer that Chromium ended meanwhile
            continue


def peak_kib(pid: int) -> int:
    try:
        return status_kib(pid, "VmHWM")
    except FileNotFoundError:  # a spare renderer that Chromium ended meanwhile
        return 0


def write_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(os.urandom(MIB))
        handle.write(os.urandom(size % MIB))
    return path


def size_text(size: int) -> str:
    return f"{size >> 30} GiB" if size % (1 << 30) == 0 else f"{size // MIB} MiB"


def mib(kib: int) -> float:
    return kib / 1024


@dataclass
class Figures:
    """One browser's uploads of one file: encrypted by the page, and both baselines."""

    encrypted: list[Upload]
    plain: list[Upload]  # the file's slices as bodies: the goal's baseline
    in_memory: list[Upload]  # Uint8Array bodies, as the page sent them before

    def median(self, kind: str, figure: str) -> float:
        return statistics.median(getattr(upload, figure) for upload in getattr(self, kind))

    def seconds(self, kind: str) -> str:
        return spread([upload.ms / 1000 for upload in getattr(self, kind)], " s", 2)

    def page_mib(self, kind: str) -> str:
        return spread([mib(upload.page_kib) for upload in getattr(self, kind)], " MiB")


def rounds(bench: Bench, path: Path, count: int, in_memory: bool = True) -> Figures:
    """`count` rounds of each kind of upload of one file; the order turns from round to
    round, so a drift of the (shared) machine spreads over all of them."""
    figures = Figures([], [], [])
    kinds = {
        "encrypted": lambda: bench.encrypted(path),
        "plain": lambda: bench.plain(path),
        "in_memory": lambda: bench.plain(path, from_file=False),
    }
    if not in_memory:
        del kinds["in_memory"]
    names = list(kinds)
    for number in range(count):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            getattr(figures, name).append(kinds[name]())
    return figures


def p6_attachments(work: Path) -> Result:
    folder = work / "p6-files"
    folder.mkdir()
    small = write_file(folder / "small.bin", SMALL)
    large = write_file(folder / "large.bin", LARGE)
    with instance(work / "p6", **SERVER_SETTINGS) as server, sync_playwright() as playwright:
        keypair = new_inbox(server.url)
        owner = InboxClient(server.url, keypair)
        owner.api.call(
            "PATCH",
            f"{owner.base}/settings",
            json={"accepts_attachments": True},
            token=owner.token(),
        )
        link = f"{server.url}/to/{keypair.public_key_text}"

        def bench(flags: list[str]) -> tuple[Browser, Bench]:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS + flags
            )
            return browser, Bench(browser, server, link, keypair.public_key_text)

        browser, jit = bench([])
        rounds(jit, small, 1)  # warm-up: caches, the server's first uploads
        at_small = rounds(jit, small, ROUNDS)
        at_large = rounds(jit, large, ROUNDS)
        at_huge = jit.encrypted(write_file(folder / "huge.bin", HUGE))
        browser.close()

        browser, jitless = bench(["--js-flags=--jitless"])
        without_jit = rounds(jitless, large, JITLESS_ROUNDS, in_memory=False)
        browser.close()
    return p6_result(at_small, at_large, at_huge, without_jit)


def p6_result(small: Figures, large: Figures, huge: Upload, jitless: Figures) -> Result:
    ratio = large.median("encrypted", "ms") / large.median("plain", "ms")
    in_memory_ratio = large.median("in_memory", "ms") / large.median("plain", "ms")
    jitless_ratio = jitless.median("encrypted", "ms") / jitless.median("plain", "ms")
    page_ratio = large.median("encrypted", "page_kib") / small.median("encrypted", "page_kib")
    server_small = small.median("encrypted", "server_kib")
    server_large = large.median("encrypted", "server_kib")
    server_ratio = max(server_large, huge.server_kib) / server_small
    page_ok = page_ratio <= PAGE_MEMORY_GOAL
    server_ok = server_ratio <= SERVER_MEMORY_GOAL
    verdict = {True: "PASS", False: "FAIL"}
    size, small_size, huge_size = size_text(LARGE), size_text(SMALL), size_text(HUGE)

    def memory_ratio(kind: str) -> float:
        return large.median(kind, "page_kib") / small.median(kind, "page_kib")

    result = Result(
        "P6",
        "attachment upload",
        ratio,
        "<=",
        1.5,
        [
            f"sender page, Send to 201 with a {size} file ({padded_length(LARGE):,} bytes "
            f"uploaded in 1 MiB requests): {large.seconds('encrypted')}; the same number of "
            f"bytes unencrypted (the file's slices as fetch bodies) to the same endpoint from "
            f"the same page: {large.seconds('plain')} (with JIT)",
            f"the same bytes read into memory first and sent as Uint8Array bodies, as the "
            f"page sent its pieces before: {large.seconds('in_memory')} (ratio to the plain upload "
            f"{in_memory_ratio:.2f}, reported, not a goal)",
            f"--jitless, {size}: {jitless.seconds('encrypted')} vs {jitless.seconds('plain')} "
            f"(ratio {jitless_ratio:.2f}, reported, not a goal)",
            f"page peak memory (renderer VmHWM) sending {size}: {large.page_mib('encrypted')}; "
            f"{small_size}: {small.page_mib('encrypted')}; ratio {page_ratio:.2f} "
            f"(goal <= {PAGE_MEMORY_GOAL}): {verdict[page_ok]}",
            f"the same ratio for the plain upload: {memory_ratio('plain'):.2f} ("
            f"{large.page_mib('plain')} vs {small.page_mib('plain')}); for Uint8Array bodies: "
            f"{memory_ratio('in_memory'):.2f} ({large.page_mib('in_memory')} vs "
            f"{small.page_mib('in_memory')})",
            "server peak memory (VmHWM, master + workers + writer summed) during the page's "
            f"upload of "
            f"{small_size}: {spread([mib(u.server_kib) for u in small.encrypted], ' MiB')}; "
            f"{size}: {spread([mib(u.server_kib) for u in large.encrypted], ' MiB')}; {huge_size}: "
            f"{mib(huge.server_kib):.0f} MiB; largest / {small_size}: {server_ratio:.2f} "
            f"(goal <= {SERVER_MEMORY_GOAL}): {verdict[server_ok]}",
            f"{huge_size} from the sender page (with JIT): Send to 201 in {huge.ms / 1000:.1f} s, "
            f"page peak {mib(huge.page_kib):.0f} MiB",
        ],
    )
    result.missed = [
        name for name, ok in (("page memory", page_ok), ("server memory", server_ok)) if not ok
    ]
    return result
