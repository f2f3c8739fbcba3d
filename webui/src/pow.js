// Proof of work, shared by the worker and the tests: see secretlink/crypto/pow.py.
import { blake2b } from "@noble/hashes/blake2.js";

const PURPOSE = new TextEncoder().encode("secretlink/v1/pow\0");
export const MAX_POW_BITS = 28;

function leadingZeroBits(digest) {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

// Calls progress(attempts) now and then; returns the smallest solving counter.
export function solve(puzzle, difficulty, progress = () => {}) {
  const puzzleBytes = new TextEncoder().encode(puzzle);
  const input = new Uint8Array(PURPOSE.length + puzzleBytes.length + 8);
  input.set(PURPOSE);
  input.set(puzzleBytes, PURPOSE.length);
  const counterAt = PURPOSE.length + puzzleBytes.length;
  const view = new DataView(input.buffer);
  for (let counter = 0; counter < 2 ** 53; counter++) {
    view.setUint32(counterAt, Math.floor(counter / 2 ** 32));
    view.setUint32(counterAt + 4, counter >>> 0);
    if (leadingZeroBits(blake2b(input, { dkLen: 32 })) >= difficulty) return counter;
    if ((counter & 0xfff) === 0xfff) progress(counter + 1);
  }
  throw new Error("no solution found");
}
