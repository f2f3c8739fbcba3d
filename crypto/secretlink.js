// secretlink v1 envelope, key file and proof of possession, for browsers and node.
//
// crypto/SPEC.md is the normative text; secretlink/crypto/ is the Python twin, and
// both pass the vectors in crypto/vectors/. Primitives come from audited packages:
// tweetnacl (X25519, XSalsa20-Poly1305: libsodium's crypto_box) and @noble/hashes
// (BLAKE2b). Both are pure JavaScript, so this works with WebAssembly and JIT off.

import nacl from "tweetnacl";
import { blake2b } from "@noble/hashes/blake2.js";

export const VERSION = 1;
export const KEY_BYTES = 32;
export const BUCKETS = Object.freeze([256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
export const MAX_PADDED = BUCKETS[BUCKETS.length - 1];
const FIELD_HEADER = 5;
const TAG_TEXT = 0x01;
// The conversation field (SPEC 5.8): critical, so a reader that predates it refuses
// the message instead of showing it without its reply key. crypto/conversation.js
// makes and reads its value; this module only carries it.
export const TAG_CONVERSATION = 0x02;
// The attachments field (SPEC 5.10): critical too. crypto/attachments.js makes and
// reads its value (openMessage, sealMessage); this module only carries it.
const TAG_ATTACHMENTS = 0x03;
const SEAL_BYTES = 48; // ephemeral public key + Poly1305 tag
export const MAX_TEXT_BYTES = MAX_PADDED - 1 - FIELD_HEADER;
export const OVERHEAD = 1 + SEAL_BYTES + 1;
export const MAX_ENVELOPE = OVERHEAD + MAX_PADDED;

const encoder = new TextEncoder();
// fatal: refuse ill-formed UTF-8 instead of replacing it with U+FFFD. ignoreBOM: keep a
// leading U+FEFF, which is part of the sender's text (the default would drop it).
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---- errors: the names match the Python classes and the vectors' `expect` ----

export class SecretlinkCryptoError extends Error {
  get name() {
    return this.constructor.name;
  }
}
export class EncodingError extends SecretlinkCryptoError {}
export class InvalidKeyError extends SecretlinkCryptoError {}
export class VersionError extends SecretlinkCryptoError {}
export class SizeError extends SecretlinkCryptoError {}
export class DecryptError extends SecretlinkCryptoError {}
export class PaddingError extends SecretlinkCryptoError {}
export class PayloadError extends SecretlinkCryptoError {}
export class KeyFileError extends SecretlinkCryptoError {}
export class AuthError extends SecretlinkCryptoError {}
export class InvalidOriginError extends SecretlinkCryptoError {}

// ---- canonical unpadded base64url ----

const B64URL = /^[A-Za-z0-9_-]*$/;

export function b64encode(bytes) {
  // Native where the engine has it (Uint8Array.prototype.toBase64: Chromium 140+,
  // Firefox 133+): fast with or without a JIT.
  if (typeof bytes.toBase64 === "function") {
    return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
  }
  // Otherwise chunks of 32 KiB: one String.fromCharCode call per chunk instead of
  // per byte (an envelope is up to 64 KiB), within engines' argument-count limits.
  const chunks = [];
  for (let i = 0; i < bytes.length; i += 0x8000) {
    chunks.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)));
  }
  return btoa(chunks.join("")).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function b64decode(text) {
  if (typeof text !== "string" || !B64URL.test(text)) {
    throw new EncodingError("not unpadded base64url (allowed: A-Z a-z 0-9 - _)");
  }
  if (text.length % 4 === 1) throw new EncodingError("impossible base64url length");
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  // Re-encoding catches a last character whose unused bits are not zero.
  if (b64encode(bytes) !== text) {
    throw new EncodingError("non-canonical base64url (unused bits are not zero)");
  }
  return bytes;
}

// ---- keys ----

