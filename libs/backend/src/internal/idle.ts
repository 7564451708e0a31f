import { readFileSync } from "node:fs";

/**
 * How many cores are idle right now, for the wasm backend's default thread count.
 *
 * Its thread pool (pthreadpool inside the wasm module) spins while it waits for work, and a matmul
 * waits for its slowest thread: on a machine where another job keeps a core busy, two threads ran
 * a reference training step 35-50% slower than one (2 cores, one busy). So by default the wasm
 * backend takes the cores that are idle when it starts, as libgomp's OMP_DYNAMIC does with the
 * load average (too slow here: it still counts a job that ended seconds ago).
 */

export interface CpuTimes {
  /** Idle and iowait jiffies over all cores. */
  readonly idle: number;
  /** All jiffies over all cores, steal (time the hypervisor gave to others) included. */
  readonly total: number;
}

/** The aggregate `cpu` line of /proc/stat (Linux), or undefined when there is none. */
export const parseProcStat = (text: string): CpuTimes | undefined => {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) return undefined;
  // user nice system idle iowait irq softirq steal [guest guest_nice, already inside user and nice]
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 4 || fields.some((n) => !Number.isFinite(n))) return undefined;
  return { idle: fields[3] + (fields[4] ?? 0), total: fields.reduce((a, b) => a + b, 0) };
};

export const readCpuTimes = (): CpuTimes | undefined => {
  try {
    return parseProcStat(readFileSync("/proc/stat", "utf8"));
  } catch {
    return undefined;
  }
};

/**
 * Cores free for us between two samples (0..cores), or undefined when no time passed: the idle
 * ones, plus what this process itself used meanwhile (`ownCpuMs` over `wallMs`; its own start-up
 * work, such as V8 compiling on background threads, is not another job).
 */
export const idleCores = (before: CpuTimes, after: CpuTimes, cores: number, ownCpuMs = 0, wallMs = 1): number | undefined => {
  const total = after.total - before.total;
  if (!(total > 0)) return undefined;
  const idle = (cores * Math.max(0, after.idle - before.idle)) / total + (wallMs > 0 ? ownCpuMs / wallMs : 0);
  return Math.min(cores, idle);
};

/** Threads for `idle` idle cores out of `cores`: the idle ones, rounded, at least 1. */
export const threadsFor = (idle: number, cores: number): number => Math.min(cores, Math.max(1, Math.round(idle)));
