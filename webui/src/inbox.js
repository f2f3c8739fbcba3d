// The inbox page: keys kept in this browser, or loaded from a key file; messages
// fetched as ciphertext after a proof of possession and decrypted here.

import {
  MAX_KEY_FILE_BYTES,
  SecretlinkCryptoError,
  b64decode,
  b64encode,
  canonicalOrigin,
  openEnvelope,
} from "../../crypto/secretlink.js";
import { loadReplyKeyFile } from "../../crypto/conversation.js";
import { inboxSession, request } from "./api.js";
import { attachmentsOf, renderAttachments } from "./attachments-view.js";
import { setupBackup } from "./backup.js";
import "./conversation-backup.js"; // conversations and reply keys travel in key backups
import {
  conversationsForExport,
  forgetConversations,
  openedPayload,
  showConversations,
  showInboxSafetyWords,
} from "./inbox-conversations.js";
import { askPersistence, forgetKey, keyFileName, keyFileText, listKeys, loadKey, saveKey } from "./keystore.js";
import { initSettings, loadSettings } from "./settings.js";
import { $, copyField, downloadText, element, say } from "./ui.js";
import { installExport } from "./export.js";
import {
  decorateMessage, forgetReadState, messageRemoved, mutedReady, startReading, stopReading,
} from "./reading.js";
import { hideShare, showShare } from "./share.js";
import { reportWipe } from "./wipe.js";
import { closeNotifications, openNotifications } from "./notify.js";
import { moveFocus, moveFocusUnlessMoved } from "./focus.js";
import { formatDate, formatSize, t, tn } from "./i18n.js";

let current = null; // { keyPair, session, publicKey, link, prompt, opened: decrypted messages }

function formatTime(receivedAt) {
  // The server keeps arrival times to the minute, in UTC.
  const date = new Date(receivedAt.replace("Z", ":00Z"));
  return Number.isNaN(date.getTime())
    ? receivedAt
    : formatDate(date);
}

// The text and the files (attachments-view.js shows and saves them, as SPEC 5.10
// requires of a reader that opts in to field 0x03).
function decrypt(message) {
  try {
    const payload = openedPayload(message) ??
      openEnvelope(b64decode(message.ciphertext), current.keyPair.secretKey, { attachments: true });
    return { text: payload.text, attachments: attachmentsOf(payload) };
  } catch (err) {
    if (!(err instanceof SecretlinkCryptoError)) throw err;
    return { error: t("This message could not be decrypted ({error}).", { error: err.message }) };
  }
}

// A message as decrypted: its server fields plus `text` and `attachments`, or `error`
// when undecryptable.
function renderMessage(message) {
  const item = element("li", { "data-id": message.id });
  const header = element("div", { class: "meta" });
  header.append(element("time", { datetime: message.received_at }, formatTime(message.received_at)));
  const remove = element("button", { type: "button", class: "secondary delete",
    "aria-label": t("Delete this message") }, t("Delete"));
  remove.addEventListener("click", () => deleteMessage(message.id, item));
  header.append(remove);
  const body = message.error
    ? element("p", { class: "undecryptable" }, message.error)
    : element("pre", { class: "text", dir: "auto", translate: "no" }, message.text);
  item.append(header, body);
  if (message.attachments?.length) item.append(renderAttachments(message.attachments, current.session));
  decorateMessage(item, message.text);
  return item;
}

async function refresh() {
  if (!current) return;
  // Another inbox may be opened while this one's list is on its way: its answer must
  // then not be shown under the other inbox's link.
  const inbox = current;
  const stillShown = () => current === inbox;
  say(t("Fetching messages…"));
  try {
    const { messages, usage } = await inbox.session.allMessages();
    await mutedReady(); // the first drawing folds what is muted
    if (!stillShown()) return;
    const { plain, deletedUnread, readIds } = await showConversations(inbox, messages, stillShown);
    if (!stillShown()) return;
    inbox.opened = plain.map((message) => ({ ...message, ...decrypt(message) }));
    await startReading(inbox.publicKey, [...inbox.opened.map((message) => message.id), ...readIds]);
    if (!stillShown()) return;
    $("#messages").replaceChildren(...inbox.opened.map(renderMessage));
    const count = messages.length - deletedUnread;
    $("#empty").hidden = count > 0;
    showUsage(usage);
    const counted = tn("{count} message.", "{count} messages.", count);
    say(deletedUnread
      ? t("{messages} Deleted unread: {count} of a blocked conversation.", { messages: counted, count: deletedUnread })
      : counted);
  } catch (err) {
    if (!stillShown()) return;
    say(err.code === "unknown_inbox"
      ? t("This server has no inbox for this key (it may have been deleted).")
      : t("Could not fetch messages: {error}", { error: err.message }), "error");
  }
}

