import * as tf from "@tensorflow/tfjs-core";
import { type Addon, ReduceOp } from "./addon";
import { allocateF32, f32, nativeKernel, output } from "./kernelUtil";

/**
 * Split a shape into alternating runs of kept and reduced dims (size-1 dims dropped), each run
 * collapsed to its size: the addon reduces the middle of (outer, R, inner) one reduced run at a time.
 */
export const reductionRuns = (shape: ReadonlyArray<number>, axes: ReadonlyArray<number>): Array<{ size: number; reduced: boolean }> => {
  const runs: Array<{ size: number; reduced: boolean }> = [];
  shape.forEach((size, d) => {
    if (size === 1) return;
    const reduced = axes.includes(d);
    const last = runs[runs.length - 1];
    if (last !== undefined && last.reduced === reduced) last.size *= size;
    else runs.push({ size, reduced });
  });
  return runs;
};

export const reduceKernel = (addon: Addon, kernelName: string, op: number): tf.KernelFunc =>
  nativeKernel(kernelName, (args, backend) => {
    const { x } = args.inputs;
    if (x.dtype !== "float32") return undefined;
    // Sum and Mean name the axes `axis`; Max and Min `reductionIndices`.
    // Either may be null: all axes.
    const attrs = args.attrs as { axis?: number | Array<number> | null; reductionIndices?: number | Array<number> | null; keepDims: boolean };
    const keepDims = attrs.keepDims;
    const axis = "axis" in attrs ? attrs.axis : attrs.reductionIndices;
    const axes = tf.util.parseAxisParam(axis as number | Array<number>, x.shape);
    const outShape = keepDims ? x.shape.map((s, d) => (axes.includes(d) ? 1 : s)) : x.shape.filter((_, d) => !axes.includes(d));
    let values = f32(backend, x);
    let runs = reductionRuns(x.shape, axes);
    if (tf.util.sizeFromShape(x.shape) === 0) {
      // Empty input: what an empty reduction gives (0 for sums, NaN for means, ∓inf for max/min).
      const out = allocateF32(backend, tf.util.sizeFromShape(outShape));
      if (out.length > 0) addon.reduce(op, values, out, out.length, 0, 1);
      return output(backend, outShape, "float32", out);
    }
    if (!runs.some((r) => r.reduced)) return output(backend, outShape, "float32", values.slice());
    // Innermost reduced run first; each pass removes one run. Means of equal-sized groups compose.
    while (runs.some((r) => r.reduced)) {
      const at = runs.map((r) => r.reduced).lastIndexOf(true);
      const outer = runs.slice(0, at).reduce((n, r) => n * r.size, 1);
      const inner = runs.slice(at + 1).reduce((n, r) => n * r.size, 1);
      const out = allocateF32(backend, outer * inner);
      addon.reduce(op, values, out, outer, runs[at].size, inner);
      values = out;
      runs = runs.filter((_, i) => i !== at);
    }
    return output(backend, outShape, "float32", values);
  });

export const reduceKernels: ReadonlyArray<[string, number]> = [
  ["Sum", ReduceOp.Sum],
  ["Max", ReduceOp.Max],
  ["Min", ReduceOp.Min],
  ["Mean", ReduceOp.Mean],
];

export const softmaxKernel = (addon: Addon): tf.KernelFunc =>
  nativeKernel("Softmax", (args, backend) => {
    const { logits } = args.inputs;
    const { dim } = args.attrs as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return undefined;
    const cols = logits.shape[rank - 1];
    const out = allocateF32(backend, tf.util.sizeFromShape(logits.shape));
    if (out.length > 0) addon.softmax(f32(backend, logits), out, out.length / cols, cols);
    return output(backend, logits.shape, "float32", out);
  });
