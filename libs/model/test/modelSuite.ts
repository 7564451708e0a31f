/**
 * The model's numerical tests, run once per backend (model.cpu.test.ts, model.wasm.test.ts).
 * Every tolerance is explicit and every comparison logs its max difference.
 */
import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import { Config } from "@patchlm/core";
import { expectClose, expectNoTensorLeak, randomFloats, randomInts } from "@patchlm/testing";
import { Model, ParameterTable } from "../src";
import { spreadWeights } from "../src/testing";
import * as Rope from "../src/internal/Rope";
import { embedRef, forwardRef, hiddenRef, logitsRef, meanCrossEntropyRef, ropeRef, type RefParams } from "./reference";

const makeConfig = (overrides: Partial<Config.ModelConfigInput>): Config.ModelConfig =>
  Either.getOrThrow(
    Config.decodeConfig(Config.ModelConfig)("test", {
      vocabSize: 37,
      dModel: 32,
      nLayers: 2,
      nHeads: 4,
      ffnHidden: 48,
      contextLength: 16,
      ...overrides,
    }),
  );

const variants: ReadonlyArray<readonly [string, Config.ModelConfig]> = [
  ["MHA untied", makeConfig({})],
  ["GQA untied", makeConfig({ nKvHeads: 2 })],
  ["MHA tied", makeConfig({ tieEmbeddings: true })],
  ["GQA tied (1 kv head)", makeConfig({ nKvHeads: 1, tieEmbeddings: true })],
];

const toRef = (params: Model.Weights): RefParams =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Float64Array.from(v.dataSync())]));

const log = (label: string, report: { maxAbsDiff: number }) =>
  console.log(`${tf.getBackend()} ${label}: max |diff| ${report.maxAbsDiff.toExponential(2)}`);

const idsTensor = (ids: Int32Array, B: number, T: number) => tf.tensor2d(ids, [B, T], "int32");

/** Mean next-token CE, the objective for gradient checks. */
const meanCrossEntropy = (logits: tf.Tensor3D, targets: Int32Array): tf.Scalar =>
  tf.tidy(() => {
    const [B, T, V] = logits.shape;
    const logp = tf.logSoftmax(tf.reshape(logits, [B * T, V]));
    return tf.neg(tf.div(tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(targets, "int32"), V))), B * T)) as tf.Scalar;
  });

/** Gradients of `loss` keyed by parameter name. */
const gradsByName = (params: Model.Weights, loss: () => tf.Scalar): Record<string, tf.Tensor> => {
  const byVarName = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));
  const { value, grads } = tf.variableGrads(loss, Object.values(params));
  value.dispose();
  return Object.fromEntries(Object.entries(grads).map(([k, g]) => [byVarName.get(k)!, g]));
};

