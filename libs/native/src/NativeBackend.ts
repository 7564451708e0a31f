import * as tf from "@tensorflow/tfjs-core";
import { availableParallelism } from "node:os";
import { type Addon, loadAddon } from "./internal/addon";
import * as Composite from "./Composite";
import * as Copy from "./internal/copy";
import { fusedKernels } from "./internal/fused";
import { binaryKernel, binaryKernels, unaryKernel, unaryKernels } from "./internal/elementwise";
import { batchMatMulKernel } from "./internal/matmul";
import { reduceKernel, reduceKernels, softmaxKernel } from "./internal/reduce";
import { NativeMathBackend } from "./internal/storage";

/** The tfjs backend name this lib registers. */
export const backendName = "native";

/** What a user does when the addon is missing; quoted by the backend service's fallback line. */
export const howToEnable = "apt-get install libopenblas-dev pkg-config, then npm rebuild @patchlm/native";

export interface Info {
  /** OpenBLAS's build string, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...", or "none" (built without it). */
  readonly blas: string;
  /** The kernel set OpenBLAS picked for this CPU (e.g. "Haswell", "SkylakeX", "Prescott"). */
  readonly blasCore: string;
  /**
   * The core OpenBLAS picked by itself, when the addon replaced it (OpenBLAS 0.3.21 gives current
   * Xeons its SSE3 "Prescott" kernels; see `Options.redetectBlasCore`).
   */
  readonly blasCoreDetected?: string;
  /** OPENBLAS_CORETYPE as found in the environment; this lib never changes it. */
  readonly coretype: string | undefined;
  readonly blasThreads: number;
  /** Threads of the addon's own pool for elementwise work (including the calling thread). */
  readonly poolThreads: number;
  /** The GEMM behind BatchMatMul and attention: "openblas", or "own avx512", "own avx2", "own portable". */
  readonly gemm: string;
  /** Why that GEMM: the default policy's reason (`defaultGemm`), or the option or variable that chose it. */
  readonly gemmReason: string;
  /** Kernel paths of our own GEMM this CPU runs, fastest first. */
  readonly gemmIsas: ReadonlyArray<GemmIsa>;
  /** Whether this CPU runs bf16 matmuls (AVX512_BF16; `Options.precision`). */
  readonly bf16Supported: boolean;
  /** The matmuls' precision: "fp32", or "bf16" (bf16 operands, fp32 accumulation and results). */
  readonly precision: Precision;
  /** Kernels with a native implementation; every other kernel is the cpu backend's. */
  readonly kernels: ReadonlyArray<string>;
}

/**
 * The precision of matmuls (BatchMatMul and the attention products): "fp32", or "bf16" mixed
 * precision: the operands rounded to bf16 (nearest, ties to even; fp32 denormals to zero) and
 * multiplied by VDPBF16PS into fp32 sums; results, weights, gradients, optimizer state, norms,
 * softmax and losses stay fp32.
 */
export type Precision = "fp32" | "bf16";

/** Why bf16 is refused on this CPU. */
export const bf16Unsupported =
  "bf16 matmuls need a CPU with AVX512_BF16 (VDPBF16PS; e.g. Intel Cooper Lake or Sapphire Rapids and later, AMD Zen 4 and later); this one lacks it";

export type Registration =
  | { readonly _tag: "Registered"; readonly info: Info }
  | { readonly _tag: "Unavailable"; readonly reason: string };

export interface Options {
  /**
   * Threads for BLAS and for the addon's pool. Absent: OPENBLAS_NUM_THREADS if set, else every
   * core. The backend service passes the project setting (PATCHLM_THREADS) here.
   */
  readonly threads?: number;
  /**
   * Apply upstream OpenBLAS's fix for CPUs that 0.3.21 misdetects (default true; the environment
   * variable PATCHLM_BLAS_REDETECT=0 turns it off). Only acts when OPENBLAS_CORETYPE is unset and
   * OpenBLAS chose SSE-only kernels on a CPU with AVX; then it picks the core by CPU features, as
   * OpenBLAS ≥ 0.3.22 does for models it does not know.
   */
  readonly redetectBlasCore?: boolean;
  /**
   * The GEMM for BatchMatMul and the attention kernels: "own" is our own packed SGEMM
   * (src/cc/sgemm.cc) on its fastest kernel path for this CPU, or on the path named by `gemmIsa`;
   * "openblas" is OpenBLAS's sgemm. Absent: the environment variables PATCHLM_GEMM (own |
   * openblas) and PATCHLM_GEMM_ISA (avx512 | avx2 | portable); absent too, `defaultGemm`.
   */
  readonly gemm?: "own" | "openblas";
  readonly gemmIsa?: GemmIsa;
  /**
   * Matmul precision (absent: unchanged, "fp32" at first). "bf16" makes registration report
   * Unavailable on a CPU without AVX512_BF16.
   */
  readonly precision?: Precision;
}

