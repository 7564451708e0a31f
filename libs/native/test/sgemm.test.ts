import * as tf from "@tensorflow/tfjs";
import { mulberry32 } from "@patchlm/testing";
import { Fused } from "@patchlm/fused";
import { NativeBackend } from "../src";
import { describeNative, expectNativeMatchesCpu, type MatMulCase, matMulCases, operandShape, rand, registration } from "./support";

// Our own SGEMM (src/cc/sgemm.cc), each kernel path forced in turn, against a float64 reference
// computed here and against the cpu backend through tf.matMul. The error bound is relative to K:
// |c − ref| ≤ (2K + 1)·2⁻²⁴·Σₖ|aᵢₖ·bₖⱼ| (plus a hair for a zero sum).

// (neon runs on aarch64 only; test/aarch64.test.ts checks it under qemu-user from here)
const isas: ReadonlyArray<NativeBackend.GemmIsa> = ["avx512", "avx2", "neon", "portable"];
const supported: ReadonlyArray<NativeBackend.GemmIsa> = registration._tag === "Registered" ? registration.info.gemmIsas : [];

// Uniform in [-1, 1), made once per (size, seed) and shared by the kernel paths.
const made = new Map<string, Float32Array>();
const floats = (n: number, seed: number): Float32Array => {
  const key = `${n}/${seed}`;
  const cached = made.get(key);
  if (cached !== undefined) return cached;
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * r() - 1;
  made.set(key, out);
  return out;
};

// Generous: the machine running these may be busy (the model shapes are 2 GFLOP products).
const timeout = 300_000;

interface Case {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly ta: boolean;
  readonly tb: boolean;
}

// fp32 → bf16 → fp32, to nearest with ties to even: the reference's own rounding, written from
// the format (1 sign, 8 exponent, 7 mantissa bits), not from the addon's code.
const bits = new Uint32Array(1);
const asFloat = new Float32Array(bits.buffer);
const bf16 = (x: number): number => {
  asFloat[0] = x;
  const u = bits[0];
  if (Number.isNaN(x)) return x;
  const low = u & 0xffff;
  let high = u >>> 16;
  if (low > 0x8000 || (low === 0x8000 && (high & 1) === 1)) high += 1;
  bits[0] = high << 16;
  return asFloat[0];
};

/**
 * out = op(a)·op(b) on the selected GEMM, checked at `samples` entries (all when undefined).
 * With `rounded`, the reference multiplies the operands rounded to bf16 (bf16 matmuls): the
 * products of two bf16 are exact, so the fp32 bound on the sums still holds.
 */
const checkGemm = ({ M, N, K, ta, tb }: Case, seed: number, samples?: number, rounded = false): void => {
  const a = rounded ? floats(M * K, seed).map(bf16) : floats(M * K, seed);
  const b = rounded ? floats(K * N, seed + 1).map(bf16) : floats(K * N, seed + 1);
  // NaN in the output buffer: a product must never read it (tfjs hands out pooled arrays).
  const out = new Float32Array(M * N).fill(Number.NaN);
  NativeBackend.gemm(rounded ? floats(M * K, seed) : a, rounded ? floats(K * N, seed + 1) : b, out, M, N, K, ta, tb);
  const at = (i: number, k: number) => (ta ? a[k * M + i] : a[i * K + k]);
  const bt = (k: number, j: number) => (tb ? b[j * K + k] : b[k * N + j]);
  const check = (i: number, j: number) => {
    let sum = 0;
    let abs = 0;
    for (let k = 0; k < K; k++) {
      const p = at(i, k) * bt(k, j);
      sum += p;
      abs += Math.abs(p);
    }
    const tol = (2 * K + 1) * 2 ** -24 * abs + 1e-30;
    const got = out[i * N + j];
    if (!(Math.abs(got - sum) <= tol)) {
      throw new Error(`M${M} N${N} K${K} ${ta ? "aT" : "a"}·${tb ? "bT" : "b"}: C[${i}][${j}] = ${got}, expected ${sum} ± ${tol}`);
    }
  };
  if (samples === undefined) {
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) check(i, j);
  } else {
    const r = mulberry32(seed + 2);
    // The corners and edges of C, then random entries.
    for (const [i, j] of [[0, 0], [M - 1, N - 1], [0, N - 1], [M - 1, 0]]) check(i, j);
    for (let s = 0; s < samples; s++) check(Math.floor(r() * M), Math.floor(r() * N));
  }
};

