import * as tf from "@tensorflow/tfjs-core";
import { Fused } from "@patchlm/fused";

/**
 * Rotary position embedding, Hugging Face LLaMA convention ("rotate half"):
 *   rope(x)[d] = x[d]·cos(p·θ_d) + rotateHalf(x)[d]·sin(p·θ_d),
 *   rotateHalf(x) = concat(−x[D/2:], x[:D/2]),  θ_d = base^(−2·(d mod D/2)/D).
 * The arithmetic is `Fused.rope` (a fused kernel on native, tfjs ops elsewhere); this module owns
 * the tables.
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

/** Tables for positions offset..offset+T−1, (T,D) each. */
export interface RopeTensors {
  readonly cos: tf.Tensor2D;
  readonly sin: tf.Tensor2D;
}

export const tensors = (headDim: number, base: number, positions: number, offset: number, T: number, scale = 1): RopeTensors => {
  const t = tables(headDim, base, positions, scale);
  const rows = (a: Float32Array) => tf.tensor2d(a.subarray(offset * headDim, (offset + T) * headDim), [T, headDim]);
  return { cos: rows(t.cos), sin: rows(t.sin) };
};

/** Apply RoPE to x (B,T,h,D): one fused kernel where the backend has it. */
export const apply = (x: tf.Tensor4D, r: RopeTensors): tf.Tensor4D => Fused.rope(x, r.cos, r.sin);
