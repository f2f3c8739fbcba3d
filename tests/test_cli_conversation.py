"""Conversations on the command line against a real server: `send --reply`, `reply`,
`replies`, `fingerprint`, and what `inbox read` shows of them (crypto/SPEC.md 5.8, 5.9)."""

import json
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy
from click.testing import CliRunner

from secretlink.client import http
from secretlink.client.cli import main
from secretlink.client.http import Link, post_envelope
from secretlink.crypto import b64decode, generate_keypair, open_envelope, seal
from secretlink.crypto.conversation import ROLE_SENDER, conversation_field
from secretlink.crypto.envelope import Message
from secretlink.crypto.keyfile import load_key_file
from secretlink.crypto.reply_link import parse_reply_link
from secretlink.crypto.safety_words import format_safety_words


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def ok(*args: str, stdin: str | None = None):
    result = run(*args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def inbox_key(tmp_path, live_server) -> str:
    path = str(tmp_path / "inbox.key")
    ok("keygen", "--key-file", path, "--server", live_server.url)
    return path


@pytest.fixture
def link(live_server, inbox_key) -> str:
    return ok(
        "inbox", "create", "--server", live_server.url, "--key-file", inbox_key
    ).stdout.strip()


@pytest.fixture
def opened(link, tmp_path) -> dict:
    """A conversation opened with `send --reply`: its reply link and reply key file."""
    key_out = tmp_path / "reply.key"
    result = ok("send", link, "--reply", "--key-out", str(key_out), stdin="Can we talk?\n")
    return {"reply_link": result.stdout.strip(), "key_file": str(key_out), "stderr": result.stderr}


def inbox(server: str, key_file: str) -> list[dict]:
    return json.loads(
        ok("inbox", "read", "--server", server, "--key-file", key_file, "--json").stdout
    )


def conversation_of(server: str, reply: str) -> dict:
    return json.loads(ok("replies", reply, "--json").stdout)


def test_send_reply_prints_a_private_link_and_writes_a_private_key_file(opened, link, live_server):
    reply_link = parse_reply_link(opened["reply_link"])
    assert reply_link.origin == live_server.url
    assert opened["reply_link"].startswith(f"{live_server.url}/reply#")
    key_file = load_key_file(Path(opened["key_file"]).read_bytes())
    assert key_file.keypair == reply_link.reply_keypair
    assert key_file.server == live_server.url
    assert key_file.conversation.inbox_key == reply_link.inbox_key
    assert key_file.conversation.conversation_id == reply_link.conversation_id
    assert stat.S_IMODE(os.stat(opened["key_file"]).st_mode) == 0o600
    assert "can read the answers and write as if they were you" in opened["stderr"]
    assert opened["key_file"] in opened["stderr"]


def test_round_trip_both_ways(opened, live_server, inbox_key):
    server = live_server.url
    (message,) = inbox(server, inbox_key)
    assert message["text"] == "Can we talk?"
    assert message["conversation"]["from"] == "sender"
    assert message["conversation"]["seq"] == 1
    assert message["conversation"]["new_conversation"]

    ok("reply", "--key-file", inbox_key, message["id"], stdin="Yes. What happened?\n")
    ok("reply", "--key-file", inbox_key, message["id"], stdin="Are you still there?")

    for reply in (opened["reply_link"], opened["key_file"], "-"):
        stdin = opened["reply_link"] + "\n" if reply == "-" else None
        seen = json.loads(ok("replies", reply, "--json", stdin=stdin).stdout)
        answers = [m for m in seen["messages"] if "conversation" in m]
        assert [(m["text"], m["conversation"]["seq"]) for m in answers] == [
            ("Yes. What happened?", 1),
            ("Are you still there?", 2),
        ]
        assert all(m["conversation"]["from"] == "recipient" for m in answers)
        assert all(m["conversation"]["last_seen"] == 1 for m in answers)
        assert seen["missing"] == [] and seen["unseen_after"] is None

    ok("reply", "--key-file", opened["key_file"], stdin="It started last week.")
    newest = inbox(server, inbox_key)[0]
    assert newest["text"] == "It started last week."
    assert (newest["conversation"]["seq"], newest["conversation"]["last_seen"]) == (2, 2)

    text = ok("replies", opened["reply_link"]).stdout
    assert "recipient #1 (verified)\n| Yes. What happened?\n" in text
    assert "recipient #2 (verified)\n| Are you still there?\n" in text
    assert format_safety_words(b64decode(link_key(opened))) in text


def link_key(opened: dict) -> str:
    return opened["reply_link"].split("#", 1)[1].split(".")[1]


def test_sent_texts_are_kept_only_when_asked(link, live_server, inbox_key, tmp_path):
    key_out = str(tmp_path / "kept.key")
    ok("send", link, "--reply", "--keep-sent", "--key-out", key_out, stdin="first words")
    (message,) = inbox(live_server.url, inbox_key)
    # Not a word alone: the safety words above come from the BIP39 list ("answer").
    ok("reply", "--key-file", inbox_key, message["id"], stdin="Answer #42")
    shown = ok("replies", key_out).stdout
    assert "you #1 (kept on this device)\n| first words\n" in shown.replace("\r", "")
    assert shown.index("first words") < shown.index("Answer #42")
    state_files = list((tmp_path / "xdg-state" / "secretlink" / "conversations").iterdir())
    assert state_files and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in state_files)


