// "Back up keys" on the inbox page: this inbox, or every inbox of this browser with the
// state the browser keeps for it, as a passphrase-protected file (crypto/SPEC.md 6a);
// and restoring such a file (or one `secretlink keygen --passphrase` made) here.
// The passphrase work runs in a Web Worker (backup-worker.js) with a progress bar; the
// page first times a small run there and says how long the real one will take.

import { b64decode, keyPairFromSecret } from "../../crypto/secretlink.js";
import {
  MAX_FILE_BYTES,
  MIN_PASSPHRASE_CHARS,
  ProtectedKeyError,
  checkNewPassphrase,
  dumpBundle,
  isProtected,
  readHeader,
} from "../../crypto/protected-key.js";
import { askPersistence, listKeys, loadKey, saveKey } from "./keystore.js";
import { $, downloadText, element } from "./ui.js";
import { keepFocus } from "./focus.js";
import { verifiedWorkerUrl } from "./verified-worker.js";
import { t, tn } from "./i18n.js";

// ---- the per-inbox state a backup carries ----

// Members of a stored key record that are the key itself, not state.
const KEY_MEMBERS = new Set(["publicKey", "secretKey", "server"]);
// Record members whose name in the file differs (the file's names are snake_case).
const FILE_NAMES = { savedAt: "saved_at" };
const RECORD_NAMES = Object.fromEntries(Object.entries(FILE_NAMES).map(([a, b]) => [b, a]));

// State kept outside the key records (another IndexedDB store, say) joins backups
// through here: `save(publicKey)` gives a JSON value (or undefined for none),
// `restore(publicKey, value)` takes it back. `name` is its member in the file's state
// (SPEC 6a.3 names the known ones). State of the browser as a whole, which belongs to
// no one inbox, goes in the bundle's `device` likewise: `save()`, `restore(value)`.
const sources = new Map();
const deviceSources = new Map();
export function addBackupState(name, { save, restore }) {
  sources.set(name, { save, restore });
}
export function addDeviceBackupState(name, { save, restore }) {
  deviceSources.set(name, { save, restore });
}

async function deviceState() {
  const device = {};
  for (const [name, source] of deviceSources) {
    const value = await source.save();
    if (value !== undefined) device[name] = value;
  }
  return device;
}

async function restoreDevice(device) {
  for (const [name, source] of deviceSources) {
    if (device[name] !== undefined) await source.restore(device[name]);
  }
}

// Everything a key record holds besides the key (its prompt, when it was saved, and
// what later features add to it), plus the registered sources' values.
async function stateOf(record) {
  const state = {};
  for (const [name, value] of Object.entries(record)) {
    if (!KEY_MEMBERS.has(name) && value !== undefined) state[FILE_NAMES[name] ?? name] = value;
  }
  for (const [name, source] of sources) {
    const value = await source.save(record.publicKey);
    if (value !== undefined) state[name] = value;
  }
  return state;
}

async function restoreInbox({ publicKey, secretKey, state }) {
  if (await loadKey(publicKey)) return false; // what this browser holds is newer: kept
  const record = {};
  for (const [name, value] of Object.entries(state)) {
    if (!KEY_MEMBERS.has(name) && !sources.has(name)) record[RECORD_NAMES[name] ?? name] = value;
  }
  await saveKey(keyPairFromSecret(b64decode(secretKey)), record);
  for (const [name, source] of sources) {
    if (state[name] !== undefined) await source.restore(publicKey, state[name]);
  }
  return true;
}

// ---- the worker ----

function panel() {
  return $("#backup");
}

async function inWorker(message, onProgress = () => {}) {
  const holder = panel();
  const url = await verifiedWorkerUrl("backup-worker", holder.dataset.backupWorker,
    holder.dataset.backupWorkerIntegrity, t("The backup script"));
  return new Promise((resolve, reject) => {
    const worker = new Worker(url);
    worker.onmessage = ({ data }) => {
      if (data.progress !== undefined) {
        onProgress(data.progress);
        return;
      }
      worker.terminate();
      if (data.error) {
        const error = new Error(data.error.message);
        error.name = data.error.name;
        reject(error);
      } else {
        resolve(data.result);
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(t("The backup computation failed ({error}).", { error: event.message })));
    };
    worker.postMessage(message);
  });
}

let speed = null; // milliseconds per KiB x pass in this browser, once measured

async function estimate(memoryKib, passes) {
  if (speed === null) {
    const { milliseconds, units } = await inWorker({ op: "calibrate" });
    speed = milliseconds / units;
  }
  return (speed * memoryKib * passes) / 1000;
}

