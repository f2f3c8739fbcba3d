// Files on the sender page (crypto/SPEC.md 5.10, 5.11; docs/API.md 4.11), shown only
// when the inbox accepts attachments. Each chosen file gets a fresh entry (random
// blob id and key), is read, encrypted (WebCrypto AES-GCM, crypto/attachments.js) and
// uploaded one request of at most 1 MiB at a time, so memory stays the same whatever
// its size; a failed request is retried from where the server says the upload
// stands. The message listing the files is sent only after every file arrived.
// With "Remove location and camera data" ticked, each JPEG photo (known by its first
// bytes, not its name or type) loses its metadata first (jpeg-metadata.js): what is
// left is what gets encrypted, counted and listed. Other files and their metadata
// (document authors, ...) go as they are: the page says so before anything is sent.

import {
  BlobEncryptor, MAX_FILES, cleanMediaType, cleanName, newAttachment, paddedLength,
} from "../../crypto/attachments.js";
import { SizeError, b64encode } from "../../crypto/secretlink.js";
import { request } from "./api.js";
import { formatSize, t, tn } from "./i18n.js";
import { JpegError, cleanJpeg, fileReader, isJpeg, planPieces } from "./jpeg-metadata.js";
import { $, element } from "./ui.js";
import { withWork } from "./work.js";

const READ_BYTES = 1024 * 1024;
const MAX_REQUEST_BYTES = 1024 * 1024;
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

// What gets encrypted: the file as it is, or as its plan leaves it; read as it goes.
async function* plaintextPieces({ file, plan }) {
  if (plan) {
    yield* planPieces(fileReader(file), plan);
    return;
  }
  for (let offset = 0; offset < file.size; offset += READ_BYTES) {
    yield new Uint8Array(await file.slice(offset, offset + READ_BYTES).arrayBuffer());
  }
}

// The file's blob, in pieces, from byte `skip` on.
async function* blobPieces(outgoing, skip) {
  const { file, entry } = outgoing;
  const encryptor = new BlobEncryptor(entry);
  async function* whole() {
    try {
      for await (const piece of plaintextPieces(outgoing)) {
        const out = await encryptor.update(piece);
        if (out.length) yield out;
      }
      yield* encryptor.finish();
    } catch (err) {
      // The entry (with the size) is sealed already: a file that changed cannot go.
      if (!(err instanceof SizeError) && !(err instanceof JpegError)) throw err;
      throw new Error(t("{name} changed while it was being sent (its size is not what it was).", { name: file.name }));
    }
  }
  for await (const piece of whole()) {
    if (skip >= piece.length) {
      skip -= piece.length;
      continue;
    }
    yield piece.subarray(skip);
    skip = 0;
  }
}

// The pieces regrouped into request bodies of `size` bytes (the last shorter).
async function* requestBodies(pieces, size) {
  let parts = [];
  let held = 0;
  const take = (count) => {
    const body = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const part = parts[0];
      const used = Math.min(part.length, count - filled);
      body.set(part.subarray(0, used), filled);
      filled += used;
      parts = used === part.length ? parts.slice(1) : [part.subarray(used), ...parts.slice(1)];
    }
    held -= count;
    return body;
  };
  for await (const piece of pieces) {
    parts.push(piece);
    held += piece.length;
    while (held >= size) yield take(size);
  }
  if (held) yield take(held);
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
  const url = `${base}/uploads/${b64encode(entry.blobId)}`;
  let sent = 0;
  let failures = 0;
  let bodies = requestBodies(blobPieces(outgoing, 0), chunk);
  while (sent < entry.paddedLength) {
    const { value: body } = await bodies.next();
    try {
      const answer = await request("PATCH", url, {
        bytes: body, token: capability, headers: { "Upload-Offset": String(sent) },
      });
      sent = answer.received;
    } catch (err) {
      failures += 1;
      if (failures > RETRIES || !resumable(err)) throw err;
      await pause(RETRY_PAUSE_MS);
      // Where the server is: the dropped request may have arrived, or part of it.
      sent = (await request("GET", url, { token: capability })).received;
      bodies = requestBodies(blobPieces(outgoing, sent), chunk);
    }
    report(sent);
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
