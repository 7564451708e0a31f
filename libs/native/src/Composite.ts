import * as tf from "@tensorflow/tfjs-core";

/**
 * Kernels composed from other kernels of the same backend. Shared by the `native` backend and
 * the `wasm` fixes in libs/backend (the wasm `_FusedMatMul` adds its bias wrongly for batched
 * inputs, so it is rebuilt from `BatchMatMul`, `Add` and the activation kernels).
 */

type Info = tf.TensorInfo;
// Kernels are only called with the inputs their op declares; optional ones (bias) may be absent.
type Args = Omit<Parameters<tf.KernelFunc>[0], "inputs"> & { inputs: Record<string, Info> };

const call = (backendName: string, name: string, args: Args, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): Info => {
  const config = tf.getKernel(name, backendName);
  if (config === undefined) throw new Error(`kernel ${name} is not registered for ${backendName}`);
  return config.kernelFunc({ inputs, backend: args.backend, attrs }) as Info;
};

const activate = (backendName: string, args: Args, x: Info): Info => {
  const attrs = args.attrs as { activation: string; leakyreluAlpha?: number };
  switch (attrs.activation) {
    case "linear":
      return x;
    case "relu":
      return call(backendName, "Relu", args, { x });
    case "relu6":
      return call(backendName, "Relu6", args, { x });
    case "elu":
      return call(backendName, "Elu", args, { x });
    case "sigmoid":
      return call(backendName, "Sigmoid", args, { x });
    case "leakyrelu":
      return call(backendName, "LeakyRelu", args, { x }, { alpha: attrs.leakyreluAlpha ?? 0.2 });
    case "prelu":
      return call(backendName, "Prelu", args, { x, alpha: args.inputs.preluActivationWeights });
    default:
      throw new Error(`_FusedMatMul: unsupported activation ${attrs.activation}`);
  }
};

/**
 * `_FusedMatMul` as `BatchMatMul` (the backend's registered one, so its fast paths apply), then
 * `Add` for the bias, then the activation kernel. Intermediates are released before returning.
 */
export const fusedMatMul = (backendName: string): tf.KernelFunc => {
  const kernel = (args: Args): Info => {
    const { a, b } = args.inputs;
    const bias = args.inputs.bias as Info | undefined;
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const product = call(backendName, "BatchMatMul", args, { a, b }, { transposeA, transposeB });
    const biased = bias === undefined ? product : call(backendName, "Add", args, { a: product, b: bias });
    const activated = activate(backendName, args, biased);
    for (const t of new Set([product, biased])) if (t !== activated) (args.backend as tf.KernelBackend).disposeData(t.dataId);
    return activated;
  };
  return kernel as tf.KernelFunc;
};

/**
 * Offsets of each output batch item's operand, for batch dims broadcast NumPy-style (right
 * aligned, size-1 dims repeat). `matrix` is the size of one operand matrix.
 */
export const batchOffsets = (operandBatch: ReadonlyArray<number>, outBatch: ReadonlyArray<number>, matrix: number): Int32Array => {
  const count = outBatch.reduce((a, b) => a * b, 1);
  const offsets = new Int32Array(count);
  const operandCount = operandBatch.reduce((a, b) => a * b, 1);
  if (operandCount === count) {
    // Same shape up to leading 1s: item i is item i.
    for (let i = 0; i < count; i++) offsets[i] = i * matrix;
    return offsets;
  }
  if (operandCount === 1) return offsets;
  const shift = outBatch.length - operandBatch.length;
  const strides = tf.util.computeStrides(operandBatch as Array<number>).concat([1]);
  for (let i = 0; i < count; i++) {
    let rest = i;
    let flat = 0;
    for (let axis = outBatch.length - 1; axis >= 0; axis--) {
      const coord = rest % outBatch[axis];
      rest = Math.floor(rest / outBatch[axis]);
      const own = axis - shift;
      if (own >= 0 && operandBatch[own] !== 1) flat += coord * strides[own];
    }
    offsets[i] = flat * matrix;
  }
  return offsets;
};

/** One slice of `x` (begin, size), written by the backend's own copy routine. */
export type Slicer = (args: Args, x: Info, begin: ReadonlyArray<number>, size: ReadonlyArray<number>) => Info;

/** `SplitV` as consecutive slices along the axis. */
export const splitV =
  (slice: Slicer) =>
  (args: Args): Array<Info> => {
    const x = args.inputs.x;
    const attrs = args.attrs as { numOrSizeSplits: number | Array<number>; axis: number };
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits, axis);
    let at = 0;
    return sizes.map((s) => {
      const begin = x.shape.map((_, d) => (d === axis ? at : 0));
      at += s;
      return slice(args, x, begin, x.shape.map((n, d) => (d === axis ? s : n)));
    });
  };

/** `Unpack` as one slice per index along the axis, each viewed without that axis. */
export const unpack =
  (slice: Slicer) =>
  (args: Args): Array<Info> => {
    const value = args.inputs.value;
    const rank = value.shape.length;
    const axis = ((args.attrs as { axis: number }).axis + rank) % rank;
    const outShape = value.shape.filter((_, d) => d !== axis);
    const size = value.shape.map((n, d) => (d === axis ? 1 : n));
    return Array.from({ length: value.shape[axis] }, (_, i) => {
      const piece = slice(args, value, value.shape.map((_, d) => (d === axis ? i : 0)), size);
      return { dataId: piece.dataId, dtype: piece.dtype, shape: outShape };
    });
  };
