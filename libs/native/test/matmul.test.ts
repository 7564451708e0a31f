import * as tf from "@tensorflow/tfjs";
import { expectNoTensorLeak, mulberry32 } from "@patchlm/testing";
import { describeNative, expectNativeMatchesCpu, matMulCases, operandShape, rand } from "./support";

const flags: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

describeNative("native BatchMatMul", () => {
  for (const c of matMulCases) {
    for (const [ta, tb] of flags) {
      // tfjs's BatchMatMul gradient cannot reduce over broadcast batch dims (on any backend).
      const grads = JSON.stringify(c.a) === JSON.stringify(c.b) && c.M * c.N * c.K > 0;
      // The cpu kernel mislabels its output when both sides broadcast (it sizes the batch as the
      // larger operand's), so the reference broadcasts the operands explicitly first.
      const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(c.a, c.b);
      const operands = () => [rand(operandShape(c.a, c.M, c.K, ta), 1), rand(operandShape(c.b, c.K, c.N, tb), 2)];
      const broadcastOperands = () =>
        operands().map((t) => tf.broadcastTo(t, [...outBatch, ...t.shape.slice(-2)]));
      it(`matches cpu: batch ${JSON.stringify(c.a)}x${JSON.stringify(c.b)}, M${c.M} N${c.N} K${c.K}, ${ta ? "aT" : "a"}·${tb ? "bT" : "b"}${grads ? ", with gradients" : ""}`, async () => {
        const compute = (inputs: () => Array<tf.Tensor>) => () => {
          const [a, b] = inputs();
          const product = tf.matMul(a, b, ta, tb);
          if (!grads) return [product];
          const w = rand(product.shape, 3);
          return [product, ...tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), w)))([a, b])];
        };
        await expectNativeMatchesCpu("matMul", compute(operands), 1e-4, 1e-4, compute(broadcastOperands));
      });
    }
  }

  it("matches cpu on 40 random shapes (odd sizes, batch dims, transposes)", async () => {
    const r = mulberry32(42);
    const dim = (max: number) => 1 + Math.floor(r() * max);
    for (let i = 0; i < 40; i++) {
      const batch = Array.from({ length: Math.floor(r() * 3) }, () => dim(3));
      const [M, N, K] = [dim(70), dim(70), dim(70)];
      const [ta, tb] = [r() < 0.5, r() < 0.5];
      await expectNativeMatchesCpu(`random ${i}`, () =>
        tf.matMul(rand(operandShape(batch, M, K, ta), i), rand(operandShape(batch, K, N, tb), i + 100), ta, tb),
      );
    }
  });

  it("multiplies a (B,T,C) activation by a (C,N) weight as one tall GEMM, like cpu", async () => {
    await expectNativeMatchesCpu("linear", () => [tf.matMul(rand([3, 11, 16], 5), rand([16, 9], 6)), tf.matMul(rand([3, 11, 16], 5), rand([9, 16], 6), false, true)]);
  });

  it("leaves int32 matmuls to the cpu kernel", async () => {
    await expectNativeMatchesCpu("int32", () => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], "int32"), tf.tensor2d([5, 6, 7, 8], [2, 2], "int32")), 0);
  });

  it("matches cpu for tf.fused.matMul with bias, activations, transposes and gradients", async () => {
    for (const activation of ["linear", "relu", "sigmoid", "elu", "relu6", "leakyrelu"] as const) {
      await expectNativeMatchesCpu(`fused ${activation}`, () => {
        const a = rand([2, 5, 7], 4);
        const b = rand([2, 3, 5], 5);
        const bias = rand([3], 6);
        const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
          tf.fused.matMul({ a: x as tf.Tensor3D, b: y as tf.Tensor3D, transposeA: true, transposeB: true, bias: z, activation });
        return [f(a, b, bias), ...(activation === "linear" || activation === "relu" ? tf.grads((x, y, z) => tf.sum(f(x, y, z)))([a, b, bias]) : [])];
      });
    }
  });

  it("leaves no tensor behind over repeated matmuls and their gradients", async () => {
    await tf.setBackend("native");
    const a = rand([4, 6, 5], 7);
    const b = rand([4, 5, 3], 8);
    const step = () =>
      tf.tidy(() => {
        tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y, false, false)))([a, b]).forEach((g) => g.dataSync());
        tf.fused.matMul({ a: a as tf.Tensor3D, b: b as tf.Tensor3D, bias: tf.ones([3]), activation: "relu" }).dataSync();
      });
    step();
    const buffers = tf.memory().numDataBuffers;
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 10; i++) step();
    });
    // Backend storage too, including the kernels' internal temporaries (transposes, slices).
    expect(tf.memory().numDataBuffers).toBe(buffers);
    tf.dispose([a, b]);
  });
});