// The canonical u-coordinates of every point of order 1, 2, 4 or 8 on Curve25519 and
// its twist (libsodium's small-order blocklist less the non-canonical entries, which
// the checks below refuse anyway). tweetnacl, unlike libsodium, would accept them.
const LOW_ORDER_POINTS = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function toHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
// 2^255 - 19 in little-endian bytes.
const FIELD_PRIME = Uint8Array.from([0xed, ...new Array(30).fill(0xff), 0x7f]);

function lessThanLE(a, b) {
  for (let i = a.length - 1; i >= 0; i--) {
    if (a[i] !== b[i]) return a[i] < b[i];
  }
  return false;
}

export function checkPublicKey(publicKey) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_BYTES) {
    throw new InvalidKeyError(`public key must be ${KEY_BYTES} bytes`);
  }
  if (publicKey[31] & 0x80) throw new InvalidKeyError("public key has its top bit set (non-canonical)");
  if (!lessThanLE(publicKey, FIELD_PRIME)) {
    throw new InvalidKeyError("public key is not reduced modulo 2^255-19 (non-canonical)");
  }
  // A list lookup, not a scalar multiplication: cheap even without a JIT.
  if (LOW_ORDER_POINTS.includes(toHex(publicKey))) {
    throw new InvalidKeyError("public key has low order");
  }
  return publicKey;
}

export function decodePublicKey(text) {
  if (typeof text !== "string" || text.length !== 43) {
    throw new InvalidKeyError("public key must be 43 base64url characters");
  }
  let raw;
  try {
    raw = b64decode(text);
  } catch (err) {
    throw new InvalidKeyError(`public key: ${err.message}`);
  }
  return checkPublicKey(raw);
}

export function generateKeyPair() {
  const { publicKey, secretKey } = nacl.box.keyPair();
  return { publicKey, secretKey };
}

export function keyPairFromSecret(secretKey) {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_BYTES) {
    throw new InvalidKeyError(`secret key must be ${KEY_BYTES} bytes`);
  }
  return { publicKey: nacl.scalarMult.base(secretKey), secretKey };
}

// ---- payload and padding ----

export function bucketFor(payloadLength) {
  for (const bucket of BUCKETS) if (payloadLength < bucket) return bucket;
  throw new SizeError(`payload of ${payloadLength} bytes exceeds the v1 maximum`);
}

export function encodePayload(message) {
  if (typeof message.text !== "string" || !message.text.isWellFormed()) {
    throw new PayloadError("text is not encodable as UTF-8 (lone surrogate)");
  }
  const text = encoder.encode(message.text);
  const conversation = message.conversation ?? null;
  if (conversation !== null && !(conversation instanceof Uint8Array)) {
    throw new PayloadError("the conversation field must be bytes");
  }
  const files = message.attachmentsField ?? null;
  if (files !== null && !(files instanceof Uint8Array)) {
    throw new PayloadError("the attachments field must be bytes");
  }
  if (conversation !== null && files !== null) {
    throw new PayloadError("a conversation message carries no attachments field");
  }
  const fields = [[TAG_TEXT, text]];
  if (conversation !== null) fields.push([TAG_CONVERSATION, conversation]);
  if (files !== null) fields.push([TAG_ATTACHMENTS, files]);
  const length = fields.reduce((n, [, value]) => n + FIELD_HEADER + value.length, 0);
  // The other fields share the payload with the text (SPEC 5.5, 5.10).
  if (length - FIELD_HEADER > MAX_TEXT_BYTES) {
    throw new SizeError(`message is ${length - FIELD_HEADER} bytes; the limit is ${MAX_TEXT_BYTES}`);
  }
  const payload = new Uint8Array(length);
  const view = new DataView(payload.buffer);
  let at = 0;
  for (const [tag, value] of fields) {
    payload[at] = tag;
    view.setUint32(at + 1, value.length);
    payload.set(value, at + FIELD_HEADER);
    at += FIELD_HEADER + value.length;
  }
  return payload;
}

