// crypto/secretlink.js against the shared vector files, with node's own test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as sl from "../secretlink.js";

const cases = (name) =>
  JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8")).cases;

function expectOutcome(testCase, run, check) {
  if (testCase.expect === "ok") {
    check(run());
    return;
  }
  const errorClass = sl[testCase.expect];
  assert.ok(errorClass && errorClass.prototype instanceof sl.SecretlinkCryptoError, testCase.expect);
  assert.throws(run, (err) => err instanceof errorClass && err.name === testCase.expect);
}

for (const c of cases("envelope.json")) {
  test(`envelope: ${c.desc}`, () =>
    expectOutcome(
      c,
      () => sl.openEnvelope(sl.b64decode(c.envelope), sl.b64decode(c.secret_key)),
      (message) => assert.equal(message.text, c.text),
    ));
}

for (const c of cases("public_key.json")) {
  test(`public key: ${c.desc}`, () =>
    expectOutcome(c, () => sl.decodePublicKey(c.text), (key) => assert.equal(sl.b64encode(key), c.text)));
}

for (const c of cases("base64.json")) {
  test(`base64: ${c.desc}`, () =>
    expectOutcome(c, () => sl.b64decode(c.text), (bytes) =>
      assert.equal(Buffer.from(bytes).toString("hex"), c.bytes)));
}

// Each case as the text and as the file's UTF-8 bytes (what the inbox page reads).
// A reader that does not know reply key files ignores their `conversation` member
// (SPEC 6): `older_reader` is its answer. One that knows them returns a `conversation`.
const readsConversations = "conversation" in sl.loadKeyFile(cases("key_file.json")[0].text);
for (const c of cases("key_file.json")) {
  const expected = readsConversations || !c.older_reader ? c : { ...c, expect: c.older_reader };
  for (const [form, content] of [["text", c.text], ["bytes", new TextEncoder().encode(c.text)]]) {
    test(`key file (${form}): ${c.desc}`, () =>
      expectOutcome(expected, () => sl.loadKeyFile(content), (keyFile) => {
        assert.equal(sl.b64encode(keyFile.publicKey), c.public_key);
        assert.equal(keyFile.server, c.server);
      }));
  }
}

test("key file bytes that are not UTF-8 are refused", () => {
  const bytes = new TextEncoder().encode(cases("key_file.json")[0].text.replace("}", ', "x": "?"}'));
  bytes[bytes.length - 3] = 0xff;
  assert.throws(() => sl.loadKeyFile(bytes), sl.KeyFileError);
});

for (const c of cases("seal.json")) {
  test(`seal: ${c.desc}`, () =>
    expectOutcome(c, () => sl.seal(c.text, sl.b64decode(c.public_key)), (envelope) => {
      assert.equal(envelope.length, c.envelope_length);
      assert.equal(sl.openEnvelope(envelope, sl.b64decode(c.secret_key)).text, c.text);
    }));
}

// No verifier in JavaScript: the prove and transcript checks of the `ok` cases, and
// every `check: prove` case (a challenge answered as the server sent it).
for (const c of cases("auth.json").filter((c) => (c.check ?? "both") === "both" && c.expect === "ok")) {
  test(`auth: ${c.desc}`, () => {
    const args = [sl.b64decode(c.public_key), sl.b64decode(c.server_key), sl.b64decode(c.nonce), c.expires_at, c.origin];
    assert.equal(sl.b64encode(sl.authTranscript(...args)), c.transcript);
    const mac = sl.proveInbox(sl.b64decode(c.secret_key), ...args.slice(1));
    assert.equal(sl.b64encode(mac), c.mac);
  });
}

for (const c of cases("auth.json").filter((c) => c.check === "prove")) {
  const challenge = { server_key: c.server_key, nonce: c.nonce, expires_at: c.expires_at };
  test(`auth: ${c.desc}`, () =>
    expectOutcome(c, () => sl.proveChallenge(sl.b64decode(c.secret_key), challenge, c.origin),
      (mac) => assert.equal(sl.b64encode(mac), c.mac)));
}


for (const c of cases("origin.json")) {
  test(`origin: ${c.desc}`, () =>
    expectOutcome(c, () => sl.canonicalOrigin(c.url), (origin) => {
      assert.equal(origin, c.origin);
      assert.equal(sl.canonicalOrigin(origin), origin); // idempotent
      sl.authTranscript(new Uint8Array(32), new Uint8Array(32), new Uint8Array(32), 0, origin);
    }));
}

test("origin: the longest origin is the transcript limit", () => {
  const longest = cases("origin.json")
    .filter((c) => c.expect === "ok")
    .map((c) => c.origin)
    .reduce((a, b) => (b.length > a.length ? b : a));
  assert.equal(longest.length, sl.MAX_ORIGIN_LENGTH);
  assert.equal(sl.MAX_ORIGIN_LENGTH, 267);
  const zeros = new Uint8Array(32);
  assert.throws(() => sl.authTranscript(zeros, zeros, zeros, 0, `${longest}0`), sl.AuthError);
});
