"""Accessibility in real Chromium (issue 13, item 2).

axe-core (npm, a dev dependency: `npm ci`) audits every page in every state at WCAG
2.2 AA, in light and dark colours and at 360 px, and must find nothing. The audit runs
in browser contexts made with `bypass_csp=True` so the test can inject axe: the pages'
strict CSP stays as it is and axe is never served. The rest: the whole flow driven by
the keyboard alone, with focus moving to what each action produced and always visible;
status changes announced through live regions; no motion for `prefers-reduced-motion`.

State is made through the API where the audit is not about making it (inboxes,
messages, a conversation, a paused inbox), and one browser serves the whole module.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IN_CI, ROOT, LiveServer, serving_in_thread
from playwright.sync_api import expect
from test_browser import (
    HeldRequests,
    PageErrors,
    launch,
    playwright_driver,  # noqa: F401  (a fixture, used by name)
)
from test_browser_conversation import conversation_setup

from secretlink.client.http import InboxClient, parse_link, send
from secretlink.crypto import KeyPair, generate_keypair
from secretlink.crypto.conversation import ROLE_RECIPIENT, seal_conversation
from secretlink.crypto.keyfile import KeyFile, dump_key_file

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.2 level AA, and the levels below it.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# And axe's best practices: landmarks, heading order, one main, ... which WCAG implies
# without a success criterion of their own.
AXE_TAGS = [*WCAG_TAGS, "best-practice"]
TIMEOUT_MS = 20_000
VARIANTS = {
    "light": {"color_scheme": "light", "viewport": {"width": 1280, "height": 900}},
    "dark": {"color_scheme": "dark", "viewport": {"width": 1280, "height": 900}},
    "narrow": {"color_scheme": "light", "viewport": {"width": 360, "height": 740}},
}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        message = f"{AXE.relative_to(ROOT)} missing: run `npm ci` (axe-core is a dev dependency)"
        if IN_CI:
            pytest.fail(f"ACCESSIBILITY TESTS CANNOT RUN UNDER CI: {message}")
        pytest.skip(f"ACCESSIBILITY TESTS SKIPPED: {message}")
    return AXE.read_text()


@pytest.fixture(scope="module")
def browser(playwright_driver):  # noqa: F811
    browser = launch(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with serving_in_thread(tmp_path_factory.mktemp("a11y")) as live:
        yield live


def key_file(folder: Path, keypair: KeyPair, server: LiveServer) -> Path:
    path = folder / f"{keypair.public_key_text[:8]}.key"
    path.write_text(dump_key_file(KeyFile(keypair, server=server.url)))
    return path


class World:
    """Inboxes made through the API once for the module."""

    def __init__(self, server: LiveServer, folder: Path):
        self.server = server
        empty = generate_keypair()
        self.empty_link = InboxClient(server.url, empty).register("What should we fix?")["link"]
        self.empty_key = key_file(folder, empty, server)

        # Plain messages and a conversation (an opener from a sender who asked for a
        # reply, and the owner's answer, which the reply page shows).
        inbox, reply, conversation_id, _opener, self.reply_link = conversation_setup(server)
        self.full_link = f"{server.url}/to/{inbox.public_key_text}"
        for text in ("The numbers were changed by hand.", "Second thought:\nask finance."):
            send(parse_link(self.full_link), text)
        self.full_key = key_file(folder, inbox, server)
        answer = seal_conversation(
            "Thank you. Who else knows?",
            writer=inbox,
            reader_key=reply.public_key,
            role=ROLE_RECIPIENT,
            conversation_id=conversation_id,
            seq=1,
            last_seen=1,
        )
        server.app.extensions["secretlink.storage"].add_message(reply.public_key_text, answer)

        paused = generate_keypair()
        owner = InboxClient(server.url, paused)
        self.paused_link = owner.register("")["link"]
        owner.api.call(
            "PATCH", f"{owner.base}/settings", json={"paused": True}, token=owner.token()
        )
        self.broken_key = folder / "broken.json"
        self.broken_key.write_text('{"format": "secretlink-key", "version": 7}')


@pytest.fixture(scope="module")
def world(server, tmp_path_factory) -> World:
    return World(server, tmp_path_factory.mktemp("keys"))


class Auditor:
    """Runs axe in pages of one context and collects what it finds, per state."""

    def __init__(self, browser, axe_source: str, variant: str, **options):
        self.context = browser.new_context(bypass_csp=True, **VARIANTS[variant], **options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.axe_source = axe_source
        self.variant = variant
        self.found: list[str] = []
        self.errors = PageErrors()  # script errors: none in any state audited

    def page(self):
        return self.errors.watch(self.context.new_page())

    def audit(self, page, state: str) -> None:
        if not page.evaluate("typeof window.axe === 'object'"):
            page.add_script_tag(content=self.axe_source)
        violations = page.evaluate(
            """tags => axe.run(document, {
                 runOnly: { type: "tag", values: tags },
                 resultTypes: ["violations"],
               }).then(result => result.violations.map(v => ({
                 id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map(n => ({
                   target: n.target.join(" "), summary: n.failureSummary,
                 })),
               })))""",
            AXE_TAGS,
        )
        if self.variant == "narrow":
            # WCAG 1.4.10 (reflow), which axe cannot see: nothing scrolls sideways.
            wide = page.evaluate(
                """() => [...document.querySelectorAll("body *")]
                     .filter(node => node.getBoundingClientRect().right > innerWidth + 1)
                     .map(node => node.id || node.tagName.toLowerCase())"""
            )
            if wide or page.evaluate("document.documentElement.scrollWidth > innerWidth"):
                self.found.append(f"[narrow] {state}: wider than the screen: {wide}")
        for violation in violations:
            lines = [
                f"[{self.variant}] {state}: {violation['id']} ({violation['impact']}): "
                f"{violation['help']}"
            ]
            for node in violation["nodes"]:
                summary = " ".join(node["summary"].split())
                lines.append(f"    at {node['target']}: {summary}")
            self.found.append("\n".join(lines))

    def check(self) -> None:
        self.context.close()
        assert not self.found, "axe found WCAG 2.2 AA violations:\n" + "\n".join(self.found)
        assert self.errors.errors == []


@pytest.fixture(params=list(VARIANTS))
def auditor(request, browser, axe_source) -> Iterator[Auditor]:
    auditor = Auditor(browser, axe_source, request.param)
    yield auditor
    auditor.context.close()


def status(page, text: str):
    page.locator("#status").filter(has_text=text).wait_for()


def open_panels(page) -> list[str]:
    """Open every panel (`details`) the page shows, as a user would, one by one; panels
    added by later features are audited open too. Returns their names."""
    closed = page.locator("main details:not([open]) > summary:visible")
    names = []
    for _ in range(20):
        if not closed.count():
            return names
        names.append(closed.first.text_content().strip())
        closed.first.click()
    raise AssertionError(f"panels that do not stay open: {names}")


def test_start_page(auditor, server):
    page = auditor.page()
    page.goto(server.url + "/")
    auditor.audit(page, "start page")
    page.get_by_label("Prompt for senders (optional)").fill("Tell me anything")
    page.get_by_role("button", name="Create inbox").click()
    status(page, "Inbox created")
    page.locator("#share-qr svg").wait_for()
    auditor.audit(page, "start page, inbox created (link, QR code, safety words)")
    auditor.check()


def test_inbox_page(auditor, world):
    url = world.server.url + "/inbox"
    page = auditor.page()
    page.goto(url)
    page.locator("#no-inboxes").wait_for()
    auditor.audit(page, "inbox page, no inbox")

    page.get_by_label("Open an inbox from a key file").set_input_files(str(world.broken_key))
    status(page, "not a usable key file")
    auditor.audit(page, "inbox page, error shown")

    page.get_by_label("Open an inbox from a key file").set_input_files(str(world.empty_key))
    status(page, "0 messages")
    wait_focus(page, "#messages-heading")
    auditor.audit(page, "inbox page, empty inbox")

    page.get_by_label("Open an inbox from a key file").set_input_files(str(world.full_key))
    page.locator("article.conversation li.peer").first.wait_for()
    page.locator("ol#messages li pre.text").nth(1).wait_for()
    auditor.audit(page, "inbox page, messages and a conversation")

    opened = open_panels(page)
    assert {"Settings", "Notifications", "Muted words and phrases"} <= set(opened), opened
    page.locator("#settings-fields:not([disabled])").wait_for()
    auditor.audit(page, f"inbox page, panels open ({', '.join(opened)})")

    # The reading tools on both kinds of message: an ordinary one and the sender's
    # conversation message folded by muted phrases, the latter marked read.
    for phrase in ("numbers", "opener"):
        page.get_by_label("Word or phrase to mute").fill(phrase)
        page.get_by_role("button", name="Mute", exact=True).click()
    peer = page.locator("article.conversation li.peer").first
    expect(peer.locator(".folded")).to_be_visible()
    expect(page.locator("ol#messages li .folded:visible")).to_have_count(1)
    peer.get_by_role("button", name="Mark read").click()
    expect(page.locator("article.conversation .conversation-unread")).to_be_hidden()
    auditor.audit(page, "inbox page, messages folded, a conversation message read")
    auditor.check()


def test_sender_page(auditor, world):
    page = auditor.page()
    page.goto(world.empty_link)
    page.locator("#inbox-safety-words").filter(has_text=re.compile(r"\w")).wait_for()
    auditor.audit(page, "sender page, empty")

    page.get_by_label("Message").fill("Something you should know.")
    page.get_by_label("Let the recipient reply").check()
    open_panels(page)
    auditor.audit(page, "sender page, with text, the reply option and the explanation open")

    page.get_by_role("button", name="Send").click()
    status(page, "Sent")
    page.locator("#reply-ready").wait_for()
    wait_focus(page, "#reply-ready h2")  # focus on the way back it has to keep
    auditor.audit(page, "sender page, sent, with the reply link")

    page.get_by_label("Let the recipient reply").uncheck()
    page.get_by_label("Message").fill("x" * 65531)
    page.get_by_role("button", name="Send").click()
    status(page, "too long")
    auditor.audit(page, "sender page, validation error")

    page.goto(world.paused_link)
    page.locator("#inbox-notice").wait_for()
    auditor.audit(page, "sender page, paused notice")
    auditor.check()


def test_reply_and_error_pages(auditor, world):
    page = auditor.page()
    # First, while this browser holds no conversation: later the page opens it by itself.
    page.goto(world.server.url + "/reply")
    expect(page.locator("#no-conversations")).to_be_visible()
    auditor.audit(page, "reply page, no conversation")

    page = auditor.page()  # the link's fragment is read as a page opens, not on a hash change
    page.goto(world.reply_link)
    status(page, "1 answer")
    wait_focus(page, "#conversation-heading")
    open_panels(page)
    auditor.audit(page, "reply page, a conversation")

    assert auditor.errors.errors == []
    page.goto(world.server.url + "/no/such/page")
    auditor.audit(page, "error page 404")
    page.goto(world.server.url + "/to/not-a-key")
    auditor.audit(page, "error page, damaged link")
    # Each error page's status is logged to the console: that, and nothing else.
    assert [re.sub(r".*status of ", "", error) for error in auditor.errors.errors] == [
        "404 (NOT FOUND)",
        "400 (BAD REQUEST)",
    ]
    auditor.errors.errors.clear()
    auditor.check()


def test_the_audit_finds_what_it_should(browser, axe_source, world):
    """The audit is not blind: an unlabelled field, faint text and a box wider than a
    phone in a real page are found (so 0 elsewhere means 0, not an audit that never ran)."""
    auditor = Auditor(browser, axe_source, "narrow")
    page = auditor.page()
    page.goto(world.empty_link)
    page.evaluate(
        """() => {
             const form = document.querySelector("#send-form");
             form.append(Object.assign(document.createElement("input"), { id: "planted" }));
             const faint = Object.assign(document.createElement("p"), { textContent: "faint" });
             faint.style.color = getComputedStyle(document.body).backgroundColor;
             form.append(faint);
             const wide = Object.assign(document.createElement("div"), { id: "too-wide" });
             wide.style.width = "600px";
             form.append(wide);
           }"""
    )
    auditor.audit(page, "planted")
    found = "\n".join(auditor.found)
    assert "label" in found and "#planted" in found
    assert "color-contrast" in found
    assert "wider than the screen" in found and "too-wide" in found
    auditor.found.clear()
    auditor.check()


# ---- keyboard only: Tab, Shift+Tab, Enter and Space; no click anywhere ----

FOCUS_SHOWN = """() => {
  const node = document.activeElement;
  const style = getComputedStyle(node);
  return {
    id: node.id, tag: node.tagName.toLowerCase(), text: node.textContent.trim().slice(0, 40),
    visible: node.matches(":focus-visible") && style.outlineStyle !== "none"
      && parseFloat(style.outlineWidth) >= 2,
  };
}"""


def focused(page) -> dict:
    return page.evaluate(FOCUS_SHOWN)


def tab_to(page, matches, key: str = "Tab", limit: int = 40) -> dict:
    """Press Tab (or Shift+Tab) until the focused element `matches`; every element
    passed on the way must show its focus."""
    for _ in range(limit):
        page.keyboard.press(key)
        now = focused(page)
        assert now["visible"], f"focus on {now} is not visible"
        if matches(now):
            return now
    raise AssertionError(f"{key} never reached the element; focus is on {focused(page)}")


def by_id(name: str):
    return lambda now: now["id"] == name


def by_text(text: str):
    return lambda now: now["text"] == text


def wait_focus(page, selector: str) -> None:
    page.wait_for_function("s => document.activeElement.matches(s)", arg=selector)


def test_the_whole_flow_with_the_keyboard_alone(browser, server):
    """Create an inbox, send to it, open it and read the message, without a mouse; in
    contexts with the production CSP (no axe needed here)."""
    recipient = browser.new_context(viewport=VARIANTS["light"]["viewport"]).new_page()
    recipient.set_default_timeout(TIMEOUT_MS)
    recipient.goto(server.url + "/")
    tab_to(recipient, by_id("prompt"))
    recipient.keyboard.type("What should we fix?")
    tab_to(recipient, by_id("create"))
    recipient.keyboard.press("Enter")
    status(recipient, "Inbox created")
    # Focus lands on the new link, shown and ready to copy.
    wait_focus(recipient, "#link")
    assert focused(recipient)["visible"]
    link = recipient.locator("#link").input_value()
    assert link.startswith(server.url + "/to/")

    sender = browser.new_context().new_page()
    sender.set_default_timeout(TIMEOUT_MS)
    sender.goto(link)
    tab_to(sender, by_id("message"))
    sender.keyboard.type("Keyboard only, start to end.")
    tab_to(sender, by_id("want-reply"))
    sender.keyboard.press("Space")  # on, then off again: a plain message
    assert sender.locator("#want-reply").is_checked()
    sender.keyboard.press("Space")
    assert not sender.locator("#want-reply").is_checked()
    tab_to(sender, by_text("How is this message protected?"))  # one too far ...
    tab_to(sender, by_id("send"), key="Shift+Tab")  # ... and back
    sender.keyboard.press("Space")
    status(sender, "Sent")
    # Focus lands on the result, which a screen reader then reads.
    wait_focus(sender, "#status")
    assert "Sent" in sender.evaluate("document.activeElement.textContent")
    assert focused(sender)["visible"]

    # Back on the recipient's page: from the link, on to "Open your inbox".
    tab_to(recipient, by_id("open-inbox"))
    recipient.keyboard.press("Enter")
    recipient.wait_for_url(re.compile(r".*/inbox#.*"))
    # Focus lands on the messages of the inbox just opened.
    wait_focus(recipient, "#messages-heading")
    assert focused(recipient)["visible"]
    message = recipient.locator("ol#messages li").filter(has_text="Keyboard only, start to end.")
    message.wait_for()
    tab_to(recipient, lambda now: now["text"] == "Mark read")
    recipient.keyboard.press("Enter")
    recipient.locator("#unread-count").filter(has_text="All messages read").wait_for()

    # Deleting it: focus goes back to the list's heading, not to the top of the page.
    tab_to(recipient, by_text("Delete"))
    recipient.keyboard.press("Enter")
    status(recipient, "Message deleted")
    wait_focus(recipient, "#messages-heading")
    assert message.count() == 0

    # The quick wipe asks first, in the browser's own dialog; declined, focus stays.
    asked = []
    recipient.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    tab_to(recipient, by_id("quick-wipe"))
    recipient.keyboard.press("Enter")  # returns once the dialog is answered
    assert asked and "Erase every inbox key" in asked[0]
    assert focused(recipient)["id"] == "quick-wipe"
    recipient.context.close()
    sender.context.close()


def test_opening_an_inbox_leaves_focus_where_the_user_moved_it_meanwhile(browser, world):
    """Focus goes to the messages of the inbox just opened, but not out of a field the
    user moved to while they were on their way: their next keys would go elsewhere."""
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    listings = HeldRequests(page, re.compile(r"/messages(\?.*)?$"))  # until the user moved on
    page.goto(world.server.url + "/inbox")
    page.locator("#no-inboxes").wait_for()
    page.get_by_label("Open an inbox from a key file").set_input_files(str(world.empty_key))
    status(page, "Fetching messages")
    page.get_by_text("Muted words and phrases").click()
    page.get_by_label("Word or phrase to mute").focus()
    listings.release("the messages")
    expect(page.locator("#status")).to_have_text(re.compile(r"^\d+ messages?\.$"))
    page.evaluate("() => new Promise((done) => setTimeout(done, 200))")  # the opening ends
    page.keyboard.type("spoiler")
    expect(page.get_by_label("Word or phrase to mute")).to_have_value("spoiler")
    page.context.close()


def test_a_failed_send_gives_focus_back_to_the_text(browser, world):
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(world.empty_link)
    page.get_by_label("Message").fill("x" * 65531)
    tab_to(page, by_id("send"))
    page.keyboard.press("Enter")
    status(page, "too long")
    wait_focus(page, "#message")
    page.context.close()


# ---- live regions ----

LIVE = """s => [...document.querySelectorAll(s)].map(node => ({
  role: node.getAttribute("role"), live: node.getAttribute("aria-live"),
}))"""


@pytest.mark.parametrize(
    "path, selectors",
    [
        ("/", ["#status"]),
        ("/inbox", ["#status", "#unread-count", "#mute-note", "#backup-status"]),
        ("/to/{key}", ["#status", "#inbox-notice"]),
        ("/reply", ["#status"]),
    ],
)
def test_status_lines_are_live_regions(browser, world, path, selectors):
    page = browser.new_context().new_page()
    page.goto(world.server.url + path.format(key=world.empty_link.rsplit("/", 1)[1]))
    for selector in selectors:
        [region] = page.evaluate(LIVE, selector)
        # role=status is polite by itself; where the role is absent, aria-live says it.
        assert region["role"] == "status" or region["live"] == "polite", (selector, region)
        assert region["live"] in (None, "polite"), (selector, region)
    if path == "/inbox":
        [full] = page.evaluate(LIVE, "#inbox-full")
        assert full["role"] == "alert"
    page.context.close()


def test_errors_are_alerts_and_results_are_polite(browser, world):
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(world.empty_link)
    page.route("**/api/**", lambda route: route.abort())
    page.get_by_label("Message").fill("will not arrive")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert").filter(has_text="Could not reach the server")
    alert.wait_for()
    # Inside the page's status line, whose politeness it overrides for this message.
    assert alert.evaluate("node => node.parentElement.id") == "status"
    wait_focus(page, "#send")  # disabled while it worked, the button has focus again
    page.unroute("**/api/**")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("status").filter(has_text="Sent").wait_for()
    assert page.get_by_role("alert").count() == 0  # success is not shouted
    page.context.close()


# ---- reduced motion ----

MOTION = """() => {
  const moving = [];
  for (const node of document.querySelectorAll("*")) {
    for (const pseudo of [null, "::before", "::after"]) {
      const style = getComputedStyle(node, pseudo);
      const durations = [style.animationDuration, style.transitionDuration]
        .flatMap(value => value.split(",")).map(value => parseFloat(value));
      if (style.animationName !== "none" || durations.some(value => value > 0)) {
        moving.push({ node: node.id || node.tagName, pseudo, animation: style.animationName,
                      durations });
      }
    }
  }
  return moving;
}"""


@pytest.mark.parametrize("motion", ["reduce", "no-preference"])
def test_reduced_motion_stops_the_busy_spinner(browser, world, motion):
    """While a send works, its button shows a spinner; a user who asked for reduced
    motion gets it still (every animation and transition lasts 0 s)."""
    page = browser.new_context(reduced_motion=motion).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(world.empty_link)
    page.route("**/api/**", lambda route: None)  # the send hangs: the spinner stays
    page.get_by_label("Message").fill("waiting")
    page.get_by_role("button", name="Send").click()
    page.locator("#send:disabled").wait_for()
    moving = page.evaluate(MOTION)
    spinner = [entry for entry in moving if entry["node"] == "send"]
    assert spinner and spinner[0]["animation"] == "busy-spin"
    if motion == "reduce":
        assert all(max(entry["durations"]) == 0 for entry in moving), moving
    else:
        assert max(spinner[0]["durations"]) > 0
    page.context.close()
