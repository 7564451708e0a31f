import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { Composite } from "@patchlm/native";
import { makeBatchMatMul, makeTranspose } from "./wasmMatMul";

/**
 * Kernel fixes that make the `wasm` backend fit for training (stack.md, "TensorFlow.js backends"):
 *
 * - `UnsortedSegmentSum` is missing, so the gradient of `gather` (every embedding) fails. We add
 *   a scatter-add.
 * - `BatchMatMul` with `transposeA`/`transposeB`, or with batch dims, runs 10-30x slower than
 *   the plain 2-D form, and every matmul gradient uses the transposed forms. We route every
 *   matmul to the plain 2-D form (./wasmMatMul), and `Transpose` is a tiled copy there.
 * - `_FusedMatMul` adds its bias wrongly for batched inputs (and has the same slow transposed
 *   forms). We compose it from the fixed `BatchMatMul`, `Add` and the activation kernels.
 * - `Slice` copies the WHOLE input out of the wasm heap (`readSync`) before taking its piece, so
 *   `Unpack`/`split` into n pieces costs n times the input. We slice from a heap view instead and
 *   route `Unpack` and `SplitV` through it.
 * - `Identity`, and `Cast` to the same dtype, copy their input; gradients call them hundreds of
 *   times per training step. Ours share the input's storage (reference-counted, as `Reshape`
 *   does: no kernel writes into its inputs). `Cast` to bool truncated (3.7 became 3); ours tests
 *   for non-zero.
 * - `GatherV2` (embedding lookups) walks element by element, and with batchDims > 0 reads out of
 *   bounds; ours copies whole rows.
 */

// Kernels are only called with the inputs their op declares, so inputs are never undefined here.
type KernelArgs = Omit<Parameters<tf.KernelFunc>[0], "inputs"> & { inputs: Record<string, tf.TensorInfo> };
type Info = tf.TensorInfo;

const original = (kernelName: string): tf.KernelConfig => {
  const config = tf.getKernel(kernelName, "wasm");
  if (config === undefined) throw new Error(`wasm kernel ${kernelName} is not registered`);
  return config;
};

const replace = (config: tf.KernelConfig): void => {
  if (tf.getKernel(config.kernelName, "wasm") !== undefined) tf.unregisterKernel(config.kernelName, "wasm");
  tf.registerKernel(config);
};

/**
 * The kernel `name` with a new function built from the original one (its fallback). The config
 * keeps the original's setup function: other shipped kernels call its wasm export internally.
 */
const wrapped = (name: string, make: (fallback: tf.KernelFunc) => tf.KernelFunc): tf.KernelConfig => {
  const config = original(name);
  return { ...config, kernelFunc: make(config.kernelFunc) };
};

/**
 * Copy the block `begin .. begin+size` of a row-major `shape` array into `dst`. The innermost
 * contiguous run (trailing axes taken whole, plus the first partial one) is copied with one `set`.
 */
export const copyBlock = (
  src: tf.TypedArray,
  shape: ReadonlyArray<number>,
  begin: ReadonlyArray<number>,
  size: ReadonlyArray<number>,
  dst: tf.TypedArray,
): void => {
  const rank = shape.length;
  const strides = tf.util.computeStrides(shape as Array<number>);
  // Axes [inner, rank) form one contiguous run per index of the outer axes.
  let inner = rank - 1;
  while (inner > 0 && size[inner] === shape[inner]) inner--;
  const run = size.slice(inner).reduce((a, b) => a * b, 1);
  if (run === 0) return;
  const stride = (axis: number): number => (axis < rank - 1 ? strides[axis] : 1);
  const index = new Array<number>(inner).fill(0);
  let outOffset = 0;
  const total = dst.length;
  while (outOffset < total) {
    let offset = begin[inner] * stride(inner);
    for (let axis = 0; axis < inner; axis++) offset += (begin[axis] + index[axis]) * stride(axis);
    dst.set(src.subarray(offset, offset + run), outOffset);
    outOffset += run;
    for (let axis = inner - 1; axis >= 0; axis--) {
      if (++index[axis] < size[axis]) break;
      index[axis] = 0;
    }
  }
};

const makeSlice = (fallback: tf.KernelFunc): tf.KernelFunc => {
  const slice = (args: KernelArgs): Info => {
    const x = args.inputs.x;
    if (x.dtype === "string") return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs as { begin: number | Array<number>; size?: number | Array<number> };
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    const out = backend.makeOutput(size, x.dtype);
    if (tf.util.sizeFromShape(size) === 0) return out;
    // Heap views are taken after makeOutput: allocating may grow (and detach) the wasm memory.
    copyBlock(backend.typedArrayFromHeap(x), x.shape, begin, size, backend.typedArrayFromHeap(out));
    return out;
  };
  return slice as tf.KernelFunc;
};

/**
 * Scatter-add: out[segmentIds[r], ...] += x[r, ...]. Rows whose id is outside [0, numSegments)
 * are dropped, as in TensorFlow.
 */
