// Inbox keys kept in this browser (IndexedDB), and the key file that carries one
// to another device. The private key never leaves the device except in that file.

import { createStore, del, entries, get, set } from "idb-keyval";
import { b64decode, b64encode, dumpKeyFile, keyPairFromSecret } from "../../crypto/secretlink.js";

const store = createStore("secretlink", "inbox-keys");

export async function saveKey(keyPair, extra = {}) {
  const publicKey = b64encode(keyPair.publicKey);
  await set(publicKey, {
    publicKey,
    secretKey: b64encode(keyPair.secretKey),
    server: location.origin,
    savedAt: new Date().toISOString().slice(0, 10),
    ...extra,
  }, store);
  return publicKey;
}

export async function listKeys() {
  return (await entries(store)).map(([, record]) => record);
}

export async function loadKey(publicKey) {
  const record = await get(publicKey, store);
  return record ? { record, keyPair: keyPairFromSecret(b64decode(record.secretKey)) } : null;
}

export const forgetKey = (publicKey) => del(publicKey, store);

export function keyFileName(publicKey) {
  return `secretlink-key-${b64encode(publicKey).slice(0, 8)}.json`;
}

export function keyFileText(keyPair) {
  return dumpKeyFile({ ...keyPair, server: location.origin });
}

// Ask the browser not to evict our storage under pressure; it may say no.
export async function askPersistence() {
  if (!navigator.storage?.persist) return false;
  try {
    return await navigator.storage.persist();
  } catch {
    return false;
  }
}
