// The sender page: encrypt in this page to the key in the link, post ciphertext only.
// Pure JavaScript crypto, so it works with WebAssembly and JIT disabled (Tor Browser
// "Safer"). The key is read from the address bar, never from anything the server
// put in the page.

import {
  MAX_PADDED,
  MAX_TEXT_BYTES,
  SecretlinkCryptoError,
  SizeError,
  b64encode,
  decodePublicKey,
  prepareSeal,
} from "../../crypto/secretlink.js";
import { MAX_CONVERSATION_TEXT_BYTES } from "../../crypto/conversation.js";
import { request } from "./api.js";
import { chosenFiles, clearFiles, prepareFiles, showAttachments, uploadFiles } from "./attach-upload.js";
import { encodeAttachments } from "../../crypto/attachments.js";
import { CLOSED, applyInboxState, showClosed, statusOf } from "./sendstate.js";
import { showSafetyWords } from "./safety.js";
import { replyWanted, startConversation } from "./send-reply.js";
import { $, say } from "./ui.js";
import { solvePuzzle, withWork } from "./work.js";
import { keepFocus, moveFocus } from "./focus.js";
import { formatPercent, t } from "./i18n.js";

const encoder = new TextEncoder();
const keyText = decodeURIComponent(location.pathname.split("/").pop());
const form = $("#send-form");
const textarea = $("#message");
const button = $("#send");

function byteLength(text) {
  return encoder.encode(text).length;
}

// The space is the payload's, not the text's (SPEC 5.5): the largest payload leaves one
// byte of the largest bucket for the padding marker. A plain message's payload is its
// text field; one that lets the recipient reply carries an empty text field and the
// conversation field, whose fixed part takes more. Either way the difference between
// the largest payload and the largest text is exactly what the other bytes take.
const MAX_PAYLOAD = MAX_PADDED - 1;

function payloadBytes(text) {
  const maxText = replyWanted() ? MAX_CONVERSATION_TEXT_BYTES : MAX_TEXT_BYTES;
  return byteLength(text) + (MAX_PAYLOAD - maxText);
}

// A share of the space, not a count of bytes left: an Arabic letter takes two bytes
// and an emoji four, so "n bytes left" says nothing a writer can use, and a count of
// characters would be untrue. Rounded down, so 100 % means full, never nearly.
function showSize() {
  const used = payloadBytes(textarea.value);
  const share = (100 * used) / MAX_PAYLOAD;
  const tooLong = used > MAX_PAYLOAD;
  const meter = $("#space");
  meter.value = Math.min(share, 100);
  const full = formatPercent(100);
  const usedText = t("{share} used", { share: formatPercent(Math.floor(share)) });
  meter.setAttribute("aria-valuetext", tooLong ? t("over {share} used", { share: full }) : usedText);
  const size = $("#size");
  size.textContent = tooLong
    ? t("Too long: over {share} used. Shorten the message to send it.", { share: full })
    : usedText;
  size.dataset.kind = tooLong ? "error" : "info";
}

// Progress is shown only while a sender is waiting for the work (see `waiting`).
let waiting = false;
const provingNote = () => t("Proving this is not spam (a short computation)…");
let workNote = provingNote();

