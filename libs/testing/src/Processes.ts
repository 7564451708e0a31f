/**
 * The apps as a user runs them: a TypeScript entry point in one real node process (tsx's loader
 * registered in it, no relaying parent, so a signal sent to the child reaches the app itself),
 * waited on, signalled and looked for among the live processes.
 */
import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";

/** The repository root (this file is libs/testing/src/Processes.ts). */
export const repo = path.resolve(__dirname, "..", "..", "..");

/** An app's entry point: `apps/<app>/src/main.ts`. */
export const appMain = (app: "trainer" | "evaluator"): string => path.join(repo, "apps", app, "src", "main.ts");

/**
 * node's arguments to run a TypeScript file in this one process:
 * `node --conditions=@patchlm/source --import tsx <file> ...args` (the condition resolves the libs
 * to their sources, as everywhere in the workspace).
 */
export const tsArgs = (file: string, args: ReadonlyArray<string>): Array<string> => [
  "--conditions=@patchlm/source",
  "--import",
  pathToFileURL(path.join(repo, "node_modules", "tsx", "dist", "loader.mjs")).href,
  file,
  ...args,
];

export interface Options {
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Run a TypeScript file to its end. */
export const runTs = (file: string, args: ReadonlyArray<string>, o: Options): SpawnSyncReturns<string> =>
  spawnSync(process.execPath, tsArgs(file, args), { cwd: o.cwd, env: o.env, encoding: "utf8" });

export interface Started {
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved as they arrived. */
  readonly output: () => string;
  /** The exit code, or the signal's name when a signal ended it. */
  readonly exit: Promise<number | string>;
}

/** Follow a started process's output and exit. */
export const follow = (child: ChildProcess): Started => {
  let out = "";
  child.stdout?.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  // A process that could not start (ENOENT, EACCES) emits "error" and never "exit": settle on
  // that too, or whatever waits for the exit (a test's cleanup) waits forever.
  const exit = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
    child.on("error", (e) => {
      out += `\n[could not start: ${e.message}]\n`;
      resolve(`error: ${e.message}`);
    });
  });
  return { child, output: () => out, exit };
};

/** Start a TypeScript file; its output is collected. */
export const startTs = (file: string, args: ReadonlyArray<string>, o: Options): Started =>
  follow(spawn(process.execPath, tsArgs(file, args), { cwd: o.cwd, env: o.env }));

/** Poll `predicate` every 25 ms until it holds; fail naming `what` after `ms`. */
export const waitFor = async (predicate: () => boolean, what: string, ms = 120_000): Promise<void> => {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

/** The pids of live processes whose command line contains `text` (Linux: /proc). */
export const processesWith = (text: string): Array<number> =>
  fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => {
      try {
        const cmdline = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").join(" ");
        const state = /^\S+ \(.*\) (\S)/s.exec(fs.readFileSync(`/proc/${d}/stat`, "utf8"))?.[1];
        return state !== "Z" && cmdline.includes(text);
      } catch {
        return false; // ended while we looked
      }
    })
    .map(Number);
