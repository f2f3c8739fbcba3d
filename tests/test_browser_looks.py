"""The sender page's copy and its space bar, in real Chromium (issue 13, item 4).

The bar must tell the truth in every script: it shows the share of the payload the
envelope will carry, so Arabic (two bytes a letter) and emoji (four) fill it faster
than Latin text of as many characters. The expected shares are worked out here from
the Python twin's real payload encoding, not from the page's own arithmetic.
"""

import math
import re

import pytest
from playwright.sync_api import expect
from test_browser import (
    browser,  # noqa: F401  (a fixture, used by name)
    new_page,
    page_errors,  # noqa: F401
    playwright_driver,  # noqa: F401
)

from secretlink.client.http import InboxClient
from secretlink.crypto import generate_keypair
from secretlink.crypto.conversation import ROLE_SENDER, conversation_field
from secretlink.crypto.envelope import MAX_PADDED, Message, encode_payload

pytestmark = pytest.mark.browser

MAX_PAYLOAD = MAX_PADDED - 1  # the padding marker takes the largest bucket's last byte
ARABIC = "سلام عليكم " * 1500  # 11 characters, 20 bytes
EMOJI = "🙂🌍" * 2500  # 2 characters (4 UTF-16 units), 8 bytes


def percent_used(payload: bytes) -> int:
    return math.floor(100 * len(payload) / MAX_PAYLOAD)


def plain_payload(text: str) -> bytes:
    return encode_payload(Message(text))


def reply_payload(text: str, inbox_key: bytes) -> bytes:
    """What the page sends when the sender lets the recipient reply: an empty text
    field and a conversation field boxed from a fresh reply key."""
    value = conversation_field(
        text,
        writer=generate_keypair(),
        reader_key=inbox_key,
        role=ROLE_SENDER,
        conversation_id=bytes(16),
        seq=1,
        last_seen=0,
    )
    return encode_payload(Message("", value))


@pytest.fixture
def page(browser, page_errors):  # noqa: F811
    page = new_page(browser, page_errors)
    yield page
    page.context.close()


@pytest.fixture
def inbox(live_server):
    keypair = generate_keypair()
    link = InboxClient(live_server.url, keypair).register("")["link"]
    return keypair, link


def test_sender_page_says_what_is_encrypted_who_reads_it_and_what_the_server_sees(page, inbox):
    _keypair, link = inbox
    page.goto(link)
    summary = page.locator("#what-happens")
    expect(summary).to_be_visible()
    text = " ".join(summary.text_content().split())
    assert "encrypted here, on this device, to the key in the link" in text
    assert "only whoever holds this inbox's private key can read it" in text
    assert "about this size" in text and "and when" in text
    assert "never its text" in text and "does not store your IP address" in text
    # Above the form, where a sender reads it before writing.
    assert summary.evaluate(
        "node => !!(node.compareDocumentPosition(document.querySelector('#message'))"
        " & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    # The safety words (issue 10) stay: eight words worked out from the link.
    words = page.locator("#inbox-safety-words")
    expect(words).to_have_text(re.compile(r"^\S+( \S+){7}$"))


def expect_used(page, percent: int) -> None:
    expect(page.locator("#size")).to_have_text(f"{percent} % used")
    meter = page.get_by_role("meter", name="Space used")
    expect(meter).to_have_attribute("aria-valuetext", f"{percent} % used")
    value = float(meter.evaluate("node => node.value"))
    assert math.floor(value) == percent


def test_space_bar_counts_bytes_of_the_payload_not_characters(page, inbox):
    keypair, link = inbox
    page.goto(link)
    message = page.get_by_label("Message")
    expect_used(page, 0)  # an empty text field still takes 5 bytes: under 1 %

    for text in (ARABIC, EMOJI, "x" * 30_000):
        message.fill(text)
        expect_used(page, percent_used(plain_payload(text)))
    # Not a count of characters: Arabic and emoji fill the bar much faster than that.
    message.fill(ARABIC)
    assert percent_used(plain_payload(ARABIC)) == 45
    assert math.floor(100 * len(ARABIC) / MAX_PAYLOAD) == 25
    message.fill(EMOJI)
    assert percent_used(plain_payload(EMOJI)) == 30
    assert math.floor(100 * len(EMOJI) / MAX_PAYLOAD) == 7

    # Letting the recipient reply adds the conversation field's own bytes: here
    # enough to move the bar from 49 % to 50 %, and to make a long text too long.
    middle = "ع" * 16_377 + "x"  # 32755 bytes
    message.fill(middle)
    expect_used(page, 49)
    reply = page.get_by_label("Let the recipient reply")
    reply.check()
    expect_used(page, percent_used(reply_payload(middle, keypair.public_key)))
    assert percent_used(reply_payload(middle, keypair.public_key)) == 50
    big = "🙂" * 16_361  # 65444 bytes: fits alone, not beside the conversation field
    message.fill(big)
    expect(page.locator("#size")).to_have_text(re.compile("^Too long: over 100 % used"))
    reply.uncheck()
    expect_used(page, percent_used(plain_payload(big)))
    assert percent_used(plain_payload(big)) == 99


def test_a_message_over_the_space_is_refused_with_the_bar_full(page, inbox):
    _keypair, link = inbox
    page.goto(link)
    fits = "ع" * ((MAX_PAYLOAD - 5) // 2)  # 65530 bytes: exactly full
    page.get_by_label("Message").fill(fits)
    expect_used(page, 100)
    page.get_by_label("Message").fill(fits + "x")
    size = page.locator("#size")
    expect(size).to_have_text("Too long: over 100 % used. Shorten the message to send it.")
    expect(size).to_have_attribute("data-kind", "error")
    meter = page.get_by_role("meter", name="Space used")
    expect(meter).to_have_attribute("aria-valuetext", "over 100 % used")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert").filter(has_text="too long")).to_be_visible()
