import { createHash } from "node:crypto";

/**
 * A keyed pseudo-random permutation of [0, n) with O(1) memory and O(1) random access: a
 * balanced Feistel network over the smallest even-bit power of two ≥ n, with cycle walking
 * (re-apply until the value lands below n; since the domain is < 4n that takes < 4 rounds on
 * average). Any index of any epoch can be computed directly, which is what makes resuming at an
 * arbitrary cursor cheap and lets the window count exceed what an index array would fit in memory.
 */
export interface Permutation {
  readonly size: number;
  readonly at: (i: number) => number;
}

const rounds = 6;

/** lowbias32 (Chris Wellons): a fast 32-bit integer mixer with good avalanche. */
const mix32 = (v: number): number => {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
};

/** Round keys from a label (e.g. seed and epoch), via sha256 so every label gives independent keys. */
export const keysFor = (label: string): Uint32Array => {
  const d = createHash("sha256").update(label).digest();
  const keys = new Uint32Array(rounds);
  for (let r = 0; r < rounds; r++) keys[r] = d.readUInt32LE(4 * r);
  return keys;
};

export const make = (n: number, keys: Uint32Array): Permutation => {
  if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new Error(`permutation size ${n} outside [1, 2^32]`);
  const bits = Math.max(2, Math.ceil(Math.log2(n)));
  const half = Math.ceil(bits / 2);
  const mask = (1 << half) - 1; // half ≤ 16
  const scale = 2 ** half;
  const feistel = (x: number): number => {
    let left = Math.floor(x / scale);
    let right = x % scale;
    for (let r = 0; r < rounds; r++) {
      const next = (left ^ (mix32(right ^ keys[r]) & mask)) >>> 0;
      left = right;
      right = next;
    }
    return left * scale + right;
  };
  const at = (i: number): number => {
    let y = feistel(i);
    while (y >= n) y = feistel(y);
    return y;
  };
  return { size: n, at };
};
