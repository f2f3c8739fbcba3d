# ruff: noqa: F811 (the browser fixtures are imported from test_browser.py and test_a11y.py)
"""Attachments in real Chromium (issue 11). The inbox page: a message sent with files
by the Python client is listed with its files; each downloads byte for byte, through a
Blob URL (browsers without the File System Access API) or streamed to a file handle;
a damaged blob, and blobs tampered with or cut short on their way up through the
API, are refused with nothing offered; hostile names are shown escaped; and axe finds
nothing on the page with files listed. The sender page: files chosen there are
encrypted, uploaded (resuming after a dropped request) and read back by the CLI byte
for byte, with and without a JIT; JPEG photos lose their location and camera data
(checked with Pillow: no Exif but the Orientation, the same pixels) unless the sender
unticks the box, and a damaged one is then refused. A large file (50 MB, or
SECRETLINK_TEST_LARGE_FILE_BYTES; a tenth of it without a JIT) goes from page to page
byte for byte, sealed in parts of 16 MiB (one request dropped past the first part, and
resumed), and both progress bars are seen between empty and full.
"""

import base64
import hashlib
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import serving_in_thread
from jpeg_photos import assert_cleaned, photo_with_metadata
from playwright.sync_api import expect
from test_a11y import VARIANTS, Auditor, axe_source  # noqa: F401 (fixtures)
from test_browser import (  # noqa: F401 (fixtures)
    HeldRequests,
    PageErrors,
    browser,
    jitless_browser,
    new_page,
    page_errors,
    playwright_driver,
)

from secretlink.client.attachments import send_files
from secretlink.client.cli import main
from secretlink.client.http import Api, InboxClient, parse_link, post_envelope, with_work
from secretlink.crypto import b64encode, generate_keypair
from secretlink.crypto.attachments import (
    CHUNK_SIZE,
    BlobEncryptor,
    new_attachment,
    padded_length,
)
from secretlink.crypto.envelope import Message, seal
from secretlink.crypto.keyfile import KeyFile, dump_key_file

pytestmark = pytest.mark.browser

