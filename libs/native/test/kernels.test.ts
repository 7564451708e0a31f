import * as tf from "@tensorflow/tfjs";
import { expectNoTensorLeak } from "@patchlm/testing";
import { describeNative, expectNativeMatchesCpu, rand } from "./support";

type Op2 = (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
type Op1 = (x: tf.Tensor) => tf.Tensor;

const shapePairs: Array<[Array<number>, Array<number>]> = [
  [[7, 5], [7, 5]],
  [[7, 5], [5]],
  [[7, 1], [1, 5]],
  [[2, 3, 4], [3, 1]],
  [[], [4, 3]],
  [[4, 3], []],
  [[1], [1]],
  [[0, 3], [3]],
  [[2, 1, 3, 1], [1, 4, 1, 5]],
  [[3, 4], [2, 3, 4]],
  [[131, 129], [129]],
  [[131, 1], [131, 129]],
];

const binaries: Array<[string, Op2]> = [
  ["add", tf.add],
  ["sub", tf.sub],
  ["mul", tf.mul],
  ["div", tf.div],
  ["maximum", tf.maximum],
  ["minimum", tf.minimum],
  ["squaredDifference", tf.squaredDifference],
];

// Divisors kept away from 0: values in ±[0.5, 1.5].
const awayFromZero = (shape: Array<number>, seed: number) => tf.tidy(() => {
  const u = rand(shape, seed, 0.5, 1.5);
  return tf.mul(u, tf.sign(rand(shape, seed + 1)));
});

describeNative("native elementwise kernels", () => {
  for (const [name, op] of binaries) {
    it(`${name} matches cpu on broadcasting, scalar, size-1, empty and large shapes`, async () => {
      for (const [i, [sa, sb]] of shapePairs.entries()) {
        await expectNativeMatchesCpu(`${name} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`, () =>
          op(rand(sa, 10 + i), name === "div" ? awayFromZero(sb, 20 + i) : rand(sb, 20 + i)),
        // cpu squares in float64 before rounding: one float32 rounding apart.
        0, name === "squaredDifference" ? 3e-7 : 0);
      }
    });
  }

  it("gives cpu's gradients for broadcasting add, sub, mul and div", async () => {
    await expectNativeMatchesCpu("binary grads", () => {
      const a = rand([4, 1, 6], 1);
      const b = awayFromZero([3, 1], 2);
      const w = rand([4, 3, 6], 3);
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.div(tf.mul(tf.sub(tf.add(x, y), y), x), y), w));
      return tf.grads(f)([a, b]);
    }, 1e-5, 1e-5);
  });

  const unaries: Array<[string, Op1, (shape: Array<number>, seed: number) => tf.Tensor]> = [
    ["exp", tf.exp, (s, seed) => rand(s, seed, -30, 30)],
    ["log", tf.log, (s, seed) => rand(s, seed, 1e-3, 50)],
    ["neg", tf.neg, rand],
    ["sqrt", tf.sqrt, (s, seed) => rand(s, seed, 0, 9)],
    ["rsqrt", tf.rsqrt, (s, seed) => rand(s, seed, 1e-3, 9)],
    ["square", tf.square, rand],
    ["sigmoid", tf.sigmoid, (s, seed) => rand(s, seed, -40, 40)],
    ["abs", tf.abs, rand],
    ["relu", tf.relu, rand],
    ["reciprocal", tf.reciprocal, awayFromZero],
    ["tanh", tf.tanh, (s, seed) => rand(s, seed, -5, 5)],
  ];
  for (const [name, op, input] of unaries) {
    it(`${name} matches cpu within float rounding, small and large`, async () => {
      await expectNativeMatchesCpu(name, () => [op(input([37, 29], 3)), op(input([513, 97], 4)), op(input([0], 5))], 1e-6, 2e-6);
    });
  }

  it("exp and sigmoid handle the edges: exact 0 far below, inf above, NaN through, denormals", async () => {
    const edges = [-1e9, -1000, -104, -100, -88, -87.3, -1e-8, 0, 1e-8, 1, 88, 88.72, 89, 1000, Infinity, -Infinity];
    await expectNativeMatchesCpu("exp edges", () => tf.exp(tf.tensor1d(edges)), 0, 2e-7);
    await expectNativeMatchesCpu("sigmoid edges", () => tf.sigmoid(tf.tensor1d(edges)), 1e-7, 1e-6);
    await tf.setBackend("native");
    const far = tf.tidy(() => Array.from(tf.exp(tf.tensor1d([-1e9, -104, -1000])).dataSync()));
    expect(far).toEqual([0, 0, 0]);
    const nan = tf.tidy(() => [...tf.exp(tf.tensor1d([NaN])).dataSync(), ...tf.sigmoid(tf.tensor1d([NaN])).dataSync()]);
    expect(nan.every(Number.isNaN)).toBe(true);
  });
});

