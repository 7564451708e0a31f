import * as tf from "@tensorflow/tfjs-core";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import * as Composite from "../Composite";
import type { Addon } from "./addon";
import { coalesce } from "./elementwise";
import { allocate, allocateF32, f32, i32, type Info, isWords, type KernelArgs, nativeKernel, output } from "./kernelUtil";
import type { Words } from "./storage";

const contiguousStrides = (shape: ReadonlyArray<number>): Array<number> => [...tf.util.computeStrides(shape as Array<number>), 1].slice(-Math.max(shape.length, 1));

/**
 * Copy `shape` elements from `src` (at srcOffset, strides srcStrides) to `dst` (at dstOffset,
 * strides dstStrides), after coalescing the dims.
 */
export const copy = (
  addon: Addon,
  src: Words,
  srcOffset: number,
  srcStrides: ReadonlyArray<number>,
  dst: Words,
  dstOffset: number,
  dstStrides: ReadonlyArray<number>,
  shape: ReadonlyArray<number>,
): void => {
  if (tf.util.sizeFromShape(shape as Array<number>) === 0) return;
  const plan = coalesce(shape, [srcStrides, dstStrides]);
  addon.stridedCopy(src, srcOffset, dst, dstOffset, plan.shape, plan.strides[0], plan.strides[1]);
};

/** The addon's stride loops take up to 8 dims. */
const maxRank = 8;
const movable = (t: Info): boolean => isWords(t.dtype) && t.shape.length <= maxRank;

const words = (backend: MathBackendCPU, t: Info): Words => (t.dtype === "float32" ? f32(backend, t) : i32(backend, t));

export const transposeKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Transpose", (args, backend) => {
    const { x } = args.inputs;
    const { perm } = args.attrs as { perm: Array<number> };
    if (!movable(x)) return undefined;
    const outShape = perm.map((p) => x.shape[p]);
    const xStrides = contiguousStrides(x.shape);
    const out = allocate(backend, x.dtype, tf.util.sizeFromShape(outShape));
    copy(addon, words(backend, x), 0, perm.map((p) => xStrides[p]), out, 0, contiguousStrides(outShape), outShape);
    return output(backend, outShape, x.dtype, out);
  });

/** One slice, as a kernel building block (Slice, and the pieces of SplitV/Unpack). */
const sliceInfo = (addon: Addon, backend: MathBackendCPU, x: Info, begin: ReadonlyArray<number>, size: ReadonlyArray<number>): Info => {
  const xStrides = contiguousStrides(x.shape);
  const offset = begin.reduce((o, b, d) => o + b * xStrides[d], 0);
  const out = allocate(backend, x.dtype, tf.util.sizeFromShape(size as Array<number>));
  copy(addon, words(backend, x), offset, xStrides, out, 0, contiguousStrides(size), size);
  return output(backend, size, x.dtype, out);
};

export const sliceKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Slice", (args, backend) => {
    const { x } = args.inputs;
    if (!movable(x)) return undefined;
    const attrs = args.attrs as { begin: number | Array<number>; size?: number | Array<number> };
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    return sliceInfo(addon, backend, x, begin, size);
  });

export const splitVKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("SplitV", (args, backend) =>
    movable(args.inputs.x) ? Composite.splitV((_, x, begin, size) => sliceInfo(addon, backend, x, begin, size))(args) : undefined,
  );

export const unpackKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Unpack", (args, backend) =>
    movable(args.inputs.value) ? Composite.unpack((_, x, begin, size) => sliceInfo(addon, backend, x, begin, size))(args) : undefined,
  );

/** Write each input at its offset along `axis` of the output (Concat; Pack is a concat of expanded inputs). */
const joinAlong = (addon: Addon, backend: MathBackendCPU, inputs: ReadonlyArray<Info>, shapes: ReadonlyArray<ReadonlyArray<number>>, axis: number, outShape: ReadonlyArray<number>, dtype: tf.DataType): Info => {
  const out = allocate(backend, dtype, tf.util.sizeFromShape(outShape as Array<number>));
  const outStrides = contiguousStrides(outShape);
  let at = 0;
  inputs.forEach((t, i) => {
    const shape = shapes[i];
    copy(addon, words(backend, t), 0, contiguousStrides(shape), out, at * outStrides[axis], outStrides, shape);
    at += shape[axis];
  });
  return output(backend, outShape, dtype, out);
};

const inputList = (args: KernelArgs): Array<Info> => Object.values(args.inputs);

export const concatKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Concat", (args, backend) => {
    const inputs = inputList(args);
    const dtype = inputs[0].dtype;
    if (inputs.some((t) => t.dtype !== dtype || !movable(t))) return undefined;
    const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, inputs[0].shape)[0];
    const shapes = inputs.map((t) => t.shape);
    tf.backend_util.assertParamsConsistent(shapes, axis);
    const outShape = tf.backend_util.computeOutShape(shapes, axis);
    return joinAlong(addon, backend, inputs, shapes, axis, outShape, dtype);
  });

