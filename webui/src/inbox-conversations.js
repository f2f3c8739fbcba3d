// Conversations in the inbox (the recipient's side, SPEC 5.8 and 5.9): messages that
// carry a conversation field are read with its checks, grouped by the sender's reply
// key, shown with Reply (sealed to the reply key, boxed from the inbox key, posted to
// the reply inbox) and Block. Own replies, what was read and the blocks are kept in
// this browser only: the server cannot tell conversations apart, so a block is this
// device deleting a blocked conversation's new messages unread when the inbox loads.

import {
  ROLE_RECIPIENT,
  ReflectionError,
  newConversationState,
  nextMessage,
  openConversationPayload,
  sealConversation,
} from "../../crypto/conversation.js";
import { SecretlinkCryptoError, b64decode, b64encode, openEnvelope } from "../../crypto/secretlink.js";
import { forgetRecord, listRecords, recipientKey, saveRecord } from "./conversation-store.js";
import { postEnvelope, postErrorText } from "./post.js";
import { conversationReadId, conversationsShown, decorateMessage, isRead, messageRemoved } from "./reading.js";
import { showSafetyWords } from "./safety.js";
import { accept, catchUp, inWrittenOrder, refusalText, renderThread } from "./thread.js";
import { $, element, say } from "./ui.js";
import { keepFocus, moveFocus } from "./focus.js";
import { t } from "./i18n.js";

let shown = null; // { inbox, messages }: what the last view was made from
let exported = []; // the conversations shown, as the export writes them (export.js)
// The payloads of ordinary messages, opened here already: the message list shows
// them without a second X25519 (slow without a JIT).
const plainPayloads = new WeakMap();
export const openedPayload = (message) => plainPayloads.get(message);

function newRecord(inboxPublicKey, opened) {
  return {
    kind: "recipient",
    inboxPublicKey,
    replyPublicKey: b64encode(opened.writerPublicKey),
    state: newConversationState({
      ownRole: ROLE_RECIPIENT,
      peerPublicKey: opened.writerPublicKey,
      conversationId: opened.conversationId,
    }),
    sentTexts: {},
    blocked: false,
  };
}

/**
 * Shows the conversations among `messages` (newest first, as listed) and returns
 * { plain, deletedUnread, readIds }: the others, for the ordinary message list, how
 * many messages of blocked conversations were deleted from the server unread, and the
 * read ids (reading.js) of the other side's messages shown in the conversations.
 */
export async function showConversations(inbox, messages, stillShown = () => true) {
  const records = new Map(
    (await listRecords(`recipient:${inbox.publicKey}:`)).map((record) => [record.replyPublicKey, record]),
  );
  const plain = [];
  const refused = [];
  const entries = new Map(); // reply key -> entries
  const blockedIds = [];
  for (const message of messages.slice().reverse()) {
    let payload;
    try {
      // Attachments too: the message list shows a plain message's files (a conversation
      // message cannot carry any: decodePayload refuses both fields together).
      payload = openEnvelope(b64decode(message.ciphertext), inbox.keyPair.secretKey,
        { conversations: true, attachments: true });
    } catch (err) {
      if (!(err instanceof SecretlinkCryptoError)) throw err;
      plain.unshift(message); // the message list says it could not be decrypted
      continue;
    }
    // A blocked conversation's message is deleted unread: its box is not even opened.
    const writer = payload.conversation?.length >= 32 ? b64encode(payload.conversation.subarray(0, 32)) : null;
    if (writer !== null && records.get(writer)?.blocked) {
      blockedIds.push(message.id);
      continue;
    }
    let conversation;
    try {
      conversation = openConversationPayload(payload, inbox.keyPair.secretKey);
      if (conversation && conversation.role === ROLE_RECIPIENT) throw new ReflectionError("reflection");
    } catch (err) {
      if (!(err instanceof SecretlinkCryptoError)) throw err;
      refused.push({ message, refused: refusalText(err) });
      continue;
    }
    if (!conversation) {
      plainPayloads.set(message, payload);
      plain.unshift(message);
      continue;
    }
    const peer = b64encode(conversation.writerPublicKey);
    const known = records.get(peer);
    const record = known ?? newRecord(inbox.publicKey, conversation);
    const entry = accept(record, { message, opened: conversation });
    if (!known && entry.refused) {
      refused.push(entry); // no conversation starts with a refused message
      continue;
    }
    records.set(peer, record);
    if (!entries.has(peer)) entries.set(peer, []);
    entries.get(peer).push(entry);
  }
  for (const id of blockedIds) await deleteQuietly(inbox, id);
  for (const [peer, record] of records) {
    if (entries.has(peer)) catchUp(record, entries.get(peer));
    if (entries.has(peer) || record.blocked) await saveRecord(recipientKey(inbox.publicKey, peer), record);
  }
  // Another inbox opened meanwhile: its own refresh shows its conversations.
  if (!stillShown()) return { plain, deletedUnread: blockedIds.length, readIds: [] };
  shown = { inbox, messages };
  const readIds = render(inbox, records, entries, refused);
  return { plain, deletedUnread: blockedIds.length, readIds };
}