function showProgress(percent) {
  if (waiting) say(t("{note} {percent}%", { note: workNote, percent }));
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

async function postMessage(ciphertext, attachments = []) {
  const listed = attachments.length ? { attachments } : {};
  const send = (fields) => request("POST", `${base}/messages`, { body: { ciphertext, ...listed, ...fields } });
  for (let attempt = 0; ; attempt++) {
    waiting = true;
    const { puzzle, solution } = await takeProof();
    performance.mark("secretlink:send:proof-ready");
    busy.say(t("Sending…"));
    try {
      return await send({ puzzle, solution });
    } catch (err) {
      if (err.code === "pow_stale" && err.data?.puzzle) {
        workNote = t("The server is busy and asks for more work; computing again…");
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

// Functions, so that each text is looked up in the page's catalogue when it is shown.
const SEND_ERRORS = {
  unknown_inbox: () => t("This inbox does not exist (any more). Your message was not sent."),
  inbox_full: () => t("This inbox is full: its owner has to delete messages before it takes more. " +
    "Your message was not sent; try again later."),
  instance_full: () => t("This server is full and takes no messages for now. Your message was not sent; " +
    "try again later."),
  rate_limited: () => t("Too many messages right now (from your network, to this inbox, or to this server). " +
    "Your message was not sent; wait a minute and try again."),
  too_large: () => t("The message is too long for this server. Your message was not sent."),
  unreachable: () => t("Could not reach the server. Your message was not sent; try again."),
  inbox_paused: () => t("This inbox is not taking messages right now: its owner has paused it. " +
    "Your message was not sent; try again later."),
  inbox_moved: () => t("This inbox has moved on: its owner no longer takes messages at this link. " +
    "Your message was not sent."),
  inbox_disabled: () => t("This inbox is not available. Your message was not sent."),
  hourly_cap_reached: () => t("This inbox takes only so many messages an hour, and has had that many. " +
    "Your message was not sent; try again later."),
};

// While a message goes: Send takes no second press at once, and shows that it is
// busy (disabled, a spinner, the status line) only once the send has taken long
// enough to notice. A quick send of a message whose puzzle is ready then goes
// straight to "Sent." with nothing on the page changed while its request is on the
// way: each change would have the browser lay out, hit-test under the pointer and
// paint again, on the same cores the request needs (docs/PERFORMANCE.md, "P4: what
// the send costs"). Steps that report as they go (the proof of work's progress, a
// reply inbox being registered) write the status line themselves; the busy note
// then never overwrites them.
const BUSY_AFTER_MS = 300;
const busy = {
  active: false,
  timer: null,
  note: "",
  quiet: "", // the status line as the press left it
  start(note) {
    this.active = true;
    this.note = note;
    // An earlier send's error goes at once: it is not this send's.
    if ($("#status").dataset.kind === "error") say("");
    this.quiet = $("#status").textContent;
    this.timer = setTimeout(() => {
      button.disabled = true;
      if (!this.spoken()) say(this.note);
    }, BUSY_AFTER_MS);
  },
  // Whether the status line has said something since the press.
  spoken() {
    return $("#status").textContent !== this.quiet;
  },
  // A later step's note: shown now if the page already shows it is busy, else when
  // it does.
  say(note) {
    this.note = note;
    if (button.disabled || this.spoken()) say(note);
  },
  stop() {
    clearTimeout(this.timer);
    this.active = false;
    button.disabled = false;
  },
};

async function send(event) {
  event.preventDefault();
  if (busy.active) return; // pressed again while a message goes
  const text = textarea.value;
  const files = chosenFiles();
  if (text.trim() === "" && !files.length) {
    say(t("Write a message first."), "error");
    moveFocus(textarea);
    return;
  }
  if (payloadBytes(text) > MAX_PAYLOAD) {
    say(t("The message is too long: it takes over {share} of the space. Shorten it to send it.",
      { share: formatPercent(100) }), "error");
    moveFocus(textarea);
    return;
  }
  if (files.length && replyWanted()) {
    say(t("Files cannot go with a reply request (a conversation carries text only): send them in a message " +
      "of their own."), "error");
    return;
  }
  busy.start(t("Encrypting and sending…"));
  let outgoing = [];
  try {
    // Reads every JPEG photo once when its metadata is to go (nothing is sent yet).
    outgoing = await prepareFiles(files);
  } catch (err) {
    busy.stop();
    say(t("{error} Nothing was sent.", { error: err.message }), "error");
    keepFocus(button);
    return;
  }
  const entries = outgoing.map((item) => item.entry);
  // User Timing: lets benchmarks (and anyone's devtools) see how long a send takes.
  performance.mark("secretlink:send:start");
  try {
    const reply = replyWanted() ? await startConversation(decodePublicKey(keyText), text, say) : null;
    // Sealed before any upload: a text and file list too long for one envelope is
    // refused before a byte of a file goes.
    const message = reply ? reply.message
      : entries.length ? { text, attachmentsField: encodeAttachments(entries) } : text;
    const ciphertext = b64encode(takeSeal().seal(message));
    performance.measure("secretlink:send:seal", "secretlink:send:start");
    const blobIds = outgoing.length ? await uploadFiles(base, outgoing) : [];
    await postMessage(ciphertext, blobIds);
    if (reply) await reply.sent();
    performance.measure("secretlink:send", "secretlink:send:start");
    textarea.value = "";
    clearFiles();
    showSize();
    say(reply
      ? t("Sent. Only the owner of this inbox can read it. Keep the reply link below to read the answers.")
      : t("Sent. Only the owner of this inbox can read it."), "success");
    moveFocus(reply ? $("#reply-ready h2") : $("#status"));
  } catch (err) {
    if (err instanceof SizeError && entries.length) {
      say(t("The text and the list of files do not fit in one message: shorten the text. Nothing was sent."),
        "error");
    } else if (err instanceof SecretlinkCryptoError) {
      say(t("This link's key is not usable ({error}). Nothing was sent.", { error: err.message }), "error");
    } else {
      say(SEND_ERRORS[err.code]?.() ?? t("{error} Your message was not sent.", { error: err.message }), "error");
      // Closed since the page opened: the notice shows, the sender's text stays.
      if (CLOSED.has(err.code)) showClosed(statusOf(err.code), { keepForm: true });
    }
  } finally {
    waiting = false;
    workNote = provingNote();
    busy.stop();
    keepFocus(button);
    prepareAhead(); // for a next message
  }
}

form.addEventListener("submit", send);
textarea.addEventListener("input", showSize);
$("#want-reply")?.addEventListener("change", showSize); // a reply key takes room too
// Start the work ahead once someone begins to write, not for every visitor.
textarea.addEventListener("focus", prepareAhead, { once: true });
textarea.addEventListener("input", prepareAhead, { once: true });
showSize();
// Paused, moved on or unavailable: a notice, not the form; files if the inbox takes them.
applyInboxState(keyText, showAttachments);
showSafetyWords($("#inbox-safety-words"), keyText);
