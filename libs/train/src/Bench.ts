/**
 * Training-step throughput: forward, backward, clipping and AdamW on random ids, for a preset in
 * token mode (K = 1) or patch mode. Shared by `trainer bench` and tools/bench-step.ts.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Effect, Option } from "effect";
import { type Config, ConfigError } from "@patchlm/core";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { makeTrainStep } from "./Step";

export interface Options {
  readonly preset: string;
  /** A resolved model config to measure instead of the preset's (the preset then only names it). */
  readonly model?: Config.ModelConfig;
  /** 1: token mode; K > 1: patch mode with the mean strategy. */
  readonly K: number;
  /** B: sequences per step. */
  readonly batch: number;
  /**
   * Positions T per sequence, as `train --seq-len`: T tokens in token mode, T patches (K·T tokens)
   * in patch mode, so both modes run the same model shape, as the paper compares them.
   */
  readonly seqLen: number;
  /** Measured steps (after 2 warm-up steps). */
  readonly steps: number;
  /** Peak FLOP/s of the machine, for MFU. */
  readonly peakFlops?: number;
}

export interface Result {
  readonly mode: "token" | "patch";
  readonly preset: string;
  readonly K: number;
  readonly B: number;
  /** Raw tokens per sequence. */
  readonly tokensPerSequence: number;
  /** Model positions per sequence (tokensPerSequence / K). */
  readonly positions: number;
  readonly parameters: number;
  readonly stepsMeasured: number;
  readonly msPerStep: number;
  readonly tokensPerSec: number;
  /** Training FLOPs per raw token (6N + attention, per position, divided by K). */
  readonly flopsPerToken: number;
  readonly gflops: number;
  readonly mfu: number | undefined;
  readonly finalLoss: number;
}

// Deterministic ids without a tensor RNG, so every backend sees the same batch.
const ids = (n: number, vocab: number): Int32Array => {
  const out = new Int32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x % vocab;
  }
  return out;
};

export const trainStep = Effect.fn("Bench.trainStep")(function* (o: Options) {
  const preset = o.model === undefined ? Presets.lookup(o.preset) : Option.some(o.model);
  if (Option.isNone(preset)) {
    return yield* new ConfigError({ source: "flags", issues: [`--preset: unknown "${o.preset}"; known: ${Presets.names.join(", ")}`] });
  }
  const positions = o.seqLen;
  const tokensPerSequence = positions * o.K;
  const cfg = { ...preset.value, contextLength: Math.max(preset.value.contextLength, positions) };
  return yield* Effect.acquireUseRelease(
    Effect.sync(() => {
      const params = Model.init(cfg, 1);
      const optimizer = AdamW.make(params, ParameterTable.make(cfg));
      const batch = tf.tensor2d(ids(o.batch * tokensPerSequence, cfg.vocabSize), [o.batch, tokensPerSequence], "int32");
      return { params, optimizer, batch };
    }),
    ({ params, optimizer, batch }) =>
      Effect.sync(() => {
        const step = makeTrainStep({ cfg, K: o.K, params, optimizer });
        const once = (): number => {
          const r = step(batch, 1e-4);
          // One host read per step: each step's time is its own (CPU backends run eagerly anyway).
          const loss = r.loss.dataSync()[0];
          tf.dispose([r.loss, r.gradNorm]);
          return loss;
        };
        once();
        once();
        const t0 = performance.now();
        let loss = NaN;
        for (let i = 0; i < o.steps; i++) loss = once();
        const ms = (performance.now() - t0) / o.steps;
        const tokensPerSec = (o.batch * tokensPerSequence) / (ms / 1000);
        const flopsPerToken = ParameterTable.flopsPerToken(cfg, positions, o.K);
        const flops = tokensPerSec * flopsPerToken;
        return {
          mode: o.K === 1 ? "token" : "patch",
          preset: o.preset,
          K: o.K,
          B: o.batch,
          tokensPerSequence,
          positions,
          parameters: ParameterTable.count(cfg),
          stepsMeasured: o.steps,
          msPerStep: ms,
          tokensPerSec,
          flopsPerToken,
          gflops: flops / 1e9,
          mfu: o.peakFlops === undefined ? undefined : flops / o.peakFlops,
          finalLoss: loss,
        } satisfies Result;
      }),
    ({ params, optimizer, batch }) =>
      Effect.sync(() => {
        batch.dispose();
        optimizer.dispose();
        Model.dispose(params);
      }),
  );
});

/** The environment that decides BLAS speed, echoed into benchmark output. */
export const environment = (): Record<string, string | null> => ({
  OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null,
  OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE ?? null,
  OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? null,
  PATCHLM_THREADS: process.env.PATCHLM_THREADS ?? null,
});
