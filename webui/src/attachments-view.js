// The files of a message on the inbox page (crypto/SPEC.md 5.10 and 5.11). Each is
// listed with its name (invisible and direction characters shown as their code
// points), size and media type. Download fetches the blob with the owner's token,
// checks and decrypts it chunk by chunk (crypto/attachments.js) and hands the result
// to the browser as application/octet-stream: the page never shows or opens a file.
// Where the File System Access API exists the plaintext streams to the chosen file in
// constant memory; elsewhere (Firefox, Tor Browser) it is gathered in memory, so such
// browsers are told the size they can take and larger files are refused.

import { BlobDecryptor, decodeAttachments } from "../../crypto/attachments.js";
import { SecretlinkCryptoError, SizeError, b64encode } from "../../crypto/secretlink.js";
import { ApiError } from "./api.js";
import { element } from "./ui.js";
import { formatNumber, formatSize, t, tn } from "./i18n.js";

// A constant, not a setting: what a browser without showSaveFilePicker is asked to
// hold (the file, then the Blob the download is made from).
export const MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;
export const memoryLimitText = () => t("This browser cannot write a download straight to disk, so this page " +
  "keeps the file in memory: it takes files of at most {size} here. For larger files use Chromium, Chrome or " +
  "Edge, or the command line ({command}).",
{ size: `${formatNumber(MEMORY_LIMIT_BYTES / (1024 * 1024))} MiB`, command: "secretlink inbox read --save-attachments" });
const MEMORY_URL_LIFETIME_MS = 60_000;

