// "Let the recipient reply" on the sender page (SPEC 5.8): a fresh reply key for one
// conversation, a reply inbox registered for it (proof of possession and the same
// proof of work as any inbox), the opener boxed from the reply key to the inbox key,
// then the private reply link and key file that are the sender's only way back.

import {
  MAX_CONVERSATION_TEXT_BYTES,
  ROLE_SENDER,
  boxConversation,
  buildReplyLink,
  dumpReplyKeyFile,
  newConversationState,
  newReplyKey,
  nextMessage,
} from "../../crypto/conversation.js";
import { b64encode } from "../../crypto/secretlink.js";
import { saveRecord, senderKey } from "./conversation-store.js";
import { registerInbox } from "./registration.js";
import { showSafetyWords } from "./safety.js";
import { $, copyField, downloadText } from "./ui.js";
import { t } from "./i18n.js";

const encoder = new TextEncoder();
// A reply inbox registered for a send that then failed: the next attempt uses it
// rather than registering another.
let pending = null;
let ready = null; // the last conversation started: what the download button saves

// Whether the sender asked for replies (the option is hidden when the inbox's owner
// turned replies off: then it is never used, even if ticked before).
export function replyWanted() {
  const box = $("#want-reply");
  return Boolean(box?.checked) && !box.closest("[data-needs]")?.hidden;
}

/**
 * Registers the reply inbox (or reuses one from a failed send) and returns
 * { message, sent() }: `message` is what the envelope carries, and sent() shows the
 * way back once the opener is delivered.
 */
export async function startConversation(inboxPublicKey, text, progress) {
  if (encoder.encode(text).length > MAX_CONVERSATION_TEXT_BYTES) {
    throw new Error(t("A message that lets the recipient reply holds at most {bytes} bytes.",
      { bytes: MAX_CONVERSATION_TEXT_BYTES }));
  }
  if (!pending || b64encode(pending.inboxPublicKey) !== b64encode(inboxPublicKey)) {
    const reply = newReplyKey();
    const keyPair = { publicKey: reply.publicKey, secretKey: reply.secretKey };
    progress(t("Registering an inbox for the recipient's answers…"));
    await registerInbox(keyPair, "", progress);
    pending = { keyPair, conversationId: reply.conversationId, inboxPublicKey };
  }
  const conversation = pending;
  const state = newConversationState({
    ownRole: ROLE_SENDER,
    peerPublicKey: inboxPublicKey,
    conversationId: conversation.conversationId,
  });
  const opener = nextMessage(state, text); // sender message #1
  const field = boxConversation(opener, conversation.keyPair.secretKey, inboxPublicKey);
  return {
    message: { text: "", conversation: field },
    sent: () => {
      pending = null;
      return showWayBack(conversation, state, text);
    },
  };
}

async function showWayBack(conversation, state, text) {
  const { keyPair, conversationId, inboxPublicKey } = conversation;
  ready = conversation;
  $("#reply-link").value = buildReplyLink(location.origin, keyPair.secretKey, inboxPublicKey, conversationId);
  showSafetyWords($("#reply-safety-words"), keyPair.publicKey);
  const keep = $("#keep-own").checked;
  let note = t("Neither the reply key nor your message was kept in this browser.");
  if (keep) {
    await saveRecord(senderKey(b64encode(keyPair.publicKey)), {
      kind: "sender",
      replyPublicKey: b64encode(keyPair.publicKey),
      replySecretKey: b64encode(keyPair.secretKey),
      inboxPublicKey: b64encode(inboxPublicKey),
      server: location.origin,
      keepSent: true,
      state,
      sentTexts: { 1: { text, at: new Date().toISOString() } },
    });
    note = t("The reply key and a copy of your message are kept in this browser, on this device only. " +
      "Opening the reply link here shows them.");
  }
  $("#reply-kept").textContent = note;
  $("#want-reply").checked = false; // a next message starts no conversation unless asked again
  $("#keep-own-label").hidden = true;
  $("#reply-ready").hidden = false;
}

$("#want-reply")?.addEventListener("change", (event) => {
  $("#keep-own-label").hidden = !event.target.checked;
});
$("#copy-reply-link")?.addEventListener("click", (event) => copyField($("#reply-link"), event.target));
$("#download-reply-key")?.addEventListener("click", () => {
  if (!ready) return;
  const text = dumpReplyKeyFile({
    keyPair: ready.keyPair,
    server: location.origin,
    inboxPublicKey: ready.inboxPublicKey,
    conversationId: ready.conversationId,
  });
  downloadText(`secretlink-reply-key-${b64encode(ready.keyPair.publicKey).slice(0, 8)}.json`, text);
});
