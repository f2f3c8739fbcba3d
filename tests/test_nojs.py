"""Without JavaScript (Tor Browser's "Safest" level), in real Chromium with scripts
off: every page says why it needs JavaScript, gives the exact command line for this
page, and shows no control that could seem to send; no page path takes a POST."""

import re

import pytest
from conftest import register
from playwright.sync_api import expect
from test_browser import launch

from secretlink.client.http import InboxClient
from secretlink.crypto import generate_keypair

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000
CONTROLS = "main button, main input, main textarea, main select, main form"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)  # as in test_browser.playwright_driver
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def no_js_page(browser):
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def expected_pages(url: str, public_key: str) -> dict[str, list[str]]:
    """Each page's path and the command lines it must show, exactly."""
    return {
        "/": [
            "secretlink keygen --key-file inbox.key",
            f"secretlink inbox create --server {url} --key-file inbox.key",
        ],
        "/inbox": [f"secretlink inbox read --server {url} --key-file inbox.key"],
        "/reply": ["secretlink replies -"],
        f"/to/{public_key}": [f"secretlink send {url}/to/{public_key}"],
    }


def test_every_page_explains_and_gives_the_command_without_javascript(live_server, no_js_page):
    keypair = generate_keypair()
    InboxClient(live_server.url, keypair).register("Tell me")
    for path, commands in expected_pages(live_server.url, keypair.public_key_text).items():
        answer = no_js_page.goto(live_server.url + path)
        assert answer is not None and answer.status == 200
        notice = no_js_page.locator("#no-js")
        assert notice.is_visible(), path
        text = notice.inner_text()
        assert "JavaScript is off" in text and "command line" in text
        assert re.search(r"(encrypted|decrypted|key is made) on your device", text), path
        assert no_js_page.locator("#no-js pre").inner_text().splitlines() == commands
        # Nothing to type into or press: no control pretends to send.
        controls = no_js_page.locator(CONTROLS)
        assert all(not controls.nth(i).is_visible() for i in range(controls.count())), path
        assert no_js_page.locator("main button:visible, main textarea:visible").count() == 0


def test_with_javascript_the_notice_stays_hidden(live_server, browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live_server.url + "/")
        expect(page.locator("#create-form")).to_be_visible()
        assert page.locator("#no-js").count() == 0  # <noscript> content is not even parsed
    finally:
        context.close()


def test_no_page_path_takes_a_post(client, keypair):
    register(client, keypair)
    for path in ("/", "/inbox", "/reply", f"/to/{keypair.public_key_text}"):
        answer = client.post(path, data={"message": "plain text"})
        assert answer.status_code == 405, path
