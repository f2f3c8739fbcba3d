// Runs crypto/secretlink.js operations for the Python interop tests.
// Reads a JSON array of requests on stdin, writes a JSON array of answers on stdout;
// a crypto error becomes {"error": "<class name>"}.
import * as sl from "../../crypto/secretlink.js";

const operations = {
  seal: ({ public_key, text }) => ({ envelope: sl.b64encode(sl.seal(text, sl.b64decode(public_key))) }),
  // What the sender page does: the X25519 work ahead of time, then one message.
  prepared_seal: ({ public_key, text }) => ({
    envelope: sl.b64encode(sl.prepareSeal(sl.b64decode(public_key)).seal(text)),
  }),
  open: ({ secret_key, envelope }) => sl.openEnvelope(sl.b64decode(envelope), sl.b64decode(secret_key)),
  keygen: () => ({ key_file: sl.dumpKeyFile({ ...sl.generateKeyPair(), server: "http://127.0.0.1:1" }) }),
  load_key_file: ({ text }) => {
    const key = sl.loadKeyFile(text);
    return { public_key: sl.b64encode(key.publicKey), secret_key: sl.b64encode(key.secretKey) };
  },
  canonical_origin: ({ url }) => ({ origin: sl.canonicalOrigin(url) }),
  prove: ({ secret_key, server_key, nonce, expires_at, origin }) => ({
    mac: sl.b64encode(sl.proveInbox(sl.b64decode(secret_key), sl.b64decode(server_key),
      sl.b64decode(nonce), expires_at, origin)),
  }),
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const answers = JSON.parse(input).map((request) => {
  try {
    return operations[request.op](request);
  } catch (err) {
    if (err instanceof sl.SecretlinkCryptoError) return { error: err.name };
    throw err;
  }
});
process.stdout.write(JSON.stringify(answers));
