"""Conversations on the command line: `send --reply`, `reply`, `replies`, `fingerprint`,
and the conversation messages that `inbox read` shows (crypto/SPEC.md 4.5, 4.6, 5.8, 5.9).

A sender who asks for replies gets a fresh reply key, registers an inbox for it (proof
of possession and proof of work, like any inbox), and keeps the key as a private reply
link and a reply key file. Every message after that, both ways, is boxed between the
inbox key and the reply key, and every reader checks it in the SPEC's order before
showing it. What this device remembers lives in secretlink.client.conversation_state.
"""

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click

from secretlink.client.conversation_state import DeviceState, state_dir, write_private
from secretlink.client.http import (
    Api,
    CipherMessage,
    ClientError,
    InboxClient,
    Link,
    Refused,
    normalize_server,
    parse_link,
    post_envelope,
)
from secretlink.client.protected_keys import key_file_option, passphrase_fd_option, read_key_file
from secretlink.client.termsafe import Terminal, body, dumps_json, field
from secretlink.crypto import (
    ConversationError,
    Message,
    ReflectionError,
    ReplayError,
    SecretlinkCryptoError,
    WrongConversationError,
    b64decode,
    b64encode,
    generate_keypair,
)
from secretlink.crypto.conversation import (
    MAX_CONVERSATION_TEXT,
    ROLE_NAMES,
    ROLE_RECIPIENT,
    ROLE_SENDER,
    Conversation,
    ConversationMessage,
    Reading,
    accept_message,
    new_conversation_id,
    open_any,
    seal_conversation,
)
from secretlink.crypto.keyfile import ConversationRef, KeyFile, dump_key_file
from secretlink.crypto.keys import KeyPair
from secretlink.crypto.reply_link import build_reply_link, parse_reply_link
from secretlink.crypto.safety_words import format_safety_words

LEAK_WARNING = (
    "warning: whoever has this reply link or the reply key file can read the answers "
    "and write as if they were you. Keep both private; do not share the link."
)

# What a refused message was, for people: the error class decides, never its text.
PROBLEMS = (
    (ReflectionError, "reflected", "one of your own messages sent back to you"),
    (WrongConversationError, "wrong conversation", "it belongs to another conversation"),
    (ReplayError, "replayed", "a copy of a message already read"),
    (ConversationError, "forged", "not written by the other side (forged or tampered with)"),
)


def problem_of(exc: SecretlinkCryptoError) -> tuple[str, str]:
    for error_class, kind, sentence in PROBLEMS:
        if isinstance(exc, error_class):
            return kind, sentence
    return "unreadable", f"cannot decrypt: {exc}"


@dataclass
class Side:
    """One side of its conversations: its key, its role, where its inbox lives."""

    server: str
    keypair: KeyPair
    role: int
    # The sender's reply key talks to one inbox key in one conversation.
    ref: ConversationRef | None = None


def sender_conversation(ref: ConversationRef) -> Conversation:
    return Conversation(ROLE_SENDER, ref.inbox_key, ref.conversation_id, next_seq=2)


def load_state(side: Side) -> DeviceState:
    state = DeviceState.load(side.keypair.public_key)
    if side.ref is not None:
        known = state.book.get(side.ref.inbox_key)
        if known is None or known.conversation_id != side.ref.conversation_id:
            # A reply key file or link used on this device for the first time: the
            # opener (seq 1) was sent from wherever the key was made.
            state.book = {side.ref.inbox_key: sender_conversation(side.ref)}
    return state


def conversation_entry(message: ConversationMessage, reading: Reading) -> dict:
    return {
        "with": b64encode(message.writer_key),
        "id": b64encode(message.conversation_id),
        "from": ROLE_NAMES[message.role],
        "seq": message.seq,
        "last_seen": message.last_seen,
        "gap": list(reading.gap) if reading.gap else None,
        "claims_unsent": reading.claims_unsent,
        "new_conversation": reading.new_conversation,
    }


