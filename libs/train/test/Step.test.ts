// The suite runs on cpu and wasm. Libraries never pick a backend and libs/testing's useBackend
// does not register wasm, so this test registers it (the same exemption as libs/model's tests).
// eslint-disable-next-line @nx/enforce-module-boundaries
require("@tensorflow/tfjs-backend-wasm");
import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import { Config } from "@patchlm/core";
import { Loss } from "@patchlm/losses";
import { Model, ParameterTable } from "@patchlm/model";
import { AdamW, Gradients } from "@patchlm/optim";
import { PatchStrategy } from "@patchlm/patching";
import { expectClose, expectNoTensorLeak, randomInts, useBackend } from "@patchlm/testing";
import { Step } from "../src";

const makeConfig = (nLayers: number) =>
  Either.getOrThrow(
    Config.decodeConfig(Config.ModelConfig)("test", { vocabSize: 37, dModel: 32, nLayers, nHeads: 4, ffnHidden: 64, contextLength: 16 }),
  );
const cfg = makeConfig(2);
// The 200-step overfits use one layer: a step of this size is dominated by per-op overhead.
const overfitCfg = makeConfig(1);
const V = cfg.vocabSize;
const table = ParameterTable.make(cfg);

const read = (t: tf.Tensor): number => {
  const v = t.dataSync()[0];
  t.dispose();
  return v;
};

const snapshot = (params: Model.Weights): Record<string, Array<number>> =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Array.from(v.dataSync())]));

/** A fresh model and optimizer, freed after `body`. */
const withModel = async <A>(
  seed: number,
  body: (params: Model.Weights, optimizer: AdamW.Optimizer) => A | Promise<A>,
  c: Config.ModelConfig = cfg,
): Promise<A> => {
  const params = Model.init(c, seed);
  const optimizer = AdamW.make(params, ParameterTable.make(c));
  try {
    return await body(params, optimizer);
  } finally {
    optimizer.dispose();
    Model.dispose(params);
  }
};

/** Sequences of patches whose K tokens are distinct, so the bag loss floor is exactly ln K. */
const distinctPatches = (B: number, T: number, K: number, seed: number): tf.Tensor2D => {
  const starts = randomInts(B * T, V, seed);
  const ids = new Int32Array(B * T * K);
  for (let p = 0; p < B * T; p++) for (let k = 0; k < K; k++) ids[p * K + k] = (starts[p] + 5 * k) % V;
  return tf.tensor2d(ids, [B, T * K], "int32");
};