// A sentence on how long the work takes here, said before it starts.
// `doing` is one of DOING's texts.
function duration(seconds, doing) {
  const span = seconds < 2 ? t("a second or two")
    : seconds < 90 ? tn("about {count} second", "about {count} seconds", Math.round(seconds))
      : tn("about {count} minute", "about {count} minutes", Math.round(seconds / 60));
  const sentence = t("{doing} takes {span} in this browser.", { doing, span });
  if (seconds < 5) return sentence;
  const slow = t("This browser runs scripts slowly (as Tor Browser does at its Safer level, without a " +
    "JIT): keep this tab open until it is done.");
  return `${sentence} ${slow}`;
}

const DOING = {
  protect: () => t("Protecting the file"),
  open: () => t("Opening it"),
  restore: () => t("Opening the backup"),
};

// ---- making a backup ----

function cost() {
  return { memoryKib: Number(panel().dataset.kdfMemoryKib), passes: Number(panel().dataset.kdfPasses) };
}

// A polite live region, as the page's own status line (ui.js say): errors are alerts.
function tell(message, kind = "info") {
  const status = $("#backup-status");
  if (kind === "error") status.replaceChildren(element("span", { role: "alert" }, message));
  else status.textContent = message;
  status.dataset.kind = kind;
}

function showProgress(fraction) {
  const bar = $("#backup-progress");
  bar.hidden = fraction === null;
  if (fraction !== null) bar.value = Math.round(fraction * 100);
}

async function showExportEstimate() {
  const { memoryKib, passes } = cost();
  try {
    $("#backup-estimate").textContent = duration(await estimate(memoryKib, passes), DOING.protect());
  } catch (err) {
    $("#backup-estimate").textContent = t("Backups cannot be made here: {error}", { error: err.message });
  }
}

async function recordsToBackUp(current) {
  const everything = $("#backup-scope-all").checked;
  if (everything) return listKeys();
  const inbox = current();
  if (!inbox) throw new Error(t("Open an inbox first, or choose every inbox kept in this browser."));
  const stored = await loadKey(inbox.publicKey).catch(() => null);
  // An inbox opened from a key file in a browser that stores nothing has no record.
  return [stored?.record ?? { publicKey: inbox.publicKey, secretKey: null, keyPair: inbox.keyPair }];
}

async function makeBackup(current) {
  const passphrase = $("#backup-passphrase").value;
  const button = $("#backup-start");
  // The rules a person meets while typing, said in the page's language; the crypto
  // module still checks them all (and the rarer ones: lone surrogates, length in bytes).
  const problem = passphrase === "" ? t("Choose a passphrase.")
    : [...passphrase.normalize("NFC")].length < MIN_PASSPHRASE_CHARS
      ? t("The passphrase is too short: use at least {count} characters (several unrelated words are easy " +
        "to remember and hard to guess).", { count: MIN_PASSPHRASE_CHARS })
      : null;
  if (problem) {
    tell(problem, "error");
    return;
  }
  try {
    checkNewPassphrase(passphrase);
  } catch (err) {
    if (!(err instanceof ProtectedKeyError)) throw err;
    tell(t("Choose another passphrase: {error}.", { error: err.message }), "error");
    return;
  }
  if ($("#backup-passphrase-again").value !== passphrase) {
    tell(t("The two passphrases differ."), "error");
    return;
  }
  button.disabled = true;
  try {
    const records = await recordsToBackUp(current);
    if (!records.length) throw new Error(t("This browser keeps no inbox keys to back up."));
    const inboxes = await Promise.all(records.map(async (record) => ({
      keyFile: { ...(record.keyPair ?? keyPairFromSecret(b64decode(record.secretKey))), server: record.server ?? location.origin },
      state: record.keyPair ? {} : await stateOf(record),
    })));
    const { memoryKib, passes } = cost();
    tell(duration(await estimate(memoryKib, passes), DOING.protect()));
    showProgress(0);
    const text = await inWorker({
      op: "protect",
      contents: new TextEncoder().encode(dumpBundle(inboxes, await deviceState())),
      passphrase,
      memoryKib,
      passes,
    }, showProgress);
    const name = inboxes.length === 1
      ? `secretlink-backup-${records[0].publicKey.slice(0, 8)}.json`
      : `secretlink-backup-${new Date().toISOString().slice(0, 10)}.json`;
    downloadText(name, text);
    $("#backup-passphrase").value = "";
    $("#backup-passphrase-again").value = "";
    tell(inboxes.length === 1
      ? t("Backup of this inbox downloaded. Keep the passphrase safe: nobody can recover it.")
      : tn("Backup of {count} inbox downloaded. Keep the passphrase safe: nobody can recover it.",
        "Backup of {count} inboxes downloaded. Keep the passphrase safe: nobody can recover it.", inboxes.length),
    "success");
  } catch (err) {
    tell(t("No backup was made: {error}", { error: err.message }), "error");
  } finally {
    showProgress(null);
    button.disabled = false;
    keepFocus(button);
  }
}