# Browsers without showSaveFilePicker (Firefox, Tor Browser): the page gathers the
# file in memory and hands it over as a Blob URL download.
WITHOUT_PICKER = "delete window.showSaveFilePicker;"
# A stand-in for the save dialog that keeps what the page writes, and whether the
# write was committed (close) or thrown away (abort), as Chromium's own would.
RECORDING_PICKER = """
window.savedFiles = [];
window.showSaveFilePicker = async ({ suggestedName }) => ({
  createWritable: async () => {
    const record = { name: suggestedName, chunks: [], state: "open" };
    window.savedFiles.push(record);
    return {
      // Base64, not an array of numbers: megabytes cross to the test in seconds less.
      write: async (bytes) => { record.chunks.push(new Uint8Array(bytes).toBase64()); },
      close: async () => { record.state = "closed"; },
      abort: async () => { record.state = "aborted"; record.chunks = []; },
    };
  },
});
"""
MIB = 1024 * 1024
# The "a 50 MB file sent and downloaded": smaller on a slow machine if need be.
LARGE_FILE_BYTES = int(os.environ.get("SECRETLINK_TEST_LARGE_FILE_BYTES", 50_000_000))
# Every value a <progress> takes, by its accessible name: the pages set `value`, which
# reflects to the attribute, so an observer sees the bar move without any timing.
PROGRESS_RECORDER = """
window.progressSeen = {};
new MutationObserver((records) => {
  for (const record of records) {
    const bar = record.target;
    if (bar.localName !== "progress") continue;
    const name = bar.getAttribute("aria-label");
    (window.progressSeen[name] ??= []).push([bar.value, bar.max]);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""


class Inbox:
    """An inbox made through the API that takes attachments, and its key file."""

    def __init__(self, server, folder: Path):
        self.keypair = generate_keypair()
        owner = InboxClient(server.url, self.keypair)
        self.link = owner.register("")["link"]
        owner.api.call(
            "PATCH",
            f"{owner.base}/settings",
            json={"accepts_attachments": True},
            token=owner.token(),
        )
        self.key_file = folder / "inbox.key"
        self.key_file.write_text(dump_key_file(KeyFile(self.keypair, server=server.url)))
        self.blob_folder = server.data_dir / "blobs" / self.keypair.public_key_text

    def send(self, text: str, files: dict[str, bytes], folder: Path) -> list[Path]:
        folder.mkdir(exist_ok=True)
        paths = []
        for name, content in files.items():
            path = folder / name
            path.write_bytes(content)
            paths.append(path)
        send_files(parse_link(self.link), text, paths)
        return paths


@pytest.fixture
def inbox(live_server, tmp_path) -> Inbox:
    return Inbox(live_server, tmp_path)


def open_inbox(browser, page_errors, inbox: Inbox, init_script: str):
    page = new_page(browser, page_errors)
    page.add_init_script(init_script)
    page.goto(parse_link(inbox.link).server + "/inbox")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(inbox.key_file))
    page.locator("ol.messages pre.text").first.wait_for()
    return page


def file_item(page, name: str):
    return page.locator("ol.messages li.attachment").filter(has_text=name)


def download_bytes(page, name: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download {name}").click()
    download = info.value
    assert download.suggested_filename == name
    path = download.path()
    expect(file_item(page, name).get_by_role("status")).to_contain_text("Downloaded")
    return Path(path).read_bytes()


def test_files_are_listed_and_download_byte_identical(
    browser, live_server, page_errors, inbox, tmp_path
):
    # An empty file, and one of several 64 KiB chunks with a partial last chunk.
    big = os.urandom(5 * CHUNK_SIZE + 1234)
    inbox.send(
        "the report and an empty note", {"empty.txt": b"", "report.pdf": big}, tmp_path / "out"
    )
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)

    expect(page.locator("ol.messages pre.text")).to_have_text(["the report and an empty note"])
    expect(file_item(page, "empty.txt")).to_contain_text("0 bytes · text/plain")
    expect(file_item(page, "report.pdf")).to_contain_text("321.2 KiB · application/pdf")
    # This browser has no save dialog: the page says what it can take in memory.
    expect(page.locator("ol.messages .attachments")).to_contain_text("at most 256 MiB here")

    assert download_bytes(page, "report.pdf") == big
    assert download_bytes(page, "empty.txt") == b""
    progress = file_item(page, "report.pdf").get_by_role(
        "progressbar", name="Downloading report.pdf"
    )
    expect(progress).to_have_attribute("value", str(progress.get_attribute("max")))


def test_with_a_save_dialog_the_file_streams_to_it(
    browser, live_server, page_errors, inbox, tmp_path
):
    big = os.urandom(40 * CHUNK_SIZE + 7)  # 2.5 MiB: more than one network read
    inbox.send("streamed", {"data.bin": big}, tmp_path / "out")
    page = open_inbox(browser, page_errors, inbox, RECORDING_PICKER)
    expect(page.locator("ol.messages .attachments")).not_to_contain_text("256 MiB")

    page.get_by_role("button", name="Download data.bin").click()
    expect(file_item(page, "data.bin").get_by_role("status")).to_contain_text("Saved to the file")
    saved = page.evaluate("window.savedFiles")
    assert [(record["name"], record["state"]) for record in saved] == [("data.bin", "closed")]
    # Written piece by piece as the chunks authenticate, never held whole.
    assert len(saved[0]["chunks"]) > 1
    assert b"".join(base64.b64decode(chunk) for chunk in saved[0]["chunks"]) == big


@pytest.mark.parametrize("picker", [WITHOUT_PICKER, RECORDING_PICKER], ids=["memory", "dialog"])
def test_a_tampered_blob_is_refused_and_nothing_is_offered(
    browser,
    live_server,
    page_errors,
    inbox,
    tmp_path,
    picker,
):
    inbox.send("tampered", {"evidence.bin": os.urandom(4 * CHUNK_SIZE)}, tmp_path / "out")
    (blob,) = inbox.blob_folder.iterdir()
    stored = bytearray(blob.read_bytes())
    stored[2 * CHUNK_SIZE + 100] ^= 0x01  # one bit inside the third chunk
    blob.write_bytes(bytes(stored))
    page = open_inbox(browser, page_errors, inbox, picker)

    downloads = []
    page.on("download", lambda download: downloads.append(download))
    page.get_by_role("button", name="Download evidence.bin").click()
    alert = file_item(page, "evidence.bin").get_by_role("alert")
    expect(alert).to_contain_text("damaged or was tampered with, so nothing was saved")
    expect(alert).to_contain_text("chunk 2 does not authenticate")
    expect(file_item(page, "evidence.bin").get_by_role("progressbar")).to_be_hidden()
    assert downloads == []
    if picker == RECORDING_PICKER:
        saved = page.evaluate("window.savedFiles")
        assert [(record["state"], record["chunks"]) for record in saved] == [("aborted", [])]


def test_a_truncated_blob_is_refused(browser, live_server, page_errors, inbox, tmp_path):
    inbox.send("short", {"cut.bin": os.urandom(2 * CHUNK_SIZE)}, tmp_path / "out")
    (blob,) = inbox.blob_folder.iterdir()
    blob.write_bytes(blob.read_bytes()[:CHUNK_SIZE])
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)

    downloads = []
    page.on("download", lambda download: downloads.append(download))
    page.get_by_role("button", name="Download cut.bin").click()
    expect(file_item(page, "cut.bin").get_by_role("alert")).to_contain_text("nothing was saved")
    assert downloads == []


def test_hostile_file_names_are_shown_escaped(browser, live_server, page_errors, inbox, tmp_path):
    # invoice<RLO>fdp.exe reads "invoiceexe.pdf" unescaped; a zero-width space and a
    # direction isolate hide in another name. The escape character (ESC) cannot be in
    # a name: the writer turns it into "_" (SPEC 5.10).
    names = {
        "invoice\u202efdp.exe": b"MZ",
        "pay\u200broll\u2066.csv": b"a,b",
        "bell\x1b[31m.txt": b"",
    }
    inbox.send("names", names, tmp_path / "out")
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)

    shown = page.locator("ol.messages li.attachment bdi.file-name")
    expect(shown).to_have_count(3)
    expect(shown.nth(0)).to_have_text("invoice[U+202E]fdp.exe")
    expect(shown.nth(1)).to_have_text("pay[U+200B]roll[U+2066].csv")
    expect(shown.nth(2)).to_have_text("bell_[31m.txt")
    texts = page.locator("ol.messages .attachments").all_text_contents()
    assert not any(char in text for text in texts for char in "\u202e\u200b\u2066\x1b")
    # Saved under a name with the hidden characters made visible as "_".
    with page.expect_download() as info:
        page.get_by_role("button", name="Download invoice[U+202E]fdp.exe").click()
    assert info.value.suggested_filename == "invoice_fdp.exe"


def test_a_file_too_large_for_memory_is_refused_with_the_sentence(
    browser,
    live_server,
    page_errors,
    inbox,
):
    # Listed only (no blob is needed to be refused before fetching): stored directly.
    entry = new_attachment("film.mkv", "video/x-matroska", 300 * MIB)
    envelope = seal(Message("too big for memory", attachments=(entry,)), inbox.keypair.public_key)
    live_server.app.extensions["secretlink.storage"].add_message(
        inbox.keypair.public_key_text, envelope
    )
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)
    expect(file_item(page, "film.mkv")).to_contain_text("300.0 MiB · video/x-matroska")
    page.get_by_role("button", name="Download film.mkv").click()
    expect(file_item(page, "film.mkv").get_by_role("alert")).to_contain_text(
        "it takes files of at most 256 MiB here"
    )


def test_export_lists_files_without_their_content(
    browser, live_server, page_errors, inbox, tmp_path
):
    inbox.send("see attached", {"notes.txt": b"secret content"}, tmp_path / "out")
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)
    with page.expect_download() as info:
        page.locator("#export-markdown").click()
    markdown = Path(info.value.path()).read_text()
    assert "With 1 file (not in this export" in markdown
    assert "notes.txt · 14 bytes · text/plain" in markdown
    assert "secret content" not in markdown


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_axe_finds_nothing_on_the_inbox_with_files(
    browser,
    axe_source,
    live_server,
    inbox,
    tmp_path,
    variant,
):
    inbox.send("two files", {"a.txt": b"hello", "b\u202e.bin": os.urandom(1000)}, tmp_path / "out")
    auditor = Auditor(browser, axe_source, variant)
    page = auditor.page()
    page.add_init_script(WITHOUT_PICKER)
    page.goto(live_server.url + "/inbox")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(inbox.key_file))
    page.locator("ol.messages li.attachment").nth(1).wait_for()
    auditor.audit(page, "inbox page, a message with files")
    with page.expect_download():
        page.get_by_role("button", name="Download a.txt").click()
    expect(file_item(page, "a.txt").get_by_role("status")).to_contain_text("Downloaded")
    auditor.audit(page, "inbox page, a file downloaded")
    sender = auditor.page()
    sender.goto(inbox.link)
    choose_files(sender, str(tmp_path / "out" / "a.txt"))
    sender.locator("#attach-list li").wait_for()
    auditor.audit(sender, "sender page, a file chosen")
    auditor.check()


# ---- the sender page ----


def saved_by_cli(inbox: Inbox, folder: Path) -> dict[str, bytes]:
    """What `secretlink inbox read --save-attachments` saves of the inbox's messages."""
    folder.mkdir()
    result = CliRunner().invoke(
        main,
        ["inbox", "read", "--key-file", str(inbox.key_file), "--save-attachments", str(folder)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def choose_files(page, paths) -> None:
    """Choose files as a user can: once the page shows the files input, which it does
    when the inbox's view says it takes files."""
    files_input = page.get_by_label("Files (optional)")
    expect(files_input).to_be_visible()
    files_input.set_input_files(paths)


def send_with_files(
    page, link: str, text: str, paths: list[Path], timeout_ms: int = 60_000
) -> None:
    page.goto(link)
    page.get_by_label("Message").fill(text)
    choose_files(page, [str(path) for path in paths])
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#status")).to_contain_text("Sent.", timeout=timeout_ms)


def outgoing(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in files]


def test_sender_page_sends_files_the_cli_reads_byte_identical(
    browser, live_server, page_errors, inbox, tmp_path
):
    content = {"empty.txt": b"", "scan.pdf": os.urandom(5 * CHUNK_SIZE + 99)}
    page = new_page(browser, page_errors)
    page.goto(inbox.link)
    files_input = page.get_by_label("Files (optional)")
    expect(files_input).to_be_visible()
    expect(page.locator("#attach-warning")).to_contain_text("where a photo was taken")
    expect(page.locator("#attach-limits")).to_contain_text("each at most 25.0 MiB")
    send_with_files(
        page, inbox.link, "two files from the page", outgoing(tmp_path / "out", content)
    )
    expect(page.locator("#attach-progress-text")).to_contain_text("Uploaded 2 files")
    expect(page.get_by_role("progressbar", name="Uploading files")).to_be_visible()

    assert saved_by_cli(inbox, tmp_path / "saved") == content


def drop_uploads(page, drop) -> list[int]:
    """Abort each upload request (PATCH) for which `drop(offset, dropped)` is true, as a
    connection reset; the `Upload-Offset` of each request dropped, in order."""
    dropped = []

    def route(route):
        offset = int(route.request.headers.get("upload-offset", "-1"))
        if route.request.method == "PATCH" and drop(offset, dropped):
            dropped.append(offset)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/uploads/*", route)
    return dropped


def test_a_dropped_upload_request_is_retried_from_where_the_server_is(
    browser, live_server, page_errors, inbox, tmp_path
):
    content = {"report.bin": os.urandom(3 * CHUNK_SIZE)}
    page = new_page(browser, page_errors)
    dropped = drop_uploads(page, lambda offset, dropped: not dropped)
    send_with_files(page, inbox.link, "despite the network", outgoing(tmp_path / "out", content))
    # The request is a worker's (seal-worker.js): its failed load is not logged on the
    # page, which shows no error either.
    assert dropped == [0]
    assert saved_by_cli(inbox, tmp_path / "saved") == content


def test_drops_spread_over_an_upload_are_retried_each_time(
    browser, live_server, page_errors, inbox, tmp_path
):
    # Six requests of 1 MiB or less; the first try at each offset is dropped. Retries
    # are counted in a row (3 at most): a long upload over a flaky network survives
    # more drops than that, as long as each retry gets a request through.
    content = {"flaky.bin": os.urandom(5 * MIB + 12345)}
    page = new_page(browser, page_errors)
    dropped = drop_uploads(page, lambda offset, dropped: offset not in dropped)
    send_with_files(page, inbox.link, "a flaky network", outgoing(tmp_path / "out", content))
    assert len(dropped) >= 6
    assert saved_by_cli(inbox, tmp_path / "saved") == content


def test_an_upload_that_never_gets_through_says_so_and_sends_no_message(
    browser, live_server, page_errors, inbox, tmp_path
):
    content = {"report.bin": os.urandom(3 * CHUNK_SIZE)}
    page = new_page(browser, page_errors)
    dropped = drop_uploads(page, lambda offset, dropped: True)
    page.goto(inbox.link)
    page.get_by_label("Message").fill("never arrives")
    choose_files(page, outgoing(tmp_path / "out", content))
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#status")).to_contain_text(
        "Could not reach the server. Your message was not sent; try again.", timeout=30_000
    )
    assert dropped == [0] * 4  # the first try and 3 retries, each from offset 0
    assert list(InboxClient(live_server.url, inbox.keypair).messages()) == []


def test_a_tampered_encryption_worker_is_not_run(browser, live_server, inbox, tmp_path):
    """The worker that holds the file keys must match the page's integrity hash, or
    nothing is uploaded and nothing sent."""
    sender = new_page(browser, PageErrors())  # the refused fetch is logged on purpose
    sender.route(
        "**/static/build/seal-worker.js*",
        lambda route: route.fulfill(
            status=200,
            content_type="text/javascript",
            body="self.onmessage = () => self.postMessage({ blob: new Blob(['x']) });",
        ),
    )
    sender.goto(inbox.link)
    sender.get_by_label("Message").fill("must not go with a tampered worker")
    paths = outgoing(tmp_path / "out", {"secret.pdf": os.urandom(1000)})
    choose_files(sender, [str(path) for path in paths])
    sender.get_by_role("button", name="Send").click()
    expect(sender.get_by_role("alert")).to_contain_text(
        "The encryption script could not be loaded or failed its integrity check. Nothing was sent."
    )
    assert list(InboxClient(live_server.url, inbox.keypair).messages()) == []
    assert not inbox.blob_folder.exists() or not any(inbox.blob_folder.iterdir())


def test_files_chosen_before_the_input_shows_are_listed_once_it_does(
    browser, live_server, page_errors, inbox, tmp_path
):
    """Files already in the input when the inbox's view arrives (a form the browser
    restored) go with the message, so the page lists them as soon as it shows the input."""
    page = new_page(browser, page_errors)
    # The inbox's view, held back until the files are in the input.
    views = HeldRequests(page, re.compile(r"/api/v1/inboxes/[A-Za-z0-9_-]+$"))
    page.goto(inbox.link)
    expect(page.get_by_label("Files (optional)")).to_be_hidden()
    page.get_by_label("Files (optional)").set_input_files(
        outgoing(tmp_path / "out", {"early.txt": b"chosen early"})
    )
    page.wait_for_function("() => document.querySelector('#attachments').files.length === 1")
    views.release("the inbox's view")
    expect(page.locator("#attach-list li")).to_have_text(re.compile(r"^early\.txt · 12 bytes$"))


def test_the_files_input_is_hidden_where_attachments_are_not_accepted(
    browser, live_server, page_errors
):
    link = InboxClient(live_server.url, generate_keypair()).register("")["link"]
    page = new_page(browser, page_errors)
    page.goto(link)
    expect(page.get_by_label("Message")).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_label("Files (optional)")).to_be_hidden()


