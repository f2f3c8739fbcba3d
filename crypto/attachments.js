// Attachments: the payload field that lists a message's files (tag 0x03), and each
// file's encrypted blob. crypto/SPEC.md sections 5.10 and 5.11 are the normative text;
// secretlink/crypto/attachments.py is the Python twin, and both pass
// crypto/vectors/attachments.json.
//
// The ciphers are WebCrypto's (crypto.subtle: AES-256-GCM, AES-CTR, HKDF-SHA-256):
// native code in every browser, fast without a JIT and without WebAssembly. Both
// directions stream and hold at most one 64 KiB chunk, whatever the file's size.

import {
  DecryptError, PaddingError, PayloadError, SizeError, openEnvelope, seal,
} from "./secretlink.js";

export const TAG_ATTACHMENTS = 0x03;
export const CHUNK_SIZE = 65536;
export const GCM_TAG_BYTES = 16;
export const BLOB_ID_BYTES = 16;
export const FILE_KEY_BYTES = 32;
export const MAX_FILES = 32;
export const MAX_NAME_BYTES = 255;
export const MAX_MEDIA_TYPE_BYTES = 255;
export const MAX_TOTAL_SIZE = 2 ** 40; // 1 TiB, per file and per message
export const DEFAULT_MEDIA_TYPE = "application/octet-stream";
const MAX_MEDIA_PART = 127;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const STREAM_PURPOSE = encoder.encode("secretlink/v1/attachment-stream");
const PADDING_PURPOSE = encoder.encode("secretlink/v1/attachment-padding");

// WebCrypto exists only in secure contexts (HTTPS, .onion in Tor Browser, localhost):
// say so instead of failing on an undefined property.
function webCrypto() {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("attachments need WebCrypto, which this page has only over HTTPS");
  return subtle;
}

// ---- sizes ----

const bitLength = (n) => (n === 0 ? 0 : Math.floor(Math.log2(n)) + 1);

// Exact for the integers used here (below 2^53): Math.log2 of a power of two is exact,
// and the check corrects the rare rounding just below one.
function floorLog2(n) {
  let e = Math.floor(Math.log2(n));
  if (2 ** e > n) e -= 1;
  if (2 ** (e + 1) <= n) e += 1;
  return e;
}

/** Padmé (Nikitin et al., PETS 2019) of a length >= 2: only the top bits may vary. */
export function padme(length) {
  if (!Number.isSafeInteger(length) || length < 2) throw new RangeError("Padmé needs a length >= 2");
  const exponent = floorLog2(length);
  const significant = bitLength(exponent);
  const unit = 2 ** (exponent - significant);
  return Math.ceil(length / unit) * unit;
}

export const chunkCount = (size) => Math.max(1, Math.ceil(size / CHUNK_SIZE));
export const ciphertextLength = (size) => size + GCM_TAG_BYTES * chunkCount(size);
export const paddedLength = (size) => padme(ciphertextLength(size));

// ---- names and media types ----

const isControl = (code) => code < 0x20 || (code >= 0x7f && code <= 0x9f);

function nameProblem(name) {
  if (typeof name !== "string") return "a file name is text";
  if (name === "" || name === "." || name === "..") return "a file name must not be empty, '.' or '..'";
  for (const char of name) {
    const code = char.codePointAt(0);
    if (isControl(code)) return "a file name must not contain control characters";
    if (char === "/" || char === "\\") return "a file name must not contain '/' or '\\'";
    if (code >= 0xd800 && code <= 0xdfff) return "a file name must be valid Unicode (lone surrogate)";
  }
  if (encoder.encode(name).length > MAX_NAME_BYTES) return `a file name is at most ${MAX_NAME_BYTES} bytes`;
  return null;
}

