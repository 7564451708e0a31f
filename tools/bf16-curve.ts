/**
 * bf16 mixed precision against fp32 on real training: the same runs at both precisions, compared
 * at every logged step. Prints JSON (and writes it with --out).
 *
 *   npx tsx tools/bf16-curve.ts [--steps 500] [--log-every 10] [--data data/embedded]
 *                               [--runs-dir runs/bf16-curve] [--out docs/results/native/bf16-curve.json]
 *
 * Two pairs of runs of the reference model on the embedded corpus (prepared into --data first when
 * missing), 2,048 tokens per optimizer step, on the native backend:
 *   - token: the reference config's token-level training, B = 8 sequences of T = 256, `--steps`
 *     steps (the 500-step curve);
 *   - patch: K = 4, λ = 2/3 of the same budget at patch level (B = 2 sequences of 256 patches),
 *     then token level, so the comparison covers the bag loss and the switch too.
 * Each pair differs only in `--precision`. The criterion is |bf16 − fp32| / fp32 ≤ 1% for the
 * training loss at every logged step (the mean over the steps since the last log line) and for
 * the validation loss at the end. Runs already finished under --runs-dir are reused, a stopped one
 * is resumed, so an interrupted comparison continues where it stopped. Each run's wall time and
 * tokens/s are reported as measured, one run after another (bench-peer.ts is the interleaved
 * speed comparison).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { AtomicFile } from "@patchlm/core";
import { Effect } from "effect";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "500" },
    "log-every": { type: "string", default: "10" },
    data: { type: "string", default: "data/embedded" },
    "runs-dir": { type: "string", default: "runs/bf16-curve" },
    out: { type: "string" },
  },
});
const positive = (flag: string, raw: string): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag}: expected a positive integer, got ${raw}`);
  return n;
};
const steps = positive("steps", values.steps);
const logEvery = positive("log-every", values["log-every"]);
const repo = path.resolve(__dirname, "..");
const runsDir = path.resolve(values["runs-dir"]);
const data = path.resolve(values.data);
const batchTokens = 2048;
const T = 256;

const trainer = (args: ReadonlyArray<string>) => {
  const r = spawnSync(process.execPath, ["--conditions=@patchlm/source", "--import", "tsx", path.join(repo, "apps", "trainer", "src", "main.ts"), ...args], {
    cwd: repo,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`trainer ${args.join(" ")} failed (exit ${r.status}):\n${(r.stderr + r.stdout).slice(-3000)}`);
  return r.stdout + r.stderr;
};

if (!fs.existsSync(path.join(data, "manifest.json"))) {
  process.stderr.write(`preparing ${data} from the embedded corpus\n`);
  trainer(["prepare", "--corpus", "embedded", "--tokenizer", "bpe:4096", "--out", data]);
}

interface Pair {
  readonly name: string;
  readonly what: string;
  readonly args: ReadonlyArray<string>;
}
const pairs: ReadonlyArray<Pair> = [
  { name: "token", what: `token level, B = 8 × T = ${T}, ${steps} steps`, args: ["--patch-size", "1"] },
  {
    name: "patch",
    what: `K = 4, λ = 2/3 (B = 2 × 256 patches, then B = 8 × ${T} tokens), ${steps} steps in all`,
    args: ["--patch-size", "4", "--patch-fraction", "0.6666667"],
  },
];
const precisions = ["fp32", "bf16"] as const;

interface Record {
  readonly step: number;
  readonly phase: string;
  readonly elapsedSeconds: number;
  readonly totalTokens: number;
  readonly values: { readonly [key: string]: number };
}
const records = (runDir: string): ReadonlyArray<Record> =>
  fs.existsSync(path.join(runDir, "metrics.jsonl"))
    ? fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record)
    : [];

/** Train (or resume, or reuse) one run to the end; its metric records. */
const run = (pair: Pair, precision: (typeof precisions)[number]): ReadonlyArray<Record> => {
  const name = `${pair.name}-${precision}`;
  const runDir = path.join(runsDir, name);
  const finished = (r: ReadonlyArray<Record>) => r.some((x) => x.step === steps && x.values["val/loss"] !== undefined);
  if (!finished(records(runDir))) {
    const started = fs.existsSync(path.join(runDir, "latest"));
    process.stderr.write(`${started ? "resuming" : "training"} ${name}\n`);
    if (started) trainer(["resume", name, "--runs-dir", runsDir]);
    else {
      fs.rmSync(runDir, { recursive: true, force: true });
      trainer([
        "train", "--name", name, "--runs-dir", runsDir, "--data", data, "--preset", "reference", "--backend", "native",
        "--precision", precision, "--tokens", String(steps * batchTokens), "--batch-tokens", String(batchTokens), "--seq-len", String(T),
        ...pair.args, "--set", `logEvery=${logEvery}`, "--set", "evalEvery=0", "--set", "checkpointEvery=100", "--set", "evalBatches=16",
      ]);
    }
  }
  const r = records(runDir);
  if (!finished(r)) throw new Error(`${runDir}: no validation record at step ${steps} after training`);
  return r;
};