def open_cipher(
    side: Side, cipher: CipherMessage
) -> Message | ConversationMessage | SecretlinkCryptoError:
    """The message's envelope opened, or the error that says why it could not be."""
    try:
        return open_any(
            b64decode(cipher.ciphertext),
            side.keypair.secret_key,
            side.keypair.public_key,
            attachments=True,
        )
    except SecretlinkCryptoError as exc:
        return exc


def sync(side: Side, client: InboxClient, state: DeviceState) -> list[dict]:
    """Fetch the inbox and read every message oldest first (the order the checks of
    SPEC 5.9 expect); return one entry per message, oldest first, and save the state.
    Each page's envelopes are opened as it arrives, while the next one is fetched
    (InboxClient.messages); the checks then run oldest first."""
    stored = [(cipher, open_cipher(side, cipher)) for cipher in client.messages()]
    stored.reverse()
    entries = []
    for cipher, opened in stored:
        entry: dict = {"id": cipher.id, "received_at": cipher.received_at, "text": None}
        try:
            if isinstance(opened, SecretlinkCryptoError):
                raise opened
            if isinstance(opened, Message):
                if side.role == ROLE_SENDER:
                    # Anyone who knows the reply key (the server does) can seal plain
                    # text to it: never show that as the recipient's answer.
                    entry["refused"] = "unauthenticated"
                    entry["error"] = "a plain message in a reply inbox: not from the recipient"
                else:
                    entry["text"] = opened.text
                    if opened.attachments:  # listed or saved by `inbox read`
                        entry["attachments"] = opened.attachments
            else:
                reading = accept_message(state.book, opened, side.role, reference=cipher.id)
                entry["conversation"] = conversation_entry(opened, reading)
                if opened.writer_key in state.blocked:
                    entry["refused"] = "blocked"
                    entry["error"] = "from a conversation you blocked"
                else:
                    entry["text"] = opened.text
        except SecretlinkCryptoError as exc:
            kind, sentence = problem_of(exc)
            entry["refused"] = kind
            entry["error"] = sentence
        entries.append(entry)
    catch_up(state, entries)
    state.save()
    return entries


def catch_up(state: DeviceState, entries: list[dict]) -> None:
    """Never reuse a seq that the other side has seen (sent from another device, or
    before this device's state was lost): it would take the next one for a replay.
    And name the gap before each message as things stand after the whole inbox was
    read, so that listing again shows the same (a late message fills its gap)."""
    for entry in entries:
        info = entry.get("conversation")
        if info:
            conversation = state.book[b64decode(info["with"])]
            conversation.next_seq = max(conversation.next_seq, info["last_seen"] + 1)
            below = max((seq for seq in conversation.seen if seq < info["seq"]), default=0)
            info["gap"] = [below + 1, info["seq"] - 1] if info["seq"] - 1 > below else None


def missing_ranges(conversation: Conversation) -> list[list[int]]:
    """The peer's seqs below the highest read that were never read: [first, last] each."""
    ranges, expected = [], 1
    for seq in sorted(conversation.seen):
        if seq > expected:
            ranges.append([expected, seq - 1])
        expected = seq + 1
    return ranges


def summary(state: DeviceState, peer: bytes, entries: list[dict]) -> dict:
    """What the whole conversation shows: missing messages, and whether the other side
    has seen this side's latest ones (SPEC 5.9, steps 9 and 10)."""
    conversation = state.book[peer]
    # The most the other side has said it read, in any of its messages still listed.
    seen_by_peer = max(
        (
            entry["conversation"]["last_seen"]
            for entry in entries
            if "conversation" in entry and b64decode(entry["conversation"]["with"]) == peer
        ),
        default=0,
    )
    return {
        "with": b64encode(peer),
        "id": b64encode(conversation.conversation_id),
        "missing": missing_ranges(conversation),
        "you_sent": conversation.highest_sent,
        "seen_by_them": seen_by_peer,
        "unseen_after": seen_by_peer if seen_by_peer < conversation.highest_sent else None,
    }


def seqs(ranges: list[list[int]]) -> str:
    return ", ".join(f"#{a}" if a == b else f"#{a} to #{b}" for a, b in ranges)


