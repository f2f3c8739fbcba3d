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

export const MAX_COUNTER = 2 ** 53;

function hashInput(puzzle) {
  const puzzleBytes = new TextEncoder().encode(puzzle); // UTF-8, as SPEC 7a says
  const input = new Uint8Array(PURPOSE.length + puzzleBytes.length + 8);
  input.set(PURPOSE);
  input.set(puzzleBytes, PURPOSE.length);
  return input;
}

function setCounter(input, counter) {
  const view = new DataView(input.buffer);
  view.setUint32(input.length - 8, Math.floor(counter / 2 ** 32));
  view.setUint32(input.length - 4, counter >>> 0);
}

// The hash a counter gives for a puzzle (for tests and vectors).
export function powHash(puzzle, counter) {
  const input = hashInput(puzzle);
  setCounter(input, counter);
  return blake2b(input, { dkLen: 32 });
}

// Whether `counter` solves `puzzle` at `difficulty` bits.
export function meets(puzzle, counter, difficulty) {
  if (!Number.isSafeInteger(counter) || counter < 0 || counter >= MAX_COUNTER) return false;
  return leadingZeroBits(powHash(puzzle, counter)) >= difficulty;
}

// Calls progress(attempts) now and then; returns the smallest solving counter.
export function solve(puzzle, difficulty, progress = () => {}) {
  const input = hashInput(puzzle);
  for (let counter = 0; counter < MAX_COUNTER; counter++) {
    setCounter(input, counter);
    if (leadingZeroBits(blake2b(input, { dkLen: 32 })) >= difficulty) return counter;
    if ((counter & 0xfff) === 0xfff) progress(counter + 1);
  }
  throw new Error("no solution found");
}
