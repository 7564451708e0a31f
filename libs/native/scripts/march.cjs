// Prints the -march flag for the addon's kernels (all but our GEMM, which dispatches at run time):
//   node scripts/march.cjs
// x86-64-v3 (AVX2, FMA, BMI2) when the build CPU has AVX2 and FMA, else the x86-64 baseline; on
// aarch64 its baseline armv8-a; elsewhere the compiler's default. Not -march=native: the binary then runs on
// any CPU of that level, not only on the build machine's model. The elementwise kernels rely on
// auto-vectorization, so AVX2 is worth requiring where the build CPU has it; the GEMM and the peak
// measurement pick AVX-512 at run time themselves. PATCHLM_MARCH overrides (e.g. "native").
"use strict";
const { readFileSync } = require("node:fs");

const chosen = () => {
  const forced = process.env.PATCHLM_MARCH;
  if (forced !== undefined && forced !== "") return `-march=${forced}`;
  // Never an empty string: gyp would hand the compiler an empty argument. aarch64: its baseline
  // (NEON included); elsewhere a flag binding.gyp already sets.
  if (process.arch === "arm64") return "-march=armv8-a";
  if (process.arch !== "x64") return "-O3";
  let flags = new Set();
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    flags = new Set((line ?? "").split(":")[1]?.trim().split(/\s+/) ?? []);
  } catch {
    // not Linux: the baseline
  }
  return flags.has("avx2") && flags.has("fma") ? "-march=x86-64-v3" : "-march=x86-64";
};

process.stdout.write(chosen());
