/**
 * The fused ops' tfjs fallbacks (no backend here registers their kernels) against float64
 * references, forward and gradients, run once per backend (fused.{cpu,wasm}.test.ts). The native
 * kernels are tested against these fallbacks in libs/native.
 */
import * as tf from "@tensorflow/tfjs";
import { expectClose, expectNoTensorLeak, randomFloats } from "@patchlm/testing";
import { Fused } from "../src";

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** The tensors `fn` returns, as host float64 copies; nothing stays allocated. */
const onHost = (fn: () => Array<tf.Tensor>): Array<Float64Array> => {
  const out = tf.tidy(fn);
  const copies = out.map((t) => Float64Array.from(t.dataSync()));
  tf.dispose(out);
  return copies;
};

/** Float64 rmsNorm rows and the gradients of Σ w·y for x and gain. */
const rmsNormReference = (x: Float32Array, g: Float32Array, w: Float32Array, eps: number) => {
  const n = g.length;
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dg = new Float64Array(n);
  for (let r = 0; r < x.length / n; r++) {
    const o = r * n;
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[o + j] * x[o + j];
    const inv = 1 / Math.sqrt(ss / n + eps);
    // ∂/∂x_i Σ_j w_j g_j x_j inv = inv·w_i g_i − x_i inv³ (Σ_j w_j g_j x_j)/n
    let dot = 0;
    for (let j = 0; j < n; j++) dot += w[o + j] * g[j] * x[o + j];
    for (let j = 0; j < n; j++) {
      y[o + j] = x[o + j] * inv * g[j];
      dx[o + j] = inv * w[o + j] * g[j] - (x[o + j] * inv ** 3 * dot) / n;
      dg[j] += w[o + j] * x[o + j] * inv;
    }
  }
  return { y, dx, dg };
};

/**
 * Float64 causal attention, q (B,H,T,D), k/v (B,Hkv,T,D), and the gradients of Σ w·o:
 * dP = dO·Vᵀ, dS = P ⊙ (dP − Σ dP⊙P), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO, summed over
 * the R query heads sharing a kv head.
 */
const attentionReference = (dims: ReadonlyArray<number>, q: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, scale: number) => {
  const [B, H, Hkv, T, D] = dims;
  const R = H / Hkv;
  const o = new Float64Array(q.length);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const qo = (b * H + h) * T * D;
      const ko = (b * Hkv + Math.floor(h / R)) * T * D;
      for (let i = 0; i < T; i++) {
        const s = new Float64Array(i + 1);
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + i * D + d] * k[ko + j * D + d];
          s[j] = scale * dot;
          max = Math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += (s[j] = Math.exp(s[j] - max));
        const p = s.map((e) => e / sum);
        const dp = new Float64Array(i + 1);
        for (let j = 0; j <= i; j++) {
          for (let d = 0; d < D; d++) {
            o[qo + i * D + d] += p[j] * v[ko + j * D + d];
            dp[j] += w[qo + i * D + d] * v[ko + j * D + d];
            dv[ko + j * D + d] += p[j] * w[qo + i * D + d];
          }
        }
        let pdp = 0;
        for (let j = 0; j <= i; j++) pdp += p[j] * dp[j];
        for (let j = 0; j <= i; j++) {
          const ds = p[j] * (dp[j] - pdp) * scale;
          for (let d = 0; d < D; d++) {
            dq[qo + i * D + d] += ds * k[ko + j * D + d];
            dk[ko + j * D + d] += ds * q[qo + i * D + d];
          }
        }
      }
    }
  }
  return { o, dq, dk, dv };
};

/** Float64 rotate-half RoPE of x (B,T,h,D) with tables (T,D): y[d] = x[d]·cos[d] + rotateHalf(x)[d]·sin[d]. */
const ropeReference = (dims: ReadonlyArray<number>, x: Float32Array, cos: Float32Array, sin: Float32Array) => {
  const [B, T, h, D] = dims;
  const half = D / 2;
  const y = new Float64Array(x.length);
  for (let r = 0; r < B * T; r++) {
    const t = r % T;
    for (let j = 0; j < h; j++) {
      const o = (r * h + j) * D;
      for (let d = 0; d < D; d++) {
        const rotated = d < half ? -x[o + d + half] : x[o + d - half];
        y[o + d] = x[o + d] * cos[t * D + d] + rotated * sin[t * D + d];
      }
    }
  }
  return y;
};

