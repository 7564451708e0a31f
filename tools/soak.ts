/**
 * Kill -9 soak of the trainer (issue 16): N trials, each a small real training run killed with
 * SIGKILL at a random moment — in turn: a random moment of its training, the instant a randomly
 * chosen checkpoint's write begins, and a random moment from its start (start-up included) — then
 * resumed (or, when it died before its first checkpoint, trained again) to the end. Each
 * trial's loss curve (every training and validation record, including those the killed process
 * logged) and final weights (sha256 of model.safetensors) must equal an uninterrupted run's, bit
 * for bit. Prints JSON: the reference, each trial (where its kill landed, what it compared) and
 * the verdict; exits 1 on any mismatch.
 *
 *   npx tsx tools/soak.ts [--trials 20] [--backend cpu] [--seed 1] [--steps 12] [--keep]
 *
 * The run: tiny preset, byte tokenizer, a generated corpus, 256 tokens a step, K=4 for the first
 * 2/3 of the steps, then 4 micro-batches a step at token level, a checkpoint every 2 steps and a
 * validation every 4.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mulberry32 } from "@patchlm/core";
import { Processes } from "@patchlm/testing";

export interface SoakOptions {
  readonly trials: number;
  /** The trainer's --backend (default cpu). */
  readonly backend?: string;
  /** Seeds the kill moments (the runs themselves use a fixed seed). */
  readonly seed?: number;
  /** Optimizer steps of the run (256 tokens each; default 12). */
  readonly steps?: number;
  /** Keep the working directory (default: removed unless a trial failed). */
  readonly keep?: boolean;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

export interface TrialResult {
  readonly trial: number;
  /** What the kill aimed at: a moment of training, a checkpoint's write, or a moment from the start. */
  readonly aim: string;
  /** Where the kill landed, from what the killed process left. */
  readonly landed: string;
  /** The last step the killed process logged (0: none). */
  readonly killedAfterStep: number;
  /** `latest` when it was killed. */
  readonly latestAtKill: string | null;
  /** Temp entries a checkpoint write in flight left. */
  readonly tempLeft: ReadonlyArray<string>;
  /** The commands that took it to the end after the kill. */
  readonly continuedWith: ReadonlyArray<string>;
  readonly finalSha256: string | null;
  readonly pass: boolean;
  readonly mismatches: ReadonlyArray<string>;
}

export interface SoakReport {
  readonly trials: number;
  readonly backend: string;
  readonly seed: number;
  readonly steps: number;
  readonly reference: { readonly seconds: number; readonly finalSha256: string; readonly trainRecords: number; readonly validationRecords: number };
  readonly results: ReadonlyArray<TrialResult>;
  readonly landedDuringCheckpointWrite: number;
  readonly passed: number;
  readonly failed: number;
  readonly pass: boolean;
  readonly seconds: number;
  readonly dir: string | null;
}

const TOKENS_PER_STEP = 256;

/** A corpus of `n` documents of plain English-like lines, the same for every seed. */
const writeCorpus = (dir: string, n: number): void => {
  const words = "the quick brown fox jumps over a lazy dog while seven wise owls watch river stones glow under pale winter light".split(" ");
  const rng = mulberry32(20240601);
  fs.mkdirSync(dir, { recursive: true });
  for (let d = 0; d < n; d++) {
    const lines = Array.from({ length: 40 }, (_, i) => `${i}: ` + Array.from({ length: 9 }, () => words[Math.floor(rng() * words.length)]).join(" ") + ".");
    fs.writeFileSync(path.join(dir, `doc-${d}.txt`), lines.join("\n") + "\n");
  }
};

interface Curve {
  /** Loss of each training step and validation loss at each evaluated step: step -> values logged (all must agree). */
  readonly train: Map<number, Array<number>>;
  readonly validation: Map<number, Array<number>>;
  readonly unreadableLines: number;
}

const readCurve = (runDir: string): Curve => {
  const train = new Map<number, Array<number>>();
  const validation = new Map<number, Array<number>>();
  let unreadableLines = 0;
  const file = path.join(runDir, "metrics.jsonl");
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let r: { step: number; values: Record<string, number> };
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      unreadableLines++;
      continue;
    }
    const add = (m: Map<number, Array<number>>, v: number | undefined) => {
      if (v !== undefined) m.set(r.step, [...(m.get(r.step) ?? []), v]);
    };
    add(train, r.values["train/loss"]);
    add(validation, r.values["val/loss"]);
  }
  return { train, validation, unreadableLines };
};

const latestOf = (runDir: string): string | null => {
  const f = path.join(runDir, "latest");
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim() : null;
};

const finalSha = (runDir: string): string | null => {
  const latest = latestOf(runDir);
  if (latest === null) return null;
  return createHash("sha256").update(fs.readFileSync(path.join(runDir, latest, "model.safetensors"))).digest("hex");
};