// ---- restoring ----

let pending = null; // a protected file handed over from the key-file field

async function fileBytes(file) {
  // One byte more than the limit is enough to refuse a large file.
  return new Uint8Array(await file.slice(0, MAX_FILE_BYTES + 1).arrayBuffer());
}

function chosenFile() {
  return pending ?? $("#restore-file").files[0] ?? null;
}

async function showRestoreEstimate() {
  const file = chosenFile();
  $("#restore-estimate").textContent = "";
  if (!file) return;
  try {
    const { memoryKib, passes } = readHeader(await fileBytes(file));
    $("#restore-estimate").textContent = duration(await estimate(memoryKib, passes), DOING.open());
  } catch (err) {
    tell(err instanceof ProtectedKeyError
      ? t("That file is not a backup this page can open: {error}.", { error: err.message })
      : t("Cannot open backups here: {error}", { error: err.message }), "error");
  }
}

async function restore(onRestored) {
  const file = chosenFile();
  const button = $("#restore-start");
  if (!file) {
    tell(t("Choose the backup file first."), "error");
    return;
  }
  button.disabled = true;
  try {
    const content = await fileBytes(file);
    const { memoryKib, passes } = readHeader(content);
    tell(duration(await estimate(memoryKib, passes), DOING.restore()));
    showProgress(0);
    const opened = await inWorker({ op: "open", content, passphrase: $("#restore-passphrase").value }, showProgress);
    let added = 0;
    for (const inbox of opened.inboxes) {
      if (await restoreInbox(inbox)) added += 1;
    }
    await restoreDevice(opened.device);
    await askPersistence();
    $("#restore-passphrase").value = "";
    pending = null;
    const elsewhere = opened.inboxes.filter((inbox) => inbox.server && inbox.server !== location.origin);
    const kept = opened.inboxes.length - added;
    tell([
      tn("{count} inbox restored.", "{count} inboxes restored.", added),
      kept ? tn("{count} was in this browser already and kept as it was.",
        "{count} were in this browser already and kept as they were.", kept) : "",
      elsewhere.length ? tn("{count} came from another server ({server}); here it opens as an inbox of this server.",
        "{count} came from another server ({server}); here they open as inboxes of this server.",
        elsewhere.length, { server: elsewhere[0].server }) : "",
    ].filter(Boolean).join(" "), "success");
    await onRestored(opened.inboxes[0].publicKey);
  } catch (err) {
    tell(err.name === "PassphraseError"
      ? t("Wrong passphrase (or the file was altered). Nothing was restored; try again.")
      : err instanceof ProtectedKeyError || err.name === "ProtectedKeyError"
        ? t("That file is not a backup this page can open: {error}.", { error: err.message })
        : t("Nothing was restored: {error}", { error: err.message }), "error");
  } finally {
    showProgress(null);
    button.disabled = false;
    keepFocus(button);
  }
}

// Wire the panel. `current()` is the open inbox ({ publicKey, keyPair }) or null;
// `onRestored(publicKey)` refreshes the page's list and opens that inbox. Returns
// `offer(file)`: true when the key-file field's file is a protected one, which then
// waits here for its passphrase.
export function setupBackup({ current, onRestored }) {
  if (!panel()) return async () => false;
  if (location.hash === "#restore") $("#backup-details").open = true; // the start page's link
  $("#backup-details").addEventListener("toggle", (event) => {
    if (event.target.open) showExportEstimate();
  });
  $("#backup-start").addEventListener("click", () => makeBackup(current));
  $("#restore-file").addEventListener("change", () => {
    pending = null;
    showRestoreEstimate();
  });
  $("#restore-start").addEventListener("click", () => restore(onRestored));
  return async (file) => {
    if (!isProtected(await fileBytes(file))) return false;
    pending = file;
    $("#backup-details").open = true;
    const section = t("Restore a backup");
    tell(t("{name} is a passphrase-protected backup: type its passphrase under \"{section}\".",
      { name: file.name, section }));
    $("#restore-passphrase").focus();
    await showRestoreEstimate();
    return true;
  };
}