/** (B,T,H,D) <-> (B,H,T,D) on the host: swap axes 1 and 2 of a 4-D row-major array. */
const swapAxes12 = (x: Float32Array | Float64Array, [A, P, Q, D]: ReadonlyArray<number>): Float64Array => {
  const y = new Float64Array(x.length);
  for (let a = 0; a < A; a++)
    for (let p = 0; p < P; p++)
      for (let q = 0; q < Q; q++)
        for (let d = 0; d < D; d++) y[((a * Q + q) * P + p) * D + d] = x[((a * P + p) * Q + q) * D + d];
  return y;
};

/** Float64 Σ w·(LSE(z) − z[t]) and its logits gradient; targets outside [0,V) carry weight 0. */
const crossEntropyReference = (z: Float32Array, t: Int32Array, w: Float32Array, R: number, V: number, K: number) => {
  let loss = 0;
  const dz = new Float64Array(R * V);
  for (let r = 0; r < R; r++) {
    let max = -Infinity;
    for (let c = 0; c < V; c++) max = Math.max(max, z[r * V + c]);
    let sum = 0;
    for (let c = 0; c < V; c++) sum += Math.exp(z[r * V + c] - max);
    const lse = max + Math.log(sum);
    let wr = 0;
    for (let j = 0; j < K; j++) {
      const wk = w[r * K + j];
      if (wk === 0) continue;
      const target = t[r * K + j];
      loss += wk * (lse - z[r * V + target]);
      dz[r * V + target] -= wk;
      wr += wk;
    }
    for (let c = 0; c < V; c++) dz[r * V + c] += (wr * Math.exp(z[r * V + c] - max)) / sum;
  }
  return { loss, dz };
};

const rand = (shape: Array<number>, seed: number, lo = -1, hi = 1) => randomFloats(tf.util.sizeFromShape(shape), seed, lo, hi);

