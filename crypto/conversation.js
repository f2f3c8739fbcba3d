// secretlink conversations: authenticated replies between an inbox key and a reply key,
// safety words, the private reply link and the reply key file, for browsers and node.
//
// crypto/SPEC.md (4.5 safety words, 4.6 reply links, 5.8 the conversation field, 5.9
// reading a conversation, 6 the key file's `conversation` member) is the normative
// text; secretlink/crypto/ is the Python twin and both pass crypto/vectors/. The
// primitives come from audited packages: tweetnacl's nacl.box (libsodium's
// crypto_box: X25519 + XSalsa20-Poly1305), @noble/hashes' SHA-256 and @scure/bip39's
// English word list.

import nacl from "tweetnacl";
import { sha256 } from "@noble/hashes/sha2.js";
import { wordlist as ENGLISH } from "@scure/bip39/wordlists/english.js";
import {
  EncodingError,
  InvalidKeyError,
  KEY_BYTES,
  KeyFileError,
  MAX_TEXT_BYTES,
  PayloadError,
  SecretlinkCryptoError,
  SizeError,
  b64decode,
  b64encode,
  canonicalOrigin,
  checkPublicKey,
  decodePublicKey,
  dumpKeyFile,
  keyPairFromSecret,
  loadKeyFile,
  openEnvelope,
  seal,
} from "./secretlink.js";

export const ROLE_RECIPIENT = 0x01; // the inbox owner
export const ROLE_SENDER = 0x02; // whoever holds the reply key
export const CONVERSATION_ID_BYTES = 16;
const NONCE_BYTES = nacl.box.nonceLength; // 24
const MAC_BYTES = nacl.box.overheadLength; // 16
const INNER_HEADER = 1 + CONVERSATION_ID_BYTES + 4 + 4;
export const MIN_FIELD_BYTES = KEY_BYTES + NONCE_BYTES + MAC_BYTES + INNER_HEADER;
// The text field (empty) and the conversation field's header share the payload.
export const MAX_CONVERSATION_TEXT_BYTES = MAX_TEXT_BYTES - 5 - MIN_FIELD_BYTES;
const MAX_SEQ = 0xffffffff;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---- errors: the names match the Python classes and the vectors' `expect` ----

/** A conversation box does not open: forged or tampered with (SPEC 5.9 step 4). */
export class ConversationError extends SecretlinkCryptoError {}
/** The reader's own role came back to it (step 6). */
export class ReflectionError extends ConversationError {}
/** Another conversation's id, or a peer key this conversation does not talk to (step 7). */
export class WrongConversationError extends ConversationError {}
/** A sequence number already read (step 8). */
export class ReplayError extends ConversationError {}
/** A reply link that is not <origin>/reply#<secret>.<inbox key>.<conversation id>. */
export class ReplyLinkError extends SecretlinkCryptoError {}

const ROLE_NAMES = { [ROLE_RECIPIENT]: "recipient", [ROLE_SENDER]: "sender" };
const ROLES_BY_NAME = { recipient: ROLE_RECIPIENT, sender: ROLE_SENDER };

// ---- safety words (SPEC 4.5) ----

const SAFETY_PURPOSE = encoder.encode("secretlink/v1/safety-words\0");

/** Eight BIP39 English words for a public key: the first 88 bits of a SHA-256. */
export function safetyWords(publicKey) {
  checkPublicKey(publicKey);
  const input = new Uint8Array(SAFETY_PURPOSE.length + KEY_BYTES);
  input.set(SAFETY_PURPOSE);
  input.set(publicKey, SAFETY_PURPOSE.length);
  const digest = sha256(input);
  let bits = 0n;
  for (const byte of digest.subarray(0, 11)) bits = (bits << 8n) | BigInt(byte);
  const words = [];
  for (let i = 7; i >= 0; i--) words.push(ENGLISH[Number((bits >> BigInt(11 * i)) & 0x7ffn)]);
  return words;
}

export const formatSafetyWords = (publicKey) => safetyWords(publicKey).join(" ");

// ---- the conversation field (SPEC 5.8) ----

function checkSeq(value, name, lowest) {
  if (!Number.isInteger(value) || value < lowest || value > MAX_SEQ) {
    throw new PayloadError(`${name} must be a whole number from ${lowest} to 2^32 - 1`);
  }
}

