// The protected key file (crypto/SPEC.md section 6a): a key file, or a bundle of several
// with the browser's per-inbox state, under a passphrase. The Python twin is
// secretlink/crypto/protected_keyfile.py; both pass crypto/vectors/protected_key.json.
//
// Argon2id from @noble/hashes and XChaCha20-Poly1305 from @noble/ciphers: audited, pure
// JavaScript, so this runs with WebAssembly and the JIT off (Tor Browser's Safer level).

import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { argon2idAsync } from "@noble/hashes/argon2.js";
import {
  KEY_FILE_FORMAT,
  KeyFileError,
  SecretlinkCryptoError,
  b64decode,
  b64encode,
  keyFileFromDocument,
  loadKeyFile,
  parseStrictJson,
} from "./secretlink.js";

export const PROTECTED_FORMAT = "secretlink-protected-key";
export const PROTECTED_VERSION = 1;
export const BUNDLE_FORMAT = "secretlink-key-bundle";
export const BUNDLE_VERSION = 1;
export const KDF = "argon2id";
export const CIPHER = "xchacha20poly1305-ietf";
const PURPOSE = new TextEncoder().encode("secretlink/v1/protected-key");
const ARGON2_VERSION = 0x13;
const LANES = 1;
export const SALT_BYTES = 16;
export const NONCE_BYTES = 24;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

// What readers accept (SPEC 6a.2): below, a stolen file is cheap to guess at; above, a
// file could make this device spend minutes and a gibibyte before trying the passphrase.
export const MIN_MEMORY_KIB = 19456;
export const MAX_MEMORY_KIB = 1024 * 1024;
export const MIN_PASSES = 2;
export const MAX_PASSES = 16;
export const DEFAULT_MEMORY_KIB = 64 * 1024;
export const DEFAULT_PASSES = 3;
export const MAX_FILE_BYTES = 1024 * 1024;
export const MAX_PASSPHRASE_BYTES = 1024;
export const MIN_PASSPHRASE_CHARS = 10;

const WHAT = "a secretlink protected key file";
const encoder = new TextEncoder();

export class ProtectedKeyError extends SecretlinkCryptoError {}
export class PassphraseError extends SecretlinkCryptoError {}

function checkCost(memoryKib, passes) {
  if (!Number.isInteger(memoryKib) || memoryKib < MIN_MEMORY_KIB || memoryKib > MAX_MEMORY_KIB) {
    throw new ProtectedKeyError(`Argon2id memory must be a whole number from ${MIN_MEMORY_KIB} ` +
      `to ${MAX_MEMORY_KIB} KiB, not ${JSON.stringify(memoryKib)}`);
  }
  if (!Number.isInteger(passes) || passes < MIN_PASSES || passes > MAX_PASSES) {
    throw new ProtectedKeyError(`Argon2id passes must be a whole number from ${MIN_PASSES} to ` +
      `${MAX_PASSES}, not ${JSON.stringify(passes)}`);
  }
}

// Every header value in a fixed layout (SPEC 6a.2): changing any of them fails the tag.
export function associatedData({ memoryKib, passes, salt, nonce }) {
  const fixed = new Uint8Array(20);
  const view = new DataView(fixed.buffer);
  [PROTECTED_VERSION, ARGON2_VERSION, LANES, memoryKib, passes].forEach((value, i) =>
    view.setUint32(4 * i, value, false));
  const out = new Uint8Array(PURPOSE.length + 1 + fixed.length + salt.length + nonce.length);
  out.set(PURPOSE, 0);
  out.set(fixed, PURPOSE.length + 1); // the 0x00 separator is already zero
  out.set(salt, PURPOSE.length + 1 + fixed.length);
  out.set(nonce, PURPOSE.length + 1 + fixed.length + salt.length);
  return out;
}

// NFC, then UTF-8: the same passphrase typed on another system gives the same bytes.
// null for a text no writer can have used (a lone surrogate).
export function passphraseBytes(passphrase) {
  if (typeof passphrase !== "string" || !passphrase.isWellFormed()) return null;
  return encoder.encode(passphrase.normalize("NFC"));
}

// Argon2id, version 0x13, one lane, 32 bytes. onProgress(fraction) now and then.
export function deriveKey(secret, { memoryKib, passes, salt }, onProgress = () => {}) {
  return argon2idAsync(secret, salt, {
    t: passes, m: memoryKib, p: LANES, version: ARGON2_VERSION, dkLen: KEY_BYTES,
    maxmem: (MAX_MEMORY_KIB + 1) * 1024, asyncTick: 50, onProgress,
  });
}

// ---- writing ----