export const fusedSuite = (backend: string): void => {
  describe(`Fused fallbacks on ${backend}`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
      expect(tf.getBackend()).toBe(backend);
      expect(tf.getKernel(Fused.KernelNames.rmsNorm, backend)).toBeUndefined();
    });

    it("rmsNorm matches float64 over the last axis of 2-D and 3-D inputs, with gradients for x and gain", () => {
      for (const shape of [[7, 13], [2, 5, 33]]) {
        const n = shape[shape.length - 1];
        const [x, g, w] = [rand(shape, 1, -2, 2), rand([n], 2, 0.5, 1.5), rand(shape, 3)];
        const ref = rmsNormReference(x, g, w, 1e-6);
        const [y, dx, dg] = onHost(() => {
          const [xt, gt, wt] = [tf.tensor(x, shape), tf.tensor(g), tf.tensor(w, shape)];
          const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(Fused.rmsNorm(a, b, 1e-6), wt));
          return [Fused.rmsNorm(xt, gt, 1e-6), ...tf.grads(f)([xt, gt])];
        });
        expectClose(y, ref.y, { atol: 1e-6, rtol: 1e-5, label: `rmsNorm ${shape}` });
        expectClose(dx, ref.dx, { atol: 1e-5, rtol: 1e-4, label: `rmsNorm dx ${shape}` });
        expectClose(dg, ref.dg, { atol: 1e-5, rtol: 1e-4, label: `rmsNorm dgain ${shape}` });
      }
    });

    it("swiglu matches float64, with gradients for gate and up", () => {
      const shape = [9, 17];
      const [gate, up, w] = [rand(shape, 4, -8, 8), rand(shape, 5, -2, 2), rand(shape, 6)];
      const [y, dg, du] = onHost(() => {
        const [a, b, wt] = [tf.tensor(gate, shape), tf.tensor(up, shape), tf.tensor(w, shape)];
        const f = (x: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(Fused.swiglu(x, u), wt));
        return [Fused.swiglu(a, b), ...tf.grads(f)([a, b])];
      });
      const s = Array.from(gate, sigmoid);
      expectClose(y, Array.from(gate, (x, i) => x * s[i] * up[i]), { atol: 1e-6, rtol: 1e-5, label: "swiglu" });
      expectClose(dg, Array.from(gate, (x, i) => w[i] * up[i] * (s[i] + x * s[i] * (1 - s[i]))), { atol: 1e-5, rtol: 1e-4, label: "swiglu dgate" });
      expectClose(du, Array.from(gate, (x, i) => w[i] * x * s[i]), { atol: 1e-6, rtol: 1e-5, label: "swiglu dup" });
    });

    for (const [B, H, Hkv, T, D, scale] of [[2, 2, 2, 5, 4, 0.5], [1, 4, 2, 9, 8, 1], [1, 3, 1, 1, 4, 0.7]]) {
      it(`causalAttention matches float64 and its gradients for B=${B} H=${H} Hkv=${Hkv} T=${T} D=${D} scale=${scale}`, () => {
        const [q, k, v, w] = [rand([B, H, T, D], 1, -2, 2), rand([B, Hkv, T, D], 2, -2, 2), rand([B, Hkv, T, D], 3), rand([B, H, T, D], 4)];
        const ref = attentionReference([B, H, Hkv, T, D], q, k, v, w, scale);
        const [o, dq, dk, dv] = onHost(() => {
          const qt = tf.tensor4d(q, [B, H, T, D]);
          const [kt, vt] = [tf.tensor4d(k, [B, Hkv, T, D]), tf.tensor4d(v, [B, Hkv, T, D])];
          const wt = tf.tensor(w, [B, H, T, D]);
          const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            tf.sum(tf.mul(Fused.causalAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, scale), wt));
          return [Fused.causalAttention(qt, kt, vt, scale), ...tf.grads(f)([qt, kt, vt])];
        });
        expectClose(o, ref.o, { atol: 1e-5, rtol: 1e-4, label: "attention o" });
        expectClose(dq, ref.dq, { atol: 1e-5, rtol: 1e-4, label: "attention dq" });
        expectClose(dk, ref.dk, { atol: 1e-5, rtol: 1e-4, label: "attention dk" });
        expectClose(dv, ref.dv, { atol: 1e-5, rtol: 1e-4, label: "attention dv" });
      });
    }

    it("causalAttention in the sequence-major layout (B,T,H,D) is the head-major result with axes swapped, gradients included", () => {
      const [B, H, Hkv, T, D, scale] = [2, 4, 2, 7, 4, 0.6];
      const [q, k, v, w] = [rand([B, T, H, D], 21, -2, 2), rand([B, T, Hkv, D], 22, -2, 2), rand([B, T, Hkv, D], 23), rand([B, T, H, D], 24)];
      const ref = attentionReference(
        [B, H, Hkv, T, D],
        Float32Array.from(swapAxes12(q, [B, T, H, D])),
        Float32Array.from(swapAxes12(k, [B, T, Hkv, D])),
        Float32Array.from(swapAxes12(v, [B, T, Hkv, D])),
        Float32Array.from(swapAxes12(w, [B, T, H, D])),
        scale,
      );
      const [o, dq, dk, dv] = onHost(() => {
        const [qt, kt, vt] = [tf.tensor4d(q, [B, T, H, D]), tf.tensor4d(k, [B, T, Hkv, D]), tf.tensor4d(v, [B, T, Hkv, D])];
        const wt = tf.tensor(w, [B, T, H, D]);
        const att = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => Fused.causalAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, scale, "bthd");
        return [att(qt, kt, vt), ...tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(att(a, b, c), wt)))([qt, kt, vt])];
      });
      expectClose(o, swapAxes12(ref.o, [B, H, T, D]), { atol: 1e-5, rtol: 1e-4, label: "bthd o" });
      expectClose(dq, swapAxes12(ref.dq, [B, H, T, D]), { atol: 1e-5, rtol: 1e-4, label: "bthd dq" });
      expectClose(dk, swapAxes12(ref.dk, [B, Hkv, T, D]), { atol: 1e-5, rtol: 1e-4, label: "bthd dk" });
      expectClose(dv, swapAxes12(ref.dv, [B, Hkv, T, D]), { atol: 1e-5, rtol: 1e-4, label: "bthd dv" });
    });

    it("referenceAttention of the last T queries over S keys (a KV cache's view, keys plain or transposed) is those rows of the full attention", () => {
      const [B, H, Hkv, S, T, D] = [2, 4, 2, 7, 3, 4];
      const [q, k, v] = [rand([B, H, S, D], 31, -2, 2), rand([B, Hkv, S, D], 32, -2, 2), rand([B, Hkv, S, D], 33)];
      const ref = attentionReference([B, H, Hkv, S, D], q, k, v, new Float32Array(q.length), 1);
      const lastRows = (x: ArrayLike<number>) =>
        Float64Array.from({ length: B * H * T * D }, (_, i) => x[Math.floor(i / (T * D)) * S * D + (S - T) * D + (i % (T * D))]);
      const [plain, transposed] = onHost(() => {
        const qLast = tf.slice(tf.tensor4d(q, [B, H, S, D]), [0, 0, S - T, 0], [B, H, T, D]);
        const [kt, vt] = [tf.tensor4d(k, [B, Hkv, S, D]), tf.tensor4d(v, [B, Hkv, S, D])];
        return [
          Fused.referenceAttention(qLast, kt, vt, 1),
          Fused.referenceAttention(qLast, tf.transpose(kt, [0, 1, 3, 2]), vt, 1, { keysTransposed: true }),
        ];
      });
      expectClose(plain, lastRows(ref.o), { atol: 1e-5, rtol: 1e-4, label: "keys (B,Hkv,S,D)" });
      expectClose(transposed, lastRows(ref.o), { atol: 1e-5, rtol: 1e-4, label: "keys (B,Hkv,D,S)" });
    });

    it("rope matches float64 rotate-half, its transpose is its adjoint, and its gradient is that adjoint", () => {
      const dims = [2, 5, 3, 8];
      const [B, T, h, D] = dims;
      const [x, y, cos, sin] = [rand(dims, 31, -2, 2), rand(dims, 32), rand([T, D], 33), rand([T, D], 34)];
      const [fx, tyOut, gx] = onHost(() => {
        const [xt, yt, ct, st] = [tf.tensor4d(x, [B, T, h, D]), tf.tensor4d(y, [B, T, h, D]), tf.tensor2d(cos, [T, D]), tf.tensor2d(sin, [T, D])];
        const grad = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(Fused.rope(a as tf.Tensor4D, ct, st), yt)))(xt);
        return [Fused.rope(xt, ct, st), Fused.rope(yt, ct, st, true), grad];
      });
      expectClose(fx, ropeReference(dims, x, cos, sin), { atol: 1e-6, rtol: 1e-5, label: "rope" });
      // ⟨rope(x), y⟩ = ⟨x, ropeᵀ(y)⟩ for random tables (not only the symmetric ones RoPE uses)
      const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((acc, ai, i) => acc + ai * b[i], 0);
      expectClose([dot(fx, y)], [dot(x, tyOut)], { atol: 1e-4, rtol: 1e-5, label: "rope adjoint" });
      expectClose(gx, tyOut, { atol: 1e-6, rtol: 1e-5, label: "rope gradient" });
    });

    it("sumOfSquares is Σx² over every tensor in float64, and 0 for none", () => {
      const shapes = [[3, 7], [33], [2, 2, 5]];
      const xs = shapes.map((shape, i) => rand(shape, 50 + i, -3, 3));
      const [total, none] = onHost(() => [Fused.sumOfSquares(xs.map((x, i) => tf.tensor(x, shapes[i]))), Fused.sumOfSquares([])]);
      const want = xs.reduce((acc, x) => acc + Array.from(x).reduce((a, v) => a + v * v, 0), 0);
      expectClose(total, [want], { atol: 1e-5, rtol: 1e-6, label: "sumOfSquares" });
      expectClose(none, [0], { atol: 0, rtol: 0, label: "sumOfSquares of nothing" });
    });

    it("weightedCrossEntropy matches float64 with ignored (out-of-range, weight 0) and duplicate targets", () => {
      const [R, V, K] = [7, 33, 4];
      const z = rand([R, V], 3, -6, 6);
      const ids = Int32Array.from({ length: R * K }, (_, i) => (i * 7 + 3) % V);
      ids[1] = -100;
      ids[K] = ids[K + 1];
      const w = Float32Array.from(ids, (t, i) => (t < 0 ? 0 : 1 / (R * K) + i * 1e-3));
      const ref = crossEntropyReference(z, ids, w, R, V, K);
      const [loss, dz] = onHost(() => {
        const [zt, tt, wt] = [tf.tensor2d(z, [R, V]), tf.tensor2d(ids, [R, K], "int32"), tf.tensor2d(w, [R, K])];
        const f = (a: tf.Tensor) => tf.mul(Fused.weightedCrossEntropy(a as tf.Tensor2D, tt, wt), 1.5);
        return [Fused.weightedCrossEntropy(zt, tt, wt), tf.grad(f)(zt)];
      });
      expectClose(loss, [ref.loss], { atol: 1e-6, rtol: 1e-5, label: "wce loss" });
      expectClose(dz, Array.from(ref.dz, (d) => 1.5 * d), { atol: 1e-7, rtol: 1e-5, label: "wce dz" });
    });

    it("adamw is torch's update in float64, with and without a gradient scale, decayed or not", () => {
      const [beta1, beta2, eps, lr, t] = [0.9, 0.95, 1e-8, 3e-3, 3];
      const n = 40;
      const [p, m, v, g] = [rand([n], 7), rand([n], 8, -0.01, 0.01), rand([n], 9, 0, 1e-4), rand([n], 10)];
      for (const [shrink, scale] of [[1 - lr * 0.1, undefined], [1, 0.37]] as const) {
        const attrs: Fused.AdamWAttrs = { beta1, beta2, eps, invSqrtBc2: 1 / Math.sqrt(1 - beta2 ** t), shrink, stepSize: lr / (1 - beta1 ** t) };
        const out = onHost(() => {
          const r = Fused.adamw(tf.tensor(p), tf.tensor(m), tf.tensor(v), tf.tensor(g), attrs, scale === undefined ? undefined : tf.scalar(scale));
          return [r.param, r.m, r.v];
        });
        const s = scale ?? 1;
        const m2 = Array.from(m, (x, i) => beta1 * x + (1 - beta1) * s * g[i]);
        const v2 = Array.from(v, (x, i) => beta2 * x + (1 - beta2) * (s * g[i]) ** 2);
        const p2 = Array.from(p, (x, i) => x * shrink - ((lr / (1 - beta1 ** t)) * m2[i]) / (Math.sqrt(v2[i]) / Math.sqrt(1 - beta2 ** t) + eps));
        expectClose(out[0], p2, { atol: 1e-7, rtol: 1e-5, label: `adamw param shrink ${shrink} scale ${scale}` });
        expectClose(out[1], m2, { atol: 1e-9, rtol: 1e-5, label: "adamw m" });
        expectClose(out[2], v2, { atol: 1e-12, rtol: 1e-5, label: "adamw v" });
      }
    });

    it("leaves no tensor behind over forward and backward passes of every op", async () => {
      const x = tf.tensor4d(rand([2, 3, 5, 4], 11), [2, 3, 5, 4]);
      const x2 = tf.reshape(x, [30, 4]) as tf.Tensor2D;
      const gain = tf.tensor(rand([4], 12));
      const targets = tf.tensor2d([0, 3, -100, 1, 2, 2], [6, 1], "int32");
      const weights = tf.tensor2d([0.2, 0.2, 0, 0.2, 0.2, 0.2], [6, 1]);
      const step = () =>
        tf.tidy(() => {
          const f = (a: tf.Tensor, g: tf.Tensor) => tf.sum(Fused.swiglu(Fused.rmsNorm(a, g, 1e-6), a));
          tf.grads(f)([x2, gain]).forEach((t) => t.dataSync());
          const att = (a: tf.Tensor) => tf.sum(Fused.causalAttention(a as tf.Tensor4D, x, x, 0.5));
          tf.grads(att)([x]).forEach((t) => t.dataSync());
          const seq = (a: tf.Tensor) => tf.sum(Fused.causalAttention(a as tf.Tensor4D, x, x, 0.5, "bthd"));
          tf.grads(seq)([x]).forEach((t) => t.dataSync());
          const tables = tf.reshape(tf.slice(x2, [0, 0], [3, 4]), [3, 4]) as tf.Tensor2D;
          const rot = (a: tf.Tensor) => tf.sum(Fused.rope(tf.reshape(a, [2, 3, 5, 4]) as tf.Tensor4D, tables, tables));
          tf.grads(rot)([x]).forEach((t) => t.dataSync());
          const ce = (z: tf.Tensor) => Fused.weightedCrossEntropy(z as tf.Tensor2D, targets, weights);
          tf.grad(ce)(tf.slice(x2, [0, 0], [6, 4])).dataSync();
          Fused.adamw(x2, x2, tf.abs(x2), x2, { beta1: 0.9, beta2: 0.95, eps: 1e-8, invSqrtBc2: 1, shrink: 1, stepSize: 1e-3 }).param.dataSync();
        });
      step();
      await expectNoTensorLeak(() => {
        for (let i = 0; i < 3; i++) step();
      });
      tf.dispose([x, x2, gain, targets, weights]);
    });
  });
};
