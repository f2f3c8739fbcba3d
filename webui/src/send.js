// The sender page: encrypt in this page to the key in the link, post ciphertext only.
// Pure JavaScript crypto, so it works with WebAssembly and JIT disabled (Tor Browser
// "Safer"). The key is read from the address bar, never from anything the server
// put in the page.

import {
  MAX_TEXT_BYTES,
  SecretlinkCryptoError,
  b64encode,
  decodePublicKey,
  prepareSeal,
} from "../../crypto/secretlink.js";
import { request } from "./api.js";
import { MAX_POW_BITS } from "./pow.js";
import { $, say } from "./ui.js";

const encoder = new TextEncoder();
const keyText = decodeURIComponent(location.pathname.split("/").pop());
const form = $("#send-form");
const textarea = $("#message");
const button = $("#send");

function byteLength(text) {
  return encoder.encode(text).length;
}

function showSize() {
  const used = byteLength(textarea.value);
  const size = $("#size");
  size.textContent = used > MAX_TEXT_BYTES
    ? `Too long by ${used - MAX_TEXT_BYTES} bytes (the limit is ${MAX_TEXT_BYTES}).`
    : `${MAX_TEXT_BYTES - used} bytes left.`;
  size.dataset.kind = used > MAX_TEXT_BYTES ? "error" : "info";
}

// The worker's code is fetched with the integrity hash the page names (browsers
// check no integrity for `new Worker(url)`), then started from that verified copy.
// Trusted Types (required by the CSP) let a script URL through only via a policy;
// this one accepts nothing but the blob made here from the verified bytes.
let workerUrl = null;
async function verifiedWorkerUrl() {
  if (workerUrl) return workerUrl;
  const source = new URL(form.dataset.powWorker, location.href);
  if (source.origin !== location.origin || !source.pathname.startsWith("/static/build/pow-worker.js")) {
    throw new Error("The page names an unexpected worker script.");
  }
  let response;
  try {
    response = await fetch(source, { integrity: form.dataset.powWorkerIntegrity, credentials: "omit" });
  } catch {
    throw new Error("The anti-spam script could not be loaded or failed its integrity check.");
  }
  if (!response.ok) throw new Error(`The anti-spam script could not be loaded (${response.status}).`);
  const blobUrl = URL.createObjectURL(new Blob([await response.arrayBuffer()], { type: "text/javascript" }));
  workerUrl = window.trustedTypes
    ? trustedTypes
      .createPolicy("secretlink-worker", { createScriptURL: (value) => (value === blobUrl ? value : null) })
      .createScriptURL(blobUrl)
    : blobUrl;
  return workerUrl;
}

// The server's puzzle, solved in a Web Worker so the page stays responsive. Progress
// is shown only while a sender is waiting for it (see `waiting`).
let waiting = false;

async function proofOfWork({ puzzle, difficulty }) {
  if (!(difficulty >= 0 && difficulty <= MAX_POW_BITS)) {
    throw new Error("The server asks for an unreasonable amount of work.");
  }
  if (difficulty === 0) return 0; // the gate is off on this server
  const expected = 2 ** difficulty;
  const url = await verifiedWorkerUrl();
  return new Promise((resolve, reject) => {
    const worker = new Worker(url);
    worker.onmessage = ({ data }) => {
      if (data.solution !== undefined) {
        worker.terminate();
        resolve(data.solution);
      } else if (waiting) {
        const share = Math.min(99, Math.round((100 * data.attempts) / expected));
        say(`Proving this is not spam (a short computation)… ${share}%`);
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`The anti-spam computation failed (${event.message}).`));
    };
    worker.postMessage({ puzzle, difficulty });
  });
}

// Work done ahead, while the sender writes, so that Send does not wait for it: one
// solved puzzle (the server's proof-of-work gate) and one prepared seal (the X25519
// half of the sealed box, which does not depend on the message). Each is used for
// one message, then made again.
const base = `/api/v1/inboxes/${keyText}`;
const PUZZLE_MARGIN_MS = 30_000; // fetch a new puzzle rather than send one about to expire
let proofAhead = null; // Promise of { puzzle, solution, expiresAt }
let sealAhead = null;

