// Safety words (SPEC 4.5) on the pages: always computed here from a key this page
// holds or read from the link, never from anything the server says.

import { formatSafetyWords } from "../../crypto/conversation.js";
import { decodePublicKey } from "../../crypto/secretlink.js";
import { t } from "./i18n.js";

// `publicKey`: the key's bytes, or its text as in a link.
export function showSafetyWords(node, publicKey) {
  try {
    node.textContent = formatSafetyWords(typeof publicKey === "string" ? decodePublicKey(publicKey) : publicKey);
  } catch {
    node.textContent = t("(no safety words: this key is not valid)");
  }
}
