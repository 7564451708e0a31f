/**
 * Where a training step of the reference config (B=8, T=256, AdamW, fp32) spends its time, per
 * tfjs kernel, as JSON on stdout: the profile that decides which kernels move into the native
 * addon. (tools/bench-step.ts is the throughput benchmark; this one wraps every kernel of the
 * backend with a timer when --profile is given, which adds a little overhead per call.)
 *
 *   npx tsx tools/bench-native-profile.ts [--backends native,wasm] [--modes token,patch] [--steps 5] [--profile]
 *     [--precision fp32|bf16]
 *     [--batch B] [--patch-batch B] [--d-model C --layers L --heads H --ffn F --seq-len T]
 *
 * The model flags override the reference preset (e.g. the study's d 128, 4 layers:
 * `--d-model 128 --ffn 352 --seq-len 128 --batch 32 --patch-batch 8`, the same tokens per step
 * in both modes); --patch-batch is B in patch mode (default --batch, the same positions).
 *
 * OpenBLAS picks its kernels from OPENBLAS_CORETYPE at load time; the JSON records the
 * variables as this process saw them. To measure with them unset, unset them in the command only:
 *
 *   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE npx tsx tools/bench-native-profile.ts
 */
import * as tf from "@tensorflow/tfjs";
import { ComputeBackend } from "@patchlm/backend";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { Step } from "@patchlm/train";
import { randomInts } from "@patchlm/testing";
import { Effect } from "effect";
import { openblasReport, printReport } from "./bench-native-env";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const backends = flag("backends", "native,wasm").split(",") as Array<ComputeBackend.BackendName>;
const modes = flag("modes", "token,patch").split(",") as Array<"token" | "patch">;
const steps = Number(flag("steps", "5"));
const profile = args.includes("--profile");
const precision = flag("precision", "fp32") as ComputeBackend.Precision;
const Bt = Number(flag("batch", "8"));
const patchB = Number(flag("patch-batch", String(Bt)));
const num = (name: string, fallback: number) => Number(flag(name, String(fallback)));
const base = Presets.reference;
const cfg = {
  ...base,
  dModel: num("d-model", base.dModel),
  nLayers: num("layers", base.nLayers),
  nHeads: num("heads", base.nHeads),
  nKvHeads: num("heads", base.nKvHeads ?? base.nHeads),
  ffnHidden: num("ffn", base.ffnHidden),
  contextLength: num("seq-len", base.contextLength),
};
const T = cfg.contextLength;

interface KernelStat {
  calls: number;
  ms: number;
}

/** Wrap every kernel of `backend` with a timer; returns the table the timers fill. */
const instrument = (backend: string): Map<string, KernelStat> => {
  const stats = new Map<string, KernelStat>();
  for (const config of tf.getKernelsForBackend(backend)) {
    const inner = config.kernelFunc;
    const stat = { calls: 0, ms: 0 };
    stats.set(config.kernelName, stat);
    tf.unregisterKernel(config.kernelName, backend);
    tf.registerKernel({
      ...config,
      kernelFunc: ((a: Parameters<tf.KernelFunc>[0]) => {
        const t0 = performance.now();
        try {
          return inner(a);
        } finally {
          stat.ms += performance.now() - t0;
          stat.calls++;
        }
      }) as tf.KernelFunc,
    });
  }
  return stats;
};

const run = (backend: string, mode: "token" | "patch") => {
  const K = mode === "patch" ? 4 : 1;
  const B = mode === "patch" ? patchB : Bt;
  const params = Model.init(cfg, 1);
  const optimizer = AdamW.make(params, ParameterTable.make(cfg));
  const step = Step.makeTrainStep({ cfg, K, params, optimizer });
  const ids = tf.tensor2d(randomInts(B * T * K, cfg.vocabSize, 7), [B, T * K], "int32");
  const once = () => {
    const r = step(ids, 1e-3);
    // One host read per step, so each step's time is its own (the cpu-side backends run eagerly anyway).
    const loss = r.loss.dataSync()[0];
    tf.dispose([r.loss, r.gradNorm]);
    return loss;
  };
  once();
  const stats = profile ? instrument(backend) : undefined;
  const losses: Array<number> = [];
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) losses.push(once());
  const seconds = (performance.now() - t0) / 1000 / steps;
  tf.dispose(ids);
  optimizer.dispose();
  Model.dispose(params);
  const tokens = B * T * K;
  const flops = ParameterTable.flopsPerToken(cfg, T, K) * tokens;
  const kernels =
    stats === undefined
      ? undefined
      : [...stats.entries()]
          .filter(([, s]) => s.calls > 0)
          .sort((a, b) => b[1].ms - a[1].ms)
          .map(([name, s]) => ({ name, msPerStep: Math.round((s.ms / steps) * 10) / 10, callsPerStep: s.calls / steps }));
  return { mode, K, secondsPerStep: seconds, tokensPerSecond: tokens / seconds, gflops: flops / seconds / 1e9, losses, kernels };
};

const main = Effect.gen(function* () {
  const results: Array<Record<string, unknown>> = [];
  for (const name of backends) {
    const service = yield* ComputeBackend.make({ backend: name, precision });
    for (const mode of modes) {
      const r = run(name, mode);
      results.push({
        backend: name,
        threads: service.threads,
        ...r,
        tokensPerSecond: Math.round(r.tokensPerSecond),
        gflops: Math.round(r.gflops * 10) / 10,
        mfu: service.peakGflops === undefined ? null : Math.round((r.gflops / service.peakGflops) * 1000) / 1000,
      });
    }
  }
  return {
    benchmark: "training step, reference config",
    config: { B: Bt, patchB, T, model: cfg, optimizer: "AdamW", dtype: "float32", steps },
    openblas: openblasReport(),
    results,
  };
});

printReport(main);
