"""The whole flow in real Chromium (Debian's, driven by Playwright): create, send, read.

Recipient and sender use separate browser contexts (separate storage, like two
people). A second browser runs with --js-flags=--jitless, which also removes
WebAssembly, as Tor Browser's "Safer" level does.
"""

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_chromium
from playwright.sync_api import expect

from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, generate_keypair, open_envelope
from secretlink.crypto.keyfile import KeyFile, dump_key_file, load_key_file

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 20_000


def launch(playwright, extra_flags=()):
    return playwright.chromium.launch(
        executable_path=require_chromium(), headless=True, args=[*CHROMIUM_FLAGS, *extra_flags]
    )


@pytest.fixture(scope="module")
def playwright_driver():
    sync_api = pytest.importorskip("playwright.sync_api")
    # Assertions wait as long as actions do (Playwright's default is 5 s): with
    # `make test`'s two processes on two cores, a page's decryption can take longer.
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_driver):
    browser = launch(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def jitless_browser(playwright_driver):
    browser = launch(playwright_driver, ["--js-flags=--jitless"])
    yield browser
    browser.close()


class PageErrors:
    """Collects script errors and CSP reports: a clean page produces none."""

    def __init__(self):
        self.errors: list[str] = []

    def watch(self, page):
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        return page


@pytest.fixture
def page_errors() -> Iterator[PageErrors]:
    errors = PageErrors()
    yield errors
    assert errors.errors == []


def new_page(browser, page_errors):
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    return page_errors.watch(context.new_page())


class HeldRequests:
    """The page's requests to `pattern`, held back until the test lets each go on: a
    slow network, at the instant a test chooses."""

    def __init__(self, page, pattern):
        self.page = page
        self.routes = []
        page.route(pattern, lambda route: self.routes.append(route))

    def made(self, what: str) -> None:
        """Wait until the page has made such a request (held, not let go yet)."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not self.routes:
            assert time.monotonic() < deadline, f"the page never asked for {what}"
            self.page.wait_for_timeout(50)

    def release(self, what: str) -> None:
        """Let the first request held go on, once the page has made it."""
        self.made(what)
        self.routes.pop(0).continue_()


def create_inbox_in_browser(page, base_url: str, prompt: str = "") -> str:
    page.goto(base_url + "/")
    if prompt:
        page.get_by_label("Prompt for senders (optional)").fill(prompt)
    page.get_by_role("button", name="Create inbox").click()
    page.get_by_role("status").filter(has_text="Inbox created").wait_for()
    link = page.get_by_label("Your link").input_value()
    assert re.fullmatch(re.escape(base_url) + r"/to/[A-Za-z0-9_-]{43}", link)
    return link


def send_in_browser(page, link: str, text: str) -> None:
    page.goto(link)
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.get_by_role("status").filter(has_text="Sent").wait_for()


def shown_messages(page) -> list[str]:
    page.locator("ol.messages pre.text").first.wait_for()
    return page.locator("ol.messages pre.text").all_text_contents()


def test_create_send_read_delete(browser, live_server, page_errors, tmp_path):
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url, prompt="What should we fix?")

    with recipient.expect_download() as download_info:
        recipient.get_by_role("button", name="Download key file").click()
    key_path = tmp_path / "downloaded.key"
    download_info.value.save_as(key_path)
    key_file = load_key_file(key_path.read_bytes())
    assert link.endswith("/to/" + key_file.keypair.public_key_text)
    assert key_file.server == live_server.url

    sender = new_page(browser, page_errors)
    sender.goto(link)
    assert sender.locator("#prompt").text_content() == "What should we fix?"
    secret_text = "The quarterly numbers were changed by hand 🔐"
    send_in_browser(sender, link, secret_text)
    assert sender.get_by_label("Message").input_value() == ""

    recipient.get_by_role("link", name="Open your inbox").click()
    assert shown_messages(recipient) == [secret_text]
    assert recipient.locator("ol.messages time").first.text_content()

    # The server holds only ciphertext: the text is nowhere in the database files.
    stored = b"".join(
        p.read_bytes() for p in Path(live_server.data_dir).glob("secretlink.sqlite3*")
    )
    assert secret_text.encode() not in stored
    assert b"quarterly" not in stored

    # The same key file reads the same message outside the browser.
    [message] = list(InboxClient(live_server.url, key_file.keypair).messages())
    assert (
        open_envelope(b64decode(message.ciphertext), key_file.keypair.secret_key).text
        == secret_text
    )

    recipient.get_by_role("button", name="Delete this message").click()
    recipient.get_by_role("status").filter(has_text="Message deleted").wait_for()
    assert list(InboxClient(live_server.url, key_file.keypair).messages()) == []


def test_messages_are_listed_newest_first_and_shown_as_text(browser, live_server, page_errors):
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    sender = new_page(browser, page_errors)
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    send_in_browser(sender, link, "first")
    send_in_browser(sender, link, hostile)
    recipient.goto(live_server.url + "/inbox")
    assert shown_messages(recipient) == [hostile, "first"]
    assert recipient.locator("ol.messages img").count() == 0
    assert recipient.evaluate("window.pwned") is None


def test_sender_page_works_without_jit_or_webassembly(jitless_browser, live_server, page_errors):
    keypair = generate_keypair()
    link = InboxClient(live_server.url, keypair).register("")["link"]
    sender = new_page(jitless_browser, page_errors)
    sender.goto(link)
    assert sender.evaluate("typeof WebAssembly") == "undefined"
    long_text = "Без JIT тоже работает. " * 1500  # 57,000 bytes of UTF-8
    send_in_browser(sender, link, long_text)
    [message] = list(InboxClient(live_server.url, keypair).messages())
    assert open_envelope(b64decode(message.ciphertext), keypair.secret_key).text == long_text


def test_inbox_page_opens_a_cli_key_file(browser, live_server, page_errors, tmp_path):
    keypair = generate_keypair()
    InboxClient(live_server.url, keypair).register("")
    key_path = tmp_path / "cli.key"
    key_path.write_text(dump_key_file(KeyFile(keypair)))
    sender = new_page(browser, page_errors)
    send_in_browser(sender, f"{live_server.url}/to/{keypair.public_key_text}", "via the CLI key")

    reader = new_page(browser, page_errors)
    reader.goto(live_server.url + "/inbox")
    reader.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    assert shown_messages(reader) == ["via the CLI key"]


def test_a_key_file_chosen_while_the_stored_inbox_opens_is_the_one_shown(
    browser, live_server, page_errors, tmp_path
):
    """The inbox page opens a sole stored inbox by itself. A key file chosen before that
    has finished is the inbox shown: the stored one's late answer changes nothing."""
    page = new_page(browser, page_errors)
    stored_key = create_inbox_in_browser(page, live_server.url, "the stored one").rsplit("/")[-1]
    chosen = generate_keypair()
    InboxClient(live_server.url, chosen).register("the chosen one")
    send_in_browser(page, f"{live_server.url}/to/{chosen.public_key_text}", "for the chosen one")
    key_path = tmp_path / "chosen.key"
    key_path.write_text(dump_key_file(KeyFile(chosen)))

    # The stored inbox's view, held back until the chosen inbox is shown.
    views = HeldRequests(page, f"**/api/v1/inboxes/{stored_key}")
    page.goto(live_server.url + "/inbox")
    views.made("the stored inbox's view: it did not start opening by itself")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    assert shown_messages(page) == ["for the chosen one"]
    expect(page.locator("#inbox-prompt")).to_have_text("Prompt: the chosen one")
    with page.expect_response(f"**/api/v1/inboxes/{stored_key}"):
        views.release("the stored inbox's view")
    page.evaluate("() => new Promise((done) => setTimeout(done, 200))")  # its answer is handled
    expect(page.locator("#inbox-prompt")).to_have_text("Prompt: the chosen one")
    expect(page.get_by_label("Link", exact=True)).to_have_value(
        f"{live_server.url}/to/{chosen.public_key_text}"
    )
    assert shown_messages(page) == ["for the chosen one"]


def test_a_broken_key_file_is_refused_clearly(browser, live_server, page_errors, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "secretlink-key", "version": 7}')
    reader = new_page(browser, page_errors)
    reader.goto(live_server.url + "/inbox")
    reader.get_by_label("Open an inbox from a key file").set_input_files(str(broken))
    reader.get_by_role("status").filter(has_text="not a usable key file").wait_for()


def test_sender_sees_clear_errors(browser, live_server):
    keypair = generate_keypair()
    owner = InboxClient(live_server.url, keypair)
    link = owner.register("")["link"]
    # The failed requests are logged to the console on purpose here.
    sender = new_page(browser, PageErrors())
    sender.goto(link)

    sender.route("**/api/**", lambda route: route.abort())
    sender.get_by_label("Message").fill("will not arrive")
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="Could not reach the server").wait_for()
    assert sender.get_by_label("Message").input_value() == "will not arrive"
    sender.unroute("**/api/**")

    owner.api.call("DELETE", owner.base, token=owner.token())
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="does not exist").wait_for()

    sender.get_by_label("Message").fill("x" * 65531)
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="too long").wait_for()