// `conversations`: the caller reads conversation fields (crypto/conversation.js) and
// gets field 0x02's value back. Any other caller would show a conversation message's
// empty text, so for it 0x02 is an unknown critical field like any other (SPEC 5.9).
// `attachments` likewise: the caller (crypto/attachments.js's openMessage) decodes
// field 0x03's value and shows or saves the files; any other caller would show the
// text without them, so for it 0x03 is an unknown critical field (SPEC 5.10).
export function decodePayload(payload, { conversations = false, attachments = false } = {}) {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const fields = new Map();
  let offset = 0;
  let lastTag = 0;
  while (offset < payload.length) {
    if (payload.length - offset < FIELD_HEADER) throw new PayloadError("truncated field header");
    const tag = payload[offset];
    const length = view.getUint32(offset + 1);
    offset += FIELD_HEADER;
    if (tag <= lastTag) throw new PayloadError("field tags must be strictly increasing and non-zero");
    if (length > payload.length - offset) {
      throw new PayloadError("field length runs past the end of the payload");
    }
    fields.set(tag, payload.subarray(offset, offset + length));
    offset += length;
    lastTag = tag;
  }
  for (const tag of fields.keys()) {
    const known = tag === TAG_TEXT || (conversations && tag === TAG_CONVERSATION)
      || (attachments && tag === TAG_ATTACHMENTS);
    if (tag < 0x80 && !known) {
      const hex = tag.toString(16).padStart(2, "0");
      throw new PayloadError(`unknown critical field 0x${hex}: this message needs a newer secretlink to read it`);
    }
  }
  if (!fields.has(TAG_TEXT)) throw new PayloadError("payload has no text field");
  let text;
  try {
    text = strictDecoder.decode(fields.get(TAG_TEXT));
  } catch {
    throw new PayloadError("text is not valid UTF-8");
  }
  if (fields.has(TAG_CONVERSATION) && fields.has(TAG_ATTACHMENTS)) {
    // The file list would sit outside the conversation's box (SPEC 5.10).
    throw new PayloadError("a conversation message carries no attachments field");
  }
  // The conversation field's value, still sealed in its box: crypto/conversation.js
  // checks it (SPEC 5.9). null when the message is not part of a conversation.
  // attachmentsField: field 0x03's value, not yet checked (crypto/attachments.js
  // decodes it); null when the message has no files or the caller did not ask.
  return {
    text,
    conversation: fields.get(TAG_CONVERSATION) ?? null,
    attachmentsField: fields.get(TAG_ATTACHMENTS) ?? null,
  };
}

// ISO/IEC 7816-4 padding, as libsodium's sodium_pad: 0x80, then zeros to the bucket.
export function pad(payload) {
  const padded = new Uint8Array(bucketFor(payload.length));
  padded.set(payload);
  padded[payload.length] = 0x80;
  return padded;
}

export function unpad(padded) {
  if (!BUCKETS.includes(padded.length)) {
    throw new PaddingError(`padded length ${padded.length} is not a v1 bucket`);
  }
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 0x80) {
    throw new PaddingError("malformed padding (no 0x80 marker followed by zeros)");
  }
  if (bucketFor(end) !== padded.length) {
    throw new PaddingError("padding is longer than the smallest bucket that fits");
  }
  return padded.subarray(0, end);
}

// ---- the envelope ----

export function validateEnvelopeShape(envelope) {
  if (envelope.length === 0) throw new SizeError("envelope is empty");
  if (envelope[0] !== VERSION) throw new VersionError(`unknown envelope version ${envelope[0]}`);
  if (!BUCKETS.some((bucket) => envelope.length === OVERHEAD + bucket)) {
    throw new SizeError(`envelope length ${envelope.length} is not a v1 size`);
  }
}

function sealNonce(ephemeralPublicKey, recipientPublicKey) {
  const input = new Uint8Array(2 * KEY_BYTES);
  input.set(ephemeralPublicKey);
  input.set(recipientPublicKey, KEY_BYTES);
  return blake2b(input, { dkLen: nacl.box.nonceLength });
}

function innerPlaintext(message) {
  if (typeof message === "string") message = { text: message };
  const padded = pad(encodePayload(message));
  const inner = new Uint8Array(1 + padded.length);
  inner[0] = VERSION;
  inner.set(padded, 1);
  return inner;
}

