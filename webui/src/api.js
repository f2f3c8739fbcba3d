// Talking to the secretlink API from the pages: JSON requests, clear errors, and the
// proof of possession that turns a key pair into a short-lived access token.

import { b64encode, proveChallenge } from "../../crypto/secretlink.js";
import { withWork } from "./work.js";
import { exchange, jsonOrNull } from "./http.js";
import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, data = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.data = data; // the whole JSON answer (pow_stale carries a fresh puzzle)
  }
}

const unreachable = () => t("Could not reach the server. Check your connection and try again.");

/** The JSON answer of a 2xx (null for 204); an ApiError for anything else. */
export async function request(method, path, options = {}) {
  const { status, ok, data } = await exchange(method, path, options);
  if (!ok) throw answerError(status, data);
  return data;
}

/** The ApiError for an answer with `status` and JSON `data` (null if none); status 0:
 * no answer came. */
export function answerError(status, data) {
  if (status === 0) return new ApiError(0, "unreachable", unreachable());
  return new ApiError(status, data?.code ?? "http_error",
    data?.error ?? t("The server answered {status}.", { status: String(status) }), data);
}

// A GET whose body is bytes, not JSON: the Response when it is 2xx, an ApiError from
// the JSON error otherwise.
async function fetchBlob(path, token) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}` },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw answerError(0, null);
  }
  if (response.ok) return response;
  throw answerError(response.status, await jsonOrNull(response));
}

// Prove possession of the inbox key and get an access token. The answer is a MAC
// bound to this page's origin, so a server that sets SECRETLINK_BASE_URL refuses an
// answer relayed through another origin.
export async function getToken(keyPair) {
  const publicKey = b64encode(keyPair.publicKey);
  const challenge = await request("POST", "/api/v1/auth/challenge", { body: { public_key: publicKey } });
  const proof = proveChallenge(keyPair.secretKey, challenge, location.origin);
  const answer = await request("POST", "/api/v1/auth/token", {
    body: { challenge: challenge.challenge, proof: b64encode(proof) },
  });
  return answer.token;
}

// A session for one inbox: fetches a token when needed and once more if it expired.
export function inboxSession(keyPair) {
  const base = `/api/v1/inboxes/${b64encode(keyPair.publicKey)}`;
  let token = null;
  async function call(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      if (!token) token = await getToken(keyPair);
      try {
        return await request(method, base + path, { body, token });
      } catch (err) {
        if (attempt === 0 && err.status === 401) {
          token = null;
          continue;
        }
        throw err;
      }
    }
  }
  return {
    // Creating an inbox costs a solved creation puzzle (SPEC 7a); the solving happens
    // in a worker while progress(percent) reports, and the token is fetched after it.
    async create(prompt, { progress, onStale } = {}) {
      const puzzle = await request("POST", `${base}/creation-puzzle`);
      return withWork(puzzle, (fields) => call("PUT", "", { prompt, ...fields }), { progress, onStale });
    },
    remove: () => call("DELETE", ""),
    // Every message, newest first, and the inbox's usage against its quota.
    async allMessages() {
      const messages = [];
      let before = null;
      let usage = null;
      do {
        const query = before ? `?before=${encodeURIComponent(before)}` : "";
        const page = await call("GET", `/messages${query}`);
        messages.push(...page.messages);
        usage ??= page.usage ?? null;
        before = page.next;
      } while (before);
      return { messages, usage };
    },
    deleteMessage: (id) => call("DELETE", `/messages/${encodeURIComponent(id)}`),
    // An attachment's blob (docs/API.md 4.11) as a streaming Response: the caller reads
    // its body piece by piece (attachments-view.js), so no file is held whole here.
    async blob(blobId) {
      for (let attempt = 0; ; attempt++) {
        if (!token) token = await getToken(keyPair);
        try {
          return await fetchBlob(`${base}/blobs/${encodeURIComponent(blobId)}`, token);
        } catch (err) {
          if (attempt === 0 && err.status === 401) {
            token = null;
            continue;
          }
          throw err;
        }
      }
    },
    // Inbox settings (docs/API.md, "Inbox settings"; the panel is settings.js).
    settings: () => call("GET", "/settings"),
    changeSettings: (changes) => call("PATCH", "/settings", changes),
    deleteAllMessages: () => call("DELETE", "/messages"),
    async token() {
      token ??= await getToken(keyPair);
      return token;
    },
    // Mark this inbox moved on to `next`, another session whose inbox exists: the
    // request carries both tokens, proving both keys.
    async rotateTo(next) {
      const body = { new_public_key: b64encode(next.keyPair.publicKey), new_token: await next.token() };
      return call("POST", "/rotate", body);
    },
    keyPair,
    notifications: {
      get: () => call("GET", "/notifications"),
      save: (settings) => call("PUT", "/notifications", settings),
      remove: () => call("DELETE", "/notifications"),
    },
  };
}