export const modelSuite = (backend: string): void => {
  describe(`Model on ${backend}`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
      expect(tf.getBackend()).toBe(backend);
    });

    describe("forward", () => {
      it.each(variants)("matches the float64 reference forward (%s)", (label, cfg) => {
        const B = 2;
        const T = 7;
        const params = spreadWeights(cfg, 1);
        const ids = randomInts(B * T, cfg.vocabSize, 2);
        const got = tf.tidy(() => Model.forward(params, cfg, idsTensor(ids, B, T)).dataSync());
        const want = forwardRef(toRef(params), cfg, ids, B, T);
        log(`forward ${label}`, expectClose(got, want, { atol: 1e-5, rtol: 1e-5, label }));
        Model.dispose(params);
      });

      it.each(variants.slice(0, 2))("runs patch inputs (B,T,C) at positions offset.. like the reference (%s)", (label, cfg) => {
        const B = 2;
        const T = 5;
        const params = spreadWeights(cfg, 3);
        const x = randomFloats(B * T * cfg.dModel, 4);
        const ref = toRef(params);
        for (const offset of [0, 9]) {
          const got = tf.tidy(() => {
            const h = Model.hidden(params, cfg, tf.tensor3d(x, [B, T, cfg.dModel]), { positionOffset: offset });
            return Model.logits(params, cfg, h).dataSync();
          });
          const want = logitsRef(ref, cfg, hiddenRef(ref, cfg, Float64Array.from(x), B, T, offset));
          log(`patch input ${label} offset ${offset}`, expectClose(got, want, { atol: 1e-5, rtol: 1e-5 }));
        }
        Model.dispose(params);
      });

      it("embeds ids as rows of model.embed_tokens.weight", () => {
        const cfg = variants[0][1];
        const params = spreadWeights(cfg, 5);
        const ids = Int32Array.from([0, 36, 5, 5]);
        const got = tf.tidy(() => Model.embed(params, cfg, idsTensor(ids, 2, 2)).dataSync());
        expectClose(got, embedRef(toRef(params), cfg, ids), { atol: 0 });
        Model.dispose(params);
      });

      it("is causal: changing token t leaves logits before t unchanged and changes those at t", () => {
        const cfg = variants[1][1];
        const params = spreadWeights(cfg, 6);
        const T = 8;
        const t = 5;
        const ids = randomInts(T, cfg.vocabSize, 7);
        const changed = Int32Array.from(ids);
        changed[t] = (ids[t] + 1) % cfg.vocabSize;
        const [a, b] = [ids, changed].map((x) => tf.tidy(() => Model.forward(params, cfg, idsTensor(x, 1, T)).dataSync()));
        const V = cfg.vocabSize;
        log("causality: logits before t", expectClose(a.subarray(0, t * V), b.subarray(0, t * V), { atol: 0 }));
        let diffAtT = 0;
        for (let i = t * V; i < (t + 1) * V; i++) diffAtT = Math.max(diffAtT, Math.abs(a[i] - b[i]));
        expect(diffAtT).toBeGreaterThan(1e-3);
        Model.dispose(params);
      });

      it("does not leak tensors", async () => {
        const cfg = variants[1][1];
        const params = spreadWeights(cfg, 8);
        const ids = idsTensor(randomInts(12, cfg.vocabSize, 9), 2, 6);
        await expectNoTensorLeak(() => {
          for (let i = 0; i < 3; i++) Model.forward(params, cfg, ids).dispose();
        });
        ids.dispose();
        Model.dispose(params);
      });
    });

    describe("RoPE", () => {
      const D = 8;
      const base = 10000;
      const apply = (x: Float32Array, positions: number, offset: number, T: number, heads: number) =>
        tf.tidy(() => {
          return Rope.apply(tf.tensor4d(x, [1, T, heads, D]), Rope.tensors(D, base, positions, offset, T)).dataSync();
        });

      it("is the identity at position 0", () => {
        const x = randomFloats(2 * D, 10);
        expectClose(apply(x, 16, 0, 1, 2), x, { atol: 0 });
      });

      it("matches Hugging Face rotate_half at every position", () => {
        const T = 16;
        const x = randomFloats(T * D, 11);
        const got = apply(x, T, 0, T, 1);
        const want = new Float64Array(T * D);
        for (let t = 0; t < T; t++) want.set(ropeRef(x.subarray(t * D, (t + 1) * D), t, base), t * D);
        log("rope vs rotate_half", expectClose(got, want, { atol: 2e-6 }));
      });

      it("preserves norms and makes q·k depend only on the position difference", () => {
        const q = randomFloats(D, 12);
        const k = randomFloats(D, 13);
        const at = (x: Float32Array, p: number) => apply(x, 32, p, 1, 1);
        const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, ai, i) => s + ai * b[i], 0);
        expectClose(dot(at(q, 7), at(q, 7)), dot(q, q), { atol: 1e-5 });
        const reference = dot(at(q, 9), at(k, 4));
        for (const shift of [-4, 3, 17]) expectClose(dot(at(q, 9 + shift), at(k, 4 + shift)), reference, { atol: 1e-5 });
        expect(Math.abs(dot(at(q, 9), at(k, 5)) - reference)).toBeGreaterThan(1e-3);
      });
    });

    describe("gradients", () => {
      it.each([variants[1], variants[3]])("match central differences of the float64 reference (%s)", (label, cfg) => {
        const B = 2;
        const T = 6;
        const params = spreadWeights(cfg, 14);
        // ids repeat (vocab 37, 12 draws with duplicates forced) so the embedding scatter-add sums rows
        const ids = randomInts(B * T, 12, 15);
        ids[3] = ids[0];
        const targets = randomInts(B * T, cfg.vocabSize, 16);
        const grads = gradsByName(params, () => meanCrossEntropy(Model.forward(params, cfg, idsTensor(ids, B, T)), targets));
        const ref = toRef(params) as Record<string, Float64Array>;
        const loss = () => meanCrossEntropyRef(forwardRef(ref, cfg, ids, B, T), targets, cfg.vocabSize);
        const h = 1e-6;
        let worst = 0;
        for (const spec of ParameterTable.make(cfg)) {
          const g = grads[spec.name].dataSync();
          const w = ref[spec.name];
          const picks = randomInts(3, w.length, spec.name.length);
          if (spec.name === "model.embed_tokens.weight") picks[0] = ids[0] * cfg.dModel + 1; // a row used twice
          for (const i of picks) {
            const saved = w[i];
            w[i] = saved + h;
            const up = loss();
            w[i] = saved - h;
            const down = loss();
            w[i] = saved;
            const fd = (up - down) / (2 * h);
            expectClose(g[i], fd, { atol: 1e-5, rtol: 2e-3, label: `${label} ${spec.name}[${i}]` });
            worst = Math.max(worst, Math.abs(g[i] - fd));
          }
        }
        console.log(`${tf.getBackend()} gradients ${label}: max |tfjs - finite difference| ${worst.toExponential(2)}`);
        // rows of ids that never occur get exactly zero embedding gradient
        const unused = cfg.vocabSize - 1;
        const eg = grads["model.embed_tokens.weight"].dataSync();
        if (!cfg.tieEmbeddings) expect(Array.from(eg.subarray(unused * cfg.dModel, (unused + 1) * cfg.dModel)).every((v) => v === 0)).toBe(true);
        Object.values(grads).forEach((t) => t.dispose());
        Model.dispose(params);
      });

      it("sum duplicate ids in the embedding gradient", () => {
        const cfg = variants[0][1];
        const params = Model.init(cfg, 17);
        const ids = Int32Array.from([3, 3, 3, 8]);
        const grads = gradsByName(params, () => tf.sum(Model.embed(params, cfg, idsTensor(ids, 2, 2))) as tf.Scalar);
        const g = grads["model.embed_tokens.weight"].dataSync();
        const want = new Float32Array(cfg.vocabSize * cfg.dModel);
        want.fill(3, 3 * cfg.dModel, 4 * cfg.dModel);
        want.fill(1, 8 * cfg.dModel, 9 * cfg.dModel);
        expectClose(g, want, { atol: 0 });
        Object.values(grads).forEach((t) => t.dispose());
        Model.dispose(params);
      });

      it("leave no tensors behind across repeated steps", async () => {
        const cfg = variants[1][1];
        const params = spreadWeights(cfg, 18);
        const ids = randomInts(12, cfg.vocabSize, 19);
        const targets = randomInts(12, cfg.vocabSize, 20);
        const run = () => {
          const grads = gradsByName(params, () => meanCrossEntropy(Model.forward(params, cfg, idsTensor(ids, 2, 6)), targets));
          Object.values(grads).forEach((t) => t.dispose());
        };
        run(); // first call may allocate backend-side caches
        await expectNoTensorLeak(() => {
          for (let i = 0; i < 3; i++) run();
        });
        Model.dispose(params);
      });
    });

    describe("KV cache", () => {
      it.each(variants)("token-by-token and chunked decoding match the full forward (%s)", (label, cfg) => {
        const B = 2;
        const T = 9;
        const params = spreadWeights(cfg, 21);
        const ids = randomInts(B * T, cfg.vocabSize, 22);
        const full = tf.tidy(() => Model.forward(params, cfg, idsTensor(ids, B, T)).dataSync());
        const V = cfg.vocabSize;
        for (const chunks of [[1, 1, 1, 1, 1, 1, 1, 1, 1], [4, 1, 3, 1]]) {
          const cache = Model.makeCache(cfg, B, 12);
          const got = new Float32Array(B * T * V);
          let start = 0;
          for (const n of chunks) {
            const slice = new Int32Array(B * n);
            for (let b = 0; b < B; b++) slice.set(ids.subarray(b * T + start, b * T + start + n), b * n);
            const out = tf.tidy(() => Model.step(params, cfg, idsTensor(slice, B, n), cache).dataSync());
            for (let b = 0; b < B; b++) got.set(out.subarray(b * n * V, (b + 1) * n * V), (b * T + start) * V);
            start += n;
          }
          expect(cache.length).toBe(T);
          log(`kv cache ${label} chunks ${chunks.join(",")}`, expectClose(got, full, { atol: 1e-5, rtol: 1e-5 }));
          cache.dispose();
        }
        Model.dispose(params);
      });

      it("refuses to grow past its capacity", () => {
        const cfg = variants[0][1];
        const params = Model.init(cfg, 23);
        const cache = Model.makeCache(cfg, 1, 3);
        const ids = idsTensor(Int32Array.from([1, 2, 3]), 1, 3);
        Model.step(params, cfg, ids, cache).dispose();
        const one = idsTensor(Int32Array.from([4]), 1, 1);
        expect(() => Model.step(params, cfg, one, cache)).toThrow(/exceed cache capacity 3/);
        tf.dispose([ids, one]);
        cache.dispose();
        Model.dispose(params);
      });

      it("keeps only the cache's own tensors while decoding and frees them on dispose", async () => {
        const cfg = variants[1][1];
        const params = spreadWeights(cfg, 24);
        await expectNoTensorLeak(() => {
          const cache = Model.makeCache(cfg, 2);
          const before = tf.memory().numTensors;
          for (let i = 0; i < 5; i++) {
            const ids = idsTensor(randomInts(2, cfg.vocabSize, 25 + i), 2, 1);
            Model.step(params, cfg, ids, cache).dispose();
            ids.dispose();
            // one key and one value tensor per layer
            expect(tf.memory().numTensors).toBe(before + 2 * cfg.nLayers);
          }
          cache.dispose();
        });
        Model.dispose(params);
      });
    });
  });
};
