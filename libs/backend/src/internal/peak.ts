import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

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
