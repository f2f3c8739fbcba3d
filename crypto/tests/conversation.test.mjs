// crypto/conversation.js against the shared vector files (conversation.json,
// safety_words.json, reply_link.json and key_file.json's reply key files), with node's
// own test runner; the same files test the Python twin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as sl from "../secretlink.js";
import * as cv from "../conversation.js";

const cases = (name) =>
  JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8")).cases;

const errors = { ...sl, ...cv };

function expectOutcome(testCase, run, check) {
  if (testCase.expect === "ok") {
    check(run());
    return;
  }
  const errorClass = errors[testCase.expect];
  assert.ok(errorClass && errorClass.prototype instanceof sl.SecretlinkCryptoError, testCase.expect);
  assert.throws(run, (err) => err instanceof errorClass && err.name === testCase.expect);
}

const ROLES = { recipient: cv.ROLE_RECIPIENT, sender: cv.ROLE_SENDER };

// The vectors' reader state: each known conversation with the peer's seqs seen.
function book(testCase) {
  return new Map(testCase.conversations.map((known) => [known.peer, {
    role: testCase.reader,
    peer: known.peer,
    id: known.id,
    next_seq: known.next_seq,
    seen: Object.fromEntries(known.seen.map((seq) => [seq, "read earlier"])),
  }]));
}

function read(testCase) {
  const secretKey = sl.b64decode(testCase.secret_key);
  const payload = sl.openEnvelope(sl.b64decode(testCase.envelope), secretKey, { conversations: true });
  const opened = cv.openConversationPayload(payload, secretKey);
  assert.ok(opened, "the envelope carries a conversation field");
  const known = book(testCase);
  return { opened, reading: cv.acceptMessage(known, opened, ROLES[testCase.reader]), known };
}

for (const c of cases("conversation.json").filter((c) => c.check === "read")) {
  test(`conversation read: ${c.desc}`, () =>
    expectOutcome(c, () => read(c), ({ opened, reading, known }) => {
      assert.equal(sl.b64encode(opened.writerPublicKey), c.writer_key);
      assert.equal(opened.role, c.role);
      assert.equal(sl.b64encode(opened.conversationId), c.conversation_id);
      assert.equal(opened.seq, c.seq);
      assert.equal(opened.lastSeen, c.last_seen);
      assert.equal(opened.text, c.text);
      assert.deepEqual(reading.gap, c.flags.gap);
      assert.equal(reading.claimsUnsent, c.flags.claims_unsent);
      assert.equal(reading.unseenAfter, c.flags.unseen_after);
      assert.equal(reading.newConversation, c.flags.new_conversation);
      // Accepted means remembered: the same message from another reference is a replay.
      const state = known.get(c.writer_key);
      assert.ok(state.seen[c.seq] !== undefined);
      assert.throws(() => cv.readConversationMessage(state, opened, "another message"), cv.ReplayError);
    }));
}

for (const c of cases("conversation.json").filter((c) => c.check === "write")) {
  test(`conversation write: ${c.desc}`, () =>
    expectOutcome(c, () => cv.boxConversation(
      {
        role: c.role,
        conversationId: sl.b64decode(c.conversation_id),
        seq: c.seq,
        lastSeen: c.last_seen,
        text: c.text,
      },
      sl.b64decode(c.writer_secret_key),
      sl.b64decode(c.reader_key),
      sl.b64decode(c.nonce),
    ), (field) => assert.equal(sl.b64encode(field), c.field)));
}

