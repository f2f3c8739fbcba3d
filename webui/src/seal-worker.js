// Web Worker for one part of a file's blob (16 MiB; crypto/attachments.js, SPEC
// 5.11), in one of two roles. The sender page starts two per part and ends each as
// soon as its role is done: an ended worker's buffers and Blobs are freed at once.
//
// - The sealer reads and encrypts the part and hands it as one Blob, over a
//   MessagePort, to the part's sender, then is ended: V8's collector would let tens of
//   megabytes of dead buffers (every piece read, every chunk sealed) pile up first, so
//   the page's memory is the same for a file of 10 MB or of 1 GB.
// - The sender uploads that Blob in requests of at most `chunk` bytes, then is ended.
//   The Blob never reaches the page: a Blob the page held would keep its 16 MiB in
//   the browser until the page's next full garbage collection, which a page that
//   allocates little may not reach for a gigabyte, and during a 1 GiB upload such dead
//   parts filled Chromium's blob storage until new parts came out broken
//   (docs/PERFORMANCE.md, "P6").
//
// Sealer in: { seal: { file, plan, entry, part }, port } where `plan` is the JPEG
// cleaning plan or null (the file as it is) and `part` is { firstChunk, chunks }
// (chunks of the file) or { paddingFrom, length } (bytes of the padding). Out, on
// `port`: { blob }; to the page, only on failure: { error: { changed, message } },
// `changed` when the file is not what it was.
//
// Sender in: { receive: port }, then { send: { url, token, chunk, start, from } }: the
// upload's absolute URL and capability, the largest request, where the part starts in
// the blob and from which byte of the blob to send. Out: { ready } once the Blob
// arrived, then { received, done } after each request the server took (its
// `received`), or { failed: { status, data } } (status 0: no answer; `data` the JSON
// answer, if any) and nothing more.
import { BlobEncryptor, CHUNK_SIZE, paddingPieces } from "../../crypto/attachments.js";
import { SizeError } from "../../crypto/secretlink.js";
import { exchange } from "./http.js";
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

async function seal({ seal: job, port }) {
  try {
    const blob = await ("firstChunk" in job.part ? sealChunks(job) : sealPadding(job));
    port.postMessage({ blob });
  } catch (err) {
    const changed = err instanceof SizeError || err instanceof JpegError;
    self.postMessage({ error: { changed, message: String(err?.message ?? err) } });
  }
}

async function send(blob, { url, token, chunk, start, from }) {
  const end = start + blob.size;
  let offset = from;
  while (offset < end) {
    const size = Math.min(chunk, end - offset);
    const { status, ok, data } = await exchange("PATCH", url, {
      bytes: blob.slice(offset - start, offset - start + size), token, headers: { "Upload-Offset": String(offset) },
    });
    if (!ok) return self.postMessage({ failed: { status, data } });
    if (data?.received !== offset + size) {
      // Not where this request left it: the page asks the server where it stands.
      return self.postMessage({ failed: { status: 409, data: { code: "offset_mismatch" } } });
    }
    offset += size;
    self.postMessage({ received: offset, done: offset === end });
  }
}

let part = null; // the sender's Blob, once it arrived
self.onmessage = ({ data }) => {
  if (data.seal) seal(data);
  else if (data.receive) {
    data.receive.onmessage = ({ data: { blob } }) => {
      part = blob;
      self.postMessage({ ready: true });
    };
  } else if (data.send) send(part, data.send);
};
