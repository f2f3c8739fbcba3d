// The sender's side of a conversation (/reply): the reply link's key is moved into this
// browser's storage and the fragment removed from the address bar and history; the
// answers are fetched as ciphertext after a proof of possession of the reply key, read
// with the checks of SPEC 5.9, and the sender can answer again.

import {
  ROLE_SENDER,
  dumpReplyKeyFile,
  loadReplyKeyFile,
  newConversationState,
  nextMessage,
  parseReplyLink,
  sealConversation,
} from "../../crypto/conversation.js";
import { MAX_KEY_FILE_BYTES, b64decode, b64encode, keyPairFromSecret } from "../../crypto/secretlink.js";
import { inboxSession } from "./api.js";
import { forgetRecord, isPersistent, listRecords, loadRecord, saveRecord, senderKey } from "./conversation-store.js";
import { askPersistence } from "./keystore.js";
import { postEnvelope, postErrorText } from "./post.js";
import { showSafetyWords } from "./safety.js";
import { accept, catchUp, openMessage, renderThread } from "./thread.js";
import { $, downloadText, element, say } from "./ui.js";
import { keepFocus, moveFocus } from "./focus.js";
import { t, tn } from "./i18n.js";

let current = null; // { key, record, keyPair, session }

// Before anything else: take the secret out of the address bar and this page's
// history entry, whatever follows.
const fragment = location.hash.slice(1);
if (fragment) history.replaceState(null, "", location.pathname);

function newRecord({ keyPair, inboxPublicKey, conversationId }) {
  const state = newConversationState({ ownRole: ROLE_SENDER, peerPublicKey: inboxPublicKey, conversationId });
  state.next_seq = 2; // a reply key exists because its opener (sender message #1) was sent
  return {
    kind: "sender",
    replyPublicKey: b64encode(keyPair.publicKey),
    replySecretKey: b64encode(keyPair.secretKey),
    inboxPublicKey: b64encode(inboxPublicKey),
    server: location.origin,
    keepSent: false,
    state,
    sentTexts: {},
  };
}

// A link or key file for a conversation this browser knows keeps what it knows
// (the numbers read, the count sent, kept texts): only a new one starts afresh.
async function adopt(conversation) {
  const key = senderKey(b64encode(conversation.keyPair.publicKey));
  const known = await loadRecord(key);
  if (known && known.inboxPublicKey === b64encode(conversation.inboxPublicKey) &&
      known.state.id === b64encode(conversation.conversationId)) {
    return key;
  }
  await saveRecord(key, newRecord(conversation));
  await askPersistence();
  return key;
}

async function openConversation(key) {
  const record = await loadRecord(key);
  if (!record) {
    say(t("This conversation is no longer stored in this browser."), "error");
    await showStored();
    return;
  }
  const keyPair = keyPairFromSecret(b64decode(record.replySecretKey));
  current = { key, record, keyPair, session: inboxSession(keyPair) };
  showSafetyWords($("#inbox-safety-words"), record.inboxPublicKey);
  showSafetyWords($("#reply-safety-words"), keyPair.publicKey);
  $("#keep-own").checked = Boolean(record.keepSent);
  $("#storage-note").hidden = isPersistent();
  $("#conversation").hidden = false;
  await refresh();
  moveFocus($("#conversation-heading"));
}

async function refresh() {
  if (!current) return;
  const { record, keyPair } = current;
  say(t("Fetching answers…"));
  let messages;
  try {
    ({ messages } = await current.session.allMessages());
  } catch (err) {
    say(err.code === "unknown_inbox"
      ? t("This server has no inbox for this reply key (it was deleted, or expired).")
      : t("Could not fetch the answers: {error}", { error: err.message }), "error");
    return;
  }
  // Oldest first: the order the numbers were written in.
  const entries = messages.slice().reverse().map((message) => {
    const opened = openMessage(message, keyPair.secretKey);
    if (opened.plain !== undefined) {
      // Anyone who knows the reply key's public half can send to its inbox; only the
      // boxed messages come from the recipient.
      return { message,
        refused: t("Refused: not part of this conversation (a message without its authentication).") };
    }
    return opened.opened ? accept(record, opened) : opened;
  });
  catchUp(record, entries);
  await saveRecord(current.key, record);
  renderThread($("#thread"), record, entries, { onDelete: deleteMessage });
  $("#thread-empty").hidden = entries.length > 0;
  const answers = entries.filter((entry) => entry.opened).length;
  say(tn("{count} answer.", "{count} answers.", answers));
}

