import * as tf from "@tensorflow/tfjs-core";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { batchOffsets } from "../Composite";
import type { Addon } from "./addon";
import { allocateF32, f32, type Info, nativeKernel, output } from "./kernelUtil";

/** out = op(a)·op(b) over broadcast batch dims, on the operands' storage, with no copies. */
export const matMul = (addon: Addon, backend: MathBackendCPU, a: Info, b: Info, transposeA: boolean, transposeB: boolean): Info => {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  tf.util.assert(
    K === Kb,
    () => `Error in matMul: inner shapes (${K}) and (${Kb}) of Tensors with shapes ${a.shape} and ${b.shape} and ` +
      `transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
  const batch = tf.util.sizeFromShape(outBatch);
  const out = allocateF32(backend, batch * M * N);
  const result = output(backend, [...outBatch, M, N], "float32", out);
  if (out.length === 0) return result;
  const av = f32(backend, a);
  const bv = f32(backend, b);
  if (tf.util.sizeFromShape(bBatch) === 1 && !transposeA) {
    // One shared right operand: the batch of row-major A matrices is one tall matrix, and one big
    // GEMM beats `batch` small ones (every linear layer on (B,T,C) activations lands here).
    addon.gemm(av, bv, out, batch * M, N, K, false, transposeB, new Int32Array(1), new Int32Array(1));
    return result;
  }
  addon.gemm(av, bv, out, M, N, K, transposeA, transposeB, batchOffsets(aBatch, outBatch, M * K), batchOffsets(bBatch, outBatch, K * N));
  return result;
};

export const batchMatMulKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("BatchMatMul", (args, backend) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
    return matMul(addon, backend, a, b, transposeA, transposeB);
  });