// libsodium's crypto_box_seal is epk || crypto_box(m, blake2b(epk || pk, 24), pk, esk).
// Its costly part, the two X25519 operations (a new ephemeral key, and the shared
// key crypto_box_beforenm derives from it), does not depend on the message, so a
// page can do it ahead of time. A prepared seal seals exactly one message: sealing a
// second with the same ephemeral key and nonce would reuse the XSalsa20 keystream.
export function prepareSeal(recipientPublicKey) {
  checkPublicKey(recipientPublicKey);
  const ephemeral = nacl.box.keyPair();
  const sharedKey = nacl.box.before(recipientPublicKey, ephemeral.secretKey);
  ephemeral.secretKey.fill(0);
  const nonce = sealNonce(ephemeral.publicKey, recipientPublicKey);
  let used = false;
  return {
    seal(message) {
      if (used) throw new SecretlinkCryptoError("a prepared seal seals one message only");
      const inner = innerPlaintext(message); // may refuse the message: the seal stays unused
      used = true;
      const box = nacl.box.after(inner, nonce, sharedKey);
      sharedKey.fill(0);
      const envelope = new Uint8Array(1 + KEY_BYTES + box.length);
      envelope[0] = VERSION;
      envelope.set(ephemeral.publicKey, 1);
      envelope.set(box, 1 + KEY_BYTES);
      return envelope;
    },
  };
}

export function seal(message, recipientPublicKey) {
  return prepareSeal(recipientPublicKey).seal(message);
}

export function openEnvelope(envelope, secretKey, { conversations = false, attachments = false } = {}) {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_BYTES) {
    throw new DecryptError("secret key must be 32 bytes");
  }
  validateEnvelopeShape(envelope);
  const ephemeralPublicKey = envelope.subarray(1, 1 + KEY_BYTES);
  checkPublicKey(ephemeralPublicKey);
  const recipientPublicKey = nacl.scalarMult.base(secretKey);
  const nonce = sealNonce(ephemeralPublicKey, recipientPublicKey);
  const inner = nacl.box.open(envelope.subarray(1 + KEY_BYTES), nonce, ephemeralPublicKey, secretKey);
  if (inner === null) {
    throw new DecryptError("envelope does not open with this key (tampered or not for it)");
  }
  if (inner[0] !== envelope[0]) throw new VersionError("sealed version does not match the envelope version");
  return decodePayload(unpad(inner.subarray(1)), { conversations, attachments });
}

// ---- key file ----

export const KEY_FILE_FORMAT = "secretlink-key";
export const KEY_FILE_VERSION = 1;
export const MAX_KEY_FILE_BYTES = 4096;

export function dumpKeyFile({ secretKey, publicKey, server }) {
  const document = {
    format: KEY_FILE_FORMAT,
    version: KEY_FILE_VERSION,
    public_key: b64encode(publicKey),
    secret_key: b64encode(secretKey),
  };
  if (server) document.server = server;
  return JSON.stringify(document, null, 2) + "\n";
}

// An origin exactly as SPEC section 7.5 writes it (a key file's `server`): one that
// normalises, and to itself.
export function isOrigin(text) {
  try {
    return canonicalOrigin(text) === text;
  } catch (err) {
    if (err instanceof InvalidOriginError) return false;
    throw err;
  }
}

// JSON.parse keeps the last of two members with the same name; a key file must not
// have such a pair (one reader could take the first, another the last). The text is
// valid JSON when this runs, so strings and punctuation are all it needs to see.
function repeatedMemberName(text) {
  const names = [];
  let lastString = null;
  for (const [token] of text.matchAll(/"(?:[^"\\]|\\.)*"|[{}[\]:]/g)) {
    if (token === "{") names.push(new Set());
    else if (token === "[") names.push(null);
    else if (token === "}" || token === "]") names.pop();
    else if (token === ":") {
      const seen = names[names.length - 1];
      if (seen.has(lastString)) return lastString;
      seen.add(lastString);
    } else lastString = JSON.parse(token);
  }
  return null;
}

