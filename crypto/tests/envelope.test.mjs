// Behaviour of crypto/secretlink.js beyond the vectors: round trips, limits, and a
// low-order ephemeral key whose MAC *does* verify (tweetnacl alone would accept it).
import { test } from "node:test";
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { blake2b } from "@noble/hashes/blake2.js";
import * as sl from "../secretlink.js";

test("seal then open round-trips text of every bucket size", () => {
  const { publicKey, secretKey } = sl.generateKeyPair();
  for (const length of [0, 1, 250, 251, 1000, 40000, sl.MAX_TEXT_BYTES]) {
    const text = "é".repeat(Math.floor(length / 2)) + "a".repeat(length % 2);
    const envelope = sl.seal(text, publicKey);
    assert.equal(envelope.length, sl.OVERHEAD + sl.bucketFor(new TextEncoder().encode(text).length + 5));
    assert.equal(sl.openEnvelope(envelope, secretKey).text, text);
  }
});

test("two seals of the same text differ (fresh ephemeral key)", () => {
  const { publicKey } = sl.generateKeyPair();
  assert.notEqual(sl.b64encode(sl.seal("same", publicKey)), sl.b64encode(sl.seal("same", publicKey)));
});

test("a prepared seal seals one message, and a refused message does not use it up", () => {
  const { publicKey, secretKey } = sl.generateKeyPair();
  const prepared = sl.prepareSeal(publicKey);
  assert.throws(() => prepared.seal("a".repeat(sl.MAX_TEXT_BYTES + 1)), sl.SizeError);
  const envelope = prepared.seal("prepared ahead");
  assert.equal(sl.openEnvelope(envelope, secretKey).text, "prepared ahead");
  assert.throws(() => prepared.seal("a second message"), sl.SecretlinkCryptoError);
  assert.notEqual(sl.b64encode(sl.prepareSeal(publicKey).seal("x")), sl.b64encode(sl.prepareSeal(publicKey).seal("x")));
});

test("sealing to a low-order key is refused when preparing too", () => {
  assert.throws(() => sl.prepareSeal(new Uint8Array(32)), sl.InvalidKeyError);
});

test("base64url: the native and the fallback encoders agree", () => {
  for (const length of [0, 1, 2, 3, 31, 32, 33, 65586, 70000]) {
    const bytes = new Uint8Array(length).map((_, i) => (i * 7919) & 0xff);
    const plain = new Uint8Array(bytes); // the same bytes without a native toBase64
    Object.defineProperty(plain, "toBase64", { value: undefined });
    assert.equal(sl.b64encode(bytes), sl.b64encode(plain));
    assert.deepEqual(sl.b64decode(sl.b64encode(plain)), bytes);
  }
});

test("a message over the limit is refused before sealing", () => {
  const { publicKey } = sl.generateKeyPair();
  assert.throws(() => sl.seal("a".repeat(sl.MAX_TEXT_BYTES + 1), publicKey), sl.SizeError);
});

test("a lone surrogate is refused instead of silently replaced", () => {
  const { publicKey } = sl.generateKeyPair();
  assert.throws(() => sl.seal("bad \ud800 text", publicKey), sl.PayloadError);
});

test("sealing to a low-order key is refused", () => {
  assert.throws(() => sl.seal("hi", new Uint8Array(32)), sl.InvalidKeyError);
});

test("a low-order ephemeral key is refused even when the Poly1305 tag verifies", () => {
  const { publicKey, secretKey } = sl.generateKeyPair();
  const lowOrder = new Uint8Array(32); // X25519 with it gives the all-zero secret
  const key = nacl.box.before(lowOrder, secretKey);
  const nonceInput = new Uint8Array(64);
  nonceInput.set(lowOrder);
  nonceInput.set(publicKey, 32);
  const nonce = blake2b(nonceInput, { dkLen: 24 });
  const inner = new Uint8Array(257);
  inner[0] = 1;
  inner.set(sl.pad(sl.encodePayload({ text: "forged" })), 1);
  const box = nacl.secretbox(inner, nonce, key);
  const envelope = new Uint8Array(1 + 32 + box.length);
  envelope[0] = 1;
  envelope.set(lowOrder, 1);
  envelope.set(box, 33);
  // The box itself opens: only the explicit key check stands between it and the reader.
  assert.notEqual(nacl.box.open(envelope.subarray(33), nonce, lowOrder, secretKey), null);
  assert.throws(() => sl.openEnvelope(envelope, secretKey), sl.InvalidKeyError);
});

test("key file round-trips and keeps the server", () => {
  const pair = sl.generateKeyPair();
  const loaded = sl.loadKeyFile(sl.dumpKeyFile({ ...pair, server: "https://host.example" }));
  assert.deepEqual(loaded.secretKey, pair.secretKey);
  assert.deepEqual(loaded.publicKey, pair.publicKey);
  assert.equal(loaded.server, "https://host.example");
});