async function deleteMessage(message, item) {
  try {
    await current.session.deleteMessage(message.id);
    item.remove();
    say(t("Message deleted from the server."));
    moveFocus($("#conversation-heading"));
  } catch (err) {
    say(t("Could not delete the message: {error}", { error: err.message }), "error");
  }
}

async function answer(event) {
  event.preventDefault();
  const text = $("#answer").value;
  if (text.trim() === "") {
    say(t("Write an answer first."), "error");
    return;
  }
  const { record, keyPair } = current;
  const button = $("#send-answer");
  button.disabled = true;
  say(t("Encrypting and sending…"));
  const before = structuredClone(record.state);
  try {
    const message = nextMessage(record.state, text);
    const envelope = sealConversation(message, keyPair.secretKey, b64decode(record.inboxPublicKey));
    await postEnvelope(record.inboxPublicKey, b64encode(envelope), (note) => say(note));
    record.keepSent = $("#keep-own").checked;
    if (record.keepSent) record.sentTexts[message.seq] = { text, at: new Date().toISOString() };
    await saveRecord(current.key, record);
    $("#answer").value = "";
    await refresh(); // shows the kept copy, if any, in its place
    say(t("Sent. Only the recipient can read it."), "success");
    moveFocus($("#status"));
  } catch (err) {
    record.state = before; // not sent: the number is used by the next attempt
    say(err.status !== undefined ? postErrorText(err) : t("Not sent: {error}", { error: err.message }), "error");
  } finally {
    button.disabled = false;
    keepFocus(button);
  }
}

async function openKeyFile(event) {
  const [file] = event.target.files;
  if (!file) return;
  let keyFile;
  try {
    const head = file.slice(0, MAX_KEY_FILE_BYTES + 1);
    keyFile = loadReplyKeyFile(new Uint8Array(await head.arrayBuffer()));
  } catch (err) {
    say(t("That file is not a usable reply key file: {error}", { error: err.message }), "error");
    return;
  } finally {
    event.target.value = "";
  }
  if (!keyFile.conversation) {
    say(t("That is an inbox key file, not a reply key file: open it on the My inboxes page."), "error");
    return;
  }
  const key = await adopt({
    keyPair: { publicKey: keyFile.publicKey, secretKey: keyFile.secretKey },
    inboxPublicKey: keyFile.conversation.inboxPublicKey,
    conversationId: keyFile.conversation.conversationId,
  });
  await showStored();
  await openConversation(key);
}

async function showStored() {
  const records = await listRecords("sender:");
  $("#conversation-list").replaceChildren(...records.map((record) => {
    const item = element("li");
    const open = element("button", { type: "button" }, t("Open"));
    open.addEventListener("click", () => openConversation(senderKey(record.replyPublicKey)));
    const label = element("span", { class: "key" }, t("With inbox"));
    label.append(" ", element("span", { dir: "ltr", translate: "no" }, `${record.inboxPublicKey.slice(0, 12)}…`));
    item.append(label, " ", open);
    return item;
  }));
  $("#no-conversations").hidden = records.length > 0;
  return records;
}

async function forget() {
  if (!confirm(t("Forget this conversation's key in this browser? Without the reply link or key file you cannot " +
    "read its answers again."))) return;
  await forgetRecord(current.key);
  current = null;
  $("#conversation").hidden = true;
  await showStored();
  say(t("Conversation removed from this browser."));
}

$("#reply-key-file").addEventListener("change", openKeyFile);
$("#refresh").addEventListener("click", refresh);
$("#answer-form").addEventListener("submit", answer);
$("#forget").addEventListener("click", forget);
$("#download-reply-key").addEventListener("click", () => {
  const { record, keyPair } = current;
  downloadText(`secretlink-reply-key-${record.replyPublicKey.slice(0, 8)}.json`, dumpReplyKeyFile({
    keyPair,
    server: location.origin,
    inboxPublicKey: b64decode(record.inboxPublicKey),
    conversationId: b64decode(record.state.id),
  }));
});

let opening = null;
if (fragment) {
  try {
    const link = parseReplyLink(`${location.origin}${location.pathname}#${fragment}`);
    opening = await adopt(link);
  } catch (err) {
    say(t("This reply link is damaged ({error}). Copy it whole and open it again.", { error: err.message }), "error");
  }
}
const stored = await showStored();
if (opening) {
  await openConversation(opening);
} else if (!fragment && stored.length === 1) {
  await openConversation(senderKey(stored[0].replyPublicKey));
}