// The three forms tfjs's matMul and its gradients use, and aT·bT for completeness.
const forms: ReadonlyArray<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

// Edges around every kernel's register blocks (4/6/12 rows, 16/32 columns) and cache blocks
// (KC 256, MC 64/144/192): 1s, primes, one past a block.
const edgeShapes: ReadonlyArray<[number, number, number]> = [
  [1, 1, 1],
  [1, 17, 3],
  [13, 1, 5],
  [2, 3, 1],
  [5, 7, 3],
  [12, 32, 8],
  [13, 33, 9],
  [11, 31, 257],
  [25, 47, 2],
  [193, 65, 31],
  [97, 130, 300],
  [145, 16, 64],
  [301, 77, 129], // split by rows across the pool's two threads
  [45, 263, 97], // split by columns
  [37, 45, 1000], // long K, small C: split into two halves of K (gemm.cc, productSplitK)
  [13, 200, 401], // the same with an odd second half (208 + 193)
];

// Products of this project's models (B·T rows against the width, SwiGLU and vocabulary sizes).
const modelShapes: ReadonlyArray<[number, number, number]> = [
  [4096, 128, 352],
  [2048, 256, 4096],
  [2048, 688, 256],
];

// An addon built without OpenBLAS (none at build time, or PATCHLM_NO_OPENBLAS=1) has only ours.
const withOpenblas = registration._tag === "Registered" && registration.info.blas !== "none";
// What each test file's processes get by default (the policy under test below); restored after these tests.
const registered = registration._tag === "Registered" ? registration.info : undefined;
const defaultChoice = registered === undefined ? undefined : NativeBackend.defaultGemm(registered).isa;

describe("NativeBackend.defaultGemm (the policy, from docs/performance.md's measurements)", () => {
  const isasOf = { avx512: ["avx512", "avx2", "portable"], avx2: ["avx2", "portable"], neon: ["neon", "portable"], none: ["portable"] } as const;
  it.each([
    ["AVX-512 CPU, OpenBLAS forced to its AVX2 kernels (OPENBLAS_CORETYPE=Haswell)", "Haswell", isasOf.avx512, "avx512"],
    ["AVX-512 CPU, OpenBLAS on AVX2 Zen kernels", "Zen", isasOf.avx512, "avx512"],
    ["AVX-512 CPU, OpenBLAS on its AVX-512 kernels: ours are as fast, and read no OpenBLAS variable", "Cooperlake", isasOf.avx512, "avx512"],
    ["AVX-512 CPU, OpenBLAS on SkylakeX kernels", "SkylakeX", isasOf.avx512, "avx512"],
    ["AVX2 CPU: our AVX2 path is about half our AVX-512 speed, below OpenBLAS's", "Haswell", isasOf.avx2, "openblas"],
    ["a CPU without AVX2: never the portable path while OpenBLAS exists", "Prescott", isasOf.none, "openblas"],
    ["an aarch64 CPU: OpenBLAS's ARMv8 kernels while OpenBLAS exists (ours is untimed there)", "NEOVERSEN1", isasOf.neon, "openblas"],
  ])("%s", (_what, blasCore, gemmIsas, want) => {
    expect(NativeBackend.defaultGemm({ blas: "OpenBLAS 0.3.21", blasCore, gemmIsas }).isa).toBe(want);
  });

  it("is ours, on the fastest path, in a build without OpenBLAS", () => {
    expect(NativeBackend.defaultGemm({ blas: "none", blasCore: "none", gemmIsas: isasOf.avx2 })).toEqual({ isa: "avx2", reason: "built without OpenBLAS" });
    expect(NativeBackend.defaultGemm({ blas: "none", blasCore: "none", gemmIsas: isasOf.none }).isa).toBe("portable");
    expect(NativeBackend.defaultGemm({ blas: "none", blasCore: "none", gemmIsas: isasOf.neon }).isa).toBe("neon");
  });
});

