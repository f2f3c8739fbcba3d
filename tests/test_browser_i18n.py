# ruff: noqa: F811 (the browser fixtures are imported from test_browser.py)
"""Languages in real Chromium: every text the pages and their scripts show is
translated, the page scripts speak the page's language, Arabic mirrors the layout,
and axe finds nothing in Spanish, German or Arabic.

"Not translated" is found with the pseudo-language of tests/test_i18n.py (every letter
of every catalogue string in full-width form): the main states of every page are
driven in it, and no visible text node, accessible name, placeholder, title or dialog
may hold a plain Latin word, except inside `translate="no"` (brand, keys, commands,
safety words, language names, the people's own texts), dates (`<time>`, formatted by
Intl in the page's language) and the binary unit symbols KiB, MiB, GiB. The people's
own texts in this module are Greek, so they can never pass for untranslated English.
"""

import re
from collections.abc import Iterator

import pytest
from conftest import LiveServer, serving_in_thread
from playwright.sync_api import Page, expect
from test_a11y import Auditor, axe_source, open_panels  # noqa: F401  (axe_source: a fixture)
from test_browser import (  # noqa: F401 (fixtures)
    TIMEOUT_MS,
    PageErrors,
    browser,
    playwright_driver,
)
from test_i18n import PSEUDO, add_pseudo_language
from test_screenshots import Scene

pytestmark = pytest.mark.browser

# Greek on purpose: letters that look Latin but are not (ruff's RUF001 would ask).
GREEK = {
    "prompt": "Τι πρέπει να ξέρουμε για τον έλεγχο;",  # noqa: RUF001
    "first": "Οι αριθμοί της έκθεσης άλλαξαν με το χέρι.",  # noqa: RUF001
    "second": "Δεύτερη σκέψη: ρωτήστε το λογιστήριο.",
    "opener": "Μπορώ να πω περισσότερα, αλλά μόνο εδώ.",  # noqa: RUF001
    "answer": "Ευχαριστώ. Ποιος άλλος το ξέρει;",
}
# What a page shows that is not English even when it is Latin letters.
UNIT_SYMBOLS = {"KiB", "MiB", "GiB", "TiB"}
DISPLAYED_ENGLISH = """(units) => {
  const latin = /[A-Za-z]{2,}/g;
  const found = [];
  const english = (text) => (text.match(latin) ?? []).some((word) => !units.includes(word));
  const exempt = (node) => node.closest('[translate="no"], time, script, style, noscript');
  const shown = (node) => node.checkVisibility({ visibilityProperty: true });
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const parent = text.parentElement;
    if (!parent || exempt(parent) || !shown(parent)) continue;
    if (english(text.data)) found.push(`text: ${text.data.trim()}`);
  }
  for (const node of document.body.querySelectorAll("*")) {
    if (exempt(node) || !shown(node)) continue;
    for (const name of ["aria-label", "aria-valuetext", "placeholder", "title", "alt"]) {
      const value = node.getAttribute(name);
      if (value && english(value)) found.push(`${node.tagName.toLowerCase()} ${name}: ${value}`);
    }
    const option = node.matches("option") ? node.textContent : "";
    if (english(option)) found.push(`option: ${option}`);
  }
  if (english(document.title)) found.push(`title: ${document.title}`);
  return found;
}"""
PSEUDO_LETTER = re.compile("[\uff21-\uff3a\uff41-\uff5a]")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with serving_in_thread(tmp_path_factory.mktemp("i18n")) as live:
        add_pseudo_language(live.app, tmp_path_factory.mktemp("pseudo"))
        yield live


@pytest.fixture(scope="module")
def scene(server, tmp_path_factory) -> Scene:
    return Scene(server, tmp_path_factory.mktemp("keys"), GREEK)


class PseudoPages:
    """Pages in the pseudo-language that record what they show that is not translated."""

    def __init__(self, browser, server: LiveServer):
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.server = server
        self.errors = PageErrors()
        self.found: list[str] = []
        self.checked = 0

    def open(self, path: str, watch: bool = True) -> Page:
        page = self.context.new_page()
        if watch:  # a page answered with an error status logs it to the console
            self.errors.watch(page)
        page.on("dialog", self.dialog)
        page.goto(self.url(path))
        return page

    def url(self, path: str) -> str:
        base, _, fragment = path.partition("#")
        link = f"{base}{'&' if '?' in base else '?'}lang={PSEUDO}"
        return link + (f"#{fragment}" if fragment else "")

    def dialog(self, dialog) -> None:
        if re.search(r"[A-Za-z]{2,}", dialog.message):
            self.found.append(f"dialog: {dialog.message}")
        dialog.accept()

    def check(self, page: Page, state: str) -> None:
        found = page.evaluate(DISPLAYED_ENGLISH, sorted(UNIT_SYMBOLS))
        self.found += [f"{state}: {item}" for item in found]
        # Not vacuous: the state shows translated text.
        assert PSEUDO_LETTER.search(page.locator("main").inner_text()), state
        self.checked += 1


