"""Screenshots of every page in light, dark and at 360 px (issue 13, item 4).

Each page is shown in the state a user meets it in: the start page, the new inbox's
link, the sender page with a message written, the inbox with messages and a
conversation, its settings panel, and the sender's reply page. The images go to
$SECRETLINK_SCREENSHOT_DIR when set (`make screenshots` sets docs/screenshots/),
otherwise to pytest's temporary folder, so `make test` writes nothing to the
repository. Each image must show something (not a blank page), and at 360 px no page
may scroll sideways: a phone user would have to pan to read it (WCAG 1.4.10).
The same pages in Arabic, right to left, go beside them as `<page>-rtl.png`.
"""

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LiveServer, serving_in_thread
from PIL import Image
from playwright.sync_api import Page, expect
from test_browser import (
    TIMEOUT_MS,
    PageErrors,
    launch,
    playwright_driver,  # noqa: F401  (a fixture, used by name)
)

from secretlink.client.http import InboxClient, parse_link, send
from secretlink.crypto import generate_keypair
from secretlink.crypto.conversation import (
    ROLE_RECIPIENT,
    ROLE_SENDER,
    conversation_field,
    new_conversation_id,
    seal_conversation,
)
from secretlink.crypto.envelope import Message, seal
from secretlink.crypto.keyfile import KeyFile, dump_key_file
from secretlink.crypto.reply_link import build_reply_link

pytestmark = pytest.mark.browser

NARROW = 360
VARIANTS = {
    "light": {"color_scheme": "light", "viewport": {"width": 1024, "height": 800}},
    "dark": {"color_scheme": "dark", "viewport": {"width": 1024, "height": 800}},
    "narrow": {"color_scheme": "light", "viewport": {"width": NARROW, "height": 740}},
}
PAGES = ("start", "link", "sender", "inbox", "settings", "reply")
SCENE_TEXTS = {
    "prompt": "What should we know about the audit?",
    "first": "The numbers in the March report were changed by hand after the review.",
    "second": "Second thought: ask finance who signed off on the changes.\nThey will know.",
    "opener": "I can tell you more, but only here.",
    "answer": "Thank you. Who else knows about it?",
}


