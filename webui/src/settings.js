// The inbox page's settings panel: pause, retention, hourly cap, replies and
// attachments (saved on the server with the inbox's token as soon as they change),
// deleting every message, and rotating the link. docs/API.md, "Inbox settings".

import { b64encode, generateKeyPair } from "../../crypto/secretlink.js";
import { inboxSession } from "./api.js";
import { loadKey, saveKey } from "./keystore.js";
import { $, say } from "./ui.js";
import { t, tn } from "./i18n.js";

const RETENTION_CHOICES = [1, 7, 30, 90];

let hooks = null; // { current(): {keyPair, publicKey, session} | null, refresh(), opened(keyPair) }
let shown = null; // the settings last read from or saved to the server

const fields = () => $("#settings-fields");

function describeDefault(days) {
  return days ? tn("this server's default ({count} day)", "this server's default ({count} days)", days)
    : t("this server's default (until you delete them)");
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
    const notice = t("This inbox is not available.");
    const reason = settings.disabled_reason || t("none");
    state.textContent = t("The operator of this server has disabled this inbox: senders see only " +
      "\"{notice}\" Reason given: {reason}", { notice, reason });
  } else if (settings.moved_to) {
    state.textContent = t("This link has moved on: senders are told so, and not where. Its messages " +
      "stay here until you delete them.");
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
    if (err.code !== "unknown_inbox") {
      say(t("Could not load the inbox's settings: {error}", { error: err.message }), "error");
    }
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
    say(t("Could not save the setting: {error}", { error: err.message }), "error");
    if (shown) render(shown); // show what the server still has
  } finally {
    fields().disabled = false;
  }
}

function changeCap() {
  const text = $("#setting-cap").value.trim();
  if (text === "") return change({ hourly_cap: null }, t("No hourly limit of your own now."));
  const cap = Number(text);
  if (!Number.isInteger(cap) || cap < 1 || cap > 10000) {
    say(t("The hourly limit must be a whole number from 1 to 10000, or empty for none."), "error");
    return render(shown);
  }
  return change({ hourly_cap: cap }, tn("At most {count} message per hour now.", "At most {count} messages per hour now.", cap));
}

function changeRetention() {
  const value = $("#setting-retention").value;
  const days = value === "" ? null : Number(value);
  if (days !== null && !RETENTION_CHOICES.includes(days)) return render(shown);
  return change({ retention_days: days }, days === null
    ? t("Messages are kept as long as this server keeps them.")
    : tn("Messages are deleted from the server {count} day after they arrive.",
      "Messages are deleted from the server {count} days after they arrive.", days));
}

async function deleteAll() {
  const current = hooks.current();
  if (!current) return;
  if (!confirm(t("Delete every message of this inbox from the server? This cannot be undone."))) return;
  try {
    const { deleted } = await current.session.deleteAllMessages();
    say(tn("{count} message deleted.", "{count} messages deleted.", deleted), "success");
  } catch (err) {
    say(t("Could not delete the messages: {error}", { error: err.message }), "error");
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
  if (!confirm(t("Make a new link for this inbox? The old link will only tell senders that " +
    "this inbox has moved on, not where; share the new link yourself. The old messages stay " +
    "readable here until you delete them."))) return;
  const button = $("#rotate");
  button.disabled = true;
  try {
    const stored = await loadKey(current.publicKey);
    const prompt = stored?.record.prompt ?? "";
    const keyPair = generateKeyPair();
    const next = inboxSession(keyPair);
    let note = t("Making the new inbox (a short computation against floods)…");
    const inbox = await next.create(prompt, {
      progress: (percent) => say(t("{note} {percent}%", { note, percent })),
      onStale: () => {
        note = t("The server is busy and asks for more work; computing again…");
        say(note);
      },
    });
    // As on the start page (SPEC 4.4): the link must be this origin and our own key.
    const link = `${location.origin}/to/${b64encode(keyPair.publicKey)}`;
    if (inbox?.link !== link) {
      say(t("The server answered with a link that is not the new inbox's own. Do not use this " +
        "server: nothing was rotated."), "error");
      return;
    }
    try {
      await saveKey(keyPair, { prompt: inbox.prompt });
    } catch {
      // Never move the old inbox on to a key this browser could not keep.
      await next.remove().catch(() => {});
      say(t("This browser refused to store the new key, so the link was not rotated."), "error");
      return;
    }
    say(t("Marking the old link as moved on…"));
    await current.session.rotateTo(next);
    if (stored) await saveKey(current.keyPair, { ...extras(stored.record), movedTo: b64encode(keyPair.publicKey) });
    await hooks.opened(keyPair);
    say(t("New link made: share it. The old inbox stays in the list so you can read its messages."), "success");
  } catch (err) {
    say(t("Could not rotate the link: {error}", { error: err.message }), "error");
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
    event.target.checked ? t("Paused: senders now see a notice instead of the form.")
      : t("Resumed: senders can write again.")));
  $("#setting-replies").addEventListener("change", (event) => change({ accepts_replies: event.target.checked },
    event.target.checked ? t("Replies are accepted.") : t("Replies are not accepted.")));
  $("#setting-attachments").addEventListener("change", (event) => change({ accepts_attachments: event.target.checked },
    event.target.checked ? t("Attachments will be accepted.") : t("Attachments are not accepted.")));
  $("#setting-cap").addEventListener("change", changeCap);
  $("#setting-retention").addEventListener("change", changeRetention);
  $("#delete-all").addEventListener("click", deleteAll);
  $("#rotate").addEventListener("click", rotate);
}
