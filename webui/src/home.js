// The start page: make a key pair here, prove it to the server, show the link.

import { b64encode, generateKeyPair } from "../../crypto/secretlink.js";
import { askPersistence, keyFileName, keyFileText, saveKey } from "./keystore.js";
import { WrongLinkError, registerInbox } from "./registration.js";
import { showSafetyWords } from "./safety.js";
import { $, copyField, downloadText, say } from "./ui.js";
import { showShare } from "./share.js";
import { keepFocus, moveFocus } from "./focus.js";
import { t } from "./i18n.js";

let created = null;

async function createInbox(event) {
  event.preventDefault();
  const button = $("#create");
  button.disabled = true;
  say(t("Making your key and registering the inbox…"));
  try {
    const keyPair = generateKeyPair();
    let inbox;
    try {
      inbox = await registerInbox(keyPair, $("#prompt").value, (text) => say(text));
    } catch (err) {
      if (!(err instanceof WrongLinkError)) throw err;
      say(t("{error} The new key was not kept and no link is shown.", { error: err.message }), "error");
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
    // The link the page rendered (with its ?lang=, if any), the inbox in its fragment.
    const open = new URL($("#open-inbox").href);
    open.hash = b64encode(keyPair.publicKey);
    $("#open-inbox").href = open.href;
    $("#persist-note").textContent = !stored
      ? t("This browser refused to store the key. Download the key file now, or this inbox is lost when you " +
        "leave the page.")
      : persisted
        ? t("This browser agreed to keep the key in persistent storage.")
        : t("This browser did not promise to keep the key: it may clear it when space runs low.");
    $("#created").hidden = false;
    $("#create-form").hidden = true;
    say(stored ? t("Inbox created.") : t("Inbox created, but the key is not stored: download it now."),
      stored ? "success" : "error");
    moveFocus($("#link"));
  } catch (err) {
    say(t("Could not create the inbox: {error}", { error: err.message }), "error");
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