// A writer's checks (SPEC 6a.4); returns the passphrase's bytes.
export function checkNewPassphrase(passphrase) {
  if (typeof passphrase !== "string" || passphrase === "") {
    throw new ProtectedKeyError("the passphrase is empty");
  }
  const secret = passphraseBytes(passphrase);
  if (secret === null) throw new ProtectedKeyError("the passphrase is not valid Unicode text");
  if ([...passphrase.normalize("NFC")].length < MIN_PASSPHRASE_CHARS) {
    throw new ProtectedKeyError(`the passphrase is too short: use at least ${MIN_PASSPHRASE_CHARS} ` +
      "characters (several unrelated words are easy to remember and hard to guess)");
  }
  if (secret.length > MAX_PASSPHRASE_BYTES) {
    throw new ProtectedKeyError(`the passphrase is longer than ${MAX_PASSPHRASE_BYTES} bytes`);
  }
  return secret;
}

const random = (length) => crypto.getRandomValues(new Uint8Array(length));

// The protected file (its text) of `contents` (bytes of a key file or a bundle).
export async function protect(contents, passphrase, {
  memoryKib = DEFAULT_MEMORY_KIB, passes = DEFAULT_PASSES, onProgress,
} = {}) {
  checkCost(memoryKib, passes);
  const secret = checkNewPassphrase(passphrase);
  const header = { memoryKib, passes, salt: random(SALT_BYTES), nonce: random(NONCE_BYTES) };
  const key = await deriveKey(secret, header, onProgress);
  const ciphertext = xchacha20poly1305(key, header.nonce, associatedData(header)).encrypt(contents);
  key.fill(0);
  const text = JSON.stringify({
    format: PROTECTED_FORMAT,
    version: PROTECTED_VERSION,
    kdf: KDF,
    memory_kib: memoryKib,
    passes,
    salt: b64encode(header.salt),
    cipher: CIPHER,
    nonce: b64encode(header.nonce),
    ciphertext: b64encode(ciphertext),
  }, null, 2) + "\n";
  if (encoder.encode(text).length > MAX_FILE_BYTES) {
    throw new ProtectedKeyError(`the protected file would be larger than ${MAX_FILE_BYTES} bytes`);
  }
  return text;
}

// A bundle's text (SPEC 6a.3): `inboxes` is [{ keyFile: { publicKey, secretKey, server },
// state }], state a plain object of the browser's per-inbox values (may be empty);
// `device` the browser's values that belong to no one inbox (may be empty).
export function dumpBundle(inboxes, device = {}) {
  return JSON.stringify({
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    ...(Object.keys(device).length ? { device } : {}),
    inboxes: inboxes.map(({ keyFile, state }) => {
      const key = {
        format: KEY_FILE_FORMAT,
        version: 1,
        public_key: b64encode(keyFile.publicKey),
        secret_key: b64encode(keyFile.secretKey),
      };
      if (keyFile.server) key.server = keyFile.server;
      return state && Object.keys(state).length ? { key, state } : { key };
    }),
  }, null, 2) + "\n";
}

// ---- reading ----

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// Whether `content` says it is a protected file (it may still be a malformed one).
export function isProtected(content) {
  try {
    const document = parseStrictJson(content, { maxBytes: MAX_FILE_BYTES, ErrorClass: ProtectedKeyError, what: WHAT });
    return isObject(document) && document.format === PROTECTED_FORMAT;
  } catch (err) {
    if (err instanceof ProtectedKeyError) return false;
    throw err;
  }
}

function decoded(document, name, length, atLeast = 0) {
  let value;
  try {
    value = b64decode(document[name]);
  } catch (err) {
    throw new ProtectedKeyError(`the protected file's ${name} is not base64url: ${err.message}`);
  }
  if (length !== null && value.length !== length) {
    throw new ProtectedKeyError(`the protected file's ${name} is not ${length} bytes`);
  }
  if (value.length < atLeast) {
    throw new ProtectedKeyError(`the protected file's ${name} is shorter than ${atLeast} bytes`);
  }
  return value;
}