describeNative("native reductions and softmax", () => {
  const reductions: Array<[string, (x: tf.Tensor, axis: number | Array<number> | undefined, keep: boolean) => tf.Tensor]> = [
    ["sum", (x, a, k) => tf.sum(x, a, k)],
    ["mean", (x, a, k) => tf.mean(x, a, k)],
    ["max", (x, a, k) => tf.max(x, a, k)],
    ["min", (x, a, k) => tf.min(x, a, k)],
  ];
  const axesCases: Array<number | Array<number> | undefined> = [undefined, 0, 1, 3, -1, [0, 2], [1, 3], [0, 1, 2, 3], [2, 1]];
  for (const [name, op] of reductions) {
    it(`${name} matches cpu over every axis pattern, keepDims or not`, async () => {
      for (const axis of axesCases) {
        for (const keep of [false, true]) {
          await expectNativeMatchesCpu(`${name} axis ${JSON.stringify(axis)} keep ${keep}`, () => op(rand([3, 4, 5, 6], 7), axis, keep), 1e-5, 1e-5);
        }
      }
      await expectNativeMatchesCpu(`${name} size-1 dims`, () => [op(rand([3, 1, 5], 8), 1, false), op(rand([3, 1, 5], 8), [0, 1], true)], 1e-5, 1e-5);
      await expectNativeMatchesCpu(`${name} large`, () => [op(rand([300, 120], 9), 0, false), op(rand([300, 120], 9), 1, false), op(rand([300, 120], 9), undefined, false)], 1e-4, 1e-5);
    });
  }

  it("sums an empty axis to zeros, like cpu", async () => {
    await expectNativeMatchesCpu("empty sum", () => [tf.sum(tf.zeros([0, 4]), 0), tf.sum(tf.zeros([3, 0]), 1)], 0, 0);
  });

  it("reads float32 tensors whose storage is narrower (cpu's Cast from bool/int32 shares it)", async () => {
    await expectNativeMatchesCpu("cast storage", () => {
      const mask = tf.cast(tf.greater(rand([5, 4], 45), 0), "float32");
      const ints = tf.cast(tf.range(0, 20, 1, "int32").reshape([5, 4]), "float32");
      return [tf.mul(mask, rand([5, 4], 46)), tf.exp(tf.neg(ints)), tf.sum(ints, 0), tf.transpose(mask), tf.softmax(ints)];
    }, 1e-6, 1e-6);
  });

  it("gives cpu's gradients for sum, mean and max", async () => {
    await expectNativeMatchesCpu("reduce grads", () => {
      const x = rand([4, 5, 6], 11);
      return tf.grads((y: tf.Tensor) => tf.add(tf.add(tf.sum(tf.mul(tf.sum(y, 1), tf.mean(y, [0, 2]).reshape([5, 1]).sum())), tf.sum(tf.max(y, 2))), tf.mean(y)))([x]);
    }, 1e-5, 1e-5);
  });

  it("softmax matches cpu on odd, wide, 1-D and masked rows, with gradients", async () => {
    await expectNativeMatchesCpu("softmax", () => {
      const masked = tf.add(rand([8, 8], 12, -3, 3), tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([8, 8]), -1, 0)), -1e9));
      const x = rand([17, 33], 13, -10, 10);
      const w = rand([17, 33], 14);
      return [
        tf.softmax(x),
        tf.softmax(rand([24, 1000], 15, -20, 20)),
        tf.softmax(rand([10], 16)),
        tf.softmax(masked),
        tf.grad((y: tf.Tensor) => tf.sum(tf.mul(tf.softmax(y), w)))(x),
      ];
    }, 1e-6, 1e-5);
  });
});