def test_sender_page_sends_a_file_without_jit(
    jitless_browser, live_server, page_errors, inbox, tmp_path
):
    photo = photo_with_metadata()
    content = {"note.txt": b"sent at Tor Browser's Safer level", "photo.jpg": photo}
    page = new_page(jitless_browser, page_errors)
    send_with_files(page, inbox.link, "no JIT", outgoing(tmp_path / "out", content))
    saved = saved_by_cli(inbox, tmp_path / "saved")
    assert saved["note.txt"] == content["note.txt"]
    assert_cleaned(saved["photo.jpg"], photo)


def test_a_file_over_the_servers_limit_is_refused_before_any_upload(browser, page_errors, tmp_path):
    with serving_in_thread(tmp_path / "small", attachment_max_file_bytes=100_000) as server:
        inbox = Inbox(server, tmp_path)
        page = new_page(browser, page_errors)
        page.goto(inbox.link)
        expect(page.locator("#attach-limits")).to_contain_text("each at most 97.7 KiB")
        page.get_by_label("Message").fill("too big")
        paths = outgoing(tmp_path / "out", {"ok.txt": b"fine", "big.bin": os.urandom(200_000)})
        choose_files(page, [str(path) for path in paths])
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "big.bin has 195.3 KiB; this server takes files of at most 97.7 KiB. Nothing was sent."
        )
        assert not inbox.blob_folder.exists() or not any(inbox.blob_folder.iterdir())
        assert list(InboxClient(server.url, inbox.keypair).messages()) == []


