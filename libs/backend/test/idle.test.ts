import { idleCores, parseProcStat, threadsFor } from "../src/internal/idle";

describe("idle cores (the wasm backend's default thread count)", () => {
  const stat = (user: number, idle: number, iowait: number, steal: number) =>
    `cpu  ${user} 0 10 ${idle} ${iowait} 0 5 ${steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\n`;

  it("reads idle + iowait and the total (steal included) from the aggregate cpu line", () => {
    expect(parseProcStat(stat(100, 400, 20, 30))).toEqual({ idle: 420, total: 100 + 10 + 400 + 20 + 5 + 30 });
    expect(parseProcStat("intr 1 2 3\n")).toBeUndefined();
    expect(parseProcStat("cpu  1 x 3 4\n")).toBeUndefined();
  });

  it("turns two samples into idle cores, and those into threads (at least 1, at most every core)", () => {
    const before = parseProcStat(stat(1000, 1000, 0, 0))!;
    // 2 cores, 200 jiffies elapsed: one core busy (100 user), one idle (100 idle)
    expect(idleCores(before, parseProcStat(stat(1100, 1100, 0, 0))!, 2)).toBeCloseTo(1, 9);
    // both idle
    expect(idleCores(before, parseProcStat(stat(1000, 1200, 0, 0))!, 2)).toBeCloseTo(2, 9);
    // stolen time counts as busy
    expect(idleCores(before, parseProcStat(stat(1000, 1150, 0, 50))!, 2)).toBeCloseTo(1.5, 9);
    expect(idleCores(before, before, 2)).toBeUndefined();
    // one core busy, half of it with this process's own work (100 ms of CPU in 200 ms): 1.5 free
    expect(idleCores(before, parseProcStat(stat(1100, 1100, 0, 0))!, 2, 100, 200)).toBeCloseTo(1.5, 9);
    expect(idleCores(before, parseProcStat(stat(1000, 1200, 0, 0))!, 2, 100, 200)).toBe(2);
    expect([threadsFor(1, 2), threadsFor(1.4, 2), threadsFor(1.6, 2), threadsFor(2, 2), threadsFor(0.1, 2), threadsFor(7.7, 4)]).toEqual([1, 1, 2, 2, 1, 4]);
  });
});
