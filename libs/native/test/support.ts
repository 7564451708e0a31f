import * as tf from "@tensorflow/tfjs";
import { expectClose, randomFloats } from "@patchlm/testing";
import { NativeBackend } from "../src";

/**
 * Register `native` for a test file. CI builds the addon (.ci/run installs libopenblas-dev), so
 * there a missing addon is a failure; elsewhere the native suites are skipped with the reason.
 */
export const registration = NativeBackend.register({ threads: 2 });
export const nativeAvailable = registration._tag === "Registered";
if (registration._tag === "Unavailable" && process.env.CI !== undefined) {
  throw new Error(`native addon unavailable in CI: ${registration.reason}`);
}
export const describeNative = nativeAvailable ? describe : describe.skip;

export type Compute = () => tf.Tensor | Array<tf.Tensor>;

/** Outputs of `compute` on one backend, as plain copies. */
export const outputsOn = async (backend: string, compute: Compute): Promise<Array<{ shape: Array<number>; values: Float32Array }>> => {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const out = compute();
    return (Array.isArray(out) ? out : [out]).map((t) => ({ shape: t.shape, values: Float32Array.from(t.dataSync()) }));
  });
};

/**
 * `compute` on native against the cpu backend: same shapes, values within tolerance. A different
 * `reference` computation can stand in on cpu where the cpu kernel itself is wrong.
 */
export const expectNativeMatchesCpu = async (label: string, compute: Compute, atol = 1e-4, rtol = 1e-4, reference = compute): Promise<void> => {
  const expected = await outputsOn("cpu", reference);
  const actual = await outputsOn("native", compute);
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => {
    expect(a.shape).toEqual(expected[i].shape);
    expectClose(a.values, expected[i].values, { atol, rtol, label: `${label} output ${i}` });
  });
};

export const rand = (shape: Array<number>, seed: number, lo = -1, hi = 1): tf.Tensor =>
  tf.tensor(randomFloats(tf.util.sizeFromShape(shape), seed, lo, hi), shape);
