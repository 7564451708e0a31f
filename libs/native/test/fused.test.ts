import * as tf from "@tensorflow/tfjs";
import { expectNoTensorLeak } from "@patchlm/testing";
import { Fused } from "../src";
import { describeNative, expectNativeMatchesCpu, rand } from "./support";

// On cpu no fused kernel is registered, so the same calls run the pure-tfjs definitions.
describeNative("Fused ops: native kernels against their tfjs definitions", () => {
  it("runs the fused kernels on native and the fallbacks on cpu", async () => {
    await tf.setBackend("native");
    expect(tf.getKernel(Fused.KernelNames.rmsNorm, "native")).toBeDefined();
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
    for (const shape of [[7, 13], [512, 688]]) {
      await expectNativeMatchesCpu(`swiglu ${shape}`, () => {
        const gate = rand(shape, 4, -8, 8);
        const up = rand(shape, 5, -2, 2);
        const w = rand(shape, 6);
        const f = (g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(Fused.swiglu(g, u), w));
        return [Fused.swiglu(gate, up), ...tf.grads(f)([gate, up])];
      }, 1e-5, 1e-5);
    }
  });

  it("adamw matches the tfjs arithmetic with and without a gradient scale, decayed or not", async () => {
    const attrs = (shrink: number): Fused.AdamWAttrs => ({ beta1: 0.9, beta2: 0.95, eps: 1e-8, invSqrtBc2: 1 / Math.sqrt(1 - 0.95 ** 3), shrink, stepSize: 3e-4 / (1 - 0.9 ** 3) });
    for (const [shrink, scale] of [[1 - 3e-5, undefined], [1, 0.37]] as const) {
      await expectNativeMatchesCpu(`adamw shrink ${shrink} scale ${scale}`, () => {
        const shape = [129, 67];
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
