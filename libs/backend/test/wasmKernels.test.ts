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

// Two threads whatever the load: the threaded build is the one these fixes must hold on (its
// heap is shared memory), and results must not depend on the thread count.
beforeAll(() => runTest(ComputeBackend.make({ backend: "wasm", threads: 2 }).pipe(Logger.withMinimumLogLevel(LogLevel.None))));

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
    // Few rows against a wide op(B): transposeB takes the swapped order (op(B)ᵀ·op(A)ᵀ)ᵀ.
    { a: [], b: [], M: 3, N: 40, K: 6 },
    { a: [2], b: [2], M: 2, N: 33, K: 5 },
    { a: [3], b: [], M: 1, N: 17, K: 9 },
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

describe("wasm Transpose (tiled copy)", () => {
  const cases: Array<{ shape: Array<number>; perm: Array<number> }> = [
    { shape: [7], perm: [0] },
    { shape: [19, 23], perm: [1, 0] },
    { shape: [1, 9], perm: [1, 0] },
    { shape: [3, 17, 10], perm: [0, 2, 1] },
    { shape: [3, 17, 10], perm: [1, 0, 2] },
    { shape: [3, 17, 10], perm: [2, 0, 1] },
    { shape: [3, 17, 10], perm: [1, 2, 0] },
    { shape: [2, 9, 3, 5], perm: [0, 2, 1, 3] },
    { shape: [2, 9, 3, 5], perm: [0, 2, 3, 1] },
    { shape: [2, 9, 1, 5], perm: [3, 2, 0, 1] },
    { shape: [2, 3, 4, 5, 6], perm: [4, 0, 3, 1, 2] },
    { shape: [2, 1, 1], perm: [2, 1, 0] },
    { shape: [4, 0, 3], perm: [2, 0, 1] },
  ];
  for (const c of cases) {
    it(`permutes ${JSON.stringify(c.shape)} by ${JSON.stringify(c.perm)} like cpu`, async () => {
      await expectWasmMatchesCpu("transpose", () => tf.transpose(rand(c.shape, 16), c.perm), 0);
    });
  }

  it("keeps int32 and bool values, and carries the gradient", async () => {
    await expectWasmMatchesCpu("transpose dtypes", () => {
      const ints = tf.range(0, 60, 1, "int32").reshape([3, 4, 5]);
      const x = rand([4, 6, 5], 17);
      const w = rand([5, 4, 6], 18);
      return [
        tf.transpose(ints, [2, 0, 1]),
        tf.cast(tf.transpose(tf.greater(ints, 29), [1, 2, 0]), "float32"),
        tf.grad((y: tf.Tensor) => tf.sum(tf.mul(tf.transpose(y, [2, 0, 1]), w)))(x),
      ];
    }, 0);
  });
});

describe("wasm Identity and same-dtype Cast (shared storage)", () => {
  it("give the input's values without a copy, and each stays valid after the other is disposed", async () => {
    await tf.setBackend("wasm");
    const buffers = tf.memory().numDataBuffers;
    const x = rand([5, 3], 19);
    const expected = Float32Array.from(x.dataSync());
    const clone = tf.clone(x);
    const same = tf.cast(x, "float32");
    expect(tf.memory().numDataBuffers).toBe(buffers + 1);
    x.dispose();
    expect(Float32Array.from(clone.dataSync())).toEqual(expected);
    clone.dispose();
    expect(Float32Array.from(same.dataSync())).toEqual(expected);
    same.dispose();
    expect(tf.memory().numDataBuffers).toBe(buffers);
  });

  it("still converts between dtypes, matching cpu", async () => {
    await expectWasmMatchesCpu("cast", () => {
      const x = tf.mul(rand([4, 5], 20), 7);
      return [tf.cast(tf.cast(x, "int32"), "float32"), tf.cast(tf.cast(x, "bool"), "float32"), tf.clone(x)];
    }, 0);
  });
});

describe("wasm GatherV2 (row copies)", () => {
  it("gathers along every axis, with batch dims, short and long rows, like cpu", async () => {
    await expectWasmMatchesCpu("gather", () => {
      const x = rand([3, 4, 20], 21);
      const small = rand([6, 3], 22);
      return [
        tf.gather(small, tf.tensor1d([5, 0, 5, 2], "int32")),
        tf.gather(x, tf.tensor2d([2, 0, 1, 2], [2, 2], "int32"), 0),
        tf.gather(x, tf.tensor1d([3, 3, 0], "int32"), 1),
        tf.gather(x, tf.tensor1d([19, 0, 7], "int32"), 2),
        tf.gather(x, tf.tensor2d([1, 0, 3, 3, 2, 2], [3, 2], "int32"), 1, 1),
        tf.cast(tf.gather(tf.range(0, 12, 1, "int32").reshape([4, 3]), tf.tensor1d([3, 1], "int32")), "float32"),
        tf.gather(small, tf.tensor1d([], "int32")),
      ];
    }, 0);
  });

  it("rejects an index outside the axis, naming it", async () => {
    await tf.setBackend("wasm");
    const x = rand([4, 3], 23);
    const ids = tf.tensor1d([1, 4], "int32");
    expect(() => tf.gather(x, ids)).toThrow("GatherV2: the index value 4 is not in [0, 3]");
    tf.dispose([x, ids]);
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