async function solvedPuzzle() {
  const puzzle = await request("POST", `${base}/puzzle`);
  const solution = await proofOfWork(puzzle);
  return { puzzle: puzzle.puzzle, solution, expiresAt: puzzle.expires_at * 1000 };
}

function prepareAhead() {
  if (!proofAhead) {
    proofAhead = solvedPuzzle();
    proofAhead.catch(() => {}); // reported when a send needs it, not before
  }
  // In a task of its own: without a JIT the two X25519 operations take a while, and
  // the keystroke that asked for them should not wait.
  setTimeout(() => {
    if (sealAhead) return;
    try {
      sealAhead = prepareSeal(decodePublicKey(keyText));
    } catch {
      // A damaged key in the link: Send says so.
    }
  }, 0);
}

async function takeProof() {
  const ahead = proofAhead;
  proofAhead = null;
  try {
    const proof = await (ahead ?? solvedPuzzle());
    if (proof.expiresAt - Date.now() > PUZZLE_MARGIN_MS) return proof;
  } catch {
    // Failed ahead of time (offline then, say): try again now, reporting errors.
  }
  return solvedPuzzle();
}

function takeSeal() {
  const prepared = sealAhead ?? prepareSeal(decodePublicKey(keyText));
  sealAhead = null; // never used twice, whatever happens next
  return prepared;
}

// A puzzle can go stale between being solved and being sent; one retry with a
// fresh one then, never more.
const STALE_PUZZLE = new Set(["puzzle_expired", "puzzle_used", "bad_puzzle"]);

async function postMessage(ciphertext) {
  for (let attempt = 0; ; attempt++) {
    waiting = true;
    const { puzzle, solution } = await takeProof();
    performance.mark("secretlink:send:proof-ready");
    say("Sending…");
    try {
      return await request("POST", `${base}/messages`, { body: { ciphertext, puzzle, solution } });
    } catch (err) {
      if (attempt > 0 || !STALE_PUZZLE.has(err.code)) throw err;
    }
  }
}

const SEND_ERRORS = {
  unknown_inbox: "This inbox does not exist (any more). Your message was not sent.",
  inbox_full: "This inbox is full: its owner has to delete messages before it takes more. Your message was not sent; try again later.",
  instance_full: "This server is full and takes no messages for now. Your message was not sent; try again later.",
  rate_limited: "Too many messages right now (from your network, to this inbox, or to this server). Your message was not sent; wait a minute and try again.",
  too_large: "The message is too long for this server. Your message was not sent.",
  unreachable: "Could not reach the server. Your message was not sent; try again.",
};

async function send(event) {
  event.preventDefault();
  const text = textarea.value;
  if (text.trim() === "") {
    say("Write a message first.", "error");
    return;
  }
  if (byteLength(text) > MAX_TEXT_BYTES) {
    say(`The message is too long: at most ${MAX_TEXT_BYTES} bytes.`, "error");
    return;
  }
  button.disabled = true;
  say("Encrypting and sending…");
  // User Timing: lets benchmarks (and anyone's devtools) see how long a send takes.
  performance.mark("secretlink:send:start");
  try {
    const ciphertext = b64encode(takeSeal().seal(text));
    performance.measure("secretlink:send:seal", "secretlink:send:start");
    await postMessage(ciphertext);
    performance.measure("secretlink:send", "secretlink:send:start");
    textarea.value = "";
    showSize();
    say("Sent. Only the owner of this inbox can read it.", "success");
  } catch (err) {
    if (err instanceof SecretlinkCryptoError) {
      say(`This link's key is not usable (${err.message}). Nothing was sent.`, "error");
    } else {
      say(SEND_ERRORS[err.code] ?? `${err.message} Your message was not sent.`, "error");
    }
  } finally {
    waiting = false;
    button.disabled = false;
    prepareAhead(); // for a next message
  }
}

form.addEventListener("submit", send);
textarea.addEventListener("input", showSize);
// Start the work ahead once someone begins to write, not for every visitor.
textarea.addEventListener("focus", prepareAhead, { once: true });
textarea.addEventListener("input", prepareAhead, { once: true });
showSize();
