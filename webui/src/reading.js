// Reading tools on the inbox page, applied after decryption and kept on this device
// only: which messages are read, and muted words and phrases that fold a matching
// message behind "Show anyway". The server is never told any of it. They apply to
// ordinary messages and to the other side's messages in conversations alike (never to
// the user's own replies).

import { createStore, del, get, set } from "idb-keyval";
import { addBackupState, addDeviceBackupState } from "./backup.js";
import { $, element } from "./ui.js";
import { t, tn } from "./i18n.js";

// Its own database, so that forgetting a key never touches it and the quick wipe
// (wipe.js) removes it with every other database of this origin.
const store = createStore("secretlink-reading", "state");
const MUTED_KEY = "muted";
const readKey = (publicKey) => `read:${publicKey}`;
const MAX_MUTED_CHARS = 200;

let inbox = null; // { publicKey, read: Set of read ids, ids: read ids shown now }
let muted = []; // the phrases as the user typed them
let matchers = []; // one RegExp per phrase
const texts = new WeakMap(); // message <li> -> its decrypted text

// A message's read id: an ordinary message's is its server id; a conversation
// message's is its place in the conversation (the reply key and its authenticated
// seq, which the checks of SPEC 5.9 never let two shown messages share). Server ids
// are base64url, without a colon: the two kinds never collide, and one list (and
// the backup's `read`) holds both.
const CONVERSATION_PREFIX = "conversation:";
export const conversationReadId = (replyPublicKey, seq) => `${CONVERSATION_PREFIX}${replyPublicKey}:${seq}`;
const isConversationId = (id) => id.startsWith(CONVERSATION_PREFIX);

// Every message the reading tools decorate, in the list and in the conversations.
const decorated = () => document.querySelectorAll("#inbox li[data-read-id]");

// Case folding that also equates compatibility forms (full-width letters, ligatures)
// and German ß with ss: NFKC, then upper, then lower case.
const fold = (text) => text.normalize("NFKC").toUpperCase().toLowerCase();

// Scripts written without spaces between words: there a phrase matches inside a run
// of letters; elsewhere only as whole words ("ass" does not fold "class").
const UNSPACED = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}\p{Script=Tibetan}]/u;
const WORDLIKE = /[\p{L}\p{N}\p{M}]/u;
// Only syntax characters: with the `u` flag any other escaped character ("\\-") is an error.
const escapeRegExp = (text) => text.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");

/** A RegExp that finds `phrase` in folded text, or null for a blank phrase. */
export function phraseMatcher(phrase) {
  const words = fold(phrase).trim().split(/\s+/u).filter(Boolean);
  if (!words.length) return null;
  const body = words.map(escapeRegExp).join("\\s+"); // any run of spaces or line breaks
  const first = [...words[0]][0]; // whole code points, not UTF-16 halves
  const last = [...words.at(-1)].at(-1);
  const before = WORDLIKE.test(first) && !UNSPACED.test(first) ? "(?<![\\p{L}\\p{N}\\p{M}])" : "";
  const after = WORDLIKE.test(last) && !UNSPACED.test(last) ? "(?![\\p{L}\\p{N}\\p{M}])" : "";
  return new RegExp(`${before}${body}${after}`, "u");
}

/** The first muted phrase that `text` contains, or null. */
export function mutedPhraseIn(text) {
  const folded = fold(text);
  const index = matchers.findIndex((matcher) => matcher.test(folded));
  return index < 0 ? null : muted[index];
}

async function loadMuted() {
  try {
    const stored = (await get(MUTED_KEY, store)) ?? [];
    matchers = stored.map(phraseMatcher);
    muted = stored;
  } catch {
    muted = []; // storage refused (private mode), or not a list of phrases: nothing muted
    matchers = [];
  }
}

async function saveMuted(phrases) {
  muted = phrases;
  matchers = muted.map(phraseMatcher);
  try {
    await set(MUTED_KEY, muted, store);
    return true;
  } catch {
    return false;
  }
}

// ---- read and unread ----

async function saveRead() {
  try {
    await set(readKey(inbox.publicKey), [...inbox.read], store);
  } catch {
    // Kept for this visit only: the browser refuses storage (private mode).
  }
}

export const isRead = (id) => Boolean(inbox?.read.has(id));