// Steps 1 to 11 of SPEC 6a.5: everything but the passphrase, before any work.
// `content` is the file's bytes (Uint8Array) or its text.
export function readHeader(content) {
  const document = parseStrictJson(content, { maxBytes: MAX_FILE_BYTES, ErrorClass: ProtectedKeyError, what: WHAT });
  if (!isObject(document) || document.format !== PROTECTED_FORMAT) {
    throw new ProtectedKeyError(`not ${WHAT} (format is not ${PROTECTED_FORMAT})`);
  }
  if (document.version !== PROTECTED_VERSION) {
    throw new ProtectedKeyError(`unsupported protected key file version ${JSON.stringify(document.version)}`);
  }
  if (document.kdf !== KDF) throw new ProtectedKeyError(`the protected file's kdf is not ${KDF}`);
  const { memory_kib: memoryKib, passes } = document;
  if (!Number.isInteger(memoryKib) || memoryKib < MIN_MEMORY_KIB || memoryKib > MAX_MEMORY_KIB) {
    throw new ProtectedKeyError(`the protected file's memory_kib must be a whole number from ` +
      `${MIN_MEMORY_KIB} to ${MAX_MEMORY_KIB}, not ${JSON.stringify(memoryKib)}`);
  }
  if (!Number.isInteger(passes) || passes < MIN_PASSES || passes > MAX_PASSES) {
    throw new ProtectedKeyError(`the protected file's passes must be a whole number from ` +
      `${MIN_PASSES} to ${MAX_PASSES}, not ${JSON.stringify(passes)}`);
  }
  const salt = decoded(document, "salt", SALT_BYTES);
  if (document.cipher !== CIPHER) throw new ProtectedKeyError(`the protected file's cipher is not ${CIPHER}`);
  const nonce = decoded(document, "nonce", NONCE_BYTES);
  const ciphertext = decoded(document, "ciphertext", null, TAG_BYTES);
  return { memoryKib, passes, salt, nonce, ciphertext };
}

// Steps 12 and 13: derive the key and open the contents (their bytes).
export async function openHeader(header, passphrase, onProgress) {
  const wrong = () => new PassphraseError("wrong passphrase (or the file was altered)");
  const secret = passphrase === "" ? null : passphraseBytes(passphrase);
  if (secret === null || secret.length > MAX_PASSPHRASE_BYTES) throw wrong();
  const key = await deriveKey(secret, header, onProgress);
  try {
    return xchacha20poly1305(key, header.nonce, associatedData(header)).decrypt(header.ciphertext);
  } catch {
    throw wrong();
  } finally {
    key.fill(0);
  }
}

// Known state members and their types (SPEC 6a.3); a known member of another type is
// dropped (the key matters more than its label), unknown ones are kept as given for
// later features.
const isString = (item) => typeof item === "string";
const isStrings = (item) => Array.isArray(item) && item.every(isString);
const KNOWN_STATE = { prompt: isString, saved_at: isString, read: isStrings };
const KNOWN_DEVICE = { muted: isStrings };

function stateOf(value, known = KNOWN_STATE, what = "inbox state") {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new ProtectedKeyError(`the backup's ${what} is not a JSON object`);
  return Object.fromEntries(Object.entries(value).filter(([name, item]) =>
    !Object.hasOwn(known, name) || known[name](item)));
}

function parseBundle(document) {
  if (document.version !== BUNDLE_VERSION) {
    throw new ProtectedKeyError(`unsupported key bundle version ${JSON.stringify(document.version)}`);
  }
  if (!Array.isArray(document.inboxes) || document.inboxes.length === 0) {
    throw new ProtectedKeyError("the key bundle's inboxes must be a non-empty array");
  }
  const seen = new Set();
  const inboxes = document.inboxes.map((entry) => {
    if (!isObject(entry)) throw new ProtectedKeyError("an inbox in the key bundle is not a JSON object");
    let keyFile;
    try {
      keyFile = keyFileFromDocument(entry.key);
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      throw new ProtectedKeyError(`an inbox in the key bundle: ${err.message}`);
    }
    const publicKey = b64encode(keyFile.publicKey);
    if (seen.has(publicKey)) throw new ProtectedKeyError("the key bundle holds the same inbox twice");
    seen.add(publicKey);
    return { keyFile, state: stateOf(entry.state) };
  });
  return { kind: "bundle", inboxes, device: stateOf(document.device, KNOWN_DEVICE, "device state") };
}

// Step 14: the opened contents are a key file (SPEC 6) or a bundle. Either way the
// answer is { kind: "key" | "bundle", inboxes: [{ keyFile, state }], device }.
export function parseContents(contents) {
  const document = parseStrictJson(contents, { ErrorClass: ProtectedKeyError, what: "a key file or key bundle" });
  const kind = isObject(document) ? document.format : undefined;
  if (kind === KEY_FILE_FORMAT) {
    try {
      return { kind: "key", inboxes: [{ keyFile: loadKeyFile(contents), state: {} }], device: {} };
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      throw new ProtectedKeyError(`the protected file holds a broken key file: ${err.message}`);
    }
  }
  if (kind === BUNDLE_FORMAT) return parseBundle(document);
  throw new ProtectedKeyError("the protected file holds neither a key file nor a key bundle");
}

// Read a protected key file with its passphrase (every step of SPEC 6a.5).
export async function loadProtected(content, passphrase, onProgress) {
  return parseContents(await openHeader(readHeader(content), passphrase, onProgress));
}
