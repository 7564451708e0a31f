import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { Composite } from "@patchlm/native";

/**
 * `Transpose` and `BatchMatMul` for the `wasm` backend.
 *
 * The shipped `BatchMatMul` is fast (XNNPACK) only for a plain 2-D product a·b; with
 * `transposeA`/`transposeB` or batch dims it falls back to a naive loop 10-30x slower, and every
 * matmul gradient uses the transposed forms. We route every product to the plain 2-D form,
 * transposing operands ourselves. C = op(A)·op(B) is computed directly, or as
 * C = (op(B)ᵀ·op(A)ᵀ)ᵀ when that moves fewer elements and keeps the larger side on the left: a
 * few rows against a big transposed weight (decoding: x (1,C)·Wᵀ with W (V,C)) then transposes
 * x and the result instead of W.
 *
 * The shipped `Transpose` writes with a large stride on every element (no blocking), 2-3x slower
 * than the tiled copy here.
 */

type KernelArgs = Omit<Parameters<tf.KernelFunc>[0], "inputs"> & { inputs: Record<string, tf.TensorInfo> };
type Info = tf.TensorInfo;

const TILE = 16;

/**
 * Tiled strided copy: for i < nI, j < nJ,
 *   dst[dBase + i + j·dStrideJ] = src[sBase + i·sStrideI + j],
 * i.e. a (nI, nJ) block read with row stride sStrideI, written transposed with row stride
 * dStrideJ. 16×16 tiles keep both sides in cache; inside them 4×4 blocks go through locals, which
 * V8 keeps in registers (about twice as fast as an element-by-element loop).
 */
const transposeTile = (
  src: tf.TypedArray,
  sBase: number,
  sStrideI: number,
  dst: tf.TypedArray,
  dBase: number,
  dStrideJ: number,
  nI: number,
  nJ: number,
): void => {
  const i4 = nI - (nI % 4);
  const j4 = nJ - (nJ % 4);
  const s1 = sStrideI;
  const d1 = dStrideJ;
  for (let i0 = 0; i0 < i4; i0 += TILE) {
    const i1 = Math.min(i0 + TILE, i4);
    for (let j0 = 0; j0 < j4; j0 += TILE) {
      const j1 = Math.min(j0 + TILE, j4);
      for (let i = i0; i < i1; i += 4) {
        for (let j = j0; j < j1; j += 4) {
          const s = sBase + i * s1 + j;
          const a0 = src[s], a1 = src[s + 1], a2 = src[s + 2], a3 = src[s + 3];
          const b0 = src[s + s1], b1 = src[s + s1 + 1], b2 = src[s + s1 + 2], b3 = src[s + s1 + 3];
          const c0 = src[s + 2 * s1], c1 = src[s + 2 * s1 + 1], c2 = src[s + 2 * s1 + 2], c3 = src[s + 2 * s1 + 3];
          const e0 = src[s + 3 * s1], e1 = src[s + 3 * s1 + 1], e2 = src[s + 3 * s1 + 2], e3 = src[s + 3 * s1 + 3];
          const d = dBase + i + j * d1;
          dst[d] = a0; dst[d + 1] = b0; dst[d + 2] = c0; dst[d + 3] = e0;
          dst[d + d1] = a1; dst[d + d1 + 1] = b1; dst[d + d1 + 2] = c1; dst[d + d1 + 3] = e1;
          dst[d + 2 * d1] = a2; dst[d + 2 * d1 + 1] = b2; dst[d + 2 * d1 + 2] = c2; dst[d + 2 * d1 + 3] = e2;
          dst[d + 3 * d1] = a3; dst[d + 3 * d1 + 1] = b3; dst[d + 3 * d1 + 2] = c3; dst[d + 3 * d1 + 3] = e3;
        }
      }
    }
  }
  // The edges the 4×4 blocks leave: columns j4.. of the first i4 rows, then rows i4.. whole.
  for (let i = 0; i < nI; i++) {
    for (let j = i < i4 ? j4 : 0; j < nJ; j++) dst[dBase + i + j * d1] = src[sBase + i * s1 + j];
  }
};

/** Transpose a (rows, cols) block of `src` at `sOff` into (cols, rows) at `dOff` of `dst`. */
export const transposeMatrix = (src: tf.TypedArray, sOff: number, rows: number, cols: number, dst: tf.TypedArray, dOff: number): void =>
  transposeTile(src, sOff, cols, dst, dOff, rows, rows, cols);

