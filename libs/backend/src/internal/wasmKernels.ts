import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { Composite } from "@patchlm/native";

/**
 * Kernel fixes that make the `wasm` backend fit for training (stack.md, "TensorFlow.js backends"):
 *
 * - `UnsortedSegmentSum` is missing, so the gradient of `gather` (every embedding) fails. We add
 *   a scatter-add.
 * - `BatchMatMul` with `transposeA`/`transposeB`, or with batch dims, runs 10-30x slower than
 *   the plain 2-D form, and every matmul gradient uses the transposed forms. We route every
 *   matmul to the plain 2-D form.
 * - `_FusedMatMul` adds its bias wrongly for batched inputs (and has the same slow transposed
 *   forms). We compose it from the fixed `BatchMatMul`, `Add` and the activation kernels.
 * - `Slice` copies the WHOLE input out of the wasm heap (`readSync`) before taking its piece, so
 *   `Unpack`/`split` into n pieces costs n times the input. We slice from a heap view instead and
 *   route `Unpack` and `SplitV` through it.
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

/** Permutation swapping the last two axes of a rank-`rank` tensor. */
const swapLastTwo = (rank: number): Array<number> => {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return perm;
};

/**
 * Route every matmul to the kernel's fast plain 2-D form: materialise transposes first (a cheap
 * O(n²) copy), multiply a batch against one shared matrix as one tall 2-D product, and loop
 * over the items of a true batch (attention), since the batched form is about 10x slower too.
 */
const plainMatMul = (config: tf.KernelConfig, transpose: tf.KernelFunc): tf.KernelConfig => {
  const plain = config.kernelFunc as (args: KernelArgs) => Info;
  const kernelFunc = (args: KernelArgs): Info => {
    const attrs = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as BackendWasm;
    const { a: a0, b: b0 } = args.inputs;
    const aBatch = a0.shape.slice(0, -2);
    const bBatch = b0.shape.slice(0, -2);
    const aCount = tf.util.sizeFromShape(aBatch);
    const bCount = tf.util.sizeFromShape(bBatch);
    if (!attrs.transposeA && !attrs.transposeB && aCount === 1 && bCount === 1) return plain(args);
    const temporaries: Array<Info> = [];
    const keep = (t: Info): Info => {
      temporaries.push(t);
      return t;
    };
    const materialise = (x: Info, flag: boolean): Info =>
      flag ? keep(transpose({ inputs: { x }, backend, attrs: { perm: swapLastTwo(x.shape.length) } }) as Info) : x;
    const multiply = (a: Info, b: Info): Info => plain({ inputs: { a, b }, backend, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
    // A tensor's storage under another shape: the plain kernel reshapes its inputs itself.
    const as = (x: Info, shape: Array<number>): Info => ({ dataId: x.dataId, dtype: x.dtype, shape });
    try {
      const a = materialise(a0, attrs.transposeA);
      const b = materialise(b0, attrs.transposeB);
      const [M, K] = a.shape.slice(-2);
      const N = b.shape[b.shape.length - 1];
      const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
      const outShape = [...outBatch, M, N];
      if (bCount === 1) {
        const out = multiply(as(a, [aCount * M, K]), as(b, [K, N]));
        return { ...out, shape: outShape };
      }
      const count = tf.util.sizeFromShape(outBatch);
      const aOffsets = Composite.batchOffsets(aBatch, outBatch, M * K);
      const bOffsets = Composite.batchOffsets(bBatch, outBatch, K * N);
      const out = backend.makeOutput(outShape, "float32");
      const item = (x: Info, offset: number, rows: number, cols: number): Info => {
        if (x.shape.length === 2 || tf.util.sizeFromShape(x.shape) === rows * cols) return as(x, [rows, cols]);
        const piece = keep(backend.makeOutput([rows, cols], "float32"));
        const view = backend.typedArrayFromHeap(x);
        backend.typedArrayFromHeap(piece).set(view.subarray(offset, offset + rows * cols));
        return piece;
      };
      for (let i = 0; i < count; i++) {
        const product = multiply(item(a, aOffsets[i], M, K), item(b, bOffsets[i], K, N));
        backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(product), i * M * N);
        backend.disposeData(product.dataId);
      }
      return out;
    } finally {
      for (const t of temporaries) backend.disposeData(t.dataId);
    }
  };
  return { ...config, kernelFunc: kernelFunc as tf.KernelFunc };
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

let installed = false;

/**
 * Install the fixes into the kernel registry. Idempotent. Call before the first use of `wasm`
 * (the wrapped kernels keep the originals' setup functions, which the engine runs at init).
 */
export const install = (): void => {
  if (installed) return;
  const transpose = original("Transpose").kernelFunc;
  replace(plainMatMul(original("BatchMatMul"), transpose));
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
export const fixedKernels = ["BatchMatMul", "_FusedMatMul", "Slice", "Unpack", "SplitV", "UnsortedSegmentSum"] as const;