def notes(info: dict) -> list[str]:
    """Warnings about one message, printed as `!!! ` lines (no text line starts so)."""
    lines = []
    if info["gap"]:
        lines.append(f"!!! a message is missing before this one: {seqs([info['gap']])}")
    if info["claims_unsent"]:
        lines.append(
            f"!!! it says your message #{info['last_seen']} was seen, which this device never "
            "sent (another device of yours, or tampering)"
        )
    return lines


def summary_lines(outline: dict, other: str) -> list[str]:
    lines = []
    if outline["missing"]:
        lines.append(f"!!! missing from the {other}: {seqs(outline['missing'])}")
    after = outline["unseen_after"]
    if after == 0:
        lines.append(f"!!! the {other} has not seen any of your messages yet")
    elif after is not None:
        lines.append(f"!!! the {other} has not seen your messages after #{after} yet")
    return lines


# ----- reading keys, links and texts -----


def read_text(text: str | None) -> str:
    """The message from standard input, like `secretlink send` (one final line ending
    dropped; blank refused; the limit of a conversation message)."""
    # Imported here: cli.py imports this module to add its commands.
    from secretlink.client.cli import is_blank, strip_one_line_ending

    if text is None:
        if sys.stdin.isatty():
            click.echo("Type the message; end it with Ctrl-D.", err=True)
        text = strip_one_line_ending(sys.stdin.read())
    if is_blank(text):
        raise ClientError("the message is empty or only white space; nothing was sent")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONVERSATION_TEXT:
        raise ClientError(
            f"the message is longer than {MAX_CONVERSATION_TEXT} bytes; nothing was sent"
        )
    return text


def load_key(path: str) -> KeyFile:
    # The one loader of key files: plain or passphrase-protected (SPEC 6a).
    return read_key_file(path)


def is_link(value: str) -> bool:
    return "://" in value


def side_of_key_file(path: str, server: str | None) -> Side:
    loaded = load_key(path)
    server = server or loaded.server
    if not server:
        raise ClientError("say which server holds the inbox: --server https://HOST")
    role = ROLE_SENDER if loaded.conversation else ROLE_RECIPIENT
    return Side(normalize_server(server), loaded.keypair, role, loaded.conversation)


def from_stdin(value: str) -> str:
    """`-` stands for a link read from standard input: a reply link given as an
    argument would show in `ps` and in the shell's history."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        click.echo("Paste the link, then press Enter.", err=True)
    return sys.stdin.readline().strip()


def sender_side(value: str, server: str | None) -> Side:
    """A reply link or a reply key file: the sender's side of one conversation."""
    value = from_stdin(value)
    if is_link(value):
        try:
            link = parse_reply_link(value)
        except SecretlinkCryptoError as exc:
            raise ClientError(f"not a usable reply link: {exc}") from None
        ref = ConversationRef(link.inbox_key, link.conversation_id)
        return Side(link.origin, link.reply_keypair, ROLE_SENDER, ref)
    side = side_of_key_file(value, server)
    if side.ref is None:
        raise ClientError(
            f"{value} is an inbox key file, not a reply key file: read it with "
            "secretlink inbox read"
        )
    return side


def client_for(side: Side) -> InboxClient:
    return InboxClient(side.server, side.keypair)


def send_boxed(side: Side, state: DeviceState, peer: bytes, text: str, keep: bool) -> int:
    """Box `text` to `peer` with the next seq, post it to the peer's inbox; return the seq.

    The new seq is saved before sending: if the sending fails on the way, the other side
    sees a missing message rather than two messages with one seq (a replay). If the server
    refuses (nothing stored), the seq is given back.
    """
    conversation = state.book[peer]
    seq, last_seen = conversation.next_header()
    envelope = seal_conversation(
        text,
        writer=side.keypair,
        reader_key=peer,
        role=side.role,
        conversation_id=conversation.conversation_id,
        seq=seq,
        last_seen=last_seen,
    )
    conversation.sent()
    state.save()
    try:
        post_envelope(Link(side.server, peer), envelope)
    except Refused:
        conversation.next_seq = seq
        state.save()
        raise
    if keep:
        state.keep_sent(peer, seq, text)
        state.save()
    return seq