/** role || conversation_id || seq || last_seen || text, the plaintext in the box. */
export function encodeInner({ role, conversationId, seq, lastSeen, text }) {
  if (role !== ROLE_RECIPIENT && role !== ROLE_SENDER) throw new PayloadError("unknown role");
  if (!(conversationId instanceof Uint8Array) || conversationId.length !== CONVERSATION_ID_BYTES) {
    throw new PayloadError(`the conversation id must be ${CONVERSATION_ID_BYTES} bytes`);
  }
  checkSeq(seq, "seq", 1);
  checkSeq(lastSeen, "last_seen", 0);
  if (typeof text !== "string" || !text.isWellFormed()) {
    throw new PayloadError("text is not encodable as UTF-8 (lone surrogate)");
  }
  const textBytes = encoder.encode(text);
  if (textBytes.length > MAX_CONVERSATION_TEXT_BYTES) {
    throw new SizeError(
      `message is ${textBytes.length} bytes; a conversation message holds at most ${MAX_CONVERSATION_TEXT_BYTES}`,
    );
  }
  const inner = new Uint8Array(INNER_HEADER + textBytes.length);
  const view = new DataView(inner.buffer);
  inner[0] = role;
  inner.set(conversationId, 1);
  view.setUint32(1 + CONVERSATION_ID_BYTES, seq);
  view.setUint32(5 + CONVERSATION_ID_BYTES, lastSeen);
  inner.set(textBytes, INNER_HEADER);
  return inner;
}

/**
 * The value of field 0x02: writer_static_pk || nonce || crypto_box(inner). The nonce is
 * fresh and random for every box: both directions share one box key, so counters
 * would collide (both sides' first messages, or two devices of one side).
 */
export function boxConversation(message, writerSecretKey, readerPublicKey, nonce = nacl.randomBytes(NONCE_BYTES)) {
  checkPublicKey(readerPublicKey);
  const writer = keyPairFromSecret(writerSecretKey);
  if (b64encode(writer.publicKey) === b64encode(readerPublicKey)) {
    throw new InvalidKeyError("a conversation needs two keys: the reader's is the writer's");
  }
  if (nonce.length !== NONCE_BYTES) throw new PayloadError(`the nonce must be ${NONCE_BYTES} bytes`);
  const box = nacl.box(encodeInner(message), nonce, readerPublicKey, writer.secretKey);
  const field = new Uint8Array(KEY_BYTES + NONCE_BYTES + box.length);
  field.set(writer.publicKey);
  field.set(nonce, KEY_BYTES);
  field.set(box, KEY_BYTES + NONCE_BYTES);
  return field;
}

/** A whole envelope for the reader: empty text, the conversation field, sealed to it. */
export function sealConversation(message, writerSecretKey, readerPublicKey) {
  return seal({ text: "", conversation: boxConversation(message, writerSecretKey, readerPublicKey) }, readerPublicKey);
}

/**
 * Steps 1 to 5 of SPEC 5.9 on an opened payload ({ text, conversation }): the box's
 * contents, authenticated as written by `writerPublicKey`'s owner to this reader.
 * Returns null for a payload without a conversation field (an ordinary message).
 */
export function openConversationPayload(payload, readerSecretKey) {
  const field = payload.conversation;
  if (field === null || field === undefined) return null;
  if (field.length < MIN_FIELD_BYTES) throw new PayloadError("conversation field is too short");
  if (payload.text !== "") {
    throw new PayloadError("a conversation message must have an empty text field");
  }
  const writerPublicKey = field.slice(0, KEY_BYTES);
  checkPublicKey(writerPublicKey);
  const nonce = field.subarray(KEY_BYTES, KEY_BYTES + NONCE_BYTES);
  const inner = nacl.box.open(field.subarray(KEY_BYTES + NONCE_BYTES), nonce, writerPublicKey, readerSecretKey);
  if (inner === null) {
    throw new ConversationError("not authentic: the conversation box does not open (forged or tampered)");
  }
  let text;
  try {
    text = strictDecoder.decode(inner.subarray(INNER_HEADER));
  } catch {
    throw new PayloadError("conversation text is not valid UTF-8");
  }
  const role = inner[0];
  if (role !== ROLE_RECIPIENT && role !== ROLE_SENDER) throw new PayloadError("unknown conversation role");
  const view = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
  return {
    writerPublicKey,
    role,
    conversationId: inner.slice(1, 1 + CONVERSATION_ID_BYTES),
    seq: view.getUint32(1 + CONVERSATION_ID_BYTES),
    lastSeen: view.getUint32(5 + CONVERSATION_ID_BYTES),
    text,
  };
}

/** openEnvelope, then steps 1-5: { text, conversation: null | {...} }. */
export function openConversationEnvelope(envelope, readerSecretKey) {
  const payload = openEnvelope(envelope, readerSecretKey, { conversations: true });
  const conversation = openConversationPayload(payload, readerSecretKey);
  return { text: conversation ? conversation.text : payload.text, conversation };
}

