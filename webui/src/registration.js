// Registering an inbox for a key pair made in this page: proof of possession (SPEC 7)
// and the creation proof of work (SPEC 7a), then the check that the server answers
// with this key's own link (SPEC 4.4). The start page registers inboxes with it, and
// the sender page the reply inbox of a conversation.

import { b64encode } from "../../crypto/secretlink.js";
import { inboxSession } from "./api.js";
import { t } from "./i18n.js";

export class WrongLinkError extends Error {}

// progress(text) reports what is going on, with the work's percentage.
export async function registerInbox(keyPair, prompt, progress = () => {}) {
  // Creating an inbox costs a little work (against floods of inboxes): a few seconds
  // at most on a slow device, done in a worker while the text counts up.
  let note = t("Proving this is not a flood of inboxes (a short computation)…");
  const inbox = await inboxSession(keyPair).create(prompt, {
    progress: (percent) => progress(t("{note} {percent}%", { note, percent })),
    onStale: () => {
      note = t("The server is busy and asks for more work; computing again…");
      progress(note);
    },
  });
  // A server that answers with a link to another key would read what is sent to it;
  // one that points elsewhere is not the server the key was proved to.
  const link = `${location.origin}/to/${b64encode(keyPair.publicKey)}`;
  if (inbox?.link !== link) {
    throw new WrongLinkError(t("The server answered with a link that is not this inbox's own. " +
      "Do not use this server."));
  }
  return { ...inbox, link };
}