# ----- send --reply -----


def default_key_path(reply_key: bytes) -> Path:
    return state_dir() / "reply-keys" / f"{b64encode(reply_key)[:16]}.json"


def check_takes_replies(target: Link) -> None:
    """Refuse before any work (a reply key, its inbox, proof of work) when the link's
    inbox could not take the opener: there is none, it is closed, or its owner turned
    replies off (docs/API.md 4.4, 4.10; the sender page hides the choice then)."""
    try:
        info = Api(target.server).call("GET", f"/api/v1/inboxes/{target.public_key_text}")
    except Refused as exc:
        if exc.code == "unknown_inbox":
            raise ClientError(
                "there is no inbox for this link on its server; nothing was sent"
            ) from None
        raise
    info = info if isinstance(info, dict) else {}
    if info.get("status", "open") != "open":
        notice = info.get("notice")
        reason = notice if isinstance(notice, str) and notice else f"this inbox is {info['status']}"
        raise ClientError(f"{reason.rstrip('.')}; nothing was sent")
    # Only an explicit false refuses: the setting is true unless the owner changed it.
    if info.get("accepts_replies") is False:
        raise ClientError(
            "this inbox does not accept replies: send without --reply; nothing was sent"
        )


def send_opener(target: Link, text: str | None, key_out: str | None, keep_sent: bool) -> None:
    """`secretlink send LINK --reply`: the opener, the reply inbox, the reply link."""
    # Before the text is even asked for: nobody should type a message in vain.
    check_takes_replies(target)
    text = read_text(text)
    reply = generate_keypair()  # fresh: independent of the envelope's ephemeral key
    ref = ConversationRef(target.public_key, new_conversation_id())
    path = Path(key_out) if key_out else default_key_path(reply.public_key)
    # The key is saved before anything is sent: answers must never arrive for a key
    # that is lost. Nothing sent means the file goes again.
    try:
        write_private(path, dump_key_file(KeyFile(reply, target.server, ref)), exclusive=True)
    except FileExistsError:
        raise ClientError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ClientError(f"cannot create {path}: {exc.strerror}") from None
    side = Side(target.server, reply, ROLE_SENDER, ref)
    client = client_for(side)
    registered = False
    try:
        client.register("")
        registered = True
        state = DeviceState.load(reply.public_key)
        state.book = {ref.inbox_key: Conversation(ROLE_SENDER, ref.inbox_key, ref.conversation_id)}
        send_boxed(side, state, ref.inbox_key, text, keep_sent)
    except BaseException:
        path.unlink(missing_ok=True)
        if registered:
            remove_reply_inbox(client)
        raise
    link = build_reply_link(target.server, reply.secret_key, ref.inbox_key, ref.conversation_id)
    click.echo(link)
    click.echo(f"sent; your reply key file is {path}", err=True)
    click.echo(LEAK_WARNING, err=True)
    click.echo(
        f"read the answers with: secretlink replies {field(str(path))} (or `secretlink "
        "replies -` and paste the link); compare the recipient's safety words: "
        f"{format_safety_words(target.public_key)}",
        err=True,
    )


def remove_reply_inbox(client: InboxClient) -> None:
    """Best effort: a reply inbox whose opener was never sent would wait for nothing."""
    # The failure that brought us here is the one to report.
    with contextlib.suppress(ClientError):
        client.api.call("DELETE", client.base, token=client.token())


# ----- the commands -----

server_option = click.option("--server", help="Server URL (default: the key file's server).")
keep_option = click.option(
    "--keep-sent",
    is_flag=True,
    help="Keep the text you send on this device (in the conversation state, mode 0600), "
    "so that `secretlink replies` shows your side too. Off by default.",
)


