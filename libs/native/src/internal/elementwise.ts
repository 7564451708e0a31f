import * as tf from "@tensorflow/tfjs-core";
import { type Addon, BinaryOp, UnaryOp } from "./addon";
import { allocateF32, f32, nativeKernel, output } from "./kernelUtil";

/** The broadcast of two shapes, coalesced: size-1 dims dropped, dims merged where both operands run contiguously. */
export interface BroadcastPlan {
  readonly outShape: Array<number>;
  readonly shape: Int32Array;
  readonly aStrides: Int32Array;
  readonly bStrides: Int32Array;
}

/** Element strides of `shape` right-aligned to `rank` dims, 0 where it broadcasts. */
const alignedStrides = (shape: ReadonlyArray<number>, outShape: ReadonlyArray<number>): Array<number> => {
  const strides = new Array<number>(outShape.length).fill(0);
  let acc = 1;
  for (let d = outShape.length - 1, k = shape.length - 1; d >= 0; d--, k--) {
    const size = k >= 0 ? shape[k] : 1;
    strides[d] = size === 1 ? 0 : acc;
    acc *= size;
  }
  return strides;
};

/**
 * Coalesce dims of a multi-operand iteration: drop size-1 dims, and merge a dim into the next
 * inner one when every operand's stride says they are one contiguous run.
 */
export const coalesce = (shape: ReadonlyArray<number>, strides: ReadonlyArray<ReadonlyArray<number>>) => {
  const dims: Array<{ size: number; strides: Array<number> }> = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    const own = strides.map((s) => s[d]);
    const inner = dims[dims.length - 1];
    if (inner !== undefined && own.every((s, i) => s === inner.strides[i] * inner.size)) inner.size *= shape[d];
    else dims.push({ size: shape[d], strides: own });
  }
  if (dims.length === 0) dims.push({ size: 1, strides: strides.map(() => 0) });
  dims.reverse();
  return {
    shape: Int32Array.from(dims.map((d) => d.size)),
    strides: strides.map((_, i) => Int32Array.from(dims.map((d) => d.strides[i]))),
  };
};

export const broadcastPlan = (aShape: ReadonlyArray<number>, bShape: ReadonlyArray<number>): BroadcastPlan => {
  const outShape = tf.broadcast_util.assertAndGetBroadcastShape(aShape as Array<number>, bShape as Array<number>);
  const { shape, strides } = coalesce(outShape, [alignedStrides(aShape, outShape), alignedStrides(bShape, outShape)]);
  return { outShape, shape, aStrides: strides[0], bStrides: strides[1] };
};

/** The addon's stride loops handle up to 8 coalesced dims; more falls back to the cpu kernel. */
const maxRank = 8;

export const binaryKernel = (addon: Addon, kernelName: string, op: number): tf.KernelFunc =>
  nativeKernel(kernelName, (args, backend) => {
    const { a, b } = args.inputs;
    if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
    const plan = broadcastPlan(a.shape, b.shape);
    if (plan.shape.length > maxRank) return undefined;
    const out = allocateF32(backend, tf.util.sizeFromShape(plan.outShape));
    if (out.length > 0) addon.binary(op, f32(backend, a), f32(backend, b), out, plan.shape, plan.aStrides, plan.bStrides);
    return output(backend, plan.outShape, "float32", out);
  });

export const unaryKernel = (addon: Addon, kernelName: string, op: number): tf.KernelFunc =>
  nativeKernel(kernelName, (args, backend) => {
    const { x } = args.inputs;
    if (x.dtype !== "float32") return undefined;
    const out = allocateF32(backend, tf.util.sizeFromShape(x.shape));
    if (out.length > 0) addon.unary(op, f32(backend, x), out, 0);
    return output(backend, x.shape, "float32", out);
  });

export const binaryKernels: ReadonlyArray<[string, number]> = [
  ["Add", BinaryOp.Add],
  ["Sub", BinaryOp.Sub],
  ["Multiply", BinaryOp.Mul],
  ["RealDiv", BinaryOp.Div],
  ["Maximum", BinaryOp.Max],
  ["Minimum", BinaryOp.Min],
  ["SquaredDifference", BinaryOp.SquaredDifference],
];

export const unaryKernels: ReadonlyArray<[string, number]> = [
  ["Exp", UnaryOp.Exp],
  ["Log", UnaryOp.Log],
  ["Neg", UnaryOp.Neg],
  ["Sqrt", UnaryOp.Sqrt],
  ["Rsqrt", UnaryOp.Rsqrt],
  ["Square", UnaryOp.Square],
  ["Sigmoid", UnaryOp.Sigmoid],
  ["Abs", UnaryOp.Abs],
  ["Relu", UnaryOp.Relu],
  ["Reciprocal", UnaryOp.Reciprocal],
  ["Tanh", UnaryOp.Tanh],
];

