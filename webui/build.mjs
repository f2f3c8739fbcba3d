// Bundle each page's script with its npm dependencies into webui/static/build/.
// Pages load these same-origin files with Subresource Integrity; nothing is inlined.
//
// The bundles are committed and shipped as they are, so that installing secretlink
// needs no Node.js, and `secretlink verify` compares a server with files anyone can
// rebuild. The build is therefore reproducible: the same source and package-lock.json
// give the same bytes on every machine (esbuild is pinned exactly; paths are relative
// to the repository; no timestamps, source maps or absolute paths reach the output).
//
//   node webui/build.mjs                 rebuild webui/static/build/ (what `make build` runs)
//   node webui/build.mjs --check         rebuild in memory, compare with the committed files,
//                                        print each file's hashes; exit 1 when any differs
//   node webui/build.mjs --outdir DIR    rebuild into DIR instead
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as esbuild from "esbuild";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const COMMITTED = join(ROOT, "webui", "static", "build");
const ENTRY_POINTS = ["home", "inbox", "send", "pow-worker", "notify-sw", "reply", "backup-worker", "seal-worker"].map(
  (name) => `webui/src/${name}.js`,
);

function fail(message) {
  console.error(`webui/build.mjs: ${message}`);
  process.exit(1);
}

function pinnedEsbuild() {
  const wanted = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).devDependencies.esbuild;
  if (esbuild.version !== wanted) {
    fail(`esbuild ${esbuild.version} is installed but package.json pins ${wanted}: run \`npm ci\``);
  }
}

/** The bundles as { "home.js": Uint8Array, ... }, built in memory. */
async function bundles() {
  const result = await esbuild.build({
    absWorkingDir: ROOT, // every path esbuild sees or writes is relative to the repository
    entryPoints: ENTRY_POINTS,
    outdir: "webui/static/build",
    write: false,
    bundle: true,
    platform: "browser",
    format: "esm",
    target: ["es2022"],
    charset: "ascii",
    minify: true,
    sourcemap: false,
    metafile: false,
    legalComments: "eof",
    logLevel: "warning",
  });
  const files = {};
  for (const output of result.outputFiles) {
    files[relative(join(ROOT, "webui/static/build"), output.path)] = output.contents;
  }
  return files;
}

const digest = (algorithm, data, encoding) => createHash(algorithm).update(data).digest(encoding);
const hashLine = (name, data) =>
  `sha256:${digest("sha256", data, "hex")}  sha384-${digest("sha384", data, "base64")}  build/${name}`;

function committedFiles() {
  if (!existsSync(COMMITTED)) return {};
  return Object.fromEntries(
    readdirSync(COMMITTED)
      .sort()
      .map((name) => [name, readFileSync(join(COMMITTED, name))]),
  );
}

function check(built) {
  const committed = committedFiles();
  const names = [...new Set([...Object.keys(built), ...Object.keys(committed)])].sort();
  let differs = 0;
  for (const name of names) {
    if (!(name in committed)) {
      console.log(`MISSING  ${hashLine(name, built[name])}  (rebuilt, not committed)`);
    } else if (!(name in built)) {
      console.log(`EXTRA    ${hashLine(name, committed[name])}  (shipped, not built)`);
    } else if (Buffer.compare(Buffer.from(built[name]), committed[name]) !== 0) {
      console.log(`DIFFERS  shipped ${hashLine(name, committed[name])}`);
      console.log(`         rebuilt ${hashLine(name, built[name])}`);
    } else {
      console.log(`same     ${hashLine(name, built[name])}`);
      continue;
    }
    differs += 1;
  }
  if (differs) {
    fail(
      `${differs} file(s) in webui/static/build/ differ from a fresh build of webui/src and ` +
        "package-lock.json: run `make build` and commit webui/static/build/",
    );
  }
  console.log(`webui/static/build/: all ${names.length} files are what the source and lockfile build`);
}

function write(built, outdir) {
  if (outdir === COMMITTED) {
    // Exactly the built files: a bundle left from an earlier build would ship unnoticed.
    rmSync(outdir, { recursive: true, force: true });
  } else if (existsSync(outdir) && readdirSync(outdir).length) {
    fail(`--outdir ${outdir} is not empty`);
  }
  mkdirSync(outdir, { recursive: true });
  for (const [name, data] of Object.entries(built).sort()) {
    writeFileSync(join(outdir, name), data);
    console.log(hashLine(name, data));
  }
}

const { values: options } = parseArgs({
  options: { check: { type: "boolean" }, outdir: { type: "string" } },
});
pinnedEsbuild();
const built = await bundles();
if (options.check) {
  check(built);
} else {
  write(built, options.outdir ? resolve(options.outdir) : COMMITTED);
}