/**
 * Merge neighbouring input axes that stay neighbours, in order, under `perm` (and drop size-1
 * axes): the same permutation on the fewest axes.
 */
export const coalesce = (shape: ReadonlyArray<number>, perm: ReadonlyArray<number>): { shape: Array<number>; perm: Array<number> } => {
  const kept = perm.filter((axis) => shape[axis] !== 1);
  // Output-order groups of input axes a, a+1, ...
  const groups: Array<Array<number>> = [];
  for (const axis of kept) {
    const last = groups[groups.length - 1];
    if (last !== undefined && last[last.length - 1] + 1 === axis) last.push(axis);
    else groups.push([axis]);
  }
  // Input order of the groups gives the coalesced input shape; output order gives the perm.
  const byInput = [...groups].sort((a, b) => a[0] - b[0]);
  return {
    shape: byInput.map((g) => g.reduce((n, axis) => n * shape[axis], 1)),
    perm: groups.map((g) => byInput.indexOf(g)),
  };
};

/** out = x permuted by `perm` (out axis i is input axis perm[i]), both row-major. */
export const permute = (src: tf.TypedArray, shape: ReadonlyArray<number>, perm: ReadonlyArray<number>, dst: tf.TypedArray): void => {
  const c = coalesce(shape, perm);
  const rank = c.shape.length;
  if (rank <= 1) {
    dst.set(src.subarray(0, dst.length));
    return;
  }
  const inStrides = [...tf.util.computeStrides(c.shape), 1];
  const outShape = c.perm.map((axis) => c.shape[axis]);
  const outStrides = [...tf.util.computeStrides(outShape), 1];
  const last = rank - 1;
  // Either the last axis stays last (copy contiguous runs of it), or the output's last axis is
  // input axis `a` (strided in the input) while the input's last axis sits at output position q
  // (strided in the output): tile over those two. Loop over the other axes.
  const runs = c.perm[last] === last;
  const a = c.perm[last];
  const q = c.perm.indexOf(last);
  const outer = c.perm.map((axis, pos) => ({ axis, pos })).filter(({ pos }) => pos !== last && (runs || pos !== q));
  const run = c.shape[last];
  const index = new Array<number>(outer.length).fill(0);
  for (;;) {
    let sBase = 0;
    let dBase = 0;
    for (let o = 0; o < outer.length; o++) {
      sBase += index[o] * inStrides[outer[o].axis];
      dBase += index[o] * outStrides[outer[o].pos];
    }
    if (!runs) transposeTile(src, sBase, inStrides[a], dst, dBase, outStrides[q], c.shape[a], run);
    else if (run >= 16) dst.set(src.subarray(sBase, sBase + run), dBase);
    else for (let j = 0; j < run; j++) dst[dBase + j] = src[sBase + j];
    let o = outer.length - 1;
    for (; o >= 0; o--) {
      if (++index[o] < c.shape[outer[o].axis]) break;
      index[o] = 0;
    }
    if (o < 0) return;
  }
};

export const makeTranspose = (fallback: tf.KernelFunc): tf.KernelFunc => {
  const transpose = (args: KernelArgs): Info => {
    const x = args.inputs.x;
    if (x.dtype === "string") return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    const backend = args.backend as BackendWasm;
    const perm = (args.attrs as { perm: Array<number> }).perm;
    const out = backend.makeOutput(
      perm.map((axis) => x.shape[axis]),
      x.dtype,
    );
    if (tf.util.sizeFromShape(x.shape) === 0) return out;
    // Heap views are taken after makeOutput: allocating may grow the wasm memory.
    permute(backend.typedArrayFromHeap(x), x.shape, perm, backend.typedArrayFromHeap(out));
    return out;
  };
  return transpose as tf.KernelFunc;
};

