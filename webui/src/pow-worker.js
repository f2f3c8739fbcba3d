// Web Worker: solves the sender's proof-of-work puzzle off the page's main thread.
import { solve } from "./pow.js";

self.onmessage = ({ data: { puzzle, difficulty } }) => {
  const solution = solve(puzzle, difficulty, (attempts) => self.postMessage({ attempts }));
  self.postMessage({ solution });
};