// Arrays and objects nest at most this deep (SPEC section 6; the file's own object is
// level 1): a deeper file is valid for one JSON parser and too deep for another.
export const MAX_KEY_FILE_NESTING = 32;

function nesting(text) {
  let depth = 0;
  let deepest = 0;
  for (const [token] of text.matchAll(/"(?:[^"\\]|\\.)*"|[{}[\]]/g)) {
    if (token === "{" || token === "[") deepest = Math.max(deepest, ++depth);
    else if (token === "}" || token === "]") depth--;
  }
  return deepest;
}

// Strict RFC 8259 JSON (SPEC section 6) from a file's bytes (a Uint8Array, as read from
// disk) or its text: at most `maxBytes` UTF-8 bytes, one byte-order mark skipped, no
// repeated member names, nesting at most MAX_KEY_FILE_NESTING deep. Failures throw
// `ErrorClass`, saying the content is not `what`. Also used by protected-key.js.
export function parseStrictJson(content, { maxBytes, ErrorClass = KeyFileError, what = "a secretlink key file" } = {}) {
  const bytes = content instanceof Uint8Array ? content : null;
  if (bytes === null && (typeof content !== "string" || !content.isWellFormed())) {
    throw new ErrorClass(`not ${what} (not UTF-8 text)`);
  }
  if (maxBytes !== undefined && (bytes ?? encoder.encode(content)).length > maxBytes) {
    throw new ErrorClass(`the file is too large to be ${what}`);
  }
  let text = content;
  if (bytes !== null) {
    try {
      text = strictDecoder.decode(bytes); // keeps a byte-order mark: skipped just below
    } catch {
      throw new ErrorClass(`not ${what} (not UTF-8)`);
    }
  }
  // One byte-order mark is skipped (File.text() drops it too; a string may still have it).
  if (text.startsWith("\ufeff")) text = text.slice(1);
  if (nesting(text) > MAX_KEY_FILE_NESTING) {
    throw new ErrorClass(`not ${what} (nested over ${MAX_KEY_FILE_NESTING} deep)`);
  }
  let document;
  try {
    document = JSON.parse(text); // RFC 8259: NaN and Infinity are already refused
  } catch {
    throw new ErrorClass(`not ${what} (not JSON)`);
  }
  if (repeatedMemberName(text) !== null) {
    throw new ErrorClass(`not ${what} (an object has two members with the same name)`);
  }
  return document;
}

// `content` is the file's bytes (a Uint8Array, as read from disk) or its text.
export function loadKeyFile(content) {
  return keyFileFromDocument(parseStrictJson(content, { maxBytes: MAX_KEY_FILE_BYTES }));
}

// Rules 3 to 9 of SPEC section 6 on a parsed key file (also one inside a bundle, 6a).
export function keyFileFromDocument(document) {
  if (document === null || typeof document !== "object" || Array.isArray(document) ||
      document.format !== KEY_FILE_FORMAT) {
    throw new KeyFileError("not a secretlink key file (format is not secretlink-key)");
  }
  // The number 1, however written (1.0 is the same JSON number); never true or "1".
  if (document.version !== KEY_FILE_VERSION) {
    throw new KeyFileError(`unsupported key file version ${JSON.stringify(document.version)}`);
  }
  let keyPair;
  let publicKey;
  try {
    keyPair = keyPairFromSecret(b64decode(document.secret_key));
    publicKey = b64decode(document.public_key);
  } catch (err) {
    throw new KeyFileError(`key file holds a malformed key: ${err.message}`);
  }
  if (b64encode(publicKey) !== b64encode(keyPair.publicKey)) {
    throw new KeyFileError("key file's public key does not belong to its secret key");
  }
  if (document.server !== undefined && document.server !== null && typeof document.server !== "string") {
    throw new KeyFileError("key file's server must be a string");
  }
  if (document.server && !isOrigin(document.server)) {
    throw new KeyFileError("key file's server must be an origin such as https://host or " +
      "http://host:8000 (lower case, no path, no default port)");
  }
  return { ...keyPair, server: document.server || null };
}

// ---- proof of possession ----

