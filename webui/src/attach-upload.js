// Files on the sender page (crypto/SPEC.md 5.10, 5.11; docs/API.md 4.11), shown only
// when the inbox accepts attachments. Each chosen file gets a fresh entry (random
// blob id and key), is read and encrypted (WebCrypto AES-GCM, crypto/attachments.js)
// in parts of 16 MiB, each by a worker of its own (seal-worker.js) while the part
// before it is uploaded, one request of at most 1 MiB at a time, by another worker
// that ends with its part, so memory stays the same whatever its size; a failed
// request is retried from where the server says the upload stands. The message
// listing the files is sent only after every file arrived.
// With "Remove location and camera data" ticked, each JPEG photo (known by its first
// bytes, not its name or type) loses its metadata first (jpeg-metadata.js): what is
// left is what gets encrypted, counted and listed. Other files and their metadata
// (document authors, ...) go as they are: the page says so before anything is sent.

import {
  CHUNK_SIZE, GCM_TAG_BYTES, MAX_FILES, cleanMediaType, cleanName, newAttachment, paddedLength,
} from "../../crypto/attachments.js";
import { b64encode } from "../../crypto/secretlink.js";
import { answerError, request } from "./api.js";
import { formatSize, t, tn } from "./i18n.js";
import { JpegError, cleanJpeg, fileReader, isJpeg } from "./jpeg-metadata.js";
import { $, element } from "./ui.js";
import { verifiedWorkerUrl } from "./verified-worker.js";
import { withWork } from "./work.js";

const MAX_REQUEST_BYTES = 1024 * 1024;
// A part sealed by one worker: 256 chunks (16 MiB of the file), or as many bytes of
// padding. Three parts at most are held at a time, as Blobs (the browser keeps their
// bytes, out of the page's memory): one being sent and two sealed or being sealed.
const PART_CHUNKS = 256;
const PART_PADDING_BYTES = PART_CHUNKS * CHUNK_SIZE;
// Attempts at one piece after a dropped connection or a server error, before giving up.
const RETRIES = 3;
const RETRY_PAUSE_MS = 1000;

let limits = null; // { maxFile, maxMessage } once the inbox says it takes files

/** Show the file input when the inbox view accepts attachments, with its limits. */
export function showAttachments(info) {
  const box = $("#attach");
  if (!box || info.accepts_attachments !== true) return;
  const given = info.attachment_limits ?? {};
  if (!Number.isSafeInteger(given.max_file_bytes) || !Number.isSafeInteger(given.max_message_bytes)) return;
  limits = { maxFile: given.max_file_bytes, maxMessage: given.max_message_bytes };
  $("#attach-limits").textContent = t("Up to {count} files, each at most {size}, about {total} in all.",
    { count: MAX_FILES, size: formatSize(limits.maxFile), total: formatSize(limits.maxMessage) });
  box.hidden = false;
  $("#attachments").addEventListener("change", listChosen);
  // Files already in the input (a form the browser restored, going back to the page)
  // are listed too: they go with the message, so the sender must see them.
  listChosen();
}

export const chosenFiles = () => (limits ? [...$("#attachments").files] : []);

function listChosen() {
  $("#attach-list").replaceChildren(...chosenFiles().map((file) =>
    fileLine(file.name, ` · ${formatSize(file.size)}`)));
  $("#attach-progress").hidden = true;
  $("#attach-progress-text").textContent = "";
}

// A file's name, isolated so that its direction does not reorder the line around it.
function fileLine(name, rest) {
  const item = element("li");
  item.append(element("bdi", {}, name), rest);
  return item;
}

/** Clear the chosen files after a send; the progress line keeps saying what went. */
export function clearFiles() {
  if (!limits) return;
  $("#attachments").value = "";
  $("#attach-list").replaceChildren();
}

// Whether the sender asked for JPEG metadata to go. The box is ticked when the page
// opens: an anonymous sender who never heard of EXIF is the one a photo's GPS position
// or camera serial number gives away, so removing is the default and sending a photo
// as it is takes a deliberate click.
const stripWanted = () => $("#strip-metadata").checked;

// The plan that removes a JPEG's metadata, or null for a file sent as it is.
async function cleaningPlan(file) {
  const read = fileReader(file);
  if (!stripWanted() || !(await isJpeg(read))) return null;
  try {
    return await cleanJpeg(read, file.size);
  } catch (err) {
    if (!(err instanceof JpegError)) throw err;
    throw new Error(t("{name} looks like a JPEG photo but is damaged ({detail}), so its location and " +
      "camera data cannot be removed. Untick the box to send it as it is.", { name: file.name, detail: err.message }));
  }
}

/** A {file, entry, plan} for each file, with JPEG metadata planned away when the box
 * is ticked; throws an Error whose message says which file or limit stops the send
 * (nothing is uploaded then). */
