/**
 * Tokens/s of a full training step (forward, backward, global-norm clip, AdamW) on the reference
 * config (vocab 4096, d 256, 4 layers, 4 heads, SwiGLU 688, T 256 positions, B 8, fp32), in token
 * mode and in patch mode (K = 4: 8 sequences of 1,024 tokens = 256 patches each). Prints JSON.
 *
 *   npx tsx tools/bench-step.ts --backend wasm|cpu|native [--modes token,patch] [--K 4]
 *                               [--steps N] [--warmup 2] [--batch 8] [--strategy mean] [--precision fp32|bf16]
 *
 * Defaults: 2 warm-up steps, then 5 measured steps (on cpu, where a reference step takes about a
 * minute, 1 warm-up and 1 measured); the modes alternate step by step. Besides wall-clock
 * tokens/s it reports tokens per CPU-second of this process, which stays comparable when other
 * jobs share the machine (the JSON records the load average). Each measured step ends with one host read of its loss so that its time is its own.
 * The backend comes from @patchlm/backend (with the wasm kernel fixes). For `native`, OpenBLAS
 * reads OPENBLAS_CORETYPE when it loads; the JSON records the variables as this process saw them.
 */
import * as os from "node:os";
import * as tf from "@tensorflow/tfjs";
import { Effect, Either, Logger, LogLevel } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { Registry } from "@patchlm/patching";
import { randomInts } from "@patchlm/testing";
import { Step } from "@patchlm/train";

const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const positiveInt = (name: string, fallback: number): number => {
  const raw = option(name);
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a non-negative integer, got ${raw}`);
  return n;
};

const backendName = option("backend") ?? "wasm";
const modes = (option("modes") ?? "token,patch").split(",");
const patchK = positiveInt("K", 4);
const warmup = positiveInt("warmup", backendName === "cpu" ? 1 : 2);
const steps = Math.max(1, positiveInt("steps", backendName === "cpu" ? 1 : 5));
const B = positiveInt("batch", 8);
const strategy = Either.getOrThrow(Registry.get(Registry.builtins, option("strategy") ?? "mean"));
const precision = option("precision") ?? "fp32";
if (precision !== "fp32" && precision !== "bf16") throw new Error(`--precision: expected fp32 or bf16, got ${precision}`);
const cfg = Presets.reference;
const T = cfg.contextLength; // positions per sequence: tokens in token mode, patches in patch mode

interface Measured {
  readonly backend: string;
  readonly mode: string;
  readonly K: number;
  readonly B: number;
  readonly T: number;
  readonly tokensPerStep: number;
  readonly tokensPerSec: number;
  readonly stepsMeasured: number;
  readonly msPerStep: number;
  /** Process CPU time per step (all threads): what the step costs, whatever else runs on the machine. */
  readonly cpuMsPerStep: number;
  readonly tokensPerCpuSec: number;
  readonly flopsPerToken: number;
  readonly gflops: number;
  readonly mfu: number | null;
  readonly losses: ReadonlyArray<number>;
}

/** A model, optimizer and batch for one mode, and a function that runs and times one step. */
const setUp = (mode: string) => {
  if (mode !== "token" && mode !== "patch") throw new Error(`--modes: expected token or patch, got ${mode}`);
  const K = mode === "patch" ? patchK : 1;
  const params = Model.init(cfg, 1);
  const extraSpecs = K === 1 ? [] : strategy.parameters(cfg.dModel, K);
  const strategyParams = Model.materialize(extraSpecs, 2);
  const optimizer = AdamW.make({ ...params, ...strategyParams }, [...ParameterTable.make(cfg), ...extraSpecs]);
  const step = Step.makeTrainStep({ cfg, K, strategy, params, strategyParams, optimizer });
  const ids = tf.tensor2d(randomInts(B * K * T, cfg.vocabSize, 7), [B, K * T], "int32");
  const losses: Array<number> = [];
  let wallMs = 0;
  let cpuMs = 0;
  const once = (timed: boolean): void => {
    const wall0 = performance.now();
    const cpu0 = process.cpuUsage();
    const r = step(ids, 3e-4);
    losses.push(r.loss.dataSync()[0]); // the one host read per step, so each step's time is its own
    tf.dispose([r.loss, r.gradNorm]);
    if (!timed) return;
    const cpu = process.cpuUsage(cpu0);
    wallMs += performance.now() - wall0;
    cpuMs += (cpu.user + cpu.system) / 1000;
  };
  const dispose = () => {
    tf.dispose(ids);
    optimizer.dispose();
    Model.dispose(strategyParams);
    Model.dispose(params);
  };
  const report = (backend: ComputeBackend.Service): Measured => {
    const seconds = wallMs / 1000 / steps;
    const tokensPerStep = B * K * T;
    const flopsPerToken = ParameterTable.flopsPerToken(cfg, T, K);
    const gflops = (flopsPerToken * tokensPerStep) / seconds / 1e9;
    return {
      backend: backend.name,
      mode,
      K,
      B,
      T,
      tokensPerStep,
      tokensPerSec: Math.round(tokensPerStep / seconds),
      stepsMeasured: steps,
      msPerStep: Math.round(seconds * 10000) / 10,
      cpuMsPerStep: Math.round((cpuMs / steps) * 10) / 10,
      tokensPerCpuSec: Math.round((tokensPerStep * steps * 1000) / cpuMs),
      flopsPerToken,
      gflops: Math.round(gflops * 100) / 100,
      mfu: backend.peakGflops === undefined ? null : Math.round((gflops / backend.peakGflops) * 10000) / 10000,
      losses: losses.map((l) => Math.round(l * 1e4) / 1e4),
    };
  };
  return { once, report, dispose };
};

const main = Effect.gen(function* () {
  const backend = yield* ComputeBackend.make({ backend: backendName as ComputeBackend.Choice, precision });
  const runs = modes.map(setUp);
  for (const run of runs) for (let i = 0; i < warmup; i++) run.once(false);
  // The modes take turns step by step, so a machine shared with other jobs slows them alike and
  // the patch/token ratio stays meaningful.
  for (let i = 0; i < steps; i++) for (const run of runs) run.once(true);
  const results = runs.map((run) => run.report(backend));
  runs.forEach((run) => run.dispose());
  const token = results.find((r) => r.mode === "token");
  const patch = results.find((r) => r.mode === "patch");
  return {
    benchmark: "training step (forward, backward, clip, AdamW), reference config",
    config: { preset: "reference", dtype: "float32", precision, warmup, strategy: strategy.name },
    backend: { name: backend.name, threads: backend.threads, detail: backend.detail, peakGflops: backend.peakGflops ?? null },
    env: {
      OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null,
      OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE ?? null,
      OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? null,
    },
    results,
    patchOverToken: token && patch ? Math.round((patch.tokensPerSec / token.tokensPerSec) * 100) / 100 : null,
    patchOverTokenCpu: token && patch ? Math.round((patch.tokensPerCpuSec / token.tokensPerCpuSec) * 100) / 100 : null,
    // Peak resident memory of this process over the whole benchmark (both modes), in MiB.
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
});

Effect.runPromise(main.pipe(Logger.withMinimumLogLevel(LogLevel.None))).then(
  (report) => console.log(JSON.stringify(report, null, 2)),
  (e) => {
    console.error(String(e));
    process.exit(1);
  },
);
