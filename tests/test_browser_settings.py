"""Inbox settings in real Chromium: the owner's panel on the inbox page, and what a
sender then meets (a notice instead of the form; offers the inbox refuses hidden)."""

import re

import pytest
import test_browser
from playwright.sync_api import expect
from test_browser import (
    PageErrors,
    create_inbox_in_browser,
    new_page,
    send_in_browser,
    shown_messages,
)

pytestmark = pytest.mark.browser

# The same Chromium fixtures as the main browser tests.
playwright_driver = test_browser.playwright_driver
browser = test_browser.browser
page_errors = test_browser.page_errors


def open_settings(page) -> None:
    page.goto(page.url.split("#")[0].rsplit("/", 1)[0] + "/inbox")
    page.locator("#settings summary").click()
    page.locator("#settings-fields:not([disabled])").wait_for()
    # The inbox has finished opening: its status line says nothing more after this.
    expect(page.locator("#status")).to_have_text(re.compile(r"^\d+ messages?\.$"))


def saved(page, text: str) -> None:
    page.locator("#status").filter(has_text=text).wait_for()


def test_pause_resume_and_settings_persist(browser, live_server, page_errors):
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url, prompt="Ask me")
    open_settings(recipient)

    recipient.get_by_label("Pause: turn senders away for now", exact=False).check()
    saved(recipient, "Paused")
    recipient.get_by_label("Keep messages on the server for").select_option("7")
    saved(recipient, "7 days after they arrive")
    recipient.get_by_label("At most this many messages per hour", exact=False).fill("5")
    recipient.get_by_label("At most this many messages per hour", exact=False).press("Enter")
    saved(recipient, "At most 5 messages per hour")
    recipient.get_by_label("Accept replies").uncheck()
    saved(recipient, "Replies are not accepted")

    # A sender meets a plain notice, not the form.
    sender = new_page(browser, page_errors)
    sender.goto(link)
    notice = sender.locator("#inbox-notice")
    notice.wait_for()
    assert "paused" in notice.text_content()
    assert sender.locator("#send-form").is_hidden()
    assert sender.get_by_label("Let the recipient reply").is_hidden()

    # The settings are the server's: a fresh page shows them.
    open_settings(recipient)
    assert recipient.get_by_label("Pause: turn senders away for now", exact=False).is_checked()
    assert recipient.get_by_label("Keep messages on the server for").input_value() == "7"
    assert recipient.get_by_label("At most this many messages", exact=False).input_value() == "5"
    assert not recipient.get_by_label("Accept replies").is_checked()

    recipient.get_by_label("Pause: turn senders away for now", exact=False).uncheck()
    saved(recipient, "Resumed")
    # Resumed, but replies still off: the form is back without the reply option.
    sender.goto(link)
    sender.locator("#send-form").wait_for()
    # Shown by default, hidden once the page has read the inbox's state.
    sender.get_by_label("Let the recipient reply").wait_for(state="hidden")
    recipient.get_by_label("Accept replies").check()
    saved(recipient, "Replies are accepted")
    sender.goto(link)
    sender.get_by_label("Let the recipient reply").wait_for()  # shown again
    send_in_browser(sender, link, "after the pause")
    assert sender.locator("#inbox-notice").is_hidden()


def test_a_pause_while_the_sender_writes_keeps_their_text(browser, live_server, page_errors):
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    sender = new_page(browser, PageErrors())  # the refusal is logged on purpose
    sender.goto(link)
    sender.get_by_label("Message").fill("written before the pause")
    open_settings(recipient)
    recipient.get_by_label("Pause: turn senders away for now", exact=False).check()
    saved(recipient, "Paused")
    sender.get_by_role("button", name="Send").click()
    sender.locator("#status").filter(has_text="paused it").wait_for()
    assert sender.get_by_label("Message").input_value() == "written before the pause"
    expect(sender.locator("#inbox-notice")).to_be_visible()


def test_rotate_moves_the_old_link_on_and_keeps_its_messages(browser, live_server, page_errors):
    recipient = new_page(browser, page_errors)
    old_link = create_inbox_in_browser(recipient, live_server.url, prompt="Rotating soon")
    sender = new_page(browser, page_errors)
    send_in_browser(sender, old_link, "sent to the old link")

    open_settings(recipient)
    assert shown_messages(recipient) == ["sent to the old link"]
    recipient.on("dialog", lambda dialog: dialog.accept())
    recipient.get_by_role("button", name="Rotate the link").click()
    saved(recipient, "New link made")
    new_link = recipient.locator("#inbox-link").input_value()
    assert new_link != old_link and new_link.startswith(live_server.url + "/to/")

    # The old link says only that the inbox moved on, not where.
    sender.goto(old_link)
    notice = sender.locator("#inbox-notice")
    notice.wait_for()
    assert "moved on" in notice.text_content()
    assert new_link.rsplit("/", 1)[1] not in sender.content()
    assert sender.locator("#send-form").is_hidden()

    # The new link takes messages, with the same prompt.
    sender.goto(new_link)
    assert sender.locator("#prompt").text_content() == "Rotating soon"
    send_in_browser(sender, new_link, "sent to the new link")
    recipient.get_by_role("button", name="Refresh").click()
    saved(recipient, "1 message")
    assert shown_messages(recipient) == ["sent to the new link"]

    # Both keys stay in this browser; the old inbox's messages are still readable.
    recipient.reload()
    moved = recipient.locator("#inbox-list li").filter(has_text="(moved on)")
    moved.get_by_role("button", name="Open").click()
    recipient.wait_for_function(
        "link => document.querySelector('#inbox-link').value === link", arg=old_link
    )
    # The link shows at once; the messages once the old inbox's list has come.
    recipient.locator("#messages li").filter(has_text="sent to the old link").wait_for()
    assert shown_messages(recipient) == ["sent to the old link"]
    recipient.locator("#settings summary").click()
    recipient.locator("#settings-state").filter(has_text="moved on").wait_for()
    assert recipient.get_by_role("button", name="Rotate the link").is_hidden()


def test_delete_all_messages_after_confirming(browser, live_server, page_errors):
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    sender = new_page(browser, page_errors)
    send_in_browser(sender, link, "one")
    send_in_browser(sender, link, "two")
    open_settings(recipient)
    assert len(shown_messages(recipient)) == 2

    recipient.once("dialog", lambda dialog: dialog.dismiss())
    recipient.get_by_role("button", name="Delete all messages").click()
    assert len(shown_messages(recipient)) == 2  # not confirmed: nothing deleted

    recipient.once("dialog", lambda dialog: dialog.accept())
    recipient.get_by_role("button", name="Delete all messages").click()
    recipient.locator("#empty").wait_for()
    assert recipient.locator("ol.messages li").count() == 0