const AUTH_PURPOSE = encoder.encode("secretlink/v1/auth");
const AUTH_KEY_PURPOSE = encoder.encode("secretlink/v1/auth-key");

// ---- origins (SPEC section 7.5) ----

const DEFAULT_PORTS = { http: 80, https: 443 };
export const MAX_HOST_LENGTH = 253;
// "https://" + the longest host + ":65535": no canonical origin is longer.
export const MAX_ORIGIN_LENGTH = "https://".length + MAX_HOST_LENGTH + ":65535".length;

const URL_PARTS = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([/?#][\s\S]*)?$/;
const PORT = /^[0-9]{1,5}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const NUMERIC_LAST_LABEL = /^(0[xX][0-9a-fA-F]*|[0-9]+)$/;
const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;
// Characters that end, split or escape a host in some parser: refused, not guessed at.
const NOT_IN_HOST = /[\x00-\x20\x7f@%\\/?#[\]:<>^|"'`{}]/;
const NAME_CHARACTERS = /^[\p{L}\p{M}\p{N}.-]+$/u;

function originError(message) {
  return new InvalidOriginError(message);
}

function parsePort(text) {
  if (text === null) return null;
  if (!PORT.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw originError("the port must be a number from 1 to 65535");
  }
  return Number(text);
}

function hostName(name) {
  if (name === "") throw originError("the host is empty");
  if (NOT_IN_HOST.test(name) || !NAME_CHARACTERS.test(name)) {
    throw originError("the host holds a character no host name may hold");
  }
  const last = name.replace(/\.+$/, "").split(".").pop();
  if (NUMERIC_LAST_LABEL.test(last)) {
    // Browsers read any name ending in a number as IPv4 (127.1, 0x7f.1): only the plain form.
    if (!IPV4.test(name)) throw originError("a host ending in a number must be an IPv4 address such as 192.0.2.1");
    return name;
  }
  let ascii;
  try {
    // The URL parser maps with UTS 46, non-transitional, as section 7.5 requires.
    ascii = new URL(`http://${name}/`).hostname;
  } catch {
    throw originError("the host is not a valid (internationalized) name");
  }
  const labels = ascii.split(".");
  const badHyphens = (label) => label.slice(2, 4) === "--" && !label.startsWith("xn--");
  if (ascii.length > MAX_HOST_LENGTH || !labels.every((label) => LABEL.test(label) && !badHyphens(label))) {
    throw originError(`the host must be letters, digits and hyphens in labels of 1 to 63, at most ${MAX_HOST_LENGTH} in all`);
  }
  if (ascii !== name.toLowerCase() && !validUnicodeLabels(name)) {
    throw originError("the host is not a valid (internationalized) name");
  }
  // Mapped to a number (`²` is `2`): the URL parser has read it as an IPv4 address.
  if (NUMERIC_LAST_LABEL.test(labels[labels.length - 1])) {
    throw originError("a host ending in a number must be an IPv4 address");
  }
  return ascii;
}

// IDNA2008's rules for a label before its xn-- encoding (RFC 5891 section 4.2.3.1 and
// 4.2.3.2), which the URL parser does not apply: no hyphen at either end or in the
// third and fourth place, no combining mark first. NFKC and lower case stand in for
// the UTS 46 mapping, which agrees with them for these checks.
function validUnicodeLabels(name) {
  return name
    .normalize("NFKC")
    .toLowerCase()
    .split(".")
    .every((label) =>
      /^[\x00-\x7f]*$/.test(label) ||
      (!label.startsWith("-") && !label.endsWith("-") && label.slice(2, 4) !== "--" && !/^\p{M}/u.test(label)));
}

function ipv6(text) {
  if (text.includes("%")) throw originError("an IPv6 address in an origin cannot have a zone");
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) throw originError("not a valid IPv6 address");
  try {
    return new URL(`http://[${text}]/`).hostname;
  } catch {
    throw originError("not a valid IPv6 address");
  }
}

export function parseAuthority(authority) {
  let host;
  let portText = null;
  if (authority.startsWith("[")) {
    const end = authority.indexOf("]");
    if (end < 0) throw originError("an IPv6 address must be closed with ']'");
    host = ipv6(authority.slice(1, end));
    const after = authority.slice(end + 1);
    if (after && !after.startsWith(":")) throw originError("only ':PORT' may follow an IPv6 address");
    if (after) portText = after.slice(1);
  } else {
    const colon = authority.indexOf(":");
    host = hostName(colon < 0 ? authority : authority.slice(0, colon));
    if (colon >= 0) portText = authority.slice(colon + 1);
  }
  return [host, parsePort(portText)];
}

/** The origin `scheme://host[:port]` of an http(s) URL, normalised as SPEC section 7.5 says. */
export function canonicalOrigin(url) {
  if (typeof url !== "string") throw originError("an origin must be text");
  const match = URL_PARTS.exec(url.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, ""));
  if (!match) throw originError("not a URL of the form http(s)://HOST[:PORT]");
  const scheme = match[1].toLowerCase();
  if (!(scheme in DEFAULT_PORTS)) throw originError("the scheme must be http or https");
  const [host, port] = parseAuthority(match[2]);
  return port === null || port === DEFAULT_PORTS[scheme] ? `${scheme}://${host}` : `${scheme}://${host}:${port}`;
}

export function authTranscript(publicKey, serverKey, nonce, expiresAt, origin) {
  if (typeof origin !== "string" || !/^[\x20-\x7e]*$/.test(origin) || origin.length > MAX_ORIGIN_LENGTH) {
    throw new AuthError(`origin must be printable ASCII of at most ${MAX_ORIGIN_LENGTH} characters`);
  }
  if (nonce.length !== 32) throw new AuthError("nonce must be 32 bytes");
  if (publicKey.length !== KEY_BYTES || serverKey.length !== KEY_BYTES) {
    throw new AuthError(`keys in the transcript must be ${KEY_BYTES} bytes`);
  }
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
    throw new AuthError("expiry must be a whole number of seconds from 0 to 2^53 - 1");
  }
  const originBytes = encoder.encode(origin);
  const out = new Uint8Array(AUTH_PURPOSE.length + 1 + 96 + 8 + 2 + originBytes.length);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(AUTH_PURPOSE, at);
  at += AUTH_PURPOSE.length + 1; // followed by one zero byte
  for (const part of [publicKey, serverKey, nonce]) {
    out.set(part, at);
    at += part.length;
  }
  view.setBigUint64(at, BigInt(expiresAt));
  view.setUint16(at + 8, originBytes.length);
  out.set(originBytes, at + 10);
  return out;
}

