// Runs the page's JPEG metadata remover (webui/src/jpeg-metadata.js) for
// tests/test_cli_attachments.py, which compares it with the CLI's: the file's bytes on
// stdin; the cleaned bytes on stdout, or {"error": "JpegError"} as JSON on stderr and
// exit status 2 when the walker refuses the file. With an argument N, the cleaned bytes
// are taken N at a time (planPieces from/to), as the sender page's workers take a
// large file in parts.
import { readFileSync } from "node:fs";
import { JpegError, cleanJpeg, planPieces } from "../../webui/src/jpeg-metadata.js";

const bytes = new Uint8Array(readFileSync(0));
const read = async (offset, length) => bytes.slice(offset, offset + length);
try {
  const plan = await cleanJpeg(read, bytes.length);
  const step = Number(process.argv[2] ?? plan.size) || 1;
  for (let from = 0; from < plan.size; from += step) {
    for await (const piece of planPieces(read, plan, { from, to: Math.min(plan.size, from + step) })) {
      process.stdout.write(piece);
    }
  }
} catch (err) {
  if (!(err instanceof JpegError)) throw err;
  process.stderr.write(JSON.stringify({ error: "JpegError" }));
  process.exitCode = 2;
}