// ---- reading a conversation in order (SPEC 5.9 steps 6-10) ----

/**
 * What one side knows about one conversation, as plain JSON a page can keep (the same
 * members as the vectors' `conversations` and the Python twin's saved state). `seen`
 * maps each seq read from the peer to the reference (message id) it was read under:
 * the same stored message read again on a later visit is no replay, another is.
 */
export function newConversationState({ ownRole, peerPublicKey, conversationId }) {
  return {
    role: ROLE_NAMES[ownRole],
    peer: b64encode(peerPublicKey),
    id: b64encode(conversationId),
    next_seq: 1, // the seq of this side's next message
    seen: {},
  };
}

export function highestSeen(state) {
  return Object.keys(state.seen).reduce((top, seq) => Math.max(top, Number(seq)), 0);
}

export const highestSent = (state) => state.next_seq - 1;

function reflection() {
  return new ReflectionError("reflection: this message carries your own role (one of yours sent back)");
}

/**
 * Steps 6 to 10 for one opened message (from openConversationPayload) against `state`,
 * which remembers it when it is accepted. Throws ReflectionError,
 * WrongConversationError, ReplayError or PayloadError; returns the flags: `gap`
 * ([first, last] of the peer's seqs skipped, step 9, or null), `claimsUnsent` and
 * `unseenAfter` (step 10), and `again` (the same reference read before).
 */
export function readConversationMessage(state, message, reference = "") {
  if (message.role === ROLES_BY_NAME[state.role]) throw reflection();
  if (b64encode(message.writerPublicKey) !== state.peer || b64encode(message.conversationId) !== state.id) {
    throw new WrongConversationError("this message belongs to another conversation");
  }
  if (message.seq === 0) throw new PayloadError("seq 0 is not a valid sequence number");
  const previous = state.seen[message.seq];
  if (previous !== undefined) {
    if (reference && previous === reference) {
      return { gap: null, claimsUnsent: false, unseenAfter: null, again: true };
    }
    throw new ReplayError(`replay: message #${message.seq} was already read`);
  }
  const top = highestSeen(state);
  const sent = highestSent(state);
  state.seen[message.seq] = reference;
  return {
    gap: message.seq > top + 1 ? [top + 1, message.seq - 1] : null,
    claimsUnsent: message.lastSeen > sent,
    unseenAfter: message.lastSeen < sent ? message.lastSeen : null,
    again: false,
  };
}

/**
 * Steps 6 to 10 for a reader with every conversation of its key in `book` (peer key
 * text -> state). A recipient meeting a new reply key starts a conversation (step 6
 * made sure it is the sender's); a sender's reply key talks only to the inbox key of
 * its link, so any other writer is another conversation. Adds `newConversation`.
 */
export function acceptMessage(book, message, ownRole, reference = "") {
  if (message.role === ownRole) throw reflection();
  const peer = b64encode(message.writerPublicKey);
  let state = book.get(peer);
  if (state === undefined) {
    if (ownRole !== ROLE_RECIPIENT) {
      throw new WrongConversationError("this message is from a key this conversation is not with");
    }
    state = newConversationState({
      ownRole,
      peerPublicKey: message.writerPublicKey,
      conversationId: message.conversationId,
    });
    const reading = readConversationMessage(state, message, reference);
    book.set(peer, state);
    return { ...reading, newConversation: true };
  }
  return { ...readConversationMessage(state, message, reference), newConversation: false };
}

/** The fields of this side's next message; counts it as sent (undo on failure). */
export function nextMessage(state, text) {
  const seq = state.next_seq;
  if (seq > MAX_SEQ) throw new SizeError("this conversation has used every sequence number");
  state.next_seq = seq + 1;
  return {
    role: ROLES_BY_NAME[state.role],
    conversationId: b64decode(state.id),
    seq,
    lastSeen: highestSeen(state),
    text,
  };
}

// ---- the reply link (SPEC 4.6) ----

export const REPLY_PATH = "/reply";

function linkPart(text, length, name) {
  let bytes;
  try {
    bytes = b64decode(text);
  } catch (err) {
    if (err instanceof EncodingError) throw new ReplyLinkError(`the ${name} in the reply link is not base64url`);
    throw err;
  }
  if (bytes.length !== length) throw new ReplyLinkError(`the ${name} in the reply link is not ${length} bytes`);
  return bytes;
}