/**
 * The conversations on show, for the export: each with the sender's reply key and
 * every message read in it (theirs, accepted by the checks) or kept on this device
 * (yours), in the order the two sides wrote them (as the page shows them). Refused messages are not exported: their text
 * was never shown. The sender's messages say whether they are marked read now.
 */
export function conversationsForExport() {
  return exported.map((conversation) => ({
    ...conversation,
    messages: conversation.messages.map((message) => message.from === "sender"
      ? { ...message, read: isRead(conversationReadId(conversation.reply_public_key, message.seq)) }
      : message),
  }));
}

function exportedConversation(record, entries) {
  const theirs = entries
    .filter((entry) => entry.opened)
    .map(({ message, opened }) => ({
      from: "sender",
      seq: opened.seq,
      last_seen: opened.lastSeen,
      id: message.id,
      received_at: message.received_at,
      text: opened.text,
    }));
  const yours = Object.entries(record.sentTexts ?? {}).map(([seq, kept]) => ({
    from: "you",
    seq: Number(seq),
    sent_at: kept.at,
    text: kept.text,
  }));
  const order = (message) => ({ own: message.from === "you", seq: message.seq, lastSeen: message.last_seen });
  const messages = [...theirs, ...yours].sort((a, b) => inWrittenOrder(order(a), order(b)));
  return { reply_public_key: record.replyPublicKey, messages };
}

async function deleteQuietly(inbox, id) {
  try {
    await inbox.session.deleteMessage(id);
  } catch {
    // Deleted on the next load instead.
  }
}

// Draws the conversations; returns the read ids of the other side's messages shown.
function render(inbox, records, entries, refused) {
  const views = [];
  const readIds = [];
  exported = [];
  for (const [peer, record] of records) {
    if (record.blocked || (!entries.has(peer) && !Object.keys(record.sentTexts).length)) continue;
    views.push(conversationView(inbox, record, entries.get(peer) ?? []));
    exported.push(exportedConversation(record, entries.get(peer) ?? []));
    for (const entry of entries.get(peer) ?? []) {
      if (entry.opened) readIds.push(conversationReadId(record.replyPublicKey, entry.opened.seq));
    }
  }
  $("#conversations").replaceChildren(...views);
  conversationsShown(readIds);
  $("#refused").replaceChildren(...refused.map(({ message, refused: reason }) => {
    const item = element("li", { class: "refused", "data-id": message.id });
    item.append(element("p", { class: "flag", "data-kind": "error" }, reason));
    const remove = element("button", { type: "button", class: "secondary delete",
      "aria-label": t("Delete this refused message") }, t("Delete"));
    remove.addEventListener("click", () => deleteFromView(inbox, message, item));
    item.append(remove);
    return item;
  }));
  $("#refused-area").hidden = refused.length === 0;
  return readIds;
}

