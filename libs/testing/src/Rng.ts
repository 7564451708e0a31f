import { mulberry32 } from "@patchlm/core";

export { mulberry32 };

/** n uniform floats in [lo, hi) from a seed. */
export const randomFloats = (n: number, seed: number, lo = -1, hi = 1): Float32Array => {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
};

/** n uniform ints in [0, max) from a seed. */
export const randomInts = (n: number, max: number, seed: number): Int32Array => {
  const r = mulberry32(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * max);
  return out;
};
