"""Conversations in real Chromium (issue 10): a sender asks for a reply, the recipient
answers, the sender reads and answers again; what a server can do to a conversation
(drop, replay, reflect, forge an opener) is flagged or refused in the page.

Each person has a browser context of their own (separate storage, like two devices).
The server-side attacks are made by writing rows straight into the server's storage,
as a hostile server would; the crafted envelopes come from the Python twin of the
browser crypto.
"""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import expect
from test_browser import (  # noqa: F401  (fixtures, used by name)
    browser,
    create_inbox_in_browser,
    jitless_browser,
    new_page,
    page_errors,
    playwright_driver,
)
from test_browser_reading import (
    expect_unread,
    inbox_with,
    item,
    mute,
    open_with_key_file,
    wait_for_messages,
)

from secretlink.client.cli import main
from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, b64encode, generate_keypair, seal
from secretlink.crypto.conversation import (
    ROLE_RECIPIENT,
    ROLE_SENDER,
    ConversationMessage,
    conversation_field,
    new_conversation_id,
    open_any,
    seal_conversation,
)
from secretlink.crypto.envelope import Message
from secretlink.crypto.keyfile import ConversationRef, KeyFile, dump_key_file, load_key_file
from secretlink.crypto.reply_link import build_reply_link, parse_reply_link
from secretlink.crypto.safety_words import format_safety_words

pytestmark = pytest.mark.browser

B64 = "[A-Za-z0-9_-]"
REPLY_LINK = re.compile(rf"http://127\.0\.0\.1:\d+/reply#{B64}{{43}}\.{B64}{{43}}\.{B64}{{22}}")


def stored(live_server):
    return live_server.app.extensions["secretlink.storage"]


def send_with_reply(page, link: str, text: str, keep_copy: bool = False) -> str:
    page.goto(link)
    page.get_by_label("Message").fill(text)
    page.get_by_label("Let the recipient reply").check()
    if keep_copy:
        page.get_by_label("Keep a copy of what I write").check()
    page.get_by_role("button", name="Send").click()
    page.get_by_role("status").filter(has_text="Sent").wait_for()
    warning = "can read the recipient's answers, and can write to the recipient as if they were you"
    expect(page.get_by_text(warning)).to_be_visible()
    reply_link = page.get_by_label("Private reply link").input_value()
    assert REPLY_LINK.fullmatch(reply_link), reply_link
    return reply_link


def thread_texts(page, selector: str = "#thread") -> list[str]:
    return page.locator(
        f"{selector} li.peer pre.text, {selector} li.own pre.text"
    ).all_text_contents()


def open_reply_link(page, reply_link: str, answers: int) -> None:
    page.goto(reply_link)
    page.get_by_role("status").filter(has_text=f"{answers} answer").wait_for()
    # The secret left the address bar and this page's history entry.
    assert page.url.endswith("/reply")
    assert "#" not in page.evaluate("location.href")


def reply_in_inbox(page, text: str) -> None:
    page.get_by_label("Your reply").fill(text)
    page.get_by_role("button", name="Reply", exact=True).click()
    page.get_by_role("status").filter(has_text="Reply sent").wait_for()