const unsortedSegmentSum = (args: KernelArgs): Info => {
  const { x, segmentIds } = args.inputs;
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  const backend = args.backend as BackendWasm;
  const rows = tf.util.sizeFromShape(segmentIds.shape);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = tf.util.sizeFromShape(innerShape);
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  const dst = backend.typedArrayFromHeap(out);
  dst.fill(0);
  if (rows * inner === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  for (let r = 0; r < rows; r++) {
    const s = ids[r];
    if (s < 0 || s >= numSegments) continue;
    const from = r * inner;
    const to = s * inner;
    for (let j = 0; j < inner; j++) dst[to + j] += src[from + j];
  }
  return out;
};

/** The input's storage under a new tensor info, one more reference to it. */
const share = (backend: BackendWasm, x: Info, dtype = x.dtype): Info => {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype };
};

const makeIdentity = (fallback: tf.KernelFunc): tf.KernelFunc => {
  const identity = (args: KernelArgs): Info => {
    const x = args.inputs.x;
    return x.dtype === "string" ? (fallback(args as Parameters<tf.KernelFunc>[0]) as Info) : share(args.backend as BackendWasm, x);
  };
  return identity as tf.KernelFunc;
};

const makeCast = (fallback: tf.KernelFunc): tf.KernelFunc => {
  const cast = (args: KernelArgs): Info => {
    const x = args.inputs.x;
    const backend = args.backend as BackendWasm;
    const dtype = (args.attrs as { dtype: tf.DataType }).dtype;
    if (x.dtype === dtype && dtype !== "string") return share(backend, x);
    if (dtype !== "bool" || x.dtype === "string") return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    // The shipped kernel converts to bool by a typed-array copy, which truncates (3.7 -> 3).
    const out = backend.makeOutput(x.shape, "bool");
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    for (let i = 0; i < dst.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
    return out;
  };
  return cast as tf.KernelFunc;
};

/**
 * GatherV2: x viewed as (batch, outer, dim, slice) and indices as (batch, n) give
 * out (batch, outer, n, slice), one row copy per index. An index outside [0, dim) is an error.
 */
const makeGather = (fallback: tf.KernelFunc): tf.KernelFunc => {
  const gather = (args: KernelArgs): Info => {
    const { x, indices } = args.inputs;
    if (x.dtype === "string") return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs as { axis: number; batchDims: number };
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, axis, attrs.batchDims);
    const { batchSize, outerSize, dimSize, sliceSize } = info;
    const n = tf.util.sizeFromShape(indices.shape) / Math.max(batchSize, 1);
    const out = backend.makeOutput(info.outputShape, x.dtype);
    if (tf.util.sizeFromShape(info.outputShape) === 0) return out;
    const ids = backend.typedArrayFromHeap(indices);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < dimSize)) throw new Error(`GatherV2: the index value ${id} is not in [0, ${dimSize - 1}]`);
    }
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    let to = 0;
    for (let b = 0; b < batchSize; b++) {
      for (let o = 0; o < outerSize; o++) {
        const base = (b * outerSize + o) * dimSize * sliceSize;
        for (let k = 0; k < n; k++) {
          const from = base + ids[b * n + k] * sliceSize;
          if (sliceSize >= 16) dst.set(src.subarray(from, from + sliceSize), to);
          else for (let j = 0; j < sliceSize; j++) dst[to + j] = src[from + j];
          to += sliceSize;
        }
      }
    }
    return out;
  };
  return gather as tf.KernelFunc;
};

let installed = false;

/**
 * Install the fixes into the kernel registry. Idempotent. Call before the first use of `wasm`
 * (the wrapped kernels keep the originals' setup functions, which the engine runs at init).
 */
export const install = (): void => {
  if (installed) return;
  replace(wrapped("Transpose", makeTranspose));
  replace(makeBatchMatMul(original("BatchMatMul")));
  replace(wrapped("Identity", makeIdentity));
  replace(wrapped("Cast", makeCast));
  replace(wrapped("GatherV2", makeGather));
  replace({ ...original("_FusedMatMul"), kernelFunc: Composite.fusedMatMul("wasm") });
  const slice = makeSlice(original("Slice").kernelFunc);
  replace({ kernelName: "Slice", backendName: "wasm", kernelFunc: slice });
  const slicer: Composite.Slicer = (args, x, begin, size) =>
    slice({ inputs: { x }, backend: args.backend, attrs: { begin: [...begin], size: [...size] } }) as Info;
  replace({ kernelName: "Unpack", backendName: "wasm", kernelFunc: Composite.unpack(slicer) as tf.KernelFunc });
  replace({ kernelName: "SplitV", backendName: "wasm", kernelFunc: Composite.splitV(slicer) as tf.KernelFunc });
  replace({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  installed = true;
};

/** Names of the kernels `install` adds or replaces, for reports. */
export const fixedKernels = [
  "BatchMatMul",
  "Transpose",
  "_FusedMatMul",
  "Slice",
  "Unpack",
  "SplitV",
  "UnsortedSegmentSum",
  "Identity",
  "Cast",
  "GatherV2",
] as const;
