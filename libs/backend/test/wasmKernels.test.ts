import * as tf from "@tensorflow/tfjs";
import { type Compute, expectMatchesCpu, expectNoTensorLeak, randomInts, randomTensor, runTest } from "@patchlm/testing";
import { Logger, LogLevel } from "effect";
import { ComputeBackend } from "../src";

/**
 * The same computation on wasm (with the fixes) and on cpu, compared output by output. A
 * different `reference` computation can stand in on cpu where the cpu kernel itself is wrong.
 */
const expectWasmMatchesCpu = (label: string, compute: Compute, atol = 1e-4, reference = compute): Promise<void> =>
  expectMatchesCpu("wasm", label, compute, { atol, reference });

const rand = (shape: Array<number>, seed: number) => randomTensor(shape, seed);

beforeAll(() => runTest(ComputeBackend.make({ backend: "wasm" }).pipe(Logger.withMinimumLogLevel(LogLevel.None))));

describe("wasm BatchMatMul (transpose then multiply)", () => {
  const flags: Array<[boolean, boolean]> = [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ];
  // tfjs's BatchMatMul gradient does not reduce over broadcast batch dims (on every backend), so
  // broadcasting cases check values only.
  const cases: Array<{ a: Array<number>; b: Array<number>; M: number; N: number; K: number }> = [
    { a: [], b: [], M: 7, N: 5, K: 3 },
    { a: [3], b: [3], M: 17, N: 9, K: 33 },
    { a: [2, 3], b: [1], M: 4, N: 6, K: 5 },
    { a: [1], b: [4], M: 1, N: 8, K: 2 },
    { a: [2, 3], b: [], M: 3, N: 2, K: 4 },
    { a: [2, 1], b: [1, 3], M: 3, N: 2, K: 7 },
  ];
  for (const c of cases) {
    for (const [ta, tb] of flags) {
      const grads = JSON.stringify(c.a) === JSON.stringify(c.b);
      it(`matches cpu for batch ${JSON.stringify(c.a)}x${JSON.stringify(c.b)}, M${c.M} N${c.N} K${c.K}, transposeA=${ta}, transposeB=${tb}${grads ? ", with gradients" : ""}`, async () => {
        const aShape = [...c.a, ...(ta ? [c.K, c.M] : [c.M, c.K])];
        const bShape = [...c.b, ...(tb ? [c.N, c.K] : [c.K, c.N])];
        // The cpu kernel mislabels its output when both sides broadcast, so the reference
        // broadcasts the operands explicitly first.
        const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(c.a, c.b);
        const compute = (broadcast: boolean) => () => {
          const [a, b] = [rand(aShape, 1), rand(bShape, 2)].map((t) => (broadcast ? tf.broadcastTo(t, [...outBatch, ...t.shape.slice(-2)]) : t));
          const product = tf.matMul(a, b, ta, tb);
          if (!grads) return [product];
          const w = rand(product.shape, 3);
          const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), w)))([a, b]);
          return [product, ga, gb];
        };
        await expectWasmMatchesCpu("matMul", compute(false), 1e-4, compute(true));
      });
    }
  }

  it("matches cpu for tf.fused.matMul with transposes, bias and each activation, and its gradients", async () => {
    for (const activation of ["linear", "relu", "sigmoid", "elu", "relu6", "leakyrelu"] as const) {
      await expectWasmMatchesCpu(`fused ${activation}`, () => {
        const a = rand([2, 5, 7], 4);
        const b = rand([2, 3, 5], 5);
        const bias = rand([3], 6);
        const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
          tf.fused.matMul({ a: x as tf.Tensor3D, b: y as tf.Tensor3D, transposeA: true, transposeB: true, bias: z, activation });
        return [f(a, b, bias), ...(activation === "linear" || activation === "relu" ? tf.grads((x, y, z) => tf.sum(f(x, y, z)))([a, b, bias]) : [])];
      });
    }
  });
});

