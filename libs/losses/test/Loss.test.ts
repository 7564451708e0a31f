import * as tf from "@tensorflow/tfjs";
import { expectClose, expectNoTensorLeak, randomFloats, randomInts, useBackend } from "@patchlm/testing";
import { Loss } from "../src";

// float64 plain-TypeScript references: the test vectors of docs/method.md §8 were checked in
// float64, and finite differences in float64 are accurate to ~1e-10, so the float32 custom
// gradient can be held to 1e-6.
type Matrix = Array<Array<number>>;

const lse64 = (row: ReadonlyArray<number>): number => {
  const m = Math.max(...row);
  return m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
};

/** The official code's loss: per-slot means over valid rows, then the mean over slots ("per-slot"), or pooled. */
const naiveBag = (z: Matrix, t: Matrix, mode: Loss.IgnoreReduction = "per-slot", ignore = -100): number => {
  const K = t[0].length;
  const slotSum = new Array<number>(K).fill(0);
  const slotCount = new Array<number>(K).fill(0);
  z.forEach((row, r) => {
    const l = lse64(row);
    t[r].forEach((target, k) => {
      if (target === ignore) return;
      slotSum[k] += l - row[target];
      slotCount[k] += 1;
    });
  });
  if (mode === "pooled") {
    const n = slotCount.reduce((a, b) => a + b, 0);
    return n === 0 ? 0 : slotSum.reduce((a, b) => a + b, 0) / n;
  }
  const used = slotCount.map((n, k) => [n, k]).filter(([n]) => n > 0);
  return used.length === 0 ? 0 : used.reduce((s, [n, k]) => s + slotSum[k] / n, 0) / used.length;
};

/** Central finite differences of f at z (float64). */
const finiteDiff = (f: (z: Matrix) => number, z: Matrix, h = 1e-5): Matrix =>
  z.map((row, r) =>
    row.map((_, v) => {
      const plus = z.map((x) => x.slice());
      const minus = z.map((x) => x.slice());
      plus[r][v] += h;
      minus[r][v] -= h;
      return (f(plus) - f(minus)) / (2 * h);
    }),
  );

const toMatrix = (flat: ArrayLike<number>, rows: number, cols: number): Matrix =>
  Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => flat[r * cols + c]));

const bagValue = (z: Matrix, t: Matrix, opts?: Loss.BagOptions): number =>
  tf.tidy(() => Loss.bagCrossEntropy(tf.tensor2d(z), tf.tensor2d(t, undefined, "int32"), opts).dataSync()[0]);

const bagGrad = (z: Matrix, t: Matrix, opts?: Loss.BagOptions): Float32Array =>
  tf.tidy(() => {
    const targets = tf.tensor2d(t, undefined, "int32");
    return tf.grad((x: tf.Tensor) => Loss.bagCrossEntropy(x, targets, opts))(tf.tensor2d(z)).dataSync() as Float32Array;
  });

/** The bag loss by autodiff through an explicit (R,K,V) one-hot: the naive formula the custom gradient replaces. */
const autodiffBag = (z: tf.Tensor2D, t: tf.Tensor2D): tf.Scalar => {
  const [R, V] = z.shape;
  const K = t.shape[1];
  const logp = tf.logSoftmax(z); // (R,V)
  const hot = tf.oneHot(t, V); // (R,K,V)
  return tf.div(tf.neg(tf.sum(tf.mul(tf.expandDims(logp, 1), hot))), R * K) as tf.Scalar;
};

const ln = Math.log;
// TV5's logits: two scored rows and one unused last row.
const TV5_LOGITS: Matrix = [[ln(1), ln(2), ln(3), ln(4)], [0, 0, 0, 0], [9, 9, 9, 9]];

