/**
 * A long study, not part of the test suite: do two backends train the reference config
 * (vocab 4096, d 256, 4 layers, B 8, T 256, AdamW, fp32) along the same loss curve? Each backend
 * starts from the same initial weights and sees the same batches (a fresh random batch per step,
 * so the curve is a training curve, not an overfit); the JSON reports the largest absolute and
 * relative loss differences per mode and `agree` against a float32 tolerance. Exits 1 when they
 * disagree. The cpu backend takes about a minute per reference step, so compare native with wasm:
 *
 *   npx tsx tools/study-backend-curves.ts [--backends native,wasm] [--modes token,patch] [--steps 100]
 *                                         [--atol 5e-3] [--rtol 1e-3]
 */
import * as tf from "@tensorflow/tfjs";
import { Effect, Logger, LogLevel } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { randomInts } from "@patchlm/testing";
import { Step } from "@patchlm/train";

const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
const number = (name: string, fallback: string): number => {
  const n = Number(option(name, fallback));
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got ${option(name, fallback)}`);
  return n;
};
const backends = option("backends", "native,wasm").split(",") as Array<ComputeBackend.BackendName>;
const modes = option("modes", "token,patch").split(",");
const steps = number("steps", "100");
const atol = number("atol", "5e-3");
const rtol = number("rtol", "1e-3");
const cfg = Presets.reference;
const B = 8;
const T = cfg.contextLength;

const curve = (K: number): Array<number> => {
  const params = Model.init(cfg, 1);
  const optimizer = AdamW.make(params, ParameterTable.make(cfg));
  const step = Step.makeTrainStep({ cfg, K, params, optimizer });
  const losses: Array<number> = [];
  try {
    for (let i = 0; i < steps; i++) {
      const ids = tf.tensor2d(randomInts(B * K * T, cfg.vocabSize, 1000 + i), [B, K * T], "int32");
      const r = step(ids, 1e-3);
      losses.push(r.loss.dataSync()[0]);
      tf.dispose([ids, r.loss, r.gradNorm]);
    }
  } finally {
    optimizer.dispose();
    Model.dispose(params);
  }
  return losses;
};

const main = Effect.gen(function* () {
  const curves: Record<string, Record<string, Array<number>>> = {};
  for (const backend of backends) {
    yield* ComputeBackend.make({ backend });
    curves[backend] = {};
    for (const mode of modes) {
      if (mode !== "token" && mode !== "patch") throw new Error(`--modes: expected token or patch, got ${mode}`);
      const t0 = performance.now();
      curves[backend][mode] = curve(mode === "patch" ? 4 : 1);
      yield* Effect.logInfo(`${backend} ${mode}: ${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  const [reference, ...others] = backends;
  const comparisons = others.flatMap((other) =>
    modes.map((mode) => {
      const a = curves[reference][mode];
      const b = curves[other][mode];
      let maxAbs = 0;
      let maxRel = 0;
      let agree = true;
      a.forEach((x, i) => {
        const d = Math.abs(x - b[i]);
        maxAbs = Math.max(maxAbs, d);
        maxRel = Math.max(maxRel, d / Math.abs(x));
        if (!(d <= atol + rtol * Math.abs(x))) agree = false;
      });
      return { mode, backends: [reference, other], steps, first: [a[0], b[0]], last: [a[steps - 1], b[steps - 1]], maxAbs, maxRel, agree };
    }),
  );
  return {
    study: "loss curves of the reference config on two backends",
    config: { preset: "reference", B, T, K: { token: 1, patch: 4 }, lr: 1e-3, steps, tolerance: { atol, rtol } },
    comparisons,
    curves,
  };
});

Effect.runPromise(main.pipe(Logger.withMinimumLogLevel(LogLevel.Info), Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))))).then(
  (report) => {
    console.log(JSON.stringify(report));
    if (report.comparisons.some((c) => !c.agree)) process.exitCode = 1;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 2;
  },
);
