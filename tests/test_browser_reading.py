# ruff: noqa: F811 (the browser fixtures are imported from test_browser.py)
"""Reading tools and sharing in real Chromium: read/unread, muted phrases, exports made
in the page, the quick wipe, and the QR code, Copy and Share of an inbox link.

Uses the browser fixtures of test_browser.py. Messages are sent with the Python
client (the sender page has tests of its own); the recipient reads in the browser.
"""

import io
import json
from pathlib import Path

import pytest
import zxingcpp
from markdown_it import MarkdownIt
from PIL import Image
from playwright.sync_api import expect
from test_browser import (  # noqa: F401 (fixtures)
    browser,
    create_inbox_in_browser,
    new_page,
    page_errors,
    playwright_driver,
)

from secretlink.client.http import InboxClient, parse_link, send
from secretlink.crypto import generate_keypair
from secretlink.crypto.keyfile import KeyFile, dump_key_file

pytestmark = pytest.mark.browser


def inbox_with(live_server, tmp_path, texts: list[str], prompt: str = "") -> tuple[str, Path]:
    """A registered inbox holding `texts` (sent oldest first), and its key file."""
    keypair = generate_keypair()
    link = InboxClient(live_server.url, keypair).register(prompt)["link"]
    for text in texts:
        send(parse_link(link), text)
    key_path = tmp_path / f"{keypair.public_key_text[:8]}.key"
    key_path.write_text(dump_key_file(KeyFile(keypair, server=live_server.url)))
    return link, key_path


def open_with_key_file(page, live_server, key_path: Path, count: int) -> None:
    """Open the inbox page, load the key (the browser keeps it) and wait for messages."""
    page.goto(live_server.url + "/inbox")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    wait_for_messages(page, count)


def wait_for_messages(page, count: int) -> None:
    page.get_by_role("status").filter(has_text=f"{count} message").wait_for()


def item(page, text: str):
    return page.locator("ol.messages li").filter(has_text=text)


def expect_unread(page, text: str) -> None:
    # The page shows a change once the browser has stored it.
    expect(page.locator("#unread-count")).to_have_text(text)


def qr_text(locator) -> str:
    """Decode the QR code shown in `locator` from a screenshot of it."""
    image = Image.open(io.BytesIO(locator.screenshot()))
    [result] = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return result.text


def test_read_state_survives_a_reload(browser, live_server, page_errors, tmp_path):
    _, key_path = inbox_with(live_server, tmp_path, ["first note", "second note"])
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 2)
    expect_unread(page, "2 unread messages.")
    assert page.locator("li.unread .badge").all_text_contents() == ["New", "New"]

    item(page, "first note").get_by_role("button", name="Mark read").click()
    expect_unread(page, "1 unread message.")
    page.reload()
    wait_for_messages(page, 2)
    expect_unread(page, "1 unread message.")
    first, second = item(page, "first note"), item(page, "second note")
    expect(first.get_by_role("button", name="Mark unread")).to_be_visible()
    expect(first.locator(".badge")).to_be_hidden()
    expect(second.locator(".badge")).to_be_visible()

    page.get_by_role("button", name="Mark all read").click()
    expect_unread(page, "All messages read.")
    page.reload()
    wait_for_messages(page, 2)
    expect_unread(page, "All messages read.")
    assert page.get_by_role("button", name="Mark all read").is_disabled()
    # And back: unread again, after a reload too.
    item(page, "second note").get_by_role("button", name="Mark unread").click()
    expect_unread(page, "1 unread message.")
    page.reload()
    wait_for_messages(page, 2)
    expect_unread(page, "1 unread message.")


# "Full width" in full-width forms (as some keyboards type it): NFKC makes it ASCII.
FULL_WIDTH = "Full width".translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000})


def mute(page, phrase: str) -> None:
    page.get_by_label("Word or phrase to mute").fill(phrase)
    page.get_by_role("button", name="Mute", exact=True).click()
    page.locator("#muted-list .phrase", has_text=phrase).wait_for()


