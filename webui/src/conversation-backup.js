// Conversations in key backups (SPEC 6a.3): the recipient's side of each conversation
// travels with its inbox (state member `conversations`), and the reply keys this
// browser keeps for conversations it started as a sender travel with the browser
// (device member `reply_keys`). Without them a restored inbox would lose its own
// replies and blocks, and a restored browser the way back to its answers.
// Restoring keeps what this browser already holds, as for keys: a record is added
// only where none exists; a malformed one is dropped, the rest still restored.

import { b64decode, b64encode, keyPairFromSecret } from "../../crypto/secretlink.js";
import { addBackupState, addDeviceBackupState } from "./backup.js";
import { listRecords, loadRecord, recipientKey, saveRecord, senderKey } from "./conversation-store.js";

const KEY_TEXT = /^[A-Za-z0-9_-]{43}$/;
const ID_TEXT = /^[A-Za-z0-9_-]{22}$/;

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validState(state, role, peer) {
  return isObject(state) && state.role === role && state.peer === peer && ID_TEXT.test(state.id ?? "") &&
    Number.isSafeInteger(state.next_seq) && state.next_seq >= 1 && isObject(state.seen) &&
    Object.keys(state.seen).every((seq) => /^[1-9][0-9]*$/.test(seq));
}

function validSent(sent) {
  return isObject(sent) && Object.entries(sent).every(([seq, kept]) =>
    /^[1-9][0-9]*$/.test(seq) && isObject(kept) && typeof kept.text === "string" && typeof kept.at === "string");
}

function validRecipientRecord(record, inboxPublicKey) {
  return isObject(record) && record.kind === "recipient" && record.inboxPublicKey === inboxPublicKey &&
    KEY_TEXT.test(record.replyPublicKey ?? "") && validState(record.state, "recipient", record.replyPublicKey) &&
    validSent(record.sentTexts ?? {}) && typeof (record.blocked ?? false) === "boolean";
}

function validSenderRecord(record) {
  if (!isObject(record) || record.kind !== "sender" || !KEY_TEXT.test(record.replySecretKey ?? "") ||
    !KEY_TEXT.test(record.inboxPublicKey ?? "") || typeof record.server !== "string") return false;
  try {
    // The public key must be the secret key's: a backup is never trusted for that.
    const derived = b64encode(keyPairFromSecret(b64decode(record.replySecretKey)).publicKey);
    if (derived !== record.replyPublicKey) return false;
  } catch {
    return false;
  }
  return validState(record.state, "sender", record.inboxPublicKey) && validSent(record.sentTexts ?? {});
}

async function addMissing(key, record) {
  if (await loadRecord(key)) return; // this browser's own record is newer
  await saveRecord(key, record);
}

addBackupState("conversations", {
  save: async (publicKey) => {
    const records = await listRecords(`recipient:${publicKey}:`);
    return records.length ? records : undefined;
  },
  restore: async (publicKey, records) => {
    if (!Array.isArray(records)) return;
    for (const record of records.filter((one) => validRecipientRecord(one, publicKey))) {
      await addMissing(recipientKey(publicKey, record.replyPublicKey), record);
    }
  },
});

addDeviceBackupState("reply_keys", {
  save: async () => {
    const records = await listRecords("sender:");
    return records.length ? records : undefined;
  },
  restore: async (records) => {
    if (!Array.isArray(records)) return;
    for (const record of records.filter(validSenderRecord)) {
      await addMissing(senderKey(record.replyPublicKey), record);
    }
  },
});
