// Conversations kept in this browser (IndexedDB), each side on its own device only:
// the peer's key, the conversation id, this side's count of sent messages, the numbers
// read from the peer (SPEC 5.9), and this side's own sent texts when kept. On the
// sender's side the record also holds the reply key. When the browser refuses storage
// (some private modes), records live in memory for this visit only.

import { createStore, del, entries, get, set } from "idb-keyval";

const store = createStore("secretlink-conversations", "conversations");
const memory = new Map();
let persistent = true;

async function guarded(action, fallback) {
  if (persistent) {
    try {
      return await action();
    } catch {
      persistent = false; // refused once, refused for this visit: keep going in memory
    }
  }
  return fallback();
}

export const isPersistent = () => persistent;

export const senderKey = (replyPublicKey) => `sender:${replyPublicKey}`;
export const recipientKey = (inboxPublicKey, replyPublicKey) => `recipient:${inboxPublicKey}:${replyPublicKey}`;

export const loadRecord = (key) => guarded(() => get(key, store), () => memory.get(key));

export function saveRecord(key, record) {
  memory.set(key, record);
  return guarded(() => set(key, record, store), () => undefined);
}

export function forgetRecord(key) {
  memory.delete(key);
  return guarded(() => del(key, store), () => undefined);
}

export async function listRecords(prefix) {
  const all = await guarded(() => entries(store), () => [...memory.entries()]);
  return all.filter(([key]) => key.startsWith(prefix)).map(([, record]) => record);
}
