// One conversation on a page, either side: reading its messages in order with the
// checks of SPEC 5.9, and showing them with what the checks found (a missing message,
// a claim about messages this device never sent, messages of ours not seen yet).

import {
  ConversationError,
  ReflectionError,
  ReplayError,
  WrongConversationError,
  highestSeen,
  highestSent,
  openConversationPayload,
  readConversationMessage,
} from "../../crypto/conversation.js";
import { SecretlinkCryptoError, b64decode, openEnvelope } from "../../crypto/secretlink.js";
import { element } from "./ui.js";
import { formatDate, t } from "./i18n.js";

// A message as the server listed it, opened with this side's key: `plain` (no
// conversation field), `opened` (steps 1-5 passed) or `refused` with the reason.
export function openMessage(message, secretKey) {
  try {
    const payload = openEnvelope(b64decode(message.ciphertext), secretKey, { conversations: true });
    const opened = openConversationPayload(payload, secretKey);
    return opened ? { message, opened } : { message, plain: payload.text };
  } catch (err) {
    if (!(err instanceof SecretlinkCryptoError)) throw err;
    return { message, refused: refusalText(err) };
  }
}

export function refusalText(err) {
  if (err instanceof ReflectionError) return t("Refused: a reflection (one of your own messages sent back to you).");
  if (err instanceof ReplayError) {
    // The crypto module says which number: "replay: message #3 was already read".
    const seq = /#(\d+)/.exec(err.message)?.[1];
    return seq ? t("Refused: a replay (message #{seq} was already read).", { seq })
      : t("Refused: a replay ({error}).", { error: err.message });
  }
  if (err instanceof WrongConversationError) return t("Refused: it belongs to another conversation.");
  if (err instanceof ConversationError) {
    return t("Refused: not authentic. It was not written with either key of this conversation " +
      "(forged or tampered with).");
  }
  return t("Refused: this message could not be read ({error}).", { error: err.message });
}

// Steps 6-10 for one opened message against the record's state (updated when
// accepted). Returns the entry to show.
export function accept(record, { message, opened }) {
  try {
    const reading = readConversationMessage(record.state, opened, message.id);
    // Kept, because catchUp below makes the same claim look ordinary on the next visit.
    if (reading.claimsUnsent) record.claimsUnsent = { ...record.claimsUnsent, [opened.seq]: true };
  } catch (err) {
    if (!(err instanceof SecretlinkCryptoError)) throw err;
    return { message, refused: refusalText(err) };
  }
  return { message, opened };
}

// Never reuse a number the other side says it has seen (sent from another device, or
// before this browser's state was lost): it would take the next message for a replay.
export function catchUp(record, entries) {
  for (const entry of entries) {
    if (entry.opened) record.state.next_seq = Math.max(record.state.next_seq, entry.opened.lastSeen + 1);
  }
}

function formatTime(text) {
  const date = new Date(text.length === 17 ? text.replace("Z", ":00Z") : text);
  return Number.isNaN(date.getTime())
    ? text
    : formatDate(date);
}

function flag(text) {
  return element("p", { class: "flag", "data-kind": "error" }, text);
}

// In the order the two sides wrote, for items { own, seq, lastSeen }: each side by its
// numbers, and a message of the other side after ours when it says it had read ours
// (its last_seen), before it otherwise. Arrival times are kept only to the minute, too
// coarse to order by.
export function inWrittenOrder(a, b) {
  if (Boolean(a.own) === Boolean(b.own)) return a.seq - b.seq;
  const [peer, own] = a.own ? [b, a] : [a, b];
  const peerFirst = peer.lastSeen < own.seq ? -1 : 1;
  return a.own ? -peerFirst : peerFirst;
}