def test_a_forged_opener_is_refused(link, live_server, inbox_key, opened):
    """The server knows the reply key's public half; an opener boxed without its secret
    half is listed as forged, shows no text, and cannot be answered."""
    inbox_public = parse_reply_link(opened["reply_link"]).inbox_key
    reply_public = parse_reply_link(opened["reply_link"]).reply_keypair.public_key
    value = conversation_field(
        "send your answers to me",
        writer=generate_keypair(),
        reader_key=inbox_public,
        role=ROLE_SENDER,
        conversation_id=bytes(16),
        seq=1,
        last_seen=0,
    )
    forged = seal(Message("", reply_public + value[32:]), inbox_public)
    post_envelope(Link(live_server.url, inbox_public), forged)
    newest = inbox(live_server.url, inbox_key)[0]
    assert newest["refused"] == "forged" and newest["text"] is None
    result = run("reply", "--key-file", inbox_key, newest["id"], stdin="hello")
    assert result.exit_code == 1 and "refused (forged" in result.stderr
    shown = ok("inbox", "read", "--server", live_server.url, "--key-file", inbox_key).stdout
    assert "!!! refused, forged" in shown and "send your answers to me" not in shown


def test_a_replayed_message_is_flagged_and_not_shown_twice(opened, live_server, inbox_key):
    key = load_key_file(Path(inbox_key).read_bytes()).keypair
    (message,) = inbox(live_server.url, inbox_key)
    ok("reply", "--key-file", inbox_key, message["id"], stdin="only once")
    # The server stores a copy of the reply under a new id.
    reply_key = parse_reply_link(opened["reply_link"]).reply_keypair
    from secretlink.client.http import InboxClient

    stored = list(InboxClient(live_server.url, reply_key).messages())
    post_envelope(Link(live_server.url, reply_key.public_key), b64decode(stored[0].ciphertext))
    seen = conversation_of(live_server.url, opened["reply_link"])["messages"]
    assert [m.get("refused") for m in seen] == [None, "replayed"]
    assert [m["text"] for m in seen] == ["only once", None]
    # Listing again shows the first as before, not as a replay of itself.
    again = conversation_of(live_server.url, opened["reply_link"])["messages"]
    assert [m.get("refused") for m in again] == [None, "replayed"]
    assert key  # the recipient's key is untouched


def test_a_reflected_message_and_plain_text_in_a_reply_inbox_are_refused(
    opened, live_server, inbox_key
):
    key = load_key_file(Path(inbox_key).read_bytes()).keypair
    (message,) = inbox(live_server.url, inbox_key)
    from secretlink.client.http import InboxClient

    (cipher,) = InboxClient(live_server.url, key).messages()
    value = open_envelope(b64decode(cipher.ciphertext), key.secret_key, conversations=True)
    reply = parse_reply_link(opened["reply_link"]).reply_keypair
    # The sender's own opener, turned around so that its box opens for the sender.
    reflected = seal(Message("", key.public_key + value.conversation[32:]), reply.public_key)
    post_envelope(Link(live_server.url, reply.public_key), reflected)
    post_envelope(
        Link(live_server.url, reply.public_key), seal("I am the recipient", reply.public_key)
    )
    seen = conversation_of(live_server.url, opened["reply_link"])["messages"]
    assert [m["refused"] for m in seen] == ["reflected", "unauthenticated"]
    assert all(m["text"] is None for m in seen)
    assert message["conversation"]["seq"] == 1


def test_a_dropped_answer_is_named(opened, live_server, inbox_key):
    (message,) = inbox(live_server.url, inbox_key)
    for text in ("one", "two", "three"):
        ok("reply", "--key-file", inbox_key, message["id"], stdin=text)
    reply_key_file = opened["key_file"]
    two = next(
        m
        for m in conversation_of(live_server.url, reply_key_file)["messages"]
        if m["text"] == "two"
    )
    # A fresh device (no state) reads after the server dropped #2.
    ok("inbox", "delete", "--key-file", reply_key_file, two["id"])
    for state in Path(os.environ["XDG_STATE_HOME"]).rglob("conversations/*.json"):
        state.unlink()
    seen = conversation_of(live_server.url, reply_key_file)
    assert seen["missing"] == [[2, 2]]
    flagged = next(m for m in seen["messages"] if m["text"] == "three")
    assert flagged["conversation"]["gap"] == [2, 2]
    assert "!!! a message is missing before this one: #2" in ok("replies", reply_key_file).stdout


