/**
 * The native backend's pool of output arrays: released arrays are reused, and a full pool makes
 * room for the size being released by dropping the least recently used sizes (an earlier run's or
 * an evaluation's arrays must not leave the current step's unpooled: the demo's second run
 * trained at about half speed when they did).
 */
import { NativeMathBackend } from "../src/internal/storage";

const MB = 1 << 20;
/** An array from the pool's allocator, released through a tensor's disposal as kernels' outputs are. */
const cycle = (b: NativeMathBackend, n: number) => {
  const a = b.allocate("float32", n);
  b.disposeData(b.write(a, [n], "float32"));
  return a;
};

describe("NativeMathBackend pool", () => {
  it("reuses a released array of the same size", () => {
    const b = new NativeMathBackend(8 * MB);
    const a = cycle(b, 1 << 16);
    expect(b.pooled).toBe(a.byteLength);
    expect(b.allocate("float32", 1 << 16)).toBe(a);
    expect(b.pooled).toBe(0);
  });

  it("a full pool drops the least recently used sizes to keep the size being released", () => {
    const b = new NativeMathBackend(4 * MB);
    // An evaluation's shapes fill the pool: four arrays of 1 MB, held together, then released.
    const held = [0, 1, 2, 3].map(() => b.allocate("float32", MB / 4));
    for (const a of held) b.disposeData(b.write(a, [MB / 4], "float32"));
    expect(b.pooled).toBe(4 * MB);
    // The next step's 2 MB array is pooled anyway: evaluation arrays are evicted to fit.
    const step = cycle(b, MB / 2);
    expect(b.pooled).toBeLessThanOrEqual(4 * MB);
    expect(b.allocate("float32", MB / 2)).toBe(step);
    // An array larger than the whole pool is never kept.
    const big = cycle(b, 2 * MB);
    expect(b.pooled).toBeLessThanOrEqual(4 * MB);
    expect(b.allocate("float32", 2 * MB)).not.toBe(big);
  });
});
