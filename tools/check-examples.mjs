#!/usr/bin/env node
// Runs the consumer projects under examples/ as a user would: from packed tarballs, outside the
// workspace, type-checked strictly under NodeNext and run as compiled JavaScript with plain node.
//
//   node tools/check-examples.mjs [--skip-build] [example ...]
//
// 1. builds every package (tools/build-packages.mjs) and packs each into examples/packages/;
// 2. per example: npm install (its package.json names the tarballs), tsc, npm test;
// 3. prints each example's `ok - …` / `not ok - …` lines and ends with
//    `examples: N passed, M failed` (checks, counted over all examples; a step that fails before
//    its checks run counts as one failure).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const examplesDir = path.join(root, "examples");
const packagesDir = path.join(examplesDir, "packages");
const args = process.argv.slice(2);
const skipBuild = args.includes("--skip-build");
const wanted = args.filter((a) => !a.startsWith("--"));
const examples = fs
  .readdirSync(examplesDir, { withFileTypes: true })
  .filter((e) => e.isDirectory() && fs.existsSync(path.join(examplesDir, e.name, "package.json")))
  .map((e) => e.name)
  .filter((name) => wanted.length === 0 || wanted.includes(name));

// The workspace's own settings must not leak into the examples: no source condition, no workspace.
const env = { ...process.env };
delete env.NODE_OPTIONS;
for (const k of Object.keys(env)) if (k.toLowerCase().startsWith("npm_config_")) delete env[k];

const sh = (command, commandArgs, cwd) => {
  const started = Date.now();
  const r = spawnSync(command, commandArgs, { cwd, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return { ...r, seconds: (Date.now() - started) / 1000 };
};

let passed = 0;
let failed = 0;
const fail = (what, r) => {
  failed++;
  console.log(`not ok - ${what} (exit ${r.status})`);
  console.log((r.stdout + r.stderr).trim().split("\n").slice(-40).map((l) => `#   ${l}`).join("\n"));
};

if (!skipBuild) {
  const build = sh(process.execPath, [path.join(root, "tools", "build-packages.mjs")], root);
  if (build.status !== 0) {
    fail("build the packages", build);
    console.log(`examples: ${passed} passed, ${failed} failed`);
    process.exit(1);
  }
  console.log(`# built the packages (${build.seconds.toFixed(0)} s)`);
}
fs.rmSync(packagesDir, { recursive: true, force: true });
fs.mkdirSync(packagesDir, { recursive: true });
const workspaces = ["libs", "apps"].flatMap((g) =>
  fs
    .readdirSync(path.join(root, g))
    .map((d) => path.join(g, d))
    .filter((d) => {
      const pkg = JSON.parse(fs.readFileSync(path.join(root, d, "package.json"), "utf8"));
      return pkg.private !== true;
    }),
);
// Built above: pack without running each package's prepack build again.
const pack = sh("npm", ["pack", "--ignore-scripts", "--pack-destination", packagesDir, ...workspaces.flatMap((w) => ["-w", w])], root);
if (pack.status !== 0) {
  fail("npm pack", pack);
} else {
  console.log(`# packed ${fs.readdirSync(packagesDir).length} packages into examples/packages (${pack.seconds.toFixed(0)} s)`);
}

for (const name of failed === 0 ? examples : []) {
  const dir = path.join(examplesDir, name);
  console.log(`# example ${name}`);
  fs.rmSync(path.join(dir, "node_modules"), { recursive: true, force: true });
  fs.rmSync(path.join(dir, "dist"), { recursive: true, force: true });
  const install = sh("npm", ["install", "--no-package-lock", "--no-audit", "--no-fund"], dir);
  if (install.status !== 0) {
    fail(`${name}: npm install`, install);
    continue;
  }
  console.log(`# installed from the tarballs (${install.seconds.toFixed(0)} s)`);
  const tsc = sh("npx", ["--no-install", "tsc", "-p", "tsconfig.json"], dir);
  if (tsc.status !== 0) {
    fail(`${name}: tsc (strict, NodeNext)`, tsc);
    continue;
  }
  passed++;
  console.log(`ok - ${name}: type-checks strictly under NodeNext (${tsc.seconds.toFixed(0)} s)`);
  const test = sh("npm", ["test", "--silent"], dir);
  const lines = test.stdout.split("\n");
  for (const line of lines) if (line.trim() !== "") console.log(line);
  const ok = lines.filter((l) => l.startsWith("ok - ")).length;
  const notOk = lines.filter((l) => l.startsWith("not ok - ")).length;
  passed += ok;
  failed += notOk;
  // One copy of tfjs: two would each register their kernels, and warn about every one.
  const duplicates = (test.stdout + test.stderr).match(/already registered/g)?.length ?? 0;
  if (duplicates > 0) {
    failed++;
    console.log(`not ok - ${name}: tfjs warned ${duplicates} time(s) that a kernel or backend was already registered`);
  } else {
    passed++;
    console.log(`ok - ${name}: one tfjs (no "already registered" warnings)`);
  }
  if (test.status !== 0 && notOk === 0) fail(`${name}: npm test`, test);
  console.log(`# ${name}: ${ok} passed, ${notOk} failed (${test.seconds.toFixed(0)} s)`);
}
console.log(`examples: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