# Message ids are base64url and may start with "-": take such an id as the ID.
@click.command(context_settings={"ignore_unknown_options": True})
@server_option
@key_file_option(
    "Your inbox key file (to answer a sender), or your reply key file (to answer again)."
)
@keep_option
@click.argument("message_id", metavar="[MESSAGE_ID]", required=False)
def reply(server: str | None, key_file: str, keep_sent: bool, message_id: str | None) -> None:
    """Answer a conversation; the text comes from standard input.

    With an inbox key file, MESSAGE_ID is a message in your inbox that carries a reply
    key (`secretlink inbox read` shows them); the answer is boxed for that sender only.
    With a reply key file (from `send --reply`), the answer goes to the recipient of
    that conversation; MESSAGE_ID may name the reply you are answering.
    """
    side = side_of_key_file(key_file, server)
    if side.role == ROLE_RECIPIENT and not message_id:
        raise click.UsageError("say which message to answer: secretlink reply --key-file F ID")
    text = read_text(None)
    state = load_state(side)
    entries = sync(side, client_for(side), state)
    if side.role == ROLE_SENDER:
        peer = side.ref.inbox_key
    if message_id:
        entry = next((e for e in entries if e["id"] == message_id), None)
        if entry is None:
            raise ClientError(f"no message {message_id} in this inbox; nothing was sent")
        if entry.get("refused"):
            raise ClientError(
                f"message {message_id} was refused ({entry['refused']}: {entry['error']}); "
                "nothing was sent"
            )
        if "conversation" not in entry:
            raise ClientError(
                f"message {message_id} carries no reply key: its sender cannot be answered"
            )
        peer = b64decode(entry["conversation"]["with"])
    if peer in state.blocked:
        raise ClientError("you blocked this conversation; unblock it with secretlink block --undo")
    seq = send_boxed(side, state, peer, text, keep_sent)
    click.echo(f"sent as your message #{seq}", err=True)


def merged(entries: list[dict], sent: dict[bytes, list[dict]]) -> list[dict]:
    """Received entries (oldest first) with this device's kept texts woven in: each of
    this side's messages goes before the first answer that says it was seen (its
    `last_seen`), the rest at the end. Times cannot order them: the server's are
    rounded to the minute and this device's clock is its own."""
    own = {
        peer: [
            {"id": None, "received_at": item["at"], "text": item["text"], "mine": True}
            | {"seq": item["seq"], "with": b64encode(peer)}
            for item in sorted(items, key=lambda item: item["seq"])
        ]
        for peer, items in sent.items()
    }
    shown = []
    for entry in entries:
        info = entry.get("conversation")
        if info:
            waiting = own.get(b64decode(info["with"]), [])
            while waiting and waiting[0]["seq"] <= info["last_seen"]:
                shown.append(waiting.pop(0))
        shown.append(entry)
    for waiting in own.values():
        shown.extend(waiting)
    return shown


@click.command()
@click.argument("reply", metavar="REPLY_LINK_OR_KEY_FILE")
@server_option
@passphrase_fd_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (exact, terminal-safe) instead.")
def replies(reply: str, server: str | None, as_json: bool) -> None:
    """Show a conversation you started with `send --reply`, oldest first.

    Give the reply key file, or `-` to paste the reply link on standard input: a link
    given as an argument shows up in `ps` and in your shell history.

    Every answer is checked (SPEC 5.9) before it is shown; refused ones (forged,
    replayed, reflected, from another conversation) are listed as refused, without
    their text, and missing messages are named. Texts are terminal-safe as in
    `inbox read`.
    """
    side = sender_side(reply, server)
    state = load_state(side)
    entries = sync(side, client_for(side), state)
    outline = summary(state, side.ref.inbox_key, entries)
    sent = state.sent.get(side.ref.inbox_key, [])
    if as_json:
        click.echo(
            dumps_json(
                {
                    "server": side.server,
                    "inbox": b64encode(side.ref.inbox_key),
                    "conversation_id": b64encode(side.ref.conversation_id),
                    "messages": entries,
                    "sent": sent,
                    **{k: outline[k] for k in ("missing", "you_sent", "seen_by_them")},
                    "unseen_after": outline["unseen_after"],
                }
            )
        )
        return
    terminal = Terminal.of(sys.stdout)
    inbox_text = b64encode(side.ref.inbox_key)
    click.echo(f"Conversation with {field(side.server, terminal)}/to/{inbox_text}")
    click.echo(f"Their safety words: {format_safety_words(side.ref.inbox_key)}")
    click.echo(f"Your reply key's safety words: {format_safety_words(side.keypair.public_key)}")
    click.echo()
    shown = merged(entries, {side.ref.inbox_key: sent})
    if not entries:
        click.echo("No answers yet.", err=True)
    print_entries(shown, terminal, own="you")
    for line in summary_lines(outline, "recipient"):
        click.echo(line)