# ---- blobs tampered with or cut short on their way up, through the API ----


def upload_blob(server_url: str, public_key: str, blob_id: bytes, blob: bytes) -> str:
    """Upload `blob` as it is (whatever the entry says it should be); its id."""
    api = Api(server_url)
    base = f"/api/v1/inboxes/{public_key}"
    started = with_work(
        lambda fields: api.call(
            "POST",
            f"{base}/uploads",
            json={"blob_id": b64encode(blob_id), "length": len(blob), **fields},
        ),
        api.call("POST", f"{base}/uploads/puzzle", json={"length": len(blob)}),
    )
    url = f"{base}/uploads/{b64encode(blob_id)}"
    for offset in range(0, len(blob), MIB):
        api.call(
            "PATCH",
            url,
            data=blob[offset : offset + MIB],
            token=started["upload"],
            headers={"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"},
        )
    return b64encode(blob_id)


def test_blobs_tampered_with_or_cut_short_on_upload_are_refused(
    browser, live_server, page_errors, inbox
):
    content = os.urandom(3 * CHUNK_SIZE)
    link = parse_link(inbox.link)
    entries, blob_ids = [], []
    for name in ("tampered.bin", "cut.bin", "intact.bin"):
        entry = new_attachment(name, "application/octet-stream", len(content))
        encryptor = BlobEncryptor(entry)
        blob = bytearray(encryptor.update(content) + b"".join(encryptor.finish()))
        if name == "tampered.bin":
            blob[CHUNK_SIZE + 100] ^= 0x80  # a bit inside the second chunk (index 1)
        if name == "cut.bin":
            # Still a length the server takes (a smaller file's blob): only the
            # recipient, who knows the size, can tell.
            blob = blob[: padded_length(CHUNK_SIZE)]
        entries.append(entry)
        blob_ids.append(upload_blob(live_server.url, link.public_key_text, entry.blob_id, blob))
    envelope = seal(Message("sent past the page", attachments=tuple(entries)), link.public_key)
    post_envelope(link, envelope, blob_ids)
    page = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    for name in ("tampered.bin", "cut.bin"):
        page.get_by_role("button", name=f"Download {name}").click()
        alert = file_item(page, name).get_by_role("alert")
        expect(alert).to_contain_text("damaged or was tampered with, so nothing was saved")
    expect(file_item(page, "tampered.bin").get_by_role("alert")).to_contain_text(
        "chunk 1 does not authenticate"
    )
    assert downloads == []
    assert download_bytes(page, "intact.bin") == content


