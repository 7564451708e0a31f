/**
 * A small seeded PRNG (mulberry32): deterministic across runs and platforms, for sampling and
 * for the cloze suite's choices. Not for cryptography.
 */
export type Rng = () => number;

export const mulberry32 = (seed: number): Rng => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

/** n floats uniform in [lo, hi) from a seed (test data and test weights). */
export const uniformFloats = (n: number, seed: number, lo = -1, hi = 1): Float32Array => {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
};

/** An integer in [0, n). */
export const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

/** A Fisher–Yates shuffle into a new array. */
export const shuffle = <A>(rng: Rng, xs: ReadonlyArray<A>): Array<A> => {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = int(rng, i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};
