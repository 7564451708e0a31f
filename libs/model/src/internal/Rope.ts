import * as tf from "@tensorflow/tfjs";

/**
 * Rotary position embedding, Hugging Face LLaMA convention ("rotate half"):
 *   rope(x)[d] = x[d]·cos(p·θ_d) + rotateHalf(x)[d]·sin(p·θ_d),
 *   rotateHalf(x) = concat(−x[D/2:], x[:D/2]),  θ_d = base^(−2·(d mod D/2)/D).
 * rotateHalf is linear, so it runs as one 2-D matMul by a signed D×D permutation R, whose
 * gradient is one more matMul: on wasm that is 4-5x faster than Reverse (a per-element index
 * kernel there) and than slice+concat, and it adds only 2·D FLOPs per element.
 *
 * Angles are computed in float64 and rounded once to float32; HF computes them in float32, which
 * differs by at most a few ulps of the angle (about 1e-4 rad at position 2047).
 */
export interface RopeTables {
  /** cos(p·θ_d), row-major (positions, D). */
  readonly cos: Float32Array;
  /** sin(p·θ_d), row-major (positions, D). */
  readonly sin: Float32Array;
}

const tableCache = new Map<string, RopeTables>();

/** Host tables for positions 0..positions−1, memoised per (D, base, positions, scale). */
export const tables = (headDim: number, base: number, positions: number, scale = 1): RopeTables => {
  const key = `${headDim}|${base}|${positions}|${scale}`;
  const hit = tableCache.get(key);
  if (hit !== undefined) return hit;
  const half = headDim / 2;
  const cos = new Float32Array(positions * headDim);
  const sin = new Float32Array(positions * headDim);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(base, (-2 * i) / headDim);
      const c = Math.cos(angle) * scale;
      const s = Math.sin(angle) * scale;
      cos[p * headDim + i] = c;
      cos[p * headDim + half + i] = c;
      sin[p * headDim + i] = s;
      sin[p * headDim + half + i] = s;
    }
  }
  const t = { cos, sin };
  tableCache.set(key, t);
  return t;
};

/** R (D,D) with x·R = rotateHalf(x): column d < D/2 takes −x[d+D/2], column d ≥ D/2 takes x[d−D/2]. */
export const rotateHalfMatrix = (headDim: number): Float32Array => {
  const half = headDim / 2;
  const r = new Float32Array(headDim * headDim);
  for (let d = 0; d < half; d++) {
    r[(d + half) * headDim + d] = -1;
    r[d * headDim + d + half] = 1;
  }
  return r;
};

/** Tables for positions offset..offset+T−1, shaped (T,1,D) to broadcast over (B,T,h,D), plus R. */
export interface RopeTensors {
  readonly cos: tf.Tensor3D;
  readonly sin: tf.Tensor3D;
  readonly rotateHalf: tf.Tensor2D;
}

export const tensors = (headDim: number, base: number, positions: number, offset: number, T: number, scale = 1): RopeTensors => {
  const t = tables(headDim, base, positions, scale);
  const rows = (a: Float32Array) => tf.tensor3d(a.subarray(offset * headDim, (offset + T) * headDim), [T, 1, headDim]);
  return { cos: rows(t.cos), sin: rows(t.sin), rotateHalf: tf.tensor2d(rotateHalfMatrix(headDim), [headDim, headDim]) };
};

/** Apply RoPE to x (B,T,h,D). */
export const apply = (x: tf.Tensor4D, r: RopeTensors): tf.Tensor4D => {
  const [B, T, h, D] = x.shape;
  // (B,T,h,D) <- (B·T·h,D)·R
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [B * T * h, D]), r.rotateHalf), [B, T, h, D]);
  return tf.add(tf.mul(x, r.cos), tf.mul(rotated, r.sin));
};