# ---- JPEG photos: location and camera data go when the sender agrees ----


def test_the_page_removes_jpeg_metadata_and_the_recipient_sees_the_same_photo(
    browser, live_server, page_errors, inbox, tmp_path
):
    photo = photo_with_metadata()
    not_a_jpeg = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    # Known by its bytes, not its name: a JPEG called .txt is cleaned, a PNG called .jpg
    # goes as it is.
    files = {"holiday.jpg": photo, "scan.txt": photo, "drawing.jpg": not_a_jpeg}
    page = new_page(browser, page_errors)
    page.goto(inbox.link)
    box = page.get_by_label("Remove location and camera data from JPEG photos")
    expect(box).to_be_checked()
    send_with_files(page, inbox.link, "photos", outgoing(tmp_path / "out", files))
    progress_line = page.locator("#attach-progress-text")
    expect(progress_line).to_contain_text("Uploaded 3 files")
    expect(progress_line).to_contain_text("Location and camera data removed from 2 JPEG photos.")

    recipient = open_inbox(browser, page_errors, inbox, WITHOUT_PICKER)
    cleaned = download_bytes(recipient, "holiday.jpg")
    assert_cleaned(cleaned, photo)
    # Listed, encrypted and counted at the cleaned size: the page's decryption checks
    # the blob against the size its entry states, to the byte.
    expect(file_item(recipient, "holiday.jpg")).to_contain_text("1.6 KiB · image/jpeg")
    assert download_bytes(recipient, "scan.txt") == cleaned
    assert download_bytes(recipient, "drawing.jpg") == not_a_jpeg