// How much of its quota the inbox uses, and a plain sentence when senders are refused.
function showUsage(usage) {
  const line = $("#usage");
  const full = $("#inbox-full");
  if (!usage) {
    line.textContent = "";
    full.hidden = true;
    return;
  }
  const messages = usage.max_messages
    ? tn("{used} of {count} message", "{used} of {count} messages", usage.max_messages, { used: usage.messages })
    : tn("{count} message", "{count} messages", usage.messages);
  line.textContent = usage.max_bytes
    ? t("Space used: {messages}, {bytes} of {max_bytes}.",
      { messages, bytes: formatSize(usage.bytes), max_bytes: formatSize(usage.max_bytes) })
    : t("Space used: {messages}.", { messages });
  full.hidden = !usage.full;
  full.textContent = usage.instance_full
    ? t("This server is full: nobody can send you messages until it has room again. Tell its operator.")
    : t("This inbox is full: senders are turned away until you delete messages.");
}

async function deleteMessage(id, item) {
  try {
    await current.session.deleteMessage(id);
    item.remove();
    current.opened = current.opened.filter((message) => message.id !== id);
    await messageRemoved(id);
    $("#empty").hidden = $("#messages").children.length > 0;
    // Deleting makes room: the usage shown is out of date until the next refresh.
    $("#inbox-full").hidden = true;
    $("#usage").textContent = "";
    say(t("Message deleted."));
    moveFocus($("#messages-heading"));
  } catch (err) {
    say(t("Could not delete the message: {error}", { error: err.message }), "error");
  }
}

// Returns whether this inbox is still the one shown once it has opened: another may
// be opened before this one has finished (a key file chosen while the stored inbox
// opens itself), and this one then stops at its next step. Focus goes to the messages
// unless the user moved it elsewhere since `focusedBefore`.
async function openInbox(keyPair, { focusedBefore = document.activeElement } = {}) {
  const publicKey = b64encode(keyPair.publicKey);
  const link = `${location.origin}/to/${publicKey}`;
  const opening = { keyPair, publicKey, link, prompt: "", opened: [], session: inboxSession(keyPair) };
  current = opening;
  const stillOpening = () => current === opening;
  history.replaceState(null, "", `#${publicKey}`);
  $("#key-file-note").textContent = "";
  $("#inbox").hidden = false;
  $("#inbox-link").value = link;
  // Nothing of the previous inbox stays meanwhile: its prompt, its link's QR code and
  // its notifications panel, which would still act on it.
  $("#inbox-prompt").textContent = "";
  hideShare();
  closeNotifications();
  $("#messages").replaceChildren();
  stopReading();
  $("#conversations").replaceChildren();
  showInboxSafetyWords(keyPair.publicKey);
  showUsage(null);
  await loadSettings(); // first: the panel must not show the previous inbox's settings
  if (!stillOpening()) return false;
  try {
    const info = await request("GET", `/api/v1/inboxes/${publicKey}`);
    if (!stillOpening()) return false;
    opening.prompt = info.prompt ?? "";
    $("#inbox-prompt").replaceChildren(...(info.prompt
      ? [t("Prompt:"), " ", element("bdi", { translate: "no" }, info.prompt)]
      : []));
    showShare(link, opening.prompt);
  } catch (err) {
    if (!stillOpening()) return false;
    say(err.code === "unknown_inbox"
      ? t("This server has no inbox for this key (it may have been deleted).")
      : t("Could not load the inbox: {error}", { error: err.message }), "error");
    return true;
  }
  await refresh();
  if (!stillOpening()) return false;
  moveFocusUnlessMoved($("#messages-heading"), focusedBefore);
  await openNotifications(opening.session);
  return stillOpening();
}

async function showStoredInboxes() {
  let records = [];
  try {
    records = await listKeys();
  } catch {
    say(t("This browser does not allow stored keys here (private mode?). Open a key file instead."), "error");
  }
  const list = $("#inbox-list");
  list.replaceChildren(...records.map((record) => {
    const item = element("li");
    const open = element("button", { type: "button" }, t("Open"));
    open.addEventListener("click", () => openStored(record.publicKey));
    const label = element("span", { class: "key" });
    if (record.movedTo) label.append(t("(moved on)"), " ");
    if (record.prompt) label.append(element("bdi", { translate: "no" }, record.prompt), " — ");
    label.append(element("span", { dir: "ltr", translate: "no" }, `${record.publicKey.slice(0, 12)}…`));
    item.append(label, " ", open);
    return item;
  }));
  $("#no-inboxes").hidden = records.length > 0;
  return records;
}

