// Small DOM helpers shared by the pages. Text goes in as text, never as HTML.

import { t } from "./i18n.js";

export const $ = (selector) => document.querySelector(selector);

// The page's status line is a polite live region (role=status): screen readers read
// each change when they are idle. An error goes in as an alert inside it, read at once.
export function say(message, kind = "info") {
  const status = $("#status");
  if (kind === "error") status.replaceChildren(element("span", { role: "alert" }, message));
  else status.textContent = message;
  status.dataset.kind = kind;
}

export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

export async function copyField(input, button) {
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = t("Copied");
  } catch {
    button.textContent = t("Press Ctrl+C to copy");
  }
  setTimeout(() => (button.textContent = t("Copy")), 2500);
}

export function downloadText(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = element("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