const rel = (x: number, ref: number) => Math.abs(x - ref) / Math.abs(ref);
const round = (x: number, digits = 5) => Math.round(x * 10 ** digits) / 10 ** digits;

const results = pairs.map((pair) => {
  const [fp32, bf16] = precisions.map((p) => run(pair, p));
  const train = (r: ReadonlyArray<Record>) => new Map(r.filter((x) => x.values["train/loss"] !== undefined).map((x) => [x.step, x] as const));
  const [a, b] = [train(fp32), train(bf16)];
  const logged = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  if (logged.length !== a.size || logged.length !== b.size) throw new Error(`${pair.name}: the two runs logged different steps`);
  const points = logged.map((step) => {
    const [x, y] = [a.get(step)!, b.get(step)!];
    return { step, phase: x.phase, fp32: round(x.values["train/loss"]), bf16: round(y.values["train/loss"]), relDiff: round(rel(y.values["train/loss"], x.values["train/loss"]), 6) };
  });
  const finalVal = (r: ReadonlyArray<Record>) => r.filter((x) => x.values["val/loss"] !== undefined).at(-1)!.values["val/loss"];
  const worst = points.reduce((w, p) => (p.relDiff > w.relDiff ? p : w));
  const speed = (r: ReadonlyArray<Record>) => {
    const last = r.at(-1)!;
    return { elapsedSeconds: round(last.elapsedSeconds, 1), tokensPerSecond: Math.round(last.totalTokens / last.elapsedSeconds) };
  };
  const valRel = rel(finalVal(bf16), finalVal(fp32));
  return {
    pair: pair.name,
    what: pair.what,
    loggedSteps: points.length,
    maxRelDiff: worst.relDiff,
    worstStep: worst.step,
    meanRelDiff: round(points.reduce((s, p) => s + p.relDiff, 0) / points.length, 6),
    validation: { fp32: round(finalVal(fp32)), bf16: round(finalVal(bf16)), relDiff: round(valRel, 6) },
    withinOnePercent: worst.relDiff <= 0.01 && valRel <= 0.01,
    runSpeed: { fp32: speed(fp32), bf16: speed(bf16) },
    points,
  };
});

const report = {
  benchmark: "bf16 mixed precision vs fp32: training loss at every logged step, reference model, embedded corpus, native backend",
  criterion: "|bf16 − fp32| / fp32 ≤ 0.01 at every logged step (mean training loss since the last log line) and for the final validation loss",
  steps,
  logEvery,
  batchTokens,
  cpu: os.cpus()[0]?.model ?? null,
  env: { OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null },
  note: "runSpeed: each run's own tokens/s over its whole run (evaluations and checkpoints included), run one after another, not interleaved",
  allWithinOnePercent: results.every((r) => r.withinOnePercent),
  results,
};
const text = JSON.stringify(report, null, 2) + "\n";
const out = values.out;
void Effect.runPromise(out === undefined ? Effect.void : AtomicFile.write(out, text)).then(() => process.stdout.write(text));
