import * as tf from "@tensorflow/tfjs-core";
import { expectClose } from "./Close";
import { randomFloats } from "./Rng";

/**
 * Assert that `fn` leaves no tensor behind: `tf.memory().numTensors` after equals before.
 * Awaits async functions, so it also covers code that crosses `await`.
 */
export const expectNoTensorLeak = async <A>(fn: () => A | Promise<A>, label = "expectNoTensorLeak"): Promise<A> => {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`${label}: tensor count went from ${before} to ${after}`);
  return result;
};

/** Use a known backend for a test file (default cpu) and wait until it is ready. */
export const useBackend = async (name = "cpu"): Promise<void> => {
  await tf.setBackend(name);
  await tf.ready();
};

/** A computation to run on several backends: one tensor or several. */
export type Compute = () => tf.Tensor | Array<tf.Tensor>;

/** Outputs of `compute` on a (registered) backend, as plain copies. */
export const outputsOn = async (backend: string, compute: Compute): Promise<Array<{ shape: Array<number>; values: Float32Array }>> => {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const out = compute();
    return (Array.isArray(out) ? out : [out]).map((t) => ({ shape: t.shape, values: Float32Array.from(t.dataSync()) }));
  });
};

/**
 * `compute` on `backend` against the cpu backend: same shapes, values within tolerance. A
 * different `reference` computation can stand in on cpu where the cpu kernel itself is wrong.
 */
export const expectMatchesCpu = async (
  backend: string,
  label: string,
  compute: Compute,
  options: { readonly atol?: number; readonly rtol?: number; readonly reference?: Compute } = {},
): Promise<void> => {
  const expected = await outputsOn("cpu", options.reference ?? compute);
  const actual = await outputsOn(backend, compute);
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => {
    expect(a.shape).toEqual(expected[i].shape);
    expectClose(a.values, expected[i].values, { atol: options.atol ?? 1e-4, rtol: options.rtol ?? 1e-4, label: `${label} output ${i}` });
  });
};

/** A float32 tensor of uniform values in [lo, hi) from a seed. */
export const randomTensor = (shape: Array<number>, seed: number, lo = -1, hi = 1): tf.Tensor =>
  tf.tensor(randomFloats(tf.util.sizeFromShape(shape), seed, lo, hi), shape);
