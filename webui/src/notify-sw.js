// The notifications service worker, served from /notify-sw.js so its scope covers the
// inbox page. A push carries only the neutral words the owner chose (the server
// encrypts them for this device); they are shown as they are, as plain text, and
// nothing else is read, fetched or kept. Tapping the notification opens the inbox page.

const MAX_CHARS = 100;
const FALLBACK = "New message";

function neutralText(data) {
  let text = "";
  try {
    text = data ? data.text() : "";
  } catch {
    text = "";
  }
  text = text.replace(/\s+/g, " ").trim().slice(0, MAX_CHARS);
  return text || FALLBACK;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  // One notification at a time (same tag): several pushes never stack up a count.
  event.waitUntil(self.registration.showNotification(neutralText(event.data), { tag: "secretlink" }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow("/inbox"));
});