describe("wasm UnsortedSegmentSum (scatter-add)", () => {
  it("matches cpu on repeated, unused and out-of-range segment ids", async () => {
    await expectWasmMatchesCpu("segmentSum", () =>
      tf.unsortedSegmentSum(rand([6, 5], 7), tf.tensor1d([2, 0, 2, 9, -1, 2], "int32"), 4),
    );
  });

  it("sums int32 rows of rank-3 values", async () => {
    await expectWasmMatchesCpu("segmentSum int32", () =>
      tf.unsortedSegmentSum(tf.range(0, 24, 1, "int32").reshape([4, 3, 2]), tf.tensor1d([1, 0, 1, 1], "int32"), 3),
    );
  });

  it("gives the embedding gradient of gather (the reason it exists), matching cpu", async () => {
    await expectWasmMatchesCpu("gather grad", () => {
      const table = rand([11, 6], 8); // (V,C)
      const ids = tf.tensor2d(randomInts(4 * 9, 11, 9), [4, 9], "int32"); // (B,T)
      const w = rand([4, 9, 6], 10);
      const grad = tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, ids), w)))(table);
      return [tf.gather(table, ids), grad];
    });
  });
});

describe("wasm Slice / Unpack / SplitV (heap views)", () => {
  const shape = [3, 4, 5, 6];
  it("slices every rank-4 block shape like cpu", async () => {
    await expectWasmMatchesCpu("slice", () => {
      const x = rand(shape, 11);
      return [
        tf.slice(x, [1, 0, 0, 0], [2, 4, 5, 6]),
        tf.slice(x, [0, 1, 2, 3], [3, 2, 3, 3]),
        tf.slice(x, [2, 3, 4, 5], [1, 1, 1, 1]),
        tf.slice(x, [0, 0, 0, 2], [3, 4, 5, 0]),
        tf.slice(tf.reshape(x, [360]), [17], [100]),
        tf.slice(tf.reshape(x, [3, 2, 2, 5, 6]), [1, 1, 0, 1, 0], [2, 1, 2, 3, 6]),
      ];
    }, 0);
  });

  it("unstacks and splits along every axis like cpu", async () => {
    await expectWasmMatchesCpu("unstack/split", () => {
      const x = rand(shape, 12);
      return [0, 1, 2, 3].flatMap((axis) => [...tf.unstack(x, axis), ...tf.split(x, [1, shape[axis] - 1], axis)]);
    }, 0);
  });

  it("keeps int32 values intact", async () => {
    await expectWasmMatchesCpu("int slice", () => tf.slice(tf.range(0, 60, 1, "int32").reshape([3, 4, 5]), [1, 1, 1], [2, 2, 3]), 0);
  });
});

describe("wasm kernel fixes and memory", () => {
  it("leaves no tensor behind over repeated matmul, gather and slice gradients", async () => {
    await tf.setBackend("wasm");
    const a = rand([8, 5], 13);
    const b = rand([5, 7], 14);
    const table = rand([10, 5], 15);
    const ids = tf.tensor1d([1, 3, 3, 9], "int32");
    const step = () =>
      tf.tidy(() => {
        const f = (x: tf.Tensor, y: tf.Tensor, e: tf.Tensor) =>
          tf.sum(tf.matMul(x, y, false, false)).add(tf.sum(tf.gather(e, ids))).add(tf.sum(tf.unstack(x, 1)[2]).add(tf.sum(tf.split(x, 2, 0)[1])));
        tf.grads(f)([a, b, table]).forEach((g) => g.dataSync());
      });
    step();
    const buffers = tf.memory().numDataBuffers;
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 5; i++) step();
    });
    // Backend storage too, including the kernels' internal temporaries (transposes, slices).
    expect(tf.memory().numDataBuffers).toBe(buffers);
    tf.dispose([a, b, table, ids]);
  });
});
