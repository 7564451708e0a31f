/**
 * Our own SGEMM (libs/native/src/cc/sgemm.cc) on each kernel path this CPU runs, next to
 * OpenBLAS's sgemm, in one invocation: GFLOP/s per path and shape as JSON on stdout. Where the CPU
 * has AVX512_BF16, the bf16 mixed-precision GEMM too (path "bf16": operands rounded to bf16,
 * fp32 sums; its fraction of peak is of the FP32 peak, which VDPBF16PS can double).
 *
 *   npx tsx tools/bench-gemm.ts [--seconds 0.6] [--rounds 3] [--threads N] [--shapes 2048x256x4096:bT,...]
 *     [--paths avx512,bf16]
 *
 * A shape is MxNxK with an optional :aT or :bT (the transposed operand: tfjs's gradient forms).
 * The default shapes are a reference-config training step's (B=8, T=256, C=256, SwiGLU 688,
 * V=4096) in their forward and gradient forms, plus 4096x128x352 and a square 1024. Each round
 * runs every path in turn for seconds/rounds per shape, so a busy machine slows them alike; the
 * JSON gives each path's median over rounds and its ratio to OpenBLAS. Products run straight on
 * Float32Arrays through the addon (NativeBackend.gemm), split across the addon's pool as
 * BatchMatMul does. OpenBLAS reads OPENBLAS_CORETYPE at load time; the JSON records it.
 */
import { Effect } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { NativeBackend } from "@patchlm/native";
import { availableParallelism, cpus } from "node:os";
import { parseArgs } from "node:util";
import { openblasReport } from "./bench-native-env";

interface Shape {
  readonly name: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
}

const parseShape = (spec: string, name = spec): Shape => {
  const [dims, form = ""] = spec.split(":");
  const [M, N, K] = dims.split("x").map(Number);
  if (![M, N, K].every((d) => Number.isInteger(d) && d >= 0) || !["", "aT", "bT"].includes(form)) {
    throw new Error(`--shapes: ${spec} is not MxNxK[:aT|:bT]`);
  }
  return { name, M, N, K, transposeA: form === "aT", transposeB: form === "bT" };
};

const defaultShapes: ReadonlyArray<Shape> = [
  parseShape("2048x256x256", "attention projection forward (B·T × C · C × C)"),
  parseShape("256x256x2048:aT", "projection weight gradient (xᵀ · dy)"),
  parseShape("2048x688x256", "SwiGLU up forward"),
  parseShape("2048x256x688:bT", "SwiGLU down input gradient (dy · Wᵀ)"),
  parseShape("2048x4096x256", "vocabulary head forward"),
  parseShape("2048x256x4096:bT", "vocabulary head input gradient"),
  parseShape("256x4096x2048:aT", "vocabulary head weight gradient"),
  parseShape("4096x128x352", "patch-mode product"),
  parseShape("1024x1024x1024", "square 1024"),
];

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "0.6" },
    rounds: { type: "string", default: "3" },
    threads: { type: "string" },
    shapes: { type: "string" },
    paths: { type: "string" },
  },
});
const seconds = Number(values.seconds);
const rounds = Math.max(1, Math.floor(Number(values.rounds)));
const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
const shapes = values.shapes === undefined ? defaultShapes : values.shapes.split(",").map((s) => parseShape(s));

const registration = NativeBackend.register({ threads });
if (registration._tag === "Unavailable") {
  console.error(`native addon unavailable: ${registration.reason}`);
  process.exit(1);
}
// An addon built without OpenBLAS has only our paths (and no ratios).
const withOpenblas = registration.info.blas !== "none";
type Path = "openblas" | NativeBackend.GemmIsa | "bf16";
const available: ReadonlyArray<Path> = [
  ...(withOpenblas ? ["openblas" as const] : []),
  ...registration.info.gemmIsas,
  ...(registration.info.bf16Supported ? ["bf16" as const] : []),
];
// --paths avx512,bf16: only these (A/B runs of one path between two builds); the rest are not run.
const wanted = values.paths?.split(",");
const unknown = wanted?.filter((p) => !available.includes(p as Path));
if (unknown !== undefined && unknown.length > 0) {
  console.error(`--paths: ${unknown.join(", ")} not among this machine's paths (${available.join(", ")})`);
  process.exit(1);
}
const paths = wanted === undefined ? available : available.filter((p) => wanted.includes(p));
const select = (path: Path): void => {
  const error = NativeBackend.selectPrecision(path === "bf16" ? "bf16" : "fp32") ?? (path === "bf16" ? undefined : NativeBackend.selectGemm(path));
  if (error !== undefined) throw new Error(error);
};

const randomFloats = (n: number): Float32Array => {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.random() * 2 - 1;
  return out;
};

/** GFLOP/s of repeated products for about `budget` seconds (at least one after a warm-up). */
const measure = (s: Shape, a: Float32Array, b: Float32Array, out: Float32Array, budget: number): number => {
  const run = () => NativeBackend.gemm(a, b, out, s.M, s.N, s.K, s.transposeA, s.transposeB);
  run();
  let reps = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  do {
    run();
    reps++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < budget);
  return (2 * s.M * s.N * s.K * reps) / elapsed / 1e9;
};

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const round1 = (x: number) => Math.round(x * 10) / 10;

// The machine's FP32 peak as MFU uses it (measured once, cached per machine and thread count).
void Effect.runPromise(ComputeBackend.machinePeak(threads)).then((peak) => {
  const results = shapes.map((s) => {
    const a = randomFloats(s.M * s.K);
    const b = randomFloats(s.K * s.N);
    const out = new Float32Array(s.M * s.N);
    const samples = new Map<string, Array<number>>(paths.map((p) => [p, []]));
    for (let r = 0; r < rounds; r++) {
      for (const path of paths) {
        select(path);
        samples.get(path)?.push(measure(s, a, b, out, seconds / rounds));
      }
    }
    const gflops = Object.fromEntries(paths.map((p) => [p, round1(median(samples.get(p) ?? []))]));
    const openblas = gflops.openblas ?? 0;
    return {
      ...s,
      gflops,
      fractionOfPeak: peak === undefined ? null : Object.fromEntries(paths.map((p) => [p, Math.round((gflops[p] / peak.gflops) * 1000) / 1000])),
      ratioToOpenblas: Object.fromEntries(paths.filter((p) => p !== "openblas").map((p) => [p, openblas > 0 ? Math.round((gflops[p] / openblas) * 100) / 100 : null])),
    };
  });
  select(paths[0]);

  console.log(
    JSON.stringify(
      {
        benchmark: "bench-gemm",
        cpu: cpus()[0]?.model ?? null,
        threads,
        poolThreads: registration.info.poolThreads,
        gemmIsas: registration.info.gemmIsas,
        openblas: { ...openblasReport(), build: registration.info.blas },
        peak: peak === undefined ? null : { gflops: peak.gflops, source: `measured on ${peak.measuredAt}, cached in ${peak.file}` },
        secondsPerShapeAndPath: seconds,
        rounds,
        note: "median GFLOP/s over rounds; each round runs every path in turn on the same operands",
        shapes: results,
      },
      null,
      2,
    ),
  );
});
