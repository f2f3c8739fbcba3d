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
import { $, say } from "./ui.js";
import { solvePuzzle, withWork } from "./work.js";

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

// Progress is shown only while a sender is waiting for the work (see `waiting`).
let waiting = false;
let workNote = "Proving this is not spam (a short computation)…";

function showProgress(percent) {
  if (waiting) say(`${workNote} ${percent}%`);
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
  const solution = await solvePuzzle(puzzle, showProgress);
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

// A puzzle can go wrong between being solved and being sent: expired, used, or from
// before a key rotation; one retry with a new puzzle then, never more. A `pow_stale`
// refusal (the puzzle is over 120 s old and the server's difficulty rose since, as
// in a flood) carries a fresh puzzle: solve it and send the same ciphertext again.
const RETRY_WITH_NEW_PUZZLE = new Set(["puzzle_expired", "puzzle_used", "bad_puzzle"]);

async function postMessage(ciphertext) {
  const send = (fields) => request("POST", `${base}/messages`, { body: { ciphertext, ...fields } });
  for (let attempt = 0; ; attempt++) {
    waiting = true;
    const { puzzle, solution } = await takeProof();
    performance.mark("secretlink:send:proof-ready");
    say("Sending…");
    try {
      return await send({ puzzle, solution });
    } catch (err) {
      if (err.code === "pow_stale" && err.data?.puzzle) {
        workNote = "The server is busy and asks for more work; computing again…";
        say(workNote);
        return withWork(err.data.puzzle, send, {
          progress: showProgress,
          onStale: () => say(workNote),
        });
      }
      if (attempt > 0 || !RETRY_WITH_NEW_PUZZLE.has(err.code)) throw err;
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
    workNote = "Proving this is not spam (a short computation)…";
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