# Records, in the page, every change to it after the next press of Send (from its
# submit event): when, whether Send was disabled then, what the status line said.
WATCH_BUSY = """() => {
  window.busyChanges = [];
  const button = document.querySelector("#send");
  const status = document.querySelector("#status");
  let pressed = null;
  document.querySelector("#send-form").addEventListener("submit", () => {
    pressed ??= performance.now();
  }, { capture: true, once: true });
  new MutationObserver(() => {
    if (pressed === null) return;
    window.busyChanges.push({ at: performance.now() - pressed, disabled: button.disabled,
                              status: status.textContent });
  }).observe(document.body, { attributes: true, childList: true, subtree: true,
                              characterData: true });
}"""

SENDS_STARTED = "() => performance.getEntriesByName('secretlink:send:start').length"


def test_a_send_shows_it_is_busy_only_once_it_takes_a_while(browser, live_server, page_errors):
    """A quick send goes from Send to "Sent." with nothing changed on the page in
    between (docs/PERFORMANCE.md, P4); one that takes longer disables Send and says
    what it is doing; a second press while a message goes sends nothing more."""
    keypair = generate_keypair()
    owner = InboxClient(live_server.url, keypair)
    sender = new_page(browser, page_errors)
    sender.goto(owner.register("")["link"])
    held = []
    sender.route("**/messages", lambda route: held.append(route) if not held else route.continue_())

    sender.get_by_label("Message").fill("a slow one")
    sender.evaluate(WATCH_BUSY)
    sender.get_by_role("button", name="Send").click()
    sender.locator("#send:disabled").wait_for()  # the request is held: busy now
    expect(sender.get_by_role("status")).to_have_text("Sending…")
    changes = sender.evaluate("window.busyChanges")
    # Nothing changed before the busy state's delay (300 ms after the press).
    assert changes and min(change["at"] for change in changes) >= 250, changes
    held[0].continue_()
    sender.get_by_role("status").filter(has_text="Sent").wait_for()
    expect(sender.get_by_role("button", name="Send")).to_be_enabled()

    # Pressed twice at once: one message goes (a second send would have started at
    # once); the first shows no busy state before its delay, however long it takes.
    started = sender.evaluate(SENDS_STARTED)
    sender.get_by_label("Message").fill("a quick one")
    sender.evaluate(WATCH_BUSY)
    sender.evaluate("() => { for (const time of [1, 2]) document.querySelector('#send').click(); }")
    expect(sender.get_by_label("Message")).to_have_value("")  # sent: the box is emptied
    assert sender.evaluate(SENDS_STARTED) == started + 1
    changes = sender.evaluate("window.busyChanges")
    busy = [c for c in changes if c["disabled"] or "sending" in c["status"].lower()]
    assert all(change["at"] >= 250 for change in busy), changes
    assert len(list(owner.messages())) == 2