function showUnreadCount() {
  const unread = inbox ? inbox.ids.filter((id) => !inbox.read.has(id)).length : 0;
  $("#unread-count").textContent = !inbox || !inbox.ids.length
    ? ""
    : unread === 0 ? t("All messages read.") : tn("{count} unread message.", "{count} unread messages.", unread);
  $("#mark-all-read").disabled = unread === 0;
  showConversationCounts();
}

// Each conversation says how many of its messages are unread, next to its heading.
function showConversationCounts() {
  for (const view of document.querySelectorAll("#conversations article.conversation")) {
    const count = view.querySelector(".conversation-unread");
    if (!count) continue;
    const unread = view.querySelectorAll("li.unread[data-read-id]").length;
    count.textContent = unread === 0 ? "" : tn("{count} unread message", "{count} unread messages", unread);
    count.hidden = unread === 0;
  }
}

function showReadState(item, read) {
  item.classList.toggle("unread", !read);
  const toggle = item.querySelector("button.read-toggle");
  toggle.textContent = read ? t("Mark unread") : t("Mark read");
  toggle.setAttribute("aria-pressed", String(read));
  item.querySelector(".badge").hidden = read;
}

// The page shows a change once it is stored, so what it shows survives a reload.
async function setRead(item, read) {
  const id = item.dataset.readId;
  if (read) inbox.read.add(id);
  else inbox.read.delete(id);
  await saveRead();
  showReadState(item, read);
  showUnreadCount();
}

async function markAllRead() {
  if (!inbox) return;
  for (const id of inbox.ids) inbox.read.add(id);
  await saveRead();
  for (const item of decorated()) showReadState(item, true);
  showUnreadCount();
}

/** Load this inbox's read state for the messages about to be shown (`ids`: their read
 *  ids, ordinary and conversation messages); ids of messages that are gone (deleted
 *  here or elsewhere) are dropped from it. Messages decorated already (the
 *  conversations, drawn first) are shown with the state loaded. */
export async function startReading(publicKey, ids) {
  let stored = [];
  try {
    stored = (await get(readKey(publicKey), store)) ?? [];
  } catch {
    // No storage: everything counts as unread for this visit.
  }
  const shown = new Set(ids);
  inbox = { publicKey, read: new Set(stored.filter((id) => shown.has(id))), ids: [...ids] };
  if (inbox.read.size !== stored.length) await saveRead();
  for (const item of decorated()) showReadState(item, isRead(item.dataset.readId));
  showUnreadCount();
}

/** The conversations were drawn again (after a reply or a block): `ids` are the read
 *  ids of the conversation messages they show now. */
export function conversationsShown(ids) {
  if (!inbox) return;
  inbox.ids = [...inbox.ids.filter((id) => !isConversationId(id)), ...ids];
  showUnreadCount();
}

/** Drop what this device remembers of an inbox whose key it no longer holds. */
export async function forgetReadState(publicKey) {
  try {
    await del(readKey(publicKey), store);
  } catch {
    // Nothing was stored.
  }
}

export function stopReading() {
  inbox = null;
  showUnreadCount();
}

export async function messageRemoved(id) {
  if (!inbox) return;
  inbox.ids = inbox.ids.filter((shown) => shown !== id);
  inbox.read.delete(id);
  showUnreadCount();
  await saveRead();
}

// ---- folding ----

function applyFold(item) {
  const body = item.querySelector("pre.text");
  if (!body) return; // an undecryptable message has no text to match
  const notice = item.querySelector(".folded");
  const phrase = mutedPhraseIn(texts.get(item));
  const revealed = item.dataset.revealed === "true";
  body.hidden = Boolean(phrase) && !revealed;
  notice.hidden = !phrase || revealed;
  if (phrase) {
    const folded = t("Folded: contains the muted “{phrase}”.", { phrase });
    notice.querySelector("span").textContent = `${folded} `;
  }
}

/** Add the reading tools to one rendered message (an ordinary one, or one from the
 *  other side of a conversation): unread mark, a read toggle and, when its text holds
 *  a muted phrase, the fold. `readId` is what its read mark is kept under. */