def status(page: Page) -> None:
    """Wait for the status line to say something (in any language)."""
    expect(page.locator("#status")).not_to_be_empty()


def test_every_page_state_is_translated(browser, server, scene, tmp_path):
    pages = PseudoPages(browser, server)

    start = pages.open(server.url + "/")
    pages.check(start, "start page")
    start.locator("#prompt").fill(GREEK["prompt"])
    start.locator("#create").click()
    expect(start.locator("#created")).to_be_visible()
    expect(start.locator("#persist-note")).not_to_be_empty()
    pages.check(start, "inbox created")
    start.locator("#copy-link").click()
    pages.check(start, "link copied")

    sender = pages.open(scene.link)
    expect(sender.locator("#inbox-safety-words")).not_to_be_empty()
    expect(sender.locator("#size")).not_to_be_empty()
    pages.check(sender, "sender page")
    sender.locator("#message").fill(" ")  # nothing written: the page says so
    sender.locator("#send").click()
    status(sender)
    pages.check(sender, "sender page, nothing written")
    sender.locator("#message").fill(GREEK["first"] * 1000)  # over the space
    expect(sender.locator("#size[data-kind=error]")).to_be_visible()
    pages.check(sender, "sender page, message too long")
    sender.locator("#message").fill(GREEK["second"])
    sender.locator("#want-reply").check()
    sender.locator("#send").click()
    expect(sender.locator("#reply-ready")).to_be_visible()
    expect(sender.locator("#status[data-kind=success]")).to_be_visible()
    pages.check(sender, "sent, with a way back")

    inbox = pages.open(server.url + "/inbox")
    inbox.locator("#key-file").set_input_files(str(scene.key_file))
    expect(inbox.locator("article.conversation li.peer").first).to_be_visible()
    expect(inbox.locator("#unread-count")).not_to_be_empty()
    open_panels(inbox)
    expect(inbox.locator("#settings-fields:not([disabled])")).to_be_visible()
    expect(inbox.locator("#backup-estimate")).not_to_be_empty()
    pages.check(inbox, "inbox with messages and every panel open")
    inbox.locator("#mute-phrase").fill("χέρι")  # folds the first message
    inbox.locator("#mute-form button").click()
    expect(inbox.locator("#muted-list li")).to_have_count(1)
    expect(inbox.locator("ol#messages .folded:not([hidden])")).to_have_count(1)
    inbox.locator("ol#messages li").first.locator("button.read-toggle").click()
    inbox.locator("#setting-paused").check()
    expect(inbox.locator("#status[data-kind=success]")).to_be_visible()
    pages.check(inbox, "muted, read and paused")
    inbox.locator("#backup-start").click()  # no passphrase: refused with a reason
    expect(inbox.locator("#backup-status")).not_to_be_empty()
    pages.check(inbox, "backup refused")
    messages = inbox.locator("ol#messages > li")
    left = messages.count() - 1
    messages.first.locator("button.delete").click()
    expect(messages).to_have_count(left)
    status(inbox)
    pages.check(inbox, "message deleted")

    reply = pages.open(scene.reply_link)
    expect(reply.locator("#thread li.peer")).to_have_count(1)
    expect(reply.locator("#status")).not_to_be_empty()
    pages.check(reply, "reply page with an answer")
    reply.locator("#answer").fill(" ")
    reply.locator("#send-answer").click()
    expect(reply.locator("#status[data-kind=error]")).to_be_visible()
    pages.check(reply, "reply page, nothing written")

    empty = pages.open(server.url + "/reply")
    pages.check(empty, "reply page of another browser")
    missing = pages.open(server.url + "/to/damaged", watch=False)
    pages.check(missing, "damaged link")

    pages.context.close()
    assert pages.found == [], "not translated:\n" + "\n".join(pages.found)
    assert pages.errors.errors == []
    assert pages.checked == 15


