import * as tf from "@tensorflow/tfjs";
import { expectNoTensorLeak } from "@patchlm/testing";
import { Fused } from "@patchlm/fused";
import { describeNative, expectNativeMatchesCpu, rand } from "./support";

// On cpu no fused kernel is registered, so the same calls run the pure-tfjs definitions of
// @patchlm/fused (tested there against float64 references).
describeNative("Fused ops: native kernels against their tfjs definitions", () => {
  it("runs the fused kernels on native and the fallbacks on cpu", async () => {
    await tf.setBackend("native");
    expect(tf.getKernel(Fused.KernelNames.rmsNorm, "native")).toBeDefined();
    expect(tf.getKernel(Fused.KernelNames.rope, "native")).toBeDefined();
    expect(tf.getKernel(Fused.KernelNames.sumOfSquares, "native")).toBeDefined();
    expect(tf.getKernel(Fused.KernelNames.rmsNorm, "cpu")).toBeUndefined();
  });

  it("rmsNorm matches on odd, 3-D and many-row inputs, with gradients for x and gain", async () => {
    for (const shape of [[7, 13], [2, 5, 33], [300, 256]]) {
      await expectNativeMatchesCpu(`rmsNorm ${shape}`, () => {
        const x = rand(shape, 1, -2, 2);
        const gain = rand([shape[shape.length - 1]], 2, 0.5, 1.5);
        const w = rand(shape, 3);
        const f = (a: tf.Tensor, g: tf.Tensor) => tf.sum(tf.mul(Fused.rmsNorm(a, g, 1e-6), w));
        return [Fused.rmsNorm(x, gain, 1e-6), ...tf.grads(f)([x, gain])];
      }, 1e-5, 1e-4);
    }
  });

  it("swiglu matches on odd and large inputs, with gradients for gate and up", async () => {
    for (const shape of [[7, 13], [96, 200]]) {
      await expectNativeMatchesCpu(`swiglu ${shape}`, () => {
        const gate = rand(shape, 4, -8, 8);
        const up = rand(shape, 5, -2, 2);
        const w = rand(shape, 6);
        const f = (g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(Fused.swiglu(g, u), w));
        return [Fused.swiglu(gate, up), ...tf.grads(f)([gate, up])];
      }, 1e-5, 1e-5);
    }
  });

  // [129, 67]: one task, streamed blocks of 256 plus a tail; [3, 11023]: several tasks of the
  // pool, each with its own aligned head, blocks and tail.
  it.each([[[129, 67]], [[3, 11023]]])("adamw matches the tfjs arithmetic with and without a gradient scale, decayed or not (%j)", async (shape) => {
    const attrs = (shrink: number): Fused.AdamWAttrs => ({ beta1: 0.9, beta2: 0.95, eps: 1e-8, invSqrtBc2: 1 / Math.sqrt(1 - 0.95 ** 3), shrink, stepSize: 3e-4 / (1 - 0.9 ** 3) });
    for (const [shrink, scale] of [[1 - 3e-5, undefined], [1, 0.37]] as const) {
      await expectNativeMatchesCpu(`adamw shrink ${shrink} scale ${scale}`, () => {
        const out = Fused.adamw(rand(shape, 7), rand(shape, 8, -0.01, 0.01), rand(shape, 9, 0, 1e-4), rand(shape, 10), attrs(shrink), scale === undefined ? undefined : tf.scalar(scale));
        return [out.param, out.m, out.v];
      }, 1e-7, 1e-5);
    }
  });

  it("leaves no tensor or buffer behind over repeated fused forward and backward passes", async () => {
    await tf.setBackend("native");
    const x = rand([16, 24], 11);
    const gain = rand([24], 12);
    const step = () =>
      tf.tidy(() => {
        const f = (a: tf.Tensor, g: tf.Tensor) => tf.sum(Fused.swiglu(Fused.rmsNorm(a, g, 1e-6), a));
        tf.grads(f)([x, gain]).forEach((t) => t.dataSync());
        const u = Fused.adamw(x, x, tf.abs(x), x, { beta1: 0.9, beta2: 0.95, eps: 1e-8, invSqrtBc2: 1, shrink: 1, stepSize: 1e-3 });
        u.param.dataSync();
      });
    step();
    const buffers = tf.memory().numDataBuffers;
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 10; i++) step();
    });
    expect(tf.memory().numDataBuffers).toBe(buffers);
    tf.dispose([x, gain]);
  });
});