/** `<origin>/reply#<b64 R_sk>.<b64 I_pk>.<b64 conversation id>`; origin canonical. */
export function buildReplyLink(origin, replySecretKey, inboxPublicKey, conversationId) {
  if (canonicalOrigin(origin) !== origin) throw new ReplyLinkError(`not a canonical origin: ${origin}`);
  checkPublicKey(inboxPublicKey);
  if (replySecretKey.length !== KEY_BYTES || conversationId.length !== CONVERSATION_ID_BYTES) {
    throw new ReplyLinkError("a reply link holds a 32-byte key and a 16-byte conversation id");
  }
  return `${origin}${REPLY_PATH}#${[replySecretKey, inboxPublicKey, conversationId].map(b64encode).join(".")}`;
}

/** Read a reply link: { origin, keyPair, inboxPublicKey, conversationId }. */
export function parseReplyLink(link) {
  if (typeof link !== "string") throw new ReplyLinkError("a reply link is a text");
  const origin = canonicalOrigin(link); // InvalidOriginError for scheme, host, port
  const trimmed = link.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
  const afterAuthority = trimmed.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/, "");
  const hash = afterAuthority.indexOf("#");
  const pathAndQuery = hash < 0 ? afterAuthority : afterAuthority.slice(0, hash);
  const queryAt = pathAndQuery.indexOf("?");
  const path = queryAt < 0 ? pathAndQuery : pathAndQuery.slice(0, queryAt);
  if (path !== REPLY_PATH) throw new ReplyLinkError("a reply link's path is exactly /reply");
  const pieces = (hash < 0 ? "" : afterAuthority.slice(hash + 1)).split(".");
  if (pieces.length !== 3) throw new ReplyLinkError("a reply link's fragment is secret.inbox-key.conversation-id");
  const secretKey = linkPart(pieces[0], KEY_BYTES, "reply key");
  const inboxPublicKey = linkPart(pieces[1], KEY_BYTES, "inbox key");
  const conversationId = linkPart(pieces[2], CONVERSATION_ID_BYTES, "conversation id");
  const keyPair = keyPairFromSecret(secretKey);
  checkPublicKey(keyPair.publicKey);
  checkPublicKey(inboxPublicKey);
  if (b64encode(inboxPublicKey) === b64encode(keyPair.publicKey)) {
    throw new ReplyLinkError("a reply link's inbox key is its own reply key");
  }
  return { origin, keyPair, inboxPublicKey, conversationId };
}

// ---- the reply key file (SPEC 6, the `conversation` member) ----

export function dumpReplyKeyFile({ keyPair, server, inboxPublicKey, conversationId }) {
  const document = JSON.parse(dumpKeyFile({ ...keyPair, server }));
  document.conversation = { with: b64encode(inboxPublicKey), id: b64encode(conversationId) };
  return JSON.stringify(document, null, 2) + "\n";
}

/**
 * A key file, with its conversation when it has one: { publicKey, secretKey, server,
 * conversation: null | { inboxPublicKey, conversationId } }.
 */
export function loadReplyKeyFile(content) {
  const keyFile = loadKeyFile(content); // every rule of an ordinary key file first
  let text = content instanceof Uint8Array ? strictDecoder.decode(content) : content;
  if (text.startsWith("\ufeff")) text = text.slice(1);
  const member = JSON.parse(text).conversation;
  if (member === undefined) return { ...keyFile, conversation: null };
  if (member === null || typeof member !== "object" || Array.isArray(member) ||
      Object.keys(member).length !== 2 || typeof member.with !== "string" || typeof member.id !== "string") {
    throw new KeyFileError('the key file\'s conversation must be {"with": INBOX KEY, "id": CONVERSATION ID}');
  }
  let inboxPublicKey;
  let conversationId;
  try {
    inboxPublicKey = decodePublicKey(member.with);
    conversationId = b64decode(member.id);
  } catch (err) {
    if (err instanceof EncodingError || err instanceof InvalidKeyError) {
      throw new KeyFileError(`the key file's conversation holds a malformed value: ${err.message}`);
    }
    throw err;
  }
  if (conversationId.length !== CONVERSATION_ID_BYTES) {
    throw new KeyFileError(`the key file's conversation id must be ${CONVERSATION_ID_BYTES} bytes`);
  }
  if (b64encode(inboxPublicKey) === b64encode(keyFile.publicKey)) {
    throw new KeyFileError("the key file's conversation is with its own key");
  }
  return { ...keyFile, conversation: { inboxPublicKey, conversationId } };
}

/**
 * What a sender needs to open a conversation: a fresh X25519 reply key pair from the
 * system's random source (independent of any envelope's ephemeral key) and a random
 * 16-byte conversation id.
 */
export function newReplyKey() {
  const { publicKey, secretKey } = nacl.box.keyPair();
  return { publicKey, secretKey, conversationId: nacl.randomBytes(CONVERSATION_ID_BYTES) };
}
