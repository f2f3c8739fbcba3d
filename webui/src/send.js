// The sender page: encrypt in this page to the key in the link, post ciphertext only.
// Pure JavaScript crypto, so it works with WebAssembly and JIT disabled (Tor Browser
// "Safer"). The key is read from the address bar, never from anything the server
// put in the page.

import {
  MAX_TEXT_BYTES,
  SecretlinkCryptoError,
  b64encode,
  decodePublicKey,
  seal,
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

// The server's puzzle, solved in a Web Worker so the page stays responsive; the status
// line shows how far along the expected work is.
async function proofOfWork({ puzzle, difficulty }) {
  if (!(difficulty >= 0 && difficulty <= MAX_POW_BITS)) {
    throw new Error("The server asks for an unreasonable amount of work.");
  }
  const expected = 2 ** difficulty;
  const url = await verifiedWorkerUrl();
  return new Promise((resolve, reject) => {
    const worker = new Worker(url);
    worker.onmessage = ({ data }) => {
      if (data.solution !== undefined) {
        worker.terminate();
        resolve(data.solution);
      } else {
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

const SEND_ERRORS = {
  unknown_inbox: "This inbox does not exist (any more). Your message was not sent.",
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
    const publicKey = decodePublicKey(keyText);
    const ciphertext = b64encode(seal(text, publicKey));
    const base = `/api/v1/inboxes/${keyText}`;
    const puzzle = await request("POST", `${base}/puzzle`);
    const solution = puzzle.difficulty > 0 ? await proofOfWork(puzzle) : 0;
    say("Sending…");
    await request("POST", `${base}/messages`, {
      body: { ciphertext, puzzle: puzzle.puzzle, solution },
    });
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
    button.disabled = false;
  }
}

form.addEventListener("submit", send);
textarea.addEventListener("input", showSize);
showSize();