export function proveInbox(secretKey, serverKey, nonce, expiresAt, origin) {
  checkPublicKey(serverKey);
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_BYTES) {
    throw new AuthError(`secret key must be ${KEY_BYTES} bytes`);
  }
  const shared = nacl.scalarMult(secretKey, serverKey);
  const macKey = blake2b(AUTH_KEY_PURPOSE, { dkLen: 32, key: shared });
  const publicKey = nacl.scalarMult.base(secretKey);
  return blake2b(authTranscript(publicKey, serverKey, nonce, expiresAt, origin), {
    dkLen: 32,
    key: macKey,
  });
}

// The answer to a challenge as the server sent it (its JSON members, SPEC section 7.3):
// `server_key` is a public-key text (InvalidKeyError), `nonce` canonical base64url
// (AuthError; its length is checked with the transcript), `expires_at` a whole number
// of seconds from 0 to 2^53 - 1 (AuthError, in authTranscript).
export function proveChallenge(secretKey, challenge, origin) {
  if (challenge === null || typeof challenge !== "object") {
    throw new AuthError("the challenge is not a JSON object");
  }
  const serverKey = decodePublicKey(challenge.server_key);
  let nonce;
  try {
    nonce = b64decode(challenge.nonce);
  } catch {
    throw new AuthError("the challenge's nonce is not canonical base64url");
  }
  return proveInbox(secretKey, serverKey, nonce, challenge.expires_at, origin);
}
