// crypto/protected-key.js against crypto/vectors/protected_key.json (SPEC section 6a),
// the same file the Python suite runs, and its writer against its reader.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as pk from "../protected-key.js";
import { b64encode, generateKeyPair, dumpKeyFile } from "../secretlink.js";

const { cases } = JSON.parse(readFileSync(new URL("../vectors/protected_key.json", import.meta.url), "utf8"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const encoder = new TextEncoder();

// A case's file; `padded_to` cases get spaces before the final "}" up to that size.
function fileOf(c) {
  const missing = (c.padded_to ?? 0) - encoder.encode(c.file).length;
  return missing <= 0 ? c.file : c.file.slice(0, -2) + " ".repeat(missing) + "}\n";
}

const inboxesOf = (opened) => opened.inboxes.map(({ keyFile, state }) =>
  ({ public_key: b64encode(keyFile.publicKey), server: keyFile.server, state }));

for (const c of cases) {
  // Each case as the file's text and as its bytes (what the page reads from a File).
  for (const [form, content] of [["text", fileOf(c)], ["bytes", encoder.encode(fileOf(c))]]) {
    test(`protected key (${form}): ${c.desc}`, async () => {
      if (c.expect === "ok") {
        const opened = await pk.loadProtected(content, c.passphrase);
        assert.equal(opened.kind, c.kind);
        assert.deepEqual(inboxesOf(opened), c.inboxes);
        assert.deepEqual(opened.device, c.device);
        const header = pk.readHeader(content);
        assert.equal(hex(pk.associatedData(header)), c.associated_data);
        assert.equal(hex(await pk.deriveKey(pk.passphraseBytes(c.passphrase), header)), c.derived_key);
        return;
      }
      const errorClass = pk[c.expect];
      assert.ok(errorClass, c.expect);
      await assert.rejects(pk.loadProtected(content, c.passphrase),
        (err) => err instanceof errorClass && err.name === c.expect);
    });
  }
  // Steps 1 to 11 alone refuse exactly the `header` cases: no Argon2id work for them.
  test(`protected key header check: ${c.desc}`, () => {
    if (c.stage === "header") assert.throws(() => pk.readHeader(fileOf(c)), pk.ProtectedKeyError);
    else pk.readHeader(fileOf(c));
  });
}

const SMALL = { memoryKib: pk.MIN_MEMORY_KIB, passes: pk.MIN_PASSES };

test("a written key file opens with its passphrase only, and reports progress", async () => {
  const keyPair = generateKeyPair();
  const seen = [];
  const text = await pk.protect(encoder.encode(dumpKeyFile({ ...keyPair, server: "https://secretlink.example" })),
    "a long enough passphrase", { ...SMALL, onProgress: (p) => seen.push(p) });
  assert.ok(seen.length > 0 && seen.every((p) => p >= 0 && p <= 1));
  assert.ok(!text.includes(b64encode(keyPair.publicKey)));
  const opened = await pk.loadProtected(text, "a long enough passphrase");
  assert.equal(opened.kind, "key");
  assert.equal(b64encode(opened.inboxes[0].keyFile.secretKey), b64encode(keyPair.secretKey));
  await assert.rejects(pk.loadProtected(text, "a long enough passphrase!"), pk.PassphraseError);
});

test("a written bundle keeps every inbox, its state and the device's", async () => {
  const inboxes = [generateKeyPair(), generateKeyPair()].map((keyPair, i) => ({
    keyFile: { ...keyPair, server: i ? null : "http://127.0.0.1:8000" },
    state: i ? {} : { prompt: "Tell me", saved_at: "2026-12-05", read: ["abc"] },
  }));
  const device = { muted: ["spoilers"] };
  const text = await pk.protect(encoder.encode(pk.dumpBundle(inboxes, device)), "a long enough passphrase", SMALL);
  const opened = await pk.loadProtected(encoder.encode(text), "a long enough passphrase");
  assert.equal(opened.kind, "bundle");
  assert.deepEqual(opened.device, device);
  assert.deepEqual(opened.inboxes.map((entry) => [b64encode(entry.keyFile.secretKey), entry.keyFile.server, entry.state]),
    inboxes.map((entry) => [b64encode(entry.keyFile.secretKey), entry.keyFile.server, entry.state]));
});

test("writers refuse weak passphrases and costs readers would refuse", async () => {
  const contents = encoder.encode(dumpKeyFile(generateKeyPair()));
  for (const passphrase of ["", "short", "\ud800".repeat(12), "x".repeat(1025)]) {
    await assert.rejects(pk.protect(contents, passphrase, SMALL), pk.ProtectedKeyError);
  }
  for (const [memoryKib, passes] of [[19455, 2], [19456, 1], [1048577, 3], [65536, 17]]) {
    await assert.rejects(pk.protect(contents, "a long enough passphrase", { memoryKib, passes }), pk.ProtectedKeyError);
  }
});

test("every file gets a fresh salt and nonce", async () => {
  const contents = encoder.encode(dumpKeyFile(generateKeyPair()));
  const [a, b] = await Promise.all([1, 2].map(async () =>
    JSON.parse(await pk.protect(contents, "a long enough passphrase", SMALL))));
  assert.notEqual(a.salt, b.salt);
  assert.notEqual(a.nonce, b.nonce);
});