def kept_header(entry: dict) -> str:
    """The header of a text this device kept of its own (never from a server)."""
    return f"you, conversation {entry['with'][:8]}…, #{entry['seq']} (kept on this device)"


def print_entries(entries: list[dict], terminal: Terminal, own: str) -> None:
    for entry in entries:
        when = field(entry["received_at"], terminal)
        if entry.get("mine"):
            click.echo(f"--- {when}  {own} #{entry['seq']} (kept on this device)")
            click.echo("\n".join(body(entry["text"], terminal)))
            click.echo()
            continue
        head = f"--- {when}  id {field(entry['id'], terminal)}"
        info = entry.get("conversation")
        if entry.get("refused"):
            click.echo(head)
            click.echo(f"!!! refused, {entry['refused']}: {field(entry['error'], terminal)}")
            click.echo()
            continue
        if info:
            head += f"  {info['from']} #{info['seq']} (verified)"
        click.echo(head)
        for line in notes(info) if info else []:
            click.echo(line)
        click.echo("\n".join(body(entry["text"], terminal)))
        click.echo()


@click.command()
@click.argument("value", metavar="LINK_OR_KEY_FILE")
@passphrase_fd_option
def fingerprint(value: str) -> None:
    """Print the safety words of a link's key, a reply link's keys, or a key file's.

    Compare them with the other side over another channel (a call, in person): equal
    words mean you both hold the same key. They are computed here, from what you give,
    never from anything a server says. `-` reads the link from standard input.
    """
    value = from_stdin(value)
    if is_link(value):
        if parse_path(value) == "/reply":
            side = sender_side(value, None)
            click.echo(f"inbox:     {format_safety_words(side.ref.inbox_key)}")
            click.echo(f"reply key: {format_safety_words(side.keypair.public_key)}")
            return
        click.echo(format_safety_words(parse_link(value).public_key))
        return
    loaded = load_key(value)
    if loaded.conversation:
        click.echo(f"inbox:     {format_safety_words(loaded.conversation.inbox_key)}")
        click.echo(f"reply key: {format_safety_words(loaded.keypair.public_key)}")
        return
    click.echo(format_safety_words(loaded.keypair.public_key))


def parse_path(url: str) -> str:
    return urlsplit(url.strip()).path


# ----- inbox read -----


def inbox_entries(client: InboxClient, server: str) -> tuple[list[dict], list[str]]:
    """The recipient's inbox, newest first, each conversation message checked; and the
    lines about whole conversations (missing messages, unseen answers). Messages of
    blocked conversations are deleted from the server, not shown."""
    side = Side(server, client.keypair, ROLE_RECIPIENT)
    state = load_state(side)
    entries = sync(side, client, state)
    removed = delete_blocked(client, entries)
    entries = [entry for entry in entries if entry["id"] not in removed]
    lines = [f"deleted {len(removed)} new messages of blocked conversations"] if removed else []
    for peer in state.book:
        if peer in state.blocked:
            continue
        outline = summary(state, peer, entries)
        short = b64encode(peer)[:8]
        for line in summary_lines(outline, "sender"):
            lines.append(line.replace("!!! ", f"!!! conversation {short}…: ", 1))
    entries.reverse()
    return entries, lines


