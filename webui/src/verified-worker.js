// Web Workers started only from bytes that match the integrity hash the page names:
// browsers check no integrity for `new Worker(url)`, so the script is fetched with
// that hash, and the worker started from a blob of the verified bytes. Trusted Types
// (required by the CSP) let a script URL through only via a policy; the page's one
// policy, `secretlink-worker`, admits nothing but the blobs made here.

import { t } from "./i18n.js";

let policy = null;
const admitted = new Set();
const urls = new Map(); // worker name -> the verified blob's (trusted) URL

function trustedUrl(blobUrl) {
  if (!window.trustedTypes) return blobUrl;
  admitted.add(blobUrl);
  policy ??= trustedTypes.createPolicy("secretlink-worker", {
    createScriptURL: (value) => (admitted.has(value) ? value : null),
  });
  return policy.createScriptURL(blobUrl);
}

// `name` is the bundle (`pow-worker`), `url` and `integrity` what the page says, and
// `label` names the script in errors ("The anti-spam script").
export async function verifiedWorkerUrl(name, url, integrity, label) {
  if (urls.has(name)) return urls.get(name);
  const source = new URL(url ?? "", location.href);
  if (source.origin !== location.origin || !source.pathname.startsWith(`/static/build/${name}.js`)) {
    throw new Error(t("The page names an unexpected worker script."));
  }
  let response;
  try {
    response = await fetch(source, { integrity, credentials: "omit" });
  } catch {
    throw new Error(t("{script} could not be loaded or failed its integrity check.", { script: label }));
  }
  if (!response.ok) {
    throw new Error(t("{script} could not be loaded ({status}).", { script: label, status: String(response.status) }));
  }
  const blobUrl = URL.createObjectURL(new Blob([await response.arrayBuffer()], { type: "text/javascript" }));
  urls.set(name, trustedUrl(blobUrl));
  return urls.get(name);
}
