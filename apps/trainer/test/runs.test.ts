/**
 * Who owns a run directory, how a run is stopped, and what a command leaves behind: real trainer
 * processes, started as users start them (`npm run trainer`, the bin entry, node itself), real
 * signals, real run directories (issue 16: D5 run lock, D6 signals, D7 a lost `latest`, D8 resume of
 * a directory, D13 what a failed command leaves).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Processes } from "@patchlm/testing";
import { prepareSmallData } from "./smallData";

jest.setTimeout(240_000);

const main = Processes.appMain("trainer");
const env = { ...process.env, PATCHLM_BACKEND: "cpu", FORCE_COLOR: "0" };
let root: string;

const trainer = (args: ReadonlyArray<string>) => Processes.runTs(main, args, { cwd: root, env });
const started: Array<Processes.Started> = [];
const track = (s: Processes.Started) => {
  started.push(s);
  return s;
};
const start = (args: ReadonlyArray<string>) => track(Processes.startTs(main, args, { cwd: root, env }));
/** The live processes of run `name` (its name is on their command line). */
const runningFor = (name: string) => Processes.processesWith(`--name ${name} `);
const interruptedAt = (output: string) => Number(/interrupted at step (\d+)/.exec(output)?.[1]);
const stepName = (step: number) => `step-${String(step).padStart(8, "0")}`;
const runDir = (name: string) => path.join(root, "runs", name);
const latest = (name: string): string | undefined => {
  const f = path.join(runDir(name), "latest");
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim() : undefined;
};
const errorLines = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("error:"));

/** A small run: 128 tokens a step, a checkpoint every 2 steps, 256 steps in all; any working directory. */
const trainArgs = (name: string, extra: ReadonlyArray<string> = [], data = "data") => [
  "train",
  "--name", name,
  "--data", path.join(root, data),
  "--runs-dir", path.join(root, "runs"),
  "--preset", "tiny",
  "--patch-size", "4",
  "--tokens", "32768",
  "--batch-tokens", "128",
  "--seq-len", "16",
  "--warmup", "2",
  "--set", "checkpointEvery=2",
  "--set", "evalEvery=0",
  "--set", "logEvery=1",
  ...extra,
];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-runs-"));
  const r = prepareSmallData(root, trainer);
  expect(r.status).toBe(0);
});
afterAll(async () => {
  for (const s of started) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
  await Promise.all(started.map((s) => s.exit));
  for (const pid of Processes.processesWith(root)) process.kill(pid, "SIGKILL");
  fs.rmSync(root, { recursive: true, force: true });
});

