import { type Compute, expectMatchesCpu, randomTensor } from "@patchlm/testing";
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

/** `compute` on native against the cpu backend (see `expectMatchesCpu`). */
export const expectNativeMatchesCpu = (label: string, compute: Compute, atol = 1e-4, rtol = 1e-4, reference = compute): Promise<void> =>
  expectMatchesCpu("native", label, compute, { atol, rtol, reference });

export const rand = randomTensor;

/** The operand of a batched matmul: (batch…, rows, cols), or (batch…, cols, rows) transposed. */
export const operandShape = (batch: Array<number>, rows: number, cols: number, transpose: boolean) =>
  [...batch, ...(transpose ? [cols, rows] : [rows, cols])];

/** A batched product op(a)·op(b): the batch dims of each side (broadcast), M, N, K. */
export interface MatMulCase {
  readonly a: Array<number>;
  readonly b: Array<number>;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

/** Batched, broadcast, empty and size-1 products (matmul.test.ts and sgemm.test.ts). */
export const matMulCases: ReadonlyArray<MatMulCase> = [
  { a: [], b: [], M: 7, N: 5, K: 3 },
  { a: [], b: [], M: 1, N: 1, K: 1 },
  { a: [3], b: [3], M: 17, N: 9, K: 33 },
  { a: [2, 3], b: [2, 3], M: 1, N: 13, K: 8 },
  { a: [2, 3], b: [], M: 5, N: 4, K: 6 },
  { a: [2, 3], b: [1], M: 4, N: 6, K: 5 },
  { a: [1], b: [4], M: 3, N: 8, K: 2 },
  { a: [2, 1], b: [1, 3], M: 3, N: 2, K: 7 },
  { a: [4, 1, 2], b: [3, 1], M: 2, N: 3, K: 3 },
  { a: [], b: [], M: 0, N: 5, K: 3 },
  { a: [2], b: [2], M: 4, N: 3, K: 0 },
  { a: [0], b: [0], M: 4, N: 3, K: 2 },
  // Large enough to be split across the pool's threads: by rows (M ≥ N), by columns, batched.
  { a: [], b: [], M: 301, N: 77, K: 129 },
  { a: [], b: [], M: 45, N: 263, K: 97 },
  { a: [2], b: [2], M: 97, N: 65, K: 70 },
];
