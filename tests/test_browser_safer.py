"""Tor Browser's "Safer" level in real Chromium: --js-flags=--jitless (no JIT, no
WebAssembly) for the whole flow, create, send, read and delete. The sender page and
the conversation pages have jitless tests of their own (test_browser.py,
test_browser_conversation.py); without JavaScript at all see test_nojs.py."""

import pytest
from test_browser import (  # noqa: F401  (fixtures, used by name)
    create_inbox_in_browser,
    jitless_browser,
    new_page,
    page_errors,
    playwright_driver,
    send_in_browser,
    shown_messages,
)

pytestmark = pytest.mark.browser


def test_create_send_read_delete_without_jit(jitless_browser, live_server, page_errors):  # noqa: F811
    recipient = new_page(jitless_browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url, prompt="Safer level")
    assert recipient.evaluate("typeof WebAssembly") == "undefined"
    sender = new_page(jitless_browser, page_errors)
    send_in_browser(sender, link, "Без JIT, über Tor")
    recipient.get_by_role("link", name="Open your inbox").click()
    assert shown_messages(recipient) == ["Без JIT, über Tor"]
    recipient.get_by_role("button", name="Delete this message").click()
    recipient.get_by_role("status").filter(has_text="Message deleted").wait_for()
