// Runs when the addon build failed during `npm install`/`npm ci`. It never fails the install: the
// project then runs on the wasm backend. It finds the first missing prerequisite, prints one clear
// paragraph, and writes it to build/unavailable.txt, which the loader quotes at start-up.
"use strict";
const { execFileSync } = require("node:child_process");
const { mkdirSync, rmSync, writeFileSync } = require("node:fs");
const path = require("node:path");

const has = (cmd, args = ["--version"]) => {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

const missing = [
  [!has("c++") && !has("g++"), "no C++ compiler (c++/g++)", "apt-get install g++"],
  [!has("make"), "no make", "apt-get install make"],
  [!has("python3"), "no python3 (node-gyp needs it)", "apt-get install python3"],
].find(([absent]) => absent);

const reason = missing
  ? `the native addon was not built: ${missing[1]}. To enable the native backend: ${missing[2]}, then npm rebuild @patchlm/native`
  : "the native addon was not built: node-gyp rebuild failed (see the npm install log). " +
    "Fix the error, then npm rebuild @patchlm/native";

const dir = path.join(__dirname, "..", "build");
mkdirSync(dir, { recursive: true });
// A stale addon from an earlier build must not outlive the failed one: the loader would otherwise
// load a binary that no longer matches the sources (or whose OpenBLAS is gone).
rmSync(path.join(dir, "Release", "patchlm_native.node"), { force: true });
writeFileSync(path.join(dir, "unavailable.txt"), `${reason}\n`);
console.warn(`@patchlm/native: ${reason}. patchlm will run on the wasm backend.`);