def test_unticked_a_photo_goes_byte_for_byte(browser, live_server, page_errors, inbox, tmp_path):
    photo = photo_with_metadata()
    page = new_page(browser, page_errors)
    page.goto(inbox.link)
    page.get_by_label("Message").fill("as it is")
    page.get_by_label("Remove location and camera data from JPEG photos").uncheck()
    choose_files(page, outgoing(tmp_path / "out", {"original.jpg": photo}))
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#status")).to_contain_text("Sent.")
    expect(page.locator("#attach-progress-text")).to_have_text(
        re.compile(r"^Uploaded 1 file \(\S+ KiB encrypted\)\.$")  # nothing said removed
    )
    assert saved_by_cli(inbox, tmp_path / "saved") == {"original.jpg": photo}


def test_a_damaged_jpeg_is_refused_while_its_metadata_is_to_go(
    browser, live_server, page_errors, inbox, tmp_path
):
    # Cut off inside its image data: the walk cannot vouch for what it did not see.
    damaged = photo_with_metadata()[:-300]
    paths = outgoing(tmp_path / "out", {"broken.jpg": damaged})
    page = new_page(browser, page_errors)
    page.goto(inbox.link)
    page.get_by_label("Message").fill("a damaged photo")
    choose_files(page, paths)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text(
        "broken.jpg looks like a JPEG photo but is damaged (it ends inside its image data), "
        "so its location and camera data cannot be removed. Untick the box to send it as it "
        "is. Nothing was sent."
    )
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert not inbox.blob_folder.exists() or not any(inbox.blob_folder.iterdir())
    assert list(InboxClient(live_server.url, inbox.keypair).messages()) == []
    # The sender's choice: unticked, it goes as it is.
    page.get_by_label("Remove location and camera data from JPEG photos").uncheck()
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#status")).to_contain_text("Sent.")
    assert saved_by_cli(inbox, tmp_path / "saved") == {"broken.jpg": damaged}


