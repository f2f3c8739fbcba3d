// Web Worker: seals one part of a file's blob (crypto/attachments.js, SPEC 5.11) and
// gives it back as a Blob. The sender page starts one worker per part of 16 MiB and
// lets it end after its answer: an ended worker's buffers are freed at once, where
// V8's collector lets tens of megabytes of dead ones (every piece read, every chunk
// sealed) pile up first, so the page's memory is the same for a file of 10 MB or of
// 1 GB (docs/PERFORMANCE.md, "P6").
//
// In: { file, plan, entry, part } where `plan` is the JPEG cleaning plan or null (the
// file as it is) and `part` is { firstChunk, chunks } (chunks of the file) or
// { paddingFrom, length } (bytes of the padding). Out: { blob } or
// { error: { changed, message } }, `changed` when the file is not what it was.
import { BlobEncryptor, CHUNK_SIZE, paddingPieces } from "../../crypto/attachments.js";
import { SizeError } from "../../crypto/secretlink.js";
import { JpegError, fileReader, planPieces } from "./jpeg-metadata.js";

// Reads of 4 MiB: fewer round trips to the browser for the file's bytes. The part's
// chunks go into one Blob at its end (one hand-over to the browser, where a Blob per
// read costs a fifth of the part's time); the worker's end frees them.
const READ_BYTES = 1024 * 1024;

// A file sent as it is: one part, all of its bytes.
const wholeFile = (size) => ({ parts: [{ start: 0, end: size }], size });

// The next piece is read while this one is encrypted.
async function* readAhead(pieces) {
  let next = pieces.next();
  for (;;) {
    const { value, done } = await next;
    if (done) return;
    next = pieces.next();
    next.catch(() => {}); // thrown where it is awaited
    yield value;
  }
}

async function sealChunks({ file, plan, entry, part: { firstChunk, chunks } }) {
  const encryptor = new BlobEncryptor(entry, { firstChunk });
  const from = firstChunk * CHUNK_SIZE;
  const to = Math.min(entry.size, (firstChunk + chunks) * CHUNK_SIZE);
  const sealed = [];
  const pieces = planPieces(fileReader(file), plan ?? wholeFile(file.size), { from, to, window: READ_BYTES });
  for await (const piece of readAhead(pieces)) sealed.push(new Blob(await encryptor.update(piece)));
  if (firstChunk + chunks === encryptor.entry.chunkCount) sealed.push(new Blob(await encryptor.lastChunk()));
  return new Blob(sealed);
}

async function sealPadding({ entry, part: { paddingFrom, length } }) {
  const pieces = [];
  for await (const piece of paddingPieces(entry, paddingFrom, length)) pieces.push(piece);
  return new Blob(pieces);
}

self.onmessage = async ({ data }) => {
  try {
    const blob = await ("firstChunk" in data.part ? sealChunks(data) : sealPadding(data));
    self.postMessage({ blob });
  } catch (err) {
    const changed = err instanceof SizeError || err instanceof JpegError;
    self.postMessage({ error: { changed, message: String(err?.message ?? err) } });
  }
};
