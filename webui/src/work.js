// Proof of work in the pages: the server's puzzle, solved in a Web Worker so the page
// stays responsive. Used by the sender page (one puzzle per message) and the start
// page (one puzzle to create an inbox). The hash itself is in pow.js.

import { MAX_POW_BITS } from "./pow.js";
import { verifiedWorkerUrl } from "./verified-worker.js";
import { t } from "./i18n.js";

// The worker starts only from bytes that match the page's integrity hash.
function powWorkerUrl() {
  const holder = document.querySelector("[data-pow-worker]");
  return verifiedWorkerUrl("pow-worker", holder?.dataset.powWorker, holder?.dataset.powWorkerIntegrity,
    t("The anti-spam script"));
}

// Solve `{ puzzle, difficulty }` as the server sent it; progress(percent) now and then
// (an estimate: the work is a lottery, so it stops at 99 until a solution turns up).
export async function solvePuzzle({ puzzle, difficulty }, progress = () => {}) {
  if (typeof puzzle !== "string" || !Number.isInteger(difficulty)
    || difficulty < 0 || difficulty > MAX_POW_BITS) {
    throw new Error(t("The server asks for an unreasonable amount of work."));
  }
  if (difficulty === 0) return 0; // the gate is off on this server
  const expected = 2 ** difficulty;
  const url = await powWorkerUrl();
  return new Promise((resolve, reject) => {
    const worker = new Worker(url);
    worker.onmessage = ({ data }) => {
      if (data.solution !== undefined) {
        worker.terminate();
        resolve(data.solution);
      } else {
        progress(Math.min(99, Math.round((100 * data.attempts) / expected)));
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(t("The anti-spam computation failed ({error}).", { error: event.message })));
    };
    worker.postMessage({ puzzle, difficulty });
  });
}

// A puzzle over 120 s old is refused as `pow_stale` when the server's difficulty rose
// meanwhile (a flood); the refusal carries a fresh puzzle. Each fresh one is solved at
// once, so this gives up only on a server that keeps raising the bar.
export const STALE_RETRIES = 3;

// `attempt(fields)` sends the request with `{ puzzle, solution }` added; solved again,
// with the same request, when the answer is `pow_stale`. onStale() says so to the user.
export async function withWork(puzzle, attempt, { progress, onStale = () => {} } = {}) {
  for (let tries = 0; ; tries++) {
    const solution = await solvePuzzle(puzzle, progress);
    try {
      return await attempt({ puzzle: puzzle.puzzle, solution });
    } catch (err) {
      if (err.code !== "pow_stale" || tries >= STALE_RETRIES || !err.data?.puzzle) throw err;
      puzzle = err.data.puzzle;
      onStale();
    }
  }
}