def test_the_busy_note_does_not_cover_a_step_that_reports_itself(browser, live_server, page_errors):
    """A send that lets the recipient reply first registers an inbox and says so; when
    the busy state shows (Send disabled), that line stays rather than the generic
    "Encrypting and sending…"."""
    owner = InboxClient(live_server.url, generate_keypair())
    sender = new_page(browser, page_errors)
    sender.goto(owner.register("")["link"])
    held = []
    sender.route("**/creation-puzzle", lambda route: held.append(route))
    sender.get_by_label("Message").fill("answer me")
    sender.get_by_label("Let the recipient reply").check()
    sender.get_by_role("button", name="Send").click()
    sender.locator("#send:disabled").wait_for()  # the registration is held: busy now
    expect(sender.get_by_role("status")).to_have_text(re.compile("^Registering an inbox"))
    held[0].continue_()
    sender.get_by_role("status").filter(has_text="Keep the reply link").wait_for()


def test_a_tampered_proof_of_work_worker_is_not_run(browser, live_server):
    """The worker's bytes must match the integrity hash in the page, or nothing is sent."""
    keypair = generate_keypair()
    owner = InboxClient(live_server.url, keypair)
    link = owner.register("")["link"]
    # The refused fetch is logged to the console on purpose here.
    sender = new_page(browser, PageErrors())
    sender.route(
        "**/static/build/pow-worker.js*",
        lambda route: route.fulfill(
            status=200,
            content_type="text/javascript",
            body="self.onmessage = () => self.postMessage({ solution: 0 });",
        ),
    )
    sender.goto(link)
    sender.get_by_label("Message").fill("must not be sent by tampered code")
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="integrity check").wait_for()
    assert list(owner.messages()) == []