// The entries of one conversation, oldest first: the peer's accepted messages, this
// side's own kept texts, and a marker for each number missing from the peer's.
// `decorate(item, entry)`, when given, adds to each of the peer's messages once drawn
// (the inbox page's reading tools); this side's own texts are never decorated.
export function renderThread(list, record, entries, { onDelete, decorate } = {}) {
  const state = record.state;
  const items = [];
  const peerEntries = entries.filter((entry) => entry.opened).sort((a, b) => a.opened.seq - b.opened.seq);
  const top = highestSeen(state);
  for (let seq = 1; seq <= top; seq++) {
    if (state.seen[seq] === undefined) {
      const marker = element("li", { class: "missing", "data-missing": String(seq) });
      marker.append(flag(t("Message #{seq} from the other side is missing: the server has not delivered it.",
        { seq: String(seq) })));
      items.push({ at: null, before: seq, node: marker });
    }
  }
  const latest = peerEntries[peerEntries.length - 1];
  for (const entry of peerEntries) {
    const { seq, lastSeen, text } = entry.opened;
    const item = element("li", { class: "peer", "data-seq": String(seq), "data-id": entry.message.id });
    const meta = element("div", { class: "meta" });
    const label = element("span", {}, t("#{seq} from the other side", { seq: String(seq) }));
    label.append(" · ", element("time", { datetime: entry.message.received_at }, formatTime(entry.message.received_at)));
    meta.append(label);
    if (onDelete) {
      const remove = element("button", { type: "button", class: "secondary delete",
        "aria-label": t("Delete message #{seq}", { seq: String(seq) }) }, t("Delete"));
      remove.addEventListener("click", () => onDelete(entry.message, item));
      meta.append(remove);
    }
    item.append(meta, element("pre", { class: "text", dir: "auto", translate: "no" }, text));
    decorate?.(item, entry);
    if (record.claimsUnsent?.[seq]) {
      item.append(flag(t("This message says it has read your message #{seq}, which this device never sent " +
        "(sent from another device, or tampered with).", { seq: String(lastSeen) })));
    } else if (entry === latest && lastSeen < highestSent(state)) {
      // Not an alarm: the other side may simply not have read them yet. But if it writes
      // again and this stays, the server is holding your messages back.
      item.append(element("p", { class: "hint unseen" }, lastSeen === 0
        ? t("When it wrote this, the other side had not seen any of your messages.")
        : t("When it wrote this, the other side had not seen your messages after #{seq}.", { seq: String(lastSeen) })));
    }
    items.push({ at: entry.message.received_at, seq, lastSeen, node: item });
  }
  for (const [seq, kept] of Object.entries(record.sentTexts ?? {})) {
    const item = element("li", { class: "own", "data-seq": seq });
    const meta = element("div", { class: "meta" });
    const label = element("span", {}, t("#{seq} from you (kept on this device only)", { seq: String(seq) }));
    label.append(" · ", element("time", { datetime: kept.at }, formatTime(kept.at)));
    meta.append(label);
    item.append(meta, element("pre", { class: "text", dir: "auto", translate: "no" }, kept.text));
    items.push({ at: kept.at, own: true, seq: Number(seq), node: item });
  }
  // Markers go right before the peer message that follows the gap.
  const ordered = items.filter((item) => item.at !== null).sort(inWrittenOrder);
  for (const marker of items.filter((item) => item.at === null)) {
    const next = ordered.findIndex((item) => !item.own && item.seq > marker.before);
    ordered.splice(next < 0 ? ordered.length : next, 0, marker);
  }
  const refused = entries.filter((entry) => entry.refused).map((entry) => {
    const item = element("li", { class: "refused", "data-id": entry.message.id });
    item.append(flag(entry.refused));
    if (onDelete) {
      const remove = element("button", { type: "button", class: "secondary delete",
        "aria-label": t("Delete this refused message") }, t("Delete"));
      remove.addEventListener("click", () => onDelete(entry.message, item));
      item.append(remove);
    }
    return { node: item };
  });
  list.replaceChildren(...ordered.map((item) => item.node), ...refused.map((item) => item.node));
}
