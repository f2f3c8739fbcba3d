// Posting a sealed envelope to an inbox, with the server's proof of work: how replies
// travel in a conversation, both ways (the recipient's to the reply inbox, the
// sender's later messages to the inbox). The sender page's first message has its own
// faster path (work done ahead, in send.js).

import { request } from "./api.js";
import { withWork } from "./work.js";
import { t } from "./i18n.js";

// A puzzle can go wrong between being solved and being sent (expired, used, or from
// before a key rotation): one retry with a new puzzle, never more. `pow_stale` is
// handled in withWork.
const RETRY_WITH_NEW_PUZZLE = new Set(["puzzle_expired", "puzzle_used", "bad_puzzle"]);

export async function postEnvelope(inboxKeyText, ciphertext, progress = () => {}) {
  const base = `/api/v1/inboxes/${inboxKeyText}`;
  const send = (fields) => request("POST", `${base}/messages`, { body: { ciphertext, ...fields } });
  let note = t("Proving this is not spam (a short computation)…");
  const options = {
    progress: (percent) => progress(t("{note} {percent}%", { note, percent })),
    onStale: () => {
      note = t("The server is busy and asks for more work; computing again…");
      progress(note);
    },
  };
  for (let attempt = 0; ; attempt++) {
    const puzzle = await request("POST", `${base}/puzzle`);
    try {
      return await withWork(puzzle, send, options);
    } catch (err) {
      if (attempt > 0 || !RETRY_WITH_NEW_PUZZLE.has(err.code)) throw err;
    }
  }
}

// Functions, so that each text is looked up in the page's catalogue when it is shown.
export const POST_ERRORS = {
  unknown_inbox: () => t("The other side's inbox does not exist any more (deleted, or its key was rotated). " +
    "Nothing was sent."),
  inbox_full: () => t("The other side's inbox is full. Nothing was sent; try again later."),
  instance_full: () => t("This server is full and takes no messages for now. Nothing was sent; try again later."),
  rate_limited: () => t("Too many messages right now. Nothing was sent; wait a minute and try again."),
  too_large: () => t("The message is too long for this server. Nothing was sent."),
  unreachable: () => t("Could not reach the server. Nothing was sent; try again."),
};

export const postErrorText = (err) =>
  POST_ERRORS[err.code]?.() ?? t("{error} Nothing was sent.", { error: err.message });
