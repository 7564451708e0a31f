import * as tf from "@tensorflow/tfjs";
import { expectClose, expectNoTensorLeak, randomFloats, useBackend } from "@patchlm/testing";
import { PatchStrategy } from "../src";

// Hand-made token embeddings (B=1, T=2, K=2, C=3).
const X = [
  [
    [[1, 2, 3], [3, 6, 9]],
    [[0, -1, 4], [2, 1, 0]],
  ],
];
const x4 = () => tf.tensor4d(X);
const aggregate = (s: PatchStrategy.PatchStrategy, params: PatchStrategy.Weights = {}): Array<number> =>
  tf.tidy(() => Array.from(s.aggregate(x4(), params).dataSync()));
const flat = (nested: ReadonlyArray<unknown>): Array<number> => nested.flat(Infinity) as Array<number>;

describe.each(["cpu", "wasm"])("PatchStrategy on %s", (backend) => {
  beforeAll(() => useBackend(backend));

  describe("mean", () => {
    it("is the plain mean of the K embeddings, unscaled, without parameters", () => {
      expect(PatchStrategy.mean.parameters(3, 2)).toEqual([]);
      expectClose(aggregate(PatchStrategy.mean), flat([[[2, 4, 6], [1, 0, 2]]]));
    });

    it("gives the TV1/TV9 patch inputs [1,0], [0.5,1], [0.5,0.5]", () => {
      const E = [[1, 0], [0, 1], [1, 1], [0, 0]];
      const ids = [0, 0, 1, 2, 2, 3];
      const y = tf.tidy(() => PatchStrategy.mean.aggregate(tf.tensor4d(flat(ids.map((i) => E[i])), [1, 3, 2, 2]), {}).dataSync());
      expectClose(y, flat([[[1, 0], [0.5, 1], [0.5, 0.5]]]));
    });

    it("is the identity for K = 1, bit for bit", () => {
      const x = randomFloats(2 * 3 * 1 * 4, 1);
      const y = tf.tidy(() => PatchStrategy.mean.aggregate(tf.tensor4d(x, [2, 3, 1, 4]), {}).dataSync());
      expect(Array.from(y)).toEqual(Array.from(x));
    });

    it("sends each token 1/K of the patch's gradient", () => {
      const dy = tf.tensor3d([[[1, 2, 3], [4, 5, 6]]]);
      const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(PatchStrategy.mean.aggregate(x as tf.Tensor4D, {}), dy)))(x4()).dataSync());
      dy.dispose();
      expectClose(g, flat([[[[0.5, 1, 1.5], [0.5, 1, 1.5]], [[2, 2.5, 3], [2, 2.5, 3]]]]));
    });

    it("has tf.mean's value and gradient bit for bit (its own gradient only avoids the ones tensor)", () => {
      const [B, T, K, C] = [2, 3, 4, 5];
      const x = tf.tensor4d(randomFloats(B * T * K * C, 7), [B, T, K, C]);
      const dy = tf.tensor3d(randomFloats(B * T * C, 8), [B, T, C]);
      const through = (f: (x: tf.Tensor4D) => tf.Tensor) =>
        tf.tidy(() => [f(x).dataSync(), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(f(v as tf.Tensor4D), dy)))(x).dataSync()].map((a) => Array.from(a)));
      const [value, grad] = through((v) => PatchStrategy.mean.aggregate(v, {}));
      const [refValue, refGrad] = through((v) => tf.mean(v, 2));
      tf.dispose([x, dy]);
      expect(value).toEqual(refValue);
      expect(grad).toEqual(refGrad);
      expect(new Set(grad).size).toBeGreaterThan(1);
    });
  });

  describe("first and last", () => {
    it("pick one token of each patch", () => {
      expectClose(aggregate(PatchStrategy.first), flat([[[1, 2, 3], [0, -1, 4]]]));
      expectClose(aggregate(PatchStrategy.last), flat([[[3, 6, 9], [2, 1, 0]]]));
      expect(PatchStrategy.last.parameters(3, 2)).toEqual([]);
    });
  });

  describe("weighted-mean", () => {
    const spec = PatchStrategy.weightedMean.parameters(3, 2)[0];

    it("declares K softmax logits named patch.weighted-mean.logits, zero-initialised and not decayed", () => {
      expect(PatchStrategy.weightedMean.parameters(3, 2)).toEqual([
        { name: "patch.weighted-mean.logits", shape: [2], init: { kind: "zeros" }, decay: false },
      ]);
      expect(PatchStrategy.isStrategyParam(spec.name)).toBe(true);
      expect(PatchStrategy.isStrategyParam("model.embed_tokens.weight")).toBe(false);
    });

    it("starts as the plain mean and weights offsets by softmax(logits)", () => {
      expectClose(aggregate(PatchStrategy.weightedMean, { [spec.name]: tf.zeros([2]) }), flat([[[2, 4, 6], [1, 0, 2]]]));
      // softmax([0, ln 3]) = [0.25, 0.75]
      const weighted = aggregate(PatchStrategy.weightedMean, { [spec.name]: tf.tensor1d([0, Math.log(3)]) });
      expectClose(weighted, flat([[[2.5, 5, 7.5], [1.5, 0.5, 1]]]), { atol: 1e-6 });
    });

    it("back-propagates to its logits like finite differences", () => {
      const dy = [[[1, -1, 2], [0.5, 0, -3]]];
      // f(a) = Σ dy · Σ_k softmax(a)_k x_k, in float64.
      const f = (a: ReadonlyArray<number>): number => {
        const e = a.map(Math.exp);
        const w = e.map((v) => v / (e[0] + e[1]));
        let s = 0;
        for (let t = 0; t < 2; t++) for (let c = 0; c < 3; c++) s += dy[0][t][c] * (w[0] * X[0][t][0][c] + w[1] * X[0][t][1][c]);
        return s;
      };
      const a = [0.3, -0.2];
      const h = 1e-6;
      const fd = a.map((_, i) => (f(a.map((v, j) => (j === i ? v + h : v))) - f(a.map((v, j) => (j === i ? v - h : v)))) / (2 * h));
      const g = tf.tidy(() => {
        const dyT = tf.tensor3d(dy);
        return tf.grad((logits: tf.Tensor) => tf.sum(tf.mul(PatchStrategy.weightedMean.aggregate(x4(), { [spec.name]: logits }), dyT)))(tf.tensor1d(a)).dataSync();
      });
      expectClose(g, fd, { atol: 1e-5 });
    });
  });

  describe("concat-linear", () => {
    const spec = PatchStrategy.concatLinear.parameters(3, 2)[0];

    it("declares a (K·C, C) projection, zero-initialised and decayed", () => {
      expect(spec).toEqual({ name: "patch.concat-linear.weight", shape: [6, 3], init: { kind: "zeros" }, decay: true });
    });

    it("starts exactly at the plain mean, then adds [x_0 ‖ x_1] · W", () => {
      expect(aggregate(PatchStrategy.concatLinear, { [spec.name]: tf.zeros([6, 3]) })).toEqual(aggregate(PatchStrategy.mean));
      // W picks channel 0 of the first token into output 0 and channel 2 of the second token into output 2.
      const W = tf.tensor2d([[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]);
      expectClose(aggregate(PatchStrategy.concatLinear, { [spec.name]: W }), flat([[[2 + 1, 4, 6 + 9], [1 + 0, 0, 2 + 0]]]));
    });

    it("back-propagates concatᵀ·dy to its weight", () => {
      const dy = [[[1, 0, 2], [0, 1, 0]]];
      const g = tf.tidy(() => {
        const dyT = tf.tensor3d(dy);
        return tf.grad((w: tf.Tensor) => tf.sum(tf.mul(PatchStrategy.concatLinear.aggregate(x4(), { [spec.name]: w }), dyT)))(tf.zeros([6, 3])).dataSync();
      });
      const concat = X[0].map((patch) => patch.flat()); // (T, K·C)
      const expected = Array.from({ length: 6 }, (_, i) => [0, 1, 2].map((c) => concat[0][i] * dy[0][0][c] + concat[1][i] * dy[0][1][c]));
      expectClose(g, flat(expected));
    });

    it("names a missing or misshapen parameter", () => {
      tf.tidy(() => {
        expect(() => PatchStrategy.concatLinear.aggregate(x4(), {})).toThrow(/needs parameter patch\.concat-linear\.weight/);
        expect(() => PatchStrategy.concatLinear.aggregate(x4(), { [spec.name]: tf.zeros([3, 3]) })).toThrow(/shape \[3,3\], expected \[6,3\]/);
      });
    });
  });

  it("every built-in rejects input that is not (B,T,K,C)", () => {
    tf.tidy(() => {
      for (const s of PatchStrategy.builtins) expect(() => s.aggregate(tf.zeros([2, 3, 4]) as unknown as tf.Tensor4D, {})).toThrow(/\(B,T,K,C\)/);
    });
  });

  it("every built-in leaks no tensor over repeated forward and backward passes", async () => {
    const x = tf.tensor4d(randomFloats(2 * 3 * 4 * 5, 7), [2, 3, 4, 5]);
    const params = Object.fromEntries(
      PatchStrategy.builtins.flatMap((s) => s.parameters(5, 4)).map((p) => [p.name, tf.randomNormal(p.shape as Array<number>, 0, 0.1, "float32", 1)]),
    );
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 2; i++) {
        for (const s of PatchStrategy.builtins) {
          const y = s.aggregate(x, params);
          expect(y.shape).toEqual([2, 3, 5]);
          const grads = tf.grads((input: tf.Tensor) => tf.sum(tf.square(s.aggregate(input as tf.Tensor4D, params))))([x]);
          tf.dispose([y, ...grads]);
        }
      }
    });
    tf.dispose([x, ...Object.values(params)]);
  });
});