/** The kernel paths of our own GEMM: AVX-512F, AVX2+FMA, NEON (aarch64), plain C++. */
export type GemmIsa = "avx512" | "avx2" | "neon" | "portable";
const gemmIsaCodes: Record<GemmIsa, number> = { portable: 0, avx2: 1, avx512: 2, neon: 3 };
const isGemmIsa = (s: string): s is GemmIsa => Object.hasOwn(gemmIsaCodes, s);

/**
 * The GEMM a backend uses unless told otherwise, from what the addon offers and the OpenBLAS
 * kernels in use (after `redetectBlasCore`). Measured in docs/performance.md (2026-12-08): our
 * AVX-512 kernels are 1.6–2.1× OpenBLAS's AVX2 ones (the "Haswell" core that
 * OPENBLAS_CORETYPE=Haswell forces) and 0.94–1.10× its own AVX-512 ones (Cooperlake), and a
 * training step on ours was faster in every round of the peer benchmark; our AVX2 path runs at
 * about half our AVX-512 speed. So: ours wherever it has AVX-512, whatever OpenBLAS's core (the
 * speed then no longer depends on the OpenBLAS variables), or where there is no OpenBLAS;
 * OpenBLAS otherwise. Our portable path (scalar C++, 3% of OpenBLAS) is never a default while
 * OpenBLAS exists, nor is our NEON path (tested under emulation only, never timed against
 * OpenBLAS's ARMv8 kernels).
 */
export const defaultGemm = (addon: {
  readonly blas: string;
  readonly blasCore: string;
  readonly gemmIsas: ReadonlyArray<GemmIsa>;
}): { readonly isa: GemmIsa | "openblas"; readonly reason: string } => {
  const best = addon.gemmIsas[0] ?? "portable";
  if (addon.blas === "none") return { isa: best, reason: "built without OpenBLAS" };
  if (best === "avx512") {
    return { isa: "avx512", reason: `our AVX-512 kernels; OpenBLAS's ${addon.blasCore} kernels are not faster` };
  }
  return { isa: "openblas", reason: `OpenBLAS's ${addon.blasCore} kernels; ours would run ${best} here` };
};

/** The GEMM choice from the options, else the environment; undefined keeps the current one. */
const gemmChoice = (options: Options): { readonly isa: GemmIsa | "best" | "openblas" } | { readonly error: string } | undefined => {
  const gemm = options.gemm ?? process.env.PATCHLM_GEMM;
  if (gemm === undefined || gemm === "") return undefined;
  if (gemm === "openblas") return { isa: "openblas" };
  if (gemm !== "own") return { error: `PATCHLM_GEMM=${gemm}: expected own or openblas` };
  const isa = options.gemmIsa ?? process.env.PATCHLM_GEMM_ISA;
  if (isa === undefined || isa === "") return { isa: "best" };
  return isGemmIsa(isa) ? { isa } : { error: `PATCHLM_GEMM_ISA=${isa}: expected avx512, avx2, neon or portable` };
};

/**
 * Select the GEMM of the loaded addon: OpenBLAS, or our own on a kernel path ("best": the
 * fastest this CPU runs). Returns an error message when the CPU lacks the path (nothing changes).
 */
const applyGemm = (addon: Addon, isa: GemmIsa | "best" | "openblas"): string | undefined => {
  if (isa === "openblas") {
    return addon.setGemm(-1) ? undefined : "this native addon was built without OpenBLAS (none was found at build time, or PATCHLM_NO_OPENBLAS=1)";
  }
  const supported = addon.info().gemmIsas.filter(isGemmIsa);
  const chosen = isa === "best" ? supported[0] : isa;
  if (chosen === undefined || !addon.setGemm(gemmIsaCodes[chosen])) {
    const needs = { avx512: "an x86-64 CPU with AVX-512F", avx2: "an x86-64 CPU with AVX2 and FMA", neon: "an aarch64 CPU", portable: "" };
    return `our GEMM's ${chosen} kernels need ${chosen === undefined ? "a supported CPU" : needs[chosen]}; this one runs ${supported.join(", ")}`;
  }
  return undefined;
};