export function decorateMessage(item, text, readId = item.dataset.id) {
  item.dataset.readId = readId;
  const meta = item.querySelector(".meta");
  const badge = element("span", { class: "badge" }, t("New"));
  const toggle = element("button", { type: "button", class: "secondary read-toggle" });
  toggle.addEventListener("click", () => setRead(item, !isRead(item.dataset.readId)));
  meta.prepend(badge);
  meta.querySelector("button")?.before(toggle);
  showReadState(item, isRead(readId));
  if (text === undefined) return;
  texts.set(item, text);
  const show = element("button", { type: "button", class: "secondary" }, t("Show anyway"));
  const notice = element("p", { class: "folded" });
  notice.append(element("span"), show);
  show.addEventListener("click", () => {
    item.dataset.revealed = "true";
    applyFold(item);
  });
  item.querySelector("pre.text").before(notice);
  applyFold(item);
}

function refold() {
  for (const item of decorated()) if (texts.has(item)) applyFold(item);
}

function showMutedList() {
  $("#muted-list").replaceChildren(...muted.map((phrase, index) => {
    const row = element("li");
    const remove = element("button", { type: "button", class: "secondary",
      "aria-label": t("Unmute “{phrase}”", { phrase }) }, t("Unmute"));
    remove.addEventListener("click", async () => {
      await saveMuted(muted.filter((_, other) => other !== index));
      showMutedList();
      refold();
    });
    row.append(element("bdi", { class: "phrase", translate: "no" }, phrase), " ", remove);
    return row;
  }));
  $("#no-muted").hidden = muted.length > 0;
}

async function addMuted(event) {
  event.preventDefault();
  await mutedLoaded; // a phrase added meanwhile joins the stored ones, not replaces them
  const input = $("#mute-phrase");
  const phrase = input.value.trim().replace(/\s+/gu, " ");
  const note = $("#mute-note");
  if (!phraseMatcher(phrase)) {
    note.textContent = t("Type a word or phrase to mute.");
    return;
  }
  if (phrase.length > MAX_MUTED_CHARS) {
    note.textContent = t("A muted phrase can have at most {count} characters.", { count: MAX_MUTED_CHARS });
    return;
  }
  if (muted.some((other) => fold(other) === fold(phrase))) {
    note.textContent = t("“{phrase}” is muted already.", { phrase });
    return;
  }
  input.value = ""; // before waiting: the next phrase may be typed meanwhile
  const kept = await saveMuted([...muted, phrase]);
  showMutedList();
  refold();
  note.textContent = kept
    ? ""
    : t("This browser refuses to store it: the phrase is muted until you leave the page.");
}

// Key backups (backup.js, SPEC 6a.3) carry each inbox's read marks and this browser's
// muted phrases; a restore adds to what is here rather than replacing it.
addBackupState("read", {
  save: async (publicKey) => (await get(readKey(publicKey), store).catch(() => undefined)),
  restore: async (publicKey, ids) => {
    const here = (await get(readKey(publicKey), store).catch(() => undefined)) ?? [];
    await set(readKey(publicKey), [...new Set([...here, ...ids])], store);
  },
});
addDeviceBackupState("muted", {
  save: async () => {
    await mutedLoaded;
    return muted.length ? [...muted] : undefined;
  },
  restore: async (phrases) => {
    await mutedLoaded;
    const fresh = phrases
      .map((phrase) => phrase.trim().replace(/\s+/gu, " "))
      .filter((phrase, index, all) => phraseMatcher(phrase) && phrase.length <= MAX_MUTED_CHARS &&
        !muted.some((other) => fold(other) === fold(phrase)) &&
        all.findIndex((other) => fold(other) === fold(phrase)) === index);
    if (!fresh.length) return;
    await saveMuted([...muted, ...fresh]);
    showMutedList();
    refold();
  },
});

// Loaded without a top-level await: that would hold back every module importing this
// one, and the inbox page would not answer its controls (a key file chosen, a panel
// opened) until storage had (seconds on a slow device). What reads the phrases waits.
const mutedLoaded = loadMuted().then(() => {
  showMutedList();
  refold();
});

/** Resolves once the muted phrases are loaded: messages are drawn after it, so that
 *  the first drawing already folds what is muted. */
export const mutedReady = () => mutedLoaded;

$("#mark-all-read").addEventListener("click", markAllRead);
$("#mute-form").addEventListener("submit", addMuted);
