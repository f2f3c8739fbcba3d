// The sender page and the inbox's settings: a paused, moved-on or unavailable inbox
// gets a plain notice instead of the form, and what the inbox does not accept
// (replies, attachments) is hidden. The state comes from the public inbox view
// (docs/API.md, "Inbox settings"); the page's markup does not carry it.

import { request } from "./api.js";
import { $ } from "./ui.js";
import { t } from "./i18n.js";

// The refusals that mean "this inbox takes no messages now", whatever was typed.
export const CLOSED = new Set(["inbox_paused", "inbox_moved", "inbox_disabled"]);

const NOTICES = {
  paused: () => t("This inbox is not taking messages right now: its owner has paused it. Try again later."),
  moved: () => t("This inbox has moved on: its owner no longer takes messages at this link."),
  disabled: () => t("This inbox is not available."),
};

// Elements that offer something the inbox may refuse carry data-needs="replies" or
// data-needs="attachments".
function hideUnaccepted(info) {
  const accepted = {
    replies: info.accepts_replies !== false,
    attachments: info.accepts_attachments === true,
  };
  for (const [need, ok] of Object.entries(accepted)) {
    if (ok) continue;
    for (const node of document.querySelectorAll(`[data-needs="${need}"]`)) node.hidden = true;
  }
}

// Show the notice, in place of the form unless a sender has written something there
// (closed while they wrote): their text stays on screen for them to keep.
export function showClosed(status, { keepForm = false } = {}) {
  const notice = $("#inbox-notice");
  notice.textContent = (NOTICES[status] ?? NOTICES.disabled)();
  notice.hidden = false;
  if (!keepForm) $("#send-form").hidden = true;
}

// Ask for the inbox's state; true if it takes messages. A failure here is not fatal:
// the server refuses a message to a closed inbox anyway, and the page says so then.
// onInfo(info) gets the view too (the attachment limits, attach-upload.js).
export async function applyInboxState(keyText, onInfo = () => {}) {
  let info;
  try {
    info = await request("GET", `/api/v1/inboxes/${keyText}`);
  } catch {
    return true;
  }
  hideUnaccepted(info);
  onInfo(info);
  if (info.status && info.status !== "open") {
    showClosed(info.status);
    return false;
  }
  return true;
}

// The status a refusal's code stands for: "inbox_paused" -> "paused".
export const statusOf = (code) => code.replace(/^inbox_/, "");