export const packKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Pack", (args, backend) => {
    const inputs = inputList(args);
    const dtype = inputs[0].dtype;
    // Stacking adds a dim.
    if (inputs.some((t) => t.dtype !== dtype || !movable(t) || t.shape.length === maxRank)) return undefined;
    const rank = inputs[0].shape.length + 1;
    const axis = ((args.attrs as { axis: number }).axis + rank) % rank;
    const shapes = inputs.map((t) => [...t.shape.slice(0, axis), 1, ...t.shape.slice(axis)]);
    const outShape = [...inputs[0].shape.slice(0, axis), inputs.length, ...inputs[0].shape.slice(axis)];
    return joinAlong(addon, backend, inputs, shapes, axis, outShape, dtype);
  });

export const padKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("PadV2", (args, backend) => {
    const { x } = args.inputs;
    if (!movable(x)) return undefined;
    const { paddings, constantValue } = args.attrs as { paddings: Array<[number, number]>; constantValue: number };
    const outShape = x.shape.map((s, d) => paddings[d][0] + s + paddings[d][1]);
    const out = allocate(backend, x.dtype, tf.util.sizeFromShape(outShape));
    out.fill(constantValue);
    const outStrides = contiguousStrides(outShape);
    const offset = paddings.reduce((o, [before], d) => o + before * outStrides[d], 0);
    copy(addon, words(backend, x), 0, contiguousStrides(x.shape), out, offset, outStrides, x.shape);
    return output(backend, outShape, x.dtype, out);
  });

export const gatherKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("GatherV2", (args, backend) => {
    const { x, indices } = args.inputs;
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (!isWords(x.dtype) || indices.dtype !== "int32" || batchDims !== 0) return undefined;
    const a = tf.util.parseAxisParam(axis, x.shape)[0];
    const outer = tf.util.sizeFromShape(x.shape.slice(0, a));
    const inner = tf.util.sizeFromShape(x.shape.slice(a + 1));
    const outShape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
    const out = allocate(backend, x.dtype, tf.util.sizeFromShape(outShape));
    if (out.length > 0) {
      const ids = i32(backend, indices);
      const bad = addon.gather(words(backend, x), ids, out, outer, x.shape[a], inner);
      if (bad >= 0) throw new Error(`GatherV2: the index value ${ids[bad]} is not in [0, ${x.shape[a] - 1}]`);
    }
    return output(backend, outShape, x.dtype, out);
  });

/** Flat row ids of scatter indices (N, depth) into the first `depth` dims of `shape`. */
const flatRows = (indices: Int32Array, depth: number, shape: ReadonlyArray<number>): Int32Array => {
  const strides = contiguousStrides(shape.slice(0, depth));
  const n = indices.length / depth;
  const rows = new Int32Array(n);
  const bound = tf.util.sizeFromShape(shape.slice(0, depth) as Array<number>);
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (let d = 0; d < depth; d++) {
      const v = indices[i * depth + d];
      if (v < 0 || v >= shape[d]) {
        r = -1;
        break;
      }
      r += v * strides[d];
    }
    rows[i] = r < 0 ? bound : r;
  }
  return rows;
};

export const scatterNdKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("ScatterNd", (args, backend) => {
    const { indices, updates } = args.inputs;
    const { shape } = args.attrs as { shape: Array<number> };
    if (updates.dtype !== "float32" || indices.dtype !== "int32") return undefined;
    const depth = indices.shape[indices.shape.length - 1];
    const out = allocateF32(backend, tf.util.sizeFromShape(shape), true);
    const n = tf.util.sizeFromShape(indices.shape) / depth;
    if (out.length > 0 && n > 0) {
      const rows = flatRows(i32(backend, indices), depth, shape);
      const inner = tf.util.sizeFromShape(shape.slice(depth));
      addon.scatterAdd(f32(backend, updates), rows, out, out.length / inner, inner);
    }
    return output(backend, shape, "float32", out);
  });

export const unsortedSegmentSumKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("UnsortedSegmentSum", (args, backend) => {
    const { x, segmentIds } = args.inputs;
    const { numSegments } = args.attrs as { numSegments: number };
    if (x.dtype !== "float32" || segmentIds.dtype !== "int32") return undefined;
    const innerShape = x.shape.slice(segmentIds.shape.length);
    const inner = tf.util.sizeFromShape(innerShape);
    const out = allocateF32(backend, numSegments * inner, true);
    if (out.length > 0 && tf.util.sizeFromShape(segmentIds.shape) > 0) {
      addon.scatterAdd(f32(backend, x), i32(backend, segmentIds), out, numSegments, inner);
    }
    return output(backend, [numSegments, ...innerShape], "float32", out);
  });