export async function prepareFiles(files) {
  if (!files.length) return [];
  if (files.length > MAX_FILES) throw new Error(t("At most {count} files go with one message.", { count: MAX_FILES }));
  await sealWorkerUrl(); // a worker that fails its integrity check stops the send here
  const plans = [];
  for (const file of files) plans.push(await cleaningPlan(file));
  const entries = files.map((file, i) => newAttachment({
    name: cleanName(file.name),
    mediaType: cleanMediaType(file.type || "application/octet-stream"),
    size: plans[i]?.size ?? file.size,
  }));
  entries.forEach((entry, i) => {
    if (entry.paddedLength > paddedLength(limits.maxFile)) {
      throw new Error(t("{name} has {size}; this server takes files of at most {limit}.",
        { name: files[i].name, size: formatSize(entry.size), limit: formatSize(limits.maxFile) }));
    }
  });
  const stored = entries.reduce((sum, entry) => sum + entry.paddedLength, 0);
  if (stored > limits.maxMessage) {
    throw new Error(t("The files come to {size} encrypted; this server takes at most {limit} per message.",
      { size: formatSize(stored), limit: formatSize(limits.maxMessage) }));
  }
  return files.map((file, i) => ({ file, entry: entries[i], plan: plans[i] }));
}

// The parts of an entry's blob, in order: where each starts and ends in the blob, and
// what its worker seals (SPEC 5.11: chunks of 64 KiB + 16, the last shorter, then the
// padding).
function blobParts(entry) {
  const stride = CHUNK_SIZE + GCM_TAG_BYTES;
  const parts = [];
  for (let firstChunk = 0; firstChunk < entry.chunkCount; firstChunk += PART_CHUNKS) {
    const chunks = Math.min(PART_CHUNKS, entry.chunkCount - firstChunk);
    const start = firstChunk * stride;
    const end = firstChunk + chunks === entry.chunkCount ? entry.ciphertextLength : start + chunks * stride;
    parts.push({ start, end, part: { firstChunk, chunks } });
  }
  const padding = entry.paddedLength - entry.ciphertextLength;
  for (let paddingFrom = 0; paddingFrom < padding; paddingFrom += PART_PADDING_BYTES) {
    const length = Math.min(PART_PADDING_BYTES, padding - paddingFrom);
    const start = entry.ciphertextLength + paddingFrom;
    parts.push({ start, end: start + length, part: { paddingFrom, length } });
  }
  return parts;
}

// The worker starts only from bytes that match the page's integrity hash.
function sealWorkerUrl() {
  const holder = document.querySelector("[data-seal-worker]");
  return verifiedWorkerUrl("seal-worker", holder?.dataset.sealWorker, holder?.dataset.sealWorkerIntegrity,
    t("The encryption script"));
}

// One part of the blob, sealed by a worker of its own (ended once the part is sealed)
// and handed over a MessagePort to a second worker, which sends it: resolves to that
// sender once the part reached it. The page never holds the part's Blob (seal-worker.js
// says why).
async function sealPart({ file, entry, plan }, part) {
  const url = await sealWorkerUrl();
  const sealer = new Worker(url);
  const sender = new Worker(url);
  const channel = new MessageChannel();
  const failed = (event) => new Error(t("Encrypting {name} failed ({error}).", { name: file.name, error: event.message }));
  try {
    await new Promise((resolve, reject) => {
      sealer.onmessage = ({ data: { error } }) => {
        // The entry (with the size) is sealed already: a file that changed cannot go.
        reject(error.changed
          ? new Error(t("{name} changed while it was being sent (its size is not what it was).", { name: file.name }))
          : failed(error));
      };
      sealer.onerror = (event) => reject(failed(event));
      sender.onmessage = ({ data }) => data.ready && resolve();
      sender.onerror = (event) => reject(failed(event));
      sender.postMessage({ receive: channel.port2 }, [channel.port2]);
      sealer.postMessage({ seal: { file, plan, entry, part }, port: channel.port1 }, [channel.port1]);
    });
  } catch (err) {
    sender.terminate();
    throw err;
  } finally {
    sealer.terminate();
  }
  return sender;
}

// Upload one part through its sender, from byte `from` of the blob; `onSent(received)`
// after each request the server took. Rejects with an ApiError when a request failed.
function sendPart(sender, target, start, from, onSent) {
  return new Promise((resolve, reject) => {
    sender.onmessage = ({ data }) => {
      if (data.failed) return reject(answerError(data.failed.status, data.failed.data));
      onSent(data.received);
      if (data.done) resolve();
    };
    sender.onerror = (event) => reject(new Error(event.message));
    sender.postMessage({ send: { ...target, start, from } });
  });
}