async function openKeyFile(event) {
  const [file] = event.target.files;
  if (!file) return;
  const focusedBefore = document.activeElement;
  let keyFile;
  try {
    // The bytes, not file.text(): that would drop a byte-order mark from the size and
    // replace invalid UTF-8 instead of refusing it (SPEC section 6). One byte more than
    // the limit is enough to refuse a large file.
    // A passphrase-protected backup goes to the backup panel, which asks for it.
    if (await offerBackup(file)) return;
    const head = file.slice(0, MAX_KEY_FILE_BYTES + 1);
    // As a reader that knows reply key files (SPEC 6): a malformed `conversation` is refused.
    keyFile = loadReplyKeyFile(new Uint8Array(await head.arrayBuffer()));
  } catch (err) {
    say(t("That file is not a usable key file: {error}", { error: err.message }), "error");
    return;
  } finally {
    event.target.value = "";
  }
  if (keyFile.conversation) {
    say(t("That is the reply key file of a conversation you started: open it on the reply page (/reply)."),
      "error");
    return;
  }
  const keyPair = { publicKey: keyFile.publicKey, secretKey: keyFile.secretKey };
  try {
    await saveKey(keyPair);
    await askPersistence();
    await showStoredInboxes();
  } catch {
    // Not stored (private mode): the inbox still opens for this visit.
  }
  if (!await openInbox(keyPair, { focusedBefore })) return; // another inbox took its place
  $("#key-file-note").textContent = keyFile.server && !isThisOrigin(keyFile.server)
    ? t("This key file was made for {server}; the inbox shown is the one on this server.", { server: keyFile.server })
    : "";
}

// A key file's server names this page's origin if it normalises to it (SPEC 7.5):
// `https://Bücher.example:443/` is `https://xn--bcher-kva.example`.
function isThisOrigin(server) {
  try {
    return canonicalOrigin(server) === location.origin;
  } catch {
    return false;
  }
}

// Open a key kept in this browser; it may have been removed in another tab meanwhile.
// `unlessOpen`: not over an inbox the user opened while the key was being read.
async function openStored(publicKey, { unlessOpen = false, focusedBefore = document.activeElement } = {}) {
  const stored = await loadKey(publicKey);
  if (unlessOpen && current) return;
  if (!stored) {
    say(t("This key is no longer stored in this browser."), "error");
    await showStoredInboxes();
    return;
  }
  await openInbox(stored.keyPair, { focusedBefore });
}

async function forget() {
  if (!confirm(t("Forget this inbox's key in this browser? Without a downloaded key file you lose the inbox."))) {
    return;
  }
  await forgetKey(current.publicKey);
  await forgetReadState(current.publicKey);
  current = null;
  stopReading();
  hideShare();
  $("#inbox").hidden = true;
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  await showStoredInboxes();
  say(t("Key removed from this browser."));
}

async function deleteInbox() {
  if (!confirm(t("Delete this inbox and all its messages from the server? This cannot be undone."))) return;
  try {
    await current.session.remove();
  } catch (err) {
    say(t("Could not delete the inbox: {error}", { error: err.message }), "error");
    return;
  }
  await forgetKey(current.publicKey);
  await forgetReadState(current.publicKey);
  await forgetConversations(current.publicKey);
  current = null;
  stopReading();
  hideShare();
  $("#inbox").hidden = true;
  await showStoredInboxes();
  say(t("Inbox deleted. Its link no longer works."));
}

$("#key-file").addEventListener("change", openKeyFile);
$("#refresh").addEventListener("click", refresh);
$("#copy-link").addEventListener("click", (event) => copyField($("#inbox-link"), event.target));
$("#download-key").addEventListener("click", () =>
  downloadText(keyFileName(current.keyPair.publicKey), keyFileText(current.keyPair)));
$("#forget").addEventListener("click", forget);
$("#delete-inbox").addEventListener("click", deleteInbox);
installExport(() => current && {
  publicKey: current.publicKey, link: current.link, prompt: current.prompt, messages: current.opened,
  conversations: conversationsForExport(),
});
initSettings({
  current: () => current,
  refresh,
  // After a rotation: the new inbox joins the list and opens.
  opened: async (keyPair) => {
    await showStoredInboxes();
    await openInbox(keyPair);
  },
});
const offerBackup = setupBackup({
  current: () => current,
  onRestored: async (publicKey) => {
    await showStoredInboxes();
    await openStored(publicKey);
  },
});

const wiped = reportWipe();
const records = await showStoredInboxes();
const wanted = wiped ? "" : location.hash.slice(1);
const stored = wanted && records.some((record) => record.publicKey === wanted) ? wanted
  : records.length === 1 ? records[0].publicKey : null;
// Not over an inbox the user opened meanwhile (a key file chosen while storage answered),
// and focus goes to its messages only if the user has not moved it since the page opened.
if (stored && !current) await openStored(stored, { unlessOpen: true, focusedBefore: document.body });