/** A (rows, cols) row-major matrix stored in `info`'s data from element `offset`. */
interface Block {
  readonly info: Info;
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

/**
 * Every matmul as plain 2-D products. A batch against one shared right-hand matrix is one tall
 * product; a true batch (attention) loops over its items, since the batched form is slow too.
 */
export const makeBatchMatMul = (config: tf.KernelConfig): tf.KernelConfig => {
  const plain = config.kernelFunc as (args: KernelArgs) => Info;
  const kernelFunc = (args: KernelArgs): Info => {
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as BackendWasm;
    const { a, b } = args.inputs;
    const aBatch = a.shape.slice(0, -2);
    const bBatch = b.shape.slice(0, -2);
    const aCount = tf.util.sizeFromShape(aBatch);
    const bCount = tf.util.sizeFromShape(bBatch);
    if (!transposeA && !transposeB && aCount === 1 && bCount === 1) return plain(args);
    const [aRows, aCols] = a.shape.slice(-2);
    const [bRows, bCols] = b.shape.slice(-2);
    const M = transposeA ? aCols : aRows;
    const N = transposeB ? bRows : bCols;
    const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
    const outShape = [...outBatch, M, N];
    const temporaries: Array<Info> = [];
    const temporary = (shape: Array<number>): Info => {
      const t = backend.makeOutput(shape, "float32");
      temporaries.push(t);
      return t;
    };
    const free = (t: Info) => backend.disposeData(t.dataId);
    // A tensor's storage under another shape: the plain kernel reshapes its inputs itself.
    const as = (x: Info, shape: Array<number>): Info => ({ dataId: x.dataId, dtype: x.dtype, shape });
    const heap = (x: Info) => backend.typedArrayFromHeap(x);
    /** The block as a tensor of its own, transposed when asked. */
    const materialise = (x: Block, transpose: boolean): Info => {
      if (!transpose && x.offset === 0 && tf.util.sizeFromShape(x.info.shape) === x.rows * x.cols) return as(x.info, [x.rows, x.cols]);
      const t = temporary(transpose ? [x.cols, x.rows] : [x.rows, x.cols]);
      const src = heap(x.info);
      if (transpose) transposeMatrix(src, x.offset, x.rows, x.cols, heap(t), 0);
      else heap(t).set(src.subarray(x.offset, x.offset + x.rows * x.cols));
      return t;
    };
    const multiply = (x: Info, y: Info): Info => plain({ inputs: { a: x, b: y }, backend, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
    /**
     * op(A)·op(B) (M,N) written into `out` from element `outOffset`, or returned as a tensor of
     * its own when `out` is undefined.
     */
    const product = (A: Block, B: Block, out: Info | undefined, outOffset: number): Info | undefined => {
      const [m, k] = transposeA ? [A.cols, A.rows] : [A.rows, A.cols];
      const n = transposeB ? B.rows : B.cols;
      // Elements moved: direct transposes op's operands; swapped computes op(B)ᵀ·op(A)ᵀ, whose
      // operands are the stored layouts when transposed, then transposes the (N,M) result. XNNPACK
      // splits the rows of the left operand over its threads and packs the right one whole, so
      // swapping pays only when it also keeps the larger side on the left (m <= n): a few rows
      // against a big weight, as in decoding. In training (m = B·T rows) the direct form was
      // faster even where it moves more, e.g. lm_head's weight gradient, 1 or 2 threads.
      const direct = (transposeA ? m * k : 0) + (transposeB ? n * k : 0);
      const swapped = (transposeA ? 0 : m * k) + (transposeB ? 0 : n * k) + m * n;
      if (swapped < direct && m <= n) {
        const p = multiply(materialise(B, !transposeB), materialise(A, !transposeA)); // (N,M)
        const target = out ?? backend.makeOutput([m, n], "float32");
        transposeMatrix(heap(p), 0, n, m, heap(target), out === undefined ? 0 : outOffset);
        free(p);
        return out === undefined ? target : undefined;
      }
      const p = multiply(materialise(A, transposeA), materialise(B, transposeB)); // (M,N)
      if (out === undefined) return p;
      heap(out).set(heap(p), outOffset);
      free(p);
      return undefined;
    };
    try {
      if (bCount === 1 && !transposeA) {
        // One tall product: (aCount·M, K) · op(B).
        const whole = product({ info: a, offset: 0, rows: aCount * aRows, cols: aCols }, { info: b, offset: 0, rows: bRows, cols: bCols }, undefined, 0) as Info;
        return { ...whole, shape: outShape };
      }
      const out = backend.makeOutput(outShape, "float32");
      const count = tf.util.sizeFromShape(outBatch);
      const aOffsets = Composite.batchOffsets(aBatch, outBatch, aRows * aCols);
      const bOffsets = Composite.batchOffsets(bBatch, outBatch, bRows * bCols);
      for (let i = 0; i < count; i++) {
        product({ info: a, offset: aOffsets[i], rows: aRows, cols: aCols }, { info: b, offset: bOffsets[i], rows: bRows, cols: bCols }, out, i * M * N);
        for (const t of temporaries.splice(0)) free(t);
      }
      return out;
    } finally {
      for (const t of temporaries) free(t);
    }
  };
  return { ...config, kernelFunc: kernelFunc as tf.KernelFunc };
};