def with_kept_texts(client: InboxClient, entries: list[dict]) -> list[dict]:
    """The inbox (newest first) with the answers this device kept (--keep-sent)."""
    state = DeviceState.load(client.keypair.public_key)
    if not any(state.sent.values()):
        return entries
    return list(reversed(merged(list(reversed(entries)), state.sent)))


def delete_blocked(client: InboxClient, entries: list[dict], peer: str | None = None) -> set[str]:
    """Delete from the server the messages of blocked conversations (or, with `peer`, of
    that conversation); return their ids. One that cannot be deleted stays listed."""
    removed = set()
    for entry in entries:
        info = entry.get("conversation")
        if entry.get("refused") == "blocked" or (info and peer and info["with"] == peer):
            try:
                client.delete(entry["id"])
            except ClientError:
                continue
            removed.add(entry["id"])
    return removed


@click.command(context_settings={"ignore_unknown_options": True})
@server_option
@key_file_option("Your inbox key file.")
@click.option("--undo", is_flag=True, help="Unblock the conversation instead.")
@click.argument("which", metavar="MESSAGE_ID_OR_CONVERSATION")
def block(server: str | None, key_file: str, undo: bool, which: str) -> None:
    """Block a conversation (recipient side): give one of its messages' id, or the
    conversation's key as `inbox read` shows it (its first 8 characters will do).

    Its messages are deleted from the server, now and whenever `inbox read` finds new
    ones, and it can no longer be answered. The server cannot refuse them for you: it
    cannot tell which conversation a message belongs to. The block is kept on this
    device only.
    """
    side = side_of_key_file(key_file, server)
    if side.role != ROLE_RECIPIENT:
        raise ClientError("blocking is for the recipient's inbox key file, not a reply key file")
    state = load_state(side)
    client = client_for(side)
    entries = sync(side, client, state)
    peer = conversation_named(which, entries, state)
    if undo:
        state.blocked.discard(b64decode(peer))
        state.save()
        click.echo(f"unblocked conversation {peer}: its new messages show again", err=True)
        return
    state.blocked.add(b64decode(peer))
    state.save()
    removed = delete_blocked(client, entries, peer)
    click.echo(
        f"blocked conversation {peer}; deleted {len(removed)} of its messages from the server",
        err=True,
    )


def conversation_named(which: str, entries: list[dict], state: DeviceState) -> str:
    """The peer key text of the conversation that `which` names: a message's id, or a
    known conversation's key or its first 8 or more characters."""
    entry = next((e for e in entries if e["id"] == which and "conversation" in e), None)
    if entry is not None:
        return entry["conversation"]["with"]
    known = [b64encode(peer) for peer in state.book]
    matches = [key for key in known if len(which) >= 8 and key.startswith(which.rstrip("…"))]
    if len(matches) != 1:
        raise ClientError(f"no conversation message or conversation {which} in this inbox")
    return matches[0]


def warning(entry: dict) -> str:
    """The line for standard error about a message that is not shown."""
    message_id = field(entry["id"])
    if entry["refused"] == "unreadable":
        reason = entry["error"].removeprefix("cannot decrypt: ")
        return f"warning: message {message_id} cannot be decrypted: {field(reason)}"
    return f"warning: message {message_id} is refused ({entry['refused']}): {field(entry['error'])}"


def describe(entry: dict, terminal: Terminal) -> list[str]:
    """Header lines of an inbox entry beyond `--- TIME  id ID`: a conversation message's
    sender and seq, its flags, or why it was refused."""
    if entry.get("refused") == "unreadable":
        return [f"[{field(entry['error'], terminal)}]"]
    if entry.get("refused"):
        return [f"!!! refused, {entry['refused']}: {field(entry['error'], terminal)}"]
    info = entry.get("conversation")
    if not info:
        return []
    start = " (starts a conversation)" if info["new_conversation"] else ""
    line = (
        f"=== conversation {info['with'][:8]}…, {info['from']} #{info['seq']} (verified){start}; "
        "answer with: secretlink reply --key-file KEY_FILE " + field(entry["id"], terminal)
    )
    return [line, *notes(info)]
