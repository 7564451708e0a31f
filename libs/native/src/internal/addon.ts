import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

/** The functions of build/Release/patchlm_native.node (src/cc/addon.cc). */
export interface Addon {
  info(): {
    blasConfig: string;
    blasCore: string;
    blasThreads: number;
    poolThreads: number;
    /** "openblas", or "own <isa>" for our own GEMM (src/cc/sgemm.cc). */
    gemm: string;
    /** The ISAs of our own GEMM this CPU runs, fastest first (always ends with "portable"). */
    gemmIsas: Array<string>;
    /** Whether this CPU runs the bf16 GEMM (AVX512_BF16). */
    bf16Supported: boolean;
    /** "bf16" while bf16 mixed-precision matmuls are on. */
    precision: string;
  };
  /**
   * Which GEMM BatchMatMul and the attention kernels use: -1 OpenBLAS, else our own with the
   * kernel GemmIsa (0 portable, 1 avx2, 2 avx512, 3 neon). False, with no change, when the CPU lacks it.
   */
  setGemm(isa: number): boolean;
  /**
   * bf16 mixed-precision matmuls on or off: every BatchMatMul and attention product rounds its
   * operands to bf16 and accumulates in fp32 (VDPBF16PS). False, with no change, when the CPU lacks
   * AVX512_BF16.
   */
  setBf16(on: boolean): boolean;
  setThreads(blas: number, pool: number): void;
  /**
   * Repairs OpenBLAS 0.3.21's misdetection of newer CPUs (SSE kernels on an AVX CPU) when
   * OPENBLAS_CORETYPE is unset; returns the core now in use. See src/cc/addon.cc.
   */
  redetectBlasCore(): string;
  /** FP32 GFLOP/s of register-only FMA chains on every pool thread (best over about `seconds`). */
  peakGflops(seconds: number): number;
  /** Σ x² (accumulated in double). */
  sumOfSquares(x: Float32Array): number;
  /** For each i: out[i·M·N ..] = op(a[aOffsets[i] ..]) · op(b[bOffsets[i] ..]), row-major. */
  gemm(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    M: number,
    N: number,
    K: number,
    transposeA: boolean,
    transposeB: boolean,
    aOffsets: Int32Array,
    bOffsets: Int32Array,
  ): void;
  /** out = a op b over a coalesced broadcast shape; strides in elements, 0 = broadcast. */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, shape: Int32Array, aStrides: Int32Array, bStrides: Int32Array): void;
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  /** x viewed as (outer, R, inner) -> out (outer, inner). */
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, R: number, inner: number): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** Strided block copy of 4-byte elements (float32 or int32). */
  stridedCopy(
    src: Float32Array | Int32Array,
    srcOffset: number,
    dst: Float32Array | Int32Array,
    dstOffset: number,
    shape: Int32Array,
    srcStrides: Int32Array,
    dstStrides: Int32Array,
  ): void;
  /** out (outer, n, inner) <- rows of x (outer, axisSize, inner); -1, or the position of a bad index. */
  gather(x: Float32Array | Int32Array, indices: Int32Array, out: Float32Array | Int32Array, outer: number, axisSize: number, inner: number): number;
  /** out (rows, inner) += updates (n, inner) at rowIds; ids outside [0, rows) are skipped. */
  scatterAdd(updates: Float32Array, rowIds: Int32Array, out: Float32Array, rows: number, inner: number): void;
  /** h = [beta1, beta2, c1, c2, eps, invSqrtBc2, shrink, stepSize]; see @patchlm/fused Fused.adamw. */
  adamw(p: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, pOut: Float32Array, mOut: Float32Array, vOut: Float32Array, h: Float32Array): void;
  rmsNorm(x: Float32Array, gain: Float32Array, y: Float32Array, rows: number, cols: number, eps: number): void;
  rmsNormGrad(dy: Float32Array, x: Float32Array, gain: Float32Array, dx: Float32Array, dgain: Float32Array, rows: number, cols: number, eps: number): void;
  swiglu(gate: Float32Array, up: Float32Array, y: Float32Array): void;
  swigluGrad(dy: Float32Array, gate: Float32Array, up: Float32Array, dgate: Float32Array, dup: Float32Array): void;
  /** Σ_rk w_rk·(lse_r − z_r[t_rk]); fills lse (R). */
  weightedCrossEntropy(z: Float32Array, t: Int32Array, w: Float32Array, lse: Float32Array, R: number, V: number, K: number): number;
  /** dims = [B, H, Hkv, T, D]; fills o (q's layout: (B,H,T,D), or (B,T,H,D) when seqMajor) and lse (B,H,T). */
  causalAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    o: Float32Array,
    lse: Float32Array,
    dims: Int32Array,
    scale: number,
    seqMajor: boolean,
  ): void;
  causalAttentionGrad(
    dO: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    o: Float32Array,
    lse: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    dims: Int32Array,
    scale: number,
    seqMajor: boolean,
  ): void;
  /** dims = [B, T, heads, D]; y = RoPE of x (B,T,heads,D) with tables (T,D), or its adjoint when transpose. */
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, y: Float32Array, dims: Int32Array, transpose: boolean): void;
  weightedCrossEntropyGrad(dy: number, z: Float32Array, t: Int32Array, w: Float32Array, lse: Float32Array, dz: Float32Array, R: number, V: number, K: number): void;
}