// Send the file's blob from byte `from` to its end. Each part is sealed as soon as the
// one before it is, up to two ahead of the one being sent; every worker started here
// is ended here, whether the parts went or not.
async function sendFrom(outgoing, target, from, onSent) {
  const parts = blobParts(outgoing.entry).filter(({ end }) => end > from);
  const senders = [];
  let stopped = false;
  const seal = (i) => {
    if (i >= parts.length) return;
    senders[i] = (senders[i - 1] ?? Promise.resolve()).then(async () => {
      if (stopped) return null;
      const sender = await sealPart(outgoing, parts[i].part);
      if (stopped) sender.terminate(); // the upload failed meanwhile
      return sender;
    });
    senders[i].catch(() => {}); // thrown where it is awaited, or moot if the upload stopped
  };
  seal(0);
  seal(1);
  try {
    for (let i = 0; i < parts.length; i++) {
      const sender = await senders[i];
      seal(i + 2);
      try {
        await sendPart(sender, target, parts[i].start, Math.max(from, parts[i].start), onSent);
      } finally {
        sender.terminate();
      }
    }
  } finally {
    stopped = true;
    for (const pending of senders) pending.then((sender) => sender?.terminate(), () => {});
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function startUpload(base, entry, onStale) {
  const length = entry.paddedLength;
  const puzzle = await request("POST", `${base}/uploads/puzzle`, { body: { length } });
  const started = await withWork(puzzle, (fields) =>
    request("POST", `${base}/uploads`, { body: { blob_id: b64encode(entry.blobId), length, ...fields } }),
  { onStale });
  if (typeof started?.upload !== "string" || !Number.isSafeInteger(started.chunk_bytes) || started.chunk_bytes < 1) {
    throw new Error(t("The server answered the upload's start unlike a secretlink server."));
  }
  return { capability: started.upload, chunk: Math.min(started.chunk_bytes, MAX_REQUEST_BYTES) };
}

// A refusal that asking where the upload stands can mend: a dropped connection, a
// server error, or an offset the server did not expect.
const resumable = (err) => err.status === 0 || err.status >= 500 || err.code === "offset_mismatch";

async function uploadOne(base, outgoing, report) {
  const { entry } = outgoing;
  const { capability, chunk } = await startUpload(base, entry,
    () => report(0, t("The server is busy and asks for more work; computing again…")));
  const path = `${base}/uploads/${b64encode(entry.blobId)}`;
  // The workers fetch from a blob: URL of their own, where only an absolute URL works.
  const target = { url: new URL(path, location.href).href, token: capability, chunk };
  let sent = 0;
  let failures = 0; // in a row: a request the server took starts the count again
  while (sent < entry.paddedLength) {
    try {
      await sendFrom(outgoing, target, sent, (received) => {
        sent = received;
        failures = 0;
        report(sent);
      });
    } catch (err) {
      failures += 1;
      if (failures > RETRIES || !resumable(err)) throw err;
      await pause(RETRY_PAUSE_MS);
      // Where the server is: the dropped request may have arrived, or part of it.
      sent = (await request("GET", path, { token: capability })).received;
      report(sent);
    }
  }
  return b64encode(entry.blobId);
}

function secondsText(seconds) {
  if (seconds < 60) return t("{seconds} s", { seconds: Math.max(1, Math.round(seconds)) });
  return t("{minutes} min", { minutes: Math.round(seconds / 60) });
}

/**
 * Upload every file's blob in turn (`outgoing` from prepareFiles), showing bytes and
 * time left; the blob ids, in that order. Throws the first error that retrying did
 * not mend.
 */
export async function uploadFiles(base, outgoing) {
  const total = outgoing.reduce((sum, { entry }) => sum + entry.paddedLength, 0);
  const bar = $("#attach-progress");
  const line = $("#attach-progress-text");
  bar.max = total;
  bar.value = 0;
  bar.hidden = false;
  const started = performance.now();
  let done = 0;
  const ids = [];
  for (const item of outgoing) {
    const report = (sent, note) => {
      const now = done + sent;
      bar.value = now;
      const elapsed = (performance.now() - started) / 1000;
      const params = { name: item.file.name, done: formatSize(now), total: formatSize(total) };
      line.textContent = note ?? (now > 0 && now < total
        ? t("Encrypting and uploading {name}: {done} of {total}, about {left} left.",
          { ...params, left: secondsText((elapsed * (total - now)) / now) })
        : t("Encrypting and uploading {name}: {done} of {total}.", params));
    };
    report(0);
    ids.push(await uploadOne(base, item, report));
    done += item.entry.paddedLength;
  }
  const count = outgoing.length;
  const cleaned = outgoing.filter((item) => item.plan).length;
  line.textContent = tn("Uploaded {count} file ({size} encrypted).", "Uploaded {count} files ({size} encrypted).",
    count, { size: formatSize(total) }) + (cleaned
    ? " " + tn("Location and camera data removed from {count} JPEG photo.",
      "Location and camera data removed from {count} JPEG photos.", cleaned)
    : "");
  return ids;
}