# ---- a large file from page to page, the progress bars moving ----


def progress_between(page, name: str) -> list[float]:
    """The values the bar called `name` took strictly between empty and full."""
    seen = page.evaluate("window.progressSeen")[name]
    return [value for value, top in seen if 0 < value < top]


def drop_one_request_from(page, offset: int) -> list[int]:
    """Drop the first upload request that starts at `offset` or later; the offsets of
    the dropped requests (one, once it happened)."""
    return drop_uploads(page, lambda start, dropped: start >= offset and not dropped)


def large_file_round_trip(
    browser, page_errors, tmp_path, size: int, drop_from: int | None = None
) -> None:
    limits = {
        "attachment_max_file_bytes": size,
        "attachment_max_message_bytes": padded_length(size),
        "inbox_max_attachment_bytes": 2 * padded_length(size),
    }
    with serving_in_thread(tmp_path / "large", **limits) as server:
        inbox = Inbox(server, tmp_path)
        path = tmp_path / "large.bin"
        with path.open("wb") as out:
            for _ in range(0, size, MIB):
                out.write(os.urandom(MIB))
            out.truncate(size)
        sender = new_page(browser, page_errors)
        sender.add_init_script(PROGRESS_RECORDER)
        dropped = drop_one_request_from(sender, drop_from) if drop_from is not None else []
        send_with_files(sender, inbox.link, "a large file", [path], timeout_ms=180_000)
        assert progress_between(sender, "Uploading files")
        if drop_from is not None:
            assert len(dropped) == 1  # a worker's request: nothing logged on the page

        recipient = new_page(browser, page_errors)
        recipient.add_init_script(WITHOUT_PICKER + PROGRESS_RECORDER)
        recipient.goto(server.url + "/inbox")
        recipient.get_by_label("Open an inbox from a key file").set_input_files(str(inbox.key_file))
        with recipient.expect_download(timeout=120_000) as info:
            recipient.get_by_role("button", name="Download large.bin").click()
        expect(file_item(recipient, "large.bin").get_by_role("status")).to_contain_text(
            "Downloaded"
        )
        assert progress_between(recipient, "Downloading large.bin")
        received = hashlib.sha256(Path(info.value.path()).read_bytes()).digest()
        assert received == hashlib.sha256(path.read_bytes()).digest()


def test_a_large_file_goes_from_page_to_page_byte_identical(browser, page_errors, tmp_path):
    # The page seals a large file in parts of 16 MiB, each in a worker of its own; a
    # request dropped past the first part resumes from the part the server stopped in.
    large_file_round_trip(
        browser, page_errors, tmp_path, LARGE_FILE_BYTES, drop_from=LARGE_FILE_BYTES * 2 // 5
    )


def test_a_smaller_large_file_goes_from_page_to_page_without_jit(
    jitless_browser, page_errors, tmp_path
):
    large_file_round_trip(jitless_browser, page_errors, tmp_path, LARGE_FILE_BYTES // 10)
