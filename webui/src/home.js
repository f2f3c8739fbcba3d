// The start page: make a key pair here, prove it to the server, show the link.

import { b64encode, generateKeyPair } from "../../crypto/secretlink.js";
import { askPersistence, keyFileName, keyFileText, saveKey } from "./keystore.js";
import { WrongLinkError, registerInbox } from "./registration.js";
import { showSafetyWords } from "./safety.js";
import { $, copyField, downloadText, say } from "./ui.js";
import { showShare } from "./share.js";
import { keepFocus, moveFocus } from "./focus.js";

let created = null;

async function createInbox(event) {
  event.preventDefault();
  const button = $("#create");
  button.disabled = true;
  say("Making your key and registering the inbox…");
  try {
    const keyPair = generateKeyPair();
    let inbox;
    try {
      inbox = await registerInbox(keyPair, $("#prompt").value, (text) => say(text));
    } catch (err) {
      if (!(err instanceof WrongLinkError)) throw err;
      say(`${err.message} The new key was not kept and no link is shown.`, "error");
      return;
    }
    const link = inbox.link;
    created = keyPair;
    let stored = true;
    try {
      await saveKey(keyPair, { prompt: inbox.prompt });
    } catch {
      stored = false;
    }
    const persisted = stored && (await askPersistence());
    $("#link").value = link;
    showShare(link, inbox.prompt ?? "");
    showSafetyWords($("#safety-words"), keyPair.publicKey);
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
    moveFocus($("#link"));
  } catch (err) {
    say(`Could not create the inbox: ${err.message}`, "error");
  } finally {
    button.disabled = false;
    keepFocus(button);
  }
}

$("#create-form").addEventListener("submit", createInbox);
$("#copy-link").addEventListener("click", (event) => copyField($("#link"), event.target));
$("#download-key").addEventListener("click", () => {
  if (created) downloadText(keyFileName(created.publicKey), keyFileText(created));
});