def test_muted_phrases_fold_messages_until_shown_anyway(
    browser, live_server, page_errors, tmp_path
):
    texts = [
        "A calm message about the class schedule",
        "You are an IDIOT and everyone knows",
        "Meet me at the STRASSE corner",
        FULL_WIDTH + " shouting here",
        "Write to me by e-mail 🙃 tonight",
    ]
    _, key_path = inbox_with(live_server, tmp_path, texts)
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 5)
    page.get_by_text("Muted words and phrases").click()
    for phrase in ["idiot", "Straße", "full width", "ass", "E-MAIL 🙃"]:
        mute(page, phrase)
    assert page.locator("#muted-list .phrase").all_text_contents() == [
        "idiot",
        "Straße",
        "full width",
        "ass",
        "E-MAIL 🙃",
    ]

    def folded(text: str) -> bool:
        return not page.locator("ol.messages pre.text", has_text=text).is_visible()

    # Case-insensitive, Unicode-aware (ß is ss, full-width letters are letters), and
    # whole words only: "ass" does not fold "class".
    assert [folded(text) for text in texts] == [False, True, True, True, True]
    idiot = item(page, "Folded: contains the muted “idiot”")
    idiot.get_by_role("button", name="Show anyway").click()
    expect(page.locator("ol.messages pre.text", has_text="IDIOT")).to_be_visible()
    expect(idiot.get_by_role("button", name="Show anyway")).to_be_hidden()

    # Muted phrases stay in this browser across a reload; unmuting unfolds.
    page.reload()
    wait_for_messages(page, 5)
    assert folded(texts[1]) and folded(texts[2])
    page.get_by_text("Muted words and phrases").click()
    page.get_by_role("button", name="Unmute “Straße”").click()
    page.locator("#muted-list .phrase", has_text="Straße").wait_for(state="detached")
    assert not folded(texts[2])
    page.get_by_label("Word or phrase to mute").fill("   ")
    page.get_by_role("button", name="Mute", exact=True).click()
    expect(page.locator("#mute-note")).to_have_text("Type a word or phrase to mute.")
    page.get_by_label("Word or phrase to mute").fill("IDIOT")
    page.get_by_role("button", name="Mute", exact=True).click()
    expect(page.locator("#mute-note")).to_have_text("“IDIOT” is muted already.")


# The reading tools' database answers only once the test calls releaseReadingStore(),
# as storage on a slow device or a busy disk does: each open is made then, and its
# events are passed on to the page's stand-in request.
SLOW_READING_STORE = """
(() => {
  const realOpen = IDBFactory.prototype.open;
  const held = [];
  window.releaseReadingStore = () => held.splice(0).forEach((open) => open());
  IDBFactory.prototype.open = function (name, ...rest) {
    if (name !== "secretlink-reading") return realOpen.call(this, name, ...rest);
    let real = null;
    const standIn = {
      get result() { return real.result; },
      get error() { return real.error; },
    };
    held.push(() => {
      real = realOpen.call(indexedDB, name, ...rest);
      for (const type of ["upgradeneeded", "success", "error", "blocked"]) {
        real.addEventListener(type, (event) => standIn[`on${type}`]?.(event));
      }
    });
    return standIn;
  };
})();
"""


def test_the_inbox_page_answers_while_its_storage_is_slow(
    browser, live_server, page_errors, tmp_path
):
    """A key file chosen while the reading tools' storage has not answered yet opens the
    inbox; its messages are drawn once the muted phrases are known, folded by them."""
    _, key_path = inbox_with(live_server, tmp_path, ["a note that says hush", "a plain note"])
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 2)
    page.get_by_text("Muted words and phrases").click()
    mute(page, "hush")
    # The key goes (so that no stored inbox opens itself later); the muted phrase stays.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Forget key in this browser").click()
    page.get_by_role("status").filter(has_text="Key removed from this browser").wait_for()

    later = page.context.new_page()
    page_errors.watch(later)
    later.add_init_script(SLOW_READING_STORE)
    later.goto(live_server.url + "/inbox")
    later.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    later.get_by_role("status").filter(has_text="Fetching messages").wait_for()
    later.evaluate("releaseReadingStore()")
    wait_for_messages(later, 2)
    expect(item(later, "Folded: contains the muted “hush”")).to_have_count(1)
    expect(later.locator("ol.messages pre.text", has_text="a plain note")).to_be_visible()


HOSTILE = (
    "[click me](https://evil.example/) ![x](https://evil.example/p.png) "
    "<img src=x onerror=alert(1)> https://evil.example/auto\n"
    "````\n# not a heading\n<script>alert(1)</script>"
)


def download(page, button: str) -> tuple[str, str]:
    """Click `button`; the suggested file name and the text of what it downloads."""
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    path = info.value.path()
    return info.value.suggested_filename, Path(path).read_text(encoding="utf-8")


