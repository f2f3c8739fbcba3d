// Quick wipe: in one confirmed step, erase everything this browser holds for this
// site (every IndexedDB database with its keys and reading state, local and session
// storage, caches, service workers and cookies), then load a clean page. Nothing is
// asked of the server: the inboxes and their messages stay there, unreadable
// without the keys. What the browser keeps outside the site's storage (downloaded
// files, history, the operating system's backups) is out of a page's reach: README.

import { $, say } from "./ui.js";
import { formatList, t } from "./i18n.js";

// The app's databases, for browsers without indexedDB.databases() (it lists every
// database of this origin where it exists, including ones added by later features).
const KNOWN_DATABASES = ["secretlink", "secretlink-reading"];

const settle = (request) =>
  new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });

async function databaseNames() {
  if (typeof indexedDB.databases !== "function") return KNOWN_DATABASES;
  const names = (await indexedDB.databases()).map((info) => info.name).filter(Boolean);
  return [...new Set([...names, ...KNOWN_DATABASES])];
}

// Empty every store first: deleting a database waits for this page's own open
// connections (idb-keyval keeps one) to close, which happens only when the page
// goes; emptied now, nothing is left even in that moment.
async function emptyDatabase(name) {
  const request = indexedDB.open(name);
  let created = false;
  request.onupgradeneeded = () => {
    created = true; // it did not exist: leave nothing behind
    request.transaction.abort();
  };
  let db;
  try {
    db = await settle(request);
  } catch (err) {
    if (created) return;
    throw err;
  }
  try {
    const stores = [...db.objectStoreNames];
    if (!stores.length) return;
    const transaction = db.transaction(stores, "readwrite");
    for (const store of stores) transaction.objectStore(store).clear();
    await new Promise((resolve, reject) => {
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  } finally {
    db.close();
  }
}

// Resolves once deleted, or once the browser says the deletion waits for this page's
// open connections ("blocked"): it then completes as the page is left.
function deleteDatabase(name) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = () => resolve();
    request.onblocked = () => resolve();
    request.onerror = () => reject(request.error);
  });
}

async function wipeDatabases() {
  for (const name of await databaseNames()) {
    await emptyDatabase(name);
    await deleteDatabase(name);
  }
}

function wipeWebStorage() {
  localStorage.clear();
  sessionStorage.clear();
}

async function wipeCaches() {
  if (!globalThis.caches) return; // only in secure contexts
  for (const name of await caches.keys()) await caches.delete(name);
}

async function wipeServiceWorkers() {
  if (!navigator.serviceWorker) return;
  for (const registration of await navigator.serviceWorker.getRegistrations()) {
    await registration.unregister();
  }
}

function wipeCookies() {
  for (const cookie of document.cookie.split(";")) {
    const name = cookie.split("=")[0].trim();
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/`;
  }
}

/** Erase everything; returns the names of the parts that failed (none, normally). */
export async function wipeEverything() {
  const steps = [
    [t("stored keys and messages"), wipeDatabases],
    [t("local storage"), wipeWebStorage],
    [t("caches"), wipeCaches],
    [t("service workers"), wipeServiceWorkers],
    [t("cookies"), wipeCookies],
  ];
  const failed = [];
  for (const [what, step] of steps) {
    try {
      await step();
    } catch {
      failed.push(what);
    }
  }
  return failed;
}

async function quickWipe() {
  if (!confirm(t("Erase every inbox key, message and setting this browser holds for this site? " +
    "Inboxes whose key file you have not saved elsewhere are lost for good."))) return;
  const button = $("#quick-wipe");
  button.disabled = true;
  say(t("Erasing…"));
  const failed = await wipeEverything();
  if (failed.length) {
    button.disabled = false;
    say(t("Could not erase: {parts}. Clear this site's data in the browser's settings.",
      { parts: formatList(failed) }), "error");
    return;
  }
  // A new page: nothing decrypted stays on screen or in memory, and this history
  // entry's address loses the key its fragment named.
  history.replaceState(null, "", `${location.pathname}${location.search}#wiped`);
  location.reload();
}

/** Show the one-line result of a wipe on the fresh page it loads. */
export function reportWipe() {
  if (location.hash !== "#wiped") return false;
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  say(t("Quick wipe done: this browser holds no key and no message of this site any more."), "success");
  return true;
}

$("#quick-wipe").addEventListener("click", quickWipe);
