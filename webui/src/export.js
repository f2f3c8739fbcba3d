// Export of the decrypted messages, made in this page (a Blob handed to the browser
// as a download): nothing is sent anywhere. Two forms: JSON for programs, Markdown
// for people, in which no message text can become a link, an image or HTML.

import { displayName } from "./attachments-view.js";
import { formatSize, t, tn } from "./i18n.js";
import { isRead } from "./reading.js";
import { $, downloadText, say } from "./ui.js";

export const EXPORT_FORMAT = "secretlink-export";
export const EXPORT_VERSION = 1;

// The server keeps arrival times to the minute (docs/API.md); anything else it
// sends is not trusted into the Markdown.
const MINUTE = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})Z$/;
const MESSAGE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The export as a plain object: every message shown, newest first, then the
 *  conversations shown (conversationsForExport in inbox-conversations.js). */
export function exportObject({ publicKey, link, prompt, messages, conversations = [] }, now = new Date()) {
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    exported_at: now.toISOString(),
    inbox: { public_key: publicKey, link, prompt },
    messages: messages.map((message) => ({
      id: message.id,
      received_at: message.received_at,
      read: isRead(message.id),
      ...(message.error === undefined ? { text: message.text } : { undecryptable: message.error }),
      ...(message.attachments?.length ? { attachments: message.attachments.map(fileRecord) } : {}),
    })),
    conversations: conversations.map((conversation) => ({
      reply_public_key: conversation.reply_public_key,
      messages: conversation.messages.map((message) => ({ ...message })),
    })),
  };
}

// What the export says of a file: never its content, key or blob id (the export is
// not encrypted, and a key would open the blob on the server).
const fileRecord = (entry) => ({ name: entry.name, size: entry.size, media_type: entry.mediaType });

// A fenced code block shows its content literally in every CommonMark renderer: no
// link, image, HTML or emphasis. Its fence is longer than any run of backticks in the
// text, so no line of the text can close it early. Carriage returns are line endings
// in CommonMark too: they become plain newlines.
function literalBlock(text) {
  const lines = text.replace(/\r\n?/g, "\n");
  const longest = Math.max(0, ...[...lines.matchAll(/`+/g)].map(([run]) => run.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${lines}\n${fence}`;
}

function minuteText(receivedAt) {
  const match = MINUTE.exec(receivedAt ?? "");
  return match ? `${match[1]} ${match[2]} UTC` : t("unknown time");
}

// The files of a message, one a line in a literal block, names escaped as the page
// shows them (a direction override must not disguise a name in the export either).
function filesMarkdown(files) {
  const lines = files.map((file) => `${displayName(file.name)} · ${formatSize(file.size)} · ${file.media_type}`);
  return [tn("With {count} file (not in this export: save it from the inbox page):",
    "With {count} files (not in this export: save them from the inbox page):", files.length),
  "", literalBlock(lines.join("\n"))];
}

// Words of the Markdown (t() calls stay out of template literals, where
// `make translations` would not find them).
const EXPORT_TITLE = () => t("secretlink messages");
const UNREAD = () => t("unread");
const UNDECRYPTABLE = () => t("Could not be decrypted:");
const idText = (id) => t("id {id}", { id });
const conversationTitle = (number) => t("Conversation {number}", { number: String(number) });

/** The export as Markdown text. */
export function exportMarkdown(snapshot, now = new Date()) {
  const data = exportObject(snapshot, now);
  const parts = [
    `# ${EXPORT_TITLE()}`,
    "",
    tn("Exported {when} from this browser. {count} message, newest first.",
      "Exported {when} from this browser. {count} messages, newest first.",
      data.messages.length, { when: minuteText(data.exported_at.slice(0, 16) + "Z") }),
    "",
    t("Inbox link:"),
    "",
    literalBlock(data.inbox.link),
  ];
  if (data.inbox.prompt) parts.push("", t("Prompt:"), "", literalBlock(data.inbox.prompt));
  data.messages.forEach((message, index) => {
    const id = MESSAGE_ID.test(message.id) ? ` · ${idText(message.id)}` : "";
    const read = message.read ? "" : ` · ${UNREAD()}`;
    const title = t("Message {number}", { number: String(data.messages.length - index) });
    parts.push("", `## ${title} · ${minuteText(message.received_at)}${read}${id}`, "");
    parts.push(message.text === undefined
      ? `${UNDECRYPTABLE()}\n\n${literalBlock(message.undecryptable)}`
      : literalBlock(message.text));
    if (message.attachments) parts.push("", ...filesMarkdown(message.attachments));
  });
  data.conversations.forEach((conversation, index) => {
    parts.push("", `## ${conversationTitle(index + 1)}`, "",
      t("The sender's reply key:"), "", literalBlock(conversation.reply_public_key));
    for (const message of conversation.messages) {
      const seq = String(message.seq);
      const title = message.from === "you"
        ? t("#{seq} from you · kept on this device", { seq })
        : t("#{seq} from the sender · {when}", { seq, when: minuteText(message.received_at) });
      const read = message.read === false ? ` · ${UNREAD()}` : ""; // your own have no read mark
      parts.push("", `### ${title}${read}`, "", literalBlock(message.text));
    }
  });
  return `${parts.join("\n")}\n`;
}

function fileName(publicKey, now, extension) {
  return `secretlink-messages-${publicKey.slice(0, 8)}-${now.toISOString().slice(0, 10)}.${extension}`;
}

/** Wire the export buttons; `snapshot()` gives the inbox shown and its decrypted
 *  messages, or null when none is open. */
export function installExport(snapshot) {
  const run = (extension, type, render) => () => {
    const data = snapshot();
    if (!data) {
      say(t("Open an inbox first."), "error");
      return;
    }
    const now = new Date();
    downloadText(fileName(data.publicKey, now, extension), render(data, now), type);
    const conversations = data.conversations?.length ?? 0;
    const messages = tn("{count} message", "{count} messages", data.messages.length);
    const talks = tn("{count} conversation", "{count} conversations", conversations);
    const what = conversations ? t("{messages} and {conversations}", { messages, conversations: talks }) : messages;
    say(t("Exported {what} to a file on this device. It is not encrypted: keep it somewhere safe.", { what }),
      "success");
  };
  $("#export-json").addEventListener("click", run("json", "application/json",
    (data, now) => `${JSON.stringify(exportObject(data, now), null, 2)}\n`));
  $("#export-markdown").addEventListener("click", run("md", "text/markdown", exportMarkdown));
}
