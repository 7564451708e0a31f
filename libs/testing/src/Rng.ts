/** A small seeded PRNG (mulberry32) for test data; deterministic across runs and platforms. */
export const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

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
