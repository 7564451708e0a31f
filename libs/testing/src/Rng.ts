import { mulberry32, uniformFloats } from "@patchlm/core";

export { mulberry32 };

/** n uniform floats in [lo, hi) from a seed. */
export const randomFloats = uniformFloats;

/** n uniform ints in [0, max) from a seed. */
export const randomInts = (n: number, max: number, seed: number): Int32Array => {
  const r = mulberry32(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * max);
  return out;
};