/** Every step's values equal the reference's, and every reference step is there. */
const compareCurves = (what: string, got: Map<number, Array<number>>, want: Map<number, Array<number>>, out: Array<string>): void => {
  for (const [step, [expected]] of want) {
    const values = got.get(step);
    if (values === undefined) out.push(`${what} at step ${step}: missing`);
    else for (const v of values) if (!Object.is(v, expected)) out.push(`${what} at step ${step}: ${v}, uninterrupted ${expected}`);
  }
  for (const step of got.keys()) if (!want.has(step)) out.push(`${what} at step ${step}: not in the uninterrupted run`);
};

const stepDirName = (step: number) => `step-${String(step).padStart(8, "0")}`;

export const soak = async (o: SoakOptions): Promise<SoakReport> => {
  const started = performance.now();
  const backend = o.backend ?? "cpu";
  const seed = o.seed ?? 1;
  const steps = o.steps ?? 12;
  const log = o.log ?? ((): void => undefined);
  const rng = mulberry32(seed);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-soak-"));
  const env = { ...process.env, FORCE_COLOR: "0", PATCHLM_BACKEND: backend };
  const main = Processes.appMain("trainer");
  const runsDir = path.join(root, "runs");
  const runArgs = (name: string) => [
    "train", "--name", name, "--data", path.join(root, "data"), "--runs-dir", runsDir, "--backend", backend,
    "--preset", "tiny", "--patch-size", "4", "--patch-fraction", String(2 / 3), "--tokens", String(steps * TOKENS_PER_STEP),
    "--batch-tokens", String(TOKENS_PER_STEP), "--seq-len", "16", "--micro-batch", "4", "--warmup", "2", "--seed", "7",
    "--set", "checkpointEvery=2", "--set", "evalEvery=4", "--set", "evalBatches=2", "--set", "logEvery=1", "--set", "keepCheckpoints=3",
  ];
  const resumeArgs = (name: string) => ["resume", name, "--runs-dir", runsDir, "--backend", backend];
  const runToEnd = (args: ReadonlyArray<string>) => {
    const r = Processes.runTs(main, args, { cwd: root, env });
    return { ok: r.status === 0 && /finished \d+ steps/.test(r.stderr), output: r.stderr + r.stdout };
  };

  writeCorpus(path.join(root, "corpus"), 12);
  const prepared = Processes.runTs(main, ["prepare", "--corpus", "corpus", "--out", "data", "--tokenizer", "bytes", "--val-fraction", "0.2"], { cwd: root, env });
  if (prepared.status !== 0) throw new Error(`prepare failed (kept ${root}):\n${prepared.stderr}`);

  // The uninterrupted run, timed from its start and from its first step.
  const reference = Processes.startTs(main, runArgs("reference"), { cwd: root, env });
  const t0 = performance.now();
  let firstStep = 0;
  const firstStepSeen = Processes.waitFor(() => /step +1\/\d+ /.test(reference.output()), "the first step", 600_000).then(() => (firstStep = performance.now()));
  const refExit = await reference.exit;
  await firstStepSeen.catch(() => undefined);
  const refSeconds = (performance.now() - t0) / 1000;
  const trainingSeconds = (performance.now() - (firstStep || t0)) / 1000;
  const ref = { ok: refExit === 0 && /finished \d+ steps/.test(reference.output()), output: reference.output() };
  if (!ref.ok) throw new Error(`the uninterrupted run failed (kept ${root}):\n${ref.output}`);
  const refDir = path.join(runsDir, "reference");
  const refCurve = readCurve(refDir);
  const refSha = finalSha(refDir)!;
  log(`reference: ${steps} steps in ${refSeconds.toFixed(1)} s, model sha256 ${refSha.slice(0, 12)}…`);

  const results: Array<TrialResult> = [];
  for (let i = 0; i < o.trials; i++) {
    const name = `trial-${i}`;
    const runDir = path.join(runsDir, name);
    // In turn: a moment of training (timed from this run's first step), a checkpoint's write, a
    // moment from the start (start-up, checks and directory creation included).
    const mode = (["training", "checkpoint", "start"] as const)[i % 3];
    const targetStep = 2 * (1 + Math.floor(rng() * Math.floor(steps / 2)));
    const delayMs = Math.floor(rng() * 0.95 * (mode === "training" ? trainingSeconds : refSeconds) * 1000);
    const aim =
      mode === "checkpoint" ? `the write of checkpoint ${stepDirName(targetStep)}` : mode === "training" ? `${delayMs} ms after the first step` : `${delayMs} ms after start`;
    const run = Processes.startTs(main, runArgs(name), { cwd: root, env });
    let killed = false;
    const kill = () => {
      if (!killed && run.child.exitCode === null) {
        run.child.kill("SIGKILL");
        killed = true;
      }
    };
    const aimAtCheckpoint = mode === "checkpoint";
    let watcher: fs.FSWatcher | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (mode === "start") timer = setTimeout(kill, delayMs);
    if (mode === "training") {
      void Processes.waitFor(() => /step +1\/\d+ /.test(run.output()) || run.child.exitCode !== null, "the first step", 600_000).then(() => {
        timer = setTimeout(kill, delayMs);
      });
    }
    const poll = aimAtCheckpoint
      ? setInterval(() => {
          if (watcher !== undefined || !fs.existsSync(runDir)) return;
          const target = `.tmp-${stepDirName(targetStep)}-`;
          watcher = fs.watch(runDir, (_event, file) => {
            if (typeof file === "string" && file.startsWith(target)) kill();
          });
          // It may have begun before the watch did.
          if (fs.readdirSync(runDir).some((f) => f.startsWith(target))) kill();
        }, 5)
      : undefined;
    const exit = await run.exit;
    clearTimeout(timer);
    clearInterval(poll);
    watcher?.close();

    const output = run.output();
    const killedAfterStep = Math.max(0, ...[...output.matchAll(/step +(\d+)\/\d+ (?:patch|token) \|/g)].map((m) => Number(m[1])));
    const exists = fs.existsSync(runDir);
    const entries = exists ? fs.readdirSync(runDir) : [];
    const tempLeft = entries.filter((f) => f.startsWith(".tmp-"));
    const latestAtKill = exists ? latestOf(runDir) : null;
    const landed =
      exit !== "SIGKILL"
        ? `not killed: the run ended first (exit ${exit})`
        : !exists
          ? "before the run directory existed (start-up, checks)"
          : tempLeft.some((f) => f.startsWith(".tmp-step-"))
            ? `during a checkpoint write (${tempLeft.join(", ")} left; latest ${latestAtKill ?? "none"})`
            : tempLeft.some((f) => f.startsWith(".tmp-latest-"))
              ? `while replacing latest (${tempLeft.join(", ")} left; latest ${latestAtKill ?? "none"})`
              : `after step ${killedAfterStep} (latest ${latestAtKill ?? "none"})`;

    // Continue as a user would: resume a run that has a checkpoint, else train it again.
    const continuedWith: Array<string> = [];
    const mismatches: Array<string> = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const hasCheckpoint = fs.existsSync(runDir) && fs.readdirSync(runDir).some((f) => f === "latest" || f.startsWith("step-"));
      const args = hasCheckpoint ? resumeArgs(name) : runArgs(name);
      continuedWith.push(hasCheckpoint ? "resume" : "train");
      const r = runToEnd(args);
      if (r.ok) break;
      mismatches.push(`${continuedWith.at(-1)} failed: ${r.output.split("\n").filter((l) => l.startsWith("error:")).join(" ") || r.output.slice(-300)}`);
    }
    const curve = readCurve(runDir);
    compareCurves("train/loss", curve.train, refCurve.train, mismatches);
    compareCurves("val/loss", curve.validation, refCurve.validation, mismatches);
    if (curve.unreadableLines > 0) mismatches.push(`metrics.jsonl: ${curve.unreadableLines} unreadable line(s)`);
    const sha = fs.existsSync(runDir) ? finalSha(runDir) : null;
    if (latestOf(runDir) !== stepDirName(steps)) mismatches.push(`latest is ${latestOf(runDir)}, expected ${stepDirName(steps)}`);
    if (sha !== refSha) mismatches.push(`final model.safetensors sha256 ${sha}, uninterrupted ${refSha}`);
    const left = fs.existsSync(runDir) ? fs.readdirSync(runDir).filter((f) => f.startsWith(".tmp-") || f === "lock") : [];
    if (left.length > 0) mismatches.push(`left in the run directory at the end: ${left.join(", ")}`);
    const result: TrialResult = {
      trial: i,
      aim,
      landed,
      killedAfterStep,
      latestAtKill,
      tempLeft,
      continuedWith,
      finalSha256: sha,
      pass: mismatches.length === 0,
      mismatches: mismatches.slice(0, 20),
    };
    results.push(result);
    log(`trial ${i}: killed ${landed}; ${result.pass ? "identical" : `MISMATCH: ${mismatches[0]}`}`);
    if (result.pass && o.keep !== true) fs.rmSync(runDir, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.pass).length;
  const keep = o.keep === true || failed > 0;
  if (!keep) fs.rmSync(root, { recursive: true, force: true });
  return {
    trials: o.trials,
    backend,
    seed,
    steps,
    reference: { seconds: Number(refSeconds.toFixed(2)), finalSha256: refSha, trainRecords: refCurve.train.size, validationRecords: refCurve.validation.size },
    results,
    landedDuringCheckpointWrite: results.filter((r) => r.tempLeft.some((f) => f.startsWith(".tmp-step-"))).length,
    passed: results.length - failed,
    failed,
    pass: failed === 0,
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    dir: keep ? root : null,
  };
};

const flag = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

if (require.main === module) {
  soak({
    trials: Number(flag("trials") ?? 20),
    backend: flag("backend") ?? "cpu",
    seed: Number(flag("seed") ?? 1),
    steps: Number(flag("steps") ?? 12),
    keep: process.argv.includes("--keep"),
    log: (line) => process.stderr.write(`${line}\n`),
  }).then(
    (report) => {
      process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      process.exitCode = report.pass ? 0 : 1;
    },
    (e: unknown) => {
      process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