// Characters that are invisible or that reorder the text around them: a name showing
// them would not read as what it is (`invoice`, U+202E, `fdp.exe` reads
// `invoiceexe.pdf`). Control characters cannot be in a name (SPEC 5.10), but a reader
// escapes them all the same.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\p{Bidi_Control}]/u;
const SPACE = /\p{Zs}/u;
const isHidden = (char) => HIDDEN.test(char) || (char !== " " && SPACE.test(char));
const codePoint = (char) => `U+${char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;

/** The name as shown: each hidden character written as [U+XXXX]. */
export function displayName(name) {
  let shown = "";
  for (const char of name) shown += isHidden(char) ? `[${codePoint(char)}]` : char;
  return shown;
}

// The name as DOM nodes: plain text, and each escape marked up so it is seen as one.
function nameNodes(name) {
  const nodes = [];
  let run = "";
  for (const char of name) {
    if (!isHidden(char)) {
      run += char;
      continue;
    }
    if (run) nodes.push(run);
    run = "";
    nodes.push(element("span", { class: "escaped" }, `[${codePoint(char)}]`));
  }
  if (run) nodes.push(run);
  return nodes;
}

/** The name offered to the browser for saving: hidden characters and those that
 * Windows refuses become "_", and no hidden file or option-like name. */
export function saveName(name) {
  let safe = "";
  for (const char of name) safe += isHidden(char) || '<>:"|?*'.includes(char) ? "_" : char;
  return /^[.-]/.test(safe) ? `_${safe.slice(1)}` : safe;
}

/** The checked entries of an opened payload's field 0x03 ([] without one); throws a
 * PayloadError for a field a reader must refuse, like the rest of the envelope. */
export function attachmentsOf(payload) {
  return payload.attachmentsField ? decodeAttachments(payload.attachmentsField) : [];
}

const canStream = () => typeof globalThis.showSaveFilePicker === "function";

/** The list of a message's files, each with its Download button. */
export function renderAttachments(files, session) {
  const box = element("div", { class: "attachments" });
  const list = element("ul", { class: "plain" });
  list.append(...files.map((entry) => renderFile(entry, session)));
  box.append(element("p", { class: "hint" }, tn("{count} file:", "{count} files:", files.length)), list);
  if (!canStream()) box.append(element("p", { class: "hint" }, memoryLimitText()));
  return box;
}

function renderFile(entry, session) {
  const item = element("li", { class: "attachment" });
  const shown = displayName(entry.name);
  const name = element("bdi", { class: "file-name" });
  name.append(...nameNodes(entry.name));
  const details = element("span", { class: "hint" }, ` · ${formatSize(entry.size)} · ${entry.mediaType} `);
  const button = element("button", { type: "button", class: "secondary",
    "aria-label": t("Download {name}", { name: shown }) }, t("Download"));
  const progress = element("progress", { max: String(entry.paddedLength), value: "0",
    "aria-label": t("Downloading {name}", { name: shown }) });
  progress.hidden = true;
  const status = element("span", { class: "file-status", role: "status" });
  const view = { button, progress, status };
  button.addEventListener("click", () => download(entry, session, view));
  item.append(name, details, button, " ", progress, " ", status);
  return item;
}

function show(view, text, kind = "info") {
  if (kind === "error") view.status.replaceChildren(element("span", { role: "alert" }, text));
  else view.status.textContent = text;
  view.status.dataset.kind = kind;
}

// Where the plaintext goes: { write(bytes), close(), abort() }. abort() leaves nothing.
async function diskSink(entry) {
  const handle = await globalThis.showSaveFilePicker({ suggestedName: saveName(entry.name) });
  // The browser writes to a temporary file and gives it the chosen name only at close().
  const writable = await handle.createWritable();
  return {
    write: (bytes) => writable.write(bytes),
    close: async () => {
      await writable.close();
      return t("Saved to the file you chose.");
    },
    abort: () => writable.abort().catch(() => {}),
  };
}

function memorySink(entry) {
  let parts = [];
  return {
    write: (bytes) => parts.push(bytes),
    close: () => {
      const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
      parts = [];
      const link = element("a", { href: url, download: saveName(entry.name) });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), MEMORY_URL_LIFETIME_MS);
      return t("Downloaded: the browser saves it where it keeps downloads.");
    },
    abort: () => {
      parts = [];
    },
  };
}

// Opens where the file will go; null when the user cancelled or it cannot be had.
async function openSink(entry, view) {
  if (!canStream()) {
    if (entry.size <= MEMORY_LIMIT_BYTES) return memorySink(entry);
    show(view, memoryLimitText(), "error");
    return null;
  }
  try {
    return await diskSink(entry);
  } catch (err) {
    if (err?.name === "AbortError") show(view, t("Not downloaded: no file was chosen."));
    else show(view, t("Could not open a file to save to: {error}", { error: err?.message ?? err }), "error");
    return null;
  }
}

// The blob, read and decrypted piece by piece into `sink`, the progress bar following.
async function decryptInto(response, entry, sink, progress) {
  const declared = response.headers.get("Content-Length");
  if (declared !== null && Number(declared) !== entry.paddedLength) {
    // SPEC 5.11: a length known in advance is checked before reading.
    throw new SizeError(`the blob has ${declared} bytes, not ${entry.paddedLength}`);
  }
  const decryptor = new BlobDecryptor(entry);
  const reader = response.body.getReader();
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const plaintext = await decryptor.update(value);
      if (plaintext.length) await sink.write(plaintext);
      received += value.length;
      progress.value = Math.min(received, entry.paddedLength);
    }
    await decryptor.finish();
  } finally {
    reader.cancel().catch(() => {}); // stops the transfer after an error; no-op when done
  }
}

function failureText(err) {
  if (err instanceof SecretlinkCryptoError) {
    return t("This file is damaged or was tampered with, so nothing was saved ({error}).", { error: err.message });
  }
  if (err instanceof ApiError) return t("Could not download the file: {error}", { error: err.message });
  if (err instanceof TypeError) return t("The download broke off, so nothing was saved. Try again.");
  return t("Could not save the file: {error}", { error: err?.message ?? err });
}

async function download(entry, session, view) {
  // First, while the click still counts as one: the save dialog needs a user gesture.
  const sink = await openSink(entry, view);
  if (!sink) return;
  view.button.disabled = true;
  view.progress.value = 0;
  view.progress.hidden = false;
  show(view, t("Downloading and decrypting…"));
  try {
    const response = await session.blob(b64encode(entry.blobId));
    await decryptInto(response, entry, sink, view.progress);
    show(view, await sink.close(), "success");
  } catch (err) {
    await sink.abort();
    view.progress.hidden = true;
    show(view, failureText(err), "error");
  } finally {
    view.button.disabled = false;
  }
}