const MEDIA_PART = /^[a-z0-9][a-z0-9!#$&\-^_.+]*$/;

function mediaTypeProblem(mediaType) {
  if (typeof mediaType !== "string" || mediaType.length < 1 || mediaType.length > MAX_MEDIA_TYPE_BYTES) {
    return `a media type has 1 to ${MAX_MEDIA_TYPE_BYTES} characters`;
  }
  const parts = mediaType.split("/");
  if (parts.length !== 2) return "a media type is type/subtype";
  for (const part of parts) {
    if (part.length > MAX_MEDIA_PART || !MEDIA_PART.test(part)) {
      return "a media type part is 1 to 127 lower-case RFC 6838 name characters";
    }
  }
  return null;
}

/** What a writer puts in the field for a file called `name` (SPEC 5.10, writer). */
export function cleanName(name) {
  let cleaned = "";
  for (const char of String(name)) {
    const code = char.codePointAt(0);
    if (isControl(code) || char === "/" || char === "\\") cleaned += "_";
    else if (code >= 0xd800 && code <= 0xdfff) cleaned += "\ufffd";
    else cleaned += char;
  }
  if (cleaned === "") return "file";
  if (cleaned === "." || cleaned === "..") return "_".repeat(cleaned.length);
  if (encoder.encode(cleaned).length <= MAX_NAME_BYTES) return cleaned;
  const dot = cleaned.lastIndexOf(".");
  let suffix = dot > 0 ? cleaned.slice(dot) : "";
  if (encoder.encode(suffix).length > 32) suffix = "";
  const stem = cleaned.slice(0, cleaned.length - suffix.length);
  const room = MAX_NAME_BYTES - encoder.encode(suffix).length;
  let shortened = "";
  let used = 0;
  for (const char of stem) {
    const bytes = encoder.encode(char).length;
    if (used + bytes > room) break;
    shortened += char;
    used += bytes;
  }
  return shortened + suffix;
}

/** The field's spelling of a media type (lower case, no parameters), or application/octet-stream. */
export function cleanMediaType(mediaType) {
  const candidate = String(mediaType).split(";", 1)[0].trim();
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(candidate)) return DEFAULT_MEDIA_TYPE;
  const lower = candidate.toLowerCase();
  return mediaTypeProblem(lower) ? DEFAULT_MEDIA_TYPE : lower;
}

// ---- the field ----

function checkBytes(value, length, what) {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new PayloadError(`${what} is ${length} bytes`);
  }
}

/**
 * One entry of the field, checked: {blobId, fileKey, name, mediaType, size, chunkSize,
 * paddedLength}. Throws PayloadError for anything a reader would refuse.
 */
export function makeAttachment({ blobId, fileKey, name, mediaType, size }) {
  checkBytes(blobId, BLOB_ID_BYTES, "a blob id");
  checkBytes(fileKey, FILE_KEY_BYTES, "a file key");
  const problem = nameProblem(name) ?? mediaTypeProblem(mediaType);
  if (problem) throw new PayloadError(problem);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_TOTAL_SIZE) {
    throw new PayloadError(`a file has 0 to ${MAX_TOTAL_SIZE} bytes`);
  }
  return Object.freeze({
    blobId: Uint8Array.from(blobId),
    fileKey: Uint8Array.from(fileKey),
    name,
    mediaType,
    size,
    chunkSize: CHUNK_SIZE,
    chunkCount: chunkCount(size),
    ciphertextLength: ciphertextLength(size),
    paddedLength: paddedLength(size),
  });
}

/** A fresh entry for one upload attempt: random blob id and file key (never reused). */
export function newAttachment({ name, mediaType, size }) {
  return makeAttachment({
    blobId: crypto.getRandomValues(new Uint8Array(BLOB_ID_BYTES)),
    fileKey: crypto.getRandomValues(new Uint8Array(FILE_KEY_BYTES)),
    name,
    mediaType,
    size,
  });
}

const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function checkList(files) {
  if (files.length < 1 || files.length > MAX_FILES) {
    throw new PayloadError(`an attachments field lists 1 to ${MAX_FILES} files`);
  }
  if (new Set(files.map((f) => hexOf(f.blobId))).size !== files.length) {
    throw new PayloadError("two attachments name the same blob");
  }
  if (files.reduce((sum, f) => sum + f.size, 0) > MAX_TOTAL_SIZE) {
    throw new PayloadError(`a message's files have at most ${MAX_TOTAL_SIZE} bytes in all`);
  }
}

/** The value of payload field 0x03 for a list of entries (plain objects are checked). */
export function encodeAttachments(files) {
  if (!Array.isArray(files)) throw new PayloadError("an attachments field lists entries");
  const entries = files.map((f) => makeAttachment(f));
  checkList(entries);
  const parts = [Uint8Array.of(entries.length)];
  for (const entry of entries) {
    const name = encoder.encode(entry.name);
    const mediaType = encoder.encode(entry.mediaType);
    const tail = new DataView(new ArrayBuffer(20));
    tail.setBigUint64(0, BigInt(entry.size));
    tail.setUint32(8, CHUNK_SIZE);
    tail.setBigUint64(12, BigInt(entry.paddedLength));
    parts.push(entry.blobId, entry.fileKey, Uint8Array.of(name.length), name,
      Uint8Array.of(mediaType.length), mediaType, new Uint8Array(tail.buffer));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

class FieldReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = 0;
  }
  take(count, what) {
    if (this.bytes.length - this.offset < count) throw new PayloadError(`attachments field ends inside ${what}`);
    const piece = this.bytes.subarray(this.offset, this.offset + count);
    this.offset += count;
    return piece;
  }
  u8(what) {
    return this.take(1, what)[0];
  }
  u32(what) {
    this.take(4, what);
    return this.view.getUint32(this.offset - 4);
  }
  u64(what) {
    this.take(8, what);
    return this.view.getBigUint64(this.offset - 8);
  }
}