describeNative("native data movement kernels", () => {
  const x4 = () => rand([2, 3, 4, 5], 21);
  const int4 = () => tf.range(0, 120, 1, "int32").reshape([2, 3, 4, 5]);

  it("transposes float and int32 tensors like cpu for every kind of permutation", async () => {
    const perms = [[0, 1, 2, 3], [0, 2, 1, 3], [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]];
    await expectNativeMatchesCpu("transpose", () => perms.flatMap((p) => [tf.transpose(x4(), p), tf.transpose(int4(), p)]), 0, 0);
    await expectNativeMatchesCpu("transpose 2-D large and size-1", () => [tf.transpose(rand([150, 131], 22)), tf.transpose(rand([1, 7, 1], 23), [2, 0, 1])], 0, 0);
  });

  it("slices, splits and unstacks like cpu", async () => {
    await expectNativeMatchesCpu("slice/split/unstack", () => [
      tf.slice(x4(), [1, 0, 1, 2], [1, 3, 2, 3]),
      tf.slice(x4(), [0, 1, 0, 0], [2, 1, 4, 5]),
      tf.slice(int4(), [1, 1, 1, 1], [1, 2, 3, 4]),
      tf.slice(x4(), [0, 0, 0, 0], [2, 3, 0, 5]),
      ...[0, 1, 2, 3].flatMap((axis) => [...tf.split(x4(), [1, x4().shape[axis] - 1], axis), ...tf.unstack(x4(), axis)]),
      ...tf.split(int4(), 2, 0),
    ], 0, 0);
  });

  it("concatenates, stacks and pads like cpu", async () => {
    await expectNativeMatchesCpu("concat/stack/pad", () => [
      tf.concat([rand([2, 3, 4], 24), rand([2, 1, 4], 25), rand([2, 0, 4], 26), rand([2, 5, 4], 27)], 1),
      tf.concat([rand([2, 3], 24), rand([2, 3], 25)], 0),
      tf.concat([tf.range(0, 6, 1, "int32").reshape([2, 3]), tf.range(6, 10, 1, "int32").reshape([2, 2])], 1),
      tf.stack([rand([3, 4], 28), rand([3, 4], 29), rand([3, 4], 30)], 1),
      tf.stack([rand([3, 4], 28), rand([3, 4], 29)], 2),
      tf.pad(rand([3, 4, 2], 31), [[1, 0], [0, 2], [1, 1]]),
      tf.pad(rand([3, 4], 32), [[2, 2], [0, 1]], 7.5),
      tf.pad(tf.range(0, 6, 1, "int32").reshape([2, 3]), [[0, 1], [1, 1]], 3),
    ], 0, 0);
  });

  it("gathers along any axis with any index shape, floats and int32, like cpu", async () => {
    const ids = () => tf.tensor2d([2, 0, 2, 1, 1, 0], [2, 3], "int32");
    await expectNativeMatchesCpu("gather", () => [
      tf.gather(rand([3, 5], 33), ids(), 0),
      tf.gather(rand([4, 3, 5], 34), ids(), 1),
      tf.gather(rand([4, 5, 3], 35), tf.tensor1d([0, 2, 2], "int32"), 2),
      tf.gather(int4(), tf.tensor1d([1, 0], "int32"), 0),
      tf.gather(rand([3, 5], 36), tf.tensor1d([], "int32"), 0),
    ], 0, 0);
  });

  it("rejects an out-of-range gather index", async () => {
    await tf.setBackend("native");
    expect(() => tf.tidy(() => tf.gather(rand([3, 5], 37), tf.tensor1d([0, 3], "int32"), 0))).toThrow(/index value 3 is not in \[0, 2\]/);
  });

  it("scatter-adds (scatterND, unsortedSegmentSum, the gather gradient) like cpu, duplicates summed", async () => {
    await expectNativeMatchesCpu("scatter", () => {
      const table = rand([11, 6], 38);
      const idsT = tf.tensor2d([1, 4, 4, 9, 0, 4, 10, 1], [2, 4], "int32");
      const w = rand([2, 4, 6], 39);
      return [
        tf.scatterND(tf.tensor2d([4, 1, 4, 0], [4, 1], "int32"), rand([4, 3], 40), [6, 3]),
        tf.scatterND(tf.tensor2d([1, 2, 0, 0, 1, 2], [3, 2], "int32"), rand([3, 4], 41), [2, 3, 4]),
        tf.unsortedSegmentSum(rand([6, 5], 42), tf.tensor1d([2, 0, 2, 3, 3, 2], "int32"), 4),
        tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, idsT), w)))(table),
        // Rows wider than one thread's column range (257 = ranges of 144 and 113 on two threads),
        // 3,000 updates into 50 rows: every row hit many times, from both ranges.
        tf.scatterND(tf.tensor2d(Array.from({ length: 3000 }, (_, i) => (i * 7) % 50), [3000, 1], "int32"), rand([3000, 257], 45), [50, 257]),
      ];
    }, 1e-6, 1e-6);
  });

  it("leaves no tensor or buffer behind over repeated mixed kernels and gradients", async () => {
    await tf.setBackend("native");
    const x = rand([4, 6, 8], 43);
    const table = rand([10, 8], 44);
    const ids = tf.tensor1d([1, 3, 3, 9], "int32");
    const step = () =>
      tf.tidy(() => {
        const f = (a: tf.Tensor, e: tf.Tensor) => {
          const h = tf.softmax(tf.transpose(tf.add(a, tf.gather(e, ids).reshape([4, 1, 8])), [0, 2, 1]));
          return tf.sum(tf.mul(tf.concat(tf.split(h, 2, 1), 1), tf.exp(tf.mean(a, 2, true).reshape([4, 1, 6]))));
        };
        tf.grads(f)([x, table]).forEach((g) => g.dataSync());
      });
    step();
    const buffers = tf.memory().numDataBuffers;
    await expectNoTensorLeak(() => {
      for (let i = 0; i < 10; i++) step();
    });
    expect(tf.memory().numDataBuffers).toBe(buffers);
    tf.dispose([x, table, ids]);
  });
});

describeNative("native output pool", () => {
  it("recycles disposed outputs without ever changing an array a caller read", async () => {
    await tf.setBackend("native");
    const x = rand([64, 64], 50);
    const first = tf.exp(x);
    const read = first.dataSync();
    const copy = Float32Array.from(read);
    first.dispose();
    // Same size: this output reuses the released array.
    const second = tf.neg(x);
    expect(Array.from(read)).toEqual(Array.from(copy));
    expect(second.dataSync()[0]).toBe(-x.dataSync()[0]);
    tf.dispose([x, second]);
  });

  it("zero-fills recycled arrays where a kernel accumulates (scatter-add)", async () => {
    await tf.setBackend("native");
    const updates = rand([1024, 2], 51);
    const dirty = tf.fill([2048, 2], 7);
    const junk = tf.add(dirty, 1);
    junk.dispose();
    const summed = tf.unsortedSegmentSum(updates, tf.fill([1024], 3, "int32"), 2048);
    const values = summed.dataSync();
    expect(values[0]).toBe(0);
    expect(values[6]).toBeCloseTo(tf.sum(updates, 0).dataSync()[0], 4);
    tf.dispose([updates, dirty, summed]);
  });
});