/** Operation codes shared with src/cc/kernels.h. */
export const BinaryOp = { Add: 0, Sub: 1, Mul: 2, Div: 3, Max: 4, Min: 5, SquaredDifference: 6 } as const;
export const UnaryOp = {
  Exp: 0,
  Log: 1,
  Neg: 2,
  Sqrt: 3,
  Rsqrt: 4,
  Square: 5,
  Sigmoid: 6,
  Abs: 7,
  Relu: 8,
  Reciprocal: 9,
  Tanh: 10,
  Scale: 11,
} as const;
export const ReduceOp = { Sum: 0, Max: 1, Min: 2, Mean: 3 } as const;

export type Loaded = { readonly _tag: "Loaded"; readonly addon: Addon } | { readonly _tag: "Missing"; readonly reason: string };

const buildDir = path.join(__dirname, "..", "..", "build");
/**
 * build/Release/patchlm_native.node, or PATCHLM_NATIVE_ADDON when set: a development build made
 * elsewhere (node-gyp rebuilds in place, which a process that has the addon loaded must not see).
 */
export const addonPath = process.env.PATCHLM_NATIVE_ADDON ?? path.join(buildDir, "Release", "patchlm_native.node");

// The addon is a run-time artifact of `npm ci` (or `npm run build -w @patchlm/native`), so it is
// loaded by path, and its absence is an expected outcome with a reason, not an import error.
const load = createRequire(__filename);

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split("\n")[0];

const missingReason = (): string => {
  const explanation = path.join(buildDir, "unavailable.txt");
  if (existsSync(explanation)) return readFileSync(explanation, "utf8").trim();
  return `${path.relative(process.cwd(), addonPath)} is missing: the addon was never built (npm run build -w @patchlm/native)`;
};

let loaded: Loaded | undefined;

/** Load the addon once; a missing or unloadable addon yields the reason. */
export const loadAddon = (): Loaded => {
  if (loaded !== undefined) return loaded;
  if (!existsSync(addonPath)) {
    loaded = { _tag: "Missing", reason: missingReason() };
    return loaded;
  }
  try {
    loaded = { _tag: "Loaded", addon: load(addonPath) as Addon };
  } catch (e) {
    // E.g. libopenblas.so.0 removed after the build, or a build for another Node ABI.
    loaded = { _tag: "Missing", reason: `${addonPath} failed to load: ${firstLine(e)}` };
  }
  return loaded;
};
