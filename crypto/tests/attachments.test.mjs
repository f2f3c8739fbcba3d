// crypto/attachments.js against crypto/vectors/attachments.json (SPEC 5.10, 5.11, 11.1).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import * as sl from "../secretlink.js";
import * as att from "../attachments.js";

const { cases } = JSON.parse(readFileSync(new URL("../vectors/attachments.json", import.meta.url), "utf8"));
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const b64 = (text) => sl.b64decode(text);

// SPEC 11.1: SHA-256(seed || u64be(j)) for j = 0, 1, ..., cut to `size` bytes.
function pattern(seed, size) {
  const out = new Uint8Array(Math.ceil(size / 32) * 32);
  const counter = Buffer.alloc(8);
  for (let j = 0; j * 32 < size; j++) {
    counter.writeBigUInt64BE(BigInt(j));
    out.set(createHash("sha256").update(seed).update(counter).digest(), j * 32);
  }
  return out.subarray(0, size);
}
const plaintextOf = (spec) => (spec.text !== undefined ? new TextEncoder().encode(spec.text) : pattern(spec.seed, spec.size));

const entryOf = (e) => ({
  blobId: b64(e.blob_id), fileKey: b64(e.file_key), name: e.name, mediaType: e.media_type, size: e.size,
});

async function collect(iterable) {
  const parts = [];
  for await (const part of iterable) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

// Pieces of uneven sizes, so that chunk boundaries fall inside pieces.
function* pieces(bytes, size = 40000) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

// The valid blobs, by the seed of their plaintext: stored whole, or made by encrypting
// the plaintext and pinned by their SHA-256 (checked in the "ok" tests).
const blobs = new Map();
async function blobOf(label) {
  if (!blobs.has(label)) {
    const c = cases.find((x) => x.kind === "stream" && x.expect === "ok" && (x.plaintext.seed ?? "worked example") === label);
    const blob = c.blob.bytes !== undefined ? b64(c.blob.bytes) : await collect(att.encryptBlob(entryOf(c.attachment), pieces(plaintextOf(c.plaintext))));
    assert.equal(sha256(blob), c.blob_sha256);
    blobs.set(label, blob);
  }
  return blobs.get(label);
}

async function applyEdits(blob, edits) {
  let data = Uint8Array.from(blob);
  for (const edit of edits) {
    if (edit.op === "truncate") data = data.slice(0, edit.length);
    else if (edit.op === "remove") data = new Uint8Array(Buffer.concat([data.subarray(0, edit.start), data.subarray(edit.start + edit.length)]));
    else if (edit.op === "swap") {
      const a = data.slice(edit.a, edit.a + edit.length);
      data.copyWithin(edit.a, edit.b, edit.b + edit.length);
      data.set(a, edit.b);
    } else if (edit.op === "splice") {
      const other = await blobOf(edit.from);
      data.set(other.subarray(edit.start, edit.start + edit.length), edit.at);
    } else if (edit.op === "append") data = new Uint8Array(Buffer.concat([data, b64(edit.bytes)]));
    else if (edit.op === "xor") data[edit.at] ^= edit.value;
    else throw new Error(`unknown edit ${edit.op}`);
  }
  return data;
}

async function expectError(c, run) {
  const errorClass = sl[c.expect];
  assert.ok(errorClass && errorClass.prototype instanceof sl.SecretlinkCryptoError, c.expect);
  await assert.rejects(run, (err) => err instanceof errorClass && err.name === c.expect);
}

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const asJson = (f) => ({
  blob_id: sl.b64encode(f.blobId), file_key: sl.b64encode(f.fileKey), name: f.name,
  media_type: f.mediaType, size: f.size, chunk_size: f.chunkSize, padded_length: f.paddedLength,
});

for (const c of cases) {
  test(`attachments ${c.kind}: ${c.desc}`, async () => {
    if (c.kind === "field") {
      const value = b64(c.value);
      if (c.expect !== "ok") return expectError(c, async () => att.decodeAttachments(value));
      const files = att.decodeAttachments(value);
      assert.deepEqual(files.map(asJson), c.files);
      assert.equal(hex(att.encodeAttachments(c.files.map(entryOf))), hex(value));
    } else if (c.kind === "encode") {
      await expectError(c, async () => att.encodeAttachments(c.files.map(entryOf)));
    } else if (c.kind === "envelope") {
      const envelope = b64(c.envelope);
      const secretKey = b64(c.secret_key);
      if (c.expect !== "ok") return expectError(c, async () => att.openMessage(envelope, secretKey));
      const message = att.openMessage(envelope, secretKey);
      assert.equal(message.text, c.text);
      assert.deepEqual(message.attachments.map(asJson), c.files);
      // A reader that would show the text without the files refuses the message.
      assert.throws(() => sl.openEnvelope(envelope, secretKey), sl.PayloadError);
    } else if (c.kind === "encrypt") {
      await expectError(c, () => collect(att.encryptBlob(entryOf(c.attachment), pieces(plaintextOf(c.plaintext)))));
    } else if (c.expect === "ok") {
      const entry = entryOf(c.attachment);
      const plaintext = plaintextOf(c.plaintext);
      assert.equal(sha256(plaintext), c.plaintext_sha256);
      const made = await collect(att.encryptBlob(entry, pieces(plaintext)));
      assert.equal(made.length, c.blob_length);
      assert.equal(made.length, att.paddedLength(c.attachment.size));
      assert.equal(sha256(made), c.blob_sha256);
      // The stored blob (when there is one) opens, fed in pieces and whole.
      const blob = c.blob.bytes !== undefined ? b64(c.blob.bytes) : made;
      assert.equal(hex(await collect(att.decryptBlob(entry, pieces(blob, 1000)))), hex(plaintext));
      assert.equal(hex(await collect(att.decryptBlob(entry, [blob]))), hex(plaintext));
    } else {
      const blob = c.blob.bytes !== undefined ? b64(c.blob.bytes) : await applyEdits(await blobOf(c.blob.from), c.blob.edits);
      await expectError(c, () => collect(att.decryptBlob(entryOf(c.attachment), [blob])));
      await expectError(c, () => collect(att.decryptBlob(entryOf(c.attachment), pieces(blob, 777))));
    }
  });
}

test("Padmé matches the examples of SPEC 5.11", () => {
  const table = [[2, 2], [16, 16], [22, 22], [61, 64], [1016, 1024], [65552, 67584],
    [131104, 135168], [150048, 151552], [1e9, 1006632960], [2 ** 40 + 2 ** 28, 1116691496960]];
  for (const [length, padded] of table) assert.equal(att.padme(length), padded, String(length));
});

test("cleanName and cleanMediaType give values the field accepts", () => {
  assert.equal(att.cleanName("../a/b\\c\u0000d\u009b"), ".._a_b_c_d_");
  assert.equal(att.cleanName(""), "file");
  assert.equal(att.cleanName(".."), "__");
  assert.equal(att.cleanName("a\ud800b"), "a\ufffdb");
  const long = att.cleanName("é".repeat(300) + ".jpeg");
  assert.equal(new TextEncoder().encode(long).length, 255);
  assert.ok(long.endsWith("é.jpeg"));
  assert.equal(att.cleanMediaType("Text/HTML; charset=UTF-8"), "text/html");
  assert.equal(att.cleanMediaType(""), "application/octet-stream");
  assert.equal(att.cleanMediaType("täxt/plain"), "application/octet-stream");
  const entry = att.newAttachment({ name: long, mediaType: att.cleanMediaType("IMAGE/JPEG"), size: 3 });
  assert.equal(att.decodeAttachments(att.encodeAttachments([entry]))[0].name, long);
});

test("a fresh attachment gets a fresh blob id and key", () => {
  const a = att.newAttachment({ name: "a", mediaType: "text/plain", size: 1 });
  const b = att.newAttachment({ name: "a", mediaType: "text/plain", size: 1 });
  assert.notEqual(hex(a.blobId), hex(b.blobId));
  assert.notEqual(hex(a.fileKey), hex(b.fileKey));
});

test("round trips around the chunk boundaries, in pieces of several sizes", async () => {
  for (const size of [0, 1, 65535, 65536, 65537, 131071, 131072, 131073, 200000]) {
    const entry = att.newAttachment({ name: "f.bin", mediaType: "application/octet-stream", size });
    const plaintext = pattern(`round trip ${size}`, size);
    for (const piece of [1 + (size % 7) * 9999, 65536, 1 << 20]) {
      const blob = await collect(att.encryptBlob(entry, pieces(plaintext, piece)));
      assert.equal(blob.length, entry.paddedLength);
      assert.equal(sha256(await collect(att.decryptBlob(entry, pieces(blob, piece + 3)))), sha256(plaintext));
    }
  }
});

// The sender page seals a large file in parts (webui/src/seal-worker.js): chunks from
// `firstChunk` on, the last chunk, the padding from an offset. Joined, the parts are
// the blob sealed whole, byte for byte.
async function sealedInParts(entry, plaintext, partChunks, paddingPart) {
  const C = att.CHUNK_SIZE;
  const out = [];
  for (let first = 0; first < att.chunkCount(entry.size); first += partChunks) {
    const encryptor = new att.BlobEncryptor(entry, { firstChunk: first });
    const end = Math.min(entry.size, (first + partChunks) * C);
    out.push(...(await encryptor.update(plaintext.subarray(first * C, end))));
    if (first + partChunks >= att.chunkCount(entry.size)) out.push(...(await encryptor.lastChunk()));
  }
  const padding = att.paddedLength(entry.size) - att.ciphertextLength(entry.size);
  for (let from = 0; from < padding; from += paddingPart) {
    out.push(await collect(att.paddingPieces(entry, from, paddingPart)));
  }
  return new Uint8Array(Buffer.concat(out));
}

test("a blob sealed in parts is the blob sealed whole", async () => {
  for (const size of [0, 1000, 65536, 131072, 196608 + 5, 600000]) {
    const entry = att.newAttachment({ name: "f.bin", mediaType: "application/octet-stream", size });
    const plaintext = pattern(`parts ${size}`, size);
    const whole = await collect(att.encryptBlob(entry, pieces(plaintext)));
    for (const [partChunks, paddingPart] of [[1, 65536], [2, 131072], [3, 65536 * 3]]) {
      assert.equal(sha256(await sealedInParts(entry, plaintext, partChunks, paddingPart)), sha256(whole), `${size} ${partChunks}`);
    }
  }
});

test("parts start where a part can start", async () => {
  const entry = att.newAttachment({ name: "f.bin", mediaType: "application/octet-stream", size: 150000 });
  for (const firstChunk of [-1, 3, 1.5, 2 ** 60]) {
    assert.throws(() => new att.BlobEncryptor(entry, { firstChunk }), RangeError);
  }
  const padding = att.paddedLength(entry.size) - att.ciphertextLength(entry.size);
  for (const from of [-65536, 16, 65535, Math.ceil(padding / 65536) * 65536]) {
    await assert.rejects(collect(att.paddingPieces(entry, from)), RangeError);
  }
  // The last chunk is sealed only after all of the file's bytes.
  const encryptor = new att.BlobEncryptor(entry, { firstChunk: 2 });
  await encryptor.update(new Uint8Array(1000));
  await assert.rejects(encryptor.lastChunk(), sl.SizeError);
});

test("a decryptor that failed refuses to go on", async () => {
  const entry = att.newAttachment({ name: "f", mediaType: "text/plain", size: 10 });
  const blob = await collect(att.encryptBlob(entry, [new Uint8Array(10)]));
  blob[0] ^= 1;
  const decryptor = new att.BlobDecryptor(entry);
  await assert.rejects(decryptor.update(blob), sl.DecryptError);
  await assert.rejects(decryptor.update(new Uint8Array(0)), sl.DecryptError);
  await assert.rejects(decryptor.finish(), sl.DecryptError);
});

test("a sealed message carries its files; without files it is a plain message", () => {
  const { publicKey, secretKey } = sl.generateKeyPair();
  const files = [
    att.newAttachment({ name: "report.pdf", mediaType: "application/pdf", size: 150000 }),
    att.newAttachment({ name: "empty", mediaType: "application/octet-stream", size: 0 }),
  ];
  const opened = att.openMessage(att.sealMessage({ text: "two files", attachments: files }, publicKey), secretKey);
  assert.equal(opened.text, "two files");
  assert.deepEqual(opened.attachments.map(asJson), files.map(asJson));
  const plain = att.sealMessage({ text: "no files" }, publicKey);
  assert.deepEqual(att.openMessage(plain, secretKey), { text: "no files", attachments: [] });
  assert.equal(sl.openEnvelope(plain, secretKey).text, "no files");
});

test("text and file list share the largest bucket", () => {
  const { publicKey } = sl.generateKeyPair();
  const files = Array.from({ length: 32 }, () => att.newAttachment({ name: "x".repeat(200), mediaType: "text/plain", size: 1 }));
  const room = 65535 - 5 - 5 - att.encodeAttachments(files).length;
  assert.equal(att.sealMessage({ text: "a".repeat(room), attachments: files }, publicKey).length, 65586);
  assert.throws(() => att.sealMessage({ text: "a".repeat(room + 1), attachments: files }, publicKey), sl.SizeError);
});
