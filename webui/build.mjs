// Bundle each page's script with its npm dependencies into webui/static/build/.
// Pages load these same-origin files with Subresource Integrity; nothing is inlined.
import { build } from "esbuild";

await build({
  entryPoints: [
    "webui/src/home.js",
    "webui/src/inbox.js",
    "webui/src/send.js",
    "webui/src/pow-worker.js",
  ],
  outdir: "webui/static/build",
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  logLevel: "warning",
});
