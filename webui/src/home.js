// The start page: make a key pair here, prove it to the server, show the link.

import { b64encode, generateKeyPair } from "../../crypto/secretlink.js";
import { inboxSession } from "./api.js";
import { askPersistence, keyFileName, keyFileText, saveKey } from "./keystore.js";
import { $, copyField, downloadText, say } from "./ui.js";

let created = null;

async function createInbox(event) {
  event.preventDefault();
  const button = $("#create");
  button.disabled = true;
  say("Making your key and registering the inbox…");
  try {
    const keyPair = generateKeyPair();
    // Creating an inbox costs a little work (against floods of inboxes): a few
    // seconds at most on a slow device, done in a worker while this text counts up.
    let note = "Proving this is not a flood of inboxes (a short computation)…";
    const inbox = await inboxSession(keyPair).create($("#prompt").value, {
      progress: (percent) => say(`${note} ${percent}%`),
      onStale: () => {
        note = "The server is busy and asks for more work; computing again…";
        say(note);
      },
    });
    // SPEC 4.4: the link the server returns must be exactly this page's origin and our
    // own key. A server that answers with a link to another key would read what senders
    // send; one that points elsewhere is not the server we proved the key to.
    const link = `${location.origin}/to/${b64encode(keyPair.publicKey)}`;
    if (inbox?.link !== link) {
      say("The server answered with a link that is not this inbox's own. Do not use this " +
        "server: the new key was not kept and no link is shown.", "error");
      return;
    }
    created = keyPair;
    let stored = true;
    try {
      await saveKey(keyPair, { prompt: inbox.prompt });
    } catch {
      stored = false;
    }
    const persisted = stored && (await askPersistence());
    $("#link").value = link;
    $("#open-inbox").href = `/inbox#${b64encode(keyPair.publicKey)}`;
    $("#persist-note").textContent = !stored
      ? "This browser refused to store the key. Download the key file now, or this inbox is lost when you leave the page."
      : persisted
        ? "This browser agreed to keep the key in persistent storage."
        : "This browser did not promise to keep the key: it may clear it when space runs low.";
    $("#created").hidden = false;
    $("#create-form").hidden = true;
    say(stored ? "Inbox created." : "Inbox created, but the key is not stored: download it now.",
      stored ? "success" : "error");
  } catch (err) {
    say(`Could not create the inbox: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

$("#create-form").addEventListener("submit", createInbox);
$("#copy-link").addEventListener("click", (event) => copyField($("#link"), event.target));
$("#download-key").addEventListener("click", () => {
  if (created) downloadText(keyFileName(created.publicKey), keyFileText(created));
});