function readEntry(reader) {
  const blobId = reader.take(BLOB_ID_BYTES, "a blob id");
  const fileKey = reader.take(FILE_KEY_BYTES, "a file key");
  const nameBytes = reader.take(reader.u8("a name length"), "a name");
  let name;
  try {
    name = strictDecoder.decode(nameBytes);
  } catch {
    throw new PayloadError("a file name is not valid UTF-8");
  }
  const mediaBytes = reader.take(reader.u8("a media type length"), "a media type");
  if (mediaBytes.some((b) => b > 0x7f)) throw new PayloadError("a media type is ASCII");
  const mediaType = String.fromCharCode(...mediaBytes);
  const size = reader.u64("a size");
  const chunkSize = reader.u32("a chunk size");
  const padded = reader.u64("a padded length");
  if (size > BigInt(MAX_TOTAL_SIZE)) {
    // Checked before the conversion to a Number, which is exact only below 2^53.
    const problem = nameProblem(name) ?? mediaTypeProblem(mediaType);
    throw new PayloadError(problem ?? `a file has at most ${MAX_TOTAL_SIZE} bytes`);
  }
  const entry = makeAttachment({ blobId, fileKey, name, mediaType, size: Number(size) });
  if (chunkSize !== CHUNK_SIZE) throw new PayloadError(`chunk size ${chunkSize}; v1 uses ${CHUNK_SIZE}`);
  if (padded !== BigInt(entry.paddedLength)) {
    throw new PayloadError("padded length is not the Padmé length of the blob");
  }
  return entry;
}

/** Parse and check the value of field 0x03 (SPEC 5.10, reader). */
export function decodeAttachments(value) {
  if (!(value instanceof Uint8Array)) throw new PayloadError("an attachments field is bytes");
  const reader = new FieldReader(value);
  const count = reader.u8("the count");
  if (count < 1 || count > MAX_FILES) {
    throw new PayloadError(`an attachments field lists 1 to ${MAX_FILES} files, not ${count}`);
  }
  const files = [];
  for (let i = 0; i < count; i++) files.push(readEntry(reader));
  if (reader.offset !== value.length) throw new PayloadError("bytes after the last attachment entry");
  checkList(files);
  return files;
}

// ---- the envelope's field 0x03 ----

/**
 * Open an envelope whose message may list files: { text, attachments } with the checked
 * entries (an empty list for a message without files). The caller MUST show or save
 * the files beside the text; a caller that cannot uses secretlink.js's openEnvelope,
 * which refuses a message with files (SPEC 5.10).
 */
export function openMessage(envelope, secretKey) {
  const { text, attachmentsField } = openEnvelope(envelope, secretKey, { attachments: true });
  return { text, attachments: attachmentsField === null ? [] : decodeAttachments(attachmentsField) };
}

/** Seal a text with the entries of its files (already uploaded or being uploaded);
 * without files, a plain message. */
export function sealMessage({ text, attachments = [] }, recipientPublicKey) {
  const attachmentsField = attachments.length ? encodeAttachments(attachments) : null;
  return seal({ text, attachmentsField }, recipientPublicKey);
}

// ---- the blob ----

async function deriveKey(entry, purpose, algorithm) {
  const ikm = await webCrypto().importKey("raw", entry.fileKey, "HKDF", false, ["deriveBits"]);
  const bits = await webCrypto().deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: entry.blobId, info: purpose }, ikm, 256);
  return webCrypto().importKey("raw", bits, algorithm, false, ["encrypt", "decrypt"]);
}

function nonce(index, final) {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  // An 88-bit counter; chunk indexes stay below 2^25 (1 TiB / 64 KiB), so the top
  // seven bytes are zero.
  view.setUint32(7, index);
  bytes[11] = final ? 1 : 0;
  return bytes;
}

