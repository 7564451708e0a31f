// The suite runs on cpu and wasm (jest.config.cjs registers wasm).
import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import { Config } from "@patchlm/core";
import { Loss } from "@patchlm/losses";
import { Model, ParameterTable } from "@patchlm/model";
import { spreadWeights } from "@patchlm/model/testing";
import { expectClose, expectNoTensorLeak, randomInts, useBackend } from "@patchlm/testing";
import { Objective, PatchStrategy } from "../src";

const cfg = Either.getOrThrow(
  Config.decodeConfig(Config.ModelConfig)("test", { vocabSize: 37, dModel: 32, nLayers: 2, nHeads: 4, ffnHidden: 48, contextLength: 16 }),
);
const V = cfg.vocabSize;

const lse64 = (row: ArrayLike<number>): number => {
  const m = Math.max(...Array.from(row));
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return m + Math.log(s);
};

describe.each(["cpu", "wasm"])("Objective on %s", (backend) => {
  let params: Model.Weights;
  beforeAll(async () => {
    await useBackend(backend);
    params = spreadWeights(cfg, 3);
  });
  afterAll(() => Model.dispose(params));

  const grads = (f: () => tf.Scalar) => {
    const { value, grads: g } = tf.variableGrads(f, Object.values(params));
    const out = {
      value: value.dataSync()[0],
      // variableGrads keys by the tf.Variable's own name; map back to parameter-table names.
      grads: Object.fromEntries(Object.entries(params).map(([name, v]) => [name, Array.from(g[v.name].dataSync())])),
    };
    tf.dispose([value, ...Object.values(g)]);
    return out;
  };

  it("with K = 1 is the ordinary next-token loss, logits[:, :-1] against ids[:, 1:]: same value, same gradients", () => {
    const [B, T] = [2, 9];
    const ids = tf.tensor2d(randomInts(B * T, V, 5), [B, T], "int32");
    const ours = grads(() => Objective.lossFor({ cfg, K: 1 }, params, ids));
    const direct = grads(() =>
      tf.tidy(() => {
        const logits = Model.forward(params, cfg, ids); // (B,T,V)
        return Loss.tokenCrossEntropy(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), tf.slice(ids, [0, 1], [B, T - 1]));
      }),
    );
    expect(ours.value).toBe(direct.value);
    for (const name of Object.keys(params)) expect([name, ours.grads[name]]).toEqual([name, direct.grads[name]]);
    ids.dispose();
  });

  it.each([
    [2, 2, 4],
    [4, 1, 4],
    [3, 2, 3],
  ])("with K = %i scores the output at patch j against patch j+1's tokens (B=%i, T=%i), as a float64 reference does", (K, B, T) => {
    const ids = randomInts(B * K * T, V, 10 + K);
    const E = params[ParameterTable.Names.embedTokens].dataSync();
    const C = cfg.dModel;
    // Patch inputs computed on the host: the plain mean of each patch's K embedding rows.
    const x = new Float32Array(B * T * C);
    for (let p = 0; p < B * T; p++)
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += E[ids[p * K + k] * C + c]; // patch p is ids[p·K .. p·K+K)
        x[p * C + c] = s / K;
      }
    const [ours, logits] = tf.tidy(() => {
      const loss = Objective.lossFor({ cfg, K }, params, tf.tensor2d(ids, [B, K * T], "int32"));
      const all = Model.logits(params, cfg, Model.hidden(params, cfg, tf.tensor3d(x, [B, T, C])));
      return [loss.dataSync()[0], all.dataSync()];
    });
    // Host bag loss: rows (b, j < T−1), K targets each, mean over all (row, slot) pairs.
    let total = 0;
    for (let b = 0; b < B; b++)
      for (let j = 0; j < T - 1; j++) {
        const row = logits.subarray((b * T + j) * V, (b * T + j + 1) * V);
        const l = lse64(row);
        for (let k = 0; k < K; k++) total += l - row[ids[(b * T + j + 1) * K + k]]; // patch j+1's tokens
      }
    expectClose(ours, total / (B * (T - 1) * K), { atol: 2e-6 });
  });

  it("trains a strategy's extra parameters with the model; concat-linear starts at the mean's loss", () => {
    const [B, K, T] = [2, 2, 4];
    const ids = tf.tensor2d(randomInts(B * K * T, V, 21), [B, K * T], "int32");
    const extra = Model.materialize(PatchStrategy.concatLinear.parameters(cfg.dModel, K), 1);
    const spec = { cfg, K, strategy: PatchStrategy.concatLinear };
    const meanLoss = tf.tidy(() => Objective.lossFor({ cfg, K }, params, ids).dataSync()[0]);
    const { value, grads: g } = tf.variableGrads(() => Objective.lossFor(spec, params, ids, extra), [
      ...Object.values(params),
      ...Object.values(extra),
    ]);
    expect(value.dataSync()[0]).toBe(meanLoss);
    const w = g[extra["patch.concat-linear.weight"].name];
    expect(w.shape).toEqual([2 * cfg.dModel, cfg.dModel]);
    expect(tf.tidy(() => tf.max(tf.abs(w)).dataSync()[0])).toBeGreaterThan(1e-4);
    tf.dispose([value, ...Object.values(g), ids]);
    Model.dispose(extra);
  });

  it("adds the z-loss of the scored positions when asked", () => {
    const [B, K, T] = [1, 2, 5];
    const ids = tf.tensor2d(randomInts(B * K * T, V, 31), [B, K * T], "int32");
    const [plain, withZ, z] = tf.tidy(() => {
      const x = tf.mean(tf.reshape(Model.embed(params, cfg, ids), [B, T, K, cfg.dModel]), 2) as tf.Tensor3D;
      const scored = tf.slice(Model.logits(params, cfg, Model.hidden(params, cfg, x)), [0, 0, 0], [B, T - 1, V]);
      return [
        Objective.lossFor({ cfg, K }, params, ids).dataSync()[0],
        Objective.lossFor({ cfg, K, zLoss: 1e-2 }, params, ids).dataSync()[0],
        Loss.zLoss(scored, 1e-2).dataSync()[0],
      ];
    });
    expectClose(withZ, plain + z, { atol: 1e-6 });
    expect(z).toBeGreaterThan(1e-3);
    ids.dispose();
  });

  it("rejects a length that K does not divide, and sequences of a single patch", () => {
    tf.tidy(() => {
      expect(() => Objective.lossFor({ cfg, K: 4 }, params, tf.zeros([1, 10], "int32") as tf.Tensor2D)).toThrow(
        /length 10 is not a multiple of the patch size K = 4/,
      );
      expect(() => Objective.lossFor({ cfg, K: 4 }, params, tf.zeros([1, 4], "int32") as tf.Tensor2D)).toThrow(/at least 2/);
    });
  });

  it("leaks no tensor over repeated forward and backward passes", async () => {
    const ids = tf.tensor2d(randomInts(2 * 8, V, 41), [2, 8], "int32");
    await expectNoTensorLeak(() => {
      for (const K of [1, 2, 4]) {
        const { value, grads: g } = tf.variableGrads(() => Objective.lossFor({ cfg, K }, params, ids), Object.values(params));
        tf.dispose([value, ...Object.values(g)]);
      }
    });
    ids.dispose();
  });
});