def test_key_file_for_another_server_says_so(browser, live_server, page_errors, tmp_path):
    keypair = generate_keypair()
    InboxClient(live_server.url, keypair).register("")
    key_path = tmp_path / "elsewhere.key"
    key_path.write_text(dump_key_file(KeyFile(keypair, "https://elsewhere.example")))
    reader = new_page(browser, page_errors)
    reader.goto(live_server.url + "/inbox")
    reader.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    reader.get_by_role("status").filter(has_text="0 messages").wait_for()
    # The note is written once the inbox has opened, after the status line: waited for.
    expect(reader.locator("#key-file-note")).to_contain_text("https://elsewhere.example")


def test_damaged_link_shows_a_clear_page(browser, live_server):
    page = browser.new_page()
    response = page.goto(live_server.url + "/to/not-a-key")
    assert response.status == 400
    assert "damaged" in page.content()
    page.close()


# ---- hostile texts: each payload tries to set window.__pwned; all must show as text ----

PAYLOADS = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    "<svg onload=\"window.__pwned = 'svg'\"><circle r=10 /></svg>",
    '<a href="javascript:window.__pwned=\'link\'" id="evil">click me</a>',
    "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>",
    '"><script>window.__pwned = "attribute break"</script>',
    "</pre><script>window.__pwned = 'close tag'</script><pre>",
    "<style>body{display:none}</style><b>bold?</b>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned='mxss'>",
    "{{ 7*7 }} {% raw %}${7*7}",
    "\u202egnp.exe\u202c — right-to-left override",
    "javascript:window.__pwned='bare'",
]


def test_hostile_messages_and_prompt_are_shown_as_text(browser, live_server, tmp_path):
    keypair = generate_keypair()
    prompt = PAYLOADS[1] + " " + PAYLOADS[0]
    InboxClient(live_server.url, keypair).register(prompt)
    link = f"{live_server.url}/to/{keypair.public_key_text}"

    sender = new_page(browser, PageErrors())
    sender.goto(link)
    assert sender.locator("#prompt").text_content() == prompt
    for payload in PAYLOADS:
        sender.get_by_label("Message").fill(payload)
        sender.get_by_role("button", name="Send").click()
        sender.get_by_role("status").filter(has_text="Sent").wait_for()
        sender.get_by_role("status").evaluate("node => node.textContent = ''")
    assert sender.evaluate("window.__pwned") is None

    key_path = tmp_path / "inbox.key"
    key_path.write_text(dump_key_file(KeyFile(keypair)))
    reader = new_page(browser, PageErrors())
    reader.goto(live_server.url + "/inbox")
    reader.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    assert shown_messages(reader) == list(reversed(PAYLOADS))
    assert reader.locator("#inbox-prompt").text_content() == f"Prompt: {prompt}"
    # No payload turned into markup anywhere in the page.
    svg = "svg:not(#share-qr > svg)"  # but the page's own QR code of the link (share.js)
    for tag in ("script:not([src])", "img", svg, "iframe", "#evil", "style", "math"):
        assert reader.locator(tag).count() == 0, tag
    assert sender.locator("img, svg, iframe, #evil").count() == 0
    assert reader.evaluate("window.__pwned") is None
    assert reader.locator("body").is_visible()


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda link: link[:-43] + generate_keypair().public_key_text, id="other-key"),
        pytest.param(lambda link: link.replace("/to/", "/prefix/to/"), id="path-prefix"),
        pytest.param(lambda link: "https://elsewhere.example/to/" + link[-43:], id="other-origin"),
    ],
)
def test_start_page_refuses_a_link_that_is_not_its_own(browser, live_server, page_errors, rewrite):
    """SPEC 4.4: the page checks the link the server answers with; a server (here a
    rewriting route between page and server) that changes it gets no link shown."""
    page = new_page(browser, page_errors)

    def rewrite_link(route):
        if route.request.method != "PUT":
            route.continue_()
            return
        response = route.fetch()
        if not response.ok:  # e.g. the first PUT's pow_required: passed on as it is
            route.fulfill(response=response)
            return
        data = response.json()
        data["link"] = rewrite(data["link"])
        route.fulfill(response=response, json=data)

    page.route(re.compile(r".*/api/v1/inboxes/[A-Za-z0-9_-]{43}$"), rewrite_link)
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Create inbox").click()
    page.get_by_role("status").filter(has_text="Do not use this server").wait_for()
    assert page.locator("#created").is_hidden()
    assert page.get_by_label("Your link").input_value() == ""
    assert page.get_by_role("button", name="Download key file").is_hidden()