def test_the_check_sees_an_untranslated_text(browser, server):
    """Not blind: English added to a pseudo-language page is reported."""
    pages = PseudoPages(browser, server)
    page = pages.open(server.url + "/")
    page.evaluate("document.querySelector('h1').append(' Create inbox')")
    pages.check(page, "start page")
    pages.context.close()
    assert pages.found == ["start page: text: Create inbox"]


def test_scripts_speak_the_page_language(browser, scene):
    context = browser.new_context(locale="de-DE")  # Accept-Language: de-DE
    context.set_default_timeout(TIMEOUT_MS)
    errors = PageErrors()
    page = errors.watch(context.new_page())
    page.goto(scene.server.url + "/inbox")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    page.get_by_label("Postfach aus einer Schlüsseldatei öffnen").set_input_files(
        str(scene.key_file)
    )
    expect(page.locator("#unread-count")).to_have_text("3 ungelesene Nachrichten.")
    expect(page.locator("#status")).to_have_text("3 Nachrichten.")
    # Dates as German writes them (day first, 24-hour clock), from Intl; English says
    # "Dec 5, 2026, 4:48 PM".
    when = page.locator("ol#messages time").first.inner_text()
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4}, \d{2}:\d{2}", when), when
    context.close()
    assert errors.errors == []


def boxes(page: Page) -> dict[str, dict]:
    return {
        name: page.locator(selector).bounding_box()
        for name, selector in {
            "brand": "header.site .brand",
            "pages": "header.site nav:not(.languages)",
            "label": "label[for=prompt]",
            "form": "#create-form",
        }.items()
    }


def test_arabic_mirrors_the_layout(browser, server):
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(server.url + "/?lang=en")
    ltr = boxes(page)
    page.get_by_role("link", name="العربية").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page).to_have_url(re.compile(r"/\?lang=ar$"))
    rtl = boxes(page)
    # The brand moves from the left end of the header to the right end, the page links
    # the other way, and a label starts at the form's right edge instead of its left.
    assert ltr["brand"]["x"] < ltr["pages"]["x"] and rtl["brand"]["x"] > rtl["pages"]["x"]
    form_right = rtl["form"]["x"] + rtl["form"]["width"]
    label_right = rtl["label"]["x"] + rtl["label"]["width"]
    assert abs(ltr["label"]["x"] - ltr["form"]["x"]) < 40
    assert abs(form_right - label_right) < 40
    # Keys and commands stay left to right inside the Arabic page.
    page.locator("#prompt").fill("سؤال")
    page.locator("#create").click()
    expect(page.locator("#link")).to_have_attribute("dir", "ltr")
    expect(page.locator("#safety-words")).to_have_attribute("dir", "ltr")
    context.close()


LANGUAGES = ["es", "de", "ar"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_axe_finds_nothing_in_each_language(browser, scene, axe_source, lang):
    auditor = Auditor(browser, axe_source, "light", locale=lang)
    url = scene.server.url
    page = auditor.page()
    page.goto(url + "/")
    auditor.audit(page, f"{lang} start page")
    page.locator("#prompt").fill(GREEK["prompt"])
    page.locator("#create").click()
    expect(page.locator("#created")).to_be_visible()
    auditor.audit(page, f"{lang} inbox created")
    sender = auditor.page()
    sender.goto(scene.link)
    expect(sender.locator("#inbox-safety-words")).not_to_be_empty()
    auditor.audit(sender, f"{lang} sender page")
    inbox = auditor.page()
    inbox.goto(url + "/inbox")
    inbox.locator("#key-file").set_input_files(str(scene.key_file))
    expect(inbox.locator("article.conversation li.peer").first).to_be_visible()
    open_panels(inbox)
    auditor.audit(inbox, f"{lang} inbox, panels open")
    reply = auditor.page()
    reply.goto(scene.reply_link)
    expect(reply.locator("#thread li.peer")).to_have_count(1)
    auditor.audit(reply, f"{lang} reply page")
    error = auditor.context.new_page()  # its 400 is what the console logs, not an error
    error.goto(url + "/to/damaged")
    auditor.audit(error, f"{lang} error page")
    auditor.check()


def test_rtl_page_keeps_the_fragment_links_working(browser, scene):
    """?lang= goes before the #fragment: the inbox link the start page makes opens it."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(scene.server.url + "/?lang=ar")
    page.locator("#create").click()
    expect(page.locator("#created")).to_be_visible()
    href = page.locator("#open-inbox").get_attribute("href")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/inbox\?lang=ar#[A-Za-z0-9_-]{43}", href), href
    page.locator("#open-inbox").click()
    expect(page.locator("#inbox")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "ar")
    context.close()
