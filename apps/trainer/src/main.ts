#!/usr/bin/env node
/**
 * The trainer's entry point. `--version` is answered before the command line is built: loading
 * Effect's CLI stack reads about a thousand modules (over a second on a small VM), and a version
 * check should not pay for it. Everything else starts the CLI (start.ts).
 */
import { version } from "./Versions";

if (process.argv.length === 3 && process.argv[2] === "--version") console.log(version);
else void import("./start.js");
