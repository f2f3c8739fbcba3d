// The inbox page's notifications panel: be told "new message" (the owner's neutral
// words, nothing else) on this device through Web Push, or at a webhook URL; choose
// the longest delay and the words; turn it off. The server keeps the settings (sealed);
// the service worker (notify-sw.js) only shows the words a push carries.

import { b64decode } from "../../crypto/secretlink.js";
import { $, say } from "./ui.js";
import { formatList, t, tn } from "./i18n.js";

const WORKER_PATH = "/notify-sw.js";
const notificationScript = () => t("The notification script");
let session = null; // the open inbox's API session
let settings = null; // the server's last answer

// The service worker's bytes are fetched with the integrity hash the page names before
// it is registered (registering checks none). Trusted Types admit exactly its path.
async function registerWorker() {
  const holder = $("#notify");
  const source = new URL(holder.dataset.serviceWorker, location.href);
  if (source.origin !== location.origin || source.pathname !== WORKER_PATH) {
    throw new Error(t("The page names an unexpected service worker."));
  }
  let response;
  try {
    response = await fetch(source, { integrity: holder.dataset.serviceWorkerIntegrity, credentials: "omit", cache: "no-store" });
  } catch {
    throw new Error(t("{script} could not be loaded or failed its integrity check.", { script: notificationScript() }));
  }
  if (!response.ok) {
    throw new Error(t("{script} could not be loaded ({status}).",
      { script: notificationScript(), status: String(response.status) }));
  }
  const url = window.trustedTypes
    ? trustedTypes
      .createPolicy("secretlink-service-worker", { createScriptURL: (value) => (value === WORKER_PATH ? value : null) })
      .createScriptURL(WORKER_PATH)
    : WORKER_PATH;
  await navigator.serviceWorker.register(url, { scope: "/" });
  return navigator.serviceWorker.ready;
}

const pushSupported = () => "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;

async function thisDevicesSubscription() {
  if (!pushSupported()) return null;
  const registration = await navigator.serviceWorker.getRegistration("/");
  return registration ? registration.pushManager.getSubscription() : null;
}

function chosen() {
  // An empty field keeps the default delay rather than silently meaning "at once".
  const raw = $("#notify-delay").value.trim();
  const delay = raw === "" ? settings.limits.default_delay_minutes : Number(raw);
  return { text: $("#notify-text").value, max_delay_minutes: Number.isInteger(delay) ? delay : -1 };
}

async function show(answer) {
  settings = answer;
  $("#notify-text").value = answer.text;
  $("#notify-text").maxLength = answer.limits.max_text_chars;
  $("#notify-delay").value = String(answer.max_delay_minutes);
  $("#notify-delay").max = String(answer.limits.max_delay_minutes);
  $("#notify-webhook").value = answer.webhook ?? "";
  const mine = await thisDevicesSubscription().catch(() => null);
  const here = Boolean(answer.push && mine && mine.endpoint === answer.push.endpoint);
  const parts = [];
  if (answer.push) parts.push(here ? t("this device") : t("another device"));
  if (answer.webhook) parts.push(t("a webhook"));
  $("#notify-state").textContent = parts.length
    ? tn("On: \"{text}\" goes to {targets}, up to {count} minute after a message arrives.",
      "On: \"{text}\" goes to {targets}, up to {count} minutes after a message arrives.",
      answer.max_delay_minutes, { text: answer.text, targets: formatList(parts) })
    : t("Off: nothing is sent when a message arrives.");
  $("#notify-push").hidden = here || !pushSupported();
  $("#notify-push-off").hidden = !answer.push;
  $("#notify-off").hidden = !answer.enabled;
}

async function save(body, done) {
  try {
    await show(await session.notifications.save({ ...chosen(), ...body }));
    say(done);
  } catch (err) {
    say(err.code === "no_target"
      ? t("Give a webhook URL, or notify this device, first.")
      : t("Notifications not saved: {error}", { error: err.message }), "error");
  }
}

async function subscribe() {
  try {
    if ((await Notification.requestPermission()) !== "granted") {
      say(t("This browser does not allow notifications from this site: allow them in its settings."), "error");
      return;
    }
    const registration = await registerWorker();
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: b64decode(settings.vapid_public_key),
    });
    await save({ push: subscription.toJSON() }, t("This device will be notified."));
  } catch (err) {
    say(t("This device could not subscribe to notifications: {error}", { error: err.message }), "error");
  }
}

// Stopping only removes the subscription from this inbox's settings: the browser keeps
// it, since other inboxes opened in this browser may use the same one.
async function unsubscribe() {
  if (settings.webhook) {
    await save({ push: null }, t("Push notifications stopped; the webhook stays."));
  } else {
    await turnOff();
  }
}

async function turnOff() {
  try {
    await session.notifications.remove();
    await show(await session.notifications.get());
    say(t("Notifications are off."));
  } catch (err) {
    say(t("Could not turn notifications off: {error}", { error: err.message }), "error");
  }
}

function saveSettings() {
  const webhook = $("#notify-webhook").value.trim();
  return save({ webhook: webhook || null }, t("Notification settings saved."));
}

// Called by the inbox page as another inbox starts opening: the panel must not act on
// the previous one meanwhile.
export function closeNotifications() {
  session = null;
  $("#notify").hidden = true;
}

// Called by the inbox page when an inbox opens; hides the panel if the server has none.
export async function openNotifications(inboxSession) {
  session = inboxSession;
  const panel = $("#notify");
  try {
    await show(await session.notifications.get());
    panel.hidden = false;
  } catch {
    panel.hidden = true; // notifications_off, or the inbox is gone: the page says why elsewhere
  }
}

$("#notify-push").addEventListener("click", subscribe);
$("#notify-push-off").addEventListener("click", unsubscribe);
$("#notify-save").addEventListener("click", saveSettings);
$("#notify-off").addEventListener("click", turnOff);
