// Export of the decrypted messages, made in this page (a Blob handed to the browser
// as a download): nothing is sent anywhere. Two forms: JSON for programs, Markdown
// for people, in which no message text can become a link, an image or HTML.

import { displayName, formatSize } from "./attachments-view.js";
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
  return match ? `${match[1]} ${match[2]} UTC` : "unknown time";
}

// The files of a message, one a line in a literal block, names escaped as the page
// shows them (a direction override must not disguise a name in the export either).
function filesMarkdown(files) {
  const lines = files.map((file) => `${displayName(file.name)} · ${formatSize(file.size)} · ${file.media_type}`);
  const count = files.length === 1 ? "1 file" : `${files.length} files`;
  return [`With ${count} (not in this export: save them from the inbox page):`, "", literalBlock(lines.join("\n"))];
}

/** The export as Markdown text. */
export function exportMarkdown(snapshot, now = new Date()) {
  const data = exportObject(snapshot, now);
  const parts = [
    "# secretlink messages",
    "",
    `Exported ${minuteText(data.exported_at.slice(0, 16) + "Z")} from this browser. ` +
      `${data.messages.length} message${data.messages.length === 1 ? "" : "s"}, newest first.`,
    "",
    "Inbox link:",
    "",
    literalBlock(data.inbox.link),
  ];
  if (data.inbox.prompt) parts.push("", "Prompt:", "", literalBlock(data.inbox.prompt));
  data.messages.forEach((message, index) => {
    const id = MESSAGE_ID.test(message.id) ? ` · id ${message.id}` : "";
    const read = message.read ? "" : " · unread";
    parts.push("", `## Message ${data.messages.length - index} · ${minuteText(message.received_at)}${read}${id}`, "");
    parts.push(message.text === undefined
      ? `Could not be decrypted:\n\n${literalBlock(message.undecryptable)}`
      : literalBlock(message.text));
    if (message.attachments) parts.push("", ...filesMarkdown(message.attachments));
  });
  data.conversations.forEach((conversation, index) => {
    parts.push("", `## Conversation ${index + 1}`, "", "The sender's reply key:", "", literalBlock(conversation.reply_public_key));
    for (const message of conversation.messages) {
      const who = message.from === "you" ? "you" : "the sender";
      const when = message.from === "you" ? "kept on this device" : minuteText(message.received_at);
      const read = message.read === false ? " · unread" : ""; // your own have no read mark
      parts.push("", `### #${message.seq} from ${who} · ${when}${read}`, "", literalBlock(message.text));
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
      say("Open an inbox first.", "error");
      return;
    }
    const now = new Date();
    downloadText(fileName(data.publicKey, now, extension), render(data, now), type);
    const conversations = data.conversations?.length ?? 0;
    const also = conversations ? ` and ${conversations} conversation${conversations === 1 ? "" : "s"}` : "";
    say(`Exported ${data.messages.length} message${data.messages.length === 1 ? "" : "s"}${also} ` +
      "to a file on this device. It is not encrypted: keep it somewhere safe.", "success");
  };
  $("#export-json").addEventListener("click", run("json", "application/json",
    (data, now) => `${JSON.stringify(exportObject(data, now), null, 2)}\n`));
  $("#export-markdown").addEventListener("click", run("md", "text/markdown", exportMarkdown));
}
