// Files on the sender page (crypto/SPEC.md 5.10, 5.11; docs/API.md 4.11), shown only
// when the inbox accepts attachments. Each chosen file gets a fresh entry (random
// blob id and key), is read, encrypted (WebCrypto AES-GCM, crypto/attachments.js) and
// uploaded one request of at most 1 MiB at a time, so memory stays the same whatever
// its size; a failed request is retried from where the server says the upload
// stands. The message listing the files is sent only after every file arrived.
// Metadata inside files (EXIF location, document authors) is not removed: the page
// says so before anything is sent.

import {
  BlobEncryptor, MAX_FILES, cleanMediaType, cleanName, newAttachment, paddedLength,
} from "../../crypto/attachments.js";
import { SizeError, b64encode } from "../../crypto/secretlink.js";
import { request } from "./api.js";
import { formatSize, t, tn } from "./i18n.js";
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

/** An entry for each file; throws an Error whose message says which limit a file
 * passes (nothing is uploaded then). */
export function prepareFiles(files) {
  if (!files.length) return [];
  if (files.length > MAX_FILES) throw new Error(t("At most {count} files go with one message.", { count: MAX_FILES }));
  const entries = files.map((file) => newAttachment({
    name: cleanName(file.name),
    mediaType: cleanMediaType(file.type || "application/octet-stream"),
    size: file.size,
  }));
  entries.forEach((entry, i) => {
    if (entry.paddedLength > paddedLength(limits.maxFile)) {
      throw new Error(t("{name} has {size}; this server takes files of at most {limit}.",
        { name: files[i].name, size: formatSize(files[i].size), limit: formatSize(limits.maxFile) }));
    }
  });
  const stored = entries.reduce((sum, entry) => sum + entry.paddedLength, 0);
  if (stored > limits.maxMessage) {
    throw new Error(t("The files come to {size} encrypted; this server takes at most {limit} per message.",
      { size: formatSize(stored), limit: formatSize(limits.maxMessage) }));
  }
  return entries;
}

// The file's blob, in pieces, from byte `skip` on; the file is read as it goes.
async function* blobPieces(file, entry, skip) {
  const encryptor = new BlobEncryptor(entry);
  async function* whole() {
    try {
      for (let offset = 0; offset < file.size; offset += READ_BYTES) {
        const piece = new Uint8Array(await file.slice(offset, offset + READ_BYTES).arrayBuffer());
        const out = await encryptor.update(piece);
        if (out.length) yield out;
      }
      yield* encryptor.finish();
    } catch (err) {
      // The entry (with the size) is sealed already: a file that changed cannot go.
      if (!(err instanceof SizeError)) throw err;
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

async function uploadOne(base, file, entry, report) {
  const { capability, chunk } = await startUpload(base, entry,
    () => report(0, t("The server is busy and asks for more work; computing again…")));
  const url = `${base}/uploads/${b64encode(entry.blobId)}`;
  let sent = 0;
  let failures = 0;
  let bodies = requestBodies(blobPieces(file, entry, 0), chunk);
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
      bodies = requestBodies(blobPieces(file, entry, sent), chunk);
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
 * Upload every file's blob in turn, showing bytes and time left; the blob ids, in
 * the order of `files`. Throws the first error that retrying did not mend.
 */
export async function uploadFiles(base, files, entries) {
  const total = entries.reduce((sum, entry) => sum + entry.paddedLength, 0);
  const bar = $("#attach-progress");
  const line = $("#attach-progress-text");
  bar.max = total;
  bar.value = 0;
  bar.hidden = false;
  const started = performance.now();
  let done = 0;
  const ids = [];
  for (let i = 0; i < files.length; i++) {
    const report = (sent, note) => {
      const now = done + sent;
      bar.value = now;
      const elapsed = (performance.now() - started) / 1000;
      const params = { name: files[i].name, done: formatSize(now), total: formatSize(total) };
      line.textContent = note ?? (now > 0 && now < total
        ? t("Encrypting and uploading {name}: {done} of {total}, about {left} left.",
          { ...params, left: secondsText((elapsed * (total - now)) / now) })
        : t("Encrypting and uploading {name}: {done} of {total}.", params));
    };
    report(0);
    ids.push(await uploadOne(base, files[i], entries[i], report));
    done += entries[i].paddedLength;
  }
  line.textContent = tn("Uploaded {count} file ({size} encrypted).", "Uploaded {count} files ({size} encrypted).",
    files.length, { size: formatSize(total) });
  return ids;
}