describeNative("Fused.weightedCrossEntropy", () => {
  const bag = (R: number, V: number, K: number, seed: number) => {
    const logits = rand([R, V], seed, -6, 6) as tf.Tensor2D;
    const ids = Array.from({ length: R * K }, (_, i) => (i * 7 + seed) % V);
    // Some ignored slots (-100, weight 0) and a duplicate target in row 0.
    ids[1] = -100;
    if (K > 1) ids[K] = ids[K + 1];
    const targets = tf.tensor2d(ids, [R, K], "int32");
    const weights = tf.tensor2d(ids.map((t) => (t < 0 ? 0 : 1 / (R * K))), [R, K]);
    return { logits, targets, weights };
  };

  for (const [R, V, K] of [[5, 11, 1], [7, 33, 4], [40, 1000, 4]]) {
    it(`matches the tfjs definition and its gradient for R=${R}, V=${V}, K=${K}, with ignored and duplicate targets`, async () => {
      await expectNativeMatchesCpu(`wce ${R}x${V}x${K}`, () => {
        const { logits, targets, weights } = bag(R, V, K, 3);
        const f = (z: tf.Tensor) => tf.mul(Fused.weightedCrossEntropy(z as tf.Tensor2D, targets, weights), 1.5);
        return [Fused.weightedCrossEntropy(logits, targets, weights), tf.grad(f)(logits)];
      }, 1e-6, 1e-5);
    });
  }

  it("leaves no tensor behind, gradient included", async () => {
    await tf.setBackend("native");
    const { logits, targets, weights } = bag(6, 20, 3, 4);
    const step = () => tf.tidy(() => tf.grad((z: tf.Tensor) => Fused.weightedCrossEntropy(z as tf.Tensor2D, targets, weights))(logits).dataSync());
    step();
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 5; i++) step();
    });
    tf.dispose([logits, targets, weights]);
  });
});

describeNative("Fused.sumOfSquares", () => {
  it("matches the tfjs definition over many tensors, small and larger than one parallel block", async () => {
    await expectNativeMatchesCpu("sumOfSquares", () => [
      Fused.sumOfSquares([rand([5], 61), rand([300, 257], 62, -2, 2), rand([1, 1], 63), rand([70001], 64)]),
    ], 1e-3, 1e-6);
  });
});

describeNative("Fused.rope", () => {
  for (const [B, T, h, D] of [[2, 5, 3, 8], [1, 17, 4, 64], [3, 1, 1, 2]]) {
    it(`matches the tfjs definition, its adjoint and its gradient for (B,T,h,D) = (${B},${T},${h},${D})`, async () => {
      await expectNativeMatchesCpu(`rope ${[B, T, h, D]}`, () => {
        const x = rand([B, T, h, D], 41, -2, 2) as tf.Tensor4D;
        const [cos, sin] = [rand([T, D], 42) as tf.Tensor2D, rand([T, D], 43) as tf.Tensor2D];
        const w = rand([B, T, h, D], 44);
        const grad = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(Fused.rope(a as tf.Tensor4D, cos, sin), w)))(x);
        return [Fused.rope(x, cos, sin), Fused.rope(x, cos, sin, true), grad];
      }, 1e-6, 1e-5);
    });
  }
});

describeNative("Fused.causalAttention", () => {
  // T = 150: three row blocks of the kernel, the last one partial.
  for (const [B, H, Hkv, T, D] of [[2, 2, 2, 5, 4], [1, 4, 2, 9, 8], [2, 4, 1, 33, 16], [1, 2, 1, 150, 8]]) {
    it(`matches the masked-softmax definition and its gradients for B=${B} H=${H} Hkv=${Hkv} T=${T} D=${D}`, async () => {
      await expectNativeMatchesCpu(`attention ${[B, H, Hkv, T, D]}`, () => {
        const q = rand([B, H, T, D], 1, -2, 2) as tf.Tensor4D;
        const k = rand([B, Hkv, T, D], 2, -2, 2) as tf.Tensor4D;
        const v = rand([B, Hkv, T, D], 3) as tf.Tensor4D;
        const w = rand([B, H, T, D], 4);
        const scale = 1 / Math.sqrt(D);
        const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.sum(tf.mul(Fused.causalAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, scale), w));
        return [Fused.causalAttention(q, k, v, scale), ...tf.grads(f)([q, k, v])];
      }, 1e-5, 1e-4);
    });
  }

  for (const [B, H, Hkv, T, D] of [[2, 4, 2, 9, 8], [1, 2, 1, 33, 16], [1, 4, 2, 130, 8]]) {
    it(`reads and writes the sequence-major layout (B,T,H,D) in place for B=${B} H=${H} Hkv=${Hkv} T=${T} D=${D}, gradients included`, async () => {
      await expectNativeMatchesCpu(`attention bthd ${[B, H, Hkv, T, D]}`, () => {
        const q = rand([B, T, H, D], 11, -2, 2) as tf.Tensor4D;
        const k = rand([B, T, Hkv, D], 12, -2, 2) as tf.Tensor4D;
        const v = rand([B, T, Hkv, D], 13) as tf.Tensor4D;
        const w = rand([B, T, H, D], 14);
        const att = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          Fused.causalAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, 0.3, "bthd");
        return [att(q, k, v), ...tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(att(a, b, c), w)))([q, k, v])];
      }, 1e-5, 1e-4);
    });
  }

  it("leaves no tensor or buffer behind, gradients included", async () => {
    await tf.setBackend("native");
    const q = rand([1, 2, 6, 4], 5) as tf.Tensor4D;
    const step = () =>
      tf.tidy(() => tf.grads((a: tf.Tensor) => tf.sum(Fused.causalAttention(a as tf.Tensor4D, q, q, 0.5)))([q]).forEach((g) => g.dataSync()));
    step();
    const buffers = tf.memory().numDataBuffers;
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 5; i++) step();
    });
    expect(tf.memory().numDataBuffers).toBe(buffers);
    tf.dispose(q);
  });
});
