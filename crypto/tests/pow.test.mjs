// The page's proof-of-work solver (webui/src/pow.js) against crypto/vectors/pow.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { meets, powHash, solve } from "../../webui/src/pow.js";

const { cases } = JSON.parse(readFileSync(new URL("../vectors/pow.json", import.meta.url), "utf8"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");

for (const c of cases) {
  test(`pow: ${c.desc}`, () => {
    assert.equal(hex(new TextEncoder().encode(c.puzzle)), c.puzzle_hex);
    if (c.expect === "ok") {
      assert.equal(solve(c.puzzle, c.difficulty), c.counter);
      assert.equal(hex(powHash(c.puzzle, c.counter)), c.hash);
      assert.ok(meets(c.puzzle, c.counter, c.difficulty));
    } else {
      assert.equal(c.expect, "not_a_solution");
      assert.equal(meets(c.puzzle, c.counter, c.difficulty), false);
    }
  });
}