def test_the_recipient_sees_that_the_sender_has_not_read_the_answers(
    opened, live_server, inbox_key
):
    (message,) = inbox(live_server.url, inbox_key)
    ok("reply", "--key-file", inbox_key, message["id"], stdin="answer one")
    shown = ok("inbox", "read", "--server", live_server.url, "--key-file", inbox_key).stdout
    assert "has not seen any of your messages yet" in shown
    ok("replies", opened["key_file"])
    ok("reply", "--key-file", opened["key_file"], stdin="read it")
    shown = ok("inbox", "read", "--server", live_server.url, "--key-file", inbox_key).stdout
    assert "has not seen" not in shown


def test_fingerprint_of_a_link_a_reply_link_and_key_files(opened, link, inbox_key):
    inbox_words = format_safety_words(
        load_key_file(Path(inbox_key).read_bytes()).keypair.public_key
    )
    reply_words = format_safety_words(
        load_key_file(Path(opened["key_file"]).read_bytes()).keypair.public_key
    )
    assert ok("fingerprint", link).stdout == inbox_words + "\n"
    assert ok("fingerprint", "-", stdin=link + "\n").stdout == inbox_words + "\n"
    assert ok("fingerprint", inbox_key).stdout == inbox_words + "\n"
    for value in (opened["reply_link"], opened["key_file"]):
        assert ok("fingerprint", value).stdout == (
            f"inbox:     {inbox_words}\nreply key: {reply_words}\n"
        )


def test_mistakes_fail_in_one_line_and_send_nothing(opened, link, live_server, inbox_key, tmp_path):
    existing = tmp_path / "exists.key"
    existing.write_text("mine")
    result = run("send", link, "--reply", "--key-out", str(existing), stdin="hi")
    assert result.exit_code == 1 and "refusing to overwrite" in result.stderr
    assert existing.read_text() == "mine"
    assert len(inbox(live_server.url, inbox_key)) == 1  # only the fixture's opener

    result = run("replies", inbox_key)
    assert result.exit_code == 1 and "not a reply key file" in result.stderr
    broken = opened["reply_link"][:-3]
    result = run("replies", broken)
    assert result.exit_code == 1 and "not a usable reply link" in result.stderr
    result = run("reply", "--key-file", inbox_key, stdin="hi")
    assert result.exit_code == 2  # which message is a usage mistake
    result = run("reply", "--key-file", inbox_key, "no-such-id", stdin="hi")
    assert result.exit_code == 1 and "no message no-such-id" in result.stderr

    ok("send", link, "a plain message")
    plain = next(m for m in inbox(live_server.url, inbox_key) if m["text"] == "a plain message")
    result = run("reply", "--key-file", inbox_key, plain["id"], stdin="hi")
    assert result.exit_code == 1 and "carries no reply key" in result.stderr
    assert run("send", link, "--key-out", "x", stdin="hi").exit_code == 2


def test_a_reply_link_works_from_a_new_device_without_reusing_a_seq(opened, live_server, inbox_key):
    (message,) = inbox(live_server.url, inbox_key)
    ok("reply", "--key-file", inbox_key, message["id"], stdin="answer")
    for state in Path(os.environ["XDG_STATE_HOME"]).rglob("conversations/*.json"):
        if (
            load_key_file(Path(opened["key_file"]).read_bytes()).keypair.public_key_text
            in state.name
        ):
            state.unlink()  # the sender's device forgets; the recipient's remembers
    ok("reply", "--key-file", opened["key_file"], stdin="from my other device")
    newest = inbox(live_server.url, inbox_key)[0]
    assert newest["text"] == "from my other device"
    assert newest["conversation"]["seq"] == 2 and "refused" not in newest


def test_the_recipient_can_keep_its_answers_and_sees_them_in_order(opened, live_server, inbox_key):
    (message,) = inbox(live_server.url, inbox_key)
    ok("reply", "--keep-sent", "--key-file", inbox_key, message["id"], stdin="my kept answer")
    ok("reply", "--key-file", opened["key_file"], stdin="thanks for it")
    shown = ok("inbox", "read", "--key-file", inbox_key).stdout
    assert "(kept on this device)\n| my kept answer\n" in shown
    # Newest first: the sender's thanks, then the answer it saw, then the opener.
    assert (
        shown.index("thanks for it") < shown.index("my kept answer") < shown.index("Can we talk?")
    )
    # Kept texts are this device's: the JSON list holds only what the server stores.
    assert all(m["id"] for m in inbox(live_server.url, inbox_key))


