import { readFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import * as path from "node:path";

/**
 * The reference machines' sustained all-core clock. Virtual machines report a nominal clock in
 * /proc/cpuinfo (2300 MHz there) that says nothing about the real one, so the estimate assumes
 * this value unless PATCHLM_CPU_GHZ says otherwise.
 */
export const defaultClockGhz = 4.2;

/**
 * FP32 FLOPs per cycle per core from the ISA flags: two FMA pipes of 16 (AVX-512), 8 (AVX2) or
 * 4 (SSE) lanes. Zen 5 and server Intel cores have two 512-bit FMA pipes; cores that split
 * AVX-512 into two 256-bit halves (Zen 4) get half, so this is an upper estimate there.
 */
export const flopsPerCycle = (flags: ReadonlySet<string>): number =>
  flags.has("avx512f") ? 64 : flags.has("avx2") && flags.has("fma") ? 32 : 8;

const cpuFlags = (): ReadonlySet<string> | undefined => {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("flags"));
    return line === undefined ? undefined : new Set(line.split(":")[1].trim().split(/\s+/));
  } catch {
    return undefined;
  }
};

/** cores × clock × FLOPs/cycle; undefined where the ISA cannot be read (non-Linux). */
export const estimatePeakGflops = (clockGhz: number): number | undefined => {
  const flags = cpuFlags();
  if (flags === undefined) return undefined;
  return Math.round(availableParallelism() * clockGhz * flopsPerCycle(flags) * 10) / 10;
};

/** One machine's measured peak, as the cache keeps it. */
export interface CachedPeak {
  readonly gflops: number;
  /** ISO date of the measurement. */
  readonly measuredAt: string;
}

/** What identifies "the same machine" for a peak: the CPU model, its vector ISA and the threads used. */
export const machineKey = (threads: number): string => {
  let model = "unknown CPU";
  try {
    model = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? model;
  } catch {
    // not Linux: the key still separates ISAs and thread counts
  }
  const flags = cpuFlags() ?? new Set<string>();
  const isa = flags.has("avx512f") ? "avx512" : flags.has("avx2") && flags.has("fma") ? "avx2" : "baseline";
  return `${model} | ${isa} | ${threads} threads`;
};

/** The cache file: `<XDG_CACHE_HOME or ~/.cache>/patchlm/peak-gflops.json`. */
export const peakCacheFile = (cacheHome: string | undefined): string =>
  path.join(cacheHome !== undefined && cacheHome !== "" ? cacheHome : path.join(homedir(), ".cache"), "patchlm", "peak-gflops.json");

/** The machines a cache file holds; a missing or unreadable file holds none (measure, rewrite it). */
export const readPeakCache = (file: string): Record<string, CachedPeak> => {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as { machines?: Record<string, CachedPeak> };
    return parsed.machines ?? {};
  } catch {
    return {};
  }
};

/** A usable cache entry: a positive, finite peak. */
export const isUsablePeak = (entry: CachedPeak | undefined): entry is CachedPeak =>
  entry !== undefined && Number.isFinite(entry.gflops) && entry.gflops > 0;