function conversationView(inbox, record, entries) {
  const view = element("article", { class: "conversation", "data-reply-key": record.replyPublicKey });
  const words = element("strong", { class: "words", dir: "ltr", translate: "no" });
  showSafetyWords(words, record.replyPublicKey);
  const about = element("p", {}, t("Conversation with an anonymous sender. Safety words of their reply key:"));
  about.append(" ", words);
  const list = element("ol", { class: "messages thread" });
  renderThread(list, record, entries, {
    onDelete: (message, item) => deleteFromView(inbox, message, item),
    // The reading tools apply to the sender's messages as to ordinary ones: a muted
    // phrase folds them, and they count as unread until read.
    decorate: (item, { opened }) => decorateMessage(item, opened.text, conversationReadId(record.replyPublicKey, opened.seq)),
  });
  const form = element("form", { class: "reply-form" });
  const id = `reply-${record.replyPublicKey.slice(0, 12)}`;
  const textarea = element("textarea", { id, rows: "4", required: "" });
  const send = element("button", { type: "submit" }, t("Reply"));
  textarea.setAttribute("dir", "auto");
  form.append(element("label", { for: id },
    t("Your reply (encrypted to this sender's reply key; a copy is kept on this device only)")), textarea, send);
  form.addEventListener("submit", (event) => reply(event, inbox, record, textarea, send));
  const block = element("button", { type: "button", class: "danger" }, t("Block conversation"));
  block.addEventListener("click", () => blockConversation(inbox, record, entries));
  const unread = element("p", { class: "conversation-unread" }); // reading.js keeps it up to date
  unread.hidden = true;
  view.append(element("h3", {}, t("Conversation")), unread, about, list, form, block);
  return view;
}

async function reply(event, inbox, record, textarea, button) {
  event.preventDefault();
  const text = textarea.value;
  if (text.trim() === "") {
    say(t("Write a reply first."), "error");
    return;
  }
  button.disabled = true;
  say(t("Encrypting and sending your reply…"));
  const before = structuredClone(record.state);
  try {
    const message = nextMessage(record.state, text);
    const envelope = sealConversation(message, inbox.keyPair.secretKey, b64decode(record.replyPublicKey));
    await postEnvelope(record.replyPublicKey, b64encode(envelope), (note) => say(note));
    record.sentTexts[message.seq] = { text, at: new Date().toISOString() };
    await saveRecord(recipientKey(inbox.publicKey, record.replyPublicKey), record);
    if (shown) await showConversations(shown.inbox, shown.messages);
    say(t("Reply sent. Only the sender, with their reply link, can read it."), "success");
    moveFocus($("#status")); // the conversation was drawn again: its form is new
  } catch (err) {
    record.state = before;
    say(err.status !== undefined ? postErrorText(err) : t("Not sent: {error}", { error: err.message }), "error");
  } finally {
    button.disabled = false;
    keepFocus(button);
  }
}

async function deleteFromView(inbox, message, item) {
  try {
    await inbox.session.deleteMessage(message.id);
    item.remove();
    if (shown) shown.messages = shown.messages.filter((listed) => listed.id !== message.id);
    if (item.dataset.readId) await messageRemoved(item.dataset.readId);
    say(t("Message deleted."));
    moveFocus($("#messages-heading"));
  } catch (err) {
    say(t("Could not delete the message: {error}", { error: err.message }), "error");
  }
}

async function blockConversation(inbox, record, entries) {
  if (!confirm(t("Block this conversation? Its messages are deleted from the server now, and new ones " +
    "are deleted unread whenever this inbox is opened in this browser. The server cannot tell " +
    "conversations apart, so only this device knows about the block."))) return;
  record.blocked = true;
  await saveRecord(recipientKey(inbox.publicKey, record.replyPublicKey), record);
  for (const entry of entries) await deleteQuietly(inbox, entry.message.id);
  const gone = new Set(entries.map((entry) => entry.message.id));
  if (shown) await showConversations(inbox, shown.messages.filter((message) => !gone.has(message.id)));
  say(t("Conversation blocked on this device. Its new messages will be deleted unread when this inbox loads here."));
  moveFocus($("#messages-heading"));
}

// The inbox is gone from the server: its conversations' states and kept replies go too.
export async function forgetConversations(inboxPublicKey) {
  for (const record of await listRecords(`recipient:${inboxPublicKey}:`)) {
    await forgetRecord(recipientKey(inboxPublicKey, record.replyPublicKey));
  }
}

export function showInboxSafetyWords(publicKey) {
  showSafetyWords($("#inbox-safety-words"), publicKey);
}