def test_sender_page_solves_again_on_pow_stale_and_keeps_the_text(
    browser, live_server, monkeypatch
):
    """A puzzle solved long ago meets a risen difficulty: the page solves the fresh
    puzzle of the refusal and sends the same message, which arrives intact."""
    from test_pow import MESSAGE, stale_first

    keypair = generate_keypair()
    owner = InboxClient(live_server.url, keypair)
    link = owner.register("")["link"]
    stale_first(live_server.app.extensions["secretlink.pow"], MESSAGE, monkeypatch)
    # The 400 pow_stale answer is logged to the console on purpose here.
    sender = new_page(browser, PageErrors())
    posts = []
    sender.on(
        "response",
        lambda response: response.url.endswith("/messages") and posts.append(response.status),
    )
    text = "written while a flood raised the difficulty ✓"
    send_in_browser(sender, link, text)
    assert posts == [400, 201]  # pow_stale, then the same message with the fresh puzzle
    [message] = owner.messages()
    opened = open_envelope(b64decode(message.ciphertext), keypair.secret_key, keypair.public_key)
    assert opened.text == text


def test_start_page_solves_the_creation_puzzle_again_when_stale(browser, live_server, monkeypatch):
    """Creating an inbox costs a creation puzzle; a stale one is solved again."""
    from test_pow import stale_first

    from secretlink.web.pow import CREATE_INBOX

    stale_first(live_server.app.extensions["secretlink.pow"], CREATE_INBOX, monkeypatch)
    # The 400 pow_stale answer is logged to the console on purpose here.
    page = new_page(browser, PageErrors())
    puts = []
    page.on(
        "response",
        lambda response: response.request.method == "PUT" and puts.append(response.status),
    )
    link = create_inbox_in_browser(page, live_server.url, prompt="after a flood")
    assert puts == [400, 201]
    public_key = link.rsplit("/", 1)[1]
    shown = (
        live_server.app.test_client()
        .get(f"/api/v1/inboxes/{public_key}", base_url=live_server.url)
        .get_json()
    )
    assert shown["prompt"] == "after a flood"


def test_a_full_inbox_is_said_plainly_to_sender_and_owner(
    browser, live_server, page_errors, monkeypatch
):
    from secretlink.store.quotas import Quotas

    storage = live_server.app.extensions["secretlink.storage"]
    monkeypatch.setattr(storage._gate, "quotas", Quotas(inbox_messages=1))
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    # The refused send is logged to the console on purpose here.
    sender = new_page(browser, PageErrors())
    send_in_browser(sender, link, "first")
    sender.get_by_label("Message").fill("second")
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="This inbox is full").wait_for()
    assert sender.get_by_label("Message").input_value() == "second"  # nothing lost

    recipient.goto(live_server.url + "/inbox")
    assert shown_messages(recipient) == ["first"]
    recipient.get_by_role("alert").filter(has_text="This inbox is full").wait_for()
    assert "1 of 1 message." in recipient.locator("#usage").text_content()  # plural rules: one