describeNative("our own SGEMM", () => {
  afterAll(() => {
    expect(NativeBackend.selectGemm(defaultChoice!)).toBeUndefined();
  });

  it("is the default where the policy picks it, and the backend says why", () => {
    if (process.env.PATCHLM_GEMM !== undefined) return;
    const r = NativeBackend.register({ threads: 2 });
    expect(r._tag === "Registered" && r.info.gemm).toBe(defaultChoice === "openblas" ? "openblas" : `own ${defaultChoice}`);
    expect(r._tag === "Registered" && r.info.gemmReason).toMatch(/^default: /);
    if (!withOpenblas) expect(NativeBackend.selectGemm("openblas")).toContain("built without OpenBLAS");
  });

  it("lists the kernel paths this CPU runs, the portable one always", () => {
    expect(supported).toContain("portable");
    expect(supported[0]).toBe(isas.find((isa) => supported.includes(isa)));
  });

  it("is selected by register's options or PATCHLM_GEMM / PATCHLM_GEMM_ISA, and refuses unknown values", () => {
    const own = NativeBackend.register({ threads: 2, gemm: "own" });
    expect(own._tag === "Registered" && own.info.gemm).toBe(`own ${supported[0]}`);
    const saved = { gemm: process.env.PATCHLM_GEMM, isa: process.env.PATCHLM_GEMM_ISA };
    try {
      process.env.PATCHLM_GEMM = "own";
      process.env.PATCHLM_GEMM_ISA = "portable";
      const viaEnv = NativeBackend.register({ threads: 2 });
      expect(viaEnv._tag === "Registered" && viaEnv.info.gemm).toBe("own portable");
      process.env.PATCHLM_GEMM_ISA = "sse9";
      const bad = NativeBackend.register({ threads: 2 });
      expect(bad._tag === "Unavailable" && bad.reason).toContain("PATCHLM_GEMM_ISA=sse9");
      process.env.PATCHLM_GEMM = "fastest";
      const badGemm = NativeBackend.register({ threads: 2 });
      expect(badGemm._tag === "Unavailable" && badGemm.reason).toContain("PATCHLM_GEMM=fastest");
    } finally {
      for (const [key, value] of [["PATCHLM_GEMM", saved.gemm], ["PATCHLM_GEMM_ISA", saved.isa]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
    if (withOpenblas) {
      const back = NativeBackend.register({ threads: 2, gemm: "openblas" });
      expect(back._tag === "Registered" && back.info.gemm).toBe("openblas");
    }
  });

  it("splits a long-K product into fixed halves of K: the same bits on one thread as on two, on every path", () => {
    const [M, N, K] = [24, 40, 1100];
    const a = floats(M * K, 91);
    const b = floats(K * N, 92);
    const on = (threads: number) => {
      NativeBackend.register({ threads });
      const out = new Float32Array(M * N);
      NativeBackend.gemm(a, b, out, M, N, K, true, false);
      return out;
    };
    try {
      for (const isa of supported) {
        expect(NativeBackend.selectGemm(isa)).toBeUndefined();
        const [one, two] = [on(1), on(2)];
        expect({ isa, same: one.every((x, i) => Object.is(x, two[i])) }).toEqual({ isa, same: true });
      }
    } finally {
      NativeBackend.register({ threads: 2 });
    }
  });

  for (const isa of isas) {
    const runs = supported.includes(isa);
    // A path this CPU lacks is skipped, and the test name says so.
    const describeIsa = runs ? describe : describe.skip;
    describeIsa(`kernel path ${isa}${runs ? "" : " (skipped: this CPU lacks it)"}`, () => {
      beforeAll(() => {
        expect(NativeBackend.selectGemm(isa)).toBeUndefined();
        const r = NativeBackend.register({ threads: 2 });
        expect(r._tag === "Registered" && r.info.gemm).toBe(`own ${isa}`);
      });

      it("matches a float64 reference on every entry of odd, edge and block-crossing shapes, all transposes", () => {
        edgeShapes.forEach(([M, N, K], s) => {
          for (const [ta, tb] of forms) checkGemm({ M, N, K, ta, tb }, 10 * s);
        });
      }, timeout);

      it("matches a float64 reference on the models' shapes (sampled entries)", () => {
        modelShapes.forEach(([M, N, K], s) => {
          for (const [ta, tb] of forms.slice(0, 3)) checkGemm({ M, N, K, ta, tb }, 1000 + s, 200);
        });
      }, timeout);

      it("leaves empty products empty and zero-fills K = 0", () => {
        NativeBackend.gemm(new Float32Array(0), new Float32Array(15), new Float32Array(0), 0, 5, 3);
        const out = new Float32Array(12).fill(Number.NaN);
        NativeBackend.gemm(new Float32Array(0), new Float32Array(0), out, 4, 3, 0);
        expect(Array.from(out)).toEqual(new Array(12).fill(0));
      });

      it("matches cpu through tf.matMul: batched, broadcast batches, transposes, empty and size-1 shapes", async () => {
        const cases: ReadonlyArray<MatMulCase> = [
          ...matMulCases,
          { a: [8], b: [8], M: 64, N: 64, K: 32 }, // a batch split across threads by item
          { a: [3, 2], b: [], M: 40, N: 50, K: 60 }, // one tall GEMM against a shared weight
        ];
        for (const c of cases) {
          for (const [ta, tb] of forms) {
            const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(c.a, c.b);
            const operands = () => [rand(operandShape(c.a, c.M, c.K, ta), 1), rand(operandShape(c.b, c.K, c.N, tb), 2)];
            // The cpu kernel mislabels its output when both sides broadcast, so its reference
            // broadcasts the operands first (as in matmul.test.ts).
            const broadcast = () => operands().map((t) => tf.broadcastTo(t, [...outBatch, ...t.shape.slice(-2)]));
            const product = (inputs: () => Array<tf.Tensor>) => () => {
              const [a, b] = inputs();
              return tf.matMul(a, b, ta, tb);
            };
            const tol = 1e-6 * Math.max(c.K, 1) + 1e-6;
            await expectNativeMatchesCpu(`${isa} ${JSON.stringify(c)} ${ta ? "aT" : "a"}·${tb ? "bT" : "b"}`, product(operands), tol, 1e-4, product(broadcast));
          }
        }
      }, timeout);

      it("runs the attention kernels' products (scaled, accumulating, strided) like cpu, gradients included", async () => {
        for (const [B, H, Hkv, T, D] of [[1, 4, 2, 9, 8], [1, 2, 1, 150, 16]]) {
          for (const layout of ["bhtd", "bthd"] as const) {
            await expectNativeMatchesCpu(`${isa} attention ${layout} ${[B, H, Hkv, T, D]}`, () => {
              const dims = (h: number) => (layout === "bhtd" ? [B, h, T, D] : [B, T, h, D]);
              const q = rand(dims(H), 1, -2, 2) as tf.Tensor4D;
              const k = rand(dims(Hkv), 2, -2, 2) as tf.Tensor4D;
              const v = rand(dims(Hkv), 3) as tf.Tensor4D;
              const w = rand(dims(H), 4);
              const att = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
                Fused.causalAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, 0.3, layout);
              return [att(q, k, v), ...tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(att(a, b, c), w)))([q, k, v])];
            }, 1e-5, 1e-4);
          }
        }
      }, timeout);
    });
  }
});

