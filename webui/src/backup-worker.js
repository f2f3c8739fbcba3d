// Web Worker: the passphrase work of key backups (Argon2id, then XChaCha20-Poly1305),
// off the page's main thread so the page stays responsive while it runs for seconds.
// Messages in: { op: "calibrate" | "protect" | "open", ... }; out: { progress } now
// and then, then { result } or { error: { name, message } }.
import { argon2id } from "@noble/hashes/argon2.js";
import { b64encode } from "../../crypto/secretlink.js";
import { loadProtected, protect } from "../../crypto/protected-key.js";

// A small run (4 MiB, 1 pass) whose time, scaled by memory x passes, estimates a
// real one in this browser: timed rather than guessed from the user agent.
const CALIBRATION_KIB = 4096;

function calibrate() {
  const started = performance.now();
  argon2id(new Uint8Array(8), new Uint8Array(16), { m: CALIBRATION_KIB, t: 1, p: 1, dkLen: 32 });
  return { milliseconds: performance.now() - started, units: CALIBRATION_KIB };
}

const progress = (fraction) => self.postMessage({ progress: fraction });

async function run({ op, contents, content, passphrase, memoryKib, passes }) {
  if (op === "calibrate") return calibrate();
  if (op === "protect") return protect(contents, passphrase, { memoryKib, passes, onProgress: progress });
  if (op === "open") {
    // Keys go back to the page as text: what the key store keeps.
    const opened = await loadProtected(content, passphrase, progress);
    return {
      kind: opened.kind,
      device: opened.device,
      inboxes: opened.inboxes.map(({ keyFile, state }) => ({
        publicKey: b64encode(keyFile.publicKey),
        secretKey: b64encode(keyFile.secretKey),
        server: keyFile.server,
        state,
      })),
    };
  }
  throw new Error(`unknown operation ${op}`);
}

self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ result: await run(data) });
  } catch (err) {
    self.postMessage({ error: { name: err.name, message: err.message } });
  }
};
