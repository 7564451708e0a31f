/**
 * sgemm throughput through tf.matMul on each backend, as JSON on stdout.
 *
 *   npx tsx tools/bench-kernels.ts [--backends native,wasm,cpu] [--seconds 0.5]
 *
 * The shapes are those of a reference-config training step (B=8, T=256, C=256, SwiGLU 688,
 * V=4096, 4 heads of 64) plus a square 1024³, in the forward (a·b) and gradient (aT·b, a·bT)
 * forms. OpenBLAS picks its kernels from OPENBLAS_CORETYPE at load time; the JSON records the
 * variables as this process saw them and the kernel set OpenBLAS chose. To measure with them
 * unset, unset them in the command only:
 *
 *   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE npx tsx tools/bench-kernels.ts
 */
import * as tf from "@tensorflow/tfjs";
import { ComputeBackend } from "@patchlm/backend";
import { Effect } from "effect";
import { openblasReport, printReport } from "./bench-native-env";

interface Shape {
  readonly name: string;
  readonly batch: number;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
}

const shape = (name: string, batch: number, M: number, N: number, K: number, transposeA = false, transposeB = false): Shape => ({
  name,
  batch,
  M,
  N,
  K,
  transposeA,
  transposeB,
});

const shapes: ReadonlyArray<Shape> = [
  shape("square 1024", 1, 1024, 1024, 1024),
  shape("qkv/o proj fwd (BT x C x C)", 1, 2048, 256, 256),
  shape("mlp up fwd (BT x C x 688)", 1, 2048, 688, 256),
  shape("mlp up dW (C x 688, K=BT) aT.b", 1, 256, 688, 2048, true, false),
  shape("mlp down dX (BT x 688 x C) a.bT", 1, 2048, 688, 256, false, true),
  shape("lm head fwd (BT x V x C)", 1, 2048, 4096, 256),
  shape("lm head dW (C x V, K=BT) aT.b", 1, 256, 4096, 2048, true, false),
  shape("attention scores (BH=32, T x T x 64) a.bT", 32, 256, 256, 64, false, true),
  shape("attention values (BH=32, T x 64 x T)", 32, 256, 64, 256),
];

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const backends = flag("backends", "native,wasm,cpu").split(",") as Array<ComputeBackend.BackendName>;
const seconds = Number(flag("seconds", "0.5"));

/** GFLOP/s of one shape: one warm-up call, then repeat until `seconds` have passed (at least 2 calls). */
const measure = (s: Shape, budget: number): { gflops: number; calls: number; msPerCall: number } => {
  const [a, b] = tf.tidy(() => [
    tf.randomUniform(s.transposeA ? [s.batch, s.K, s.M] : [s.batch, s.M, s.K], -1, 1),
    tf.randomUniform(s.transposeB ? [s.batch, s.N, s.K] : [s.batch, s.K, s.N], -1, 1),
  ]);
  const run = () => tf.matMul(s.batch === 1 ? a.squeeze([0]) : a, s.batch === 1 ? b.squeeze([0]) : b, s.transposeA, s.transposeB);
  tf.tidy(run);
  let calls = 0;
  const start = performance.now();
  while (calls < 2 || performance.now() - start < budget * 1000) {
    tf.tidy(run);
    calls++;
  }
  const ms = (performance.now() - start) / calls;
  tf.dispose([a, b]);
  return { gflops: (2 * s.batch * s.M * s.N * s.K) / ms / 1e6, calls, msPerCall: ms };
};

const main = Effect.gen(function* () {
  const results: Array<Record<string, unknown>> = [];
  for (const name of backends) {
    const service = yield* ComputeBackend.make({ backend: name });
    // The pure-JS cpu backend runs at about 1 GFLOP/s: one call per shape is all it can afford.
    const budget = name === "cpu" ? 0 : seconds;
    const rows = shapes.map((s) => ({ shape: s.name, batch: s.batch, M: s.M, N: s.N, K: s.K, ...measure(s, budget) }));
    results.push({
      backend: name,
      threads: service.threads,
      detail: service.detail,
      shapes: rows.map((r) => ({ ...r, gflops: Math.round(r.gflops * 10) / 10, msPerCall: Math.round(r.msPerCall * 1000) / 1000 })),
    });
  }
  return {
    benchmark: "sgemm through tf.matMul",
    peakGflops: (yield* ComputeBackend.make({ backend: "cpu" })).peakGflops,
    openblas: openblasReport(),
    results,
  };
});

printReport(main);