const nativeKernels = (addon: Addon): ReadonlyArray<tf.KernelConfig> =>
  [
    { kernelName: "BatchMatMul", kernelFunc: batchMatMulKernel(addon) },
    { kernelName: "_FusedMatMul", kernelFunc: Composite.fusedMatMul(backendName) },
    ...binaryKernels.map(([kernelName, op]) => ({ kernelName, kernelFunc: binaryKernel(addon, kernelName, op) })),
    ...unaryKernels.map(([kernelName, op]) => ({ kernelName, kernelFunc: unaryKernel(addon, kernelName, op) })),
    ...reduceKernels.map(([kernelName, op]) => ({ kernelName, kernelFunc: reduceKernel(addon, kernelName, op) })),
    { kernelName: "Softmax", kernelFunc: softmaxKernel(addon) },
    { kernelName: "Transpose", kernelFunc: Copy.transposeKernel(addon) },
    { kernelName: "Slice", kernelFunc: Copy.sliceKernel(addon) },
    { kernelName: "SplitV", kernelFunc: Copy.splitVKernel(addon) },
    { kernelName: "Unpack", kernelFunc: Copy.unpackKernel(addon) },
    { kernelName: "Concat", kernelFunc: Copy.concatKernel(addon) },
    { kernelName: "Pack", kernelFunc: Copy.packKernel(addon) },
    { kernelName: "PadV2", kernelFunc: Copy.padKernel(addon) },
    { kernelName: "GatherV2", kernelFunc: Copy.gatherKernel(addon) },
    { kernelName: "ScatterNd", kernelFunc: Copy.scatterNdKernel(addon) },
    { kernelName: "UnsortedSegmentSum", kernelFunc: Copy.unsortedSegmentSumKernel(addon) },
    ...fusedKernels(addon),
  ].map((k) => ({ ...k, backendName }));

let registered: Info | undefined;
let blasCoreDetected: string | undefined;
let gemmReason = "";

const envThreads = (): number | undefined => {
  const n = Number(process.env.OPENBLAS_NUM_THREADS);
  return Number.isInteger(n) && n > 0 ? n : undefined;
};

const readInfo = (addon: Addon, kernels: ReadonlyArray<string>, blasCoreDetected: string | undefined): Info => {
  const i = addon.info();
  return {
    blas: i.blasConfig,
    blasCore: i.blasCore,
    ...(blasCoreDetected !== undefined && blasCoreDetected !== i.blasCore ? { blasCoreDetected } : {}),
    coretype: process.env.OPENBLAS_CORETYPE,
    blasThreads: i.blasThreads,
    poolThreads: i.poolThreads,
    gemm: i.gemm,
    gemmReason,
    gemmIsas: i.gemmIsas.filter(isGemmIsa),
    bf16Supported: i.bf16Supported,
    precision: i.precision === "bf16" ? "bf16" : "fp32",
    kernels,
  };
};

/**
 * Load the addon and register the `native` tfjs backend (idempotent; later calls only change the
 * thread count). Every cpu kernel is registered for `native`, then the native ones replace theirs.
 * The backend's priority is below cpu's, so tfjs never picks it unless asked to.
 */
export const register = (options: Options = {}): Registration => {
  const loaded = loadAddon();
  if (loaded._tag === "Missing") return { _tag: "Unavailable", reason: loaded.reason };
  const addon = loaded.addon;
  const gemm = gemmChoice(options);
  if (gemm !== undefined && "error" in gemm) return { _tag: "Unavailable", reason: gemm.error };
  if (options.precision !== undefined && !addon.setBf16(options.precision === "bf16")) return { _tag: "Unavailable", reason: bf16Unsupported };
  if (gemm !== undefined) {
    const error = applyGemm(addon, gemm.isa);
    if (error !== undefined) return { _tag: "Unavailable", reason: error };
    gemmReason = options.gemm !== undefined ? "chosen by the caller" : `PATCHLM_GEMM=${process.env.PATCHLM_GEMM}`;
  }
  if (registered === undefined) {
    // Before the first BLAS call: OpenBLAS may only be re-initialised while idle.
    const detected = addon.info().blasCore;
    const redetect = options.redetectBlasCore ?? process.env.PATCHLM_BLAS_REDETECT !== "0";
    blasCoreDetected = redetect && addon.redetectBlasCore() !== detected ? detected : undefined;
    if (gemm === undefined) {
      // The default needs the kernels OpenBLAS really runs, so it comes after the redetection.
      const i = addon.info();
      const chosen = defaultGemm({ blas: i.blasConfig, blasCore: i.blasCore, gemmIsas: i.gemmIsas.filter(isGemmIsa) });
      if (applyGemm(addon, chosen.isa) === undefined) gemmReason = `default: ${chosen.reason}`;
    }
  }
  const threads = options.threads ?? envThreads() ?? availableParallelism();
  addon.setThreads(threads, threads);
  if (registered === undefined) {
    const natives = nativeKernels(addon);
    const overridden = new Set(natives.map((k) => k.kernelName));
    for (const config of tf.getKernelsForBackend("cpu")) {
      if (!overridden.has(config.kernelName)) tf.registerKernel({ ...config, backendName });
    }
    for (const config of natives) tf.registerKernel(config);
    tf.registerBackend(backendName, () => new NativeMathBackend(), 0);
    registered = readInfo(addon, [...overridden], blasCoreDetected);
  }
  registered = readInfo(addon, registered.kernels, blasCoreDetected);
  return { _tag: "Registered", info: registered };
};

