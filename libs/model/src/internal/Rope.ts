import * as tf from "@tensorflow/tfjs";

/**
 * Rotary position embedding, Hugging Face LLaMA convention ("rotate half"):
 *   rope(x)[d] = x[d]·cos(p·θ_d) + rotateHalf(x)[d]·sin(p·θ_d),
 *   rotateHalf(x) = concat(−x[D/2:], x[:D/2]),  θ_d = base^(−2·(d mod D/2)/D).
 * Here rotateHalf is computed as "swap the two halves" (one Reverse over a (…,2,D/2) view,
 * whose gradient is itself) times a sign folded into the sine table, so RoPE costs one Reverse,
 * two multiplies and one add, with no slices or concats (slices copy the whole input on wasm).
 *
 * Angles are computed in float64 and rounded once to float32; HF computes them in float32, which
 * differs by at most a few ulps of the angle (about 1e-4 rad at position 2047).
 */
export interface RopeTables {
  /** cos(p·θ_d), row-major (positions, D). */
  readonly cos: Float32Array;
  /** ∓sin(p·θ_d): negative in the first half, so swapHalves(x)·sinSigned = rotateHalf(x)·sin. */
  readonly sinSigned: Float32Array;
}

const tableCache = new Map<string, RopeTables>();

/** Host tables for positions 0..positions−1, memoised per (D, base, positions, scale). */
export const tables = (headDim: number, base: number, positions: number, scale = 1): RopeTables => {
  const key = `${headDim}|${base}|${positions}|${scale}`;
  const hit = tableCache.get(key);
  if (hit !== undefined) return hit;
  const half = headDim / 2;
  const cos = new Float32Array(positions * headDim);
  const sinSigned = new Float32Array(positions * headDim);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(base, (-2 * i) / headDim);
      const c = Math.cos(angle) * scale;
      const s = Math.sin(angle) * scale;
      cos[p * headDim + i] = c;
      cos[p * headDim + half + i] = c;
      sinSigned[p * headDim + i] = -s;
      sinSigned[p * headDim + half + i] = s;
    }
  }
  const t = { cos, sinSigned };
  tableCache.set(key, t);
  return t;
};

/** The tables for positions offset..offset+T−1 as tensors shaped (T,1,D), broadcasting over (B,T,H,D). */
export const tensors = (
  headDim: number,
  base: number,
  positions: number,
  offset: number,
  T: number,
  scale = 1,
): { readonly cos: tf.Tensor3D; readonly sinSigned: tf.Tensor3D } => {
  const t = tables(headDim, base, positions, scale);
  const rows = (a: Float32Array) => tf.tensor3d(a.subarray(offset * headDim, (offset + T) * headDim), [T, 1, headDim]);
  return { cos: rows(t.cos), sinSigned: rows(t.sinSigned) };
};

/** Apply RoPE to x (B,T,h,D) with tables (T,1,D). */
export const apply = (x: tf.Tensor4D, cos: tf.Tensor3D, sinSigned: tf.Tensor3D): tf.Tensor4D => {
  const [B, T, h, D] = x.shape;
  // (B,T,h,D) <- swap the halves of the last axis, via a (B·T·h, 2, D/2) view
  const swapped = tf.reshape(tf.reverse(tf.reshape(x, [B * T * h, 2, D / 2]), 1), [B, T, h, D]);
  return tf.add(tf.mul(x, cos), tf.mul(swapped, sinSigned));
};