describe.each(["cpu", "wasm"])("Step on %s", (backend) => {
  beforeAll(() => useBackend(backend));

  /** The first and last loss of 200 steps on one batch at lr 1e-2. */
  const overfit = (seed: number, K: number, ids: tf.Tensor2D) =>
    withModel(
      seed,
      (params, optimizer) => {
        const step = Step.makeTrainStep({ cfg: overfitCfg, K, params, optimizer });
        const losses: Array<number> = [];
        for (let i = 0; i < 200; i++) {
          const r = step(ids, 1e-2);
          losses.push(read(r.loss));
          r.gradNorm.dispose();
        }
        ids.dispose();
        return [losses[0], losses[199]];
      },
      overfitCfg,
    );

  it("overfits one token batch to a loss near 0 in 200 steps", async () => {
    const [first, last] = await overfit(1, 1, tf.tensor2d(randomInts(2 * 16, V, 2), [2, 16], "int32"));
    expect(first).toBeGreaterThan(Math.log(V) - 0.5);
    expect(last).toBeLessThan(0.05);
  });

  it("overfits one patch batch (K = 4, distinct targets) to its floor ln 4 in 200 steps", async () => {
    const [first, last] = await overfit(2, 4, distinctPatches(2, 8, 4, 3));
    expect(first).toBeGreaterThan(Math.log(V) - 0.5);
    expect(last).toBeGreaterThan(Math.log(4) - 1e-4);
    expect(last).toBeLessThan(Math.log(4) + 0.05);
  });

  it("with K = 1 makes the same updates as a direct token-loss step with clipping and AdamW", async () => {
    const ids = tf.tensor2d(randomInts(2 * 12, V, 4), [2, 12], "int32");
    const maxGradNorm = 0.05; // small enough that clipping is active
    const run = (direct: boolean) =>
      withModel(5, (params, optimizer) => {
        const step = Step.makeTrainStep({ cfg, K: 1, params, optimizer, maxGradNorm });
        const norms: Array<number> = [];
        for (let i = 0; i < 3; i++) {
          if (direct) {
            tf.tidy(() => {
              const { value, grads } = Gradients.valueAndGrads(params, () => {
                const logits = Model.forward(params, cfg, ids);
                return Loss.tokenCrossEntropy(tf.slice(logits, [0, 0, 0], [2, 11, V]), tf.slice(ids, [0, 1], [2, 11]));
              });
              // torch clip_grad_norm_ as scaled copies of the gradients, then a plain AdamW step
              const norm = Gradients.globalNorm(grads);
              const coef = Gradients.clipCoefficient(norm, maxGradNorm);
              optimizer.apply(Object.fromEntries(Object.entries(grads).map(([name, g]) => [name, tf.mul(g, coef)])), 3e-3);
              norms.push(norm.dataSync()[0], value.dataSync()[0]);
            });
          } else {
            const r = step(ids, 3e-3);
            norms.push(read(r.gradNorm), read(r.loss));
          }
        }
        return { norms, after: snapshot(params) };
      });
    const ours = await run(false);
    const direct = await run(true);
    ids.dispose();
    expect(ours.norms[0]).toBeGreaterThan(maxGradNorm * 10);
    // The first step is bit for bit the same; afterwards the weights differ in the last bit (below).
    expect(ours.norms.slice(0, 2)).toEqual(direct.norms.slice(0, 2));
    expectClose(ours.norms, direct.norms, { atol: 1e-5, label: "norms and losses" });
    // Clipping by a scale inside AdamW and by scaled copies round differently in the last bit.
    for (const name of Object.keys(ours.after)) {
      const a = ours.after[name];
      const b = direct.after[name];
      const diff = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
      expect([name, diff < 1e-6]).toEqual([name, true]);
    }
  });

  it.each([0.05, Infinity])("accumulates micro-batches: two halves make the update of the whole batch (clip at %s)", async (maxGradNorm) => {
    const whole = distinctPatches(4, 4, 2, 13);
    const halves = [tf.slice(whole, [0, 0], [2, 8]), tf.slice(whole, [2, 0], [2, 8])] as Array<tf.Tensor2D>;
    const run = (batch: tf.Tensor2D | Array<tf.Tensor2D>) =>
      withModel(12, (params, optimizer) => {
        const r = Step.makeTrainStep({ cfg, K: 2, params, optimizer, maxGradNorm })(batch, 1e-2);
        return { loss: read(r.loss), norm: read(r.gradNorm), after: snapshot(params) };
      });
    const one = await run(whole);
    const two = await run(halves);
    tf.dispose([whole, ...halves]);
    expectClose(two.loss, one.loss, { atol: 1e-6, label: "loss" });
    expectClose(two.norm, one.norm, { rtol: 1e-5, label: "grad norm" });
    if (maxGradNorm < Infinity) expect(one.norm).toBeGreaterThan(maxGradNorm);
    for (const name of Object.keys(one.after)) expectClose(two.after[name], one.after[name], { atol: 1e-5, label: name });
  });

  it("trains a strategy's extra parameters and refuses them in token mode", async () => {
    await withModel(6, (params) => {
      const extraSpecs = PatchStrategy.concatLinear.parameters(cfg.dModel, 2);
      const extra = Model.materialize(extraSpecs, 1);
      const optimizer = AdamW.make({ ...params, ...extra }, [...table, ...extraSpecs]);
      const ids = distinctPatches(1, 4, 2, 7);
      const step = Step.makeTrainStep({ cfg, K: 2, strategy: PatchStrategy.concatLinear, params, strategyParams: extra, optimizer });
      const r = step(ids, 1e-3);
      tf.dispose([r.loss, r.gradNorm, ids]);
      const w = extra["patch.concat-linear.weight"];
      expect(read(tf.max(tf.abs(w)))).toBeGreaterThan(5e-4);
      expect(() => Step.makeTrainStep({ cfg, K: 1, params, strategyParams: extra, optimizer })).toThrow(/K = 1 runs no patch strategy/);
      optimizer.dispose();
      Model.dispose(extra);
    });
  });

  it("skips the update on a non-finite loss when asked, and only then", async () => {
    await withModel(8, (params, optimizer) => {
      const ids = tf.tensor2d(randomInts(12, V, 9), [1, 12], "int32");
      const norm = params[ParameterTable.Names.finalNorm];
      norm.assign(tf.fill(norm.shape, NaN));
      const before = snapshot(params);
      const guarded = Step.makeTrainStep({ cfg, K: 1, params, optimizer, skipNonFinite: true })(ids, 1e-3);
      expect(guarded.skipped).toBe(true);
      expect(Number.isNaN(read(guarded.loss))).toBe(true);
      guarded.gradNorm.dispose();
      expect(snapshot(params)).toEqual(before);
      expect(optimizer.step).toBe(0);
      const unguarded = Step.makeTrainStep({ cfg, K: 1, params, optimizer })(ids, 1e-3);
      expect(unguarded.skipped).toBe(false);
      tf.dispose([unguarded.loss, unguarded.gradNorm, ids]);
      expect(optimizer.step).toBe(1);
      expect(Number.isNaN(params[ParameterTable.Names.embedTokens].dataSync()[0])).toBe(true);
    });
  });

  it("keeps the tensor count stable over repeated steps, with and without micro-batches", async () => {
    await withModel(10, async (params, optimizer) => {
      const ids = distinctPatches(2, 4, 2, 11);
      const step = Step.makeTrainStep({ cfg, K: 2, params, optimizer, skipNonFinite: true });
      const once = () => {
        for (const batch of [ids, [ids, ids]]) {
          const r = step(batch, 1e-3);
          tf.dispose([r.loss, r.gradNorm]);
        }
      };
      once();
      await expectNoTensorLeak(() => {
        for (let i = 0; i < 3; i++) once();
      });
      ids.dispose();
    });
  });
});