describe.each(["cpu", "wasm"])("Loss on %s", (backend) => {
  beforeAll(() => useBackend(backend));

  describe("bagCrossEntropy", () => {
    it("scores one row against both of its targets under one softmax (TV4)", () => {
      const z = [TV5_LOGITS[0]];
      expectClose(bagValue(z, [[3, 3]]), 0.916291, { atol: 1e-6, label: "targets (3,3)" });
      expectClose(bagValue(z, [[0, 3]]), 1.609438, { atol: 1e-6, label: "targets (0,3)" });
    });

    it("drops the last position and patch 0's targets, averaging all (row, slot) pairs (TV5)", () => {
      const value = tf.tidy(() => {
        const logits = tf.tensor3d([TV5_LOGITS]); // (B=1,T=3,V=4)
        const labels = tf.tensor2d([[7, 7, 0, 3, 1, 2]], undefined, "int32"); // (B, K·T)
        const scored = tf.slice(logits, [0, 0, 0], [1, 2, 4]); // logits[:, :-1]
        const targets = tf.reshape(tf.slice(labels, [0, 2], [1, 4]), [1, 2, 2]); // labels[:, K:]
        return Loss.bagCrossEntropy(scored, targets).dataSync()[0];
      });
      expectClose(value, 1.497866, { atol: 1e-6 });
      expectClose(naiveBag(TV5_LOGITS.slice(0, 2), [[0, 3], [1, 2]]), 1.497866, { atol: 1e-6, label: "reference" });
    });

    it("has the analytic gradient (K·p − c)/(K·R), zero on the unused row (TV6)", () => {
      const grad = tf.tidy(() => {
        const targets = tf.tensor2d([[0, 3], [1, 2]], undefined, "int32");
        const f = (z: tf.Tensor) => Loss.bagCrossEntropy(tf.slice(z, [0, 0], [2, 4]), targets);
        return tf.grad(f)(tf.tensor2d(TV5_LOGITS)).arraySync() as Matrix;
      });
      expectClose(grad, [[-0.2, 0.1, 0.15, -0.05], [0.125, -0.125, -0.125, 0.125], [0, 0, 0, 0]], { atol: 1e-7 });
      const fd = finiteDiff((z) => naiveBag(z.slice(0, 2), [[0, 3], [1, 2]]), TV5_LOGITS);
      expectClose(grad, fd, { atol: 1e-6, label: "finite differences" });
    });

    it("averages per slot with ignored targets by default, as the official code does (TV7)", () => {
      const z = TV5_LOGITS.slice(0, 2);
      const t = [[0, 0], [0, 3], [1, -100]].slice(1); // labels [0,0, 0,3, 1,-100] without patch 0
      expectClose(bagValue(z, t), 1.380365, { atol: 1e-6, label: "per-slot" });
      expectClose(bagValue(z, t, { reduction: "per-slot", ignoreIndex: -100 }), 1.380365, { atol: 1e-6 });
      expectClose(naiveBag(z, t), 1.380365, { atol: 1e-6, label: "reference per-slot" });
      expectClose(bagGrad(z, t), finiteDiff((x) => naiveBag(x, t), z), { atol: 1e-6, label: "per-slot gradient" });
    });

    it("offers the pooled mean over valid terms as an option (TV7's 1.535057)", () => {
      const z = TV5_LOGITS.slice(0, 2);
      const t = [[0, 3], [1, -100]];
      expectClose(bagValue(z, t, { reduction: "pooled" }), 1.535057, { atol: 1e-6 });
      expectClose(bagGrad(z, t, { reduction: "pooled" }), finiteDiff((x) => naiveBag(x, t, "pooled"), z), {
        atol: 1e-6,
        label: "pooled gradient",
      });
    });

    it("honours a custom ignore index", () => {
      const z = TV5_LOGITS.slice(0, 2);
      expectClose(bagValue(z, [[0, 3], [1, 2]], { ignoreIndex: 2 }), 1.380365, { atol: 1e-6 });
    });

    it("averages only the slots that have a valid target, and gives 0 with none at all", () => {
      const z = TV5_LOGITS.slice(0, 2);
      const t = [[0, -100], [3, -100]];
      expectClose(bagValue(z, t), naiveBag(z, t), { atol: 1e-6 });
      expectClose(bagValue(z, t), (ln(10) + ln(4)) / 2, { atol: 1e-6 });
      const none = [[-100, -100], [-100, -100]];
      expect(bagValue(z, none)).toBe(0);
      expect(Array.from(bagGrad(z, none))).toEqual(new Array(8).fill(0));
    });

    it("counts a duplicate target twice (TV8)", () => {
      expectClose(bagValue(TV5_LOGITS.slice(0, 2), [[3, 3], [1, 1]]), 1.151293, { atol: 1e-6 });
    });

    it("never goes below ln K for K distinct targets, reaching it when p is uniform over them (TV10)", () => {
      const uniform = [[0, -30, 0, 0, -30, 0, -30]];
      expectClose(bagValue(uniform, [[0, 2, 3, 5]]), Math.log(4), { atol: 1e-6 });
      const R = 16;
      const V = 9;
      const z = toMatrix(randomFloats(R * V, 11, -4, 4), R, V);
      const t = Array.from({ length: R }, (_, r) => [r % V, (r + 1) % V, (r + 3) % V, (r + 6) % V]);
      for (let r = 0; r < R; r++) {
        expect(bagValue([z[r]], [t[r]])).toBeGreaterThanOrEqual(Math.log(4) - 1e-6);
      }
    });

    it("matches autodiff of the naive one-hot formula, duplicates included", () => {
      const [R, V, K] = [6, 11, 3];
      const z = toMatrix(randomFloats(R * V, 1, -3, 3), R, V);
      const t = toMatrix(randomInts(R * K, 4, 2), R, K); // small range forces duplicates
      const [value, grad, refValue, refGrad] = tf.tidy(() => {
        const zt = tf.tensor2d(z);
        const tt = tf.tensor2d(t, undefined, "int32");
        const custom = tf.valueAndGrad((x: tf.Tensor) => Loss.bagCrossEntropy(x, tt))(zt);
        const naive = tf.valueAndGrad((x: tf.Tensor) => autodiffBag(x as tf.Tensor2D, tt))(zt);
        return [custom.value.dataSync()[0], custom.grad.dataSync(), naive.value.dataSync()[0], naive.grad.dataSync()];
      });
      expectClose(value, refValue, { atol: 1e-6, label: "value" });
      expectClose(grad, refGrad, { atol: 1e-7, label: "gradient" });
      expectClose(value, naiveBag(z, t), { atol: 1e-6, label: "float64 value" });
      expectClose(grad, finiteDiff((x) => naiveBag(x, t), z).flat(), { atol: 1e-6, label: "finite differences" });
    });

    it("accepts (B,T,V) logits with (B,T,K) targets, equal to the flattened form", () => {
      const [B, T, V, K] = [2, 3, 5, 2];
      const z = randomFloats(B * T * V, 3);
      const t = randomInts(B * T * K, V, 4);
      const [a, b] = tf.tidy(() => [
        Loss.bagCrossEntropy(tf.tensor3d(z, [B, T, V]), tf.tensor3d(t, [B, T, K], "int32")).dataSync()[0],
        Loss.bagCrossEntropy(tf.tensor2d(z, [B * T, V]), tf.tensor2d(t, [B * T, K], "int32")).dataSync()[0],
      ]);
      expect(a).toBe(b);
    });

    it("rejects mismatched shapes and non-int32 targets", () => {
      tf.tidy(() => {
        const z = tf.zeros([3, 4]);
        expect(() => Loss.bagCrossEntropy(z, tf.zeros([2, 2], "int32"))).toThrow(/leading dimensions differ/);
        expect(() => Loss.bagCrossEntropy(z, tf.zeros([3, 2]))).toThrow(/targets must be int32/);
        expect(() => Loss.bagCrossEntropy(z, tf.zeros([3], "int32"))).toThrow(/targets must be \(R,K\)/);
      });
    });

    it("leaks no tensor and gives the same value on repeated forward and backward calls", async () => {
      const z = toMatrix(randomFloats(4 * 6, 5), 4, 6);
      const t = toMatrix(randomInts(4 * 3, 6, 6), 4, 3);
      const first = bagValue(z, t);
      const firstGrad = bagGrad(z, t);
      await expectNoTensorLeak(() => {
        for (let i = 0; i < 3; i++) {
          expect(bagValue(z, t)).toBe(first);
          expect(bagGrad(z, t)).toEqual(firstGrad);
        }
      });
      // Outside any tidy: the returned scalar is the only new tensor.
      const zt = tf.tensor2d(z);
      const tt = tf.tensor2d(t, undefined, "int32");
      const before = tf.memory().numTensors;
      const loss = Loss.bagCrossEntropy(zt, tt);
      expect(tf.memory().numTensors).toBe(before + 1);
      tf.dispose([loss, zt, tt]);
    });
  });

  describe("tokenCrossEntropy", () => {
    it("equals the bag loss with K = 1 exactly, value and gradient", () => {
      const [N, V] = [7, 10];
      const z = toMatrix(randomFloats(N * V, 8, -2, 2), N, V);
      const t = Array.from(randomInts(N, V, 9));
      const [tokV, tokG, bagV, bagG] = tf.tidy(() => {
        const zt = tf.tensor2d(z);
        const tok = tf.valueAndGrad((x: tf.Tensor) => Loss.tokenCrossEntropy(x, tf.tensor1d(t, "int32")))(zt);
        const bag = tf.valueAndGrad((x: tf.Tensor) => Loss.bagCrossEntropy(x, tf.tensor2d(t, [N, 1], "int32")))(zt);
        return [tok.value.dataSync()[0], Array.from(tok.grad.dataSync()), bag.value.dataSync()[0], Array.from(bag.grad.dataSync())];
      });
      expect(tokV).toBe(bagV);
      expect(tokG).toEqual(bagG);
      expectClose(tokV, naiveBag(z, t.map((x) => [x])), { atol: 1e-6, label: "float64 value" });
      expectClose(tokG, finiteDiff((x) => naiveBag(x, t.map((v) => [v])), z).flat(), { atol: 1e-6, label: "finite differences" });
    });

    it("is the mean over valid targets, like PyTorch's cross_entropy", () => {
      const z = TV5_LOGITS;
      const value = tf.tidy(() => Loss.tokenCrossEntropy(tf.tensor2d(z), tf.tensor1d([3, -100, 1], "int32")).dataSync()[0]);
      expectClose(value, (-ln(0.4) + (9 + ln(4) - 9)) / 2, { atol: 1e-6 });
    });

    it("rejects targets of the wrong rank", () => {
      tf.tidy(() => {
        expect(() => Loss.tokenCrossEntropy(tf.zeros([2, 3, 4]), tf.zeros([6], "int32"))).toThrow(/rank 2/);
      });
    });
  });

  describe("end-to-end toy with a tied readout (TV9)", () => {
    // E (V=4, C=2); logits = x·Eᵀ; ids [0,0, 1,2, 2,3].
    const E: Matrix = [[1, 0], [0, 1], [1, 1], [0, 0]];
    const ids = [0, 0, 1, 2, 2, 3];

    // Embedding lookup as one-hot · E: differentiable on every backend without a gather gradient.
    const lookup = (e: tf.Tensor2D, at: Array<number>) => tf.matMul(tf.oneHot(tf.tensor1d(at, "int32"), 4), e);
    const patchLoss = (e: tf.Tensor2D): tf.Scalar => {
      const x = tf.mean(tf.reshape(lookup(e, ids), [3, 2, 2]), 1); // (T=3,C) <- mean over K
      const logits = tf.matMul(tf.slice(x, [0, 0], [2, 2]), e, false, true); // rows with a successor
      return Loss.bagCrossEntropy(logits, tf.tensor2d([[1, 2], [2, 3]], undefined, "int32"));
    };
    const tokenLoss = (e: tf.Tensor2D): tf.Scalar => {
      const x = lookup(e, ids.slice(0, 5)); // (T−1,C)
      return Loss.tokenCrossEntropy(tf.matMul(x, e, false, true), tf.tensor1d(ids.slice(1), "int32"));
    };
    const patch64 = (e: Matrix): number => {
      const x = [0, 1].map((j) => [0, 1].map((c) => (e[ids[2 * j]][c] + e[ids[2 * j + 1]][c]) / 2));
      return naiveBag(x.map((xi) => e.map((ev) => xi[0] * ev[0] + xi[1] * ev[1])), [[1, 2], [2, 3]]);
    };
    const token64 = (e: Matrix): number =>
      naiveBag(
        ids.slice(0, 5).map((i) => e.map((ev) => e[i][0] * ev[0] + e[i][1] * ev[1])),
        ids.slice(1).map((x) => [x]),
      );

    it("gives L_patch = 1.521874 and L_token = 1.454455", () => {
      const [p, t] = tf.tidy(() => [patchLoss(tf.tensor2d(E)).dataSync()[0], tokenLoss(tf.tensor2d(E)).dataSync()[0]]);
      expectClose(p, 1.521874, { atol: 1e-6, label: "patch" });
      expectClose(t, 1.454455, { atol: 1e-6, label: "token" });
      expectClose(patch64(E), 1.521874, { atol: 1e-6, label: "patch reference" });
      expectClose(token64(E), 1.454455, { atol: 1e-6, label: "token reference" });
    });

    it.each([
      ["patch", patchLoss, patch64],
      ["token", tokenLoss, token64],
    ] as const)("back-propagates to the shared embedding table like finite differences (%s)", async (_, f, f64) => {
      const grad = tf.tidy(() => tf.grad((e: tf.Tensor) => f(e as tf.Tensor2D))(tf.tensor2d(E)).arraySync() as Matrix);
      expectClose(grad, finiteDiff(f64, E), { atol: 1e-6 });
    });
  });

  describe("zLoss", () => {
    it("is coef · mean(LSE²) with the matching gradient", () => {
      const z = TV5_LOGITS;
      const coef = 1e-2;
      const ref = (x: Matrix) => (coef * x.reduce((s, row) => s + lse64(row) ** 2, 0)) / x.length;
      const [value, grad] = tf.tidy(() => {
        const vg = tf.valueAndGrad((x: tf.Tensor) => Loss.zLoss(x, coef))(tf.tensor2d(z));
        return [vg.value.dataSync()[0], vg.grad.arraySync() as Matrix] as const;
      });
      expectClose(value, ref(z), { rtol: 1e-6 });
      expectClose(grad, finiteDiff(ref, z), { atol: 1e-6 });
    });
  });
});
