// Runs crypto/attachments.js for the Python interop tests (tests/test_crypto_attachments.py).
// Reads a JSON array of requests on stdin, writes a JSON array of answers on stdout;
// a crypto error becomes {"error": "<class name>"}.
import * as sl from "../../crypto/secretlink.js";
import * as att from "../../crypto/attachments.js";

const entryOf = (e) => ({
  blobId: sl.b64decode(e.blob_id), fileKey: sl.b64decode(e.file_key), name: e.name,
  mediaType: e.media_type, size: e.size,
});

async function collect(iterable) {
  const parts = [];
  for await (const part of iterable) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

function* pieces(bytes, size) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const operations = {
  // Python's field and blob: decode the field, decrypt every blob.
  open: async ({ field, blobs, piece }) => {
    const files = att.decodeAttachments(sl.b64decode(field));
    const plaintexts = [];
    for (const [i, file] of files.entries()) {
      const plaintext = await collect(att.decryptBlob(file, pieces(sl.b64decode(blobs[i]), piece)));
      plaintexts.push(sl.b64encode(plaintext));
    }
    return { names: files.map((f) => f.name), plaintexts };
  },
  // Fresh entries for the given files, their field and their blobs.
  send: async ({ files, piece }) => {
    const entries = files.map((f) => att.newAttachment({
      name: att.cleanName(f.name), mediaType: att.cleanMediaType(f.media_type),
      size: sl.b64decode(f.data).length,
    }));
    const blobs = [];
    for (const [i, entry] of entries.entries()) {
      blobs.push(sl.b64encode(await collect(att.encryptBlob(entry, pieces(sl.b64decode(files[i].data), piece)))));
    }
    return { field: sl.b64encode(att.encodeAttachments(entries)), blobs };
  },
  decrypt: async ({ attachment, blob }) => ({
    plaintext: sl.b64encode(await collect(att.decryptBlob(entryOf(attachment), [sl.b64decode(blob)]))),
  }),
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const answers = [];
for (const request of JSON.parse(input)) {
  try {
    answers.push(await operations[request.op](request));
  } catch (err) {
    if (!(err instanceof sl.SecretlinkCryptoError)) throw err;
    answers.push({ error: err.name });
  }
}
process.stdout.write(JSON.stringify(answers));