// One allocation for many pieces (never a chain of pairwise copies).
function joinAll(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// The padding keystream in order: AES-CTR over zeros from counter block 0, taken in
// slices of at most 64 KiB (a multiple of the 16-byte block, so each slice starts on
// a block boundary and its counter block is its offset / 16). `from`, a multiple of
// 64 KiB, starts it further on (an upload sealed in parts).
class PaddingStream {
  constructor(entry, from = 0) {
    const total = entry.paddedLength - entry.ciphertextLength;
    if (!Number.isSafeInteger(from) || from < 0 || from % CHUNK_SIZE !== 0 || (from > 0 && from >= total)) {
      throw new RangeError(`padding starts at a multiple of ${CHUNK_SIZE} inside it`);
    }
    this.entry = entry;
    this.remaining = total - from;
    this.offset = from;
    this.buffer = new Uint8Array(0);
  }
  async take(count) {
    count = Math.min(count, this.remaining);
    const parts = [];
    let wanted = count;
    while (wanted > 0) {
      if (this.buffer.length === 0) {
        this.key ??= await deriveKey(this.entry, PADDING_PURPOSE, "AES-CTR");
        const total = this.entry.paddedLength - this.entry.ciphertextLength;
        const length = Math.min(CHUNK_SIZE, total - this.offset);
        const counter = new Uint8Array(16);
        const block = this.offset / 16;
        new DataView(counter.buffer).setUint32(8, Math.floor(block / 2 ** 32));
        new DataView(counter.buffer).setUint32(12, block % 2 ** 32);
        this.buffer = new Uint8Array(
          await webCrypto().encrypt({ name: "AES-CTR", counter, length: 128 }, this.key, new Uint8Array(length)));
        this.offset += length;
      }
      const part = this.buffer.subarray(0, wanted);
      parts.push(part);
      this.buffer = this.buffer.subarray(part.length);
      wanted -= part.length;
    }
    this.remaining -= count;
    return parts.length ? joinAll(parts) : new Uint8Array(0);
  }
}


/** The blob's padding from byte `from` of it (a multiple of 64 KiB), `length` bytes
 * (to its end by default), in pieces of at most 64 KiB. */
export async function* paddingPieces(entry, from = 0, length = Infinity) {
  const padding = new PaddingStream(makeAttachment(entry), from);
  let wanted = Math.min(length, padding.remaining);
  while (wanted > 0) {
    const piece = await padding.take(Math.min(CHUNK_SIZE, wanted));
    wanted -= piece.length;
    yield piece;
  }
}

/**
 * Encrypts one file into its blob, given the file's bytes in pieces of any size:
 * `await update(piece)` gives the ciphertext of every chunk completed so far, one array
 * per chunk (joined, they would cost a copy that uploads do not need); after
 * exactly `entry.size` bytes, `finish()` yields the rest (last chunk, padding).
 */
export class BlobEncryptor {
  // `firstChunk` starts at that chunk, fed the file from byte firstChunk * 64 KiB on:
  // a large file is sealed in parts that way (each part's output is the blob's bytes
  // from chunk firstChunk on).
  constructor(entry, { firstChunk = 0 } = {}) {
    this.entry = makeAttachment(entry);
    if (!Number.isSafeInteger(firstChunk) || firstChunk < 0 || firstChunk >= this.entry.chunkCount) {
      throw new RangeError(`the first chunk is one of the file's ${this.entry.chunkCount}`);
    }
    this.buffer = new Uint8Array(0);
    this.index = firstChunk;
    this.received = firstChunk * CHUNK_SIZE;
  }

  // Chunk numbers are taken before the first await, so several seals can run at once
  // and still get their own nonces in order.
  async seal(plaintext) {
    const index = this.index;
    this.index += 1;
    const final = index === this.entry.chunkCount - 1;
    this.key ??= deriveKey(this.entry, STREAM_PURPOSE, "AES-GCM");
    const sealed = await webCrypto().encrypt(
      { name: "AES-GCM", iv: nonce(index, final), additionalData: this.entry.blobId, tagLength: 128 },
      await this.key, plaintext);
    return new Uint8Array(sealed);
  }

  async update(data) {
    this.received += data.length;
    if (this.received > this.entry.size) {
      throw new SizeError(`the file has more than the ${this.entry.size} bytes declared`);
    }
    // Whole chunks are sealed straight from the input; only a partial chunk is kept.
    const input = this.buffer.length ? joinAll([this.buffer, data]) : data;
    // The piece's chunks are sealed at once: WebCrypto works on them off the page's
    // thread, and one round trip through the event loop serves them all.
    const sealing = [];
    let offset = 0;
    while (input.length - offset >= CHUNK_SIZE) {
      sealing.push(this.seal(input.subarray(offset, offset + CHUNK_SIZE)));
      offset += CHUNK_SIZE;
    }
    this.buffer = input.slice(offset);
    return Promise.all(sealing);
  }

  /** After exactly `entry.size` bytes: the last chunk when it is still to seal (an
   * array of zero or one chunk), without the padding. */
  async lastChunk() {
    if (this.received !== this.entry.size) {
      throw new SizeError(`the file has ${this.received} bytes, not ${this.entry.size}`);
    }
    if (this.index === this.entry.chunkCount) return [];
    const last = await this.seal(this.buffer);
    this.buffer = new Uint8Array(0);
    return [last];
  }

  async *finish() {
    yield* await this.lastChunk();
    yield* paddingPieces(this.entry);
  }
}

function sameBytes(a, b) {
  // The padding keystream comes from the file key: compared without an early exit.
  let difference = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/**
 * Checks and decrypts one blob, given its bytes in pieces of any size: `await
 * update(piece)` gives the plaintext of every chunk whose tag verified; `finish()`
 * checks that the blob ended at its padded length. After any error the whole file is
 * void: the caller MUST discard every byte it already received.
 */
export class BlobDecryptor {
  constructor(entry) {
    this.entry = makeAttachment(entry);
    this.padding = new PaddingStream(this.entry);
    this.buffer = new Uint8Array(0);
    this.index = 0;
    this.received = 0;
    this.failed = false;
  }

  chunkLength() {
    const last = this.entry.chunkCount - 1;
    if (this.index < last) return CHUNK_SIZE + GCM_TAG_BYTES;
    return this.entry.size - last * CHUNK_SIZE + GCM_TAG_BYTES;
  }

  // Opens every chunk complete in `input` from `offset` on; returns the new offset.
  async openChunks(input, offset, out) {
    while (this.index < this.entry.chunkCount) {
      const length = this.chunkLength();
      if (input.length - offset < length) break;
      this.key ??= await deriveKey(this.entry, STREAM_PURPOSE, "AES-GCM");
      const final = this.index === this.entry.chunkCount - 1;
      let plaintext;
      try {
        plaintext = await webCrypto().decrypt(
          { name: "AES-GCM", iv: nonce(this.index, final), additionalData: this.entry.blobId, tagLength: 128 },
          this.key, input.subarray(offset, offset + length));
      } catch {
        throw new DecryptError(`chunk ${this.index} does not authenticate`);
      }
      out.push(new Uint8Array(plaintext));
      offset += length;
      this.index += 1;
    }
    return offset;
  }

  // Once every chunk is open, the rest of the input is padding: checked as it comes.
  async checkPadding(input, offset) {
    if (this.index < this.entry.chunkCount || offset === input.length) return offset;
    const received = input.subarray(offset);
    const expected = await this.padding.take(received.length);
    if (!sameBytes(expected, received)) {
      throw new PaddingError("the blob's padding is not its padding keystream");
    }
    return input.length;
  }

  async update(data) {
    if (this.failed) throw new DecryptError("this blob already failed");
    try {
      const room = this.entry.paddedLength - this.received;
      const inside = data.subarray(0, room);
      this.received += inside.length;
      const input = this.buffer.length ? joinAll([this.buffer, inside]) : inside;
      const out = [];
      let offset = await this.openChunks(input, 0, out);
      offset = await this.checkPadding(input, offset);
      // Only a partial chunk is kept (a copy: the caller may reuse its buffer).
      this.buffer = input.slice(offset);
      if (data.length > room) throw new SizeError("the blob is longer than its entry says");
      return out.length ? joinAll(out) : new Uint8Array(0);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  async finish() {
    if (this.failed) throw new DecryptError("this blob already failed");
    if (this.received !== this.entry.paddedLength) {
      this.failed = true;
      throw new SizeError(`the blob ends after ${this.received} of ${this.entry.paddedLength} bytes`);
    }
  }
}

/** The blob of a file given as an (async) iterable of byte pieces, as an async iterable. */
export async function* encryptBlob(entry, source) {
  const encryptor = new BlobEncryptor(entry);
  for await (const piece of source) yield* await encryptor.update(piece);
  yield* encryptor.finish();
}

/**
 * The plaintext of a blob given as an (async) iterable of byte pieces. Throws at the
 * first bad byte, and at the end if the blob is short; what was yielded before an
 * error MUST be discarded.
 */
export async function* decryptBlob(entry, source) {
  const decryptor = new BlobDecryptor(entry);
  for await (const piece of source) {
    const out = await decryptor.update(piece);
    if (out.length) yield out;
  }
  await decryptor.finish();
}