// reliability D5: two `train` on one name, or `resume` during a run, both proceeded; one died on a
// temp path the other removed, and metrics.jsonl interleaved.
describe("one process owns a run directory", () => {
  it("a second train or a resume of a running run is refused, naming the holder's pid and host", async () => {
    // No checkpoint until it stops: a second `train` finds no `latest` either.
    const first = start(trainArgs("dual", ["--set", "checkpointEvery=100000"]));
    await Processes.waitFor(() => /step +1\//.test(first.output()), "a first step");
    for (const args of [[...trainArgs("dual"), "--max-steps", "3"], ["resume", "dual", "--max-steps", "2"]]) {
      const second = trainer(args);
      expect(errorLines(second.stderr)).toEqual([
        expect.stringMatching(new RegExp(`^error: .*runs/dual: in use by pid ${first.child.pid} on ${os.hostname()} since .*kill -TERM ${first.child.pid}`)),
      ]);
      expect(second.status).toBe(1);
    }
    const lock = JSON.parse(fs.readFileSync(path.join(runDir("dual"), "lock"), "utf8")) as { pid: number; host: string };
    expect(lock).toMatchObject({ pid: first.child.pid, host: os.hostname() });
    // The first run never noticed: it stops cleanly when asked, and its lock goes with it.
    first.child.kill("SIGTERM");
    expect(await first.exit).toBe(0);
    expect(first.output()).not.toMatch(/error:/);
    expect(fs.existsSync(path.join(runDir("dual"), "lock"))).toBe(false);
    const steps = fs
      .readFileSync(path.join(runDir("dual"), "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { step: number }).step);
    expect(steps).toEqual(steps.map((_, i) => i + 1));
    const resumed = trainer(["resume", "dual", "--max-steps", "1"]);
    expect(resumed.status).toBe(0);
  });

  it("a lock left by a killed run is stale: resume takes it over and says so", async () => {
    const run = start(trainArgs("stale"));
    await Processes.waitFor(() => latest("stale") !== undefined, "a first checkpoint");
    run.child.kill("SIGKILL");
    await run.exit;
    const lock = JSON.parse(fs.readFileSync(path.join(runDir("stale"), "lock"), "utf8")) as { pid: number };
    expect(lock.pid).toBe(run.child.pid);
    const resumed = trainer(["resume", "stale", "--max-steps", "1"]);
    expect(resumed.stderr).toMatch(new RegExp(`WARN .*runs/stale: took over the stale lock of pid ${run.child.pid} on ${os.hostname()} .*: it is no longer running`));
    expect(resumed.status).toBe(0);
    expect(fs.existsSync(path.join(runDir("stale"), "lock"))).toBe(false);
  });

  it("a lock whose holder is alive, or on another host, is never taken: the error says how to clear it", () => {
    const r = trainer([...trainArgs("held"), "--max-steps", "2"]);
    expect(r.status).toBe(0);
    const file = path.join(runDir("held"), "lock");
    const holder = { pid: process.pid, host: os.hostname(), startedAt: "2020-01-01T00:00:00.000Z", command: "something else", token: "t" };
    fs.writeFileSync(file, JSON.stringify(holder));
    const alive = trainer(["resume", "held", "--max-steps", "1"]);
    expect(errorLines(alive.stderr)).toEqual([expect.stringMatching(new RegExp(`in use by pid ${process.pid} on .*something else.*remove .*runs/held/lock$`))]);
    expect(alive.status).toBe(1);
    fs.writeFileSync(file, JSON.stringify({ ...holder, host: "elsewhere.example", pid: 999_999 }));
    const remote = trainer(["resume", "held", "--max-steps", "1"]);
    expect(errorLines(remote.stderr)).toEqual([
      expect.stringMatching(/in use by pid 999999 on elsewhere\.example .*whether elsewhere\.example still runs it; if no process there uses this run, remove .*runs\/held\/lock$/),
    ]);
    expect(remote.status).toBe(1);
    fs.writeFileSync(file, "{ half a lo");
    const garbled = trainer(["resume", "held", "--max-steps", "1"]);
    expect(errorLines(garbled.stderr)).toEqual([expect.stringMatching(/runs\/held\/lock: not a run lock \(not JSON.*remove .*runs\/held\/lock$/)]);
    expect(latest("held")).toBe("step-00000002");
  });
});

// reliability D6: SIGTERM to `npm run trainer -- train` (what `kill <npm pid>` and `docker stop`
// send) killed npm only; the trainer ran on as an orphan, never checkpointed, and later ran beside
// a `resume`.
describe("signals reach the trainer however it is started", () => {
  const npmRun = (args: ReadonlyArray<string>) =>
    track(Processes.follow(spawn("npm", ["run", "--silent", "trainer", "--", ...args], { cwd: Processes.repo, env })));

  /** The run stopped as on SIGTERM: it checkpointed the step it reached, and nothing of it runs. */
  const stoppedCleanly = async (name: string, output: () => string) => {
    await Processes.waitFor(() => runningFor(name).length === 0, `every process of run ${name} to end`, 60_000);
    const at = interruptedAt(output());
    expect(at).toBeGreaterThan(0);
    expect(latest(name)).toBe(stepName(at));
    expect(fs.existsSync(path.join(runDir(name), "lock"))).toBe(false);
  };

  it("SIGTERM to `npm run trainer` stops the trainer: it checkpoints and exits, and nothing is left running", async () => {
    const npm = npmRun(trainArgs("npm-term"));
    await Processes.waitFor(() => latest("npm-term") !== undefined, "a first checkpoint");
    npm.child.kill("SIGTERM");
    await npm.exit;
    await stoppedCleanly("npm-term", npm.output);
  });

  it("when npm itself is killed (kill -9), the trainer stops as on SIGTERM instead of running on as an orphan", async () => {
    const npm = npmRun(trainArgs("npm-kill"));
    await Processes.waitFor(() => latest("npm-kill") !== undefined, "a first checkpoint");
    npm.child.kill("SIGKILL");
    await npm.exit;
    await stoppedCleanly("npm-kill", npm.output);
    expect(npm.output()).toMatch(/WARN the npm script that started this process \(pid \d+\) ended: stopping as on SIGTERM/);
  });

  it("the bin entry (compiled) is the trainer itself: SIGTERM to it checkpoints and exits 0", async () => {
    // The package's bin is its compiled entry, run by its shebang with no loader in between.
    const build = spawnSync(process.execPath, [path.join(Processes.repo, "tools", "build-packages.mjs"), "--package", "apps/trainer"], {
      cwd: Processes.repo,
      encoding: "utf8",
    });
    expect(build.stderr + build.stdout).toBe("");
    const pkg = JSON.parse(fs.readFileSync(path.join(Processes.repo, "apps", "trainer", "package.json"), "utf8")) as { bin: Record<string, string> };
    const binFile = path.join(Processes.repo, "apps", "trainer", pkg.bin["patchlm-trainer"]!);
    // As a user runs it: without the workspace's source condition (.npmrc's node-options).
    const userEnv = { ...env, NODE_OPTIONS: (process.env.NODE_OPTIONS ?? "").replace("--conditions=@patchlm/source", "").trim() };
    const bin = track(Processes.follow(spawn(binFile, trainArgs("bin"), { cwd: root, env: userEnv })));
    await Processes.waitFor(() => latest("bin") !== undefined, "a first checkpoint");
    bin.child.kill("SIGTERM");
    expect(await bin.exit).toBe(0);
    await stoppedCleanly("bin", bin.output);
  });

  it("a stop signal delivered twice (a terminal's Ctrl-C and npm's relay of it) is one stop, not a kill mid-checkpoint", async () => {
    const run = start(trainArgs("twice"));
    await Processes.waitFor(() => latest("twice") !== undefined, "a first checkpoint");
    run.child.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 20));
    run.child.kill("SIGINT");
    expect(await run.exit).toBe(0);
    await stoppedCleanly("twice", run.output);
  });
});

// reliability D7: with `latest` lost, `resume` said there was nothing to resume although the step
// directories were there, and `train --name same` then started over and pruned the good checkpoints.
describe("a run whose latest is lost", () => {
  const stepDirs = (name: string) => fs.readdirSync(runDir(name)).filter((n) => n.startsWith("step-")).sort();
  const snapshot = (name: string) => stepDirs(name).map((d) => [d, fs.readFileSync(path.join(runDir(name), d, "model.safetensors")).toString("base64")]);

  it("train refuses to start it over, naming the directory and resume, and touches nothing", () => {
    expect(trainer([...trainArgs("lost"), "--max-steps", "4"]).status).toBe(0);
    fs.rmSync(path.join(runDir("lost"), "latest"));
    const before = snapshot("lost");
    expect(before.map(([d]) => d)).toEqual(["step-00000002", "step-00000004"]);
    const again = trainer([...trainArgs("lost"), "--max-steps", "4"]);
    expect(errorLines(again.stderr)).toEqual([
      expect.stringMatching(/^error: RunExists: .*runs\/lost already holds checkpoints \(step-00000002, step-00000004, but no latest\); .*discard them; resume it with `trainer resume lost`/),
    ]);
    expect(again.status).toBe(1);
    expect(snapshot("lost")).toEqual(before);
    expect(fs.existsSync(path.join(runDir("lost"), "latest"))).toBe(false);
  });

  it("resume continues from the newest step directory that verifies, passing over a corrupt one, and says so", () => {
    // step-00000004 is corrupt: a flipped byte in its weights.
    const weights = path.join(runDir("lost"), "step-00000004", "model.safetensors");
    const bytes = fs.readFileSync(weights);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(weights, bytes);
    const resumed = trainer(["resume", "lost", "--max-steps", "2"]);
    expect(resumed.stderr).toMatch(/WARN .*runs\/lost: latest was missing; resuming from step-00000002, the newest step directory that verifies; passed over .*step-00000004\/model\.safetensors: Corrupt/);
    expect(resumed.stderr).toMatch(/resumed .*runs\/lost at step 2\//);
    expect(resumed.status).toBe(0);
    expect(latest("lost")).toBe("step-00000004");
    expect(stepDirs("lost")).toEqual(["step-00000002", "step-00000004"]);
  });

  it("resume with no step directory that verifies says why for each", () => {
    fs.rmSync(path.join(runDir("lost"), "latest"));
    for (const d of ["step-00000002", "step-00000004"]) fs.rmSync(path.join(runDir("lost"), d, "manifest.json"));
    const r = trainer(["resume", "lost"]);
    expect(r.stderr).toMatch(/^error: .*runs\/lost\/latest: NotFound: missing, and no step directory verifies:\n\s+- .*step-00000004: NotFound: no manifest\.json\n\s+- .*step-00000002: NotFound/m);
    expect(r.status).toBe(1);
  });
});

// reliability D8: `resume <dir>` trained the directory its config.json names relative to the cwd,
// not <dir>: resuming a copy advanced the original.
describe("resume <dir>", () => {
  it("trains the directory it was given, whatever its config names, and leaves the original as it was", () => {
    expect(trainer([...trainArgs("orig"), "--max-steps", "2"]).status).toBe(0);
    const copy = path.join(root, "elsewhere", "copy-of-orig");
    fs.cpSync(runDir("orig"), copy, { recursive: true });
    const original = () => fs.readdirSync(runDir("orig")).sort().map((f) => [f, fs.statSync(path.join(runDir("orig"), f)).mtimeMs]);
    const before = original();
    for (const [given, step] of [[copy, 4], [path.relative(root, copy), 6]] as const) {
      const r = trainer(["resume", given, "--max-steps", "2"]);
      expect(r.stderr).toMatch(new RegExp(`resumed ${copy} at step ${step - 2}/`));
      expect(r.stderr).toMatch(/continue with `trainer resume elsewhere\/copy-of-orig`/);
      expect(r.status).toBe(0);
      expect(fs.readFileSync(path.join(copy, "latest"), "utf8").trim()).toBe(stepName(step));
    }
    expect(latest("orig")).toBe("step-00000002");
    expect(original()).toEqual(before);
  });
});

// reliability D13: a train that failed to start left an empty or partial run directory (its
// tokenizer, config.json, empty logs) behind.
describe("a train that cannot start leaves nothing", () => {
  it("a config that does not fit the data or the model is refused before the run directory exists", () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
      [["--set", "model.vocabSize=300"], /model\.vocabSize: 300 differs from the data's tokenizer vocabulary/],
      [["--set", "batch.uniqueTokens=99999999"], /batch\.uniqueTokens: 99999999 exceeds the \d+ tokens of the train split/],
      [["--micro-batch", "3"], /batch\.microBatch: 3 sequences does not divide/],
    ];
    for (const [flags, want] of cases) {
      const r = trainer([...trainArgs("never"), ...flags]);
      expect(errorLines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(want);
      expect(r.status).toBe(1);
      expect(fs.existsSync(runDir("never"))).toBe(false);
    }
  });

  it("a run that fails at its first step (an out-of-vocabulary id in a shard) removes the directory it made", () => {
    const data = path.join(root, "data-oov");
    fs.cpSync(path.join(root, "data"), data, { recursive: true });
    const shard = fs.readdirSync(data).find((f) => f.startsWith("train-"))!;
    const bytes = fs.readFileSync(path.join(data, shard));
    bytes.fill(0xff, 128);
    fs.writeFileSync(path.join(data, shard), bytes);
    const r = trainer(trainArgs("oov", [], "data-oov"));
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(new RegExp(`^error: .*${shard}.*`))]);
    expect(r.status).toBe(1);
    expect(fs.existsSync(runDir("oov"))).toBe(false);
  });
});