def test_export_as_json_and_markdown(browser, live_server, page_errors, tmp_path):
    link, key_path = inbox_with(
        live_server, tmp_path, ["plain first 🔐", HOSTILE], prompt="Tell me [anything](x)"
    )
    public_key = link.rsplit("/", 1)[1]
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 2)
    item(page, "plain first").get_by_role("button", name="Mark read").click()
    expect_unread(page, "1 unread message.")

    name, text = download(page, "Export as JSON")
    assert name.startswith(f"secretlink-messages-{public_key[:8]}-") and name.endswith(".json")
    exported = json.loads(text)
    assert exported["format"] == "secretlink-export" and exported["version"] == 1
    assert exported["inbox"] == {
        "public_key": public_key,
        "link": link,
        "prompt": "Tell me [anything](x)",
    }
    assert [(m["text"], m["read"]) for m in exported["messages"]] == [
        (HOSTILE, False),
        ("plain first 🔐", True),
    ]
    assert all(m["id"] and m["received_at"].endswith("Z") for m in exported["messages"])

    name, markdown = download(page, "Export as Markdown")
    assert name.endswith(".md")
    assert "## Message 2 · " in markdown and "· unread" in markdown
    html = MarkdownIt("commonmark").render(markdown)
    # Every message text is shown literally: no link, image or HTML got through, and
    # the text's own fence did not close the block.
    assert "<a " not in html and "<img" not in html and "<script" not in html
    assert "<h1>not a heading" not in html
    codes = MarkdownIt("commonmark").parse(markdown)
    literal = [token.content for token in codes if token.type == "fence"]
    assert HOSTILE + "\n" in literal and "plain first 🔐\n" in literal
    assert "Tell me [anything](x)\n" in literal and link + "\n" in literal
    # Nothing was sent anywhere: the export made no request.
    assert page.locator("#status").text_content().startswith("Exported 2 messages")


DATABASE_CONTENTS = """async () => {
  const result = {};
  for (const { name } of await indexedDB.databases()) {
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open(name);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    result[name] = {};
    for (const store of db.objectStoreNames) {
      result[name][store] = await new Promise((resolve) => {
        const request = db.transaction(store).objectStore(store).count();
        request.onsuccess = () => resolve(request.result);
      });
    }
    db.close();
  }
  return result;
}"""


def test_quick_wipe_leaves_no_key_and_no_message(browser, live_server, page_errors, tmp_path):
    _, key_path = inbox_with(live_server, tmp_path, ["wipe me"])
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 1)
    item(page, "wipe me").get_by_role("button", name="Mark read").click()
    expect_unread(page, "All messages read.")
    page.get_by_text("Muted words and phrases").click()
    mute(page, "secret")
    page.evaluate("localStorage.setItem('x', '1'); sessionStorage.setItem('y', '2')")
    before = page.evaluate(DATABASE_CONTENTS)
    assert before["secretlink"]["inbox-keys"] == 1
    assert before["secretlink-reading"]["state"] == 2  # read state and muted phrases

    # Declining the confirmation erases nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Quick wipe").click()
    assert page.evaluate(DATABASE_CONTENTS) == before

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Quick wipe").click()
    page.get_by_role("status").filter(has_text="Quick wipe done").wait_for()
    # A clean page: no inbox open, no message text, no key named in the address.
    assert page.url == live_server.url + "/inbox"
    expect(page.locator("#no-inboxes")).to_be_visible()
    expect(page.locator("#inbox")).to_be_hidden()
    assert page.locator("ol.messages li").count() == 0
    assert "wipe me" not in page.content()
    after = page.evaluate(DATABASE_CONTENTS)
    assert all(count == 0 for stores in after.values() for count in stores.values()), after
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("caches.keys()") == []


def test_link_page_shows_a_qr_code_of_the_link_with_copy(browser, live_server, page_errors):
    page = new_page(browser, page_errors)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    link = create_inbox_in_browser(page, live_server.url, prompt="Honest feedback, please")
    qr = page.locator("#share-qr svg")
    assert qr.get_attribute("aria-label") == "QR code of the inbox link"
    assert qr_text(qr) == link
    assert page.locator("#share-prompt").text_content() == "Honest feedback, please"
    # Headless Chromium on Linux has no share sheet: no Share button then.
    assert page.evaluate("typeof navigator.share") == "undefined"
    expect(page.get_by_role("button", name="Share…")).to_be_hidden()

    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == link


def test_inbox_page_shares_through_the_share_sheet(browser, live_server, page_errors, tmp_path):
    link, key_path = inbox_with(live_server, tmp_path, ["hello"], prompt="Ask me anything")
    page = new_page(browser, page_errors)
    # A stand-in share sheet, as phones have: it records what the page shares.
    page.add_init_script("navigator.share = async (data) => { window.__shared = data; };")
    open_with_key_file(page, live_server, key_path, 1)
    page.get_by_text("QR code and sharing").click()
    assert qr_text(page.locator("#share-qr svg")) == link
    assert page.locator("#share-prompt").text_content() == "Ask me anything"
    page.get_by_role("button", name="Share…").click()
    page.wait_for_function("window.__shared !== undefined")
    assert page.evaluate("window.__shared") == {
        "title": "secretlink",
        "text": "Ask me anything",
        "url": link,
    }