def test_a_conversation_both_ways(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    inbox_key = b64decode(link.rsplit("/", 1)[1])
    words = format_safety_words(inbox_key)
    assert recipient.locator("#safety-words").text_content() == words

    sender = new_page(browser, page_errors)
    sender.goto(link)
    assert sender.locator("#inbox-safety-words").text_content() == words
    reply_link = send_with_reply(sender, link, "Who changed the numbers?")
    parsed = parse_reply_link(reply_link)
    assert parsed.inbox_key == inbox_key
    reply_words = format_safety_words(parsed.reply_keypair.public_key)
    assert sender.locator("#reply-safety-words").text_content() == reply_words
    with sender.expect_download() as download_info:
        sender.get_by_role("button", name="Download reply key file").click()
    key_path = tmp_path / "reply.key"
    download_info.value.save_as(key_path)
    key_file = load_key_file(key_path.read_bytes())
    assert key_file.keypair.public_key == parsed.reply_keypair.public_key
    assert key_file.conversation.inbox_key == inbox_key
    assert key_file.conversation.conversation_id == parsed.conversation_id
    # The server got the reply key's public half only, and stores no text.
    database = b"".join(p.read_bytes() for p in live_server.data_dir.glob("secretlink.sqlite3*"))
    assert b"changed the numbers" not in database

    recipient.goto(live_server.url + "/inbox")
    conversation = recipient.locator("article.conversation")
    conversation.locator("li.peer pre.text").first.wait_for()
    assert recipient.locator("#inbox-safety-words").text_content() == words
    assert reply_words in conversation.text_content()
    assert recipient.locator("ol#messages li").count() == 0  # not shown as a plain message
    reply_in_inbox(recipient, "Finance did, on Friday.")
    reply_in_inbox(recipient, "Ask for the original sheet.")
    assert thread_texts(recipient, "article.conversation") == [
        "Who changed the numbers?",
        "Finance did, on Friday.",
        "Ask for the original sheet.",
    ]

    # The sender reads on another device (a fresh context) with the reply link.
    reader = new_page(browser, page_errors)
    open_reply_link(reader, reply_link, 2)
    assert thread_texts(reader) == ["Finance did, on Friday.", "Ask for the original sheet."]
    assert reader.locator("#inbox-safety-words").text_content() == words
    assert reader.locator("#reply-safety-words").text_content() == reply_words
    assert reader.locator("#thread .flag").count() == 0
    reader.get_by_label("Keep a copy of what I write").check()
    reader.get_by_label("Your answer").fill("Thank you. I will.")
    reader.get_by_role("button", name="Send answer").click()
    reader.get_by_role("status").filter(has_text="Sent. Only the recipient").wait_for()
    assert thread_texts(reader) == [
        "Finance did, on Friday.",
        "Ask for the original sheet.",
        "Thank you. I will.",
    ]
    # Kept in this browser: the page opens again without the link.
    reader.goto(live_server.url + "/reply")
    reader.get_by_role("status").filter(has_text="2 answers").wait_for()
    assert thread_texts(reader)[-1] == "Thank you. I will."

    recipient.get_by_role("button", name="Refresh").click()
    recipient.get_by_text("Thank you. I will.").wait_for()
    assert thread_texts(recipient, "article.conversation")[-1] == "Thank you. I will."
    assert recipient.locator("article.conversation .flag").count() == 0

    # The recipient's export holds the conversation as the page shows it.
    with recipient.expect_download() as exported_info:
        recipient.get_by_role("button", name="Export as JSON").click()
    exported = json.loads(Path(exported_info.value.path()).read_text(encoding="utf-8"))
    [thread] = exported["conversations"]
    assert thread["reply_public_key"] == b64encode(parsed.reply_keypair.public_key)
    assert [(m["from"], m["seq"], m["text"], m.get("read")) for m in thread["messages"]] == [
        ("sender", 1, "Who changed the numbers?", False),
        ("you", 1, "Finance did, on Friday.", None),  # your own have no read mark
        ("you", 2, "Ask for the original sheet.", None),
        ("sender", 2, "Thank you. I will.", False),
    ]
    with recipient.expect_download() as markdown_info:
        recipient.get_by_role("button", name="Export as Markdown").click()
    markdown = Path(markdown_info.value.path()).read_text(encoding="utf-8")
    assert "## Conversation 1" in markdown and "### #2 from the sender" in markdown
    assert markdown.count(" · unread") == 2  # the sender's two messages
    assert "Ask for the original sheet.\n" in markdown


def conversation_setup(live_server):
    """An inbox, a reply inbox, and a sender's opener, all made outside the browser."""
    inbox = generate_keypair()
    InboxClient(live_server.url, inbox).register("")
    reply = generate_keypair()
    InboxClient(live_server.url, reply).register("")
    conversation_id = new_conversation_id()
    opener = conversation_field(
        "opener",
        writer=reply,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=conversation_id,
        seq=1,
        last_seen=0,
    )
    stored(live_server).add_message(
        inbox.public_key_text, seal(Message("", opener), inbox.public_key)
    )
    link = build_reply_link(live_server.url, reply.secret_key, inbox.public_key, conversation_id)
    return inbox, reply, conversation_id, opener, link


def test_dropped_replayed_and_reflected_messages_are_flagged(browser, live_server, page_errors):  # noqa: F811 (fixtures from test_browser)
    inbox, reply, conversation_id, opener, link = conversation_setup(live_server)

    def answer(seq: int, last_seen: int = 1) -> bytes:
        return seal_conversation(
            f"answer {seq}",
            writer=inbox,
            reader_key=reply.public_key,
            role=ROLE_RECIPIENT,
            conversation_id=conversation_id,
            seq=seq,
            last_seen=last_seen,
        )

    store = stored(live_server)
    first = answer(1)
    store.add_message(reply.public_key_text, first)
    # #2 is dropped by the server: never delivered.
    # #3 says it has read the sender's #2, which this device never sent (another device
    # of the sender's, or tampering).
    store.add_message(reply.public_key_text, answer(3, last_seen=2))
    store.add_message(reply.public_key_text, first)  # replayed: the same envelope again
    # Reflected: the sender's own opener, passed off as coming from the inbox key (the
    # box key is the same both ways, so it opens) and sealed back to the reply key.
    reflected = inbox.public_key + opener[32:]
    store.add_message(reply.public_key_text, seal(Message("", reflected), reply.public_key))

    sender = new_page(browser, page_errors)
    open_reply_link(sender, link, 2)
    assert sender.locator("#thread li.peer pre.text").all_text_contents() == [
        "answer 1",
        "answer 3",
    ]
    assert (
        "Message #2 from the other side is missing"
        in sender.locator("#thread li.missing").text_content()
    )
    refused = sender.locator("#thread li.refused").all_text_contents()
    assert len(refused) == 2
    assert "Refused: a replay" in refused[0] and "#1" in refused[0]
    assert "Refused: a reflection" in refused[1]
    claim = sender.locator('#thread li.peer[data-seq="3"] .flag').text_content()
    assert "has read your message #2, which this device never sent" in claim

    # The state is kept: a reload shows the same, and the replay is still one.
    sender.reload()
    sender.get_by_role("status").filter(has_text="2 answers").wait_for()
    assert sender.locator("#thread li.missing").count() == 1
    assert sender.locator("#thread li.refused").count() == 2
    assert sender.locator('#thread li.peer[data-seq="3"] .flag').count() == 1

    # This device never reuses a number the other side has seen: its answer is #3.
    sender.get_by_label("Your answer").fill("Which #2?")
    sender.get_by_role("button", name="Send answer").click()
    sender.get_by_role("status").filter(has_text="Sent. Only the recipient").wait_for()
    latest = next(iter(InboxClient(live_server.url, inbox).messages()))
    opened = open_any(b64decode(latest.ciphertext), inbox.secret_key)
    assert (opened.text, opened.seq, opened.last_seen) == ("Which #2?", 3, 3)


def test_a_forged_opener_is_refused_in_the_inbox(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    inbox, reply, conversation_id, _opener, _link = conversation_setup(live_server)
    # Someone who knows the reply key's public half only (the server does: it registered
    # it) boxes an opener with a key of its own and writes the reply key in the writer slot.
    forger = generate_keypair()
    forged = conversation_field(
        "forged: send me your password",
        writer=forger,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=new_conversation_id(),
        seq=1,
        last_seen=0,
    )
    forged = reply.public_key + forged[32:]
    store = stored(live_server)
    store.add_message(inbox.public_key_text, seal(Message("", forged), inbox.public_key))
    # A message that claims the recipient's own role, sealed to the inbox: a reflection.
    mirrored = (
        reply.public_key
        + conversation_field(
            "mirror",
            writer=reply,
            reader_key=inbox.public_key,
            role=ROLE_RECIPIENT,
            conversation_id=conversation_id,
            seq=2,
            last_seen=1,
        )[32:]
    )
    store.add_message(inbox.public_key_text, seal(Message("", mirrored), inbox.public_key))
    store.add_message(inbox.public_key_text, seal("a plain message", inbox.public_key))

    key_path = tmp_path / "inbox.key"
    key_path.write_text(dump_key_file(KeyFile(inbox)))
    recipient = new_page(browser, page_errors)
    recipient.goto(live_server.url + "/inbox")
    recipient.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    recipient.locator("ol#messages pre.text").first.wait_for()
    assert recipient.locator("ol#messages pre.text").all_text_contents() == ["a plain message"]
    conversation = recipient.locator("article.conversation")
    assert conversation.count() == 1
    assert thread_texts(recipient, "article.conversation") == ["opener"]
    refused = recipient.locator("#refused li").all_text_contents()
    assert any("not authentic" in text for text in refused)
    assert any("reflection" in text for text in refused)
    assert "send me your password" not in recipient.content()


def test_blocking_deletes_a_conversation_unread(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    inbox, reply, conversation_id, _opener, _link = conversation_setup(live_server)
    key_path = tmp_path / "inbox.key"
    key_path.write_text(dump_key_file(KeyFile(inbox)))
    recipient = new_page(browser, page_errors)
    recipient.goto(live_server.url + "/inbox")
    recipient.get_by_label("Open an inbox from a key file").set_input_files(str(key_path))
    recipient.locator("article.conversation li.peer").first.wait_for()
    recipient.once("dialog", lambda dialog: dialog.accept())
    recipient.get_by_role("button", name="Block conversation").click()
    recipient.get_by_role("status").filter(has_text="Conversation blocked").wait_for()
    assert recipient.locator("article.conversation").count() == 0
    assert list(InboxClient(live_server.url, inbox).messages()) == []

    later = conversation_field(
        "still here?",
        writer=reply,
        reader_key=inbox.public_key,
        role=ROLE_SENDER,
        conversation_id=conversation_id,
        seq=2,
        last_seen=0,
    )
    stored(live_server).add_message(
        inbox.public_key_text, seal(Message("", later), inbox.public_key)
    )
    recipient.get_by_role("button", name="Refresh").click()
    recipient.get_by_role("status").filter(has_text="Deleted unread: 1").wait_for()
    assert recipient.get_by_role("status").text_content().startswith("0 messages.")
    assert recipient.locator("article.conversation").count() == 0
    assert "still here?" not in recipient.content()
    assert list(InboxClient(live_server.url, inbox).messages()) == []


def test_a_reply_key_file_opens_the_conversation(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    inbox, reply, conversation_id, _opener, _link = conversation_setup(live_server)
    answer = seal_conversation(
        "read me from the key file",
        writer=inbox,
        reader_key=reply.public_key,
        role=ROLE_RECIPIENT,
        conversation_id=conversation_id,
        seq=1,
        last_seen=1,
    )
    stored(live_server).add_message(reply.public_key_text, answer)
    reply_key = tmp_path / "reply.key"
    reply_key.write_text(
        dump_key_file(
            KeyFile(reply, live_server.url, ConversationRef(inbox.public_key, conversation_id))
        )
    )
    page = new_page(browser, page_errors)
    # The inbox page knows a reply key file when it sees one and sends it where it belongs.
    page.goto(live_server.url + "/inbox")
    page.get_by_label("Open an inbox from a key file").set_input_files(str(reply_key))
    page.get_by_role("status").filter(has_text="open it on the reply page").wait_for()
    page.goto(live_server.url + "/reply")
    page.get_by_label("Open a conversation from a reply key file").set_input_files(str(reply_key))
    page.get_by_role("status").filter(has_text="1 answer").wait_for()
    assert thread_texts(page) == ["read me from the key file"]
    assert page.locator("#inbox-safety-words").text_content() == format_safety_words(
        inbox.public_key
    )
    # A damaged one is refused with the reason.
    broken = tmp_path / "broken.key"
    broken.write_text(reply_key.read_text().replace('"id": "', '"id": "x'))
    page.get_by_label("Open a conversation from a reply key file").set_input_files(str(broken))
    page.get_by_role("status").filter(has_text="not a usable reply key file").wait_for()


def test_sender_page_asks_for_a_reply_without_jit(jitless_browser, live_server, page_errors):  # noqa: F811 (fixtures from test_browser)
    inbox = generate_keypair()
    link = InboxClient(live_server.url, inbox).register("")["link"]
    sender = new_page(jitless_browser, page_errors)
    sender.goto(link)
    assert sender.evaluate("typeof WebAssembly") == "undefined"
    reply_link = send_with_reply(sender, link, "Без JIT: can you answer?")
    parsed = parse_reply_link(reply_link)
    [message] = list(InboxClient(live_server.url, inbox).messages())
    opened = open_any(b64decode(message.ciphertext), inbox.secret_key)
    assert isinstance(opened, ConversationMessage)
    assert opened.text == "Без JIT: can you answer?"
    assert opened.writer_key == parsed.reply_keypair.public_key
    assert (opened.role, opened.seq, opened.last_seen) == (ROLE_SENDER, 1, 0)
    assert opened.conversation_id == parsed.conversation_id
    # The reply inbox exists, registered by proof of possession of the reply key.
    assert list(InboxClient(live_server.url, parsed.reply_keypair).messages()) == []

    # The sender's side of the conversation works without a JIT too.
    answer = seal_conversation(
        "Да, отвечаю.",
        writer=inbox,
        reader_key=parsed.reply_keypair.public_key,
        role=ROLE_RECIPIENT,
        conversation_id=parsed.conversation_id,
        seq=1,
        last_seen=1,
    )
    stored(live_server).add_message(parsed.reply_keypair.public_key_text, answer)
    open_reply_link(sender, reply_link, 1)
    assert thread_texts(sender) == ["Да, отвечаю."]
    sender.get_by_label("Your answer").fill("Спасибо.")
    sender.get_by_role("button", name="Send answer").click()
    sender.get_by_role("status").filter(has_text="Sent. Only the recipient").wait_for()
    [latest, _] = list(InboxClient(live_server.url, inbox).messages())
    again = open_any(b64decode(latest.ciphertext), inbox.secret_key)
    assert (again.text, again.role, again.seq, again.last_seen) == ("Спасибо.", ROLE_SENDER, 2, 1)


def cli(*args: str, stdin: str | None = None):
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_cli_sender_and_browser_recipient(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    recipient = new_page(browser, page_errors)
    link = create_inbox_in_browser(recipient, live_server.url)
    key_out = str(tmp_path / "reply.key")
    sent = cli("send", link, "--reply", "--key-out", key_out, stdin="Sent from a terminal\n")
    [reply_link] = [line for line in sent.stdout.splitlines() if "/reply#" in line]
    assert REPLY_LINK.fullmatch(reply_link.strip()), sent.stdout

    recipient.goto(live_server.url + "/inbox")
    recipient.locator("article.conversation li.peer").first.wait_for()
    assert thread_texts(recipient, "article.conversation") == ["Sent from a terminal"]
    reply_in_inbox(recipient, "Answered in a browser")

    replies = json.loads(cli("replies", reply_link.strip(), "--json").stdout)
    [answer] = replies["messages"]
    assert answer["text"] == "Answered in a browser"
    assert not answer.get("refused")
    assert (answer["conversation"]["from"], answer["conversation"]["seq"]) == ("recipient", 1)
    # The key file the CLI wrote answers again, and the browser shows it in order.
    cli("reply", "--key-file", key_out, stdin="And a second line from the terminal\n")
    recipient.get_by_role("button", name="Refresh").click()
    recipient.get_by_text("And a second line from the terminal").wait_for()
    assert recipient.locator("article.conversation .flag").count() == 0


def test_browser_sender_and_cli_recipient(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    key_path = str(tmp_path / "inbox.key")
    cli("keygen", "--key-file", key_path)
    link = cli("inbox", "create", "--server", live_server.url, "--key-file", key_path)
    link = link.stdout.strip()
    inbox = load_key_file(Path(key_path).read_bytes()).keypair

    sender = new_page(browser, page_errors)
    reply_link = send_with_reply(sender, link, "Sent from a browser")
    [message] = list(InboxClient(live_server.url, inbox).messages())
    cli(
        "reply",
        "--server",
        live_server.url,
        "--key-file",
        key_path,
        message.id,
        stdin="Answered in a terminal\n",
    )

    reader = new_page(browser, page_errors)
    open_reply_link(reader, reply_link, 1)
    assert thread_texts(reader) == ["Answered in a terminal"]
    reader.get_by_label("Your answer").fill("Thanks, terminal.")
    reader.get_by_role("button", name="Send answer").click()
    reader.get_by_role("status").filter(has_text="Sent. Only the recipient").wait_for()

    read = cli("inbox", "read", "--server", live_server.url, "--key-file", key_path, "--json")
    read = json.loads(read.stdout)
    verified = [  # newest first, as `inbox read` lists
        (entry["text"], entry["conversation"]["from"], entry["conversation"]["seq"])
        for entry in read
        if not entry.get("refused")
    ]
    assert verified == [("Thanks, terminal.", "sender", 2), ("Sent from a browser", "sender", 1)]


def test_reading_tools_cover_conversation_messages(browser, live_server, page_errors, tmp_path):  # noqa: F811 (fixtures from test_browser)
    """Muted phrases fold the sender's messages in a conversation (never the user's own
    replies), and those messages count as unread, with marks kept across reloads."""
    link, key_path = inbox_with(live_server, tmp_path, ["An ordinary note"])
    reply_key = str(tmp_path / "reply.key")
    cli("send", link, "--reply", "--key-out", reply_key, stdin="Can we talk about the budget?\n")
    page = new_page(browser, page_errors)
    open_with_key_file(page, live_server, key_path, 2)
    conversation = page.locator("article.conversation")
    opener = conversation.locator("li.peer").filter(has_text="talk about the budget")
    expect(opener.locator(".badge")).to_have_text("New")
    expect(opener.get_by_role("button", name="Mark read")).to_be_visible()
    expect_unread(page, "2 unread messages.")
    expect(conversation.locator(".conversation-unread")).to_have_text("1 unread message")

    page.get_by_text("Muted words and phrases").click()
    mute(page, "spoiler")
    # The user's own reply is never folded, and has no read mark: it was never unread.
    reply_in_inbox(page, "No SPOILER from me, promise.")
    own = conversation.locator("li.own").filter(has_text="No SPOILER from me")
    expect(own.locator("pre.text")).to_be_visible()
    expect(own.locator(".folded")).to_have_count(0)
    expect(own.get_by_role("button", name="Mark read")).to_have_count(0)

    cli("reply", "--key-file", reply_key, stdin="Here is a spoiler about the budget\n")
    page.get_by_role("button", name="Refresh").click()
    wait_for_messages(page, 3)
    answer = conversation.locator('li.peer[data-seq="2"]')
    expect(answer.locator(".folded")).to_have_text(
        "Folded: contains the muted “spoiler”. Show anyway"
    )
    expect(answer.locator("pre.text")).to_be_hidden()
    expect(own.locator("pre.text")).to_be_visible()
    answer.get_by_role("button", name="Show anyway").click()
    expect(answer.locator("pre.text")).to_have_text("Here is a spoiler about the budget")
    expect(answer.get_by_role("button", name="Show anyway")).to_be_hidden()

    expect_unread(page, "3 unread messages.")
    expect(conversation.locator(".conversation-unread")).to_have_text("2 unread messages")
    opener.get_by_role("button", name="Mark read").click()
    expect_unread(page, "2 unread messages.")
    expect(conversation.locator(".conversation-unread")).to_have_text("1 unread message")
    page.reload()
    wait_for_messages(page, 3)
    expect_unread(page, "2 unread messages.")
    expect(opener.get_by_role("button", name="Mark unread")).to_be_visible()
    expect(opener.locator(".badge")).to_be_hidden()
    expect(answer.locator(".badge")).to_be_visible()
    # Muted across the reload too: folded again until shown anyway.
    expect(answer.locator("pre.text")).to_be_hidden()
    # The ordinary message's mark is its own: it is still unread.
    expect(item(page, "An ordinary note").locator(".badge")).to_be_visible()

    page.get_by_role("button", name="Mark all read").click()
    expect_unread(page, "All messages read.")
    expect(conversation.locator(".conversation-unread")).to_be_hidden()
    page.reload()
    wait_for_messages(page, 3)
    expect_unread(page, "All messages read.")
    expect(conversation.locator("li.peer .badge")).to_have_count(2)
    for badge in conversation.locator("li.peer .badge").all():
        expect(badge).to_be_hidden()
    # The export says so too.
    with page.expect_download() as exported_info:
        page.get_by_role("button", name="Export as JSON").click()
    exported = json.loads(Path(exported_info.value.path()).read_text(encoding="utf-8"))
    [thread] = exported["conversations"]
    assert [(m["from"], m["seq"], m.get("read")) for m in thread["messages"]] == [
        ("sender", 1, True),
        ("you", 1, None),
        ("sender", 2, True),
    ]

    # Deleting a conversation message takes it out of the count.
    answer.get_by_role("button", name="Mark unread").click()
    expect_unread(page, "1 unread message.")
    answer.get_by_role("button", name="Delete message #2").click()
    page.get_by_role("status").filter(has_text="Message deleted").wait_for()
    expect_unread(page, "All messages read.")