@pytest.fixture(scope="module")
def browser(playwright_driver):  # noqa: F811
    browser = launch(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with serving_in_thread(tmp_path_factory.mktemp("screenshots")) as live:
        yield live


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("SECRETLINK_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Scene:
    """An inbox with a prompt, two messages and a conversation, made through the API,
    and the sender's reply link for that conversation. The texts are the senders' and
    the owner's own (tests/test_browser_i18n.py writes them in a script no page uses)."""

    def __init__(self, server: LiveServer, folder: Path, texts: dict[str, str] | None = None):
        texts = {**SCENE_TEXTS, **(texts or {})}
        self.server = server
        inbox = generate_keypair()
        self.link = InboxClient(server.url, inbox).register(texts["prompt"])["link"]
        for text in (texts["first"], texts["second"]):
            send(parse_link(self.link), text)

        reply = generate_keypair()
        InboxClient(server.url, reply).register("")
        conversation_id = new_conversation_id()
        opener = conversation_field(
            texts["opener"],
            writer=reply,
            reader_key=inbox.public_key,
            role=ROLE_SENDER,
            conversation_id=conversation_id,
            seq=1,
            last_seen=0,
        )
        storage = server.app.extensions["secretlink.storage"]
        storage.add_message(inbox.public_key_text, seal(Message("", opener), inbox.public_key))
        answer = seal_conversation(
            texts["answer"],
            writer=inbox,
            reader_key=reply.public_key,
            role=ROLE_RECIPIENT,
            conversation_id=conversation_id,
            seq=1,
            last_seen=1,
        )
        storage.add_message(reply.public_key_text, answer)
        self.reply_link = build_reply_link(
            server.url, reply.secret_key, inbox.public_key, conversation_id
        )
        self.key_file = folder / "inbox.key"
        self.key_file.write_text(dump_key_file(KeyFile(inbox, server=server.url)))


@pytest.fixture(scope="module")
def scene(server, tmp_path_factory) -> Scene:
    return Scene(server, tmp_path_factory.mktemp("keys"))


def status(page: Page, text: str) -> None:
    expect(page.locator("#status").filter(has_text=text)).to_be_visible()


def show_start(page: Page, scene: Scene) -> None:
    page.goto(scene.server.url + "/")
    expect(page.get_by_role("button", name="Create inbox")).to_be_visible()


def show_link(page: Page, scene: Scene) -> None:
    show_start(page, scene)
    page.get_by_label("Prompt for senders (optional)").fill("Tell us what went wrong")
    page.get_by_role("button", name="Create inbox").click()
    status(page, "Inbox created")
    expect(page.locator("#share-qr svg")).to_be_visible()


def show_sender(page: Page, scene: Scene) -> None:
    page.goto(scene.link)
    expect(page.locator("#inbox-safety-words")).not_to_be_empty()
    page.get_by_label("Message").fill("The report was changed after the review. تم تغيير التقرير")
    expect(page.locator("#size")).to_have_text("0 % used")


def show_inbox(page: Page, scene: Scene) -> None:
    page.goto(scene.server.url + "/inbox")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(scene.key_file))
    expect(page.locator("article.conversation li.peer").first).to_be_visible()
    expect(page.locator("ol#messages li pre.text")).to_have_count(2)


def show_settings(page: Page, scene: Scene) -> None:
    show_inbox(page, scene)
    page.locator("#settings > summary").click()
    expect(page.locator("#settings-fields:not([disabled])")).to_be_visible()


def show_reply(page: Page, scene: Scene) -> None:
    page.goto(scene.reply_link)
    status(page, "1 answer")


SHOW = {
    "start": show_start,
    "link": show_link,
    "sender": show_sender,
    "inbox": show_inbox,
    "settings": show_settings,
    "reply": show_reply,
}


def save(png: bytes, path: Path) -> Image.Image:
    """Kept small (a README shows some): 128 colours are plenty for text on flat colour."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.convert("RGB").quantize(colors=128).save(path, optimize=True)
    return image


def assert_shows_something(image: Image.Image) -> None:
    """A real picture of a page, not one flat colour (a blank or failed render)."""
    darkest, lightest = image.convert("L").getextrema()
    assert lightest - darkest > 100, f"a blank image (grey levels {darkest}-{lightest})"


def wider_than_screen(page: Page) -> list[str]:
    """What sticks out to the right, for the failure message."""
    return page.evaluate(
        """() => [...document.querySelectorAll("body *")]
             .filter(node => node.getBoundingClientRect().right > innerWidth + 1)
             .map(node => node.id || node.tagName.toLowerCase())"""
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_screenshots_of_every_page(browser, scene, shots, variant):
    context = browser.new_context(**VARIANTS[variant])
    context.set_default_timeout(TIMEOUT_MS)
    errors = PageErrors()
    page = errors.watch(context.new_page())
    width = VARIANTS[variant]["viewport"]["width"]
    for name in PAGES:
        SHOW[name](page, scene)
        if name == "settings":  # the panel itself, not the whole inbox page again
            png = page.locator("#settings").screenshot(animations="disabled", caret="hide")
        else:
            png = page.screenshot(full_page=True, animations="disabled", caret="hide")
        image = save(png, shots / f"{name}-{variant}.png")
        assert_shows_something(image)
        assert image.width == width or (name == "settings" and 0 < image.width <= width)
        if variant == "narrow":
            scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
            assert scroll_width <= NARROW, (
                f"{name} page scrolls sideways at {NARROW} px ({scroll_width} px wide): "
                f"{wider_than_screen(page)}"
            )
    context.close()
    assert errors.errors == []


def show_rtl(page: Page, scene: Scene, name: str) -> None:
    """A page in Arabic (the browser asks for it), found by ids rather than English labels."""
    if name == "start":
        page.goto(scene.server.url + "/")
    elif name == "sender":
        page.goto(scene.link)
        expect(page.locator("#inbox-safety-words")).not_to_be_empty()
        page.locator("#message").fill(
            "تم تغيير أرقام التقرير بعد المراجعة. The report was changed."
        )
    elif name == "inbox":
        page.goto(scene.server.url + "/inbox")
        page.locator("#key-file").set_input_files(str(scene.key_file))
        expect(page.locator("article.conversation li.peer").first).to_be_visible()
        expect(page.locator("ol#messages li pre.text")).to_have_count(2)
    else:
        page.goto(scene.reply_link)
        expect(page.locator("#thread li.peer")).to_have_count(1)
    expect(page.locator("html")).to_have_attribute("dir", "rtl")


def test_right_to_left_screenshots(browser, scene, shots):
    context = browser.new_context(locale="ar", **VARIANTS["light"])
    context.set_default_timeout(TIMEOUT_MS)
    errors = PageErrors()
    page = errors.watch(context.new_page())
    for name in ("start", "sender", "inbox", "reply"):
        show_rtl(page, scene, name)
        png = page.screenshot(full_page=True, animations="disabled", caret="hide")
        assert_shows_something(save(png, shots / f"{name}-rtl.png"))
    context.close()
    assert errors.errors == []


def test_the_overflow_check_sees_a_page_wider_than_a_phone(browser, scene):
    """The 360 px check is not blind: a box wider than the screen is found."""
    context = browser.new_context(**VARIANTS["narrow"])
    page = context.new_page()
    page.goto(scene.link)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= NARROW
    page.evaluate(
        """() => {
             const wide = Object.assign(document.createElement("div"), { id: "too-wide" });
             wide.style.width = "600px";
             wide.textContent = "a box as wide as a laptop's column";
             document.querySelector("main").append(wide);
           }"""
    )
    assert page.evaluate("document.scrollingElement.scrollWidth") > NARROW
    assert "too-wide" in wider_than_screen(page)
    context.close()