/**
 * Switch the registered backend's GEMM (tests and benchmarks): "openblas", or a kernel path of
 * our own GEMM. Returns an error message, with nothing changed, when the CPU lacks that path or
 * the addon is missing.
 */
export const selectGemm = (gemm: "openblas" | GemmIsa): string | undefined => {
  const loaded = loadAddon();
  if (loaded._tag === "Missing") return loaded.reason;
  const error = applyGemm(loaded.addon, gemm);
  if (error === undefined) {
    gemmReason = "selected by selectGemm";
    if (registered !== undefined) registered = { ...registered, gemm: loaded.addon.info().gemm, gemmReason };
  }
  return error;
};

/**
 * Switch the registered backend's matmul precision (tests and benchmarks). Returns an error
 * message, with nothing changed, when the CPU lacks AVX512_BF16 or the addon is missing.
 */
export const selectPrecision = (precision: Precision): string | undefined => {
  const loaded = loadAddon();
  if (loaded._tag === "Missing") return loaded.reason;
  if (!loaded.addon.setBf16(precision === "bf16")) return bf16Unsupported;
  if (registered !== undefined) registered = { ...registered, precision };
  return undefined;
};

/**
 * One row-major product on the selected GEMM, straight on Float32Arrays (benchmarks):
 * out (M×N) = op(a)·op(b), with op(a) M×K and op(b) K×N. Throws the reason when the addon is missing.
 */
export const gemm = (a: Float32Array, b: Float32Array, out: Float32Array, M: number, N: number, K: number, transposeA = false, transposeB = false): void => {
  const loaded = loadAddon();
  if (loaded._tag === "Missing") throw new Error(loaded.reason);
  loaded.addon.gemm(a, b, out, M, N, K, transposeA, transposeB, new Int32Array(1), new Int32Array(1));
};

const sseOnlyCores = new Set(["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Generic"]);

/**
 * Advice when OpenBLAS picked slow kernels. OpenBLAS 0.3.21 does not recognise the virtual CPUs
 * of these machines and falls back to its SSE3 "Prescott" kernels (about 19 GFLOP/s instead of
 * 100-450) unless `register` repaired that (`Options.redetectBlasCore`).
 */
export const advice = (info: Info): string | undefined =>
  info.gemm === "openblas" && sseOnlyCores.has(info.blasCore)
    ? `OpenBLAS uses its ${info.blasCore} (SSE) kernels because it did not recognise this CPU; ` +
      "if the CPU has AVX-512 or AVX2, OPENBLAS_CORETYPE=SkylakeX or OPENBLAS_CORETYPE=Haswell makes GEMM several times faster"
    : undefined;

let measuredPeak: number | undefined;

/**
 * The machine's FP32 peak in GFLOP/s, measured once per process: register-only FMA chains at the
 * widest vector width of this build on `threads` threads at once, the best of about 1 s. Undefined when the
 * addon is missing. Other processes on the cores lower it, so measure on an idle machine.
 */
export const measurePeakGflops = (threads: number = availableParallelism()): number | undefined => {
  if (measuredPeak !== undefined) return measuredPeak;
  const loaded = loadAddon();
  if (loaded._tag === "Missing") return undefined;
  const pool = loaded.addon.info().poolThreads;
  loaded.addon.setThreads(loaded.addon.info().blasThreads, threads);
  measuredPeak = Math.round(loaded.addon.peakGflops(1.0) * 10) / 10;
  loaded.addon.setThreads(loaded.addon.info().blasThreads, pool);
  return measuredPeak;
};

/** Whether the addon loads here, and if not, why (without registering anything). */
export const availability = (): { readonly available: true } | { readonly available: false; readonly reason: string } => {
  const loaded = loadAddon();
  return loaded._tag === "Loaded" ? { available: true } : { available: false, reason: loaded.reason };
};