def test_send_reply_to_a_link_without_an_inbox_leaves_nothing_behind(live_server, tmp_path):
    nowhere = f"{live_server.url}/to/{generate_keypair().public_key_text}"
    key_out = tmp_path / "reply.key"
    result = run("send", nowhere, "--reply", "--key-out", str(key_out), stdin="hello?")
    assert result.exit_code == 1 and "no inbox for this link" in result.stderr
    assert not key_out.exists()


def forbid_work(monkeypatch) -> None:
    """From here on, registering an inbox or solving a puzzle fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("work was done for a message that cannot be sent")

    monkeypatch.setattr(http, "solve", refuse)
    monkeypatch.setattr(http.InboxClient, "register", refuse)


def inbox_count(live_server) -> int:
    engine = live_server.app.extensions["secretlink.storage"].engine
    with engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT COUNT(*) FROM inboxes")).scalar_one()


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("--no-replies", "this inbox does not accept replies: send without --reply"),
        ("--pause", "Its owner has paused it"),
    ],
    ids=["replies off", "paused"],
)
def test_send_reply_is_refused_before_any_work_when_the_inbox_cannot_take_it(
    link, live_server, inbox_key, tmp_path, monkeypatch, setting, said
):
    ok("inbox", "settings", "--key-file", inbox_key, setting)
    forbid_work(monkeypatch)
    key_out = tmp_path / "reply.key"
    result = run("send", link, "--reply", "--key-out", str(key_out), stdin="Can we talk?")
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert said in result.stderr and "nothing was sent" in result.stderr
    assert "Traceback" not in result.stderr
    assert not key_out.exists()
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "secretlink" / "reply-keys").exists()
    assert inbox_count(live_server) == 1  # no reply inbox was registered
    assert inbox(live_server.url, inbox_key) == []  # reading needs no work


def test_without_replies_plain_messages_still_go_and_replies_come_back_on(
    link, live_server, inbox_key, tmp_path
):
    ok("inbox", "settings", "--key-file", inbox_key, "--no-replies")
    ok("send", link, "no answer needed")
    ok("inbox", "settings", "--key-file", inbox_key, "--replies")
    ok("send", link, "--reply", "--key-out", str(tmp_path / "reply.key"), stdin="Can we talk?")
    texts = [message["text"] for message in inbox(live_server.url, inbox_key)]
    assert texts == ["Can we talk?", "no answer needed"]


def test_inbox_read_points_a_reply_key_file_to_replies(opened):
    result = run("inbox", "read", "--key-file", opened["key_file"])
    assert result.exit_code == 1 and "secretlink replies" in result.stderr


def test_a_text_too_long_for_a_conversation_is_refused_before_anything_is_made(link, tmp_path):
    key_out = tmp_path / "reply.key"
    result = run("send", link, "--reply", "--key-out", str(key_out), stdin="x" * 65429)
    assert result.exit_code == 1 and "longer than 65428 bytes" in result.stderr
    assert not key_out.exists()


def test_the_recipient_can_block_a_conversation(opened, link, live_server, inbox_key):
    (message,) = inbox(live_server.url, inbox_key)
    ok("send", link, "a plain message stays")
    result = ok("block", "--key-file", inbox_key, message["id"])
    assert "deleted 1 of its messages" in result.stderr
    assert [m["text"] for m in inbox(live_server.url, inbox_key)] == ["a plain message stays"]
    # What the sender writes next is deleted unread; the conversation cannot be answered.
    ok("reply", "--key-file", opened["key_file"], stdin="are you there?")
    shown = ok("inbox", "read", "--key-file", inbox_key)
    assert "are you there?" not in shown.stdout
    assert "deleted 1 new messages of blocked conversations" in shown.stdout
    assert [m["text"] for m in inbox(live_server.url, inbox_key)] == ["a plain message stays"]
    conversation = message["conversation"]["with"]
    result = run("reply", "--key-file", inbox_key, message["id"], stdin="x")
    assert result.exit_code == 1  # the message is gone; nothing is sent
    # Unblocked by the key `inbox read` showed (its first characters).
    ok("block", "--undo", "--key-file", inbox_key, conversation[:8])
    ok("reply", "--key-file", opened["key_file"], stdin="hello again")
    newest = inbox(live_server.url, inbox_key)[0]
    assert newest["text"] == "hello again" and newest["conversation"]["seq"] == 3