const bf16Runs = registration._tag === "Registered" && registration.info.bf16Supported;

// bf16 mixed precision (src/cc/sgemm.cc, gemmBf16): every product rounds its operands to bf16
// while packing them and accumulates in fp32 with VDPBF16PS.
(bf16Runs ? describe : describe.skip)(`bf16 matmuls${bf16Runs ? "" : " (skipped: this CPU lacks AVX512_BF16)"}`, () => {
  beforeAll(() => {
    expect(NativeBackend.selectPrecision("bf16")).toBeUndefined();
    const r = NativeBackend.register({ threads: 2 });
    expect(r._tag === "Registered" && r.info.precision).toBe("bf16");
  });
  afterAll(() => {
    expect(NativeBackend.selectPrecision("fp32")).toBeUndefined();
  });

  it("equal a float64 product of the bf16-rounded operands on odd, edge and block-crossing shapes, all transposes", () => {
    // Odd K (a zero-padded last pair) and K past the bf16 kernel's KC of 512.
    const shapes: ReadonlyArray<[number, number, number]> = [...edgeShapes, [14, 33, 513], [40, 70, 1025]];
    shapes.forEach(([M, N, K], s) => {
      for (const [ta, tb] of forms) checkGemm({ M, N, K, ta, tb }, 10 * s, undefined, true);
    });
  }, timeout);

  it("equal it on the models' shapes (sampled entries)", () => {
    modelShapes.forEach(([M, N, K], s) => {
      for (const [ta, tb] of forms.slice(0, 3)) checkGemm({ M, N, K, ta, tb }, 1000 + s, 200, true);
    });
  }, timeout);

  it("really round: against the unrounded fp32 product they are off by about bf16's 2⁻⁹, and fp32 is not", () => {
    const [M, N, K] = [24, 40, 256];
    const a = floats(M * K, 77);
    const b = floats(K * N, 78);
    const worst = (out: Float32Array) => {
      let w = 0;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let sum = 0;
          let abs = 0;
          for (let k = 0; k < K; k++) {
            sum += a[i * K + k] * b[k * N + j];
            abs += Math.abs(a[i * K + k] * b[k * N + j]);
          }
          w = Math.max(w, Math.abs(out[i * N + j] - sum) / abs);
        }
      }
      return w;
    };
    const out = new Float32Array(M * N);
    NativeBackend.gemm(a, b, out, M, N, K);
    const inBf16 = worst(out);
    expect(NativeBackend.selectPrecision("fp32")).toBeUndefined();
    NativeBackend.gemm(a, b, out, M, N, K);
    const inFp32 = worst(out);
    expect(NativeBackend.selectPrecision("bf16")).toBeUndefined();
    expect(inFp32).toBeLessThan(1e-6);
    expect(inBf16).toBeGreaterThan(1e-4);
    expect(inBf16).toBeLessThan(2 ** -8);
  });

  it("flush fp32 denormal operands to zero, as VCVTNE2PS2BF16 does (fp32 keeps them)", () => {
    const [M, N, K] = [2, 40, 3];
    const a = new Float32Array(M * K);
    a[0] = 1e-39; // denormal in fp32 (and as a bf16)
    a[K] = -3e-39;
    const b = new Float32Array(K * N).fill(1e30);
    const out = new Float32Array(M * N);
    NativeBackend.gemm(a, b, out, M, N, K);
    const inBf16 = Array.from(out);
    expect(NativeBackend.selectPrecision("fp32")).toBeUndefined();
    NativeBackend.gemm(a, b, out, M, N, K);
    const inFp32 = Array.from(out);
    expect(NativeBackend.selectPrecision("bf16")).toBeUndefined();
    expect(inBf16.every((x) => Object.is(Math.abs(x), 0))).toBe(true);
    expect(inFp32[0]).toBeCloseTo(1e-9, 12);
    expect(inFp32[N]).toBeCloseTo(-3e-9, 12);
  });

  it("keep NaN and infinity", () => {
    const [M, N, K] = [13, 33, 7];
    const a = floats(M * K, 5).slice();
    const b = floats(K * N, 6);
    a[2 * K + 3] = Number.NaN;
    a[5 * K + 6] = Number.POSITIVE_INFINITY;
    const out = new Float32Array(M * N);
    NativeBackend.gemm(a, b, out, M, N, K);
    for (let j = 0; j < N; j++) {
      expect(out[2 * N + j]).toBeNaN();
      expect(Math.abs(out[5 * N + j])).toBe(Number.POSITIVE_INFINITY);
      expect(Number.isFinite(out[4 * N + j])).toBe(true);
    }
  });

  it("match cpu through tf.matMul on bf16-exact operands (batched, broadcast, transposed); attention stays within bf16's error", async () => {
    const exact = (shape: Array<number>, seed: number, lo = -1, hi = 1) => tf.tidy(() => {
      const t = rand(shape, seed, lo, hi);
      return tf.tensor(Array.from(t.dataSync(), bf16), shape);
    });
    for (const c of [...matMulCases, { a: [3, 2], b: [], M: 40, N: 50, K: 61 }]) {
      for (const [ta, tb] of forms) {
        await expectNativeMatchesCpu(`bf16 ${JSON.stringify(c)} ${ta ? "aT" : "a"}·${tb ? "bT" : "b"}`, () => {
          const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(c.a, c.b);
          const [a, b] = [exact(operandShape(c.a, c.M, c.K, ta), 1), exact(operandShape(c.b, c.K, c.N, tb), 2)];
          return tf.matMul(tf.broadcastTo(a, [...outBatch, ...a.shape.slice(-2)]), tf.broadcastTo(b, [...outBatch, ...b.shape.slice(-2)]), ta, tb);
        }, 1e-6 * Math.max(c.K, 1) + 1e-6, 1e-4);
      }
    }
    const [B, H, T, D] = [1, 2, 40, 16];
    await expectNativeMatchesCpu("bf16 attention forward", () => {
      const q = exact([B, H, T, D], 3, -2, 2) as tf.Tensor4D;
      const k = exact([B, H, T, D], 4, -2, 2) as tf.Tensor4D;
      const v = exact([B, H, T, D], 5) as tf.Tensor4D;
      // The probabilities are rounded to bf16 before P·V, so only bf16's relative 2⁻⁸ holds.
      return Fused.causalAttention(q, k, v, 0.25, "bhtd");
    }, 1e-2, 1e-2);
  }, timeout);
});