test("a sealed conversation message opens for its reader, with a fresh nonce each time", () => {
  const inbox = sl.generateKeyPair();
  const reply = cv.newReplyKey();
  const state = cv.newConversationState({ ownRole: cv.ROLE_SENDER, peerPublicKey: inbox.publicKey, conversationId: reply.conversationId });
  const first = cv.nextMessage(state, "opener");
  const a = cv.boxConversation(first, reply.secretKey, inbox.publicKey);
  const b = cv.boxConversation(first, reply.secretKey, inbox.publicKey);
  assert.notDeepEqual(a.subarray(32, 56), b.subarray(32, 56));
  const opened = cv.openConversationEnvelope(cv.sealConversation(cv.nextMessage(state, "second"), reply.secretKey, inbox.publicKey), inbox.secretKey);
  assert.equal(opened.text, "second");
  assert.equal(opened.conversation.seq, 2);
  assert.equal(opened.conversation.lastSeen, 0);
});

test("an older reader's message for an unknown critical field says a newer secretlink is needed", () => {
  const [unknown] = cases("envelope.json").filter((c) => c.desc === "unknown critical field 0x7f");
  assert.throws(() => sl.openEnvelope(sl.b64decode(unknown.envelope), sl.b64decode(unknown.secret_key)),
    (err) => err instanceof sl.PayloadError && /needs a newer secretlink/.test(err.message));
});

test("a reader that does not ask for conversations refuses one, as an older reader does", () => {
  const [opener] = cases("conversation.json").filter((c) => c.check === "read" && c.expect === "ok");
  assert.throws(() => sl.openEnvelope(sl.b64decode(opener.envelope), sl.b64decode(opener.secret_key)),
    (err) => err instanceof sl.PayloadError && /unknown critical field 0x02: this message needs a newer secretlink/.test(err.message));
});

for (const c of cases("safety_words.json")) {
  test(`safety words: ${c.desc}`, () =>
    expectOutcome(c, () => cv.formatSafetyWords(sl.b64decode(c.public_key)), (words) => assert.equal(words, c.words)));
}

for (const c of cases("reply_link.json")) {
  test(`reply link: ${c.desc}`, () =>
    expectOutcome(c, () => cv.parseReplyLink(c.link), (link) => {
      assert.equal(link.origin, c.origin);
      assert.equal(sl.b64encode(link.keyPair.publicKey), c.reply_public_key);
      assert.equal(sl.b64encode(link.inboxPublicKey), c.inbox_key);
      assert.equal(sl.b64encode(link.conversationId), c.conversation_id);
      const built = cv.buildReplyLink(link.origin, link.keyPair.secretKey, link.inboxPublicKey, link.conversationId);
      if (c.canonical) assert.equal(built, c.link);
      assert.equal(cv.parseReplyLink(built).origin, c.origin);
    }));
}

// A reader that knows conversations: the full answer of every key file case.
for (const c of cases("key_file.json")) {
  for (const [form, content] of [["text", c.text], ["bytes", new TextEncoder().encode(c.text)]]) {
    test(`reply key file (${form}): ${c.desc}`, () =>
      expectOutcome(c, () => cv.loadReplyKeyFile(content), (keyFile) => {
        assert.equal(sl.b64encode(keyFile.publicKey), c.public_key);
        assert.equal(keyFile.server, c.server);
        if (c.conversation) {
          assert.equal(sl.b64encode(keyFile.conversation.inboxPublicKey), c.conversation.with);
          assert.equal(sl.b64encode(keyFile.conversation.conversationId), c.conversation.id);
        } else {
          assert.equal(keyFile.conversation, null);
        }
      }));
  }
}

test("a reply key file written here reads back with its conversation", () => {
  const inbox = sl.generateKeyPair();
  const reply = cv.newReplyKey();
  const text = cv.dumpReplyKeyFile({ keyPair: reply, server: "https://secretlink.example", inboxPublicKey: inbox.publicKey, conversationId: reply.conversationId });
  const loaded = cv.loadReplyKeyFile(text);
  assert.equal(sl.b64encode(loaded.conversation.inboxPublicKey), sl.b64encode(inbox.publicKey));
  assert.equal(sl.b64encode(loaded.conversation.conversationId), sl.b64encode(reply.conversationId));
  assert.equal(loaded.server, "https://secretlink.example");
});
