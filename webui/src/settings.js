// The inbox page's settings panel: pause, retention, hourly cap, replies and
// attachments (saved on the server with the inbox's token as soon as they change),
// deleting every message, and rotating the link. docs/API.md, "Inbox settings".

import { b64encode, generateKeyPair } from "../../crypto/secretlink.js";
import { inboxSession } from "./api.js";
import { loadKey, saveKey } from "./keystore.js";
import { $, say } from "./ui.js";

const RETENTION_CHOICES = [1, 7, 30, 90];

let hooks = null; // { current(): {keyPair, publicKey, session} | null, refresh(), opened(keyPair) }
let shown = null; // the settings last read from or saved to the server

const fields = () => $("#settings-fields");

function describeDefault(days) {
  return days ? `this server's default (${days} days)` : "this server's default (until you delete them)";
}

function render(settings) {
  shown = settings;
  $("#setting-paused").checked = settings.paused;
  $("#setting-replies").checked = settings.accepts_replies;
  $("#setting-attachments").checked = settings.accepts_attachments;
  $("#setting-cap").value = settings.hourly_cap ?? "";
  const limit = settings.instance_retention_days;
  $("#retention-default").textContent = describeDefault(limit);
  for (const option of $("#setting-retention").options) {
    // Longer than the server keeps anything: the server would refuse it.
    option.disabled = option.value !== "" && limit !== null && Number(option.value) > limit;
  }
  $("#setting-retention").value = settings.retention_days === null ? "" : String(settings.retention_days);
  const state = $("#settings-state");
  if (settings.disabled) {
    state.textContent = "The operator of this server has disabled this inbox: senders see only "
      + `"This inbox is not available." Reason given: ${settings.disabled_reason || "none"}`;
  } else if (settings.moved_to) {
    state.textContent = "This link has moved on: senders are told so, and not where. Its messages "
      + "stay here until you delete them.";
  }
  state.dataset.kind = settings.disabled ? "error" : "info";
  state.hidden = !settings.disabled && !settings.moved_to;
  // A moved or disabled inbox cannot be rotated (again); its messages can still go.
  $("#rotate").hidden = Boolean(settings.disabled || settings.moved_to);
  fields().disabled = false;
}

// Read the settings of the inbox now open (called by inbox.js when one opens).
export async function loadSettings() {
  const current = hooks.current();
  fields().disabled = true;
  $("#settings-state").hidden = true;
  if (!current) return;
  try {
    const settings = await current.session.settings();
    if (hooks.current() === current) render(settings);
  } catch (err) {
    // An unknown inbox is reported by the page itself, just after.
    if (err.code !== "unknown_inbox") say(`Could not load the inbox's settings: ${err.message}`, "error");
  }
}

async function change(changes, done) {
  const current = hooks.current();
  if (!current) return;
  fields().disabled = true;
  try {
    render(await current.session.changeSettings(changes));
    say(done, "success");
  } catch (err) {
    say(`Could not save the setting: ${err.message}`, "error");
    if (shown) render(shown); // show what the server still has
  } finally {
    fields().disabled = false;
  }
}

function changeCap() {
  const text = $("#setting-cap").value.trim();
  if (text === "") return change({ hourly_cap: null }, "No hourly limit of your own now.");
  const cap = Number(text);
  if (!Number.isInteger(cap) || cap < 1 || cap > 10000) {
    say("The hourly limit must be a whole number from 1 to 10000, or empty for none.", "error");
    return render(shown);
  }
  return change({ hourly_cap: cap }, `At most ${cap} messages per hour now.`);
}

function changeRetention() {
  const value = $("#setting-retention").value;
  const days = value === "" ? null : Number(value);
  if (days !== null && !RETENTION_CHOICES.includes(days)) return render(shown);
  return change({ retention_days: days }, days === null
    ? "Messages are kept as long as this server keeps them."
    : `Messages are deleted from the server ${days === 1 ? "a day" : `${days} days`} after they arrive.`);
}

async function deleteAll() {
  const current = hooks.current();
  if (!current) return;
  if (!confirm("Delete every message of this inbox from the server? This cannot be undone.")) return;
  try {
    const { deleted } = await current.session.deleteAllMessages();
    say(deleted === 1 ? "1 message deleted." : `${deleted} messages deleted.`, "success");
  } catch (err) {
    say(`Could not delete the messages: ${err.message}`, "error");
    return;
  }
  await hooks.refresh();
}

// Rotate: a new key made here, kept in this browser, registered as a new inbox (with
// its own creation puzzle), and only then the old inbox marked moved on, in one
// request proving both keys. Stopped half-way, the old link still works and the new
// inbox is in the list; the server never marks an inbox moved to one that does not exist.
async function rotate() {
  const current = hooks.current();
  if (!current) return;
  if (!confirm("Make a new link for this inbox? The old link will only tell senders that "
    + "this inbox has moved on, not where; share the new link yourself. The old messages stay "
    + "readable here until you delete them.")) return;
  const button = $("#rotate");
  button.disabled = true;
  try {
    const stored = await loadKey(current.publicKey);
    const prompt = stored?.record.prompt ?? "";
    const keyPair = generateKeyPair();
    const next = inboxSession(keyPair);
    let note = "Making the new inbox (a short computation against floods)…";
    const inbox = await next.create(prompt, {
      progress: (percent) => say(`${note} ${percent}%`),
      onStale: () => {
        note = "The server is busy and asks for more work; computing again…";
        say(note);
      },
    });
    // As on the start page (SPEC 4.4): the link must be this origin and our own key.
    const link = `${location.origin}/to/${b64encode(keyPair.publicKey)}`;
    if (inbox?.link !== link) {
      say("The server answered with a link that is not the new inbox's own. Do not use this "
        + "server: nothing was rotated.", "error");
      return;
    }
    try {
      await saveKey(keyPair, { prompt: inbox.prompt });
    } catch {
      // Never move the old inbox on to a key this browser could not keep.
      await next.remove().catch(() => {});
      say("This browser refused to store the new key, so the link was not rotated.", "error");
      return;
    }
    say("Marking the old link as moved on…");
    await current.session.rotateTo(next);
    if (stored) await saveKey(current.keyPair, { ...extras(stored.record), movedTo: b64encode(keyPair.publicKey) });
    await hooks.opened(keyPair);
    say("New link made: share it. The old inbox stays in the list so you can read its messages.", "success");
  } catch (err) {
    say(`Could not rotate the link: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

// What keystore keeps besides the key itself (prompt, day saved, ...).
function extras(record) {
  const { publicKey: _publicKey, secretKey: _secretKey, ...rest } = record;
  return rest;
}

export function initSettings(pageHooks) {
  hooks = pageHooks;
  $("#setting-paused").addEventListener("change", (event) => change({ paused: event.target.checked },
    event.target.checked ? "Paused: senders now see a notice instead of the form." : "Resumed: senders can write again."));
  $("#setting-replies").addEventListener("change", (event) => change({ accepts_replies: event.target.checked },
    event.target.checked ? "Replies are accepted." : "Replies are not accepted."));
  $("#setting-attachments").addEventListener("change", (event) => change({ accepts_attachments: event.target.checked },
    event.target.checked ? "Attachments will be accepted." : "Attachments are not accepted."));
  $("#setting-cap").addEventListener("change", changeCap);
  $("#setting-retention").addEventListener("change", changeRetention);
  $("#delete-all").addEventListener("click", deleteAll);
  $("#rotate").addEventListener("click", rotate);
}
